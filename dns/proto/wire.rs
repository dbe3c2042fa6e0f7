//! The hot path's view of a packet: just enough of a query to find its cached answer, and the
//! patching of a cached answer for a new query. Anything unusual (compression in the question,
//! several questions, records other than one OPT, EDNS version > 0) is `None` here and goes the
//! full way through hickory's parser; a parsed [`Query`] makes the same key and patch
//! ([`Patch::of_query`], [`key_of_query`]), so the worker that answers it never reads its bytes
//! again.

use super::query::{limit, Query, Transport};

/// A plain query: one question, maybe an OPT, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quick<'a> {
    /// The question's name in wire form, as sent (case kept).
    pub qname: &'a [u8],
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// The client's EDNS payload size, when it sent an OPT (version 0).
    pub edns: Option<u16>,
    /// The DO bit of that OPT.
    pub dnssec_ok: bool,
}

/// Reads a plain query (RFC 1035 4.1), or `None`.
fn quick_parse(p: &[u8]) -> Option<Quick<'_>> {
    if p.len() < 17 {
        return None;
    }
    let flags = u16::from_be_bytes([p[2], p[3]]);
    // QR = 0, OPCODE = 0 (QUERY), TC = 0, Z = 0.
    if flags & 0xfa40 != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*p.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 {
            return None; // a pointer or an extended label: the slow path decides
        }
        i += 1 + len;
        // A name is at most 255 bytes with its root label: 254 before it.
        if i - 12 > 254 {
            return None;
        }
    }
    let qname = &p[12..i];
    let qtype = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*p.get(i + 2)?, *p.get(i + 3)?]);
    i += 4;
    let mut dnssec_ok = false;
    let edns = if ar == 1 {
        // OPT: root name, TYPE 41, CLASS = payload size, TTL = ext-rcode, version, flags; RDATA.
        let opt = p.get(i..i + 11)?;
        if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != 41 || opt[6] != 0 {
            return None;
        }
        let rdlen = usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        // The options must be whole (code, length, data), and none that the full parser reads
        // and may refuse (NSID, DAU, a client subnet: RFC 7871 wants FORMERR for a bad one).
        let mut options = p.get(i + 11..i + 11 + rdlen)?;
        while !options.is_empty() {
            let code = u16::from_be_bytes([*options.first()?, *options.get(1)?]);
            if matches!(code, 3 | 5 | 8) {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([*options.get(2)?, *options.get(3)?]));
            options = options.get(4 + len..)?;
        }
        i += 11 + rdlen;
        dnssec_ok = opt[7] & 0x80 != 0;
        Some(u16::from_be_bytes([opt[3], opt[4]]))
    } else {
        None
    };
    (i == p.len()).then_some(Quick {
        qname,
        qtype,
        qclass,
        edns,
        dnssec_ok,
    })
}

/// The longest cache key: 7 bytes, then a name of at most 255.
const MAX_KEY: usize = 7 + 255;

/// A cache key made on the receive loop, on the stack (no allocation per query).
pub struct Key {
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl Key {
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The cache key of a question: type, class, EDNS and DO, size limit, lower-case name.
fn cache_key(q: &Quick<'_>, limit: u16) -> Key {
    let mut bytes = [0u8; MAX_KEY];
    bytes[..2].copy_from_slice(&q.qtype.to_be_bytes());
    bytes[2..4].copy_from_slice(&q.qclass.to_be_bytes());
    bytes[4] = u8::from(q.edns.is_some()) | u8::from(q.dnssec_ok) << 1;
    bytes[5..7].copy_from_slice(&limit.to_be_bytes());
    // `quick_parse` keeps names within 255 bytes.
    let len = 7 + q.qname.len().min(255);
    for (to, from) in bytes[7..len].iter_mut().zip(q.qname) {
        *to = from.to_ascii_lowercase();
    }
    Key { bytes, len }
}

/// The key [`cache_key`] makes of the same question, from a parsed query.
pub fn key_of_query(q: &Query) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + q.name.len());
    key.extend_from_slice(&u16::from(q.qtype).to_be_bytes());
    key.extend_from_slice(&u16::from(q.qclass).to_be_bytes());
    key.push(u8::from(q.edns.is_some()) | u8::from(q.dnssec_ok()) << 1);
    key.extend_from_slice(&q.limit().to_be_bytes());
    for label in q.name.iter() {
        key.push(label.len() as u8);
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    key
}

/// The cache key of a plain query's bytes, for the transport it came over.
fn key_of(q: &Quick<'_>, transport: Transport) -> Key {
    cache_key(q, limit(transport, q.edns))
}

/// What a cached answer takes from the query it answers: its id, RD and CD bits, and its
/// question's name as sent (letter case kept).
pub struct Patch<'a> {
    id: [u8; 2],
    flags: [u8; 2],
    qname: std::borrow::Cow<'a, [u8]>,
}

