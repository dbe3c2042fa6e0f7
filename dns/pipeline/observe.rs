//! What the pipeline records about each answer: the counters by type, rcode, transport and
//! zone, and the `--log-queries` line. Methods of [`Handler`]; they import nothing above it.

use std::net::IpAddr;
use std::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Name;

use super::counters::rcode_name;
use super::handler::Handler;
use crate::proto::{Query, Transport};

impl Handler {
    /// The `zone` label of a question: its served domain or static zone, else `.`.
    pub(super) fn zone_label(&self, name: &Name) -> String {
        let lower = name.to_lowercase();
        if let Some(d) = self.authority.domain_of(&lower) {
            return d.name.to_string();
        }
        self.zones
            .load()
            .origins()
            .filter(|o| o.zone_of(&lower))
            .max_by_key(|o| o.num_labels())
            .map_or_else(|| ".".to_string(), |o| o.to_string())
    }

    /// Counts an answer with its rcode.
    pub(super) fn count(&self, q: &Query, rcode: ResponseCode, started: Instant) {
        self.metrics.observe(
            &q.qtype.to_string(),
            rcode_name(rcode),
            q.transport.name(),
            &self.zone_label(&q.name),
            started.elapsed(),
        );
    }

    /// What every answer sent goes through: its sizes counted and, with `--log-queries`, its line.
    pub(super) fn sent(
        &self,
        client: IpAddr,
        transport: Transport,
        request_len: usize,
        started: Instant,
        bytes: &[u8],
    ) {
        self.metrics
            .sizes(transport == Transport::Tcp, request_len, bytes.len());
        self.log(client, transport, started, bytes);
    }

    /// With `--log-queries`: one line for an answer about to be sent (parsed from its bytes, so
    /// that every path logs the same; off, this is one branch).
    fn log(&self, client: IpAddr, transport: Transport, started: Instant, bytes: &[u8]) {
        if !self.log_queries {
            return;
        }
        let Ok(m) = Message::from_vec(bytes) else {
            return;
        };
        let Some(q) = m.queries.first() else { return };
        tracing::info!(
            target: "lodestar_dns::queries",
            %client,
            proto = ?transport,
            name = %q.name(),
            qtype = %q.query_type(),
            rcode = %m.metadata.response_code,
            answers = m.answers.len(),
            tc = m.metadata.truncation,
            us = started.elapsed().as_micros() as u64,
            "query"
        );
    }
}
