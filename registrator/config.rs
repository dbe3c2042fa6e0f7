//! The registrator's command line and the checked settings made from it once, at start.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use lodestar::etcd::EtcdConfig;
use lodestar::Prefix;

use crate::reconcile::Deregister;
use crate::services::Settings;

/// lodestar-registrator: registers this host's Docker containers in etcd as SkyDNS records.
#[derive(Debug, Parser)]
#[command(
    name = "lodestar-registrator",
    version,
    about,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// Without a subcommand: register this host's containers (the daemon).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Docker engine: unix:///var/run/docker.sock, tcp://HOST:PORT.
    #[arg(
        long,
        env = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker: String,
    /// Speak TLS to the engine, verifying it and showing our client certificate (the Docker CLI's
    /// convention: any value but empty, 0, false or no).
    #[arg(long, env = "DOCKER_TLS_VERIFY")]
    pub docker_tls_verify: Option<String>,
    /// Directory of ca.pem, cert.pem and key.pem for TLS to the engine (default: ~/.docker).
    #[arg(long, env = "DOCKER_CERT_PATH")]
    pub docker_cert_path: Option<PathBuf>,
    /// The etcd connection: --etcd, --etcd-user/--etcd-password, --etcd-ca/--etcd-cert/--etcd-key.
    #[command(flatten)]
    pub etcd: lodestar::etcd::EtcdArgs,
    /// Domain the records go under, e.g. webapp.dev.
    #[arg(long, env = "LODESTAR_DOMAIN", required = true)]
    pub domain: Option<String>,
    /// etcd key prefix of the records.
    #[arg(long, env = "LODESTAR_PREFIX", default_value = "/skydns")]
    pub prefix: String,
    /// Address published ports are reached at; give it twice, one IPv4 and one IPv6 address, and
    /// ports published on IPv6 too are registered at both (default: this host's primary address
    /// and its global IPv6 address); with --internal, the addresses of containers on the host's
    /// network.
    #[arg(long, env = "LODESTAR_IP", value_delimiter = ',')]
    pub ip: Vec<IpAddr>,
    /// Register exposed ports at the containers' own addresses instead of published ports.
    #[arg(long, env = "LODESTAR_INTERNAL", value_parser = clap::builder::BoolishValueParser::new())]
    pub internal: bool,
    /// With --internal: the network whose address is registered for containers that name none
    /// (SERVICE_NETWORK); default: a container's first network by name.
    #[arg(long, env = "LODESTAR_NETWORK")]
    pub network: Option<String>,
    /// Seconds the records outlive this registrator (the lease's TTL).
    #[arg(long, env = "LODESTAR_TTL", default_value_t = 30)]
    pub ttl: u64,
    /// This host's id: owner of the records and part of generated ids (default: the hostname).
    #[arg(long, env = "LODESTAR_HOST_ID")]
    pub host_id: Option<String>,
    /// Register only containers or ports with SERVICE_NAME / `SERVICE_<port>_NAME`.
    #[arg(long, env = "LODESTAR_EXPLICIT", value_parser = clap::builder::BoolishValueParser::new())]
    pub explicit: bool,
    /// Seconds between full resyncs with Docker.
    #[arg(long, env = "LODESTAR_RESYNC", default_value_t = 60)]
    pub resync: u64,
    /// When a stopped container's records go: always, or on-success (only after exit code 0).
    #[arg(
        long,
        env = "LODESTAR_DEREGISTER",
        value_enum,
        default_value = "always"
    )]
    pub deregister: Deregister,
    /// Seconds a stopping container's records stay withdrawn while it still runs, when it sets
    /// no stop timeout of its own (then: that timeout + 5 s); after it, it is registered again.
    #[arg(long, env = "LODESTAR_DRAIN_GRACE", default_value_t = 15)]
    pub drain_grace: u64,
    /// Revoke the lease on SIGTERM/SIGINT, removing this host's records at once.
    #[arg(long, env = "LODESTAR_CLEANUP_ON_EXIT", value_parser = clap::builder::BoolishValueParser::new())]
    pub cleanup_on_exit: bool,
    /// Serve Prometheus metrics and /healthz on this address.
    #[arg(long, env = "LODESTAR_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Print what would be registered (one JSON object per record, with the rules that chose its
    /// name and address) from the engine's running containers, write nothing, and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Log format: text or json.
    #[arg(long, env = "LODESTAR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write, read, list and remove records by name (SkyDNS JSON without writing it by hand).
    #[command(subcommand)]
    Record(crate::record::RecordCmd),
}

