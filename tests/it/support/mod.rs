//! Real parts for the integration tests (and the benchmarks, which include this folder): etcd,
//! Knot DNS and the lodestar binaries (`lodestar-dns` also on sockets a launcher passes, as systemd does), each on free loopback ports in a temporary directory and
//! stopped when dropped; Docker and Podman containers and images; proxies a test can cut; hosts in network
//! namespaces; and a small DNS client. One file per harness (`common` holds what they share:
//! ports, polling, paths); this file only declares them and re-exports their items.

pub mod activation;
pub mod client;
pub mod common;
pub mod dns;
pub mod docker;
pub mod etcd;
pub mod knot;
pub mod netns;
pub mod podman;
pub mod process;
pub mod proxy;
pub mod registrator;

pub use activation::*;
pub use client::*;
pub use common::*;
pub use dns::*;
pub use docker::*;
pub use etcd::*;
pub use knot::*;
pub use podman::*;
pub use process::*;
pub use proxy::*;
pub use registrator::*;
