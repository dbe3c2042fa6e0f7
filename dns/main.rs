//! `lodestar-dns`: answers the served domains from a watched etcd view, forwards the rest.
//!
//! Wiring only: the command line (and SkyDNS's) becomes a checked [`config::Config`], then the
//! tiers are built bottom up and joined — the view, the upstreams, the keys and zones, the
//! pipeline's [`pipeline::Handler`], the sockets ([`net`]: bound from `--listen`, or passed by
//! systemd) and the HTTP endpoints ([`http`]) — and everything runs until SIGTERM or SIGINT
//! cancels the one token; answers in progress are finished within 5 s.
//!
//! Tiers, imports one way down: main -> net, http, config -> pipeline -> authority, upstream,
//! dnssec -> proto, metrics.

mod authority;
mod config;
mod dnssec;
mod explain;
mod http;
mod metrics;
mod net;
mod pipeline;
mod proto;
mod upstream;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use lodestar::View;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{skydns, Cli, Config};
use crate::net::activation::Activated;
use crate::net::tcp::{Connections, TcpLimits};
use crate::net::Sockets;
use crate::pipeline::{Handler, Limits};
use crate::proto::edns::ForwardMark;
use crate::upstream::Forwarder;

fn main() -> ExitCode {
    // `--check [URL]`: the image's HEALTHCHECK, before any flag parsing.
    if let Some(code) = lodestar::runtime::check_mode() {
        return code;
    }
    // SkyDNS's flags and environment are understood too (see `config::skydns`).
    let (args, warnings) = match skydns::translate_args(std::env::args_os().collect()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("lodestar-dns: {e}");
            return ExitCode::from(2);
        }
    };
    for (ours, value) in skydns::env_aliases(|k| std::env::var(k).ok()) {
        // Single-threaded still: no runtime has started.
        std::env::set_var(ours, value);
    }
    let matches = Cli::command().get_matches_from(args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let given: HashSet<String> = matches
        .ids()
        .filter(|id| {
            let source = matches.value_source(id.as_str());
            matches!(
                source,
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|id| id.to_string())
        .collect();
    // SAFETY: single-threaded still (no runtime yet), as clearing LISTEN_* requires.
    let activated = match unsafe { net::activation::take() } {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lodestar-dns: {e}");
            return ExitCode::from(2);
        }
    };
    lodestar::runtime::init_logging(&cli.log_format);
    for w in warnings {
        warn!("{w}");
    }
    let threads = cli.threads;
    lodestar::runtime::main_with("lodestar-dns", threads, run(cli, given, activated))
}

async fn run(cli: Cli, given: HashSet<String>, activated: Activated) -> anyhow::Result<()> {
    let mut cli = skydns::from_etcd(cli, &given).await;
    if cli.systemd && activated.dns.is_empty() {
        anyhow::bail!(
            "--systemd: no DNS sockets were passed (LISTEN_FDS): start lodestar-dns.socket, or drop --systemd to bind --listen"
        );
    }
    if !activated.dns.is_empty() {
        // The passed sockets are where this server answers (and what a loop to itself is).
        let passed = activated.addresses();
        if given.contains("listen") {
            let same = cli.listen.iter().all(|l| passed.contains(l));
            if same {
                info!(listen = ?cli.listen, ?passed, "--listen not bound: systemd passed sockets");
            } else {
                warn!(listen = ?cli.listen, ?passed, "--listen not bound: systemd passed sockets on other addresses (lodestar-dns.socket decides where this server answers)");
            }
        }
        cli.listen = passed;
    }
    let mut cfg = Config::from_cli(cli)?;
    cfg.discover().await;
    let (token, tasks) = (CancellationToken::new(), TaskTracker::new());
    let view = Arc::new(View::new());
    let counters = pipeline::Counters::new();
    let upstream_metrics = upstream::UpstreamMetrics::default();

    let keys = Arc::new(dnssec::load(&cfg.dnssec_keys).context("--dnssec-key")?);
    let zones = authority::zones::load_logged(cfg.zones.as_deref(), &keys)
        .context("loading the static zones (--zones)")?;
    let served = |zone: &hickory_proto::rr::Name| {
        cfg.authority.domains.iter().any(|d| d.name == *zone) || zones.origins().any(|o| o == zone)
    };
    if let Some(key) = dnssec::unowned(&keys, served) {
        anyhow::bail!(
            "--dnssec-key: the key for {} (tag {}) belongs to no domain served (--domain) and no static zone",
            key.zone,
            key.tag
        );
    }
    let signers =
        dnssec::Signers::new(&keys).context("--dnssec-key: preparing the signing keys")?;
    // One mark for this process: on every question it forwards, and looked for on every
    // question it receives (a loop back to itself).
    let mark = ForwardMark::new();
    let forwarder = (!cfg.upstreams.is_empty()).then(|| {
        Forwarder::new(
            cfg.upstreams.clone(),
            mark,
            cfg.upstream_timeout,
            10_000,
            upstream_metrics.clone(),
        )
    });
    match &forwarder {
        Some(f) => {
            info!(upstreams = ?f.upstreams(), timeout_ms = cfg.upstream_timeout.as_millis() as u64, allow_recursion = ?cfg.allow_recursion, "forwarding other names")
        }
        None => info!("forwarding is off"),
    }
    let limits = Limits {
        workers: cfg.threads,
        admitted: 4096,
        forwards: 1024,
        log_queries: cfg.log_queries,
        upstream_timeout: cfg.upstream_timeout,
        ndots: cfg.ndots,
        stale_ttl: cfg.stale_ttl,
    };
    let (authority, allow) = (cfg.authority.clone(), cfg.allow_recursion.clone());
    let handler = Handler::new(
        view.clone(),
        mark,
        authority,
        zones,
        forwarder,
        allow,
        counters.clone(),
        limits,
    );
    let handler = Arc::new(handler.signing(Arc::new(signers)));
    let conns = Arc::new(Connections::new(TcpLimits::default()));
    if let Some(dir) = cfg.zones.clone() {
        let h = handler.clone();
        let replace = move |z| h.replace_zones(z);
        tasks.spawn(authority::zones::reload_on_hup(
            dir,
            keys.clone(),
            replace,
            token.clone(),
        ));
    }
    let domains: Vec<String> = cfg
        .authority
        .domains
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    // The last snapshot, before the sockets open: the first query finds it.
    // An empty LODESTAR_STATE_DIR (the registrator's image sets it so) is off, as no flag.
    if let Some(dir) = cfg.state_dir.as_ref().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--state-dir {}: creating it", dir.display()))?;
        let file = lodestar::view::StateFile::new(dir, cfg.prefix.as_str(), &domains);
        file.restore(&view);
        tasks.spawn(file.keep(view.clone(), token.clone()));
    }
    // systemd (`Type=notify`): ready once the first snapshot answers.
    let v = view.clone();
    lodestar::runtime::notify_ready_when(move || v.load().is_some(), &token, &tasks);

    let sockets = if activated.dns.is_empty() {
        Sockets::Bind(cfg.listen.clone())
    } else {
        let v = view.clone();
        Sockets::Passed {
            sockets: activated.dns,
            ready: Box::new(move || v.load().is_some()),
        }
    };
    net::serve(sockets, cfg.threads, &handler, &conns, &tasks, &token)
        .await
        .with_context(|| format!("binding {:?}", cfg.listen))?;
    if cfg.metrics.is_some() || activated.metrics.is_some() {
        let mut exposition = metrics::Builder::default();
        counters.register(&mut exposition);
        upstream_metrics.register(&mut exposition);
        http::gauges(&mut exposition, &view, &handler, &conns);
        let explainer =
            explain::Explainer::new(handler.clone(), view.clone(), &cfg.etcd, cfg.prefix.clone());
        let routes = http::routes(Arc::new(exposition.build()), view.clone(), explainer);
        match (activated.metrics, cfg.metrics) {
            (Some(listener), _) => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                lodestar::runtime::serve_http_on(listener, routes, &token, &tasks)
                    .context("serving metrics on the passed socket")?;
            }
            (None, Some(addr)) => lodestar::runtime::serve_http(addr, routes, &token, &tasks)
                .await
                .with_context(|| format!("binding metrics on {addr}"))?,
            (None, None) => {}
        }
    }
    info!(?domains, etcd = ?cfg.etcd.endpoints, prefix = cfg.prefix.as_str(), "serving");
    let (etcd, prefix) = (cfg.etcd.clone(), cfg.prefix.clone());
    tasks.spawn(lodestar::view::follow(
        view,
        etcd,
        prefix,
        cfg.load_page,
        token.clone(),
    ));

    // 5 s: within the 5 s a supervisor (docker stop, systemd) usually waits before SIGKILL.
    lodestar::runtime::run_until_shutdown(&token, &tasks, Duration::from_secs(5)).await;
    Ok(())
}
