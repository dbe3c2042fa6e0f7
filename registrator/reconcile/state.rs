//! What the reconciler knows and wants: the containers the engine reported ([`DockerUpdate`]s
//! applied in order), the ones being drained ([`crate::drain`]), the names another owner holds,
//! and from all that the records this host should hold ([`State::desired`]). Pure: the reconciler
//! ([`super`]) feeds it and writes what it wants.
//!
//! Imports: `docker` (the updates), `drain`, `services`; nothing that does IO.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lodestar::Service;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Deregister;
use crate::docker::DockerUpdate;
use crate::drain::{self, Drains};
use crate::services::{self, Container, RunState, Settings};

/// What the reconciler knows.
#[derive(Default)]
pub(super) struct State {
    pub(super) containers: BTreeMap<String, Container>,
    /// Last services of each container, for `--deregister on-success`.
    pub(super) last: BTreeMap<String, Vec<(String, Service)>>,
    /// Containers whose labels were refused, with the reason (logged once per reason).
    pub(super) refused: BTreeMap<String, String>,
    /// Records etcd refused, with the reason (logged once per reason).
    pub(super) rejected: BTreeMap<String, String>,
    pub(super) listed: bool,
    /// Containers the engine is stopping: their records are withheld ([`crate::drain`]).
    pub(super) drains: Drains,
    /// `--drain-grace`: how long a drain lasts for a container without its own stop timeout.
    pub(super) drain_grace: Duration,
    /// Names another owner's live lease holds (two hosts with one `SERVICE_ID`), with that lease
    /// (logged once per holder); taken when the lease is gone.
    pub(super) conflicts: BTreeMap<String, i64>,
    /// Containers stopped after a drain: stopped on purpose, so `--deregister on-success` keeps
    /// nothing of theirs whatever their exit code.
    pub(super) stopped: BTreeSet<String>,
}

impl State {
    pub(super) fn apply(&mut self, update: DockerUpdate) {
        match update {
            DockerUpdate::Listing(list) => {
                self.containers = list.into_iter().map(|c| (c.id.clone(), c)).collect();
                self.last.retain(|id, _| self.containers.contains_key(id));
                let states: Vec<(String, RunState)> = self
                    .containers
                    .values()
                    .map(|c| (c.id.clone(), c.state))
                    .collect();
                for (id, state) in states {
                    self.ran_or_stopped(&id, state);
                }
                let containers = &self.containers;
                self.stopped.retain(|id| containers.contains_key(id));
                self.drains.retain(|id| {
                    containers
                        .get(id)
                        .is_some_and(|c| c.state == RunState::Running)
                });
                self.listed = true;
            }
            DockerUpdate::Changed(c) => {
                self.ran_or_stopped(&c.id, c.state);
                self.containers.insert(c.id.clone(), *c);
            }
            DockerUpdate::Gone(id) => {
                self.containers.remove(&id);
                self.last.remove(&id);
                self.drains.end(&id);
                self.stopped.remove(&id);
            }
            DockerUpdate::Stopping(id) => {
                let Some(c) = self.containers.get(&id) else {
                    return;
                };
                let grace = drain::grace(c.stop_timeout, self.drain_grace);
                info!(container_id = %id, container = %c.name, grace_s = grace.as_secs(), "the engine is stopping the container: its records are withdrawn");
                self.drains.start(&id, Instant::now() + grace);
                self.last.remove(&id);
            }
        }
    }

    /// The name of the container whose record `name` is, for a log line.
    pub(super) fn container_of(&self, name: &str) -> String {
        self.last
            .iter()
            .find(|(_, list)| list.iter().any(|(n, _)| n == name))
            .and_then(|(id, _)| self.containers.get(id))
            .map_or_else(String::new, |c| c.name.clone())
    }

    /// A drained container that stopped was stopped on purpose; one running (again, or still
    /// during its drain) is not.
    fn ran_or_stopped(&mut self, id: &str, state: RunState) {
        match state {
            RunState::Stopped(_) => {
                if self.drains.end(id) {
                    self.stopped.insert(id.to_string());
                }
            }
            RunState::Running | RunState::Paused => {
                if !self.drains.draining(id, Instant::now()) {
                    self.stopped.remove(id);
                }
            }
        }
    }

    /// Ends the drains whose grace has passed: those containers still run, and are registered
    /// again.
    pub(super) fn expire_drains(&mut self) {
        for id in self.drains.expire(Instant::now()) {
            let name = self.containers.get(&id).map_or("", |c| c.name.as_str());
            warn!(container_id = %id, container = name, "still running after its drain grace (the stop was cancelled or the signal ignored): registered again");
        }
    }

    /// Every record this host should hold, by name. `registered` is what the lease holds: a
    /// failed container kept by `--deregister on-success` after a restart finds its records there.
    pub(super) fn desired(
        &mut self,
        settings: &Settings,
        deregister: Deregister,
        registered: &BTreeMap<String, Service>,
    ) -> BTreeMap<String, Service> {
        let mut out = BTreeMap::new();
        let now = Instant::now();
        for (id, c) in &self.containers {
            if self.drains.draining(id, now) {
                continue;
            }
            let failed = matches!(c.state, RunState::Stopped(Some(code)) if code != 0)
                && !self.stopped.contains(id);
            let list = if deregister == Deregister::OnSuccess && failed {
                match self.last.get(id) {
                    Some(last) => last.clone(),
                    None => {
                        // Not seen running by this process (it restarted): its records are the
                        // ones of its names on the lease.
                        let kept: Vec<(String, Service)> =
                            services::names_when_running(c, settings)
                                .into_iter()
                                .filter_map(|n| registered.get(&n).map(|s| (n, s.clone())))
                                .collect();
                        if !kept.is_empty() {
                            self.last.insert(id.clone(), kept.clone());
                        }
                        kept
                    }
                }
            } else {
                match services::services(c, settings) {
                    Ok(list) => {
                        self.refused.remove(id);
                        if !list.is_empty() {
                            self.last.insert(id.clone(), list.clone());
                        }
                        list
                    }
                    Err(error) => {
                        let reason = error.to_string();
                        if self.refused.get(id) != Some(&reason) {
                            warn!(container_id = %id, container = %c.name, %error, "skipping container: its labels make no valid record");
                            self.refused.insert(id.clone(), reason);
                        }
                        Vec::new()
                    }
                }
            };
            for (name, svc) in list {
                if let Some(prev) = out.insert(name.clone(), svc) {
                    if out.get(&name) != Some(&prev) {
                        warn!(name, container_id = %id, "two containers want the same name; the later one wins");
                    }
                }
            }
        }
        self.refused
            .retain(|id, _| self.containers.contains_key(id));
        out
    }
}
