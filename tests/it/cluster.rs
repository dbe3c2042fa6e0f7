//! The tutorial's cluster: three hosts (network namespaces core-01..03 on a bridge), an etcd member
//! and `lodestar-dns` on each, the registrator on core-03; and the faults of a real cluster. Every
//! row of the cluster issue's table is checked here; the figures go to `make bench-failover`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::support::netns::{start_dns, start_registrator, EtcdCluster, HostProc, Net};
use crate::support::{data, docker_ready, eventually, host_port, http_get, query, Ctr};

struct Bed {
    dns: Vec<Option<HostProc>>,
    registrator: Option<HostProc>,
    etcd: EtcdCluster,
    net: Net,
    dir: TempDir,
}

const DNS: &str = env!("CARGO_BIN_EXE_lodestar-dns");
const REGISTRATOR: &str = env!("CARGO_BIN_EXE_lodestar-registrator");

impl Bed {
    async fn start() -> Bed {
        let net = Net::create(3);
        let etcd = EtcdCluster::start(&net).await;
        let mut bed = Bed {
            dns: vec![None, None, None],
            registrator: None,
            etcd,
            net,
            dir: TempDir::new().expect("tempdir"),
        };
        for i in 0..3 {
            bed.start_dns(i).await;
        }
        bed
    }

