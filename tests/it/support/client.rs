//! A small DNS client (UDP and TCP, raw bytes or parsed messages, answers as sorted text) and a
//! minimal HTTP GET for `/metrics` and the health endpoints.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.0 GET: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A query message for `name`/`qtype`, recursion desired, no EDNS.
pub fn message(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m
}

/// The same with an EDNS OPT advertising `size`.
pub fn message_edns(name: &str, qtype: RecordType, size: u16) -> Message {
    let mut m = message(name, qtype);
    let mut e = Edns::new();
    e.set_max_payload(size);
    m.set_edns(e);
    m
}

/// Sends raw bytes over UDP and returns the raw answer.
pub async fn udp_raw(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    // Loopback for loopback servers; the test's own namespaces' bridge otherwise.
    let local = if addr.ip().is_loopback() {
        "127.0.0.1:0"
    } else {
        "0.0.0.0:0"
    };
    let s = tokio::net::UdpSocket::bind(local).await?;
    // Connected: a closed port is "connection refused" at once (ICMP), not a 5 s wait.
    s.connect(addr).await?;
    s.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(timeout, s.recv(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    buf.truncate(n);
    Ok(buf)
}

/// Sends raw bytes over TCP (length-prefixed) and returns the raw answer.
pub async fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    s.write_all(&out).await?;
    let len = tokio::time::timeout(Duration::from_secs(5), s.read_u16())
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Sends `m` over UDP or TCP and parses the answer.
pub async fn exchange(addr: SocketAddr, m: &Message, tcp: bool) -> std::io::Result<Message> {
    let bytes = m.to_vec().map_err(std::io::Error::other)?;
    let raw = if tcp {
        tcp_raw(addr, &bytes).await?
    } else {
        udp_raw(addr, &bytes, Duration::from_secs(5)).await?
    };
    Message::from_vec(&raw).map_err(std::io::Error::other)
}

/// A plain UDP query without EDNS.
pub async fn query(addr: SocketAddr, name: &str, qtype: RecordType) -> std::io::Result<Message> {
    exchange(addr, &message(name, qtype), false).await
}

/// Answer records as `"owner TYPE data"`, sorted.
pub fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

/// Just the data of the answer records, sorted.
pub fn data(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}
