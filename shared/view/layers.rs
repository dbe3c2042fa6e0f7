//! How a snapshot gets a new compact base: a [`Loader`] builds one from a whole read of the
//! prefix, and a [`Compaction`] merges the changes laid over a base into a new one (on a blocking
//! thread, away from the watcher), which [`Snapshot::rebase`] then puts under the snapshot with
//! the changes made meanwhile laid over it again.
//!
//! Pure data, no I/O: it reads and replaces the layers of a [`Snapshot`]; the watcher's shell
//! (`super::read`, `super::watch`) drives it.

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use super::base::{Base, BaseBuilder, MAX_RECORDS};
use super::entry::{normalise_path, parse_entry, Entry};
use super::index::WildIndex;
use super::snapshot::{Applied, Snapshot};

impl Snapshot {
    /// A snapshot made from a list of `(path, value, mod_revision)`, for tests and loaders.
    pub fn from_values<'a>(values: impl IntoIterator<Item = (&'a str, &'a [u8], i64)>) -> Self {
        let mut load = Loader::after(None);
        for (path, value, rev) in values {
            load.put(path, value, rev, 0);
        }
        load.finish()
    }

    /// Whether the changes laid over the base have grown enough to merge them into it: past
    /// [`COMPACT_AT_LEAST`] and an eighth of the base.
    pub(super) fn compaction_due(&self) -> bool {
        self.over.len() > COMPACT_AT_LEAST.max(self.base.len() / 8)
    }

    /// The work of merging the changes into a new base, to run away from the watcher.
    pub(super) fn compaction(&self) -> Compaction {
        Compaction {
            base: self.base.clone(),
            over: self.over.clone(),
        }
    }

    /// Puts the base `compacted` made under this snapshot, keeping every change made since it
    /// started (`touched`: at least every path changed meanwhile, as given to `put`/`delete`).
    /// The view reads the same before and after. False (and nothing done) when this snapshot no
    /// longer stands on the base the compaction started from (it was loaded again meanwhile).
    pub(super) fn rebase(&mut self, compacted: Compacted, touched: &[String]) -> bool {
        if !Arc::ptr_eq(&self.base, &compacted.from) {
            return false;
        }
        let new = compacted.base;
        let mut over: OrdMap<Arc<str>, Option<Arc<Entry>>> = OrdMap::new();
        for path in touched {
            let path = normalise_path(path);
            let now = match self.over.get(path.as_str()) {
                Some(now) => now.clone(),
                // Unchanged since the old base, or a new path deleted again.
                None if self.base.find(&path).is_some() => continue,
                None => None,
            };
            if now.is_some() || new.find(&path).is_some() {
                over.insert(Arc::from(path), now);
            }
        }
        let mut over_addr = OrdSet::new();
        let mut over_wild = WildIndex::default();
        for (path, entry) in &over {
            if let Some(e) = entry {
                over_wild.add(path);
                if let Some(addr) = e.host.addr() {
                    over_addr.insert((addr, path.clone()));
                }
            }
        }
        self.base = Arc::new(new);
        self.over = over;
        self.over_addr = over_addr;
        self.over_wild = over_wild;
        true
    }
}

/// Changes laid over a base are merged into it once there are more than this many (and more
/// than an eighth of the base).
pub(super) const COMPACT_AT_LEAST: usize = 4096;

/// A base and the changes over it, to merge ([`Compaction::run`], on a blocking thread).
pub(super) struct Compaction {
    base: Arc<Base>,
    over: OrdMap<Arc<str>, Option<Arc<Entry>>>,
}

/// The new base a [`Compaction`] made, and the base it was made from.
pub(super) struct Compacted {
    from: Arc<Base>,
    base: Base,
}

impl Compaction {
    /// Merges (time linear in the records, plus sorting the wildcard index).
    pub(super) fn run(self) -> Compacted {
        let base = self.base.merged(
            self.over
                .iter()
                .map(|(path, entry)| (path.as_ref(), entry.as_deref())),
        );
        Compacted {
            from: self.base,
            base,
        }
    }
}

