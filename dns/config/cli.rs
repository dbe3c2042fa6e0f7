//! The command line of `lodestar-dns` (clap): flags, their environment variables and defaults.
//! Turned once into the checked [`super::Config`]; nothing below `config` sees it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

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
    /// Require sockets passed by systemd (socket activation, `lodestar-dns.socket`): exit when
    /// none are. Passed sockets are used without it too; with them `--listen` is not bound.
    #[arg(long, env = "LODESTAR_SYSTEMD", value_parser = clap::builder::BoolishValueParser::new())]
    pub systemd: bool,
    /// Domains to answer from etcd (repeatable or comma-separated), e.g. webapp.dev (required,
    /// unless SkyDNS's `/skydns/config` in etcd names one).
    #[arg(long, env = "LODESTAR_DOMAIN", value_delimiter = ',')]
    pub domain: Vec<String>,
    /// The etcd connection: --etcd, --etcd-user/--etcd-password, --etcd-ca/--etcd-cert/--etcd-key.
    #[command(flatten)]
    pub etcd: lodestar::etcd::EtcdArgs,
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
    /// While the view follows no etcd member with a leader, answers from the served domains say
    /// so (EDE 3, Stale Answer) and their TTLs are at most this many seconds.
    #[arg(long, env = "LODESTAR_STALE_TTL", default_value_t = 5)]
    pub stale_ttl: u32,
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
    /// `hostmaster.<domain>.`
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
    /// Directory to keep the last snapshot in (`view.state`): at start the server answers from
    /// it at once (stale until etcd is followed again), also when etcd has no quorum. Off when
    /// not given; created if missing.
    #[arg(long, env = "LODESTAR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Clients that may have other names forwarded (default: loopback and private ranges).
    #[arg(long, env = "LODESTAR_ALLOW_RECURSION", value_delimiter = ',')]
    pub allow_recursion: Vec<String>,
    /// Serve Prometheus metrics, /healthz and /readyz on this address.
    #[arg(long, env = "LODESTAR_METRICS")]
    pub metrics: Option<SocketAddr>,
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
