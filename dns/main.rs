//! `lodestar-dns`: answers the served domains from a watched etcd view, forwards the rest.
//!
//! `main` parses the command line into a checked [`config::Config`], sets up logging, binds the
//! sockets and wires the shutdown token; the work is in the modules beside it.

mod authority;
mod config;
mod dnssec;
mod http;
mod listen;
mod metrics;
mod pipeline;
mod proto;
mod skydns;
mod tcp;
mod upstream;

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use hickory_proto::rr::Name;
use lodestar::View;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Cli, Config};
use crate::pipeline::{Handler, Limits};
use crate::proto::edns::ForwardMark;
use crate::tcp::{Connections, TcpLimits};
use crate::upstream::Forwarder;

fn main() -> ExitCode {
    // `--check [URL]`: the image's HEALTHCHECK, before any flag parsing.
    if let Some(code) = lodestar::runtime::check_mode() {
        return code;
    }
    // SkyDNS's flags and environment are understood too (see `skydns`).
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
            matches!(
                matches.value_source(id.as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|id| id.to_string())
        .collect();
    lodestar::runtime::init_logging(&cli.log_format);
    for w in warnings {
        warn!("{w}");
    }
    let threads = cli.threads;
    lodestar::runtime::main_with("lodestar-dns", threads, run(cli, given))
}

/// Fills what flags and environment left unset from SkyDNS's settings in etcd
/// (`<prefix>/config`), when etcd answers within a few seconds; otherwise goes on without.
async fn skydns_config(mut cli: Cli, given: &HashSet<String>) -> Cli {
    let Ok(etcd) = lodestar::etcd::EtcdConfig::from_parts(
        cli.etcd.clone(),
        cli.etcd_user.clone(),
        cli.etcd_password.clone(),
        cli.etcd_ca.clone(),
        cli.etcd_cert.clone(),
        cli.etcd_key.clone(),
    ) else {
        return cli;
    };
    let key = format!("{}/config", cli.prefix.trim_end_matches('/'));
    let read = async {
        let mut client = etcd.connect().await.ok()?;
        let resp = client.get(key.as_str(), None).await.ok()?;
        resp.kvs().first().map(|kv| kv.value().to_vec())
    };
    let Ok(Some(json)) = tokio::time::timeout(Duration::from_secs(5), read).await else {
        return cli;
    };
    match skydns::SkydnsConfig::parse(&json) {
        Ok(c) => {
            let applied = c.apply(&mut cli, |id| given.contains(id));
            if !applied.is_empty() {
                info!(key, ?applied, "settings from SkyDNS's config in etcd");
            }
        }
        Err(error) => warn!(key, %error, "SkyDNS's config in etcd does not parse; ignored"),
    }
    cli
}

/// SIGHUP (and once a day when keys sign them): the zone files are read again; a set that does
/// not load leaves the one in service.
async fn reload_zones_on_hup(
    dir: std::path::PathBuf,
    keys: Arc<Vec<dnssec::ZoneKey>>,
    handler: Arc<Handler>,
    token: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP: zone files will not be reloaded");
        return;
    };
    // Signed static zones are signed again once a day (their signatures last a week).
    let mut resign = tokio::time::interval(dnssec::sign::REUSE);
    resign.tick().await;
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
            _ = resign.tick(), if !keys.is_empty() => {},
        }
        match authority::zones::StaticZones::load_dir(&dir, &keys) {
            Ok(z) => {
                let origins: Vec<String> = z.origins().map(|o| o.to_string()).collect();
                info!(?origins, "static zones reloaded");
                handler.replace_zones(z);
            }
            Err(error) => warn!(%error, "static zones not reloaded: the ones in service stay"),
        }
    }
}

/// The `--dnssec-key` pairs, each logged with the DS record its parent zone should publish.
fn load_keys(cfg: &config::Config) -> anyhow::Result<Vec<dnssec::ZoneKey>> {
    let mut out = Vec::new();
    for base in &cfg.dnssec_keys {
        let key = dnssec::ZoneKey::load(base).context("--dnssec-key")?;
        let ds = key.ds().map(|ds| ds.to_string()).unwrap_or_default();
        info!(
            zone = %key.zone,
            tag = key.tag,
            algorithm = %key.algorithm(),
            ksk = key.is_ksk(),
            ds = %format!("{} IN DS {ds}", key.zone),
            "DNSSEC signing key loaded"
        );
        out.push(key);
    }
    Ok(out)
}

