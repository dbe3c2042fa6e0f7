//! The sockets: for each `--listen` address, `--threads` UDP receive loops (one socket each,
//! `SO_REUSEPORT`, so the kernel spreads clients over them as Knot's `udp-workers`) and a TCP
//! accept loop whose connections no client can monopolise; or the same loops on the sockets
//! systemd passed ([`activation`]), read once the view has a snapshot. Each hands its bytes to the
//! pipeline's [`Handler`] and sends what comes back; nothing else.
//!
//! A top tier, beside `main` and `http`: it imports `pipeline` (the handler) and `proto` (the
//! transport, TCP framing); nothing imports it but `main`.

pub mod activation;
pub mod batch;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::pipeline::Handler;
use activation::Passed;
use tcp::Connections;
use udp::Holder;

/// How long sockets passed by systemd stay unread while the view has no snapshot (etcd slow
/// or unreachable, no state file): past it, queries are read and answered as they can be
/// (SERVFAIL with EDE 14 for the served domains, forwarded names as always).
pub const HOLD_AT_START: Duration = Duration::from_secs(10);

/// Where queries come from.
pub enum Sockets {
    /// `--listen`: bound here, served at once.
    Bind(Vec<SocketAddr>),
    /// Passed by systemd ([`activation`]), bound already and kept open across restarts: read
    /// only once `ready()` (the view has a snapshot, from etcd or a state file), so that
    /// queries wait in them rather than get SERVFAIL; at most [`HOLD_AT_START`].
    Passed {
        sockets: Vec<Passed>,
        ready: Box<dyn Fn() -> bool + Send + Sync>,
    },
}

/// Serves `sockets` until `token` is cancelled; the addresses are logged (`udp`, `tcp`). An
/// address that cannot be bound is the error.
pub async fn serve(
    sockets: Sockets,
    threads: usize,
    handler: &Arc<Handler>,
    conns: &Arc<Connections>,
    tasks: &TaskTracker,
    token: &CancellationToken,
) -> std::io::Result<()> {
    let serving = Serving {
        handler: handler.clone(),
        conns: conns.clone(),
        tasks: tasks.clone(),
        token: token.clone(),
    };
    match sockets {
        Sockets::Bind(listen) => {
            for addr in listen {
                let (udp, tcp) = bind_pair(addr).await?;
                let bound = local(&udp)?;
                info!(udp = %bound, tcp = %tcp.local_addr()?, receive_loops = threads, "listening");
                let mut sockets = vec![udp];
                for _ in 1..threads {
                    sockets.push(udp::bind_udp(bound)?);
                }
                for udp in sockets {
                    serving.udp(udp, Holder::Us)?;
                }
                serving.tcp(tcp);
            }
        }
        Sockets::Passed { sockets, ready } => {
            // Everything that can fail happens here, at start; after the hold only the loops
            // start.
            let mut prepared = Vec::with_capacity(sockets.len());
            for s in sockets {
                prepared.push(prepare(s, threads)?);
            }
            tasks.spawn(async move {
                if !hold(&*ready, &serving.token).await {
                    return;
                }
                for p in prepared {
                    match p {
                        Prepared::Udp(sockets) => {
                            for u in sockets {
                                if let Err(error) = serving.udp(u, Holder::Supervisor) {
                                    warn!(%error, "a receive loop could not start");
                                }
                            }
                        }
                        Prepared::Tcp(t) => serving.tcp(t),
                    }
                }
            });
        }
    }
    Ok(())
}

/// Waits until `ready()` (asked every 5 ms), at most [`HOLD_AT_START`]; false when cancelled.
async fn hold(ready: &(dyn Fn() -> bool + Send + Sync), token: &CancellationToken) -> bool {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while !ready() {
        if start.elapsed() >= HOLD_AT_START {
            warn!(
                held_ms = start.elapsed().as_millis() as u64,
                "no snapshot yet (etcd unreachable, no state file): reading the passed sockets anyway"
            );
            return true;
        }
        tokio::select! {
            () = token.cancelled() => return false,
            _ = tick.tick() => {}
        }
    }
    info!(
        held_ms = start.elapsed().as_millis() as u64,
        "snapshot loaded: reading the passed sockets"
    );
    true
}

/// What every receive loop and accept loop is given.
struct Serving {
    handler: Arc<Handler>,
    conns: Arc<Connections>,
    tasks: TaskTracker,
    token: CancellationToken,
}

impl Serving {
    fn udp(&self, socket: socket2::Socket, holder: Holder) -> std::io::Result<()> {
        udp::serve_udp(
            socket,
            holder,
            self.handler.clone(),
            &self.tasks,
            self.token.clone(),
        )
    }

    fn tcp(&self, listener: TcpListener) {
        self.tasks.spawn(tcp::serve(
            listener,
            self.handler.clone(),
            self.conns.clone(),
            self.tasks.clone(),
            self.token.clone(),
        ));
    }
}

/// A passed socket made ready to serve.
enum Prepared {
    /// One descriptor per receive loop, all of the one socket.
    Udp(Vec<socket2::Socket>),
    Tcp(TcpListener),
}

/// Sizes a passed UDP socket's buffers and gives each of `threads` receive loops a descriptor
/// of it; makes a TCP one the runtime's. Logs each (`udp`/`tcp`, `passed`).
fn prepare(socket: Passed, threads: usize) -> std::io::Result<Prepared> {
    Ok(match socket {
        Passed::Udp(u) => {
            udp::size_buffers(&u);
            // Shared with the supervisor: the loops wake to look for shutdown (see `Holder`).
            u.set_read_timeout(Some(udp::WAKE))?;
            info!(udp = %local(&u)?, receive_loops = threads, passed = true, "listening");
            let mut all = Vec::with_capacity(threads);
            for _ in 1..threads {
                all.push(u.try_clone()?);
            }
            all.push(u);
            Prepared::Udp(all)
        }
        Passed::Tcp(t) => {
            info!(tcp = %t.local_addr()?, passed = true, "listening");
            t.set_nonblocking(true)?;
            Prepared::Tcp(TcpListener::from_std(t)?)
        }
    })
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
