//! The sockets: for each `--listen` address, `--threads` UDP receive loops (one socket each,
//! `SO_REUSEPORT`, so the kernel spreads clients over them as Knot's `udp-workers`) and a TCP
//! accept loop whose connections no client can monopolise. Each hands its bytes to the
//! pipeline's [`Handler`] and sends what comes back; nothing else.
//!
//! A top tier, beside `main` and `http`: it imports `pipeline` (the handler) and `proto` (the
//! transport, TCP framing); nothing imports it but `main`.

pub mod batch;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::pipeline::Handler;
use tcp::Connections;

/// Binds every address of `listen` (UDP `threads` times, and TCP) and serves them until `token`
/// is cancelled; the bound addresses are logged (`udp`, `tcp`). An address that cannot be bound
/// is the error.
pub async fn serve(
    listen: &[SocketAddr],
    threads: usize,
    handler: &Arc<Handler>,
    conns: &Arc<Connections>,
    tasks: &TaskTracker,
    token: &CancellationToken,
) -> std::io::Result<()> {
    for addr in listen {
        let (udp, tcp) = bind_pair(*addr).await?;
        let bound = local(&udp)?;
        info!(udp = %bound, tcp = %tcp.local_addr()?, receive_loops = threads, "listening");
        let mut sockets = vec![udp];
        for _ in 1..threads {
            sockets.push(udp::bind_udp(bound)?);
        }
        for udp in sockets {
            udp::serve_udp(udp, handler.clone(), tasks, token.clone())?;
        }
        tasks.spawn(tcp::serve(
            tcp,
            handler.clone(),
            conns.clone(),
            tasks.clone(),
            token.clone(),
        ));
    }
    Ok(())
}

/// Binds UDP and TCP on the same address; with port 0, TCP takes the port UDP was given.
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(socket2::Socket, TcpListener)> {
    for _ in 0..20 {
        let udp = udp::bind_udp(addr)?;
        let bound = local(&udp)?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no port free for both UDP and TCP",
    ))
}

/// The address a socket is bound to.
fn local(socket: &socket2::Socket) -> std::io::Result<SocketAddr> {
    socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP socket"))
}
