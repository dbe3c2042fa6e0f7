//! Podman in tests: a `podman system service` of the test's own on a socket in a temporary
//! directory (the Docker API the registrator speaks), restartable while containers run, and
//! stopped when dropped; the busybox image made with `podman import` (no registry); containers
//! on a network of the tests' own (10.89.250.0/24, away from the test hosts' 10.88.x subnets),
//! removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::docker::unique;

/// The test image, made with `podman import` from busybox (no registry needed).
pub const PODMAN_IMAGE: &str = "localhost/lodestar-test/busybox:latest";
/// The network the test containers run on.
pub const PODMAN_NETWORK: &str = "lodestar-test";

/// Runs `podman ARGS`; its stdout, or a panic with its stderr.
pub fn podman(args: &[&str]) -> String {
    let out = Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs (apt-get install podman)");
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes sure the test image and network exist (once, under a lock, for tests running side by
/// side).
pub fn podman_ready() {
    let script = format!(
        "podman image exists {PODMAN_IMAGE} || {{ d=$(mktemp -d) && mkdir -p $d/bin $d/tmp && \
         cp $(command -v busybox) $d/bin/busybox && for a in sh sleep touch rm test cat; do ln -s busybox $d/bin/$a; done && \
         tar -C $d -c . | podman import - {PODMAN_IMAGE} >/dev/null && rm -rf $d; }}; \
         podman network exists {PODMAN_NETWORK} || podman network create --subnet 10.89.250.0/24 {PODMAN_NETWORK} >/dev/null"
    );
    let ok = Command::new("flock")
        .args(["-o", "/tmp/lodestar-test-podman.lock", "sh", "-c", &script])
        .status()
        .map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "{script}");
}

/// `podman system service` on a socket of its own.
pub struct PodmanService {
    child: Option<Child>,
    dir: TempDir,
}

impl PodmanService {
    pub fn start() -> PodmanService {
        podman_ready();
        let dir = TempDir::new().expect("tempdir");
        let mut s = PodmanService { child: None, dir };
        s.spawn();
        s
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    /// `unix://...`: what `--docker` is given.
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new("podman")
            .args(["system", "service", "--time=0", &self.url()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman system service");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.answers() {
            assert!(Instant::now() < deadline, "podman service did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the service answers `GET /_ping`.
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.") && out.contains(" 200 ")
    }

    /// Stops the service (its containers keep running: conmon watches them, not the service).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Podman container on [`PODMAN_NETWORK`], removed when dropped.
pub struct Pod {
    pub name: String,
}

impl Pod {
    /// `podman run -d --name <unique> ARGS IMAGE CMD` (ARGS go before the image). These machines
    /// need explicit ulimits (Podman's defaults exceed what the VM allows).
    pub fn run(what: &str, args: &[&str], cmd: &[&str]) -> Pod {
        podman_ready();
        let name = unique(what);
        let mut all = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            PODMAN_NETWORK,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        all.extend(args);
        all.push(PODMAN_IMAGE);
        all.extend(cmd);
        podman(&all);
        Pod { name }
    }

    /// The host port published for a container port (`80/tcp`).
    pub fn host_port(&self, spec: &str) -> String {
        let out = podman(&["port", &self.name, spec]);
        out.lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
    }
}
