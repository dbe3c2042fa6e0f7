//! Who answers a question: a pure function of the query, the snapshot, the zones and who is
//! asking. No I/O, no encoding: [`decide`] returns a [`Decision`] that carries every outcome —
//! our data, work for later (a larger budget, another server), or a refusal with its rcode — and
//! the handler acts on it without translating it.
//!
//! Two halves: [`route`] (the class, EDNS version, stub and static zones: who, if anyone, owns
//! the name) runs once per query; [`local`] (the view's answer within a budget, and what to do
//! with a name that is not ours) runs on the receive loop with a small budget and, for a question
//! that needs more ([`Decision::Defer`]), once more on a worker with the full one.

use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};
use lodestar::Snapshot;

use crate::authority::stub::StubZones;
use crate::authority::zones::StaticZones;
use crate::authority::{Answer, Authority, Budget, Dep, Records};
use crate::proto::Query;

/// What to do with a question.
// Made once per query and consumed at once: a box for the large local answer would only add an
// allocation to the common path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Our data (the view, or the server's CHAOS names), and what a cached copy depends on.
    Local {
        /// The answer.
        answer: Answer,
        /// What a cached copy depends on.
        dep: Dep,
    },
    /// Our name, but its answer needs more than this budget (or signing): a worker takes it.
    Defer,
    /// The answer waits on others: it leaves the receive loop with the parsed query.
    Wait(Wait),
    /// No data: an rcode, and why.
    Refuse(Refusal),
}

/// What an answer waits on.
#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    /// Not our name: the upstreams answer it.
    Forward,
    /// Our data, with CNAME targets outside our domains to resolve upstream before answering.
    Resolve(Box<Records>),
    /// A name in a stub zone: these nameservers answer it.
    Stub(Vec<SocketAddr>),
    /// A name in a static zone: its catalog answers it.
    Static,
}

/// Why a question gets no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not our name, and this client may not have it forwarded (or forwarding is off); a class
    /// other than IN: REFUSED.
    NotOurs,
    /// Our name, but the view is not loaded yet: SERVFAIL, never a false NXDOMAIN. Also a stub
    /// question that came back to us (SkyDNS's loop).
    NotReady,
    /// An EDNS version other than 0 (RFC 6891 6.1.3): BADVERS.
    BadVersion,
    /// A zone transfer: not something this server does (NOTIMP).
    ZoneTransfer,
    /// Not our name, and the question carries this server's own forwarding mark: it went round
    /// a loop of forwarders back here. SERVFAIL at once, never forwarded again.
    Loop,
    /// Not our name, and shorter than `--ndots` labels: SERVFAIL with RA, not forwarded (as
    /// SkyDNS's `-ndots`).
    TooShort,
}

impl Refusal {
    /// The rcode it is answered with.
    pub fn rcode(self) -> ResponseCode {
        match self {
            Refusal::NotOurs => ResponseCode::Refused,
            Refusal::BadVersion => ResponseCode::BADVERS,
            Refusal::ZoneTransfer => ResponseCode::NotImp,
            Refusal::NotReady | Refusal::Loop | Refusal::TooShort => ResponseCode::ServFail,
        }
    }
}

/// Who asks, as far as deciding goes: whether the client may use stub zones (`allowed`) and
/// have names forwarded (`may_recurse`), whether its question carries this server's own
/// forwarding mark (`looped`) or is shorter than `--ndots` (`short`), and whether its answer is
/// to be signed (`signed`: never on a receive loop).
#[derive(Debug, Clone, Copy, Default)]
pub struct Client {
    /// Inside `--allow-recursion`.
    pub allowed: bool,
    /// Allowed, and forwarding is on.
    pub may_recurse: bool,
    /// The question was forwarded by this server before.
    pub looped: bool,
    /// The name has fewer labels than `--ndots`: not forwarded.
    pub short: bool,
    /// DO in a signed domain: the answer is signed, by a worker.
    pub signed: bool,
}

/// Decides what answers `q`, spending at most `budget` on the view: [`route`], then [`local`].
pub fn decide(
    q: &Query,
    snap: Option<&Snapshot>,
    authority: &Authority,
    zones: &StaticZones,
    stubs: &StubZones,
    client: Client,
    budget: Budget,
) -> Decision {
    match route(q, authority, zones, stubs, client) {
        Some(decided) => decided,
        None => local(q, snap, authority, client, budget),
    }
}

