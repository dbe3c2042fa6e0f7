//! One query, one pipeline: bytes -> cache -> [`Query`] -> [`decide`] -> [`respond`] -> bytes.
//!
//! [`Handler::handle`] runs on the receive loops and does only what is cheap: a cache hit is
//! patched and sent at once, and a miss is answered at once when it fits a small budget
//! ([`Budget::INLINE`]: a few hundred records). Everything else becomes a [`Job`] that leaves the
//! receive loop: [`Handler::complete`] computes a large answer on a bounded pool of blocking
//! workers (at a lower CPU priority than the receive loops) and waits for the upstreams when
//! the name is not ours, so a large answer or a slow upstream never delays anybody else. Jobs
//! admitted and not yet finished are bounded too; past that bound a query gets SERVFAIL at once
//! (counted as shed).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use ipnet::IpNet;
use lodestar::View;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::authority::stub::StubZones;
use crate::authority::zones::StaticZones;
use crate::authority::{Answer, Authority, Budget, Records};
use crate::cache::{AnswerCache, Cached};
use crate::decide::{decide, Decision};
use crate::dnssec::Signers;
use crate::pipeline::Counters;
use crate::proto::edns::ForwardMark;
use crate::proto::wire;
use crate::proto::Transport;
use crate::proto::{self, Query};
use crate::respond::{self, Body};
use crate::upstream::Forwarder;

/// How much work clients can make the server take on at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Jobs computed at the same time (blocking workers).
    pub workers: usize,
    /// Jobs admitted and not finished (waiting for a worker, computing or forwarding).
    pub admitted: usize,
    /// Forwarded queries in flight.
    pub forwards: usize,
    /// `--log-queries`: one INFO line per answered query (SkyDNS's `-verbose`).
    pub log_queries: bool,
    /// How long a forwarded (or stub zone) question may take in all.
    pub upstream_timeout: std::time::Duration,
    /// `--ndots`: names with fewer labels are not forwarded.
    pub ndots: u8,
}

/// Everything needed to answer.
pub struct Handler {
    view: Arc<View>,
    authority: Authority,
    zones: arc_swap::ArcSwap<StaticZones>,
    forwarder: Option<Arc<Forwarder>>,
    allow_recursion: Vec<IpNet>,
    metrics: Arc<Counters>,
    cache: AnswerCache,
    workers: Arc<Semaphore>,
    /// Background work (the other rotations of a signed answer): one at a time.
    background: Arc<Semaphore>,
    /// Signed answers waiting for their other rotations, at most [`MAX_QUEUED_SIGNING`].
    signing_queue: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    forwards: Arc<Semaphore>,
    rotation: AtomicUsize,
    log_queries: bool,
    upstream_timeout: std::time::Duration,
    /// The stub zones of one generation of the view, and the ones refused.
    stub_zones: arc_swap::ArcSwap<(u64, Arc<StubZones>, Vec<crate::authority::stub::Refused>)>,
    /// Held by the one thread that reads a new generation's stub zones.
    stub_recompute: std::sync::Mutex<()>,
    /// DNSSEC keys of the signed domains (none: nothing is signed).
    signers: Arc<Signers>,
    /// The mark this server's forwarded questions carry (shared with the forwarder).
    mark: ForwardMark,
    /// Whether a forwarding loop was logged already.
    loop_logged: std::sync::atomic::AtomicBool,
    /// `--ndots`.
    ndots: u8,
}

/// What the receive loop does with a packet.
pub enum Step {
    /// Send these bytes back now.
    Reply(Vec<u8>),
    /// Needs work: run [`Handler::complete`] away from the receive loop.
    Later(Job),
    /// Say nothing (not a query at all).
    Drop,
}

/// A packet admitted for work off the receive loop.
pub struct Job {
    raw: Vec<u8>,
    client: IpAddr,
    transport: Transport,
    started: Instant,
    /// Already decided on the receive loop: a question for the upstreams.
    decided: Option<Box<Pending>>,
    _admitted: OwnedSemaphorePermit,
}