impl<'a> Patch<'a> {
    /// From a plain query's bytes.
    fn of(raw: &'a [u8], q: &Quick<'a>) -> Patch<'a> {
        Patch {
            id: [raw[0], raw[1]],
            flags: [raw[2], raw[3]],
            qname: std::borrow::Cow::Borrowed(q.qname),
        }
    }

    /// From a parsed query.
    pub fn of_query(q: &Query) -> Patch<'static> {
        let mut qname = Vec::with_capacity(q.name.len() + 1);
        for label in q.name.iter() {
            qname.push(label.len() as u8);
            qname.extend_from_slice(label);
        }
        qname.push(0);
        Patch {
            id: q.id.to_be_bytes(),
            flags: [
                u8::from(q.recursion_desired),
                u8::from(q.checking_disabled) << 4,
            ],
            qname: std::borrow::Cow::Owned(qname),
        }
    }
}

/// Turns a cached answer into the answer to a query: its id, its RD and CD bits, our RA, and its
/// question's letter case (owner names point at the question, so they follow).
pub fn patch(answer: &mut [u8], p: &Patch<'_>, recursion_available: bool) {
    if answer.len() < 12 + p.qname.len() {
        return;
    }
    answer[0] = p.id[0];
    answer[1] = p.id[1];
    answer[2] = (answer[2] & !0x01) | (p.flags[0] & 0x01);
    answer[3] =
        (answer[3] & !0x90) | (p.flags[1] & 0x10) | if recursion_available { 0x80 } else { 0 };
    answer[12..12 + p.qname.len()].copy_from_slice(&p.qname);
}

/// The offsets of the TTL fields of every record of a message (not of its OPT, whose TTL field
/// holds flags), so that a kept answer can be aged in place; `None` if the message is not
/// well formed.
pub fn ttl_offsets(m: &[u8]) -> Option<Vec<u16>> {
    let count = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *m.get(i)?,
            *m.get(i + 1)?,
        ])))
    };
    let questions = count(4)?;
    let records = count(6)? + count(8)? + count(10)?;
    let mut i = 12;
    for _ in 0..questions {
        i = skip_name(m, i)? + 4;
    }
    let mut ttls = Vec::with_capacity(records);
    for _ in 0..records {
        i = skip_name(m, i)?;
        let fixed = m.get(i..i + 10)?;
        if u16::from_be_bytes([fixed[0], fixed[1]]) != 41 {
            ttls.push(u16::try_from(i + 4).ok()?);
        }
        i += 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    }
    (i == m.len()).then_some(ttls)
}

