//! Integration tests: a real etcd, Knot DNS as the upstream, and the real binaries.
//! Every server listens on 127.0.0.1; every packet goes to 127.0.0.1.

mod answers;
mod big;
mod cluster;
mod compose;
mod dnssec;
mod ede;
mod explain;
mod forward;
mod ipv6;
mod migrate;
mod networks;
mod ops;
mod peers;
mod podman;
mod records;
mod registrator;
mod restart;
mod rules;
mod secure;
mod service_names;
mod state;
mod support;
mod view;
mod wire;
