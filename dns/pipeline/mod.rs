//! The pipeline: what happens to one query between the socket and the answer, once.
//!
//! ```text
//! bytes -> proto (quick view, cache key) -> cache hit? -> patched bytes
//!                 \-> Query (parsed once) -> decide -> Local   -> local (DNSSEC part, cache) -> respond -> bytes
//!                                                  -> Refuse  -> respond -> bytes
//!                                                  -> Defer   -> a worker: decide::local (full budget) -> ...
//!                                                  -> Wait    -> wait (upstream, stub, static zones) -> bytes
//! ```
//!
//! [`Handler::handle`] runs on the receive loops and does only what is cheap: a cache hit is
//! patched and sent at once, and a miss is answered at once when it fits a small budget
//! ([`Budget::INLINE`](crate::authority::Budget::INLINE)). Everything else becomes a [`Job`](job::Job) carrying the parsed query, which leaves
//! the receive loop: [`Handler::complete`] builds a large (or signed) answer on a bounded pool of
//! blocking workers at a lower CPU priority, and waits for other servers, so that neither delays
//! anybody else. Jobs admitted and not yet finished are bounded; past that a query gets SERVFAIL
//! at once (counted as shed).
//!
//! A tier below `net`, `http` and `main`: it imports `authority`, `upstream`, `dnssec`, `proto`
//! and `metrics`, and none of them imports it. Inside, from the top: `local` (our answer to bytes,
//! the answer cache's use), `wait` (what waits on other servers), `worker` (a job finished off the
//! loop) and `observe` (the counts and the query log) and `explain` (`GET /explain`'s decision) are methods of the
//! [`Handler`] that
//! `handler` defines with its entry; below it `job` (what leaves the loop), `cache` (the answer
//! cache), and the leaves `decide` (who answers), `respond` (the one writer), `limits` and
//! `counters`. This file only declares them.

mod cache;
mod counters;
mod decide;
mod explain;
mod handler;
mod job;
mod limits;
mod local;
mod observe;
mod respond;
mod wait;
mod worker;

pub use counters::Counters;
pub use handler::Handler;
pub use job::Step;
pub use limits::Limits;
