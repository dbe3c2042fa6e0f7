//! The EDNS (RFC 6891) that this server writes: its own OPT record, and the two options it marks
//! questions with so that they cannot go round in a loop — SkyDNS's stub option on questions sent
//! to a stub zone's nameservers, and this process's [`ForwardMark`] on questions forwarded
//! upstream. Pure; imports nothing of the server.

use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use super::query::OUR_UDP_PAYLOAD;

/// Our OPT record: our UDP payload size (1232), the DO bit as given (RFC 3225: copied from the
/// query).
pub fn ours(dnssec_ok: bool) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(OUR_UDP_PAYLOAD);
    e.set_dnssec_ok(dnssec_ok);
    e
}

/// The OPT added to a question that came without one before it is sent on: the client's size
/// limit (512).
fn for_a_client_without() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(512);
    e
}

/// The EDNS option code SkyDNS marks stub questions with (`EDNS0LOCALSTART + 10`).
pub const LOOP_OPTION: u16 = 0xFDE9 + 10;

/// Whether a question carries SkyDNS's stub mark (it was sent to a stub zone before).
pub fn stub_marked(edns: Option<&Edns>) -> bool {
    edns.is_some_and(|e| {
        matches!(
            e.option(EdnsCode::Unknown(LOOP_OPTION)),
            Some(EdnsOption::Unknown(_, data)) if data.as_slice() == [1]
        )
    })
}

/// Adds SkyDNS's stub mark to `m` (an OPT of 512 bytes is made when it has none).
pub fn mark_stub(m: &mut Message) {
    m.edns
        .get_or_insert_with(for_a_client_without)
        .options_mut()
        .insert(EdnsOption::Unknown(LOOP_OPTION, vec![1]));
}

/// The EDNS option code of [`ForwardMark`] (next to SkyDNS's stub option, in the range for local
/// use, RFC 6891 9).
pub const MARK_OPTION: u16 = LOOP_OPTION + 1;

/// More marks than this on one question is a loop whatever the servers (eight forwarders in a
/// row is no configuration anyone means).
const MAX_MARKS: usize = 8;

/// The mark this process puts on every question it forwards: [`MARK_OPTION`] with a random
/// 8-byte nonce. Other servers' marks are kept, so a loop through several servers is found too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardMark([u8; 8]);

impl ForwardMark {
    /// A new random mark (one per process).
    pub fn new() -> ForwardMark {
        use std::hash::{BuildHasher, Hasher};
        let h = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        ForwardMark(h.to_be_bytes())
    }

    /// Whether a question with this OPT has been forwarded by this server before (or through
    /// more forwarders than anyone configures): it came back round.
    pub fn looped(&self, edns: Option<&Edns>) -> bool {
        let Some(edns) = edns else { return false };
        let marks = edns.options().get_all(EdnsCode::Unknown(MARK_OPTION));
        marks.len() > MAX_MARKS
            || marks
                .iter()
                .any(|o| matches!(o, EdnsOption::Unknown(_, d) if d.as_slice() == self.0))
    }

    /// Adds this mark to `m` (an OPT of 512 bytes is made when it has none: the client's limit).
    pub fn add_to(&self, m: &mut Message) {
        m.edns
            .get_or_insert_with(for_a_client_without)
            .options_mut()
            .insert(EdnsOption::Unknown(MARK_OPTION, self.0.to_vec()));
    }
}

impl Default for ForwardMark {
    fn default() -> Self {
        ForwardMark::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_found_among_others_and_only_ours() {
        let (a, b) = (ForwardMark::new(), ForwardMark::new());
        let mut m = Message::query();
        assert!(!a.looped(m.edns.as_ref()));
        b.add_to(&mut m);
        assert!(!a.looped(m.edns.as_ref()) && b.looped(m.edns.as_ref()));
        a.add_to(&mut m);
        assert!(a.looped(m.edns.as_ref()) && b.looped(m.edns.as_ref()));
        assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(512));
        let mut long = Message::query();
        for _ in 0..=MAX_MARKS {
            ForwardMark::new().add_to(&mut long);
        }
        assert!(a.looped(long.edns.as_ref()), "too many forwarders");
        let mut stub = Message::query();
        assert!(!stub_marked(stub.edns.as_ref()));
        mark_stub(&mut stub);
        assert!(stub_marked(stub.edns.as_ref()));
    }
}

/// The EDNS option code of Extended DNS Errors (RFC 8914).
pub const EDE_OPTION: u16 = 15;

/// The Extended DNS Errors (RFC 8914) this server adds to responses for clients that sent EDNS:
/// why an answer may be old, or why a question got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ede {
    /// 0, Other, with a text (`overloaded`: a question shed under load).
    Other(&'static str),
    /// 3, Stale Answer: the view follows no etcd member with a leader.
    Stale,
    /// 14, Not Ready: no snapshot yet.
    NotReady,
    /// 18, Prohibited: a client outside `--allow-recursion`.
    Prohibited,
    /// 20, Not Authoritative: not a name of ours, and this server forwards nothing.
    NotAuthoritative,
    /// 22, No Reachable Authority: no upstream answered.
    NoReachableAuthority,
}

impl Ede {
    /// A question shed under load.
    pub const OVERLOADED: Ede = Ede::Other("overloaded");

    /// The INFO-CODE.
    pub fn code(self) -> u16 {
        match self {
            Ede::Other(_) => 0,
            Ede::Stale => 3,
            Ede::NotReady => 14,
            Ede::Prohibited => 18,
            Ede::NotAuthoritative => 20,
            Ede::NoReachableAuthority => 22,
        }
    }

    /// The EXTRA-TEXT.
    pub fn text(self) -> &'static str {
        match self {
            Ede::Other(t) => t,
            _ => "",
        }
    }

    /// The option, for [`Edns::options_mut`].
    pub fn option(self) -> EdnsOption {
        let mut data = self.code().to_be_bytes().to_vec();
        data.extend_from_slice(self.text().as_bytes());
        EdnsOption::Unknown(EDE_OPTION, data)
    }
}

#[cfg(test)]
mod ede_tests {
    use super::*;
    use hickory_proto::serialize::binary::BinEncodable;

    #[test]
    fn an_ede_is_written_as_rfc_8914_says() {
        let mut e = ours(false);
        e.options_mut().insert(Ede::Other("overloaded").option());
        let mut m = Message::new(
            7,
            hickory_proto::op::MessageType::Response,
            hickory_proto::op::OpCode::Query,
        );
        m.set_edns(e);
        let bytes = m.to_bytes().unwrap();
        // The OPT is the message's last record: its option is code 15, length 12, INFO-CODE 0.
        let tail = &bytes[bytes.len() - 16..];
        assert_eq!(&tail[..6], &[0, 15, 0, 12, 0, 0]);
        assert_eq!(&tail[6..], b"overloaded");
        assert_eq!(Ede::Stale.option(), EdnsOption::Unknown(15, vec![0, 3]));
    }
}
