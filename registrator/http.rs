//! The registrator's HTTP endpoints on `--metrics`: `/metrics`, `/healthz` (the process answers;
//! the body says how Docker, etcd and the reconciler are) and `/readyz` (200 while both are
//! reachable and reconciling succeeds, else 503 with why). A top tier, beside `main`: it reads
//! the metrics and the readiness.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;

use crate::health::Readiness;
use crate::metrics::Metrics;

/// The routes, for [`lodestar::runtime::serve_http`].
pub fn routes(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> axum::Router {
    let (r1, r2, r3) = (readiness.clone(), readiness.clone(), readiness);
    axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                metrics.render(&[
                    ("docker_up", r3.docker.is_up()),
                    ("etcd_up", r3.etcd.is_up()),
                ])
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
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {body}"),
                    )
                }
            }),
        )
}
