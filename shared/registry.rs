//! Registering services in etcd under one lease per owner: the API the registrator stands on, and
//! the one a custom scheduler uses to publish its own services.
//!
//! An owner (a host id) holds one lease; every record it writes hangs on that lease, so when the
//! owner dies its records expire after the lease's TTL. The lease id is kept at
//! `/lodestar/owners<prefix>/<owner>` (on the lease itself), so a restart within the TTL adopts the
//! same lease and its records, and no name stops answering. [`Registry::registered`] lists what
//! the lease holds; [`plan`] says what to write and delete to make that equal to what is wanted.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    Client, LeaseKeepAliveStream, LeaseKeeper, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp,
};

use crate::etcd::{EtcdConfig, EtcdError, REQUEST_TIMEOUT};
use crate::key::{KeyError, Prefix};
use crate::record::Service;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// etcd could not be reached or refused a request.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The name cannot be a key.
    #[error("invalid name {name:?}: {source}")]
    Name {
        /// The name.
        name: String,
        /// Why.
        source: KeyError,
    },
    /// The lease is gone (expired, revoked, or etcd's data was lost): call [`EtcdRegistry::renew`]
    /// and register everything again.
    #[error("lease {0:x} is gone")]
    LeaseLost(i64),
}

impl From<etcd_client::Error> for RegistryError {
    fn from(e: etcd_client::Error) -> Self {
        RegistryError::Etcd(EtcdError::Client(e))
    }
}

/// Whether the lease was found alive and adopted, or newly granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOrigin {
    /// A lease of this owner was still alive (a restart within the TTL): its records stay.
    Adopted,
    /// A new lease was granted.
    Granted,
}

/// Register services as one owner.
///
/// Names are full DNS names (`redis-1.redis.webapp.dev`); records are SkyDNS JSON at the key of the
/// name under the prefix (`/skydns/dev/webapp/redis/redis-1`).
#[allow(async_fn_in_trait)]
pub trait Registry {
    /// Writes (or overwrites) the record of `name`, on this owner's lease.
    async fn register(&mut self, name: &str, service: &Service) -> Result<(), RegistryError>;
    /// Deletes the record of `name`.
    async fn deregister(&mut self, name: &str) -> Result<(), RegistryError>;
    /// Every record this owner holds, by name.
    async fn registered(&mut self) -> Result<BTreeMap<String, Service>, RegistryError>;
    /// Refreshes the lease; [`RegistryError::LeaseLost`] when it is gone.
    async fn keep_alive(&mut self) -> Result<(), RegistryError>;
}

/// A change that brings the registered state to the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Write this record (missing, or different).
    Put(String, Service),
    /// Delete this record (no longer wanted).
    Delete(String),
}

/// What to write and delete so that `registered` becomes `desired`. Pure.
///
/// `desired {a, b'}`, `registered {b, c}` -> `[Put(a), Put(b'), Delete(c)]`
pub fn plan(
    desired: &BTreeMap<String, Service>,
    registered: &BTreeMap<String, Service>,
) -> Vec<Change> {
    let mut changes: Vec<Change> = desired
        .iter()
        .filter(|(name, svc)| registered.get(*name) != Some(svc))
        .map(|(name, svc)| Change::Put(name.clone(), svc.clone()))
        .collect();
    changes.extend(
        registered
            .keys()
            .filter(|name| !desired.contains_key(*name))
            .map(|name| Change::Delete(name.clone())),
    );
    changes
}

/// The etcd [`Registry`]: one lease per owner, kept alive by [`Registry::keep_alive`].
pub struct EtcdRegistry {
    client: Client,
    prefix: Prefix,
    owner: String,
    ttl: Duration,
    lease: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RegistryError::Etcd(EtcdError::Timeout(REQUEST_TIMEOUT))),
    }
}

impl EtcdRegistry {
    /// Connects as `owner`, adopting its lease when it is still alive, else granting a new one
    /// of `ttl` (at least 2 s).
    pub async fn connect(
        etcd: &EtcdConfig,
        prefix: Prefix,
        owner: &str,
        ttl: Duration,
    ) -> Result<(EtcdRegistry, LeaseOrigin), RegistryError> {
        let client = etcd.connect().await?;
        let mut reg = EtcdRegistry {
            client,
            prefix,
            owner: owner.to_string(),
            ttl: ttl.max(Duration::from_secs(2)),
            lease: 0,
            keeper: None,
        };
        let origin = match reg.find_lease().await? {
            Some(lease) => {
                reg.lease = lease;
                LeaseOrigin::Adopted
            }
            None => {
                reg.renew().await?;
                LeaseOrigin::Granted
            }
        };
        Ok((reg, origin))
    }

    /// The key that holds the owner's lease id: `/lodestar/owners/skydns/<owner>`.
    pub fn owner_key(&self) -> String {
        format!("/lodestar/owners{}/{}", self.prefix.as_str(), self.owner)
    }

