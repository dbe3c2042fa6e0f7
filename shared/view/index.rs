//! The wildcard index of a snapshot: which records have a given label at a given depth, and
//! which records are at a given depth, so that a question with `*` or `any` in it costs what it
//! finds, not what the view holds.
//!
//! A question such as `redis-1.*.webapp.dev` asks for the records whose path, below
//! `dev/webapp`, has any label and then `redis-1`. Without an index that is a walk of everything
//! under `dev/webapp` (100,000 records: 7 ms a question, and every distinct name is a new one).
//! With it, the records that have `redis-1` at that depth are one range of an ordered set. A
//! pattern of wildcards only (`*.*.webapp.dev`) is the records deep enough, one range per depth.
//!
//! Pure data: [`WildIndex`] is a persistent ordered set (clones are O(1), as the snapshot's
//! maps), updated by the snapshot when a path comes or goes, read by [`WildIndex::candidates`].
//! It imports nothing of the view but `Arc<str>` paths.

use std::cmp::Ordering;
use std::sync::Arc;

use imbl::OrdSet;

/// Labels at this depth (0-based segment) and deeper are indexed: a fixed label after a
/// wildcard is at least two below the top (a wildcard needs a domain of at least one label
/// above it, `*.dev`, and the label after it is one further down).
const FIRST_INDEXED: usize = 2;

/// The deepest segment indexed (paths are at most 127 labels, a name 253 characters).
const MAX_DEPTH: usize = 127;

/// One entry: a path, with either its depth (`DEPTH`) or one of its labels and that label's
/// depth (`LABEL`). Ordered by kind and depth, then label, then path, so that "the records with
/// label L at depth d under base B" is one range.
#[derive(Clone, Debug)]
struct Key {
    /// `kind << 8 | depth`.
    tag: u16,
    /// The path (for probes: the label followed by the base).
    text: Arc<str>,
    /// The label: `text[label.0..label.1]` (empty for depth entries).
    label: (u16, u16),
    /// Where the path starts in `text` (0 except for probes).
    path_from: u16,
}

pub(super) const DEPTH: u16 = 0;
pub(super) const LABEL: u16 = 1 << 8;

impl Key {
    fn label(&self) -> &str {
        self.text
            .get(usize::from(self.label.0)..usize::from(self.label.1))
            .unwrap_or("")
    }

    fn path(&self) -> &str {
        self.text.get(usize::from(self.path_from)..).unwrap_or("")
    }

    fn of(path: &Arc<str>, tag: u16, label: (u16, u16)) -> Key {
        Key {
            tag,
            text: path.clone(),
            label,
            path_from: 0,
        }
    }

    fn probe(tag: u16, label: &str, path: &str) -> Key {
        let text: Arc<str> = Arc::from(format!("{label}{path}"));
        Key {
            tag,
            text,
            label: (0, label.len() as u16),
            path_from: label.len() as u16,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.tag
            .cmp(&other.tag)
            .then_with(|| self.label().cmp(other.label()))
            .then_with(|| self.path().cmp(other.path()))
    }
}

/// The index: every record's depth, and its labels from [`FIRST_INDEXED`] down. Reverse paths
/// (`arpa/...`) are not indexed: they are looked up by address, never by wildcard.
#[derive(Clone, Debug, Default)]
pub struct WildIndex {
    keys: OrdSet<Key>,
}

/// The segments of a path with their byte offsets.
fn segments(path: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    path.split('/').map(move |s| {
        let at = (start, start + s.len());
        start += s.len() + 1;
        at
    })
}

fn indexed(path: &str) -> bool {
    !path.starts_with("arpa/") && path.len() < usize::from(u16::MAX)
}

impl WildIndex {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A path came into the view.
    pub fn add(&mut self, path: &Arc<str>) {
        if !indexed(path) {
            return;
        }
        keys_of(path, |tag, label| {
            self.keys.insert(Key::of(path, tag, label));
        });
    }

