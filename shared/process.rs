//! What every binary exposes about itself: `lodestar_build_info{version}` and the process's CPU
//! time, resident memory, open files and start time under the names every Prometheus client
//! library uses (`process_*`), read from `/proc/self` at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// A registry (no prefix) holding `lodestar_build_info` and the process collector.
pub fn registry() -> Registry {
    let mut plain = Registry::default();
    let build = Family::<VersionLabel, Gauge>::default();
    build
        .get_or_create(&VersionLabel {
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
        .set(1);
    plain.register("lodestar_build_info", "The running version", build);
    plain.register_collector(Box::new(ProcessCollector));
    plain
}

/// The `version` label of `lodestar_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// The process's CPU time, resident memory, open files and start time, read from `/proc/self` at
/// scrape time, under the names every Prometheus client library uses.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = process_figures() else {
            return Ok(());
        };
        let c = ConstCounter::new(p.cpu_seconds);
        c.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, seconds",
            None,
            c.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory, bytes",
                p.rss_bytes,
            ),
            ("process_open_fds", "Open file descriptors", p.open_fds),
            (
                "process_start_time_seconds",
                "Start time since the Unix epoch, seconds",
                p.start_time,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessFigures {
    cpu_seconds: f64,
    rss_bytes: f64,
    open_fds: f64,
    start_time: f64,
}

fn process_figures() -> Option<ProcessFigures> {
    // SAFETY: sysconf only reads configuration values.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After ')': state is field 3; utime 14, stime 15, starttime 22, rss 24 (1-based, proc(5)).
    let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    Some(ProcessFigures {
        cpu_seconds: (num(14)? + num(15)?) / ticks,
        rss_bytes: num(24)? * page,
        open_fds,
        start_time: now - uptime + num(22)? / ticks,
    })
}
