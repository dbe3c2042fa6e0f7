//! How to reach etcd: endpoints, user/password, TLS, and which member to talk to. Shared by the
//! view and the registry, so that both binaries take the same options and connect the same way.
//!
//! A client talks to **one member at a time**, the first of the endpoints (its own host's member,
//! by convention) until that member fails. [`EtcdConfig::connect`] tries the members in order from
//! the one in use and keeps the first that answers a status request within
//! [`MEMBER_TIMEOUT`] **and has a leader**; every request carries etcd's "require leader" flag, so
//! a member that loses its leader refuses requests and cancels watches instead of hanging.
//! Callers that see a member fail (a cancelled watch, a request that timed out) call
//! [`EtcdConfig::avoid_current`] and connect again: the next member is tried first.
//!
//! Why not one balanced channel over every endpoint (what `etcd-client` does with a list)? Its
//! picks are random and it keeps choosing a member that is up but useless: a member without a
//! leader answers HTTP/2 pings, so a watch on it stalls without an error.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// The environment variables of the etcd options, each with the older names still read when it
/// is not set (first match wins): `LODESTAR_ETCD_*` are ours; `ETCD_*` sit in etcd's own
/// namespace (an etcd in the same unit logs "unrecognized environment variable").
pub const ENV_NAMES: &[(&str, &[&str])] = &[
    ("LODESTAR_ETCD_ENDPOINTS", &["ETCD_ENDPOINTS"]),
    ("LODESTAR_ETCD_USER", &["ETCD_USER"]),
    ("LODESTAR_ETCD_PASSWORD", &["ETCD_PASSWORD"]),
    ("LODESTAR_ETCD_CACERT", &["ETCD_CACERT"]),
    ("LODESTAR_ETCD_CERT", &["ETCD_CERT"]),
    ("LODESTAR_ETCD_KEY", &["ETCD_KEY"]),
];

/// Which of `names`' variables to set from an alias: for each unset one, its first alias that
/// is set. Pure (`get` reads the environment); `main` applies them before parsing its flags.
pub fn env_from_aliases(
    names: &[(&'static str, &[&str])],
    get: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    names
        .iter()
        .filter(|(ours, _)| get(ours).is_none())
        .filter_map(|(ours, aliases)| aliases.iter().find_map(|a| get(a)).map(|v| (*ours, v)))
        .collect()
}

/// The etcd connection's flags, the same in both binaries (`#[command(flatten)]`): endpoints,
/// user and password, TLS files. [`EtcdArgs::config`] checks that they fit together.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// etcd endpoints (repeatable or comma-separated).
    #[arg(
        long = "etcd",
        env = "LODESTAR_ETCD_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd: Vec<String>,
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
}

impl EtcdArgs {
    /// The settings: user and password go together, and so do a client certificate and its key;
    /// at least one endpoint.
    pub fn config(&self) -> Result<EtcdConfig, EtcdError> {
        if self.etcd.is_empty() {
            return Err(EtcdError::Config("at least one etcd endpoint is needed"));
        }
        let user = match (&self.etcd_user, &self.etcd_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => {
                return Err(EtcdError::Config(
                    "an etcd user needs a password, and a password a user",
                ))
            }
        };
        let cert_key_files = match (&self.etcd_cert, &self.etcd_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(EtcdError::Config(
                    "a client certificate needs its key, and a key its certificate",
                ))
            }
        };
        Ok(EtcdConfig {
            endpoints: self.etcd.clone(),
            user,
            ca_file: self.etcd_ca.clone(),
            cert_key_files,
            current: CurrentMember::default(),
        })
    }
}

/// Connection settings for etcd.
#[derive(Debug, Clone, Default)]
pub struct EtcdConfig {
    /// Endpoints such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// User and password, when etcd has authentication enabled.
    pub user: Option<(String, String)>,
    /// CA certificate (PEM) to verify etcd's certificate; turns on TLS.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert_key_files: Option<(PathBuf, PathBuf)>,
    /// The member in use, shared by the clones of this configuration.
    pub current: CurrentMember,
}

/// The index of the endpoint in use (initially the first). Clones share it.
#[derive(Debug, Clone, Default)]
pub struct CurrentMember(Arc<AtomicUsize>);

