//! The harness every benchmark shares: a server under test (lodestar-dns, a baseline build of it,
//! or Knot) pinned to a CPU, its CPU time and memory read from /proc, dnsperf offering a fixed
//! rate, and the arithmetic of the tables (per query, median, percentiles, rounds).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::opts::Opts;
use crate::support;
use crate::support::Etcd;

/// `lodestar-dns` pinned to `cpu`, as its whole life (so that its runtime sizes itself to one CPU).
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Its log lines (JSON).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn lodestar(etcd: &Etcd, upstream: SocketAddr, cpu: &str) -> Server {
        Server::lodestar_threads(etcd, upstream, cpu, 1)
    }

    pub fn lodestar_threads(
        etcd: &Etcd,
        upstream: SocketAddr,
        cpu: &str,
        threads: usize,
    ) -> Server {
        let threads = threads.to_string();
        Server::binary(
            env!("CARGO_BIN_EXE_lodestar-dns"),
            &["--threads", &threads],
            etcd,
            upstream,
            cpu,
        )
    }

    /// Any lodestar-dns binary (a baseline to compare with), with `extra` flags.
    pub fn binary(
        bin: &str,
        extra: &[&str],
        etcd: &Etcd,
        upstream: SocketAddr,
        cpu: &str,
    ) -> Server {
        Server::binary_logging(bin, extra, etcd, upstream, cpu, "warn,lodestar_dns=info")
    }

    /// [`Server::binary`] with `RUST_LOG` set to `log`.
    pub fn binary_logging(
        bin: &str,
        extra: &[&str],
        etcd: &Etcd,
        upstream: SocketAddr,
        cpu: &str,
        log: &str,
    ) -> Server {
        Server::binary_at(bin, extra, &etcd.endpoint(), Some(upstream), cpu, log)
    }

    /// `bin` on `cpu` for webapp.dev from the etcd `endpoints` (comma-separated), forwarding to
    /// `upstream` when given, `RUST_LOG` set to `log`.
    pub fn binary_at(
        bin: &str,
        extra: &[&str],
        endpoints: &str,
        upstream: Option<SocketAddr>,
        cpu: &str,
        log: &str,
    ) -> Server {
        let mut args: Vec<String> = ["-c", cpu, bin].iter().map(|s| s.to_string()).collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(
            [
                "--listen",
                "127.0.0.1:0",
                "--domain",
                "webapp.dev",
                "--etcd",
                endpoints,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        if let Some(up) = upstream {
            args.extend(["--upstream".to_string(), up.to_string()]);
        }
        let (child, logs, rx) = support::spawn_logged("taskset", &args, &[("RUST_LOG", log)]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("lodestar-dns started");
            if let Some(addr) = v
                .get("udp")
                .and_then(|a| a.as_str())
                .and_then(|a| a.parse().ok())
            {
                return Server { child, addr, logs };
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pins every thread of `pid` to `cpu`.
pub fn pin(pid: u32, cpu: &str) {
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(Stdio::null())
        .status();
}

pub fn pid_listening_udp(port: u16) -> Option<u32> {
    // Knot's pid: the process that owns the UDP socket on `port` (ss -H -u -l -p).
    let out = Command::new("ss")
        .args(["-H", "-u", "-l", "-n", "-p", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text
        .split("pid=")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?;
    pid.parse().ok()
}

/// (utime, stime) of a whole process, seconds.
pub fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let field =
        |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / clock_ticks();
    (field(11), field(12))
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// The most memory `pid` has had resident (VmHWM), in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM:")
}

fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub latency_ms: f64,
    /// utime + stime per answered query.
    pub cpu_us: f64,
    /// The utime part.
    pub user_us: f64,
    /// The client's own (dnsperf's) utime + stime per answered query: counted apart, never in
    /// the server's figure.
    pub client_us: f64,
}

/// CPU seconds (user + system) of this process's children that have been waited for: dnsperf's,
/// once its run is over.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Offers `qps` for `seconds` to `addr` from CPU 0, measuring `pid`'s CPU time.
pub fn offer(addr: SocketAddr, pid: u32, file: &Path, qps: u32, seconds: u32) -> Load {
    offer_with(addr, pid, file, qps, seconds, false)
}

/// [`offer`], with the DNSSEC OK bit on every query when `dnssec` (dnsperf -D).
pub fn offer_with(
    addr: SocketAddr,
    pid: u32,
    file: &Path,
    qps: u32,
    seconds: u32,
    dnssec: bool,
) -> Load {
    let before = cpu_seconds(pid);
    let client_before = children_cpu();
    let out = Command::new("taskset")
        .args([
            "-c",
            "0",
            "dnsperf",
            "-s",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
        ])
        .arg("-d")
        .arg(file)
        .args([
            "-Q",
            &qps.to_string(),
            "-l",
            &seconds.to_string(),
            "-c",
            "4",
            "-t",
            "2",
            "-q",
            "2000",
        ])
        .args(if dnssec { &["-D"][..] } else { &[][..] })
        .output()
        .expect("dnsperf runs (apt-get install dnsperf)");
    let after = cpu_seconds(pid);
    let client = children_cpu() - client_before;
    let text = String::from_utf8_lossy(&out.stdout);
    let num = |label: &str| -> u64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split(':').nth(1)?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let latency = text
        .lines()
        .find(|l| l.trim_start().starts_with("Average Latency"))
        .and_then(|l| {
            l.split(':')
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    let answered = num("Queries completed");
    Load {
        sent: num("Queries sent"),
        answered,
        lost: num("Queries lost"),
        latency_ms: latency * 1000.0,
        cpu_us: per_query(after.0 + after.1 - before.0 - before.1, answered),
        user_us: per_query(after.0 - before.0, answered),
        client_us: per_query(client, answered),
    }
}

pub fn per_query(seconds: f64, answered: u64) -> f64 {
    if answered > 0 {
        seconds * 1e6 / answered as f64
    } else {
        f64::NAN
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// One query file offered to every server in turn: a warm-up (caches filled, so that every
/// round measures the same thing), then `o.rounds` rounds alternating between the servers; each
/// server's loads. With `dnssec`, every query has DO.
pub fn rounds<'a>(
    servers: &[(&'a str, SocketAddr, u32)],
    file: &Path,
    o: &Opts,
    dnssec: bool,
) -> BTreeMap<&'a str, Vec<Load>> {
    for (_, addr, pid) in servers {
        offer_with(*addr, *pid, file, o.qps, 2, dnssec);
    }
    let mut runs: BTreeMap<&str, Vec<Load>> = BTreeMap::new();
    for _ in 0..o.rounds {
        for (label, addr, pid) in servers {
            runs.entry(label)
                .or_default()
                .push(offer_with(*addr, *pid, file, o.qps, o.seconds, dnssec));
        }
    }
    runs
}

/// A server's cells of a cost row (answered of sent, lost, median latency, median CPU per query
/// with its user part, the answers per CPU-second that makes, the client's own CPU per query),
/// and that median CPU per query.
pub fn row(loads: &[Load]) -> (String, f64) {
    let answered: u64 = loads.iter().map(|l| l.answered).sum();
    let lost: u64 = loads.iter().map(|l| l.lost).sum();
    let sent: u64 = loads.iter().map(|l| l.sent).sum();
    let lat = median(loads.iter().map(|l| l.latency_ms).collect());
    let cpu = median(loads.iter().map(|l| l.cpu_us).collect());
    let user = median(loads.iter().map(|l| l.user_us).collect());
    let client = median(loads.iter().map(|l| l.client_us).collect());
    (
        format!(
            "{answered} of {sent} | {lost} | {lat:.3} ms | {cpu:.2} µs ({user:.2} µs) | {:.0} | {client:.2} µs",
            1e6 / cpu
        ),
        cpu,
    )
}
