//! Lodestar benchmarks, side by side with Knot DNS. Every server listens on 127.0.0.1, except in
//! `failover`, whose hosts are network namespaces it creates (10.88.<k>.101..103) and removes.
//!
//! ```text
//! cargo bench --bench lodestar -- cost         [--services N] [--qps Q] [--seconds S] [--rounds R]
//! cargo bench --bench lodestar -- reads        [--services N] [--qps Q] [--seconds S]
//! cargo bench --bench lodestar -- propagation  [--writes W]
//! cargo bench --bench lodestar -- scale        [--sizes 100000,1000000]
//! cargo bench --bench lodestar -- churn        [--services N] [--qps Q] [--seconds S] [--rounds R] [--baseline PATH]
//! cargo bench --bench lodestar -- big          [--services N] [--seconds S] [--rounds R]
//! cargo bench --bench lodestar -- cost2        [--services N] [--qps Q] [--seconds S] [--rounds R]
//! cargo bench --bench lodestar -- tcp          (bench-big's last table alone)
//! cargo bench --bench lodestar -- wildcards    [--services N] [--baseline PATH]   (bench-big's wildcard table alone)
//! cargo bench --bench lodestar -- failover     [--rounds R]   (three hosts in network namespaces)
//! cargo bench --bench lodestar -- all
//! ```
//!
//! Cost: etcd holds N services (`/skydns/dev/webapp/svc<i>/svc<i>-1`) and Knot serves the same
//! names from a zone file; each server is pinned to CPU 1 and dnsperf to CPU 0, the same fixed rate
//! is offered to each in turn (rounds alternate), and the server's CPU time (utime+stime of the
//! whole process, /proc/PID/stat) is divided by the queries it answered. `cost2` is the same with
//! both CPUs: `lodestar-dns --threads 2` against Knot with two UDP workers.
//!
//! Big: names with 100, 1,000 and 5,000 instances and the apex of every service, each timed right
//! after a record under it changed (so Lodestar builds the answer anew), over UDP without EDNS,
//! with EDNS 1232 and over TCP, beside Knot serving the same records from a zone file; then the
//! latency of small names from a steady client while other clients ask the large names and they
//! change 10 times a second.

#[path = "../tests/it/support.rs"]
mod support;

#[path = "../tests/it/netns.rs"]
mod netns;

mod failover;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use support::{Etcd, Knot};

struct Opts {
    services: usize,
    qps: u32,
    seconds: u32,
    rounds: usize,
    writes: usize,
    sizes: Vec<usize>,
    /// Another lodestar-dns binary to measure beside this one (`--baseline PATH`).
    baseline: Option<String>,
    /// `tcp`: only bench-big's last table.
    only_tcp: bool,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let cmd = args.first().cloned().unwrap_or_else(|| "all".into());
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let opts = Opts {
        services: flag("--services")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
        qps: flag("--qps").and_then(|v| v.parse().ok()).unwrap_or(20_000),
        seconds: flag("--seconds").and_then(|v| v.parse().ok()).unwrap_or(10),
        rounds: flag("--rounds").and_then(|v| v.parse().ok()).unwrap_or(3),
        writes: flag("--writes").and_then(|v| v.parse().ok()).unwrap_or(200),
        sizes: flag("--sizes")
            .map(|v| v.split(',').filter_map(|s| s.parse().ok()).collect())
            .unwrap_or_else(|| vec![100_000, 1_000_000]),
        baseline: flag("--baseline"),
        only_tcp: false,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match cmd.as_str() {
            "cost" => cost(&opts).await,
            "reads" => reads(&opts).await,
            "propagation" => propagation(&opts).await,
            "scale" => scale(&opts).await,
            "churn" => churn(&opts).await,
            "big" => big(&opts).await,
            "tcp" => big(&Opts { only_tcp: true, ..opts }).await,
            "cost2" => cost2(&opts).await,
            "wildcards" => wildcard_bench(&opts).await,
            "failover" => failover::failover(&opts).await,
            "all" => {
                cost(&opts).await;
                reads(&opts).await;
                propagation(&opts).await;
                churn(&opts).await;
                big(&opts).await;
                cost2(&opts).await;
                scale(&opts).await;
                failover::failover(&opts).await;
            }
            other => {
                eprintln!(
                    "unknown benchmark {other:?}: cost, cost2, reads, propagation, scale, churn, big, tcp, wildcards, failover or all"
                );
                std::process::exit(2);
            }
        }
    });
}

