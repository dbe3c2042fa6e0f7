//! The soak's ledger, shared by every task: counts of queries and of what went wrong, the
//! convergence times, the fault active now (so that every failure says which fault it happened
//! under), and which servers are down on purpose (a restart the harness made).
//!
//! Also the dice every task draws from. A leaf: imports only the standard library.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures kept word for word (the count goes on past it).
const KEEP: usize = 40;

#[derive(Default)]
pub struct Counts {
    pub queries: AtomicU64,
    pub wrong: AtomicU64,
    pub lost: AtomicU64,
    /// Unanswered while the harness had that server stopped (a restart in progress).
    pub restarting: AtomicU64,
}

pub struct Book {
    pub start: Instant,
    pub counts: Counts,
    fault: Mutex<(String, Option<Instant>)>,
    failures: Mutex<Vec<String>>,
    pub failed: AtomicU64,
    /// write -> answer, milliseconds, one per server per change.
    pub converge: Mutex<Vec<f64>>,
    /// keep-alives stopped -> every record of the lease gone at every server, milliseconds.
    pub expire: Mutex<Vec<f64>>,
    /// When the harness last stopped server `i` and when it answered again (ms since the start;
    /// `u64::MAX`: not yet).
    down: [(AtomicU64, AtomicU64); 3],
    pub stop: AtomicBool,
    faults: AtomicU64,
}

impl Book {
    pub fn new() -> Book {
        Book {
            start: Instant::now(),
            counts: Counts::default(),
            fault: Mutex::new(("none yet".into(), None)),
            failures: Mutex::new(Vec::new()),
            failed: AtomicU64::new(0),
            converge: Mutex::new(Vec::new()),
            expire: Mutex::new(Vec::new()),
            down: std::array::from_fn(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0))),
            stop: AtomicBool::new(false),
            faults: AtomicU64::new(0),
        }
    }

    pub fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The harness stops server `i` (a restart begins).
    pub fn down_begin(&self, i: usize) {
        self.down[i].1.store(u64::MAX, Ordering::SeqCst);
        self.down[i].0.store(self.ms(), Ordering::SeqCst);
    }

    /// Server `i` answers again.
    pub fn down_end(&self, i: usize) {
        self.down[i].1.store(self.ms(), Ordering::SeqCst);
    }

    /// Whether the harness had server `i` stopped at some time between `from` and now (ms).
    pub fn was_down(&self, i: usize, from: u64) -> bool {
        let (since, until) = (
            self.down[i].0.load(Ordering::SeqCst),
            self.down[i].1.load(Ordering::SeqCst),
        );
        since <= self.ms() && until >= from
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A fault begins.
    pub fn fault_on(&self, what: &str) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        eprintln!("{:>7.1}s fault: {what}", self.secs());
        *self.fault.lock().expect("fault") = (what.to_string(), None);
    }

    /// The fault is undone (what failed after it still names it, with the time since).
    pub fn fault_off(&self) {
        let mut f = self.fault.lock().expect("fault");
        eprintln!("{:>7.1}s undone: {}", self.secs(), f.0);
        f.1 = Some(Instant::now());
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    fn fault_label(&self) -> String {
        let f = self.fault.lock().expect("fault");
        match f.1 {
            None => format!("during {}", f.0),
            Some(t) => format!("{:.1} s after {}", t.elapsed().as_secs_f64(), f.0),
        }
    }

    /// Something went wrong: counted, and kept with the time and the fault.
    pub fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let line = format!("{:>7.1}s [{}] {what}", self.secs(), self.fault_label());
        let mut f = self.failures.lock().expect("failures");
        if f.len() < KEEP {
            eprintln!("FAIL {line}");
            f.push(line);
        }
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("failures").clone()
    }

    pub fn add(&self, to: &Mutex<Vec<f64>>, d: Duration) {
        to.lock().expect("times").push(d.as_secs_f64() * 1000.0);
    }
}

/// The soak's dice: xorshift64*, seeded per task (no crate for a few random picks).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}
