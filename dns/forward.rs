//! Forwarding to the upstreams, with a bounded cache of their answers.
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

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use moka::sync::Cache;
use moka::Expiry;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Largest TTL the cache keeps an answer for.
const MAX_CACHE_TTL: u32 = 3600;

/// How a query reached us, and so how it goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams.
    Udp,
    /// A stream with 2-byte length prefixes.
    Tcp,
}

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// Every upstream failed or timed out.
    #[error("no upstream answered ({tried} tried)")]
    AllFailed {
        /// How many were tried.
        tried: usize,
    },
    /// The query could not be encoded.
    #[error("bad query: {0}")]
    Encode(String),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct CacheKey {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
    dnssec_ok: bool,
    checking_disabled: bool,
}

/// The EDNS option code of [`ForwardMark`] (next to SkyDNS's stub loop option, in the range for
/// local use, RFC 6891 9).
pub const MARK_OPTION: u16 = crate::stub::LOOP_OPTION + 1;

/// More marks than this on one question is a loop whatever the servers (eight forwarders in a
/// row is no configuration anyone means).
const MAX_MARKS: usize = 8;

/// The mark this process puts on every question it forwards: [`MARK_OPTION`] with a random
/// 8-byte nonce. Other servers' marks are kept, so a loop through several servers is found too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardMark([u8; 8]);

impl ForwardMark {
    /// A new random mark (one per process).
    pub fn new() -> ForwardMark {
        use std::hash::{BuildHasher, Hasher};
        let h = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        ForwardMark(h.to_be_bytes())
    }

    /// Whether a question with this OPT has been forwarded by this server before (or through
    /// more forwarders than anyone configures): it came back round.
    pub fn looped(&self, edns: Option<&Edns>) -> bool {
        let Some(edns) = edns else { return false };
        let marks = edns
            .options()
            .get_all(hickory_proto::rr::rdata::opt::EdnsCode::Unknown(
                MARK_OPTION,
            ));
        marks.len() > MAX_MARKS
            || marks.iter().any(|o| {
                matches!(o, hickory_proto::rr::rdata::opt::EdnsOption::Unknown(_, d) if d.as_slice() == self.0)
            })
    }

    /// Adds this mark to `m` (an OPT of 512 bytes is made when it has none: the client's limit).
    fn add_to(&self, m: &mut Message) {
        let edns = m.edns.get_or_insert_with(|| {
            let mut e = Edns::new();
            e.set_max_payload(512);
            e
        });
        edns.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                MARK_OPTION,
                self.0.to_vec(),
            ));
    }
}

impl Default for ForwardMark {
    fn default() -> Self {
        ForwardMark::new()
    }
}

#[derive(Debug)]
struct Cached {
    message: Message,
    stored: Instant,
    ttl: Duration,
}

struct ByTtl;

