//! Container -> services, as pure functions over a plain [`Container`]: no Docker, no clock.
//!
//! One service per published port (exposed port with `--internal`, at the container's address on
//! `SERVICE_NETWORK`'s, `--network`'s or its first network, with an `-ipv6` twin on a dual-stack
//! network; exposed ports at the host's address for a host-networked container; `SERVICE_IP`
//! overrides the address). Name: `SERVICE_<port>_NAME`, `SERVICE_NAME`, the compose service, the
//! image's base name, else (an image referenced by id) the container's name (`-<port>` appended
//! when there are several ports and no per-port name). Id: `SERVICE_<port>_ID`, `SERVICE_ID` (`-<port>`
//! appended when several ports share it), else a DNS-safe id from host id, container name and port.
//! UDP ports get `-udp` on generated ids. Labels win over env, port-specific keys over general ones.
//! The record lives at `<id>.<name>.<domain>`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lodestar::key;
use lodestar::Service;

/// Transport of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (and SCTP, registered like TCP).
    Tcp,
    /// UDP: generated ids end in `-udp`.
    Udp,
}

/// A container port published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The container's port (the one `SERVICE_<port>_*` keys name).
    pub port: u16,
    /// Transport.
    pub proto: Proto,
    /// The host address it is bound to; `None` for all addresses (0.0.0.0 / ::).
    pub host_ip: Option<IpAddr>,
    /// The port on the host.
    pub host_port: u16,
}

/// What a container is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunState {
    /// Running.
    #[default]
    Running,
    /// Paused: withdrawn.
    Paused,
    /// Not running; the exit code when it has one.
    Stopped(Option<i64>),
}

/// Health of a container with a HEALTHCHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Health {
    /// No healthcheck: counts as soon as it runs.
    #[default]
    None,
    /// Not healthy yet.
    Starting,
    /// Healthy: counts.
    Healthy,
    /// Unhealthy: withdrawn.
    Unhealthy,
}

/// The parts of a container that decide its services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// Full id.
    pub id: String,
    /// Name, without the leading `/`.
    pub name: String,
    /// Image reference as configured (`redis:7`, `registry:5000/team/api@sha256:...`).
    pub image: String,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Running, paused or stopped.
    pub state: RunState,
    /// Health, when it has a healthcheck.
    pub health: Health,
    /// Published ports.
    pub published: Vec<Published>,
    /// Exposed ports (for `--internal`).
    pub exposed: Vec<(u16, Proto)>,
    /// Ports configured to be published (`-p`), kept by the engine while the container is
    /// stopped, when `published` is empty.
    pub configured: Vec<(u16, Proto)>,
    /// Addresses by network name.
    pub networks: BTreeMap<String, (Option<Ipv4Addr>, Option<Ipv6Addr>)>,
    /// Docker's network mode (`bridge`, `host`, a network's name, `container:<id>`).
    pub network_mode: String,
}

/// How this registrator turns containers into services.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This host's id: part of generated ids, and the owner of the records.
    pub host_id: String,
    /// The address published ports are reached at.
    pub host_ip: IpAddr,
    /// Register exposed ports at the container's address instead of published ones.
    pub internal: bool,
    /// Register only ports with a name given by `SERVICE_NAME` or `SERVICE_<port>_NAME`.
    pub explicit: bool,
    /// The domain records go under (`webapp.dev`).
    pub domain: String,
    /// `--network`: the network whose address `--internal` registers when a container names
    /// none (`SERVICE_NETWORK`); else its first network by name.
    pub network: Option<String>,
}

