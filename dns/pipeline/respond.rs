//! Responses as bytes: one place for the header flags, AA, the rcode, EDNS and truncation.
//!
//! [`encode`] writes a response in one pass, through one writer signed or not, into an encoder
//! capped at the client's limit (room kept for the OPT record): answers in the asked rotation,
//! then the authority section, then only the additional records that belong to answers actually
//! sent. Whatever does not fit is left
//! out, with TC set when an answer or authority record had to go (RFC 2181 section 9); the cost
//! is bounded by the limit, never by how many records there were, and the message is always
//! well formed (a single record larger than the limit leaves an empty, truncated answer).

use std::collections::HashSet;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::op::{MessageType, Query as Question};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::ProtoError;

use crate::authority::{Answer, Records};
use crate::dnssec::Signers;
use crate::proto::{Malformed, Query};

/// The sections of a response, borrowed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Body<'a> {
    /// Answer records.
    pub answers: &'a [Record],
    /// Where the answers start: they are sent from there, wrapping around.
    pub rotation: usize,
    /// Authority records.
    pub authorities: &'a [Record],
    /// Additional records; only those owned by a target of a sent answer go out.
    pub additionals: &'a [Record],
    /// The keys to sign with, when the query has DO: every RRset sent in a signed domain gets
    /// its RRSIGs (the one writer signs what it sends).
    pub signers: Option<&'a Signers>,
}