    fn dns_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.net.hosts[i].ip.into(), 53)
    }

    fn metrics_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.net.hosts[i].ip.into(), 9153)
    }

    async fn start_dns(&mut self, i: usize) {
        self.dns[i] = Some(start_dns(
            &self.net,
            &self.etcd,
            i,
            &PathBuf::from(DNS),
            self.dir.path(),
        ));
        let addr = self.dns_addr(i);
        eventually(
            Duration::from_secs(20),
            &format!("lodestar-dns on host {i} answers"),
            || async {
                let m = query(addr, "webapp.dev.", RecordType::SOA).await.ok()?;
                (m.metadata.response_code == ResponseCode::NoError).then_some(())
            },
        )
        .await;
    }

    fn start_registrator(&mut self, i: usize, ttl: u64) {
        docker_ready();
        self.registrator = Some(start_registrator(
            &self.net,
            &self.etcd,
            i,
            ttl,
            &PathBuf::from(REGISTRATOR),
            self.dir.path(),
        ));
    }

    fn dns_log(&self, i: usize) -> String {
        self.dns[i].as_ref().map(HostProc::logs).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for i in 0..3 {
            out += &format!("--- dns {i}\n{}\n", tail(&self.dns_log(i)));
        }
        if let Some(r) = &self.registrator {
            out += &format!("--- registrator\n{}\n", tail(&r.logs()));
        }
        out
    }

    /// Waits until server `i` answers `name` A with exactly `want` (empty: NXDOMAIN).
    async fn until_a(&self, i: usize, name: &str, want: &[&str], deadline: Duration) -> Duration {
        let addr = self.dns_addr(i);
        let start = Instant::now();
        loop {
            let got = a(addr, name).await;
            if got.as_deref().ok() == Some(&want.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < deadline,
                "host {i} did not answer {name} = {want:?} within {deadline:?} (last: {got:?})\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let (_, body) = http_get(self.metrics_addr(i), "/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The A data of `name` at `addr`, sorted; `Err(rcode)` when not NOERROR (or no answer).
async fn a(addr: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    match query(addr, name, RecordType::A).await {
        Ok(m) if m.metadata.response_code == ResponseCode::NoError => Ok(data(&m)),
        Ok(m) if m.metadata.response_code == ResponseCode::NXDomain => Ok(Vec::new()),
        Ok(m) => Err(format!("{:?}", m.metadata.response_code)),
        Err(e) => Err(e.to_string()),
    }
}

/// Asks `name` A at every address every 20 ms until stopped; counts answers that are not `want`.
struct Probe {
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    bad: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    fn start(addrs: Vec<SocketAddr>, name: &str, want: &str) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let (s, t, b) = (stop.clone(), total.clone(), bad.clone());
        let (name, want) = (name.to_string(), vec![want.to_string()]);
        let start = Instant::now();
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                for addr in &addrs {
                    let got = a(*addr, &name).await;
                    t.fetch_add(1, Ordering::Relaxed);
                    if got.as_ref() != Ok(&want) {
                        let at = start.elapsed().as_millis();
                        if let Ok(mut b) = b.lock() {
                            b.push(format!("{addr} at {at} ms: {got:?}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Probe {
            stop,
            total,
            bad,
            task,
        }
    }

    /// Stops; (probes, wrong answers).
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let bad = self.bad.lock().map(|b| b.clone()).unwrap_or_default();
        (self.total.load(Ordering::Relaxed), bad)
    }
}

fn record(ip: &str) -> String {
    format!(r#"{{"host":"{ip}","port":6379}}"#)
}

/// The tutorial: a container on core-03 answered at every host, a record written through one
/// member answered everywhere, a member killed under a server, a host that dies and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_cluster_answers_everywhere_and_rides_out_a_member_kill_and_a_host_death() {
    let mut bed = Bed::start().await;
    bed.start_registrator(2, 5);
    let core03 = bed.net.hosts[2].ip.to_string();

    // docker run -p 6379 -e SERVICE_ID=redis-1 -e SERVICE_NAME=redis on core-03 (the name is
    // made unique: the Docker engine is shared with other tests' registrators).
    let svc = format!("redis{}", std::process::id());
    let name = format!("{svc}.webapp.dev.");
    let ctr = Ctr::run(
        "cluster-redis",
        &[
            "-p",
            "6379",
            "-e",
            "SERVICE_ID=redis-1",
            "-e",
            &format!("SERVICE_NAME={svc}"),
        ],
    );
    for i in 0..3 {
        bed.until_a(i, &name, &[&core03], Duration::from_secs(20))
            .await;
    }
    let port = host_port(&ctr, "6379/tcp");
    let srv = query(bed.dns_addr(0), &name, RecordType::SRV)
        .await
        .expect("SRV");
    assert!(
        data(&srv)
            .iter()
            .any(|d| d.contains(&format!(" {port} redis-1.{svc}.webapp.dev."))),
        "SRV at core-01 names the published port {port}: {:?}",
        data(&srv)
    );

    // A record written through core-02 is answered at all three.
    bed.etcd
        .put(1, "/skydns/dev/webapp/db/db-1", &record("10.1.0.1"))
        .await;
    for i in 0..3 {
        bed.until_a(i, "db.webapp.dev.", &["10.1.0.1"], Duration::from_secs(5))
            .await;
    }

    // SIGKILL of core-01's member: core-01 keeps answering, and a write made through core-02
    // right after the kill reaches core-01's server (its watch moved to another member).
    let probe = Probe::start(vec![bed.dns_addr(0)], &name, &core03);
    tokio::time::sleep(Duration::from_millis(300)).await;
    bed.etcd.kill(0);
    bed.etcd
        .put(1, "/skydns/dev/webapp/db/db-2", &record("10.1.0.2"))
        .await;
    let moved = bed
        .until_a(
            0,
            "db.webapp.dev.",
            &["10.1.0.1", "10.1.0.2"],
            Duration::from_secs(5),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (total, bad) = probe.finish().await;
    assert!(
        bad.is_empty(),
        "core-01 failed {} of {total} probes after its member was killed: {bad:?}",
        bad.len()
    );
    eprintln!("member of core-01 killed: a new write answered there after {moved:?}");
    let log = bed.dns_log(0);
    assert!(
        log.contains("the view may be stale: lost the watch"),
        "the lost watch is logged:\n{}",
        tail(&log)
    );
    bed.etcd.restart(&bed.net, 0);
    bed.etcd.wait_leader(0, Duration::from_secs(20)).await;
    // Once its own member is healthy and caught up again, core-01's server follows it again
    // (two checks 5 s apart), without a gap in its answers.
    let probe = Probe::start(vec![bed.dns_addr(0)], &name, &core03);
    eventually(
        Duration::from_secs(30),
        "core-01's server is back on its own member",
        || async {
            bed.dns_log(0)
                .contains("the first endpoint is healthy and caught up again: following it")
                .then_some(())
        },
    )
    .await;
    let (total, bad) = probe.finish().await;
    assert!(
        bad.is_empty(),
        "{} of {total} probes failed while moving back: {bad:?}",
        bad.len()
    );

    // core-03 dies: registrator, server and member SIGKILLed. Its lease (ttl 5 s) expires and the
    // name is gone elsewhere; not before its TTL.
    let died = Instant::now();
    if let Some(mut r) = bed.registrator.take() {
        r.kill();
    }
    if let Some(mut d) = bed.dns[2].take() {
        d.kill();
    }
    bed.etcd.kill(2);
    for i in 0..2 {
        bed.until_a(i, &name, &[], Duration::from_secs(20)).await;
    }
    let gone = died.elapsed();
    assert!(
        gone >= Duration::from_secs(3),
        "the records outlive their host by about the lease's TTL (5 s), gone after {gone:?}"
    );
    eprintln!("core-03 died: its name NXDOMAIN elsewhere after {gone:?}");

    // core-03 comes back: member, server and registrator again; answered at all three.
    bed.etcd.restart(&bed.net, 2);
    bed.etcd.wait_leader(2, Duration::from_secs(20)).await;
    bed.start_dns(2).await;
    let back = Instant::now();
    bed.start_registrator(2, 5);
    for i in 0..3 {
        bed.until_a(i, &name, &[&core03], Duration::from_secs(20))
            .await;
    }
    eprintln!(
        "core-03 back: answered at all three {:?} after the registrator started",
        back.elapsed()
    );
    drop(ctr);
}

/// core-03's member loses its leader (its peer port is dropped, its client port stays up): its
/// server and its registrator move to the healthy majority. The name registered on core-03
/// never blinks at any host, and a record written meanwhile is answered at core-03 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_leader_is_left_and_no_name_blinks() {
    let mut bed = Bed::start().await;
    bed.start_registrator(2, 6);
    let core03 = bed.net.hosts[2].ip.to_string();
    let svc = format!("cache{}", std::process::id());
    let name = format!("{svc}.webapp.dev.");
    let _ctr = Ctr::run(
        "cluster-cache",
        &[
            "-p",
            "6379",
            "-e",
            "SERVICE_ID=cache-1",
            "-e",
            &format!("SERVICE_NAME={svc}"),
        ],
    );
    for i in 0..3 {
        bed.until_a(i, &name, &[&core03], Duration::from_secs(20))
            .await;
    }

    let probe = Probe::start((0..3).map(|i| bed.dns_addr(i)).collect(), &name, &core03);
    bed.net.partition_peers(2);
    let cut = Instant::now();
    // Wait until the member itself knows it has no leader, then write through core-01.
    eventually(
        Duration::from_secs(10),
        "core-03's member reports no leader",
        || async {
            (crate::support::netns::member_leader(&bed.etcd.urls[2]).await == Some(0)).then_some(())
        },
    )
    .await;
    let noticed = cut.elapsed();
    bed.etcd
        .put(0, "/skydns/dev/webapp/db/db-1", &record("10.1.0.1"))
        .await;
    let seen = bed
        .until_a(2, "db.webapp.dev.", &["10.1.0.1"], Duration::from_secs(10))
        .await;
    eprintln!(
        "core-03 partitioned: its member saw no leader after {noticed:?}; a new record answered at core-03 {:?} after the cut",
        cut.elapsed()
    );
    let _ = seen;
    // Stay partitioned for three lease TTLs: the registrator's lease must be kept alive through
    // another member, so the name never blinks anywhere.
    tokio::time::sleep(Duration::from_secs(18).saturating_sub(cut.elapsed())).await;
    let (total, bad) = probe.finish().await;
    assert!(
        bad.is_empty(),
        "{} of {total} probes of {name} failed during the partition: {:?}\n{}",
        bad.len(),
        &bad[..bad.len().min(10)],
        bed.logs()
    );
    let reg = bed
        .registrator
        .as_ref()
        .map(HostProc::logs)
        .unwrap_or_default();
    assert_eq!(
        reg.matches("granted a new lease").count(),
        1,
        "the registrator kept its first lease:\n{}",
        tail(&reg)
    );
    assert!(
        !reg.contains("lease lost"),
        "the lease was never lost:\n{}",
        tail(&reg)
    );
    assert_eq!(bed.metric(2, "lodestar_dns_view_stale").await, Some(0.0));
    // Progress notifications, asked for every second, keep the age fresh on a quiet cluster.
    let age = bed
        .metric(2, "lodestar_dns_view_progress_age_seconds")
        .await
        .expect("progress age");
    assert!(age < 3.0, "heard from etcd {age} s ago on a healthy member");
    bed.net.heal_peers(2);
    bed.etcd.wait_leader(2, Duration::from_secs(20)).await;

    // Two of three members gone: the last one has no leader, so no server can follow etcd. They
    // say so (view_stale 1, /readyz 503 with the reason) and keep answering from the last
    // snapshot; when the members come back, they follow again (and are ready again).
    bed.etcd.kill(0);
    bed.etcd.kill(1);
    for i in 0..3 {
        eventually(
            Duration::from_secs(15),
            &format!("server {i} says its view is stale"),
            || async {
                (bed.metric(i, "lodestar_dns_view_stale").await == Some(1.0)).then_some(())
            },
        )
        .await;
        assert_eq!(a(bed.dns_addr(i), &name).await, Ok(vec![core03.clone()]));
    }
    let (code, body) = http_get(bed.metrics_addr(2), "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("stale"), "{body}");
    let age = bed
        .metric(2, "lodestar_dns_view_progress_age_seconds")
        .await
        .expect("progress age");
    assert!(age >= 0.0, "{age}");
    bed.etcd.restart(&bed.net, 0);
    bed.etcd.restart(&bed.net, 1);
    for i in 0..3 {
        eventually(
            Duration::from_secs(30),
            &format!("server {i} follows etcd again"),
            || async {
                (bed.metric(i, "lodestar_dns_view_stale").await == Some(0.0)).then_some(())
            },
        )
        .await;
    }
    let (code, body) = http_get(bed.metrics_addr(2), "/readyz").await;
    assert_eq!(code, 200, "{body}");
    // The line that says the watch is back tells how long the view followed no usable member:
    // the outage (seconds), not the last reconnect (a millisecond).
    let log = bed.dns_log(2);
    let stale_ms = log
        .lines()
        .filter(|l| l.contains("watching again"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("stale_ms").and_then(|m| m.as_u64()))
        .max()
        .unwrap_or(0);
    assert!(stale_ms >= 1000, "stale_ms {stale_ms}:\n{}", tail(&log));
    bed.etcd
        .put(1, "/skydns/dev/webapp/db/db-2", &record("10.1.0.2"))
        .await;
    for i in 0..3 {
        bed.until_a(
            i,
            "db.webapp.dev.",
            &["10.1.0.1", "10.1.0.2"],
            Duration::from_secs(10),
        )
        .await;
    }
}

/// `make cluster`'s script, as the README tells a user to try it: three hosts each with an etcd
/// member, its own Docker engine, lodestar-dns and the registrator; `docker run` redis on core-03's
/// engine; the printed `dig` at core-01 answers core-03's address; `down` leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn make_cluster_runs_the_tutorial_and_cluster_stop_removes_it() {
    let lock = std::fs::File::create("/tmp/lodestar-test-net-19.lock").expect("lock file");
    lock.lock().expect("lock");
    let bin = PathBuf::from(DNS)
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let env = [
        ("CLUSTER_PREFIX", "lt19-"),
        ("CLUSTER_NET", "10.88.19"),
        ("CLUSTER_BRIDGE", "lsct19"),
        ("CLUSTER_DIR", "/run/lodestar-test-cluster-19"),
    ];
    let script = crate::support::repo_file("scripts/cluster.sh");
    let run = |what: &str| {
        let mut c = std::process::Command::new(&script);
        c.arg(what).env("BIN", &bin);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("scripts/cluster.sh")
    };
    struct Down<F: Fn()>(F);
    impl<F: Fn()> Drop for Down<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _down = Down(|| {
        run("down");
    });
    let up = run("up");
    let printed = String::from_utf8_lossy(&up.stdout).to_string();
    assert!(
        up.status.success(),
        "cluster up: {printed}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let docker_run = printed
        .lines()
        .find(|l| l.contains("docker -H") && l.contains("SERVICE_NAME=redis"))
        .expect("the printed docker run line")
        .trim()
        .to_string();
    let dig = printed
        .lines()
        .find(|l| l.trim().starts_with("dig @10.88.19.101 redis.webapp.dev"))
        .expect("the printed dig line")
        .trim()
        .to_string();
    let out = std::process::Command::new("sh")
        .args(["-c", &docker_run])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "{docker_run}: {out:?}");
    let answer = eventually(Duration::from_secs(20), &dig, || async {
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("{dig} +short")])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!text.is_empty()).then_some(text)
    })
    .await;
    assert_eq!(answer, "10.88.19.103", "{dig}");

    let down = run("down");
    assert!(down.status.success(), "{down:?}");
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    assert!(
        !String::from_utf8_lossy(&netns.stdout).contains("lt19-core"),
        "namespaces removed"
    );
    assert!(!std::path::Path::new("/run/lodestar-test-cluster-19").exists());
}

/// The library as a custom scheduler uses it: its member is SIGKILLed; the one write that saw it
/// fail is retried like any failed write, and the registry goes on through another member with
/// the same lease (found by the soak: it used to keep calling the dead member).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_registry_goes_on_through_another_member_when_its_member_dies() {
    use lodestar::etcd::EtcdConfig;
    use lodestar::registry::{EtcdRegistry, Registry};
    use lodestar::{Prefix, Service};

    let net = Net::create(3);
    let mut etcd = EtcdCluster::start(&net).await;
    let config = EtcdConfig {
        endpoints: etcd
            .endpoints_from(0)
            .split(',')
            .map(String::from)
            .collect(),
        ..Default::default()
    };
    let (mut reg, _) = EtcdRegistry::connect(
        &config,
        Prefix::default(),
        "scheduler",
        Duration::from_secs(30),
    )
    .await
    .expect("connect");
    let svc = |host: &str| Service {
        host: host.into(),
        ..Default::default()
    };
    reg.register("a.web.webapp.dev", &svc("10.0.0.1"))
        .await
        .expect("register through member 0");
    let lease = reg.lease();
    etcd.kill(0);
    // A write may fail while the member is found dead, or while the other two elect a leader
    // when it was theirs; each is retried like any failed write until it goes through. Once one
    // has gone through another member, the next ones go through it the first time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut through = false;
    for (k, name) in ["b", "c", "d"].iter().enumerate() {
        let name = format!("{name}.web.webapp.dev");
        let host = format!("10.0.0.{}", k + 2);
        loop {
            match reg.register(&name, &svc(&host)).await {
                Ok(()) => break,
                Err(e) => {
                    assert!(
                        !through,
                        "{name} failed after a write had gone through another member: {e}"
                    );
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no write went through another member within 30 s: {e}"
                    );
                }
            }
        }
        through = true;
    }
    reg.keep_alive()
        .await
        .expect("keep-alive through another member");
    assert_eq!(reg.lease(), lease, "the same lease goes on");
    let names: Vec<String> = reg.registered().await.expect("list").into_keys().collect();
    assert_eq!(
        names,
        [
            "a.web.webapp.dev",
            "b.web.webapp.dev",
            "c.web.webapp.dev",
            "d.web.webapp.dev"
        ]
    );
}
