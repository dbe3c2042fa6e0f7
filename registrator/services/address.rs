//! Where a container's ports are registered: the published ports at the binding's address or
//! `--ip` (IPv4 first, an `-ipv6` twin where the port is bound on IPv6 too); with `--internal`, the exposed ports at the container's address on the network it
//! names (`SERVICE_NETWORK`), `--network`'s, or its first (IPv4 first, an `-ipv6` twin on a
//! dual-stack network); a host-networked container's exposed ports at the host's address.
//! Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Container, Published, Settings};

/// One port to register: the container port, transport, address and port to publish.
pub struct Endpoint {
    pub port: u16,
    pub proto: super::Proto,
    pub ip: IpAddr,
    pub port_out: u16,
    /// The IPv6 twin of an IPv4 endpoint (a dual-stack network with `--internal`): its id gets
    /// `-ipv6`, so that the name answers AAAA as well as A.
    pub twin: bool,
    /// Which rule chose the address (for `--dry-run`).
    pub from: String,
}

/// The address `--internal` registers: on `SERVICE_NETWORK`'s network, else `--network`'s, else
/// the first network by name that has one; IPv4 preferred. `None` when that network is not
/// attached or has no address.
/// The second, IPv6, address is that of the same network when it is dual-stack.
fn internal_address(
    c: &Container,
    s: &Settings,
    wanted: Option<&str>,
) -> Option<(IpAddr, Option<Ipv6Addr>, String)> {
    let pick = |(v4, v6): &(Option<Ipv4Addr>, Option<Ipv6Addr>)| match (v4, v6) {
        (Some(v4), v6) => Some((IpAddr::V4(*v4), *v6)),
        (None, Some(v6)) => Some((IpAddr::V6(*v6), None)),
        (None, None) => None,
    };
    let found = |rule: &str, net: &str, (ip, v6): (IpAddr, Option<Ipv6Addr>)| {
        (ip, v6, format!("{rule} network {net:?}"))
    };
    match (wanted, s.network.as_deref()) {
        (Some(net), _) => c
            .networks
            .get(net)
            .and_then(pick)
            .map(|a| found("SERVICE_NETWORK", net, a)),
        (None, Some(net)) => c
            .networks
            .get(net)
            .and_then(pick)
            .map(|a| found("--network", net, a)),
        (None, None) => c
            .networks
            .iter()
            .find_map(|(k, n)| n.0.is_some().then(|| pick(n).map(|a| (k, a))).flatten())
            .or_else(|| c.networks.iter().find_map(|(k, n)| pick(n).map(|a| (k, a))))
            .map(|(k, a)| found("the first", k, a)),
    }
}

/// The ports to register and where: `ip` overrides the address (`SERVICE_IP`), `network` is
/// `SERVICE_NETWORK`. A host-networked container's exposed ports are at the host's address.
pub fn endpoints(
    c: &Container,
    s: &Settings,
    ip: Option<(IpAddr, &str)>,
    network: Option<&str>,
) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    let exposed = |ip: IpAddr, twin: bool, from: &str, out: &mut Vec<Endpoint>| {
        let mut ports = c.exposed.clone();
        ports.sort();
        ports.dedup();
        out.extend(ports.into_iter().map(|(port, proto)| Endpoint {
            port,
            proto,
            ip,
            port_out: port,
            twin,
            from: from.to_string(),
        }));
    };
    if c.network_mode == "host" {
        // No port is published on the host network: the exposed ones are the host's own.
        match ip {
            Some((addr, from)) => {
                if !addr.is_unspecified() {
                    exposed(addr, false, from, &mut out);
                }
            }
            None => {
                if !s.host_ip.is_unspecified() {
                    exposed(s.host_ip, false, "--ip (host network)", &mut out);
                    if let Some(v6) = s.host_ip6.filter(|_| s.host_ip.is_ipv4()) {
                        exposed(IpAddr::V6(v6), true, "--ip, IPv6 (host network)", &mut out);
                    }
                }
            }
        }
    } else if s.internal {
        let Some((addr, v6, from)) = ip
            .map(|(ip, from)| (ip, None, from.to_string()))
            .or_else(|| internal_address(c, s, network))
        else {
            return out;
        };
        exposed(addr, false, &from, &mut out);
        if let Some(v6) = v6 {
            exposed(IpAddr::V6(v6), true, &from, &mut out);
        }
    } else {
        let mut ports: Vec<(u16, super::Proto)> =
            c.published.iter().map(|p| (p.port, p.proto)).collect();
        ports.sort();
        ports.dedup();
        for (port, proto) in ports {
            let bindings: Vec<&Published> = c
                .published
                .iter()
                .filter(|p| (p.port, p.proto) == (port, proto))
                .collect();
            out.extend(published(&bindings, s, ip).into_iter().enumerate().map(
                |(i, (ip, port_out, from))| Endpoint {
                    port,
                    proto,
                    ip,
                    port_out,
                    twin: i == 1,
                    from,
                },
            ));
        }
    }
    out
}

/// Where one container port's bindings are reached: `(address, host port, rule)`, the IPv4 one
/// first and its IPv6 twin second, or the IPv6 one alone (a port bound only on IPv6).
///
/// A binding's address is its own when specific, else `--ip` of its family (`0.0.0.0` and an
/// unnamed one: the primary `--ip`; `::`: the IPv6 `--ip`, or the primary when that is IPv6);
/// a binding whose family has no address is not reachable and skipped. Of several bindings of a
/// family, a specific address wins over a wildcard, and a wildcard over loopback (reachable only
/// from the host itself). `SERVICE_IP` (`given`) replaces the address of the first binding, and
/// there is no twin.
fn published(
    bindings: &[&Published],
    s: &Settings,
    given: Option<(IpAddr, &str)>,
) -> Vec<(IpAddr, u16, String)> {
    if let Some((ip, from)) = given {
        let first = bindings
            .iter()
            .min_by_key(|b| b.host_ip.is_some_and(|ip| ip.is_ipv6()));
        return first.map_or_else(Vec::new, |b| vec![(ip, b.host_port, from.to_string())]);
    }
    let v6_ip = s
        .host_ip6
        .map(IpAddr::V6)
        .or_else(|| s.host_ip.is_ipv6().then_some(s.host_ip));
    let mut reached: Vec<(u8, IpAddr, u16, String)> = bindings
        .iter()
        .filter_map(|b| {
            let (rank, ip, from) = match b.host_ip {
                None => (1, s.host_ip, "--ip"),
                Some(IpAddr::V4(a)) if a.is_unspecified() => {
                    (1, Some(s.host_ip).filter(IpAddr::is_ipv4)?, "--ip")
                }
                Some(IpAddr::V6(a)) if a.is_unspecified() => {
                    let from = if s.host_ip6.is_some() {
                        "--ip, IPv6"
                    } else {
                        "--ip"
                    };
                    (1, v6_ip?, from)
                }
                Some(ip) if ip.is_loopback() => (2, ip, "the port binding's address"),
                Some(ip) => (0, ip, "the port binding's address"),
            };
            (!ip.is_unspecified()).then(|| (rank, ip, b.host_port, from.to_string()))
        })
        .collect();
    reached.sort_by_key(|r| r.0);
    let v4 = reached.iter().find(|r| r.1.is_ipv4());
    let v6 = reached.iter().find(|r| r.1.is_ipv6());
    [v4, v6]
        .into_iter()
        .flatten()
        .map(|(_, ip, port, from)| (*ip, *port, from.clone()))
        .collect()
}
