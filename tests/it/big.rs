//! Answers at any size, through the binary: names with thousands of records, the apex, a 1 MB
//! value, a CNAME fan-out, TCP clients that never read, and a cache that a write to one name
//! leaves in place for the others.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// `n` instances of `name` (`/skydns/dev/webapp/<name>/i<k>`), each with its own address and port.
fn instances(name: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("/skydns/dev/webapp/{name}/i{i}"),
                format!(
                    r#"{{"host":"10.{}.{}.{}","port":{}}}"#,
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255,
                    1000 + i
                ),
            )
        })
        .collect()
}

/// The value of an unlabelled metric in a /metrics page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{page}"))
}

async fn udp(addr: SocketAddr, m: &Message) -> (usize, Message) {
    let raw = udp_raw(addr, &m.to_vec().unwrap(), Duration::from_secs(10))
        .await
        .expect("an answer over UDP");
    (
        raw.len(),
        Message::from_vec(&raw).expect("a well-formed answer"),
    )
}

async fn tcp(addr: SocketAddr, m: &Message) -> (usize, Message) {
    let raw = tcp_raw(addr, &m.to_vec().unwrap())
        .await
        .expect("an answer over TCP");
    (
        raw.len(),
        Message::from_vec(&raw).expect("a well-formed answer"),
    )
}

#[tokio::test]
async fn thousands_of_instances_and_the_apex() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &instances("big", 2000)).await;
    let others: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("/skydns/dev/webapp/other/o{i}"),
                format!(r#"{{"host":"10.250.0.{i}"}}"#),
            )
        })
        .collect();
    put_all(&etcd, &others).await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;

    let (len, m) = udp(dns.addr, &message("big.webapp.dev.", RecordType::A)).await;
    assert!(len <= 512, "{len} bytes without EDNS");
    assert!(m.metadata.truncation && m.metadata.authoritative);
    assert!(m.answers.len() > 20, "as many as fit: {}", m.answers.len());

    let (len, m) = udp(
        dns.addr,
        &message_edns("big.webapp.dev.", RecordType::A, 1232),
    )
    .await;
    assert!(len <= 1232, "{len} bytes with EDNS 1232");
    assert!(m.metadata.truncation && m.edns.is_some());

    // TCP: every one of the 2,000 addresses fits in 65,535 bytes, each owner in the letter case
    // of this question, though another client's question built the answer.
    let (_, m) = tcp(dns.addr, &message("BIG.webapp.dev.", RecordType::A)).await;
    assert_eq!(m.answers.len(), 2000);
    let (len, m) = tcp(dns.addr, &message("big.WebApp.dev.", RecordType::A)).await;
    assert!(len <= 65535);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 2000);
    let owners: std::collections::BTreeSet<String> =
        m.answers.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(owners.into_iter().collect::<Vec<_>>(), ["big.WebApp.dev."]);

    // SRV records with their targets do not all fit: as many as fit, never malformed, and no
    // TC over TCP (resolvers refuse a TCP answer with TC; there is nothing larger to retry on).
    let (len, m) = tcp(dns.addr, &message("big.webapp.dev.", RecordType::SRV)).await;
    assert!(len <= 65535, "{len}");
    assert!(!m.metadata.truncation);
    assert!(m.answers.len() > 500, "{}", m.answers.len());
    for extra in &m.additionals {
        let owner = extra.name.to_string();
        assert!(m
            .answers
            .iter()
            .any(|a| a.data.to_string().ends_with(&owner)));
    }

    // Rotation spreads clients over all of them: the first answers differ between queries.
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let (_, m) = udp(dns.addr, &message("big.webapp.dev.", RecordType::A)).await;
        firsts.insert(m.answers[0].data.to_string());
    }
    assert!(firsts.len() >= 4, "{firsts:?}");

    // The apex answers every service (TC over UDP, 2,003 addresses over TCP).
    let (_, m) = udp(dns.addr, &message("webapp.dev.", RecordType::A)).await;
    assert!(m.metadata.truncation && !m.answers.is_empty());
    let (_, m) = tcp(dns.addr, &message("webapp.dev.", RecordType::A)).await;
    assert_eq!(m.answers.len(), 2003);
}

