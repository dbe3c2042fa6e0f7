//! The in-memory view of every record under the prefix, and the watcher that keeps it current.
//!
//! [`follow`] reads the whole prefix once, then follows an etcd watch from the next revision. Each
//! batch of events is applied to a copy of the current [`Snapshot`] (persistent maps: a copy is
//! O(1) and an update O(log n)) and the result is published atomically in the [`View`]. Readers
//! ([`View::load`]) never wait on etcd and never see a half-applied batch. When the watch breaks
//! the watcher reconnects from the last revision; when that revision was compacted it reloads.
//! While etcd is away the last snapshot keeps answering.
//!
//! The watch follows the healthy majority of the cluster. It is opened with etcd's "require
//! leader" flag (a member that loses its leader cancels it), and once a second the watcher asks
//! its member for status (answer within a second, with a leader) and for a progress notification.
//! A member that fails either is left at once for the next endpoint, where the watch resumes from
//! the last revision. [`Freshness`] says whether the view is following a member right now and
//! when it last heard from one, for the metrics and logs.
//!
//! Each publication also stamps the paths it changed (and every path above them, and the reverse
//! path of every address that came or went) with its generation, so that a cache of answers can
//! ask [`Snapshot::changed_since`] whether anything under one name changed, instead of retiring
//! every answer on every write. The stamps are a fixed table of atomic generations indexed by a
//! hash of the path, shared by every snapshot of a view: a change costs a few atomic writes and
//! no allocation, a question one hash and one load. Two paths that share a slot only make an
//! answer look changed when it did not (it is rebuilt), never the other way round.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use etcd_client::{EventType, GetOptions, WatchOptions};
use imbl::{OrdMap, OrdSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::etcd::{check_member, EtcdConfig, EtcdError, REQUEST_TIMEOUT};
use crate::key::{self, Prefix};
use crate::record::{Host, Service};

/// One record of the view: the parsed service and its classified host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The record as stored.
    pub service: Service,
    /// `service.host`, classified once at load time.
    pub host: Host,
    /// The TTL of the etcd lease the record hangs on, as granted (0: no lease, or not known):
    /// answers never claim the record for longer (as SkyDNS caps a record's TTL at its key's).
    pub lease_ttl: u32,
}

/// An immutable view of every record under the prefix at one etcd revision.
///
/// Records are keyed by *path* (the key without the prefix, lower case:
/// `dev/webapp/redis/redis-1`), so that a name and everything below it is one range.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    entries: OrdMap<Arc<str>, Arc<Entry>>,
    by_addr: OrdSet<(IpAddr, Arc<str>)>,
    /// Keys whose value did not parse, with the revision of that value.
    invalid: OrdMap<Arc<str>, i64>,
    revision: i64,
    generation: u64,
    skipped_total: u64,
    /// Paths changed since the last publication: stamped by [`View::publish`].
    dirty: Vec<Arc<str>>,
    /// Whether changes are recorded in `dirty`: not while a snapshot is loaded from scratch
    /// (its publication retires everything anyway), from its first publication on.
    tracking: bool,
    /// The view's stamps: for each path (by hash), the generation of the last change at or below it.
    stamps: Arc<Stamps>,
}

/// Generations of the last change at or below each path, by a hash of the path, and a floor
/// below which everything counts as changed (a reload).
struct Stamps {
    slots: Box<[AtomicU64]>,
    floor: AtomicU64,
}

impl Stamps {
    /// A table of `slots` (a power of two) stamps.
    fn new(slots: usize) -> Stamps {
        Stamps {
            slots: (0..slots.next_power_of_two())
                .map(|_| AtomicU64::new(0))
                .collect(),
            floor: AtomicU64::new(0),
        }
    }

    fn slot(&self, path: &str) -> &AtomicU64 {
        // FNV-1a: short keys, no allocation; collisions only retire answers early.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in path.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let i = (h as usize) & (self.slots.len() - 1);
        &self.slots[i]
    }

    fn changed_since(&self, path: &str, generation: u64) -> bool {
        generation < self.floor.load(Ordering::Acquire)
            || self.slot(path).load(Ordering::Acquire) > generation
    }
}