// ------------------------------------------------------------------ set-up

/// Writes `n` services into etcd: `/skydns/dev/webapp/svc<i>/svc<i>-1`, 8 transactions in flight.
async fn load_services(etcd: &Etcd, n: usize) {
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

fn record(i: usize, version: usize) -> String {
    format!(
        r#"{{"host":"172.17.{}.{}","port":{}}}"#,
        (i / 250) % 250,
        i % 250 + 1,
        8000 + version % 1000
    )
}

/// The same names as a zone file for Knot.
fn zone(n: usize) -> String {
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

const EXAMPLE_ORG: usize = 1000;

fn example_org() -> String {
    let mut z = String::from("$ORIGIN example.org.\n$TTL 300\n@ SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 60\n@ NS ns\nns A 127.0.0.1\n");
    for i in 0..EXAMPLE_ORG {
        z.push_str(&format!("host{i} A 192.0.2.{}\n", i % 250 + 1));
    }
    z
}

/// A query file for dnsperf: `mix` is names, srv, nxdomain or forward10.
fn queries(dir: &Path, mix: &str, n: usize) -> std::path::PathBuf {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = String::new();
    for _ in 0..100_000 {
        let i = next() as usize % n;
        let roll = next() % 100;
        let line = match mix {
            "srv" => format!("svc{i}.webapp.dev SRV"),
            "nxdomain" => format!("nope{i}.webapp.dev A"),
            "forward10" if roll < 10 => format!("host{}.example.org A", i % EXAMPLE_ORG),
            _ if roll < 70 => format!("svc{i}.webapp.dev A"),
            _ => format!("svc{i}-1.svc{i}.webapp.dev A"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let path = dir.join(format!("{mix}.txt"));
    std::fs::write(&path, out).expect("query file");
    path
}

/// `lodestar-dns` pinned to `cpu`, as its whole life (so that its runtime sizes itself to one CPU).
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn lodestar(etcd: &Etcd, upstream: SocketAddr, cpu: &str) -> Server {
        Server::lodestar_threads(etcd, upstream, cpu, 1)
    }

    fn lodestar_threads(etcd: &Etcd, upstream: SocketAddr, cpu: &str, threads: usize) -> Server {
        let threads = threads.to_string();
        Server::binary(
            env!("CARGO_BIN_EXE_lodestar-dns"),
            &["--threads", &threads],
            etcd,
            upstream,
            cpu,
        )
    }

    /// Any lodestar-dns binary (a baseline to compare with), with `extra` flags.
    fn binary(bin: &str, extra: &[&str], etcd: &Etcd, upstream: SocketAddr, cpu: &str) -> Server {
        let ep = etcd.endpoint();
        let up = upstream.to_string();
        let mut args: Vec<String> = ["-c", cpu, bin].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(
            [
                "--listen",
                "127.0.0.1:0",
                "--domain",
                "webapp.dev",
                "--etcd",
                &ep,
                "--upstream",
                &up,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        let (child, _logs, rx) =
            support::spawn_logged("taskset", &args, &[("RUST_LOG", "warn,lodestar_dns=info")]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("lodestar-dns started");
            if let Some(addr) = v
                .get("udp")
                .and_then(|a| a.as_str())
                .and_then(|a| a.parse().ok())
            {
                return Server { child, addr };
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pins every thread of `pid` to `cpu`.
fn pin(pid: u32, cpu: &str) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

fn pid_listening_udp(port: u16) -> Option<u32> {
    // Knot's pid: the process that owns the UDP socket on `port` (ss -H -u -l -p).
    let out = Command::new("ss")
        .args(["-H", "-u", "-l", "-n", "-p", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text
        .split("pid=")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?;
    pid.parse().ok()
}

/// (utime, stime) of a whole process, seconds.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let field =
        |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / clock_ticks();
    (field(11), field(12))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Debug, Clone, Copy, Default)]
struct Load {
    sent: u64,
    answered: u64,
    lost: u64,
    latency_ms: f64,
    /// utime + stime per answered query.
    cpu_us: f64,
    /// The utime part.
    user_us: f64,
}

/// Offers `qps` for `seconds` to `addr` from CPU 0, measuring `pid`'s CPU time.
fn offer(addr: SocketAddr, pid: u32, file: &Path, qps: u32, seconds: u32) -> Load {
    offer_with(addr, pid, file, qps, seconds, false)
}

/// [`offer`], with the DNSSEC OK bit on every query when `dnssec` (dnsperf -D).
fn offer_with(
    addr: SocketAddr,
    pid: u32,
    file: &Path,
    qps: u32,
    seconds: u32,
    dnssec: bool,
) -> Load {
    let before = cpu_seconds(pid);
    let out = Command::new("taskset")
        .args([
            "-c",
            "0",
            "dnsperf",
            "-s",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
        ])
        .arg("-d")
        .arg(file)
        .args([
            "-Q",
            &qps.to_string(),
            "-l",
            &seconds.to_string(),
            "-c",
            "4",
            "-t",
            "2",
            "-q",
            "2000",
        ])
        .args(if dnssec { &["-D"][..] } else { &[][..] })
        .output()
        .expect("dnsperf runs (apt-get install dnsperf)");
    let after = cpu_seconds(pid);
    let text = String::from_utf8_lossy(&out.stdout);
    let num = |label: &str| -> u64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let latency = text
        .lines()
        .find(|l| l.trim_start().starts_with("Average Latency"))
        .and_then(|l| {
            l.split(':')
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    let answered = num("Queries completed");
    Load {
        sent: num("Queries sent"),
        answered,
        lost: num("Queries lost"),
        latency_ms: latency * 1000.0,
        cpu_us: per_query(after.0 + after.1 - before.0 - before.1, answered),
        user_us: per_query(after.0 - before.0, answered),
    }
}

fn per_query(seconds: f64, answered: u64) -> f64 {
    if answered > 0 {
        seconds * 1e6 / answered as f64
    } else {
        f64::NAN
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A UDP query, blocking; whether it has an answer record.
fn answered(sock: &UdpSocket, addr: SocketAddr, name: &str, qtype: RecordType, want: &str) -> bool {
    ask(sock, addr, name, qtype, |m| {
        m.answers.iter().any(|r| r.data.to_string() == want)
    })
}

/// Whether `name` answers an SRV with `port` (the mark of one particular change).
fn answered_srv_port(sock: &UdpSocket, addr: SocketAddr, name: &str, port: usize) -> bool {
    ask(sock, addr, name, RecordType::SRV, |m| {
        m.answers.iter().any(
            |r| matches!(&r.data, hickory_proto::rr::RData::SRV(s) if usize::from(s.port) == port),
        )
    })
}

/// A UDP query, blocking: whether its answer satisfies `good` (false on no answer).
fn ask(
    sock: &UdpSocket,
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    good: impl Fn(&Message) -> bool,
) -> bool {
    let q = support::message(name, qtype);
    let Ok(bytes) = q.to_vec() else { return false };
    if sock.send_to(&bytes, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => match Message::from_vec(&buf[..n]) {
                Ok(m) if m.metadata.id == q.metadata.id => return good(&m),
                Ok(_) => continue,
                Err(_) => return false,
            },
            Err(_) => return false,
        }
    }
}

struct Bed {
    _etcd: Etcd,
    _upstream: Knot,
    knot: Knot,
    knot_pid: u32,
    lodestar: Server,
    /// `--baseline`: another lodestar-dns measured beside this one.
    baseline: Option<Server>,
    dir: tempfile::TempDir,
}

async fn bed(services: usize) -> (Bed, Etcd) {
    bed_on(services, "1", 1).await
}

/// The bed with both servers on `cpus`, Lodestar with `threads` receive loops and Knot with as
/// many UDP workers.
async fn bed_on(services: usize, cpus: &str, threads: usize) -> (Bed, Etcd) {
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
fn wait_loaded(addr: SocketAddr, services: usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let n = services - 1;
    let ip = format!("172.17.{}.{}", (n / 250) % 250, n % 250 + 1);
    let name = format!("svc{n}.webapp.dev.");
    wait_answer(&sock, addr, &name, &ip, Duration::from_secs(120));
}

/// Polls `name` A at `addr` on `sock` until one answer is `want`; panics after `deadline`.
fn wait_answer(sock: &UdpSocket, addr: SocketAddr, name: &str, want: &str, deadline: Duration) {
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
fn etcd_handle(e: &Etcd) -> Etcd {
    Etcd::attach(e.port)
}

// ------------------------------------------------------------------ benchmarks

async fn cost(o: &Opts) {
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
    dnssec_table(&b, &e, o).await;
}

/// The cost mixes with DO set on every query: Lodestar signing online with an ECDSA P-256 key
/// (`--dnssec-key`, a pair made by dnssec-keygen) beside Knot signing the same zone online
/// (`mod-onlinesign`, black lies as ours) and Knot serving it signed ahead of time
/// (`dnssec-signing: on`, automatic keys, NSEC chain). All on CPU 1, one worker each.
async fn dnssec_table(b: &Bed, etcd: &Etcd, o: &Opts) {
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
    println!("| mix | server | answered | lost | avg latency | CPU per query (user part) | / Knot online | / Knot pre-signed |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
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

/// An ECDSA P-256 key pair for `zone` made by dnssec-keygen in `dir`: its base name.
fn keygen(dir: &Path, zone: &str) -> String {
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

/// Whether `name` A at `addr` comes back with an RRSIG (asked with DO).
fn signed_answer(sock: &UdpSocket, addr: SocketAddr, name: &str) -> bool {
    let mut m = Message::query();
    m.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    let mut e = hickory_proto::op::Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(true);
    m.set_edns(e);
    let Ok(bytes) = m.to_vec() else { return false };
    if sock.send_to(&bytes, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    let Ok((n, _)) = sock.recv_from(&mut buf) else {
        return false;
    };
    Message::from_vec(&buf[..n]).is_ok_and(|r| {
        r.answers
            .iter()
            .any(|a| a.record_type() == RecordType::RRSIG)
    })
}

async fn cost2(o: &Opts) {
    let (b, _e) = bed_on(o.services, "0,1", 2).await;
    println!(
        "\n### CPU per answered query on both CPUs: {} services, {} qps offered for {} s, {} rounds (--threads 2, Knot udp-workers 2; dnsperf on CPU 0 too)\n",
        o.services, o.qps, o.seconds, o.rounds
    );
    cost_table(&b, o);
}

fn cost_table(b: &Bed, o: &Opts) {
    println!(
        "| mix | server | answered | lost | avg latency | CPU per query (user part) | / Knot |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
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

/// One query file offered to every server in turn: a warm-up (caches filled, so that every
/// round measures the same thing), then `o.rounds` rounds alternating between the servers; each
/// server's loads. With `dnssec`, every query has DO.
fn rounds<'a>(
    servers: &[(&'a str, SocketAddr, u32)],
    file: &Path,
    o: &Opts,
    dnssec: bool,
) -> BTreeMap<&'a str, Vec<Load>> {
    for (_, addr, pid) in servers {
        offer_with(*addr, *pid, file, o.qps, 2, dnssec);
    }
    let mut runs: BTreeMap<&str, Vec<Load>> = BTreeMap::new();
    for _ in 0..o.rounds {
        for (label, addr, pid) in servers {
            runs.entry(label)
                .or_default()
                .push(offer_with(*addr, *pid, file, o.qps, o.seconds, dnssec));
        }
    }
    runs
}

/// A server's cells of a cost row (answered of sent, lost, median latency, median CPU per query
/// with its user part), and that median CPU per query.
fn row(loads: &[Load]) -> (String, f64) {
    let answered: u64 = loads.iter().map(|l| l.answered).sum();
    let lost: u64 = loads.iter().map(|l| l.lost).sum();
    let sent: u64 = loads.iter().map(|l| l.sent).sum();
    let lat = median(loads.iter().map(|l| l.latency_ms).collect());
    let cpu = median(loads.iter().map(|l| l.cpu_us).collect());
    let user = median(loads.iter().map(|l| l.user_us).collect());
    (
        format!("{answered} of {sent} | {lost} | {lat:.3} ms | {cpu:.2} µs ({user:.2} µs)"),
        cpu,
    )
}

async fn etcd_ranges(etcd: &Etcd) -> u64 {
    let (_, body) = support::http_get(([127, 0, 0, 1], etcd.port).into(), "/metrics").await;
    body.lines()
        .filter(|l| {
            l.starts_with("grpc_server_handled_total{") && l.contains("grpc_method=\"Range\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn reads(o: &Opts) {
    let (b, etcd) = bed(o.services).await;
    let file = queries(b.dir.path(), "names", o.services);
    let before = etcd_ranges(&etcd).await;
    let load = offer(b.lodestar.addr, b.lodestar.pid(), &file, o.qps, o.seconds);
    let after = etcd_ranges(&etcd).await;
    println!("\n### etcd reads caused by queries\n");
    println!("| queries answered | etcd Range requests before | after | caused by queries |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {} | {before} | {after} | {} |",
        load.answered,
        after - before
    );
}

async fn propagation(o: &Opts) {
    let etcd = Etcd::start().await;
    load_services(&etcd, 1000).await;
    let upstream = Knot::start().await;
    let dns = Server::lodestar(&etcd, upstream.addr, "1");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut client = etcd.client().await;
    let mut times = Vec::new();
    for i in 0..o.writes {
        let ip = format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256);
        let name = format!("p{i}.prop.webapp.dev.");
        let t = Instant::now();
        client
            .put(
                format!("/skydns/dev/webapp/prop/p{i}"),
                format!(r#"{{"host":"{ip}"}}"#),
                None,
            )
            .await
            .expect("put");
        while !answered(&sock, dns.addr, &name, RecordType::A, &ip) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "write {i} never answered"
            );
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!("\n### Propagation\n");
    println!("| path | samples | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| etcd write -> answer | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN)
    );
    if let Some(row) = docker_propagation(&etcd, &dns).await {
        println!("{row}");
    }
}

/// `docker run` -> answer through the registrator, when a Docker engine runs.
async fn docker_propagation(etcd: &Etcd, dns: &Server) -> Option<String> {
    let ok = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return Some(
            "| docker run -> answer | no Docker engine running: not measured | | | |".into(),
        );
    }
    support::docker_ready();
    let reg = support::Registrator::start(etcd, "bench-host", &[]);
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut times = Vec::new();
    for i in 0..20 {
        let svc = support::unique(&format!("bench{i}"));
        let t = Instant::now();
        let c = support::Ctr::run(
            "bench",
            &[
                "-p",
                "80",
                "-l",
                &format!("SERVICE_NAME={svc}"),
                "-l",
                "SERVICE_ID=x",
            ],
        );
        let name = format!("x.{svc}.webapp.dev.");
        while !answered(&sock, dns.addr, &name, RecordType::A, "10.99.0.1") {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "container never answered"
            );
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(c);
    }
    drop(reg);
    times.sort_by(|a, b| a.total_cmp(b));
    Some(format!(
        "| docker run -> answer (includes the docker CLI and container start) | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN)
    ))
}

async fn scale(o: &Opts) {
    println!("\n### Scale\n");
    println!("| services | start -> every name answered | resident memory |");
    println!("|---:|---:|---:|");
    for &n in &o.sizes {
        let etcd = Etcd::start().await;
        load_services(&etcd, n).await;
        let upstream = Knot::start().await;
        let t = Instant::now();
        let dns = Server::lodestar(&etcd, upstream.addr, "1");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
        sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
        let last = format!("svc{}.webapp.dev.", n - 1);
        let ip = format!("172.17.{}.{}", ((n - 1) / 250) % 250, (n - 1) % 250 + 1);
        wait_answer(&sock, dns.addr, &last, &ip, Duration::from_secs(600));
        let loaded = t.elapsed().as_secs_f64();
        // Every name: the view is published whole, so the last and a sample of the rest answer.
        for i in (0..n).step_by((n / 1000).max(1)) {
            let ip = format!("172.17.{}.{}", (i / 250) % 250, i % 250 + 1);
            assert!(
                answered(
                    &sock,
                    dns.addr,
                    &format!("svc{i}.webapp.dev."),
                    RecordType::A,
                    &ip
                ),
                "svc{i}"
            );
        }
        println!("| {n} | {loaded:.2} s | {:.0} MB |", rss_mb(dns.pid()));
    }
}

async fn churn(o: &Opts) {
    let (b, etcd) = bed(o.services).await;
    let baseline = o.baseline.as_ref().map(|bin| {
        let server = Server::binary(bin, &[], &etcd, b._upstream.addr, "1");
        wait_loaded(server.addr, o.services);
        server
    });
    let file = queries(b.dir.path(), "names", o.services);
    let mut servers = vec![("Lodestar", &b.lodestar)];
    if let Some(base) = &baseline {
        servers.push(("baseline", base));
    }
    println!("\n### Query cost while records change\n");
    println!("| server | state | answered | lost | CPU per query | vs quiet |");
    println!("|---|---|---:|---:|---:|---:|");
    for (label, server) in servers {
        offer(server.addr, server.pid(), &file, o.qps, 2);
        let mut quiet = Vec::new();
        let mut busy = Vec::new();
        let mut changes = 0u64;
        for _ in 0..o.rounds {
            quiet.push(offer(server.addr, server.pid(), &file, o.qps, o.seconds));
            // 1,000 changes a second: 10 records every 10 ms, from CPU 0.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let mut client = etcd.client().await;
            let n = o.services;
            let writer = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut v = 0usize;
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    let ops: Vec<etcd_client::TxnOp> = (0..10)
                        .map(|k| {
                            v += 1;
                            let i = (v * 7919 + k) % n;
                            etcd_client::TxnOp::put(
                                format!("/skydns/dev/webapp/svc{i}/svc{i}-1"),
                                record(i, v),
                                None,
                            )
                        })
                        .collect();
                    if client
                        .txn(etcd_client::Txn::new().and_then(ops))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                v as u64
            });
            let (addr, pid, path, qps, secs) =
                (server.addr, server.pid(), file.clone(), o.qps, o.seconds);
            let load = tokio::task::spawn_blocking(move || offer(addr, pid, &path, qps, secs))
                .await
                .expect("dnsperf");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            changes += writer.await.unwrap_or(0);
            busy.push(load);
        }
        let q = median(quiet.iter().map(|l| l.cpu_us).collect());
        let c = median(busy.iter().map(|l| l.cpu_us).collect());
        let rate = changes as f64 / (o.rounds as f64 * f64::from(o.seconds));
        println!(
            "| {label} | quiet | {} | {} | {q:.2} µs | 1.00x |",
            quiet.iter().map(|l| l.answered).sum::<u64>(),
            quiet.iter().map(|l| l.lost).sum::<u64>()
        );
        println!(
            "| {label} | {rate:.0} changes/s | {} | {} | {c:.2} µs | {:.2}x |",
            busy.iter().map(|l| l.answered).sum::<u64>(),
            busy.iter().map(|l| l.lost).sum::<u64>(),
            c / q
        );
    }
}

// ------------------------------------------------------------------ big names

const BIG_SIZES: [usize; 3] = [100, 1000, 5000];

fn big_addr(n: usize, k: usize) -> String {
    format!("10.{}.{}.{}", n % 250, (k >> 8) & 255, k & 255)
}

/// `/skydns/dev/webapp/big<n>/i<k>` for every size.
async fn load_big(etcd: &Etcd) {
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
fn big_zone(services: usize) -> String {
    big_zone_with(services, false)
}

/// The names whose RRsets Knot can sign: an RRset larger than 64 KiB in canonical form (the
/// apex's 16,100 addresses, big5000's addresses and SRV records) stops Knot's signing of the
/// whole zone ("not enough space provided"), so the zone it signs leaves them out.
fn signable(n: usize) -> bool {
    n * 40 < 60_000
}

/// [`big_zone`], without what Knot cannot sign when `for_signing`.
fn big_zone_with(services: usize, for_signing: bool) -> String {
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

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    Udp,
    Edns,
    Tcp,
    /// EDNS 1232 with DO: a signed answer.
    EdnsDo,
    /// TCP with DO.
    TcpDo,
}

impl Wire {
    fn label(self) -> &'static str {
        match self {
            Wire::Udp => "UDP",
            Wire::Edns => "UDP EDNS 1232",
            Wire::Tcp => "TCP",
            Wire::EdnsDo => "UDP EDNS 1232, DO (signed)",
            Wire::TcpDo => "TCP, DO (signed)",
        }
    }

    fn tcp(self) -> bool {
        matches!(self, Wire::Tcp | Wire::TcpDo)
    }
}

/// One query, timed from send (or connect) to the whole answer: (seconds, answers, TC).
fn timed(
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    wire: Wire,
) -> Option<(f64, usize, bool)> {
    use std::io::{Read, Write};
    let mut m = match wire {
        Wire::Udp | Wire::Tcp => support::message(name, qtype),
        _ => support::message_edns(name, qtype, 1232),
    };
    if matches!(wire, Wire::EdnsDo | Wire::TcpDo) {
        if let Some(e) = m.edns.as_mut() {
            e.set_dnssec_ok(true);
        }
    }
    let bytes = m.to_vec().ok()?;
    let t = Instant::now();
    let raw = if wire.tcp() {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        s.write_all(&out).ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).ok()?;
        buf
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.send_to(&bytes, addr).ok()?;
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf).ok()?;
        buf.truncate(n);
        buf
    };
    let elapsed = t.elapsed().as_secs_f64();
    let reply = Message::from_vec(&raw).ok()?;
    Some((elapsed, reply.answers.len(), reply.metadata.truncation))
}

async fn big(o: &Opts) {
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
    println!("| name | records | transport | Lodestar | answers (TC) | Knot | answers (TC) |");
    println!("|---|---:|---|---:|---:|---:|---:|");
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
            let (mut ours_n, mut theirs_n) = ((0, false), (0, false));
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
            println!(
                "| `{name}` | {records} | {} | {} | {} | {knot_time} | {knot_n} |",
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

/// The shapes that stalled earlier versions, each timed right after a change under it.
async fn shapes(o: &Opts, etcd: &Etcd, lodestar: &Server) {
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

/// Distinct names with a wildcard (each a cache miss, as a client that varies them makes them)
/// beside plain misses, among 100,000 records under `huge` (`huge_records`): each server's CPU
/// per answer, `n` names of each kind asked one after another.
fn wildcards(servers: &[(&str, &Server)], n: usize) {
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
fn huge_records() -> Vec<(String, String)> {
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
async fn wildcard_bench(o: &Opts) {
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

/// TCP queries from one client while 512 connections from another address send queries for
/// large answers and never read them; each server in turn.
async fn hostile_tcp(lodestar: &Server, knot: &Knot) {
    use tokio::io::AsyncWriteExt;
    println!("\n### TCP while 512 connections from another client never read their answers\n");
    println!("| server | hostile connections accepted | TCP queries answered (10 s timeout each) | p50 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (label, addr) in [("Knot", knot.addr), ("Lodestar", lodestar.addr)] {
        let q = support::message("big5000.webapp.dev.", RecordType::A)
            .to_vec()
            .expect("query");
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        let many = framed.repeat(40);
        let mut hostile = Vec::new();
        for _ in 0..512 {
            let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                break;
            };
            if socket.bind("127.0.0.2:0".parse().expect("addr")).is_err() {
                break;
            }
            let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(2), socket.connect(addr)).await
            else {
                continue;
            };
            let _ = tokio::time::timeout(Duration::from_millis(20), s.write_all(&many)).await;
            hostile.push(s);
        }
        let mut times = Vec::new();
        let tries = 10;
        for i in 0..tries {
            let name = format!("svc{i}.webapp.dev.");
            if let Some((s, n, _)) =
                tokio::task::spawn_blocking(move || timed(addr, &name, RecordType::A, Wire::Tcp))
                    .await
                    .ok()
                    .flatten()
            {
                if n > 0 {
                    times.push(s * 1000.0);
                }
            }
        }
        let hostile_count = hostile.len();
        drop(hostile);
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "| {label} | {} | {} of {tries} | {:.2} ms | {:.2} ms |",
            hostile_count,
            times.len(),
            percentile(&times, 0.5),
            times.last().copied().unwrap_or(f64::NAN)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Small names from a steady client while two others ask the large names (UDP and TCP) and a
/// writer changes them 10 times a second; each server in turn, the same load.
async fn head_of_line(o: &Opts, etcd: &Etcd, lodestar: &Server, knot: &Knot) {
    println!(
        "\n### Small names while large ones are asked for and change 10 times a second ({} s each)\n",
        o.seconds
    );
    println!("| server | small answered | lost | p50 | p99 | max | large answers meanwhile |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, addr, signed) in [
        ("Knot", knot.addr, false),
        ("Lodestar", lodestar.addr, false),
        (
            "Lodestar, large ones asked with DO (signed)",
            lodestar.addr,
            true,
        ),
    ] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut client = etcd.client().await;
        let writer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut v = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    v += 1;
                    for n in [1000, 5000] {
                        let _ = client
                            .put(
                                format!("/skydns/dev/webapp/big{n}/changing"),
                                format!(r#"{{"host":"10.252.{}.{}"}}"#, v / 250 % 250, v % 250 + 1),
                                None,
                            )
                            .await;
                    }
                }
            })
        };
        let loaders: Vec<_> = [Wire::Udp, Wire::Tcp]
            .into_iter()
            .map(|wire| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for name in ["big5000.webapp.dev.", "webapp.dev.", "big1000.webapp.dev."] {
                            let qtype = if wire == Wire::Udp {
                                RecordType::SRV
                            } else {
                                RecordType::A
                            };
                            let asked = match (signed, wire) {
                                (true, Wire::Udp) => Wire::EdnsDo,
                                (true, _) => Wire::TcpDo,
                                (false, w) => w,
                            };
                            if timed(addr, name, qtype, asked).is_some() {
                                n += 1;
                            }
                        }
                    }
                    n
                })
            })
            .collect();
        let seconds = o.seconds;
        let services = o.services;
        let steady = tokio::task::spawn_blocking(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
            sock.set_read_timeout(Some(Duration::from_millis(1000)))
                .ok();
            let mut lat = Vec::new();
            let mut lost = 0u64;
            let end = Instant::now() + Duration::from_secs(u64::from(seconds));
            let mut i = 0usize;
            while Instant::now() < end {
                i += 1;
                let k = (i * 7919) % services;
                let ip = format!("172.17.{}.{}", (k / 250) % 250, k % 250 + 1);
                let t = Instant::now();
                if answered(
                    &sock,
                    addr,
                    &format!("svc{k}.webapp.dev."),
                    RecordType::A,
                    &ip,
                ) {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    lost += 1;
                }
                // A steady client: 1,000 queries a second at most.
                let spent = t.elapsed();
                if spent < Duration::from_millis(1) {
                    std::thread::sleep(Duration::from_millis(1) - spent);
                }
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            (lat, lost)
        })
        .await
        .expect("steady client");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = writer.await;
        let large: u64 = loaders.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        let (lat, lost) = steady;
        println!(
            "| {label} | {} | {lost} | {:.3} ms | {:.3} ms | {:.3} ms | {large} |",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
}
