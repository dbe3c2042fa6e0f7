//! Stub zones, as SkyDNS has them: records at `<domain>/dns/stub/<zone>/<ns>` (the key of
//! `ns1.example.com.stub.dns.webapp.dev`, host an address, port default 53) send every question
//! for `<zone>` and below to those nameservers, whatever the served domains say.
//!
//! [`StubZones::from_snapshot`] reads them from a snapshot (pure, linear in the stub records);
//! the handler keeps the set of the current generation. Loops (two servers stubbing a zone to
//! each other, or one to itself) are cut as SkyDNS cuts them: a forwarded stub question carries
//! the EDNS option [`LOOP_OPTION`] = 1, and a question that arrives with it is not forwarded
//! again (SERVFAIL, where SkyDNS stayed silent).

use std::net::SocketAddr;

use hickory_proto::rr::Name;
use lodestar::{Host, Snapshot};

use crate::answer::Domain;

/// The EDNS option code SkyDNS marks stub questions with (`EDNS0LOCALSTART + 10`).
pub const LOOP_OPTION: u16 = 0xFDE9 + 10;

/// The stub zones of a snapshot: zone -> nameservers, the most specific zone first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StubZones {
    zones: Vec<(Name, Vec<SocketAddr>)>,
}

impl StubZones {
    /// Every `<domain>/dns/stub/...` record with an address, grouped by zone. A zone equal to a
    /// served domain is left out (as SkyDNS: never a stub for our own domain).
    pub fn from_snapshot(snap: &Snapshot, domains: &[Domain]) -> StubZones {
        let mut zones: Vec<(Name, Vec<SocketAddr>)> = Vec::new();
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
                if domains.iter().any(|d| d.name == zone) {
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
        StubZones { zones }
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
        let s = StubZones::from_snapshot(&snap, &[d]);
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
}
