//! The pipeline's two entries: [`Handler::handle`] on a receive loop (a cache hit, or a small
//! miss, answered at once; anything else handed on as a [`Job`]), and [`Handler::complete`] away
//! from it (a worker for a large or signed answer, a task for an answer that waits on others).

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use tokio::sync::OwnedSemaphorePermit;

use super::decide::{self, decide, Client, Decision, Refusal, Wait};
use super::{lower_priority, respond, Handler, FULL};
use crate::authority::Budget;
use crate::proto::{wire, Query, Transport};

/// What the receive loop does with a packet.
pub enum Step {
    /// Send these bytes back now.
    Reply(Vec<u8>),
    /// Needs work: run [`Handler::complete`] away from the receive loop.
    Later(Box<Job>),
    /// Say nothing (not a query at all).
    Drop,
}

/// A parsed query admitted for work off the receive loop, and the work.
pub struct Job {
    query: Query,
    /// The size of the query as received (for the metrics).
    request_len: usize,
    /// The message as the client sent it: what goes upstream.
    request: Message,
    client: IpAddr,
    started: Instant,
    work: Work,
    _admitted: OwnedSemaphorePermit,
}

/// The work a [`Job`] carries: the decision that sent it off the receive loop.
enum Work {
    /// Our answer, with the full budget (or signed).
    Local,
    /// An answer that waits on others.
    Wait(Wait),
}

impl Handler {
    /// The receive loop's part: a cached answer now, a small answer now, else a job for
    /// [`Handler::complete`].
    pub fn handle(&self, raw: &[u8], client: IpAddr, transport: Transport) -> Step {
        let started = Instant::now();
        let step = match wire::quick_parse(raw) {
            Some(quick) => {
                let mut key = Vec::with_capacity(8 + quick.qname.len());
                wire::key_of(&quick, transport, &mut key);
                match self.hit(&key, &wire::Patch::of(raw, &quick), client, true) {
                    Some(bytes) => {
                        self.metrics
                            .latency
                            .observe(started.elapsed().as_secs_f64());
                        Step::Reply(bytes)
                    }
                    None => self.miss(raw, client, transport, started),
                }
            }
            None => self.miss(raw, client, transport, started),
        };
        if let Step::Reply(bytes) = &step {
            self.metrics
                .sizes(transport == Transport::Tcp, raw.len(), bytes.len());
            self.log(client, transport, started, bytes);
        }
        step
    }

    /// A query not in the cache: parsed (once), decided within the small budget, acted on.
    fn miss(&self, raw: &[u8], client: IpAddr, transport: Transport, started: Instant) -> Step {
        let (query, request) = match Query::parse(raw, transport) {
            Ok(parsed) => parsed,
            Err(m) => {
                self.metrics.malformed.inc();
                return respond::malformed(&m).map_or(Step::Drop, Step::Reply);
            }
        };
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
                return Step::Reply(self.local(&query, client, answer, dep, started))
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
                request_len: raw.len(),
                request,
                client,
                started,
                work,
                _admitted: permit,
            })),
            Err(_) => {
                self.metrics.shed.inc();
                let bytes =
                    respond::error(&query, ResponseCode::ServFail, self.may_recurse(client));
                Step::Reply(bytes)
            }
        }
    }

    /// Finishes a job off the receive loop: the answer's bytes, or `None` for silence.
    pub async fn complete(self: &std::sync::Arc<Self>, job: Box<Job>) -> Option<Vec<u8>> {
        let job = *job;
        let (client, transport, started) = (job.client, job.query.transport, job.started);
        let request_len = job.request_len;
        let bytes = match job.work {
            Work::Wait(wait) => {
                self.wait(job.query, job.request, client, started, wait)
                    .await
            }
            Work::Local => {
                let _worker = self.workers.clone().acquire_owned().await.ok()?;
                let this = self.clone();
                let (query, request) = (job.query, job.request);
                let decided = tokio::task::spawn_blocking(move || {
                    lower_priority();
                    this.worker(query, request, client, started)
                })
                .await
                .ok()?;
                match decided {
                    Ok(bytes) => bytes,
                    Err(waiting) => {
                        let (query, request, wait) = *waiting;
                        self.wait(query, request, client, started, wait).await
                    }
                }
            }
        };
        self.metrics
            .sizes(transport == Transport::Tcp, request_len, bytes.len());
        self.log(client, transport, started, &bytes);
        Some(bytes)
    }

    /// A worker's part of a local answer: the cache again (another job may have built it while
    /// this one waited), else the view's answer with the full budget. The answer's bytes, or
    /// what it still waits on (CNAME targets outside the domains).
    #[allow(clippy::type_complexity)]
    fn worker(
        &self,
        query: Query,
        request: Message,
        client: IpAddr,
        started: Instant,
    ) -> Result<Vec<u8>, Box<(Query, Message, Wait)>> {
        let mut key = Vec::with_capacity(8 + query.name.len());
        wire::key_of_query(&query, &mut key);
        if let Some(bytes) = self.hit(&key, &wire::Patch::of_query(&query), client, false) {
            return Ok(bytes);
        }
        let snap = self.view.load();
        let who = self.client(&query, client);
        match decide::local(&query, snap.as_deref(), &self.authority, who, FULL) {
            Decision::Local { answer, dep } => Ok(self.local(&query, client, answer, dep, started)),
            Decision::Refuse(why) => Ok(self.refuse(&query, why, client, started)),
            Decision::Wait(wait) => Err(Box::new((query, request, wait))),
            // Not with the full budget; answered as a failure should it ever happen.
            Decision::Defer => Ok(self.refuse(&query, Refusal::NotReady, client, started)),
        }
    }

    /// Who asks, as `decide` needs it.
    fn client(&self, q: &Query, client: IpAddr) -> Client {
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
