//! Answers from an arbitrary view (structure-aware, see `server::gen`) to an arbitrary question,
//! over UDP (with or without EDNS) and TCP.
//! - The same records answer the same whether the view holds them in its compact base (a load)
//!   or as changes laid over it (puts and deletes after a load): rcode and every section, as sets.
//! - Every answer parses back, with the query's id and question, within the size limit; TCP
//!   answers are never truncated; a UDP answer without TC holds exactly what TCP's holds, and one
//!   with TC holds less.
#![no_main]

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use lodestar::View;
use server::gen::{ask, check, server, ViewInput};
use server::pipeline::Handler;
use server::proto::Transport;

/// Two servers (one per view), made once.
fn servers() -> &'static [(Arc<View>, Arc<Handler>); 2] {
    static S: OnceLock<[(Arc<View>, Arc<Handler>); 2]> = OnceLock::new();
    S.get_or_init(|| {
        let one = || {
            let (v, h) = server();
            (v, Arc::new(h))
        };
        [one(), one()]
    })
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

fuzz_target!(|input: ViewInput| {
    let Some((raw, question, limit)) = input.query() else {
        return;
    };
    let (mut base, mut layered) = input.snapshots();
    let [(va, a), (vb, b)] = servers();
    va.publish(&mut base, true);
    vb.publish(&mut layered, true);
    let udp = ask(a, &raw, Transport::Udp).expect("an answer over UDP");
    let tcp = ask(a, &raw, Transport::Tcp).expect("an answer over TCP");
    let udp_m = check(&udp, 0x1234, &question, limit);
    let tcp_m = check(&tcp, 0x1234, &question, 65_535);
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
