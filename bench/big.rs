//! `big`: names with 100, 1,000 and 5,000 instances and the apex of every service, each timed
//! right after a record under it changed (so Lodestar builds the answer anew), over UDP without
//! EDNS, with EDNS 1232 and over TCP, beside Knot serving the same records from a zone file.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::data::keygen;
use crate::data::{load_services, wait_answer, zone};
use crate::harness::{percentile, pid_listening_udp, pin, Server};
use crate::opts::Opts;
use crate::probe::{answered, signed_answer, timed, Wire};
use crate::shapes::shapes;
use crate::support;
use crate::support::{Etcd, Knot};
use crate::tcp::{head_of_line, hostile_tcp};

pub const BIG_SIZES: [usize; 3] = [100, 1000, 5000];

pub fn big_addr(n: usize, k: usize) -> String {
    format!("10.{}.{}.{}", n % 250, (k >> 8) & 255, k & 255)
}

/// `/skydns/dev/webapp/big<n>/i<k>` for every size.
pub async fn load_big(etcd: &Etcd) {
    let mut c = etcd.client().await;
    for n in BIG_SIZES {
        let keys: Vec<usize> = (0..n).collect();
        for chunk in keys.chunks(128) {
            let ops: Vec<etcd_client::TxnOp> = chunk
                .iter()
                .map(|k| {
                    etcd_client::TxnOp::put(
                        format!("/skydns/dev/webapp/big{n}/i{k}"),
                        format!(r#"{{"host":"{}","port":{}}}"#, big_addr(n, *k), 1000 + k),
                        None,
                    )
                })
                .collect();
            c.txn(etcd_client::Txn::new().and_then(ops))
                .await
                .expect("txn");
        }
    }
}

/// The same records for Knot: each instance, each name's A RRset, and the apex's.
pub fn big_zone(services: usize) -> String {
    big_zone_with(services, false)
}

/// The names whose RRsets Knot can sign: an RRset larger than 64 KiB in canonical form (the
/// apex's 16,100 addresses, big5000's addresses and SRV records) stops Knot's signing of the
/// whole zone ("not enough space provided"), so the zone it signs leaves them out.
pub fn signable(n: usize) -> bool {
    n * 40 < 60_000
}

/// [`big_zone`], without what Knot cannot sign when `for_signing`.
pub fn big_zone_with(services: usize, for_signing: bool) -> String {
    let mut z = zone(services);
    let mut apex = Vec::new();
    for i in 0..services {
        apex.push(format!("172.17.{}.{}", (i / 250) % 250, i % 250 + 1));
    }
    for n in BIG_SIZES {
        for k in 0..n {
            let ip = big_addr(n, k);
            z.push_str(&format!("i{k}.big{n} A {ip}\n"));
            if !for_signing || signable(n) {
                z.push_str(&format!(
                    "big{n} A {ip}\nbig{n} SRV 10 1 {} i{k}.big{n}\n",
                    1000 + k
                ));
            }
            apex.push(ip);
        }
    }
    apex.sort();
    apex.dedup();
    if !for_signing {
        for ip in apex {
            z.push_str(&format!("@ A {ip}\n"));
        }
    }
    z
}

pub async fn big(o: &Opts) {
    let etcd = Etcd::start().await;
    load_services(&etcd, o.services).await;
    load_big(&etcd).await;
    let knot = Knot::with_zones(&[("webapp.dev", &big_zone(o.services))]).await;
    let knot_pid = pid_listening_udp(knot.addr.port()).expect("knot's pid");
    pin(knot_pid, "1");
    // For queries with DO both sign with ECDSA P-256: Knot the zone ahead of time
    // (`dnssec-signing`; the RRsets it cannot sign left out), Lodestar online (`--dnssec-key`).
    let knot_signed = Knot::configured(
        &[("webapp.dev", &big_zone_with(o.services, true))],
        1,
        support::free_port(),
        "policy:\n  - id: ec\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n",
        "    dnssec-signing: on\n    dnssec-policy: ec\n",
    )
    .await;
    if let Some(pid) = pid_listening_udp(knot_signed.addr.port()) {
        pin(pid, "1");
    }
    let keys = tempfile::TempDir::new().expect("tempdir");
    let key = keygen(keys.path(), "webapp.dev");
    let lodestar = Server::binary(
        env!("CARGO_BIN_EXE_lodestar-dns"),
        &["--threads", "1", "--dnssec-key", &key],
        &etcd,
        knot.addr,
        "1",
    );
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let t = Instant::now();
    while !signed_answer(&sock, knot_signed.addr, "i4999.big5000.webapp.dev.") {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "knot did not sign the zone"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_answer(
        &sock,
        lodestar.addr,
        "i4999.big5000.webapp.dev.",
        &big_addr(5000, 4999),
        Duration::from_secs(120),
    );
    // `--baseline`: another build with the same flags, timed in the same rounds.
    let baseline = o.baseline.as_ref().map(|bin| {
        let server = Server::binary(
            bin,
            &["--threads", "1", "--dnssec-key", &key],
            &etcd,
            knot.addr,
            "1",
        );
        wait_answer(
            &sock,
            server.addr,
            "i4999.big5000.webapp.dev.",
            &big_addr(5000, 4999),
            Duration::from_secs(120),
        );
        server
    });
    if o.only_tcp {
        hostile_tcp(&lodestar, &knot).await;
        return;
    }
    let mut client = etcd.client().await;
    let rounds = o.rounds.max(1) * 5;
    println!(
        "\n### Large names right after they changed: {} services, {rounds} changes per row (median / max)\n",
        o.services
    );
    let (extra_head, extra_rule) = match baseline {
        Some(_) => (" baseline | answers (TC) |", "---:|---:|"),
        None => ("", ""),
    };
    println!(
        "| name | records | transport | Lodestar | answers (TC) | Knot | answers (TC) |{extra_head}"
    );
    println!("|---|---:|---|---:|---:|---:|---:|{extra_rule}");
    let mut version = 0usize;
    let names: Vec<(String, usize, String)> = BIG_SIZES
        .iter()
        .map(|n| (format!("big{n}.webapp.dev."), *n, format!("big{n}")))
        .chain(std::iter::once((
            "webapp.dev.".to_string(),
            o.services + BIG_SIZES.iter().sum::<usize>(),
            "big100".to_string(),
        )))
        .collect();
    for (name, records, changed) in &names {
        for wire in [Wire::Udp, Wire::Edns, Wire::Tcp, Wire::EdnsDo, Wire::TcpDo] {
            let mut ours = Vec::new();
            let mut theirs = Vec::new();
            let mut base = Vec::new();
            let (mut ours_n, mut theirs_n, mut base_n) = ((0, false), (0, false), (0, false));
            for _ in 0..rounds {
                version += 1;
                let ip = format!("10.251.{}.{}", (version / 250) % 250, version % 250 + 1);
                client
                    .put(
                        format!("/skydns/dev/webapp/{changed}/changing"),
                        format!(r#"{{"host":"{ip}"}}"#),
                        None,
                    )
                    .await
                    .expect("put");
                let probe = format!("changing.{changed}.webapp.dev.");
                let t = Instant::now();
                while !answered(&sock, lodestar.addr, &probe, RecordType::A, &ip) {
                    assert!(t.elapsed() < Duration::from_secs(10), "change not seen");
                }
                let (s, n, tc) =
                    timed(lodestar.addr, name, RecordType::A, wire).expect("lodestar answers");
                ours.push(s * 1000.0);
                ours_n = (n, tc);
                if let Some(b) = &baseline {
                    let t = Instant::now();
                    while !answered(&sock, b.addr, &probe, RecordType::A, &ip) {
                        assert!(t.elapsed() < Duration::from_secs(10), "change not seen");
                    }
                    let (s, n, tc) =
                        timed(b.addr, name, RecordType::A, wire).expect("baseline answers");
                    base.push(s * 1000.0);
                    base_n = (n, tc);
                }
                let signed = matches!(wire, Wire::EdnsDo | Wire::TcpDo);
                if signed && !(*records <= BIG_SIZES[2] && signable(*records)) {
                    continue; // Knot cannot sign this RRset: no column for it
                }
                let to = if signed { knot_signed.addr } else { knot.addr };
                let (s, n, tc) = timed(to, name, RecordType::A, wire).expect("knot answers");
                theirs.push(s * 1000.0);
                theirs_n = (n, tc);
            }
            let show = |mut v: Vec<f64>| {
                v.sort_by(|a, b| a.total_cmp(b));
                format!(
                    "{:.2} / {:.2} ms",
                    percentile(&v, 0.5),
                    v.last().copied().unwrap_or(f64::NAN)
                )
            };
            let tc = |(n, tc): (usize, bool)| format!("{n}{}", if tc { " (TC)" } else { "" });
            let (knot_time, knot_n) = if theirs.is_empty() {
                ("cannot sign an RRset > 64 KiB".to_string(), "-".to_string())
            } else {
                (show(theirs), tc(theirs_n))
            };
            let base_cols = match baseline {
                Some(_) => format!(" {} | {} |", show(base), tc(base_n)),
                None => String::new(),
            };
            println!(
                "| `{name}` | {records} | {} | {} | {} | {knot_time} | {knot_n} |{base_cols}",
                wire.label(),
                show(ours),
                tc(ours_n),
            );
        }
    }
    head_of_line(o, &etcd, &lodestar, &knot).await;
    shapes(o, &etcd, &lodestar).await;
    hostile_tcp(&lodestar, &knot).await;
}
