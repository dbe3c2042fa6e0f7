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