/// A computed packet: an answer, a question for the upstreams, one too large for the budget
/// it was given, or nothing.
enum Outcome {
    Reply(Vec<u8>),
    Forward(Box<Pending>),
    Large,
    Drop,
}

/// A question whose answer needs waiting (an upstream, a stub zone, the static zones' catalog).
struct Pending {
    query: Query,
    request: Message,
    raw: Vec<u8>,
    then: Later,
}

/// What a [`Pending`] question waits for.
enum Later {
    /// The upstreams answer the whole question.
    Forward,
    /// Our answer, with CNAME targets to resolve upstream.
    Resolve(Box<Records>),
    /// The nameservers of the stub zone the name is in.
    Stub(Vec<std::net::SocketAddr>),
    /// A name in a static zone: the zones' catalog answers it.
    Static,
}

impl Handler {
    /// Creates a handler.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        view: Arc<View>,
        mark: ForwardMark,
        authority: Authority,
        zones: StaticZones,
        forwarder: Option<Arc<Forwarder>>,
        allow_recursion: Vec<IpNet>,
        metrics: Arc<Counters>,
        limits: Limits,
    ) -> Handler {
        Handler {
            view,
            authority,
            zones: arc_swap::ArcSwap::from_pointee(zones),
            forwarder,
            allow_recursion,
            metrics,
            cache: AnswerCache::default(),
            workers: Arc::new(Semaphore::new(limits.workers.max(1))),
            background: Arc::new(Semaphore::new(1)),
            signing_queue: Arc::new(Semaphore::new(MAX_QUEUED_SIGNING)),
            admitted: Arc::new(Semaphore::new(limits.admitted.max(1))),
            forwards: Arc::new(Semaphore::new(limits.forwards.max(1))),
            rotation: AtomicUsize::new(0),
            log_queries: limits.log_queries,
            upstream_timeout: limits.upstream_timeout,
            stub_zones: arc_swap::ArcSwap::from_pointee((
                0,
                Arc::new(StubZones::default()),
                Vec::new(),
            )),
            stub_recompute: std::sync::Mutex::new(()),
            signers: Arc::new(Signers::none()),
            mark,
            loop_logged: std::sync::atomic::AtomicBool::new(false),
            ndots: limits.ndots,
        }
    }

    /// Signs the answers of the signed domains (`--dnssec-key`) for queries with DO.
    pub fn signing(mut self, signers: Arc<Signers>) -> Handler {
        self.signers = signers;
        self
    }

    /// The `zone` label of a question: its served domain or static zone, else `.`.
    fn zone_label(&self, name: &hickory_proto::rr::Name) -> String {
        let lower = name.to_lowercase();
        if let Some(d) = self.authority.domain_of(&lower) {
            return d.name.to_string();
        }
        self.zones
            .load()
            .origins()
            .filter(|o| o.zone_of(&lower))
            .max_by_key(|o| o.num_labels())
            .map_or_else(|| ".".to_string(), |o| o.to_string())
    }

    /// With `--log-queries`: one line for an answer about to be sent (parsed from its bytes, so
    /// that every path logs the same; off, this is one branch).
    fn log(&self, client: IpAddr, transport: Transport, started: Instant, bytes: &[u8]) {
        if !self.log_queries {
            return;
        }
        let Ok(m) = Message::from_vec(bytes) else {
            return;
        };
        let Some(q) = m.queries.first() else { return };
        tracing::info!(
            target: "lodestar_dns::queries",
            %client,
            proto = ?transport,
            name = %q.name(),
            qtype = %q.query_type(),
            rcode = %m.metadata.response_code,
            answers = m.answers.len(),
            tc = m.metadata.truncation,
            us = started.elapsed().as_micros() as u64,
            "query"
        );
    }

    /// Puts a new set of static zones in service (SIGHUP).
    pub fn replace_zones(&self, zones: StaticZones) {
        self.zones.store(Arc::new(zones));
    }

    /// Entries in the answer cache.
    pub fn cached_answers(&self) -> usize {
        self.cache.len()
    }

    /// What the answer cache's entries weigh, bytes.
    pub fn cached_answer_bytes(&self) -> usize {
        self.cache.weight()
    }

    /// Encodes (and signs) the other rotations of a signed answer on a blocking worker, after the
    /// answer that built it went out.
    fn prepare_later(&self, entry: Arc<Cached>) {
        if entry.prepared() {
            return;
        }
        // Bounded: past [`MAX_QUEUED_SIGNING`] entries waiting, the others are not queued (their
        // first rotation answers until they are built again).
        let Ok(queued) = self.signing_queue.clone().try_acquire_owned() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                // A permit of their own: rotations signed in the background never hold a
                // worker that a query is waiting for.
                let background = self.background.clone();
                let view = self.view.clone();
                rt.spawn(async move {
                    let _queued = queued;
                    let Ok(_permit) = background.acquire_owned().await else {
                        return;
                    };
                    let _ = tokio::task::spawn_blocking(move || {
                        lower_priority();
                        entry.prepare_while(|e| view.peek().as_ref().is_some_and(|s| e.valid(s)));
                    })
                    .await;
                });
            }
            Err(_) => entry.prepare(),
        }
    }

    /// RRset signatures in the signature cache.
    pub fn cached_signatures(&self) -> u64 {
        self.signers.cached()
    }

    fn may_recurse(&self, client: IpAddr) -> bool {
        self.forwarder.is_some() && self.allowed(client)
    }

    /// Whether `client` is inside `--allow-recursion` (forwarding and stub zones are for them).
    fn allowed(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.allow_recursion.iter().any(|net| net.contains(&client))
    }

    /// The stub zones of `snap`'s generation, read from it once per generation; what changed
    /// from the generation before is logged (one thread recomputes, the others keep the last).
    fn stubs(&self, snap: Option<&lodestar::Snapshot>) -> Arc<StubZones> {
        let Some(snap) = snap else {
            return Arc::new(StubZones::default());
        };
        let cached = self.stub_zones.load();
        if cached.0 == snap.generation() {
            return cached.1.clone();
        }
        let Ok(_one) = self.stub_recompute.try_lock() else {
            return cached.1.clone();
        };
        let (fresh, refused) = StubZones::from_snapshot(snap, &self.authority.domains);
        if fresh != *cached.1 || refused != cached.2 {
            fresh.log_changes(&refused, &cached.1, &cached.2);
        }
        let fresh = Arc::new(fresh);
        self.stub_zones
            .store(Arc::new((snap.generation(), fresh.clone(), refused)));
        fresh
    }

    /// The receive loop's part: a cached answer now, else a job for [`Handler::complete`].
    pub fn handle(&self, raw: &[u8], client: IpAddr, transport: Transport) -> Step {
        let started = Instant::now();
        let step = self.handle_inner(raw, client, transport, started);
        if let Step::Reply(bytes) = &step {
            self.metrics
                .sizes(transport == Transport::Tcp, raw.len(), bytes.len());
            self.log(client, transport, started, bytes);
        }
        step
    }

    fn handle_inner(
        &self,
        raw: &[u8],
        client: IpAddr,
        transport: Transport,
        started: Instant,
    ) -> Step {
        if let Some(bytes) = self.hit(raw, client, transport, true) {
            self.metrics
                .latency
                .observe(started.elapsed().as_secs_f64());
            return Step::Reply(bytes);
        }
        let decided = match self.compute(raw, client, transport, started, Budget::INLINE) {
            Outcome::Reply(bytes) => return Step::Reply(bytes),
            Outcome::Drop => return Step::Drop,
            Outcome::Forward(pending) => Some(pending),
            Outcome::Large => {
                self.metrics.large.inc();
                None
            }
        };
        match self.admitted.clone().try_acquire_owned() {
            Ok(permit) => Step::Later(Job {
                raw: raw.to_vec(),
                client,
                transport,
                started,
                decided,
                _admitted: permit,
            }),
            Err(_) => {
                self.metrics.shed.inc();
                match Query::parse(raw, transport) {
                    Ok((q, _)) => Step::Reply(self.error(&q, ResponseCode::ServFail, client)),
                    Err(m) => respond::malformed(&m).map_or(Step::Drop, Step::Reply),
                }
            }
        }
    }

    /// A cached answer for a plain query, patched for it. A miss is counted only on the first
    /// look (`first`): a worker's second look for the same query is not another miss.
    fn hit(
        &self,
        raw: &[u8],
        client: IpAddr,
        transport: Transport,
        first: bool,
    ) -> Option<Vec<u8>> {
        let q = wire::quick_parse(raw)?;
        let snap = self.view.peek();
        let snap = snap.as_ref()?;
        let mut key = Vec::with_capacity(8 + q.qname.len());
        wire::cache_key(&q, proto::limit(transport, q.edns), &mut key);
        let Some(entry) = self.cache.get(&key, snap) else {
            if first {
                self.metrics.cache_misses.inc();
            }
            return None;
        };
        self.metrics.cache_hits.inc();
        let mut bytes = entry.next_variant().to_vec();
        wire::patch(&mut bytes, raw, q.qname, self.may_recurse(client));
        entry.counter.inc();
        Some(bytes)
    }

    /// Finishes a job off the receive loop: the answer's bytes, or `None` for silence.
    pub async fn complete(self: &Arc<Self>, job: Job) -> Option<Vec<u8>> {
        let (client, transport, started) = (job.client, job.transport, job.started);
        let request_len = job.raw.len();
        let bytes = self.complete_inner(job).await?;
        self.metrics
            .sizes(transport == Transport::Tcp, request_len, bytes.len());
        self.log(client, transport, started, &bytes);
        Some(bytes)
    }

    async fn complete_inner(self: &Arc<Self>, job: Job) -> Option<Vec<u8>> {
        let Job {
            raw,
            client,
            transport,
            started,
            decided,
            _admitted,
        } = job;
        let outcome = if let Some(pending) = decided {
            Outcome::Forward(pending)
        } else {
            let _worker = self.workers.clone().acquire_owned().await.ok()?;
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                lower_priority();
                this.compute(&raw, client, transport, started, Budget::FULL)
            })
            .await
            .ok()?
        };
        match outcome {
            Outcome::Reply(bytes) => Some(bytes),
            // Not with the full budget; counted as a drop should it ever happen.
            Outcome::Drop | Outcome::Large => None,
            Outcome::Forward(pending) => {
                let qtype = pending.query.qtype.to_string();
                let zone = self.zone_label(&pending.query.name);
                let proto = proto_name(pending.query.transport);
                let bytes = match self.forwards.clone().try_acquire_owned() {
                    Ok(_permit) => self.forward(*pending, client).await,
                    Err(_) => {
                        self.metrics.shed.inc();
                        self.error(&pending.query, ResponseCode::Refused, client)
                    }
                };
                let rcode = bytes.get(3).map_or(0, |b| b & 0x0f);
                self.metrics.observe(
                    &qtype,
                    rcode_name(ResponseCode::from_low(rcode)),
                    proto,
                    &zone,
                    started.elapsed(),
                );
                Some(bytes)
            }
        }
    }

    /// Parse, decide, respond, and keep the answer: the work of a cache miss.
    fn compute(
        &self,
        raw: &[u8],
        client: IpAddr,
        transport: Transport,
        started: Instant,
        budget: Budget,
    ) -> Outcome {
        // Another job may have built this answer while this one waited for a worker.
        if budget == Budget::FULL {
            if let Some(bytes) = self.hit(raw, client, transport, false) {
                return Outcome::Reply(bytes);
            }
        }
        let (q, request) = match Query::parse(raw, transport) {
            Ok(parsed) => parsed,
            Err(m) => {
                self.metrics.malformed.inc();
                return respond::malformed(&m).map_or(Outcome::Drop, Outcome::Reply);
            }
        };
        // Signing is never done on a receive loop: a signed answer not yet cached goes to a worker.
        let dnssec = q.dnssec_ok() && self.signers.signs(&q.name);
        if dnssec && budget == Budget::INLINE {
            return Outcome::Large;
        }
        let recurse = self.may_recurse(client);
        let snap = self.view.load();
        let stubs = self.stubs(snap.as_deref());
        let who = crate::decide::Client {
            allowed: self.allowed(client),
            may_recurse: recurse,
            looped: recurse && self.mark.looped(q.edns.as_ref()),
            short: usize::from(q.name.num_labels()) < usize::from(self.ndots),
        };
        let decision = decide(
            &q,
            snap.as_deref(),
            &self.authority,
            &self.zones.load(),
            &stubs,
            who,
            budget,
        );
        let qtype = q.qtype.to_string();
        let (bytes, rcode) = match decision {
            Decision::Local { answer, dep } => {
                let answer = self.with_dnssec(answer, &q, dnssec);
                let signers = dnssec.then(|| self.signers.clone());
                let rcode = respond::rcode_of(&answer);
                let cacheable = !matches!(&answer, Answer::Records(r) if !r.external.is_empty());
                let quick = wire::quick_parse(raw).filter(|_| cacheable);
                match (quick, snap.as_deref()) {
                    (Some(quick), Some(snap)) => {
                        let mut key = Vec::with_capacity(8 + quick.qname.len());
                        wire::cache_key(&quick, q.limit(), &mut key);
                        let zone = self.zone_label(&q.name);
                        let counter = self.metrics.counter(
                            &qtype,
                            rcode_name(rcode),
                            proto_name(q.transport),
                            &zone,
                        );
                        let built = Cached::new(
                            snap.generation(),
                            dep,
                            q.normalised(),
                            answer,
                            counter,
                            signers,
                        );
                        if dnssec {
                            // Encoded before anyone can find it, so no hit ever signs.
                            built.first_variant();
                        }
                        let entry = self.cache.insert(&key, built);
                        let first = if dnssec {
                            // Signed: this answer now, the other rotations by a worker after it.
                            let bytes = entry.first_variant().to_vec();
                            self.prepare_later(entry.clone());
                            bytes
                        } else {
                            entry.next_variant().to_vec()
                        };
                        let mut bytes = first;
                        wire::patch(&mut bytes, raw, quick.qname, recurse);
                        (bytes, rcode)
                    }
                    _ => {
                        let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
                        let body = Body::of(&answer, rotation).signed(signers.as_deref());
                        (respond::encode(&q, rcode, true, recurse, body), rcode)
                    }
                }
            }
            Decision::Large => return Outcome::Large,
            decision @ (Decision::Forward
            | Decision::Resolve(_)
            | Decision::Stub(_)
            | Decision::Static) => {
                let then = match decision {
                    Decision::Resolve(records) => Later::Resolve(Box::new(records)),
                    Decision::Stub(servers) => Later::Stub(servers),
                    Decision::Static => Later::Static,
                    _ => Later::Forward,
                };
                return Outcome::Forward(Box::new(Pending {
                    query: q,
                    request,
                    raw: raw.to_vec(),
                    then,
                }));
            }
            Decision::Loop => {
                self.metrics.forward_loops.inc();
                if !self.loop_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        qname = %q.name,
                        %client,
                        "forwarding loop: a question this server forwarded came back to it; answering SERVFAIL instead of forwarding it again (check --upstream and the upstreams' own forwarders); logged once"
                    );
                }
                let rcode = ResponseCode::ServFail;
                (self.error(&q, rcode, client), rcode)
            }
            Decision::NotForwarded => {
                let rcode = ResponseCode::ServFail;
                (self.error(&q, rcode, client), rcode)
            }
            refusal @ (Decision::Refused
            | Decision::NotReady
            | Decision::NotImplemented
            | Decision::BadVersion) => {
                let rcode = match refusal {
                    Decision::Refused => ResponseCode::Refused,
                    Decision::NotImplemented => ResponseCode::NotImp,
                    Decision::BadVersion => ResponseCode::BADVERS,
                    _ => ResponseCode::ServFail,
                };
                (self.error(&q, rcode, client), rcode)
            }
        };
        self.metrics.observe(
            &qtype,
            rcode_name(rcode),
            proto_name(q.transport),
            &self.zone_label(&q.name),
            started.elapsed(),
        );
        Outcome::Reply(bytes)
    }

    /// A response with no records.
    fn error(&self, q: &Query, rcode: ResponseCode, client: IpAddr) -> Vec<u8> {
        respond::encode(q, rcode, false, self.may_recurse(client), Body::default())
    }

    /// Asks the upstreams: the whole question, or the CNAME targets of our partial answer.
    async fn forward(&self, pending: Pending, client: IpAddr) -> Vec<u8> {
        let Pending {
            query,
            request,
            raw,
            then,
        } = pending;
        let partial = match then {
            Later::Static => return self.static_answer(&query, &raw, client).await,
            Later::Stub(servers) => return self.stub_answer(&query, &request, &servers).await,
            Later::Forward => None,
            Later::Resolve(records) => Some(*records),
        };
        let Some(forwarder) = &self.forwarder else {
            return respond::encode(&query, ResponseCode::Refused, false, false, Body::default());
        };
        self.metrics.forwarded.inc();
        match partial {
            None => match forwarder.forward(&request, query.transport).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::debug!(%error, "forwarding failed");
                    respond::encode(&query, ResponseCode::ServFail, false, true, Body::default())
                }
            },
            Some(mut records) => {
                let flatten = records.flatten.take();
                // Every outside target at once, all within one deadline, and only so many: one
                // question never holds a forward slot longer than one upstream timeout.
                let mut targets = std::mem::take(&mut records.external);
                targets.truncate(MAX_OUTSIDE_TARGETS);
                let deadline = tokio::time::Instant::now() + self.upstream_timeout;
                let asked = targets.iter().map(|(name, t)| {
                    tokio::time::timeout_at(deadline, forwarder.resolve(name.clone(), *t))
                });
                let results = futures_util::future::join_all(asked).await;
                let mut failed = 0usize;
                for ((_, t), result) in targets.iter().zip(results) {
                    let m = match result {
                        // SERVFAIL is a failure. REFUSED (an upstream that serves other
                        // zones only) leaves the target without data, as in SkyDNS's table.
                        Ok(Ok(m)) if m.metadata.response_code != ResponseCode::ServFail => m,
                        Ok(Ok(m)) => {
                            failed += 1;
                            tracing::debug!(rcode = %m.metadata.response_code, "resolving a CNAME target failed upstream");
                            continue;
                        }
                        Ok(Err(error)) => {
                            failed += 1;
                            tracing::debug!(%error, "resolving a CNAME target failed");
                            continue;
                        }
                        Err(_) => {
                            failed += 1;
                            tracing::debug!("resolving a CNAME target timed out");
                            continue;
                        }
                    };
                    match &flatten {
                        // Several targets: their addresses are the name's own, no CNAME.
                        Some(owner) => records.answers.extend(
                            m.answers
                                .into_iter()
                                .filter(|r| r.record_type() == *t)
                                .map(|mut r| {
                                    r.name = owner.clone();
                                    r
                                }),
                        ),
                        None => records.answers.extend(m.answers),
                    }
                }
                // A CNAME only where its target resolved; nothing left: NODATA.
                crate::authority::prune_dangling_cnames(&mut records.answers);
                let dnssec = query.dnssec_ok() && self.signers.signs(&query.name);
                let signers = dnssec.then_some(&*self.signers);
                if records.answers.is_empty() {
                    // The upstreams did not answer (rather than answering "nothing"): say so,
                    // instead of an empty answer a resolver would cache as NODATA.
                    if failed > 0 && failed == targets.len() {
                        return respond::encode(
                            &query,
                            ResponseCode::ServFail,
                            false,
                            true,
                            Body::default(),
                        );
                    }
                    let nodata = match records.soa.take() {
                        Some(soa) => self.with_dnssec(Answer::NoData(soa), &query, dnssec),
                        None => Answer::Records(Records::default()),
                    };
                    let body = Body::of(&nodata, 0).signed(signers);
                    return respond::encode(&query, ResponseCode::NoError, true, true, body);
                }
                records.rotate = false;
                let body = Body::records(&records, 0).signed(signers);
                respond::encode(&query, ResponseCode::NoError, true, true, body)
            }
        }
    }
}

