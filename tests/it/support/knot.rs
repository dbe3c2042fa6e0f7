//! A real Knot DNS serving given zones on a free loopback port: the upstream, and the reference.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use super::client::query;
use super::common::{eventually, free_port};
use super::process::kill;

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
        Knot::under(&[], zones, workers, port, global, each).await
    }

    /// [`Knot::configured`], started through `wrapper` (e.g. valgrind and its flags): `knotd`
    /// runs as its last argument.
    pub async fn under(
        wrapper: &[String],
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
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg("knotd");
                c
            }
            None => Command::new("knotd"),
        };
        let child = command
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
        let wait = if each.contains("dnssec") || !wrapper.is_empty() {
            600
        } else {
            20
        };
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

impl Knot {
    /// Freezes (`STOP`) or thaws (`CONT`) knotd: an upstream that takes as long as a test wants.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().map(|c| c.id()).expect("knotd runs");
        let ok = Command::new("kill")
            .args(["-s", sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -s {sig} knotd");
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
