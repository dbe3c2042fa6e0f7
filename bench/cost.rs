//! `cost` and `cost2`: the server's CPU time per answered query (utime+stime of the whole process,
//! /proc/PID/stat, divided by the queries it answered), each server pinned to CPU 1 and dnsperf to
//! CPU 0, the same fixed rate offered to each in turn (rounds alternate); `cost2` with both CPUs
//! (`--threads 2` against Knot with two UDP workers). Then the same mixes signed (DO on every
//! query): Lodestar signing online beside Knot signing online and Knot serving a signed zone.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::data::keygen;
use crate::data::{bed, bed_on, example_org, queries, wait_loaded, zone, Bed};
use crate::harness::{pid_listening_udp, pin, rounds, row, Server};
use crate::opts::Opts;
use crate::probe::signed_answer;
use crate::support;
use crate::support::{Etcd, Knot};

pub async fn cost(o: &Opts) {
    let (mut b, e) = bed(o.services).await;
    if let Some(bin) = &o.baseline {
        let server = Server::binary(bin, &[], &e, b._upstream.addr, "1");
        wait_loaded(server.addr, o.services);
        b.baseline = Some(server);
    }
    println!(
        "\n### CPU per answered query: {} services, {} qps offered for {} s, {} rounds (one CPU: --threads 1, Knot udp-workers 1)\n",
        o.services, o.qps, o.seconds, o.rounds
    );
    cost_table(&b, o);
    if !o.plain {
        dnssec_table(&b, &e, o).await;
    }
}

/// The cost mixes with DO set on every query: Lodestar signing online with an ECDSA P-256 key
/// (`--dnssec-key`, a pair made by dnssec-keygen) beside Knot signing the same zone online
/// (`mod-onlinesign`, black lies as ours) and Knot serving it signed ahead of time
/// (`dnssec-signing: on`, automatic keys, NSEC chain). All on CPU 1, one worker each.
pub async fn dnssec_table(b: &Bed, etcd: &Etcd, o: &Opts) {
    let policy =
        "policy:\n  - id: ec\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n";
    let online_conf = format!("{policy}mod-onlinesign:\n  - id: ol\n    policy: ec\n");
    let z = zone(o.services);
    let ex = example_org();
    let online = Knot::configured(
        &[("webapp.dev", &z), ("example.org", &ex)],
        1,
        support::free_port(),
        &online_conf,
        "    module: mod-onlinesign/ol\n",
    )
    .await;
    let signed = Knot::configured(
        &[("webapp.dev", &z), ("example.org", &ex)],
        1,
        support::free_port(),
        policy,
        "    dnssec-signing: on\n    dnssec-policy: ec\n",
    )
    .await;
    let online_pid = pid_listening_udp(online.addr.port()).expect("knot's pid");
    let signed_pid = pid_listening_udp(signed.addr.port()).expect("knot's pid");
    pin(online_pid, "1");
    pin(signed_pid, "1");
    // Knot signs the zone in the background: wait until the last name is signed.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let last = format!("svc{}.webapp.dev.", o.services - 1);
    let t = Instant::now();
    while !signed_answer(&sock, signed.addr, &last) {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "knot did not sign the zone"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let key = keygen(b.dir.path(), "webapp.dev");
    let lodestar = Server::binary(
        env!("CARGO_BIN_EXE_lodestar-dns"),
        &["--threads", "1", "--dnssec-key", &key],
        etcd,
        b._upstream.addr,
        "1",
    );
    wait_loaded(lodestar.addr, o.services);
    println!("\n### The same with DO on every query (dnsperf -D): signed answers, ECDSA P-256\n");
    println!("| mix | server | answered | lost | avg latency | CPU per query (user part) | answers per CPU-second | client CPU per query | / Knot online | / Knot pre-signed |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let servers: Vec<(&str, SocketAddr, u32)> = vec![
        ("Knot online (mod-onlinesign)", online.addr, online_pid),
        ("Knot pre-signed (dnssec-signing)", signed.addr, signed_pid),
        ("Lodestar", lodestar.addr, lodestar.pid()),
    ];
    for mix in ["names", "srv", "nxdomain"] {
        let file = queries(b.dir.path(), mix, o.services);
        let runs = rounds(&servers, &file, o, true);
        let online_cost = row(&runs[servers[0].0]).1;
        let signed_cost = row(&runs[servers[1].0]).1;
        for (server, _, _) in &servers {
            let (cells, cpu) = row(&runs[server]);
            println!(
                "| {mix} | {server} | {cells} | {:.2}x | {:.2}x |",
                cpu / online_cost,
                cpu / signed_cost
            );
        }
    }
}

pub async fn cost2(o: &Opts) {
    let (b, _e) = bed_on(o.services, "0,1", 2).await;
    println!(
        "\n### CPU per answered query on both CPUs: {} services, {} qps offered for {} s, {} rounds (--threads 2, Knot udp-workers 2; dnsperf on CPU 0 too)\n",
        o.services, o.qps, o.seconds, o.rounds
    );
    cost_table(&b, o);
}

pub fn cost_table(b: &Bed, o: &Opts) {
    println!(
        "| mix | server | answered | lost | avg latency | CPU per query (user part) | answers per CPU-second | client CPU per query | / Knot |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut servers: Vec<(&str, SocketAddr, u32)> = vec![
        ("Knot", b.knot.addr, b.knot_pid),
        ("Lodestar", b.lodestar.addr, b.lodestar.pid()),
    ];
    if let Some(base) = &b.baseline {
        servers.push(("baseline", base.addr, base.pid()));
    }
    for mix in ["names", "srv", "nxdomain", "forward10"] {
        let file = queries(b.dir.path(), mix, o.services);
        let runs = rounds(&servers, &file, o, false);
        let knot = row(&runs["Knot"]).1;
        for (server, _, _) in &servers {
            let (cells, cpu) = row(&runs[server]);
            let shown = if *server == "Knot" {
                String::new()
            } else {
                format!("{:.2}x", cpu / knot)
            };
            println!("| {mix} | {server} | {cells} | {shown} |");
        }
    }
}
