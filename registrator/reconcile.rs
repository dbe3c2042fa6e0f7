//! Reconciliation: make what etcd holds for this host equal to what Docker runs.
//!
//! The reconciler owns the desired state ([`state::State`]: containers from [`DockerUpdate`]s,
//! turned into services by [`crate::services`], less those being drained) and an
//! [`EtcdRegistry`]. After every batch of updates, every `--ttl`/3 (when
//! it also keeps the lease alive) and after every reconnect it lists what its lease holds and
//! applies [`plan`]: missing records are written, stale ones deleted (only ever keys on its own
//! lease), records deleted behind its back come back. Nothing is reconciled before the first
//! listing from Docker, so a registrator that starts while Docker is away deletes nothing; but
//! from its first connection to etcd on it holds its lease (adopted after a restart) and keeps it
//! alive, so the records of containers that run on while Docker is away never expire.
//!
//! While etcd is away it keeps the desired state and retries with backoff capped at 2 s. Every
//! request is timed out and requires a leader: a member that stops answering or loses its leader
//! is left at once for the next endpoint, where the lease is adopted and refreshed (well inside
//! its TTL), so the records never expire. A record etcd refuses for itself (over its request
//! size) is skipped with a warning; the other records go on; so is a name another owner's live
//! lease holds ([`RegistryError::Conflict`]: logged once, counted, taken when that lease is gone). Each pass says whether it succeeded
//! (`/readyz`). One thing ends the reconciler: another live process holds this host id
//! ([`RegistryError::Claimed`]), which the registrator reports and exits on.

use std::sync::Arc;
use std::time::Duration;

use lodestar::etcd::EtcdConfig;
use lodestar::registry::{plan, Change, EtcdRegistry, LeaseOrigin, Registry, RegistryError};
use lodestar::Prefix;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::docker::DockerUpdate;
use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::services::Settings;

mod state;
use state::State;

/// When a stopped container's records go (`--deregister`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Deregister {
    /// As soon as the container stops.
    Always,
    /// Only when it exited with code 0; a failed container keeps its records until it is removed.
    OnSuccess,
}

/// Everything the reconciler needs.
pub struct Reconciler {
    /// How to reach etcd.
    pub etcd: EtcdConfig,
    /// Key prefix.
    pub prefix: Prefix,
    /// Container -> services settings (host id, address, domain...).
    pub settings: Settings,
    /// Lease TTL.
    pub ttl: Duration,
    /// `--deregister`.
    pub deregister: Deregister,
    /// `--cleanup-on-exit`: revoke the lease on the way out.
    pub cleanup_on_exit: bool,
    /// `--drain-grace`: how long a stopping container's records stay withdrawn while it runs on,
    /// when it has no stop timeout of its own.
    pub drain_grace: Duration,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where each pass says whether it succeeded.
    pub readiness: Arc<Readiness>,
}

