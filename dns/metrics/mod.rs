//! The metrics exposition of the DNS server: a leaf that every tier may use and that uses none.
//!
//! Counters live in the tier that counts them (the pipeline's [`crate::pipeline::Counters`], the
//! upstreams' [`crate::upstream::UpstreamMetrics`]), each registering itself in a [`Builder`];
//! figures that belong to another part of the server (the view's revision, the answer cache's
//! size, open TCP connections) are gauges read at scrape time through closures that `main`
//! registers, so nothing here knows the handler, the view or the sockets. [`Exposition::render`]
//! writes the text `http` serves. The names are the ones CoreDNS dashboards expect.

mod histogram;

pub use histogram::Log2Histogram;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

/// Labels of the query counter (the names CoreDNS dashboards use).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// Question type (`A`, `SRV`, ...).
    #[prometheus(flatten)]
    pub r#type: TypeLabel,
    /// Response code (`NOERROR`, `NXDOMAIN`, ...).
    pub rcode: String,
    /// `udp` or `tcp`.
    pub proto: String,
    /// The served domain or static zone the name is in; `.` for any other name.
    pub zone: String,
}

/// The `type` label (a Rust keyword as a field name needs a wrapper).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// Question type.
    pub r#type: String,
}

/// The `proto` label of the size histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtoLabel {
    /// `udp` or `tcp`.
    pub proto: String,
}

/// The `to` label of the per-upstream metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToLabel {
    /// The upstream, `IP:PORT`.
    pub to: String,
}

/// Latency buckets: 250 us .. 8 s.
pub fn upstream_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Size buckets: 16 bytes .. 64 KiB.
pub fn size_histogram() -> Log2Histogram {
    Log2Histogram::new(16, 13, 1.0)
}

/// Answer time buckets, counted in nanoseconds: 10 us .. 5 s.
pub fn latency_histogram() -> Log2Histogram {
    Log2Histogram::new(10_000, 20, 1e9)
}

/// How a figure read at scrape time is read.
enum Read {
    Int(Box<dyn Fn() -> i64 + Send + Sync>),
    Float(Box<dyn Fn() -> f64 + Send + Sync>),
    Count(Box<dyn Fn() -> u64 + Send + Sync>),
}

/// A figure read at scrape time.
struct Reading {
    name: &'static str,
    help: &'static str,
    read: Read,
}

/// Where the tiers register their metrics at start.
pub struct Builder {
    registry: Registry,
    readings: Vec<Reading>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            registry: Registry::with_prefix("lodestar_dns"),
            readings: Vec::new(),
        }
    }
}

impl Builder {
    /// Registers a metric as `lodestar_dns_<name>`.
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// A gauge `lodestar_dns_<name>` whose value `read` gives at scrape time.
    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        self.readings.push(Reading {
            name,
            help,
            read: Read::Int(Box::new(read)),
        });
    }

    /// [`Builder::gauge`] of a value that is not a whole number (seconds, say).
    pub fn gauge_f64(
        &mut self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.readings.push(Reading {
            name,
            help,
            read: Read::Float(Box::new(read)),
        });
    }

    /// A counter `lodestar_dns_<name>_total` kept elsewhere, read at scrape time.
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.readings.push(Reading {
            name,
            help,
            read: Read::Count(Box::new(read)),
        });
    }

    /// The exposition, with the process's own metrics beside ours.
    pub fn build(mut self) -> Exposition {
        self.registry
            .register_collector(Box::new(Readings(self.readings)));
        Exposition {
            registry: self.registry,
            plain: lodestar::process::registry(),
        }
    }
}

/// The figures read at scrape time, as a collector.
struct Readings(Vec<Reading>);

impl std::fmt::Debug for Readings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Readings({})", self.0.len())
    }
}

impl Collector for Readings {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for r in &self.0 {
            match &r.read {
                Read::Int(read) => {
                    let g = ConstGauge::new(read());
                    g.encode(encoder.encode_descriptor(r.name, r.help, None, g.metric_type())?)?;
                }
                Read::Float(read) => {
                    let g = ConstGauge::new(read());
                    g.encode(encoder.encode_descriptor(r.name, r.help, None, g.metric_type())?)?;
                }
                Read::Count(read) => {
                    let c = ConstCounter::new(read());
                    c.encode(encoder.encode_descriptor(r.name, r.help, None, c.metric_type())?)?;
                }
            }
        }
        Ok(())
    }
}

/// Every metric of the server, ready to render.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
    /// `lodestar_build_info` and the standard `process_*`, outside our prefix.
    plain: Registry,
}

impl Exposition {
    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.plain);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}
