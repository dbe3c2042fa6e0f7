//! The DNS server's tiers below `net` (the sockets), compiled from `dns/` as the binary compiles
//! them (each at the crate root, so their `crate::` paths hold), and the registrator's pure
//! container -> services mapping, for the fuzz targets.
#![allow(dead_code, unused_imports)]

#[path = "../../dns/authority/mod.rs"]
pub mod authority;
#[path = "../../dns/dnssec/mod.rs"]
pub mod dnssec;
pub mod gen;
#[path = "../../dns/metrics/mod.rs"]
pub mod metrics;
#[path = "../../dns/pipeline/mod.rs"]
pub mod pipeline;
#[path = "../../dns/proto/mod.rs"]
pub mod proto;
#[path = "../../registrator/services/mod.rs"]
pub mod services;
#[path = "../../dns/upstream/mod.rs"]
pub mod upstream;
