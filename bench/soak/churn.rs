//! What changes during the soak, and how fast every server follows:
//!
//! - [`churn`]: a custom registry written with the library (`lodestar::registry::EtcdRegistry`,
//!   one lease kept alive), putting, moving and removing churning slots 20 times a second; after
//!   each acknowledged write a check asks every server until it answers the new state (write ->
//!   answer, the convergence figures), or fails it after 60 s;
//! - [`expiring`]: every minute a registry of its own registers 20 names, keeps its lease alive
//!   a few seconds and then stops, as a host that dies: every name must be gone at every server
//!   (the expiry figures), or it fails after 60 s;
//! - [`registrator`]: every 5 s, each host's containers (its engine's published ports) against
//!   each server's SRV answer for them: a difference that lasts 60 s fails.
//!
//! Imports: `book`, `truth`, `clients` (one try of a question), `hosts` (an engine's ports), the
//! library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use lodestar::etcd::EtcdConfig;
use lodestar::registry::{EtcdRegistry, Registry, RegistryError};
use lodestar::{Prefix, Service};

use super::book::{Book, Rng};
use super::clients::ask_once;
use super::hosts::published;
use super::truth::{holds, slot_name, srv_ports, Truth, SLOTS};

const LIMIT: Duration = Duration::from_secs(60);

/// Asks every server until each says slot `k` holds `expected`; stops early when a newer
/// write to the slot made this one moot.
async fn converge(
    k: usize,
    version: u64,
    expected: Option<String>,
    t0: Instant,
    servers: Vec<SocketAddr>,
    truth: Arc<Truth>,
    book: Arc<Book>,
) {
    let name = slot_name(k);
    let mut pending: Vec<usize> = (0..servers.len()).collect();
    let mut wait = Duration::from_millis(2);
    while !pending.is_empty() && !book.stopping() {
        if truth.version[k].load(Ordering::SeqCst) != version {
            return;
        }
        let mut left = Vec::new();
        for s in pending {
            match ask_once(servers[s], &name, RecordType::A, false).await {
                Ok(m) if holds(&m, expected.as_deref()) => book.add(&book.converge, t0.elapsed()),
                _ => left.push(s),
            }
        }
        pending = left;
        if t0.elapsed() > LIMIT && !pending.is_empty() {
            if truth.version[k].load(Ordering::SeqCst) == version {
                book.fail(format!(
                    "{name} not {expected:?} at servers {pending:?} {} s after the write",
                    LIMIT.as_secs()
                ));
            }
            return;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 3 / 2).min(Duration::from_millis(100));
    }
}

async fn connect(
    endpoints: &[String],
    owner: &str,
    ttl: Duration,
) -> Result<EtcdRegistry, RegistryError> {
    let etcd = EtcdConfig {
        endpoints: endpoints.to_vec(),
        ..Default::default()
    };
    EtcdRegistry::connect(&etcd, Prefix::default(), owner, ttl)
        .await
        .map(|(r, _)| r)
}

/// The churn driver: 20 writes a second on one lease of 60 s, kept alive every 5 s.
pub async fn churn(
    endpoints: Vec<String>,
    servers: Vec<SocketAddr>,
    truth: Arc<Truth>,
    book: Arc<Book>,
) {
    let ttl = Duration::from_secs(60);
    let mut reg = connect(&endpoints, "soak-churn", ttl)
        .await
        .expect("the churn driver connects");
    // Whether each slot holds an address (None: a write's outcome is unknown).
    let mut present: Vec<Option<bool>> = vec![Some(false); SLOTS];
    let mut rng = Rng::new(42);
    let mut kept = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut n: u64 = 0;
    while !book.stopping() {
        tick.tick().await;
        if kept.elapsed() > Duration::from_secs(5) {
            match reg.keep_alive().await {
                Ok(()) => kept = Instant::now(),
                Err(RegistryError::LeaseLost(l)) => {
                    book.fail(format!("the churn driver's lease {l} expired"));
                    present.fill(None);
                    if let Ok(r) = connect(&endpoints, "soak-churn", ttl).await {
                        reg = r;
                        kept = Instant::now();
                    }
                }
                Err(e) => eprintln!("{:>7.1}s churn keep-alive: {e}", book.secs()),
            }
        }
        let k = rng.below(SLOTS);
        let remove = present[k] == Some(true) && rng.below(2) == 0;
        n += 1;
        let addr = format!("10.{}.{}.{}", 3 + n / 62_500, (n / 250) % 250, n % 250 + 1);
        let name = slot_name(k);
        let version = truth.version[k].fetch_add(1, Ordering::SeqCst) + 1;
        let t0 = Instant::now();
        let done = if remove {
            tokio::time::timeout(Duration::from_secs(10), reg.deregister(&name)).await
        } else {
            truth.ever[k].lock().expect("slot").insert(addr.clone());
            let svc = Service {
                host: addr.clone(),
                ..Default::default()
            };
            tokio::time::timeout(Duration::from_secs(10), reg.register(&name, &svc)).await
        };
        match done {
            Ok(Ok(())) => {
                present[k] = Some(!remove);
                let expected = (!remove).then_some(addr);
                tokio::spawn(converge(
                    k,
                    version,
                    expected,
                    t0,
                    servers.clone(),
                    truth.clone(),
                    book.clone(),
                ));
            }
            other => {
                present[k] = None;
                eprintln!("{:>7.1}s churn write {name}: {other:?}", book.secs());
            }
        }
    }
}

