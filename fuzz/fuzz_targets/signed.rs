//! Signed answers (`--dnssec-key`, ECDSA P-256, online signing) from an arbitrary view to an
//! arbitrary question with DO, over UDP and TCP: in the answer and authority sections every RRset
//! has exactly one RRSIG and every RRSIG covers an RRset that was sent, and each RRSIG verifies
//! with the zone's DNSKEY over the records as sent (a truncated RRset would not).
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use hickory_proto::dnssec::rdata::{DNSSECRData, DNSKEY, RRSIG};
use hickory_proto::dnssec::Verifier;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use libfuzzer_sys::fuzz_target;
use lodestar::View;
use server::dnssec::keys::ZoneKey;
use server::dnssec::Signers;
use server::gen::{ask, check, server, ViewInput};
use server::pipeline::Handler;
use server::proto::Transport;

// Written by `dnssec-keygen -a ECDSAP256SHA256 -f KSK webapp.dev` (BIND 9.18).
const KEY: &str = "webapp.dev. IN DNSKEY 257 3 13 CRuUc/236aLiKz6KWxC9q69UiSC1iWQgs4MxoFF34MSu9+mVOOYwW5Fy RAv4aLKD5q250K/DB5CZfA/uFiRmew==\n";
const PRIVATE: &str = "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: fmGHXdy8kiqxUKX+mP6r8UU/yQAvQLbEGqjlJyJdrNE=\n";

fn signing() -> &'static (Arc<View>, Arc<Handler>, DNSKEY) {
    static S: OnceLock<(Arc<View>, Arc<Handler>, DNSKEY)> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("Kwebapp.dev.+013+11263");
        let named = |suffix: &str| dir.path().join(format!("Kwebapp.dev.+013+11263.{suffix}"));
        std::fs::write(named("key"), KEY).expect("write");
        std::fs::write(named("private"), PRIVATE).expect("write");
        let key = ZoneKey::load(&base).expect("the key loads");
        let dnskey = key.dnskey.clone();
        let signers = Signers::new(&[key]).expect("signers");
        let (view, handler) = server();
        (view, Arc::new(handler.signing(Arc::new(signers))), dnskey)
    })
}

/// Checks one section: RRsets and RRSIGs match one to one, and each RRSIG verifies.
fn section(records: &[Record], key: &DNSKEY, what: &str) {
    let mut sets: BTreeMap<(String, RecordType), Vec<&Record>> = BTreeMap::new();
    let mut sigs: BTreeMap<(String, RecordType), Vec<&RRSIG>> = BTreeMap::new();
    for r in records {
        let owner = r.name.to_lowercase().to_string();
        match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sigs
                .entry((owner, sig.input().type_covered))
                .or_default()
                .push(sig),
            _ => sets.entry((owner, r.record_type())).or_default().push(r),
        }
    }
    let set_keys: Vec<_> = sets.keys().collect();
    let sig_keys: Vec<_> = sigs.keys().collect();
    assert_eq!(set_keys, sig_keys, "{what}: RRsets and RRSIGs");
    for (k, set) in &sets {
        let s = &sigs[k];
        assert_eq!(s.len(), 1, "{what}: one RRSIG for {k:?}");
        key.verify_rrsig(&set[0].name, DNSClass::IN, s[0], set.iter().copied())
            .unwrap_or_else(|e| panic!("{what}: the RRSIG of {k:?} does not verify: {e}"));
    }
}

fuzz_target!(|input: ViewInput| {
    let input = ViewInput {
        edns: Some(input.edns.unwrap_or(1232)),
        dnssec_ok: true,
        ..input
    };
    let Some((raw, question, limit)) = input.query() else {
        return;
    };
    let (mut snap, _) = input.snapshots();
    let (view, handler, key) = signing();
    view.publish(&mut snap, true);
    for (transport, limit) in [(Transport::Udp, limit), (Transport::Tcp, 65_535)] {
        let Some(bytes) = ask(handler, &raw, transport) else {
            panic!("no answer over {transport:?}");
        };
        let m = check(&bytes, 0x1234, &question, limit);
        section(&m.answers, key, "answer");
        section(&m.authorities, key, "authority");
    }
});
