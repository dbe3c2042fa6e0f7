//! One request in, one response out: parsing, deciding who answers, and encoding within limits.
//!
//! [`Handler::handle`] is synchronous and does no I/O: it answers from the snapshot or a static
//! zone, refuses, or returns a [`Pending`] that needs the upstreams ([`Handler::finish`]). The
//! socket loops stay thin: they call `handle`, send what it gives, and spawn only for `Pending`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use ipnet::IpNet;
use lodestar::View;

use crate::answer::{Answer, Authority, Records};
use crate::cache::{AnswerCache, Cached};
use crate::forward::{Forwarder, Transport};
use crate::metrics::Metrics;
use crate::wire::{self, Quick};
use crate::zones::StaticZones;

/// The payload size we advertise and the most we send over UDP, whatever a client offers
/// (1232: the DNS flag day 2020 figure that avoids IP fragmentation).
const OUR_UDP_PAYLOAD: u16 = 1232;

/// Everything needed to answer.
pub struct Handler {
    /// The watched view.
    pub view: Arc<View>,
    /// Served domains and defaults.
    pub authority: Authority,
    /// Zones from files.
    pub zones: StaticZones,
    /// Upstreams; `None` with `--no-forward`.
    pub forwarder: Option<Forwarder>,
    /// Clients that may use forwarding.
    pub allow_recursion: Vec<IpNet>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    rotation: AtomicUsize,
    cache: AnswerCache,
}

/// At most this many rotations of one answer are encoded.
const MAX_VARIANTS: usize = 16;

/// What to do with a packet.
pub enum Step {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Needs the upstreams: call [`Handler::finish`].
    Forward(Box<Pending>),
    /// Say nothing (not a query at all).
    Drop,
}

/// A request that needs the upstreams.
pub struct Pending {
    request: Message,
    raw: Vec<u8>,
    transport: Transport,
    started: Instant,
    /// `None`: forward the whole query. `Some`: our answer, with CNAME targets to resolve upstream.
    partial: Option<(Message, Records)>,
}

impl Handler {
    /// Creates a handler.
    pub fn new(
        view: Arc<View>,
        authority: Authority,
        zones: StaticZones,
        forwarder: Option<Forwarder>,
        allow_recursion: Vec<IpNet>,
        metrics: Arc<Metrics>,
    ) -> Handler {
        Handler {
            view,
            authority,
            zones,
            forwarder,
            allow_recursion,
            metrics,
            rotation: AtomicUsize::new(0),
            cache: AnswerCache::default(),
        }
    }

    fn may_recurse(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.forwarder.is_some() && self.allow_recursion.iter().any(|net| net.contains(&client))
    }

    /// Decides what to do with one packet from `client`.
    pub fn handle(&self, raw: &[u8], client: IpAddr, transport: Transport) -> Step {
        let started = Instant::now();
        // Hot path: a plain query whose answer is ours is encoded once per snapshot generation.
        if let Some(q) = wire::quick_parse(raw) {
            if let Some(step) = self.cached(raw, &q, client, transport, started) {
                return step;
            }
        }
        self.full(raw, client, transport, started)
    }

    /// Answers from the cache, filling it on a miss; `None` when the answer is not one to cache
    /// (not ours, forwarding needed, nothing loaded yet...).
    fn cached(
        &self,
        raw: &[u8],
        q: &Quick<'_>,
        client: IpAddr,
        transport: Transport,
        started: Instant,
    ) -> Option<Step> {
        let generation = self.view.generation();
        if generation == 0 || q.qclass != u16::from(DNSClass::IN) {
            return None;
        }
        let limit = udp_limit(transport, q.edns);
        let mut key = Vec::with_capacity(8 + q.qname.len());
        wire::cache_key(q, limit, &mut key);
        let entry = match self.cache.get(&key, generation) {
            Some(e) => e,
            None => {
                let built = self.build_entry(q, limit)?;
                self.cache.insert(&key, built)
            }
        };
        let mut bytes = entry.next_variant().to_vec();
        wire::patch(&mut bytes, raw, q.qname, self.may_recurse(client));
        entry.counter.inc();
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        Some(Step::Reply(bytes))
    }

