//! Drop-in for SkyDNS: its command line, its environment and its `/skydns/config`, so that an
//! existing `skydns.service` works with the binary swapped.
//!
//! Three steps, in the order `main` runs them, each a pure function of its input:
//! 1. [`translate_args`]: SkyDNS's Go-style flags (`-addr 0.0.0.0:53`, `-no-rec`, `-rtimeout=2s`)
//!    become ours (`--listen`, `--no-forward`, `--upstream-timeout 2000`); flags that only tuned
//!    SkyDNS internals are accepted and ignored with a warning.
//! 2. [`env_aliases`]: SkyDNS's environment (`SKYDNS_DOMAIN`, `ETCD_MACHINES`, ...) fills ours where
//!    ours is not set.
//! 3. [`SkydnsConfig::apply`]: the JSON at `<prefix>/config` in etcd (SkyDNS's settings) fills what
//!    neither the command line nor the environment set.

use std::collections::HashSet;
use std::ffi::OsString;
use std::time::Duration;

use serde::Deserialize;

use super::Cli;

/// What to do with one SkyDNS flag.
enum Flag {
    /// Our flag taking a value, with a conversion of the value.
    Value(&'static str, fn(&str) -> Result<String, String>),
    /// Our boolean flag.
    Switch(&'static str),
    /// Accepted and ignored (SkyDNS tuning that Lodestar does not need), with a value or not.
    Ignored {
        takes_value: bool,
        why: &'static str,
    },
}

fn same(v: &str) -> Result<String, String> {
    Ok(v.to_string())
}

/// SkyDNS's `-path-prefix skydns` is ours `--prefix /skydns`.
fn prefix(v: &str) -> Result<String, String> {
    Ok(format!("/{}", v.trim_matches('/')))
}

/// A Go duration (`2s`, `500ms`, `1m30s`) in milliseconds.
fn go_duration_ms(v: &str) -> Result<String, String> {
    go_duration(v)
        .map(|d| d.as_millis().to_string())
        .ok_or_else(|| format!("{v:?} is not a duration such as 2s or 500ms"))
}

/// Parses a Go duration: numbers each followed by a unit (ns, us, µs, ms, s, m, h).
pub fn go_duration(v: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = v.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => n / 1e9,
            "us" | "µs" => n / 1e6,
            "ms" => n / 1e3,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(secs).ok()?;
    }
    Some(total)
}

fn flag(name: &str) -> Option<Flag> {
    Some(match name {
        "addr" => Flag::Value("--listen", same),
        "domain" => Flag::Value("--domain", same),
        "nameservers" => Flag::Value("--upstream", same),
        "machines" => Flag::Value("--etcd", same),
        "local" => Flag::Value("--local", same),
        "tls-key" => Flag::Value("--etcd-key", same),
        "tls-pem" => Flag::Value("--etcd-cert", same),
        "ca-cert" => Flag::Value("--etcd-ca", same),
        "username" => Flag::Value("--etcd-user", same),
        "password" => Flag::Value("--etcd-password", same),
        "hostmaster" => Flag::Value("--hostmaster", same),
        "dnssec" => Flag::Value("--dnssec-key", same),
        "path-prefix" => Flag::Value("--prefix", prefix),
        "rtimeout" => Flag::Value("--upstream-timeout", go_duration_ms),
        "ndots" => Flag::Value("--ndots", same),
        "no-rec" => Flag::Switch("--no-forward"),
        "verbose" => Flag::Switch("--log-queries"),
        "discover" => Flag::Switch("--discover"),
        "systemd" => Flag::Switch("--systemd"),
        "round-robin" | "ns-rotate" | "stubzones" | "etcd3" => Flag::Ignored {
            takes_value: false,
            why: "always on in Lodestar",
        },
        "scache" | "rcache" | "rcache-ttl" => Flag::Ignored {
            takes_value: true,
            why: "SkyDNS cache tuning; Lodestar's caches need none",
        },
        _ => return None,
    })
}

/// SkyDNS's flags in `args` (after the program name) made ours; anything else is left as it is.
/// The warnings to log for flags that are ignored.
pub fn translate_args(args: Vec<OsString>) -> Result<(Vec<OsString>, Vec<String>), String> {
    let mut out = Vec::with_capacity(args.len());
    let mut warnings = Vec::new();
    let mut it = args.into_iter();
    if let Some(program) = it.next() {
        out.push(program);
    }
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        // Go flags: `-name`, `-name=value`, `--name` too; ours all have two dashes and are not
        // in the table below, so they pass through.
        let Some(body) = text.strip_prefix('-').filter(|b| !b.is_empty()) else {
            out.push(arg);
            continue;
        };
        let body = body.strip_prefix('-').unwrap_or(body);
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(f) = flag(name) else {
            out.push(arg);
            continue;
        };
        match f {
            Flag::Value(ours, convert) => {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .and_then(|v| v.into_string().ok())
                        .ok_or_else(|| format!("-{name} needs a value"))?,
                };
                let value = convert(&value).map_err(|e| format!("-{name}: {e}"))?;
                out.push(ours.into());
                out.push(value.into());
            }
            Flag::Switch(ours) => match inline.as_deref() {
                None | Some("true") | Some("1") => out.push(ours.into()),
                Some("false") | Some("0") => {}
                Some(other) => return Err(format!("-{name}={other}: not a boolean")),
            },
            Flag::Ignored { takes_value, why } => {
                if takes_value && inline.is_none() {
                    it.next();
                }
                warnings.push(format!("SkyDNS flag -{name} ignored: {why}"));
            }
        }
    }
    Ok((out, warnings))
}

