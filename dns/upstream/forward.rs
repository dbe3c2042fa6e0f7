//! The forwarder: the upstreams, their health, and the cache of their answers.
//!
//! A query for a name outside the served domains is sent as it came (with a fresh id) to the
//! upstreams, UDP for UDP clients and TCP for TCP clients, until one answers; the answer goes back
//! unchanged but for the id. Healthy forwarding, as CoreDNS's `forward` does it:
//!
//! - each query starts at the next upstream (round robin, SkyDNS's `ns_rotate`), so that the load
//!   is spread and no upstream is always the first to be waited for;
//! - an upstream that fails [`MAX_FAILS`] times in a row is marked down and skipped (unless every
//!   one is down); a probe task asks it `. NS` every [`PROBE_EVERY`] and marks it up on any answer;
//! - one query has `--upstream-timeout` in all: each attempt gets a share of what is left, and
//!   past the deadline the client gets SERVFAIL, never later.
//!
//! Answers are cached (moka, bounded) for their smallest TTL, negative answers for the SOA's
//! negative TTL (RFC 2308 section 5), keyed by name, type, class, DO and CD (an answer asked with
//! checking disabled is never served to a client that wants it checked); a hit is re-encoded with
//! TTLs counted down and the client's id and question, and made to fit the client (its OPT, its
//! size).
//!
//! Loops (an upstream that is, or forwards back to, this server) are cut as CoreDNS's `loop`
//! plugin would and more: every question this server sends upstream carries its [`ForwardMark`],
//! an EDNS option with a nonce of this process; a question that arrives carrying it has come back
//! round, and is answered SERVFAIL at once instead of being sent on again (see `decide`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use moka::sync::Cache;

use super::cache::{self, CacheKey, Cached};
use super::exchange::{one_exchange, rand_id, udp_exchange};
use super::{ForwardError, UpstreamMetrics};
use crate::proto::edns::{self, ForwardMark};
use crate::proto::Transport;

/// Failures in a row that mark an upstream down.
pub const MAX_FAILS: u32 = 2;

/// How often a down upstream is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// One upstream and its health.
#[derive(Debug)]
struct Upstream {
    addr: SocketAddr,
    fails: AtomicU32,
    down: AtomicBool,
}

impl Upstream {
    fn failed(&self) {
        if self.fails.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_FAILS
            && !self.down.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(upstream = %self.addr, "upstream marked down; probing it");
        }
    }

    fn answered(&self) {
        self.fails.store(0, Ordering::Relaxed);
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(upstream = %self.addr, "upstream answers again");
        }
    }
}

/// The upstreams, their health, and the cache of their answers.
pub struct Forwarder {
    upstreams: Vec<Arc<Upstream>>,
    mark: ForwardMark,
    next: AtomicUsize,
    timeout: Duration,
    cache: Cache<CacheKey, Arc<Cached>>,
    metrics: UpstreamMetrics,
}

