//! Answers from a snapshot: (snapshot, question) -> [`Answer`], with no I/O.
//!
//! A name answers every record at or below it (`redis.webapp.dev` -> every instance), `*` and
//! `any` match one label, a group narrows the set, and the question's type picks what is made of
//! each record: A/AAAA from addresses, CNAME from names (chains followed in-zone, loops cut,
//! out-of-zone targets left for the caller to resolve upstream), SRV with shared weights and the
//! targets' addresses as additional records, TXT, MX, PTR (stored or synthesised), NS and SOA at
//! the apex, and ANY as RFC 8482 says. "Not found" is a value: [`Answer::NxDomain`],
//! [`Answer::NoData`], [`Answer::NotOurs`].
//!
//! The work of one question is bounded whatever the data: the records under a name are collected
//! once (linear, never pairwise), at most [`MAX_RECORDS`] of them become records (an even sample
//! when there are more), and CNAME chains and name targets expand at most [`MAX_NAMES`] names,
//! each once, at most [`MAX_CHAIN`] deep. The order of several answers is left to the encoder,
//! which rotates the built list ([`Records::rotate`]). Each answer says what it depends on
//! ([`Dep`]), so that a cache can keep it until something under that name changes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, HINFO, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use lodestar::key::path_to_name;
use lodestar::{Entry, Host, Snapshot};

/// How many CNAMEs a chain may have before it is cut (as SkyDNS: 8).
const MAX_CHAIN: usize = 8;

/// How many distinct in-zone names one question may expand (CNAME targets, SRV/MX/NS targets
/// that are names): a few dozen hostile records cannot make one query walk the zone.
const MAX_NAMES: usize = 32;

/// The most records one question builds. A 65,535-byte TCP message holds at most ~4,000 address
/// records; past this many, an even sample of the name's records is built, so that rotation
/// still spreads clients over all of them.
pub const MAX_RECORDS: usize = 16_384;

/// How much one question may do: records looked at, records built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Records under the names looked at.
    pub scan: usize,
    /// Records built; past [`MAX_RECORDS`] a sample is built instead.
    pub records: usize,
}

impl Budget {
    /// What a receive loop may spend on a miss: a question that needs more is
    /// [`Authority::lookup`]'s `None` and goes to a worker.
    pub const INLINE: Budget = Budget {
        scan: 512,
        records: 256,
    };
    /// What a worker spends: everything, up to the sample.
    pub const FULL: Budget = Budget {
        scan: usize::MAX,
        records: MAX_RECORDS,
    };
}

/// A served domain: `webapp.dev.` with its path `dev/webapp`.
#[derive(Debug, Clone)]
pub struct Domain {
    /// Lower case, fully qualified.
    pub name: Name,
    /// The domain's path in the view (`dev/webapp`).
    pub path: String,
    /// The path of its reserved subtree (`dev/webapp/dns`).
    dns_path: String,
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
    fn holds(&self, path: &str) -> bool {
        under(path, &self.path)
    }
}

/// Whether `path` is `base` or below it, with exact label boundaries.
fn under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What the server is authoritative for, and its defaults.
#[derive(Debug, Clone)]
pub struct Authority {
    /// Served domains (`--domain`).
    pub domains: Vec<Domain>,
    /// TTL for records without one, and the SOA's TTL and minimum (`--ttl`).
    pub default_ttl: u32,
    /// This host's own name (`--local`, SkyDNS's `-local`): `local.dns.<domain>` answers its
    /// records, owned by the question.
    pub local: Option<Name>,
    /// TTL of negative answers and the SOA minimum (`--min-ttl`, default `--ttl`).
    pub negative_ttl: u32,
    /// The SOA's mailbox (`--hostmaster`); default `hostmaster.<domain>`.
    pub hostmaster: Option<Name>,
    /// What CHAOS-class TXT questions answer.
    pub chaos: Chaos,
}

/// The CHAOS-class names a server answers (TXT, TTL 0): `version.bind`/`version.server` (unless
/// hidden), `hostname.bind`/`id.server`.
#[derive(Debug, Clone, Default)]
pub struct Chaos {
    names: Vec<(Name, String)>,
}

