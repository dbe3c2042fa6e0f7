//! Our own answers to bytes: a cache hit patched for the query that asks; a new answer with its
//! DNSSEC part (the DNSKEY set at a signed apex; with DO, the NSEC that proves a negative
//! answer), kept in the answer cache under its question and encoded rotation by rotation; and a
//! refusal (an rcode, no records). Every answer built here is counted once.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::rr::{Name, RecordType};

use super::cache::{stale_key, Cached};
use super::counters::rcode_name;
use super::decide::Refusal;
use super::handler::Handler;
use super::limits::lower_priority;
use super::respond::{self, Body};
use crate::authority::{Answer, Dep, Records};
use crate::proto::edns::Ede;
use crate::proto::{wire, Query};

impl Handler {
    /// A cached answer for a question (by its cache key), patched for the query. A miss is
    /// counted only on the first look (`first`): a worker's second look is not another miss.
    pub(super) fn hit(
        &self,
        key: &[u8],
        patch: &wire::Patch<'_>,
        client: IpAddr,
        first: bool,
    ) -> Option<Vec<u8>> {
        let snap = self.view.peek();
        let snap = snap.as_ref()?;
        // While the view is stale our answers are the ones built stale (EDE 3, TTLs capped);
        // an upstream's answer is the same either way.
        let found = if self.view.freshness().serves_stale() {
            self.cache
                .get(&stale_key(key), snap)
                .or_else(|| self.cache.get(key, snap).filter(|e| e.is_forwarded()))
        } else {
            self.cache.get(key, snap)
        };
        let Some(entry) = found else {
            if first {
                self.metrics.cache_misses.inc();
            }
            return None;
        };
        if entry.is_stale() {
            self.metrics.stale_answers.inc();
        }
        let recurse = self.may_recurse(client);
        if entry.is_forwarded() {
            // An upstream's answer, for clients that may have names forwarded only.
            if !recurse {
                return None;
            }
            self.metrics.forwarded.inc();
            if let Some(forwarder) = &self.forwarder {
                forwarder.count_cache_hit();
            }
        }
        self.metrics.cache_hits.inc();
        let mut bytes = entry.next_variant().to_vec();
        entry.age(&mut bytes);
        wire::patch(&mut bytes, patch, recurse);
        entry.counter.inc();
        Some(bytes)
    }

    /// [`Handler::hit`] for a parsed query (one the quick parser left to the full one, or a
    /// worker's second look).
    pub(super) fn hit_parsed(&self, q: &Query, client: IpAddr, first: bool) -> Option<Vec<u8>> {
        self.hit(
            &wire::key_of_query(q),
            &wire::Patch::of_query(q),
            client,
            first,
        )
    }

    /// Our answer to `q`, as bytes: its DNSSEC part added, kept in the cache (unless it waited on
    /// an upstream), encoded in the next rotation, counted. `snap` is the snapshot the answer
    /// was decided from: the entry is kept under its generation, never a newer one (a write
    /// that lands between the decision and this would otherwise never retire it).
    pub(super) fn local(
        &self,
        q: &Query,
        client: IpAddr,
        answer: Answer,
        dep: Dep,
        snap: Option<&lodestar::Snapshot>,
        started: Instant,
    ) -> Vec<u8> {
        let dnssec = q.dnssec_ok() && self.signers.signs(&q.name);
        let answer = self.with_dnssec(answer, q, dnssec);
        let signers = dnssec.then(|| self.signers.clone());
        let rcode = respond::rcode_of(&answer);
        let recurse = self.may_recurse(client);
        let cacheable = !matches!(&answer, Answer::Records(r) if !r.external.is_empty());
        // A stale view's answers from etcd's records say so, and bring clients back soon.
        let stale_view = self.view.freshness().serves_stale();
        let stale = (stale_view && dep != Dep::Static).then_some(self.stale_ttl);
        if stale.is_some() {
            self.metrics.stale_answers.inc();
        }
        let bytes = match (cacheable, snap) {
            (true, Some(snap)) => {
                let key = wire::key_of_query(q);
                let key = if stale_view { stale_key(&key) } else { key };
                let counter = self.metrics.counter(
                    &q.qtype.to_string(),
                    rcode_name(rcode),
                    q.transport.name(),
                    &self.zone_label(&q.name),
                );
                let built = Cached::new(
                    snap.generation(),
                    dep,
                    q.normalised(),
                    answer,
                    counter,
                    signers,
                )
                .stale(stale);
                if dnssec {
                    // Encoded before anyone can find it, so no hit ever signs.
                    built.first_variant();
                }
                let entry = self.cache.offer(&key, built);
                let mut bytes = if dnssec {
                    // Signed: this answer now, the other rotations by a worker after it.
                    let bytes = entry.first_variant().to_vec();
                    self.prepare_later(entry.clone());
                    bytes
                } else {
                    entry.next_variant().to_vec()
                };
                wire::patch(&mut bytes, &wire::Patch::of_query(q), recurse);
                bytes
            }
            _ => {
                let rotation = self.rotation.fetch_add(1, Ordering::Relaxed);
                let body = Body::of(&answer, rotation)
                    .signed(signers.as_deref())
                    .stale(stale);
                respond::encode(q, rcode, true, recurse, body)
            }
        };
        self.count(q, rcode, started);
        bytes
    }

