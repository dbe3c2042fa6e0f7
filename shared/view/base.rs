//! The compact, sorted part of a snapshot: every record as of the last load or compaction, in
//! flat arrays instead of trees, so that a million records are read in one pass and kept in a
//! fraction of the memory a persistent tree needs.
//!
//! A [`Base`] never changes once built ([`BaseBuilder::build`]); the snapshot lays its own changes
//! over it (see [`super::snapshot`]) and, when those grow, merges both into a new base on a
//! blocking thread ([`Base::merged`]).
//!
//! Layout: the paths in one string, one after the other in path order; the records beside them
//! (entry and where its path starts); the address index as `(address, record)` pairs; the
//! wildcard index as, per depth, the records that deep and the `(label, record)` keys of the
//! labels there. Records are numbered in path order, so ordering by number is ordering by path,
//! and every index is a sorted array searched by bisection. The indexes are collected as records
//! are pushed (a load pushes them while etcd sends the next page) and sorted once at the end.
//! Pure data: imports the record model and the wildcard index's key scheme.

use std::cmp::Ordering;
use std::net::IpAddr;

use super::entry::Entry;
use super::index::{self, LabelIndex};

/// One record: its entry and where its path starts in [`Base::text`] (it ends where the next
/// one starts).
#[derive(Debug, Clone)]
struct Record {
    start: usize,
    entry: Entry,
}

/// A label key of the wildcard index: the label's place in the record's path, and the record.
#[derive(Debug, Clone, Copy)]
struct LabelKey {
    label: (u16, u16),
    record: u32,
}

/// The records of a snapshot as of its last load or compaction. See the module docs.
#[derive(Debug, Default)]
pub(super) struct Base {
    text: String,
    records: Vec<Record>,
    by_addr: Vec<(IpAddr, u32)>,
    /// The wildcard index: for each depth, the records that deep (in record order)...
    depths: Vec<Vec<u32>>,
    /// ... and for each depth, the labels there, by label and then record.
    labels: Vec<Vec<LabelKey>>,
}

/// The most records a base holds (record numbers are 32 bits).
pub(super) const MAX_RECORDS: usize = u32::MAX as usize;

impl Base {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// The path of record `i` (`i < len()`).
    pub(super) fn path(&self, i: usize) -> &str {
        let end = self.records.get(i + 1).map_or(self.text.len(), |r| r.start);
        self.text.get(self.records[i].start..end).unwrap_or("")
    }

    pub(super) fn entry(&self, i: usize) -> &Entry {
        &self.records[i].entry
    }

    /// The record at exactly `path`.
    pub(super) fn find(&self, path: &str) -> Option<usize> {
        let i = self.lower_bound(path);
        (i < self.len() && self.path(i) == path).then_some(i)
    }

    /// The first record whose path is at least `path`.
    fn lower_bound(&self, path: &str) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.path(mid) < path {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The records whose path is in `lo..hi`.
    pub(super) fn range(&self, lo: &str, hi: &str) -> std::ops::Range<usize> {
        let a = self.lower_bound(lo);
        let b = self.lower_bound(hi).max(a);
        a..b
    }

    /// The records whose host is `addr`, in path order.
    pub(super) fn with_addr(&self, addr: IpAddr) -> impl Iterator<Item = usize> + '_ {
        let from = self.by_addr.partition_point(|(a, _)| *a < addr);
        self.by_addr[from..]
            .iter()
            .take_while(move |(a, _)| *a == addr)
            .map(|(_, i)| *i as usize)
    }

    fn label_of(&self, k: &LabelKey) -> &str {
        label_in(&self.text, &self.records, k)
    }

