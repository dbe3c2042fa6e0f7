//! Unit tests of the module above.

use super::*;
use crate::proto::Transport;
use hickory_proto::rr::rdata::{A, SRV, TXT};
use hickory_proto::rr::{DNSClass, RecordType};

fn q(transport: Transport, edns: Option<u16>) -> Query {
    Query {
        id: 9,
        recursion_desired: true,
        checking_disabled: false,
        name: Name::from_ascii("Big.webapp.dev.").unwrap(),
        qtype: RecordType::A,
        qclass: DNSClass::IN,
        edns: edns.map(|size| {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e
        }),
        transport,
        size: 0,
    }
}

fn addresses(n: u32) -> Vec<Record> {
    let owner = Name::from_ascii("Big.webapp.dev.").unwrap();
    (0..n)
        .map(|i| {
            Record::from_rdata(
                owner.clone(),
                30,
                RData::A(A::from(std::net::Ipv4Addr::from(0x0a00_0000 + i))),
            )
        })
        .collect()
}

fn parse(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap()
}

#[test]
fn fits_every_limit_with_tc_and_opt() {
    let records = addresses(5000);
    let body = Body {
        answers: &records,
        ..Body::default()
    };
    for (query, limit, tc) in [
        (q(Transport::Udp, None), 512, true),
        (q(Transport::Udp, Some(1232)), 1232, true),
        (q(Transport::Udp, Some(4096)), 1232, true),
        (q(Transport::Tcp, None), 65535, false),
    ] {
        let bytes = encode(&query, ResponseCode::NoError, true, false, body);
        assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
        let m = parse(&bytes);
        assert_eq!(m.metadata.truncation, tc);
        assert_eq!(m.metadata.id, 9);
        assert!(m.metadata.authoritative);
        assert!(m.answers.len() > 10, "{}", m.answers.len());
        assert_eq!(m.edns.is_some(), query.edns.is_some(), "OPT iff asked");
        assert_eq!(m.queries[0].name().to_string(), "Big.webapp.dev.");
    }
    let small = addresses(3);
    let m = parse(&encode(
        &q(Transport::Udp, None),
        ResponseCode::NoError,
        true,
        false,
        Body {
            answers: &small,
            rotation: 4,
            ..Body::default()
        },
    ));
    assert!(!m.metadata.truncation);
    let got: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(
        got,
        ["10.0.0.1", "10.0.0.2", "10.0.0.0"],
        "rotated by 4 % 3"
    );
}

#[test]
fn a_tcp_message_holds_four_thousand_addresses() {
    let records = addresses(5000);
    let body = Body {
        answers: &records,
        ..Body::default()
    };
    let bytes = encode(
        &q(Transport::Tcp, None),
        ResponseCode::NoError,
        true,
        false,
        body,
    );
    let m = parse(&bytes);
    // 12 + 20 (question) + 16 a record: 4,093 fit in 65,535 bytes.
    assert_eq!(m.answers.len(), 4093);
    assert_eq!(m.answers[4092].name.to_string(), "Big.webapp.dev.");
    assert!(
        !m.metadata.truncation,
        "no TC over TCP: nothing larger to retry on"
    );
}

#[test]
fn a_record_larger_than_any_message_is_cut_cleanly() {
    let owner = Name::from_ascii("Big.webapp.dev.").unwrap();
    let text: Vec<String> = (0..4000).map(|_| "x".repeat(255)).collect();
    let huge = [Record::from_rdata(owner, 30, RData::TXT(TXT::new(text)))];
    for query in [q(Transport::Tcp, None), q(Transport::Udp, Some(1232))] {
        let bytes = encode(
            &query,
            ResponseCode::NoError,
            true,
            false,
            Body {
                answers: &huge,
                ..Body::default()
            },
        );
        let m = parse(&bytes);
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
    }
}

