//! Real parts for the integration tests: etcd, Knot DNS and the lodestar binaries, each on free
//! loopback ports in a temporary directory, stopped when dropped; and a small DNS client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free TCP port on 127.0.0.1 (and, usually, the same UDP port is free too).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` every 20 ms until it gives `Some`, or panics after `deadline` with `what`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("not within {deadline:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

// ---------------------------------------------------------------- etcd

/// A real etcd on free loopback ports with a temporary data dir.
pub struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    pub port: u16,
    peer_port: u16,
}

impl Etcd {
    pub async fn start() -> Etcd {
        // A port free when picked may be taken before etcd binds it (other tests run beside
        // this one): etcd then exits at once, and another pair of ports is tried.
        for _ in 0..5 {
            let mut e = Etcd {
                child: None,
                dir: TempDir::new().expect("tempdir"),
                port: free_port(),
                peer_port: free_port(),
            };
            if e.spawn().await {
                return e;
            }
        }
        panic!("etcd did not start on five pairs of free ports");
    }

    /// A handle on an etcd someone else started on `port` (not stopped when dropped).
    pub fn attach(port: u16) -> Etcd {
        Etcd {
            child: None,
            dir: TempDir::new().expect("tempdir"),
            port,
            peer_port: 0,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts etcd on this handle's ports: true once it answers, false if it exited first.
    async fn spawn(&mut self) -> bool {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("log");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &format!("t={peer}"),
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd runs (apt-get install etcd-server)");
        self.child = Some(child);
        let ep = self.endpoint();
        let started = Instant::now();
        loop {
            let status = async {
                let mut c = etcd_client::Client::connect([ep.clone()], None)
                    .await
                    .ok()?;
                c.status().await.ok()
            };
            if status.await.is_some() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                // Exited before answering: its ports were taken.
                self.child = None;
                return false;
            }
            let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "etcd did not answer within 30 s:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: etcd is gone, its data stays.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn().await, "etcd did not restart on its ports");
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None)
            .await
            .expect("etcd client")
    }

    pub async fn put(&self, key: &str, value: &str) -> i64 {
        let r = self
            .client()
            .await
            .put(key, value, None)
            .await
            .expect("put");
        r.header().map(|h| h.revision()).unwrap_or_default()
    }

    pub async fn delete(&self, key: &str) {
        self.client().await.delete(key, None).await.expect("delete");
    }

    /// Every key under `prefix`, in order.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let opts = etcd_client::GetOptions::new()
            .with_prefix()
            .with_keys_only();
        self.client()
            .await
            .get(prefix, Some(opts))
            .await
            .expect("get")
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect()
    }
}

/// Writes `records` (key, value) into etcd, 128 a transaction.
pub async fn put_all(etcd: &Etcd, records: &[(String, String)]) {
    let mut c = etcd.client().await;
    for chunk in records.chunks(128) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|(k, v)| etcd_client::TxnOp::put(k.as_str(), v.as_str(), None))
            .collect();
        c.txn(etcd_client::Txn::new().and_then(ops))
            .await
            .expect("txn");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- Knot

/// A real Knot DNS serving the given zones on a free loopback port.
pub struct Knot {
    child: Option<Child>,
    _dir: TempDir,
    pub addr: SocketAddr,
}

/// The zone Knot serves as the "rest of the Internet" in tests.
pub const EXAMPLE_ORG: &str = "$ORIGIN example.org.\n$TTL 300\n\
@ SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 60\n\
@ NS ns.example.org.\nns A 127.0.0.1\nwww A 192.0.2.10\nwww AAAA 2001:db8::10\n\
mail A 192.0.2.25\nalias CNAME www\nbig TXT \"a\"\n";

impl Knot {
    pub async fn start() -> Knot {
        Knot::with_zones(&[("example.org", EXAMPLE_ORG)]).await
    }

    pub async fn with_zones(zones: &[(&str, &str)]) -> Knot {
        Knot::with_zones_workers(zones, 1).await
    }

    /// The same with `workers` UDP workers.
    pub async fn with_zones_workers(zones: &[(&str, &str)], workers: usize) -> Knot {
        Knot::with_zones_on(zones, workers, free_port()).await
    }

