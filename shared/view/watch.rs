//! The shell that keeps a [`View`] current: read the whole prefix once, then follow an etcd watch
//! from the next revision, applying each complete watch response to a working [`Snapshot`] and
//! publishing it.
//!
//! What the view promises (DESIGN, "What the view promises") is decided here: the revision a
//! snapshot claims is only ever the revision of a full load or the highest `mod_revision` of
//! events applied. A watch response's header revision is the member's *current* revision (during
//! a catch-up it runs ahead of the events sent, and a `created` response carries it with no event
//! at all), so it is never taken. A response is applied whole or not at all: one too large to
//! decode even at [`MAX_MESSAGE_BYTES`], an event of an unknown type, or a compaction makes the
//! view load the prefix again instead of skipping anything, and after any failure the working
//! copy is reset to the last published snapshot, so a half-applied response is never published.
//! (Responses in fragments are handled, but not asked for: etcd 3.4 cuts a response into
//! fragments in time quadratic in its events, and 100,000 deletes in one request reached the view
//! after 15 s instead of 1.3 s. The decode limit covers what etcd sends whole.)
//!
//! The watch follows the healthy majority (see [`crate::etcd`]): once every [`CHECK_EVERY`] the
//! member is asked for status (with a leader) and for progress, and when the view runs on another
//! member than the first endpoint (the host's own) it goes back to it once that member has been
//! healthy and caught up for two checks [`PREFER_EVERY`] apart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::layers::Compacted;
use super::read::{apply_put, load, path_of, release_freed_memory, too_large, MAX_MESSAGE_BYTES};
use super::snapshot::Snapshot;
use super::{View, ViewError};
use crate::etcd::{check_member, EtcdConfig, EtcdError, REQUEST_TIMEOUT};
use crate::key::Prefix;

/// How often the member in use is checked (status with a leader) and asked for progress.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often the first endpoint is checked while the view runs on another member.
pub const PREFER_EVERY: Duration = Duration::from_secs(5);

