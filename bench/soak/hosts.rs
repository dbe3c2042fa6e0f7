//! The soak's three hosts: network namespaces on a bridge (`support::netns`), and on each an etcd
//! member, its own Docker engine (own data root and socket, as `make cluster` runs them),
//! `lodestar-dns` (forwarding to a Knot DNS in host 0, with `--state-dir` as the packaged unit
//! runs it) and `lodestar-registrator`. It starts them, stops and restarts each (the faults), says
//! which processes run now (for the resource samples), and removes everything when dropped.
//!
//! Imports: `support` (the real parts), `libc` (signals). Nothing here checks an answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::support::netns::{EtcdCluster, HostProc, Net};
use crate::support::{message, query, udp_raw};

const DNS: &str = env!("CARGO_BIN_EXE_lodestar-dns");
const REGISTRATOR: &str = env!("CARGO_BIN_EXE_lodestar-registrator");
/// The image every engine imports (busybox), and the label of the soak's containers.
pub const IMAGE: &str = "lodestar-soak/busybox:latest";
/// A process the soak watches: role, pid, and the URL whose `/metrics` says more of it.
pub type Proc = (String, u32, Option<String>);

pub const HOSTS: usize = 3;
/// Containers each host runs, published as `app<h>` by its registrator.
pub const CONTAINERS: usize = 2;

/// Where Knot listens (host 0), the forwarded zone's name and its one address.
pub const FORWARDED: (&str, &str) = ("www.example.org.", "192.0.2.10");

pub struct Hosts {
    pub net: Net,
    pub etcd: EtcdCluster,
    docker: Vec<Option<HostProc>>,
    dns: Vec<Option<HostProc>>,
    registrator: Vec<Option<HostProc>>,
    knot: Option<HostProc>,
    starts: usize,
    pub dir: TempDir,
}

