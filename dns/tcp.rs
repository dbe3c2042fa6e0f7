//! DNS over TCP that no client can monopolise (RFC 7766).
//!
//! Every open connection is in a [`Connections`] table with its client address and the last time
//! it made progress (a query read or an answer written). When a new connection arrives and the
//! server is full, or its client already holds its share, the connection that made progress
//! least recently is closed first: idle ones and ones whose client stopped reading go before
//! busy ones (RFC 7766 section 6.2.3). Reads wait at most the idle timeout, writes at most the
//! write timeout, and every connection ends when the shutdown token is cancelled.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::forward::Transport;
use crate::handler::{Handler, Step};

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
    progress: Instant,
    close: CancellationToken,
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

    /// Registers a connection from `client`, first closing the least recently progressing
    /// connection of that client when it holds its share, and of anyone when the table is full.
    /// Returns its id and the token that closes it.
    fn admit(&self, client: IpAddr) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = CancellationToken::new();
        let Ok(mut open) = self.open.lock() else {
            return (id, close);
        };
        let mine = open.values().filter(|c| c.client == client).count();
        if mine >= self.limits.per_client {
            evict(&mut open, |c| c.client == client);
        }
        if open.len() >= self.limits.connections {
            evict(&mut open, |_| true);
        }
        open.insert(
            id,
            Conn {
                client,
                progress: Instant::now(),
                close: close.clone(),
            },
        );
        (id, close)
    }

    fn progressed(&self, id: u64) {
        if let Some(c) = self.open.lock().ok().as_mut().and_then(|o| o.get_mut(&id)) {
            c.progress = Instant::now();
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

/// Closes the least recently progressing connection among those `which` selects.
fn evict(open: &mut HashMap<u64, Conn>, which: impl Fn(&Conn) -> bool) {
    let victim = open
        .iter()
        .filter(|(_, c)| which(c))
        .min_by_key(|(_, c)| c.progress)
        .map(|(id, _)| *id);
    if let Some(c) = victim.and_then(|id| open.remove(&id)) {
        debug!(client = %c.client, "closing the least recently active tcp connection");
        c.close.cancel();
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
        let (id, close) = conns.admit(peer.ip());
        let (handler, conns, token) = (handler.clone(), conns.clone(), token.clone());
        tasks.spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = close.cancelled() => {}
                r = connection(stream, peer, &handler, &conns, id) => {
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
) -> std::io::Result<()> {
    let limits = conns.limits;
    loop {
        let len = match tokio::time::timeout(limits.idle, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()), // idle
        };
        let mut msg = vec![0u8; usize::from(len)];
        tokio::time::timeout(limits.idle, stream.read_exact(&mut msg))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow client"))??;
        conns.progressed(id);
        let reply = match handler.handle(&msg, peer.ip(), Transport::Tcp) {
            Step::Reply(bytes) => bytes,
            Step::Later(job) => match handler.complete(job).await {
                Some(bytes) => bytes,
                None => return Ok(()),
            },
            Step::Drop => return Ok(()),
        };
        // Answers are built within 65,535 bytes; anything else is a bug, not something to send.
        let len =
            u16::try_from(reply.len()).map_err(|_| std::io::Error::other("answer too long"))?;
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&reply);
        tokio::time::timeout(limits.write, stream.write_all(&out))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "client not reading")
            })??;
        conns.progressed(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_active_goes_first() {
        let conns = Connections::new(TcpLimits {
            connections: 3,
            per_client: 2,
            ..TcpLimits::default()
        });
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let (a1, a1_close) = conns.admit(a);
        let (a2, a2_close) = conns.admit(a);
        conns.progressed(a1);
        // A third from the same client closes that client's least recently active one.
        let (_a3, _) = conns.admit(a);
        assert!(a2_close.is_cancelled() && !a1_close.is_cancelled());
        assert_eq!(conns.len(), 2);
        let (_b1, b1_close) = conns.admit(b);
        assert_eq!(conns.len(), 3);
        // Full: a new client closes the least recently active of all.
        let (_b2, _) = conns.admit(b);
        assert!(a1_close.is_cancelled() && !b1_close.is_cancelled());
        assert_eq!(conns.len(), 3);
        let _ = a2;
    }
}
