//! Every answer rule, through the binary: what `dig` would see.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::support::*;

/// A DNS server over an etcd holding the demo records of these tests.
async fn demo() -> (Etcd, Dns) {
    let etcd = Etcd::start().await;
    let records = [
        (
            "/skydns/dev/webapp/redis/redis-1",
            r#"{"host":"172.17.0.5","port":6379}"#,
        ),
        (
            "/skydns/dev/webapp/redis/redis-2",
            r#"{"host":"172.17.0.6","port":6380,"weight":300}"#,
        ),
        (
            "/skydns/dev/webapp/redis2/other",
            r#"{"host":"172.17.0.99"}"#,
        ),
        ("/skydns/dev/webapp/v6/a", r#"{"host":"2001:db8::5"}"#),
        (
            "/skydns/dev/webapp/db",
            r#"{"host":"redis-1.redis.webapp.dev"}"#,
        ),
        (
            "/skydns/dev/webapp/loop-a",
            r#"{"host":"loop-b.webapp.dev"}"#,
        ),
        (
            "/skydns/dev/webapp/loop-b",
            r#"{"host":"loop-a.webapp.dev"}"#,
        ),
        (
            "/skydns/dev/webapp/info",
            r#"{"text":"v=spf1 -all","ttl":77}"#,
        ),
        (
            "/skydns/dev/webapp/mx/mx1",
            r#"{"host":"172.17.0.25","mail":true,"priority":5}"#,
        ),
        ("/skydns/dev/webapp/prod/api/i1", r#"{"host":"172.17.1.1"}"#),
        (
            "/skydns/dev/webapp/staging/api/i2",
            r#"{"host":"172.17.2.1"}"#,
        ),
        (
            "/skydns/dev/webapp/grp/a",
            r#"{"host":"172.17.3.1","group":"blue"}"#,
        ),
        (
            "/skydns/dev/webapp/grp/b/c",
            r#"{"host":"172.17.3.2","group":"green"}"#,
        ),
        ("/skydns/dev/webapp/grp/d", r#"{"host":"172.17.3.3"}"#),
        (
            "/skydns/dev/webapp/strip/x1",
            r#"{"host":"172.17.4.1","port":80,"targetstrip":1}"#,
        ),
        ("/skydns/dev/webapp/dns/ns/ns1", r#"{"host":"172.17.9.1"}"#),
        (
            "/skydns/arpa/in-addr/172/17/0/77",
            r#"{"host":"printer.webapp.dev"}"#,
        ),
    ];
    for (k, v) in records {
        etcd.put(k, v).await;
    }
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    (etcd, dns)
}

#[tokio::test]
async fn a_aaaa_and_label_boundaries() {
    let (_etcd, dns) = demo().await;
    let m = query(dns.addr, "redis.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert!(m.metadata.authoritative);
    assert_eq!(
        data(&m),
        ["172.17.0.5", "172.17.0.6"],
        "every instance, never redis2"
    );
    let m = query(dns.addr, "redis-2.redis.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(data(&m), ["172.17.0.6"]);
    let m = query(dns.addr, "v6.webapp.dev.", RecordType::AAAA)
        .await
        .unwrap();
    assert_eq!(data(&m), ["2001:db8::5"]);
}

#[tokio::test]
async fn nxdomain_and_nodata_are_authoritative_with_soa() {
    let (_etcd, dns) = demo().await;
    for (name, qtype, rcode) in [
        ("missing.webapp.dev.", RecordType::A, ResponseCode::NXDomain),
        ("redi.webapp.dev.", RecordType::A, ResponseCode::NXDomain),
        ("redis.webapp.dev.", RecordType::AAAA, ResponseCode::NoError),
        ("info.webapp.dev.", RecordType::A, ResponseCode::NoError),
    ] {
        let m = query(dns.addr, name, qtype).await.unwrap();
        assert_eq!(m.metadata.response_code, rcode, "{name} {qtype}");
        assert!(m.metadata.authoritative, "{name}");
        assert!(m.answers.is_empty(), "{name}");
        assert_eq!(m.authorities.len(), 1, "{name}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{name}");
        assert_eq!(m.authorities[0].name.to_string(), "webapp.dev.");
    }
}

#[tokio::test]
async fn srv_weights_targets_and_additionals() {
    let (_etcd, dns) = demo().await;
    let m = query(dns.addr, "redis.webapp.dev.", RecordType::SRV)
        .await
        .unwrap();
    assert_eq!(
        data(&m),
        [
            "10 25 6379 redis-1.redis.webapp.dev.",
            "10 75 6380 redis-2.redis.webapp.dev."
        ]
    );
    let mut extra: Vec<String> = m
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            "redis-1.redis.webapp.dev. 172.17.0.5",
            "redis-2.redis.webapp.dev. 172.17.0.6"
        ]
    );
    let m = query(dns.addr, "strip.webapp.dev.", RecordType::SRV)
        .await
        .unwrap();
    assert_eq!(
        data(&m),
        ["10 100 80 strip.webapp.dev."],
        "targetstrip drops one label"
    );
}

#[tokio::test]
async fn cname_chains_and_loops() {
    let (_etcd, dns) = demo().await;
    let m = query(dns.addr, "db.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        answers(&m),
        [
            "db.webapp.dev. CNAME redis-1.redis.webapp.dev.",
            "redis-1.redis.webapp.dev. A 172.17.0.5"
        ]
    );
    let m = query(dns.addr, "loop-a.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NoError,
        "a loop is cut, not an error"
    );
    assert!(m.answers.is_empty());
}

#[tokio::test]
async fn txt_mx_ns_soa_ptr() {
    let (_etcd, dns) = demo().await;
    let m = query(dns.addr, "info.webapp.dev.", RecordType::TXT)
        .await
        .unwrap();
    assert_eq!(data(&m), ["v=spf1 -all"]);
    assert_eq!(m.answers[0].ttl, 77, "a record's own ttl");
    let m = query(dns.addr, "redis-1.redis.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.answers[0].ttl, 30, "the default --ttl");
    let m = query(dns.addr, "mx.webapp.dev.", RecordType::MX)
        .await
        .unwrap();
    assert_eq!(data(&m), ["5 mx1.mx.webapp.dev."]);
    assert_eq!(m.additionals[0].data.to_string(), "172.17.0.25");
    let m = query(dns.addr, "webapp.dev.", RecordType::NS)
        .await
        .unwrap();
    assert_eq!(data(&m), ["ns1.ns.dns.webapp.dev."]);
    assert_eq!(m.additionals[0].data.to_string(), "172.17.9.1");
    let m = query(dns.addr, "webapp.dev.", RecordType::SOA)
        .await
        .unwrap();
    let RData::SOA(soa) = &m.answers[0].data else {
        panic!("not a SOA: {m:?}")
    };
    assert_eq!(soa.mname.to_string(), "ns.dns.webapp.dev.");
    assert!(soa.serial > 0, "the serial follows etcd's revision");
    let m = query(dns.addr, "77.0.17.172.in-addr.arpa.", RecordType::PTR)
        .await
        .unwrap();
    assert_eq!(data(&m), ["printer.webapp.dev."], "stored PTR");
    let m = query(dns.addr, "6.0.17.172.in-addr.arpa.", RecordType::PTR)
        .await
        .unwrap();
    assert_eq!(data(&m), ["redis-2.redis.webapp.dev."], "synthesised PTR");
    let v6 = "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    let m = query(dns.addr, v6, RecordType::PTR).await.unwrap();
    assert_eq!(data(&m), ["a.v6.webapp.dev."]);
}

#[tokio::test]
async fn wildcards_and_groups() {
    let (_etcd, dns) = demo().await;
    for name in ["api.*.webapp.dev.", "api.any.webapp.dev."] {
        let m = query(dns.addr, name, RecordType::A).await.unwrap();
        assert_eq!(data(&m), ["172.17.1.1", "172.17.2.1"], "{name}");
    }
    let m = query(dns.addr, "grp.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        data(&m),
        ["172.17.3.1", "172.17.3.3"],
        "the shortest key's group (blue) and group-less"
    );
}

#[tokio::test]
async fn case_is_echoed_and_order_rotates() {
    let (_etcd, dns) = demo().await;
    let m = query(dns.addr, "ReDiS.WebApp.DEV.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.queries[0].name().to_string(), "ReDiS.WebApp.DEV.");
    assert!(
        m.answers
            .iter()
            .all(|r| r.name.to_string() == "ReDiS.WebApp.DEV."),
        "{m:?}"
    );
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..6 {
        let m = query(dns.addr, "redis.webapp.dev.", RecordType::A)
            .await
            .unwrap();
        firsts.insert(m.answers[0].data.to_string());
    }
    assert_eq!(firsts.len(), 2, "both instances come first in turn");
}

#[tokio::test]
async fn static_zone_files_are_served() {
    let etcd = Etcd::start().await;
    let zones = zone_dir(&[(
        "static.test.zone",
        "$ORIGIN static.test.\n$TTL 120\n@ SOA ns.static.test. admin.static.test. 7 7200 3600 1209600 60\n\
         @ NS ns\nns A 10.20.0.1\nwww A 10.20.0.2\nalias CNAME www\n",
    )]);
    let dir = path_str(zones.path());
    let dns = Dns::for_etcd(&etcd, None, &["--zones", &dir]);
    dns.ready().await;
    let m = query(dns.addr, "alias.static.test.", RecordType::A)
        .await
        .unwrap();
    assert!(m.metadata.authoritative);
    assert_eq!(
        answers(&m),
        [
            "alias.static.test. CNAME www.static.test.",
            "www.static.test. A 10.20.0.2"
        ]
    );
    let m = query(dns.addr, "nope.static.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // The example zone in the repository loads too.
    let dir = path_str(&repo_file("zones"));
    let dns = Dns::for_etcd(&etcd, None, &["--zones", &dir]);
    let m = query(dns.addr, "www.static.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert!(!m.answers.is_empty(), "{m:?}");
}

/// Static zones through hickory-server's catalog: a wildcard answers, a delegation is a referral
/// (no AA, the child's NS in the authority section with glue), the zone's NS at its apex is
/// authoritative; a changed file is served after SIGHUP, and a broken one leaves the old in place.
#[tokio::test]
async fn static_zones_wildcards_delegations_and_reload() {
    let zone = "$ORIGIN static.test.\n$TTL 120\n@ SOA ns.static.test. admin.static.test. 7 7200 3600 1209600 60\n\
                @ NS ns.static.test.\nns A 10.20.0.1\nwww A 10.20.0.2\n*.wild A 10.20.0.9\n\
                sub NS ns.sub.static.test.\nns.sub A 10.20.0.53\n";
    let dir = zone_dir(&[("static.test.zone", zone)]);
    let etcd = Etcd::start().await;
    let zones = path_str(dir.path());
    let dns = Dns::for_etcd(&etcd, None, &["--zones", &zones]);
    dns.ready().await;
    let m = query(dns.addr, "x.wild.static.test.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(answers(&m), ["x.wild.static.test. A 10.20.0.9"]);
    assert!(m.metadata.authoritative);

    for (name, t) in [
        ("host.sub.static.test.", RecordType::A),
        ("sub.static.test.", RecordType::NS),
    ] {
        let m = query(dns.addr, name, t).await.expect("answer");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(
            !m.metadata.authoritative,
            "a referral is not authoritative: {name}"
        );
        assert!(m.answers.is_empty(), "{name}: {:?}", answers(&m));
        let ns: Vec<String> = m
            .authorities
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect();
        assert_eq!(ns, ["sub.static.test. NS ns.sub.static.test."], "{name}");
        assert!(
            m.additionals
                .iter()
                .any(|r| r.data.to_string() == "10.20.0.53"),
            "glue: {m:?}"
        );
    }
    let m = query(dns.addr, "static.test.", RecordType::NS)
        .await
        .expect("answer");
    assert!(m.metadata.authoritative);
    assert_eq!(answers(&m), ["static.test. NS ns.static.test."]);

    // SIGHUP: a changed file is served; a broken one is refused and the old zone stays.
    std::fs::write(
        dir.path().join("static.test.zone"),
        zone.replace("www A 10.20.0.2", "www A 10.20.0.3"),
    )
    .expect("write");
    dns.signal("HUP");
    eventually(Duration::from_secs(10), "the reloaded zone", || async {
        let m = query(dns.addr, "www.static.test.", RecordType::A)
            .await
            .ok()?;
        (data(&m) == ["10.20.0.3"]).then_some(())
    })
    .await;
    std::fs::write(dir.path().join("static.test.zone"), "@ IN A\n").expect("write");
    dns.signal("HUP");
    eventually(Duration::from_secs(10), "the refusal logged", || async {
        dns.logs()
            .contains("static zones not reloaded")
            .then_some(())
    })
    .await;
    let m = query(dns.addr, "www.static.test.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(data(&m), ["10.20.0.3"]);
}