impl Reconciler {
    /// Runs until `token` is cancelled, then leaves the records on the lease (or revokes it with
    /// `--cleanup-on-exit`). Returns an error only when another live process holds this host id.
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<DockerUpdate>,
        token: CancellationToken,
    ) -> Result<(), RegistryError> {
        let mut state = State {
            drain_grace: self.drain_grace,
            ..State::default()
        };
        let mut registry: Option<EtcdRegistry> = None;
        let check_every = (self.ttl / 3).max(Duration::from_millis(500));
        let mut check = tokio::time::interval(check_every);
        let mut backoff = lodestar::runtime::reconnect_backoff();
        let mut retry_at: Option<Instant> = None;
        let mut failures = 0u32;
        let mut preferred = PreferredCheck::default();
        loop {
            let mut keep_alive = false;
            tokio::select! {
                () = token.cancelled() => break,
                u = rx.recv() => {
                    let Some(u) = u else { break };
                    state.apply(u);
                    // Take everything already queued: one reconcile per batch.
                    while let Ok(u) = rx.try_recv() {
                        state.apply(u);
                    }
                }
                _ = check.tick() => keep_alive = true,
                () = sleep_until(retry_at) => retry_at = None,
                () = sleep_until(state.drains.next()) => state.expire_drains(),
            }
            // Back to the first endpoint (this host's member) once it is healthy again.
            if keep_alive && registry.is_some() && preferred.due(&self.etcd).await {
                info!(member = %self.etcd.endpoints.first().map_or("", String::as_str), "the first endpoint is healthy again: moving back to it");
                self.etcd.prefer_first();
                registry = None;
            }
            let result = if state.listed {
                self.sync(&mut state, &mut registry, keep_alive).await
            } else if keep_alive || retry_at.is_none() && registry.is_none() {
                // Docker not listed yet: nothing to reconcile, but the lease is held from the
                // start, so that records of containers running meanwhile never expire.
                self.hold(&mut registry).await
            } else {
                continue;
            };
            match result {
                Ok(()) => {
                    if failures > 0 {
                        info!("etcd reachable again; records reconciled");
                    }
                    failures = 0;
                    backoff = lodestar::runtime::reconnect_backoff();
                    retry_at = None;
                    if state.listed {
                        self.readiness.reconcile.set(Ok(()));
                    }
                }
                Err(e @ RegistryError::Claimed { .. }) => {
                    error!(error = %e, owner = %self.settings.host_id, "another live registrator holds this host id: stopping (give each host its own --host-id)");
                    return Err(e);
                }
                Err(error) => {
                    self.metrics.etcd_errors.inc();
                    self.readiness.reconcile.set(Err(error.to_string()));
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        warn!(%error, failures, endpoints = ?self.etcd.endpoints, "etcd unavailable, retrying; keeping the desired state");
                    }
                    // Leave the member that failed: the next connection tries the others first.
                    if matches!(error, RegistryError::Etcd(_)) {
                        self.etcd.avoid_current();
                    }
                    registry = None;
                    retry_at =
                        Some(Instant::now() + backoff.next().unwrap_or(Duration::from_secs(2)));
                }
            }
        }
        match (self.cleanup_on_exit, registry) {
            (true, Some(reg)) => {
                let lease = reg.lease();
                match reg.revoke().await {
                    Ok(()) => info!(
                        lease = format!("{lease:x}"),
                        "lease revoked: this host's records are gone"
                    ),
                    Err(error) => {
                        warn!(%error, "could not revoke the lease; the records expire with it")
                    }
                }
            }
            // A clean stop lets the lease go, records and all, to the next registrator of this
            // host, which adopts it at once.
            (false, Some(mut reg)) => match reg.release().await {
                Ok(()) => info!(
                    lease = format!("{:x}", reg.lease()),
                    "lease released: a registrator restarted within --ttl adopts it"
                ),
                Err(error) => {
                    warn!(%error, "could not release the lease; a restart waits to see it unrefreshed before adopting it")
                }
            },
            _ => {}
        }
        Ok(())
    }

    /// Connected to etcd with this host's lease (claimed: adopted, or granted), or an error.
    async fn connected<'r>(
        &self,
        registry: &'r mut Option<EtcdRegistry>,
    ) -> Result<(&'r mut EtcdRegistry, bool), RegistryError> {
        if registry.is_some() {
            return registry
                .as_mut()
                .map(|r| (r, false))
                .ok_or(RegistryError::LeaseLost(0));
        }
        let (r, origin) = EtcdRegistry::connect(
            &self.etcd,
            self.prefix.clone(),
            &self.settings.host_id,
            self.ttl,
        )
        .await?;
        match origin {
            LeaseOrigin::Adopted => {
                info!(lease = format!("{:x}", r.lease()), owner = %self.settings.host_id, "adopted this host's lease: its records stay")
            }
            LeaseOrigin::Granted => {
                info!(lease = format!("{:x}", r.lease()), owner = %self.settings.host_id, "granted a new lease")
            }
        }
        Ok((registry.insert(r), true))
    }

    /// Before the first listing from Docker: hold the lease and keep it alive.
    async fn hold(&self, registry: &mut Option<EtcdRegistry>) -> Result<(), RegistryError> {
        let (reg, _) = self.connected(registry).await?;
        reg.keep_alive().await?;
        reg.check_owner().await
    }

    async fn sync(
        &self,
        state: &mut State,
        registry: &mut Option<EtcdRegistry>,
        keep_alive: bool,
    ) -> Result<(), RegistryError> {
        // A new connection (a restart, or a move to another member) refreshes the lease at once.
        let (reg, new) = self.connected(registry).await?;
        let keep_alive = keep_alive || new;
        // A lost lease can show up in any call: take a new one and reconcile from nothing.
        match self.reconcile(state, reg, keep_alive).await {
            Err(RegistryError::LeaseLost(old)) => {
                warn!(
                    lease = format!("{old:x}"),
                    "lease lost (expired, revoked or etcd's data gone); registering everything again"
                );
                reg.renew().await?;
                self.reconcile(state, reg, false).await
            }
            other => other,
        }
    }

    /// One pass: keep the lease alive if due (and check that this process still owns it), then
    /// write what is missing and delete what is stale.
    async fn reconcile(
        &self,
        state: &mut State,
        reg: &mut EtcdRegistry,
        keep_alive: bool,
    ) -> Result<(), RegistryError> {
        if keep_alive {
            reg.keep_alive().await?;
            reg.check_owner().await?;
        }
        let registered = reg.registered().await?;
        let desired = state.desired(&self.settings, self.deregister, &registered);
        self.metrics.containers.set(state.containers.len() as i64);
        let changes = plan(&desired, &registered);
        self.metrics.reconciles.inc();
        for change in &changes {
            match change {
                Change::Put(name, svc) => match reg.register(name, svc).await {
                    Ok(()) => {
                        state.rejected.remove(name);
                        if state.conflicts.remove(name).is_some() {
                            info!(name, "the other holder's lease is gone: taken");
                        }
                        info!(name, host = %svc.host, port = svc.port, "registered");
                    }
                    Err(RegistryError::Conflict { name, lease }) => {
                        if state.conflicts.get(&name) != Some(&lease) {
                            let holder = reg.owner_of(lease).await.ok().flatten();
                            let container = state.container_of(&name);
                            warn!(
                                name,
                                key = %self.prefix.key_for_name(&name).unwrap_or_default(),
                                container,
                                host = %self.settings.host_id,
                                held_by = holder.as_deref().unwrap_or("unknown"),
                                lease = format!("{lease:x}"),
                                "another host's live lease holds this name: not overwritten; taken when that lease is gone"
                            );
                            state.conflicts.insert(name, lease);
                        }
                        continue;
                    }
                    Err(RegistryError::Rejected { name, why }) => {
                        if state.rejected.get(&name) != Some(&why) {
                            warn!(name, error = %why, "etcd refused this record; skipping it (the others go on)");
                            state.rejected.insert(name, why);
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                Change::Delete(name) => {
                    reg.deregister(name).await?;
                    info!(name, "deregistered");
                }
            }
            self.metrics.corrections.inc();
        }
        state.rejected.retain(|name, _| desired.contains_key(name));
        state.conflicts.retain(|name, _| desired.contains_key(name));
        self.metrics.conflicts.set(state.conflicts.len() as i64);
        self.metrics.services.set(desired.len() as i64);
        if !changes.is_empty() {
            debug!(
                changes = changes.len(),
                services = desired.len(),
                "reconciled"
            );
        }
        Ok(())
    }
}

/// Whether to go back to the first endpoint: while on another member, it is asked every
/// [`lodestar::view::PREFER_EVERY`], and must be healthy (a leader) at two checks in a row.
#[derive(Default)]
struct PreferredCheck {
    last: Option<Instant>,
    healthy_in_a_row: u32,
}

impl PreferredCheck {
    async fn due(&mut self, etcd: &EtcdConfig) -> bool {
        if etcd.on_first()
            || self
                .last
                .is_some_and(|t| t.elapsed() < lodestar::view::PREFER_EVERY)
        {
            return false;
        }
        self.last = Some(Instant::now());
        match etcd.check_first().await {
            Ok(_) => self.healthy_in_a_row += 1,
            Err(_) => self.healthy_in_a_row = 0,
        }
        if self.healthy_in_a_row >= 2 {
            self.healthy_in_a_row = 0;
            return true;
        }
        false
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
