//! Prometheus metrics and the health endpoints of the DNS server.
//!
//! The handler and the forwarder count into [`Metrics`]; the view's figures (revision, records,
//! skipped values) are read from the current snapshot at scrape time, so the watcher does no
//! metrics work. [`serve`] exposes `/metrics`, `/healthz` and `/readyz` (ready while the
//! snapshot is loaded and follows a watch on an etcd member with a leader) on `--metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use lodestar::View;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;
use crate::tcp::Connections;

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

/// Per-upstream forwarding figures, shared with the forwarder.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    /// Queries sent to each upstream.
    pub requests: Family<ToLabel, Counter>,
    /// Failed exchanges with each upstream.
    pub failures: Family<ToLabel, Counter>,
    /// Time an upstream took to answer, seconds.
    pub duration: Family<ToLabel, Histogram, fn() -> Histogram>,
}

fn upstream_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

fn size_histogram() -> Histogram {
    // 16 bytes .. 64 KiB.
    Histogram::new(exponential_buckets(16.0, 2.0, 13))
}

/// Counters of the DNS server.
#[derive(Debug)]
pub struct Metrics {
    /// Queries answered, by type and rcode.
    pub queries: Family<QueryLabels, Counter>,
    /// Time from receiving a query to having its answer, seconds.
    pub latency: Histogram,
    /// Queries forwarded upstream (cache misses included, cache hits too).
    pub forwarded: Counter,
    /// Forwarded queries answered from the cache.
    pub forward_cache_hits: Counter,
    /// Failed exchanges with an upstream (timeouts, refused connections, bad answers).
    pub upstream_failures: Counter,
    /// Packets dropped as malformed or answered FORMERR.
    pub malformed: Counter,
    /// Queries refused or failed at once because a work limit was reached.
    pub shed: Counter,
    /// Questions that came back carrying this server's own forwarding mark (a loop).
    pub forward_loops: Counter,
    /// Answers too costly for a receive loop's budget, built by a worker (large names, signed
    /// answers not cached yet).
    pub large: Counter,
    /// Queries answered from the answer cache.
    pub cache_hits: Counter,
    /// Plain queries whose answer was not in the cache (or no longer good).
    pub cache_misses: Counter,
    /// Request sizes by transport, bytes.
    pub request_size: Family<ProtoLabel, Histogram, fn() -> Histogram>,
    /// Response sizes by transport, bytes.
    pub response_size: Family<ProtoLabel, Histogram, fn() -> Histogram>,
    /// (request, response) histograms for udp and tcp, taken from the families once.
    size_histograms: [(Histogram, Histogram); 2],
    /// Per-upstream figures.
    pub upstreams: UpstreamMetrics,
    live: std::sync::OnceLock<Live>,
    registry: Registry,
    plain: Registry,
}

