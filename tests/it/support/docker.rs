//! The Docker engine in tests: started when none answers, a busybox image made with `docker
//! import` (no registry), containers removed when dropped, and images built from our binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::common::{path_str, repo_file};

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

/// The host port Docker published for a container port (`6379/tcp`).
pub fn host_port(ctr: &Ctr, spec: &str) -> String {
    let out = docker(&["port", &ctr.name, spec]);
    out.lines()
        .next()
        .and_then(|l| l.rsplit(':').next())
        .unwrap_or_default()
        .to_string()
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
    std::fs::create_dir(ctx.path().join("state")).expect("state/");
    // As `make image`: the DNS image keeps its state file.
    let state = if name == "lodestar-dns" {
        "STATE_DIR=/var/lib/lodestar-dns"
    } else {
        "STATE_DIR="
    };
    docker(&[
        "build",
        "-q",
        "-f",
        &path_str(&repo_file("docker/Dockerfile")),
        "--build-arg",
        state,
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
