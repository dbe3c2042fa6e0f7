//! Who answers a question: a pure function of the query, the snapshot, the static zones and
//! whether the client may have names forwarded. No I/O, no encoding: [`decide`] returns a
//! [`Decision`], and `respond` turns it into bytes.

use hickory_proto::rr::{DNSClass, RecordType};
use lodestar::Snapshot;

use crate::authority::stub::StubZones;
use crate::authority::zones::StaticZones;
use crate::authority::{Answer, Authority, Budget, Dep, Records};
use crate::proto::Query;

/// What to do with a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Our data (the view or a static zone), and what it depends on.
    Local {
        /// The answer.
        answer: Answer,
        /// What a cached copy depends on.
        dep: Dep,
    },
    /// Our data, with CNAME targets outside our domains to resolve upstream before answering.
    Resolve(Records),
    /// A name in a stub zone: these nameservers answer it.
    Stub(Vec<std::net::SocketAddr>),
    /// A name in a static zone: its catalog answers it.
    Static,
    /// Not our name: the upstreams answer it.
    Forward,
    /// Not our name, and the question carries this server's own forwarding mark: it went round
    /// a loop of forwarders back here. SERVFAIL at once, never forwarded again.
    Loop,
    /// Not our name, and shorter than `--ndots` labels: SERVFAIL with RA, not forwarded (as
    /// SkyDNS's `-ndots`).
    NotForwarded,
    /// Not our name, and this client may not have it forwarded (or forwarding is off); or a
    /// class other than IN.
    Refused,
    /// Our name, but the view is not loaded yet: SERVFAIL, never a false NXDOMAIN.
    NotReady,
    /// An EDNS version other than 0 (RFC 6891 6.1.3): BADVERS.
    BadVersion,
    /// A zone transfer: not something this server does.
    NotImplemented,
    /// Our name, but its answer needs more than the budget: decide again with more, elsewhere.
    Large,
}

/// Who the client is to this server: whether it may use stub zones (`allowed`), have names
/// forwarded (`may_recurse`), and whether its question carries this server's own forwarding mark
/// (`looped`).
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
}

/// Decides what answers `q`, spending at most `budget` on the view.
pub fn decide(
    q: &Query,
    snap: Option<&Snapshot>,
    authority: &Authority,
    zones: &StaticZones,
    stubs: &StubZones,
    client: Client,
    budget: Budget,
) -> Decision {
    let Client {
        allowed,
        may_recurse,
        looped,
        short,
    } = client;
    if q.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Decision::BadVersion;
    }
    // Lower case once: every lookup below is by it.
    let lower = q.name.to_lowercase();
    if q.qclass == DNSClass::CH {
        return match authority.chaos.answer(&lower, q.qtype) {
            Some(answer) => Decision::Local {
                answer,
                dep: Dep::Static,
            },
            None => Decision::Refused,
        };
    }
    if q.qclass != DNSClass::IN {
        return Decision::Refused;
    }
    if matches!(q.qtype, RecordType::AXFR | RecordType::IXFR) {
        return Decision::NotImplemented;
    }
    if let Some(servers) = stubs.find(&lower) {
        let looped = crate::proto::edns::stub_marked(q.edns.as_ref());
        return match (looped, allowed) {
            (true, _) => Decision::NotReady,
            (false, true) => Decision::Stub(servers.to_vec()),
            (false, false) => Decision::Refused,
        };
    }
    if zones.holds(&lower) {
        return Decision::Static;
    }
    let (answer, dep) = match snap {
        Some(snap) => match authority.lookup(snap, &q.name, q.qtype, budget) {
            Some(found) => found,
            None => return Decision::Large,
        },
        None if authority.domain_of(&lower).is_some() => return Decision::NotReady,
        None => (Answer::NotOurs, Dep::Static),
    };
    match answer {
        Answer::NotOurs if may_recurse && looped => Decision::Loop,
        Answer::NotOurs if may_recurse && short => Decision::NotForwarded,
        Answer::NotOurs if may_recurse => Decision::Forward,
        Answer::NotOurs => Decision::Refused,
        Answer::Records(r) if !r.external.is_empty() && may_recurse => Decision::Resolve(r),
        answer => Decision::Local { answer, dep },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Domain;
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
        }
    }

    fn auth() -> Authority {
        Authority {
            domains: vec![Domain::new(&Name::from_ascii("webapp.dev.").unwrap())],
            default_ttl: 30,
            negative_ttl: 30,
            local: None,
            hostmaster: None,
            chaos: Default::default(),
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
        let a = auth();
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
            Decision::Resolve(_) => "resolve",
            Decision::Stub(_) => "stub",
            Decision::Static => "static",
            Decision::Forward => "forward",
            Decision::Loop => "loop",
            Decision::NotForwarded => "not forwarded",
            Decision::Refused => "refused",
            Decision::NotReady => "not ready",
            Decision::BadVersion => "badvers",
            Decision::NotImplemented => "notimp",
            Decision::Large => "large",
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
            short: false,
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
        let a = auth();
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
        assert_eq!(run(&big, Budget::INLINE), Decision::Large);
        assert!(records(run(&big, Budget::FULL)));
        assert!(records(run(&small, Budget::INLINE)));
    }
}
