//! One question to a server under test: asked and checked (`answered`: does the answer hold this
//! data?), or timed over a given wire (UDP, EDNS, TCP, with DO) from send to the whole answer.
//! A leaf of the benchmarks: it imports only the tests' DNS client.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::support;

/// A UDP query, blocking: whether its answer satisfies `good` (false on no answer).
pub fn ask(
    sock: &UdpSocket,
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    good: impl Fn(&Message) -> bool,
) -> bool {
    let q = support::message(name, qtype);
    let Ok(bytes) = q.to_vec() else { return false };
    if sock.send_to(&bytes, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => match Message::from_vec(&buf[..n]) {
                Ok(m) if m.metadata.id == q.metadata.id => return good(&m),
                Ok(_) => continue,
                Err(_) => return false,
            },
            Err(_) => return false,
        }
    }
}

/// A UDP query, blocking; whether it has an answer record.
pub fn answered(
    sock: &UdpSocket,
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    want: &str,
) -> bool {
    ask(sock, addr, name, qtype, |m| {
        m.answers.iter().any(|r| r.data.to_string() == want)
    })
}

/// Whether `name` answers an SRV with `port` (the mark of one particular change).
pub fn answered_srv_port(sock: &UdpSocket, addr: SocketAddr, name: &str, port: usize) -> bool {
    ask(sock, addr, name, RecordType::SRV, |m| {
        m.answers.iter().any(
            |r| matches!(&r.data, hickory_proto::rr::RData::SRV(s) if usize::from(s.port) == port),
        )
    })
}

/// Whether `name` A at `addr` comes back with an RRSIG (asked with DO).
pub fn signed_answer(sock: &UdpSocket, addr: SocketAddr, name: &str) -> bool {
    let mut m = Message::query();
    m.add_query(hickory_proto::op::Query::query(
        hickory_proto::rr::Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    let mut e = hickory_proto::op::Edns::new();
    e.set_max_payload(1232);
    e.set_dnssec_ok(true);
    m.set_edns(e);
    let Ok(bytes) = m.to_vec() else { return false };
    if sock.send_to(&bytes, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    let Ok((n, _)) = sock.recv_from(&mut buf) else {
        return false;
    };
    Message::from_vec(&buf[..n]).is_ok_and(|r| {
        r.answers
            .iter()
            .any(|a| a.record_type() == RecordType::RRSIG)
    })
}

#[derive(Clone, Copy, PartialEq)]
pub enum Wire {
    Udp,
    Edns,
    Tcp,
    /// EDNS 1232 with DO: a signed answer.
    EdnsDo,
    /// TCP with DO.
    TcpDo,
}

impl Wire {
    pub fn label(self) -> &'static str {
        match self {
            Wire::Udp => "UDP",
            Wire::Edns => "UDP EDNS 1232",
            Wire::Tcp => "TCP",
            Wire::EdnsDo => "UDP EDNS 1232, DO (signed)",
            Wire::TcpDo => "TCP, DO (signed)",
        }
    }

    pub fn tcp(self) -> bool {
        matches!(self, Wire::Tcp | Wire::TcpDo)
    }
}

/// One query, timed from send (or connect) to the whole answer: (seconds, answers, TC).
pub fn timed(
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    wire: Wire,
) -> Option<(f64, usize, bool)> {
    use std::io::{Read, Write};
    let mut m = match wire {
        Wire::Udp | Wire::Tcp => support::message(name, qtype),
        _ => support::message_edns(name, qtype, 1232),
    };
    if matches!(wire, Wire::EdnsDo | Wire::TcpDo) {
        if let Some(e) = m.edns.as_mut() {
            e.set_dnssec_ok(true);
        }
    }
    let bytes = m.to_vec().ok()?;
    let t = Instant::now();
    let raw = if wire.tcp() {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        s.write_all(&out).ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).ok()?;
        buf
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.send_to(&bytes, addr).ok()?;
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf).ok()?;
        buf.truncate(n);
        buf
    };
    let elapsed = t.elapsed().as_secs_f64();
    let reply = Message::from_vec(&raw).ok()?;
    Some((elapsed, reply.answers.len(), reply.metadata.truncation))
}
