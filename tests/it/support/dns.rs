//! The real `lodestar-dns` binary on a free loopback port, its logs collected, and waiting for
//! what it answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use super::client::{data, http_get, query};
use super::common::eventually;
use super::etcd::Etcd;
use super::process::{spawn_logged, Proc};

/// The real `lodestar-dns` binary on a free port, its logs collected.
pub struct Dns {
    proc: Proc,
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

impl Dns {
    /// The data of the `t` answers to `name` (sorted text), empty when none or no answer.
    pub async fn answers(&self, name: &str, t: RecordType) -> Vec<String> {
        query(self.addr, name, t)
            .await
            .map(|m| data(&m))
            .unwrap_or_default()
    }

    /// The A answers to `name`.
    pub async fn a(&self, name: &str) -> Vec<String> {
        self.answers(name, RecordType::A).await
    }

    /// Whether `name` is answered NXDOMAIN.
    pub async fn is_nxdomain(&self, name: &str) -> bool {
        query(self.addr, name, RecordType::A)
            .await
            .is_ok_and(|m| m.metadata.response_code == hickory_proto::op::ResponseCode::NXDomain)
    }

    /// Starts `lodestar-dns` with `args` plus `--listen 127.0.0.1:0`.
    pub fn start(args: &[&str]) -> Dns {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(args);
        Dns::start_with(&all, &[], 1)
    }

    /// Starts `lodestar-dns` with exactly `args` and `env`, and waits for `listeners` bound addresses.
    pub fn start_with(args: &[&str], env: &[(&str, &str)], listeners: usize) -> Dns {
        let all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, logs, rx) = spawn_logged(env!("CARGO_BIN_EXE_lodestar-dns"), &all, env);
        let mut addrs = Vec::new();
        let mut metrics = None;
        let wants_metrics = args.contains(&"--metrics");
        let deadline = Instant::now() + Duration::from_secs(20);
        while addrs.len() < listeners || (wants_metrics && metrics.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "lodestar-dns did not start: {:?}",
                    logs.lock().map(|l| l.clone())
                )
            });
            if let Some(a) = v
                .get("udp")
                .and_then(|a| a.as_str())
                .and_then(|a| a.parse().ok())
            {
                addrs.push(a);
            }
            if let Some(a) = v.get("metrics").and_then(|a| a.as_str()) {
                metrics = a.parse().ok();
            }
        }
        Dns {
            proc: Proc::new(child, logs),
            addr: addrs[0],
            addrs,
            metrics,
        }
    }

    /// Starts it for `domain` on `etcd`, forwarding to `upstream` when given (else `--no-forward`).
    pub fn for_etcd(etcd: &Etcd, upstream: Option<SocketAddr>, extra: &[&str]) -> Dns {
        let ep = etcd.endpoint();
        let up = upstream.map(|u| u.to_string());
        let mut args = vec!["--domain", "webapp.dev", "--etcd", &ep];
        match &up {
            Some(u) => args.extend(["--upstream", u.as_str()]),
            None => args.push("--no-forward"),
        }
        args.extend(extra);
        Dns::start(&args)
    }

    /// Waits until the view is loaded (an answer that is not SERVFAIL for the apex).
    pub async fn ready(&self) {
        self.ready_for("webapp.dev.").await
    }

    /// Waits until the view is loaded, asking the SOA of `apex`.
    pub async fn ready_for(&self, apex: &str) {
        let addr = self.addr;
        eventually(
            Duration::from_secs(20),
            "first snapshot loaded",
            || async move {
                let m = query(addr, apex, RecordType::SOA).await.ok()?;
                (m.metadata.response_code == hickory_proto::op::ResponseCode::NoError).then_some(())
            },
        )
        .await;
    }

    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics.expect("started with --metrics"), path).await
    }

    /// The value of an unlabelled metric, `None` when it is not in `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics").await;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl std::ops::Deref for Dns {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Dns {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// Waits (20 s at most) until `dns` answers `name` A with `want` among its addresses.
pub async fn until_a_contains(dns: &Dns, name: &str, want: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{name} = {want}: {}", dns.logs()),
        || async {
            let m = query(dns.addr, name, RecordType::A).await.ok()?;
            data(&m).contains(&want.to_string()).then_some(())
        },
    )
    .await;
}
