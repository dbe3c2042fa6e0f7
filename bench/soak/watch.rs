//! Resources of every process the soak runs, sampled every 10 s: from `/proc`, resident memory
//! (and its anonymous part), open file descriptors, threads; from each etcd member's `/metrics`,
//! its goroutines, watchers, watch streams, keys, Go heap in use and database size. A process the
//! harness restarted is a new series. After a settling time (5 minutes from the start of the
//! soak, or of the process when it started later) none may grow by more than 10%: the median of
//! its last three samples against the median of the three samples after settling. A count must
//! also have grown by more than a slack: 2 for fds and threads (a tenth of etcd's 9 threads is
//! less than one, and a member gains a connection when a client moves to it after a fault), two
//! client connections' worth of an etcd member's goroutines. A leak grows on and passes both.
//! Ours, Knot and the Docker engines are judged by RSS, fds and threads; etcd's members by what a
//! client can leave behind in them ([`ETCD`]; their RSS is reported, not judged). A process that
//! did not live settling + 5 minutes is not judged. Every round rewrites the samples file, so a
//! run can be followed.
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
    /// Anonymous resident memory (the heap, the stacks): RSS without the files mapped, such as
    /// the binary or etcd's database.
    anon_kb: f64,
    fds: f64,
    threads: f64,
    /// etcd's own account of itself (NaN for the others, or when its `/metrics` did not answer).
    etcd: EtcdSample,
}

/// What an etcd member's `/metrics` says of the things a client can leave behind in it.
#[derive(Clone, Copy, Debug)]
struct EtcdSample {
    goroutines: f64,
    watchers: f64,
    watch_streams: f64,
    keys: f64,
    heap_kb: f64,
    db_kb: f64,
}

impl EtcdSample {
    const NONE: EtcdSample = EtcdSample {
        goroutines: f64::NAN,
        watchers: f64::NAN,
        watch_streams: f64::NAN,
        keys: f64::NAN,
        heap_kb: f64::NAN,
        db_kb: f64::NAN,
    };

    fn parse(text: &str) -> EtcdSample {
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        EtcdSample {
            goroutines: get("go_goroutines"),
            watchers: get("etcd_debugging_mvcc_watcher_total"),
            watch_streams: get("etcd_debugging_mvcc_watch_stream_total"),
            keys: get("etcd_debugging_mvcc_keys_total"),
            heap_kb: get("go_memstats_heap_inuse_bytes") / 1024.0,
            db_kb: get("etcd_debugging_mvcc_db_total_size_in_bytes") / 1024.0,
        }
    }
}

/// Every series: (role, pid) -> samples.
#[derive(Default)]
pub struct Samples(BTreeMap<(String, u32), Vec<Sample>>);

/// `GET /metrics` of `url` (`http://ip:port`) within a second: a paused or dead member is
/// simply not sampled.
async fn metrics(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url
        .strip_prefix("http://")?
        .trim_end_matches('/')
        .to_string();
    let get = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.ok()?;
        Some(buf)
    };
    tokio::time::timeout(Duration::from_secs(1), get)
        .await
        .ok()
        .flatten()
}

fn status_field(status: &str, field: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn sample(pid: u32, url: Option<&str>, at: f64) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64;
    let etcd = match url {
        Some(u) => metrics(u)
            .await
            .map_or(EtcdSample::NONE, |t| EtcdSample::parse(&t)),
        None => EtcdSample::NONE,
    };
    Some(Sample {
        at,
        rss_kb: status_field(&status, "VmRSS:")?,
        anon_kb: status_field(&status, "RssAnon:")?,
        fds,
        threads: status_field(&status, "Threads:")?,
        etcd,
    })
}

/// Samples the processes in `procs` every [`EVERY`] until the book says stop, writing them all
/// to `csv` after each round.
pub async fn watch(
    procs: Arc<Mutex<Vec<super::hosts::Proc>>>,
    book: Arc<Book>,
    csv: std::path::PathBuf,
) -> Samples {
    let mut all = Samples::default();
    while !book.stopping() {
        let now = procs.lock().expect("procs").clone();
        let at = book.secs();
        for (role, pid, url) in now {
            if let Some(s) = sample(pid, url.as_deref(), at).await {
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

/// The median of what `f` says of the samples that say it; `None` when none does.
fn median3(s: &[Sample], f: fn(&Sample) -> f64) -> Option<f64> {
    let mut v: Vec<f64> = s.iter().map(f).filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// What is judged of the processes that are ours, Knot's and Docker's: memory and counts.
const OURS: &[(Metric, f64)] = &[
    (("RSS kB", |x| x.rss_kb), 0.0),
    (("fds", |x| x.fds), COUNT_SLACK),
    (("threads", |x| x.threads), COUNT_SLACK),
];

/// What is judged of an etcd member: what a client can leave behind in it (goroutines, watchers,
/// watch streams, keys) and its fds and threads. Its goroutines and fds go up and down by a
/// client connection's worth as clients move between members after faults: the slack is two
/// connections'. Its RSS and Go heap are sampled and reported but not judged: etcd 3.4 alone,
/// with no Lodestar process and no fault, grows past the bound for ten minutes after its start
/// (its raft log and index fill; the Go runtime keeps the heap's peaks), and the soak SIGKILLs
/// each member every 18 minutes (bench/RESULTS.md, "Issue 19").
const ETCD: &[(Metric, f64)] = &[
    (("fds", |x| x.fds), 2.0 * CONNECTION_FDS),
    (("threads", |x| x.threads), COUNT_SLACK),
    (
        ("goroutines", |x| x.etcd.goroutines),
        2.0 * CONNECTION_GOROUTINES,
    ),
    (("watchers", |x| x.etcd.watchers), COUNT_SLACK),
    (("watch streams", |x| x.etcd.watch_streams), COUNT_SLACK),
    (("keys", |x| x.etcd.keys), 0.0),
];

/// What one client connection adds to an etcd member: a socket, and gRPC's goroutines for the
/// connection and its streams (a watch, a keep-alive).
const CONNECTION_FDS: f64 = 1.0;
const CONNECTION_GOROUTINES: f64 = 10.0;

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
            let etcd = role.starts_with("etcd@");
            let metrics: &[(Metric, f64)] = if etcd { ETCD } else { OURS };
            for &((what, f), slack) in metrics {
                let (Some(a), Some(z)) = (median3(base, f), median3(end, f)) else {
                    continue;
                };
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

    /// Every sample, one line each: role, pid, seconds, RSS kB, anonymous RSS kB, fds, threads,
    /// and for etcd's members goroutines, watchers, watch streams, keys, Go heap in use kB,
    /// database kB.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "role,pid,s,rss_kb,anon_kb,fds,threads,goroutines,watchers,watch_streams,keys,heap_kb,db_kb\n",
        );
        for ((role, pid), s) in &self.0 {
            for x in s {
                let e = &x.etcd;
                let v: Vec<String> = [
                    x.at,
                    x.rss_kb,
                    x.anon_kb,
                    x.fds,
                    x.threads,
                    e.goroutines,
                    e.watchers,
                    e.watch_streams,
                    e.keys,
                    e.heap_kb,
                    e.db_kb,
                ]
                .iter()
                .map(|v| {
                    if v.is_nan() {
                        String::new()
                    } else {
                        format!("{v:.0}")
                    }
                })
                .collect();
                out.push_str(&format!("{role},{pid},{}\n", v.join(",")));
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
