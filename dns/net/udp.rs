//! The UDP receive loops: one socket each, bound with `SO_REUSEPORT` so that the kernel spreads
//! clients over them, with large buffers.
//!
//! A receive loop hands each packet to [`Handler::handle`] and sends a cached answer inline (no
//! task per query); anything else leaves the loop as a task ([`Handler::complete`]). Every loop
//! stops when the token is cancelled; spawned work lives in a [`TaskTracker`] that `main` waits for.

use std::net::SocketAddr;
use std::sync::Arc;

use std::os::fd::AsRawFd;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::batch::{Inbox, Outbox};
use crate::pipeline::{Handler, Step};
use crate::proto::Transport;

/// Socket buffer each UDP socket asks for: room for ~4,000 queries, so that a scheduling hiccup
/// of a few tens of milliseconds at tens of thousands of queries a second loses nothing.
const UDP_BUFFER: usize = 4 << 20;

/// Binds a UDP socket with large buffers and `SO_REUSEPORT` (several sockets share a port). Past the system's cap (`net.core.rmem_max`) it forces
/// them when allowed (`CAP_NET_ADMIN`), as Knot DNS does, and otherwise keeps what it got.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    size_buffers(&socket);
    debug!(%addr, recv_buffer = socket.recv_buffer_size().unwrap_or(0), "udp socket");
    Ok(socket)
}

/// Asks for [`UDP_BUFFER`] both ways (forced past `net.core.rmem_max` when allowed); a socket
/// passed by systemd too, whose `ReceiveBuffer=` may have set more already.
pub fn size_buffers(socket: &socket2::Socket) {
    if socket.recv_buffer_size().is_ok_and(|n| n < UDP_BUFFER) {
        let _ = socket.set_recv_buffer_size(UDP_BUFFER);
        force_buffer(
            socket,
            libc::SO_RCVBUFFORCE,
            socket.recv_buffer_size().unwrap_or(0),
        );
    }
    if socket.send_buffer_size().is_ok_and(|n| n < UDP_BUFFER) {
        let _ = socket.set_send_buffer_size(UDP_BUFFER);
        force_buffer(
            socket,
            libc::SO_SNDBUFFORCE,
            socket.send_buffer_size().unwrap_or(0),
        );
    }
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

/// Who else holds a socket, which says how its receive loop is woken at shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Only this process: shut down for reading, which wakes a blocked receive at once.
    Us,
    /// The service manager too (socket activation): a shut down socket would stay so for the
    /// next process, so the receive wakes every [`WAKE`] to look at the token instead.
    Supervisor,
}

/// How often a receive on a socket the supervisor holds wakes to look for shutdown.
pub const WAKE: std::time::Duration = std::time::Duration::from_millis(100);

/// Starts the receive loop of `socket` on a thread of its own, answering until `token` is
/// cancelled; jobs that wait (forwarding, large answers, signing) run on `runtime` as tasks of
/// `tasks`. A task of `tasks` wakes the thread at cancellation (see [`Holder`]) and ends when
/// the thread has, so waiting for `tasks` waits for the loop: a batch already received is
/// answered, and so is every job it started.
pub fn serve_udp(
    socket: socket2::Socket,
    holder: Holder,
    handler: Arc<Handler>,
    tasks: &TaskTracker,
    token: CancellationToken,
) -> std::io::Result<()> {
    if holder == Holder::Supervisor {
        socket.set_read_timeout(Some(WAKE))?;
    }
    let socket = Arc::new(socket);
    let runtime = tokio::runtime::Handle::current();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let looping = (socket.clone(), tasks.clone(), token.clone());
    std::thread::Builder::new()
        .name("udp".into())
        .spawn(move || {
            let (socket, tasks, token) = looping;
            receive_loop(&socket, &handler, &tasks, &runtime, &token);
            let _ = done.send(());
        })?;
    tasks.spawn(async move {
        token.cancelled().await;
        if holder == Holder::Us {
            // Wakes a receive blocked in the kernel (it returns nothing); the error (not
            // connected) is expected.
            let _ = socket.shutdown(std::net::Shutdown::Read);
        }
        let _ = finished.await;
    });
    Ok(())
}

/// Takes a batch, answers each datagram, sends the batch's answers in one call; again.
fn receive_loop(
    socket: &Arc<socket2::Socket>,
    handler: &Arc<Handler>,
    tasks: &TaskTracker,
    runtime: &tokio::runtime::Handle,
    token: &CancellationToken,
) {
    let fd = socket.as_raw_fd();
    let mut inbox = Inbox::new();
    let mut outbox = Outbox::default();
    while !token.is_cancelled() {
        let n = match inbox.receive(fd) {
            Ok(n) => n,
            Err(error) => {
                use std::io::ErrorKind::{Interrupted, WouldBlock};
                // WouldBlock: a [`WAKE`] passed with nothing received.
                if !matches!(error.kind(), Interrupted | WouldBlock) {
                    debug!(%error, "udp receive failed");
                }
                continue;
            }
        };
        for i in 0..n {
            let Some((bytes, src)) = inbox.datagram(i) else {
                continue;
            };
            match handler.handle(bytes, src.ip(), Transport::Udp) {
                Step::Reply(answer) => outbox.push(answer, src),
                Step::Drop => {}
                Step::Later(job) => {
                    let (socket, handler) = (socket.clone(), handler.clone());
                    tasks.spawn_on(
                        async move {
                            if let Some(answer) = handler.complete(job).await {
                                send_now(&socket, &answer, src);
                            }
                        },
                        runtime,
                    );
                }
            }
        }
        if !outbox.is_empty() {
            outbox.send(fd);
        }
    }
}

/// Sends one answer from a task without blocking its worker: with the socket's buffer full
/// (4 MiB of answers waiting), the answer is dropped as the network would drop it.
fn send_now(socket: &socket2::Socket, bytes: &[u8], to: SocketAddr) {
    if let Err(error) = socket.send_to_with_flags(bytes, &to.into(), libc::MSG_DONTWAIT) {
        debug!(%error, "udp send failed");
    }
}
