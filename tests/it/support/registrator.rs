//! The real `lodestar-registrator` binary, its logs collected; what it registered, as DNS
//! answers; and a whole stack (etcd, a DNS server, a registrator) for one host.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use super::common::eventually;
use super::dns::Dns;
use super::docker::docker_ready;
use super::etcd::Etcd;
use super::process::{spawn_logged, Proc};

/// The real `lodestar-registrator` binary, its logs collected.
pub struct Registrator {
    proc: Proc,
    pub metrics: Option<SocketAddr>,
}

impl std::ops::Deref for Registrator {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Registrator {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Registrator {
    /// Starts it on `etcd` for `webapp.dev` as host `host_id`, with `extra` flags.
    pub fn start(etcd: &Etcd, host_id: &str, extra: &[&str]) -> Registrator {
        Registrator::start_endpoint(&etcd.endpoint(), host_id, extra)
    }

    /// Starts it on the etcd at `endpoint` for `webapp.dev` as host `host_id`, with `extra` flags.
    pub fn start_endpoint(endpoint: &str, host_id: &str, extra: &[&str]) -> Registrator {
        docker_ready();
        let mut args: Vec<String> = [
            "--etcd",
            endpoint,
            "--domain",
            "webapp.dev",
            "--host-id",
            host_id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !extra.contains(&"--ip") && !extra.contains(&"--internal") {
            args.extend(["--ip".to_string(), "10.99.0.1".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, logs, rx) =
            spawn_logged(env!("CARGO_BIN_EXE_lodestar-registrator"), &args, &[]);
        let mut metrics = None;
        if extra.contains(&"--metrics") {
            let deadline = Instant::now() + Duration::from_secs(20);
            while metrics.is_none() {
                let v = rx
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .expect("registrator started");
                metrics = v
                    .get("metrics")
                    .and_then(|a| a.as_str())
                    .and_then(|a| a.parse().ok());
            }
        }
        Registrator {
            proc: Proc::new(child, logs),
            metrics,
        }
    }
}

/// The A/AAAA/SRV data answered for `name`, empty when none.
pub async fn srv(dns: &Dns, name: &str) -> Vec<String> {
    dns.answers(name, RecordType::SRV).await
}

/// Waits until `name` answers SRV with exactly `want`.
pub async fn until_srv(dns: &Dns, name: &str, want: &[&str], deadline: Duration) {
    let what = format!("{name} SRV = {want:?}");
    eventually(deadline, &what, || async {
        (srv(dns, name).await == want).then_some(())
    })
    .await;
}

/// etcd, a DNS server over it (ready) and a registrator for host `host` with `extra` flags.
pub async fn stack(host: &str, extra: &[&str]) -> (Etcd, Dns, Registrator) {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let reg = Registrator::start(&etcd, host, extra);
    (etcd, dns, reg)
}
