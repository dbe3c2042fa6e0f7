//! Prometheus metrics, `/healthz` and `/readyz` of the registrator.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;

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
        Arc::new(Metrics { registry, ..m })
    }

    fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.plain);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// Serves `/metrics`, `/healthz` (the process answers; the body says how Docker, etcd and the
/// reconciler are) and `/readyz` (200 while both are reachable and reconciling succeeds, else
/// 503 with why) until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    token: CancellationToken,
) -> std::io::Result<()> {
    let (r1, r2, r3) = (readiness.clone(), readiness.clone(), readiness);
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                let mut out = metrics.render();
                // The probe's view, as gauges (1: reachable).
                for (name, up) in [("docker_up", r3.docker.is_up()), ("etcd_up", r3.etcd.is_up())] {
                    out = out.replace(
                        "# EOF\n",
                        &format!("# TYPE lodestar_registrator_{name} gauge\nlodestar_registrator_{name} {}\n# EOF\n", u8::from(up)),
                    );
                }
                out
            }),
        )
        .route(
            "/healthz",
            get(move || async move { format!("alive; {}\n", r1.describe()) }),
        )
        .route(
            "/readyz",
            get(move || async move {
                let body = format!("{}\n", r2.describe());
                if r2.ready() {
                    (StatusCode::OK, format!("ready: {body}"))
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {body}"))
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
}
