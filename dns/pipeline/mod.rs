//! The pipeline: what happens to one query between the socket and the answer, once.
//!
//! ```text
//! bytes -> proto (quick view, cache key) -> cache hit? -> patched bytes
//!                 \-> Query (parsed once) -> decide -> Local   -> local (DNSSEC part, cache) -> respond -> bytes
//!                                                  -> Refuse  -> respond -> bytes
//!                                                  -> Defer   -> a worker: decide::local (full budget) -> ...
//!                                                  -> Wait    -> wait (upstream, stub, static zones) -> bytes
//! ```
//!
//! [`Handler::handle`] runs on the receive loops and does only what is cheap: a cache hit is
//! patched and sent at once, and a miss is answered at once when it fits a small budget
//! ([`Budget::INLINE`]). Everything else becomes a [`Job`] carrying the parsed query, which leaves
//! the receive loop: [`Handler::complete`] builds a large (or signed) answer on a bounded pool of
//! blocking workers at a lower CPU priority, and waits for other servers, so that neither delays
//! anybody else. Jobs admitted and not yet finished are bounded; past that a query gets SERVFAIL
//! at once (counted as shed).
//!
//! A tier below `net`, `http` and `main`: it imports `authority`, `upstream`, `dnssec`, `proto`
//! and `metrics`, and none of them imports it. Files: `handler` (the two entries), `decide` (who
//! answers), `local` (our answer to bytes, the answer cache's use), `wait` (what waits on other
//! servers), `cache` (the answer cache), `respond` (the one writer), `counters` (what it counts).

mod cache;
mod counters;
mod decide;
mod handler;
mod local;
mod respond;
mod wait;

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Name;
use ipnet::IpNet;
use lodestar::View;
use tokio::sync::Semaphore;

use crate::authority::stub::{Refused, StubZones};
use crate::authority::zones::StaticZones;
use crate::authority::{Authority, Budget};
use crate::dnssec::Signers;
use crate::proto::edns::ForwardMark;
use crate::proto::Transport;
use crate::upstream::Forwarder;
use cache::AnswerCache;

pub use counters::Counters;
pub use handler::Step;

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
    stub_zones: arc_swap::ArcSwap<(u64, Arc<StubZones>, Vec<Refused>)>,
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

/// Signed answers that may wait at once for a worker to sign their other rotations.
pub const MAX_QUEUED_SIGNING: usize = 256;

/// The most CNAME targets outside the served domains that one question resolves upstream.
pub const MAX_OUTSIDE_TARGETS: usize = 8;

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

    /// The `zone` label of a question: its served domain or static zone, else `.`.
    fn zone_label(&self, name: &Name) -> String {
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

    /// Counts an answer with its rcode.
    fn count(&self, q: &crate::proto::Query, rcode: ResponseCode, started: Instant) {
        self.metrics.observe(
            &q.qtype.to_string(),
            rcode_name(rcode),
            q.transport.name(),
            &self.zone_label(&q.name),
            started.elapsed(),
        );
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

/// The budget a worker spends (for `local`).
const FULL: Budget = Budget::FULL;
