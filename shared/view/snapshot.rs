//! One immutable snapshot of every record under the prefix: the records by path, the address
//! index (PTR synthesis), the wildcard index ([`super::index`]), the values that did not parse,
//! and the change stamps that let a cache keep answers whose names did not change.
//!
//! Pure data, no I/O: the watcher ([`super::watch`]) loads the prefix with a [`Loader`], applies
//! etcd's events to a working copy with [`Snapshot::put_leased`] and [`Snapshot::delete`] and
//! publishes it ([`super::View::publish`]); answers read it.
//!
//! Two layers: the records as of the last load or compaction in a compact sorted [`Base`]
//! (`super::base`), and the changes since in persistent maps (imbl) laid over it: a path there
//! holds its new entry, or `None` once deleted. Reads merge the two; a copy is O(1), an update
//! O(log n). When the changes grow past a share of the base ([`Snapshot::compaction_due`]), the
//! watcher merges both into a new base on a blocking thread ([`Compaction`]) and lays over it the
//! changes made meanwhile.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use super::base::Base;
pub use super::entry::Entry;
use super::entry::{normalise_path, parse_entry};
use super::index::WildIndex;
use super::merge::{Layered, Merged};
pub(super) use super::stamps::Stamps;

/// An immutable view of every record under the prefix at one etcd revision.
///
/// Records are keyed by *path* (the key without the prefix, lower case:
/// `dev/webapp/redis/redis-1`), so that a name and everything below it is one range.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The records as of the last load or compaction.
    pub(super) base: Arc<Base>,
    /// Changes since: a path's new entry, or `None` where a record of the base was deleted.
    pub(super) over: OrdMap<Arc<str>, Option<Arc<Entry>>>,
    /// Addresses of the entries in `over`, with their paths.
    pub(super) over_addr: OrdSet<(IpAddr, Arc<str>)>,
    /// Labels and depths of the paths of the entries in `over`, for questions with wildcards.
    pub(super) over_wild: WildIndex,
    /// Records in the view.
    pub(super) len: usize,
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
        self.len
    }

    /// Whether the view holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
        match self.over.get(path) {
            Some(over) => over.as_deref(),
            None => self.base.find(path).map(|i| self.base.entry(i)),
        }
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
        let base = &self.base;
        let below = base
            .range(&lo, &hi)
            .map(move |i| (base.path(i), Some(base.entry(i))));
        let over = self
            .over
            .range(lo..hi)
            .map(|(k, v)| (k.as_ref(), v.as_deref()));
        Layered::new(below, over).filter(move |(k, _)| {
            exact_len == 0 || k.len() == exact_len || k.as_bytes().get(exact_len) == Some(&b'/')
        })
    }

    /// Whether any record is at or below `path` (the name exists, maybe as an empty non-terminal).
    pub fn exists(&self, path: &str) -> bool {
        self.subtree(path).next().is_some()
    }

    /// Paths of the records whose host is this address (for PTR synthesis), in path order.
    pub fn paths_for_addr(&self, addr: IpAddr) -> impl Iterator<Item = &str> {
        let base = &self.base;
        let below = base
            .with_addr(addr)
            .map(move |i| base.path(i))
            .filter(|p| !self.over.contains_key(*p));
        let over = self
            .over_addr
            .range((addr, Arc::from(""))..)
            .take_while(move |(a, _)| *a == addr)
            .map(|(_, p)| p.as_ref());
        Merged::new(below, over)
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
        match parse_entry(&path, value, lease_ttl) {
            Ok(entry) => {
                self.invalid.remove(path.as_str());
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
        // Only the old record's address is needed: no copy of it.
        let Some(old_addr) = self.get(&path).map(|e| e.host.addr()) else {
            return;
        };
        self.len -= 1;
        if let Some(addr) = old_addr {
            self.changed(&path, Some(addr));
        }
        let key = match self.over.get_key_value(&path) {
            Some((key, Some(_))) => {
                let key = key.clone();
                self.over_wild.remove(&key);
                if let Some(addr) = old_addr {
                    self.over_addr.remove(&(addr, key.clone()));
                }
                key
            }
            _ => path,
        };
        if self.base.find(&key).is_some() {
            self.over.insert(key, None);
        } else {
            self.over.remove(&key);
        }
    }

    fn insert(&mut self, path: Arc<str>, entry: Entry) {
        self.changed(&path, None);
        // The old record's address, if there was one (`None`: no old record).
        let old = self.get(&path).map(|e| e.host.addr());
        if old.is_none() {
            self.len += 1;
        }
        let old_addr = old.flatten();
        if let Some(addr) = old_addr {
            self.changed(&path, Some(addr));
        }
        // A new value at a path already changed keeps its key and its place in the index.
        let path = match self.over.get_key_value(&path) {
            Some((key, Some(_))) => {
                let key = key.clone();
                if let Some(addr) = old_addr {
                    self.over_addr.remove(&(addr, key.clone()));
                }
                key
            }
            _ => {
                self.over_wild.add(&path);
                path
            }
        };
        if let Some(addr) = entry.host.addr() {
            self.changed(&path, Some(addr));
            self.over_addr.insert((addr, path.clone()));
        }
        self.over.insert(path, Some(Arc::new(entry)));
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
        let below = self.base.wildcard_candidates(base, pattern)?;
        let over = self.over_wild.candidates(base, pattern).unwrap_or_default();
        let b = &self.base;
        let below = below
            .into_iter()
            .map(move |i| (b.path(i as usize), b.entry(i as usize)))
            .filter(|(p, _)| !self.over.contains_key(*p));
        let over =
            over.into_iter()
                .filter_map(move |p| match self.over.get_key_value(p.as_ref()) {
                    Some((k, Some(e))) => Some((k.as_ref(), e.as_ref())),
                    _ => None,
                });
        Some(Merged::new(below, over))
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

    /// Paths changed since the last load or compaction, held over the compact base until they
    /// are merged into it.
    pub fn changes(&self) -> usize {
        self.over.len()
    }
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

#[cfg(test)]
mod tests;
