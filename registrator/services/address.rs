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
}

/// The address `--internal` registers: on `SERVICE_NETWORK`'s network, else `--network`'s, else
/// the first network by name that has one; IPv4 preferred. `None` when that network is not
/// attached or has no address.
/// The second, IPv6, address is that of the same network when it is dual-stack.
fn internal_address(
    c: &Container,
    s: &Settings,
    wanted: Option<&str>,
) -> Option<(IpAddr, Option<Ipv6Addr>)> {
    let pick = |(v4, v6): &(Option<Ipv4Addr>, Option<Ipv6Addr>)| match (v4, v6) {
        (Some(v4), v6) => Some((IpAddr::V4(*v4), *v6)),
        (None, Some(v6)) => Some((IpAddr::V6(*v6), None)),
        (None, None) => None,
    };
    match wanted.or(s.network.as_deref()) {
        Some(net) => c.networks.get(net).and_then(pick),
        None => c
            .networks
            .values()
            .find_map(|n| n.0.is_some().then(|| pick(n)).flatten())
            .or_else(|| c.networks.values().find_map(pick)),
    }
}

/// The ports to register and where: `ip` overrides the address (`SERVICE_IP`), `network` is
/// `SERVICE_NETWORK`. A host-networked container's exposed ports are at the host's address.
pub fn endpoints(
    c: &Container,
    s: &Settings,
    ip: Option<IpAddr>,
    network: Option<&str>,
) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    let exposed = |ip: IpAddr, twin: bool, out: &mut Vec<Endpoint>| {
        let mut ports = c.exposed.clone();
        ports.sort();
        ports.dedup();
        out.extend(ports.into_iter().map(|(port, proto)| Endpoint {
            port,
            proto,
            ip,
            port_out: port,
            twin,
        }));
    };
    if c.network_mode == "host" {
        // No port is published on the host network: the exposed ones are the host's own.
        let addr = ip.unwrap_or(s.host_ip);
        if !addr.is_unspecified() {
            exposed(addr, false, &mut out);
        }
    } else if s.internal {
        let Some((addr, v6)) = ip
            .map(|ip| (ip, None))
            .or_else(|| internal_address(c, s, network))
        else {
            return out;
        };
        exposed(addr, false, &mut out);
        if let Some(v6) = v6 {
            exposed(IpAddr::V6(v6), true, &mut out);
        }
    } else {
        let mut ports = c.published.clone();
        // One record per container port: Docker lists 0.0.0.0 and :: bindings of the same port.
        ports.sort_by_key(|p| (p.port, p.proto, p.host_ip.is_some_and(|ip| ip.is_ipv6())));
        ports.dedup_by_key(|p| (p.port, p.proto));
        out.extend(ports.into_iter().map(|p| Endpoint {
            port: p.port,
            proto: p.proto,
            ip: ip.unwrap_or_else(|| {
                p.host_ip
                    .filter(|ip| !ip.is_unspecified())
                    .unwrap_or(s.host_ip)
            }),
            port_out: p.host_port,
            twin: false,
        }));
    }
    out
}