impl Chaos {
    /// The answers for `version` (None: hidden) and `id`.
    pub fn new(version: Option<String>, id: String) -> Chaos {
        let mut names = Vec::new();
        let mut add = |n: &str, v: &str| {
            if let Ok(name) = Name::from_ascii(n) {
                names.push((name, v.to_string()));
            }
        };
        if let Some(v) = &version {
            add("version.bind.", v);
            add("version.server.", v);
        }
        add("hostname.bind.", &id);
        add("id.server.", &id);
        Chaos { names }
    }

    /// The CH TXT answer for `qname`/`qtype`, owned by the question; `None`: not a CHAOS name
    /// of ours (REFUSED).
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Option<Answer> {
        let (_, text) = self.names.iter().find(|(n, _)| n == qname)?;
        if !matches!(qtype, RecordType::TXT | RecordType::ANY) {
            return Some(Answer::Records(Records::default()));
        }
        let mut r = Record::from_rdata(qname.clone(), 0, RData::TXT(TXT::new(vec![text.clone()])));
        r.dns_class = hickory_proto::rr::DNSClass::CH;
        Some(Answer::Records(Records {
            answers: vec![r],
            ..Records::default()
        }))
    }
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
    /// Additional section: addresses of the answers' targets (the encoder sends those of the
    /// answers it sends).
    pub additionals: Vec<Record>,
    /// CNAME targets outside every served domain, to be resolved upstream and appended. A CNAME
    /// whose target resolves to nothing is then left out (as the peers do).
    pub external: Vec<(Name, RecordType)>,
    /// When set, the upstream's addresses for `external` are answered as this name's own (a
    /// name whose records point at several other names: see [`Lookup::addresses`]).
    pub flatten: Option<Name>,
    /// The SOA to answer NODATA with when nothing is left once `external` was resolved.
    pub soa: Option<Record>,
    /// Whether the answers may be sent in any rotation (not a CNAME chain, whose order matters).
    pub rotate: bool,
}

/// What an answer depends on: when may a cached copy of it still be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dep {
    /// Only the records at or below this path (see [`Snapshot::changed_since`]).
    Path(String),
    /// Anything in the view (it followed names elsewhere, or it carries the SOA serial).
    All,
    /// Nothing that changes while the server runs (static zones).
    Static,
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
        let answer = q.build(domain, qname, &lower, qtype, apex, entries);
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
    fn ttl(&self, e: &Entry) -> u32 {
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

/// One question's walk of the snapshot, with its budget.
struct Lookup<'a> {
    auth: &'a Authority,
    snap: &'a Snapshot,
    /// In-zone names expanded so far, and whether each led to any record.
    expanded: HashMap<Name, bool>,
    /// Records that may still be built.
    room: usize,
    /// Records that may still be looked at.
    scan: usize,
    /// Whether running out of room means "too large for this budget" rather than "sample".
    strict: bool,
    /// Whether the question needed more than the budget.
    exceeded: bool,
    /// Whether the answer used records outside the question's own subtree.
    global: bool,
}

impl<'a> Lookup<'a> {
    fn new(auth: &'a Authority, snap: &'a Snapshot, budget: Budget) -> Self {
        Lookup {
            auth,
            snap,
            expanded: HashMap::new(),
            room: budget.records.min(MAX_RECORDS),
            scan: budget.scan,
            strict: budget.records < MAX_RECORDS,
            exceeded: false,
            global: false,
        }
    }

    /// At most the room left of `items`: a sample, or (on a strict budget) a note that the
    /// question is too large for it.
    fn fit<T>(&mut self, items: Vec<T>) -> Vec<T> {
        if self.strict && items.len() > self.room {
            self.exceeded = true;
        }
        sample(items, self.room)
    }

