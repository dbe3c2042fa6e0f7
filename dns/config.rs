//! The command line (clap) and the checked configuration made from it once, at start.
//!
//! Library code never sees clap types: [`Config::from_cli`] turns strings into names, socket
//! addresses, CIDRs and paths, with an error that names the flag when one is wrong.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use hickory_proto::rr::Name;
use ipnet::IpNet;
use lodestar::etcd::EtcdConfig;
use lodestar::Prefix;

use crate::authority::{Authority, Domain};

/// lodestar-dns: DNS service discovery from etcd (SkyDNS records), forwarding every other name.
#[derive(Debug, Parser)]
#[command(name = "lodestar-dns", version, about)]
pub struct Cli {
    /// Addresses to answer on, UDP and TCP (repeatable or comma-separated).
    #[arg(
        long,
        env = "LODESTAR_LISTEN",
        value_delimiter = ',',
        default_value = "127.0.0.1:53"
    )]
    pub listen: Vec<SocketAddr>,
    /// Domains to answer from etcd (repeatable or comma-separated), e.g. webapp.dev (required,
    /// unless SkyDNS's `/skydns/config` in etcd names one).
    #[arg(long, env = "LODESTAR_DOMAIN", value_delimiter = ',')]
    pub domain: Vec<String>,
    /// etcd endpoints (repeatable or comma-separated).
    #[arg(
        long,
        env = "LODESTAR_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd: Vec<String>,
    /// etcd key prefix of the records.
    #[arg(long, env = "LODESTAR_PREFIX", default_value = "/skydns")]
    pub prefix: String,
    /// Upstream servers for other names, `IP` or `IP:PORT` (default: /etc/resolv.conf's nameservers).
    #[arg(long, env = "LODESTAR_UPSTREAM", value_delimiter = ',')]
    pub upstream: Vec<String>,
    /// How long a forwarded query may take in all, over every upstream tried, in milliseconds;
    /// past it the client gets SERVFAIL.
    #[arg(long, env = "LODESTAR_UPSTREAM_TIMEOUT", default_value_t = 2000)]
    pub upstream_timeout: u64,
    /// Names with fewer labels than this are not forwarded: SERVFAIL (SkyDNS's -ndots). 0: every
    /// name may be forwarded.
    #[arg(long, env = "LODESTAR_NDOTS", default_value_t = 0)]
    pub ndots: u8,
    /// At start, ask etcd for its members and use those not given too (SkyDNS's -discover).
    #[arg(long, env = "LODESTAR_DISCOVER", value_parser = clap::builder::BoolishValueParser::new())]
    pub discover: bool,
    /// Answer only the served domains; refuse every other name.
    #[arg(long, env = "LODESTAR_NO_FORWARD", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_forward: bool,
    /// TTL of records that have none, seconds.
    #[arg(long, env = "LODESTAR_TTL", default_value_t = 30)]
    pub ttl: u32,
    /// This host's own name in etcd (SkyDNS's -local): `local.dns.<domain>` answers its records.
    #[arg(long, env = "LODESTAR_LOCAL")]
    pub local: Option<String>,
    /// TTL of negative answers (NXDOMAIN, NODATA) and the SOA minimum; default: --ttl.
    #[arg(long, env = "LODESTAR_MIN_TTL")]
    pub min_ttl: Option<u32>,
    /// The SOA's mailbox, as an address (hostmaster@example.com) or a name; default:
    /// hostmaster.<domain>.
    #[arg(long, env = "LODESTAR_HOSTMASTER")]
    pub hostmaster: Option<String>,
    /// Answer `version.bind`/`version.server` (CHAOS TXT) with nothing instead of the version.
    #[arg(long, env = "LODESTAR_HIDE_VERSION", value_parser = clap::builder::BoolishValueParser::new())]
    pub hide_version: bool,
    /// What `hostname.bind` and `id.server` (CHAOS TXT) answer; default: the hostname.
    #[arg(long, env = "LODESTAR_SERVER_ID")]
    pub server_id: Option<String>,
    /// Log every answered query at INFO (client, name, type, rcode, time), as SkyDNS's -verbose.
    #[arg(long, env = "LODESTAR_LOG_QUERIES", value_parser = clap::builder::BoolishValueParser::new())]
    pub log_queries: bool,
    /// Sign answers with this DNSSEC key pair: the base name of the files `dnssec-keygen` writes
    /// (`Kwebapp.dev.+013+12345` for `.key` and `.private`), as SkyDNS's -dnssec (repeatable or
    /// comma-separated: several keys, several domains, or a static zone's origin).
    #[arg(long, env = "LODESTAR_DNSSEC_KEY", value_delimiter = ',')]
    pub dnssec_key: Vec<PathBuf>,
    /// Directory of RFC 1035 zone files (`*.zone`) to serve beside etcd.
    #[arg(long, env = "LODESTAR_ZONES")]
    pub zones: Option<PathBuf>,
    /// Clients that may have other names forwarded (default: loopback and private ranges).
    #[arg(long, env = "LODESTAR_ALLOW_RECURSION", value_delimiter = ',')]
    pub allow_recursion: Vec<String>,
    /// Serve Prometheus metrics, /healthz and /readyz on this address.
    #[arg(long, env = "LODESTAR_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// etcd user name (with --etcd-password).
    #[arg(long, env = "LODESTAR_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// etcd password.
    #[arg(long, env = "LODESTAR_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
    /// CA certificate (PEM) for etcd over TLS.
    #[arg(long, env = "LODESTAR_ETCD_CACERT")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd over TLS.
    #[arg(long, env = "LODESTAR_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key (PEM) for etcd over TLS.
    #[arg(long, env = "LODESTAR_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// Records per request when loading the view (tests use small pages to exercise paging).
    #[arg(long, env = "LODESTAR_LOAD_PAGE", default_value_t = lodestar::view::DEFAULT_PAGE, hide = true)]
    pub load_page: i64,
    /// UDP receive loops per listen address and answer workers (default: the number of CPUs).
    #[arg(long, env = "LODESTAR_THREADS")]
    pub threads: Option<usize>,
    /// Log format: text or json.
    #[arg(long, env = "LODESTAR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// The checked configuration.
