//! Answers from a snapshot: (snapshot, question) -> [`Answer`], with no I/O.
//!
//! A name answers every record at or below it (`redis.webapp.dev` -> every instance), `*` and
//! `any` match one label, a group narrows the set, and the question's type picks what is made of
//! each record: A/AAAA from addresses, CNAME from names (chains followed in-zone, loops cut,
//! out-of-zone targets left for the caller to resolve upstream), SRV with shared weights and the
//! targets' addresses as additional records, TXT, MX, PTR (stored or synthesised), NS and SOA at
//! the apex. "Not found" is a value: [`Answer::NxDomain`], [`Answer::NoData`], [`Answer::NotOurs`].

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use lodestar::key::path_to_name;
use lodestar::{Entry, Host, Snapshot};

/// How many CNAMEs a chain may have before it is cut (as SkyDNS: 8).
const MAX_CHAIN: usize = 8;

/// A served domain: `webapp.dev.` with its path `dev/webapp`.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Lower case, fully qualified.
    pub name: Name,
    /// The domain's path in the view (`dev/webapp`).
    pub path: String,
}

impl Domain {
    /// `webapp.dev` -> domain `webapp.dev.` at path `dev/webapp`.
    pub fn new(name: &Name) -> Domain {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        let path = lodestar::key::name_to_path(&name.to_ascii());
        Domain { name, path }
    }
}

/// What the server is authoritative for, and its defaults.
#[derive(Debug, Clone)]
pub struct Authority {
    /// Served domains (`--domain`).
    pub domains: Vec<Domain>,
    /// TTL for records without one, and the SOA's TTL and minimum (`--ttl`).
    pub default_ttl: u32,
}

/// The outcome of a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Authoritative data.
    Records(Records),
    /// The name exists but has no data of that type (authoritative; SOA for the authority section).
    NoData(Record),
    /// The name does not exist (authoritative; SOA for the authority section).
    NxDomain(Record),
    /// Not a name this server answers: forward it.
    NotOurs,
}

/// The sections of a positive answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// Additional section.
    pub additionals: Vec<Record>,
    /// CNAME targets outside every served domain, to be resolved upstream and appended.
    pub external: Vec<(Name, RecordType)>,
}

impl Authority {
    /// The served domain `name` is in, the longest when several are (lower-case `name`).
    pub fn domain_of(&self, name: &Name) -> Option<&Domain> {
        self.domains
            .iter()
            .filter(|d| d.name.zone_of(name))
            .max_by_key(|d| d.name.num_labels())
    }

    /// The SOA of a served domain; its serial is the snapshot's revision.
    pub fn soa(&self, domain: &Domain, snap: &Snapshot) -> Record {
        let ns = Name::from_ascii("ns.dns")
            .and_then(|n| n.append_domain(&domain.name))
            .unwrap_or_else(|_| domain.name.clone());
        let mbox = Name::from_ascii("hostmaster")
            .and_then(|n| n.append_domain(&domain.name))
            .unwrap_or_else(|_| domain.name.clone());
        // The serial follows etcd's revision; RFC 1982 arithmetic makes the wrap harmless.
        let serial = snap.revision() as u32;
        let soa = SOA::new(ns, mbox, serial, 28800, 7200, 604800, self.default_ttl);
        Record::from_rdata(domain.name.clone(), self.default_ttl, RData::SOA(soa))
    }

