//! Forwarding through the binary, with Knot DNS as the upstream.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

#[tokio::test]
async fn other_names_go_upstream_over_udp_and_tcp_unchanged() {
    let knot = Knot::start().await;
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, Some(knot.addr), &[]);
    dns.ready().await;
    for tcp in [false, true] {
        let q = message("www.example.org.", RecordType::A);
        let ours = exchange(dns.addr, &q, tcp).await.unwrap();
        let theirs = exchange(knot.addr, &q, tcp).await.unwrap();
        assert_eq!(data(&ours), ["192.0.2.10"], "tcp={tcp}");
        assert!(ours.metadata.authoritative, "Knot's AA flag passes through");
        assert_eq!(ours.metadata.id, q.metadata.id);
        assert_eq!(answers(&ours), answers(&theirs));
        let m = query(dns.addr, "nope.example.org.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    // Raw pass-through: apart from the id, the bytes are Knot's.
    let q = message("mail.example.org.", RecordType::A);
    let raw = q.to_vec().unwrap();
    let ours = udp_raw(dns.addr, &raw, Duration::from_secs(5))
        .await
        .unwrap();
    let theirs = udp_raw(knot.addr, &raw, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ours, theirs);
}

#[tokio::test]
async fn out_of_zone_cname_targets_are_resolved_upstream() {
    let knot = Knot::start().await;
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/site", r#"{"host":"www.example.org"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, Some(knot.addr), &[]);
    dns.ready().await;
    let m = query(dns.addr, "site.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        answers(&m),
        [
            "site.webapp.dev. CNAME www.example.org.",
            "www.example.org. A 192.0.2.10"
        ]
    );
}

#[tokio::test]
async fn next_upstream_on_timeout_then_servfail_when_all_fail() {
    let knot = Knot::start().await;
    let etcd = Etcd::start().await;
    // An upstream that takes packets and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let ups = format!("{silent_addr},{}", knot.addr);
    let ep = etcd.endpoint();
    let dns = Dns::start(&["--domain", "webapp.dev", "--etcd", &ep, "--upstream", &ups]);
    let m = query(dns.addr, "www.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(data(&m), ["192.0.2.10"], "the second upstream answered");
    // Every upstream fails: SERVFAIL, never silence.
    let dead = format!("127.0.0.1:{}", free_port());
    let ups = format!("{silent_addr},{dead}");
    let dns = Dns::start(&["--domain", "webapp.dev", "--etcd", &ep, "--upstream", &ups]);
    for tcp in [false, true] {
        let m = exchange(dns.addr, &message("www.example.org.", RecordType::A), tcp)
            .await
            .unwrap();
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "tcp={tcp}"
        );
    }
    drop(silent);
}

#[tokio::test]
async fn clients_outside_allow_recursion_are_refused() {
    let knot = Knot::start().await;
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/x", r#"{"host":"172.17.0.5"}"#)
        .await;
    // Loopback is not inside the allowed range: this client may not recurse.
    let dns = Dns::for_etcd(&etcd, Some(knot.addr), &["--allow-recursion", "10.0.0.0/8"]);
    dns.ready().await;
    let m = query(dns.addr, "www.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.recursion_available);
    let m = query(dns.addr, "x.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        data(&m),
        ["172.17.0.5"],
        "our own names are answered for everyone"
    );
    // --no-forward refuses every other name.
    let dns = Dns::for_etcd(&etcd, None, &[]);
    let m = query(dns.addr, "www.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn forwarded_answers_are_cached_with_their_ttl() {
    let knot = Knot::start().await;
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, Some(knot.addr), &["--metrics", "127.0.0.1:0"]);
    let first = query(dns.addr, "www.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(data(&first), ["192.0.2.10"]);
    let negative = query(dns.addr, "nope.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(negative.metadata.response_code, ResponseCode::NXDomain);
    drop(knot); // the upstream is gone: the cache answers
    let m = query(dns.addr, "WWW.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(data(&m), ["192.0.2.10"]);
    assert_eq!(
        m.queries[0].name().to_string(),
        "WWW.example.org.",
        "the client's question"
    );
    assert!(m.answers[0].ttl <= 300);
    let m = query(dns.addr, "nope.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "negative answers are cached too"
    );
    // Never asked before and the upstream is gone: SERVFAIL.
    let m = query(dns.addr, "mail.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let (_, metrics) = dns.http_get("/metrics").await;
    assert!(
        metrics.contains("lodestar_dns_forward_cache_hits_total 2"),
        "{metrics}"
    );
}

fn wildcard_zone(addr: &str) -> String {
    format!(
        "$ORIGIN example.org.\n$TTL 300\n@ SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 60\n\
         @ NS ns.example.org.\nns A 127.0.0.1\n* A {addr}\n"
    )
}

/// Healthy forwarding: a dead first upstream costs at most two slow queries (then it is marked
/// down and skipped), every query is answered within `--upstream-timeout` (SERVFAIL when no
/// upstream answers), and an upstream that comes back is probed back into the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_skipped_and_probed_back() {
    use std::time::Instant;
    // A UDP socket that never answers: an upstream that hangs.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let live = Knot::with_zones(&[("example.org", &wildcard_zone("192.0.2.1"))]).await;
    let live_addr = live.addr.to_string();
    let etcd = Etcd::start().await;
    let ups = format!("{silent_addr},{live_addr}");
    let ep = etcd.endpoint();
    let dns = Dns::start(&[
        "--domain",
        "webapp.dev",
        "--etcd",
        &ep,
        "--upstream",
        &ups,
        "--upstream-timeout",
        "1000",
    ]);
    dns.ready().await;
    let mut slow = 0;
    for i in 0..12 {
        let t = Instant::now();
        let m = query(dns.addr, &format!("n{i}.example.org."), RecordType::A)
            .await
            .expect("answer");
        let took = t.elapsed();
        assert_eq!(data(&m), ["192.0.2.1"], "query {i}");
        assert!(
            took < Duration::from_millis(1200),
            "query {i} took {took:?}"
        );
        if took > Duration::from_millis(300) {
            slow += 1;
        }
    }
    assert!(
        slow <= 2,
        "{slow} slow queries: the dead upstream was not skipped"
    );
    assert!(
        dns.logs().contains("upstream marked down"),
        "{}",
        dns.logs()
    );

    // Nothing answers: SERVFAIL within the timeout.
    let only_dead = Dns::start(&[
        "--domain",
        "webapp.dev",
        "--etcd",
        &ep,
        "--upstream",
        &silent_addr,
        "--upstream-timeout",
        "800",
    ]);
    only_dead.ready().await;
    let t = Instant::now();
    let m = query(only_dead.addr, "x.example.org.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        t.elapsed() < Duration::from_millis(1300),
        "{:?}",
        t.elapsed()
    );

    // An upstream that is not there yet, then comes: probed back in, used in turn.
    let later_port = crate::support::free_port();
    let ups = format!("127.0.0.1:{later_port},{live_addr}");
    let back = Dns::start(&[
        "--domain",
        "webapp.dev",
        "--etcd",
        &ep,
        "--upstream",
        &ups,
        "--upstream-timeout",
        "1000",
    ]);
    back.ready().await;
    for i in 0..4 {
        query(back.addr, &format!("b{i}.example.org."), RecordType::A)
            .await
            .expect("answer");
    }
    assert!(
        back.logs().contains("upstream marked down"),
        "{}",
        back.logs()
    );
    let _later = Knot::with_zones_on(
        &[("example.org", &wildcard_zone("192.0.2.2"))],
        1,
        later_port,
    )
    .await;
    crate::support::eventually(
        Duration::from_secs(10),
        "the upstream that came back answers",
        || {
            let addr = back.addr;
            async move {
                let n = format!("c{}.example.org.", rand_suffix());
                let m = query(addr, &n, RecordType::A).await.ok()?;
                data(&m).contains(&"192.0.2.2".to_string()).then_some(())
            }
        },
    )
    .await;
    assert!(
        back.logs().contains("upstream answers again"),
        "{}",
        back.logs()
    );
}

fn rand_suffix() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    u128::from(N.fetch_add(1, Ordering::Relaxed))
}

/// A stub zone never takes over what this server answers: not a served domain, not a parent of
/// one, not another served domain's names. A stub zone for a foreign zone is taken as before.
/// Each is logged.
#[tokio::test]
async fn a_stub_zone_never_takes_over_a_served_domain() {
    let soa = "$TTL 300\n@ SOA ns hostmaster 1 7200 3600 1209600 60\n@ NS ns\nns A 127.0.0.1\n";
    let hijack = format!("$ORIGIN dev.\n{soa}redis.webapp A 6.6.6.6\nx.other A 6.6.6.6\n");
    let example = format!("$ORIGIN example.com.\n{soa}www A 192.0.2.80\n");
    let knot = Knot::with_zones(&[("example.com", &example), ("dev", &hijack)]).await;
    let etcd = Etcd::start().await;
    let stub = format!(
        r#"{{"host":"{}","port":{}}}"#,
        knot.addr.ip(),
        knot.addr.port()
    );
    let records: Vec<(String, String)> = [
        (
            "/skydns/dev/webapp/redis/r1",
            r#"{"host":"172.17.0.5"}"#.to_string(),
        ),
        ("/skydns/dev/other/x", r#"{"host":"10.0.0.7"}"#.to_string()),
        // Hostile: the parent of both domains, a served domain, another domain's names.
        ("/skydns/dev/webapp/dns/stub/dev/h1", stub.clone()),
        ("/skydns/dev/webapp/dns/stub/dev/webapp/h2", stub.clone()),
        ("/skydns/dev/webapp/dns/stub/dev/other/x/h3", stub.clone()),
        // A foreign zone, as SkyDNS's stub zones are used.
        ("/skydns/dev/webapp/dns/stub/com/example/ns1", stub.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    put_all(&etcd, &records).await;
    let dns = Dns::start(&[
        "--domain",
        "webapp.dev,other.dev",
        "--etcd",
        &etcd.endpoint(),
        "--no-forward",
    ]);
    dns.ready().await;
    eventually(
        Duration::from_secs(10),
        "the foreign stub answers",
        || async {
            let m = query(dns.addr, "www.example.com.", RecordType::A)
                .await
                .ok()?;
            (data(&m) == ["192.0.2.80"]).then_some(())
        },
    )
    .await;
    let a = |name: &'static str| async move {
        data(&query(dns.addr, name, RecordType::A).await.expect("answer"))
    };
    assert_eq!(a("redis.webapp.dev.").await, ["172.17.0.5"]);
    assert_eq!(a("x.other.dev.").await, ["10.0.0.7"]);
    let logs = dns.logs();
    assert_eq!(logs.matches("stub zone refused").count(), 3, "{logs}");
    for why in [
        "it is a parent of the served domain",
        "it is a served domain",
        "it is inside the served domain other.dev.",
    ] {
        assert!(logs.contains(why), "{why}: {logs}");
    }
    assert!(
        logs.contains("stub zone taken") && logs.contains("example.com."),
        "{logs}"
    );
}

/// An upstream that is this server itself is refused at start, with one line naming the flag.
#[tokio::test]
async fn an_upstream_that_is_this_server_is_refused_at_start() {
    let etcd = Etcd::start().await;
    let own = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "--listen",
        own.as_str(),
        "--upstream",
        own.as_str(),
        "--domain",
        "webapp.dev",
        "--etcd",
        &etcd.endpoint(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (child, logs, _) = spawn_logged(env!("CARGO_BIN_EXE_lodestar-dns"), &args, &[]);
    let mut dns = Proc::new(child, logs);
    let status = dns.wait_exit(Duration::from_secs(10)).expect("it exits");
    assert!(!status.success());
    let logs = dns.logs();
    assert!(
        logs.contains(&format!(
            "--upstream {own} is this server's own address (--listen {own}): forwarding to it would loop"
        )),
        "{logs}"
    );
}

/// Two servers that forward to each other (or one whose upstream reaches it again some other
/// way): a question that comes back carrying a server's own mark gets SERVFAIL at once instead of
/// going round until every forward slot is taken, the loop is logged once and counted, and a
/// CNAME to an outside name in such a loop is SERVFAIL, not an empty answer.
#[tokio::test]
async fn a_forwarding_loop_is_cut_at_once_and_logged_once() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/ext", r#"{"host":"www.example.org"}"#)
        .await;
    let (pa, pb) = (free_port(), free_port());
    let (la, lb) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let ep = etcd.endpoint();
    let server = |listen: &str, upstream: &str| {
        Dns::start_with(
            &[
                "--listen",
                listen,
                "--upstream",
                upstream,
                "--domain",
                "webapp.dev",
                "--etcd",
                &ep,
                "--metrics",
                "127.0.0.1:0",
            ],
            &[],
            1,
        )
    };
    let a = server(&la, &lb);
    let b = server(&lb, &la);
    a.ready().await;
    b.ready().await;
    let t = std::time::Instant::now();
    let asked = (0..200).map(|i| {
        let addr = a.addr;
        async move {
            query(addr, &format!("n{i}.example.org."), RecordType::A)
                .await
                .map(|m| m.metadata.response_code)
        }
    });
    let codes = futures_util::future::join_all(asked).await;
    let took = t.elapsed();
    let other: Vec<_> = codes
        .iter()
        .filter(|c| c.as_ref().ok() != Some(&ResponseCode::ServFail))
        .collect();
    assert!(
        other.is_empty(),
        "{} of 200 not SERVFAIL: {:?}",
        other.len(),
        other.first()
    );
    assert!(
        took < Duration::from_secs(3),
        "200 looping names took {took:?}"
    );
    let m = query(a.addr, "ext.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    let loops = a
        .metric("lodestar_dns_forward_loops_total")
        .await
        .unwrap_or(0.0);
    assert!(loops >= 201.0, "{loops}");
    let logs = a.logs();
    assert_eq!(logs.matches("forwarding loop").count(), 1, "{logs}");
}

/// A name whose records point at many outside names: all are resolved at once within one
/// upstream timeout, not one timeout after another.
#[tokio::test]
async fn an_outside_cname_fan_out_shares_one_deadline() {
    let etcd = Etcd::start().await;
    let records: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("/skydns/dev/webapp/fan/f{i}"),
                format!(r#"{{"host":"t{i}.example.org"}}"#),
            )
        })
        .collect();
    put_all(&etcd, &records).await;
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let up = silent.local_addr().unwrap();
    let dns = Dns::for_etcd(&etcd, Some(up), &["--upstream-timeout", "500"]);
    dns.ready().await;
    let t = std::time::Instant::now();
    let m = query(dns.addr, "fan.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    let took = t.elapsed();
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::ServFail,
        "no upstream answered"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    drop(silent);
}

/// A TCP connection whose query waits on a slow upstream is never closed for newcomers: 200 new
/// connections from the same client (more than its share of 128) arrive meanwhile, and it still
/// gets its answer.
#[tokio::test]
async fn a_tcp_query_waiting_on_an_upstream_is_never_evicted() {
    let etcd = Etcd::start().await;
    // A TCP upstream that takes connections and never answers; it says when one arrives.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = silent.local_addr().unwrap();
    let (arrived, mut arrivals) = tokio::sync::mpsc::channel::<()>(8);
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
            let _ = arrived.try_send(());
        }
    });
    let dns = Dns::for_etcd(&etcd, Some(up), &["--upstream-timeout", "3000"]);
    dns.ready().await;
    let q = message("www.example.org.", RecordType::A).to_vec().unwrap();
    let addr = dns.addr;
    let waiting = tokio::spawn(async move { tcp_raw(addr, &q).await });
    arrivals
        .recv()
        .await
        .expect("the question reached the upstream");
    let mut newcomers = Vec::new();
    for _ in 0..200 {
        newcomers.push(
            tokio::net::TcpStream::connect(dns.addr)
                .await
                .expect("connect"),
        );
    }
    let answer = waiting
        .await
        .unwrap()
        .expect("an answer, not a closed connection");
    let m = hickory_proto::op::Message::from_vec(&answer).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    drop(newcomers);
    hold.abort();
}

/// An upstream that answers as a validating resolver does for a zone whose signatures fail:
/// SERVFAIL, unless the question has CD (checking disabled), then the data. (A stand-in for a
/// validator with a broken zone: installing one on the test machine starts a system resolver.)
async fn validator_with_a_bogus_zone() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use hickory_proto::op::Message;
    use hickory_proto::rr::{rdata::A, RData, Record};
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.metadata.checking_disabled = q.metadata.checking_disabled;
            r.queries = q.queries.clone();
            if q.metadata.checking_disabled {
                if let Some(question) = q.queries.first() {
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        300,
                        RData::A(A::new(192, 0, 2, 66)),
                    ));
                }
            } else {
                r.metadata.response_code = ResponseCode::ServFail;
            }
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, from).await;
            }
        }
    });
    (addr, task)
}