/// Loads a snapshot from scratch: records in (about) path order into a new base, in one pass.
#[derive(Debug)]
pub(super) struct Loader {
    builder: BaseBuilder,
    /// Values that did not parse in this load...
    invalid: OrdMap<Arc<str>, i64>,
    /// ... and in the snapshot this load replaces (not reported twice).
    reported: OrdMap<Arc<str>, i64>,
    /// Values skipped since start.
    skipped_total: u64,
}

impl Loader {
    /// A load replacing `previous` (if any): its invalid values are not reported again, and its
    /// count of skipped values goes on.
    pub(super) fn after(previous: Option<&Snapshot>) -> Loader {
        Loader {
            reported: previous.map(|s| s.invalid.clone()).unwrap_or_default(),
            skipped_total: previous.map_or(0, |s| s.skipped_total),
            builder: BaseBuilder::new(),
            invalid: OrdMap::new(),
        }
    }

    /// Records so far.
    pub(super) fn len(&self) -> usize {
        self.builder.len()
    }

    /// Makes room for `records` more records whose paths take about `text` bytes.
    pub(super) fn reserve(&mut self, records: usize, text: usize) {
        self.builder.reserve(records, text);
    }

    /// [`Snapshot::put_leased`] of a load.
    pub(super) fn put(
        &mut self,
        path: &str,
        value: &[u8],
        mod_revision: i64,
        lease_ttl: u32,
    ) -> Applied {
        let path = normalise_path(path);
        let reason = match parse_entry(&path, value, lease_ttl) {
            Ok(entry) => {
                if self.builder.push(&path, entry) {
                    return Applied::Stored;
                }
                format!("the view holds its most records ({})", MAX_RECORDS)
            }
            Err(reason) => {
                // As a put does: a value that does not parse takes the path out of the view.
                self.builder.remove(&path);
                reason
            }
        };
        let key: Arc<str> = Arc::from(path);
        let first = self.reported.get(&key) != Some(&mod_revision)
            && self.invalid.get(&key) != Some(&mod_revision);
        if first {
            self.skipped_total += 1;
        }
        self.invalid.insert(key, mod_revision);
        Applied::Skipped { first, reason }
    }

