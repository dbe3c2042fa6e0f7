//! Extended DNS Errors (RFC 8914) through the binary, read with Debian's `dig` (BIND 9.18, which
//! prints `; EDE: 3 (Stale Answer)`): a stale view's answers (EDE 3, TTLs capped at
//! `--stale-ttl`, counted), REFUSED outside `--allow-recursion` (18), SERVFAIL when no upstream
//! answers (22), SERVFAIL before the first snapshot (14), and questions shed under load (0,
//! "overloaded"). Real etcd, Knot as the upstream.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// `dig`'s output for `name`/`qtype` at `addr` (EDNS on, as dig sends it by default).
fn dig(addr: SocketAddr, name: &str, qtype: &str) -> String {
    let out = Command::new("dig")
        .args([
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            name,
            qtype,
            "+tries=1",
            "+time=5",
        ])
        .output()
        .expect("dig runs (apt-get install dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The TTL of the first answer record in `dig`'s output.
fn first_ttl(out: &str) -> Option<u32> {
    out.lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION:"))
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|t| t.parse().ok())
}

/// etcd goes away: every answer from the served domain says it is stale (EDE 3) with its TTL
/// at most `--stale-ttl`, negative answers too, and the metric counts them; names forwarded
/// upstream carry no EDE. etcd back: the same names answer without it, with their TTLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_view_says_so_and_brings_clients_back_soon() {
    let mut etcd = Etcd::start().await;
    let knot = Knot::start().await;
    etcd.put(
        "/skydns/dev/webapp/redis/r1",
        r#"{"host":"10.0.0.1","ttl":300}"#,
    )
    .await;
    let dns = Dns::for_etcd(
        &etcd,
        Some(knot.addr),
        &["--stale-ttl", "4", "--metrics", "127.0.0.1:0"],
    );
    dns.ready().await;
    until_a_contains(&dns, "redis.webapp.dev.", "10.0.0.1").await;
    // Fresh: no EDE, the record's TTL; asked twice, so the second comes from the cache.
    for _ in 0..2 {
        let fresh = dig(dns.addr, "redis.webapp.dev", "A");
        assert!(!fresh.contains("EDE"), "{fresh}");
        assert_eq!(first_ttl(&fresh), Some(300), "{fresh}");
    }
    etcd.kill();
    eventually(Duration::from_secs(20), "the view goes stale", || async {
        (dns.metric("lodestar_dns_view_stale").await == Some(1.0)).then_some(())
    })
    .await;
    // Built (first ask) and from the cache (second): both stale.
    for _ in 0..2 {
        let stale = dig(dns.addr, "redis.webapp.dev", "A");
        assert!(stale.contains("; EDE: 3 (Stale Answer)"), "{stale}");
        assert!(stale.contains("10.0.0.1"), "{stale}");
        assert_eq!(first_ttl(&stale), Some(4), "capped at --stale-ttl: {stale}");
    }
    let nx = dig(dns.addr, "nope.webapp.dev", "A");
    assert!(
        nx.contains("NXDOMAIN") && nx.contains("; EDE: 3 (Stale Answer)"),
        "{nx}"
    );
    let upstream = dig(dns.addr, "www.example.org", "A");
    assert!(
        upstream.contains("status: NOERROR") && !upstream.contains("EDE"),
        "{upstream}"
    );
    assert!(dns.metric("lodestar_dns_stale_answers_total").await >= Some(3.0));
    etcd.restart().await;
    eventually(Duration::from_secs(30), "fresh again, no EDE", || async {
        let out = dig(dns.addr, "redis.webapp.dev", "A");
        (!out.contains("EDE") && first_ttl(&out) == Some(300)).then_some(())
    })
    .await;
}

/// REFUSED for a client outside `--allow-recursion`: EDE 18 (Prohibited); with forwarding off:
/// EDE 20 (Not Authoritative); SERVFAIL because no upstream answered: EDE 22; SERVFAIL before
/// the first snapshot: EDE 14 (Not Ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_failures_say_why() {
    let etcd = Etcd::start().await;
    let knot = Knot::start().await;
    let prohibited = Dns::for_etcd(&etcd, Some(knot.addr), &["--allow-recursion", "10.0.0.0/8"]);
    prohibited.ready().await;
    let out = dig(prohibited.addr, "www.example.org", "A");
    assert!(
        out.contains("status: REFUSED") && out.contains("; EDE: 18 (Prohibited)"),
        "{out}"
    );

    let no_forward = Dns::for_etcd(&etcd, None, &[]);
    no_forward.ready().await;
    let out = dig(no_forward.addr, "www.example.org", "A");
    assert!(
        out.contains("status: REFUSED") && out.contains("; EDE: 20 (Not Authoritative)"),
        "{out}"
    );

    // An upstream nobody listens on.
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let unreachable = Dns::for_etcd(&etcd, Some(dead), &["--upstream-timeout", "300"]);
    unreachable.ready().await;
    let out = dig(unreachable.addr, "www.example.org", "A");
    assert!(
        out.contains("status: SERVFAIL") && out.contains("; EDE: 22 (No Reachable Authority)"),
        "{out}"
    );

    let port = free_port();
    let not_ready = Dns::start(&[
        "--domain",
        "webapp.dev",
        "--etcd",
        &format!("http://127.0.0.1:{port}"),
        "--no-forward",
    ]);
    let out = dig(not_ready.addr, "anything.webapp.dev", "A");
    assert!(
        out.contains("status: SERVFAIL") && out.contains("; EDE: 14 (Not Ready)"),
        "{out}"
    );
}

/// More questions waiting on upstreams than the server takes at once (1,024): the rest are
/// REFUSED at once with EDE 0 and the text "overloaded". The upstream is a socket of the test's
/// that reads and never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_shed_under_load_say_overloaded() {
    let etcd = Etcd::start().await;
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dns = Dns::for_etcd(
        &etcd,
        Some(silent.local_addr().unwrap()),
        &["--upstream-timeout", "20000"],
    );
    dns.ready().await;
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Batches of 100 (the socket's buffer would drop a burst of thousands); only the shed
    // questions are answered: the others wait on the silent upstream for 20 s.
    let mut sent: u16 = 0;
    let mut shed: Vec<u16> = Vec::new();
    let mut buf = [0u8; 1500];
    while shed.len() < 10 && sent < 4_000 {
        for _ in 0..100 {
            let mut m = message_edns(
                &format!("q{sent}.example.org."),
                hickory_proto::rr::RecordType::A,
                1232,
            );
            m.metadata.id = sent;
            client
                .send_to(&m.to_vec().unwrap(), dns.addr)
                .expect("send");
            sent += 1;
        }
        while let Ok((n, _)) = client.recv_from(&mut buf) {
            let m = hickory_proto::op::Message::from_vec(&buf[..n]).expect("a DNS message");
            assert_eq!(
                m.metadata.response_code,
                hickory_proto::op::ResponseCode::Refused
            );
            let ede = m
                .edns
                .as_ref()
                .and_then(|e| e.option(hickory_proto::rr::rdata::opt::EdnsCode::Unknown(15)))
                .cloned();
            assert_eq!(
                ede,
                Some(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                    15,
                    [&[0u8, 0][..], b"overloaded"].concat()
                ))
            );
            shed.push(m.metadata.id);
        }
    }
    assert!(shed.len() >= 10, "{} shed of {sent}", shed.len());
    // Two receive threads take questions in any order: which ones are shed is not fixed, how
    // many are kept waiting is.
    assert!(
        usize::from(sent) - shed.len() >= 1024,
        "fewer than 1,024 kept waiting: {} shed of {sent}",
        shed.len()
    );
}