    /// The current lease id.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    async fn find_lease(&mut self) -> Result<Option<i64>, RegistryError> {
        let resp = timed(self.client.get(self.owner_key(), None)).await?;
        let Some(id) = resp.kvs().first().and_then(|kv| {
            std::str::from_utf8(kv.value())
                .ok()?
                .trim()
                .parse::<i64>()
                .ok()
        }) else {
            return Ok(None);
        };
        let ttl = timed(self.client.lease_time_to_live(id, None)).await?;
        Ok((ttl.ttl() > 0).then_some(id))
    }

    /// Grants a new lease and records it as the owner's. Records on the old lease are not moved:
    /// register them again.
    pub async fn renew(&mut self) -> Result<(), RegistryError> {
        let secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let grant = timed(self.client.lease_grant(secs, None)).await?;
        self.lease = grant.id();
        self.keeper = None;
        let opts = PutOptions::new().with_lease(self.lease);
        timed(
            self.client
                .put(self.owner_key(), self.lease.to_string(), Some(opts)),
        )
        .await?;
        Ok(())
    }

    /// Revokes the lease: every record of this owner goes at once.
    pub async fn revoke(mut self) -> Result<(), RegistryError> {
        timed(self.client.lease_revoke(self.lease)).await?;
        Ok(())
    }

    fn key(&self, name: &str) -> Result<String, RegistryError> {
        self.prefix
            .key_for_name(name)
            .map_err(|source| RegistryError::Name {
                name: name.to_string(),
                source,
            })
    }
}

impl Registry for EtcdRegistry {
    async fn register(&mut self, name: &str, service: &Service) -> Result<(), RegistryError> {
        let key = self.key(name)?;
        let opts = PutOptions::new().with_lease(self.lease);
        match timed(self.client.put(key, service.to_json(), Some(opts))).await {
            // etcd says "requested lease not found" when the lease expired under us.
            Err(RegistryError::Etcd(EtcdError::Client(e)))
                if e.to_string().contains("lease not found") =>
            {
                Err(RegistryError::LeaseLost(self.lease))
            }
            other => other.map(|_| ()),
        }
    }

    async fn deregister(&mut self, name: &str) -> Result<(), RegistryError> {
        let key = self.key(name)?;
        timed(self.client.delete(key, None)).await?;
        Ok(())
    }

    async fn registered(&mut self) -> Result<BTreeMap<String, Service>, RegistryError> {
        let ttl = timed(
            self.client
                .lease_time_to_live(self.lease, Some(LeaseTimeToLiveOptions::new().with_keys())),
        )
        .await?;
        if ttl.ttl() <= 0 {
            return Err(RegistryError::LeaseLost(self.lease));
        }
        let owner_key = self.owner_key();
        let keys: Vec<String> = ttl
            .keys()
            .iter()
            .filter_map(|k| String::from_utf8(k.clone()).ok())
            .filter(|k| *k != owner_key)
            .collect();
        let mut out = BTreeMap::new();
        // One round trip per 100 keys (etcd allows 128 operations in a transaction by default).
        for chunk in keys.chunks(100) {
            let ops: Vec<TxnOp> = chunk.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
            let resp = timed(self.client.txn(Txn::new().and_then(ops))).await?;
            for op in resp.op_responses() {
                if let etcd_client::TxnOpResponse::Get(get) = op {
                    for kv in get.kvs() {
                        let (Ok(key), Ok(svc)) =
                            (std::str::from_utf8(kv.key()), Service::parse(kv.value()))
                        else {
                            continue;
                        };
                        // A value that no longer parses is left out: it counts as missing and is rewritten.
                        if let Some(name) = self.prefix.name_for_key(key) {
                            out.insert(name, svc);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    async fn keep_alive(&mut self) -> Result<(), RegistryError> {
        if self.keeper.is_none() {
            let (keeper, stream) = timed(self.client.lease_keep_alive(self.lease)).await?;
            self.keeper = Some((keeper, stream));
        }
        let Some((keeper, stream)) = self.keeper.as_mut() else {
            return Ok(());
        };
        let result = async {
            keeper.keep_alive().await?;
            stream.message().await
        };
        // Well inside the TTL, so that a member that stopped answering is left in time to
        // refresh the lease through another.
        let limit = (self.ttl / 5).clamp(Duration::from_millis(500), REQUEST_TIMEOUT);
        match tokio::time::timeout(limit, result).await {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => Ok(()),
            Ok(Ok(_)) => {
                self.keeper = None;
                Err(RegistryError::LeaseLost(self.lease))
            }
            Ok(Err(e)) => {
                self.keeper = None;
                Err(e.into())
            }
            Err(_) => {
                self.keeper = None;
                Err(RegistryError::Etcd(EtcdError::Timeout(limit)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(host: &str) -> Service {
        Service {
            host: host.into(),
            ..Default::default()
        }
    }

    #[test]
    fn plan_puts_missing_and_changed_and_deletes_stale() {
        let desired: BTreeMap<String, Service> = [
            ("a".to_string(), svc("10.0.0.1")),
            ("b".to_string(), svc("10.0.0.2")),
        ]
        .into();
        let registered: BTreeMap<String, Service> = [
            ("b".to_string(), svc("10.0.0.9")),
            ("c".to_string(), svc("10.0.0.3")),
        ]
        .into();
        assert_eq!(
            plan(&desired, &registered),
            [
                Change::Put("a".into(), svc("10.0.0.1")),
                Change::Put("b".into(), svc("10.0.0.2")),
                Change::Delete("c".into())
            ]
        );
        assert!(plan(&desired, &desired).is_empty());
    }
}
