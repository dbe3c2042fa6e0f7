//! `lodestar-registrator`: the sidecar that registers this host's Docker containers in etcd.
//!
//! `main` parses the command line into a checked [`config::Config`], sets up logging, and runs two
//! tasks joined by a bounded channel: [`docker::follow`] (containers and their events) and
//! [`reconcile::Reconciler`] (desired state -> leased etcd records), until SIGTERM or SIGINT.
//! `--dry-run` prints what it would register ([`dry_run`]); `record ...` writes, reads, lists
//! and removes records by name ([`record`]) instead.

mod config;
mod docker;
mod drain;
mod dry_run;
mod health;
mod http;
mod metrics;
mod reconcile;
mod record;
mod services;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Cli, Config};

fn main() -> ExitCode {
    // `--check [URL]`: the image's HEALTHCHECK, before any flag parsing.
    if let Some(code) = lodestar::runtime::check_mode() {
        return code;
    }
    // `ETCD_*` are still read where `LODESTAR_ETCD_*` are not set. Single-threaded still.
    for (ours, value) in
        lodestar::etcd::env_from_aliases(lodestar::etcd::ENV_NAMES, |k| std::env::var(k).ok())
    {
        std::env::set_var(ours, value);
    }
    let cli = Cli::parse();
    lodestar::runtime::init_logging(&cli.log_format);
    lodestar::runtime::main_with("lodestar-registrator", None, run(cli))
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    if let Some(config::Command::Record(cmd)) = cli.command.take() {
        return record::run(cmd).await;
    }
    let cfg = Config::from_cli(cli)?;
    if cfg.dry_run {
        let containers = docker::containers(&cfg.docker, cfg.docker_tls.as_deref())
            .await
            .with_context(|| format!("listing the containers of {}", cfg.docker))?;
        for line in dry_run::lines(&containers, &cfg.settings, &cfg.prefix, cfg.ip_given) {
            println!("{line}");
        }
        return Ok(());
    }
    let token = CancellationToken::new();
    let tasks = TaskTracker::new();
    let metrics = metrics::Metrics::new();
    let readiness = Arc::new(health::Readiness::default());
    tasks.spawn(docker::probe(
        readiness.clone(),
        cfg.docker.clone(),
        cfg.docker_tls.clone(),
        token.clone(),
    ));
    tasks.spawn(health::probe_etcd(
        readiness.clone(),
        cfg.etcd.clone(),
        token.clone(),
    ));
    if let Some(addr) = cfg.metrics {
        let routes = http::routes(metrics.clone(), readiness.clone());
        lodestar::runtime::serve_http(addr, routes, &token, &tasks)
            .await
            .with_context(|| format!("binding metrics on {addr}"))?;
    }
    info!(
        host_id = %cfg.settings.host_id, host_ip = %cfg.settings.host_ip, host_ip6 = ?cfg.settings.host_ip6, internal = cfg.settings.internal,
        domain = %cfg.settings.domain, docker = %cfg.docker, etcd = ?cfg.etcd.endpoints, ttl = cfg.ttl.as_secs(),
        "registrator starting"
    );
    // Bounded: when etcd is slow, Docker events wait instead of piling up.
    let (tx, rx) = mpsc::channel(256);
    let list_stopped = cfg.deregister == reconcile::Deregister::OnSuccess;
    tasks.spawn(docker::follow(
        cfg.docker.clone(),
        cfg.docker_tls.clone(),
        tx,
        cfg.resync,
        list_stopped,
        metrics.clone(),
        token.clone(),
    ));
    let host_id = cfg.settings.host_id.clone();
    let reconciler = reconcile::Reconciler {
        etcd: cfg.etcd,
        prefix: cfg.prefix,
        settings: cfg.settings,
        ttl: cfg.ttl,
        deregister: cfg.deregister,
        cleanup_on_exit: cfg.cleanup_on_exit,
        drain_grace: cfg.drain_grace,
        metrics,
        readiness,
    };
    // Not in `tasks`: its end with an error (another live registrator holds this host id) ends
    // the process.
    let mut reconciling = tokio::spawn(reconciler.run(rx, token.clone()));
    // systemd (`Type=notify`): running; /readyz says whether Docker and etcd answer.
    if let Err(error) = lodestar::runtime::sd_notify("READY=1") {
        warn!(%error, "could not tell systemd that the registrator is ready");
    }

    // 4 s: within the 5 s a supervisor (docker stop, systemd) usually waits before SIGKILL.
    let grace = Duration::from_secs(4);
    let fatal = tokio::select! {
        () = lodestar::runtime::shutdown_signal() => {
            info!("shutting down");
            None
        }
        r = &mut reconciling => Some(r),
    };
    token.cancel();
    tasks.close();
    let finished = async {
        let fatal = match fatal {
            Some(r) => r,
            None => reconciling.await,
        };
        tasks.wait().await;
        fatal
    };
    match tokio::time::timeout(grace, finished).await {
        Ok(Ok(Err(e))) => Err(anyhow::Error::new(e).context(format!("--host-id {host_id}"))),
        Ok(_) => Ok(()),
        Err(_) => {
            warn!(grace = ?grace, "some tasks did not stop in time");
            Ok(())
        }
    }
}
