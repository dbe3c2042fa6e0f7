//! What the upstream client counts: queries sent, failures and answer times per upstream, every
//! failure, and forwarded questions answered from the cache. Registered once in the metrics
//! [`Builder`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::{upstream_histogram, Builder, ToLabel};

/// The upstreams' figures.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    /// Queries sent to each upstream.
    pub requests: Family<ToLabel, Counter>,
    /// Failed exchanges with each upstream.
    pub failures: Family<ToLabel, Counter>,
    /// Time an upstream took to answer, seconds.
    pub duration: Family<ToLabel, Histogram, fn() -> Histogram>,
    /// Failed exchanges with any upstream (timeouts, refused connections, bad answers).
    pub all_failures: Counter,
    /// Forwarded queries answered from the cache.
    pub cache_hits: Counter,
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        UpstreamMetrics {
            requests: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(upstream_histogram),
            all_failures: Counter::default(),
            cache_hits: Counter::default(),
        }
    }
}

impl UpstreamMetrics {
    /// Registers every figure under its published name.
    pub fn register(&self, b: &mut Builder) {
        b.register(
            "forward_requests",
            "Queries sent to each upstream",
            self.requests.clone(),
        );
        b.register(
            "forward_failures",
            "Failed exchanges with each upstream",
            self.failures.clone(),
        );
        b.register(
            "forward_request_duration_seconds",
            "Time each upstream took to answer",
            self.duration.clone(),
        );
        b.register(
            "forward_cache_hits",
            "Forwarded queries answered from the cache",
            self.cache_hits.clone(),
        );
        b.register(
            "upstream_failures",
            "Failed exchanges with an upstream",
            self.all_failures.clone(),
        );
    }

    /// The label of an upstream.
    pub fn to(addr: std::net::SocketAddr) -> ToLabel {
        ToLabel {
            to: addr.to_string(),
        }
    }
}
