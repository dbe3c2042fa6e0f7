//! One question's walk of the snapshot: the records at or below its name (wildcards matched
//! through the snapshot's index, the group applied, the reserved subtree kept to itself), the
//! budget that bounds the walk whatever etcd holds, and the dispatch to the function of the
//! question's type (`records`).

use std::collections::HashMap;

use hickory_proto::rr::{Name, RecordType};
use lodestar::{Entry, Snapshot};

use super::names::{dedup, pick_group, sample, under};
use super::{Answer, Authority, Budget, Domain, Records, MAX_NAMES, MAX_RECORDS};

/// What is asked: the name as sent and in lower case, the type, the domain it is in, and whether
/// it is that domain's apex.
#[derive(Clone, Copy)]
pub struct Ask<'q> {
    /// The served domain holding the name.
    pub domain: &'q Domain,
    /// The name as sent (its letter case is echoed in owner names).
    pub qname: &'q Name,
    /// The name in lower case.
    pub lower: &'q Name,
    /// The type asked.
    pub qtype: RecordType,
    /// Whether the name is the domain's apex.
    pub apex: bool,
}

/// One question's walk of the snapshot, with its budget.
pub struct Lookup<'a> {
    pub(super) auth: &'a Authority,
    pub(super) snap: &'a Snapshot,
    /// In-zone names expanded so far, and whether each led to any record.
    pub(super) expanded: HashMap<Name, bool>,
    /// Records that may still be built.
    pub(super) room: usize,
    /// Records that may still be looked at.
    pub(super) scan: usize,
    /// Whether running out of room means "too large for this budget" rather than "sample".
    pub(super) strict: bool,
    /// Whether the question needed more than the budget.
    pub(super) exceeded: bool,
    /// Whether the answer used records outside the question's own subtree.
    pub(super) global: bool,
}

impl<'a> Lookup<'a> {
    pub fn new(auth: &'a Authority, snap: &'a Snapshot, budget: Budget) -> Self {
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
    pub(super) fn fit<T>(&mut self, items: Vec<T>) -> Vec<T> {
        if self.strict && items.len() > self.room {
            self.exceeded = true;
        }
        sample(items, self.room)
    }

    /// Every record at or below `name` (lower case) in `domain`, wildcards matched, group
    /// applied, and the path everything was found under (the part before any wildcard). The
    /// reserved `dns` subtree only answers names inside it. Linear in the records under that path.
    pub fn collect(&mut self, domain: &Domain, name: &Name) -> (Vec<(&'a str, &'a Entry)>, String) {
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

    /// The answer of the question's type made from `entries`, the records under its name.
    pub fn build(&mut self, ask: &Ask, entries: Vec<(&'a str, &'a Entry)>) -> Answer {
        let (domain, qtype) = (ask.domain, ask.qtype);
        if entries.is_empty() && !ask.apex {
            return Answer::NxDomain(self.auth.negative_soa(domain, self.snap));
        }
        let mut out = Records::default();
        match qtype {
            RecordType::A | RecordType::AAAA => self.a_or_aaaa(ask, entries, &mut out),
            RecordType::ANY => self.any(ask, &mut out),
            RecordType::CNAME => self.cname(ask, entries, &mut out),
            RecordType::SRV => self.srv(ask, entries, &mut out),
            RecordType::MX => self.mx(ask, entries, &mut out),
            RecordType::TXT => self.txt(ask, entries, &mut out),
            RecordType::NS if ask.apex => self.ns(ask, &mut out),
            RecordType::SOA if ask.apex => self.soa(ask, &mut out),
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
    pub(super) fn apex_records(
        &mut self,
        domain: &Domain,
        apex: bool,
    ) -> Option<Vec<(&'a str, &'a Entry)>> {
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

    /// Marks an in-zone name as expanded; `None` when it may be expanded now, else whether its
    /// earlier expansion led anywhere (`Some(false)` also when the budget is spent).
    pub(super) fn expand(&mut self, target: &Name) -> Option<bool> {
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
}
