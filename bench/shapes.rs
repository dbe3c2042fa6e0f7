//! bench-big's table of answer shapes: the record types and name forms of real clusters (SRV with
//! its additional section, wildcards, CNAME chains, NXDOMAIN and NODATA), each beside Knot.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::data::wait_answer;
use crate::harness::{percentile, Server};
use crate::opts::Opts;
use crate::probe::{answered_srv_port, timed, Wire};
use crate::support;
use crate::support::Etcd;
use crate::wildcards::{huge_records, wildcards};

/// The shapes that stalled earlier versions, each timed right after a change under it.
pub async fn shapes(o: &Opts, etcd: &Etcd, lodestar: &Server) {
    let mut records = huge_records();
    // Every container behind one host address (one --ip): 600 records, one PTR.
    records.extend((0..600).map(|k| {
        (
            format!("/skydns/dev/webapp/shared/s{k}"),
            format!(r#"{{"host":"10.77.0.1","port":{}}}"#, 2000 + k),
        )
    }));
    // CNAME fan-outs: `width` records a level, each naming the next level, 9 levels.
    for width in [4, 5] {
        for level in 0..9 {
            for i in 0..width {
                records.push((
                    format!("/skydns/dev/webapp/f{width}l{level}/r{i}"),
                    format!(r#"{{"host":"f{width}l{}.webapp.dev"}}"#, level + 1),
                ));
            }
        }
        records.push((
            format!("/skydns/dev/webapp/f{width}l9/end"),
            r#"{"host":"10.9.9.9"}"#.into(),
        ));
    }
    records.push((
        "/skydns/dev/webapp/megatxt/t".into(),
        format!(r#"{{"text":"{}"}}"#, "x".repeat(1 << 20)),
    ));
    support::put_all(etcd, &records).await;
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    wait_answer(
        &sock,
        lodestar.addr,
        "i99999.huge.webapp.dev.",
        "10.101.134.159",
        Duration::from_secs(60),
    );
    let rounds = o.rounds.max(1) * 3;
    println!("\n### Hostile shapes, each right after a change under it ({rounds} changes per row; median / max)\n");
    println!("| shape | query | transport | Lodestar | answers (TC) |");
    println!("|---|---|---|---:|---:|");
    let rows: [(&str, &str, RecordType, &str); 8] = [
        (
            "SRV of a name with 5,000 instances",
            "big5000.webapp.dev.",
            RecordType::SRV,
            "big5000",
        ),
        (
            "100,000 records under one name",
            "huge.webapp.dev.",
            RecordType::A,
            "huge",
        ),
        (
            "PTR of an address shared by 600 records",
            "1.0.77.10.in-addr.arpa.",
            RecordType::PTR,
            "shared",
        ),
        (
            "CNAME fan-out, 4 wide, 9 deep (36 records)",
            "f4l0.webapp.dev.",
            RecordType::A,
            "f4l0",
        ),
        (
            "CNAME fan-out, 5 wide, 9 deep (45 records)",
            "f5l0.webapp.dev.",
            RecordType::A,
            "f5l0",
        ),
        (
            "a 1 MB TXT value",
            "megatxt.webapp.dev.",
            RecordType::TXT,
            "megatxt",
        ),
        ("the apex, SRV", "webapp.dev.", RecordType::SRV, "big100"),
        ("the apex, A", "webapp.dev.", RecordType::A, "huge"),
    ];
    let mut version = 0usize;
    let mut client = etcd.client().await;
    for (label, name, qtype, changed) in rows {
        for wire in [Wire::Udp, Wire::Tcp] {
            let mut times = Vec::new();
            let mut shown = (0, false);
            for _ in 0..rounds {
                version += 1;
                // The PTR row changes a record carrying the shared address.
                let ip = if changed == "shared" {
                    "10.77.0.1".to_string()
                } else {
                    format!("10.253.{}.{}", version / 250 % 250, version % 250 + 1)
                };
                let key = format!("/skydns/dev/webapp/{changed}/changing");
                client
                    .put(
                        key.as_str(),
                        format!(r#"{{"host":"{ip}","port":{version}}}"#),
                        None,
                    )
                    .await
                    .expect("put");
                let probe = format!("changing.{changed}.webapp.dev.");
                let t = Instant::now();
                while !answered_srv_port(&sock, lodestar.addr, &probe, version) {
                    assert!(t.elapsed() < Duration::from_secs(10), "change not seen");
                }
                let (s, n, tc) = timed(lodestar.addr, name, qtype, wire).expect("an answer");
                times.push(s * 1000.0);
                shown = (n, tc);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            println!(
                "| {label} | `{name} {qtype}` | {} | {:.2} / {:.2} ms | {}{} |",
                wire.label(),
                percentile(&times, 0.5),
                times.last().copied().unwrap_or(f64::NAN),
                shown.0,
                if shown.1 { " (TC)" } else { "" }
            );
        }
    }
    wildcards(&[("Lodestar", lodestar)], 2000);
}
