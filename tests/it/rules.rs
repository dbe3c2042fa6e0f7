//! The wrong answers found against the peers' rules and the RFCs, each through the binary: a CNAME
//! that stands alone, groups, SRV weights, EDNS versions, zone transfers, and forwarded answers
//! from the cache that fit the asking client.

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::support::{
    answers, data, exchange, message, message_edns, put_all, query, Dns, Etcd, Knot,
};

async fn bed(records: &[(&str, &str)]) -> (Etcd, Knot, Dns) {
    let etcd = Etcd::start().await;
    let records: Vec<(String, String)> = records
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    put_all(&etcd, &records).await;
    let knot = Knot::start().await;
    let dns = Dns::for_etcd(&etcd, Some(knot.addr), &[]);
    dns.ready().await;
    (etcd, knot, dns)
}

/// RFC 1034 3.6.2 / RFC 2181 10.1: a CNAME never stands beside other data. Addresses win over
/// host names; several host names are flattened into the name's own addresses; one host name is
/// a CNAME, answered only when it leads somewhere (in the zone or upstream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_stands_alone() {
    let (_etcd, _knot, dns) = bed(&[
        // addresses and a host name under one name
        (
            "/skydns/dev/webapp/bar/x",
            r#"{"host":"192.168.0.1","port":80}"#,
        ),
        (
            "/skydns/dev/webapp/bar/y",
            r#"{"host":"web.webapp.dev","port":443}"#,
        ),
        ("/skydns/dev/webapp/web/w1", r#"{"host":"10.0.0.7"}"#),
        ("/skydns/dev/webapp/web2/w2", r#"{"host":"10.0.0.8"}"#),
        // several host names, in the zone
        ("/skydns/dev/webapp/multi/a", r#"{"host":"web.webapp.dev"}"#),
        (
            "/skydns/dev/webapp/multi/b",
            r#"{"host":"web2.webapp.dev"}"#,
        ),
        // several host names, upstream
        ("/skydns/dev/webapp/ext/a", r#"{"host":"www.example.org"}"#),
        ("/skydns/dev/webapp/ext/b", r#"{"host":"mail.example.org"}"#),
        // one host name that resolves nowhere, upstream
        ("/skydns/dev/webapp/gone", r#"{"host":"nope.example.org"}"#),
    ])
    .await;
    let m = query(dns.addr, "bar.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(answers(&m), ["bar.webapp.dev. A 192.168.0.1"]);

    let m = query(dns.addr, "multi.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(
        answers(&m),
        [
            "multi.webapp.dev. A 10.0.0.7",
            "multi.webapp.dev. A 10.0.0.8"
        ],
        "flattened, no CNAME"
    );

    let m = query(dns.addr, "ext.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(
        answers(&m),
        [
            "ext.webapp.dev. A 192.0.2.10",
            "ext.webapp.dev. A 192.0.2.25"
        ],
        "upstream targets flattened too"
    );

    let m = query(dns.addr, "gone.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(
        m.answers.is_empty(),
        "no CNAME to nowhere: {:?}",
        answers(&m)
    );
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "NODATA carries the SOA"
    );

    // SRV still lists both ports of bar, the host name included.
    let m = query(dns.addr, "bar.webapp.dev.", RecordType::SRV)
        .await
        .expect("answer");
    assert_eq!(m.answers.len(), 2, "{:?}", answers(&m));
}

/// Records without a host make no SRV and take no share of the weights; the group of the
/// shortest keys narrows a set unless those keys disagree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_weights_and_groups_follow_the_peers() {
    let (_etcd, _knot, dns) = bed(&[
        (
            "/skydns/dev/webapp/w/a",
            r#"{"host":"10.0.0.1","port":80,"weight":100}"#,
        ),
        (
            "/skydns/dev/webapp/w/b",
            r#"{"host":"10.0.0.2","port":80,"weight":200}"#,
        ),
        (
            "/skydns/dev/webapp/w/t",
            r#"{"text":"only text","weight":300}"#,
        ),
        (
            "/skydns/dev/webapp/g/a",
            r#"{"host":"127.0.0.1","group":"g1"}"#,
        ),
        (
            "/skydns/dev/webapp/g/b",
            r#"{"host":"127.0.0.2","group":"g2"}"#,
        ),
        (
            "/skydns/dev/webapp/g/sub/c",
            r#"{"host":"127.0.0.3","group":"g3"}"#,
        ),
        (
            "/skydns/dev/webapp/h/a",
            r#"{"host":"127.0.0.1","group":"g1"}"#,
        ),
        (
            "/skydns/dev/webapp/h/sub/b",
            r#"{"host":"127.0.0.2","group":"g2"}"#,
        ),
        ("/skydns/dev/webapp/h/sub/c", r#"{"host":"127.0.0.3"}"#),
    ])
    .await;
    let m = query(dns.addr, "w.webapp.dev.", RecordType::SRV)
        .await
        .expect("answer");
    let mut weights: Vec<u16> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.weight),
            _ => None,
        })
        .collect();
    weights.sort();
    assert_eq!(weights, [33, 66], "the text-only record takes no share");

    // g: the two shortest keys carry different groups: no filtering.
    let m = query(dns.addr, "g.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(data(&m), ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    // h: g1 at the shortest key: g1 and group-less records.
    let m = query(dns.addr, "h.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(data(&m), ["127.0.0.1", "127.0.0.3"]);
}

/// RFC 6891 6.1.3: an EDNS version we do not speak gets BADVERS with our OPT (version 0); zone
/// transfers are not implemented and say so (NOTIMP), instead of an SOA that `dig` calls a failed
/// transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edns_versions_and_zone_transfers() {
    let (_etcd, _knot, dns) = bed(&[("/skydns/dev/webapp/a", r#"{"host":"10.0.0.1"}"#)]).await;
    let mut q = message("a.webapp.dev.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    edns.set_max_payload(1232);
    q.edns = Some(edns);
    let m = exchange(dns.addr, &q, false).await.expect("answer");
    // BADVERS is 16, which hickory decodes under its other name, BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16, "{m:?}");
    assert_eq!(m.edns.as_ref().map(Edns::version), Some(0));
    assert!(m.answers.is_empty());

    for t in [RecordType::AXFR, RecordType::IXFR] {
        let m = exchange(dns.addr, &message("webapp.dev.", t), true)
            .await
            .expect("answer");
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp, "{t}");
    }
}

/// A forwarded answer taken from the cache fits the client that asks now: 512 bytes and no OPT for
/// a client without EDNS (TC when it does not fit), even when it was stored from a large answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_forwarded_answers_fit_the_client() {
    let txt: Vec<String> = (0..40)
        .map(|i| format!("many TXT \"{i:02}{}\"", "x".repeat(100)))
        .collect();
    let zone = format!(
        "$ORIGIN big.test.\n$TTL 300\n@ SOA ns hostmaster 1 7200 3600 1209600 60\n@ NS ns\nns A 127.0.0.1\n{}\n",
        txt.join("\n")
    );
    let knot = Knot::with_zones(&[("big.test", &zone)]).await;
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, Some(knot.addr), &[]);
    dns.ready().await;
    // A large answer over TCP fills the cache.
    let m = exchange(dns.addr, &message("many.big.test.", RecordType::TXT), true)
        .await
        .expect("tcp answer");
    assert_eq!(m.answers.len(), 40);
    // The same question over UDP without EDNS, from the cache: no OPT, within 512 bytes, TC.
    let q = message("many.big.test.", RecordType::TXT);
    let raw = crate::support::udp_raw(
        dns.addr,
        &q.to_vec().expect("encode"),
        std::time::Duration::from_secs(5),
    )
    .await
    .expect("udp answer");
    assert!(
        raw.len() <= 512,
        "{} bytes to a client without EDNS",
        raw.len()
    );
    let m = hickory_proto::op::Message::from_vec(&raw).expect("parse");
    assert!(m.metadata.truncation, "TC: it did not fit");
    assert!(m.edns.is_none(), "no OPT for a client that sent none");
    // With EDNS 1232: an OPT back, within 1232 bytes.
    let raw = crate::support::udp_raw(
        dns.addr,
        &message_edns("many.big.test.", RecordType::TXT, 1232)
            .to_vec()
            .expect("encode"),
        std::time::Duration::from_secs(5),
    )
    .await
    .expect("udp answer");
    assert!(raw.len() <= 1232, "{} bytes", raw.len());
    let m = hickory_proto::op::Message::from_vec(&raw).expect("parse");
    assert!(m.edns.is_some());
}

/// A record on an etcd lease is never answered with a TTL that outlives the lease (SkyDNS takes
/// the lower of the record's TTL and its key's): `--ttl 3600`, a lease of 100 s -> TTL 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_on_a_lease_is_answered_within_the_lease() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let lease = c.lease_grant(100, None).await.expect("lease").id();
    let opts = etcd_client::PutOptions::new().with_lease(lease);
    c.put(
        "/skydns/dev/webapp/leased",
        r#"{"host":"10.0.0.9"}"#,
        Some(opts),
    )
    .await
    .expect("put");
    etcd.put("/skydns/dev/webapp/plain", r#"{"host":"10.0.0.10"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, None, &["--ttl", "3600"]);
    dns.ready().await;
    let m = query(dns.addr, "leased.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(
        m.answers.first().map(|r| r.ttl),
        Some(100),
        "{:?}",
        answers(&m)
    );
    let m = query(dns.addr, "plain.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(m.answers.first().map(|r| r.ttl), Some(3600));
    // A record written later on a 20 s lease, through the watch.
    let lease = c.lease_grant(20, None).await.expect("lease").id();
    let opts = etcd_client::PutOptions::new().with_lease(lease);
    c.put(
        "/skydns/dev/webapp/later",
        r#"{"host":"10.0.0.11","ttl":60}"#,
        Some(opts),
    )
    .await
    .expect("put");
    let ttl = crate::support::eventually(
        std::time::Duration::from_secs(10),
        "the later record answered",
        || async {
            let m = query(dns.addr, "later.webapp.dev.", RecordType::A)
                .await
                .ok()?;
            m.answers.first().map(|r| r.ttl)
        },
    )
    .await;
    assert_eq!(ttl, 20);
}

/// CHAOS TXT (`version.bind`, `version.server`, `hostname.bind`, `id.server`), `--hide-version`,
/// `--server-id`; `--hostmaster` and `--min-ttl` in the SOA of negative answers; `--log-queries`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soa_settings_and_the_query_log() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/a", r#"{"host":"10.0.0.1"}"#)
        .await;
    let chaos = |name: &str| {
        let mut q = message(name, RecordType::TXT);
        if let Some(query) = q.queries.first_mut() {
            query.set_query_class(hickory_proto::rr::DNSClass::CH);
        }
        q
    };
    let txt = |m: &hickory_proto::op::Message| -> Vec<String> {
        m.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()
    };
    let dns = Dns::for_etcd(
        &etcd,
        None,
        &[
            "--server-id",
            "core-01",
            "--hostmaster",
            "dns.admin@example.com",
            "--ttl",
            "300",
            "--min-ttl",
            "5",
            "--log-queries",
        ],
    );
    dns.ready().await;
    let m = exchange(dns.addr, &chaos("version.bind."), false)
        .await
        .expect("answer");
    assert_eq!(txt(&m), [format!("lodestar {}", env!("CARGO_PKG_VERSION"))]);
    assert_eq!(m.answers[0].dns_class, hickory_proto::rr::DNSClass::CH);
    for name in ["hostname.bind.", "ID.SERVER."] {
        let m = exchange(dns.addr, &chaos(name), false)
            .await
            .expect("answer");
        assert_eq!(txt(&m), ["core-01"], "{name}");
    }
    let m = exchange(dns.addr, &chaos("authors.bind."), false)
        .await
        .expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    let m = query(dns.addr, "nope.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let soa = m.authorities.first().expect("SOA");
    assert_eq!(soa.ttl, 5, "negative answers live --min-ttl");
    match &soa.data {
        RData::SOA(s) => {
            assert_eq!(s.rname.to_string(), "dns\\.admin.example.com.");
            assert_eq!(s.minimum, 5);
        }
        other => panic!("{other:?}"),
    }
    let m = query(dns.addr, "webapp.dev.", RecordType::SOA)
        .await
        .expect("answer");
    assert_eq!(m.answers.first().map(|r| r.ttl), Some(300));

    // The query log: one INFO line per answered query, cached or not.
    query(dns.addr, "a.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    query(dns.addr, "a.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    let logged = crate::support::eventually(
        std::time::Duration::from_secs(5),
        "two query lines for a.webapp.dev",
        || async {
            let n = dns
                .logs()
                .lines()
                .filter(|l| l.contains("\"query\"") && l.contains("a.webapp.dev"))
                .count();
            (n >= 2).then_some(n)
        },
    )
    .await;
    assert_eq!(logged, 2);

    // Hidden version; and no query log without the flag.
    let quiet = Dns::for_etcd(&etcd, None, &["--hide-version"]);
    quiet.ready().await;
    let m = exchange(quiet.addr, &chaos("version.bind."), false)
        .await
        .expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    query(quiet.addr, "a.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert!(!quiet.logs().contains("\"query\""), "{}", quiet.logs());
}
