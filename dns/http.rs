//! The HTTP side of the DNS server, on `--metrics`: `/metrics` (the exposition), `/healthz` (the
//! process answers), `/readyz` (200 while the view is loaded and follows a watch on an etcd
//! member with a leader) and `/explain` (`crate::explain`). A top tier, beside `main`: it reads
//! the metrics and the view.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use lodestar::View;

use crate::explain::Explainer;
use crate::metrics::Exposition;

#[derive(Clone)]
struct Http {
    metrics: Arc<Exposition>,
    view: Arc<View>,
}

/// The routes, for [`lodestar::runtime::serve_http`].
pub fn routes(metrics: Arc<Exposition>, view: Arc<View>, explainer: Explainer) -> axum::Router {
    let explain = axum::Router::new()
        .route("/explain", get(crate::explain::explain))
        .with_state(explainer);
    axum::Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Http { metrics, view })
        .merge(explain)
}

async fn render(State(h): State<Http>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.render(),
    )
}

async fn ready(State(h): State<Http>) -> impl IntoResponse {
    match h.view.load() {
        // Ready only while the snapshot follows etcd: a watch open on a member with a leader.
        // A stale view still answers from its last snapshot, but a load balancer or an
        // operator asking "is this right now?" hears no.
        Some(s) => {
            let fresh = h.view.freshness();
            let what = format!("revision {} with {} records", s.revision(), s.len());
            match (fresh.is_stale(), fresh.since_heard()) {
                (false, _) => (StatusCode::OK, format!("ready: {what}\n")),
                (true, Some(d)) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "not ready: stale: no watch on an etcd member with a leader; last heard {:.1} s ago; answering from {what}\n",
                        d.as_secs_f64()
                    ),
                ),
                (true, None) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: stale: no watch on an etcd member with a leader; answering from {what}\n"),
                ),
            }
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first snapshot is not loaded yet\n".to_string(),
        ),
    }
}

/// The figures other parts of the server hold, read at scrape time: the view's revision, size,
/// invalid and skipped values, staleness; the answer cache's entries and weight; signatures kept;
/// open TCP connections.
pub fn gauges(
    b: &mut crate::metrics::Builder,
    view: &Arc<View>,
    handler: &Arc<crate::pipeline::Handler>,
    conns: &Arc<crate::net::tcp::Connections>,
) {
    let v = view.clone();
    b.gauge(
        "view_revision",
        "etcd revision of the snapshot answering queries",
        move || v.load().map_or(0, |s| s.revision()),
    );
    let v = view.clone();
    b.gauge(
        "view_records",
        "Records in the snapshot answering queries",
        move || v.load().map_or(0, |s| s.len() as i64),
    );
    let v = view.clone();
    b.gauge(
        "view_changes",
        "Paths changed since the view was loaded or compacted, held apart until merged into it",
        move || v.load().map_or(0, |s| s.changes() as i64),
    );
    let v = view.clone();
    b.gauge(
        "view_invalid_keys",
        "Keys whose current value does not parse",
        move || v.load().map_or(0, |s| s.invalid_now() as i64),
    );
    let v = view.clone();
    b.gauge(
        "view_loaded",
        "1 once the first snapshot is loaded",
        move || i64::from(v.load().is_some()),
    );
    let v = view.clone();
    b.gauge(
        "view_stale",
        "1 while no watch is open on an etcd member with a leader (answers come from the last snapshot)",
        move || i64::from(v.freshness().is_stale()),
    );
    let v = view.clone();
    b.gauge_f64(
        "view_progress_age_seconds",
        "Seconds since the last watch event or progress notification from etcd (NaN before the first)",
        move || v.freshness().since_heard().map_or(f64::NAN, |d| d.as_secs_f64()),
    );
    let v = view.clone();
    b.counter(
        "view_skipped_values",
        "Values skipped because they did not parse",
        move || v.load().map_or(0, |s| s.skipped_total()),
    );
    let h = handler.clone();
    b.gauge(
        "answer_cache_entries",
        "Answers held in the answer cache",
        move || h.cached_answers() as i64,
    );
    let h = handler.clone();
    b.gauge(
        "answer_cache_bytes",
        "What the answers in the answer cache weigh (records and encoded rotations), bytes",
        move || h.cached_answer_bytes() as i64,
    );
    let h = handler.clone();
    b.gauge(
        "dnssec_signatures_cached",
        "RRset signatures held for reuse (0 without --dnssec-key)",
        move || h.cached_signatures() as i64,
    );
    let c = conns.clone();
    b.gauge("tcp_connections", "Open TCP connections", move || {
        c.len() as i64
    });
}