    /// The same on a given port.
    pub async fn with_zones_on(zones: &[(&str, &str)], workers: usize, port: u16) -> Knot {
        Knot::configured(zones, workers, port, "", "").await
    }

    /// Knot with configuration of its own: `global` (sections such as `policy:`) and `each`
    /// (lines added to every zone, e.g. `    dnssec-signing: on`).
    pub async fn configured(
        zones: &[(&str, &str)],
        workers: usize,
        port: u16,
        global: &str,
        each: &str,
    ) -> Knot {
        let dir = TempDir::new().expect("tempdir");
        let d = dir.path().display();
        let mut conf = format!(
            "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  udp-workers: {workers}\n  tcp-workers: 1\n  background-workers: 1\n\
             database:\n  storage: \"{d}\"\nlog:\n  - target: stderr\n    any: warning\n{global}\
             template:\n  - id: default\n    storage: \"{d}\"\n    file: \"%s.zone\"\nzone:\n"
        );
        for (origin, text) in zones {
            std::fs::write(dir.path().join(format!("{origin}.zone")), text).expect("zone file");
            conf.push_str(&format!("  - domain: {origin}\n{each}"));
        }
        let conf_path = dir.path().join("knot.conf");
        std::fs::write(&conf_path, conf).expect("knot.conf");
        let log = std::fs::File::create(dir.path().join("knotd.log")).expect("knotd.log");
        let child = Command::new("knotd")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("knotd runs (apt-get install knot)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let first = zones.first().map(|z| z.0).unwrap_or("example.org");
        let probe = format!("{first}.");
        // A zone Knot signs is served once signed: minutes for a large one.
        let wait = if each.contains("dnssec") { 600 } else { 20 };
        eventually(Duration::from_secs(wait), "knot answers", || {
            let probe = probe.clone();
            async move {
                query(addr, &probe, RecordType::SOA)
                    .await
                    .ok()
                    .filter(|m| !m.answers.is_empty())
                    .map(|_| ())
            }
        })
        .await;
        Knot {
            child: Some(child),
            _dir: dir,
            addr,
        }
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

// ---------------------------------------------------------------- lodestar-dns

/// The real `lodestar-dns` binary on a free port, its logs collected.
pub struct Dns {
    proc: Proc,
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

/// Spawns a binary with `--log-format json`, collects its stderr, and waits for the log line
/// that names its bound addresses.
pub fn spawn_logged(
    bin: &str,
    args: &[String],
    env: &[(&str, &str)],
) -> (
    Child,
    Arc<Mutex<Vec<String>>>,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.env("RUST_LOG", "info,lodestar=debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn binary");
    let stderr = child.stderr.take().expect("stderr");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v);
            }
            sink.lock().expect("logs").push(line);
        }
    });
    (child, logs, rx)
}

impl Dns {
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
            proc: Proc {
                child: Some(child),
                logs,
            },
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

/// A running binary with its logs collected; killed when dropped.
pub struct Proc {
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// A process started with [`spawn_logged`].
    pub fn new(child: Child, logs: Arc<Mutex<Vec<String>>>) -> Proc {
        Proc {
            child: Some(child),
            logs,
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "kill -s {sig}");
    }

