//! `lodestar-registrator record put|get|ls|rm`: SkyDNS records written, read and removed by name,
//! without hand-written JSON or hand-derived keys.
//!
//! The command line ([`RecordCmd`]) is checked by pure functions ([`checked_name`],
//! [`RecordFields::service`]) before anything is sent: a name inside `--domain`, not in a reserved
//! subtree (the `dns` label, the arpa trees) without `--reserved`, a host that is an IP address or
//! a host name, a value under the size a server accepts. Then [`run`] does one thing through the
//! etcd client and prints the outcome. A `put` never takes a key another owner's live lease holds
//! (one owner per record); with `--lease-ttl` it stays running, keeping its lease alive, and
//! revokes it on SIGTERM/SIGINT (a heartbeat in a unit file). Imports `lodestar` only.

use std::time::Duration;

use clap::{Args, Subcommand};
use etcd_client::{Client, DeleteOptions, GetOptions};
use lodestar::etcd::{EtcdArgs, REQUEST_TIMEOUT};
use lodestar::registry::put_unless_held;
use lodestar::{Prefix, Service};
use serde_json::{json, Value};

/// Keys per request of `ls`.
const LS_PAGE: i64 = 1000;

/// The `record` subcommands.
#[derive(Debug, Subcommand)]
pub enum RecordCmd {
    /// Write the record of NAME (inside --domain).
    Put {
        /// The DNS name, e.g. redis-1.redis.webapp.dev.
        name: String,
        #[command(flatten)]
        fields: RecordFields,
        /// Put the record on a lease of this many seconds, kept alive while the command runs and
        /// revoked when it is stopped.
        #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
        lease_ttl: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Print the record of NAME (its JSON as stored).
    Get {
        /// The DNS name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// List every record at or below NAME (default: the domain): name, value, lease.
    Ls {
        /// The DNS name (default: --domain).
        name: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Delete the record of NAME (with --recursive: and every record below it).
    Rm {
        /// The DNS name.
        name: String,
        /// Also every record below NAME.
        #[arg(long)]
        recursive: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// What every `record` subcommand takes: where etcd is, the domain and prefix, and the output.
#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// The domain NAME must be inside, e.g. webapp.dev.
    #[arg(long, env = "LODESTAR_DOMAIN")]
    pub domain: String,
    /// etcd key prefix of the records.
    #[arg(long, env = "LODESTAR_PREFIX", default_value = "/skydns")]
    pub prefix: String,
    /// Allow names in the reserved subtrees (a `dns` label: stub zones, NS and apex records; the
    /// arpa trees: PTR records).
    #[arg(long)]
    pub reserved: bool,
    /// JSON output, one object per line (get, ls).
    #[arg(long)]
    pub json: bool,
}

/// The record's fields.
#[derive(Debug, Args)]
pub struct RecordFields {
    /// The address (IPv4 or IPv6) or host name (a CNAME) the name answers with.
    #[arg(long)]
    pub host: String,
    /// The port (SRV).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// SRV priority.
    #[arg(long)]
    pub priority: Option<u16>,
    /// SRV weight.
    #[arg(long)]
    pub weight: Option<u16>,
    /// TXT data (longer than 255 bytes: answered as several strings).
    #[arg(long)]
    pub text: Option<String>,
    /// The TTL of the answers, seconds.
    #[arg(long)]
    pub ttl: Option<u32>,
    /// An MX record.
    #[arg(long)]
    pub mail: bool,
    /// The group (SkyDNS's: answers of one group only).
    #[arg(long)]
    pub group: Option<String>,
    /// The port's transport: `udp` makes `_<service>._udp.<domain>` answer it (RFC 2782);
    /// default tcp (written as no field).
    #[arg(long, value_parser = ["tcp", "udp"])]
    pub proto: Option<String>,
}

/// Why a command line cannot be done; one line naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("NAME {0:?}: {1}")]
    Name(String, String),
    #[error("--host {0:?}: not an IP address or a host name ({1})")]
    Host(String, String),
    #[error("--domain {0:?}: {1}")]
    Domain(String, String),
    #[error("--prefix {0:?}: {1}")]
    Prefix(String, String),
    #[error("the record would be {0} bytes, more than the {max} a server accepts (--text?)", max = lodestar::record::MAX_VALUE_BYTES)]
    TooLarge(usize),
}

/// `name` checked: a valid DNS name inside `domain`, outside the reserved subtrees unless
/// `reserved`; lower case, without the final dot.
pub fn checked_name(name: &str, domain: &str, reserved: bool) -> Result<String, RecordError> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    lodestar::key::validate_name(&d)
        .map_err(|e| RecordError::Domain(domain.into(), e.to_string()))?;
    lodestar::key::validate_name(&n).map_err(|e| RecordError::Name(name.into(), e.to_string()))?;
    if n.contains('*') {
        return Err(RecordError::Name(
            name.into(),
            "'*' is a wildcard, not a name".into(),
        ));
    }
    let inside = n == d || n.ends_with(&format!(".{d}"));
    if !inside {
        return Err(RecordError::Name(
            name.into(),
            format!("not inside --domain {d}"),
        ));
    }
    if !reserved {
        let below = n[..n.len() - d.len()].trim_end_matches('.');
        if below.split('.').any(|l| l == "dns") {
            return Err(RecordError::Name(
                name.into(),
                "the label `dns` is reserved (stub zones, NS and apex records): give --reserved"
                    .into(),
            ));
        }
        if n == "arpa" || n.ends_with(".arpa") {
            return Err(RecordError::Name(
                name.into(),
                "the arpa trees are reserved (PTR records): give --reserved".into(),
            ));
        }
    }
    Ok(n)
}

impl RecordFields {
    /// The record, checked.
    pub fn service(&self) -> Result<Service, RecordError> {
        let host = self.host.trim().trim_end_matches('.').to_string();
        if host.parse::<std::net::IpAddr>().is_err() {
            lodestar::key::validate_name(&host)
                .map_err(|e| RecordError::Host(self.host.clone(), e.to_string()))?;
        }
        let svc = Service {
            host,
            port: self.port.unwrap_or(0),
            priority: self.priority.unwrap_or(0),
            weight: self.weight.unwrap_or(0),
            text: self.text.clone().unwrap_or_default(),
            ttl: self.ttl.unwrap_or(0),
            mail: self.mail,
            group: self.group.clone().unwrap_or_default().trim().to_string(),
            proto: self
                .proto
                .clone()
                .filter(|p| p != "tcp")
                .unwrap_or_default(),
            ..Default::default()
        };
        let bytes = svc.to_json().len();
        if bytes > lodestar::record::MAX_VALUE_BYTES {
            return Err(RecordError::TooLarge(bytes));
        }
        Ok(svc)
    }
}

/// One listed record: its name, key, value (parsed when it is JSON) and lease (0: none).
fn listed(prefix: &Prefix, key: &str, value: &[u8], lease: i64) -> Value {
    let name = prefix.name_for_key(key).unwrap_or_default();
    let value = serde_json::from_slice::<Value>(value)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(value).into_owned()));
    json!({"name": name, "key": key, "value": value, "lease": lease})
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .map_err(|_| anyhow::anyhow!("etcd did not answer within {REQUEST_TIMEOUT:?}"))??)
}

