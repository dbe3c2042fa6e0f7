//! What every long-running Lodestar process shares: logging set-up, the shutdown signal, and the
//! backoff between reconnects. Used by both binaries' `main` and by the library's own loops.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Backoff between reconnects: 100 ms doubling up to 2 s, with jitter, forever.
pub fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Sets up the tracing subscriber on stderr: `RUST_LOG`, else `info`; `json` for one JSON object
/// per line, anything else for text.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,hickory_server=warn,h2=warn,tower=warn,bollard=warn",
        )
    });
    // Colour only for a person at a terminal, never in a file or a journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGTERM (`docker stop`, systemd) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// A binary's `main`: runs `run` on a multi-threaded runtime (`threads` workers, default one per
/// CPU); an error is printed once, plainly, as `name: error: cause: cause`, and the exit code is 1.
/// Blocking work still running when `run` returns gets one second, never more.
pub fn main_with(
    name: &str,
    threads: Option<usize>,
    run: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads.filter(|n| *n > 0) {
        builder.worker_threads(n);
    }
    let result = builder
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))
        .and_then(|rt| {
            let result = rt.block_on(run);
            rt.shutdown_timeout(Duration::from_secs(1));
            result
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Binds `addr` and serves `routes` on it (`/metrics`, `/healthz`, `/readyz`) until `token` is
/// cancelled, as a task of `tasks`; the bound address is logged (`metrics`), for tests that ask
/// for port 0. Both binaries' metrics listeners.
pub async fn serve_http(
    addr: std::net::SocketAddr,
    routes: axum::Router,
    token: &CancellationToken,
    tasks: &TaskTracker,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_http_on(listener, routes, token, tasks)
}

/// [`serve_http`] on a listener bound already (one passed by systemd, say).
pub fn serve_http_on(
    listener: tokio::net::TcpListener,
    routes: axum::Router,
    token: &CancellationToken,
    tasks: &TaskTracker,
) -> std::io::Result<()> {
    tracing::info!(metrics = %listener.local_addr()?, "serving metrics");
    let token = token.clone();
    tasks.spawn(async move {
        let served = axum::serve(listener, routes)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "metrics server stopped");
        }
    });
    Ok(())
}

/// Waits for SIGTERM or SIGINT, then cancels `token` and gives `tasks` up to `grace` to finish.
pub async fn run_until_shutdown(token: &CancellationToken, tasks: &TaskTracker, grace: Duration) {
    shutdown_signal().await;
    tracing::info!("shutting down");
    token.cancel();
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(grace = ?grace, "some tasks did not stop in time");
    }
}

/// `BINARY --check [URL]`: the health check a container image runs (`HEALTHCHECK`), with the
/// binary itself since a `FROM scratch` image has no curl. GETs `URL` (else `LODESTAR_CHECK_URL`,
/// an `http://HOST:PORT/PATH` on this machine) within 2 s: exit 0 on 200, 1 otherwise. `None`
/// when the command line is not a check.
pub fn check_mode() -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--check") {
        return None;
    }
    let url = args
        .next()
        .or_else(|| std::env::var("LODESTAR_CHECK_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:9153/healthz".to_string());
    Some(match http_status(&url) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("{url}: HTTP {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    })
}

/// The status code of a plain HTTP/1.0 GET of `url` (`http://HOST:PORT/PATH`), within 2 s.
fn http_status(url: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: std::net::SocketAddr = authority
        .parse()
        .map_err(|_| bad("the host must be IP:PORT"))?;
    let limit = Duration::from_secs(2);
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("not an HTTP answer"))
}

/// Tells systemd (`Type=notify`) that the service is ready as soon as `ready()` says so (asked
/// every 20 ms), as a task of `tasks`; stops with `token`.
pub fn notify_ready_when(
    ready: impl Fn() -> bool + Send + 'static,
    token: &CancellationToken,
    tasks: &TaskTracker,
) {
    let token = token.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            if ready() {
                if let Err(error) = sd_notify("READY=1") {
                    tracing::warn!(%error, "could not tell systemd that the service is ready");
                }
                return;
            }
        }
    });
}

/// Tells systemd (`Type=notify`) something about this service, e.g. `READY=1`: one datagram to
/// `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Nothing when the variable is
/// not set (not under systemd); an error only when it is set and the datagram cannot be sent.
#[cfg(unix)]
pub fn sd_notify(state: &str) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    let path = path.to_string_lossy().to_string();
    if let Some(name) = path.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        return Err(std::io::Error::other(format!(
            "abstract socket {name} unsupported"
        )));
    }
    socket.send_to(state.as_bytes(), path)?;
    Ok(())
}

/// This machine's hostname (`/proc/sys/kernel/hostname`), `None` when unknown or empty: the
/// registrator's default host id and the DNS server's default CHAOS id.
pub fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}
