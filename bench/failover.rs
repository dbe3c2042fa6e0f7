//! `make bench-failover`: the three-host cluster of the cluster tests (network namespaces, an etcd
//! member and `lodestar-dns` on each) and the faults of a real cluster, measured.
//!
//! - **Member kill**: the server on a host whose member is not the leader watches its own member;
//!   that member is SIGKILLed and a record is written through the leader at once. Measured: kill ->
//!   the record answered by that server (the watch gap), and the answer times of a steady client of
//!   that server meanwhile.
//! - **Partition**: the same, but the member's peer port is dropped (it loses its leader, its client
//!   port stays open). Measured: cut -> the record answered at the cut-off host (staleness).
//! - **Healthy side**: the registrator runs on the cut-off host (lease TTL 6 s) and the partition
//!   lasts 15 s: every answer for its name at the other hosts is counted; lost ones must be 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::percentile;
use crate::opts::Opts;
use crate::support::netns::{start_dns, start_registrator, EtcdCluster, HostProc, Net};
use crate::support::{data, docker_ready, query, Ctr};

const DNS: &str = env!("CARGO_BIN_EXE_lodestar-dns");
const REGISTRATOR: &str = env!("CARGO_BIN_EXE_lodestar-registrator");

fn addr(net: &Net, i: usize) -> SocketAddr {
    SocketAddr::new(net.hosts[i].ip.into(), 53)
}