#[derive(Debug)]
pub struct Config {
    pub log_queries: bool,
    pub ndots: u8,
    pub discover: bool,
    pub upstream_timeout: std::time::Duration,
    pub listen: Vec<SocketAddr>,
    pub authority: Authority,
    pub etcd: EtcdConfig,
    pub prefix: Prefix,
    pub upstreams: Vec<SocketAddr>,
    pub zones: Option<PathBuf>,
    pub dnssec_keys: Vec<PathBuf>,
    pub allow_recursion: Vec<IpNet>,
    pub metrics: Option<SocketAddr>,
    pub load_page: i64,
    pub threads: usize,
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
        let etcd = EtcdConfig::from_parts(
            cli.etcd,
            cli.etcd_user,
            cli.etcd_password,
            cli.etcd_ca,
            cli.etcd_cert,
            cli.etcd_key,
        )
        .context("etcd options (--etcd, --etcd-user/--etcd-password, --etcd-cert/--etcd-key)")?;
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
            dnssec_keys: cli.dnssec_key,
            allow_recursion,
            metrics: cli.metrics,
            load_page: cli.load_page,
            threads,
        })
    }
}

/// The addresses of this machine's interfaces.
fn local_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|l| l.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// The `--listen` address that `upstream` reaches, if it reaches this server: the same address
/// and port, or the port of a wildcard listener (`0.0.0.0`, or `::` which also takes IPv4) on
/// one of this machine's addresses (`locals`). Pure.
pub fn own_address(
    upstream: SocketAddr,
    listen: &[SocketAddr],
    locals: &[IpAddr],
) -> Option<SocketAddr> {
    let up_ip = match upstream.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(upstream.ip(), IpAddr::V4),
        v4 => v4,
    };
    listen.iter().copied().find(|l| {
        if l.port() != upstream.port() {
            return false;
        }
        if l.ip() == up_ip || l.ip() == upstream.ip() {
            return true;
        }
        let family = match l.ip() {
            IpAddr::V4(_) => up_ip.is_ipv4(),
            IpAddr::V6(_) => true, // `::` takes both families (IPV6_V6ONLY off, Linux's default)
        };
        l.ip().is_unspecified() && family && (locals.contains(&up_ip) || up_ip.is_unspecified())
    })
}

/// `10.0.0.2` -> `10.0.0.2:53`; `10.0.0.2:5353` and `[::1]:53` as given.
fn parse_upstream(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = s
        .parse()
        .with_context(|| format!("--upstream {s:?} is not IP or IP:PORT"))?;
    Ok(SocketAddr::new(ip, 53))
}

/// `10.0.0.0/8` as a network, a bare address as a single host.
fn parse_cidr(s: &str) -> anyhow::Result<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    let ip: IpAddr = s.parse().context("not a CIDR (10.0.0.0/8) or an address")?;
    Ok(IpNet::from(ip))
}

/// The `nameserver` lines of a resolv.conf, port 53.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// `admin@example.com` -> `admin.example.com.` (dots in the local part escaped, RFC 1035 8);
/// a name stays a name.
fn mailbox(s: &str) -> Option<Name> {
    let text = match s.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            format!("{}.{domain}", local.replace('.', "\\."))
        }
        Some(_) => return None,
        None => s.to_string(),
    };
    let mut n = Name::from_ascii(&text).ok()?;
    n.set_fqdn(true);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text =
            "# c\nsearch x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\n";
        let got: Vec<String> = resolv_conf_nameservers(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["10.0.0.2:53", "[fe80::1]:53"]);
    }

    #[test]
    fn an_upstream_that_is_this_server_is_recognised() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let locals: Vec<IpAddr> = ["127.0.0.1", "10.0.0.5", "::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let cases: &[(&str, &[&str], bool)] = &[
            ("127.0.0.1:53", &["127.0.0.1:53"], true),
            ("127.0.0.1:53", &["127.0.0.1:5353"], false),
            ("10.0.0.5:53", &["0.0.0.0:53"], true),
            ("127.0.0.1:53", &["0.0.0.0:53"], true),
            ("10.0.0.9:53", &["0.0.0.0:53"], false),
            // 127.0.0.53 is not an interface address: a more specific listener (a local
            // resolver's) takes its packets.
            ("127.0.0.53:53", &["0.0.0.0:53"], false),
            ("[::1]:53", &["0.0.0.0:53"], false),
            ("[::1]:53", &["[::]:53"], true),
            ("10.0.0.5:53", &["[::]:53"], true),
            ("[::ffff:127.0.0.1]:53", &["127.0.0.1:53"], true),
        ];
        for (up, listen, want) in cases {
            let listen: Vec<SocketAddr> = listen.iter().map(|l| sa(l)).collect();
            assert_eq!(
                own_address(sa(up), &listen, &locals).is_some(),
                *want,
                "{up} with --listen {listen:?}"
            );
        }
    }

    #[test]
    fn upstreams_and_cidrs() {
        assert_eq!(
            parse_upstream("10.0.0.2").unwrap().to_string(),
            "10.0.0.2:53"
        );
        assert_eq!(
            parse_upstream("127.0.0.1:5353").unwrap().to_string(),
            "127.0.0.1:5353"
        );
        assert!(parse_upstream("dns.example").is_err());
        assert_eq!(parse_cidr("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }

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
