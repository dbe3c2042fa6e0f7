//! The pipeline (work in progress while `dns/` moves into tiers).

pub mod counters;

pub use counters::Counters;
