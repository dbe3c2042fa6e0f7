//! `make bench-fleet`: a fleet of hosts registering through the library, on a 3-member etcd
//! cluster watched by 3 `lodestar-dns` servers (all on 127.0.0.1).
//!
//! Each simulated host is a `lodestar::registry::EtcdRegistry` of its own (its own connection,
//! owner key and lease, kept alive every third of the lease TTL, as a custom scheduler would use
//! the library), holding `--per-host` services (`h<host>-<j>.svc<j>.webapp.dev`: every service
//! runs on every host). Measured: write -> answer at all three servers while every lease is kept
//! alive; a tenth of the hosts dying at once (their keep-alives stop; nothing is revoked); etcd's
//! load from the keep-alives and the watches; the servers' CPU during the storm.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use hickory_proto::rr::RecordType;
use lodestar::etcd::EtcdConfig;
use lodestar::registry::{EtcdRegistry, Registry};
use lodestar::{Prefix, Service};
use tokio_util::sync::CancellationToken;

use crate::harness::{cpu_seconds, percentile, rss_mb, Server};
use crate::opts::Opts;
use crate::probe::answered;
use crate::support::free_port;

/// A 3-member etcd cluster on 127.0.0.1.
struct Cluster {
    members: Vec<(Child, u16)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).expect("log");
                let child = Command::new("etcd")
                    .args(["--name", &format!("m{i}"), "--data-dir"])
                    .arg(dir.path().join(format!("m{i}")))
                    .args([
                        "--listen-client-urls",
                        &client_url,
                        "--advertise-client-urls",
                        &client_url,
                    ])
                    .args([
                        "--listen-peer-urls",
                        &peer_url,
                        "--initial-advertise-peer-urls",
                        &peer_url,
                    ])
                    .args([
                        "--initial-cluster",
                        &initial,
                        "--initial-cluster-state",
                        "new",
                    ])
                    .args(["--log-level", "warn", "--quota-backend-bytes", "4294967296"])
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("etcd runs (apt-get install etcd-server)");
                (child, *client)
            })
            .collect();
        let c = Cluster { members, _dir: dir };
        let t = Instant::now();
        for e in c.endpoints() {
            loop {
                let ok = async {
                    let mut cl = etcd_client::Client::connect([e.clone()], None).await.ok()?;
                    cl.put("/fleet-ready", "1", None).await.ok()
                };
                if ok.await.is_some() {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "the etcd cluster did not start"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        c
    }

    fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|(_, p)| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    /// The endpoints with member `i` first (a host's own member).
    fn from(&self, i: usize) -> Vec<String> {
        let mut e = self.endpoints();
        let n = e.len();
        e.rotate_left(i % n);
        e
    }

    fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|(c, _)| c.id()).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (c, _) in &mut self.members {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Requests etcd handled (every gRPC method), summed over its members.
async fn etcd_requests(c: &Cluster) -> f64 {
    let mut total = 0.0;
    for (_, port) in &c.members {
        let (_, body) = crate::support::http_get(([127, 0, 0, 1], *port).into(), "/metrics").await;
        total += body
            .lines()
            .filter(|l| {
                (l.starts_with("grpc_server_handled_total{") && l.contains("grpc_type=\"unary\""))
                    || (l.starts_with("grpc_server_msg_received_total{")
                        && l.contains("grpc_type=\"bidi_stream\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

fn cpu(pids: &[u32]) -> Vec<f64> {
    pids.iter()
        .map(|p| {
            let (u, s) = cpu_seconds(*p);
            u + s
        })
        .collect()
}

fn ip(host: usize, j: usize) -> String {
    format!("10.{}.{}.{}", host / 250, host % 250, j % 250 + 1)
}

fn name(host: usize, j: usize) -> String {
    format!("h{host}-{j}.svc{j}.webapp.dev")
}

/// The records each of `servers` holds (its `lodestar_dns_view_records`).
async fn records(metrics: &[SocketAddr]) -> Vec<f64> {
    let mut out = Vec::new();
    for m in metrics {
        let (_, body) = crate::support::http_get(*m, "/metrics").await;
        out.push(
            body.lines()
                .find_map(|l| l.strip_prefix("lodestar_dns_view_records "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(-1.0),
        );
    }
    out
}

pub async fn fleet(o: &Opts) {
    let (hosts, per_host) = (o.hosts, o.per_host);
    let ttl = Duration::from_secs(o.lease_ttl);
    let cluster = Cluster::start(3).await;
    let bin = env!("CARGO_BIN_EXE_lodestar-dns");
    let metrics: Vec<SocketAddr> = (0..3)
        .map(|_| ([127, 0, 0, 1], free_port()).into())
        .collect();
    let servers: Vec<Server> = (0..3)
        .map(|i| {
            let m = metrics[i].to_string();
            let ep = cluster.from(i).join(",");
            Server::binary_at(
                bin,
                &["--metrics", &m, "--no-forward"],
                &ep,
                None,
                "0,1",
                "warn,lodestar_dns=info",
            )
        })
        .collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let server_pids: Vec<u32> = servers.iter().map(Server::pid).collect();

    // Every host connects and registers, 50 at a time.
    let t = Instant::now();
    let endpoints: Vec<Vec<String>> = (0..hosts).map(|h| cluster.from(h)).collect();
    // Keep-alives: one task per host, started as soon as it has registered (a lease lives only
    // its TTL), every third of the TTL after, each host on its own token.
    let keep_alives = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let tokens: BTreeMap<usize, CancellationToken> = stream::iter(0..hosts)
        .map(|h| {
            let etcd = EtcdConfig {
                endpoints: endpoints[h].clone(),
                ..Default::default()
            };
            let (n, failed) = (keep_alives.clone(), failed.clone());
            async move {
                let (mut reg, _) = EtcdRegistry::connect(
                    &etcd,
                    Prefix::default(),
                    &format!("fleet-host-{h}"),
                    ttl,
                )
                .await
                .expect("a host connects");
                for j in 0..per_host {
                    let svc = Service {
                        host: ip(h, j),
                        port: 8000 + j as u16,
                        ..Default::default()
                    };
                    reg.register(&name(h, j), &svc).await.expect("register");
                }
                let token = CancellationToken::new();
                let stop = token.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(ttl / 3);
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return, // died: the lease is left to expire
                            _ = tick.tick() => {}
                        }
                        match reg.keep_alive().await {
                            Ok(()) => n.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                });
                (h, token)
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let total = hosts * per_host;
    eprintln!(
        "{hosts} hosts registered {total} records in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Every server holds every record.
    let t = Instant::now();
    loop {
        let r = records(&metrics).await;
        if r.iter().all(|n| *n as usize == total) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "servers hold {r:?} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Steady state: etcd's load from the keep-alives and the watches.
    let window = Duration::from_secs(o.seconds as u64 * 2);
    let (req0, cpu0, ka0) = (
        etcd_requests(&cluster).await,
        cpu(&cluster.pids()),
        keep_alives.load(Ordering::Relaxed),
    );
    let dns0 = cpu(&server_pids);
    tokio::time::sleep(window).await;
    let (req1, cpu1, ka1) = (
        etcd_requests(&cluster).await,
        cpu(&cluster.pids()),
        keep_alives.load(Ordering::Relaxed),
    );
    let dns1 = cpu(&server_pids);
    let secs = window.as_secs_f64();
    let etcd_cpu: Vec<f64> = cpu1
        .iter()
        .zip(&cpu0)
        .map(|(a, b)| (a - b) / secs)
        .collect();
    let dns_idle: Vec<f64> = dns1
        .iter()
        .zip(&dns0)
        .map(|(a, b)| (a - b) / secs)
        .collect();
    let ka_rate = (ka1 - ka0) as f64 / secs;
    let req_rate = (req1 - req0) / secs;

    // Write -> answer at all three servers, every lease kept alive.
    let etcd = EtcdConfig {
        endpoints: cluster.from(0),
        ..Default::default()
    };
    let (mut prober, _) = EtcdRegistry::connect(&etcd, Prefix::default(), "fleet-prober", ttl)
        .await
        .expect("the prober connects");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut times: Vec<f64> = Vec::new();
    for k in 0..o.writes {
        let (n, addr) = (
            format!("p{k}.probe.webapp.dev"),
            format!("10.250.{}.{}", k / 250, k % 250 + 1),
        );
        let svc = Service {
            host: addr.clone(),
            ..Default::default()
        };
        let t = Instant::now();
        prober.register(&n, &svc).await.expect("register");
        let mut pending: Vec<usize> = (0..3).collect();
        while !pending.is_empty() {
            pending.retain(|&i| {
                if answered(&sock, addrs[i], &format!("{n}."), RecordType::A, &addr) {
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                    false
                } else {
                    true
                }
            });
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{n} never answered everywhere"
            );
        }
        if k.is_multiple_of(16) {
            let _ = prober.keep_alive().await;
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let probes = o.writes;
    for k in 0..probes {
        prober
            .deregister(&format!("p{k}.probe.webapp.dev"))
            .await
            .expect("deregister");
    }
    let t = Instant::now();
    while records(&metrics).await.iter().any(|n| *n as usize != total) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the probes did not go"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A tenth of the hosts die at once: their keep-alives stop; nothing is revoked.
    let dead: Vec<usize> = (0..hosts).step_by(10).collect();
    let alive_records = total - dead.len() * per_host;
    let dns_before = cpu(&server_pids);
    let died = Instant::now();
    for h in &dead {
        tokens[h].cancel();
    }
    // Meanwhile: names of the living hosts asked at every server, round robin; none may fail.
    let mut asked = 0u64;
    let mut lost = 0u64;
    let mut gone_at: Vec<Option<f64>> = vec![None; 3];
    let mut k = 0usize;
    while gone_at.iter().any(Option::is_none) {
        for _ in 0..30 {
            k += 1;
            let h = (k * 7919) % hosts;
            if h.is_multiple_of(10) {
                continue;
            }
            let j = k % per_host;
            let s = k % 3;
            asked += 1;
            if !answered(
                &sock,
                addrs[s],
                &format!("{}.", name(h, j)),
                RecordType::A,
                &ip(h, j),
            ) {
                lost += 1;
            }
        }
        let r = records(&metrics).await;
        for (i, n) in r.iter().enumerate() {
            if gone_at[i].is_none() && *n as usize == alive_records {
                gone_at[i] = Some(died.elapsed().as_secs_f64());
            }
            assert!(
                *n as usize >= alive_records,
                "server {i} holds {n}: fewer than the living hosts' {alive_records}"
            );
        }
        assert!(
            died.elapsed() < ttl * 4,
            "the dead hosts' records are still there: {r:?}"
        );
        // About 1,000 questions a second: a light load, not the servers' limit.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let storm = died.elapsed().as_secs_f64();
    let dns_after = cpu(&server_pids);
    // Every dead host's names gone everywhere; a sample of the living everywhere.
    let mut left = 0;
    for h in &dead {
        for a in &addrs {
            let gone = crate::probe::ask(
                &sock,
                *a,
                &format!("{}.", name(*h, h % per_host)),
                RecordType::A,
                |m| m.metadata.response_code == hickory_proto::op::ResponseCode::NXDomain,
            );
            if !gone {
                left += 1;
            }
        }
    }
    let mut missing = 0;
    for h in (0..hosts).filter(|h| !h.is_multiple_of(10)).step_by(7) {
        for a in &addrs {
            if !answered(
                &sock,
                *a,
                &format!("{}.", name(h, h % per_host)),
                RecordType::A,
                &ip(h, h % per_host),
            ) {
                missing += 1;
            }
        }
    }
    let gone: Vec<String> = gone_at
        .iter()
        .map(|g| format!("{:.2} s", g.unwrap_or(f64::NAN)))
        .collect();
    let storm_cpu: Vec<String> = dns_after
        .iter()
        .zip(&dns_before)
        .map(|(a, b)| format!("{:.2} s", a - b))
        .collect();

    println!("\n### A fleet: {hosts} hosts x {per_host} services on 3 etcd members, 3 servers\n");
    println!("Each host an `EtcdRegistry` (the library) with a lease of {} s kept alive every {:.1} s.\n", ttl.as_secs(), (ttl / 3).as_secs_f64());
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| write -> answer at all 3 servers ({} writes, every lease kept alive) | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
        probes,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| keep-alives | {ka_rate:.0}/s ({} failed) |",
        failed.load(Ordering::Relaxed)
    );
    println!("| etcd requests (unary calls and stream messages, 3 members) | {req_rate:.0}/s |");
    println!(
        "| etcd CPU per member | {} |",
        etcd_cpu
            .iter()
            .map(|c| format!("{:.0}%", c * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| servers' CPU, steady | {} |",
        dns_idle
            .iter()
            .map(|c| format!("{:.1}%", c * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| {} hosts die at once: their {} records gone at each server after | {} (lease TTL + 1 s = {} s) |",
        dead.len(),
        dead.len() * per_host,
        gone.join(", "),
        ttl.as_secs() + 1
    );
    println!("| meanwhile, names of the living hosts asked / not answered | {asked} / {lost} |");
    println!("| after: dead names still answering / living names sampled and missing | {left} / {missing} |");
    println!(
        "| servers' CPU during the {storm:.1} s of the storm (answering the {:.0} questions/s above too) | {} |",
        asked as f64 / storm,
        storm_cpu.join(", ")
    );
    println!(
        "| servers' resident memory | {} |",
        server_pids
            .iter()
            .map(|p| format!("{:.0} MB", rss_mb(*p)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(lost, 0, "living hosts' names went missing during the storm");
    assert_eq!(left, 0, "dead hosts' names still answer");
    assert_eq!(missing, 0, "living hosts' names missing after the storm");
    drop(servers);
}