/// The checked configuration.
#[derive(Debug)]
pub struct Config {
    pub docker: String,
    /// The directory of ca.pem, cert.pem and key.pem when the engine is spoken to over TLS.
    pub docker_tls: Option<PathBuf>,
    pub etcd: EtcdConfig,
    pub prefix: Prefix,
    pub settings: Settings,
    pub ttl: Duration,
    pub resync: Duration,
    pub deregister: Deregister,
    pub cleanup_on_exit: bool,
    pub drain_grace: Duration,
    pub metrics: Option<SocketAddr>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// Whether `--ip` was given (else the host's primary address stands for it).
    pub ip_given: bool,
}

impl Config {
    pub fn from_cli(cli: Cli) -> anyhow::Result<Config> {
        let domain = cli.domain.clone().context("--domain is required")?;
        lodestar::key::validate_name(&domain).with_context(|| format!("--domain {domain:?}"))?;
        reserved_domain(&domain)?;
        let prefix =
            Prefix::new(&cli.prefix).with_context(|| format!("--prefix {:?}", cli.prefix))?;
        if cli.ttl < 2 {
            bail!("--ttl must be at least 2 seconds");
        }
        if cli.resync == 0 {
            bail!("--resync must be at least 1 second");
        }
        let host_id = match cli.host_id {
            Some(h) => h,
            None => lodestar::runtime::hostname()
                .context("no --host-id given and the hostname is unknown")?,
        };
        let host_id = host_id.trim().to_string();
        if host_id.is_empty() || host_id.contains('/') {
            bail!("--host-id {host_id:?} must be a non-empty name without '/'");
        }
        let ip_given = !cli.ip.is_empty();
        let (host_ip, host_ip6) = match (given_addresses(&cli.ip)?, cli.internal) {
            (Some(given), _) => given,
            // Containers' own addresses; host-networked ones still need the host's.
            (None, true) => (
                primary_address().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                None,
            ),
            (None, false) => (
                primary_address()
                    .context("could not find this host's address; give it with --ip")?,
                None,
            ),
        };
        let host_ip6 = match (ip_given, host_ip) {
            (false, IpAddr::V4(_)) => ipv6_address(),
            _ => host_ip6,
        };
        let etcd: EtcdConfig = cli.etcd.config().context(
            "etcd options (--etcd, --etcd-user/--etcd-password, --etcd-cert/--etcd-key)",
        )?;
        // What no retry would fix stops the start here, with one line naming the flag.
        etcd.validate()?;
        let tls_on = cli.docker_tls_verify.as_deref().is_some_and(|v| {
            !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "false" | "no" | "off"
            )
        });
        let docker_tls = if tls_on {
            let dir = match cli.docker_cert_path {
                Some(d) => d,
                None => std::env::var_os("HOME")
                    .map(|h| PathBuf::from(h).join(".docker"))
                    .context("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME is")?,
            };
            for f in ["ca.pem", "cert.pem", "key.pem"] {
                let path = dir.join(f);
                std::fs::metadata(&path).with_context(|| {
                    format!(
                        "DOCKER_TLS_VERIFY is set: {} is missing (DOCKER_CERT_PATH)",
                        path.display()
                    )
                })?;
            }
            Some(dir)
        } else {
            None
        };
        Ok(Config {
            docker: cli.docker,
            docker_tls,
            etcd,
            prefix,
            settings: Settings {
                host_id,
                host_ip,
                host_ip6,
                internal: cli.internal,
                explicit: cli.explicit,
                domain: domain.trim_end_matches('.').to_ascii_lowercase(),
                network: cli.network.filter(|n| !n.trim().is_empty()),
            },
            ttl: Duration::from_secs(cli.ttl),
            resync: Duration::from_secs(cli.resync),
            deregister: cli.deregister,
            cleanup_on_exit: cli.cleanup_on_exit,
            drain_grace: Duration::from_secs(cli.drain_grace),
            metrics: cli.metrics,
            dry_run: cli.dry_run,
            ip_given,
        })
    }
}