    /// Waits for the process to exit, up to `deadline`; its exit status.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Some(s) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A minimal HTTP/1.0 GET: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

// ---------------------------------------------------------------- DNS client

/// A query message for `name`/`qtype`, recursion desired, no EDNS.
pub fn message(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m
}

/// The same with an EDNS OPT advertising `size`.
pub fn message_edns(name: &str, qtype: RecordType, size: u16) -> Message {
    let mut m = message(name, qtype);
    let mut e = Edns::new();
    e.set_max_payload(size);
    m.set_edns(e);
    m
}

/// Sends raw bytes over UDP and returns the raw answer.
pub async fn udp_raw(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    // Loopback for loopback servers; the test's own namespaces' bridge otherwise.
    let local = if addr.ip().is_loopback() {
        "127.0.0.1:0"
    } else {
        "0.0.0.0:0"
    };
    let s = tokio::net::UdpSocket::bind(local).await?;
    // Connected: a closed port is "connection refused" at once (ICMP), not a 5 s wait.
    s.connect(addr).await?;
    s.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(timeout, s.recv(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    buf.truncate(n);
    Ok(buf)
}

/// Sends raw bytes over TCP (length-prefixed) and returns the raw answer.
pub async fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    s.write_all(&out).await?;
    let len = tokio::time::timeout(Duration::from_secs(5), s.read_u16())
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Sends `m` over UDP or TCP and parses the answer.
pub async fn exchange(addr: SocketAddr, m: &Message, tcp: bool) -> std::io::Result<Message> {
    let bytes = m.to_vec().map_err(std::io::Error::other)?;
    let raw = if tcp {
        tcp_raw(addr, &bytes).await?
    } else {
        udp_raw(addr, &bytes, Duration::from_secs(5)).await?
    };
    Message::from_vec(&raw).map_err(std::io::Error::other)
}

/// A plain UDP query without EDNS.
pub async fn query(addr: SocketAddr, name: &str, qtype: RecordType) -> std::io::Result<Message> {
    exchange(addr, &message(name, qtype), false).await
}

/// Answer records as `"owner TYPE data"`, sorted.
pub fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

/// Just the data of the answer records, sorted.
pub fn data(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

/// Writes a zone file into a new temporary dir.
pub fn zone_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write zone");
    }
    dir
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---------------------------------------------------------------- Docker

/// Runs `docker ARGS`; its stdout, or a panic with its stderr.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs (apt-get install docker.io)");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a shell command under an exclusive lock, so that parallel tests do it once.
fn locked(lock: &str, script: &str) {
    let ok = Command::new("flock")
        .args(["-o", lock, "sh", "-c", script])
        .status()
        .map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "{script}");
}

/// The test image, made with `docker import` from busybox (no registry needed).
pub const IMAGE: &str = "lodestar-test/busybox:latest";

/// Makes sure a Docker engine answers (starting `dockerd` when none does) and the test image exists.
pub fn docker_ready() {
    locked(
        "/tmp/lodestar-test-docker.lock",
        &format!(
            "docker info >/dev/null 2>&1 || {{ setsid nohup dockerd >/tmp/lodestar-dockerd.log 2>&1 & \
             i=0; until docker info >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done; }}; \
             docker image inspect {IMAGE} >/dev/null 2>&1 || {{ d=$(mktemp -d) && mkdir -p $d/bin $d/tmp && \
             cp $(command -v busybox) $d/bin/busybox && for a in sh sleep touch rm test cat; do ln -s busybox $d/bin/$a; done && \
             tar -C $d -c . | docker import - {IMAGE} >/dev/null && rm -rf $d; }}"
        ),
    );
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A unique container name for this test process.
pub fn unique(what: &str) -> String {
    format!(
        "lstest-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A container, removed when dropped.
pub struct Ctr {
    pub name: String,
}

impl Ctr {
    /// `docker run -d --name <unique> ARGS IMAGE sleep 3600` (ARGS go before the image).
    pub fn run(what: &str, args: &[&str]) -> Ctr {
        Ctr::run_cmd(what, args, &["sleep", "3600"])
    }

    pub fn run_cmd(what: &str, args: &[&str], cmd: &[&str]) -> Ctr {
        docker_ready();
        let name = unique(what);
        let mut all = vec!["run", "-d", "--name", &name, "--label", "lodestar-test=1"];
        all.extend(args);
        all.push(IMAGE);
        all.extend(cmd);
        docker(&all);
        Ctr { name }
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.name])
            .output();
    }
}

// ---------------------------------------------------------------- lodestar-registrator

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
            proc: Proc {
                child: Some(child),
                logs,
            },
            metrics,
        }
    }
}

/// The A/AAAA/SRV data answered for `name`, empty when none.
pub async fn srv(dns: &Dns, name: &str) -> Vec<String> {
    query(dns.addr, name, RecordType::SRV)
        .await
        .map(|m| data(&m))
        .unwrap_or_default()
}

/// Waits until `name` answers SRV with exactly `want`.
pub async fn until_srv(dns: &Dns, name: &str, want: &[&str], deadline: Duration) {
    let what = format!("{name} SRV = {want:?}");
    eventually(deadline, &what, || async {
        (srv(dns, name).await == want).then_some(())
    })
    .await;
}

/// The host port Docker published for a container port (`6379/tcp`).
pub fn host_port(ctr: &Ctr, spec: &str) -> String {
    let out = docker(&["port", &ctr.name, spec]);
    out.lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .unwrap_or_default()
        .to_string()
}

/// A unix-socket proxy in front of the real Docker engine, so that a test can cut the
/// registrator's connection to Docker and restore it while the engine itself runs on.
pub struct DockerProxy {
    dir: TempDir,
    accept: Option<tokio::task::JoinHandle<()>>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl DockerProxy {
    pub fn start() -> DockerProxy {
        docker_ready();
        let mut p = DockerProxy {
            dir: TempDir::new().expect("tempdir"),
            accept: None,
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        p.restore();
        p
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// `unix:///...` for `--docker`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path().display())
    }

    /// Accepts connections again.
    pub fn restore(&mut self) {
        let path = self.path();
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind proxy socket");
        let conns = self.conns.clone();
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                conns.lock().expect("conns").push(task.abort_handle());
            }
        }));
    }

    /// Closes every connection and stops accepting: Docker is gone, as far as clients can tell.
    pub fn cut(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for c in self.conns.lock().expect("conns").drain(..) {
            c.abort();
        }
        let _ = std::fs::remove_file(self.path());
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A TCP proxy on a free loopback port in front of `target` (an etcd member, say), so that a
/// test can cut every client connection and refuse new ones, then let them through again, while
/// the server behind it runs on.
pub struct TcpProxy {
    pub addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
        let (o, c) = (open.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !o.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // cut: the connection is dropped at once
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().expect("conns").push(task.abort_handle());
            }
        });
        TcpProxy {
            addr,
            open,
            conns,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`, for `--etcd`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection and drops new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().expect("conns").drain(..) {
            c.abort();
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Whether an ELF file is statically linked (has no PT_INTERP program header).
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        b.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap_or_default()) != 3)
    })
}

/// Where cargo put the example `name`, next to the test binary's own directory.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    profile_dir.join("examples").join(name)
}

/// Builds `docker/Dockerfile` for the binary at `bin` (static) as `tag`, metrics port `port`.
pub fn build_image(bin: &Path, tag: &str, port: u16) {
    docker_ready();
    let ctx = TempDir::new().expect("tempdir");
    let name = bin
        .file_name()
        .and_then(|n| n.to_str())
        .expect("binary name");
    std::fs::copy(bin, ctx.path().join(name)).expect("copy binary");
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        ctx.path().join("ca-certificates.crt"),
    )
    .expect("the CA bundle (apt-get install ca-certificates)");
    docker(&[
        "build",
        "-q",
        "-f",
        &path_str(&repo_file("docker/Dockerfile")),
        "--build-arg",
        &format!("BIN={name}"),
        "--build-arg",
        &format!("PORT={port}"),
        "--build-arg",
        "VERSION=test",
        "-t",
        tag,
        &path_str(ctx.path()),
    ]);
}

/// An etcd image built from Debian's etcd binary and the libraries it links (no registry).
pub fn build_etcd_image(tag: &str) {
    docker_ready();
    let ctx = TempDir::new().expect("tempdir");
    let etcd = Command::new("sh")
        .args(["-c", "command -v etcd"])
        .output()
        .expect("sh");
    let etcd = String::from_utf8_lossy(&etcd.stdout).trim().to_string();
    let mut files = vec![etcd.clone()];
    let ldd = Command::new("ldd").arg(&etcd).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(path.to_string());
        }
    }
    for f in &files {
        let dest = ctx.path().join("root").join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(f, &dest).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    std::fs::create_dir_all(ctx.path().join("root/var/lib/etcd")).expect("data dir");
    std::fs::create_dir_all(ctx.path().join("root/tmp")).expect("tmp");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\nENV PATH=/usr/bin:/bin\n",
    )
    .expect("Dockerfile");
    docker(&["build", "-q", "-t", tag, &path_str(ctx.path())]);
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

/// etcd, a DNS server over it (ready) and a registrator for host `host` with `extra` flags.
pub async fn stack(host: &str, extra: &[&str]) -> (Etcd, Dns, Registrator) {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let reg = Registrator::start(&etcd, host, extra);
    (etcd, dns, reg)
}
