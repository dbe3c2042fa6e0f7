//! Our own data: answers from the view's snapshot ((snapshot, question) -> [`Answer`], with no
//! I/O), the static zones, and the stub zones that send a zone's names elsewhere.
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

//! A tier below the pipeline, beside `upstream` and `dnssec`: it imports the library's view and
//! records, `proto`, and `dnssec`'s keys (the static zones are signed with them); the pipeline
//! imports it. Files: `domain` (the served domains, SOA, TTL, the entry of a question), `lookup`
//! (the walk and its budget), `records` (one function per record type), `names` (small pure
//! helpers), `explain` (which records an answer is made of), `chaos`, `zones` (static zones),
//! `stub` (stub zones).

mod chaos;
mod domain;
pub mod explain;
mod lookup;
mod names;
mod records;
pub mod stub;
pub mod zones;

use hickory_proto::rr::{Name, Record, RecordType};

pub use chaos::Chaos;
pub use domain::Domain;
pub use names::prune_dangling_cnames;

/// How many CNAMEs a chain may have before it is cut (as SkyDNS: 8).
pub(crate) const MAX_CHAIN: usize = 8;

/// How many distinct in-zone names one question may expand (CNAME targets, SRV/MX/NS targets
/// that are names): a few dozen hostile records cannot make one query walk the zone.
pub(crate) const MAX_NAMES: usize = 32;

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
    /// name whose records point at several other names: see [`lookup::Lookup::addresses`]).
    pub flatten: Option<Name>,
    /// The SOA to answer NODATA with when nothing is left once `external` was resolved.
    pub soa: Option<Record>,
    /// Whether the answers may be sent in any rotation (not a CNAME chain, whose order matters).
    pub rotate: bool,
}

/// What an answer depends on: when may a cached copy of it still be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dep {
    /// Only the records at or below this path (see [`lodestar::Snapshot::changed_since`]).
    Path(String),
    /// Only the records at or below either path (an RFC 2782 name: the name as asked, which
    /// would win if stored, and the service's).
    Either(String, String),
    /// Anything in the view (it followed names elsewhere, or it carries the SOA serial).
    All,
    /// Nothing that changes while the server runs (static zones).
    Static,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
impl Authority {
    /// The unit tests' authority: `webapp.dev.` alone, TTLs of 30 s, nothing else set.
    pub fn webapp_dev() -> Authority {
        Authority {
            domains: vec![Domain::new(&Name::from_ascii("webapp.dev.").unwrap())],
            default_ttl: 30,
            negative_ttl: 30,
            local: None,
            hostmaster: None,
            chaos: Default::default(),
        }
    }
}
