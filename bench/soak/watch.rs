//! Resources of every process the soak runs, sampled every 10 s from `/proc`: resident memory,
//! open file descriptors, threads. A process the harness restarted is a new series. After a
//! settling time (5 minutes from the start of the soak, or of the process when it started later)
//! none may grow by more than 10%: the median of its last three samples against the median of the
//! three samples after settling. A count (fds, threads) must also have grown by more than 2: a
//! tenth of etcd's 9 threads is less than one, and a member gains a connection when a client moves
//! to it after a fault; a leak grows on and passes both. A process that did not live settling + 5
//! minutes is not judged. Every round rewrites the samples file, so a run can be followed.
//!
//! Imports: `book` only; the pids come from the fault loop through a shared list.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::book::Book;

pub const EVERY: Duration = Duration::from_secs(10);
/// The bound on growth after settling.
const GROWTH: f64 = 0.10;
/// What a count must also have grown by.
const COUNT_SLACK: f64 = 2.0;

/// One measure of a sample, named.
type Metric = (&'static str, fn(&Sample) -> f64);

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: f64,
    rss_kb: f64,
    fds: f64,
    threads: f64,
}

/// Every series: (role, pid) -> samples.
#[derive(Default)]
pub struct Samples(BTreeMap<(String, u32), Vec<Sample>>);

fn status_field(status: &str, field: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn sample(pid: u32, at: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64;
    Some(Sample {
        at,
        rss_kb: status_field(&status, "VmRSS:")?,
        fds,
        threads: status_field(&status, "Threads:")?,
    })
}

/// Samples the processes in `procs` every [`EVERY`] until the book says stop, writing them all
/// to `csv` after each round.
pub async fn watch(
    procs: Arc<Mutex<Vec<(String, u32)>>>,
    book: Arc<Book>,
    csv: std::path::PathBuf,
) -> Samples {
    let mut all = Samples::default();
    while !book.stopping() {
        let now = procs.lock().expect("procs").clone();
        let at = book.secs();
        for (role, pid) in now {
            if let Some(s) = sample(pid, at) {
                all.0.entry((role, pid)).or_default().push(s);
            }
        }
        let _ = std::fs::write(&csv, all.csv());
        let until = book.secs() + EVERY.as_secs_f64();
        while book.secs() < until && !book.stopping() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    all
}

fn median3(s: &[Sample], f: fn(&Sample) -> f64) -> f64 {
    let mut v: Vec<f64> = s.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Samples {
    /// Every series that grew past the bound, said in words; and how many were judged.
    pub fn leaks(&self, settle: f64) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        let mut judged = 0;
        for ((role, pid), s) in &self.0 {
            let Some(first) = s.first() else { continue };
            let from = settle.max(first.at + settle);
            let Some(b) = s.iter().position(|x| x.at >= from) else {
                continue;
            };
            let last = s[s.len() - 1].at;
            if last - s[b].at < settle || s.len() < b + 6 {
                continue;
            }
            judged += 1;
            let base = &s[b..b + 3];
            let end = &s[s.len() - 3..];
            let metrics: [(Metric, f64); 3] = [
                (("RSS kB", |x| x.rss_kb), 0.0),
                (("fds", |x| x.fds), COUNT_SLACK),
                (("threads", |x| x.threads), COUNT_SLACK),
            ];
            for ((what, f), slack) in metrics {
                let (a, z) = (median3(base, f), median3(end, f));
                if z > a * (1.0 + GROWTH) && z > a + slack {
                    out.push(format!(
                        "{role} (pid {pid}): {what} {a:.0} at {:.0} s -> {z:.0} at {last:.0} s (+{:.0}%)",
                        s[b].at,
                        (z / a - 1.0) * 100.0
                    ));
                }
            }
        }
        (out, judged)
    }

    /// Every sample, one line each: role, pid, seconds, RSS kB, fds, threads.
    pub fn csv(&self) -> String {
        let mut out = String::from("role,pid,s,rss_kb,fds,threads\n");
        for ((role, pid), s) in &self.0 {
            for x in s {
                out.push_str(&format!(
                    "{role},{pid},{:.0},{:.0},{:.0},{:.0}\n",
                    x.at, x.rss_kb, x.fds, x.threads
                ));
            }
        }
        out
    }

    /// Resident memory per role, MB: the first sample of its first process, the last of its last.
    pub fn rss_by_role(&self) -> BTreeMap<String, (f64, f64)> {
        let mut out: BTreeMap<String, (f64, f64, f64, f64)> = BTreeMap::new();
        for ((role, _), s) in &self.0 {
            let (Some(a), Some(z)) = (s.first(), s.last()) else {
                continue;
            };
            let e = out
                .entry(role.clone())
                .or_insert((f64::MAX, 0.0, f64::MIN, 0.0));
            if a.at < e.0 {
                (e.0, e.1) = (a.at, a.rss_kb / 1024.0);
            }
            if z.at > e.2 {
                (e.2, e.3) = (z.at, z.rss_kb / 1024.0);
            }
        }
        out.into_iter().map(|(k, v)| (k, (v.1, v.3))).collect()
    }
}