impl Default for Stamps {
    fn default() -> Self {
        Stamps::new(64)
    }
}

impl std::fmt::Debug for Stamps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stamps({} slots)", self.slots.len())
    }
}

/// Slots of a view's stamp table (8 MB): at 1,000 changes a second, each stamping a dozen paths,
/// about 1% of unrelated answers a second are rebuilt for sharing a slot.
const STAMP_SLOTS: usize = 1 << 20;

/// What applying one put did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The value parsed and is now in the view.
    Stored,
    /// The value did not parse; the key is out of the view. `first` is false when this same value
    /// (same key and revision) was already reported.
    Skipped {
        /// Whether this is the first time this value is seen.
        first: bool,
        /// Why it was skipped.
        reason: String,
    },
}

impl Snapshot {
    /// The etcd revision this snapshot reflects.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Counts publications: every published snapshot has a higher generation than the one before.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of records in the view.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the view holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of values skipped since start because they did not parse (each value once).
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }

    /// Number of keys whose current value does not parse.
    pub fn invalid_now(&self) -> usize {
        self.invalid.len()
    }

    /// Whether anything at or below `path` changed after snapshot `generation` was published:
    /// a record put or deleted there, or (for a reverse path such as `arpa/in-addr/10/0/0/5`) a
    /// record whose address is that one. `dev/webapp/redis` changes with `dev/webapp/redis/x`,
    /// never with `dev/webapp/redis2`.
    pub fn changed_since(&self, path: &str, generation: u64) -> bool {
        self.stamps.changed_since(path, generation)
    }

    /// The record at exactly this path.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path).map(Arc::as_ref)
    }

    /// Every record at or below `path`, in key order. Label boundaries are exact: `dev/a` covers
    /// `dev/a` and `dev/a/x`, never `dev/ab`. An empty path covers everything.
    pub fn subtree<'a>(&'a self, path: &str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        let (lo, hi): (Arc<str>, Arc<str>) = if path.is_empty() {
            (Arc::from(""), Arc::from("\u{10FFFF}"))
        } else {
            // '/' + 1 == '0': everything that starts with "path/" sorts below "path0".
            (Arc::from(path), Arc::from(format!("{path}0")))
        };
        let exact_len = path.len();
        self.entries
            .range(lo..hi)
            .filter(move |(k, _)| {
                exact_len == 0 || k.len() == exact_len || k.as_bytes().get(exact_len) == Some(&b'/')
            })
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Whether any record is at or below `path` (the name exists, maybe as an empty non-terminal).
    pub fn exists(&self, path: &str) -> bool {
        self.subtree(path).next().is_some()
    }

    /// Paths of the records whose host is this address (for PTR synthesis).
    pub fn paths_for_addr(&self, addr: IpAddr) -> impl Iterator<Item = &str> {
        self.by_addr
            .range((addr, Arc::from(""))..)
            .take_while(move |(a, _)| *a == addr)
            .map(|(_, p)| p.as_ref())
    }

    /// Stores the value of one key under the prefix (path form). A value that does not parse takes
    /// the key out of the view and is reported as skipped.
    pub fn put(&mut self, path: &str, value: &[u8], mod_revision: i64) -> Applied {
        self.put_leased(path, value, mod_revision, 0)
    }

    /// [`Snapshot::put`] for a record on a lease whose granted TTL is `lease_ttl` seconds.
    pub fn put_leased(
        &mut self,
        path: &str,
        value: &[u8],
        mod_revision: i64,
        lease_ttl: u32,
    ) -> Applied {
        let path = normalise_path(path);
        let parsed = validate_path(&path)
            .map_err(|e| e.to_string())
            .and_then(|()| Service::parse(value).map_err(|e| e.to_string()));
        match parsed {
            Ok(service) => {
                let host = service.host();
                self.invalid.remove(path.as_str());
                let entry = Entry {
                    service,
                    host,
                    lease_ttl,
                };
                self.insert(Arc::from(path), entry);
                Applied::Stored
            }
            Err(reason) => {
                self.remove_entry(&path);
                let key: Arc<str> = Arc::from(path);
                let first = self.invalid.get(&key) != Some(&mod_revision);
                if first {
                    self.skipped_total += 1;
                    self.invalid.insert(key, mod_revision);
                }
                Applied::Skipped { first, reason }
            }
        }
    }

    /// Removes the record at this path, if any.
    pub fn delete(&mut self, path: &str) {
        let path = normalise_path(path);
        self.invalid.remove(path.as_str());
        self.remove_entry(&path);
    }

    fn remove_entry(&mut self, path: &str) {
        let path: Arc<str> = Arc::from(path);
        self.changed(&path, None);
        if let Some(old) = self.entries.remove(&path) {
            if let Some(addr) = addr_of(&old.host) {
                self.changed(&path, Some(addr));
                self.by_addr.remove(&(addr, path));
            }
        }
    }

    fn insert(&mut self, path: Arc<str>, entry: Entry) {
        self.remove_entry(&path);
        if let Some(addr) = addr_of(&entry.host) {
            self.changed(&path, Some(addr));
            self.by_addr.insert((addr, path.clone()));
        }
        self.entries.insert(path, Arc::new(entry));
    }

    /// Records a change at `path`, or (with `addr`) at the reverse path of that address.
    fn changed(&mut self, path: &Arc<str>, addr: Option<IpAddr>) {
        if self.tracking {
            self.dirty.push(match addr {
                Some(addr) => Arc::from(reverse_path(addr)),
                None => path.clone(),
            });
        }
    }

    /// Stamps the paths changed since the last publication, and every path above them, with
    /// `generation` in `stamps`. A snapshot loaded from scratch (`reset`) stamps nothing but
    /// raises the floor: everything built before it is stale.
    fn stamp(&mut self, stamps: &Arc<Stamps>, generation: u64, reset: bool) {
        self.stamps = stamps.clone();
        self.tracking = true;
        let dirty = std::mem::take(&mut self.dirty);
        if reset {
            stamps.floor.fetch_max(generation, Ordering::Release);
            return;
        }
        for path in dirty {
            let mut end = path.len();
            loop {
                stamps
                    .slot(&path[..end])
                    .fetch_max(generation, Ordering::Release);
                match path[..end].rfind('/') {
                    Some(i) => end = i,
                    None if end > 0 => end = 0, // the root, "", covers every path
                    None => break,
                }
            }
        }
    }

    /// A snapshot made from a list of `(path, value, mod_revision)`, for tests and loaders.
    pub fn from_values<'a>(values: impl IntoIterator<Item = (&'a str, &'a [u8], i64)>) -> Self {
        let mut s = Snapshot::default();
        for (path, value, rev) in values {
            s.put(path, value, rev);
        }
        s
    }
}