/// An answer asked with CD (checking disabled) is never served from the forward cache to a
/// client that wants it checked.
#[tokio::test]
async fn an_answer_asked_with_cd_is_not_served_to_clients_without_it() {
    let etcd = Etcd::start().await;
    let (upstream, validator) = validator_with_a_bogus_zone().await;
    let dns = Dns::for_etcd(&etcd, Some(upstream), &[]);
    dns.ready().await;
    let mut cd = message("www.bogus.example.", RecordType::A);
    cd.metadata.checking_disabled = true;
    let m = exchange(dns.addr, &cd, false).await.unwrap();
    assert_eq!(data(&m), ["192.0.2.66"], "with CD: the unchecked data");
    for _ in 0..3 {
        let m = query(dns.addr, "www.bogus.example.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::ServFail,
            "without CD: the validator's SERVFAIL, not the cached unchecked answer"
        );
    }
    let m = exchange(dns.addr, &cd, false).await.unwrap();
    assert_eq!(data(&m), ["192.0.2.66"]);
    validator.abort();
}

/// One UDP exchange from a given loopback address (a second client beside 127.0.0.1).
async fn exchange_from(
    from: &str,
    addr: SocketAddr,
    m: &hickory_proto::op::Message,
) -> hickory_proto::op::Message {
    let sock = tokio::net::UdpSocket::bind(format!("{from}:0"))
        .await
        .unwrap();
    sock.send_to(&m.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    hickory_proto::op::Message::from_vec(&buf[..n]).unwrap()
}

/// A forwarded answer is given again from the receive loop's answer cache: only to clients
/// that may recurse, with its TTLs counted down, and never one fetched with checking disabled
/// to a client that wants it checked.
#[tokio::test]
async fn forwarded_answers_kept_on_the_receive_loop_age_and_stay_with_their_clients() {
    let knot = Knot::start().await;
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(
        &etcd,
        Some(knot.addr),
        &[
            "--allow-recursion",
            "127.0.0.1/32",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    dns.ready().await;
    let www = message("www.example.org.", RecordType::A);
    let first = exchange_from("127.0.0.1", dns.addr, &www).await;
    assert_eq!(data(&first), ["192.0.2.10"]);
    assert_eq!(first.answers[0].ttl, 300);
    let again = exchange_from("127.0.0.1", dns.addr, &www).await;
    assert_eq!(data(&again), ["192.0.2.10"]);
    assert!(again.metadata.recursion_available);
    let other = exchange_from("127.0.0.2", dns.addr, &www).await;
    assert_eq!(
        other.metadata.response_code,
        ResponseCode::Refused,
        "a kept upstream answer is not given to a client outside --allow-recursion"
    );
    assert!(other.answers.is_empty());
    // A question asked only with checking disabled.
    let mut unchecked = message("mail.example.org.", RecordType::A);
    unchecked.metadata.checking_disabled = true;
    let m = exchange_from("127.0.0.1", dns.addr, &unchecked).await;
    assert_eq!(data(&m), ["192.0.2.25"]);
    drop(knot); // from here on, only what was kept answers
    let m = exchange_from("127.0.0.1", dns.addr, &unchecked).await;
    assert_eq!(data(&m), ["192.0.2.25"], "kept for a CD client");
    let m = exchange_from(
        "127.0.0.1",
        dns.addr,
        &message("mail.example.org.", RecordType::A),
    )
    .await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::ServFail,
        "an answer fetched with CD is not given to a client that wants it checked"
    );
    let aged = eventually(
        Duration::from_secs(10),
        "the kept answer's TTL counts down",
        || {
            let www = www.clone();
            async move {
                let m = exchange_from("127.0.0.1", dns.addr, &www).await;
                (data(&m) == ["192.0.2.10"] && m.answers[0].ttl < 300).then_some(m.answers[0].ttl)
            }
        },
    )
    .await;
    assert!(aged >= 290, "aged by seconds, not more: {aged}");
    let (_, metrics) = dns.http_get("/metrics").await;
    assert!(
        metrics.contains("lodestar_dns_forward_cache_hits_total"),
        "{metrics}"
    );
}
