//! Answers that wait on other servers, in a task of their own: a name that is not ours (the
//! upstreams), our answer whose CNAMEs lead outside our domains (their targets resolved
//! upstream, together, within one deadline), a name in a stub zone (its nameservers), a name in
//! a static zone (hickory-server's catalog). At most `forwards` of them at once; past that,
//! REFUSED at once (counted as shed).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};

use super::cache::Cached;
use super::counters::rcode_name;
use super::decide::Wait;
use super::handler::Handler;
use super::limits::MAX_OUTSIDE_TARGETS;
use super::respond::{self, Body};
use crate::authority::{prune_dangling_cnames, Answer, Records};
use crate::proto::edns::Ede;
use crate::proto::{wire, Query};
use crate::upstream::{cache_ttl, Forwarder};

impl Handler {
    /// The answer to `query` once what it waits on has answered, counted.
    pub(super) async fn wait(
        &self,
        query: Query,
        request: Message,
        client: IpAddr,
        started: Instant,
        wait: Wait,
    ) -> Vec<u8> {
        let bytes = match self.forwards.clone().try_acquire_owned() {
            Ok(_permit) => match wait {
                Wait::Static => self.static_answer(&query, &request, client).await,
                Wait::Stub(servers) => self.stub_answer(&query, &request, &servers).await,
                Wait::Forward | Wait::Resolve(_) => match &self.forwarder {
                    None => respond::error(
                        &query,
                        ResponseCode::Refused,
                        false,
                        Some(Ede::NotAuthoritative),
                    ),
                    Some(forwarder) => {
                        self.metrics.forwarded.inc();
                        match wait {
                            Wait::Resolve(records) => {
                                self.resolve(&query, *records, forwarder).await
                            }
                            _ => self.forward(&query, &request, forwarder).await,
                        }
                    }
                },
            },
            Err(_) => {
                self.metrics.shed.inc();
                respond::error(
                    &query,
                    ResponseCode::Refused,
                    self.may_recurse(client),
                    Some(Ede::OVERLOADED),
                )
            }
        };
        let rcode = ResponseCode::from_low(bytes.get(3).map_or(0, |b| b & 0x0f));
        self.count(&query, rcode, started);
        bytes
    }

    /// The upstreams answer the whole question; SERVFAIL when none does. An answer the
    /// forwarder may cache is also kept in the answer cache, so that the same question is
    /// answered on the receive loop until its TTL runs out.
    async fn forward(&self, query: &Query, request: &Message, forwarder: &Forwarder) -> Vec<u8> {
        match forwarder.forward(request, query.transport).await {
            Ok(bytes) => {
                self.keep_forwarded(query, &bytes);
                bytes
            }
            Err(error) => {
                tracing::debug!(%error, "forwarding failed");
                let why = Body::default().with_ede(Some(Ede::NoReachableAuthority));
                respond::encode(query, ResponseCode::ServFail, false, true, why)
            }
        }
    }

    /// Keeps an upstream's answer to `query` in the answer cache for its TTL (as the forwarder
    /// keeps it: not a truncated one or a failure). Not one asked with checking disabled: that
    /// one may not go to a client that wants it checked.
    fn keep_forwarded(&self, query: &Query, bytes: &[u8]) {
        if query.checking_disabled {
            return;
        }
        let Ok(answer) = Message::from_vec(bytes) else {
            return;
        };
        let (Some(ttl), Some(ttls)) = (cache_ttl(&answer), wire::ttl_offsets(bytes)) else {
            return;
        };
        let key = wire::key_of_query(query);
        let counter = self.metrics.counter(
            &query.qtype.to_string(),
            rcode_name(answer.metadata.response_code),
            query.transport.name(),
            &self.zone_label(&query.name),
        );
        let kept = Cached::forwarded(query.normalised(), bytes.to_vec(), ttls, ttl, counter);
        self.cache.insert(&key, kept);
    }

    /// Our answer with its CNAME targets outside our domains resolved: every one at once, all
    /// within one deadline, and only so many, so that one question never holds a forward slot
    /// longer than one upstream timeout. SERVFAIL when every upstream failed, rather than an
    /// empty answer a resolver would cache as NODATA.
    async fn resolve(&self, query: &Query, mut records: Records, forwarder: &Forwarder) -> Vec<u8> {
        let flatten = records.flatten.take();
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
                // SERVFAIL is a failure. REFUSED (an upstream that serves other zones only)
                // leaves the target without data, as in SkyDNS's table.
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
        prune_dangling_cnames(&mut records.answers);
        let dnssec = query.dnssec_ok() && self.signers.signs(&query.name);
        let signers = dnssec.then_some(&*self.signers);
        if records.answers.is_empty() {
            if failed > 0 && failed == targets.len() {
                let why = Body::default().with_ede(Some(Ede::NoReachableAuthority));
                return respond::encode(query, ResponseCode::ServFail, false, true, why);
            }
            let nodata = match records.soa.take() {
                Some(soa) => self.with_dnssec(Answer::NoData(soa), query, dnssec),
                None => Answer::Records(Records::default()),
            };
            let body = Body::of(&nodata, 0).signed(signers);
            return respond::encode(query, ResponseCode::NoError, true, true, body);
        }
        records.rotate = false;
        let body = Body::records(&records, 0).signed(signers);
        respond::encode(query, ResponseCode::NoError, true, true, body)
    }

    /// The static zones' catalog answers a question inside them.
    async fn static_answer(&self, query: &Query, request: &Message, client: IpAddr) -> Vec<u8> {
        let zones = self.zones.load_full();
        let answer = zones
            .answer(
                request,
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
        servers: &[SocketAddr],
    ) -> Vec<u8> {
        self.metrics.forwarded.inc();
        let timeout = self.upstream_timeout;
        match crate::upstream::stub_forward(servers, request, query.transport, timeout).await {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::debug!(%error, "stub zone forwarding failed");
                let why = Body::default().with_ede(Some(Ede::NoReachableAuthority));
                respond::encode(query, ResponseCode::ServFail, false, true, why)
            }
        }
    }
}