async fn run(cli: Cli, given: HashSet<String>) -> anyhow::Result<()> {
    let cli = skydns_config(cli, &given).await;
    let mut cfg = Config::from_cli(cli)?;
    if cfg.discover {
        // SkyDNS's -discover: the endpoints given find the cluster's other members.
        match tokio::time::timeout(Duration::from_secs(5), cfg.etcd.member_urls()).await {
            Ok(Ok(urls)) => {
                let added = cfg.etcd.add_endpoints(urls);
                info!(?added, endpoints = ?cfg.etcd.endpoints, "etcd members discovered");
            }
            Ok(Err(error)) => {
                warn!(%error, "could not list etcd's members: using the endpoints given")
            }
            Err(_) => warn!("etcd did not list its members within 5 s: using the endpoints given"),
        }
    }
    let token = CancellationToken::new();
    let tasks = TaskTracker::new();
    let view = Arc::new(View::new());
    let counters = pipeline::Counters::new();
    let upstream_metrics = upstream::UpstreamMetrics::default();

    let keys = Arc::new(load_keys(&cfg)?);
    let zones = match &cfg.zones {
        Some(dir) => authority::zones::StaticZones::load_dir(dir, &keys)
            .with_context(|| format!("loading zones from {}", dir.display()))?,
        None => authority::zones::StaticZones::default(),
    };
    for origin in zones.origins() {
        info!(zone = %origin, "serving static zone");
    }
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
    };
    for origin in zones.origins() {
        if !keys.iter().any(|k| k.zone == *origin) {
            continue;
        }
        info!(zone = %origin, "static zone signed (NSEC chain)");
    }
    let static_origins: Vec<Name> = zones.origins().cloned().collect();
    for key in keys.iter() {
        let served = cfg.authority.domains.iter().any(|d| d.name == key.zone)
            || static_origins.contains(&key.zone);
        if !served {
            anyhow::bail!(
                "--dnssec-key: the key for {} (tag {}) belongs to no domain served (--domain) \
                 and no static zone",
                key.zone,
                key.tag
            );
        }
    }
    let signers =
        Arc::new(dnssec::Signers::new(&keys).context("--dnssec-key: preparing the signing keys")?);
    let handler = Arc::new(
        Handler::new(
            view.clone(),
            mark,
            cfg.authority.clone(),
            zones,
            forwarder,
            cfg.allow_recursion.clone(),
            counters.clone(),
            limits,
        )
        .signing(signers),
    );
    let conns = Arc::new(Connections::new(TcpLimits::default()));
    let mut exposition = metrics::Builder::default();
    counters.register(&mut exposition);
    upstream_metrics.register(&mut exposition);
    http::gauges(&mut exposition, &view, &handler, &conns);
    let exposition = Arc::new(exposition.build());
    if let Some(dir) = cfg.zones.clone() {
        tasks.spawn(reload_zones_on_hup(
            dir,
            keys.clone(),
            handler.clone(),
            token.clone(),
        ));
    }
    // systemd (`Type=notify`): ready once the first snapshot answers.
    {
        let (view, token) = (view.clone(), token.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if view.load().is_some() {
                    if let Err(error) = lodestar::runtime::sd_notify("READY=1") {
                        warn!(%error, "could not tell systemd that the server is ready");
                    }
                    return;
                }
            }
        });
    }

    for addr in &cfg.listen {
        let (udp, tcp) = bind_pair(*addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = udp.local_addr()?;
        info!(udp = %bound, tcp = %tcp.local_addr()?, receive_loops = cfg.threads, "listening");
        let mut sockets = vec![udp];
        for _ in 1..cfg.threads {
            sockets.push(listen::bind_udp(bound).with_context(|| format!("binding {bound}"))?);
        }
        for udp in sockets {
            tasks.spawn(listen::serve_udp(
                Arc::new(udp),
                handler.clone(),
                tasks.clone(),
                token.clone(),
            ));
        }
        tasks.spawn(tcp::serve(
            tcp,
            handler.clone(),
            conns.clone(),
            tasks.clone(),
            token.clone(),
        ));
    }
    if let Some(addr) = cfg.metrics {
        let routes = http::routes(exposition, view.clone());
        lodestar::runtime::serve_http(addr, routes, &token, &tasks)
            .await
            .with_context(|| format!("binding metrics on {addr}"))?;
    }
    info!(domains = ?cfg.authority.domains.iter().map(|d| d.name.to_string()).collect::<Vec<_>>(), etcd = ?cfg.etcd.endpoints, prefix = cfg.prefix.as_str(), "serving");
    tasks.spawn(lodestar::view::follow(
        view,
        cfg.etcd.clone(),
        cfg.prefix.clone(),
        cfg.load_page,
        token.clone(),
    ));

    // 5 s: within the 5 s a supervisor (docker stop, systemd) usually waits before SIGKILL.
    lodestar::runtime::run_until_shutdown(&token, &tasks, Duration::from_secs(5)).await;
    Ok(())
}

/// Binds UDP and TCP on the same address; with port 0, TCP takes the port UDP was given.
async fn bind_pair(addr: std::net::SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    for _ in 0..20 {
        let udp = listen::bind_udp(addr)?;
        let bound = udp.local_addr()?;
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