/// Keeps `view` current with everything under `prefix` until `token` is cancelled.
///
/// Never returns an error: every failure is logged and retried with backoff, and the last published
/// snapshot stays in place meanwhile.
pub async fn follow(
    view: Arc<View>,
    etcd: EtcdConfig,
    prefix: Prefix,
    page: i64,
    token: CancellationToken,
) {
    // A snapshot from a state file: resumed from its revision once etcd is checked.
    let restored = view.restored();
    let snapshot = view.load().map(|s| (*s).clone());
    let mut state = WatchState {
        revision: snapshot
            .as_ref()
            .filter(|_| restored)
            .map_or(0, Snapshot::revision),
        check_restored: restored,
        snapshot,
        page: page.max(1),
        leases: super::Leases::default(),
        confirmed: None,
        lost: false,
        compacting: None,
        touched: Vec::new(),
    };
    let mut backoff = crate::runtime::reconnect_backoff();
    let mut failures = 0u32;
    loop {
        let mut watched = false;
        let result = tokio::select! {
            () = token.cancelled() => return,
            r = session(&view, &etcd, &prefix, &mut state, &token, &mut watched) => r,
        };
        let was_watching = view.freshness.set_watching(false);
        // Whatever was applied and not published (part of a response) is dropped.
        state.snapshot = view.load().map(|s| (*s).clone());
        if watched {
            // This session had a usable member: leave it and try the others at once.
            failures = 0;
            backoff = crate::runtime::reconnect_backoff();
        }
        match result {
            Ok(()) => return,
            Err(ViewError::Compacted { wanted, compacted }) => {
                warn!(
                    revision = wanted,
                    compacted, "watch revision compacted, reloading the view"
                );
                state.revision = 0;
                continue;
            }
            Err(error @ (ViewError::TooLarge(_) | ViewError::Malformed(_))) => {
                warn!(%error, revision = state.revision, "a watch response could not be applied; reloading the view rather than skipping it");
                state.revision = 0;
                continue;
            }
            Err(ViewError::Preferred) => {
                info!(
                    member = etcd.endpoints.first().map_or("", String::as_str),
                    revision = state.revision,
                    "the first endpoint is healthy and caught up again: following it"
                );
                etcd.prefer_first();
                continue;
            }
            Err(error) => {
                let member = etcd.current_endpoint().to_string();
                etcd.avoid_current();
                if was_watching {
                    state.lost = true;
                    warn!(%error, member, revision = state.revision,
                        "the view may be stale: lost the watch; answering from the last snapshot, trying the other members");
                    continue;
                }
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(%error, failures, endpoints = ?etcd.endpoints, "etcd unavailable, retrying; answering from the last snapshot");
                }
            }
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(2));
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

struct WatchState {
    /// The working copy: the last published snapshot plus what was applied since.
    snapshot: Option<Snapshot>,
    /// The revision the view has applied everything up to; 0 means "load the prefix first".
    revision: i64,
    /// Records per request when loading.
    page: i64,
    /// The snapshot came from a state file: before resuming from its revision, check that etcd
    /// is the same cluster and has reached it.
    check_restored: bool,
    /// Granted TTLs of the leases seen.
    leases: super::Leases,
    /// When the member followed was last known to be usable (a watch opened on it, or a status
    /// with a leader): the start of an outage, for the line that ends it.
    confirmed: Option<Instant>,
    /// Whether the watch was lost since the last one was opened.
    lost: bool,
    /// A compaction running on a blocking thread (see [`Snapshot::compaction_due`]).
    compacting: Option<tokio::task::JoinHandle<Compacted>>,
    /// Paths changed while it runs: laid over the base it makes.
    touched: Vec<String>,
}

impl WatchState {
    /// Starts merging the working copy's changes into a new base when they have grown enough.
    fn maybe_compact(&mut self) {
        let Some(snap) = self.snapshot.as_ref() else {
            return;
        };
        if self.compacting.is_none() && snap.compaction_due() {
            let job = snap.compaction();
            self.touched.clear();
            self.compacting = Some(tokio::task::spawn_blocking(move || job.run()));
        }
    }

    /// Puts a finished compaction's base under the working copy; true when the view should be
    /// published again (it reads the same, on less memory).
    fn compacted(&mut self, done: Result<Compacted, tokio::task::JoinError>) -> bool {
        self.compacting = None;
        let touched = std::mem::take(&mut self.touched);
        match (done, self.snapshot.as_mut()) {
            (Ok(compacted), Some(snap)) => snap.rebase(compacted, &touched),
            (Err(error), _) => {
                warn!(%error, "merging the view's changes failed; the view keeps them as they are");
                false
            }
            (Ok(_), None) => false,
        }
    }
}

/// One watch response's events, or several fragments of one, on their way into the snapshot.
#[derive(Default)]
struct Batch {
    /// The highest `mod_revision` among the events applied.
    revision: i64,
    events: usize,
}

async fn session(
    view: &View,
    etcd: &EtcdConfig,
    prefix: &Prefix,
    state: &mut WatchState,
    token: &CancellationToken,
    watched: &mut bool,
) -> Result<(), ViewError> {
    let mut client = etcd.connect().await?;
    let member = etcd.current_endpoint().to_string();
    let range = prefix.range_start();
    if state.check_restored && state.revision > 0 {
        let ask = client.status();
        let status = tokio::time::timeout(REQUEST_TIMEOUT, ask)
            .await
            .map_err(|_| EtcdError::Timeout(REQUEST_TIMEOUT))??;
        let (cluster, now) = status
            .header()
            .map_or((0, 0), |h| (h.cluster_id(), h.revision()));
        let mine = view.cluster_id();
        if (mine != 0 && cluster != mine) || now < state.revision {
            warn!(file_revision = state.revision, file_cluster = mine, cluster, revision = now, member,
                "the state file is not of this etcd (another cluster, or a revision it has not reached); loading the prefix");
            state.revision = 0;
        } else {
            view.set_cluster_id(cluster);
        }
        state.check_restored = false;
    }
    if state.revision == 0 || state.snapshot.is_none() {
        // Keep what was learnt about invalid values so that they are not reported twice.
        let started = Instant::now();
        let (mut snap, revision, cluster) = load(
            &mut client,
            prefix,
            &mut state.page,
            state.snapshot.as_ref(),
            &mut state.leases,
        )
        .await?;
        snap.revision = revision;
        let published = view.publish(&mut snap, true);
        view.freshness.loaded();
        view.set_cluster_id(cluster);
        info!(
            revision,
            records = published.len(),
            member,
            ms = started.elapsed().as_millis() as u64,
            "view loaded"
        );
        state.snapshot = Some(snap);
        state.revision = revision;
        release_freed_memory();
    }
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(state.revision + 1)
        .with_progress_notify();
    let mut watch_client = client
        .watch_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let watch = watch_client.watch(range.as_str(), Some(opts));
    let mut stream = tokio::time::timeout(REQUEST_TIMEOUT, watch)
        .await
        .map_err(|_| EtcdError::Timeout(REQUEST_TIMEOUT))??;
    *watched = true;
    view.freshness.set_watching(true);
    view.freshness.heard();
    // How long the view was not following a usable member: from the last time one was known to
    // be (a member that loses its leader still answers for a while), not from the reconnect.
    match (std::mem::take(&mut state.lost), state.confirmed) {
        (true, Some(since)) => info!(
            revision = state.revision,
            member,
            stale_ms = since.elapsed().as_millis() as u64,
            "watching again"
        ),
        _ => debug!(revision = state.revision, member, "watching"),
    }
    state.confirmed = Some(Instant::now());
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut preferred = PreferredCheck::default();
    let mut batch = Batch::default();
    loop {
        let msg = tokio::select! {
            () = token.cancelled() => return Ok(()),
            m = stream.message() => match m {
                Ok(m) => m,
                Err(e) if too_large(&e) => return Err(ViewError::TooLarge(e.to_string())),
                Err(e) => return Err(e.into()),
            },
            done = async { state.compacting.as_mut().expect("guarded").await }, if state.compacting.is_some() => {
                if state.compacted(done) {
                    if let Some(snap) = state.snapshot.as_mut() {
                        let published = view.publish(snap, false);
                        debug!(revision = published.revision(), records = published.len(), "view compacted");
                    }
                }
                continue;
            }
            _ = check.tick() => {
                check_member(&mut client, &member).await?;
                state.confirmed = Some(Instant::now());
                stream.request_progress().await?;
                if preferred.due(etcd, state.revision).await {
                    return Err(ViewError::Preferred);
                }
                continue;
            }
        };
        let Some(resp) = msg else {
            return Err(ViewError::StreamEnded);
        };
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                return Err(ViewError::Compacted {
                    wanted: state.revision + 1,
                    compacted: resp.compact_revision(),
                });
            }
            return Err(ViewError::Canceled(resp.cancel_reason().to_string()));
        }
        view.freshness.heard();
        // The header of a `created` response or a progress notification carries the member's
        // revision, not ours: neither advances the view.
        if resp.created() || (resp.events().is_empty() && batch.events == 0) {
            continue;
        }
        let Some(snap) = state.snapshot.as_mut() else {
            return Err(ViewError::StreamEnded);
        };
        let leases: Vec<i64> = resp
            .events()
            .iter()
            .filter_map(|ev| ev.kv().map(|kv| kv.lease()))
            .collect();
        state.leases.learn(&mut client, &leases).await;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else {
                return Err(ViewError::Malformed("an event without a key".into()));
            };
            batch.revision = batch.revision.max(kv.mod_revision());
            batch.events += 1;
            let Some(path) = path_of(prefix, kv.key()) else {
                continue;
            };
            if state.compacting.is_some() {
                state.touched.push(path.clone());
            }
            // Not `event_type()`: it panics on a type it does not know.
            match ev.0.r#type {
                0 => {
                    let ttl = state.leases.ttl(kv.lease());
                    apply_put(snap, &path, kv.value(), kv.mod_revision(), ttl)
                }
                1 => snap.delete(&path),
                other => {
                    return Err(ViewError::Malformed(format!(
                        "an event of unknown type {other}"
                    )))
                }
            }
        }
        if resp.0.fragment {
            // More of the same revision follows: published only once whole.
            continue;
        }
        if batch.revision <= state.revision {
            return Err(ViewError::Malformed(format!(
                "events of revision {} after revision {} was applied",
                batch.revision, state.revision
            )));
        }
        state.revision = batch.revision;
        snap.revision = state.revision;
        let published = view.publish(snap, false);
        debug!(
            revision = published.revision(),
            records = published.len(),
            events = batch.events,
            "view updated"
        );
        batch = Batch::default();
        state.maybe_compact();
    }
}

/// Whether to go back to the first endpoint: it must be healthy (a leader) and caught up (its
/// revision at least the view's) at two checks in a row, [`PREFER_EVERY`] apart.
#[derive(Default)]
struct PreferredCheck {
    last: Option<Instant>,
    healthy_in_a_row: u32,
}

impl PreferredCheck {
    async fn due(&mut self, etcd: &EtcdConfig, revision: i64) -> bool {
        if etcd.on_first() || self.last.is_some_and(|t| t.elapsed() < PREFER_EVERY) {
            return false;
        }
        self.last = Some(Instant::now());
        match etcd.check_first().await {
            Ok(r) if r >= revision => self.healthy_in_a_row += 1,
            _ => self.healthy_in_a_row = 0,
        }
        self.healthy_in_a_row >= 2
    }
}
