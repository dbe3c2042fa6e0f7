//! One exchange with one server: a question sent over UDP or TCP (the client's transport), the
//! answer read back and checked (our id, our question; anything else ignored), and the stub zone
//! client that tries a zone's nameservers in turn. No health, no cache: that is the forwarder's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::ForwardError;
use crate::proto::{edns, framing, Transport};

/// One exchange over the transport of the client's question.
pub async fn one_exchange(
    transport: Transport,
    server: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> std::io::Result<(Vec<u8>, Message)> {
    match transport {
        Transport::Udp => udp_exchange(server, query, id, question).await,
        Transport::Tcp => tcp_exchange(server, query, id, question).await,
    }
}

/// Sends `request` to the nameservers of a stub zone (starting at one picked by the query's id,
/// as SkyDNS, then the others), within `timeout` in all, marked with the loop option
/// ([`crate::proto::edns::LOOP_OPTION`]); the answer's bytes with the client's id, without an OPT when
/// the client sent none.
pub async fn stub_forward(
    servers: &[SocketAddr],
    request: &Message,
    transport: Transport,
    timeout: Duration,
) -> Result<Vec<u8>, ForwardError> {
    let Some(question) = request.queries.first() else {
        return Err(ForwardError::Encode("no question".into()));
    };
    let client_edns = request.edns.is_some();
    let mut m = request.clone();
    edns::mark_stub(&mut m);
    let deadline = Instant::now() + timeout;
    let n = servers.len();
    for k in 0..n {
        let server = servers[(usize::from(request.metadata.id) + k) % n];
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let budget = if k + 1 == n { left } else { left / 2 };
        let id = rand_id();
        m.metadata.id = id;
        let raw = m
            .to_vec()
            .map_err(|e| ForwardError::Encode(e.to_string()))?;
        let attempt =
            tokio::time::timeout(budget, one_exchange(transport, server, &raw, id, question)).await;
        match attempt {
            Ok(Ok((mut bytes, mut answer))) => {
                if client_edns {
                    bytes[..2].copy_from_slice(&request.metadata.id.to_be_bytes());
                    return Ok(bytes);
                }
                answer.metadata.id = request.metadata.id;
                answer.edns = None;
                return answer
                    .to_vec()
                    .map_err(|e| ForwardError::Encode(e.to_string()));
            }
            Ok(Err(error)) => tracing::debug!(%server, %error, "stub nameserver failed"),
            Err(_) => tracing::debug!(%server, "stub nameserver timed out"),
        }
    }
    Err(ForwardError::AllFailed { tried: n })
}

pub fn rand_id() -> u16 {
    // Every RandomState has fresh random SipHash keys, so even the hash of nothing is
    // unpredictable: enough for ids that must not be guessed by someone spoofing answers.
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u16
}

/// Checks that `bytes` answers our question with our id.
fn check(bytes: &[u8], id: u16, question: &Query) -> std::io::Result<Option<Message>> {
    let Ok(m) = Message::from_vec(bytes) else {
        return Ok(None);
    };
    let same_question = m.queries.first().is_some_and(|q| {
        q.name().eq_ignore_root_case(question.name()) && q.query_type() == question.query_type()
    });
    Ok((m.metadata.id == id && same_question).then_some(m))
}

pub async fn udp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> std::io::Result<(Vec<u8>, Message)> {
    let bind: SocketAddr = if upstream.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything that is not our answer (late answers to someone else, junk) is ignored.
        if let Some(m) = check(&buf[..n], id, question)? {
            buf.truncate(n);
            return Ok((buf, m));
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    question: &Query,
) -> std::io::Result<(Vec<u8>, Message)> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(&framing::frame(query)?).await?;
    let len = framing::read_len(&mut stream)
        .await?
        .ok_or_else(|| std::io::Error::other("upstream closed the connection"))?;
    let buf = framing::read_body(&mut stream, len).await?;
    match check(&buf, id, question)? {
        Some(m) => Ok((buf, m)),
        None => Err(std::io::Error::other("upstream answered something else")),
    }
}