    /// The loaded snapshot (revision and generation still to set).
    pub(super) fn finish(self) -> Snapshot {
        let base = self.builder.build();
        let mut snap = Snapshot::default();
        snap.len = base.len();
        snap.base = Arc::new(base);
        snap.invalid = self.invalid;
        snap.skipped_total = self.skipped_total;
        snap
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::record::Service;

    /// Whether `path` (below `base`) matches `pattern` label for label (`None`: any label).
    fn matches(path: &str, base: &str, pattern: &[Option<&str>]) -> bool {
        let mut segs = path[base.len()..].split('/').skip(1);
        pattern
            .iter()
            .all(|p| segs.next().is_some_and(|s| p.is_none_or(|p| p == s)))
    }

    /// Random puts, deletes and compactions (some while a compaction runs) against a plain map: the
    /// layered snapshot reads exactly what the map holds, through every accessor.
    #[test]
    fn layers_read_as_one_map_through_changes_and_compactions() {
        use std::collections::BTreeMap;
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let path = |i: u64| format!("dev/w/s{}/i{}", i % 7, i);
        let value = |v: u64| format!(r#"{{"host":"10.0.{}.{}"}}"#, v % 3, v % 5);
        let mut model: BTreeMap<String, String> = BTreeMap::new();
        let initial: Vec<(String, String)> =
            (0..300).step_by(2).map(|i| (path(i), value(i))).collect();
        for (p, v) in &initial {
            model.insert(p.clone(), v.clone());
        }
        let mut s =
            Snapshot::from_values(initial.iter().map(|(p, v)| (p.as_str(), v.as_bytes(), 1)));
        let mut running: Option<(Compaction, Vec<String>)> = None;
        for step in 0..6000u64 {
            let p = path(rand(400));
            match rand(10) {
                0..=5 => {
                    let v = value(rand(1000));
                    s.put(&p, v.as_bytes(), step as i64 + 2);
                    model.insert(p.clone(), v);
                }
                _ => {
                    s.delete(&p);
                    model.remove(&p);
                }
            }
            if let Some((_, touched)) = running.as_mut() {
                touched.push(p);
            }
            match (step % 500, running.take()) {
                (100, None) => running = Some((s.compaction(), Vec::new())),
                (400, Some((job, touched))) => assert!(s.rebase(job.run(), &touched)),
                (_, r) => running = r,
            }
            if step % 97 != 0 {
                continue;
            }
            assert_eq!(s.len(), model.len(), "step {step}");
            let all: Vec<(&str, &str)> = s
                .subtree("")
                .map(|(p, e)| (p, e.service.host.as_str()))
                .collect();
            let want: Vec<(&str, String)> = model
                .iter()
                .map(|(p, v)| (p.as_str(), Service::parse(v.as_bytes()).unwrap().host))
                .collect();
            assert_eq!(
                all,
                want.iter()
                    .map(|(p, h)| (*p, h.as_str()))
                    .collect::<Vec<_>>(),
                "step {step}"
            );
            for i in 0..7 {
                let base = format!("dev/w/s{i}");
                let n = model
                    .keys()
                    .filter(|k| k.starts_with(&format!("{base}/")))
                    .count();
                assert_eq!(s.subtree(&base).count(), n);
            }
            for a in 0..3 {
                for b in 0..5 {
                    let ip: IpAddr = format!("10.0.{a}.{b}").parse().unwrap();
                    let got: Vec<&str> = s.paths_for_addr(ip).collect();
                    let want: Vec<&str> = model
                        .iter()
                        .filter(|(_, v)| **v == format!(r#"{{"host":"{ip}"}}"#))
                        .map(|(p, _)| p.as_str())
                        .collect();
                    assert_eq!(got, want, "step {step} {ip}");
                }
            }
            let pattern = [None, Some("i12")];
            let found: Vec<&str> = s
                .wildcard_candidates("dev/w", &pattern)
                .unwrap()
                .map(|(p, _)| p)
                .filter(|p| matches(p, "dev/w", &pattern))
                .collect();
            assert_eq!(
                found,
                model
                    .keys()
                    .filter(|k| k.ends_with("/i12"))
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            );
            let deep: Vec<&str> = s
                .wildcard_candidates("dev", &[None, None, None])
                .unwrap()
                .map(|(p, _)| p)
                .collect();
            assert_eq!(deep, model.keys().map(String::as_str).collect::<Vec<_>>());
        }
        // A compaction that started under another base (a reload) is not put under this one.
        let stale = s.compaction();
        let mut reloaded = Snapshot::from_values([("dev/a", br#"{}"#.as_slice(), 1)]);
        assert!(!reloaded.rebase(stale.run(), &[]));
        assert_eq!(reloaded.len(), 1);
    }

    /// Keys differing only in letter case are one path: in a load as in the watch, the later value
    /// wins, and a later value that does not parse takes the path out (found by `make fuzz`).
    #[test]
    fn a_load_applies_values_at_one_path_as_the_watch_does() {
        let values: [(&str, &[u8]); 3] = [
            ("dev/w/A", br#"{"host":"10.0.0.1"}"#),
            ("dev/w/a", b"{not json"),
            ("dev/w/b", br#"{"host":"10.0.0.2"}"#),
        ];
        let loaded = Snapshot::from_values(values.iter().map(|(p, v)| (*p, *v, 1)));
        let mut watched = Snapshot::default();
        for (p, v) in values {
            watched.put(p, v, 1);
        }
        for s in [&loaded, &watched] {
            assert!(s.get("dev/w/a").is_none());
            assert_eq!(s.len(), 1);
            assert_eq!(s.invalid_now(), 1);
        }
    }

    #[test]
    fn changes_past_the_threshold_ask_for_a_compaction() {
        let mut s = Snapshot::default();
        for i in 0..=COMPACT_AT_LEAST {
            s.put(&format!("dev/w/x{i}"), br#"{"host":"10.0.0.1"}"#, 1);
        }
        assert!(s.compaction_due());
        let job = s.compaction();
        assert!(s.rebase(job.run(), &[]));
        assert!(!s.compaction_due());
        assert_eq!(s.changes(), 0);
        assert_eq!(s.len(), COMPACT_AT_LEAST + 1);
    }
}
