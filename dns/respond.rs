//! Responses as bytes: one place for the header flags, AA, the rcode, EDNS and truncation.
//!
//! [`encode`] writes a response in one pass into an encoder capped at the client's limit (room
//! kept for the OPT record): answers in the asked rotation, then the authority section, then only
//! the additional records that belong to answers actually sent. Whatever does not fit is left
//! out, with TC set when an answer or authority record had to go (RFC 2181 section 9); the cost
//! is bounded by the limit, never by how many records there were, and the message is always
//! well formed (a single record larger than the limit leaves an empty, truncated answer).

use std::collections::HashSet;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::op::{MessageType, Query as Question};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::ProtoError;

use crate::answer::{Answer, Records};
use crate::query::{Malformed, Query, OUR_UDP_PAYLOAD};

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
        }
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
    let edns = q.edns.as_ref().map(|_| {
        let mut ours = Edns::new();
        ours.set_max_payload(OUR_UDP_PAYLOAD);
        ours.set_dnssec_ok(false);
        ours.set_rcode_high(rcode.high());
        ours
    });
    match write(metadata, Some(&question), body, edns.as_ref(), q.limit()) {
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
    let opt_room = if edns.is_some() { 11 } else { 0 };
    enc.set_max_size(limit.saturating_sub(opt_room));
    let place = enc.place::<Header>()?;
    let queries = u16::from(question.is_some());
    if let Some(q) = question {
        q.emit(&mut enc)?;
    }
    let n = body.answers.len();
    let start = if n == 0 { 0 } else { body.rotation % n };
    let rotated = body.answers[start..].iter().chain(&body.answers[..start]);
    let owner = question.map(Question::name);
    let (answers, mut truncated) = emit_records(&mut enc, rotated, owner)?;
    let mut authorities = 0;
    let mut additionals = 0;
    if !truncated {
        (authorities, truncated) = emitted(enc.emit_all(body.authorities.iter()))?;
    }
    if !truncated && !body.additionals.is_empty() {
        let sent = body.answers[start..]
            .iter()
            .chain(&body.answers[..start])
            .take(usize::from(answers));
        let mut targets: HashSet<&Name> = sent.filter_map(|r| target_of(&r.data)).collect();
        // A target that is a CNAME in the additional section brings its chain's addresses.
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
        let wanted = body
            .additionals
            .iter()
            .filter(|r| targets.contains(&r.name));
        // Additional records that do not fit are simply left out: no TC for those.
        (additionals, _) = emitted(enc.emit_all(wanted))?;
    }
    enc.set_max_size(limit);
    if let Some(edns) = edns {
        enc.emit_all(std::iter::once(&Record::from(edns)))?;
        additionals += 1;
    }
    metadata.truncation = truncated;
    let header = Header {
        metadata,
        counts: HeaderCounts {
            queries,
            answers,
            authorities,
            additionals,
        },
    };
    place.replace(&mut enc, header)?;
    Ok(buf)
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

/// (records written, whether some did not fit) from an `emit_all`.
fn emitted(result: Result<usize, ProtoError>) -> Result<(u16, bool), ProtoError> {
    let (count, cut) = match result {
        Ok(count) => (count, false),
        Err(ProtoError::NotAllRecordsWritten { count, .. }) => (count, true),
        Err(e) => return Err(e),
    };
    // A 65,535-byte message cannot hold more than 65,535 records.
    Ok((u16::try_from(count).unwrap_or(u16::MAX), cut))
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
    use crate::forward::Transport;
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
            (q(Transport::Tcp, None), 65535, true),
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
        assert!(m.metadata.truncation);
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
