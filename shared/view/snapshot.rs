//! One immutable snapshot of every record under the prefix: the records by path, the address
//! index (PTR synthesis), the wildcard index ([`super::index`]), the values that did not parse,
//! and the change stamps that let a cache keep answers whose names did not change.
//!
//! Pure data, no I/O: the watcher ([`super::watch`]) applies etcd's events to a working copy with
//! [`Snapshot::put_leased`] and [`Snapshot::delete`] and publishes it ([`super::View::publish`]);
//! answers read it. The maps are persistent (imbl): a copy is O(1), an update O(log n).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use super::index::WildIndex;
use crate::key;
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
    /// Labels and depths of the paths, for questions with wildcards.
    wild: WildIndex,
    /// Keys whose value did not parse, with the revision of that value.
    pub(super) invalid: OrdMap<Arc<str>, i64>,
    pub(super) revision: i64,
    pub(super) generation: u64,
    pub(super) skipped_total: u64,
    /// Paths changed since the last publication: stamped by [`super::View::publish`].
    dirty: Vec<Arc<str>>,
    /// Whether changes are recorded in `dirty`: not while a snapshot is loaded from scratch
    /// (its publication retires everything anyway), from its first publication on.
    tracking: bool,
    /// The view's stamps: for each path (by hash), the generation of the last change at or below it.
    stamps: Arc<Stamps>,
}

/// Generations of the last change at or below each path, by a hash of the path, and a floor
/// below which everything counts as changed (a reload).
pub(super) struct Stamps {
    slots: Box<[AtomicU64]>,
    floor: AtomicU64,
}

impl Stamps {
    /// A table of `slots` (a power of two) stamps.
    pub(super) fn new(slots: usize) -> Stamps {
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
pub(super) const STAMP_SLOTS: usize = 1 << 20;

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
        if let Some((key, old)) = self.entries.remove_with_key(&path) {
            self.wild.remove(&key);
            if let Some(addr) = addr_of(&old.host) {
                self.changed(&path, Some(addr));
                self.by_addr.remove(&(addr, path));
            }
        }
    }

    fn insert(&mut self, path: Arc<str>, entry: Entry) {
        self.changed(&path, None);
        // A new value at a known path keeps its place in the wildcard index (and its key).
        let (path, old) = match self.entries.get_key_value(&path) {
            Some((key, old)) => (key.clone(), Some(old.clone())),
            None => {
                self.wild.add(&path);
                (path, None)
            }
        };
        if let Some(addr) = old.as_ref().and_then(|o| addr_of(&o.host)) {
            self.changed(&path, Some(addr));
            self.by_addr.remove(&(addr, path.clone()));
        }
        if let Some(addr) = addr_of(&entry.host) {
            self.changed(&path, Some(addr));
            self.by_addr.insert((addr, path.clone()));
        }
        self.entries.insert(path, Arc::new(entry));
    }

    /// The records under `base` that may match `pattern` (the labels below `base`, top first;
    /// `None` for a wildcard), from the wildcard index: a superset of the matches in path order,
    /// costing about what it yields. `None` when the index cannot narrow the question (no
    /// wildcard, or a single trailing one): then walk [`Snapshot::subtree`].
    pub fn wildcard_candidates<'a>(
        &'a self,
        base: &str,
        pattern: &[Option<&str>],
    ) -> Option<impl Iterator<Item = (&'a str, &'a Entry)> + 'a> {
        let paths = self.wild.candidates(base, pattern)?;
        Some(paths.into_iter().filter_map(move |p| {
            self.entries
                .get_key_value(p.as_ref())
                .map(|(k, e)| (k.as_ref(), e.as_ref()))
        }))
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
    pub(super) fn stamp(&mut self, stamps: &Arc<Stamps>, generation: u64, reset: bool) {
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

    /// An empty snapshot to load the prefix into, remembering `previous`'s invalid values (so
    /// that they are not reported twice) and its count of skipped values.
    pub(super) fn fresh_after(previous: Option<&Snapshot>) -> Snapshot {
        Snapshot {
            invalid: previous.map(|s| s.invalid.clone()).unwrap_or_default(),
            skipped_total: previous.map_or(0, |s| s.skipped_total),
            ..Snapshot::default()
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

pub(super) fn normalise_path(path: &str) -> String {
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

#[cfg(test)]
mod tests;
