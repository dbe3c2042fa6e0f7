//! Stub zones, as SkyDNS has them: records at `<domain>/dns/stub/<zone>/<ns>` (the key of
//! `ns1.example.com.stub.dns.webapp.dev`, host an address, port default 53) send every question
//! for `<zone>` and below to those nameservers.
//!
//! Which stub zones are taken (a stub zone is a redirection of names, so it must never take over
//! what this server answers): a zone `Z` declared under the served domain `D` is taken when
//! - `Z` is not a served domain and not a parent of one (`dev.` would swallow `webapp.dev.`), and
//! - `Z` is outside every served domain (a foreign zone, SkyDNS's use: `example.com.` sent to
//!   its own nameservers), or the most specific served domain that holds `Z` is `D` itself: a
//!   delegation of part of `D` written into `D`'s own reserved subtree, which only an operator
//!   writes (the registrator never writes a `dns` label). So one served domain's subtree never
//!   redirects another's.
//!
//! Every other stub record is refused; each zone taken or refused is logged once when the set
//! changes ([`StubZones::log_changes`]).
//!
//! [`StubZones::from_snapshot`] reads them from a snapshot (pure, linear in the stub records);
//! the handler keeps the set of the current generation. Loops (two servers stubbing a zone to
//! each other, or one to itself) are cut as SkyDNS cuts them: a forwarded stub question carries
//! the EDNS option [`crate::proto::edns::LOOP_OPTION`] = 1, and a question that arrives with it is not forwarded
//! again (SERVFAIL, where SkyDNS stayed silent).

use std::net::SocketAddr;

use hickory_proto::rr::Name;
use lodestar::{Host, Snapshot};

use crate::authority::Domain;

/// The stub zones of a snapshot: zone -> nameservers, the most specific zone first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StubZones {
    zones: Vec<(Name, Vec<SocketAddr>)>,
}

/// A stub zone that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The zone the records declare.
    pub zone: Name,
    /// The served domain whose `dns/stub` subtree declares it.
    pub declared_in: Name,
    /// Why it is not taken.
    pub why: String,
}

/// Whether the zone `zone`, declared under the served domain `declared_in`, may be taken (see the
/// module's rule); the reason when not. Pure.
pub fn verdict(zone: &Name, declared_in: &Name, domains: &[Domain]) -> Result<(), String> {
    if domains.iter().any(|d| d.name == *zone) {
        return Err("it is a served domain".into());
    }
    if let Some(d) = domains.iter().find(|d| zone.zone_of(&d.name)) {
        return Err(format!("it is a parent of the served domain {}", d.name));
    }
    let holder = domains
        .iter()
        .filter(|d| d.name.zone_of(zone))
        .max_by_key(|d| d.name.num_labels());
    match holder {
        None => Ok(()),
        Some(d) if d.name == *declared_in => Ok(()),
        Some(d) => Err(format!(
            "it is inside the served domain {}, and only {}'s own dns/stub may delegate its names",
            d.name, d.name
        )),
    }
}

impl StubZones {
    /// Every `<domain>/dns/stub/...` record with an address, grouped by zone, and the zones
    /// refused by the rule of this module.
    pub fn from_snapshot(snap: &Snapshot, domains: &[Domain]) -> (StubZones, Vec<Refused>) {
        let mut zones: Vec<(Name, Vec<SocketAddr>)> = Vec::new();
        let mut refused: Vec<Refused> = Vec::new();
        for d in domains {
            let base = format!("{}/dns/stub", d.path);
            for (path, e) in snap.subtree(&base) {
                let addr = match e.host {
                    Host::V4(ip) => std::net::IpAddr::V4(ip),
                    Host::V6(ip) => std::net::IpAddr::V6(ip),
                    _ => {
                        tracing::debug!(key = path, "stub zone record without an address: skipped");
                        continue;
                    }
                };
                let port = if e.service.port == 0 {
                    53
                } else {
                    e.service.port
                };
                // Labels after the base, top first; the last one is the nameserver's place holder.
                let rest: Vec<&str> = path[base.len()..]
                    .split('/')
                    .filter(|l| !l.is_empty())
                    .collect();
                if rest.len() < 2 {
                    continue;
                }
                let zone_labels: Vec<&str> = rest[..rest.len() - 1].iter().rev().copied().collect();
                let Ok(mut zone) = Name::from_ascii(zone_labels.join(".")) else {
                    continue;
                };
                zone.set_fqdn(true);
                let zone = zone.to_lowercase();
                if let Err(why) = verdict(&zone, &d.name, domains) {
                    if !refused
                        .iter()
                        .any(|r| r.zone == zone && r.declared_in == d.name)
                    {
                        refused.push(Refused {
                            zone,
                            declared_in: d.name.clone(),
                            why,
                        });
                    }
                    continue;
                }
                let sa = SocketAddr::new(addr, port);
                match zones.iter_mut().find(|(z, _)| *z == zone) {
                    Some((_, servers)) => {
                        if !servers.contains(&sa) {
                            servers.push(sa);
                        }
                    }
                    None => zones.push((zone, vec![sa])),
                }
            }
        }
        zones.sort_by_key(|(z, _)| std::cmp::Reverse(z.num_labels()));
        (StubZones { zones }, refused)
    }

