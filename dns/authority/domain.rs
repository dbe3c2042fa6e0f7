//! The served domains and what the server says as their authority: the domain a name is in, the
//! SOA (its serial the snapshot's revision), a record's TTL (the one place that decides it), and
//! the entry of a question into the view ([`Authority::lookup`]): reverse names, `--local`, then
//! the walk of the name's records.

use hickory_proto::rr::rdata::{PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use lodestar::key::path_to_name;
use lodestar::{Entry, Host, Snapshot};

use super::lookup::{Ask, Lookup};
use super::names::{dedup, fqdn, is_reverse, reverse_addr, under};
use super::{Answer, Authority, Budget, Dep, Records, MAX_RECORDS};

/// A served domain: `webapp.dev.` with its path `dev/webapp`.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Lower case, fully qualified.
    pub name: Name,
    /// The domain's path in the view (`dev/webapp`).
    pub path: String,
    /// The path of its reserved subtree (`dev/webapp/dns`).
    pub(super) dns_path: String,
    /// The SOA's MNAME and RNAME (`ns.dns.webapp.dev.`, `hostmaster.webapp.dev.`), made once.
    soa_names: (Name, Name),
}

impl Domain {
    /// `webapp.dev` -> domain `webapp.dev.` at path `dev/webapp`.
    pub fn new(name: &Name) -> Domain {
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        let path = lodestar::key::name_to_path(&name.to_ascii());
        let dns_path = format!("{path}/dns");
        let under = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&name))
                .unwrap_or_else(|_| name.clone())
        };
        let soa_names = (under("ns.dns"), under("hostmaster"));
        Domain {
            name,
            path,
            dns_path,
            soa_names,
        }
    }

    /// Whether `path` is the domain or below it.
    pub(super) fn holds(&self, path: &str) -> bool {
        under(path, &self.path)
    }
}

impl Authority {
    /// The served domain `name` is in, the longest when several are (lower-case `name`).
    pub fn domain_of(&self, name: &Name) -> Option<&Domain> {
        self.domains
            .iter()
            .filter(|d| d.name.zone_of(name))
            .max_by_key(|d| d.name.num_labels())
    }

    /// `--local`'s name when `lower` is `local.dns.<domain>` (and not that very name).
    fn local_target(&self, domain: &Domain, lower: &Name) -> Option<Name> {
        let local = self.local.as_ref()?;
        let rel = lower
            .iter()
            .count()
            .checked_sub(domain.name.iter().count())?;
        let mut labels = lower.iter().take(rel);
        let is_local = rel == 2
            && labels.next() == Some(b"local".as_slice())
            && labels.next() == Some(b"dns".as_slice());
        (is_local && local != lower).then(|| local.clone())
    }

    /// The SOA of a served domain; its serial is the snapshot's revision.
    pub fn soa(&self, domain: &Domain, snap: &Snapshot) -> Record {
        let (ns, mbox) = domain.soa_names.clone();
        let mbox = self.hostmaster.clone().unwrap_or(mbox);
        // The serial follows etcd's revision; RFC 1982 arithmetic makes the wrap harmless.
        let serial = snap.revision() as u32;
        let soa = SOA::new(ns, mbox, serial, 28800, 7200, 604800, self.negative_ttl);
        Record::from_rdata(domain.name.clone(), self.default_ttl, RData::SOA(soa))
    }

    /// The SOA that goes with a negative answer: its TTL is the lower of its own and its
    /// minimum (RFC 2308 3).
    pub fn negative_soa(&self, domain: &Domain, snap: &Snapshot) -> Record {
        let mut soa = self.soa(domain, snap);
        soa.ttl = self.default_ttl.min(self.negative_ttl);
        soa
    }

    /// Answers `qname`/`qtype` from `snap` (see [`Authority::lookup`]).
    #[cfg(test)]
    pub fn answer(&self, snap: &Snapshot, qname: &Name, qtype: RecordType) -> Answer {
        self.lookup(snap, qname, qtype, Budget::FULL)
            .map_or(Answer::NotOurs, |(a, _)| a)
    }

