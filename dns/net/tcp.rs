//! DNS over TCP that no client can monopolise (RFC 7766).
//!
//! Every open connection is in a [`Connections`] table with its client (an IPv4 address, or the
//! /64 of an IPv6 one: one host's share), the last time it made progress (a query read or an
//! answer written), and whether a query of it is being answered. When a new connection arrives
//! and the server is full, or its client already holds its share, the idle connection that made
//! progress least recently is closed (RFC 7766 section 6.2.3); a connection with a query in
//! progress (being computed, or waiting on an upstream) is never closed for a newcomer: when every
//! candidate is busy, the newcomer is refused instead. A connection whose answer is ready but
//! whose client does not read it is not busy: it goes first. Reads wait at most the idle timeout, writes at most the
//! write timeout. At shutdown (the token cancelled) a connection answers every query it has
//! received, pipelined ones included, and closes once none comes for [`DRAIN_IDLE`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::pipeline::{Handler, Step};
use crate::proto::{framing, Transport};

/// The bounds of TCP service.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Open connections in all.
    pub connections: usize,
    /// Open connections from one client address.
    pub per_client: usize,
    /// How long a connection may wait for its next query.
    pub idle: Duration,
    /// How long an answer may take to be written (a client that does not read).
    pub write: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            connections: 512,
            per_client: 128,
            idle: Duration::from_secs(10),
            write: Duration::from_secs(5),
        }
    }
}

struct Conn {
    client: IpAddr,
    /// The client's share key: the address, or its /64 for IPv6.
    share: IpAddr,
    progress: Instant,
    /// A query of this connection is being answered.
    busy: bool,
    close: CancellationToken,
}