/// The addresses `--ip` gives: `(primary, IPv6 twin)`; at most one of each family, IPv4 first.
/// `None` when none is given.
fn given_addresses(ips: &[IpAddr]) -> anyhow::Result<Option<(IpAddr, Option<Ipv6Addr>)>> {
    let v4: Vec<IpAddr> = ips.iter().copied().filter(IpAddr::is_ipv4).collect();
    let v6: Vec<Ipv6Addr> = ips
        .iter()
        .filter_map(|ip| match ip {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .collect();
    if v4.len() > 1 || v6.len() > 1 {
        bail!("--ip {ips:?}: give at most one IPv4 and one IPv6 address");
    }
    Ok(match (v4.first(), v6.first()) {
        (Some(v4), v6) => Some((*v4, v6.copied())),
        (None, Some(v6)) => Some((IpAddr::V6(*v6), None)),
        (None, None) => None,
    })
}

/// Refuses a domain whose records would land in a reserved subtree: a label `dns` (stub zones,
/// NS and apex records of the domain above it) or the reverse trees under `arpa`.
fn reserved_domain(domain: &str) -> anyhow::Result<()> {
    let lower = domain.trim_end_matches('.').to_ascii_lowercase();
    if lower.split('.').any(|l| l == crate::services::RESERVED) {
        bail!("--domain {domain:?}: the label `dns` is reserved (stub zones, NS and apex records are written there by operators)");
    }
    if lower == "arpa" || lower.ends_with(".arpa") {
        bail!(
            "--domain {domain:?}: the arpa trees are reserved for PTR records written by operators"
        );
    }
    Ok(())
}

/// This host's primary address: the IPv4 address of the interface with the default route, else
/// the first IPv4 address that is not loopback or a container bridge; on a host without IPv4, its
/// first global IPv6 address (not loopback, not link-local). Never 0.0.0.0, ::, 127.0.0.1 or ::1.
fn primary_address() -> Option<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let addrs: Vec<(String, IpAddr)> = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| (i.name.clone(), i.ip()))
        .collect();
    pick_primary(&routes, &addrs)
}

/// This host's global IPv6 address: the one of the interface of the IPv6 default route, else
/// the first global one that is not a container bridge's.
fn ipv6_address() -> Option<Ipv6Addr> {
    let routes = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let addrs: Vec<(String, IpAddr)> = if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| (i.name.clone(), i.ip()))
        .collect();
    pick_ipv6(&routes, &addrs)
}

/// Pure part of [`ipv6_address`], over `/proc/net/ipv6_route` and the interfaces' addresses.
/// Global: not loopback, link-local, multicast, unspecified or IPv4-mapped (unique local
/// `fd00::/8` addresses are global in scope, as Linux says).
pub fn pick_ipv6(routes: &str, addrs: &[(String, IpAddr)]) -> Option<Ipv6Addr> {
    let global = |ip: &IpAddr| match ip {
        IpAddr::V6(a) => (!a.is_loopback()
            && !a.is_unspecified()
            && !a.is_multicast()
            && (a.segments()[0] & 0xffc0) != 0xfe80
            && a.to_ipv4_mapped().is_none())
        .then_some(*a),
        IpAddr::V4(_) => None,
    };
    // dest, dest prefix, src, src prefix, next hop, metric, refcount, use, flags, interface; the
    // kernel's unreachable default on `lo` has the reject flag (0x0200).
    let default_iface = routes.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let reject = f
            .get(8)
            .and_then(|x| u32::from_str_radix(x, 16).ok())
            .is_none_or(|flags| flags & 0x0200 != 0);
        (f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && !reject)
            .then(|| f[9].to_string())
    });
    let bridge = |n: &str| {
        n.starts_with("docker") || n.starts_with("br-") || n.starts_with("veth") || n == "lo"
    };
    default_iface
        .and_then(|i| addrs.iter().find(|(n, ip)| *n == i && global(ip).is_some()))
        .or_else(|| {
            addrs
                .iter()
                .find(|(n, ip)| !bridge(n) && global(ip).is_some())
        })
        .and_then(|(_, ip)| global(ip))
}