impl<'a> Body<'a> {
    /// The body of a local answer, rotated by `rotation` when its records may rotate.
    pub fn of(answer: &'a Answer, rotation: usize) -> Body<'a> {
        match answer {
            Answer::Records(r) => Body::records(r, rotation),
            Answer::NoData(soa) | Answer::NxDomain(soa) => Body {
                authorities: std::slice::from_ref(soa),
                ..Body::default()
            },
            Answer::NotOurs => Body::default(),
        }
    }

    /// The body made of `records`.
    pub fn records(r: &'a Records, rotation: usize) -> Body<'a> {
        Body {
            answers: &r.answers,
            rotation: if r.rotate { rotation } else { 0 },
            authorities: &r.authorities,
            additionals: &r.additionals,
            signers: None,
        }
    }

    /// The same body, signed with `signers` (for a query with DO).
    pub fn signed(self, signers: Option<&'a Signers>) -> Body<'a> {
        Body { signers, ..self }
    }
}

/// The response code of a local answer.
pub fn rcode_of(answer: &Answer) -> ResponseCode {
    match answer {
        Answer::NxDomain(_) => ResponseCode::NXDomain,
        Answer::NotOurs => ResponseCode::Refused,
        Answer::Records(_) | Answer::NoData(_) => ResponseCode::NoError,
    }
}

/// The response to `q`: `rcode`, AA when `authoritative`, RA when `recursion_available`, the
/// sections of `body`, an OPT when the query had one, all within `q.limit()` bytes.
pub fn encode(
    q: &Query,
    rcode: ResponseCode,
    authoritative: bool,
    recursion_available: bool,
    body: Body<'_>,
) -> Vec<u8> {
    let mut metadata = Metadata::new(q.id, MessageType::Response, OpCode::Query);
    metadata.authoritative = authoritative;
    metadata.recursion_desired = q.recursion_desired;
    metadata.recursion_available = recursion_available;
    metadata.checking_disabled = q.checking_disabled;
    metadata.response_code = rcode;
    let mut question = Question::query(q.name.clone(), q.qtype);
    question.set_query_class(q.qclass);
    let dnssec_ok = q.dnssec_ok();
    let edns = q.edns.as_ref().map(|_| {
        // RFC 3225: DO is copied into the response.
        let mut ours = crate::proto::edns::ours(dnssec_ok);
        ours.set_rcode_high(rcode.high());
        ours
    });
    let body = Body {
        signers: body.signers.filter(|_| dnssec_ok),
        ..body
    };
    let written = write(metadata, Some(&question), body, edns.as_ref(), q.limit());
    match written {
        Ok(bytes) => bytes,
        // Only an internal inconsistency gets here (a record hickory cannot encode): say
        // SERVFAIL rather than nothing.
        Err(error) => {
            tracing::warn!(%error, qname = %q.name, "encoding an answer failed");
            metadata.response_code = ResponseCode::ServFail;
            metadata.authoritative = false;
            write(
                metadata,
                Some(&question),
                Body::default(),
                edns.as_ref(),
                q.limit(),
            )
            .unwrap_or_default()
        }
    }
}

/// A response with no records: `rcode`, RA as given.
pub fn error(q: &Query, rcode: ResponseCode, recursion_available: bool) -> Vec<u8> {
    encode(q, rcode, false, recursion_available, Body::default())
}

/// The response to a packet that is not a plain query, if it deserves one.
pub fn malformed(m: &Malformed) -> Option<Vec<u8>> {
    let (id, op_code, rcode) = match *m {
        Malformed::Ignore => return None,
        Malformed::FormErr(id) => (id, OpCode::Query, ResponseCode::FormErr),
        Malformed::Unsupported {
            id,
            op_code: OpCode::Query,
        } => (id, OpCode::Query, ResponseCode::FormErr),
        Malformed::Unsupported { id, op_code } => (id, op_code, ResponseCode::NotImp),
    };
    Message::error_msg(id, op_code, rcode).to_vec().ok()
}

/// The one writer: the header, the question, the answers from the asked rotation, the authority
/// section, then only the additional records that belong to answers actually sent, all within
/// `limit` (room kept for the OPT). Whatever does not fit is left out, with TC when an answer or
/// authority record had to go (RFC 2181 9); additional records are left out without TC.
///
/// With signers (a query with DO), every RRset sent is followed by its RRSIGs and what is signed
/// is exactly what is sent: answers are written while room is kept for the signatures of their
/// RRsets, and when not all fit (TC) the part that went out is the RRset signed, so a client that
/// cannot retry over TCP still gets records that validate; an authority or additional RRset goes
/// with its signatures or not at all. TTLs within an RRset are made equal (the lowest).
fn write(
    mut metadata: Metadata,
    question: Option<&Question>,
    body: Body<'_>,
    edns: Option<&Edns>,
    limit: u16,
) -> Result<Vec<u8>, ProtoError> {
    let mut buf = Vec::with_capacity(usize::from(limit.min(4096)));
    let mut enc = BinEncoder::new(&mut buf);
    // An OPT without options takes 11 bytes: keep room for it while the sections are written.
    let max = limit.saturating_sub(if edns.is_some() { 11 } else { 0 });
    enc.set_max_size(max);
    let place = enc.place::<Header>()?;
    if let Some(q) = question {
        q.emit(&mut enc)?;
    }
    let qname = question.map(Question::name);
    let n = body.answers.len();
    let start = if n == 0 { 0 } else { body.rotation % n };
    let rotated = body.answers[start..].iter().chain(&body.answers[..start]);
    let (answers, sent, mut truncated) = match (body.signers, qname) {
        (Some(signers), Some(qname)) => {
            signed_answers(&mut enc, rotated, limit, max, signers, qname)?
        }
        _ => {
            let (count, cut) = emit_records(&mut enc, rotated, qname)?;
            (count, count, cut)
        }
    };
    let mut authorities = 0;
    if !truncated {
        let records: Vec<&Record> = body.authorities.iter().collect();
        (authorities, truncated) = sets(&mut enc, &records, body.signers, qname)?;
    }
    let mut additionals = 0;
    if !truncated && !body.additionals.is_empty() {
        // A target that is a CNAME in the additional section brings its chain's addresses.
        let targets = additional_targets(&body, start, usize::from(sent));
        let wanted: Vec<&Record> = body
            .additionals
            .iter()
            .filter(|r| targets.contains(&r.name))
            .collect();
        // Additional records that do not fit are simply left out: no TC for those.
        (additionals, _) = sets(&mut enc, &wanted, body.signers, qname)?;
    }
    // The end of every response: the OPT (in the room kept for it), TC, and the header.
    enc.set_max_size(limit);
    if let Some(edns) = edns {
        enc.emit_all(std::iter::once(&Record::from(edns)))?;
        additionals += 1;
    }
    let counts = HeaderCounts {
        queries: u16::from(question.is_some()),
        answers,
        authorities,
        additionals,
    };
    metadata.truncation = truncation(truncated, limit, counts.answers);
    place.replace(&mut enc, Header { metadata, counts })?;
    Ok(buf)
}

/// The answers of a signed response: (records written with their signatures, answers sent, TC).
/// No record takes less than 11 bytes: what can be sent is bounded by the limit, and only that is
/// copied, grouped and signed (the cost follows what is sent, not what the name has).
fn signed_answers<'r>(
    enc: &mut BinEncoder<'_>,
    rotated: impl Iterator<Item = &'r Record>,
    limit: u16,
    max: u16,
    signers: &Signers,
    qname: &Name,
) -> Result<(u16, u16, bool), ProtoError> {
    let at_most = usize::from(limit) / 11 + 1;
    let mut rotated: Vec<Record> = rotated.take(at_most).cloned().collect();
    let groups = rrsets(&rotated);
    equal_ttls(&mut rotated, &groups);
    let reserve: usize = groups
        .iter()
        .map(|g| signature_room(signers, &rotated[g[0]], qname))
        .sum();
    enc.set_max_size(max.saturating_sub(u16::try_from(reserve).unwrap_or(u16::MAX)));
    let (sent, mut truncated) = emit_records(enc, rotated.iter(), Some(qname))?;
    enc.set_max_size(max);
    let mut answers = sent;
    for g in &groups {
        let members: Vec<&Record> = g
            .iter()
            .filter(|i| **i < usize::from(sent))
            .map(|i| &rotated[*i])
            .collect();
        if members.is_empty() {
            continue;
        }
        let sigs = signers.sign(&members);
        let (count, cut) = emit_records(enc, sigs.iter(), Some(qname))?;
        answers += count;
        if cut {
            truncated = true;
            break;
        }
    }
    Ok((answers, sent, truncated))
}

/// The records of a section: one at a time unsigned; RRset by RRset with its signatures when
/// signed (an RRset and its signatures fit or go together). (records written, whether some did
/// not fit.)
fn sets(
    enc: &mut BinEncoder<'_>,
    records: &[&Record],
    signers: Option<&Signers>,
    qname: Option<&Name>,
) -> Result<(u16, bool), ProtoError> {
    let (Some(signers), Some(qname)) = (signers, qname) else {
        return emit_records(enc, records.iter().copied(), qname);
    };
    let mut records: Vec<Record> = records.iter().map(|r| (*r).clone()).collect();
    let groups = rrsets(&records);
    equal_ttls(&mut records, &groups);
    let mut written = 0;
    for g in groups {
        let members: Vec<&Record> = g.iter().map(|i| &records[*i]).collect();
        match emit_signed_set(enc, &members, signers, qname)? {
            Some(count) => written += count,
            None => return Ok((written, true)),
        }
    }
    Ok((written, false))
}

/// TC for a response that left records out, except over TCP when it still holds answers: there
/// is no larger transport to retry on, and resolvers (BIND's among them) refuse a TCP answer
/// with TC outright ("truncated TCP response"), where the records that fit 64 KiB (signed as
/// sent, with DO) serve the client. A TCP answer with nothing in it keeps TC: an empty NOERROR
/// would read as "no such data".
fn truncation(truncated: bool, limit: u16, answers: u16) -> bool {
    truncated && !(limit == u16::MAX && answers > 0)
}

/// One RRset and its signatures, or nothing when they do not fit: `Some(records written)`.
fn emit_signed_set(
    enc: &mut BinEncoder<'_>,
    members: &[&Record],
    signers: &Signers,
    qname: &Name,
) -> Result<Option<u16>, ProtoError> {
    let mark = enc.offset();
    let sigs = signers.sign(members);
    let (a, cut) = emit_records(enc, members.iter().copied(), Some(qname))?;
    if !cut {
        let (b, cut) = emit_records(enc, sigs.iter(), Some(qname))?;
        if !cut {
            return Ok(Some(a + b));
        }
    }
    enc.set_offset(mark);
    enc.trim();
    Ok(None)
}

/// The records' RRsets (same owner, same type), as indexes in order of first appearance.
fn rrsets(records: &[Record]) -> Vec<Vec<usize>> {
    let mut index: std::collections::HashMap<(&Name, hickory_proto::rr::RecordType), usize> =
        std::collections::HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let g = *index.entry((&r.name, r.record_type())).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// Gives every record of an RRset (`groups`, from [`rrsets`]) the RRset's lowest TTL (RFC 2181
/// 5.2; a signature has one).
fn equal_ttls(records: &mut [Record], groups: &[Vec<usize>]) {
    for g in groups {
        let lowest = g
            .iter()
            .filter_map(|i| records.get(*i))
            .map(|r| r.ttl)
            .min();
        if let Some(ttl) = lowest {
            for i in g {
                if let Some(r) = records.get_mut(*i) {
                    r.ttl = ttl;
                }
            }
        }
    }
}

/// The most one RRset's signatures take in a message (owner at worst uncompressed).
fn signature_room(signers: &Signers, first: &Record, qname: &Name) -> usize {
    let owner = if first.name == *qname {
        2
    } else {
        first.name.len() + 2
    };
    signers.room(&first.name, owner)
}

/// The owners whose records belong in the additional section for the answers sent: targets of
/// SRV/MX/NS answers, and the chains of CNAMEs among the additional records that they start.
fn additional_targets<'b>(body: &Body<'b>, start: usize, sent: usize) -> HashSet<&'b Name> {
    let sent = body.answers[start..]
        .iter()
        .chain(&body.answers[..start])
        .take(sent);
    let mut targets: HashSet<&Name> = sent.filter_map(|r| target_of(&r.data)).collect();
    for _ in 0..8 {
        let more: Vec<&Name> = body
            .additionals
            .iter()
            .filter(|r| targets.contains(&r.name))
            .filter_map(|r| match &r.data {
                RData::CNAME(c) if !targets.contains(&c.0) => Some(&c.0),
                _ => None,
            })
            .collect();
        if more.is_empty() {
            break;
        }
        targets.extend(more);
    }
    targets
}

/// Writes records until one does not fit: (records written, whether some did not fit). A record
/// owned by the question's name gets a pointer to the question (offset 12) as its owner: hickory
/// compresses only the first 120 names of a message, and a name with thousands of records would
/// otherwise fill a TCP message with full copies of its own name.
fn emit_records<'r>(
    enc: &mut BinEncoder<'_>,
    records: impl Iterator<Item = &'r Record>,
    question: Option<&Name>,
) -> Result<(u16, bool), ProtoError> {
    let mut count: u16 = 0;
    for r in records {
        let start = enc.offset();
        let written = match question {
            Some(q) if r.name == *q => emit_at_question(enc, r),
            _ => r.emit(enc),
        };
        match written {
            Ok(()) if count < u16::MAX => count += 1,
            Ok(()) | Err(ProtoError::MaxBufferSizeExceeded(_)) => {
                enc.set_offset(start);
                enc.trim();
                return Ok((count, true));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((count, false))
}

/// A record whose owner is the question's name (RFC 1035 4.1.4: a pointer to offset 12).
fn emit_at_question(enc: &mut BinEncoder<'_>, r: &Record) -> Result<(), ProtoError> {
    enc.emit_u16(0xC000 | 12)?;
    r.record_type().emit(enc)?;
    r.dns_class.emit(enc)?;
    enc.emit_u32(r.ttl)?;
    let place = enc.place::<u16>()?;
    r.data.emit(enc)?;
    let len = u16::try_from(enc.len_since_place(&place))
        .map_err(|_| ProtoError::MaxBufferSizeExceeded(usize::from(u16::MAX)))?;
    place.replace(enc, len)
}

/// The name whose addresses belong in the additional section for this record.
fn target_of(data: &RData) -> Option<&Name> {
    match data {
        RData::SRV(srv) => Some(&srv.target),
        RData::MX(mx) => Some(&mx.exchange),
        RData::NS(ns) => Some(&ns.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Transport;
    use hickory_proto::rr::rdata::{A, SRV, TXT};
    use hickory_proto::rr::{DNSClass, RecordType};

    fn q(transport: Transport, edns: Option<u16>) -> Query {
        Query {
            id: 9,
            recursion_desired: true,
            checking_disabled: false,
            name: Name::from_ascii("Big.webapp.dev.").unwrap(),
            qtype: RecordType::A,
            qclass: DNSClass::IN,
            edns: edns.map(|size| {
                let mut e = Edns::new();
                e.set_max_payload(size);
                e
            }),
            transport,
        }
    }

    fn addresses(n: u32) -> Vec<Record> {
        let owner = Name::from_ascii("Big.webapp.dev.").unwrap();
        (0..n)
            .map(|i| {
                Record::from_rdata(
                    owner.clone(),
                    30,
                    RData::A(A::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))),
                )
            })
            .collect()
    }

    fn parse(bytes: &[u8]) -> Message {
        Message::from_vec(bytes).unwrap()
    }

    #[test]
    fn fits_every_limit_with_tc_and_opt() {
        let records = addresses(5000);
        let body = Body {
            answers: &records,
            ..Body::default()
        };
        for (query, limit, tc) in [
            (q(Transport::Udp, None), 512, true),
            (q(Transport::Udp, Some(1232)), 1232, true),
            (q(Transport::Udp, Some(4096)), 1232, true),
            (q(Transport::Tcp, None), 65535, false),
        ] {
            let bytes = encode(&query, ResponseCode::NoError, true, false, body);
            assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
            let m = parse(&bytes);
            assert_eq!(m.metadata.truncation, tc);
            assert_eq!(m.metadata.id, 9);
            assert!(m.metadata.authoritative);
            assert!(m.answers.len() > 10, "{}", m.answers.len());
            assert_eq!(m.edns.is_some(), query.edns.is_some(), "OPT iff asked");
            assert_eq!(m.queries[0].name().to_string(), "Big.webapp.dev.");
        }
        let small = addresses(3);
        let m = parse(&encode(
            &q(Transport::Udp, None),
            ResponseCode::NoError,
            true,
            false,
            Body {
                answers: &small,
                rotation: 4,
                ..Body::default()
            },
        ));
        assert!(!m.metadata.truncation);
        let got: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(
            got,
            ["10.0.0.1", "10.0.0.2", "10.0.0.0"],
            "rotated by 4 % 3"
        );
    }

    #[test]
    fn a_tcp_message_holds_four_thousand_addresses() {
        let records = addresses(5000);
        let body = Body {
            answers: &records,
            ..Body::default()
        };
        let bytes = encode(
            &q(Transport::Tcp, None),
            ResponseCode::NoError,
            true,
            false,
            body,
        );
        let m = parse(&bytes);
        // 12 + 20 (question) + 16 a record: 4,093 fit in 65,535 bytes.
        assert_eq!(m.answers.len(), 4093);
        assert_eq!(m.answers[4092].name.to_string(), "Big.webapp.dev.");
        assert!(
            !m.metadata.truncation,
            "no TC over TCP: nothing larger to retry on"
        );
    }

    #[test]
    fn a_record_larger_than_any_message_is_cut_cleanly() {
        let owner = Name::from_ascii("Big.webapp.dev.").unwrap();
        let text: Vec<String> = (0..4000).map(|_| "x".repeat(255)).collect();
        let huge = [Record::from_rdata(owner, 30, RData::TXT(TXT::new(text)))];
        for query in [q(Transport::Tcp, None), q(Transport::Udp, Some(1232))] {
            let bytes = encode(
                &query,
                ResponseCode::NoError,
                true,
                false,
                Body {
                    answers: &huge,
                    ..Body::default()
                },
            );
            let m = parse(&bytes);
            assert!(m.metadata.truncation);
            assert!(m.answers.is_empty());
        }
    }

    #[test]
    fn additional_records_follow_the_answers_sent() {
        let owner = Name::from_ascii("Big.webapp.dev.").unwrap();
        let mut answers = Vec::new();
        let mut extra = Vec::new();
        for i in 0..200u32 {
            let target = Name::from_ascii(format!("i{i}.big.webapp.dev.")).unwrap();
            let srv = SRV::new(10, 1, 80, target.clone());
            answers.push(Record::from_rdata(owner.clone(), 30, RData::SRV(srv)));
            extra.push(Record::from_rdata(
                target,
                30,
                RData::A(A::from(std::net::Ipv4Addr::from(i))),
            ));
        }
        let m = parse(&encode(
            &q(Transport::Udp, Some(1232)),
            ResponseCode::NoError,
            true,
            false,
            Body {
                answers: &answers,
                rotation: 150,
                additionals: &extra,
                ..Body::default()
            },
        ));
        assert!(m.metadata.truncation);
        let first = m.answers[0].data.to_string();
        assert!(first.contains("i150."), "{first}");
        for a in &m.additionals {
            let owner = a.name.to_string();
            assert!(
                m.answers
                    .iter()
                    .any(|r| r.data.to_string().ends_with(&owner)),
                "{owner} belongs to no answer sent"
            );
        }
    }

    fn with_do(mut query: Query) -> Query {
        let mut e = query.edns.take().unwrap_or_default();
        e.set_dnssec_ok(true);
        query.edns = Some(e);
        query
    }

    #[test]
    fn signed_answers_sign_exactly_what_is_sent() {
        let signers = Signers::new(&[crate::dnssec::keys::test_key()]).unwrap();
        let records = addresses(5000);
        let rrsigs = |m: &Message| {
            m.answers
                .iter()
                .filter(|r| r.record_type() == hickory_proto::rr::RecordType::RRSIG)
                .count()
        };
        for (query, limit) in [
            (with_do(q(Transport::Tcp, None)), 65535),
            (with_do(q(Transport::Udp, Some(1232))), 1232),
            (with_do(q(Transport::Udp, Some(512))), 512),
        ] {
            let tcp = limit == 65535;
            let body = Body {
                answers: &records,
                rotation: 7,
                signers: Some(&signers),
                ..Body::default()
            };
            let bytes = encode(&query, ResponseCode::NoError, true, false, body);
            assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
            let m = parse(&bytes);
            assert_eq!(m.metadata.truncation, !tcp);
            assert!(m.answers.len() > 10, "{limit}: {}", m.answers.len());
            assert_eq!(rrsigs(&m), 1, "{limit}: one signature for the part sent");
            assert!(m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
        }
        // An RRset goes out with one TTL, its lowest.
        let mut mixed = addresses(3);
        mixed[1].ttl = 10;
        let m = parse(&encode(
            &with_do(q(Transport::Udp, Some(1232))),
            ResponseCode::NoError,
            true,
            false,
            Body {
                answers: &mixed,
                signers: Some(&signers),
                ..Body::default()
            },
        ));
        let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
        assert_eq!(ttls, [10, 10, 10, 10], "three addresses and their RRSIG");
        // Without DO nothing is signed.
        let body = Body {
            answers: &records[..3],
            signers: Some(&signers),
            ..Body::default()
        };
        let m = parse(&encode(
            &q(Transport::Udp, Some(1232)),
            ResponseCode::NoError,
            true,
            false,
            body,
        ));
        assert_eq!((m.answers.len(), rrsigs(&m)), (3, 0));
    }

    #[test]
    fn badvers_travels_in_the_opt() {
        let mut query = q(Transport::Udp, Some(1232));
        if let Some(e) = query.edns.as_mut() {
            e.set_version(1);
        }
        let m = parse(&encode(
            &query,
            ResponseCode::BADVERS,
            false,
            false,
            Body::default(),
        ));
        // 16 is BADVERS with an OPT (hickory's parser names it BADSIG, its TSIG twin).
        assert_eq!(u16::from(m.metadata.response_code), 16);
        assert_eq!(m.edns.map(|e| e.version()), Some(0));
    }
}