/// The share a client's connections count against: an IPv4 address (or an IPv4-mapped IPv6
/// one), or the /64 of an IPv6 address (one host's usual allocation). Pure.
pub fn share_of(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// The open connections.
pub struct Connections {
    limits: TcpLimits,
    open: Mutex<HashMap<u64, Conn>>,
    next: AtomicU64,
}

impl Connections {
    /// An empty table with these limits.
    pub fn new(limits: TcpLimits) -> Connections {
        Connections {
            limits,
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    /// Registers a connection from `client`, first closing the least recently progressing idle
    /// connection of its share when the share is full, and of anyone when the table is full.
    /// Its id and the token that closes it; `None` (the newcomer is refused) when there is no
    /// room and every candidate has a query in progress.
    fn admit(&self, client: IpAddr) -> Option<(u64, CancellationToken)> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        let Ok(mut open) = self.open.lock() else {
            return Some((id, close));
        };
        let share = share_of(client);
        let mine = open.values().filter(|c| c.share == share).count();
        if mine >= self.limits.per_client && !evict(&mut open, |c| c.share == share) {
            return None;
        }
        if open.len() >= self.limits.connections && !evict(&mut open, |_| true) {
            return None;
        }
        open.insert(
            id,
            Conn {
                client,
                share,
                progress: Instant::now(),
                busy: false,
                close: close.clone(),
            },
        );
        Some((id, close))
    }

    /// Marks a connection as having a query being answered (`busy`: computed, or waiting on an
    /// upstream), or not (its answer is ready: writing it waits on the client, whose fault a
    /// stall is). Either is progress.
    fn busy(&self, id: u64, busy: bool) {
        if let Some(c) = self.open.lock().ok().as_mut().and_then(|o| o.get_mut(&id)) {
            c.progress = Instant::now();
            c.busy = busy;
        }
    }

    fn closed(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().map_or(0, |o| o.len())
    }
}

/// Closes the least recently progressing idle connection among those `which` selects; whether
/// there was one.
fn evict(open: &mut HashMap<u64, Conn>, which: impl Fn(&Conn) -> bool) -> bool {
    let victim = open
        .iter()
        .filter(|(_, c)| !c.busy && which(c))
        .min_by_key(|(_, c)| c.progress)
        .map(|(id, _)| *id);
    match victim.and_then(|id| open.remove(&id)) {
        Some(c) => {
            debug!(client = %c.client, "closing the least recently active idle tcp connection");
            c.close.cancel();
            true
        }
        None => false,
    }
}

/// Accepts TCP connections on `listener` until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    conns: Arc<Connections>,
    tasks: TaskTracker,
    token: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(error) => {
                    // Out of file descriptors, say: let the table shrink, then go on.
                    debug!(%error, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Some((id, close)) = conns.admit(peer.ip()) else {
            debug!(%peer, "tcp connection refused: no room, and every connection is answering a query");
            continue; // dropped: closed at once
        };
        let (handler, conns, token) = (handler.clone(), conns.clone(), token.clone());
        tasks.spawn(async move {
            tokio::select! {
                () = close.cancelled() => {}
                r = connection(stream, peer, &handler, &conns, id, &token) => {
                    if let Err(error) = r {
                        debug!(%error, %peer, "tcp connection ended");
                    }
                }
            }
            conns.closed(id);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: &Arc<Handler>,
    conns: &Connections,
    id: u64,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let limits = conns.limits;
    loop {
        let Some(len) = next_len(&mut stream, limits.idle, shutdown).await? else {
            return Ok(()); // closed, or idle
        };
        let msg = tokio::time::timeout(limits.idle, framing::read_body(&mut stream, len))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow client"))??;
        conns.busy(id, true);
        let reply = match handler.handle(&msg, peer.ip(), Transport::Tcp) {
            Step::Reply(bytes) => bytes,
            Step::Later(job) => match handler.complete(job).await {
                Some(bytes) => bytes,
                None => return Ok(()),
            },
            Step::Drop => return Ok(()),
        };
        conns.busy(id, false);
        // Answers are built within 65,535 bytes; anything else is a bug, not something to send.
        let out = framing::frame(&reply)?;
        tokio::time::timeout(limits.write, stream.write_all(&out))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "client not reading")
            })??;
        conns.busy(id, false);
    }
}

/// How long a connection waits for its next query once shutdown has begun: long enough for
/// the query of a client that has just connected, or that pipelines, to arrive.
pub const DRAIN_IDLE: Duration = Duration::from_millis(200);

/// The length of the next query, `None` when the client closes or sends none in `idle` (in
/// [`DRAIN_IDLE`] once `shutdown` is cancelled). A query already here is read first.
async fn next_len(
    stream: &mut TcpStream,
    idle: Duration,
    shutdown: &CancellationToken,
) -> std::io::Result<Option<u16>> {
    let read = framing::read_len(stream);
    tokio::pin!(read);
    let drain_by = || tokio::time::Instant::now() + DRAIN_IDLE;
    let mut deadline = tokio::time::Instant::now() + idle;
    let mut draining = shutdown.is_cancelled();
    if draining {
        deadline = deadline.min(drain_by());
    }
    loop {
        tokio::select! {
            biased;
            r = &mut read => return r,
            () = tokio::time::sleep_until(deadline) => return Ok(None),
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                deadline = deadline.min(drain_by());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_active_idle_one_goes_first_and_a_busy_one_never() {
        let conns = Connections::new(TcpLimits {
            connections: 3,
            per_client: 2,
            ..TcpLimits::default()
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let (a1, a1_close) = conns.admit(a).unwrap();
        let (a2, a2_close) = conns.admit(a).unwrap();
        // a1 has a query in progress: a third from the same client closes a2, never a1.
        conns.busy(a1, true);
        let (_a3, _) = conns.admit(a).unwrap();
        assert!(a2_close.is_cancelled() && !a1_close.is_cancelled());
        assert_eq!(conns.len(), 2);
        let (b1, b1_close) = conns.admit(b).unwrap();
        assert_eq!(conns.len(), 3);
        // Full: a new client closes the least recently active idle one of all (a3), not a1.
        conns.busy(b1, true);
        let (_b2, _) = conns.admit(b).unwrap();
        assert!(!a1_close.is_cancelled() && !b1_close.is_cancelled());
        assert_eq!(conns.len(), 3);
        // Every connection busy: the newcomer is refused, nobody is closed.
        for id in conns.open.lock().unwrap().values_mut() {
            id.busy = true;
        }
        assert!(conns.admit("127.0.0.4".parse().unwrap()).is_none());
        assert_eq!(conns.len(), 3);
        let _ = a2;
    }

    #[test]
    fn an_ipv6_client_s_share_is_its_64() {
        let share = |s: &str| share_of(s.parse().unwrap()).to_string();
        assert_eq!(share("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(share("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::");
        assert_ne!(share("2001:db8:1:3::1"), share("2001:db8:1:2::1"));
        assert_eq!(share("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(share("10.0.0.1"), "10.0.0.1");
    }
}
