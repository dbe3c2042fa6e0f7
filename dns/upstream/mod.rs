//! Other servers: the upstreams that names outside the served domains are forwarded to (round
//! robin, health, one deadline, a cache), the nameservers of stub zones, and the CNAME targets
//! outside our domains that an answer needs resolved.
//!
//! A tier below the pipeline: it imports `proto` (the query's transport, our OPT and marks) and
//! `metrics` (label types), and the pipeline imports it.
//!
//! - [`forward`]: the [`Forwarder`];
//! - [`cache`]: its cache of answers;
//! - [`exchange`]: one exchange with one server, and the stub zone client;
//! - [`metrics`]: what it counts.

pub mod cache;
pub mod exchange;
pub mod forward;
pub mod metrics;

pub use cache::cache_ttl;
pub use exchange::stub_forward;
pub use forward::Forwarder;
pub use metrics::UpstreamMetrics;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// Every upstream failed or timed out.
    #[error("no upstream answered ({tried} tried)")]
    AllFailed {
        /// How many were tried.
        tried: usize,
    },
    /// The query could not be encoded.
    #[error("bad query: {0}")]
    Encode(String),
}
