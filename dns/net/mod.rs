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
        threads,
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
            for s in &sockets {
                match s {
                    Passed::Udp(u) => {
                        udp::size_buffers(u);
                        info!(udp = %local(u)?, receive_loops = threads, passed = true, "listening");
                    }
                    Passed::Tcp(t) => info!(tcp = %t.local_addr()?, passed = true, "listening"),
                }
            }
            tasks.spawn(async move {
                if !hold(&*ready, &serving.token).await {
                    return;
                }
                for s in sockets {
                    if let Err(error) = serving.passed(s) {
                        warn!(%error, "a passed socket cannot be served");
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
    threads: usize,
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

    /// A passed socket: `threads` receive loops share a UDP one (each on a descriptor of its
    /// own); a TCP one gets its accept loop.
    fn passed(&self, socket: Passed) -> std::io::Result<()> {
        match socket {
            Passed::Udp(u) => {
                for _ in 1..self.threads {
                    self.udp(u.try_clone()?, Holder::Supervisor)?;
                }
                self.udp(u, Holder::Supervisor)
            }
            Passed::Tcp(t) => {
                t.set_nonblocking(true)?;
                self.tcp(TcpListener::from_std(t)?);
                Ok(())
            }
        }
    }
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