fn docker_ok(sock: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", sock.display()))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Published host ports of the soak's containers of the engine at `sock`; `None` while the
/// engine is away.
pub fn published(sock: &Path) -> Option<Vec<u16>> {
    let out = docker_ok(
        sock,
        &["ps", "--filter", "label=soak=1", "--format", "{{.Ports}}"],
    )?;
    let mut ports: Vec<u16> = out
        .split([',', '\n'])
        .filter_map(|p| {
            p.trim()
                .split_once("->")?
                .0
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    Some(ports)
}

impl Hosts {
    /// Everything up and answering; the containers run and are registered.
    pub async fn start() -> Hosts {
        let net = Net::create(HOSTS);
        // Compacted, as a production etcd is (the default keeps every revision for ever, and its
        // memory grows with them), every minute; and its raft log snapshotted every 2,000
        // entries. etcd 3.4 keeps the entries since its last snapshot plus 5,000 in memory: with
        // 3.4's default (100,000) or 3.6's (10,000) a member at this load (about 22 a second) is
        // still filling up 5 minutes after it started, and that growth is etcd's, not a leak (a
        // run with 10,000 saw each member grow 10-25% for 11 minutes, then drop at its snapshot).
        let etcd = EtcdCluster::start_with(
            &net,
            &[
                "--auto-compaction-mode=periodic",
                "--auto-compaction-retention=1m",
                "--snapshot-count=2000",
            ],
        )
        .await;
        let dir = tempfile::Builder::new()
            .prefix("lodestar-soak-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let mut h = Hosts {
            net,
            etcd,
            docker: (0..HOSTS).map(|_| None).collect(),
            dns: (0..HOSTS).map(|_| None).collect(),
            registrator: (0..HOSTS).map(|_| None).collect(),
            knot: None,
            starts: 0,
            dir,
        };
        for i in 0..HOSTS {
            h.start_docker(i);
        }
        h.start_knot().await;
        for i in 0..HOSTS {
            h.start_dns(i).await;
        }
        let rootfs = h.dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs");
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).expect("symlink");
        for i in 0..HOSTS {
            assert!(
                h.wait_docker(i).await,
                "the Docker engine of host {i} within 60 s"
            );
            let tar = Command::new("tar")
                .arg("-C")
                .arg(&rootfs)
                .args(["-cf", "-", "."])
                .output()
                .expect("tar");
            let mut import = Command::new("docker")
                .arg("-H")
                .arg(format!("unix://{}", h.sock(i).display()))
                .args(["import", "-", IMAGE])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("docker import");
            use std::io::Write;
            import
                .stdin
                .take()
                .expect("stdin")
                .write_all(&tar.stdout)
                .expect("image");
            assert!(import.wait().expect("import").success(), "docker import");
            for j in 0..CONTAINERS {
                let name = format!("app{i}-{j}");
                let env = format!("SERVICE_NAME=app{i}");
                docker_ok(
                    &h.sock(i),
                    &[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "--restart",
                        "always",
                        "--stop-timeout",
                        "1",
                        "--label",
                        "soak=1",
                        "-p",
                        "80",
                        "-e",
                        &env,
                        IMAGE,
                        "sleep",
                        "1000000",
                    ],
                )
                .unwrap_or_else(|| panic!("docker run {name}"));
            }
            h.start_registrator(i);
        }
        h
    }

    fn log(&mut self, what: &str) -> PathBuf {
        self.starts += 1;
        self.dir.path().join(format!("{what}.{}.log", self.starts))
    }

    pub fn sock(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("h{i}/docker.sock"))
    }

    pub fn dns_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.net.hosts[i].ip.into(), 53)
    }

    pub fn start_docker(&mut self, i: usize) {
        let d = self.dir.path().join(format!("h{i}"));
        std::fs::create_dir_all(&d).expect("docker dir");
        let mut cmd = self.net.command(i, "dockerd");
        cmd.arg("--data-root")
            .arg(d.join("docker"))
            .arg("--exec-root")
            .arg(d.join("x"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock(i).display()));
        let log = self.log(&format!("dockerd-{i}"));
        self.docker[i] = Some(HostProc::spawn(cmd, log));
    }

    /// Waits until host `i`'s engine answers: whether it did within 60 s.
    pub async fn wait_docker(&self, i: usize) -> bool {
        let start = Instant::now();
        while docker_ok(&self.sock(i), &["info"]).is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    async fn start_knot(&mut self) {
        let d = self.dir.path().join("knot");
        std::fs::create_dir_all(&d).expect("knot dir");
        let ip = self.net.hosts[0].ip;
        let conf = format!(
            "server:\n  rundir: \"{d}\"\n  listen: {ip}@5300\n  udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n\
             database:\n  storage: \"{d}\"\nlog:\n  - target: stderr\n    any: warning\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    file: \"%s.zone\"\nzone:\n  - domain: example.org\n",
            d = d.display()
        );
        std::fs::write(d.join("knot.conf"), conf).expect("knot.conf");
        std::fs::write(d.join("example.org.zone"), crate::support::EXAMPLE_ORG).expect("zone");
        let mut cmd = self.net.command(0, "knotd");
        cmd.arg("-c").arg(d.join("knot.conf"));
        let log = self.log("knot");
        self.knot = Some(HostProc::spawn(cmd, log));
        let addr = SocketAddr::new(ip.into(), 5300);
        let start = Instant::now();
        while query(addr, "example.org.", RecordType::SOA).await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "knot in host 0");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts host `i`'s server and waits until it answers the apex.
    pub async fn start_dns(&mut self, i: usize) {
        let ip = self.net.hosts[i].ip;
        let state = self.dir.path().join(format!("h{i}/state"));
        std::fs::create_dir_all(&state).expect("state dir");
        let mut cmd = self.net.command(i, DNS);
        cmd.args(["--listen", &format!("{ip}:53")])
            .args(["--metrics", &format!("{ip}:9153")])
            .args(["--domain", "webapp.dev"])
            .args(["--upstream", &format!("{}:5300", self.net.hosts[0].ip)])
            .args(["--etcd", &self.etcd.endpoints_from(i)])
            .arg("--state-dir")
            .arg(&state)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info");
        let log = self.log(&format!("dns-{i}"));
        self.dns[i] = Some(HostProc::spawn(cmd, log));
        let a = self.dns_addr(i);
        let start = Instant::now();
        let soa = message("webapp.dev.", RecordType::SOA)
            .to_vec()
            .expect("a query");
        loop {
            // Short tries: a question sent before the server bound its port may get no "port
            // unreachable" back (the kernel sends at most one a second to the clients' address,
            // which the clients use up), only silence.
            if let Ok(raw) = udp_raw(a, &soa, Duration::from_millis(100)).await {
                if Message::from_vec(&raw)
                    .is_ok_and(|m| m.metadata.response_code == ResponseCode::NoError)
                {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "lodestar-dns of host {i} did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn start_registrator(&mut self, i: usize) {
        let ip = self.net.hosts[i].ip;
        let mut cmd = self.net.command(i, REGISTRATOR);
        cmd.arg("--docker")
            .arg(format!("unix://{}", self.sock(i).display()))
            .args(["--ip", &ip.to_string()])
            .args(["--host-id", &format!("core-0{}", i + 1)])
            .args(["--domain", "webapp.dev"])
            .args(["--metrics", &format!("{ip}:9154")])
            .args(["--etcd", &self.etcd.endpoints_from(i)])
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info");
        let log = self.log(&format!("registrator-{i}"));
        self.registrator[i] = Some(HostProc::spawn(cmd, log));
    }

    /// SIGTERM host `i`'s server: whether it exited within 10 s.
    pub fn stop_dns(&mut self, i: usize) -> bool {
        self.dns[i]
            .take()
            .is_none_or(|mut p| p.terminate(Duration::from_secs(10)))
    }

    /// SIGTERM host `i`'s registrator: whether it exited within 10 s.
    pub fn stop_registrator(&mut self, i: usize) -> bool {
        self.registrator[i]
            .take()
            .is_none_or(|mut p| p.terminate(Duration::from_secs(10)))
    }

    /// SIGTERM host `i`'s engine: whether it stopped (its containers too) within 30 s.
    pub fn stop_docker(&mut self, i: usize) -> bool {
        self.docker[i]
            .take()
            .is_none_or(|mut p| p.terminate(Duration::from_secs(30)))
    }

    /// The processes running now: (role, pid, where its `/metrics` is served when it says more
    /// than `/proc` can: etcd's members).
    pub fn processes(&self) -> Vec<Proc> {
        let mut out = Vec::new();
        for i in 0..HOSTS {
            let host = format!("core-0{}", i + 1);
            let procs = [
                ("etcd", self.etcd.member(i)),
                ("dns", self.dns[i].as_ref()),
                ("registrator", self.registrator[i].as_ref()),
                ("dockerd", self.docker[i].as_ref()),
            ];
            for (role, p) in procs {
                if let Some(pid) = p.and_then(HostProc::pid) {
                    let metrics = (role == "etcd").then(|| self.etcd.urls[i].clone());
                    out.push((format!("{role}@{host}"), pid, metrics));
                }
            }
        }
        if let Some(pid) = self.knot.as_ref().and_then(HostProc::pid) {
            out.push(("knot".to_string(), pid, None));
        }
        out
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Containers first, at once (an engine that stops them waits for each), then the engines
        // stop their containerd, then whatever they left mounted under the directory goes.
        for i in 0..HOSTS {
            if let Some(ids) = docker_ok(&self.sock(i), &["ps", "-aq"]) {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.split_whitespace());
                if args.len() > 2 {
                    docker_ok(&self.sock(i), &args);
                }
            }
        }
        for i in 0..HOSTS {
            self.registrator[i].take();
            self.dns[i].take();
            if let Some(mut p) = self.docker[i].take() {
                p.terminate(Duration::from_secs(15));
            }
        }
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        under.sort_unstable_by(|a, b| b.cmp(a));
        for m in under {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}