/// Pure part of [`primary_address`], over `/proc/net/route` and the interfaces' addresses.
pub fn pick_primary(routes: &str, addrs: &[(String, IpAddr)]) -> Option<IpAddr> {
    let usable = |ip: &IpAddr| ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified();
    let default_iface = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"00000000")).then(|| f[0].to_string())
    });
    if let Some(iface) = default_iface {
        if let Some((_, ip)) = addrs.iter().find(|(n, ip)| *n == iface && usable(ip)) {
            return Some(*ip);
        }
    }
    let bridge = |n: &str| {
        n.starts_with("docker") || n.starts_with("br-") || n.starts_with("veth") || n == "lo"
    };
    let global_v6 = |ip: &IpAddr| match ip {
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
        IpAddr::V4(_) => false,
    };
    addrs
        .iter()
        .find(|(n, ip)| !bridge(n) && usable(ip))
        .or_else(|| addrs.iter().find(|(n, ip)| !bridge(n) && global_v6(ip)))
        .map(|(_, ip)| *ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
        list.iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
            .collect()
    }

    #[test]
    fn reserved_domains_are_refused() {
        for bad in [
            "dns.webapp.dev",
            "x.DNS.dev.",
            "in-addr.arpa",
            "arpa",
            "10.in-addr.arpa.",
        ] {
            assert!(reserved_domain(bad).is_err(), "{bad}");
        }
        for good in ["webapp.dev", "dnsx.dev", "arpa.example"] {
            assert!(reserved_domain(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn primary_address_follows_the_default_route() {
        let routes =
            "Iface\tDestination\tGateway\nens4\t0000FEA9\t00000000\neth0\t00000000\t0101A8C0\n";
        let a = addrs(&[
            ("lo", "127.0.0.1"),
            ("docker0", "172.17.0.1"),
            ("ens4", "169.254.0.2"),
            ("eth0", "192.168.1.5"),
        ]);
        assert_eq!(
            pick_primary(routes, &a),
            Some("192.168.1.5".parse().unwrap())
        );
    }

    #[test]
    fn without_a_default_route_bridges_and_loopback_are_skipped() {
        let a = addrs(&[
            ("lo", "127.0.0.1"),
            ("docker0", "172.17.0.1"),
            ("veth1", "10.1.1.1"),
            ("eth1", "fe80::1"),
            ("eth1", "10.0.0.7"),
        ]);
        assert_eq!(
            pick_primary("Iface\tDestination\n", &a),
            Some("10.0.0.7".parse().unwrap())
        );
        assert_eq!(pick_primary("", &addrs(&[("lo", "127.0.0.1")])), None);
    }

    #[test]
    fn an_ipv6_only_host_gets_its_global_ipv6_address() {
        let a = addrs(&[
            ("lo", "::1"),
            ("eth0", "fe80::1"),
            ("docker0", "fd00:dead::1"),
            ("eth0", "2001:db8::5"),
        ]);
        assert_eq!(
            pick_primary("Iface\tDestination\n", &a),
            Some("2001:db8::5".parse().unwrap())
        );
    }

    #[test]
    fn ip_given_twice_is_one_ipv4_and_one_ipv6_address() {
        let ips = |l: &[&str]| -> Vec<IpAddr> { l.iter().map(|a| a.parse().unwrap()).collect() };
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        assert_eq!(given_addresses(&[]).unwrap(), None);
        assert_eq!(
            given_addresses(&ips(&["fd00::1", "10.0.0.1"])).unwrap(),
            Some((v4, Some(v6)))
        );
        assert_eq!(
            given_addresses(&ips(&["fd00::1"])).unwrap(),
            Some((IpAddr::V6(v6), None))
        );
        for bad in [
            &["10.0.0.1", "10.0.0.2"][..],
            &["fd00::1", "::1", "10.0.0.1"],
        ] {
            let e = given_addresses(&ips(bad)).unwrap_err().to_string();
            assert!(e.contains("at most one IPv4 and one IPv6"), "{e}");
        }
    }

    #[test]
    fn the_ipv6_address_is_the_default_routes_interfaces() {
        // This VM's /proc/net/ipv6_route, with the kernel's unreachable default on lo.
        let routes = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000003 00000000 00000003     eth1
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
";
        let a = addrs(&[
            ("lo", "::1"),
            ("docker0", "fd00:dead::1"),
            ("eth0", "2001:db8::5"),
            ("eth1", "fe80::1"),
            ("eth1", "::ffff:10.0.0.1"),
            ("eth1", "fd00::2"),
        ]);
        assert_eq!(pick_ipv6(routes, &a), Some("fd00::2".parse().unwrap()));
        // No default route: the first global one off a bridge; none: None.
        assert_eq!(pick_ipv6("", &a), Some("2001:db8::5".parse().unwrap()));
        let lo = routes.lines().last().unwrap();
        assert_eq!(
            pick_ipv6(
                lo,
                &addrs(&[("lo", "::1"), ("eth0", "fe80::1"), ("eth0", "10.0.0.1")])
            ),
            None
        );
    }
}
