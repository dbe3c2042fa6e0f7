//! `wildcards`: wildcard questions over a large domain cost what they find, not what etcd holds
//! (the largest values etcd takes, many keys), beside Knot and, with `--baseline`, another build.

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::data::{load_services, wait_answer};
use crate::harness::{cpu_seconds, Server};
use crate::opts::Opts;
use crate::probe::{timed, Wire};
use crate::support;
use crate::support::{Etcd, Knot};

/// Distinct names with a wildcard (each a cache miss, as a client that varies them makes them)
/// beside plain misses, among 100,000 records under `huge` (`huge_records`): each server's CPU
/// per answer, `n` names of each kind asked one after another.
pub fn wildcards(servers: &[(&str, &Server)], n: usize) {
    type Shape = (&'static str, fn(usize) -> String);
    let shapes: [Shape; 5] = [
        ("a plain miss", |k| format!("m{k}.webapp.dev.")),
        ("`*` and an instance's label", |k| {
            format!("i{}.*.webapp.dev.", k * 7 % 100_000)
        }),
        ("`any` and an instance's label", |k| {
            format!("i{}.any.webapp.dev.", k * 7 % 100_000)
        }),
        ("`*` and a label nobody has", |k| {
            format!("x{k}.*.webapp.dev.")
        }),
        // Eleven labels, each `*` or `any` by a bit of k: 2,048 distinct names.
        ("wildcards only, deeper than any record", |k| {
            let labels: String = (0..11)
                .map(|b| if k >> b & 1 == 1 { "*." } else { "any." })
                .collect();
            format!("{labels}webapp.dev.")
        }),
    ];
    println!("\n### Distinct names with a wildcard beside plain misses ({n} names each, one at a time; server CPU per answer)\n");
    let heads: Vec<String> = servers.iter().map(|(l, _)| format!(" {l} |")).collect();
    println!(
        "| question | first name | answers (of the last) |{}",
        heads.concat()
    );
    println!("|---|---|---:|{}", "---:|".repeat(servers.len()));
    for (label, name) in shapes {
        let mut cells = String::new();
        let mut last = 0;
        for (_, server) in servers {
            let pid = server.pid();
            let (u0, s0) = cpu_seconds(pid);
            for k in 0..n {
                last = timed(server.addr, &name(k), RecordType::A, Wire::Udp)
                    .map_or(0, |(_, answers, _)| answers);
            }
            let (u1, s1) = cpu_seconds(pid);
            cells.push_str(&format!(
                " {:.1} us |",
                (u1 + s1 - u0 - s0) / n as f64 * 1e6
            ));
        }
        println!("| {label} | `{}` | {last} |{cells}", name(0));
    }
}

/// 100,000 records under one name: `/skydns/dev/webapp/huge/i<k>`.
pub fn huge_records() -> Vec<(String, String)> {
    (0..100_000)
        .map(|k| {
            (
                format!("/skydns/dev/webapp/huge/i{k}"),
                format!(
                    r#"{{"host":"10.{}.{}.{}"}}"#,
                    100 + (k >> 16),
                    (k >> 8) & 255,
                    k & 255
                ),
            )
        })
        .collect()
}

/// `wildcards` alone: this build (and `--baseline`'s, beside it) over `--services` services and
/// the 100,000 records under `huge`, each server pinned to CPU 1.
pub async fn wildcard_bench(o: &Opts) {
    let etcd = Etcd::start().await;
    load_services(&etcd, o.services).await;
    support::put_all(&etcd, &huge_records()).await;
    let knot = Knot::start().await;
    let ours = Server::binary(
        env!("CARGO_BIN_EXE_lodestar-dns"),
        &["--threads", "1"],
        &etcd,
        knot.addr,
        "1",
    );
    let base = o
        .baseline
        .as_ref()
        .map(|b| Server::binary(b, &["--threads", "1"], &etcd, knot.addr, "1"));
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let mut servers = vec![("Lodestar", &ours)];
    if let Some(b) = &base {
        servers.push(("baseline", b));
    }
    for (_, s) in &servers {
        wait_answer(
            &sock,
            s.addr,
            "i99999.huge.webapp.dev.",
            "10.101.134.159",
            Duration::from_secs(60),
        );
    }
    wildcards(&servers, 2000);
}