/// SkyDNS's environment variables, as aliases of ours (read when ours is not set).
pub const ENV: &[(&str, &[&str])] = &[
    ("LODESTAR_LISTEN", &["SKYDNS_ADDR"]),
    ("LODESTAR_DOMAIN", &["SKYDNS_DOMAIN"]),
    ("LODESTAR_UPSTREAM", &["SKYDNS_NAMESERVERS"]),
    ("LODESTAR_PREFIX", &["SKYDNS_PATH_PREFIX"]),
    ("LODESTAR_DNSSEC_KEY", &["SKYDNS_DNSSEC"]),
    ("LODESTAR_NDOTS", &["SKYDNS_NDOTS"]),
    ("LODESTAR_ETCD_ENDPOINTS", &["ETCD_MACHINES"]),
    ("LODESTAR_ETCD_USER", &["ETCD_USERNAME"]),
    ("LODESTAR_ETCD_CERT", &["ETCD_TLSPEM"]),
    ("LODESTAR_ETCD_KEY", &["ETCD_TLSKEY"]),
];

/// Our environment variables to set from the other names, where ours are not set: the etcd
/// options' older `ETCD_*` names first ([`lodestar::etcd::ENV_NAMES`]), then SkyDNS's.
pub fn env_aliases(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    let mut set = lodestar::etcd::env_from_aliases(lodestar::etcd::ENV_NAMES, &get);
    let known =
        |k: &str| get(k).or_else(|| set.iter().find(|(o, _)| *o == k).map(|(_, v)| v.clone()));
    let skydns = lodestar::etcd::env_from_aliases(ENV, known);
    set.extend(skydns.into_iter().map(|(ours, v)| {
        // SkyDNS's prefix has no leading slash (`skydns`); ours does.
        if ours == "LODESTAR_PREFIX" && !v.starts_with('/') {
            (ours, format!("/{}", v.trim_matches('/')))
        } else {
            (ours, v)
        }
    }));
    set
}