/// Who owns the name, when that is not the view: `None` for the view (or nobody: [`local`]
/// says). Pure and cheap: no walk of the view.
pub fn route(
    q: &Query,
    authority: &Authority,
    zones: &StaticZones,
    stubs: &StubZones,
    client: Client,
) -> Option<Decision> {
    if q.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Some(Decision::Refuse(Refusal::BadVersion));
    }
    let lower = q.name.to_lowercase();
    if q.qclass == DNSClass::CH {
        return Some(match authority.chaos.answer(&lower, q.qtype) {
            Some(answer) => Decision::Local {
                answer,
                dep: Dep::Static,
            },
            None => Decision::Refuse(Refusal::NotOurs),
        });
    }
    if q.qclass != DNSClass::IN {
        return Some(Decision::Refuse(Refusal::NotOurs));
    }
    if matches!(q.qtype, RecordType::AXFR | RecordType::IXFR) {
        return Some(Decision::Refuse(Refusal::ZoneTransfer));
    }
    if let Some(servers) = stubs.find(&lower) {
        let looped = crate::proto::edns::stub_marked(q.edns.as_ref());
        return Some(match (looped, client.allowed) {
            (true, _) => Decision::Refuse(Refusal::NotReady),
            (false, true) => Decision::Wait(Wait::Stub(servers.to_vec())),
            (false, false) => Decision::Refuse(Refusal::NotOurs),
        });
    }
    if zones.holds(&lower) {
        return Some(Decision::Wait(Wait::Static));
    }
    None
}