#[test]
fn additional_records_follow_the_answers_sent() {
    let owner = Name::from_ascii("Big.webapp.dev.").unwrap();
    let mut answers = Vec::new();
    let mut extra = Vec::new();
    for i in 0..200u32 {
        let target = Name::from_ascii(format!("i{i}.big.webapp.dev.")).unwrap();
        let srv = SRV::new(10, 1, 80, target.clone());
        answers.push(Record::from_rdata(owner.clone(), 30, RData::SRV(srv)));
        extra.push(Record::from_rdata(
            target,
            30,
            RData::A(A::from(std::net::Ipv4Addr::from(i))),
        ));
    }
    let m = parse(&encode(
        &q(Transport::Udp, Some(1232)),
        ResponseCode::NoError,
        true,
        false,
        Body {
            answers: &answers,
            rotation: 150,
            additionals: &extra,
            ..Body::default()
        },
    ));
    assert!(m.metadata.truncation);
    let first = m.answers[0].data.to_string();
    assert!(first.contains("i150."), "{first}");
    for a in &m.additionals {
        let owner = a.name.to_string();
        assert!(
            m.answers
                .iter()
                .any(|r| r.data.to_string().ends_with(&owner)),
            "{owner} belongs to no answer sent"
        );
    }
}

fn with_do(mut query: Query) -> Query {
    let mut e = query.edns.take().unwrap_or_default();
    e.set_dnssec_ok(true);
    query.edns = Some(e);
    query
}

#[test]
fn signed_answers_sign_exactly_what_is_sent() {
    let signers = Signers::new(&[crate::dnssec::keys::test_key()]).unwrap();
    let records = addresses(5000);
    let rrsigs = |m: &Message| {
        m.answers
            .iter()
            .filter(|r| r.record_type() == hickory_proto::rr::RecordType::RRSIG)
            .count()
    };
    for (query, limit) in [
        (with_do(q(Transport::Tcp, None)), 65535),
        (with_do(q(Transport::Udp, Some(1232))), 1232),
        (with_do(q(Transport::Udp, Some(512))), 512),
    ] {
        let tcp = limit == 65535;
        let body = Body {
            answers: &records,
            rotation: 7,
            signers: Some(&signers),
            ..Body::default()
        };
        let bytes = encode(&query, ResponseCode::NoError, true, false, body);
        assert!(bytes.len() <= limit, "{} > {limit}", bytes.len());
        let m = parse(&bytes);
        assert_eq!(m.metadata.truncation, !tcp);
        assert!(m.answers.len() > 10, "{limit}: {}", m.answers.len());
        assert_eq!(rrsigs(&m), 1, "{limit}: one signature for the part sent");
        assert!(m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    }
    // An RRset goes out with one TTL, its lowest.
    let mut mixed = addresses(3);
    mixed[1].ttl = 10;
    let m = parse(&encode(
        &with_do(q(Transport::Udp, Some(1232))),
        ResponseCode::NoError,
        true,
        false,
        Body {
            answers: &mixed,
            signers: Some(&signers),
            ..Body::default()
        },
    ));
    let ttls: Vec<u32> = m.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [10, 10, 10, 10], "three addresses and their RRSIG");
    // Without DO nothing is signed.
    let body = Body {
        answers: &records[..3],
        signers: Some(&signers),
        ..Body::default()
    };
    let m = parse(&encode(
        &q(Transport::Udp, Some(1232)),
        ResponseCode::NoError,
        true,
        false,
        body,
    ));
    assert_eq!((m.answers.len(), rrsigs(&m)), (3, 0));
}

#[test]
fn badvers_travels_in_the_opt() {
    let mut query = q(Transport::Udp, Some(1232));
    if let Some(e) = query.edns.as_mut() {
        e.set_version(1);
    }
    let m = parse(&encode(
        &query,
        ResponseCode::BADVERS,
        false,
        false,
        Body::default(),
    ));
    // 16 is BADVERS with an OPT (hickory's parser names it BADSIG, its TSIG twin).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert_eq!(m.edns.map(|e| e.version()), Some(0));
}
