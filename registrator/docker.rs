//! The Docker side: list the containers, then follow their events, over bollard.
//!
//! [`follow`] connects (negotiating the API version, so old and new engines both work), subscribes
//! to container events from the last one seen, lists every container, and then inspects each
//! container an event names, in the order the engine sends them, sending what it learns to the
//! reconciler over a bounded channel. When the connection breaks it retries with backoff (capped at
//! 2 s) and catches up: events since the last one seen, then a full listing. It never exits on a
//! fault. A container a `health_status` event names is inspected again [`HEALTH_RECHECK`] later
//! (Podman announces a new status before storing it). [`from_inspect`] turns Docker's inspect answer into the plain [`Container`] (pure).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::drain;
use crate::metrics::Metrics;
use crate::services::{Container, Health, Proto, Published, RunState};

/// What the Docker side tells the reconciler.
#[derive(Debug)]
pub enum DockerUpdate {
    /// Every container there is now (after a (re)connect or a periodic resync).
    Listing(Vec<Container>),
    /// One container changed.
    Changed(Box<Container>),
    /// A container is gone (destroyed).
    Gone(String),
    /// The engine started stopping a running container (sent after its [`DockerUpdate::Changed`]):
    /// its records are withdrawn now ([`crate::drain`]).
    Stopping(String),
}

/// Container events worth an inspect; health checks' `exec_*` events are not.
const ACTIONS: &[&str] = &[
    "start",
    "restart",
    "die",
    "stop",
    "kill",
    "destroy",
    "pause",
    "unpause",
    "health_status",
    "rename",
    // Podman's name for `destroy`.
    "remove",
    "oom",
];

/// Why a Docker session ended.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// bollard failed (connection refused, broken stream, bad answer).
    #[error(transparent)]
    Docker(#[from] bollard::errors::Error),
    /// The event stream ended.
    #[error("the Docker event stream ended")]
    EventsEnded,
    /// The reconciler is gone.
    #[error("the reconciler stopped")]
    Closed,
}

/// Connects to `host` (`unix:///var/run/docker.sock`, `tcp://127.0.0.1:2375`, or a bare path);
/// over TLS with the certificates of `tls` (ca.pem, cert.pem, key.pem) when given.
pub async fn connect(host: &str, tls: Option<&Path>) -> Result<Docker, bollard::errors::Error> {
    let docker = if let Some(dir) = tls {
        Docker::connect_with_ssl(
            host,
            &dir.join("key.pem"),
            &dir.join("cert.pem"),
            &dir.join("ca.pem"),
            120,
            bollard::API_DEFAULT_VERSION,
        )?
    } else if host.starts_with('/') {
        Docker::connect_with_unix(host, 120, bollard::API_DEFAULT_VERSION)?
    } else {
        Docker::connect_with_host(host)?
    };
    // Engines speak older API versions (Debian's: 1.41); ask for one both sides know.
    let docker = docker.negotiate_version().await?;
    docker.ping().await?;
    Ok(docker)
}