/// Fills what flags and environment left unset (`given`: the ids of the args they set) from
/// SkyDNS's settings in etcd (`<prefix>/config`), when etcd answers within a few seconds;
/// otherwise goes on without.
pub async fn from_etcd(mut cli: Cli, given: &HashSet<String>) -> Cli {
    let Ok(etcd) = cli.etcd.config() else {
        return cli;
    };
    let key = format!("{}/config", cli.prefix.trim_end_matches('/'));
    let read = async {
        let mut client = etcd.connect().await.ok()?;
        let resp = client.get(key.as_str(), None).await.ok()?;
        resp.kvs().first().map(|kv| kv.value().to_vec())
    };
    let Ok(Some(json)) = tokio::time::timeout(Duration::from_secs(5), read).await else {
        return cli;
    };
    match SkydnsConfig::parse(&json) {
        Ok(c) => {
            let applied = c.apply(&mut cli, |id| given.contains(id));
            if !applied.is_empty() {
                tracing::info!(key, ?applied, "settings from SkyDNS's config in etcd");
            }
        }
        Err(error) => {
            tracing::warn!(key, %error, "SkyDNS's config in etcd does not parse; ignored")
        }
    }
    cli
}

/// SkyDNS's settings as it keeps them in etcd (`/skydns/config`): the fields Lodestar uses.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SkydnsConfig {
    /// `dns_addr`: where to listen.
    pub dns_addr: Option<String>,
    /// `domain`.
    pub domain: Option<String>,
    /// `local`.
    pub local: Option<String>,
    /// `hostmaster`.
    pub hostmaster: Option<String>,
    /// `nameservers`: `IP:PORT` strings.
    pub nameservers: Option<Vec<String>>,
    /// `no_rec`.
    pub no_rec: Option<bool>,
    /// `read_timeout`: a Go duration in JSON, i.e. nanoseconds.
    pub read_timeout: Option<u64>,
    /// `ttl`.
    pub ttl: Option<u32>,
    /// `min_ttl`.
    pub min_ttl: Option<u32>,
    /// `dnssec`: the base name of a BIND key pair.
    pub dnssec: Option<String>,
    /// `ndots`: names with fewer labels are not forwarded.
    pub ndots: Option<u8>,
}

