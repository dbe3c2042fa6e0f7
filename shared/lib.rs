//! Lodestar: service discovery by DNS for containers.
//!
//! The library holds what the DNS server and the registrator share, and what a user needs to
//! register services from a scheduler of their own. Nothing here knows about Docker or DNS sockets.
//!
//! # Layout
//!
//! - [`record`]: the SkyDNS-compatible JSON record ([`Service`]) and its parsed host ([`Host`]).
//! - [`key`]: domain name <-> etcd key mapping and name validation
//!   (`redis-1.redis.webapp.dev` <-> `/skydns/dev/webapp/redis/redis-1`).
//! - [`etcd`]: connection settings for etcd (endpoints, user/password, TLS), the command-line
//!   flags both binaries take for them ([`etcd::EtcdArgs`]), and the choice of member.
//! - [`registry`]: the [`Registry`] trait and its etcd implementation: one lease per owner,
//!   held by one live process ([`registry::owner`]), records on it, and [`registry::plan`] to
//!   reconcile wanted and registered records.
//! - [`process`]: `lodestar_build_info` and the `process_*` metrics of a binary.
//! - [`runtime`]: logging set-up, the shutdown signal, reconnect backoff, the metrics listener
//!   ([`runtime::serve_http`]) and systemd readiness, for long-running processes.
//! - [`view`]: the immutable [`Snapshot`] of a prefix (with its wildcard index) and the watcher
//!   that keeps publishing new ones, never claiming a revision whose events it has not applied.
//!
//! Imports go one way: `view` and `registry` use `etcd`, `key` and `record`; `registry` reads
//! `view`'s message limit; nothing imports `registry`; `runtime` and `process` stand apart.
#![warn(missing_docs)]

pub mod etcd;
pub mod key;
pub mod process;
pub mod record;
pub mod registry;
pub mod runtime;
pub mod view;

pub use key::{KeyError, Prefix};
pub use record::{Host, RecordError, Service};
pub use registry::{EtcdRegistry, Registry, RegistryError};
pub use view::{Entry, Snapshot, View, ViewError};