impl Forwarder {
    /// Forwards to `upstreams` (rotating, skipping those that are down), answering each query
    /// within `timeout` in all; caches up to `capacity` answers. Starts the probe task of down
    /// upstreams (it ends with the forwarder); call it inside a Tokio runtime.
    pub fn new(
        upstreams: Vec<SocketAddr>,
        mark: ForwardMark,
        timeout: Duration,
        capacity: u64,
        metrics: UpstreamMetrics,
    ) -> Arc<Self> {
        let cache = cache::new(capacity);
        let f = Arc::new(Forwarder {
            upstreams: upstreams
                .into_iter()
                .map(|addr| {
                    Arc::new(Upstream {
                        addr,
                        fails: AtomicU32::new(0),
                        down: AtomicBool::new(false),
                    })
                })
                .collect(),
            mark,
            next: AtomicUsize::new(0),
            timeout,
            cache,
            metrics,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(probe(Arc::downgrade(&f)));
        }
        f
    }

    /// The order in which this query tries the upstreams: from the next one round, those up
    /// first, then those down (so that a query still has a chance when all are down).
    fn order(&self) -> Vec<Arc<Upstream>> {
        let n = self.upstreams.len();
        if n == 0 {
            return Vec::new();
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let rotated = (0..n).map(|k| self.upstreams[(first + k) % n].clone());
        let (up, down): (Vec<_>, Vec<_>) = rotated.partition(|u| !u.down.load(Ordering::Relaxed));
        up.into_iter().chain(down).collect()
    }

    /// Counts a forwarded answer given from elsewhere (the answer cache of the receive loop).
    pub fn count_cache_hit(&self) {
        self.metrics.cache_hits.inc();
    }

    /// The upstreams, for logging.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.upstreams.iter().map(|u| u.addr).collect()
    }

    /// Forwards a client's query (`request`) and returns the answer's bytes with the client's
    /// id: from the cache, else from the first upstream that answers. The question goes up as it
    /// came, with this server's mark added; the answer comes back as the upstream sent it, with
    /// the OPT taken out when the client sent none.
    pub async fn forward(
        &self,
        request: &Message,
        transport: Transport,
    ) -> Result<Vec<u8>, ForwardError> {
        let key = cache::cache_key(request);
        if let Some(key) = &key {
            if let Some(hit) = self.cache_hit(key, request, transport) {
                return Ok(hit);
            }
        }
        let (bytes, answer) = self.exchange(request, transport).await?;
        let bytes = if request.edns.is_none() && answer.edns.is_some() {
            let mut plain = answer.clone();
            plain.edns = None;
            plain
                .to_vec()
                .map_err(|e| ForwardError::Encode(e.to_string()))?
        } else {
            bytes
        };
        if let Some(key) = key {
            self.store(key, answer);
        }
        Ok(bytes)
    }

    /// Resolves `name`/`qtype` upstream (a CNAME target outside our domains): the answer's records.
    pub async fn resolve(&self, name: Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name, qtype));
        let key = cache::cache_key(&query);
        if let Some(key) = &key {
            if let Some(c) = self.cache.get(key) {
                self.metrics.cache_hits.inc();
                return Ok(cache::counted_down(&c));
            }
        }
        let (_, mut answer) = self.exchange(&query, Transport::Udp).await?;
        if answer.metadata.truncation {
            answer = self.exchange(&query, Transport::Tcp).await?.1;
        }
        if let Some(key) = key {
            self.store(key, answer.clone());
        }
        Ok(answer)
    }

    /// A cached answer made fit for this client: its id and question, an OPT only when it sent
    /// one (with our size), and within its size limit (512 over UDP without EDNS); an answer
    /// stored from a larger exchange that does not fit goes out empty with TC, so that the client
    /// asks again over TCP.
    fn cache_hit(
        &self,
        key: &CacheKey,
        request: &Message,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let cached = self.cache.get(key)?;
        let mut m = cache::counted_down(&cached);
        m.metadata.id = request.metadata.id;
        m.queries = request.queries.clone();
        m.edns = request
            .edns
            .as_ref()
            .map(|client| edns::ours(client.flags().dnssec_ok));
        let limit = crate::proto::limit(transport, request.edns.as_ref().map(Edns::max_payload));
        let mut bytes = m.to_vec().ok()?;
        if bytes.len() > usize::from(limit) {
            m.answers.clear();
            m.authorities.clear();
            m.additionals.clear();
            m.metadata.truncation = true;
            bytes = m.to_vec().ok()?;
        }
        self.metrics.cache_hits.inc();
        Some(bytes)
    }

    fn store(&self, key: CacheKey, answer: Message) {
        if let Some(ttl) = cache::cache_ttl(&answer) {
            self.cache.insert(key, cache::entry(answer, ttl));
        }
    }

    /// Tries each upstream in turn with `request` marked as ours; returns the first valid answer
    /// (its bytes with the request's id, and parsed).
    async fn exchange(
        &self,
        request: &Message,
        transport: Transport,
    ) -> Result<(Vec<u8>, Message), ForwardError> {
        let Some(question) = request.queries.first() else {
            return Err(ForwardError::Encode("no question".into()));
        };
        let mut outgoing = request.clone();
        self.mark.add_to(&mut outgoing);
        let deadline = Instant::now() + self.timeout;
        let order = self.order();
        let mut tried = 0;
        for (i, upstream) in order.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // A share of what is left, so that a dead upstream leaves time for the next ones
            // that are up (all of it for the last one, or when the others are down).
            let healthy_after = order[i + 1..]
                .iter()
                .filter(|u| !u.down.load(Ordering::Relaxed))
                .count();
            let budget = if healthy_after == 0 { left } else { left / 2 };
            tried += 1;
            let to = UpstreamMetrics::to(upstream.addr);
            self.metrics.requests.get_or_create(&to).inc();
            let sent = Instant::now();
            let id: u16 = rand_id();
            outgoing.metadata.id = id;
            let query = outgoing
                .to_vec()
                .map_err(|e| ForwardError::Encode(e.to_string()))?;
            let attempt = tokio::time::timeout(
                budget,
                one_exchange(transport, upstream.addr, &query, id, question),
            )
            .await;
            match attempt {
                Ok(Ok((mut bytes, mut message))) => {
                    upstream.answered();
                    self.metrics
                        .duration
                        .get_or_create(&to)
                        .observe(sent.elapsed().as_secs_f64());
                    bytes[..2].copy_from_slice(&request.metadata.id.to_be_bytes());
                    message.metadata.id = request.metadata.id;
                    return Ok((bytes, message));
                }
                Ok(Err(error)) => {
                    tracing::debug!(upstream = %upstream.addr, %error, "upstream failed");
                    self.metrics.all_failures.inc();
                    self.metrics.failures.get_or_create(&to).inc();
                    upstream.failed();
                }
                Err(_) => {
                    tracing::debug!(upstream = %upstream.addr, "upstream timed out");
                    self.metrics.all_failures.inc();
                    self.metrics.failures.get_or_create(&to).inc();
                    upstream.failed();
                }
            }
        }
        Err(ForwardError::AllFailed { tried })
    }
}

/// Probes the down upstreams every [`PROBE_EVERY`] with `. NS` until the forwarder is gone.
async fn probe(forwarder: Weak<Forwarder>) {
    let mut query = Message::query();
    query.add_query(Query::query(Name::root(), RecordType::NS));
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(f) = forwarder.upgrade() else { return };
        let down: Vec<Arc<Upstream>> = f
            .upstreams
            .iter()
            .filter(|u| u.down.load(Ordering::Relaxed))
            .cloned()
            .collect();
        let timeout = f.timeout.min(Duration::from_secs(1));
        drop(f);
        for u in down {
            let id = rand_id();
            query.metadata.id = id;
            let Ok(raw) = query.to_vec() else { continue };
            let Some(q) = query.queries.first() else {
                continue;
            };
            // Any answer at all (even REFUSED) says the upstream is there.
            if let Ok(Ok(_)) =
                tokio::time::timeout(timeout, udp_exchange(u.addr, &raw, id, q)).await
            {
                u.answered();
            }
        }
    }
}