    /// Answers `qname`/`qtype` from `snap`. `qname` keeps the question's letter case, which is
    /// echoed in owner names; `rotation` picks the order of several answers.
    pub fn answer(
        &self,
        snap: &Snapshot,
        qname: &Name,
        qtype: RecordType,
        rotation: usize,
    ) -> Answer {
        let lower = qname.to_lowercase();
        if is_reverse(&lower) {
            return self.reverse(snap, qname, &lower, qtype);
        }
        let Some(domain) = self.domain_of(&lower) else {
            return Answer::NotOurs;
        };
        let apex = lower.iter().count() == domain.name.iter().count();
        let q = Lookup { auth: self, snap };
        let entries = q.collect(domain, &lower);
        if entries.is_empty() && !apex {
            return Answer::NxDomain(self.soa(domain, snap));
        }
        let ttl = |e: &Entry| {
            if e.service.ttl > 0 {
                e.service.ttl
            } else {
                self.default_ttl
            }
        };
        let mut out = Records::default();
        match qtype {
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                q.addresses(qname, &entries, qtype, &mut vec![lower.clone()], &mut out);
            }
            RecordType::CNAME => {
                for (_, e) in &entries {
                    if let Host::Name(h) = &e.host {
                        if let Ok(target) = fqdn(h) {
                            out.answers.push(Record::from_rdata(
                                qname.clone(),
                                ttl(e),
                                RData::CNAME(CNAME(target)),
                            ));
                        }
                    }
                }
            }
            RecordType::SRV => {
                let pw: Vec<(u16, u16)> = entries
                    .iter()
                    .map(|(_, e)| (e.service.priority(), e.service.weight))
                    .collect();
                let weights = lodestar::record::shared_weights(&pw);
                for ((path, e), weight) in entries.iter().zip(weights) {
                    let Some(target) = q.target(path, e, &mut out.additionals) else {
                        continue;
                    };
                    let srv = SRV::new(e.service.priority(), weight, e.service.port, target);
                    out.answers
                        .push(Record::from_rdata(qname.clone(), ttl(e), RData::SRV(srv)));
                }
            }
            RecordType::MX => {
                for (path, e) in entries.iter().filter(|(_, e)| e.service.mail) {
                    let Some(target) = q.target(path, e, &mut out.additionals) else {
                        continue;
                    };
                    let mx = MX::new(e.service.priority(), target);
                    out.answers
                        .push(Record::from_rdata(qname.clone(), ttl(e), RData::MX(mx)));
                }
            }
            RecordType::TXT => {
                for (_, e) in entries.iter().filter(|(_, e)| !e.service.text.is_empty()) {
                    let txt = TXT::new(e.service.text_strings());
                    out.answers
                        .push(Record::from_rdata(qname.clone(), ttl(e), RData::TXT(txt)));
                }
            }
            RecordType::NS if apex => {
                let ns_path = format!("{}/dns/ns", domain.path);
                for (path, e) in snap.subtree(&ns_path) {
                    let Some(target) = q.target(path, e, &mut out.additionals) else {
                        continue;
                    };
                    out.answers.push(Record::from_rdata(
                        qname.clone(),
                        ttl(e),
                        RData::NS(NS(target)),
                    ));
                }
            }
            RecordType::SOA if apex => {
                let mut soa = self.soa(domain, snap);
                soa.name = qname.clone();
                out.answers.push(soa);
            }
            _ => {}
        }
        dedup(&mut out.answers);
        dedup(&mut out.additionals);
        if out.answers.is_empty() {
            return Answer::NoData(self.soa(domain, snap));
        }
        rotate(&mut out.answers, qtype, rotation);
        Answer::Records(out)
    }

    /// PTR under `in-addr.arpa.`/`ip6.arpa.`: a stored record (`/skydns/arpa/in-addr/...`), else
    /// names synthesised from the records that carry the address. Anything else goes upstream.
    fn reverse(&self, snap: &Snapshot, qname: &Name, lower: &Name, qtype: RecordType) -> Answer {
        if qtype != RecordType::PTR {
            return Answer::NotOurs;
        }
        let mut out = Records::default();
        let path = lodestar::key::name_to_path(&lower.to_ascii());
        if let Some(Entry {
            host: Host::Name(h),
            service,
        }) = snap.get(&path)
        {
            if let Ok(target) = fqdn(h) {
                let ttl = if service.ttl > 0 {
                    service.ttl
                } else {
                    self.default_ttl
                };
                out.answers.push(Record::from_rdata(
                    qname.clone(),
                    ttl,
                    RData::PTR(PTR(target)),
                ));
            }
        }
        if out.answers.is_empty() {
            if let Some(addr) = reverse_addr(lower) {
                for p in snap.paths_for_addr(addr) {
                    let in_zone = self
                        .domains
                        .iter()
                        .any(|d| p.starts_with(&format!("{}/", d.path)));
                    let (Some(e), true) = (snap.get(p), in_zone) else {
                        continue;
                    };
                    let ttl = if e.service.ttl > 0 {
                        e.service.ttl
                    } else {
                        self.default_ttl
                    };
                    if let Ok(target) = fqdn(&path_to_name(p)) {
                        out.answers.push(Record::from_rdata(
                            qname.clone(),
                            ttl,
                            RData::PTR(PTR(target)),
                        ));
                    }
                }
            }
        }
        dedup(&mut out.answers);
        if out.answers.is_empty() {
            Answer::NotOurs
        } else {
            Answer::Records(out)
        }
    }
}

