//! Container -> services, as pure functions over a plain [`Container`]: no Docker, no clock.
//!
//! One service per published port (with an `-ipv6` twin when it is bound on `::` too and the host
//! has an IPv6 address; exposed port with `--internal`, at the container's address on
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

mod address;
mod names;

use address::endpoints;
#[cfg(test)]
use names::image_base_name;
use names::{checked_label, checked_name, number};
pub use names::{default_id, default_name_from};

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
    /// The signal `docker stop` sends it (`StopSignal`), when not TERM.
    pub stop_signal: Option<String>,
    /// Seconds `docker stop` waits before KILL (`StopTimeout`), when the container sets it.
    pub stop_timeout: Option<i64>,
}

/// How this registrator turns containers into services.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This host's id: part of generated ids, and the owner of the records.
    pub host_id: String,
    /// The address published ports are reached at (`--ip`, else the host's primary address).
    pub host_ip: IpAddr,
    /// A second, IPv6, address they are also reached at (`--ip` given twice, else the host's
    /// global IPv6 address beside an IPv4 primary one): ports bound on `::` get an `-ipv6` twin.
    pub host_ip6: Option<Ipv6Addr>,
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

/// The container's services, `(full DNS name, record)`, or why its labels cannot be used.
/// A container that does not count ([`counts`]) or is ignored has none.
pub fn services(c: &Container, s: &Settings) -> Result<Vec<(String, Service)>, ServiceError> {
    Ok(explained(c, s)?
        .into_iter()
        .map(|(name, svc, _)| (name, svc))
        .collect())
}

/// Which rules chose a record's name, id and address (`--dry-run` prints them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    /// `SERVICE_NAME label`, `SERVICE_80_NAME env`, `image base name`, ...
    pub name_from: String,
    /// `SERVICE_ID label`, `the default id (host-container-port)`, ...
    pub id_from: String,
    /// `--ip`, `SERVICE_IP env`, `the port binding's address`, `the first network "bridge"`, ...
    pub address_from: String,
}

/// [`services`], each with the rules that chose it.
pub fn explained(c: &Container, s: &Settings) -> Result<Vec<(String, Service, Why)>, ServiceError> {
    if !counts(c) {
        return Ok(Vec::new());
    }
    // A key's value and where it was found: labels win over env.
    let attr = |k: &str| -> Option<(String, &'static str)> {
        if let Some(v) = c.labels.get(k) {
            return Some((v.clone(), "label"));
        }
        c.env.iter().rev().find_map(|e| {
            e.strip_prefix(k)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| (v.to_string(), "env"))
        })
    };
    let set_from = |k: &str| attr(k).filter(|(v, _)| !v.trim().is_empty());
    let set = |k: &str| set_from(k).map(|(v, _)| v);
    if set("SERVICE_IGNORE").is_some() {
        return Ok(Vec::new());
    }
    let ip_from = set_from("SERVICE_IP").map(|(_, w)| format!("SERVICE_IP {w}"));
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
    let eps = endpoints(c, s, ip.zip(ip_from.as_deref()), network.as_deref());
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
        let from =
            |key: &str| set_from(key).map_or_else(String::new, |(_, w)| format!("{key} {w}"));
        let (name, name_key, name_from) = match set(&format!("SERVICE_{p}_NAME")) {
            Some(v) => {
                let key = format!("SERVICE_{p}_NAME");
                (checked_name(&key, &v)?, key.clone(), from(&key))
            }
            None => match set("SERVICE_NAME") {
                Some(v) => {
                    let base = checked_name("SERVICE_NAME", &v)?;
                    let name = if several { format!("{base}-{p}") } else { base };
                    (name, "SERVICE_NAME".to_string(), from("SERVICE_NAME"))
                }
                None if s.explicit => continue,
                None => {
                    let (base, rule) = default_name_from(c);
                    let name = if several { format!("{base}-{p}") } else { base };
                    (
                        name,
                        "the default name (compose service, image or container)".to_string(),
                        rule.to_string(),
                    )
                }
            },
        };
        let (id, id_key, id_from) = match set(&format!("SERVICE_{p}_ID")) {
            Some(v) => {
                let key = format!("SERVICE_{p}_ID");
                (checked_label(&key, &v)?, key.clone(), from(&key))
            }
            None => match set("SERVICE_ID") {
                Some(v) => {
                    let base = checked_label("SERVICE_ID", &v)?;
                    let id = if several {
                        format!("{base}-{p}{udp}")
                    } else {
                        format!("{base}{udp}")
                    };
                    (
                        checked_label("SERVICE_ID", &id)?,
                        "SERVICE_ID".to_string(),
                        from("SERVICE_ID"),
                    )
                }
                None => (
                    default_id(&s.host_id, &c.name, p, ep.proto),
                    "the default id".to_string(),
                    "the default id (host-container-port)".to_string(),
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
            // Lodestar's own field: `_<name>._udp.<domain>` answers these (RFC 2782).
            proto: if ep.proto == Proto::Udp {
                "udp".into()
            } else {
                String::new()
            },
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
        let why = Why {
            name_from,
            id_from,
            address_from: ep.from,
        };
        out.push((full, svc, why));
    }
    Ok(out)
}

/// The label of the reserved subtrees (`<domain>/dns/...`: stub zones, NS and apex records).
pub const RESERVED: &str = "dns";

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
            .flat_map(|(port, proto)| {
                // Bound on both families, as `-p` binds: the twins' names are among them.
                ["0.0.0.0", "::"].map(|any| Published {
                    port: *port,
                    proto: *proto,
                    host_ip: any.parse().ok(),
                    host_port: 0,
                })
            })
            .collect();
    }
    for addrs in running.networks.values_mut() {
        if addrs.0.is_none() && addrs.1.is_none() {
            // Its addresses are gone; it had IPv4 at least, and an IPv6 twin if dual-stack:
            // both names are looked for.
            *addrs = (Some(Ipv4Addr::UNSPECIFIED), Some(Ipv6Addr::UNSPECIFIED));
        }
    }
    services(&running, s)
        .map(|list| list.into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