    /// Every record at or below `name` (lower case) in `domain`, wildcards matched, group
    /// applied, and the path everything was found under (the part before any wildcard). The
    /// reserved `dns` subtree only answers names inside it. Linear in the records under that path.
    fn collect(&mut self, domain: &Domain, name: &Name) -> (Vec<(&'a str, &'a Entry)>, String) {
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
        let wild = |l: &str| l == "*" || l == "any";
        // Labels below the domain, top first; those before the first wildcard make the base.
        let below: Vec<&str> = labels.iter().rev().map(String::as_str).collect();
        let fixed = below.iter().position(|l| wild(l)).unwrap_or(below.len());
        let mut base = domain.path.clone();
        for l in &below[..fixed] {
            base.push('/');
            base.push_str(l);
        }
        let inside_dns = below.first() == Some(&"dns");
        let pattern = &below[fixed..];
        let snap: &'a Snapshot = self.snap;
        let mut scanned = 0usize;
        let limit = self.scan;
        // With a wildcard, the snapshot's wildcard index narrows the walk to the records that
        // carry the pattern's rarest fixed label (or are deep enough): a question costs what it
        // finds, not the size of the subtree above its first wildcard.
        let wanted: Vec<Option<&str>> = pattern.iter().map(|l| (!wild(l)).then_some(*l)).collect();
        let walk: Box<dyn Iterator<Item = (&'a str, &'a Entry)> + 'a> =
            match snap.wildcard_candidates(&base, &wanted) {
                Some(candidates) => Box::new(candidates),
                None => Box::new(snap.subtree(&base)),
            };
        let mut found: Vec<(&'a str, &'a Entry)> = walk
            .take_while(|_| {
                scanned += 1;
                scanned <= limit
            })
            .filter(|(path, _)| inside_dns || !under(path, &domain.dns_path))
            .filter(|(path, _)| {
                // The labels after the base must match the rest of the pattern, one for one.
                let mut segs = path[base.len()..].split('/').skip(1);
                pattern
                    .iter()
                    .all(|p| segs.next().is_some_and(|s| wild(p) || *p == s))
            })
            .collect();
        if scanned > limit {
            self.exceeded = true;
        }
        self.scan = self.scan.saturating_sub(scanned);
        // Groups, as the peers: the group of the shortest keys carrying one picks the set (that
        // group and group-less records answer); when the shortest keys disagree, nothing is
        // filtered.
        if let Some(g) = pick_group(&found) {
            found.retain(|(_, e)| e.service.group.is_empty() || e.service.group == g);
        }
        (found, base)
    }

