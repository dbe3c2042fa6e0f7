//! The in-memory view of every record under the prefix, and the watcher that keeps it current.
//!
//! - `snapshot`: the immutable [`Snapshot`] (records by path, address and wildcard indexes,
//!   change stamps); pure data.
//! - `entry`: one record of the view, made from a key's path and value.
//! - `base`: a snapshot's compact sorted records as of its last load or compaction, and their
//!   indexes; `merge`: reading them with the changes laid over them, in one pass; `layers`:
//!   loading a new base ([`Snapshot::from_values`], the load's `Loader`) and merging the changes
//!   into one (compaction).
//! - `index`: the wildcard index a snapshot keeps, so a question with `*` costs what it finds.
//! - `stamps`: which paths changed in which generation, for caches of answers.
//! - `watch`: [`follow`], the shell that loads the prefix (`read`), follows an etcd watch and
//!   publishes.
//! - `state`: the state file's format; `persist`: [`StateFile`], its shell (`--state-dir`).
//! - here: [`View`], the current snapshot swapped atomically, and its [`Freshness`].
//!
//! Data flows one way: etcd -> `watch` -> a working `Snapshot` -> [`View::publish`] -> readers
//! ([`View::load`], [`View::peek`]), who never wait on etcd and never see a half-applied response.
//! The snapshot's revision is only ever one whose events are all applied (see [`follow`]).
//! This module imports the record model, name mapping and etcd settings of the library, nothing
//! of the binaries.

mod base;
mod entry;
mod index;
mod layers;
mod merge;
mod persist;
mod read;
mod snapshot;
mod stamps;
mod state;
mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tracing::debug;

use crate::etcd::{EtcdError, REQUEST_TIMEOUT};
use stamps::{Stamps, STAMP_SLOTS};

pub use persist::{StateFile, FILE_NAME as STATE_FILE_NAME, WRITE_EVERY as STATE_WRITE_EVERY};
pub(crate) use read::too_large;
pub use read::{DEFAULT_PAGE, MAX_MESSAGE_BYTES};
pub use snapshot::{reverse_path, Applied, Entry, Snapshot};
pub use state::{decode as decode_state, encode as encode_state, StateError, StateHeader};
pub use watch::{follow, CHECK_EVERY, PREFER_EVERY};

/// The current snapshot, swapped atomically by the watcher. `None` until the first load.
#[derive(Debug)]
pub struct View {
    current: ArcSwapOption<Snapshot>,
    generation: std::sync::atomic::AtomicU64,
    stamps: Arc<Stamps>,
    freshness: Freshness,
    /// The etcd cluster the snapshot's revision is of (0: not known yet).
    cluster_id: AtomicU64,
    /// Whether the current snapshot came from a state file and the watcher has not yet checked
    /// it against etcd.
    restored: AtomicBool,
}

impl Default for View {
    fn default() -> Self {
        View {
            current: ArcSwapOption::default(),
            generation: AtomicU64::new(0),
            stamps: Arc::new(Stamps::new(STAMP_SLOTS)),
            freshness: Freshness::default(),
            cluster_id: AtomicU64::new(0),
            restored: AtomicBool::new(false),
        }
    }
}

/// Whether the view follows etcd right now. The view keeps answering from its last snapshot
/// either way; this is what says that the snapshot may be old.
#[derive(Debug)]
pub struct Freshness {
    /// A watch is open on a member that has a leader.
    watching: AtomicBool,
    /// The snapshot is as current as etcd: a watch is open, or it was just read from etcd and
    /// no session has ended since (the moments between a load and its watch).
    current: AtomicBool,
    /// Milliseconds after `epoch` of the last watch event or progress notification, plus one
    /// (0: never).
    last_heard_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            watching: AtomicBool::new(false),
            current: AtomicBool::new(false),
            last_heard_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Freshness {
    /// True while no watch is open on a member with a leader (also before the first load).
    pub fn is_stale(&self) -> bool {
        !self.watching.load(Ordering::Relaxed)
    }

    /// Time since the last event or progress notification from etcd; `None` before the first.
    pub fn since_heard(&self) -> Option<Duration> {
        match self.last_heard_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }

    pub(crate) fn heard(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_heard_ms.store(ms + 1, Ordering::Relaxed);
    }

    /// Whether answers may be older than etcd's data: no watch is open and the snapshot was
    /// not just read from etcd (before the first load, after a watch was lost, or restored from
    /// a state file). What clients are told (EDE 3); [`Freshness::is_stale`] is what `/readyz`
    /// says, which also waits for the watch after a load.
    pub fn serves_stale(&self) -> bool {
        !self.current.load(Ordering::Relaxed)
    }

    /// Sets whether a watch is open; the previous value.
    pub(crate) fn set_watching(&self, watching: bool) -> bool {
        self.current.store(watching, Ordering::Relaxed);
        self.watching.swap(watching, Ordering::Relaxed)
    }

    /// A snapshot read from etcd just now was published.
    pub(crate) fn loaded(&self) {
        self.current.store(true, Ordering::Relaxed);
    }
}

impl View {
    /// An empty view: nothing loaded yet.
    pub fn new() -> Self {
        View::default()
    }