struct Lookup<'a> {
    auth: &'a Authority,
    snap: &'a Snapshot,
}

impl<'a> Lookup<'a> {
    /// Every record at or below `name` (lower case) in `domain`, wildcards matched, group applied.
    /// The reserved `dns` subtree only answers names inside it.
    fn collect(&self, domain: &Domain, name: &Name) -> Vec<(&'a str, &'a Entry)> {
        // Not num_labels(): it leaves out a leading `*`, as DNSSEC counts labels.
        let rel = name
            .iter()
            .count()
            .saturating_sub(domain.name.iter().count());
        let labels: Vec<String> = name
            .iter()
            .take(rel)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let mut pattern: Vec<&str> = domain.path.split('/').collect();
        let domain_depth = pattern.len();
        pattern.extend(labels.iter().rev().map(String::as_str));
        let wild = |l: &str| l == "*" || l == "any";
        let fixed = pattern
            .iter()
            .position(|l| wild(l))
            .unwrap_or(pattern.len());
        let base = pattern[..fixed].join("/");
        let inside_dns = pattern.get(domain_depth) == Some(&"dns");
        let mut found: Vec<(&'a str, &'a Entry)> = self
            .snap
            .subtree(&base)
            .filter(|(path, _)| {
                let segs: Vec<&str> = path.split('/').collect();
                segs.len() >= pattern.len()
                    && pattern
                        .iter()
                        .zip(&segs)
                        .skip(fixed)
                        .all(|(p, s)| wild(p) || p == s)
                    && (inside_dns || segs.get(domain_depth) != Some(&"dns"))
            })
            .collect();
        // The shortest key carrying a group picks it; only that group and group-less records answer.
        let group = found
            .iter()
            .filter(|(_, e)| !e.service.group.is_empty())
            .min_by_key(|(p, _)| (p.split('/').count(), *p))
            .map(|(_, e)| e.service.group.clone());
        if let Some(g) = group {
            found.retain(|(_, e)| e.service.group.is_empty() || e.service.group == g);
        }
        found
    }

