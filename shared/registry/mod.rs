//! Registering services in etcd under one lease per owner: the API the registrator stands on, and
//! the one a custom scheduler uses to publish its own services.
//!
//! An owner (a host id) holds one lease; every record it writes hangs on that lease, so when the
//! owner dies its records expire after the lease's TTL. The lease and the process holding it are
//! kept at `/lodestar/owners<prefix>/<owner>` (on the lease itself), so a restart within the TTL
//! adopts the same lease and its records, and no name stops answering; a second live process
//! claiming the same owner is refused ([`owner`]). [`Registry::registered`] lists what the lease
//! holds; [`plan`] says what to write and delete to make that equal to what is wanted; a delete
//! only ever removes a key that is on this owner's lease.
//!
//! - here: the [`Registry`] trait, [`plan`] (pure), the errors;
//! - [`owner`]: the owner key's record and the rule of who may take a lease (pure);
//! - `etcd`: [`EtcdRegistry`], the implementation over etcd.

mod etcd;
pub mod owner;

use std::collections::BTreeMap;

use crate::etcd::EtcdError;
use crate::key::KeyError;
use crate::record::Service;

pub use etcd::{put_unless_held, EtcdRegistry};
pub use owner::{Holder, Identity};

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
    /// Another live process holds this owner's lease (a cloned machine, or two registrators
    /// given one host id): this one must not take it, nor write or delete as that owner.
    #[error("{owner} is held by another live process (host {host:?}, boot {boot}, lease {lease:x}, since {since}): each process needs an owner of its own")]
    Claimed {
        /// The owner.
        owner: String,
        /// The holder's hostname.
        host: String,
        /// The holder's boot id.
        boot: String,
        /// The holder's lease.
        lease: i64,
        /// When it took it (seconds since the epoch).
        since: u64,
    },
    /// Another owner's live lease holds this name (two hosts running containers with the same
    /// id): it is not overwritten. Writing it again succeeds once that lease is gone.
    #[error("{name} is held by another owner's live lease {lease:x}")]
    Conflict {
        /// The record's name.
        name: String,
        /// The lease that holds it.
        lease: i64,
    },
    /// etcd refused this one record (too large for its request limit, say): writing it again
    /// will not help, the other records are not concerned.
    #[error("etcd refused the record of {name}: {why}")]
    Rejected {
        /// The record's name.
        name: String,
        /// etcd's reason.
        why: String,
    },
}

impl RegistryError {
    /// The error of a holder found at the owner key of `owner`.
    pub fn claimed(owner: &str, h: &Holder) -> RegistryError {
        RegistryError::Claimed {
            owner: owner.to_string(),
            host: h.host.clone(),
            boot: h.boot.clone(),
            lease: h.lease,
            since: h.since,
        }
    }
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
    /// Writes (or overwrites) the record of `name`, on this owner's lease; a record on another
    /// owner's live lease is left alone ([`RegistryError::Conflict`]).
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
