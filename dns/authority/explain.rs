//! Which records of the snapshot a question's answer is made of, for `GET /explain`: the subtree
//! walked (the name's own, or the service's of an RFC 2782 name), the records used, and the
//! group that was picked (records of another group are left out). Pure; bounded: at most
//! [`LISTED`] paths are listed, with the totals.

use std::collections::HashSet;

use hickory_proto::rr::Name;
use lodestar::Snapshot;

use super::domain::rfc2782_service;
use super::lookup::Lookup;
use super::names::pick_group;
use super::{Authority, Budget};

/// The most paths listed.
pub const LISTED: usize = 100;

/// What a question's answer was made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Made {
    /// The served domain.
    pub domain: String,
    /// The path walked (keys under `<prefix>/<path>`), before any wildcard.
    pub base: String,
    /// The name the records were looked up under, when not the question's own (an RFC 2782
    /// name's service, with the transport its records must have).
    pub service: Option<(String, String)>,
    /// Paths of the records used, at most [`LISTED`].
    pub used: HashSet<String>,
    /// How many records were used.
    pub used_total: usize,
    /// The group that picked the records, when one did.
    pub group: Option<String>,
}

impl Authority {
    /// The records `qname`'s answer is made of (`None` when the name is not in a served
    /// domain). CNAME chains and SRV/MX targets followed elsewhere are not listed.
    pub fn made_of(&self, snap: &Snapshot, qname: &Name) -> Option<Made> {
        let lower = qname.to_lowercase();
        let domain = self.domain_of(&lower)?;
        let mut q = Lookup::new(self, snap, Budget::FULL);
        let (mut found, mut base) = q.collect(domain, &lower);
        let mut service = None;
        if found.is_empty() {
            if let Some((name, proto)) = rfc2782_service(&lower, domain) {
                let (of_service, service_base) = q.collect(domain, &name);
                found = of_service
                    .into_iter()
                    .filter(|(_, e)| e.service.is_proto(&proto))
                    .collect();
                base = service_base;
                service = Some((name.to_string(), proto));
            }
        }
        Some(Made {
            domain: domain.name.to_string(),
            group: pick_group(&found),
            used_total: found.len(),
            used: found
                .iter()
                .take(LISTED)
                .map(|(p, _)| (*p).to_string())
                .collect(),
            base,
            service,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(values: &[(&str, &str)]) -> Snapshot {
        Snapshot::from_values(values.iter().map(|(p, v)| (*p, v.as_bytes(), 1)))
    }

    #[test]
    fn the_records_used_the_group_and_the_service_of_an_rfc_2782_name() {
        let s = snap(&[
            ("dev/webapp/redis/r1", r#"{"host":"10.0.0.1","group":"a"}"#),
            ("dev/webapp/redis/r2", r#"{"host":"10.0.0.2","group":"b"}"#),
            ("dev/webapp/redis/r3", r#"{"host":"10.0.0.3"}"#),
            (
                "dev/webapp/dns53/n1",
                r#"{"host":"10.0.0.4","proto":"udp"}"#,
            ),
            ("dev/webapp/dns53/n2", r#"{"host":"10.0.0.5"}"#),
        ]);
        let a = Authority::webapp_dev();
        let name = |n: &str| Name::from_ascii(n).unwrap();
        // Two groups at the same depth disagree: nothing is filtered.
        let m = a.made_of(&s, &name("redis.webapp.dev.")).unwrap();
        assert_eq!(m.base, "dev/webapp/redis");
        assert_eq!(m.used_total, 3);
        assert_eq!(m.group, None);
        let m = a.made_of(&s, &name("r1.redis.webapp.dev.")).unwrap();
        assert_eq!(m.group.as_deref(), Some("a"));
        let m = a.made_of(&s, &name("_dns53._udp.webapp.dev.")).unwrap();
        assert_eq!(m.base, "dev/webapp/dns53");
        assert_eq!(m.service, Some(("dns53.webapp.dev.".into(), "udp".into())));
        assert_eq!(m.used, HashSet::from(["dev/webapp/dns53/n1".to_string()]));
        assert!(a.made_of(&s, &name("www.example.org.")).is_none());
    }
}