    /// A path left the view.
    pub fn remove(&mut self, path: &Arc<str>) {
        if !indexed(path) {
            return;
        }
        keys_of(path, |tag, label| {
            self.keys.remove(&Key::of(path, tag, label));
        });
    }

    /// The paths under `base` whose labels below it may match `pattern`: see [`candidates`].
    pub fn candidates(&self, base: &str, pattern: &[Option<&str>]) -> Option<Vec<Arc<str>>> {
        candidates(self, base, pattern)
    }
}

impl LabelIndex for WildIndex {
    type Path = Arc<str>;

    fn count(&self, tag: u16, label: &str, lo: &str, hi: &str, cap: usize) -> usize {
        self.range(tag, label, lo, hi).take(cap).count()
    }

    fn collect(&self, tag: u16, label: &str, lo: &str, hi: &str, out: &mut Vec<Arc<str>>) {
        out.extend(self.range(tag, label, lo, hi).map(|k| k.text.clone()));
    }

    fn deepest(&self) -> usize {
        self.keys
            .range(..Key::probe(LABEL, "", ""))
            .next_back()
            .map_or(0, |k| usize::from(k.tag & 0xff))
    }
}

impl WildIndex {
    fn range<'a>(
        &'a self,
        tag: u16,
        label: &str,
        lo: &str,
        hi: &str,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys
            .range(Key::probe(tag, label, lo)..Key::probe(tag, label, hi))
    }
}

/// An ordered index of `(kind and depth, label, path)` keys: the persistent set of a snapshot's
/// changes ([`WildIndex`]) and the sorted array of its base (`super::base`) both answer
/// [`candidates`] through it.
pub(super) trait LabelIndex {
    /// What a key leads to: a path, or a record number in path order.
    type Path: Ord;
    /// The keys with `tag` and `label` whose path is in `lo..hi`, counted no further than `cap`.
    fn count(&self, tag: u16, label: &str, lo: &str, hi: &str, cap: usize) -> usize;
    /// The same keys' paths, in path order, added to `out`.
    fn collect(&self, tag: u16, label: &str, lo: &str, hi: &str, out: &mut Vec<Self::Path>);
    /// The deepest depth that has a depth key (0 when none).
    fn deepest(&self) -> usize;
}

/// The keys of one path, as `(tag, label's byte range)`: its depth, and each label from
/// [`FIRST_INDEXED`] down. Nothing for a path that is not indexed (reverse paths).
pub(super) fn keys_of(path: &str, mut key: impl FnMut(u16, (u16, u16))) {
    if !indexed(path) {
        return;
    }
    let depth = path.split('/').count().min(MAX_DEPTH);
    key(DEPTH | depth as u16, (0, 0));
    for (d, (a, b)) in segments(path)
        .enumerate()
        .skip(FIRST_INDEXED)
        .take(MAX_DEPTH)
    {
        key(LABEL | d as u16, (a as u16, b as u16));
    }
}

