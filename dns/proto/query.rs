//! A query as the rest of the pipeline sees it: bytes in, [`Query`] out, or the reason there is
//! none ([`Malformed`]). Parsing is hickory-proto's; this module decides what a packet is, and
//! holds the [`Transport`] it came over (a property of the client's message).

use hickory_proto::op::{Edns, Message, MessageType, OpCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

/// How a query reached us, and so how it goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams.
    Udp,
    /// A stream with 2-byte length prefixes.
    Tcp,
}

impl Transport {
    /// `udp` or `tcp`, as metrics label it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// The most we send over UDP whatever a client offers, and the size we advertise (1232: the DNS
/// flag day 2020 figure that avoids IP fragmentation).
pub const OUR_UDP_PAYLOAD: u16 = 1232;

/// One question, with what the answer must echo or honour.
#[derive(Debug, Clone)]
pub struct Query {
    /// Message id.
    pub id: u16,
    /// RD, echoed.
    pub recursion_desired: bool,
    /// CD, echoed.
    pub checking_disabled: bool,
    /// The question's name as sent (letter case kept: it is echoed).
    pub name: Name,
    /// QTYPE.
    pub qtype: RecordType,
    /// QCLASS.
    pub qclass: DNSClass,
    /// The client's OPT record, if it sent one.
    pub edns: Option<Edns>,
    /// UDP or TCP.
    pub transport: Transport,
    /// Its size as received, bytes.
    pub size: usize,
}

/// Why a packet is not a query we can answer normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Not a query at all (too short for a header, or a response): say nothing, so that two
    /// servers never answer each other's answers.
    Ignore,
    /// A header but no valid message: FORMERR with this id.
    FormErr(u16),
    /// Well formed, but not one question of opcode QUERY.
    Unsupported {
        /// Message id.
        id: u16,
        /// Its opcode (NOTIMP unless QUERY with a question count other than one: FORMERR).
        op_code: OpCode,
    },
}

impl Query {
    /// Parses a packet; the message is kept for forwarding.
    pub fn parse(raw: &[u8], transport: Transport) -> Result<(Query, Message), Malformed> {
        // Fewer than 12 bytes is not even a header; a response is never answered (no loops).
        if raw.len() < 12 || raw[2] & 0x80 != 0 {
            return Err(Malformed::Ignore);
        }
        let id = u16::from_be_bytes([raw[0], raw[1]]);
        let message = Message::from_vec(raw).map_err(|_| Malformed::FormErr(id))?;
        if message.metadata.message_type != MessageType::Query {
            return Err(Malformed::Ignore);
        }
        let op_code = message.metadata.op_code;
        if op_code != OpCode::Query || message.queries.len() != 1 {
            return Err(Malformed::Unsupported { id, op_code });
        }
        let q = &message.queries[0];
        let query = Query {
            id,
            recursion_desired: message.metadata.recursion_desired,
            checking_disabled: message.metadata.checking_disabled,
            name: q.name().clone(),
            qtype: q.query_type(),
            qclass: q.query_class(),
            edns: message.edns.clone(),
            transport,
            size: raw.len(),
        };
        Ok((query, message))
    }

    /// The most the answer may take: 512 over UDP without EDNS (RFC 1035 4.2.1), the client's EDNS
    /// size (at least 512, at most ours) with it, and 65,535 over TCP.
    pub fn limit(&self) -> u16 {
        limit(self.transport, self.edns.as_ref().map(Edns::max_payload))
    }

    /// Whether the client asked for DNSSEC records (the DO bit of its OPT, RFC 3225).
    pub fn dnssec_ok(&self) -> bool {
        self.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok)
    }

    /// The same question, lower case, with id 0 and no flags: the form answers are cached in.
    pub fn normalised(&self) -> Query {
        Query {
            id: 0,
            recursion_desired: false,
            checking_disabled: false,
            name: self.name.to_lowercase(),
            ..self.clone()
        }
    }
}

/// See [`Query::limit`].
pub fn limit(transport: Transport, edns: Option<u16>) -> u16 {
    match (transport, edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(size)) => size.clamp(512, OUR_UDP_PAYLOAD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query as Question;

    fn packet(edit: impl FnOnce(&mut Message)) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 77;
        m.add_query(Question::query(
            Name::from_ascii("Redis.WebApp.dev.").unwrap(),
            RecordType::SRV,
        ));
        edit(&mut m);
        m.to_vec().unwrap()
    }

    #[test]
    fn a_plain_query() {
        let (q, _) = Query::parse(&packet(|_| {}), Transport::Udp).unwrap();
        assert_eq!(q.id, 77);
        assert_eq!(q.name.to_string(), "Redis.WebApp.dev.");
        assert_eq!(q.qtype, RecordType::SRV);
        assert_eq!(q.limit(), 512);
        assert_eq!(q.normalised().name.to_string(), "redis.webapp.dev.");
    }

    #[test]
    fn what_is_not_a_plain_query() {
        let raw = packet(|_| {});
        assert_eq!(
            Query::parse(&raw[..11], Transport::Udp).unwrap_err(),
            Malformed::Ignore
        );
        let mut response = raw.clone();
        response[2] |= 0x80;
        assert_eq!(
            Query::parse(&response, Transport::Udp).unwrap_err(),
            Malformed::Ignore
        );
        let mut cut = raw.clone();
        cut.truncate(20);
        assert_eq!(
            Query::parse(&cut, Transport::Udp).unwrap_err(),
            Malformed::FormErr(77)
        );
        let notify = packet(|m| m.metadata.op_code = OpCode::Notify);
        assert!(matches!(
            Query::parse(&notify, Transport::Udp),
            Err(Malformed::Unsupported {
                op_code: OpCode::Notify,
                ..
            })
        ));
        let two = packet(|m| {
            m.add_query(Question::query(Name::root(), RecordType::A));
        });
        assert!(matches!(
            Query::parse(&two, Transport::Udp),
            Err(Malformed::Unsupported {
                op_code: OpCode::Query,
                ..
            })
        ));
    }

    #[test]
    fn limits() {
        assert_eq!(limit(Transport::Udp, None), 512);
        assert_eq!(limit(Transport::Udp, Some(100)), 512);
        assert_eq!(limit(Transport::Udp, Some(4096)), 1232);
        assert_eq!(limit(Transport::Tcp, None), 65535);
    }
}
