//! Table-driven tests of answer building over hand-made snapshots.

use super::names::{target_key, target_name};
use super::*;
use lodestar::{Entry, Snapshot};

fn snap(values: &[(&str, &str)]) -> Snapshot {
    Snapshot::from_values(values.iter().map(|(p, v)| (*p, v.as_bytes(), 1)))
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// Answers as `"owner TYPE data"` lines, for readable assertions.
fn lines(a: &Answer) -> Vec<String> {
    match a {
        Answer::Records(r) => r
            .answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect(),
        Answer::NoData(_) => vec!["NODATA".into()],
        Answer::NxDomain(_) => vec!["NXDOMAIN".into()],
        Answer::NotOurs => vec!["NOTOURS".into()],
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn demo() -> Snapshot {
    snap(&[
        (
            "dev/webapp/redis/redis-1",
            r#"{"host":"10.0.0.1","port":6379}"#,
        ),
        (
            "dev/webapp/redis/redis-2",
            r#"{"host":"10.0.0.2","port":6379,"weight":300}"#,
        ),
        ("dev/webapp/redis2/x", r#"{"host":"10.0.0.9"}"#),
        ("dev/webapp/v6", r#"{"host":"2001:db8::1"}"#),
        ("dev/webapp/db", r#"{"host":"redis-1.redis.webapp.dev"}"#),
        ("dev/webapp/ext", r#"{"host":"www.example.org"}"#),
        ("dev/webapp/loop1", r#"{"host":"loop2.webapp.dev"}"#),
        ("dev/webapp/loop2", r#"{"host":"loop1.webapp.dev"}"#),
        ("dev/webapp/txt", r#"{"text":"hello world","ttl":60}"#),
        (
            "dev/webapp/mail/m1",
            r#"{"host":"10.0.0.5","mail":true,"priority":5}"#,
        ),
        ("dev/webapp/prod/api/a", r#"{"host":"10.1.0.1"}"#),
        ("dev/webapp/staging/api/b", r#"{"host":"10.2.0.1"}"#),
        ("dev/webapp/dns/ns/ns1", r#"{"host":"10.9.9.9"}"#),
        ("arpa/in-addr/10/0/0/77", r#"{"host":"stored.webapp.dev"}"#),
    ])
}

#[test]
fn address_answers() {
    let s = demo();
    let a = Authority::webapp_dev();
    let cases: &[(&str, RecordType, &[&str])] = &[
        (
            "redis.webapp.dev.",
            RecordType::A,
            &[
                "redis.webapp.dev. A 10.0.0.1",
                "redis.webapp.dev. A 10.0.0.2",
            ],
        ),
        (
            "redis-1.redis.webapp.dev.",
            RecordType::A,
            &["redis-1.redis.webapp.dev. A 10.0.0.1"],
        ),
        (
            "redis2.webapp.dev.",
            RecordType::A,
            &["redis2.webapp.dev. A 10.0.0.9"],
        ),
        (
            "v6.webapp.dev.",
            RecordType::AAAA,
            &["v6.webapp.dev. AAAA 2001:db8::1"],
        ),
        ("v6.webapp.dev.", RecordType::A, &["NODATA"]),
        ("redis.webapp.dev.", RecordType::AAAA, &["NODATA"]),
        ("nope.webapp.dev.", RecordType::A, &["NXDOMAIN"]),
        ("redi.webapp.dev.", RecordType::A, &["NXDOMAIN"]),
        ("txt.webapp.dev.", RecordType::A, &["NODATA"]),
        ("www.example.org.", RecordType::A, &["NOTOURS"]),
        (
            "webapp.dev.",
            RecordType::MX,
            &["webapp.dev. MX 5 m1.mail.webapp.dev."],
        ),
    ];
    for (q, t, want) in cases {
        assert_eq!(sorted(lines(&a.answer(&s, &name(q), *t))), *want, "{q} {t}");
    }
}

#[test]
fn case_is_echoed_and_matching_ignores_it() {
    let out =
        Authority::webapp_dev().answer(&demo(), &name("ReDiS-1.Redis.WEBAPP.dev."), RecordType::A);
    assert_eq!(lines(&out), ["ReDiS-1.Redis.WEBAPP.dev. A 10.0.0.1"]);
}

#[test]
fn wildcards_match_one_label() {
    let s = demo();
    for q in ["api.*.webapp.dev.", "api.any.webapp.dev."] {
        let got = sorted(lines(&Authority::webapp_dev().answer(
            &s,
            &name(q),
            RecordType::A,
        )));
        assert_eq!(got, [format!("{q} A 10.1.0.1"), format!("{q} A 10.2.0.1")]);
    }
    let got =
        lines(&Authority::webapp_dev().answer(&s, &name("*.redis.webapp.dev."), RecordType::A));
    assert_eq!(got.len(), 2, "{got:?}");
    let got = lines(&Authority::webapp_dev().answer(&s, &name("zzz.*.webapp.dev."), RecordType::A));
    assert_eq!(got, ["NXDOMAIN"]);
}

#[test]
fn cname_chains() {
    let s = demo();
    let a = Authority::webapp_dev();
    let got = lines(&a.answer(&s, &name("db.webapp.dev."), RecordType::A));
    assert_eq!(
        got,
        [
            "db.webapp.dev. CNAME redis-1.redis.webapp.dev.",
            "redis-1.redis.webapp.dev. A 10.0.0.1"
        ]
    );
    let Answer::Records(r) = a.answer(&s, &name("ext.webapp.dev."), RecordType::A) else {
        panic!()
    };
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.external, [(name("www.example.org."), RecordType::A)]);
    // A loop is cut: nothing answers, but the name exists.
    assert_eq!(
        lines(&a.answer(&s, &name("loop1.webapp.dev."), RecordType::A)),
        ["NODATA"]
    );
    let got = lines(&a.answer(&s, &name("db.webapp.dev."), RecordType::CNAME));
    assert_eq!(got, ["db.webapp.dev. CNAME redis-1.redis.webapp.dev."]);
}

#[test]
fn srv_weights_and_additional_addresses() {
    let Answer::Records(r) =
        Authority::webapp_dev().answer(&demo(), &name("redis.webapp.dev."), RecordType::SRV)
    else {
        panic!()
    };
    let got: Vec<String> = r.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(
        got,
        [
            "10 25 6379 redis-1.redis.webapp.dev.",
            "10 75 6379 redis-2.redis.webapp.dev."
        ]
    );
    let extra: Vec<String> = r
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    assert_eq!(
        extra,
        [
            "redis-1.redis.webapp.dev. 10.0.0.1",
            "redis-2.redis.webapp.dev. 10.0.0.2"
        ]
    );
}

#[test]
fn targetstrip_shortens_the_target() {
    let s = snap(&[(
        "dev/webapp/web/x1",
        r#"{"host":"10.0.0.1","port":80,"targetstrip":1}"#,
    )]);
    let Answer::Records(r) =
        Authority::webapp_dev().answer(&s, &name("web.webapp.dev."), RecordType::SRV)
    else {
        panic!()
    };
    assert_eq!(r.answers[0].data.to_string(), "10 100 80 web.webapp.dev.");
    assert_eq!(r.additionals[0].name, name("web.webapp.dev."));
}

#[test]
fn txt_with_its_own_ttl() {
    let Answer::Records(r) =
        Authority::webapp_dev().answer(&demo(), &name("txt.webapp.dev."), RecordType::TXT)
    else {
        panic!()
    };
    assert_eq!(r.answers[0].ttl, 60);
    assert_eq!(r.answers[0].data.to_string(), "hello world");
}

#[test]
fn groups_narrow_the_answer() {
    let s = snap(&[
        ("dev/webapp/svc/a", r#"{"host":"10.0.0.1","group":"g1"}"#),
        (
            "dev/webapp/svc/b/deep",
            r#"{"host":"10.0.0.2","group":"g2"}"#,
        ),
        ("dev/webapp/svc/c", r#"{"host":"10.0.0.3"}"#),
    ]);
    let got = sorted(lines(&Authority::webapp_dev().answer(
        &s,
        &name("svc.webapp.dev."),
        RecordType::A,
    )));
    assert_eq!(
        got,
        ["svc.webapp.dev. A 10.0.0.1", "svc.webapp.dev. A 10.0.0.3"]
    );
}

#[test]
fn apex_ns_and_soa() {
    let s = demo();
    let a = Authority::webapp_dev();
    let Answer::Records(r) = a.answer(&s, &name("webapp.dev."), RecordType::NS) else {
        panic!()
    };
    assert_eq!(
        lines(&Answer::Records(r.clone())),
        ["webapp.dev. NS ns1.ns.dns.webapp.dev."]
    );
    assert_eq!(r.additionals[0].data.to_string(), "10.9.9.9");
    let got = lines(&a.answer(&s, &name("webapp.dev."), RecordType::SOA));
    assert!(
        got[0].starts_with("webapp.dev. SOA ns.dns.webapp.dev. hostmaster.webapp.dev. 0 "),
        "{got:?}"
    );
    // The reserved subtree answers only names inside it.
    let all = lines(&a.answer(&s, &name("webapp.dev."), RecordType::A));
    assert!(!all.iter().any(|l| l.contains("10.9.9.9")), "{all:?}");
    let ns = lines(&a.answer(&s, &name("ns1.ns.dns.webapp.dev."), RecordType::A));
    assert_eq!(ns, ["ns1.ns.dns.webapp.dev. A 10.9.9.9"]);
    assert_eq!(
        lines(&a.answer(&s, &name("redis.webapp.dev."), RecordType::SOA)),
        ["NODATA"]
    );
}

#[test]
fn ptr_stored_and_synthesised() {
    let s = demo();
    let a = Authority::webapp_dev();
    let got = lines(&a.answer(&s, &name("77.0.0.10.in-addr.arpa."), RecordType::PTR));
    assert_eq!(got, ["77.0.0.10.in-addr.arpa. PTR stored.webapp.dev."]);
    let got = lines(&a.answer(&s, &name("2.0.0.10.in-addr.arpa."), RecordType::PTR));
    assert_eq!(
        got,
        ["2.0.0.10.in-addr.arpa. PTR redis-2.redis.webapp.dev."]
    );
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(
        lines(&a.answer(&s, &name(v6), RecordType::PTR)),
        [format!("{v6} PTR v6.webapp.dev.")]
    );
    assert_eq!(
        lines(&a.answer(&s, &name("1.1.1.1.in-addr.arpa."), RecordType::PTR)),
        ["NOTOURS"]
    );
    assert_eq!(
        lines(&a.answer(&s, &name("2.0.0.10.in-addr.arpa."), RecordType::A)),
        ["NOTOURS"]
    );
}

#[test]
fn several_answers_may_rotate_but_a_chain_may_not() {
    let s = demo();
    let rotates = |q: &str| match Authority::webapp_dev().answer(&s, &name(q), RecordType::A) {
        Answer::Records(r) => r.rotate,
        other => panic!("{other:?}"),
    };
    assert!(rotates("redis.webapp.dev."));
    assert!(!rotates("db.webapp.dev."));
}

#[test]
fn any_is_answered_as_rfc_8482_says() {
    let s = demo();
    let got =
        lines(&Authority::webapp_dev().answer(&s, &name("redis.webapp.dev."), RecordType::ANY));
    assert_eq!(got, ["redis.webapp.dev. HINFO RFC8482 "]);
    let got =
        lines(&Authority::webapp_dev().answer(&s, &name("nope.webapp.dev."), RecordType::ANY));
    assert_eq!(got, ["NXDOMAIN"]);
}

#[test]
fn dependencies() {
    let s = demo();
    let a = Authority::webapp_dev();
    let dep = |q: &str, t| a.lookup(&s, &name(q), t, Budget::FULL).unwrap().1;
    let path = |p: &str| Dep::Path(p.to_string());
    assert_eq!(
        dep("Redis.webapp.dev.", RecordType::A),
        path("dev/webapp/redis")
    );
    assert_eq!(dep("api.*.webapp.dev.", RecordType::A), path("dev/webapp"));
    assert_eq!(
        dep("nope.webapp.dev.", RecordType::A),
        path("dev/webapp/nope")
    );
    assert_eq!(
        dep("db.webapp.dev.", RecordType::A),
        Dep::All,
        "follows a CNAME"
    );
    assert_eq!(dep("webapp.dev.", RecordType::SOA), Dep::All, "the serial");
    assert_eq!(
        dep("2.0.0.10.in-addr.arpa.", RecordType::PTR),
        path("arpa/in-addr/10/0/0/2")
    );
}

#[test]
fn large_names_are_bounded() {
    let values: Vec<(String, String)> = (0..40_000)
        .map(|i| {
            (
                format!("dev/webapp/big/i{i}"),
                format!(
                    r#"{{"host":"10.{}.{}.{}","port":80}}"#,
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ),
            )
        })
        .collect();
    let s = Snapshot::from_values(values.iter().map(|(p, v)| (p.as_str(), v.as_bytes(), 1)));
    let Answer::Records(r) =
        Authority::webapp_dev().answer(&s, &name("big.webapp.dev."), RecordType::A)
    else {
        panic!()
    };
    assert!(r.answers.len() <= MAX_RECORDS && r.answers.len() > MAX_RECORDS / 2);
    // An even sample: records from the end of the name's list are in it, not only the first.
    let tail: Vec<String> = s
        .subtree("dev/webapp/big")
        .skip(40_000 - 3)
        .map(|(_, e)| e.service.host.clone())
        .collect();
    let last = r
        .answers
        .last()
        .map(|r| r.data.to_string())
        .unwrap_or_default();
    assert!(tail.contains(&last), "{last} not in {tail:?}");
    let Answer::Records(r) =
        Authority::webapp_dev().answer(&s, &name("big.webapp.dev."), RecordType::SRV)
    else {
        panic!()
    };
    assert_eq!(r.answers.len(), r.additionals.len());
    assert!(r.answers.len() <= MAX_RECORDS);
}

#[test]
fn cname_fan_out_is_bounded() {
    // Five records per level, each pointing at the next level: 5^7 paths, 36 records.
    let mut values = Vec::new();
    for level in 0..7 {
        for i in 0..5 {
            values.push((
                format!("dev/webapp/l{level}/r{i}"),
                format!(r#"{{"host":"l{}.webapp.dev"}}"#, level + 1),
            ));
        }
    }
    values.push(("dev/webapp/l7/end".into(), r#"{"host":"10.9.9.9"}"#.into()));
    let s = Snapshot::from_values(values.iter().map(|(p, v)| (p.as_str(), v.as_bytes(), 1)));
    let Answer::Records(r) =
        Authority::webapp_dev().answer(&s, &name("l0.webapp.dev."), RecordType::A)
    else {
        panic!()
    };
    assert!(r.answers.len() < 100, "{}", r.answers.len());
    assert!(r.answers.iter().any(|r| r.data.to_string() == "10.9.9.9"));
}

#[test]
fn empty_apex_is_nodata_not_nxdomain() {
    let got = lines(&Authority::webapp_dev().answer(
        &Snapshot::default(),
        &name("webapp.dev."),
        RecordType::A,
    ));
    assert_eq!(got, ["NODATA"]);
}

#[test]
fn srv_dedup_keys_agree_with_the_targets_they_stand_for() {
    let snap = Snapshot::from_values([
        (
            "dev/webapp/bar/x",
            br#"{"host":"10.0.0.1","targetstrip":1}"#.as_slice(),
            1,
        ),
        (
            "dev/webapp/bar/y",
            br#"{"host":"10.0.0.2","targetstrip":1}"#,
            1,
        ),
        ("dev/webapp/bar/z", br#"{"host":"10.0.0.3"}"#, 1),
        (
            "dev/webapp/bar/w",
            br#"{"host":"10.0.0.4","targetstrip":9}"#,
            1,
        ),
        ("dev/webapp/h/a", br#"{"host":"WWW.Example.org."}"#, 1),
        ("dev/webapp/h/b", br#"{"host":"www.example.org"}"#, 1),
        ("dev/webapp/h/c", br#"{"host":"mail.example.org"}"#, 1),
    ]);
    let all: Vec<(&str, &Entry)> = snap.subtree("dev/webapp").collect();
    for (p1, e1) in &all {
        for (p2, e2) in &all {
            let same_key = target_key(p1, e1) == target_key(p2, e2);
            let same_name = target_name(p1, e1).map(|n| n.to_lowercase())
                == target_name(p2, e2).map(|n| n.to_lowercase());
            assert_eq!(same_key, same_name, "{p1} {p2}");
        }
    }
}

#[test]
fn rfc2782_names_answer_from_the_service_records_of_their_transport() {
    let s = snap(&[
        ("dev/webapp/redis/r1", r#"{"host":"10.0.0.1","port":6379}"#),
        (
            "dev/webapp/redis/r2",
            r#"{"host":"10.0.0.2","port":6379,"proto":"tcp"}"#,
        ),
        (
            "dev/webapp/redis/r3-udp",
            r#"{"host":"10.0.0.3","port":5353,"proto":"udp"}"#,
        ),
        ("dev/webapp/prod/api/a", r#"{"host":"10.1.0.1","port":80}"#),
        // Stored literally: it answers as stored.
        (
            "dev/webapp/_tcp/_ldap/l1",
            r#"{"host":"10.3.0.1","port":389}"#,
        ),
    ]);
    let a = Authority::webapp_dev();
    let ask = |q: &str, t| sorted(lines(&a.answer(&s, &name(q), t)));
    assert_eq!(
        ask("_redis._tcp.webapp.dev.", RecordType::SRV),
        [
            "_redis._tcp.webapp.dev. SRV 10 50 6379 r1.redis.webapp.dev.",
            "_redis._tcp.webapp.dev. SRV 10 50 6379 r2.redis.webapp.dev.",
        ]
    );
    assert_eq!(
        ask("_Redis._UDP.webapp.dev.", RecordType::SRV),
        ["_Redis._UDP.webapp.dev. SRV 10 100 5353 r3-udp.redis.webapp.dev."]
    );
    // The targets' addresses come along, as for any SRV.
    let Answer::Records(r) = a.answer(&s, &name("_redis._udp.webapp.dev."), RecordType::SRV) else {
        panic!("records")
    };
    assert_eq!(r.additionals.len(), 1);
    assert_eq!(r.additionals[0].data.to_string(), "10.0.0.3");
    // Below a subdomain.
    assert_eq!(
        ask("_api._tcp.prod.webapp.dev.", RecordType::SRV),
        ["_api._tcp.prod.webapp.dev. SRV 10 100 80 a.api.prod.webapp.dev."]
    );
    // Other types: NODATA; no such transport, service or shape: NXDOMAIN.
    assert_eq!(ask("_redis._tcp.webapp.dev.", RecordType::A), ["NODATA"]);
    assert_eq!(
        ask("_redis._sctp.webapp.dev.", RecordType::SRV),
        ["NXDOMAIN"]
    );
    assert_eq!(ask("_nope._tcp.webapp.dev.", RecordType::SRV), ["NXDOMAIN"]);
    assert_eq!(
        ask("_api._udp.prod.webapp.dev.", RecordType::SRV),
        ["NXDOMAIN"]
    );
    assert_eq!(ask("redis._tcp.webapp.dev.", RecordType::SRV), ["NXDOMAIN"]);
    assert_eq!(ask("_._tcp.webapp.dev.", RecordType::SRV), ["NXDOMAIN"]);
    // A literal name wins.
    assert_eq!(
        ask("_ldap._tcp.webapp.dev.", RecordType::SRV),
        ["_ldap._tcp.webapp.dev. SRV 10 100 389 l1._ldap._tcp.webapp.dev."]
    );
    // Cached until either the name as asked or the service changes.
    let dep = a
        .lookup(
            &s,
            &name("_redis._tcp.webapp.dev."),
            RecordType::SRV,
            Budget::FULL,
        )
        .unwrap()
        .1;
    assert_eq!(
        dep,
        Dep::Either("dev/webapp/_tcp/_redis".into(), "dev/webapp/redis".into())
    );
}
