//! The server's configuration: the command line ([`cli`]), SkyDNS's flags, environment and
//! `/skydns/config` ([`skydns`]), and the checked [`Config`] made from them once, at start (names,
//! socket addresses, CIDRs, paths), with an error that names the flag when one is wrong.
//!
//! A top tier, beside `main`: it imports the library, `authority`'s types (what the server is
//! authoritative for) and `proto`; nothing imports it but `main`.

pub mod cli;
mod parse;
pub mod skydns;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use hickory_proto::rr::Name;
use ipnet::IpNet;
use lodestar::etcd::EtcdConfig;
use lodestar::Prefix;

use crate::authority::{Authority, Domain};
pub use cli::Cli;
use parse::{
    local_addresses, mailbox, own_address, parse_cidr, parse_upstream, resolv_conf_nameservers,
};

/// The checked configuration.
#[derive(Debug)]
pub struct Config {
    pub log_queries: bool,
    pub ndots: u8,
    pub stale_ttl: u32,
    pub discover: bool,
    pub upstream_timeout: std::time::Duration,
    pub listen: Vec<SocketAddr>,
    pub authority: Authority,
    pub etcd: EtcdConfig,
    pub prefix: Prefix,
    pub upstreams: Vec<SocketAddr>,
    pub zones: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub dnssec_keys: Vec<PathBuf>,
    pub allow_recursion: Vec<IpNet>,
    pub metrics: Option<SocketAddr>,
    pub load_page: i64,
    pub threads: usize,
}

impl Config {
    /// SkyDNS's `-discover`: the endpoints given find the cluster's other members (at start,
    /// within 5 s; otherwise the endpoints given are used as they are).
    pub async fn discover(&mut self) {
        if !self.discover {
            return;
        }
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.etcd.member_urls()).await
        {
            Ok(Ok(urls)) => {
                let added = self.etcd.add_endpoints(urls);
                tracing::info!(?added, endpoints = ?self.etcd.endpoints, "etcd members discovered");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not list etcd's members: using the endpoints given")
            }
            Err(_) => tracing::warn!(
                "etcd did not list its members within 5 s: using the endpoints given"
            ),
        }
    }
}

/// Loopback and private ranges: who may use forwarding unless `--allow-recursion` says otherwise.
pub const DEFAULT_ALLOW: &[&str] = &[
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

impl Config {
    /// Checks every flag.
    pub fn from_cli(cli: Cli) -> anyhow::Result<Config> {
        if cli.domain.is_empty() {
            anyhow::bail!(
                "no domain to serve: give --domain (or LODESTAR_DOMAIN, SKYDNS_DOMAIN, or \"domain\" in SkyDNS's /skydns/config)"
            );
        }
        let mut domains = Vec::new();
        for d in &cli.domain {
            lodestar::key::validate_name(d).with_context(|| format!("--domain {d:?}"))?;
            let name = Name::from_ascii(d).with_context(|| format!("--domain {d:?}"))?;
            domains.push(Domain::new(&name));
        }
        let prefix =
            Prefix::new(&cli.prefix).with_context(|| format!("--prefix {:?}", cli.prefix))?;
        let etcd: EtcdConfig = cli.etcd.config().context(
            "etcd options (--etcd, --etcd-user/--etcd-password, --etcd-cert/--etcd-key)",
        )?;
        // What no retry would fix stops the start here, with one line naming the flag.
        etcd.validate()?;
        // Never forward to ourselves: an upstream that is one of our own addresses loops.
        let locals = local_addresses();
        let upstreams = if cli.no_forward {
            Vec::new()
        } else if cli.upstream.is_empty() {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let all = resolv_conf_nameservers(&text);
            let (own, others): (Vec<SocketAddr>, Vec<SocketAddr>) = all
                .into_iter()
                .partition(|u| own_address(*u, &cli.listen, &locals).is_some());
            for u in &own {
                tracing::warn!(upstream = %u, "not forwarding to /etc/resolv.conf's nameserver {u}: it is this server's own address (it would loop)");
            }
            if others.is_empty() && !own.is_empty() {
                tracing::warn!(
                    "/etc/resolv.conf names only this server: forwarding is off (give --upstream)"
                );
            }
            others
        } else {
            let ups = cli
                .upstream
                .iter()
                .map(|u| parse_upstream(u))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for u in &ups {
                if let Some(l) = own_address(*u, &cli.listen, &locals) {
                    bail!("--upstream {u} is this server's own address (--listen {l}): forwarding to it would loop");
                }
            }
            ups
        };
        let allow_recursion = if cli.allow_recursion.is_empty() {
            DEFAULT_ALLOW
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect()
        } else {
            cli.allow_recursion
                .iter()
                .map(|c| parse_cidr(c).with_context(|| format!("--allow-recursion {c:?}")))
                .collect::<anyhow::Result<_>>()?
        };
        let threads = match cli.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if cli.ttl == 0 {
            bail!("--ttl must be at least 1 second");
        }
        let local = match &cli.local {
            Some(l) => {
                lodestar::key::validate_name(l).with_context(|| format!("--local {l:?}"))?;
                let mut n = Name::from_ascii(l).with_context(|| format!("--local {l:?}"))?;
                n.set_fqdn(true);
                Some(n.to_lowercase())
            }
            None => None,
        };
        let hostmaster = match &cli.hostmaster {
            Some(h) => Some(
                mailbox(h)
                    .with_context(|| format!("--hostmaster {h:?}: not an address or a name"))?,
            ),
            None => None,
        };
        let id = cli
            .server_id
            .clone()
            .or_else(lodestar::runtime::hostname)
            .unwrap_or_else(|| "lodestar".to_string());
        let version = if cli.hide_version {
            None
        } else {
            Some(format!("lodestar {}", env!("CARGO_PKG_VERSION")))
        };
        let chaos = crate::authority::Chaos::new(version, id);
        if cli.upstream_timeout == 0 {
            anyhow::bail!("--upstream-timeout must be at least 1 ms");
        }
        Ok(Config {
            log_queries: cli.log_queries,
            ndots: cli.ndots,
            stale_ttl: cli.stale_ttl,
            discover: cli.discover,
            upstream_timeout: std::time::Duration::from_millis(cli.upstream_timeout),
            listen: cli.listen,
            authority: Authority {
                domains,
                default_ttl: cli.ttl,
                negative_ttl: cli.min_ttl.unwrap_or(cli.ttl),
                local,
                hostmaster,
                chaos,
            },
            etcd,
            prefix,
            upstreams,
            zones: cli.zones,
            state_dir: cli.state_dir,
            dnssec_keys: cli.dnssec_key,
            allow_recursion,
            metrics: cli.metrics,
            load_page: cli.load_page,
            threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn bad_flags_name_the_flag() {
        let cli = Cli::parse_from(["x", "--domain", "bad domain"]);
        let err = format!("{:#}", Config::from_cli(cli).unwrap_err());
        assert!(err.contains("--domain"), "{err}");
        let cli = Cli::parse_from(["x", "--domain", "a.b", "--allow-recursion", "nope"]);
        let err = format!("{:#}", Config::from_cli(cli).unwrap_err());
        assert!(err.contains("--allow-recursion"), "{err}");
    }
}
