//! Why a question gets the answer it gets, for `GET /explain`: the same decision a query gets
//! ([`decide`] with the full budget, as a client at the given address would), the answer it
//! makes, whether the answer cache holds it, the view's revision and staleness, and which of the
//! snapshot's records it is made of ([`Authority::made_of`](crate::authority::Authority)). No
//! I/O: what etcd says of those records (values, leases) is the HTTP side's (`crate::explain`).

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::{Name, Record, RecordType};
use serde_json::{json, Value};

use super::cache::stale_key;
use super::counters::rcode_name;
use super::decide::{decide, Decision, Refusal, Wait};
use super::handler::Handler;
use super::respond::rcode_of;
use crate::authority::explain::{Made, LISTED};
use crate::authority::{Answer, Budget};
use crate::proto::{wire, Query, Transport};

/// What the handler can say about a question: the JSON so far, and the records to look up.
pub struct Explained {
    /// The explanation, without etcd's part.
    pub json: Value,
    /// The snapshot's records the answer is made of, for a served domain's name.
    pub made: Option<Made>,
    /// The revision of the snapshot it was decided from.
    pub revision: Option<i64>,
}

/// At most [`LISTED`] records as `dig` prints them, no TTL above `cap`.
fn listed(records: &[Record], cap: Option<u32>) -> Vec<String> {
    records
        .iter()
        .take(LISTED)
        .map(|r| match cap {
            Some(cap) if r.ttl > cap => {
                let mut r = r.clone();
                r.ttl = cap;
                r.to_string()
            }
            _ => r.to_string(),
        })
        .collect()
}

impl Handler {
    /// Explains `name`/`qtype` as asked by `client` over UDP with EDNS (what `dig` sends).
    pub fn explain(&self, name: &Name, qtype: RecordType, client: IpAddr) -> Explained {
        let mut m = Message::query();
        m.add_query(hickory_proto::op::Query::query(name.clone(), qtype));
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
        m.metadata.recursion_desired = true;
        let raw = m.to_vec().unwrap_or_default();
        let Ok((q, _)) = Query::parse(&raw, Transport::Udp) else {
            return Explained {
                json: json!({ "error": "not a question this server can parse" }),
                made: None,
                revision: None,
            };
        };
        let snap = self.view.load();
        let stale = self.view.freshness().serves_stale();
        let who = self.client(&q, client);
        let zones = self.zones.load();
        let stubs = self.stubs(snap.as_deref());
        let decision = decide(
            &q,
            snap.as_deref(),
            &self.authority,
            &zones,
            &stubs,
            who,
            Budget::FULL,
        );
        let mut out = json!({
            "name": name.to_string(),
            "type": qtype.to_string(),
            "client": client.to_string(),
            "revision": snap.as_ref().map(|s| s.revision()),
            "stale": stale,
        });
        let mut made = None;
        let cap = stale.then_some(self.stale_ttl);
        let said = match decision {
            Decision::Local { answer, .. } => {
                made = snap
                    .as_deref()
                    .and_then(|s| self.authority.made_of(s, &q.name));
                // Kept for a question asked as `dig` asks (EDNS, 1232 bytes) or without EDNS.
                let mut plain = q.clone();
                plain.edns = None;
                let cached = [&q, &plain].iter().any(|asked| {
                    let key = wire::key_of_query(asked);
                    let key = if stale { stale_key(&key) } else { key };
                    snap.as_deref()
                        .is_some_and(|s| self.cache.get(&key, s).is_some())
                });
                let (answers, authorities) = match &answer {
                    Answer::Records(r) => (r.answers.as_slice(), r.authorities.as_slice()),
                    Answer::NoData(soa) | Answer::NxDomain(soa) => {
                        (&[][..], std::slice::from_ref(soa))
                    }
                    Answer::NotOurs => (&[][..], &[][..]),
                };
                let ttl = answers.iter().map(|r| r.ttl).min().map(|t| {
                    if stale {
                        t.min(self.stale_ttl)
                    } else {
                        t
                    }
                });
                let decided = match &made {
                    Some(m) => format!("served domain {}", m.domain),
                    None => {
                        "this server's own names (CHAOS, or PTR synthesised from records)".into()
                    }
                };
                json!({
                    "decided": decided,
                    "rcode": rcode_name(rcode_of(&answer)),
                    "answers": listed(answers, cap),
                    "answers_total": answers.len(),
                    "authority": listed(authorities, cap),
                    "ttl": ttl,
                    "cached": cached,
                })
            }
            Decision::Wait(Wait::Resolve(records)) => {
                made = snap
                    .as_deref()
                    .and_then(|s| self.authority.made_of(s, &q.name));
                json!({
                    "decided": "served domain, with CNAME targets outside the served domains resolved upstream",
                    "answers": listed(&records.answers, cap),
                    "resolved_upstream": records.external.iter().map(|(n, t)| format!("{n} {t}")).collect::<Vec<_>>(),
                    "cached": false,
                })
            }
            Decision::Wait(Wait::Forward) => json!({
                "decided": "forwarded",
                "why": "not a name of the served domains, static or stub zones; the client is in --allow-recursion",
                "upstreams": self.forwarder.as_ref().map(|f| f.upstreams().iter().map(ToString::to_string).collect::<Vec<_>>()),
            }),
            Decision::Wait(Wait::Stub(servers)) => json!({
                "decided": "stub zone",
                "why": "a stub zone's nameservers (records under <domain>/dns/stub/) answer it",
                "nameservers": servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
            Decision::Wait(Wait::Static) => json!({
                "decided": "static zone",
                "why": "inside a zone file of --zones",
            }),
            Decision::Refuse(why) => json!({
                "decided": match why {
                    Refusal::NotReady => "not ready",
                    _ => "refused",
                },
                "rcode": rcode_name(why.rcode()),
                "why": match why {
                    Refusal::NotOurs if self.forwarder.is_some() && !self.allowed(client) => "not a name of ours, and the client is outside --allow-recursion",
                    Refusal::NotOurs => "not a name of ours, and this server forwards nothing (--no-forward, or no upstream)",
                    Refusal::NotReady => "a name of ours, and the view has no snapshot yet: SERVFAIL, never a false NXDOMAIN",
                    Refusal::Loop => "the question carries this server's own forwarding mark: a loop",
                    Refusal::TooShort => "fewer labels than --ndots: not forwarded",
                    Refusal::BadVersion => "EDNS version other than 0",
                    Refusal::ZoneTransfer => "zone transfers are not served",
                },
            }),
            Decision::Defer => json!({ "decided": "deferred" }),
        };
        if let (Some(o), Value::Object(more)) = (out.as_object_mut(), said) {
            o.extend(more);
        }
        Explained {
            json: out,
            made,
            revision: snap.as_ref().map(|s| s.revision()),
        }
    }
}