/// Leases let expire: every minute, 20 names on a lease of 5 s kept alive 5 s, then abandoned.
pub async fn expiring(endpoints: Vec<String>, servers: Vec<SocketAddr>, book: Arc<Book>) {
    let ttl = Duration::from_secs(5);
    let mut round = 0;
    tokio::time::sleep(Duration::from_secs(30)).await;
    while !book.stopping() {
        round += 1;
        let names: Vec<String> = (0..20)
            .map(|j| format!("e{j}.x{round}.expire.webapp.dev."))
            .collect();
        let attempt = async {
            let mut reg = connect(&endpoints, &format!("soak-expire-{round}"), ttl).await?;
            for (j, n) in names.iter().enumerate() {
                let svc = Service {
                    host: format!("10.250.{}.{}", round % 250, j + 1),
                    ..Default::default()
                };
                reg.register(n, &svc).await?;
            }
            let mut last = Instant::now();
            for _ in 0..3 {
                tokio::time::sleep(ttl / 3).await;
                reg.keep_alive().await?;
                last = Instant::now();
            }
            Ok::<Instant, RegistryError>(last)
        };
        match tokio::time::timeout(Duration::from_secs(30), attempt).await {
            Ok(Ok(last)) => {
                // Abandoned here: the keep-alives stop, the lease runs out.
                let (servers, names, book) = (servers.clone(), names.clone(), book.clone());
                tokio::spawn(async move {
                    for s in servers {
                        let mut left = names.clone();
                        while !left.is_empty() && !book.stopping() {
                            let mut still = Vec::new();
                            for n in left {
                                match ask_once(s, &n, RecordType::A, false).await {
                                    Ok(m) if m.metadata.response_code == ResponseCode::NXDomain => {
                                    }
                                    _ => still.push(n),
                                }
                            }
                            left = still;
                            if !left.is_empty() && last.elapsed() > LIMIT {
                                book.fail(format!(
                                    "{} names of an expired lease still at {s} after {} s",
                                    left.len(),
                                    LIMIT.as_secs()
                                ));
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        book.add(&book.expire, last.elapsed());
                    }
                });
            }
            other => eprintln!("{:>7.1}s expiring round {round}: {other:?}", book.secs()),
        }
        for _ in 0..600 {
            if book.stopping() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every 5 s: each host's published ports against each server's SRV answer for `app<h>`.
pub async fn registrator(socks: Vec<PathBuf>, servers: Vec<SocketAddr>, book: Arc<Book>) {
    let mut since: Vec<Vec<Option<Instant>>> = vec![vec![None; servers.len()]; socks.len()];
    let mut told: Vec<Vec<bool>> = vec![vec![false; servers.len()]; socks.len()];
    while !book.stopping() {
        for (h, sock) in socks.iter().enumerate() {
            let sock = sock.clone();
            let Ok(Some(want)) = tokio::task::spawn_blocking(move || published(&sock)).await else {
                continue; // the engine is away (restarting): nothing to compare with
            };
            let name = format!("app{h}.webapp.dev.");
            for (s, addr) in servers.iter().enumerate() {
                let got = ask_once(*addr, &name, RecordType::SRV, false)
                    .await
                    .map(|m| srv_ports(&m));
                if got.as_ref() == Ok(&want) {
                    since[h][s] = None;
                    told[h][s] = false;
                    continue;
                }
                let first = *since[h][s].get_or_insert_with(Instant::now);
                if first.elapsed() > LIMIT && !told[h][s] {
                    told[h][s] = true;
                    book.fail(format!(
                        "{name} at server {s}: {got:?} for {} s, while host {h}'s containers publish {want:?}",
                        LIMIT.as_secs()
                    ));
                }
            }
        }
        for _ in 0..50 {
            if book.stopping() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