    /// Answers `qname`/`qtype` from `snap`, and says what the answer depends on; `None` when it
    /// needs more than `budget`. `qname` keeps the question's letter case, which is echoed in
    /// owner names.
    pub fn lookup(
        &self,
        snap: &Snapshot,
        qname: &Name,
        qtype: RecordType,
        budget: Budget,
    ) -> Option<(Answer, Dep)> {
        let lower = qname.to_lowercase();
        if is_reverse(&lower) {
            let path = lodestar::key::name_to_path(&lower.to_ascii());
            let answer = self.reverse(snap, qname, &lower, &path, qtype, budget)?;
            return Some((answer, Dep::Path(path)));
        }
        let Some(domain) = self.domain_of(&lower) else {
            return Some((Answer::NotOurs, Dep::Static));
        };
        if let Some(local) = self.local_target(domain, &lower) {
            // The local name's answer, owned by the question (as SkyDNS does).
            let (answer, dep) = self.lookup(snap, &local, qtype, budget)?;
            let answer = match answer {
                Answer::Records(mut r) => {
                    for rec in r.answers.iter_mut().filter(|rec| rec.name == local) {
                        rec.name = qname.clone();
                    }
                    Answer::Records(r)
                }
                other => other,
            };
            return Some((answer, dep));
        }
        let apex = lower.iter().count() == domain.name.iter().count();
        let mut q = Lookup::new(self, snap, budget);
        let (entries, base) = q.collect(domain, &lower);
        let ask = Ask {
            domain,
            qname,
            lower: &lower,
            qtype,
            apex,
        };
        // RFC 2782: `_redis._tcp.webapp.dev` answers from `redis.webapp.dev`'s records of that
        // transport, unless the name is stored as it is (then it answers as stored).
        if let Some((service, proto)) = entries
            .is_empty()
            .then(|| rfc2782_service(&lower, domain))
            .flatten()
        {
            let (found, service_base) = q.collect(domain, &service);
            let found: Vec<_> = found
                .into_iter()
                .filter(|(_, e)| e.service.is_proto(&proto))
                .collect();
            let answer = match (found.is_empty(), qtype) {
                (true, _) => Answer::NxDomain(self.negative_soa(domain, snap)),
                (false, RecordType::SRV) => q.build(&ask, found),
                (false, _) => Answer::NoData(self.negative_soa(domain, snap)),
            };
            if q.exceeded {
                return None;
            }
            let dep = if q.global {
                Dep::All
            } else {
                Dep::Either(base, service_base)
            };
            return Some((answer, dep));
        }
        let answer = q.build(&ask, entries);
        if q.exceeded {
            return None;
        }
        // The SOA serial is the revision: SOA answers (and only they) change with every write.
        let dep = if q.global || (apex && qtype == RecordType::SOA) {
            Dep::All
        } else {
            Dep::Path(base)
        };
        Some((answer, dep))
    }

    /// PTR under `in-addr.arpa.`/`ip6.arpa.`: a stored record (`/skydns/arpa/in-addr/...`), else
    /// names synthesised from the records that carry the address. Anything else goes upstream.
    fn reverse(
        &self,
        snap: &Snapshot,
        qname: &Name,
        lower: &Name,
        path: &str,
        qtype: RecordType,
        budget: Budget,
    ) -> Option<Answer> {
        if qtype != RecordType::PTR {
            return Some(Answer::NotOurs);
        }
        let mut out = Records {
            rotate: true,
            ..Records::default()
        };
        if let Some(
            e @ Entry {
                host: Host::Name(h),
                ..
            },
        ) = snap.get(path)
        {
            if let Ok(target) = fqdn(h) {
                out.answers.push(Record::from_rdata(
                    qname.clone(),
                    self.ttl(e),
                    RData::PTR(PTR(target)),
                ));
            }
        }
        if out.answers.is_empty() {
            if let Some(addr) = reverse_addr(lower) {
                let in_zone: Vec<&str> = snap
                    .paths_for_addr(addr)
                    .filter(|p| self.domains.iter().any(|d| d.holds(p)))
                    .take(budget.records.saturating_add(1))
                    .collect();
                if in_zone.len() > budget.records && budget.records < MAX_RECORDS {
                    return None;
                }
                for p in in_zone.into_iter().take(MAX_RECORDS) {
                    let (Some(e), Ok(target)) = (snap.get(p), fqdn(&path_to_name(p))) else {
                        continue;
                    };
                    out.answers.push(Record::from_rdata(
                        qname.clone(),
                        self.ttl(e),
                        RData::PTR(PTR(target)),
                    ));
                }
            }
        }
        dedup(&mut out.answers);
        Some(if out.answers.is_empty() {
            Answer::NotOurs
        } else {
            Answer::Records(out)
        })
    }

    /// A record's TTL: its own, else the default, and never more than its lease's TTL (the one
    /// place that decides it).
    pub fn ttl(&self, e: &Entry) -> u32 {
        let ttl = if e.service.ttl > 0 {
            e.service.ttl
        } else {
            self.default_ttl
        };
        match e.lease_ttl {
            0 => ttl,
            lease => ttl.min(lease),
        }
    }
}

/// The service name and transport an RFC 2782 name stands for: `_redis._tcp.webapp.dev` ->
/// (`redis.webapp.dev`, `tcp`), `_redis._udp.prod.webapp.dev` -> (`redis.prod.webapp.dev`,
/// `udp`); `None` for any other name (both labels must start with `_` and have more after it).
pub fn rfc2782_service(lower: &Name, domain: &Domain) -> Option<(Name, String)> {
    let below = lower
        .iter()
        .count()
        .checked_sub(domain.name.iter().count())?;
    if below < 2 {
        return None;
    }
    let mut labels = lower.iter();
    let service = labels
        .next()?
        .strip_prefix(b"_")
        .filter(|l| !l.is_empty())?;
    let proto = labels
        .next()?
        .strip_prefix(b"_")
        .filter(|l| !l.is_empty())?;
    let proto = std::str::from_utf8(proto).ok()?.to_string();
    let rest: Vec<&[u8]> = labels.collect();
    let name = Name::from_labels(std::iter::once(service).chain(rest)).ok()?;
    let mut name = name;
    name.set_fqdn(true);
    Some((name, proto))
}
