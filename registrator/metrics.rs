//! The registrator's counters and gauges, and their exposition. A leaf: the tiers that count
//! (docker, reconcile) use it; it uses nothing of the registrator. `/metrics` is served by `http`.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters of the registrator.
#[derive(Debug)]
pub struct Metrics {
    /// Containers the engine reports (running, paused, or stopped but kept).
    pub containers: Gauge,
    /// Services this host should have registered.
    pub services: Gauge,
    /// Failed etcd operations.
    pub etcd_errors: Counter,
    /// Failed Docker connections or requests.
    pub docker_errors: Counter,
    /// Reconcile runs.
    pub reconciles: Counter,
    /// Records written or deleted by reconciling.
    pub corrections: Counter,
    /// Names this host wants that another host's live lease holds.
    pub conflicts: Gauge,
    registry: Registry,
    plain: Registry,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("lodestar_registrator");
        let m = Metrics {
            containers: Gauge::default(),
            services: Gauge::default(),
            etcd_errors: Counter::default(),
            docker_errors: Counter::default(),
            reconciles: Counter::default(),
            corrections: Counter::default(),
            conflicts: Gauge::default(),
            registry: Registry::default(),
            plain: lodestar::process::registry(),
        };
        registry.register(
            "containers",
            "Containers seen on this host",
            m.containers.clone(),
        );
        registry.register(
            "services",
            "Services this host registers",
            m.services.clone(),
        );
        registry.register(
            "etcd_errors",
            "Failed etcd operations",
            m.etcd_errors.clone(),
        );
        registry.register(
            "docker_errors",
            "Failed Docker connections or requests",
            m.docker_errors.clone(),
        );
        registry.register("reconciles", "Reconcile runs", m.reconciles.clone());
        registry.register(
            "corrections",
            "Records written or deleted by reconciling",
            m.corrections.clone(),
        );
        registry.register(
            "conflicts",
            "Names this host wants that another host's live lease holds",
            m.conflicts.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// The OpenMetrics text, with `extra` gauges (name, value) read by the caller.
    pub fn render(&self, extra: &[(&str, bool)]) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.plain);
        // The probe's view, as gauges (1: reachable).
        for (name, up) in extra {
            out.push_str(&format!(
                "# TYPE lodestar_registrator_{name} gauge\nlodestar_registrator_{name} {}\n",
                u8::from(*up)
            ));
        }
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}