impl Expiry<CacheKey, Arc<Cached>> for ByTtl {
    fn expire_after_create(&self, _: &CacheKey, v: &Arc<Cached>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

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
    failures: Counter,
    hits: Counter,
    per_upstream: crate::metrics::UpstreamMetrics,
}

impl Forwarder {
    /// Forwards to `upstreams` (rotating, skipping those that are down), answering each query
    /// within `timeout` in all; caches up to `capacity` answers. Starts the probe task of down
    /// upstreams (it ends with the forwarder); call it inside a Tokio runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        upstreams: Vec<SocketAddr>,
        mark: ForwardMark,
        timeout: Duration,
        capacity: u64,
        failures: Counter,
        hits: Counter,
        per_upstream: crate::metrics::UpstreamMetrics,
    ) -> Arc<Self> {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(ByTtl)
            .build();
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
            failures,
            hits,
            per_upstream,
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
        let key = cache_key(request);
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
        let key = cache_key(&query);
        if let Some(key) = &key {
            if let Some(c) = self.cache.get(key) {
                self.hits.inc();
                return Ok(counted_down(&c));
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
        let mut m = counted_down(&cached);
        m.metadata.id = request.metadata.id;
        m.queries = request.queries.clone();
        m.edns = request.edns.as_ref().map(|client| {
            let mut ours = Edns::new();
            ours.set_max_payload(crate::query::OUR_UDP_PAYLOAD);
            ours.set_dnssec_ok(client.flags().dnssec_ok);
            ours
        });
        let limit = crate::query::limit(transport, request.edns.as_ref().map(Edns::max_payload));
        let mut bytes = m.to_vec().ok()?;
        if bytes.len() > usize::from(limit) {
            m.answers.clear();
            m.authorities.clear();
            m.additionals.clear();
            m.metadata.truncation = true;
            bytes = m.to_vec().ok()?;
        }
        self.hits.inc();
        Some(bytes)
    }

    fn store(&self, key: CacheKey, answer: Message) {
        if let Some(ttl) = cache_ttl(&answer) {
            let cached = Cached {
                message: answer,
                stored: Instant::now(),
                ttl: Duration::from_secs(u64::from(ttl)),
            };
            self.cache.insert(key, Arc::new(cached));
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
            let to = crate::metrics::ToLabel {
                to: upstream.addr.to_string(),
            };
            self.per_upstream.requests.get_or_create(&to).inc();
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
                    self.per_upstream
                        .duration
                        .get_or_create(&to)
                        .observe(sent.elapsed().as_secs_f64());
                    bytes[..2].copy_from_slice(&request.metadata.id.to_be_bytes());
                    message.metadata.id = request.metadata.id;
                    return Ok((bytes, message));
                }
                Ok(Err(error)) => {
                    tracing::debug!(upstream = %upstream.addr, %error, "upstream failed");
                    self.failures.inc();
                    self.per_upstream.failures.get_or_create(&to).inc();
                    upstream.failed();
                }
                Err(_) => {
                    tracing::debug!(upstream = %upstream.addr, "upstream timed out");
                    self.failures.inc();
                    self.per_upstream.failures.get_or_create(&to).inc();
                    upstream.failed();
                }
            }
        }
        Err(ForwardError::AllFailed { tried })
    }
}

/// One exchange over the transport of the client's question.
async fn one_exchange(
    transport: Transport,
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> std::io::Result<(Vec<u8>, Message)> {
    match transport {
        Transport::Udp => udp_exchange(server, query, id, question).await,
        Transport::Tcp => tcp_exchange(server, query, id, question).await,
    }
}

/// Sends `request` to the nameservers of a stub zone (starting at one picked by the query's id,
/// as SkyDNS, then the others), within `timeout` in all, marked with the loop option
/// ([`crate::stub::LOOP_OPTION`]); the answer's bytes with the client's id, without an OPT when
/// the client sent none.
pub async fn stub_forward(
    servers: &[SocketAddr],
    request: &Message,
    transport: Transport,
    timeout: Duration,
) -> Result<Vec<u8>, ForwardError> {
    let Some(question) = request.queries.first() else {
        return Err(ForwardError::Encode("no question".into()));
    };
    let client_edns = request.edns.is_some();
    let mut m = request.clone();
    let edns = m.edns.get_or_insert_with(|| {
        let mut e = Edns::new();
        e.set_max_payload(512);
        e
    });
    edns.options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
            crate::stub::LOOP_OPTION,
            vec![1],
        ));
    let deadline = Instant::now() + timeout;
    let n = servers.len();
    for k in 0..n {
        let server = servers[(usize::from(request.metadata.id) + k) % n];
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let budget = if k + 1 == n { left } else { left / 2 };
        let id = rand_id();
        m.metadata.id = id;
        let raw = m
            .to_vec()
            .map_err(|e| ForwardError::Encode(e.to_string()))?;
        let attempt =
            tokio::time::timeout(budget, one_exchange(transport, server, &raw, id, question)).await;
        match attempt {
            Ok(Ok((mut bytes, mut answer))) => {
                if client_edns {
                    bytes[..2].copy_from_slice(&request.metadata.id.to_be_bytes());
                    return Ok(bytes);
                }
                answer.metadata.id = request.metadata.id;
                answer.edns = None;
                return answer
                    .to_vec()
                    .map_err(|e| ForwardError::Encode(e.to_string()));
            }
            Ok(Err(error)) => tracing::debug!(%server, %error, "stub nameserver failed"),
            Err(_) => tracing::debug!(%server, "stub nameserver timed out"),
        }
    }
    Err(ForwardError::AllFailed { tried: n })
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

fn rand_id() -> u16 {
    // Every RandomState has fresh random SipHash keys, so even the hash of nothing is
    // unpredictable: enough for ids that must not be guessed by someone spoofing answers.
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u16
}

