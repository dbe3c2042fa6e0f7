//! The CHAOS-class names a server answers about itself: `version.bind`/`version.server` (unless
//! hidden) and `hostname.bind`/`id.server` (`--server-id`), TXT with TTL 0.

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Answer, Records};

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
