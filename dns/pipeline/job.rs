//! What leaves the receive loop: the [`Step`] the handler returns, and a [`Job`] (a parsed query
//! admitted for work the receive loop must not do, and which work). Types only; the pipeline's
//! `worker` finishes a job.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::op::Message;
use tokio::sync::OwnedSemaphorePermit;

use super::decide::Wait;
use crate::proto::Query;

/// What the receive loop does with a packet.
pub enum Step {
    /// Send these bytes back now.
    Reply(Vec<u8>),
    /// Needs work: run [`Handler::complete`](super::Handler::complete) away from the receive loop.
    Later(Box<Job>),
    /// Say nothing (not a query at all).
    Drop,
}

/// A parsed query admitted for work off the receive loop, and the work.
pub struct Job {
    pub(super) query: Query,
    /// The message as the client sent it: what goes upstream.
    pub(super) request: Message,
    pub(super) client: IpAddr,
    pub(super) started: Instant,
    pub(super) work: Work,
    /// Held until the job is done: what bounds the jobs admitted.
    pub(super) _admitted: OwnedSemaphorePermit,
}

/// The work a [`Job`] carries: the decision that sent it off the receive loop.
pub(super) enum Work {
    /// Our answer, with the full budget (or signed).
    Local,
    /// An answer that waits on others.
    Wait(Wait),
}