/// Signed answers that may wait at once for a worker to sign their other rotations.
pub const MAX_QUEUED_SIGNING: usize = 256;

/// The most CNAME targets outside the served domains that one question resolves upstream.
pub const MAX_OUTSIDE_TARGETS: usize = 8;

impl Handler {
    /// DNSSEC's part of a local answer: the DNSKEY set at a signed domain's apex (asked with or
    /// without DO), and with DO the NSEC that proves a negative answer ([`crate::dnssec::sign::secure`]).
    fn with_dnssec(&self, answer: Answer, q: &Query, dnssec: bool) -> Answer {
        // Names compare without regard to letter case: no lower-case copy is needed.
        let answer = match answer {
            Answer::NoData(_) if q.qtype == hickory_proto::rr::RecordType::DNSKEY => match self
                .signers
                .dnskeys(&q.name, &q.name, self.authority.default_ttl)
            {
                Some(keys) => Answer::Records(Records {
                    answers: keys,
                    ..Records::default()
                }),
                None => answer,
            },
            other => other,
        };
        if !dnssec {
            return answer;
        }
        let apex = self.signers.zones().any(|z| *z == q.name);
        secure(answer, &q.name, q.qtype, apex)
    }

    /// The static zones' catalog answers a question inside them.
    async fn static_answer(&self, query: &Query, raw: &[u8], client: IpAddr) -> Vec<u8> {
        let zones = self.zones.load_full();
        let answer = zones
            .answer(
                raw,
                client,
                query.transport,
                query.limit(),
                query.edns.is_some(),
            )
            .await;
        answer.unwrap_or_else(|| {
            respond::encode(query, ResponseCode::ServFail, false, false, Body::default())
        })
    }