/// The paths under `base` whose labels below it may match `pattern` (top first; `None` matches
/// any one label): a superset of the matches, never missing one, in path order. The caller checks
/// each against the pattern. `None` when the pattern has no wildcard, or when the index cannot
/// narrow it (a single trailing wildcard: everything under `base` but `base` itself matches,
/// which is the plain walk of `base`).
///
/// With fixed labels, the rarest one's range is walked (each range is counted only as far as the
/// smallest one so far): the cost is about the number of records that carry it. Without any, the
/// records at depths the pattern can reach.
pub(super) fn candidates<I: LabelIndex>(
    index: &I,
    base: &str,
    pattern: &[Option<&str>],
) -> Option<Vec<I::Path>> {
    // No wildcard, or a single trailing one (`*.redis.webapp.dev`): the plain walk.
    if pattern.len() < 2 || pattern.iter().all(Option::is_some) {
        return None;
    }
    if !indexed(base) && !base.is_empty() {
        return None;
    }
    let base_depth = if base.is_empty() {
        0
    } else {
        base.split('/').count()
    };
    let lo_path = if base.is_empty() {
        String::new()
    } else {
        format!("{base}/")
    };
    // '/' + 1 == '0': every path below "base/" sorts before "base0".
    let hi_path = if base.is_empty() {
        "\u{10FFFF}".to_string()
    } else {
        format!("{base}0")
    };
    let fixed: Vec<(usize, &str)> = pattern
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|l| (base_depth + i, l)))
        .filter(|(d, _)| *d >= FIRST_INDEXED && *d < MAX_DEPTH)
        .collect();
    let mut out = Vec::new();
    if !fixed.is_empty() {
        // The rarest label: count each range no further than the best so far.
        let mut best: Option<(usize, u16, &str)> = None;
        for (depth, label) in &fixed {
            let tag = LABEL | *depth as u16;
            let cap = best.map_or(usize::MAX, |b| b.0);
            let n = index.count(tag, label, &lo_path, &hi_path, cap.saturating_add(1));
            if best.is_none_or(|b| n < b.0) {
                best = Some((n, tag, label));
            }
        }
        let (_, tag, label) = best?;
        index.collect(tag, label, &lo_path, &hi_path, &mut out);
        return Some(out);
    }
    // Wildcards only: the records at least as deep as the pattern reaches.
    let min_depth = base_depth + pattern.len();
    for depth in min_depth..=index.deepest().min(MAX_DEPTH) {
        index.collect(DEPTH | depth as u16, "", &lo_path, &hi_path, &mut out);
    }
    out.sort_unstable();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(paths: &[&str]) -> WildIndex {
        let mut i = WildIndex::default();
        for p in paths {
            i.add(&Arc::from(*p));
        }
        i
    }

    fn got(i: &WildIndex, base: &str, pattern: &[Option<&str>]) -> Option<Vec<String>> {
        i.candidates(base, pattern)
            .map(|v| v.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn a_fixed_label_after_a_wildcard_is_one_range() {
        let i = index(&[
            "dev/webapp/redis/redis-1",
            "dev/webapp/redis/redis-2",
            "dev/webapp/cache/redis-1",
            "dev/webapp/cache/redis-1/sub",
            "dev/other/redis/redis-1",
            "dev/webapp/redis-1",
        ]);
        assert_eq!(
            got(&i, "dev/webapp", &[None, Some("redis-1")]).unwrap(),
            [
                "dev/webapp/cache/redis-1",
                "dev/webapp/cache/redis-1/sub",
                "dev/webapp/redis/redis-1"
            ]
        );
        // The rarest of two fixed labels is walked; the caller filters the rest.
        let two = got(&i, "dev", &[None, Some("redis"), Some("redis-2")]).unwrap();
        assert_eq!(two, ["dev/webapp/redis/redis-2"]);
        assert!(got(&i, "dev/webapp", &[None, Some("nope")])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn wildcards_only_reach_the_records_deep_enough() {
        let mut i = index(&[
            "dev/webapp/a",
            "dev/webapp/a/b",
            "dev/webapp/a/b/c",
            "dev/webapp2/x/y",
        ]);
        assert_eq!(got(&i, "dev/webapp", &[None]), None, "the plain walk");
        assert_eq!(
            got(&i, "dev/webapp", &[None, None]).unwrap(),
            ["dev/webapp/a/b", "dev/webapp/a/b/c"]
        );
        assert!(got(&i, "dev/webapp", &[None; 9]).unwrap().is_empty());
        i.remove(&Arc::from("dev/webapp/a/b/c"));
        assert_eq!(
            got(&i, "dev/webapp", &[None, None]).unwrap(),
            ["dev/webapp/a/b"]
        );
        assert_eq!(got(&i, "dev/webapp", &[Some("a")]), None, "no wildcard");
    }

    #[test]
    fn removing_every_path_empties_the_index() {
        let paths = ["dev/w/a/b", "dev/w/c", "arpa/in-addr/10/0/0/1"];
        let mut i = index(&paths);
        assert_eq!(i.len(), 3 + 2, "depth, and labels from depth 2; arpa not");
        for p in paths {
            i.remove(&Arc::from(p));
        }
        assert!(i.is_empty());
    }
}
