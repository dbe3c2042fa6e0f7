//! How to reach etcd: endpoints, user/password, TLS. Shared by the view and the registry, so that
//! both binaries take the same options and connect the same way.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

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
}

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
}

/// How long a connection attempt or a single request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

impl EtcdConfig {
    /// Settings from separate options, as command lines give them: user and password go together,
    /// and so do a client certificate and its key; at least one endpoint.
    pub fn from_parts(
        endpoints: Vec<String>,
        user: Option<String>,
        password: Option<String>,
        ca_file: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<EtcdConfig, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Config("at least one etcd endpoint is needed"));
        }
        let user = match (user, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => {
                return Err(EtcdError::Config(
                    "an etcd user needs a password, and a password a user",
                ))
            }
        };
        let cert_key_files = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(EtcdError::Config(
                    "a client certificate needs its key, and a key its certificate",
                ))
            }
        };
        Ok(EtcdConfig {
            endpoints,
            user,
            ca_file,
            cert_key_files,
        })
    }

    /// Connects to etcd. Fails within [`REQUEST_TIMEOUT`] when no endpoint answers.
    pub async fn connect(&self) -> Result<Client, EtcdError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
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
        let connect = Client::connect(self.endpoints.clone(), Some(opts));
        let mut client = tokio::time::timeout(REQUEST_TIMEOUT, connect)
            .await
            .map_err(|_| EtcdError::Timeout(REQUEST_TIMEOUT))??;
        // A lazily connecting channel only fails on first use: ask for status to know now.
        tokio::time::timeout(REQUEST_TIMEOUT, client.status())
            .await
            .map_err(|_| EtcdError::Timeout(REQUEST_TIMEOUT))??;
        Ok(client)
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::TlsFile {
        path: path.clone(),
        source,
    })
}