    /// The keys of the wildcard index with `tag` and `label` whose path is in `lo..hi`: their
    /// record numbers.
    fn wild_range(&self, tag: u16, label: &str, lo: &str, hi: &str) -> WildRange<'_> {
        let depth = usize::from(tag & 0xff);
        let records = self.range(lo, hi);
        let (start, end) = (records.start as u32, records.end as u32);
        if tag & index::LABEL == 0 {
            let group = self.depths.get(depth).map_or(&[][..], Vec::as_slice);
            let a = group.partition_point(|r| *r < start);
            let b = group.partition_point(|r| *r < end).max(a);
            return WildRange::Depth(&group[a..b]);
        }
        let group = self.labels.get(depth).map_or(&[][..], Vec::as_slice);
        let before = |k: &LabelKey, record: u32| {
            self.label_of(k)
                .cmp(label)
                .then_with(|| k.record.cmp(&record))
                == Ordering::Less
        };
        let a = group.partition_point(|k| before(k, start));
        let b = group.partition_point(|k| before(k, end)).max(a);
        WildRange::Label(&group[a..b])
    }

    /// Record numbers under `base` that may match `pattern` (see [`index::candidates`]), in path
    /// order; `None` when the index cannot narrow the question.
    pub(super) fn wildcard_candidates(
        &self,
        base: &str,
        pattern: &[Option<&str>],
    ) -> Option<Vec<u32>> {
        index::candidates(self, base, pattern)
    }

    /// A new base holding `self` with `changes` laid over it (`None`: the path is gone), both in
    /// path order.
    pub(super) fn merged<'a>(
        &self,
        changes: impl Iterator<Item = (&'a str, Option<&'a Entry>)>,
    ) -> Base {
        let mut out = BaseBuilder::with_capacity(self.len(), self.text.len());
        let mut i = 0;
        for (path, entry) in changes {
            while i < self.len() && self.path(i) < path {
                out.push(self.path(i), self.entry(i).clone());
                i += 1;
            }
            if i < self.len() && self.path(i) == path {
                i += 1;
            }
            if let Some(e) = entry {
                out.push(path, e.clone());
            }
        }
        while i < self.len() {
            out.push(self.path(i), self.entry(i).clone());
            i += 1;
        }
        out.build()
    }
}

/// A range of the wildcard index: records of one depth, or keys of one label.
enum WildRange<'a> {
    Depth(&'a [u32]),
    Label(&'a [LabelKey]),
}

impl LabelIndex for Base {
    type Path = u32;

    fn count(&self, tag: u16, label: &str, lo: &str, hi: &str, _cap: usize) -> usize {
        match self.wild_range(tag, label, lo, hi) {
            WildRange::Depth(r) => r.len(),
            WildRange::Label(k) => k.len(),
        }
    }

    fn collect(&self, tag: u16, label: &str, lo: &str, hi: &str, out: &mut Vec<u32>) {
        match self.wild_range(tag, label, lo, hi) {
            WildRange::Depth(r) => out.extend_from_slice(r),
            WildRange::Label(k) => out.extend(k.iter().map(|k| k.record)),
        }
    }

    fn deepest(&self) -> usize {
        self.depths.iter().rposition(|d| !d.is_empty()).unwrap_or(0)
    }
}

fn label_in<'a>(text: &'a str, records: &[Record], k: &LabelKey) -> &'a str {
    let start = records[k.record as usize].start;
    text.get(start + usize::from(k.label.0)..start + usize::from(k.label.1))
        .unwrap_or("")
}

/// Collects records (in any order) into a [`Base`].
#[derive(Debug, Default)]
pub(super) struct BaseBuilder {
    base: Base,
    /// Whether the records came in strictly increasing path order (then the indexes collected
    /// on the way hold).
    sorted: bool,
    /// Paths removed after records were pushed at them (a later value that did not parse), with
    /// how many records had been pushed by then.
    removed: Vec<(usize, String)>,
}

impl BaseBuilder {
    pub(super) fn new() -> BaseBuilder {
        BaseBuilder {
            sorted: true,
            ..BaseBuilder::default()
        }
    }

    fn with_capacity(records: usize, text: usize) -> BaseBuilder {
        let mut b = BaseBuilder::new();
        b.reserve(records, text);
        b
    }

    pub(super) fn len(&self) -> usize {
        self.base.records.len()
    }