/// Why etcd could not be reached or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// A TLS file could not be read.
    #[error("reading {path}: {source}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The etcd client failed.
    #[error(transparent)]
    Client(#[from] etcd_client::Error),
    /// etcd did not answer in time.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// The settings do not fit together.
    #[error("{0}")]
    Config(&'static str),
    /// A setting is wrong in a way no retry will fix: which flag, and what is wrong.
    #[error("{flag} {value}: {problem}")]
    Invalid {
        /// The flag (`--etcd-ca`, `--etcd`, ...).
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: String,
    },
    /// The member is up but has no leader (it is cut off from the majority of the cluster).
    #[error("{0} has no leader")]
    NoLeader(String),
    /// No endpoint gave a usable member: why, for each.
    #[error("no etcd member is usable: {0}")]
    NoMember(String),
}

/// How long a single request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a member may take to connect and answer a status request before the next is tried,
/// and how long a health check of the member in use may take.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(1);

impl EtcdConfig {
    /// Connects to a usable member: the one in use, else the next ones in order. A member is
    /// usable when it answers a status request within [`MEMBER_TIMEOUT`] and has a leader. Fails
    /// within `MEMBER_TIMEOUT` per endpoint when none is.
    pub async fn connect(&self) -> Result<Client, EtcdError> {
        let opts = self.options()?;
        let n = self.endpoints.len();
        if n == 0 {
            return Err(EtcdError::Config("at least one etcd endpoint is needed"));
        }
        let first = self.current.0.load(Ordering::Relaxed) % n;
        let mut why = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let endpoint = &self.endpoints[i];
            match connect_member(endpoint, opts.clone()).await {
                Ok(client) => {
                    self.current.0.store(i, Ordering::Relaxed);
                    return Ok(client);
                }
                Err(e) if n == 1 => return Err(e),
                Err(e) => why.push(format!("{endpoint}: {e}")),
            }
        }
        Err(EtcdError::NoMember(why.join("; ")))
    }

    /// Checks what no retry would fix, so that a binary can stop at once with one clear line:
    /// every endpoint is an `http://` or `https://` URL with a host and a port, TLS options go
    /// with `https://` endpoints only (and `https://` needs a CA), and every TLS file can be read
    /// and holds what it should (PEM certificates, a PEM private key).
    pub fn validate(&self) -> Result<(), EtcdError> {
        let tls = self.ca_file.is_some() || self.cert_key_files.is_some();
        for ep in &self.endpoints {
            let bad = |problem: &str| EtcdError::Invalid {
                flag: "--etcd",
                value: ep.clone(),
                problem: problem.to_string(),
            };
            let rest = if let Some(r) = ep.strip_prefix("https://") {
                if self.ca_file.is_none() {
                    return Err(bad("an https:// endpoint needs --etcd-ca"));
                }
                r
            } else if let Some(r) = ep.strip_prefix("http://") {
                if tls {
                    return Err(bad(
                        "TLS options are given (--etcd-ca/--etcd-cert/--etcd-key) but the endpoint is http://; use https://",
                    ));
                }
                r
            } else {
                return Err(bad("not an http:// or https:// URL"));
            };
            let authority = rest.split('/').next().unwrap_or_default();
            let port_ok = authority
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(bad("needs a host and a port, e.g. http://10.0.0.1:2379"));
            }
        }
        let pem = |flag: &'static str, path: &PathBuf, marker: &str, what: &str| {
            let text = std::fs::read(path).map_err(|e| EtcdError::Invalid {
                flag,
                value: path.display().to_string(),
                problem: e.to_string(),
            })?;
            let text = String::from_utf8_lossy(&text);
            if !(text.contains("-----BEGIN ") && text.contains(marker)) {
                return Err(EtcdError::Invalid {
                    flag,
                    value: path.display().to_string(),
                    problem: format!("not a PEM file holding {what}"),
                });
            }
            Ok(())
        };
        if let Some(ca) = &self.ca_file {
            pem("--etcd-ca", ca, "CERTIFICATE-----", "certificates")?;
        }
        if let Some((cert, key)) = &self.cert_key_files {
            pem("--etcd-cert", cert, "CERTIFICATE-----", "a certificate")?;
            pem("--etcd-key", key, "PRIVATE KEY-----", "a private key")?;
        }
        Ok(())
    }

    /// The endpoint in use (the last one [`EtcdConfig::connect`] chose).
    pub fn current_endpoint(&self) -> &str {
        let n = self.endpoints.len().max(1);
        self.endpoints
            .get(self.current.0.load(Ordering::Relaxed) % n)
            .map_or("", String::as_str)
    }

    /// Whether the member in use is the first endpoint (the host's own member, by convention).
    pub fn on_first(&self) -> bool {
        let n = self.endpoints.len().max(1);
        self.current.0.load(Ordering::Relaxed).is_multiple_of(n)
    }

    /// Asks the first endpoint whether it is usable (answers within [`MEMBER_TIMEOUT`], has a
    /// leader): its revision when it is. For going back to it once it is healthy again.
    pub async fn check_first(&self) -> Result<i64, EtcdError> {
        let first = self
            .endpoints
            .first()
            .ok_or(EtcdError::Config("at least one etcd endpoint is needed"))?;
        let mut client = connect_member(first, self.options()?).await?;
        check_member(&mut client, first).await
    }

    /// The client URLs of the cluster's members, as a usable member lists them (for SkyDNS's
    /// `-discover`: the endpoints given find the others).
    pub async fn member_urls(&self) -> Result<Vec<String>, EtcdError> {
        let mut client = self.connect().await?;
        let members = tokio::time::timeout(REQUEST_TIMEOUT, client.member_list())
            .await
            .map_err(|_| EtcdError::Timeout(REQUEST_TIMEOUT))??;
        Ok(members
            .members()
            .iter()
            .flat_map(|m| m.client_urls().iter().cloned())
            .collect())
    }

    /// Adds the URLs that are not endpoints yet, after the given ones (the host's own member
    /// stays first); those added.
    pub fn add_endpoints(&mut self, urls: Vec<String>) -> Vec<String> {
        let mut added = Vec::new();
        for u in urls {
            let u = u.trim_end_matches('/').to_string();
            if !self.endpoints.iter().any(|e| e.trim_end_matches('/') == u) {
                self.endpoints.push(u.clone());
                added.push(u);
            }
        }
        added
    }

    /// The next [`EtcdConfig::connect`] tries the first endpoint first.
    pub fn prefer_first(&self) {
        self.current.0.store(0, Ordering::Relaxed);
    }

    /// The member in use failed: the next [`EtcdConfig::connect`] tries the others first.
    pub fn avoid_current(&self) {
        let n = self.endpoints.len().max(1);
        let i = self.current.0.load(Ordering::Relaxed);
        self.current.0.store((i + 1) % n, Ordering::Relaxed);
    }

    fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(MEMBER_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some((user, password)) = &self.user {
            opts = opts.with_user(user.clone(), password.clone());
        }
        if self.ca_file.is_some() || self.cert_key_files.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let Some((cert, key)) = &self.cert_key_files {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            opts = opts.with_tls(tls);
        }
        Ok(opts)
    }
}

