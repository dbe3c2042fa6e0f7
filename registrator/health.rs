//! Whether the registrator can do its job now: probes ask the Docker engine (`ping`, in
//! `docker`) and etcd (a member's status, with a leader, here) every second, each within two
//! seconds, and the reconciler says whether its last pass succeeded; `/readyz` is 503 within a few seconds of losing either
//! dependency and while reconciling fails (etcd answering is not enough: a pass can fail on what
//! it reads), and `/healthz`'s body and the `docker_up` / `etcd_up` gauges say the same.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lodestar::etcd::{check_member, EtcdConfig};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the probe asks.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one ask may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's state.
#[derive(Debug, Default)]
pub struct Dependency {
    up: AtomicBool,
    /// Since when it is down, and why.
    down: Mutex<Option<(Instant, String)>>,
}

impl Dependency {
    /// Whether the last probe reached it.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records the outcome of the last check (or pass).
    pub fn set(&self, result: Result<(), String>) {
        let mut down = match self.down.lock() {
            Ok(d) => d,
            Err(p) => p.into_inner(),
        };
        match result {
            Ok(()) => {
                self.up.store(true, Ordering::Relaxed);
                *down = None;
            }
            Err(why) => {
                self.up.store(false, Ordering::Relaxed);
                let since = down.as_ref().map_or_else(Instant::now, |(t, _)| *t);
                *down = Some((since, why));
            }
        }
    }

    /// `ok`, or `<failing> for N s: why` (`not checked yet` before the first probe).
    pub fn describe(&self, failing: &str) -> String {
        if self.is_up() {
            return "ok".into();
        }
        match self.down.lock().ok().and_then(|d| d.clone()) {
            Some((since, why)) => format!(
                "{failing} for {:.0} s: {why}",
                since.elapsed().as_secs_f64()
            ),
            None => "not checked yet".into(),
        }
    }
}

/// Docker's and etcd's states, and the reconciler's.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The Docker engine.
    pub docker: Dependency,
    /// etcd.
    pub etcd: Dependency,
    /// The last reconcile pass (records written and deleted as Docker says).
    pub reconcile: Dependency,
}

impl Readiness {
    /// Both reachable, and the last pass succeeded.
    pub fn ready(&self) -> bool {
        self.docker.is_up() && self.etcd.is_up() && self.reconcile.is_up()
    }

    /// `docker: ...; etcd: ...; reconcile: ...`.
    pub fn describe(&self) -> String {
        format!(
            "docker: {}; etcd: {}; reconcile: {}",
            self.docker.describe("unreachable"),
            self.etcd.describe("unreachable"),
            self.reconcile.describe("failing")
        )
    }
}

/// Probes etcd every [`PROBE_EVERY`] until `token` is cancelled: a usable member (answers, has a
/// leader), as the registrator's own requests need. (Docker is probed by `docker::probe`.)
pub async fn probe_etcd(state: Arc<Readiness>, etcd: EtcdConfig, token: CancellationToken) {
    let mut client: Option<etcd_client::Client> = None;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = tokio::time::timeout(PROBE_TIMEOUT, async {
            if client.is_none() {
                client = Some(etcd.connect().await.map_err(|e| e.to_string())?);
            }
            match client.as_mut() {
                Some(c) => check_member(c, "etcd")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Err("not connected".to_string()),
            }
        })
        .await
        .unwrap_or_else(|_| Err("no answer within 2 s".into()));
        if result.is_err() {
            client = None;
        }
        debug!(?result, "etcd probe");
        state.etcd.set(result);
    }
}