fn normalise_path(path: &str) -> String {
    path.to_ascii_lowercase()
}

fn validate_path(path: &str) -> Result<(), key::KeyError> {
    path.split('/').try_for_each(key::validate_label)
}

/// The path of an address's reverse name: `10.0.0.5` -> `arpa/in-addr/10/0/0/5`, an IPv6 address
/// -> `arpa/ip6/` and its 32 nibbles, most significant first.
pub fn reverse_path(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("arpa/in-addr/{a}/{b}/{c}/{d}")
        }
        IpAddr::V6(v6) => {
            let mut p = String::from("arpa/ip6");
            for byte in v6.octets() {
                p.push('/');
                p.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
                p.push('/');
                p.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
            }
            p
        }
    }
}

fn addr_of(host: &Host) -> Option<IpAddr> {
    match host {
        Host::V4(a) => Some(IpAddr::V4(*a)),
        Host::V6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The current snapshot, swapped atomically by the watcher. `None` until the first load.
#[derive(Debug)]
pub struct View {
    current: ArcSwapOption<Snapshot>,
    generation: std::sync::atomic::AtomicU64,
    stamps: Arc<Stamps>,
    freshness: Freshness,
}

impl Default for View {
    fn default() -> Self {
        View {
            current: ArcSwapOption::default(),
            generation: AtomicU64::new(0),
            stamps: Arc::new(Stamps::new(STAMP_SLOTS)),
            freshness: Freshness::default(),
        }
    }
}

/// Whether the view follows etcd right now. The view keeps answering from its last snapshot
/// either way; this is what says that the snapshot may be old.
#[derive(Debug)]
pub struct Freshness {
    /// A watch is open on a member that has a leader.
    watching: AtomicBool,
    /// Milliseconds after `epoch` of the last watch event or progress notification, plus one
    /// (0: never).
    last_heard_ms: AtomicU64,
    epoch: Instant,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            watching: AtomicBool::new(false),
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

    fn heard(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_heard_ms.store(ms + 1, Ordering::Relaxed);
    }

    /// Sets whether a watch is open; the previous value.
    fn set_watching(&self, watching: bool) -> bool {
        self.watching.swap(watching, Ordering::Relaxed)
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
}

impl From<etcd_client::Error> for ViewError {
    fn from(e: etcd_client::Error) -> Self {
        ViewError::Etcd(EtcdError::Client(e))
    }
}

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
    let mut state = WatchState {
        snapshot: view.load().map(|s| (*s).clone()),
        revision: 0,
        page: page.max(1),
        stale_for: None,
        leases: Leases::default(),
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
            Err(error) => {
                let member = etcd.current_endpoint().to_string();
                etcd.avoid_current();
                if was_watching {
                    state.stale_for = Some(Instant::now());
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
    snapshot: Option<Snapshot>,
    /// The last revision applied; 0 means "load the whole prefix first".
    revision: i64,
    /// Records per request when loading.
    page: i64,
    /// When the view last lost its watch, until the next one is open.
    stale_for: Option<Instant>,
    /// Granted TTLs of the leases seen.
    leases: Leases,
}

/// How often the member in use is checked (status with a leader) and asked for progress.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

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
    if state.revision == 0 || state.snapshot.is_none() {
        // Keep what was learnt about invalid values so that they are not reported twice.
        let mut snap = Snapshot {
            invalid: state
                .snapshot
                .as_ref()
                .map(|s| s.invalid.clone())
                .unwrap_or_default(),
            skipped_total: state.snapshot.as_ref().map_or(0, |s| s.skipped_total),
            ..Snapshot::default()
        };
        let revision = load(
            &mut client,
            prefix,
            state.page,
            &mut snap,
            &mut state.leases,
        )
        .await?;
        snap.revision = revision;
        let published = view.publish(&mut snap, true);
        info!(revision, records = published.len(), member, "view loaded");
        state.snapshot = Some(snap);
        state.revision = revision;
    }
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(state.revision + 1)
        .with_progress_notify();
    let watch = client.watch(range.as_str(), Some(opts));
    let mut stream = tokio::time::timeout(REQUEST_TIMEOUT, watch)
        .await
        .map_err(|_| EtcdError::Timeout(REQUEST_TIMEOUT))??;
    *watched = true;
    view.freshness.set_watching(true);
    view.freshness.heard();
    match state.stale_for.take() {
        Some(since) => info!(
            revision = state.revision,
            member,
            stale_ms = since.elapsed().as_millis() as u64,
            "watching again"
        ),
        None => debug!(revision = state.revision, member, "watching"),
    }
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            () = token.cancelled() => return Ok(()),
            m = stream.message() => m?,
            _ = check.tick() => {
                check_member(&mut client, &member).await?;
                stream.request_progress().await?;
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
        let revision = resp.header().map_or(state.revision, |h| h.revision());
        let Some(snap) = state.snapshot.as_mut() else {
            return Err(ViewError::StreamEnded);
        };
        if resp.events().is_empty() {
            state.revision = state.revision.max(revision);
            continue;
        }
        let leases: Vec<i64> = resp
            .events()
            .iter()
            .filter_map(|ev| ev.kv().map(|kv| kv.lease()))
            .collect();
        state.leases.learn(&mut client, &leases).await;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some(path) = path_of(prefix, kv.key()) else {
                continue;
            };
            match ev.event_type() {
                EventType::Put => {
                    let ttl = state.leases.ttl(kv.lease());
                    apply_put(snap, &path, kv.value(), kv.mod_revision(), ttl)
                }
                EventType::Delete => snap.delete(&path),
            }
        }
        state.revision = state.revision.max(revision);
        snap.revision = state.revision;
        let published = view.publish(snap, false);
        debug!(
            revision = published.revision(),
            records = published.len(),
            "view updated"
        );
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

    async fn learn(&mut self, client: &mut etcd_client::Client, leases: &[i64]) {
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

/// Records read per request when loading, by default. etcd counts every key left in the range for
/// each page, so pages must be large for a million records to load in seconds, not minutes.
pub const DEFAULT_PAGE: i64 = 20_000;

/// The largest page answer accepted (gRPC's default, 4 MB, is too small for 20,000 records).
const MAX_PAGE_BYTES: usize = 256 << 20;

/// Reads every record under the prefix into `snap`, page by page, all at one revision; that
/// revision.
async fn load(
    client: &mut etcd_client::Client,
    prefix: &Prefix,
    page: i64,
    snap: &mut Snapshot,
    leases: &mut Leases,
) -> Result<i64, ViewError> {
    let mut kv = client.kv_client().max_decoding_message_size(MAX_PAGE_BYTES);
    let start = prefix.range_start();
    // Everything that starts with "/skydns/" sorts below "/skydns0".
    let end = format!("{}0", prefix.as_str());
    let mut from = start.into_bytes();
    let mut revision = 0;
    let mut present = OrdSet::new();
    loop {
        let mut opts = GetOptions::new()
            .with_range(end.as_bytes())
            .with_limit(page);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let get = kv.get(from.clone(), Some(opts));
        let resp = tokio::time::timeout(REQUEST_TIMEOUT * 10, get)
            .await
            .map_err(|_| EtcdError::Timeout(REQUEST_TIMEOUT * 10))??;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        let ids: Vec<i64> = resp.kvs().iter().map(|kv| kv.lease()).collect();
        leases.learn(client, &ids).await;
        for kv in resp.kvs() {
            if let Some(path) = path_of(prefix, kv.key()) {
                present.insert(Arc::<str>::from(normalise_path(&path)));
                let ttl = leases.ttl(kv.lease());
                apply_put(snap, &path, kv.value(), kv.mod_revision(), ttl);
            }
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    snap.invalid = snap
        .invalid
        .iter()
        .filter(|(k, _)| present.contains(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    Ok(revision)
}

fn path_of(prefix: &Prefix, key: &[u8]) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    prefix.path_of_key(key).map(str::to_string)
}

fn apply_put(snap: &mut Snapshot, path: &str, value: &[u8], mod_revision: i64, lease_ttl: u32) {
    if let Applied::Skipped {
        first: true,
        reason,
    } = snap.put_leased(path, value, mod_revision, lease_ttl)
    {
        warn!(key = path, error = %reason, revision = mod_revision, "skipping malformed record");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(values: &[(&str, &str)]) -> Snapshot {
        Snapshot::from_values(values.iter().map(|(p, v)| (*p, v.as_bytes(), 1)))
    }

    #[test]
    fn subtree_respects_label_boundaries() {
        let s = snap(&[
            ("dev/webapp/redis", r#"{"host":"10.0.0.1"}"#),
            ("dev/webapp/redis/a", r#"{"host":"10.0.0.2"}"#),
            ("dev/webapp/redis2/b", r#"{"host":"10.0.0.3"}"#),
            ("dev/webapp/redis-x", r#"{"host":"10.0.0.4"}"#),
        ]);
        let paths: Vec<_> = s.subtree("dev/webapp/redis").map(|(p, _)| p).collect();
        assert_eq!(paths, ["dev/webapp/redis", "dev/webapp/redis/a"]);
        assert_eq!(s.subtree("").count(), 4);
        assert!(s.exists("dev/webapp"));
        assert!(!s.exists("dev/webapp/red"));
    }

    #[test]
    fn malformed_values_are_skipped_once_and_counted() {
        let mut s = Snapshot::default();
        assert_eq!(
            s.put("dev/a", br#"{"host":"10.0.0.1"}"#, 1),
            Applied::Stored
        );
        assert!(matches!(
            s.put("dev/a", b"{nope", 2),
            Applied::Skipped { first: true, .. }
        ));
        assert!(s.get("dev/a").is_none(), "a bad value replaces the old one");
        assert!(matches!(
            s.put("dev/a", b"{nope", 2),
            Applied::Skipped { first: false, .. }
        ));
        assert!(matches!(
            s.put("dev/b c", b"{}", 3),
            Applied::Skipped { first: true, .. }
        ));
        assert_eq!(s.skipped_total(), 2);
        assert_eq!(s.invalid_now(), 2);
        s.put("dev/a", b"{}", 4);
        assert_eq!(s.invalid_now(), 1);
    }

    #[test]
    fn address_index_follows_puts_and_deletes() {
        let mut s = snap(&[
            ("dev/x/a", r#"{"host":"10.0.0.1"}"#),
            ("dev/x/b", r#"{"host":"10.0.0.1"}"#),
        ]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            s.paths_for_addr(ip).collect::<Vec<_>>(),
            ["dev/x/a", "dev/x/b"]
        );
        s.put("dev/x/a", br#"{"host":"10.0.0.2"}"#, 2);
        s.delete("dev/x/b");
        assert_eq!(s.paths_for_addr(ip).count(), 0);
        assert_eq!(
            s.paths_for_addr("10.0.0.2".parse().unwrap())
                .collect::<Vec<_>>(),
            ["dev/x/a"]
        );
    }

    #[test]
    fn keys_are_lower_cased() {
        let s = snap(&[("dev/WebApp/X", r#"{"host":"10.0.0.1"}"#)]);
        assert!(s.get("dev/webapp/x").is_some());
    }

    #[test]
    fn publishing_bumps_the_generation() {
        let v = View::new();
        assert!(v.load().is_none());
        assert_eq!(v.generation(), 0);
        let mut s = Snapshot::default();
        assert_eq!(v.publish(&mut s, true).generation(), 1);
        assert_eq!(v.publish(&mut s, false).generation(), 2);
        assert_eq!(v.generation(), 2);
    }

    #[test]
    fn a_change_is_seen_at_its_path_and_above_only() {
        let v = View::new();
        let mut s = snap(&[
            ("dev/webapp/redis/a", r#"{"host":"10.0.0.1"}"#),
            ("dev/webapp/web/b", r#"{"host":"10.0.0.2"}"#),
        ]);
        let g1 = v.publish(&mut s, true).generation();
        s.put("dev/webapp/redis/a", br#"{"host":"10.0.0.3"}"#, 2);
        let p = v.publish(&mut s, false);
        for changed in [
            "dev/webapp/redis/a",
            "dev/webapp/redis",
            "dev/webapp",
            "dev",
            "",
            "arpa/in-addr/10/0/0/1",
            "arpa/in-addr/10/0/0/3",
        ] {
            assert!(p.changed_since(changed, g1), "{changed}");
        }
        for same in [
            "dev/webapp/web",
            "dev/webapp/web/b",
            "dev/webapp/redis2",
            "arpa/in-addr/10/0/0/2",
        ] {
            assert!(!p.changed_since(same, g1), "{same}");
        }
        assert!(!p.changed_since("dev/webapp/redis", p.generation()));
        // A reload retires everything built before it.
        let r = v.publish(&mut s, true);
        assert!(r.changed_since("dev/webapp/web", p.generation()));
        assert!(!r.changed_since("dev/webapp/web", r.generation()));
    }

    #[test]
    fn reverse_paths() {
        assert_eq!(
            reverse_path("10.0.0.5".parse().unwrap()),
            "arpa/in-addr/10/0/0/5"
        );
        let v6 = reverse_path("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("arpa/ip6/2/0/0/1/0/d/b/8/0"), "{v6}");
        assert!(v6.ends_with("/0/1"), "{v6}");
        assert_eq!(v6.split('/').count(), 34);
    }
}
