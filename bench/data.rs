//! What the servers under test hold: N services in etcd (`/skydns/dev/webapp/svc<i>/svc<i>-1`)
//! and the same names in a zone file for Knot, the query files dnsperf sends, and the bed (etcd,
//! Knot as upstream, lodestar-dns and Knot serving the same names) most benchmarks start from.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::{pid_listening_udp, pin, Server};
use crate::probe::answered;
use crate::support::{Etcd, Knot};

/// Writes `n` services into etcd: `/skydns/dev/webapp/svc<i>/svc<i>-1`, 8 transactions in flight.
pub async fn load_services(etcd: &Etcd, n: usize) {
    let started = Instant::now();
    let chunks: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(128)
        .map(<[usize]>::to_vec)
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for part in chunks.chunks(chunks.len().div_ceil(8).max(1)) {
        let part = part.to_vec();
        let mut c = etcd.client().await;
        tasks.spawn(async move {
            for chunk in part {
                let ops: Vec<etcd_client::TxnOp> = chunk
                    .iter()
                    .map(|i| {
                        etcd_client::TxnOp::put(
                            format!("/skydns/dev/webapp/svc{i}/svc{i}-1"),
                            record(*i, 0),
                            None,
                        )
                    })
                    .collect();
                c.txn(etcd_client::Txn::new().and_then(ops))
                    .await
                    .expect("txn");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    eprintln!(
        "loaded {n} services into etcd in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

pub fn record(i: usize, version: usize) -> String {
    format!(
        r#"{{"host":"172.17.{}.{}","port":{}}}"#,
        (i / 250) % 250,
        i % 250 + 1,
        8000 + version % 1000
    )
}

/// The same names as a zone file for Knot.
pub fn zone(n: usize) -> String {
    let mut z = String::with_capacity(n * 120);
    z.push_str("$ORIGIN webapp.dev.\n$TTL 30\n@ SOA ns.dns.webapp.dev. hostmaster.webapp.dev. 1 28800 7200 604800 30\n@ NS ns.dns\nns.dns A 127.0.0.1\n");
    for i in 0..n {
        let ip = format!("172.17.{}.{}", (i / 250) % 250, i % 250 + 1);
        z.push_str(&format!(
            "svc{i} A {ip}\nsvc{i} SRV 10 100 8000 svc{i}-1.svc{i}\nsvc{i}-1.svc{i} A {ip}\n"
        ));
    }
    z
}

pub const EXAMPLE_ORG: usize = 1000;

pub fn example_org() -> String {
    let mut z = String::from("$ORIGIN example.org.\n$TTL 300\n@ SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 60\n@ NS ns\nns A 127.0.0.1\n");
    for i in 0..EXAMPLE_ORG {
        z.push_str(&format!("host{i} A 192.0.2.{}\n", i % 250 + 1));
    }
    z
}

/// A query file for dnsperf: `mix` is names, srv, nxdomain or forward10.
pub fn queries(dir: &Path, mix: &str, n: usize) -> std::path::PathBuf {
    let mut out = String::new();
    for line in mix_lines(mix, n, 100_000) {
        out.push_str(&line);
        out.push('\n');
    }
    let path = dir.join(format!("{mix}.txt"));
    std::fs::write(&path, out).expect("query file");
    path
}

/// `count` questions of a mix over `n` services, as dnsperf lines (`name TYPE`), always the
/// same ones: names (70% `svc<i>`, 30% an instance), srv, nxdomain, forward10 (names with 10%
/// of `example.org` names, which the server forwards).
pub fn mix_lines(mix: &str, n: usize, count: usize) -> Vec<String> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|_| {
            let i = next() as usize % n;
            let roll = next() % 100;
            match mix {
                "srv" => format!("svc{i}.webapp.dev SRV"),
                "nxdomain" => format!("nope{i}.webapp.dev A"),
                "forward10" if roll < 10 => format!("host{}.example.org A", i % EXAMPLE_ORG),
                _ if roll < 70 => format!("svc{i}.webapp.dev A"),
                _ => format!("svc{i}-1.svc{i}.webapp.dev A"),
            }
        })
        .collect()
}

pub struct Bed {
    pub _etcd: Etcd,
    pub _upstream: Knot,
    pub knot: Knot,
    pub knot_pid: u32,
    pub lodestar: Server,
    /// `--baseline`: another lodestar-dns measured beside this one.
    pub baseline: Option<Server>,
    pub dir: tempfile::TempDir,
}

pub async fn bed(services: usize) -> (Bed, Etcd) {
    bed_on(services, "1", 1).await
}

/// The bed with both servers on `cpus`, Lodestar with `threads` receive loops and Knot with as
/// many UDP workers.
pub async fn bed_on(services: usize, cpus: &str, threads: usize) -> (Bed, Etcd) {
    let etcd = Etcd::start().await;
    load_services(&etcd, services).await;
    let ex = example_org();
    let upstream = Knot::with_zones(&[("example.org", &ex)]).await;
    if let Some(pid) = pid_listening_udp(upstream.addr.port()) {
        pin(pid, "0");
    }
    let z = zone(services);
    let knot = Knot::with_zones_workers(&[("webapp.dev", &z), ("example.org", &ex)], threads).await;
    let knot_pid = pid_listening_udp(knot.addr.port()).expect("knot's pid");
    pin(knot_pid, cpus);
    let lodestar = Server::lodestar_threads(&etcd, upstream.addr, cpus, threads);
    wait_loaded(lodestar.addr, services);
    let etcd2 = etcd_handle(&etcd);
    (
        Bed {
            _etcd: etcd,
            _upstream: upstream,
            knot,
            knot_pid,
            lodestar,
            baseline: None,
            dir: tempfile::TempDir::new().expect("tempdir"),
        },
        etcd2,
    )
}

/// Waits (at most 120 s) until the server at `addr` answers the last of `services` services.
pub fn wait_loaded(addr: SocketAddr, services: usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let n = services - 1;
    let ip = format!("172.17.{}.{}", (n / 250) % 250, n % 250 + 1);
    let name = format!("svc{n}.webapp.dev.");
    wait_answer(&sock, addr, &name, &ip, Duration::from_secs(120));
}

/// Polls `name` A at `addr` on `sock` until one answer is `want`; panics after `deadline`.
pub fn wait_answer(sock: &UdpSocket, addr: SocketAddr, name: &str, want: &str, deadline: Duration) {
    let t = Instant::now();
    while !answered(sock, addr, name, RecordType::A, want) {
        assert!(
            t.elapsed() < deadline,
            "{name} did not answer {want} within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A second handle on the same etcd (does not own the process).
pub fn etcd_handle(e: &Etcd) -> Etcd {
    Etcd::attach(e.port)
}

/// An ECDSA P-256 key pair for `zone` made by dnssec-keygen in `dir`: its base name.
pub fn keygen(dir: &Path, zone: &str) -> String {
    let out = Command::new("dnssec-keygen")
        .args(["-q", "-K"])
        .arg(dir)
        .args(["-a", "ECDSAP256SHA256", "-f", "KSK", zone])
        .output()
        .expect("dnssec-keygen runs (apt-get install bind9-utils)");
    dir.join(String::from_utf8_lossy(&out.stdout).trim())
        .display()
        .to_string()
}
