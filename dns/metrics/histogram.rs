//! [`Log2Histogram`]: the histograms counted on every answer (answer time, message sizes),
//! kept with two relaxed atomic additions and no lock. prometheus-client's own `Histogram` takes
//! a lock and searches its buckets on every observation, which cost more than the rest of a
//! cached answer's accounting together (`make bench-instr`); its exposition is kept: this type
//! encodes as an ordinary OpenMetrics histogram.
//!
//! A leaf: it imports only prometheus-client's encoding.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A histogram of whole numbers (nanoseconds, bytes) with the bucket bounds `first * 2^i` for
/// `i` in `0..bounds`, and +Inf; exported divided by `unit` (nanoseconds as seconds: 1e9).
#[derive(Debug, Clone)]
pub struct Log2Histogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    first: u64,
    unit: f64,
    /// One per bound, then +Inf; not cumulative.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Log2Histogram {
    /// Bounds `first`, `2 first`, ... (`bounds` of them; `first` at least 1).
    pub fn new(first: u64, bounds: usize, unit: f64) -> Log2Histogram {
        Log2Histogram {
            inner: Arc::new(Inner {
                first: first.max(1),
                unit,
                buckets: (0..=bounds).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one value.
    pub fn observe(&self, value: u64) {
        let i = bucket(self.inner.first, value).min(self.inner.buckets.len() - 1);
        self.inner.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.inner.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// (upper bound, count) of each bucket, not cumulative, as exported; the sum; the count.
    fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let n = self.inner.buckets.len();
        let mut count = 0;
        let buckets = self
            .inner
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let c = b.load(Ordering::Relaxed);
                count += c;
                let bound = if i + 1 == n {
                    f64::INFINITY
                } else {
                    (self.inner.first << i) as f64 / self.inner.unit
                };
                (bound, c)
            })
            .collect();
        let sum = self.inner.sum.load(Ordering::Relaxed) as f64 / self.inner.unit;
        (buckets, sum, count)
    }
}

/// The bucket of `value`: the smallest `i` with `value <= first * 2^i`.
fn bucket(first: u64, value: u64) -> usize {
    if value <= first {
        0
    } else {
        (u64::BITS - ((value - 1) / first).leading_zeros()) as usize
    }
}

impl TypedMetric for Log2Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Log2Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (buckets, sum, count) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_the_smallest_bucket_that_holds_them() {
        for (value, want) in [(0, 0), (10, 0), (11, 1), (20, 1), (21, 2), (40, 2), (41, 3)] {
            assert_eq!(bucket(10, value), want, "{value}");
        }
        assert_eq!(bucket(1, u64::MAX), 64);
    }

    #[test]
    fn exported_as_an_openmetrics_histogram() {
        let h = Log2Histogram::new(10_000, 3, 1e9);
        for ns in [5_000, 15_000, 15_000, 1_000_000_000] {
            h.observe(ns);
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("t", "test", h);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        for line in [
            "t_sum 1.000035",
            "t_count 4",
            "t_bucket{le=\"0.00001\"} 1",
            "t_bucket{le=\"0.00002\"} 3",
            "t_bucket{le=\"0.00004\"} 3",
            "t_bucket{le=\"+Inf\"} 4",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
    }
}
