//! The view's benchmarks: `reads` (etcd requests caused by queries: none), `propagation` (a write
//! to etcd, and a container start, until the answer changes), `scale` (start-up and memory with
//! 100,000s of services) and `churn` (answer times while records change under a steady load).

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::data::{bed, load_services, queries, record, wait_answer, wait_loaded};
use crate::harness::{median, offer, peak_rss_mb, percentile, rss_mb, Server};
use crate::opts::Opts;
use crate::probe::answered;
use crate::support;
use crate::support::{Etcd, Knot};

pub async fn etcd_ranges(etcd: &Etcd) -> u64 {
    let (_, body) = support::http_get(([127, 0, 0, 1], etcd.port).into(), "/metrics").await;
    body.lines()
        .filter(|l| {
            l.starts_with("grpc_server_handled_total{") && l.contains("grpc_method=\"Range\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

pub async fn reads(o: &Opts) {
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

pub async fn propagation(o: &Opts) {
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
pub async fn docker_propagation(etcd: &Etcd, dns: &Server) -> Option<String> {
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

pub async fn scale(o: &Opts) {
    println!("\n### Scale\n");
    println!(
        "The floor is what etcd takes to hand over the prefix (`etcdctl get --prefix /skydns/` to \
         /dev/null, median of 3); ready is start -> the last name answers (then a sample of 1,000 \
         checked); the server may use both CPUs.\n"
    );
    println!("| services | server | floor | ready | ready / floor | resident memory | peak |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for &n in &o.sizes {
        let etcd = Etcd::start().await;
        load_services(&etcd, n).await;
        let upstream = Knot::start().await;
        let mut builds = vec![("Lodestar", env!("CARGO_BIN_EXE_lodestar-dns").to_string())];
        if let Some(b) = &o.baseline {
            builds.push(("baseline", b.clone()));
        }
        for round in 0..o.rounds {
            for (label, bin) in &builds {
                let floor = etcd_floor(&etcd);
                let (ready, rss, peak) = start_until_ready(bin, &[], &etcd, upstream.addr, n);
                println!(
                    "| {n} | {label}{} | {floor:.2} s | {ready:.2} s | {:.2}x | {rss:.0} MB | {peak:.0} MB |",
                    if o.rounds > 1 { format!(" (round {})", round + 1) } else { String::new() },
                    ready / floor
                );
            }
        }
        // Restarted with the state file a first run wrote (etcd up: answers come from the file
        // at once, then the watch resumes from its revision).
        let dir = tempfile::tempdir().expect("a state directory");
        let state_dir = dir.path().to_str().expect("a UTF-8 path");
        let bin = env!("CARGO_BIN_EXE_lodestar-dns");
        let written = {
            let args = ["--state-dir", state_dir];
            let dns = Server::binary(bin, &args, &etcd, upstream.addr, "0,1");
            let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
            sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
            let last = format!("svc{}.webapp.dev.", n - 1);
            let ip = format!("172.17.{}.{}", ((n - 1) / 250) % 250, (n - 1) % 250 + 1);
            wait_answer(&sock, dns.addr, &last, &ip, Duration::from_secs(600));
            let t = Instant::now();
            let file = dir.path().join(lodestar::view::STATE_FILE_NAME);
            let domains = ["webapp.dev.".to_string()];
            loop {
                let whole = std::fs::read(&file)
                    .ok()
                    .and_then(|b| lodestar::view::decode_state(&b, "/skydns", &domains).ok());
                if whole.is_some_and(|(h, _)| h.records as usize == n) {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(120), "no state file");
                std::thread::sleep(Duration::from_millis(200));
            }
            std::fs::metadata(&file).map_or(0, |m| m.len())
        };
        let (ready, rss, peak) =
            start_until_ready(bin, &["--state-dir", state_dir], &etcd, upstream.addr, n);
        println!(
            "| {n} | Lodestar, restarted with `--state-dir` ({:.0} MB file) | | {ready:.2} s | | {rss:.0} MB | {peak:.0} MB |",
            written as f64 / 1e6
        );
    }
}

/// The time etcd takes to hand over the whole prefix to `etcdctl` (output to /dev/null): the
/// median of three reads.
pub fn etcd_floor(etcd: &Etcd) -> f64 {
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let ok = Command::new("etcdctl")
                .args([
                    "--endpoints",
                    &etcd.endpoint(),
                    "get",
                    "--prefix",
                    "/skydns/",
                ])
                .env("ETCDCTL_API", "3")
                .stdout(Stdio::null())
                .status()
                .expect("etcdctl")
                .success();
            assert!(ok, "etcdctl get --prefix failed");
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[1]
}

/// Starts `bin` (with `extra` flags) on both CPUs and waits until every one of `n` services
/// answers: seconds from start to the last name answering, the resident memory then, and the
/// most it had resident until then.
pub fn start_until_ready(
    bin: &str,
    extra: &[&str],
    etcd: &Etcd,
    upstream: std::net::SocketAddr,
    n: usize,
) -> (f64, f64, f64) {
    let t = Instant::now();
    let dns = Server::binary_logging(
        bin,
        extra,
        etcd,
        upstream,
        "0,1",
        "warn,lodestar_dns=info,lodestar::view::watch=debug",
    );
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let last = format!("svc{}.webapp.dev.", n - 1);
    let ip = format!("172.17.{}.{}", ((n - 1) / 250) % 250, (n - 1) % 250 + 1);
    wait_answer(&sock, dns.addr, &last, &ip, Duration::from_secs(600));
    let ready = t.elapsed().as_secs_f64();
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
    for line in dns.logs.lock().expect("logs").iter() {
        if line.contains("view loaded") || line.contains("building the view") {
            eprintln!("{line}");
        }
    }
    (ready, rss_mb(dns.pid()), peak_rss_mb(dns.pid()))
}

pub async fn churn(o: &Opts) {
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
