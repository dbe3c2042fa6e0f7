//! The wire through the binary: EDNS, truncation, TCP, malformed packets.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::*;

/// A name with 60 instances: about 1 KB of A records, more than 512 bytes.
async fn big() -> (Etcd, Dns) {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    for i in 0..60 {
        let v = format!(r#"{{"host":"172.17.1.{i}"}}"#);
        c.put(format!("/skydns/dev/webapp/big/instance-{i}"), v, None)
            .await
            .unwrap();
    }
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    (etcd, dns)
}

#[tokio::test]
async fn udp_without_edns_fits_512_bytes_with_tc() {
    let (_etcd, dns) = big().await;
    let raw = udp_raw(
        dns.addr,
        &message("big.webapp.dev.", RecordType::A).to_vec().unwrap(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(raw.len() <= 512, "{} bytes", raw.len());
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.metadata.truncation, "TC set");
    assert!(m.edns.is_none(), "no OPT when none came in");
    // TCP carries it whole.
    let m = exchange(dns.addr, &message("big.webapp.dev.", RecordType::A), true)
        .await
        .unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
}

#[tokio::test]
async fn edns_is_echoed_and_its_size_honoured() {
    let (_etcd, dns) = big().await;
    let m = exchange(
        dns.addr,
        &message_edns("big.webapp.dev.", RecordType::A, 4096),
        false,
    )
    .await
    .unwrap();
    assert!(m.edns.is_some(), "OPT echoed");
    assert!(
        !m.metadata.truncation,
        "1 KB fits the 1232 bytes we send over UDP"
    );
    assert_eq!(m.answers.len(), 60);
    let raw = udp_raw(
        dns.addr,
        &message_edns("big.webapp.dev.", RecordType::A, 700)
            .to_vec()
            .unwrap(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(raw.len() <= 700, "{} bytes", raw.len());
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some());
    let m = exchange(
        dns.addr,
        &message_edns("redis.webapp.dev.", RecordType::A, 1232),
        false,
    )
    .await
    .unwrap();
    assert!(m.edns.is_some(), "OPT on negative answers too");
}

#[tokio::test]
async fn malformed_packets_never_stop_the_server() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/ok", r#"{"host":"172.17.0.5"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    // A header that promises a question that is not there: FORMERR with the same id.
    let mut bad = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    bad.extend_from_slice(&[7, b'b', b'r']);
    let m = Message::from_vec(
        &udp_raw(dns.addr, &bad, Duration::from_secs(5))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // A burst of random bytes, from a deterministic generator.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000 {
        let len = (next() % 600) as usize;
        let mut pkt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if i % 2 == 0 && pkt.len() >= 12 {
            pkt[2] &= 0x7f; // looks like a query: the parser has to look further
        }
        let _ = sock.send_to(&pkt, dns.addr).await;
    }
    // Over TCP too.
    let _ = tcp_raw(dns.addr, &[0xff; 40]).await;
    let m = query(dns.addr, "ok.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(data(&m), ["172.17.0.5"], "still answering");
    let m = exchange(dns.addr, &message("ok.webapp.dev.", RecordType::A), true)
        .await
        .unwrap();
    assert_eq!(data(&m), ["172.17.0.5"]);
}

/// Queries arriving faster than they are answered are taken and answered in batches (one
/// receive call takes every waiting datagram, one send call sends the batch's answers): a
/// burst of 2,000 queries from 20 clients, none waiting for an answer before sending the next,
/// mixed with malformed datagrams, forwarded names and names that need a worker. Every query
/// gets its own answer (its id, its question), the garbage none.
#[tokio::test]
async fn bursts_are_answered_query_by_query() {
    let knot = Knot::start().await;
    let etcd = Etcd::start().await;
    for i in 0..100 {
        etcd.put(
            &format!("/skydns/dev/webapp/s{i}"),
            &format!(r#"{{"host":"10.1.0.{}"}}"#, i + 1),
        )
        .await;
    }
    for k in 0..60 {
        etcd.put(
            &format!("/skydns/dev/webapp/big/i{k}"),
            &format!(r#"{{"host":"10.2.0.{}"}}"#, k + 1),
        )
        .await;
    }
    let dns = Dns::for_etcd(&etcd, Some(knot.addr), &["--threads", "1"]);
    dns.ready().await;
    let clients = 20u16;
    let each = 100u16;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let addr = dns.addr;
        tasks.spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut sent = std::collections::HashMap::new();
            for j in 0..each {
                let i = c * each + j;
                let name = match i % 10 {
                    0 => "www.example.org.".to_string(),
                    1 => "big.webapp.dev.".to_string(),
                    _ => format!("s{}.webapp.dev.", i % 100),
                };
                let mut m = message(&name, RecordType::A);
                m.metadata.id = i;
                sock.send_to(&m.to_vec().unwrap(), addr).await.unwrap();
                sent.insert(i, name);
                if j % 25 == 0 {
                    sock.send_to(b"\x00\x01garbage", addr).await.unwrap();
                }
            }
            let mut buf = vec![0u8; 65_535];
            let mut answered = 0;
            while answered < each {
                let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf))
                    .await
                    .expect("every query answered within 10 s")
                    .unwrap();
                let m = Message::from_vec(&buf[..n]).unwrap();
                let name = sent
                    .remove(&m.metadata.id)
                    .unwrap_or_else(|| panic!("an answer to a query sent once: {}", m.metadata.id));
                assert_eq!(m.queries[0].name().to_string(), name);
                assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
                assert!(!m.answers.is_empty() || m.metadata.truncation, "{name}");
                answered += 1;
            }
            answered
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r.unwrap();
    }
    assert_eq!(total, clients * each);
}

/// EDNS client subnet (RFC 7871), which resolvers send: a well-formed option is ignored (the
/// answer is the same for every client, from the cache after the first), a malformed one is
/// FORMERR, however often the name was asked before.
#[tokio::test]
async fn client_subnet_options_are_ignored_when_whole_and_refused_when_not() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/x", r#"{"host":"10.9.0.1"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let with_option = |option: &[u8]| {
        let mut q = message_edns("x.webapp.dev.", RecordType::A, 1232)
            .to_vec()
            .unwrap();
        let at = q.len() - 2;
        q[at..].copy_from_slice(&(option.len() as u16).to_be_bytes());
        q.extend_from_slice(option);
        q
    };
    // Family 1, source /24, scope 0, three address bytes.
    let whole = with_option(&[0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2]);
    for _ in 0..3 {
        let bytes = udp_raw(dns.addr, &whole, Duration::from_secs(5))
            .await
            .unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(data(&m), ["10.9.0.1"]);
        assert_eq!(m.metadata.id, u16::from_be_bytes([whole[0], whole[1]]));
    }
    let cut = with_option(&[0, 8, 0, 0]);
    let bytes = udp_raw(dns.addr, &cut, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        bytes[3] & 0x0f,
        1,
        "FORMERR for a client subnet of no length"
    );
}
