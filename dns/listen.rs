//! The sockets: a UDP loop and a TCP accept loop per `--listen` address.
//!
//! Both hand each packet to [`Handler::handle`]; local answers are sent inline (no task per
//! query), forwarded ones run in tasks bounded by a semaphore (REFUSED when it is full, as
//! CoreDNS's `max_concurrent`), and TCP connections are bounded too. Every loop stops when the
//! token is cancelled; spawned work lives in a [`TaskTracker`] that `main` waits for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::forward::Transport;
use crate::handler::{Handler, Step};

/// How long a TCP connection may stay idle between queries (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Socket buffer each UDP socket asks for: room for ~4,000 queries, so that a scheduling hiccup
/// of a few tens of milliseconds at tens of thousands of queries a second loses nothing.
const UDP_BUFFER: usize = 4 << 20;

/// Binds a UDP socket with large buffers. Past the system's cap (`net.core.rmem_max`) it forces
/// them when allowed (`CAP_NET_ADMIN`), as Knot DNS does, and otherwise keeps what it got.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if socket.recv_buffer_size().is_ok_and(|n| n < UDP_BUFFER) {
        let _ = socket.set_recv_buffer_size(UDP_BUFFER);
        force_buffer(
            &socket,
            libc::SO_RCVBUFFORCE,
            socket.recv_buffer_size().unwrap_or(0),
        );
    }
    if socket.send_buffer_size().is_ok_and(|n| n < UDP_BUFFER) {
        let _ = socket.set_send_buffer_size(UDP_BUFFER);
        force_buffer(
            &socket,
            libc::SO_SNDBUFFORCE,
            socket.send_buffer_size().unwrap_or(0),
        );
    }
    debug!(%addr, recv_buffer = socket.recv_buffer_size().unwrap_or(0), "udp socket");
    UdpSocket::from_std(socket.into())
}

#[cfg(target_os = "linux")]
fn force_buffer(socket: &socket2::Socket, option: libc::c_int, current: usize) {
    use std::os::fd::AsRawFd;
    if current >= UDP_BUFFER {
        return;
    }
    let size = UDP_BUFFER as libc::c_int;
    // SAFETY: setsockopt on a socket we own, with a pointer to an int of the size we pass.
    // Failure (no CAP_NET_ADMIN) leaves the buffer as it was, which is fine.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn force_buffer(_: &socket2::Socket, _: i32, _: usize) {}

/// Limits shared by every listener.
#[derive(Clone)]
pub struct Limits {
    /// Forwarded queries in flight.
    pub forwards: Arc<Semaphore>,
    /// Open TCP connections.
    pub connections: Arc<Semaphore>,
}

/// Answers datagrams on `socket` until `token` is cancelled.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    limits: Limits,
    tasks: TaskTracker,
    token: CancellationToken,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, src) = tokio::select! {
            () = token.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(error) => {
                    debug!(%error, "udp receive failed");
                    continue;
                }
            },
        };
        match handler.handle(&buf[..n], src.ip(), Transport::Udp) {
            Step::Reply(bytes) => send(&socket, &bytes, src).await,
            Step::Drop => {}
            Step::Forward(pending) => match limits.forwards.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (socket, handler) = (socket.clone(), handler.clone());
                    tasks.spawn(async move {
                        let bytes = handler.finish(*pending).await;
                        send(&socket, &bytes, src).await;
                        drop(permit);
                    });
                }
                Err(_) => send(&socket, &handler.refuse(&pending), src).await,
            },
        }
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if bytes.is_empty() {
        return;
    }
    if let Err(error) = socket.send_to(bytes, to).await {
        debug!(%error, "udp send failed");
    }
}

/// Accepts TCP connections on `listener` until `token` is cancelled.
pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: Limits,
    tasks: TaskTracker,
    token: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            () = token.cancelled() => return,
            p = limits.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(error) => {
                    debug!(%error, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (handler, token) = (handler.clone(), token.clone());
        tasks.spawn(async move {
            if let Err(error) = connection(stream, peer, handler, token).await {
                debug!(%error, %peer, "tcp connection ended");
            }
            drop(permit);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    token: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let len = tokio::select! {
            () = token.cancelled() => return Ok(()),
            r = tokio::time::timeout(TCP_IDLE, stream.read_u16()) => match r {
                Ok(Ok(len)) => len,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()), // idle
            },
        };
        let mut msg = vec![0u8; usize::from(len)];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow client"))??;
        let reply = match handler.handle(&msg, peer.ip(), Transport::Tcp) {
            Step::Reply(bytes) => bytes,
            Step::Forward(pending) => handler.finish(*pending).await,
            Step::Drop => return Ok(()),
        };
        if reply.is_empty() {
            return Ok(());
        }
        let len =
            u16::try_from(reply.len()).map_err(|_| std::io::Error::other("answer too long"))?;
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
    }
}
