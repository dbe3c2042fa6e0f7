//! The query path from raw bytes: the first byte picks UDP or TCP, the rest is the message.
//! - The quick parser (the cache key of a plain query) and the full parser agree: whatever the
//!   quick one reads, the full one reads too, to the same key.
//! - Every answer given at once (a cache hit or a small miss, from a small fixed view) parses
//!   back with hickory, with the query's id; for a query the full parser reads, the same single
//!   question, within the client's size limit.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use lodestar::Snapshot;
use server::gen::server;
use server::pipeline::{Handler, Step};
use server::proto::wire::{key_of_query, Received};
use server::proto::{Query, Transport};

fn handler() -> &'static Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let mut records: Vec<(String, Vec<u8>)> = vec![
            (
                "dev/webapp/redis/1".into(),
                br#"{"host":"10.0.0.1","port":6379}"#.to_vec(),
            ),
            (
                "dev/webapp/redis/2".into(),
                br#"{"host":"10.0.0.2","port":6379,"priority":20}"#.to_vec(),
            ),
            (
                "dev/webapp/www".into(),
                br#"{"host":"redis.webapp.dev"}"#.to_vec(),
            ),
            (
                "dev/webapp/loop/a".into(),
                br#"{"host":"loop.webapp.dev"}"#.to_vec(),
            ),
            (
                "dev/webapp/v6".into(),
                br#"{"host":"2001:db8::1"}"#.to_vec(),
            ),
            (
                "dev/webapp/txt".into(),
                format!(r#"{{"text":"{}"}}"#, "x".repeat(3000)).into_bytes(),
            ),
            (
                "dev/webapp/mail".into(),
                br#"{"host":"10.0.0.9","mail":true}"#.to_vec(),
            ),
            ("dev/webapp/bad".into(), b"{not json".to_vec()),
            (
                "dev/webapp/out".into(),
                br#"{"host":"example.org"}"#.to_vec(),
            ),
        ];
        for i in 0..300 {
            records.push((
                format!("dev/webapp/big/i{i}"),
                format!(r#"{{"host":"10.1.{}.{}"}}"#, i / 250, i % 250).into_bytes(),
            ));
        }
        let mut snap =
            Snapshot::from_values(records.iter().map(|(k, v)| (k.as_str(), v.as_slice(), 1)));
        let (view, handler) = server();
        view.publish(&mut snap, true);
        handler
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((first, raw)) = data.split_first() else {
        return;
    };
    let transport = if first & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let parsed = Query::parse(raw, transport).ok();
    if let Some((key, _)) = Received::new(raw, transport).lookup() {
        let (q, _) = parsed
            .as_ref()
            .expect("the full parser reads what the quick one reads");
        assert_eq!(key.as_slice(), key_of_query(q), "the same cache key");
    }
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // Twice: a miss, then (for a plain query) a cache hit patched for it.
    for _ in 0..2 {
        let Step::Reply(bytes) = handler().handle(raw, client, transport) else {
            return;
        };
        let m = Message::from_vec(&bytes).expect("every answer parses");
        assert_eq!(
            m.metadata.id.to_be_bytes(),
            [raw[0], raw[1]],
            "the query's id"
        );
        if let Some((q, _)) = &parsed {
            assert_eq!(m.queries.len(), 1);
            assert_eq!(
                m.queries[0].name(),
                &q.name,
                "the question, letter case kept"
            );
            assert_eq!(m.queries[0].query_type(), q.qtype);
            assert!(
                bytes.len() <= usize::from(q.limit()),
                "{} bytes over the limit",
                bytes.len()
            );
        }
    }
});
