//! The [`Handler`] (everything needed to answer) and its entry on a receive loop,
//! [`Handler::handle`]: a cache hit, or a small miss, answered at once; anything else handed on
//! as a [`Job`] that `worker` finishes away from the loop. The bytes are read once by `proto`
//! (the cache key of a plain query) and parsed at most once; `decide` runs once.

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use ipnet::IpNet;
use lodestar::View;
use tokio::sync::Semaphore;

use super::cache::AnswerCache;
use super::counters::Counters;
use super::decide::{decide, Client, Decision};
use super::job::{Job, Step, Work};
use super::limits::{Limits, MAX_QUEUED_SIGNING};
use super::respond;
use crate::authority::stub::{Refused, StubZones};
use crate::authority::zones::StaticZones;
use crate::authority::{Authority, Budget};
use crate::dnssec::Signers;
use crate::proto::edns::{Ede, ForwardMark};
use crate::proto::wire::Received;
use crate::proto::{Query, Transport};
use crate::upstream::Forwarder;

/// Everything needed to answer.
pub struct Handler {
    pub(super) view: Arc<View>,
    pub(super) authority: Authority,
    pub(super) zones: arc_swap::ArcSwap<StaticZones>,
    pub(super) forwarder: Option<Arc<Forwarder>>,
    pub(super) allow_recursion: Vec<IpNet>,
    pub(super) metrics: Arc<Counters>,
    pub(super) cache: AnswerCache,
    pub(super) workers: Arc<Semaphore>,
    /// Background work (the other rotations of a signed answer): one at a time.
    pub(super) background: Arc<Semaphore>,
    /// Signed answers waiting for their other rotations, at most [`MAX_QUEUED_SIGNING`].
    pub(super) signing_queue: Arc<Semaphore>,
    pub(super) admitted: Arc<Semaphore>,
    pub(super) forwards: Arc<Semaphore>,
    pub(super) rotation: AtomicUsize,
    pub(super) log_queries: bool,
    pub(super) upstream_timeout: std::time::Duration,
    /// The stub zones of one generation of the view, and the ones refused.
    pub(super) stub_zones: arc_swap::ArcSwap<(u64, Arc<StubZones>, Vec<Refused>)>,
    /// Held by the one thread that reads a new generation's stub zones.
    pub(super) stub_recompute: std::sync::Mutex<()>,
    /// DNSSEC keys of the signed domains (none: nothing is signed).
    pub(super) signers: Arc<Signers>,
    /// The mark this server's forwarded questions carry (shared with the forwarder).
    pub(super) mark: ForwardMark,
    /// Whether a forwarding loop was logged already.
    pub(super) loop_logged: std::sync::atomic::AtomicBool,
    /// `--ndots`.
    pub(super) ndots: u8,
    /// `--stale-ttl`.
    pub(super) stale_ttl: u32,
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
            stale_ttl: limits.stale_ttl,
        }
    }

    /// Signs the answers of the signed domains (`--dnssec-key`) for queries with DO.
    pub fn signing(mut self, signers: Arc<Signers>) -> Handler {
        self.signers = signers;
        self
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

    /// RRset signatures in the signature cache.
    pub fn cached_signatures(&self) -> u64 {
        self.signers.cached()
    }
}

impl Handler {
    /// The receive loop's part: a cached answer now, a small answer now, else a job for
    /// [`Handler::complete`].
    pub fn handle(&self, raw: &[u8], client: IpAddr, transport: Transport) -> Step {
        let started = Instant::now();
        let received = Received::new(raw, transport);
        let looked = received.lookup();
        let quick = looked.is_some();
        let cached = looked.and_then(|(key, patch)| self.hit(key.as_slice(), &patch, client, true));
        let hit = |bytes| {
            self.metrics.answered_in(started.elapsed());
            Step::Reply(bytes)
        };
        let step = match cached {
            Some(bytes) => hit(bytes),
            None => match Query::parse(raw, transport) {
                // A query the quick parser left to the full one may still be in the cache.
                Ok((query, request)) => match (!quick)
                    .then(|| self.hit_parsed(&query, client, true))
                    .flatten()
                {
                    Some(bytes) => hit(bytes),
                    None => self.miss(query, request, client, started),
                },
                Err(m) => {
                    self.metrics.malformed.inc();
                    respond::malformed(&m).map_or(Step::Drop, Step::Reply)
                }
            },
        };
        if let Step::Reply(bytes) = &step {
            self.sent(client, transport, raw.len(), started, bytes);
        }
        step
    }

    /// A query not in the cache, parsed (once): decided within the small budget, acted on.
    fn miss(&self, query: Query, request: Message, client: IpAddr, started: Instant) -> Step {
        let who = self.client(&query, client);
        let snap = self.view.load();
        let stubs = self.stubs(snap.as_deref());
        let zones = self.zones.load();
        let decision = decide(
            &query,
            snap.as_deref(),
            &self.authority,
            &zones,
            &stubs,
            who,
            Budget::INLINE,
        );
        let work = match decision {
            Decision::Local { answer, dep } => {
                let bytes = self.local(&query, client, answer, dep, snap.as_deref(), started);
                return Step::Reply(bytes);
            }
            Decision::Refuse(why) => return Step::Reply(self.refuse(&query, why, client, started)),
            Decision::Defer => {
                self.metrics.large.inc();
                Work::Local
            }
            Decision::Wait(wait) => Work::Wait(wait),
        };
        match self.admitted.clone().try_acquire_owned() {
            Ok(permit) => Step::Later(Box::new(Job {
                query,
                request,
                client,
                started,
                work,
                _admitted: permit,
            })),
            Err(_) => {
                self.metrics.shed.inc();
                let bytes = respond::error(
                    &query,
                    ResponseCode::ServFail,
                    self.may_recurse(client),
                    Some(Ede::OVERLOADED),
                );
                Step::Reply(bytes)
            }
        }
    }

    /// Whether `client` may have names forwarded (a forwarder, and `--allow-recursion`).
    pub(super) fn may_recurse(&self, client: IpAddr) -> bool {
        self.forwarder.is_some() && self.allowed(client)
    }

    /// Whether `client` is inside `--allow-recursion` (forwarding and stub zones are for them).
    pub(super) fn allowed(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.allow_recursion.iter().any(|net| net.contains(&client))
    }

    /// The stub zones of `snap`'s generation, read from it once per generation; what changed
    /// from the generation before is logged (one thread recomputes, the others keep the last).
    pub(super) fn stubs(&self, snap: Option<&lodestar::Snapshot>) -> Arc<StubZones> {
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

    /// Who asks, as `decide` needs it.
    pub(super) fn client(&self, q: &Query, client: IpAddr) -> Client {
        let may_recurse = self.may_recurse(client);
        Client {
            allowed: self.allowed(client),
            may_recurse,
            looped: may_recurse && self.mark.looped(q.edns.as_ref()),
            short: usize::from(q.name.num_labels()) < usize::from(self.ndots),
            signed: q.dnssec_ok() && self.signers.signs(&q.name),
        }
    }
}