    /// Makes room for `records` more records with `text` more bytes of paths, at once (not by
    /// doubling, which keeps up to twice the room a load needs).
    pub(super) fn reserve(&mut self, records: usize, text: usize) {
        self.base.records.reserve_exact(records);
        self.base.text.reserve_exact(text);
    }

    /// Adds a record; a later record at the same path replaces an earlier one. Past
    /// [`MAX_RECORDS`] records, or 4 GiB of paths, nothing is added (false).
    pub(super) fn push(&mut self, path: &str, entry: Entry) -> bool {
        let base = &mut self.base;
        if base.records.len() >= MAX_RECORDS
            || base.text.len().saturating_add(path.len()) > u32::MAX as usize
        {
            return false;
        }
        let last = base.records.last().and_then(|r| base.text.get(r.start..));
        if last.is_some_and(|last| last >= path) {
            self.sorted = false;
        }
        let record = base.records.len() as u32;
        if self.sorted {
            index_record(base, record, path, &entry);
        }
        base.records.push(Record {
            start: base.text.len(),
            entry,
        });
        base.text.push_str(path);
        true
    }

    /// Takes out the record pushed at `path`, if any: a later value there did not parse. (Within
    /// one load this happens only for keys that differ in letter case.)
    pub(super) fn remove(&mut self, path: &str) {
        let base = &self.base;
        let pushed = if self.sorted {
            // Sorted so far: it is there only if it is among what was pushed.
            let last = base.records.last().and_then(|r| base.text.get(r.start..));
            last.is_some_and(|last| last >= path) && base.find(path).is_some()
        } else {
            true
        };
        if pushed {
            self.removed.push((base.records.len(), path.to_string()));
            self.sorted = false;
        }
    }

    /// The base: records in path order (the last one pushed of each path), and its indexes.
    pub(super) fn build(self) -> Base {
        let mut base = if self.sorted {
            self.base
        } else {
            let mut base = Self::sort(self.base, &self.removed);
            for i in 0..base.len() {
                let (path, entry) = (base.path(i).to_string(), base.entry(i).clone());
                index_record(&mut base, i as u32, &path, &entry);
            }
            base
        };
        base.text.shrink_to_fit();
        base.records.shrink_to_fit();
        // Made in record order, so within an address the order is the path order already.
        base.by_addr.sort_by_key(|(addr, _)| *addr);
        let Base {
            text,
            records,
            labels,
            ..
        } = &mut base;
        for group in labels.iter_mut() {
            // Stable, and keys are made in record order: within a label, path order holds.
            let label = |k: &LabelKey| label_in(text, records, k);
            if !group.is_sorted_by(|a, b| label(a) <= label(b)) {
                group.sort_by(|a, b| label(a).cmp(label(b)));
            }
        }
        base
    }

    /// Records pushed out of order: sorted by path (stably: of equal paths the last pushed is
    /// kept, unless the path was removed after it), with the text laid out again in that order;
    /// no index yet.
    fn sort(pushed: Base, removed: &[(usize, String)]) -> Base {
        // The last removal of each path, by how many records were pushed before it.
        let removed_at: std::collections::HashMap<&str, usize> =
            removed.iter().map(|(at, p)| (p.as_str(), *at)).collect();
        let Base { text, records, .. } = pushed;
        let span = |i: usize| {
            let end = records.get(i + 1).map_or(text.len(), |r| r.start);
            text.get(records[i].start..end).unwrap_or("")
        };
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by(|a, b| span(*a).cmp(span(*b)));
        // Of a run of equal paths, the last pushed (highest index) wins.
        let mut keep: Vec<usize> = Vec::with_capacity(order.len());
        for i in order {
            match keep.last_mut() {
                Some(last) if span(*last) == span(i) => *last = i,
                _ => keep.push(i),
            }
        }
        let mut out = Base {
            text: String::with_capacity(text.len()),
            records: Vec::with_capacity(keep.len()),
            ..Base::default()
        };
        for i in keep {
            if removed_at.get(span(i)).is_some_and(|at| *at > i) {
                continue;
            }
            out.records.push(Record {
                start: out.text.len(),
                entry: records[i].entry.clone(),
            });
            out.text.push_str(span(i));
        }
        out
    }
}