/// Why a container's labels cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A name or id from env or labels is not a valid DNS name.
    #[error("{key}={value:?} does not make a valid DNS name: {reason}")]
    Name {
        /// The key it came from.
        key: String,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// An address key holds something else.
    #[error("{key}={value:?} is not an IP address")]
    Address {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// A name or id would put the record into a reserved subtree (`dns`: stub zones, NS and
    /// apex records of a served domain), which only operators write.
    #[error("{key}={value:?} has the label `dns`, which is reserved: records under a `dns` label are stub zones, NS or apex records of a domain, written by operators, never by the registrator")]
    Reserved {
        /// The key (or what the name came from: image, compose service, container name).
        key: String,
        /// The value.
        value: String,
    },
    /// The record would be larger than a record may be ([`lodestar::record::MAX_VALUE_BYTES`]).
    #[error("the record of port {port} would be {bytes} bytes, more than the {} a record may have (SERVICE_TEXT?)", lodestar::record::MAX_VALUE_BYTES)]
    TooLarge {
        /// The container port.
        port: u16,
        /// The size of its record's JSON.
        bytes: usize,
    },
    /// A container on the host's network, and this host's address is not known.
    #[error(
        "the container is on the host's network and this host's address is not known: give --ip"
    )]
    NoHostAddress,
    /// A numeric key holds something else.
    #[error("{key}={value:?} is not a number in range")]
    Number {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// Whether the container should have services now: running, not paused, healthy if checked.
pub fn counts(c: &Container) -> bool {
    c.state == RunState::Running && matches!(c.health, Health::None | Health::Healthy)
}

/// One port to register: the container port, transport, address and port to publish.
struct Endpoint {
    port: u16,
    proto: Proto,
    ip: IpAddr,
    port_out: u16,
    /// The IPv6 twin of an IPv4 endpoint (a dual-stack network with `--internal`): its id gets
    /// `-ipv6`, so that the name answers AAAA as well as A.
    twin: bool,
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
fn endpoints(
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

/// The service name a container gets when none is set: its compose service, else its image's
/// base name, else (an image referenced by id) its own name. DNS-safe.
pub fn default_name(c: &Container) -> String {
    if let Some(svc) = c.labels.get("com.docker.compose.service") {
        let safe = dns_safe(svc);
        if !safe.is_empty() {
            return safe;
        }
    }
    if !is_image_id(&c.image) {
        let base = image_base_name(&c.image);
        if !base.is_empty() {
            return base;
        }
    }
    dns_safe(&c.name)
}

/// Whether `image` is an image id (`sha256:...`, or 12 to 64 hex digits), not a name.
fn is_image_id(image: &str) -> bool {
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    image.starts_with("sha256:")
        || ((12..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The container's services, `(full DNS name, record)`, or why its labels cannot be used.
/// A container that does not count ([`counts`]) or is ignored has none.
pub fn services(c: &Container, s: &Settings) -> Result<Vec<(String, Service)>, ServiceError> {
    if !counts(c) {
        return Ok(Vec::new());
    }
    let attr = |k: &str| -> Option<String> {
        if let Some(v) = c.labels.get(k) {
            return Some(v.clone());
        }
        c.env.iter().rev().find_map(|e| {
            e.strip_prefix(k)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_string)
        })
    };
    let set = |k: &str| attr(k).filter(|v| !v.trim().is_empty());
    if set("SERVICE_IGNORE").is_some() {
        return Ok(Vec::new());
    }
    let ip = match set("SERVICE_IP") {
        Some(v) => Some(
            v.trim()
                .parse::<IpAddr>()
                .map_err(|_| ServiceError::Address {
                    key: "SERVICE_IP".into(),
                    value: v.clone(),
                })?,
        ),
        None => None,
    };
    let network = set("SERVICE_NETWORK");
    if c.network_mode == "host"
        && ip.is_none_or(|ip| ip.is_unspecified())
        && s.host_ip.is_unspecified()
        && !c.exposed.is_empty()
    {
        return Err(ServiceError::NoHostAddress);
    }
    let eps = endpoints(c, s, ip, network.as_deref());
    let several = eps.iter().filter(|e| !e.twin).count() > 1;
    let mut out = Vec::new();
    for ep in eps {
        let p = ep.port;
        let pick = |what: &str| -> Option<(String, String)> {
            let specific = format!("SERVICE_{p}_{what}");
            let general = format!("SERVICE_{what}");
            set(&specific)
                .map(|v| (specific, v))
                .or_else(|| set(&general).map(|v| (general, v)))
        };
        if set(&format!("SERVICE_{p}_IGNORE")).is_some() {
            continue;
        }
        let udp = if ep.proto == Proto::Udp { "-udp" } else { "" };
        let (name, name_key) = match set(&format!("SERVICE_{p}_NAME")) {
            Some(v) => {
                let key = format!("SERVICE_{p}_NAME");
                (checked_name(&key, &v)?, key)
            }
            None => match set("SERVICE_NAME") {
                Some(v) => {
                    let base = checked_name("SERVICE_NAME", &v)?;
                    let name = if several { format!("{base}-{p}") } else { base };
                    (name, "SERVICE_NAME".to_string())
                }
                None if s.explicit => continue,
                None => {
                    let base = default_name(c);
                    let name = if several { format!("{base}-{p}") } else { base };
                    (
                        name,
                        "the default name (compose service, image or container)".to_string(),
                    )
                }
            },
        };
        let (id, id_key) = match set(&format!("SERVICE_{p}_ID")) {
            Some(v) => {
                let key = format!("SERVICE_{p}_ID");
                (checked_label(&key, &v)?, key)
            }
            None => match set("SERVICE_ID") {
                Some(v) => {
                    let base = checked_label("SERVICE_ID", &v)?;
                    let id = if several {
                        format!("{base}-{p}{udp}")
                    } else {
                        format!("{base}{udp}")
                    };
                    (checked_label("SERVICE_ID", &id)?, "SERVICE_ID".to_string())
                }
                None => (
                    default_id(&s.host_id, &c.name, p, ep.proto),
                    "the default id".to_string(),
                ),
            },
        };
        // The reserved subtree of any domain a DNS server may serve, at any depth: no label
        // `dns` below the registrator's domain (its own is checked at start).
        if name.split('.').any(|l| l == RESERVED) {
            return Err(ServiceError::Reserved {
                key: name_key,
                value: name,
            });
        }
        if id == RESERVED {
            return Err(ServiceError::Reserved {
                key: id_key,
                value: id,
            });
        }
        let id = if ep.twin {
            checked_label("SERVICE_ID", &format!("{id}-ipv6"))?
        } else {
            id
        };
        let mut svc = Service {
            host: ep.ip.to_string(),
            port: ep.port_out,
            ..Default::default()
        };
        if let Some((k, v)) = pick("TTL") {
            svc.ttl = number(&k, &v)?;
        }
        if let Some((k, v)) = pick("PRIORITY") {
            svc.priority = number(&k, &v)?;
        }
        if let Some((k, v)) = pick("WEIGHT") {
            svc.weight = number(&k, &v)?;
        }
        if let Some((_, v)) = pick("TEXT") {
            svc.text = v;
        }
        if let Some((_, v)) = pick("GROUP") {
            svc.group = v.trim().to_string();
        }
        if let Some((k, v)) = pick("MAIL") {
            svc.mail = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(ServiceError::Number { key: k, value: v }),
            };
        }
        if let Some((k, v)) = pick("TARGETSTRIP") {
            svc.targetstrip = number(&k, &v)?;
        }
        let full = format!("{id}.{name}.{}", s.domain.trim_end_matches('.'));
        key::validate_name(&full).map_err(|e| ServiceError::Name {
            key: "SERVICE_NAME".into(),
            value: full.clone(),
            reason: e.to_string(),
        })?;
        let bytes = svc.to_json().len();
        if bytes > lodestar::record::MAX_VALUE_BYTES {
            return Err(ServiceError::TooLarge { port: p, bytes });
        }
        out.push((full, svc));
    }
    Ok(out)
}

/// The label of the reserved subtrees (`<domain>/dns/...`: stub zones, NS and apex records).
pub const RESERVED: &str = "dns";

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ServiceError> {
    value.trim().parse().map_err(|_| ServiceError::Number {
        key: key.into(),
        value: value.into(),
    })
}

/// A name from env or labels: lower case, one or more valid labels.
fn checked_name(key: &str, value: &str) -> Result<String, ServiceError> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    match key::validate_name(&v) {
        Ok(()) if !v.contains('*') => Ok(v),
        Ok(()) => Err(ServiceError::Name {
            key: key.into(),
            value: value.into(),
            reason: "'*' is a wildcard".into(),
        }),
        Err(e) => Err(ServiceError::Name {
            key: key.into(),
            value: value.into(),
            reason: e.to_string(),
        }),
    }
}

/// An id from env or labels: lower case, exactly one valid label.
fn checked_label(key: &str, value: &str) -> Result<String, ServiceError> {
    let v = checked_name(key, value)?;
    if v.contains('.') {
        return Err(ServiceError::Name {
            key: key.into(),
            value: value.into(),
            reason: "an id is one label, without dots".into(),
        });
    }
    Ok(v)
}

/// The image's base name as a DNS label: `registry:5000/team/API_server:1.2@sha256:ab` -> `api-server`.
pub fn image_base_name(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let no_tag = last.split(':').next().unwrap_or(last);
    let label = dns_safe(no_tag);
    if label.is_empty() {
        "service".into()
    } else {
        label
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    }
}

/// The names a stopped container had while it ran: its services as if it were running on the
/// ports it was configured with (a stopped container has no published ports and no addresses).
/// For `--deregister on-success` after a restart, to find its records among those on the lease.
pub fn names_when_running(c: &Container, s: &Settings) -> Vec<String> {
    let mut running = c.clone();
    running.state = RunState::Running;
    running.health = Health::None;
    if running.published.is_empty() {
        running.published = c
            .configured
            .iter()
            .map(|(port, proto)| Published {
                port: *port,
                proto: *proto,
                host_ip: None,
                host_port: 0,
            })
            .collect();
    }
    for addrs in running.networks.values_mut() {
        if addrs.0.is_none() && addrs.1.is_none() {
            addrs.0 = Some(Ipv4Addr::UNSPECIFIED);
        }
    }
    services(&running, s)
        .map(|list| list.into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default()
}

/// Lower case, every character outside `[a-z0-9-]` as `-`, no leading/trailing or doubled `-`.
fn dns_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        let c = ch.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

/// A DNS-safe id for a port: `<host>-<container>-<port>[-udp]`, only `[a-z0-9-]`, at most 63
/// characters. When making it safe changed or shortened anything, a hash of the exact inputs is
/// appended, so that two containers never get the same id.
///
/// `("node1", "web", 80, Tcp)` -> `node1-web-80`; `("node1", "Web_1", 80, Tcp)` -> `node1-web-1-80-<hash>`
pub fn default_id(host_id: &str, container: &str, port: u16, proto: Proto) -> String {
    let udp = if proto == Proto::Udp { "-udp" } else { "" };
    let raw = format!("{host_id}-{container}-{port}{udp}");
    let safe = dns_safe(&raw);
    if safe == raw && safe.len() <= 63 {
        return safe;
    }
    let tag = format!("{:08x}", fnv1a(raw.as_bytes()));
    let keep = 63 - tag.len() - 1;
    let head: String = safe.chars().take(keep).collect();
    format!("{}-{tag}", head.trim_end_matches('-'))
}

/// FNV-1a, 32 bits: a hash that stays the same across builds, so ids survive upgrades.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests;
