//! An arbitrary view and question for the fuzz targets that answer from one (`view`, `signed`):
//! records with hosts that are addresses, names in the domain (CNAME chains and loops) or outside
//! it, wildcard and `dns` labels in paths, groups, TXT up to 60 KB; the same records as a load
//! and as changes over a load; a question over UDP (with or without EDNS) and TCP; and a server
//! of the real handler to ask.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as Question};
use hickory_proto::rr::{Name, RecordType};
use lodestar::{Snapshot, View};

use crate::authority::zones::StaticZones;
use crate::authority::{Authority, Domain};
use crate::pipeline::{Counters, Handler, Limits, Step};
use crate::proto::edns::ForwardMark;
use crate::proto::Transport;

const LABELS: &[&str] = &[
    "redis", "web", "a", "b", "x", "*", "any", "dns", "ns", "stub", "_tcp", "r-1", "xn--d1a",
];

#[derive(Arbitrary, Debug)]
pub enum Label {
    Known(u8),
    Free(String),
}

impl Label {
    pub fn text(&self) -> String {
        match self {
            Label::Known(i) => LABELS[usize::from(*i) % LABELS.len()].to_string(),
            Label::Free(s) => s.chars().take(70).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum HostOf {
    None,
    V4(u32),
    V6(u128),
    /// A name in the domain (labels below it): CNAMEs, chains, loops, SRV targets.
    Inside(Vec<Label>),
    Outside(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
pub struct Rec {
    pub labels: Vec<Label>,
    pub host: HostOf,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
    pub text: Option<(String, u16)>,
    pub ttl: u32,
    pub mail: bool,
    pub group: Option<u8>,
    pub targetstrip: u8,
}

#[derive(Arbitrary, Debug)]
pub struct ViewInput {
    pub records: Vec<Rec>,
    /// Records that go to the base of the layered view (the rest are put after the load).
    pub in_base: u8,
    /// Records deleted after the load (by index), then some put again.
    pub deleted: Vec<u8>,
    pub question: Vec<Label>,
    pub qtype: u16,
    pub edns: Option<u16>,
    pub dnssec_ok: bool,
}

pub const TYPES: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::MX,
    RecordType::PTR,
    RecordType::CNAME,
    RecordType::NS,
    RecordType::SOA,
    RecordType::ANY,
];

pub fn path(labels: &[Label]) -> String {
    let mut p = String::from("dev/webapp");
    for l in labels.iter().rev().take(6) {
        p.push('/');
        p.push_str(&l.text());
    }
    p
}

pub fn value(r: &Rec) -> Vec<u8> {
    let host = match &r.host {
        HostOf::None => String::new(),
        HostOf::V4(a) => Ipv4Addr::from(*a).to_string(),
        HostOf::V6(a) => Ipv6Addr::from(*a).to_string(),
        HostOf::Inside(labels) => {
            let mut n: Vec<String> = labels.iter().take(4).map(Label::text).collect();
            n.push("webapp.dev".into());
            n.join(".")
        }
        HostOf::Outside(i) => {
            ["example.org", "a.example.net.", "webapp.dev", "dev"][usize::from(*i) % 4].to_string()
        }
        HostOf::Raw(s) => s.chars().take(300).collect(),
    };
    let mut v = serde_json::json!({
        "host": host,
        "port": r.port,
        "priority": r.priority,
        "weight": r.weight,
        "ttl": r.ttl,
        "mail": r.mail,
        "targetstrip": r.targetstrip % 4,
    });
    if let Some((t, repeat)) = &r.text {
        let t: String = t.chars().take(200).collect();
        v["text"] = t.repeat(usize::from(*repeat % 300).max(1)).into();
    }
    if let Some(g) = r.group {
        v["group"] = format!("g{}", g % 3).into();
    }
    v.to_string().into_bytes()
}

impl ViewInput {
    /// The records as `(path, value)`.
    fn records(&self) -> Vec<(String, Vec<u8>)> {
        self.records
            .iter()
            .take(64)
            .map(|r| (path(&r.labels), value(r)))
            .collect()
    }

    /// The view two ways: a load of the records left after the deletions, and a load of some
    /// followed by puts of the rest, the deletions, and puts again of what a deletion took but a
    /// record left standing holds (later records of a path win in both).
    pub fn snapshots(&self) -> (Snapshot, Snapshot) {
        let records = self.records();
        let deleted: BTreeSet<usize> = self
            .deleted
            .iter()
            .map(|i| usize::from(*i))
            .filter(|i| *i < records.len())
            .collect();
        let left: Vec<(&str, &[u8], i64)> = records
            .iter()
            .enumerate()
            .filter(|(i, _)| !deleted.contains(i))
            .map(|(_, (p, v))| (p.as_str(), v.as_slice(), 1))
            .collect();
        let base = Snapshot::from_values(left.iter().copied());
        let split = usize::from(self.in_base).min(records.len());
        let mut layered = Snapshot::from_values(
            records[..split]
                .iter()
                .map(|(p, v)| (p.as_str(), v.as_slice(), 1)),
        );
        for (p, v) in &records[split..] {
            layered.put(p, v, 2);
        }
        for i in &deleted {
            layered.delete(&records[*i].0);
        }
        for (i, (p, v)) in records.iter().enumerate() {
            if !deleted.contains(&i) && deleted.iter().any(|d| records[*d].0 == *p) {
                layered.put(p, v, 3);
            }
        }
        (base, layered)
    }

    /// The query (id 0x1234), its question and the size limit of its UDP answer; `None` when the
    /// name is not one.
    pub fn query(&self) -> Option<(Vec<u8>, Question, usize)> {
        let mut qname = String::new();
        for l in self.question.iter().take(8) {
            qname.push_str(&l.text());
            qname.push('.');
        }
        qname.push_str("webapp.dev.");
        let name = Name::from_ascii(&qname).ok()?;
        let qtype = TYPES[usize::from(self.qtype) % TYPES.len()];
        let question = Question::query(name, qtype);
        let mut msg = Message::new(0x1234, MessageType::Query, OpCode::Query);
        msg.add_query(question.clone());
        msg.metadata.recursion_desired = true;
        let limit = match self.edns {
            Some(size) => {
                let mut e = Edns::new();
                e.set_max_payload(size.max(512));
                e.set_dnssec_ok(self.dnssec_ok);
                msg.set_edns(e);
                usize::from(size.max(512)).min(4096)
            }
            None => 512,
        };
        Some((msg.to_vec().ok()?, question, limit))
    }
}

/// A current-thread runtime for the answers that are built off the receive loop.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// A server of webapp.dev with an empty view (publish a snapshot in it as a reload for each
/// input: that retires every cached answer), forwarding nothing.
pub fn server() -> (Arc<View>, Handler) {
    let view = Arc::new(View::new());
    let authority = Authority {
        domains: vec![Domain::new(
            &Name::from_ascii("webapp.dev.").expect("a name"),
        )],
        default_ttl: 30,
        local: None,
        negative_ttl: 30,
        hostmaster: None,
        chaos: Default::default(),
    };
    let handler = Handler::new(
        view.clone(),
        ForwardMark::new(),
        authority,
        StaticZones::default(),
        None,
        vec!["127.0.0.0/8".parse().expect("a network")],
        Counters::new(),
        Limits {
            workers: 1,
            admitted: 1 << 20,
            forwards: 16,
            log_queries: false,
            upstream_timeout: std::time::Duration::from_millis(50),
            ndots: 0,
            stale_ttl: 5,
        },
    );
    (view, handler)
}

/// The answer to `raw` from 127.0.0.1 over `transport`, built at once or off the loop.
pub fn ask(h: &Arc<Handler>, raw: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    match h.handle(raw, client, transport) {
        Step::Reply(bytes) => Some(bytes),
        Step::Later(job) => runtime().block_on(h.complete(job)),
        Step::Drop => None,
    }
}

/// Parses an answer and checks it against its query: id, the one question, the size limit.
pub fn check(bytes: &[u8], id: u16, q: &Question, limit: usize) -> Message {
    let m = Message::from_vec(bytes).expect("every answer parses");
    assert_eq!(m.metadata.id, id);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.queries[0].name(), q.name());
    assert_eq!(m.queries[0].query_type(), q.query_type());
    assert!(bytes.len() <= limit, "{} bytes, limit {limit}", bytes.len());
    m
}
