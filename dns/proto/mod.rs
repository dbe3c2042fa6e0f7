//! The wire, below everything: what a message is. A client's bytes become a [`Query`] (or the
//! reason they are not one), with the [`Transport`] it came over; the hot path reads just enough
//! of a plain query to find its cached answer ([`wire`]); our OPT and the options that mark
//! questions against loops ([`edns`]); the two-byte framing of TCP ([`framing`]).
//!
//! The lowest tier of `dns/`: it imports hickory-proto and nothing of the server, and every
//! other tier may import it.

pub mod edns;
pub mod framing;
pub mod query;
pub mod wire;

pub use query::{limit, Malformed, Query, Transport};
