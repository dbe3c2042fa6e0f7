//! Where a container's ports are registered: the published ports at the binding's address or
//! `--ip`; with `--internal`, the exposed ports at the container's address on the network it
//! names (`SERVICE_NETWORK`), `--network`'s, or its first (IPv4 first, an `-ipv6` twin on a
//! dual-stack network); a host-networked container's exposed ports at the host's address.
//! Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Container, Settings};

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
        let (addr, from) = ip.unwrap_or((s.host_ip, "--ip (host network)"));
        if !addr.is_unspecified() {
            exposed(addr, false, from, &mut out);
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
        let mut ports = c.published.clone();
        // One record per container port: Docker lists 0.0.0.0 and :: bindings of the same port.
        ports.sort_by_key(|p| (p.port, p.proto, p.host_ip.is_some_and(|ip| ip.is_ipv6())));
        ports.dedup_by_key(|p| (p.port, p.proto));
        out.extend(ports.into_iter().map(|p| {
            let (ip, from) = match (ip, p.host_ip.filter(|ip| !ip.is_unspecified())) {
                (Some((ip, from)), _) => (ip, from.to_string()),
                (None, Some(bound)) => (bound, "the port binding's address".to_string()),
                (None, None) => (s.host_ip, "--ip".to_string()),
            };
            Endpoint {
                port: p.port,
                proto: p.proto,
                ip,
                port_out: p.host_port,
                twin: false,
                from,
            }
        }));
    }
    out
}