fn cache_key(request: &Message) -> Option<CacheKey> {
    let q = request.queries.first()?;
    Some(CacheKey {
        name: q.name().to_lowercase(),
        qtype: q.query_type(),
        qclass: q.query_class(),
        dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        checking_disabled: request.metadata.checking_disabled,
    })
}

/// How long an answer may be cached: the smallest answer TTL, or for NXDOMAIN/NODATA
/// min(SOA TTL, SOA minimum) (RFC 2308 section 5). Truncated answers and failures are not cached.
fn cache_ttl(m: &Message) -> Option<u32> {
    if m.metadata.truncation {
        return None;
    }
    let ttl = match m.metadata.response_code {
        ResponseCode::NoError if !m.answers.is_empty() => m.answers.iter().map(|r| r.ttl).min()?,
        ResponseCode::NoError | ResponseCode::NXDomain => {
            m.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })?
        }
        _ => return None,
    };
    (ttl > 0).then_some(ttl.min(MAX_CACHE_TTL))
}

/// The cached answer with every TTL lowered by the time it has spent in the cache.
fn counted_down(c: &Cached) -> Message {
    let age = c.stored.elapsed().as_secs().min(u64::from(u32::MAX)) as u32;
    let mut m = c.message.clone();
    for r in m
        .answers
        .iter_mut()
        .chain(m.authorities.iter_mut())
        .chain(m.additionals.iter_mut())
    {
        r.ttl = r.ttl.saturating_sub(age);
    }
    m
}

/// Checks that `bytes` answers our question with our id.
fn check(bytes: &[u8], id: u16, question: &Query) -> std::io::Result<Option<Message>> {
    let Ok(m) = Message::from_vec(bytes) else {
        return Ok(None);
    };
    let same_question = m.queries.first().is_some_and(|q| {
        q.name().eq_ignore_root_case(question.name()) && q.query_type() == question.query_type()
    });
    Ok((m.metadata.id == id && same_question).then_some(m))
}

async fn udp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> std::io::Result<(Vec<u8>, Message)> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything that is not our answer (late answers to someone else, junk) is ignored.
        if let Some(m) = check(&buf[..n], id, question)? {
            buf.truncate(n);
            return Ok((buf, m));
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> std::io::Result<(Vec<u8>, Message)> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(|_| std::io::Error::other("query too long"))?;
    let mut out = Vec::with_capacity(query.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(query);
    stream.write_all(&out).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    match check(&buf, id, question)? {
        Some(m) => Ok((buf, m)),
        None => Err(std::io::Error::other("upstream answered something else")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::Record;

    fn answer(rcode: ResponseCode, answers: &[u32], soa: Option<(u32, u32)>) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = rcode;
        let n = Name::from_ascii("x.example.").unwrap();
        for ttl in answers {
            m.add_answer(Record::from_rdata(
                n.clone(),
                *ttl,
                RData::A(A::new(1, 2, 3, 4)),
            ));
        }
        if let Some((ttl, min)) = soa {
            let soa = SOA::new(n.clone(), n.clone(), 1, 1, 1, 1, min);
            m.add_authority(Record::from_rdata(n.clone(), ttl, RData::SOA(soa)));
        }
        m
    }

    #[test]
    fn cache_ttls() {
        let cases: &[(Message, Option<u32>)] = &[
            (answer(ResponseCode::NoError, &[300, 60], None), Some(60)),
            (
                answer(ResponseCode::NoError, &[99999], None),
                Some(MAX_CACHE_TTL),
            ),
            (answer(ResponseCode::NoError, &[0], None), None),
            (
                answer(ResponseCode::NXDomain, &[], Some((900, 120))),
                Some(120),
            ),
            (
                answer(ResponseCode::NoError, &[], Some((30, 120))),
                Some(30),
            ),
            (answer(ResponseCode::NXDomain, &[], None), None),
            (answer(ResponseCode::ServFail, &[300], None), None),
        ];
        for (m, want) in cases {
            assert_eq!(cache_ttl(m), *want, "{m:?}");
        }
        let mut tc = answer(ResponseCode::NoError, &[300], None);
        tc.metadata.truncation = true;
        assert_eq!(cache_ttl(&tc), None);
    }
}