/// One member: connected, answering, with a leader ([`check_member`]), all within
/// [`MEMBER_TIMEOUT`].
async fn connect_member(endpoint: &str, opts: ConnectOptions) -> Result<Client, EtcdError> {
    let work = async {
        let mut client = Client::connect([endpoint], Some(opts)).await?;
        // A lazily connecting channel only fails on first use: ask for status to know now.
        check_member(&mut client, endpoint).await?;
        Ok::<_, EtcdError>(client)
    };
    tokio::time::timeout(MEMBER_TIMEOUT, work)
        .await
        .map_err(|_| EtcdError::Timeout(MEMBER_TIMEOUT))?
}

/// Checks that the member `client` talks to still answers within [`MEMBER_TIMEOUT`] and has a
/// leader. Its revision on success.
pub async fn check_member(client: &mut Client, endpoint: &str) -> Result<i64, EtcdError> {
    match tokio::time::timeout(MEMBER_TIMEOUT, client.status()).await {
        Err(_) => Err(EtcdError::Timeout(MEMBER_TIMEOUT)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(s)) if s.leader() == 0 => Err(EtcdError::NoLeader(endpoint.to_string())),
        Ok(Ok(s)) => Ok(s.header().map_or(0, |h| h.revision())),
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::TlsFile {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests;