impl SkydnsConfig {
    /// Parses the JSON value of `/skydns/config`.
    pub fn parse(json: &[u8]) -> Result<SkydnsConfig, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// Fills what the command line and the environment did not set (`given(arg id)` says which
    /// they set); the settings applied, for the log.
    pub fn apply(&self, cli: &mut Cli, given: impl Fn(&str) -> bool) -> Vec<&'static str> {
        let mut applied = Vec::new();
        if let (Some(a), false) = (&self.dns_addr, given("listen")) {
            if let Ok(addr) = a.parse() {
                cli.listen = vec![addr];
                applied.push("dns_addr");
            }
        }
        if let (Some(d), false) = (&self.domain, given("domain")) {
            cli.domain = vec![d.trim_end_matches('.').to_string()];
            applied.push("domain");
        }
        if let (Some(l), false) = (&self.local, given("local")) {
            cli.local = Some(l.clone());
            applied.push("local");
        }
        if let (Some(h), false) = (&self.hostmaster, given("hostmaster")) {
            cli.hostmaster = Some(h.clone());
            applied.push("hostmaster");
        }
        if let (Some(k), false) = (&self.dnssec, given("dnssec_key")) {
            if !k.is_empty() {
                cli.dnssec_key = vec![k.into()];
                applied.push("dnssec");
            }
        }
        if let (Some(ns), false) = (&self.nameservers, given("upstream")) {
            cli.upstream = ns.clone();
            applied.push("nameservers");
        }
        if let (Some(true), false) = (self.no_rec, given("no_forward")) {
            cli.no_forward = true;
            applied.push("no_rec");
        }
        if let (Some(ns), false) = (self.read_timeout, given("upstream_timeout")) {
            if ns > 0 {
                cli.upstream_timeout = (ns / 1_000_000).max(1);
                applied.push("read_timeout");
            }
        }
        if let (Some(t), false) = (self.ttl, given("ttl")) {
            if t > 0 {
                cli.ttl = t;
                applied.push("ttl");
            }
        }
        if let (Some(n), false) = (self.ndots, given("ndots")) {
            cli.ndots = n;
            applied.push("ndots");
        }
        if let (Some(t), false) = (self.min_ttl, given("min_ttl")) {
            if t > 0 {
                cli.min_ttl = Some(t);
                applied.push("min_ttl");
            }
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn skydns_flags_become_ours() {
        let (out, warnings) = translate_args(args(&[
            "skydns",
            "-addr",
            "0.0.0.0:53",
            "-domain=skydns.local.",
            "-machines",
            "http://10.0.0.1:2379,http://10.0.0.2:2379",
            "-no-rec",
            "-verbose=false",
            "-rtimeout",
            "1500ms",
            "-path-prefix",
            "skydns",
            "-ns-rotate",
            "-rcache",
            "1000",
            "-ndots",
            "3",
            "-discover",
            "-systemd",
            "--metrics",
            "127.0.0.1:9153",
        ]))
        .unwrap();
        let out: Vec<String> = out.into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(
            out,
            [
                "skydns",
                "--listen",
                "0.0.0.0:53",
                "--domain",
                "skydns.local.",
                "--etcd",
                "http://10.0.0.1:2379,http://10.0.0.2:2379",
                "--no-forward",
                "--upstream-timeout",
                "1500",
                "--prefix",
                "/skydns",
                "--ndots",
                "3",
                "--discover",
                "--systemd",
                "--metrics",
                "127.0.0.1:9153"
            ]
        );
        assert_eq!(warnings.len(), 2);
        assert!(translate_args(args(&["x", "-addr"])).is_err());
        assert!(translate_args(args(&["x", "-rtimeout", "soon"])).is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("2"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn skydns_environment_fills_ours_only_where_unset() {
        let env = |k: &str| match k {
            "SKYDNS_DOMAIN" => Some("skydns.local".to_string()),
            "ETCD_MACHINES" => Some("http://10.0.0.1:2379".to_string()),
            "ETCD_ENDPOINTS" => Some("http://mine:2379".to_string()),
            "SKYDNS_PATH_PREFIX" => Some("skydns".to_string()),
            _ => None,
        };
        let mut set = env_aliases(env);
        set.sort();
        assert_eq!(
            set,
            [
                ("LODESTAR_DOMAIN", "skydns.local".to_string()),
                ("LODESTAR_ETCD_ENDPOINTS", "http://mine:2379".to_string()),
                ("LODESTAR_PREFIX", "/skydns".to_string())
            ],
            "ETCD_ENDPOINTS wins over SkyDNS's ETCD_MACHINES"
        );
    }

    #[test]
    fn etcd_config_fills_what_was_not_given() {
        let json = br#"{"dns_addr":"127.0.0.1:5353","domain":"skydns.local.","ttl":3600,
            "min_ttl":60,"nameservers":["8.8.8.8:53"],"read_timeout":1500000000,"no_rec":false,"ndots":2,
            "hostmaster":"admin@skydns.local","unknown":1}"#;
        let c = SkydnsConfig::parse(json).unwrap();
        let mut cli = Cli::parse_from(["x", "--domain", "given.dev"]);
        let applied = c.apply(&mut cli, |id| id == "domain");
        assert_eq!(cli.domain, ["given.dev"], "the command line wins");
        assert_eq!(cli.ttl, 3600);
        assert_eq!(cli.min_ttl, Some(60));
        assert_eq!(cli.upstream, ["8.8.8.8:53"]);
        assert_eq!(cli.upstream_timeout, 1500);
        assert_eq!(cli.ndots, 2);
        assert_eq!(cli.listen, ["127.0.0.1:5353".parse().unwrap()]);
        assert!(!applied.contains(&"domain"));
        assert!(SkydnsConfig::parse(b"{nope").is_err());
    }
}