    /// Builds and encodes every rotation of an authoritative answer, for the lower-case question.
    fn build_entry(&self, q: &Quick<'_>, limit: u16) -> Option<Cached> {
        let snap = self.view.load()?;
        let name = Name::read(&mut BinDecoder::new(q.qname))
            .ok()?
            .to_lowercase();
        let qtype = RecordType::from(q.qtype);
        let answer_for = |rotation: usize| match self.zones.answer(&name, qtype) {
            Some(a) => a,
            None => self.authority.answer(&snap, &name, qtype, rotation),
        };
        let first = answer_for(0);
        let count = match &first {
            Answer::Records(r) if !r.external.is_empty() => return None,
            Answer::Records(r) => r.answers.len().clamp(1, MAX_VARIANTS),
            Answer::NoData(_) | Answer::NxDomain(_) => 1,
            Answer::NotOurs => return None,
        };
        let mut variants: Vec<Vec<u8>> = Vec::with_capacity(count);
        let mut rcode = ResponseCode::NoError;
        for rotation in 0..count {
            let answer = if rotation == 0 {
                first.clone()
            } else {
                answer_for(rotation)
            };
            let mut reply = Message::response(0, OpCode::Query);
            reply.metadata.authoritative = true;
            reply.add_query(Query::query(name.clone(), qtype));
            match answer {
                Answer::Records(records) => fill(&mut reply, records),
                Answer::NoData(soa) => {
                    reply.add_authority(soa);
                }
                Answer::NxDomain(soa) => {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                    reply.add_authority(soa);
                }
                Answer::NotOurs => return None,
            }
            if q.edns.is_some() {
                reply.set_edns(our_edns());
            }
            rcode = reply.metadata.response_code;
            let bytes = encode_within(reply, usize::from(limit))?;
            // Answers that do not rotate encode the same: keep one.
            if !variants.contains(&bytes) {
                variants.push(bytes);
            }
        }
        let counter = self.metrics.counter(&qtype.to_string(), rcode_name(rcode));
        Some(Cached::new(snap.generation(), variants, counter))
    }

    /// Everything that is not a plain cached answer: full parse, refusals, forwarding, errors.
    fn full(&self, raw: &[u8], client: IpAddr, transport: Transport, started: Instant) -> Step {
        // Fewer than 12 bytes is not even a header; a response is never answered (no loops).
        if raw.len() < 12 || raw[2] & 0x80 != 0 {
            self.metrics.malformed.inc();
            return Step::Drop;
        }
        let request = match Message::from_vec(raw) {
            Ok(m) => m,
            Err(_) => {
                self.metrics.malformed.inc();
                let id = u16::from_be_bytes([raw[0], raw[1]]);
                let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return self.finish_reply(reply, None, transport, started, "-");
            }
        };
        let recurse = self.may_recurse(client);
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = recurse;
        reply.metadata.checking_disabled = request.metadata.checking_disabled;
        if request.metadata.message_type != MessageType::Query {
            return Step::Drop;
        }
        if request.metadata.op_code != OpCode::Query {
            reply.metadata.response_code = ResponseCode::NotImp;
            return self.finish_reply(reply, Some(&request), transport, started, "-");
        }
        if request.queries.len() != 1 {
            self.metrics.malformed.inc();
            reply.metadata.response_code = ResponseCode::FormErr;
            return self.finish_reply(reply, Some(&request), transport, started, "-");
        }
        let q = request.queries[0].clone();
        reply.add_query(q.clone());
        let qtype = q.query_type().to_string();
        if q.query_class() != DNSClass::IN {
            reply.metadata.response_code = ResponseCode::Refused;
            return self.finish_reply(reply, Some(&request), transport, started, &qtype);
        }
        let answer = match self.zones.answer(q.name(), q.query_type()) {
            Some(a) => a,
            None => match self.view.load() {
                Some(snap) => {
                    let rot = self.rotation.fetch_add(1, Ordering::Relaxed);
                    self.authority.answer(&snap, q.name(), q.query_type(), rot)
                }
                // Until the first snapshot, our own names get SERVFAIL, never a false NXDOMAIN.
                None if self.authority.domain_of(&q.name().to_lowercase()).is_some() => {
                    reply.metadata.response_code = ResponseCode::ServFail;
                    return self.finish_reply(reply, Some(&request), transport, started, &qtype);
                }
                None => Answer::NotOurs,
            },
        };
        match answer {
            Answer::Records(records) => {
                reply.metadata.authoritative = true;
                if !records.external.is_empty() && recurse {
                    return Step::Forward(Box::new(Pending {
                        raw: Vec::new(),
                        request,
                        transport,
                        started,
                        partial: Some((reply, records)),
                    }));
                }
                fill(&mut reply, records);
            }
            Answer::NoData(soa) => {
                reply.metadata.authoritative = true;
                reply.add_authority(soa);
            }
            Answer::NxDomain(soa) => {
                reply.metadata.authoritative = true;
                reply.metadata.response_code = ResponseCode::NXDomain;
                reply.add_authority(soa);
            }
            Answer::NotOurs if recurse => {
                return Step::Forward(Box::new(Pending {
                    raw: raw.to_vec(),
                    request,
                    transport,
                    started,
                    partial: None,
                }));
            }
            Answer::NotOurs => reply.metadata.response_code = ResponseCode::Refused,
        }
        self.finish_reply(reply, Some(&request), transport, started, &qtype)
    }