impl Metrics {
    /// Creates the metrics, with the view's figures read from `view` at scrape time.
    pub fn new(view: Arc<View>) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("lodestar_dns");
        let request_size: Family<ProtoLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(size_histogram);
        let response_size: Family<ProtoLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(size_histogram);
        let sizes = |proto: &str| {
            let label = ProtoLabel {
                proto: proto.to_string(),
            };
            (
                request_size.get_or_create(&label).clone(),
                response_size.get_or_create(&label).clone(),
            )
        };
        let size_histograms = [sizes("udp"), sizes("tcp")];
        let m = Metrics {
            queries: Family::default(),
            latency: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            forwarded: Counter::default(),
            forward_cache_hits: Counter::default(),
            upstream_failures: Counter::default(),
            malformed: Counter::default(),
            shed: Counter::default(),
            forward_loops: Counter::default(),
            large: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            request_size,
            response_size,
            size_histograms,
            upstreams: UpstreamMetrics {
                requests: Family::default(),
                failures: Family::default(),
                duration: Family::new_with_constructor(upstream_histogram),
            },
            live: std::sync::OnceLock::new(),
            registry: Registry::default(),
            plain: Registry::default(),
        };
        registry.register(
            "request_size_bytes",
            "Size of the queries received, by transport",
            m.request_size.clone(),
        );
        registry.register(
            "response_size_bytes",
            "Size of the answers sent, by transport",
            m.response_size.clone(),
        );
        registry.register(
            "forward_requests",
            "Queries sent to each upstream",
            m.upstreams.requests.clone(),
        );
        registry.register(
            "forward_failures",
            "Failed exchanges with each upstream",
            m.upstreams.failures.clone(),
        );
        registry.register(
            "forward_request_duration_seconds",
            "Time each upstream took to answer",
            m.upstreams.duration.clone(),
        );
        registry.register(
            "queries",
            "DNS queries answered, by question type and response code",
            m.queries.clone(),
        );
        registry.register(
            "answer_latency_seconds",
            "Time to answer a query",
            m.latency.clone(),
        );
        registry.register(
            "forwarded_queries",
            "Queries forwarded to the upstreams",
            m.forwarded.clone(),
        );
        registry.register(
            "forward_cache_hits",
            "Forwarded queries answered from the cache",
            m.forward_cache_hits.clone(),
        );
        registry.register(
            "upstream_failures",
            "Failed exchanges with an upstream",
            m.upstream_failures.clone(),
        );
        registry.register(
            "malformed_packets",
            "Packets that were not valid DNS queries",
            m.malformed.clone(),
        );
        registry.register(
            "shed_queries",
            "Queries refused or failed at once because a work limit was reached",
            m.shed.clone(),
        );
        registry.register(
            "forward_loops",
            "Questions that came back carrying this server's own forwarding mark (answered SERVFAIL, not forwarded again)",
            m.forward_loops.clone(),
        );
        registry.register(
            "worker_answers",
            "Answers too costly for a receive loop's budget, built by a worker (large names, signed answers)",
            m.large.clone(),
        );
        registry.register(
            "answer_cache_hits",
            "Queries answered from the answer cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "answer_cache_misses",
            "Plain queries whose answer had to be built",
            m.cache_misses.clone(),
        );
        registry.register_collector(Box::new(ViewCollector { view }));
        // Names outside the server's prefix: `lodestar_build_info` and the standard `process_*`.
        let plain = lodestar::process::registry();
        Arc::new(Metrics {
            registry,
            plain,
            ..m
        })
    }

    /// Reads the answer cache's size and the open TCP connections at scrape time.
    pub fn watch_handler(&self, handler: Arc<Handler>, conns: Arc<Connections>) {
        let _ = self.live.set(Live(handler, conns));
    }

    /// Counts one answered query.
    pub fn observe(&self, qtype: &str, rcode: &str, proto: &str, zone: &str, elapsed: Duration) {
        self.counter(qtype, rcode, proto, zone).inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// The query counter of a question type, response code, transport and zone, to keep and
    /// count on later.
    pub fn counter(&self, qtype: &str, rcode: &str, proto: &str, zone: &str) -> Counter {
        self.queries
            .get_or_create(&QueryLabels {
                r#type: TypeLabel {
                    r#type: qtype.to_string(),
                },
                rcode: rcode.to_string(),
                proto: proto.to_string(),
                zone: zone.to_string(),
            })
            .clone()
    }

    /// Counts the sizes of one query and its answer.
    /// Counted on every answer: no allocation, no lookup (the four histograms are made once).
    pub fn sizes(&self, tcp: bool, request: usize, response: usize) {
        let (req, resp) = &self.size_histograms[usize::from(tcp)];
        req.observe(request as f64);
        resp.observe(response as f64);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.plain);
        if let Some(Live(handler, conns)) = self.live.get() {
            let mut live = Registry::with_prefix("lodestar_dns");
            live.register(
                "answer_cache_entries",
                "Answers held in the answer cache",
                ConstGauge::new(handler.cached_answers() as i64),
            );
            live.register(
                "answer_cache_bytes",
                "What the answers in the answer cache weigh (records and encoded rotations), bytes",
                ConstGauge::new(handler.cached_answer_bytes() as i64),
            );
            live.register(
                "dnssec_signatures_cached",
                "RRset signatures held for reuse (0 without --dnssec-key)",
                ConstGauge::new(handler.cached_signatures() as i64),
            );
            live.register(
                "tcp_connections",
                "Open TCP connections",
                ConstGauge::new(conns.len() as i64),
            );
            let _ = prometheus_client::encoding::text::encode_registry(&mut out, &live);
        }
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// What the metrics read from the running server at scrape time.
struct Live(Arc<Handler>, Arc<Connections>);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

#[derive(Debug)]
struct ViewCollector {
    view: Arc<View>,
}

impl Collector for ViewCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.view.load();
        let (revision, records, invalid, skipped) = snap.as_ref().map_or((0, 0, 0, 0), |s| {
            (
                s.revision(),
                s.len() as i64,
                s.invalid_now() as i64,
                s.skipped_total(),
            )
        });
        let gauges = [
            (
                "view_revision",
                "etcd revision of the snapshot answering queries",
                revision,
            ),
            (
                "view_records",
                "Records in the snapshot answering queries",
                records,
            ),
            (
                "view_invalid_keys",
                "Keys whose current value does not parse",
                invalid,
            ),
            (
                "view_loaded",
                "1 once the first snapshot is loaded",
                i64::from(snap.is_some()),
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let fresh = self.view.freshness();
        let g = ConstGauge::new(i64::from(fresh.is_stale()));
        g.encode(encoder.encode_descriptor(
            "view_stale",
            "1 while no watch is open on an etcd member with a leader (answers come from the last snapshot)",
            None,
            g.metric_type(),
        )?)?;
        let age = fresh.since_heard().map_or(f64::NAN, |d| d.as_secs_f64());
        let g = ConstGauge::new(age);
        g.encode(encoder.encode_descriptor(
            "view_progress_age_seconds",
            "Seconds since the last watch event or progress notification from etcd (NaN before the first)",
            None,
            g.metric_type(),
        )?)?;
        let c = ConstCounter::new(skipped);
        c.encode(encoder.encode_descriptor(
            "view_skipped_values",
            "Values skipped because they did not parse",
            None,
            c.metric_type(),
        )?)?;
        Ok(())
    }
}

#[derive(Clone)]
struct Http {
    metrics: Arc<Metrics>,
    view: Arc<View>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    view: Arc<View>,
    token: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Http { metrics, view });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
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
        // A stale view still answers from its last snapshot (and says so in its answers'
        // metrics), but a load balancer or an operator asking "is this right now?" hears no.
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