/// Starts (or restarts) the server of host `i`, waits until it answers.
async fn fresh_dns(net: &Net, etcd: &EtcdCluster, i: usize, dir: &Path) -> HostProc {
    let p = start_dns(net, etcd, i, &PathBuf::from(DNS), dir);
    let a = addr(net, i);
    let start = Instant::now();
    loop {
        if let Ok(m) = query(a, "webapp.dev.", RecordType::SOA).await {
            if m.metadata.response_code == ResponseCode::NoError {
                return p;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{}", p.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks `name` A at `a` until it answers `want`: the time from `since`.
async fn until(a: SocketAddr, name: &str, want: &str, since: Instant) -> Duration {
    loop {
        if let Ok(m) = query(a, name, RecordType::A).await {
            if data(&m).iter().any(|d| d == want) {
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "{name} never answered at {a}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A steady client: `name` A at each address every 10 ms until stopped. (answer times in ms,
/// wrong or missing answers).
fn prober(
    addrs: Vec<SocketAddr>,
    name: String,
    want: String,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<(Vec<f64>, u64)>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let task = tokio::spawn(async move {
        let (mut times, mut bad) = (Vec::new(), 0u64);
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            for a in &addrs {
                let t = Instant::now();
                let ok = match query(*a, &name, RecordType::A).await {
                    Ok(m) => data(&m).contains(&want),
                    Err(_) => false,
                };
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                if !ok {
                    bad += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (times, bad)
    });
    (stop, task)
}

async fn finish(
    p: (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        tokio::task::JoinHandle<(Vec<f64>, u64)>,
    ),
) -> (Vec<f64>, u64) {
    p.0.store(true, std::sync::atomic::Ordering::Relaxed);
    p.1.await.unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A member that is not the leader.
async fn follower(etcd: &EtcdCluster) -> (usize, usize) {
    for _ in 0..100 {
        if let Some(l) = leader_index(etcd).await {
            return ((l + 1) % 3, l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader");
}

/// The figures of rounds of one kind of fault.
#[derive(Default)]
struct Rounds {
    /// Fault -> a record written on the healthy side answered by the server of the faulty host, ms.
    gaps: Vec<f64>,
    /// Answer times of a steady client of that server during the rounds, ms.
    times: Vec<f64>,
    /// Its wrong or missing answers.
    bad: u64,
}

impl Rounds {
    /// One round: a steady client asks host `h`'s server; `fault` hits `h`'s member; a record
    /// named `label` is written through the leader and timed until `h`'s server answers it.
    async fn run(
        &mut self,
        net: &Net,
        etcd: &mut EtcdCluster,
        h: usize,
        leader: usize,
        label: &str,
        fault: Fault,
    ) {
        let probe = prober(
            vec![addr(net, h)],
            "steady.webapp.dev.".into(),
            "10.9.0.1".into(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let base = match fault {
            Fault::Kill => 10,
            Fault::Partition => 11,
        };
        let ip = format!("10.{base}.0.{}", self.gaps.len() + 1);
        let t = Instant::now();
        match fault {
            Fault::Kill => etcd.kill(h),
            Fault::Partition => net.partition_peers(h),
        }
        etcd.put(
            leader,
            &format!("/skydns/dev/webapp/{label}/x"),
            &format!(r#"{{"host":"{ip}"}}"#),
        )
        .await;
        let answered = until(addr(net, h), &format!("{label}.webapp.dev."), &ip, t).await;
        self.gaps.push(ms(answered));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (times, bad) = finish(probe).await;
        self.times.extend(times);
        self.bad += bad;
    }
}

/// What happens to a member in a round.
#[derive(Clone, Copy)]
enum Fault {
    /// SIGKILL.
    Kill,
    /// Its peer port dropped both ways: it loses its leader, its clients still reach it.
    Partition,
}

pub async fn failover(o: &Opts) {
    let rounds = o.rounds.max(1);
    let net = Net::create(3);
    let mut etcd = EtcdCluster::start(&net).await;
    let dir = tempfile::TempDir::new().expect("tempdir");
    let steady = r#"{"host":"10.9.0.1"}"#;
    etcd.put(0, "/skydns/dev/webapp/steady/s1", steady).await;
    let mut servers: Vec<Option<HostProc>> = Vec::new();
    for i in 0..3 {
        servers.push(Some(fresh_dns(&net, &etcd, i, dir.path()).await));
    }

    let mut kill = Rounds::default();
    let mut part = Rounds::default();
    for r in 0..rounds {
        let (h, leader) = follower(&etcd).await;
        // The old server goes first: a new one beside it would share its port (SO_REUSEPORT).
        servers[h] = None;
        servers[h] = Some(fresh_dns(&net, &etcd, h, dir.path()).await);
        kill.run(&net, &mut etcd, h, leader, &format!("k{r}"), Fault::Kill)
            .await;
        etcd.restart(&net, h);
        etcd.wait_leader(h, Duration::from_secs(30)).await;
    }
    for r in 0..rounds {
        let (h, leader) = follower(&etcd).await;
        // The old server goes first: a new one beside it would share its port (SO_REUSEPORT).
        servers[h] = None;
        servers[h] = Some(fresh_dns(&net, &etcd, h, dir.path()).await);
        part.run(
            &net,
            &mut etcd,
            h,
            leader,
            &format!("p{r}"),
            Fault::Partition,
        )
        .await;
        net.heal_peers(h);
        etcd.wait_leader(h, Duration::from_secs(30)).await;
    }
    let (kill_gap, kill_times, kill_bad) = (kill.gaps, kill.times, kill.bad);
    let (part_gap, part_times, part_bad) = (part.gaps, part.times, part.bad);

    // The healthy side while the registrator's host is cut off for 15 s (lease TTL 6 s).
    docker_ready();
    let (h, _) = follower(&etcd).await;
    let _reg = start_registrator(&net, &etcd, h, 6, &PathBuf::from(REGISTRATOR), dir.path());
    let svc = format!("bench{}", std::process::id());
    let _ctr = Ctr::run(
        "failover",
        &["-p", "6379", "-e", &format!("SERVICE_NAME={svc}")],
    );
    let name = format!("{svc}.webapp.dev.");
    let host_ip = net.hosts[h].ip.to_string();
    for i in 0..3 {
        until(addr(&net, i), &name, &host_ip, Instant::now()).await;
    }
    let others: Vec<SocketAddr> = (0..3).filter(|i| *i != h).map(|i| addr(&net, i)).collect();
    let probe = prober(others, name.clone(), host_ip.clone());
    let cut_probe = prober(vec![addr(&net, h)], name, host_ip);
    net.partition_peers(h);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (healthy_times, healthy_bad) = finish(probe).await;
    let (cut_times, cut_bad) = finish(cut_probe).await;
    net.heal_peers(h);

    let sorted = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let (kill_gap, part_gap) = (sorted(kill_gap), sorted(part_gap));
    let (kill_times, part_times) = (sorted(kill_times), sorted(part_times));
    let (healthy_times, cut_times) = (sorted(healthy_times), sorted(cut_times));
    println!("\n### Failover: three hosts in network namespaces, an etcd member and lodestar-dns on each\n");
    println!("| fault | measure | rounds | median | max | target |");
    println!("|---|---|---:|---:|---:|---|");
    println!(
        "| member of the server's host SIGKILLed | kill -> a new record answered there (watch gap) | {} | {:.0} ms | {:.0} ms | within 1 s |",
        kill_gap.len(),
        percentile(&kill_gap, 0.5),
        kill_gap.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| member of the server's host loses its leader (peer port dropped) | cut -> a new record answered there (staleness) | {} | {:.0} ms | {:.0} ms | within 5 s |",
        part_gap.len(),
        percentile(&part_gap, 0.5),
        part_gap.last().copied().unwrap_or(f64::NAN)
    );
    println!("\n| during | server asked | answers | wrong or lost | p50 | p99 | max |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (what, who, times, bad) in [
        (
            "member kills",
            "the host whose member died",
            &kill_times,
            kill_bad,
        ),
        ("partitions", "the cut-off host", &part_times, part_bad),
        (
            "15 s partition of the registrator's host (lease TTL 6 s)",
            "the two healthy hosts",
            &healthy_times,
            healthy_bad,
        ),
        (
            "15 s partition of the registrator's host (lease TTL 6 s)",
            "the cut-off host",
            &cut_times,
            cut_bad,
        ),
    ] {
        println!(
            "| {what} | {who} | {} | {bad} | {:.2} ms | {:.2} ms | {:.2} ms |",
            times.len(),
            percentile(times, 0.5),
            percentile(times, 0.99),
            times.last().copied().unwrap_or(f64::NAN)
        );
    }
    drop(servers);
}

/// The index of the member that leads now, as its peers see it.
async fn leader_index(etcd: &EtcdCluster) -> Option<usize> {
    let mut ids = Vec::new();
    let mut leader = 0;
    for url in &etcd.urls {
        let status = async {
            let mut c = etcd_client::Client::connect([url.as_str()], None)
                .await
                .ok()?;
            c.status().await.ok()
        };
        let s = tokio::time::timeout(Duration::from_secs(1), status)
            .await
            .ok()
            .flatten();
        ids.push(s.as_ref().and_then(|s| s.header()).map(|h| h.member_id()));
        if let Some(s) = s {
            if s.leader() != 0 {
                leader = s.leader();
            }
        }
    }
    ids.iter().position(|id| *id == Some(leader))
}