#[tokio::test]
async fn small_names_are_answered_while_a_large_one_keeps_changing() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &instances("big", 5000)).await;
    put_all(&etcd, &instances("small", 1)).await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let addr = dns.addr;

    // One client keeps changing the large name and asking for it (a miss each time)...
    let stop = tokio_util::sync::CancellationToken::new();
    let churn = {
        let stop = stop.clone();
        let mut c = etcd.client().await;
        tokio::spawn(async move {
            let mut rounds = 0u32;
            while !stop.is_cancelled() {
                let v = format!(r#"{{"host":"10.200.0.{}"}}"#, rounds % 250);
                c.put("/skydns/dev/webapp/big/changing", v, None)
                    .await
                    .expect("put");
                let _ = tcp_raw(
                    addr,
                    &message("big.webapp.dev.", RecordType::A).to_vec().unwrap(),
                )
                .await;
                let _ = udp_raw(
                    addr,
                    &message("big.webapp.dev.", RecordType::SRV)
                        .to_vec()
                        .unwrap(),
                    Duration::from_secs(5),
                )
                .await;
                rounds += 1;
            }
            rounds
        })
    };
    // ...while another asks for a small name, one query after the other.
    let mut slowest = Duration::ZERO;
    for i in 0..300 {
        let started = Instant::now();
        let (_, m) = udp(addr, &message("i0.small.webapp.dev.", RecordType::A)).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(data(&m), ["10.0.0.0"], "query {i}");
    }
    stop.cancel();
    let rounds = churn.await.expect("churn task");
    assert!(rounds > 0, "the large name changed meanwhile");
    // Generous: the point is that nobody waits seconds behind somebody else's answer.
    assert!(
        slowest < Duration::from_secs(1),
        "slowest small answer: {slowest:?}"
    );
}

