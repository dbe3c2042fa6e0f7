//! Answers from an arbitrary view (structure-aware): records with hosts that are addresses,
//! names in the domain (CNAME chains and loops) or outside it, wildcards and `dns` labels in
//! paths, groups, TXT up to 60 KB; then an arbitrary question, over UDP (with or without EDNS)
//! and TCP.
//! - The same records answer the same whether the view holds them in its compact base (a load)
//!   or as changes laid over it (puts and deletes after a load): rcode and every section, as sets.
//! - Every answer parses back, with the query's id and question, within the size limit; TCP
//!   answers are never truncated; a UDP answer without TC holds exactly what TCP's holds, and one
//!   with TC holds less.
#![no_main]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as Question};
use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;
use lodestar::{Snapshot, View};
use server::authority::zones::StaticZones;
use server::authority::{Authority, Domain};
use server::pipeline::{Counters, Handler, Limits, Step};
use server::proto::edns::ForwardMark;
use server::proto::Transport;

const LABELS: &[&str] = &[
    "redis", "web", "a", "b", "x", "*", "any", "dns", "ns", "stub", "_tcp", "r-1", "xn--d1a",
];

#[derive(Arbitrary, Debug)]
enum Label {
    Known(u8),
    Free(String),
}

impl Label {
    fn text(&self) -> String {
        match self {
            Label::Known(i) => LABELS[usize::from(*i) % LABELS.len()].to_string(),
            Label::Free(s) => s.chars().take(70).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum HostOf {
    None,
    V4(u32),
    V6(u128),
    /// A name in the domain (labels below it): CNAMEs, chains, loops, SRV targets.
    Inside(Vec<Label>),
    Outside(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Rec {
    labels: Vec<Label>,
    host: HostOf,
    port: u16,
    priority: u16,
    weight: u16,
    text: Option<(String, u16)>,
    ttl: u32,
    mail: bool,
    group: Option<u8>,
    targetstrip: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    records: Vec<Rec>,
    /// Records that go to the base of the layered view (the rest are put after the load).
    in_base: u8,
    /// Records deleted after the load (by index), then some put again.
    deleted: Vec<u8>,
    question: Vec<Label>,
    qtype: u16,
    edns: Option<u16>,
    dnssec_ok: bool,
}

const TYPES: &[RecordType] = &[
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

fn path(labels: &[Label]) -> String {
    let mut p = String::from("dev/webapp");
    for l in labels.iter().rev().take(6) {
        p.push('/');
        p.push_str(&l.text());
    }
    p
}

fn value(r: &Rec) -> Vec<u8> {
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

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Two servers (one per view), made once: each input publishes its snapshot as a reload, which
/// retires every cached answer.
fn servers() -> &'static [(Arc<View>, Arc<Handler>); 2] {
    static S: OnceLock<[(Arc<View>, Arc<Handler>); 2]> = OnceLock::new();
    S.get_or_init(|| [server(), server()])
}

fn server() -> (Arc<View>, Arc<Handler>) {
    let view = Arc::new(View::new());
    let authority = Authority {
        domains: vec![Domain::new(&Name::from_ascii("webapp.dev.").unwrap())],
        default_ttl: 30,
        local: None,
        negative_ttl: 30,
        hostmaster: None,
        chaos: Default::default(),
    };
    let handler = Arc::new(Handler::new(
        view.clone(),
        ForwardMark::new(),
        authority,
        StaticZones::default(),
        None,
        vec!["127.0.0.0/8".parse().unwrap()],
        Counters::new(),
        Limits {
            workers: 1,
            admitted: 1 << 20,
            forwards: 16,
            log_queries: false,
            upstream_timeout: std::time::Duration::from_millis(50),
            ndots: 0,
        },
    ));
    (view, handler)
}

fn ask(h: &Arc<Handler>, raw: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    match h.handle(raw, client, transport) {
        Step::Reply(bytes) => Some(bytes),
        Step::Later(job) => runtime().block_on(h.complete(job)),
        Step::Drop => None,
    }
}

/// What an answer says, order aside: rcode, TC, and each section's records as text.
type Said = (
    u16,
    bool,
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
);

fn said(m: &Message) -> Said {
    let set = |rs: &[hickory_proto::rr::Record]| rs.iter().map(|r| r.to_string()).collect();
    (
        u16::from(m.metadata.response_code),
        m.metadata.truncation,
        set(&m.answers),
        set(&m.authorities),
        set(&m.additionals),
    )
}

fn check(raw: &[u8], bytes: &[u8], id: u16, q: &Question, limit: usize) -> Message {
    let m = Message::from_vec(bytes).expect("every answer parses");
    assert_eq!(m.metadata.id, id);
    assert_eq!(m.queries.len(), 1, "{raw:?}");
    assert_eq!(m.queries[0].name(), q.name());
    assert_eq!(m.queries[0].query_type(), q.query_type());
    assert!(bytes.len() <= limit, "{} bytes, limit {limit}", bytes.len());
    m
}

fuzz_target!(|input: Input| {
    let records: Vec<(String, Vec<u8>)> = input
        .records
        .iter()
        .take(64)
        .map(|r| (path(&r.labels), value(r)))
        .collect();
    let deleted: BTreeSet<usize> = input
        .deleted
        .iter()
        .map(|i| usize::from(*i))
        .filter(|i| *i < records.len())
        .collect();
    // The view as a load of what is left...
    let left: Vec<(&str, &[u8], i64)> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| !deleted.contains(i))
        .map(|(_, (p, v))| (p.as_str(), v.as_slice(), 1))
        .collect();
    let base = Snapshot::from_values(left.iter().copied());
    // ... and as a load of some, then the rest put and the deleted ones deleted.
    let split = usize::from(input.in_base).min(records.len());
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
    // Later puts of the same path win in both; a deleted path put again by a later record too.
    for (i, (p, v)) in records.iter().enumerate() {
        if !deleted.contains(&i) && deleted.iter().any(|d| records[*d].0 == *p) {
            layered.put(p, v, 3);
        }
    }
    let mut qname = String::new();
    for l in input.question.iter().take(8) {
        qname.push_str(&l.text());
        qname.push('.');
    }
    qname.push_str("webapp.dev.");
    let Ok(name) = Name::from_ascii(&qname) else {
        return;
    };
    let qtype = TYPES[usize::from(input.qtype) % TYPES.len()];
    let question = Question::query(name, qtype);
    let mut msg = Message::new(0x1234, MessageType::Query, OpCode::Query);
    msg.add_query(question.clone());
    msg.metadata.recursion_desired = true;
    let limit = match input.edns {
        Some(size) => {
            let mut e = Edns::new();
            e.set_max_payload(size.max(512));
            e.set_dnssec_ok(input.dnssec_ok);
            msg.set_edns(e);
            usize::from(size.max(512)).min(4096)
        }
        None => 512,
    };
    let Ok(raw) = msg.to_vec() else {
        return;
    };
    let [(va, a), (vb, b)] = servers();
    let (mut base, mut layered) = (base, layered);
    va.publish(&mut base, true);
    vb.publish(&mut layered, true);
    let udp = ask(a, &raw, Transport::Udp).expect("an answer over UDP");
    let tcp = ask(a, &raw, Transport::Tcp).expect("an answer over TCP");
    let udp_m = check(&raw, &udp, 0x1234, &question, limit);
    let tcp_m = check(&raw, &tcp, 0x1234, &question, 65_535);
    assert!(!tcp_m.metadata.truncation, "TC over TCP");
    let (u, t) = (said(&udp_m), said(&tcp_m));
    if udp_m.metadata.truncation {
        let n = |s: &Said| s.2.len() + s.3.len() + s.4.len();
        assert!(n(&u) < n(&t), "TC set with nothing left out: {u:?} {t:?}");
    } else {
        assert_eq!(
            (u.0, &u.2, &u.3, &u.4),
            (t.0, &t.2, &t.3, &t.4),
            "UDP without TC holds less than TCP"
        );
    }
    // The layered view answers as the loaded one.
    let udp_b = ask(b, &raw, Transport::Udp).expect("an answer over UDP");
    let tcp_b = ask(b, &raw, Transport::Tcp).expect("an answer over TCP");
    assert_eq!(
        said(&Message::from_vec(&tcp_b).unwrap()),
        t,
        "layered and loaded views answer alike over TCP"
    );
    let ub = said(&Message::from_vec(&udp_b).unwrap());
    assert_eq!(
        (ub.0, ub.1),
        (u.0, u.1),
        "layered and loaded views: rcode and TC over UDP"
    );
});