    /// No data: the refusal's rcode (a forwarding loop logged once and counted).
    pub(super) fn refuse(
        &self,
        q: &Query,
        why: Refusal,
        client: IpAddr,
        started: Instant,
    ) -> Vec<u8> {
        if why == Refusal::Loop {
            self.metrics.forward_loops.inc();
            if !self.loop_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    qname = %q.name,
                    %client,
                    "forwarding loop: a question this server forwarded came back to it; answering SERVFAIL instead of forwarding it again (check --upstream and the upstreams' own forwarders); logged once"
                );
            }
        }
        let rcode = why.rcode();
        let ede = match why {
            Refusal::NotOurs if self.forwarder.is_some() && !self.allowed(client) => {
                Some(Ede::Prohibited)
            }
            Refusal::NotOurs => Some(Ede::NotAuthoritative),
            Refusal::NotReady => Some(Ede::NotReady),
            Refusal::Loop => Some(Ede::Other("forwarding loop")),
            Refusal::TooShort | Refusal::BadVersion | Refusal::ZoneTransfer => None,
        };
        let bytes = respond::error(q, rcode, self.may_recurse(client), ede);
        self.count(q, rcode, started);
        bytes
    }

    /// DNSSEC's part of a local answer: the DNSKEY set at a signed domain's apex (asked with or
    /// without DO), and with DO the NSEC that proves a negative answer.
    pub(super) fn with_dnssec(&self, answer: Answer, q: &Query, dnssec: bool) -> Answer {
        // Names compare without regard to letter case: no lower-case copy is needed.
        let answer = match answer {
            Answer::NoData(_) if q.qtype == RecordType::DNSKEY => {
                match self
                    .signers
                    .dnskeys(&q.name, &q.name, self.authority.default_ttl)
                {
                    Some(keys) => Answer::Records(Records {
                        answers: keys,
                        ..Records::default()
                    }),
                    None => answer,
                }
            }
            other => other,
        };
        if !dnssec {
            return answer;
        }
        let apex = self.signers.zones().any(|z| *z == q.name);
        secure(answer, &q.name, q.qtype, apex)
    }

    /// Encodes (and signs) the other rotations of a signed answer on a blocking worker, after the
    /// answer that built it went out. Bounded: past [`super::limits::MAX_QUEUED_SIGNING`] entries
    /// waiting, the others are not queued (their first rotation answers until rebuilt).
    fn prepare_later(&self, entry: Arc<Cached>) {
        if entry.prepared() {
            return;
        }
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
}

/// A negative answer made provable for a query with DO: the SOA and the NSEC black lie in the
/// authority section, and NOERROR for a name that does not exist (compact denial: the NSEC's
/// NXNAME says so). Other answers are as they were.
pub fn secure(answer: Answer, qname: &Name, qtype: RecordType, apex: bool) -> Answer {
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use hickory_proto::op::Message;
    use lodestar::{Snapshot, View};

    use super::*;
    use crate::authority::stub::StubZones;
    use crate::authority::zones::StaticZones;
    use crate::authority::Authority;
    use crate::authority::Budget;
    use crate::pipeline::counters::Counters;
    use crate::pipeline::decide::{decide, Decision};
    use crate::pipeline::limits::Limits;
    use crate::pipeline::Step;
    use crate::proto::edns::ForwardMark;
    use crate::proto::Transport;

    /// A write that lands between the decision and the caching of an answer must retire it:
    /// the answer is kept under the generation it was decided from, not the newest one.
    #[test]
    fn an_answer_is_kept_under_the_generation_it_was_decided_from() {
        let view = Arc::new(View::new());
        let mut s =
            Snapshot::from_values([("dev/webapp/y/1", br#"{"host":"10.0.0.9"}"#.as_slice(), 1)]);
        view.publish(&mut s, true);
        let handler = Handler::new(
            view.clone(),
            ForwardMark::new(),
            Authority::webapp_dev(),
            StaticZones::default(),
            None,
            Vec::new(),
            Counters::new(),
            Limits {
                workers: 1,
                admitted: 10,
                forwards: 10,
                log_queries: false,
                upstream_timeout: std::time::Duration::from_secs(1),
                ndots: 0,
                stale_ttl: 5,
            },
        );
        let mut m = Message::query();
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii("x.webapp.dev.").unwrap(),
            RecordType::A,
        ));
        let raw = m.to_vec().unwrap();
        let (query, _) = Query::parse(&raw, Transport::Udp).unwrap();
        // Decided from the snapshot before x.webapp.dev was written: NXDOMAIN.
        let before = view.load();
        let client = Ipv4Addr::LOCALHOST.into();
        let who = handler.client(&query, client);
        let zones = StaticZones::default();
        let stubs = StubZones::default();
        let Decision::Local { answer, dep } = decide(
            &query,
            before.as_deref(),
            &handler.authority,
            &zones,
            &stubs,
            who,
            Budget::INLINE,
        ) else {
            panic!("a local answer");
        };
        // ... and the write lands before the answer is kept.
        s.put("dev/webapp/x/1", br#"{"host":"10.0.0.1"}"#, 2);
        view.publish(&mut s, false);
        let stale = handler.local(
            &query,
            client,
            answer,
            dep,
            before.as_deref(),
            Instant::now(),
        );
        assert_eq!(
            Message::from_vec(&stale).unwrap().metadata.response_code,
            hickory_proto::op::ResponseCode::NXDomain
        );
        let Step::Reply(bytes) = handler.handle(&raw, client, Transport::Udp) else {
            panic!("answered at once");
        };
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(
            m.answers
                .iter()
                .map(|r| r.data.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.1"],
            "the next query is answered from the new snapshot, not the kept NXDOMAIN"
        );
    }
}