    /// The answer of `qtype` made from `entries`, the records under the question's name.
    fn build(
        &mut self,
        domain: &Domain,
        qname: &Name,
        lower: &Name,
        qtype: RecordType,
        apex: bool,
        entries: Vec<(&'a str, &'a Entry)>,
    ) -> Answer {
        if entries.is_empty() && !apex {
            return Answer::NxDomain(self.auth.negative_soa(domain, self.snap));
        }
        let ttl = |e: &Entry| self.auth.ttl(e);
        let mut out = Records::default();
        match qtype {
            RecordType::A | RecordType::AAAA => {
                let mut chain = vec![lower.clone()];
                // CoreDNS's apex records: `<domain>/dns/apex/...` answer the apex itself when
                // there are any (else the apex answers everything below it, as SkyDNS).
                let entries = match self.apex_records(domain, apex) {
                    Some(own) => own,
                    None => entries,
                };
                let entries = self.fit(entries);
                self.addresses(qname, &entries, qtype, &mut chain, false, &mut out);
            }
            // RFC 8482: a name that exists answers ANY with one synthesised HINFO, not with
            // everything it has.
            RecordType::ANY => {
                let hinfo = HINFO::new("RFC8482".to_string(), String::new());
                out.answers.push(Record::from_rdata(
                    qname.clone(),
                    self.auth.default_ttl,
                    RData::HINFO(hinfo),
                ));
            }
            RecordType::CNAME => {
                // One CNAME at most (RFC 2181 10.1): the record at the name itself when it names
                // a host; else the one host that every record below names (no addresses).
                let exact = lodestar::key::name_to_path(&lower.to_ascii());
                let own = entries
                    .iter()
                    .find(|(p, e)| *p == exact && matches!(e.host, Host::Name(_)));
                let only = (distinct_names(&entries) == 1
                    && !entries
                        .iter()
                        .any(|(_, e)| matches!(e.host, Host::V4(_) | Host::V6(_))))
                .then(|| {
                    entries
                        .iter()
                        .find(|(_, e)| matches!(e.host, Host::Name(_)))
                })
                .flatten();
                if let Some((_, e)) = own.or(only) {
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
                // Records without a host make no SRV, so they take no share of the weights.
                // Records that would make the same SRV (priority, port, target) make one, and
                // share one weight (SkyDNS's dedup).
                // Address records without `targetstrip` have their own key path as target, and
                // paths are unique: they can only meet another target when some record strips
                // labels, so only then are they hashed (the common large set costs nothing).
                let address = |e: &Entry| matches!(e.host, Host::V4(_) | Host::V6(_));
                let strips = entries
                    .iter()
                    .any(|(_, e)| address(e) && e.service.targetstrip > 0);
                let mut seen = HashSet::new();
                let serving: Vec<(&str, &Entry)> = entries
                    .into_iter()
                    .filter(|(_, e)| e.host != Host::None)
                    .filter(|(p, e)| {
                        (address(e) && !strips)
                            || seen.insert((e.service.priority(), e.service.port, target_key(p, e)))
                    })
                    .collect();
                let pw: Vec<(u16, u16)> = serving
                    .iter()
                    .map(|(_, e)| (e.service.priority(), e.service.weight))
                    .collect();
                let weights = lodestar::record::shared_weights(&pw);
                let weighted: Vec<((&str, &Entry), u16)> =
                    serving.into_iter().zip(weights).collect();
                for ((path, e), weight) in self.fit(weighted) {
                    let Some(target) = self.target(path, e, &mut out.additionals) else {
                        continue;
                    };
                    let srv = SRV::new(e.service.priority(), weight, e.service.port, target);
                    out.answers
                        .push(Record::from_rdata(qname.clone(), ttl(e), RData::SRV(srv)));
                }
            }
            RecordType::MX => {
                let mail: Vec<_> = entries
                    .into_iter()
                    .filter(|(_, e)| e.service.mail)
                    .collect();
                for (path, e) in self.fit(mail) {
                    let Some(target) = self.target(path, e, &mut out.additionals) else {
                        continue;
                    };
                    let mx = MX::new(e.service.priority(), target);
                    out.answers
                        .push(Record::from_rdata(qname.clone(), ttl(e), RData::MX(mx)));
                }
            }
            RecordType::TXT => {
                let texts: Vec<_> = entries
                    .iter()
                    .copied()
                    .filter(|(_, e)| !e.service.text.is_empty())
                    .collect();
                if texts.is_empty() {
                    // A name that is only a CNAME (one host name, no address, no text) answers
                    // TXT through it, as any type but its own (RFC 1034 3.6.2).
                    let mut chain = vec![lower.clone()];
                    self.txt_through_cname(qname, &entries, &mut chain, &mut out);
                    prune_dangling_cnames(&mut out.answers);
                }
                for (_, e) in self.fit(texts) {
                    let txt = TXT::new(e.service.text_strings());
                    out.answers
                        .push(Record::from_rdata(qname.clone(), ttl(e), RData::TXT(txt)));
                }
            }
            RecordType::NS if apex => {
                let servers: Vec<_> = self.snap.subtree(&domain.dns_path).collect();
                let servers: Vec<_> = servers
                    .into_iter()
                    .filter(|(p, _)| under(p, &format!("{}/ns", domain.dns_path)))
                    .collect();
                for (path, e) in self.fit(servers) {
                    let Some(target) = self.target(path, e, &mut out.additionals) else {
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
                let mut soa = self.auth.soa(domain, self.snap);
                soa.name = qname.clone();
                out.answers.push(soa);
            }
            _ => {}
        }
        dedup(&mut out.answers);
        dedup(&mut out.additionals);
        if out.answers.is_empty() && out.external.is_empty() {
            return Answer::NoData(self.auth.negative_soa(domain, self.snap));
        }
        if !out.external.is_empty() {
            out.soa = Some(self.auth.negative_soa(domain, self.snap));
        }
        out.rotate = out.answers.iter().all(|r| r.record_type() == qtype);
        Answer::Records(out)
    }

    /// The records under `<domain>/dns/apex` when the question is the apex and there are some.
    fn apex_records(&mut self, domain: &Domain, apex: bool) -> Option<Vec<(&'a str, &'a Entry)>> {
        if !apex {
            return None;
        }
        let snap: &'a Snapshot = self.snap;
        let own: Vec<(&'a str, &'a Entry)> = snap
            .subtree(&format!("{}/apex", domain.dns_path))
            .take(self.scan.saturating_add(1))
            .collect();
        if own.len() > self.scan {
            self.exceeded = true;
        }
        (!own.is_empty()).then_some(own)
    }

    /// TXT for `owner` through its CNAME when its records are exactly one host name: the CNAME,
    /// then the target's TXT (in the zone, followed again if the target is a CNAME too, or left
    /// to the upstream). A chain that ends without text is removed by the caller.
    fn txt_through_cname(
        &mut self,
        owner: &Name,
        entries: &[(&'a str, &'a Entry)],
        chain: &mut Vec<Name>,
        out: &mut Records,
    ) {
        let plain_cname = entries
            .iter()
            .all(|(_, e)| matches!(e.host, Host::Name(_)) && e.service.text.is_empty())
            && distinct_names(entries) == 1;
        let Some((_, e)) = entries.first().filter(|_| plain_cname) else {
            return;
        };
        let Host::Name(h) = &e.host else { return };
        let Ok(target) = fqdn(h) else { return };
        let lower = target.to_lowercase();
        if chain.contains(&lower) || chain.len() > MAX_CHAIN || self.room == 0 {
            return;
        }
        // Followed in the zone only (as CoreDNS): a host elsewhere makes no TXT here.
        let Some(d) = self.auth.domain_of(&lower) else {
            return;
        };
        self.room -= 1;
        let ttl = self.auth.ttl(e);
        out.answers.push(Record::from_rdata(
            owner.clone(),
            ttl,
            RData::CNAME(CNAME(target.clone())),
        ));
        if self.expand(&lower).is_some() {
            return;
        }
        let (sub, _) = self.collect(d, &lower);
        let sub = self.fit(sub);
        let texts: Vec<_> = sub
            .iter()
            .filter(|(_, e)| !e.service.text.is_empty())
            .collect();
        if texts.is_empty() {
            chain.push(lower.clone());
            self.txt_through_cname(&target, &sub, chain, out);
            chain.pop();
        } else {
            for (_, e) in texts {
                out.answers.push(Record::from_rdata(
                    target.clone(),
                    self.auth.ttl(e),
                    RData::TXT(TXT::new(e.service.text_strings())),
                ));
            }
        }
        self.expanded.insert(lower, true);
    }

    /// Marks an in-zone name as expanded; `None` when it may be expanded now, else whether its
    /// earlier expansion led anywhere (`Some(false)` also when the budget is spent).
    fn expand(&mut self, target: &Name) -> Option<bool> {
        if let Some(led) = self.expanded.get(target) {
            return Some(*led);
        }
        if self.expanded.len() >= MAX_NAMES {
            return Some(false);
        }
        self.global = true;
        self.expanded.insert(target.clone(), false);
        None
    }

    /// A/AAAA for `owner` from `entries`. A CNAME may only stand alone (RFC 1034 3.6.2, RFC 2181
    /// 10.1), so:
    /// - when any record has an address, the records that name a host are left out of A/AAAA;
    /// - when the records name exactly one host, that is a CNAME, followed in-zone (loops cut, at
    ///   most [`MAX_CHAIN`] deep, each name once) or left for the upstream, and answered only if
    ///   it leads to an address (as SkyDNS and CoreDNS do);
    /// - when they name several hosts, their addresses are answered as `owner`'s own, without a
    ///   CNAME (`flatten`; so are the names below a flattened one).
    fn addresses(
        &mut self,
        owner: &Name,
        entries: &[(&'a str, &'a Entry)],
        qtype: RecordType,
        chain: &mut Vec<Name>,
        flatten: bool,
        out: &mut Records,
    ) {
        let has_addr = entries
            .iter()
            .any(|(_, e)| matches!(e.host, Host::V4(_) | Host::V6(_)));
        let flatten = flatten || (!has_addr && distinct_names(entries) > 1);
        for (_, e) in entries {
            if self.room == 0 {
                self.exceeded |= self.strict;
                return;
            }
            let ttl = self.auth.ttl(e);
            match &e.host {
                Host::V4(ip) if qtype != RecordType::AAAA => {
                    self.room -= 1;
                    out.answers
                        .push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))));
                }
                Host::V6(ip) if qtype != RecordType::A => {
                    self.room -= 1;
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::AAAA(AAAA(*ip)),
                    ));
                }
                Host::Name(_) if has_addr => {}
                Host::Name(h) => {
                    let Ok(target) = fqdn(h) else { continue };
                    let lower = target.to_lowercase();
                    if chain.contains(&lower) || chain.len() > MAX_CHAIN {
                        continue;
                    }
                    let t = if qtype == RecordType::ANY {
                        RecordType::A
                    } else {
                        qtype
                    };
                    let Some(d) = self.auth.domain_of(&lower) else {
                        if !out.external.iter().any(|(n, _)| *n == target) {
                            out.external.push((target.clone(), t));
                        }
                        if flatten {
                            out.flatten = Some(owner.clone());
                        } else {
                            self.room = self.room.saturating_sub(1);
                            out.answers.push(Record::from_rdata(
                                owner.clone(),
                                ttl,
                                RData::CNAME(CNAME(target)),
                            ));
                        }
                        continue;
                    };
                    let cname =
                        Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(target.clone())));
                    // An in-zone CNAME that leads nowhere is left out. A name expanded before in
                    // this question already put its records in.
                    match self.expand(&lower) {
                        Some(true) if !flatten => {
                            self.room = self.room.saturating_sub(1);
                            out.answers.push(cname);
                        }
                        Some(_) => {}
                        None => {
                            let (sub, _) = self.collect(d, &lower);
                            let sub = self.fit(sub);
                            let mut chained = Records::default();
                            chain.push(lower.clone());
                            let under = if flatten { owner } else { &target };
                            self.addresses(under, &sub, qtype, chain, flatten, &mut chained);
                            chain.pop();
                            let led = !chained.answers.is_empty() || !chained.external.is_empty();
                            self.expanded.insert(lower, led);
                            if led {
                                if !flatten {
                                    self.room = self.room.saturating_sub(1);
                                    out.answers.push(cname);
                                }
                                out.answers.extend(chained.answers);
                                out.external.extend(chained.external);
                                out.flatten = out.flatten.take().or(chained.flatten);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The SRV/MX/NS target of a record: its host when that is a name, else the name made from
    /// its key (minus `targetstrip` labels), whose address goes to the additional section.
    fn target(&mut self, path: &str, e: &Entry, additionals: &mut Vec<Record>) -> Option<Name> {
        let ttl = self.auth.ttl(e);
        self.room = self.room.saturating_sub(1);
        match &e.host {
            Host::Name(h) => {
                let target = fqdn(h).ok()?;
                let lower = target.to_lowercase();
                if let Some(d) = self.auth.domain_of(&lower) {
                    if self.expand(&lower).is_none() {
                        let (sub, _) = self.collect(d, &lower);
                        let sub = self.fit(sub);
                        let mut extra = Records::default();
                        self.addresses(
                            &target,
                            &sub,
                            RecordType::ANY,
                            &mut vec![lower.clone()],
                            false,
                            &mut extra,
                        );
                        self.expanded.insert(lower, !extra.answers.is_empty());
                        additionals.extend(extra.answers);
                    }
                }
                Some(target)
            }
            Host::V4(_) | Host::V6(_) => {
                let target = target_name(path, e)?;
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

/// The SRV/MX/NS target a record makes: its host when that is a name, else the name of its key
/// minus `targetstrip` labels. Pure.
fn target_name(path: &str, e: &Entry) -> Option<Name> {
    match &e.host {
        Host::Name(h) => fqdn(h).ok(),
        Host::V4(_) | Host::V6(_) => {
            let name = path_to_name(path);
            let strip =
                (e.service.targetstrip as usize).min(name.split('.').count().saturating_sub(1));
            let stripped = name.splitn(strip + 1, '.').last().unwrap_or(&name);
            fqdn(stripped).ok()
        }
        Host::None => None,
    }
}

/// The group that narrows `found`: the one carried by every shortest key that carries a group;
/// `None` when no key carries one or when those keys disagree. Pure, linear.
fn pick_group(found: &[(&str, &Entry)]) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    let mut disagree = false;
    for (p, e) in found {
        let g = e.service.group.as_str();
        if g.is_empty() {
            continue;
        }
        let depth = p.split('/').count();
        match best {
            Some((d, _)) if depth > d => {}
            Some((d, bg)) if depth == d => disagree |= bg != g,
            _ => {
                best = Some((depth, g));
                disagree = false;
            }
        }
    }
    match best {
        Some((_, g)) if !disagree => Some(g.to_string()),
        _ => None,
    }
}

/// What [`target_name`] would make of a record, as a key that costs no allocation in the common
/// case (it runs over every record of an SRV question, 100,000 under a large apex): a host name
/// as written (lower-cased only when it has capitals), an address record's key path minus its
/// `targetstrip` segments (paths are lower case). Equal keys, equal targets.
#[derive(Hash, PartialEq, Eq)]
enum TargetKey<'a> {
    Host(std::borrow::Cow<'a, str>),
    Path(&'a str),
}

fn target_key<'a>(path: &'a str, e: &'a Entry) -> Option<TargetKey<'a>> {
    match &e.host {
        Host::Name(h) => {
            let h = h.trim_end_matches('.');
            Some(TargetKey::Host(
                if h.bytes().any(|b| b.is_ascii_uppercase()) {
                    std::borrow::Cow::Owned(h.to_ascii_lowercase())
                } else {
                    std::borrow::Cow::Borrowed(h)
                },
            ))
        }
        Host::V4(_) | Host::V6(_) => {
            // The name's leftmost labels are the path's last segments; one label always stays.
            let segments = path.split('/').count();
            let strip = (e.service.targetstrip as usize).min(segments.saturating_sub(1));
            let mut end = path.len();
            for _ in 0..strip {
                end = path[..end].rfind('/').unwrap_or(0);
            }
            Some(TargetKey::Path(&path[..end]))
        }
        Host::None => None,
    }
}

/// How many different host names `entries` point at (case-insensitive), counting up to two.
fn distinct_names(entries: &[(&str, &Entry)]) -> usize {
    let mut first: Option<&str> = None;
    for (_, e) in entries {
        if let Host::Name(h) = &e.host {
            let h = h.trim_end_matches('.');
            match first {
                None => first = Some(h),
                Some(f) if !f.eq_ignore_ascii_case(h) => return 2,
                Some(_) => {}
            }
        }
    }
    usize::from(first.is_some())
}

/// Leaves out the CNAMEs that lead to no data in `records` (their target owns nothing that is
/// kept), chains included. Linear per link of the longest chain.
pub fn prune_dangling_cnames(records: &mut Vec<Record>) {
    let mut live: HashSet<Name> = records
        .iter()
        .filter(|r| r.record_type() != RecordType::CNAME)
        .map(|r| r.name.clone())
        .collect();
    loop {
        let before = live.len();
        for r in records.iter() {
            if let RData::CNAME(c) = &r.data {
                if live.contains(&c.0) {
                    live.insert(r.name.clone());
                }
            }
        }
        if live.len() == before {
            break;
        }
    }
    records.retain(|r| match &r.data {
        RData::CNAME(c) => live.contains(&c.0),
        _ => true,
    });
}

/// At most `max` of `items`, evenly spread over all of them (every k-th), in their order.
fn sample<T>(items: Vec<T>, max: usize) -> Vec<T> {
    if items.len() <= max {
        return items;
    }
    let step = items.len().div_ceil(max.max(1));
    items.into_iter().step_by(step).take(max).collect()
}

fn fqdn(name: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut n = Name::from_ascii(name)?;
    n.set_fqdn(true);
    Ok(n)
}

fn is_reverse(lower: &Name) -> bool {
    static ZONES: std::sync::LazyLock<Vec<Name>> = std::sync::LazyLock::new(|| {
        ["in-addr.arpa.", "ip6.arpa."]
            .into_iter()
            .filter_map(|z| Name::from_ascii(z).ok())
            .collect()
    });
    ZONES.iter().any(|z| z.zone_of(lower))
}

fn reverse_addr(lower: &Name) -> Option<IpAddr> {
    let net = lower.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

/// Removes repeated records (same owner and data), keeping the first: one hash lookup each.
fn dedup(records: &mut Vec<Record>) {
    if records.len() < 2 {
        return;
    }
    let keep: Vec<bool> = {
        let mut seen: HashSet<(&Name, &RData)> = HashSet::with_capacity(records.len());
        records
            .iter()
            .map(|r| seen.insert((&r.name, &r.data)))
            .collect()
    };
    let mut flags = keep.into_iter();
    records.retain(|_| flags.next().unwrap_or(true));
}

#[cfg(test)]
mod tests;