    /// Logs what changed from `before` (with its refusals) to `self` (with `refused`): each zone
    /// taken, dropped or refused, once.
    pub fn log_changes(&self, refused: &[Refused], before: &StubZones, refused_before: &[Refused]) {
        for (zone, servers) in &self.zones {
            if before.zones.iter().any(|(z, s)| z == zone && s == servers) {
                continue;
            }
            tracing::info!(zone = %zone, ?servers, "stub zone taken: its names go to these nameservers");
        }
        for (zone, _) in &before.zones {
            if !self.zones.iter().any(|(z, _)| z == zone) {
                tracing::info!(zone = %zone, "stub zone dropped");
            }
        }
        for r in refused {
            if !refused_before.contains(r) {
                tracing::warn!(zone = %r.zone, declared_in = %r.declared_in, why = %r.why, "stub zone refused");
            }
        }
    }

    /// The nameservers of the most specific stub zone holding `name` (lower case).
    pub fn find(&self, name: &Name) -> Option<&[SocketAddr]> {
        self.zones
            .iter()
            .find(|(z, _)| z.zone_of(name))
            .map(|(_, s)| s.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_records_make_zones_the_most_specific_first() {
        let snap = Snapshot::from_values([
            (
                "dev/webapp/dns/stub/com/example/a",
                br#"{"host":"10.0.0.1"}"#.as_slice(),
                1,
            ),
            (
                "dev/webapp/dns/stub/com/example/b",
                br#"{"host":"10.0.0.2","port":5353}"#,
                1,
            ),
            (
                "dev/webapp/dns/stub/com/example/in/c",
                br#"{"host":"10.0.0.3"}"#,
                1,
            ),
            (
                "dev/webapp/dns/stub/net/x/n",
                br#"{"host":"not-an-address"}"#,
                1,
            ),
            (
                "dev/webapp/dns/stub/dev/webapp/n",
                br#"{"host":"10.0.0.4"}"#,
                1,
            ),
        ]);
        let d = Domain::new(&Name::from_ascii("webapp.dev.").unwrap());
        let (s, refused) = StubZones::from_snapshot(&snap, &[d]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        let n = |x: &str| Name::from_ascii(x).unwrap();
        assert_eq!(
            s.find(&n("www.example.com.")).unwrap(),
            [
                "10.0.0.1:53".parse().unwrap(),
                "10.0.0.2:5353".parse().unwrap()
            ]
        );
        assert_eq!(
            s.find(&n("a.in.example.com.")).unwrap(),
            ["10.0.0.3:53".parse::<SocketAddr>().unwrap()]
        );
        assert!(s.find(&n("www.x.net.")).is_none(), "no address: no stub");
        assert!(
            s.find(&n("a.webapp.dev.")).is_none(),
            "never our own domain"
        );
        assert!(s.find(&n("example.org.")).is_none());
    }

    #[test]
    fn no_stub_zone_takes_over_a_served_domain() {
        let n = |x: &str| Name::from_ascii(x).unwrap();
        let domains: Vec<Domain> = ["webapp.dev.", "other.dev.", "inner.webapp.dev."]
            .iter()
            .map(|d| Domain::new(&n(d)))
            .collect();
        let ok = |zone: &str, under: &str| verdict(&n(zone), &n(under), &domains);
        // Foreign zones, and a delegation of part of a domain in its own subtree.
        assert_eq!(ok("example.com.", "webapp.dev."), Ok(()));
        assert_eq!(ok("lab.webapp.dev.", "webapp.dev."), Ok(()));
        assert_eq!(ok("x.lab.inner.webapp.dev.", "inner.webapp.dev."), Ok(()));
        // A served domain, a parent of one, another domain's names.
        for (zone, under, why) in [
            ("webapp.dev.", "webapp.dev.", "is a served domain"),
            ("other.dev.", "webapp.dev.", "is a served domain"),
            ("dev.", "webapp.dev.", "parent of the served domain"),
            (".", "webapp.dev.", "parent of the served domain"),
            (
                "x.other.dev.",
                "webapp.dev.",
                "inside the served domain other.dev.",
            ),
            (
                "x.inner.webapp.dev.",
                "webapp.dev.",
                "inside the served domain inner.webapp.dev.",
            ),
        ] {
            let got = ok(zone, under).unwrap_err();
            assert!(got.contains(why), "{zone} under {under}: {got}");
        }
    }
}
