//! Encoded answers, kept per question and snapshot generation.
//!
//! An answer built from a snapshot is encoded once and kept under its question (lower-case name,
//! type, class, EDNS, size limit) with the generation of the snapshot it came from. A hit from the
//! same generation is copied and patched ([`crate::wire::patch`]); any change to the view bumps
//! the generation and so retires every entry at once. Several answers rotate: an entry holds one
//! encoding per rotation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;

/// Entries kept before the cache starts over (each is a few hundred bytes).
const CAPACITY: usize = 200_000;

/// One cached answer.
pub struct Cached {
    /// Generation of the snapshot it was built from.
    pub generation: u64,
    /// One encoding per rotation of the answer records.
    pub variants: Vec<Vec<u8>>,
    /// The counter of its question type and response code, counted on every hit.
    pub counter: Counter,
    next: AtomicUsize,
}

impl Cached {
    /// An entry for `generation` with these encodings (at least one).
    pub fn new(generation: u64, variants: Vec<Vec<u8>>, counter: Counter) -> Cached {
        Cached {
            generation,
            variants,
            counter,
            next: AtomicUsize::new(0),
        }
    }

    /// The next encoding in turn.
    pub fn next_variant(&self) -> &[u8] {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.variants
            .get(i % self.variants.len().max(1))
            .map_or(&[], Vec::as_slice)
    }
}

/// The cache: a map from question key to entry, under a reader-writer lock.
#[derive(Default)]
pub struct AnswerCache {
    map: RwLock<HashMap<Box<[u8]>, Arc<Cached>>>,
}

impl AnswerCache {
    /// The entry for `key`, if it was built from snapshot `generation`.
    pub fn get(&self, key: &[u8], generation: u64) -> Option<Arc<Cached>> {
        let map = self.map.read().ok()?;
        map.get(key).filter(|c| c.generation == generation).cloned()
    }

    /// Keeps an entry (starting over when full) and hands it back.
    pub fn insert(&self, key: &[u8], entry: Cached) -> Arc<Cached> {
        let entry = Arc::new(entry);
        if let Ok(mut map) = self.map.write() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key.into(), entry.clone());
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_for_one_generation_and_rotate() {
        let c = AnswerCache::default();
        c.insert(
            b"k",
            Cached::new(7, vec![vec![1], vec![2]], Counter::default()),
        );
        assert!(c.get(b"k", 8).is_none(), "another generation is a miss");
        assert!(c.get(b"other", 7).is_none());
        let e = c.get(b"k", 7).unwrap();
        assert_eq!(
            (e.next_variant(), e.next_variant(), e.next_variant()),
            (&[1u8][..], &[2u8][..], &[1u8][..])
        );
    }
}
