//! Prometheus metrics and `/healthz` of the registrator.

use std::sync::Arc;

use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    registry: Registry,
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
            registry: Registry::default(),
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
        Arc::new(Metrics { registry, ..m })
    }

    fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` and `/healthz` until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    token: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
}
