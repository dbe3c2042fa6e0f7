//! `make soak`: an hour of load and faults on the tutorial's three hosts, and nothing wrong.
//!
//! `hosts` starts the cluster (etcd member, Docker engine, `lodestar-dns`, registrator on each host;
//! Knot as the upstream); `truth` seeds the names that never change and judges answers; `clients`
//! ask every server steadily; `churn` changes names through the library, lets leases expire and
//! watches the registrators, timing how fast every server follows; `watch` samples every
//! process's resources; `book` is the ledger they all write to. This file runs the faults, one a
//! minute in rotation over the hosts, and prints the final line:
//!
//! ```text
//! soak: PASS 3600 s, 7200000 queries, 0 wrong, 0 lost (...), convergence p50/p99/max ..., ...
//! ```
//!
//! and exits non-zero on any wrong answer, any lost one, a change that did not converge, or a
//! process that grew past the bound (the failures are listed above it, each with the fault that
//! was active, and the logs are kept).

mod book;
mod churn;
mod clients;
mod hosts;
mod truth;
mod watch;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::percentile;
use crate::opts::Opts;
use crate::support::netns::member_leader;
use book::Book;
use hosts::{Hosts, Proc, HOSTS};
use truth::{judge, Truth, Want};

/// The faults, in the order they come round.
const FAULTS: [&str; 6] = [
    "SIGKILL the etcd member",
    "partition (peer port cut)",
    "SIGTERM and restart lodestar-dns",
    "restart the registrator",
    "restart the Docker engine",
    "SIGSTOP the etcd member for 10 s",
];

fn publish(hosts: &Hosts, procs: &Mutex<Vec<Proc>>) {
    *procs.lock().expect("procs") = hosts.processes();
}

