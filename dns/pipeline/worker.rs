//! The off-loop half of the pipeline: [`Handler::complete`] finishes a [`Job`] — on a blocking
//! worker at a lower CPU priority for a large or signed answer of ours, as a task for one that
//! waits on other servers. `net` calls it; it imports the pipeline's files below it and `proto`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::Message;

use super::decide::{self, Decision, Refusal, Wait};
use super::handler::Handler;
use super::job::{Job, Work};
use super::limits::lower_priority;
use crate::authority::Budget;
use crate::proto::Query;

impl Handler {
    /// Finishes a job off the receive loop: the answer's bytes, or `None` for silence.
    pub async fn complete(self: &Arc<Self>, job: Box<Job>) -> Option<Vec<u8>> {
        let job = *job;
        let (client, transport, started) = (job.client, job.query.transport, job.started);
        let request_len = job.query.size;
        let bytes = match job.work {
            Work::Wait(wait) => {
                self.wait(job.query, job.request, client, started, wait)
                    .await
            }
            Work::Local => {
                let _worker = self.workers.clone().acquire_owned().await.ok()?;
                let this = self.clone();
                let (query, request) = (job.query, job.request);
                let decided = tokio::task::spawn_blocking(move || {
                    lower_priority();
                    this.worker(query, request, client, started)
                })
                .await
                .ok()?;
                match decided {
                    Ok(bytes) => bytes,
                    Err(waiting) => {
                        let (query, request, wait) = *waiting;
                        self.wait(query, request, client, started, wait).await
                    }
                }
            }
        };
        self.sent(client, transport, request_len, started, &bytes);
        Some(bytes)
    }

    /// A worker's part of a local answer: the cache again (another job may have built it while
    /// this one waited), else the view's answer with the full budget. The answer's bytes, or
    /// what it still waits on (CNAME targets outside the domains).
    #[allow(clippy::type_complexity)]
    fn worker(
        &self,
        query: Query,
        request: Message,
        client: IpAddr,
        started: Instant,
    ) -> Result<Vec<u8>, Box<(Query, Message, Wait)>> {
        if let Some(bytes) = self.hit_parsed(&query, client, false) {
            return Ok(bytes);
        }
        let snap = self.view.load();
        let who = self.client(&query, client);
        match decide::local(&query, snap.as_deref(), &self.authority, who, Budget::FULL) {
            Decision::Local { answer, dep } => {
                Ok(self.local(&query, client, answer, dep, snap.as_deref(), started))
            }
            Decision::Refuse(why) => Ok(self.refuse(&query, why, client, started)),
            Decision::Wait(wait) => Err(Box::new((query, request, wait))),
            // Not with the full budget; answered as a failure should it ever happen.
            Decision::Defer => Ok(self.refuse(&query, Refusal::NotReady, client, started)),
        }
    }
}
