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
use crate::proto::edns::Ede;
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
    /// An Extended DNS Error for the OPT record (RFC 8914; only when the query had EDNS).
    pub ede: Option<Ede>,
    /// The most any TTL sent may be (a stale answer's `--stale-ttl`).
    pub ttl_cap: Option<u32>,
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
            ..Body::default()
        }
    }

    /// The same body, signed with `signers` (for a query with DO).
    pub fn signed(self, signers: Option<&'a Signers>) -> Body<'a> {
        Body { signers, ..self }
    }

    /// The same body, with an Extended DNS Error.
    pub fn with_ede(self, ede: Option<Ede>) -> Body<'a> {
        Body { ede, ..self }
    }

    /// The same body as a stale answer, when `ttl_cap` is given: EDE 3 (Stale Answer) and no
    /// TTL above it.
    pub fn stale(self, ttl_cap: Option<u32>) -> Body<'a> {
        match ttl_cap {
            Some(cap) => Body {
                ede: Some(Ede::Stale),
                ttl_cap: Some(cap),
                ..self
            },
            None => self,
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
    let dnssec_ok = q.dnssec_ok();
    let edns = q.edns.as_ref().map(|_| {
        // RFC 3225: DO is copied into the response.
        let mut ours = crate::proto::edns::ours(dnssec_ok);
        ours.set_rcode_high(rcode.high());
        if let Some(ede) = body.ede {
            ours.options_mut().insert(ede.option());
        }
        ours
    });
    let body = Body {
        signers: body.signers.filter(|_| dnssec_ok),
        ..body
    };
    let written = write(metadata, Some(&question), body, edns.as_ref(), q.limit());
    match written {
        Ok(mut bytes) => {
            if let Some(cap) = body.ttl_cap {
                cap_ttls(&mut bytes, cap);
            }
            bytes
        }
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

/// A response with no records: `rcode`, RA as given, and why (an Extended DNS Error).
pub fn error(
    q: &Query,
    rcode: ResponseCode,
    recursion_available: bool,
    ede: Option<Ede>,
) -> Vec<u8> {
    encode(
        q,
        rcode,
        false,
        recursion_available,
        Body::default().with_ede(ede),
    )
}

/// Lowers every TTL of a written message above `cap` to `cap` (not the OPT's: its TTL field
/// holds flags).
fn cap_ttls(bytes: &mut [u8], cap: u32) {
    for at in crate::proto::wire::ttl_offsets(bytes).unwrap_or_default() {
        let at = usize::from(at);
        if let Some(field) = bytes.get_mut(at..at + 4) {
            let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&ttl.min(cap).to_be_bytes());
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
    // An OPT without options takes 11 bytes, and each option its own: keep room for it while
    // the sections are written.
    let opt = edns.map_or(0, |e| {
        11 + e
            .options()
            .options
            .iter()
            .map(|(_, o)| 4 + o.len())
            .sum::<u16>()
    });
    let max = limit.saturating_sub(opt);
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
mod tests;
