//! What the pipeline counts: every answered query by type, rcode, transport and zone, answer
//! times, message sizes, cache hits and misses, and the questions it turned away (malformed,
//! shed, looped) or handed to a worker. Registered once in the metrics [`Builder`]; counting an
//! answer allocates nothing and looks nothing up but the labelled counter it is kept in.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::{
    latency_histogram, size_histogram, Builder, Log2Histogram, ProtoLabel, QueryLabels, TypeLabel,
};

/// The pipeline's counters.
#[derive(Debug)]
pub struct Counters {
    /// Queries answered, by type, rcode, transport and zone.
    pub queries: Family<QueryLabels, Counter>,
    /// Time from receiving a query to having its answer, seconds.
    pub latency: Log2Histogram,
    /// Queries forwarded upstream (cache misses included, cache hits too).
    pub forwarded: Counter,
    /// Packets dropped as malformed or answered FORMERR.
    pub malformed: Counter,
    /// Queries refused or failed at once because a work limit was reached.
    pub shed: Counter,
    /// Questions that came back carrying this server's own forwarding mark (a loop).
    pub forward_loops: Counter,
    /// Answers from the served domains sent while the view was stale (EDE 3, TTLs capped).
    pub stale_answers: Counter,
    /// Answers too costly for a receive loop's budget, built by a worker.
    pub large: Counter,
    /// Queries answered from the answer cache.
    pub cache_hits: Counter,
    /// Plain queries whose answer was not in the cache (or no longer good).
    pub cache_misses: Counter,
    request_size: Family<ProtoLabel, Log2Histogram, fn() -> Log2Histogram>,
    response_size: Family<ProtoLabel, Log2Histogram, fn() -> Log2Histogram>,
    /// (request, response) histograms for udp and tcp, taken from the families once.
    size_histograms: [(Log2Histogram, Log2Histogram); 2],
}

impl Counters {
    /// Every counter at zero.
    pub fn new() -> Arc<Counters> {
        let request_size: Family<ProtoLabel, Log2Histogram, fn() -> Log2Histogram> =
            Family::new_with_constructor(size_histogram);
        let response_size: Family<ProtoLabel, Log2Histogram, fn() -> Log2Histogram> =
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
        Arc::new(Counters {
            queries: Family::default(),
            latency: latency_histogram(),
            forwarded: Counter::default(),
            malformed: Counter::default(),
            shed: Counter::default(),
            forward_loops: Counter::default(),
            stale_answers: Counter::default(),
            large: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            request_size,
            response_size,
            size_histograms,
        })
    }

    /// Registers every counter under its published name.
    pub fn register(&self, b: &mut Builder) {
        b.register(
            "request_size_bytes",
            "Size of the queries received, by transport",
            self.request_size.clone(),
        );
        b.register(
            "response_size_bytes",
            "Size of the answers sent, by transport",
            self.response_size.clone(),
        );
        b.register(
            "queries",
            "DNS queries answered, by question type and response code",
            self.queries.clone(),
        );
        b.register(
            "answer_latency_seconds",
            "Time to answer a query",
            self.latency.clone(),
        );
        b.register(
            "forwarded_queries",
            "Queries forwarded to the upstreams",
            self.forwarded.clone(),
        );
        b.register(
            "malformed_packets",
            "Packets that were not valid DNS queries",
            self.malformed.clone(),
        );
        b.register(
            "shed_queries",
            "Queries refused or failed at once because a work limit was reached",
            self.shed.clone(),
        );
        b.register(
            "stale_answers",
            "Answers from the served domains sent while the view follows no etcd member with a leader (EDE 3, TTLs capped at --stale-ttl)",
            self.stale_answers.clone(),
        );
        b.register(
            "forward_loops",
            "Questions that came back carrying this server's own forwarding mark (answered SERVFAIL, not forwarded again)",
            self.forward_loops.clone(),
        );
        b.register(
            "worker_answers",
            "Answers too costly for a receive loop's budget, built by a worker (large names, signed answers)",
            self.large.clone(),
        );
        b.register(
            "answer_cache_hits",
            "Queries answered from the answer cache",
            self.cache_hits.clone(),
        );
        b.register(
            "answer_cache_misses",
            "Plain queries whose answer had to be built",
            self.cache_misses.clone(),
        );
    }

    /// Counts one answered query.
    pub fn observe(&self, qtype: &str, rcode: &str, proto: &str, zone: &str, elapsed: Duration) {
        self.counter(qtype, rcode, proto, zone).inc();
        self.answered_in(elapsed);
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

    /// Counts one answer's time.
    pub fn answered_in(&self, elapsed: Duration) {
        self.latency
            .observe(elapsed.as_nanos().min(u128::from(u64::MAX)) as u64);
    }

    /// Counts the sizes of one query and its answer: no allocation, no lookup.
    pub fn sizes(&self, tcp: bool, request: usize, response: usize) {
        let (req, resp) = &self.size_histograms[usize::from(tcp)];
        req.observe(request as u64);
        resp.observe(response as u64);
    }
}

/// The `rcode` label of an answer.
pub fn rcode_name(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}
