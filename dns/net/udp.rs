//! The UDP receive loops: one socket each, bound with `SO_REUSEPORT` so that the kernel spreads
//! clients over them, with large buffers.
//!
//! A receive loop hands each packet to [`Handler::handle`] and sends a cached answer inline (no
//! task per query); anything else leaves the loop as a task ([`Handler::complete`]). Every loop
//! stops when the token is cancelled; spawned work lives in a [`TaskTracker`] that `main` waits for.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::pipeline::{Handler, Step};
use crate::proto::Transport;

/// Socket buffer each UDP socket asks for: room for ~4,000 queries, so that a scheduling hiccup
/// of a few tens of milliseconds at tens of thousands of queries a second loses nothing.
const UDP_BUFFER: usize = 4 << 20;

/// Binds a UDP socket with large buffers and `SO_REUSEPORT` (several sockets share a port). Past the system's cap (`net.core.rmem_max`) it forces
/// them when allowed (`CAP_NET_ADMIN`), as Knot DNS does, and otherwise keeps what it got.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
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

/// Answers datagrams on `socket` until `token` is cancelled.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
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
            Step::Later(job) => {
                let (socket, handler) = (socket.clone(), handler.clone());
                tasks.spawn(async move {
                    if let Some(bytes) = handler.complete(job).await {
                        send(&socket, &bytes, src).await;
                    }
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(error) = socket.send_to(bytes, to).await {
        debug!(%error, "udp send failed");
    }
}
