//! The change stamps of a view: for each path (by hash), the generation of the last change at or
//! below it, so that a cache keeps the answers whose names did not change when a snapshot is
//! published ([`super::snapshot::Snapshot::changed_since`]).
//!
//! Shared between the view and every snapshot it published (atomics, written by the watcher at
//! publication, read by answers). Imports nothing of the view.

use std::sync::atomic::{AtomicU64, Ordering};

/// Generations of the last change at or below each path, by a hash of the path, and a floor
/// below which everything counts as changed (a reload).
pub(crate) struct Stamps {
    slots: Box<[AtomicU64]>,
    pub(super) floor: AtomicU64,
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

    pub(super) fn slot(&self, path: &str) -> &AtomicU64 {
        // FNV-1a: short keys, no allocation; collisions only retire answers early.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in path.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let i = (h as usize) & (self.slots.len() - 1);
        &self.slots[i]
    }

    pub(super) fn changed_since(&self, path: &str, generation: u64) -> bool {
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