/// Follows the engine at `host` until `token` is cancelled; never returns early.
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    host: String,
    tls: Option<PathBuf>,
    tx: mpsc::Sender<DockerUpdate>,
    resync: Duration,
    list_stopped: bool,
    metrics: std::sync::Arc<Metrics>,
    token: CancellationToken,
) {
    let mut since: Option<i64> = None;
    let mut backoff = lodestar::runtime::reconnect_backoff();
    let mut failures = 0u32;
    loop {
        let r = tokio::select! {
            () = token.cancelled() => return,
            r = session(&host, tls.as_deref(), &tx, resync, list_stopped, &mut since, &mut failures, &token) => r,
        };
        match r {
            Ok(()) | Err(DockerError::Closed) => return,
            Err(error) => {
                metrics.docker_errors.inc();
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(%error, docker = %host, failures, "Docker unavailable, retrying; keeping the registered state");
                }
            }
        }
        if failures == 0 {
            backoff = lodestar::runtime::reconnect_backoff();
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(2));
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    host: &str,
    tls: Option<&Path>,
    tx: &mpsc::Sender<DockerUpdate>,
    resync: Duration,
    list_stopped: bool,
    since: &mut Option<i64>,
    failures: &mut u32,
    token: &CancellationToken,
) -> Result<(), DockerError> {
    let docker = connect(host, tls).await?;
    info!(docker = %host, tls = tls.is_some(), api = %docker.client_version(), "connected to Docker");
    *failures = 0;
    // Subscribe from the last event seen (or from now): what happens while listing is not lost.
    let start = since.unwrap_or_else(now_secs);
    // Container events, and networks connected to or disconnected from a container.
    let filters: HashMap<String, Vec<String>> = [(
        "type".to_string(),
        vec!["container".to_string(), "network".to_string()],
    )]
    .into();
    let opts = EventsOptions {
        since: Some(start.to_string()),
        until: None,
        filters: Some(filters),
    };
    let mut events = docker.events(Some(opts));
    *since = Some(start);
    list(&docker, tx, list_stopped).await?;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
    // Containers to inspect once more a moment after a health event: Podman (4.3) sends
    // `health_status` before it stores the new status, so the inspect the event asks for can
    // still see the old one. At most one entry per container.
    let mut rechecks: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
    loop {
        let next_recheck = rechecks.values().min().copied();
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            _ = tick.tick() => list(&docker, tx, list_stopped).await?,
            () = sleep_until_some(next_recheck) => {
                let now = tokio::time::Instant::now();
                let due: Vec<String> = rechecks.iter().filter(|(_, t)| **t <= now).map(|(id, _)| id.clone()).collect();
                for id in due {
                    rechecks.remove(&id);
                    let update = match inspect(&docker, &id).await? {
                        Some(c) => DockerUpdate::Changed(Box::new(c)),
                        None => DockerUpdate::Gone(id),
                    };
                    tx.send(update).await.map_err(|_| DockerError::Closed)?;
                }
            }
            ev = events.next() => {
                let ev = ev.ok_or(DockerError::EventsEnded)??;
                if let Some(t) = ev.time {
                    *since = Some(t);
                }
                let action = ev.action.unwrap_or_default();
                let network = ev.typ == Some(bollard::models::EventMessageTypeEnum::NETWORK);
                let id = if network {
                    // The container is an attribute of a network event.
                    if !matches!(action.as_str(), "connect" | "disconnect") {
                        continue;
                    }
                    ev.actor.as_ref().and_then(|a| a.attributes.as_ref()).and_then(|at| at.get("container").cloned())
                } else {
                    if !ACTIONS.iter().any(|a| action.starts_with(a)) {
                        continue;
                    }
                    ev.actor.as_ref().and_then(|a| a.id.clone())
                };
                let Some(id) = id else { continue };
                let signal = (!network).then(|| ev_signal(&ev.actor)).flatten();
                debug!(container_id = %id, action, signal, "container event");
                if action.starts_with("health_status") {
                    rechecks.insert(id.clone(), tokio::time::Instant::now() + HEALTH_RECHECK);
                }
                let update = match inspect(&docker, &id).await? {
                    Some(c) => {
                        let stopping = !network
                            && c.state == RunState::Running
                            && drain::starts_drain(&action, signal.as_deref(), c.stop_signal.as_deref());
                        tx.send(DockerUpdate::Changed(Box::new(c))).await.map_err(|_| DockerError::Closed)?;
                        if !stopping {
                            continue;
                        }
                        DockerUpdate::Stopping(id)
                    }
                    None => DockerUpdate::Gone(id),
                };
                tx.send(update).await.map_err(|_| DockerError::Closed)?;
            }
        }
    }
}

/// How long after a `health_status` event its container is inspected once more.
const HEALTH_RECHECK: Duration = Duration::from_millis(500);

/// Sleeps until `at`, or for ever when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The signal a `kill` event names (the `signal` attribute: `15`, or `SIGTERM` on some engines).
fn ev_signal(actor: &Option<bollard::models::EventActor>) -> Option<String> {
    actor.as_ref()?.attributes.as_ref()?.get("signal").cloned()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

async fn list(
    docker: &Docker,
    tx: &mpsc::Sender<DockerUpdate>,
    all: bool,
) -> Result<(), DockerError> {
    let out = listing(docker, all).await?;
    debug!(containers = out.len(), "listed containers");
    tx.send(DockerUpdate::Listing(out))
        .await
        .map_err(|_| DockerError::Closed)
}

/// Every container of the engine at `host` now, once (`--dry-run`).
pub async fn containers(host: &str, tls: Option<&Path>) -> Result<Vec<Container>, DockerError> {
    let docker = connect(host, tls).await?;
    listing(&docker, false).await
}

async fn listing(docker: &Docker, all: bool) -> Result<Vec<Container>, DockerError> {
    let summaries = docker
        .list_containers(Some(ListContainersOptions {
            all,
            ..Default::default()
        }))
        .await?;
    let mut out = Vec::with_capacity(summaries.len());
    for s in summaries {
        let Some(id) = s.id else { continue };
        // A container can vanish between the listing and its inspect: then it is just not there.
        if let Some(c) = inspect(docker, &id).await? {
            out.push(c);
        }
    }
    Ok(out)
}

async fn inspect(docker: &Docker, id: &str) -> Result<Option<Container>, DockerError> {
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(r) => Ok(Some(from_inspect(r))),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Docker's inspect answer as a plain [`Container`]. Anything missing or odd in it (it comes from
/// the engine) becomes an empty value, never a panic.
pub fn from_inspect(r: ContainerInspectResponse) -> Container {
    let config = r.config.unwrap_or_default();
    let state = r.state.unwrap_or_default();
    let net = r.network_settings.unwrap_or_default();
    let run = if state.paused == Some(true) {
        RunState::Paused
    } else if state.running == Some(true) {
        RunState::Running
    } else {
        RunState::Stopped(state.exit_code)
    };
    let health = match state.health.and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        _ => Health::None,
    };
    let mut published = Vec::new();
    for (spec, bindings) in net.ports.unwrap_or_default() {
        let Some((port, proto)) = parse_port_spec(&spec) else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let host_ip = b
                .host_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            published.push(Published {
                port,
                proto,
                host_ip,
                host_port,
            });
        }
    }
    published.sort_by_key(|p| (p.port, p.proto, p.host_port));
    let exposed = config
        .exposed_ports
        .unwrap_or_default()
        .iter()
        .filter_map(|s| parse_port_spec(s))
        .collect();
    let mut configured: Vec<(u16, Proto)> = r
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .map(|b| b.keys().filter_map(|spec| parse_port_spec(spec)).collect())
        .unwrap_or_default();
    configured.sort();
    configured.dedup();
    let networks = net
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| {
            let v4 = ep.ip_address.as_deref().and_then(|a| a.parse().ok());
            let v6 = ep
                .global_ipv6_address
                .as_deref()
                .and_then(|a| a.parse().ok());
            (name, (v4, v6))
        })
        .collect::<BTreeMap<_, _>>();
    Container {
        id: r.id.unwrap_or_default(),
        name: r
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        state: run,
        health,
        published,
        exposed,
        configured,
        networks,
        stop_signal: config.stop_signal.filter(|s| !s.is_empty()),
        stop_timeout: config.stop_timeout,
        network_mode: r
            .host_config
            .and_then(|h| h.network_mode)
            .unwrap_or_default(),
    }
}