    /// The answer to a request that needs the upstreams when no more forwarding may start.
    pub fn refuse(&self, pending: &Pending) -> Vec<u8> {
        self.metrics.shed.inc();
        let mut reply = Message::response(pending.request.metadata.id, OpCode::Query);
        reply.metadata.recursion_desired = pending.request.metadata.recursion_desired;
        reply.metadata.response_code = ResponseCode::Refused;
        reply.add_queries(pending.request.queries.clone());
        match self.finish_reply(
            reply,
            Some(&pending.request),
            pending.transport,
            pending.started,
            "-",
        ) {
            Step::Reply(b) => b,
            _ => Vec::new(),
        }
    }

    /// Completes a request that needs the upstreams.
    pub async fn finish(&self, pending: Pending) -> Vec<u8> {
        let Pending {
            request,
            raw,
            transport,
            started,
            partial,
        } = pending;
        let qtype = request
            .queries
            .first()
            .map(|q| q.query_type().to_string())
            .unwrap_or_default();
        let Some(forwarder) = &self.forwarder else {
            return Vec::new();
        };
        self.metrics.forwarded.inc();
        match partial {
            None => match forwarder.forward(&request, &raw, transport).await {
                Ok(bytes) => {
                    let rcode = bytes
                        .get(3)
                        .map_or(ResponseCode::NoError, |b| ResponseCode::from_low(b & 0x0f));
                    self.metrics
                        .observe(&qtype, rcode_name(rcode), started.elapsed());
                    bytes
                }
                Err(error) => {
                    tracing::debug!(%error, "forwarding failed");
                    let mut reply = Message::response(request.metadata.id, OpCode::Query);
                    reply.metadata.recursion_desired = request.metadata.recursion_desired;
                    reply.metadata.recursion_available = true;
                    reply.metadata.response_code = ResponseCode::ServFail;
                    reply.add_queries(request.queries.clone());
                    match self.finish_reply(reply, Some(&request), transport, started, &qtype) {
                        Step::Reply(b) => b,
                        _ => Vec::new(),
                    }
                }
            },
            Some((mut reply, mut records)) => {
                for (name, t) in std::mem::take(&mut records.external) {
                    match forwarder.resolve(name, t).await {
                        Ok(m) => records.answers.extend(m.answers),
                        Err(error) => tracing::debug!(%error, "resolving a CNAME target failed"),
                    }
                }
                fill(&mut reply, records);
                match self.finish_reply(reply, Some(&request), transport, started, &qtype) {
                    Step::Reply(b) => b,
                    _ => Vec::new(),
                }
            }
        }
    }