/// The offset just past the name at `i` (labels, ending in the root or a pointer).
fn skip_name(m: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *m.get(i)?;
        match len {
            0 => return Some(i + 1),
            l if l & 0xc0 == 0xc0 => {
                m.get(i + 1)?;
                return Some(i + 2);
            }
            l if l < 64 => i += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// A query's bytes as received: what the pipeline asks of them, so that it never reads bytes
/// itself. The quick view (a plain query) gives the cache key and the patch of a cached answer;
/// anything else, and every miss, is parsed once ([`Query::parse`]).
pub struct Received<'a> {
    raw: &'a [u8],
    transport: Transport,
    quick: Option<Quick<'a>>,
}

impl<'a> Received<'a> {
    /// The bytes of one message, from `transport`.
    pub fn new(raw: &'a [u8], transport: Transport) -> Received<'a> {
        Received {
            raw,
            transport,
            quick: quick_parse(raw),
        }
    }

    /// A plain query's cache key and what a cached answer takes from it; `None` for anything
    /// else (it is parsed in full instead).
    pub fn lookup(&self) -> Option<(Key, Patch<'a>)> {
        let q = self.quick.as_ref()?;
        Some((key_of(q, self.transport), Patch::of(self.raw, q)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, Query as Question};
    use hickory_proto::rr::{Name, RecordType};

    fn query(name: &str, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Question::query(
            Name::from_ascii(name).unwrap(),
            RecordType::A,
        ));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn plain_queries_are_read() {
        let q = query("Redis.WebApp.dev.", None);
        let p = quick_parse(&q).unwrap();
        assert_eq!(p.qtype, 1);
        assert_eq!(p.qclass, 1);
        assert_eq!(p.edns, None);
        assert_eq!(p.qname, b"\x05Redis\x06WebApp\x03dev\x00");
        let q = query("a.b.", Some(1400));
        assert_eq!(quick_parse(&q).unwrap().edns, Some(1400));
    }

    #[test]
    fn anything_unusual_is_left_to_the_full_parser() {
        let ok = query("a.b.", None);
        let mut response = ok.clone();
        response[2] |= 0x80;
        let mut notify = ok.clone();
        notify[2] |= 4 << 3;
        let mut two = ok.clone();
        two[5] = 2;
        let mut pointer = ok.clone();
        pointer[12] = 0xc0;
        let mut trailing = ok.clone();
        trailing.push(0);
        let mut v1 = query("a.b.", Some(1232));
        let opt = v1.len() - 11;
        v1[opt + 6] = 1; // EDNS version 1

        // Found by `make fuzz` (target query): a name of 256 bytes with its root, which hickory
        // refuses, was taken by the quick parser. 255 is the most there is.
        let with_name = |sizes: &[usize]| {
            let mut wire: Vec<u8> = sizes
                .iter()
                .flat_map(|&n| std::iter::once(n as u8).chain(std::iter::repeat_n(b'x', n)))
                .collect();
            wire.push(0);
            let mut q = query("a.b.", None);
            q.splice(12..17, wire);
            q
        };
        let long = with_name(&[63, 63, 63, 62]);
        assert!(Query::parse(&long, Transport::Udp).is_err());
        let longest = with_name(&[63, 63, 63, 61]);
        assert!(Query::parse(&longest, Transport::Udp).is_ok());
        assert!(quick_parse(&longest).is_some(), "255 bytes is a name");
        // Found by `make fuzz` too: an OPT whose one byte of data is no option.
        let mut cut_option = query("a.b.", Some(1232));
        let rdlen = cut_option.len() - 2;
        cut_option[rdlen + 1] = 1;
        cut_option.push(0);
        assert!(Query::parse(&cut_option, Transport::Udp).is_err());
        // And a client subnet option of no length: the full parser refuses it.
        let mut subnet = query("a.b.", Some(1232));
        let at = subnet.len() - 2;
        subnet[at + 1] = 4;
        subnet.extend_from_slice(&[0, 8, 0, 0]);
        assert!(Query::parse(&subnet, Transport::Udp).is_err());
        for bad in [
            &subnet,
            &cut_option,
            &long,
            &ok[..16],
            &response,
            &notify,
            &two,
            &pointer,
            &trailing,
            &v1,
        ] {
            assert_eq!(quick_parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_ignore_case_but_not_type_or_limit() {
        let (a, b) = (query("ABC.dev.", None), query("abc.dev.", None));
        let ka = cache_key(&quick_parse(&a).unwrap(), 512);
        let kb = cache_key(&quick_parse(&b).unwrap(), 512);
        assert_eq!(ka.as_slice(), kb.as_slice());
        let kb = cache_key(&quick_parse(&b).unwrap(), 1232);
        assert_ne!(ka.as_slice(), kb.as_slice());
    }

    #[test]
    fn ttl_fields_are_found_in_every_section_but_the_opt() {
        use hickory_proto::rr::rdata::{A, SOA};
        use hickory_proto::rr::{RData, Record};
        let mut m = Message::response(7, hickory_proto::op::OpCode::Query);
        let n = Name::from_ascii("www.example.org.").unwrap();
        m.add_query(Question::query(n.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            n.clone(),
            300,
            RData::A(A::new(1, 2, 3, 4)),
        ));
        m.add_answer(Record::from_rdata(
            n.clone(),
            200,
            RData::A(A::new(1, 2, 3, 5)),
        ));
        let soa = SOA::new(n.clone(), n.clone(), 1, 2, 3, 4, 60);
        m.add_authority(Record::from_rdata(n.clone(), 100, RData::SOA(soa)));
        m.set_edns(Edns::new());
        let bytes = m.to_vec().unwrap();
        let ttls: Vec<u32> = ttl_offsets(&bytes)
            .unwrap()
            .iter()
            .map(|&o| {
                let o = usize::from(o);
                u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap())
            })
            .collect();
        assert_eq!(ttls, [300, 200, 100]);
        assert_eq!(ttl_offsets(&bytes[..bytes.len() - 1]), None, "cut short");
        assert_eq!(ttl_offsets(&[0; 5]), None);
    }

    #[test]
    fn patching_sets_id_flags_and_case() {
        let q = query("AbC.dev.", None);
        let mut cached = query("abc.dev.", None);
        cached[2] = 0x84; // QR AA
        cached[3] = 0x00;
        let quick = quick_parse(&q).unwrap();
        patch(&mut cached, &Patch::of(&q, &quick), true);
        assert_eq!(&cached[..2], &q[..2]);
        assert_eq!(cached[2], 0x84 | (q[2] & 1));
        assert_eq!(cached[3] & 0x80, 0x80);
        assert_eq!(&cached[12..12 + quick.qname.len()], quick.qname);
    }

    #[test]
    fn a_parsed_query_makes_the_same_key_and_patch() {
        for (name, edns) in [
            ("ABC.dev.", None),
            ("a.B.c.", Some(1232)),
            ("*.x.", Some(4096)),
        ] {
            let raw = query(name, edns);
            let quick = quick_parse(&raw).unwrap();
            let (parsed, _) = Query::parse(&raw, Transport::Udp).unwrap();
            let k1 = key_of(&quick, Transport::Udp);
            let k2 = key_of_query(&parsed);
            assert_eq!(k1.as_slice(), k2.as_slice(), "{name}");
            let mut a = query("abc.dev.", None);
            let mut b = a.clone();
            a.resize(raw.len().max(a.len()), 0);
            b.resize(raw.len().max(b.len()), 0);
            patch(&mut a, &Patch::of(&raw, &quick), true);
            patch(&mut b, &Patch::of_query(&parsed), true);
            assert_eq!(a, b, "{name}");
        }
    }
}