/// Does `cmd`: what it printed went to stdout; an error is the command's one line.
pub async fn run(cmd: RecordCmd) -> anyhow::Result<()> {
    let common = match &cmd {
        RecordCmd::Put { common, .. }
        | RecordCmd::Get { common, .. }
        | RecordCmd::Ls { common, .. }
        | RecordCmd::Rm { common, .. } => common,
    };
    let prefix = Prefix::new(&common.prefix)
        .map_err(|e| RecordError::Prefix(common.prefix.clone(), e.to_string()))?;
    let key_of = |name: &str| -> anyhow::Result<(String, String)> {
        let n = checked_name(name, &common.domain, common.reserved)?;
        let key = prefix
            .key_for_name(&n)
            .map_err(|e| RecordError::Name(name.into(), e.to_string()))?;
        Ok((n, key))
    };
    // Everything is checked before etcd is asked anything.
    let (name, key) = match &cmd {
        RecordCmd::Ls { name: None, .. } => key_of(&common.domain)?,
        RecordCmd::Put { name, .. }
        | RecordCmd::Get { name, .. }
        | RecordCmd::Rm { name, .. }
        | RecordCmd::Ls {
            name: Some(name), ..
        } => key_of(name)?,
    };
    let service = match &cmd {
        RecordCmd::Put { fields, .. } => Some(fields.service()?),
        _ => None,
    };
    let mut client = common.etcd.config()?.connect().await?;
    match cmd {
        RecordCmd::Put { lease_ttl, .. } => {
            let svc = service.unwrap_or_default();
            put(&mut client, &name, &key, &svc, lease_ttl).await
        }
        RecordCmd::Get { common, .. } => {
            let resp = timed(client.get(key.as_str(), None)).await?;
            let Some(kv) = resp.kvs().first() else {
                anyhow::bail!("no record at {name} (key {key})");
            };
            if common.json {
                println!("{}", listed(&prefix, &key, kv.value(), kv.lease()));
            } else {
                println!("{}", String::from_utf8_lossy(kv.value()));
            }
            Ok(())
        }
        RecordCmd::Ls { common, .. } => {
            let print = |l: Value| {
                if common.json {
                    println!("{l}");
                } else {
                    let value = match &l["value"] {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    println!(
                        "{}\t{}\t{:x}",
                        l["name"].as_str().unwrap_or(""),
                        value,
                        l["lease"].as_i64().unwrap_or(0)
                    );
                }
            };
            let own = timed(client.get(key.as_str(), None)).await?;
            // Every page read at the revision of the first: one consistent listing.
            let at = own.header().map_or(0, |h| h.revision());
            for kv in own.kvs() {
                print(listed(&prefix, &key, kv.value(), kv.lease()));
            }
            // Below the name, a page at a time: a name with a million records under it is
            // printed as it comes, never held whole (nor over the client's message limit).
            let end = format!("{key}0"); // '0' follows '/'
            let mut from = format!("{key}/").into_bytes();
            loop {
                let opts = GetOptions::new()
                    .with_range(end.as_str())
                    .with_limit(LS_PAGE)
                    .with_revision(at);
                let page = timed(client.get(from.clone(), Some(opts))).await?;
                for kv in page.kvs() {
                    let k = String::from_utf8_lossy(kv.key()).into_owned();
                    print(listed(&prefix, &k, kv.value(), kv.lease()));
                }
                match page.kvs().last() {
                    Some(last) if page.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => break,
                }
            }
            Ok(())
        }
        RecordCmd::Rm { recursive, .. } => {
            let mut deleted = timed(client.delete(key.as_str(), None)).await?.deleted();
            if recursive {
                deleted += timed(
                    client.delete(format!("{key}/"), Some(DeleteOptions::new().with_prefix())),
                )
                .await?
                .deleted();
            }
            if deleted == 0 {
                anyhow::bail!("no record at {name} (key {key})");
            }
            println!("deleted {deleted}");
            Ok(())
        }
    }
}

/// Writes the record unless another owner's live lease holds the key; with `lease_ttl`, on a
/// lease kept alive until SIGTERM/SIGINT, then revoked.
async fn put(
    client: &mut Client,
    name: &str,
    key: &str,
    svc: &Service,
    lease_ttl: Option<u64>,
) -> anyhow::Result<()> {
    let lease = match lease_ttl {
        Some(ttl) => timed(client.lease_grant(i64::try_from(ttl).unwrap_or(i64::MAX), None))
            .await?
            .id(),
        None => 0,
    };
    if let Some(holder) = put_unless_held(client, key, &svc.to_json(), lease).await? {
        if lease != 0 {
            let _ = timed(client.lease_revoke(lease)).await;
        }
        anyhow::bail!("{name} (key {key}) is held by the live lease {holder:x} of another owner (a registrator?): not overwritten");
    }
    println!("{name}\t{}", svc.to_json());
    let Some(ttl) = lease_ttl else {
        return Ok(());
    };
    // A heartbeat: kept alive every third of the TTL while the command runs.
    let (mut keeper, mut stream) = timed(client.lease_keep_alive(lease)).await?;
    let mut tick = tokio::time::interval(Duration::from_secs(ttl) / 3);
    let stop = lodestar::runtime::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                keeper.keep_alive().await?;
                match tokio::time::timeout(REQUEST_TIMEOUT, stream.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                    _ => anyhow::bail!("the lease {lease:x} of {name} could not be kept alive"),
                }
            }
        }
    }
    timed(client.lease_revoke(lease)).await?;
    eprintln!("lease {lease:x} revoked: {name} is gone");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(host: &str) -> RecordFields {
        RecordFields {
            host: host.into(),
            port: None,
            priority: None,
            weight: None,
            text: None,
            ttl: None,
            mail: false,
            group: None,
            proto: None,
        }
    }

    #[test]
    fn names_inside_the_domain_and_outside_the_reserved_trees() {
        let ok = |n: &str| checked_name(n, "webapp.dev", false);
        assert_eq!(
            ok("Redis-1.redis.webapp.dev.").unwrap(),
            "redis-1.redis.webapp.dev"
        );
        assert_eq!(ok("webapp.dev").unwrap(), "webapp.dev");
        for bad in [
            "redis.other.dev",
            "xwebapp.dev",
            "a..webapp.dev",
            "*.webapp.dev",
            "ns.dns.webapp.dev",
            "a b.webapp.dev",
            "",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        assert!(checked_name("ns.dns.webapp.dev", "webapp.dev", true).is_ok());
        assert!(checked_name("1.0.10.in-addr.arpa", "in-addr.arpa", false).is_err());
        assert!(checked_name("1.0.10.in-addr.arpa", "in-addr.arpa", true).is_ok());
        let e = checked_name("redis.other.dev", "webapp.dev", false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("NAME \"redis.other.dev\""), "{e}");
    }

    #[test]
    fn records_are_checked_field_by_field() {
        assert_eq!(fields("10.0.0.1").service().unwrap().host, "10.0.0.1");
        assert_eq!(fields("2001:db8::1").service().unwrap().host, "2001:db8::1");
        assert_eq!(
            fields("db.example.org.").service().unwrap().host,
            "db.example.org"
        );
        let e = fields("not a host").service().unwrap_err().to_string();
        assert!(e.starts_with("--host \"not a host\""), "{e}");
        let mut f = fields("10.0.0.1");
        f.port = Some(6379);
        f.text = Some("x".repeat(300));
        f.mail = true;
        let s = f.service().unwrap();
        assert_eq!((s.port, s.mail, s.text.len()), (6379, true, 300));
        assert_eq!(s.text_strings().len(), 2, "answered as two strings");
        f.text = Some("x".repeat(70_000));
        assert!(matches!(f.service(), Err(RecordError::TooLarge(_))));
    }
}