    /// Whether the view follows etcd right now.
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// The current snapshot, or `None` before the first load. Never blocks.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// The generation of the current snapshot (0 before the first), without loading it: what
    /// caches of answers check on every query.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The current snapshot without taking a reference count: for the query path, which reads
    /// it for the length of one lookup.
    pub fn peek(&self) -> impl std::ops::Deref<Target = Option<Arc<Snapshot>>> + '_ {
        self.current.load()
    }

    /// Publishes a snapshot read from a state file (see [`StateFile`]), of etcd cluster
    /// `cluster_id`, before the watcher starts: answers come from it at once, the view stays stale
    /// until a watch is open, and the watcher resumes from its revision once it has checked that
    /// etcd is the same cluster and has reached that revision (else it loads the prefix).
    pub fn restore(&self, mut snapshot: Snapshot, cluster_id: u64) {
        self.publish(&mut snapshot, true);
        self.cluster_id.store(cluster_id, Ordering::Relaxed);
        self.restored.store(true, Ordering::Release);
    }

    /// Whether the current snapshot came from a state file and was not yet checked against etcd.
    pub(crate) fn restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    /// The etcd cluster the current snapshot's revision is of (0: not known).
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Relaxed)
    }

    pub(crate) fn set_cluster_id(&self, id: u64) {
        self.cluster_id.store(id, Ordering::Relaxed);
        self.restored.store(false, Ordering::Release);
    }

    /// Publishes `working` (the watcher's copy, which keeps being updated) as the next
    /// generation: the paths changed since the last publication are stamped with it. With
    /// `reset` (a load from scratch) every earlier answer is stale instead.
    pub fn publish(&self, working: &mut Snapshot, reset: bool) -> Arc<Snapshot> {
        let generation = self.current.load().as_ref().map_or(1, |s| s.generation + 1);
        working.generation = generation;
        // Stamped before the snapshot is swapped in: whoever sees it sees its stamps.
        working.stamp(&self.stamps, generation, reset);
        let snapshot = Arc::new(working.clone());
        self.current.store(Some(snapshot.clone()));
        // After the store: whoever sees this generation finds a snapshot at least this new.
        self.generation
            .store(snapshot.generation, std::sync::atomic::Ordering::Release);
        snapshot
    }
}

/// Why a watch session ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// etcd could not be reached or failed a request.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The revision to resume from was compacted: the view must be reloaded.
    #[error("revision {wanted} was compacted (oldest kept: {compacted}); reloading")]
    Compacted {
        /// The revision the watch wanted to resume from.
        wanted: i64,
        /// etcd's compaction revision.
        compacted: i64,
    },
    /// etcd cancelled the watch ("etcdserver: no leader" when the member lost its leader).
    #[error("etcd cancelled the watch: {0}")]
    Canceled(String),
    /// The watch stream ended.
    #[error("the watch stream ended")]
    StreamEnded,
    /// A watch response too large to decode: the view reloads rather than skip it.
    #[error("a watch response was too large to decode: {0}")]
    TooLarge(String),
    /// A watch response that cannot be applied as it is (an unknown event type, events out of
    /// order): the view reloads rather than skip it.
    #[error("a watch response cannot be applied: {0}")]
    Malformed(String),
    /// The task reading a page of the prefix ended without its answer.
    #[error("reading the prefix was interrupted: {0}")]
    Interrupted(String),
    /// Not a failure: the first endpoint is healthy and caught up again, and the view moves back
    /// to it.
    #[error("moving back to the first endpoint")]
    Preferred,
}

impl From<etcd_client::Error> for ViewError {
    fn from(e: etcd_client::Error) -> Self {
        ViewError::Etcd(EtcdError::Client(e))
    }
}

/// The granted TTLs of the leases records hang on, asked of etcd once per lease (a registrator
/// holds one lease for all its records, so there are few). Bounded: at most [`Leases::PER_BATCH`]
/// new leases are asked about per batch of records, and the table is forgotten past
/// [`Leases::MAX`] entries; a lease not asked about caps nothing.
#[derive(Debug, Default)]
pub struct Leases {
    ttls: std::collections::HashMap<i64, u32>,
}

impl Leases {
    /// New leases asked about per batch (a load page, a watch response).
    pub const PER_BATCH: usize = 256;
    /// Leases remembered.
    pub const MAX: usize = 100_000;

    /// The granted TTL of `lease` if known (0: no lease, or not known).
    pub fn ttl(&self, lease: i64) -> u32 {
        self.ttls.get(&lease).copied().unwrap_or(0)
    }

    pub(crate) async fn learn(&mut self, client: &mut etcd_client::Client, leases: &[i64]) {
        if self.ttls.len() > Self::MAX {
            self.ttls.clear();
        }
        let mut new: Vec<i64> = leases
            .iter()
            .copied()
            .filter(|l| *l != 0 && !self.ttls.contains_key(l))
            .collect();
        new.sort_unstable();
        new.dedup();
        for lease in new.into_iter().take(Self::PER_BATCH) {
            let ask = client.lease_time_to_live(lease, None);
            let ttl = match tokio::time::timeout(REQUEST_TIMEOUT, ask).await {
                Ok(Ok(r)) => u32::try_from(r.granted_ttl().max(0)).unwrap_or(u32::MAX),
                Ok(Err(error)) => {
                    debug!(lease, %error, "could not read a lease's TTL");
                    continue;
                }
                Err(_) => continue,
            };
            self.ttls.insert(lease, ttl);
        }
    }
}