/// `6379/tcp` -> `(6379, Tcp)`; `53/udp` -> `(53, Udp)`; SCTP counts as TCP.
fn parse_port_spec(spec: &str) -> Option<(u16, Proto)> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = if proto.eq_ignore_ascii_case("udp") {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    Some((port.parse().ok()?, proto))
}

/// Probes the engine at `host` (`ping` on the connection it has, else a new one) every
/// [`crate::health::PROBE_EVERY`], each within two seconds, until `token` is cancelled; the
/// answers go to `state`.
pub async fn probe(
    state: std::sync::Arc<crate::health::Readiness>,
    host: String,
    tls: Option<PathBuf>,
    token: CancellationToken,
) {
    let mut docker: Option<Docker> = None;
    let mut tick = tokio::time::interval(crate::health::PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = tokio::time::timeout(crate::health::PROBE_TIMEOUT, async {
            if docker.is_none() {
                docker = Some(
                    connect(&host, tls.as_deref())
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            match &docker {
                Some(d) => d.ping().await.map(|_| ()).map_err(|e| e.to_string()),
                None => Err("not connected".to_string()),
            }
        })
        .await
        .unwrap_or_else(|_| Err("no answer within 2 s".into()));
        if result.is_err() {
            docker = None;
        }
        debug!(?result, "Docker probe");
        state.docker.set(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_json_becomes_a_container() {
        let json = r#"{
            "Id": "abc123", "Name": "/web",
            "State": {"Running": true, "Paused": false, "ExitCode": 0, "Health": {"Status": "healthy"}},
            "Config": {"Image": "redis:7", "Env": ["SERVICE_NAME=cache", "PATH=/bin"],
                       "Labels": {"SERVICE_ID": "r1"}, "ExposedPorts": {"6379/tcp": {}, "53/udp": {}}},
            "NetworkSettings": {
                "Ports": {"6379/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}, {"HostIp": "::", "HostPort": "32768"}],
                          "53/udp": null, "bad/tcp": [{"HostPort": "x"}]},
                "Networks": {"bridge": {"IPAddress": "172.17.0.2", "GlobalIPv6Address": ""}}
            }
        }"#;
        let r: ContainerInspectResponse = serde_json::from_str(json).unwrap();
        let c = from_inspect(r);
        assert_eq!(c.name, "web");
        assert_eq!(c.state, RunState::Running);
        assert_eq!(c.health, Health::Healthy);
        assert_eq!(c.labels.get("SERVICE_ID").map(String::as_str), Some("r1"));
        assert_eq!(c.published.len(), 2);
        assert_eq!(c.published[0].host_port, 32768);
        let mut exposed = c.exposed.clone();
        exposed.sort();
        assert_eq!(exposed, [(53, Proto::Udp), (6379, Proto::Tcp)]);
        assert_eq!(c.networks["bridge"].0, Some("172.17.0.2".parse().unwrap()));
        assert_eq!(c.networks["bridge"].1, None);
    }

    #[test]
    fn an_empty_inspect_is_harmless() {
        let c = from_inspect(ContainerInspectResponse::default());
        assert_eq!(c.state, RunState::Stopped(None));
        assert!(c.published.is_empty());
    }

    #[test]
    fn port_specs() {
        assert_eq!(parse_port_spec("80/tcp"), Some((80, Proto::Tcp)));
        assert_eq!(parse_port_spec("53/UDP"), Some((53, Proto::Udp)));
        assert_eq!(parse_port_spec("9/sctp"), Some((9, Proto::Tcp)));
        assert_eq!(parse_port_spec("x/tcp"), None);
    }
}