    /// A stub zone's nameservers answer a question inside it.
    async fn stub_answer(
        &self,
        query: &Query,
        request: &Message,
        servers: &[std::net::SocketAddr],
    ) -> Vec<u8> {
        self.metrics.forwarded.inc();
        let timeout = self.upstream_timeout;
        match crate::upstream::stub_forward(servers, request, query.transport, timeout).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(%error, "stub zone forwarding failed");
                respond::encode(query, ResponseCode::ServFail, false, true, Body::default())
            }
        }
    }
}

/// Lowers the calling thread's CPU priority (nice 10) once: the workers that build large
/// answers yield to the receive loops whenever both want the CPU.
fn lower_priority() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    LOWERED.with(|done| {
        if !done.replace(true) {
            #[cfg(target_os = "linux")]
            // SAFETY: setpriority on this thread's own id; failure only leaves the priority as is.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
        }
    });
}

fn proto_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

fn rcode_name(rcode: ResponseCode) -> &'static str {
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

/// A negative answer made provable for a query with DO: the SOA and the NSEC black lie in the
/// authority section, and NOERROR for a name that does not exist (compact denial: the NSEC's
/// NXNAME says so). Other answers are as they were.
pub fn secure(
    answer: Answer,
    qname: &hickory_proto::rr::Name,
    qtype: hickory_proto::rr::RecordType,
    apex: bool,
) -> Answer {
    let (soa, exists) = match answer {
        Answer::NoData(soa) => (soa, true),
        Answer::NxDomain(soa) => (soa, false),
        other => return other,
    };
    let nsec = crate::dnssec::sign::denial(qname, qtype, exists, apex, soa.ttl);
    Answer::Records(Records {
        authorities: vec![soa, nsec],
        ..Records::default()
    })
}