/// A megabyte value is over the record size limit (64 KiB): it is left out of the view like a
/// value that does not parse (counted, logged once), and a value just under the limit costs one
/// bounded answer: TC over UDP, whole over TCP.
#[tokio::test]
async fn a_megabyte_value_costs_one_bounded_answer() {
    let etcd = Etcd::start().await;
    let text = "x".repeat(1 << 20);
    etcd.put(
        "/skydns/dev/webapp/huge",
        &format!(r#"{{"text":"{text}"}}"#),
    )
    .await;
    let text = "y".repeat(60_000);
    etcd.put(
        "/skydns/dev/webapp/large",
        &format!(r#"{{"text":"{text}"}}"#),
    )
    .await;
    etcd.put("/skydns/dev/webapp/ok", r#"{"host":"10.1.1.1"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    for (len, m) in [
        udp(dns.addr, &message("huge.webapp.dev.", RecordType::TXT)).await,
        tcp(dns.addr, &message("huge.webapp.dev.", RecordType::TXT)).await,
    ] {
        assert!(len <= 512);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(
        dns.metric("lodestar_dns_view_skipped_values_total").await,
        Some(1.0)
    );
    let (len, m) = udp(dns.addr, &message("large.webapp.dev.", RecordType::TXT)).await;
    assert!(len <= 512 && m.metadata.truncation && m.answers.is_empty());
    let (len, m) = tcp(dns.addr, &message("large.webapp.dev.", RecordType::TXT)).await;
    assert!(len <= 65535 && !m.metadata.truncation, "{len}");
    assert_eq!(m.answers.len(), 1);
    let m = query(dns.addr, "ok.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(data(&m), ["10.1.1.1"]);
}

#[tokio::test]
async fn a_cname_fan_out_is_answered_within_bounds() {
    let etcd = Etcd::start().await;
    // Five records a level, each naming the next level, seven levels: 5^7 paths through 36 records.
    let mut records = Vec::new();
    for level in 0..7 {
        for i in 0..5 {
            records.push((
                format!("/skydns/dev/webapp/l{level}/r{i}"),
                format!(r#"{{"host":"l{}.webapp.dev"}}"#, level + 1),
            ));
        }
    }
    records.push((
        "/skydns/dev/webapp/l7/end".into(),
        r#"{"host":"10.7.7.7"}"#.into(),
    ));
    put_all(&etcd, &records).await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let started = Instant::now();
    let (_, m) = tcp(dns.addr, &message("l0.webapp.dev.", RecordType::A)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(m.answers.len() < 100, "{}", m.answers.len());
    assert!(data(&m).contains(&"10.7.7.7".to_string()), "{:?}", data(&m));
}

#[tokio::test]
async fn tcp_clients_that_never_read_do_not_lock_out_others() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &instances("big", 3000)).await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let query_bytes = message("big.webapp.dev.", RecordType::A).to_vec().unwrap();
    let mut framed = (query_bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query_bytes);
    let many: Vec<u8> = framed.repeat(40);
    // 512 connections from another loopback address, each asking for ~48 KB answers forty times
    // and never reading one.
    let mut hostile = Vec::new();
    for _ in 0..512 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(dns.addr).await.expect("connect");
        let _ = tokio::time::timeout(Duration::from_millis(50), s.write_all(&many)).await;
        hostile.push(s);
    }
    for i in 0..5 {
        let started = Instant::now();
        let (_, m) = tcp(dns.addr, &message("i7.big.webapp.dev.", RecordType::A)).await;
        assert_eq!(data(&m), ["10.0.0.7"], "query {i}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    drop(hostile);
}

#[tokio::test]
async fn a_write_retires_only_the_answers_of_the_names_it_touches() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &instances("stable", 3)).await;
    put_all(&etcd, &instances("busy", 3)).await;
    let port = free_port().to_string();
    let metrics = format!("127.0.0.1:{port}");
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", &metrics]);
    dns.ready().await;
    let ask = |name: &'static str| async move {
        let m = query(dns.addr, name, RecordType::A).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
    };
    let counts = || async {
        let (_, page) = dns.http_get("/metrics").await;
        (
            metric(&page, "lodestar_dns_answer_cache_hits_total"),
            metric(&page, "lodestar_dns_answer_cache_misses_total"),
        )
    };
    // (hits, misses) that one more question for the stable name adds.
    let one_more = || async {
        let before = counts().await;
        ask("stable.webapp.dev.").await;
        let after = counts().await;
        (after.0 - before.0, after.1 - before.1)
    };
    ask("stable.webapp.dev.").await; // built, not kept: asked once
    assert_eq!(
        one_more().await,
        (0.0, 1.0),
        "asked again: built again, and kept"
    );
    assert_eq!(one_more().await, (1.0, 0.0), "a hit");

    // A write to another name: the stable answer stays cached.
    let rev = etcd
        .put("/skydns/dev/webapp/busy/i9", r#"{"host":"10.9.9.9"}"#)
        .await;
    eventually(Duration::from_secs(10), "the write is answered", || async {
        let m = query(dns.addr, "i9.busy.webapp.dev.", RecordType::A)
            .await
            .ok()?;
        (data(&m) == ["10.9.9.9"]).then_some(())
    })
    .await;
    let soa = query(dns.addr, "webapp.dev.", RecordType::SOA)
        .await
        .unwrap();
    assert!(
        soa.answers
            .iter()
            .any(|r| r.data.to_string().contains(&format!(" {rev} "))),
        "the SOA serial is the new revision: {:?}",
        soa.answers
    );
    assert_eq!(one_more().await, (1.0, 0.0), "still a hit");

    // A write under the name itself retires it.
    etcd.put("/skydns/dev/webapp/stable/i0", r#"{"host":"10.8.8.8"}"#)
        .await;
    let m = eventually(
        Duration::from_secs(10),
        "the change is answered",
        || async {
            let m = query(dns.addr, "stable.webapp.dev.", RecordType::A)
                .await
                .ok()?;
            data(&m).contains(&"10.8.8.8".to_string()).then_some(m)
        },
    )
    .await;
    assert_eq!(m.answers.len(), 3);
}

/// The answer cache weighs what it holds: twenty 60 KB TXT answers, each asked twice (an answer
/// is kept on its second ask) over UDP and TCP, weigh at least the 2.4 MB of their records and TCP
/// answers (not a fixed 4 KB each).
#[tokio::test]
async fn the_answer_cache_weighs_what_it_holds() {
    let etcd = Etcd::start().await;
    let text = "t".repeat(60_000);
    let records: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("/skydns/dev/webapp/txt{i}"),
                format!(r#"{{"text":"{text}"}}"#),
            )
        })
        .collect();
    put_all(&etcd, &records).await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    for i in 0..20 {
        let name = format!("txt{i}.webapp.dev.");
        for _ in 0..2 {
            udp(dns.addr, &message(&name, RecordType::TXT)).await;
            let (len, _) = tcp(dns.addr, &message(&name, RecordType::TXT)).await;
            assert!(len > 60_000);
        }
    }
    let bytes = dns.metric("lodestar_dns_answer_cache_bytes").await.unwrap();
    assert!(bytes > 20.0 * 120_000.0, "{bytes}");
    assert!(bytes < 20.0 * 200_000.0, "{bytes}");
}

/// A question with a wildcard costs what it finds, like any other: among 100,000 records,
/// distinct names with `*` and `any` (each a cache miss) are answered on the receive loop within
/// its small budget, none is handed to a worker, and each answers exactly what matches.
#[tokio::test]
async fn wildcard_questions_cost_what_they_find() {
    let etcd = Etcd::start().await;
    let records: Vec<(String, String)> = (0..100_000)
        .map(|k| {
            (
                format!("/skydns/dev/webapp/s{}/r{k}", k % 100),
                format!(
                    r#"{{"host":"10.{}.{}.{}"}}"#,
                    k >> 16,
                    (k >> 8) & 255,
                    k & 255
                ),
            )
        })
        .collect();
    put_all(&etcd, &records).await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    // (The readiness probe asked the apex, a large answer.)
    let workers = || async {
        dns.metric("lodestar_dns_worker_answers_total")
            .await
            .expect("lodestar_dns_worker_answers_total")
    };
    let before = workers().await;
    let mut nx = 0;
    for k in (0..100_000).step_by(997) {
        let wild = if k % 2 == 0 { "*" } else { "any" };
        let m = query(dns.addr, &format!("r{k}.{wild}.webapp.dev."), RecordType::A)
            .await
            .unwrap();
        let want = format!("10.{}.{}.{}", k >> 16, (k >> 8) & 255, k & 255);
        assert_eq!(data(&m), [want], "r{k}.{wild}");
        let m = query(dns.addr, &format!("x{k}.{wild}.webapp.dev."), RecordType::A)
            .await
            .unwrap();
        nx += usize::from(m.metadata.response_code == ResponseCode::NXDomain);
    }
    assert_eq!(nx, 101, "a wildcard name that matches nothing is NXDOMAIN");
    // Labels that exist, but not in these places.
    let m = query(dns.addr, "r0.s0.*.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        workers().await,
        before,
        "no wildcard question went to a worker"
    );
    // A name with 1,000 instances is a large answer, with a wildcard or without.
    let (_, m) = tcp(dns.addr, &message("*.s7.webapp.dev.", RecordType::A)).await;
    assert_eq!(m.answers.len(), 1000);
}

/// A client asking endless distinct names (random labels, search-list expansions) costs no
/// memory: each is answered NXDOMAIN and nothing is kept, while a name asked twice is (found by
/// the soak: 100,000 such names held 145 MB until the cache started over at 256 MB).
#[tokio::test]
async fn a_flood_of_distinct_names_keeps_nothing_in_the_answer_cache() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &instances("web", 2)).await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    for i in 0..5_000 {
        let m = query(
            dns.addr,
            &format!("nx{i}.nowhere.webapp.dev."),
            RecordType::A,
        )
        .await
        .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    for _ in 0..2 {
        query(dns.addr, "web.webapp.dev.", RecordType::A)
            .await
            .unwrap();
    }
    let entries = dns
        .metric("lodestar_dns_answer_cache_entries")
        .await
        .unwrap();
    assert!(entries <= 2.0, "{entries} answers kept");
    assert!(entries >= 1.0, "the name asked twice is kept");
}