/// The view's answer to `q` within `budget`, or what to do with a name that is not ours.
pub fn local(
    q: &Query,
    snap: Option<&Snapshot>,
    authority: &Authority,
    client: Client,
    budget: Budget,
) -> Decision {
    let Client {
        may_recurse,
        looped,
        short,
        signed,
        ..
    } = client;
    let (answer, dep) = match snap {
        Some(snap) => {
            // Signing is never done on a receive loop: a signed answer goes to a worker.
            if signed && budget == Budget::INLINE {
                return Decision::Defer;
            }
            match authority.lookup(snap, &q.name, q.qtype, budget) {
                Some(found) => found,
                None => return Decision::Defer,
            }
        }
        None if authority.domain_of(&q.name.to_lowercase()).is_some() => {
            return Decision::Refuse(Refusal::NotReady)
        }
        None => (Answer::NotOurs, Dep::Static),
    };
    match answer {
        Answer::NotOurs if may_recurse && looped => Decision::Refuse(Refusal::Loop),
        Answer::NotOurs if may_recurse && short => Decision::Refuse(Refusal::TooShort),
        Answer::NotOurs if may_recurse => Decision::Wait(Wait::Forward),
        Answer::NotOurs => Decision::Refuse(Refusal::NotOurs),
        Answer::Records(r) if !r.external.is_empty() && may_recurse => {
            Decision::Wait(Wait::Resolve(Box::new(r)))
        }
        answer => Decision::Local { answer, dep },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Transport;
    use hickory_proto::op::Edns;
    use hickory_proto::rr::Name;

    fn q(name: &str, qtype: RecordType) -> Query {
        Query {
            id: 1,
            recursion_desired: true,
            checking_disabled: false,
            name: Name::from_ascii(name).unwrap(),
            qtype,
            qclass: DNSClass::IN,
            edns: None,
            transport: Transport::Udp,
            size: 0,
        }
    }

    #[test]
    fn table() {
        let snap = Snapshot::from_values([
            ("dev/webapp/a", br#"{"host":"10.0.0.1"}"#.as_slice(), 1),
            (
                "dev/webapp/ext",
                br#"{"host":"www.example.org"}"#.as_slice(),
                1,
            ),
        ]);
        let zones = StaticZones::default();
        let a = Authority::webapp_dev();
        let run = |query: &Query, loaded: bool, recurse: bool| {
            let client = Client {
                allowed: recurse,
                may_recurse: recurse,
                ..Client::default()
            };
            decide(
                query,
                loaded.then_some(&snap),
                &a,
                &zones,
                &StubZones::default(),
                client,
                Budget::FULL,
            )
        };
        let kind = |d: &Decision| match d {
            Decision::Local {
                answer: Answer::Records(_),
                ..
            } => "records",
            Decision::Local {
                answer: Answer::NxDomain(_),
                ..
            } => "nxdomain",
            Decision::Local { .. } => "other local",
            Decision::Wait(Wait::Resolve(_)) => "resolve",
            Decision::Wait(Wait::Stub(_)) => "stub",
            Decision::Wait(Wait::Static) => "static",
            Decision::Wait(Wait::Forward) => "forward",
            Decision::Refuse(Refusal::Loop) => "loop",
            Decision::Refuse(Refusal::TooShort) => "not forwarded",
            Decision::Refuse(Refusal::NotOurs) => "refused",
            Decision::Refuse(Refusal::NotReady) => "not ready",
            Decision::Refuse(Refusal::BadVersion) => "badvers",
            Decision::Refuse(Refusal::ZoneTransfer) => "notimp",
            Decision::Defer => "large",
        };
        let mut v1 = q("a.webapp.dev.", RecordType::A);
        let mut e = Edns::new();
        e.set_version(1);
        v1.edns = Some(e);
        let mut chaos = q("a.webapp.dev.", RecordType::A);
        chaos.qclass = DNSClass::CH;
        let cases: &[(Query, bool, bool, &str)] = &[
            (q("a.webapp.dev.", RecordType::A), true, true, "records"),
            (q("b.webapp.dev.", RecordType::A), true, true, "nxdomain"),
            (q("a.webapp.dev.", RecordType::A), false, true, "not ready"),
            (q("www.example.org.", RecordType::A), false, true, "forward"),
            (q("www.example.org.", RecordType::A), true, false, "refused"),
            (q("ext.webapp.dev.", RecordType::A), true, true, "resolve"),
            (q("ext.webapp.dev.", RecordType::A), true, false, "records"),
            (q("webapp.dev.", RecordType::AXFR), true, true, "notimp"),
            (q("webapp.dev.", RecordType::IXFR), true, true, "notimp"),
            (v1, true, true, "badvers"),
            (chaos, true, true, "refused"),
        ];
        for (query, loaded, recurse, want) in cases {
            assert_eq!(kind(&run(query, *loaded, *recurse)), *want, "{query:?}");
        }
        // A question that carries our own mark: a loop for names that would go upstream, an
        // ordinary question for our own names.
        let looped = Client {
            allowed: true,
            may_recurse: true,
            looped: true,
            ..Client::default()
        };
        for (name, want) in [("www.example.org.", "loop"), ("a.webapp.dev.", "records")] {
            let d = decide(
                &q(name, RecordType::A),
                Some(&snap),
                &a,
                &zones,
                &StubZones::default(),
                looped,
                Budget::FULL,
            );
            assert_eq!(kind(&d), want, "{name}");
        }
    }

    #[test]
    fn a_large_name_is_too_much_for_the_inline_budget() {
        let values: Vec<(String, String)> = (0..600)
            .map(|i| {
                (
                    format!("dev/webapp/big/i{i}"),
                    format!(r#"{{"host":"10.0.{}.{}"}}"#, i / 250, i % 250),
                )
            })
            .collect();
        let snap = Snapshot::from_values(values.iter().map(|(p, v)| (p.as_str(), v.as_bytes(), 1)));
        let zones = StaticZones::default();
        let a = Authority::webapp_dev();
        let big = q("big.webapp.dev.", RecordType::A);
        let small = q("i7.big.webapp.dev.", RecordType::A);
        let stubs = StubZones::default();
        let client = Client {
            allowed: true,
            may_recurse: true,
            ..Client::default()
        };
        let run =
            |query: &Query, budget| decide(query, Some(&snap), &a, &zones, &stubs, client, budget);
        let records = |d: Decision| {
            matches!(
                d,
                Decision::Local {
                    answer: Answer::Records(_),
                    ..
                }
            )
        };
        assert_eq!(run(&big, Budget::INLINE), Decision::Defer);
        assert!(records(run(&big, Budget::FULL)));
        assert!(records(run(&small, Budget::INLINE)));
    }
}