/// Adds record `record` (at `path`, holding `entry`) to the address and wildcard indexes,
/// unsorted.
fn index_record(base: &mut Base, record: u32, path: &str, entry: &Entry) {
    if let Some(addr) = entry.host.addr() {
        base.by_addr.push((addr, record));
    }
    index::keys_of(path, |tag, label| {
        let depth = usize::from(tag & 0xff);
        let groups_len = depth + 1;
        if tag & index::LABEL == 0 {
            if base.depths.len() < groups_len {
                base.depths.resize_with(groups_len, Vec::new);
            }
            base.depths[depth].push(record);
        } else {
            if base.labels.len() < groups_len {
                base.labels.resize_with(groups_len, Vec::new);
            }
            base.labels[depth].push(LabelKey { label, record });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Service;

    fn entry(host: &str) -> Entry {
        let service = Service {
            host: host.into(),
            ..Service::default()
        };
        Entry {
            host: service.host(),
            service,
            lease_ttl: 0,
        }
    }

    #[test]
    fn out_of_order_pushes_are_sorted_and_the_last_of_a_path_wins() {
        let mut b = BaseBuilder::new();
        b.push("dev/b", entry("10.0.0.2"));
        b.push("dev/a", entry("10.0.0.1"));
        b.push("dev/b", entry("10.0.0.3"));
        let base = b.build();
        assert_eq!(base.len(), 2);
        assert_eq!(base.path(0), "dev/a");
        assert_eq!(base.path(1), "dev/b");
        assert_eq!(base.entry(1).service.host, "10.0.0.3");
        assert_eq!(base.find("dev/b"), Some(1));
        assert_eq!(base.find("dev/c"), None);
        let ip = "10.0.0.3".parse().unwrap();
        assert_eq!(base.with_addr(ip).collect::<Vec<_>>(), [1]);
        assert_eq!(base.with_addr("10.0.0.2".parse().unwrap()).count(), 0);
    }

    #[test]
    fn a_removal_takes_out_what_was_pushed_before_it_only() {
        let mut b = BaseBuilder::new();
        b.push("dev/a", entry("10.0.0.1"));
        b.push("dev/b", entry("10.0.0.2"));
        b.remove("dev/a");
        b.remove("dev/z"); // never pushed: nothing to do
        b.push("dev/c", entry("10.0.0.3"));
        b.remove("dev/c");
        b.push("dev/c", entry("10.0.0.4"));
        let base = b.build();
        let paths: Vec<_> = (0..base.len()).map(|i| base.path(i)).collect();
        assert_eq!(paths, ["dev/b", "dev/c"]);
        assert_eq!(base.entry(1).service.host, "10.0.0.4");
        assert_eq!(base.with_addr("10.0.0.1".parse().unwrap()).count(), 0);
        let mut plain = BaseBuilder::new();
        plain.push("dev/a", entry("10.0.0.1"));
        plain.remove("dev/b");
        assert!(
            plain.sorted,
            "a removal of what was never pushed keeps the fast way"
        );
    }

    #[test]
    fn merging_lays_changes_over_the_records() {
        let mut b = BaseBuilder::new();
        for p in ["dev/a", "dev/c", "dev/e"] {
            b.push(p, entry("10.0.0.1"));
        }
        let base = b.build();
        let new = entry("10.0.0.9");
        let merged = base.merged(
            [
                ("dev/b", Some(&new)),
                ("dev/c", None),
                ("dev/e", Some(&new)),
                ("dev/f", Some(&new)),
            ]
            .into_iter(),
        );
        let paths: Vec<_> = (0..merged.len()).map(|i| merged.path(i)).collect();
        assert_eq!(paths, ["dev/a", "dev/b", "dev/e", "dev/f"]);
        assert_eq!(merged.entry(2).service.host, "10.0.0.9");
        assert_eq!(
            merged
                .with_addr("10.0.0.9".parse().unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }
}