    /// A/AAAA for `owner` from `entries`; hosts that are names become CNAMEs whose chains are
    /// followed in-zone (loops and chains longer than 8 cut) or left for the upstream.
    fn addresses(
        &self,
        owner: &Name,
        entries: &[(&str, &Entry)],
        qtype: RecordType,
        seen: &mut Vec<Name>,
        out: &mut Records,
    ) {
        let ttl = |e: &Entry| {
            if e.service.ttl > 0 {
                e.service.ttl
            } else {
                self.auth.default_ttl
            }
        };
        for (_, e) in entries {
            match &e.host {
                Host::V4(ip) if qtype != RecordType::AAAA => {
                    out.answers
                        .push(Record::from_rdata(owner.clone(), ttl(e), RData::A(A(*ip))));
                }
                Host::V6(ip) if qtype != RecordType::A => {
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl(e),
                        RData::AAAA(AAAA(*ip)),
                    ));
                }
                Host::Name(h) => {
                    let Ok(target) = fqdn(h) else { continue };
                    if seen.contains(&target) || seen.len() > MAX_CHAIN {
                        continue;
                    }
                    let cname = Record::from_rdata(
                        owner.clone(),
                        ttl(e),
                        RData::CNAME(CNAME(target.clone())),
                    );
                    match self.auth.domain_of(&target) {
                        Some(d) => {
                            let sub = self.collect(d, &target);
                            let mut chained = Records::default();
                            seen.push(target.clone());
                            self.addresses(&target, &sub, qtype, seen, &mut chained);
                            seen.pop();
                            // As SkyDNS: an in-zone CNAME that leads nowhere is left out.
                            if !chained.answers.is_empty() || !chained.external.is_empty() {
                                out.answers.push(cname);
                                out.answers.extend(chained.answers);
                                out.external.extend(chained.external);
                            }
                        }
                        None => {
                            out.answers.push(cname);
                            let t = if qtype == RecordType::ANY {
                                RecordType::A
                            } else {
                                qtype
                            };
                            out.external.push((target, t));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The SRV/MX/NS target of a record: its host when that is a name, else the name made from
    /// its key (minus `targetstrip` labels), whose address goes to the additional section.
    fn target(&self, path: &str, e: &Entry, additionals: &mut Vec<Record>) -> Option<Name> {
        let ttl = if e.service.ttl > 0 {
            e.service.ttl
        } else {
            self.auth.default_ttl
        };
        match &e.host {
            Host::Name(h) => {
                let target = fqdn(h).ok()?;
                if let Some(d) = self.auth.domain_of(&target) {
                    let sub = self.collect(d, &target);
                    let mut extra = Records::default();
                    self.addresses(
                        &target,
                        &sub,
                        RecordType::ANY,
                        &mut vec![target.clone()],
                        &mut extra,
                    );
                    additionals.extend(extra.answers);
                }
                Some(target)
            }
            Host::V4(_) | Host::V6(_) => {
                let name = path_to_name(path);
                let strip =
                    (e.service.targetstrip as usize).min(name.split('.').count().saturating_sub(1));
                let stripped = name.splitn(strip + 1, '.').last().unwrap_or(&name);
                let target = fqdn(stripped).ok()?;
                let rdata = match e.host {
                    Host::V4(ip) => RData::A(A(ip)),
                    Host::V6(ip) => RData::AAAA(AAAA(ip)),
                    _ => return None,
                };
                additionals.push(Record::from_rdata(target.clone(), ttl, rdata));
                Some(target)
            }
            Host::None => None,
        }
    }
}

fn fqdn(name: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut n = Name::from_ascii(name)?;
    n.set_fqdn(true);
    Ok(n)
}

fn is_reverse(lower: &Name) -> bool {
    let v4 = Name::from_ascii("in-addr.arpa.").ok();
    let v6 = Name::from_ascii("ip6.arpa.").ok();
    [v4, v6].into_iter().flatten().any(|z| z.zone_of(lower))
}

fn reverse_addr(lower: &Name) -> Option<IpAddr> {
    let net = lower.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

/// Removes repeated records (same owner, type and data), keeping the first.
fn dedup(records: &mut Vec<Record>) {
    let mut kept: Vec<Record> = Vec::with_capacity(records.len());
    for r in records.drain(..) {
        if !kept.iter().any(|k| k.name == r.name && k.data == r.data) {
            kept.push(r);
        }
    }
    *records = kept;
}

/// Rotates several answers of the asked type so that clients taking the first spread the load.
/// Answers that carry a CNAME chain keep their order, which the chain needs.
fn rotate(answers: &mut [Record], qtype: RecordType, rotation: usize) {
    if answers.len() > 1
        && answers.iter().all(|r| {
            r.record_type() == qtype
                || qtype == RecordType::ANY && r.record_type() != RecordType::CNAME
        })
    {
        let n = rotation % answers.len();
        answers.rotate_left(n);
    }
}

#[cfg(test)]
mod tests;