    /// Adds EDNS when the request had it, encodes, fits UDP answers in the client's limit, counts.
    fn finish_reply(
        &self,
        mut reply: Message,
        request: Option<&Message>,
        transport: Transport,
        started: Instant,
        qtype: &str,
    ) -> Step {
        let client_edns = request.and_then(|r| r.edns.as_ref());
        if let Some(edns) = client_edns {
            let mut ours = our_edns();
            // RFC 6891 6.1.3: we speak version 0 only.
            if edns.version() > 0 {
                ours.set_rcode_high(1); // BADVERS = 16 = (1 << 4) | 0
                reply.metadata.response_code = ResponseCode::NoError;
                reply.answers.clear();
                reply.authorities.clear();
                reply.additionals.clear();
            }
            reply.set_edns(ours);
        }
        let limit = usize::from(udp_limit(transport, client_edns.map(Edns::max_payload)));
        let rcode = reply.metadata.response_code;
        let bytes = match encode_within(reply, limit) {
            Some(b) => b,
            None => return Step::Drop,
        };
        self.metrics
            .observe(qtype, rcode_name(rcode), started.elapsed());
        Step::Reply(bytes)
    }
}

/// The OPT we send: version 0, our payload size, no DNSSEC.
fn our_edns() -> Edns {
    let mut ours = Edns::new();
    ours.set_max_payload(OUR_UDP_PAYLOAD);
    ours.set_dnssec_ok(false);
    ours
}

/// The most an answer may take: 512 over UDP without EDNS (RFC 1035 4.2.1), the client's EDNS size
/// (at least 512, at most ours) with it, and 65535 over TCP.
fn udp_limit(transport: Transport, edns: Option<u16>) -> u16 {
    match (transport, edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(size)) => size.clamp(512, OUR_UDP_PAYLOAD),
    }
}

fn fill(reply: &mut Message, records: Records) {
    reply.add_answers(records.answers);
    reply.add_authorities(records.authorities);
    reply.add_additionals(records.additionals);
}

/// Encodes `reply` in at most `limit` bytes: additional records go first, then answers from the
/// end, with TC set when an answer or authority record had to go (RFC 2181 section 9).
pub fn encode_within(mut reply: Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    reply.additionals.clear();
    let mut bytes = reply.to_vec().ok()?;
    if bytes.len() > limit {
        reply.metadata.truncation = true;
        reply.authorities.clear();
        bytes = reply.to_vec().ok()?;
        while bytes.len() > limit && !reply.answers.is_empty() {
            reply.answers.pop();
            bytes = reply.to_vec().ok()?;
        }
    }
    Some(bytes)
}

fn rcode_name(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record};

    #[test]
    fn big_answers_are_cut_with_tc() {
        let mut m = Message::response(7, OpCode::Query);
        let n = Name::from_ascii("a-rather-long-name-to-fill-the-packet.webapp.dev.").unwrap();
        for i in 0..40u8 {
            m.add_answer(Record::from_rdata(
                n.clone(),
                30,
                RData::A(A::new(10, 0, 0, i)),
            ));
        }
        let full = encode_within(m.clone(), 65535).unwrap();
        assert!(full.len() > 512);
        let cut = encode_within(m, 512).unwrap();
        assert!(cut.len() <= 512);
        let parsed = Message::from_vec(&cut).unwrap();
        assert!(parsed.metadata.truncation);
        assert!(!parsed.answers.is_empty() && parsed.answers.len() < 40);
    }

    #[test]
    fn additional_records_go_first_without_tc() {
        let mut m = Message::response(7, OpCode::Query);
        let n = Name::from_ascii("x.webapp.dev.").unwrap();
        m.add_answer(Record::from_rdata(
            n.clone(),
            30,
            RData::A(A::new(10, 0, 0, 1)),
        ));
        for i in 0..40u8 {
            m.add_additional(Record::from_rdata(
                n.clone(),
                30,
                RData::A(A::new(10, 0, 1, i)),
            ));
        }
        let parsed = Message::from_vec(&encode_within(m, 512).unwrap()).unwrap();
        assert!(!parsed.metadata.truncation);
        assert_eq!(parsed.answers.len(), 1);
        assert!(parsed.additionals.is_empty());
    }
}