/// Waits (up to 60 s) until member `i` has a leader again.
async fn leader_again(hosts: &Hosts, i: usize, book: &Book) {
    let start = Instant::now();
    while member_leader(&hosts.etcd.urls[i]).await.unwrap_or(0) == 0 {
        if start.elapsed() > Duration::from_secs(60) {
            book.fail(format!(
                "etcd member of core-0{} has no leader 60 s after the fault",
                i + 1
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies fault `kind` to host `i` and undoes it.
async fn fault(hosts: &mut Hosts, kind: usize, i: usize, book: &Book, procs: &Mutex<Vec<Proc>>) {
    book.fault_on(&format!("{} of core-0{}", FAULTS[kind], i + 1));
    match kind {
        0 => {
            hosts.etcd.kill(i);
            publish(hosts, procs);
            tokio::time::sleep(Duration::from_secs(15)).await;
            hosts.etcd.restart(&hosts.net, i);
            leader_again(hosts, i, book).await;
        }
        1 => {
            hosts.net.partition_peers(i);
            tokio::time::sleep(Duration::from_secs(20)).await;
            hosts.net.heal_peers(i);
            leader_again(hosts, i, book).await;
        }
        2 => {
            book.down_begin(i);
            let t = Instant::now();
            if !tokio::task::block_in_place(|| hosts.stop_dns(i)) {
                book.fail(format!(
                    "lodestar-dns of core-0{} did not exit within 10 s of SIGTERM",
                    i + 1
                ));
            }
            let stopped = t.elapsed();
            hosts.start_dns(i).await;
            book.down_end(i);
            eprintln!(
                "{:>7.1}s lodestar-dns of core-0{}: stopped in {:.0} ms, answering again {:.0} ms after SIGTERM",
                book.secs(),
                i + 1,
                stopped.as_secs_f64() * 1000.0,
                t.elapsed().as_secs_f64() * 1000.0
            );
        }
        3 => {
            if !tokio::task::block_in_place(|| hosts.stop_registrator(i)) {
                book.fail(format!(
                    "the registrator of core-0{} did not exit within 10 s of SIGTERM",
                    i + 1
                ));
            }
            hosts.start_registrator(i);
        }
        4 => {
            if !tokio::task::block_in_place(|| hosts.stop_docker(i)) {
                book.fail(format!(
                    "the Docker engine of core-0{} did not stop within 30 s",
                    i + 1
                ));
            }
            hosts.start_docker(i);
            if !hosts.wait_docker(i).await {
                book.fail(format!(
                    "the Docker engine of core-0{} did not come back within 60 s",
                    i + 1
                ));
            }
        }
        _ => {
            if let Some(m) = hosts.etcd.member(i) {
                m.signal(libc::SIGSTOP);
                tokio::time::sleep(Duration::from_secs(10)).await;
                m.signal(libc::SIGCONT);
            }
            leader_again(hosts, i, book).await;
        }
    }
    publish(hosts, procs);
    book.fault_off();
}

/// Before the clients start: every server answers every stable name and the large one.
async fn settled(hosts: &Hosts, truth: &Truth) {
    let start = Instant::now();
    for i in 0..HOSTS {
        let a = hosts.dns_addr(i);
        let mut asks: Vec<(String, bool, Want)> = truth
            .stable
            .iter()
            .map(|(n, v)| (n.clone(), false, Want::Exactly(v.clone())))
            .collect();
        asks.push((
            truth.large.0.clone(),
            true,
            Want::Exactly(truth.large.1.clone()),
        ));
        for (n, tcp, want) in asks {
            loop {
                if let Ok(m) = clients::ask_once(a, &n, RecordType::A, tcp).await {
                    if judge(truth, &want, &m) {
                        break;
                    }
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{n} at host {i} after 60 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn fmt_ms(sorted: &[f64]) -> String {
    if sorted.is_empty() {
        return "none".into();
    }
    format!(
        "p50 {:.1} / p99 {:.1} / max {:.0} ms ({})",
        percentile(sorted, 0.50),
        percentile(sorted, 0.99),
        sorted[sorted.len() - 1],
        sorted.len()
    )
}

pub async fn soak(o: &Opts) {
    let seconds = o.soak_seconds;
    let every = Duration::from_secs(o.fault_every);
    eprintln!(
        "soak: {seconds} s, {} qps, a fault every {} s; starting the three hosts",
        o.soak_qps,
        every.as_secs()
    );
    let mut hosts = Hosts::start().await;
    let endpoints = hosts.etcd.urls.clone();
    let truth = Arc::new(Truth::seed(&endpoints).await);
    settled(&hosts, &truth).await;
    let servers: Vec<_> = (0..HOSTS).map(|i| hosts.dns_addr(i)).collect();
    let socks: Vec<_> = (0..HOSTS).map(|i| hosts.sock(i)).collect();
    let book = Arc::new(Book::new());
    let procs = Arc::new(Mutex::new(Vec::new()));
    publish(&hosts, &procs);
    eprintln!(
        "soak: cluster up, {} stable names and one of {} answered everywhere; load on",
        truth.stable.len(),
        truth.large.1.len()
    );

    let mut tasks = Vec::new();
    let share = o.soak_qps / HOSTS as u32;
    for (i, a) in servers.iter().enumerate() {
        tasks.push(tokio::spawn(clients::client(
            i,
            *a,
            share,
            truth.clone(),
            book.clone(),
        )));
    }
    tasks.push(tokio::spawn(churn::churn(
        endpoints.clone(),
        servers.clone(),
        truth.clone(),
        book.clone(),
    )));
    tasks.push(tokio::spawn(churn::expiring(
        endpoints.clone(),
        servers.clone(),
        book.clone(),
    )));
    tasks.push(tokio::spawn(churn::registrator(
        socks,
        servers.clone(),
        book.clone(),
    )));
    let csv = std::env::temp_dir().join("lodestar-soak-samples.csv");
    eprintln!(
        "soak: every sample (role, pid, seconds, memory, counts: see its first line) in {}",
        csv.display()
    );
    let watcher = tokio::spawn(watch::watch(procs.clone(), book.clone(), csv));

    let end = book.start + Duration::from_secs(seconds);
    let mut k = 0;
    loop {
        let next = book.start + every * (k + 1);
        if next >= end {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let kind = k as usize % FAULTS.len();
        let host = (k as usize + k as usize / FAULTS.len()) % HOSTS;
        fault(&mut hosts, kind, host, &book, &procs).await;
        k += 1;
    }
    tokio::time::sleep_until(end.into()).await;
    book.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    // The checks still running (convergence, expiry) see the stop within a poll.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let samples = watcher.await.unwrap_or_default();

    let csv = std::env::temp_dir().join("lodestar-soak-samples.csv");
    match std::fs::write(&csv, samples.csv()) {
        Ok(()) => eprintln!(
            "soak: every sample (role, pid, seconds, memory, counts: see its first line) in {}",
            csv.display()
        ),
        Err(e) => eprintln!("soak: {}: {e}", csv.display()),
    }
    let (leaks, judged) = samples.leaks(o.settle as f64);
    for l in &leaks {
        book.fail(format!("grew: {l}"));
    }
    let c = &book.counts;
    let (wrong, lost) = (
        c.wrong.load(Ordering::SeqCst),
        c.lost.load(Ordering::SeqCst),
    );
    let mut conv = book.converge.lock().expect("times").clone();
    conv.sort_by(f64::total_cmp);
    let mut exp = book.expire.lock().expect("times").clone();
    exp.sort_by(f64::total_cmp);
    let rss: Vec<String> = samples
        .rss_by_role()
        .iter()
        .map(|(r, (a, z))| format!("{r} {a:.0}/{z:.0}"))
        .collect();
    let failed = book.failed.load(Ordering::SeqCst);
    let failures = book.failures();
    if failed > 0 {
        eprintln!("\nsoak: {failed} failures; the first {}:", failures.len());
        for f in &failures {
            eprintln!("  {f}");
        }
        let keep = std::path::PathBuf::from(format!(
            "/var/tmp/lodestar-soak-logs-{}",
            std::process::id()
        ));
        if std::fs::create_dir_all(&keep).is_ok() {
            for e in std::fs::read_dir(hosts.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                }
            }
            eprintln!("  the processes' logs: {}", keep.display());
        }
    }
    drop(hosts);
    println!(
        "soak: {} {} s, {} queries, {} wrong, {} lost ({} unanswered while the harness restarted their server), \
         write->answer {}, lease expiry->gone {}, {} faults, {} processes judged for growth ({} grew), RSS MB start/end: {}",
        if failed == 0 { "PASS" } else { "FAIL" },
        seconds,
        c.queries.load(Ordering::SeqCst),
        wrong,
        lost,
        c.restarting.load(Ordering::SeqCst),
        fmt_ms(&conv),
        fmt_ms(&exp),
        book.faults(),
        judged,
        leaks.len(),
        rss.join(", ")
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
