//! IPv6 both ways, through the real registrator, Docker engine, etcd and `lodestar-dns`: `--ip`
//! given twice (one IPv4, one IPv6 address), the host's addresses detected when no `--ip` is
//! given (in network namespaces made here: an IPv6-only host, a dual-stack one), and ports
//! published only on an IPv6 binding. (`--internal` on a dual-stack network: `networks.rs`.)

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::netns::in_netns;
use crate::support::*;

const SOON: Duration = Duration::from_secs(15);

/// `--ip 10.99.0.1 --ip fd00::1`: a port Docker publishes on 0.0.0.0 and :: is registered at
/// both, the IPv6 one as `<id>-ipv6`: the name answers A and AAAA, its SRV has both instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_given_twice_registers_a_published_port_at_both_addresses() {
    let (_etcd, dns, _reg) = stack("h-ip2", &["--ip", "10.99.0.1", "--ip", "fd00::1"]).await;
    let n = unique("both");
    let c = service_r_on_80("both", &n);
    let (v4_port, v6_port) = bound_ports(&c, "80/tcp");
    let name = format!("{n}.webapp.dev.");
    let mut want = [
        format!("10 50 {v4_port} r.{n}.webapp.dev."),
        format!("10 50 {v6_port} r-ipv6.{n}.webapp.dev."),
    ];
    want.sort();
    eventually(SOON, &format!("{name} SRV = {want:?}"), || async {
        let mut got = srv(&dns, &name).await;
        got.sort();
        (got == want).then_some(())
    })
    .await;
    assert_eq!(dns.a(&name).await, ["10.99.0.1"]);
    assert_eq!(dns.answers(&name, RecordType::AAAA).await, ["fd00::1"]);
    assert_eq!(
        dns.answers(&format!("r-ipv6.{n}.webapp.dev."), RecordType::AAAA)
            .await,
        ["fd00::1"]
    );
    // Stopped: both go.
    docker(&["stop", "-t", "0", &c.name]);
    eventually(SOON, "both instances gone", || async {
        dns.is_nxdomain(&name).await.then_some(())
    })
    .await;
}

/// A port published only on an IPv6 binding address (`-p [::1]:PORT:80`) is registered at that
/// address: AAAA, and no A (the IPv4 `--ip` does not reach it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_bound_only_on_ipv6_is_registered_at_its_address() {
    let (_etcd, dns, _reg) = stack("h-v6bind", &["--ip", "10.99.0.1", "--ip", "fd00::1"]).await;
    let n = unique("v6bind");
    let port = free_port();
    let _c = Ctr::run(
        "v6bind",
        &[
            "-p",
            &format!("[::1]:{port}:80"),
            "-e",
            &format!("SERVICE_NAME={n}"),
            "-e",
            "SERVICE_ID=r",
        ],
    );
    let name = format!("{n}.webapp.dev.");
    until_srv(
        &dns,
        &name,
        &[&format!("10 100 {port} r.{n}.webapp.dev.")],
        SOON,
    )
    .await;
    assert_eq!(dns.answers(&name, RecordType::AAAA).await, ["::1"]);
    let m = query(dns.addr, &name, RecordType::A).await.expect("answer");
    assert!(data(&m).is_empty(), "no A: {m}");
}

/// The host ports Docker bound a container port to on IPv4 (0.0.0.0) and IPv6 (::).
fn bound_ports(c: &Ctr, spec: &str) -> (String, String) {
    let out = docker(&["port", &c.name, spec]);
    let port_of = |v6: bool| {
        out.lines()
            .find(|l| l.contains('[') == v6)
            .and_then(|l| l.rsplit(':').next())
            .unwrap_or_else(|| {
                panic!(
                    "{spec} bound on {}: {out}",
                    if v6 { "::" } else { "0.0.0.0" }
                )
            })
            .to_string()
    };
    (port_of(false), port_of(true))
}

/// A host of its own: a network namespace with loopback and one interface with `addrs` (and a
/// default route for each family given `via`), and an etcd on its loopback. Removed when dropped.
struct Host {
    ns: String,
    etcd: Child,
    procs: Vec<Child>,
    _dir: tempfile::TempDir,
}

fn run(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{args:?}");
}

impl Host {
    fn create(tag: &str, addrs: &[&str], routes: &[&str]) -> Host {
        docker_ready();
        let ns = format!("ls{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        run(&["ip", "netns", "add", &ns]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        // An interface for the addresses (a veth pair whose other end stays unconfigured
        // outside: nothing is ever sent through it).
        let outer = format!("l{tag}v{}", std::process::id());
        run(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", "eth6", "netns", &ns,
        ]);
        for a in addrs {
            run(&["ip", "-n", &ns, "addr", "add", a, "dev", "eth6", "nodad"]);
        }
        run(&["ip", "-n", &ns, "link", "set", "eth6", "up"]);
        for via in routes {
            run(&[
                "ip", "-n", &ns, "route", "add", "default", "via", via, "dev", "eth6",
            ]);
        }
        let dir = tempfile::TempDir::new().expect("tempdir");
        let etcd = in_netns(&ns, "etcd")
            .args(["--data-dir", &path_str(&dir.path().join("data"))])
            .args([
                "--listen-client-urls",
                "http://127.0.0.1:2379",
                "--advertise-client-urls",
                "http://127.0.0.1:2379",
            ])
            .args([
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:2380",
            ])
            .args([
                "--initial-cluster",
                "default=http://127.0.0.1:2380",
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd");
        Host {
            ns,
            etcd,
            procs: Vec::new(),
            _dir: dir,
        }
    }

    /// The registrator inside the host, without `--ip`.
    fn registrator(&mut self) {
        let reg = in_netns(&self.ns, env!("CARGO_BIN_EXE_lodestar-registrator"))
            .args(["--etcd", "http://127.0.0.1:2379", "--domain", "webapp.dev"])
            .args(["--host-id", "h6"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("registrator");
        self.procs.push(reg);
    }

    /// The value at `key` in the host's etcd, once there is one.
    async fn value(&self, key: &str) -> serde_json::Value {
        let v = eventually(SOON * 2, &format!("{key} registered"), || {
            let out = in_netns(&self.ns, "etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    "127.0.0.1:2379",
                    "get",
                    "--print-value-only",
                    key,
                ])
                .output();
            async move {
                let v = String::from_utf8_lossy(&out.ok()?.stdout)
                    .trim()
                    .to_string();
                (!v.is_empty()).then_some(v)
            }
        })
        .await;
        serde_json::from_str(&v).unwrap_or_else(|e| panic!("{key}: {v:?}: {e}"))
    }

    /// The keys below `prefix` in the host's etcd.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let out = in_netns(&self.ns, "etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                "127.0.0.1:2379",
                "get",
                "--prefix",
                "--keys-only",
                prefix,
            ])
            .output()
            .expect("etcdctl");
        let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().chain([&mut self.etcd]) {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A container publishing port 80 (on every address Docker binds) as service `n`, id `r`.
fn service_r_on_80(label: &str, n: &str) -> Ctr {
    Ctr::run(
        label,
        &[
            "-p",
            "80",
            "-e",
            &format!("SERVICE_NAME={n}"),
            "-e",
            "SERVICE_ID=r",
        ],
    )
}

/// An IPv6-only host (loopback and one global IPv6 address, no IPv4): the registrator, started
/// without `--ip`, registers published ports at that IPv6 address, with no twin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_only_host_registers_its_ipv6_address() {
    let mut host = Host::create("6o", &["2001:db8:6::5/64"], &[]);
    host.registrator();
    let n = unique("v6host");
    let ctr = service_r_on_80("v6host", &n);
    let (_, v6_port) = bound_ports(&ctr, "80/tcp");
    let svc = host.value(&format!("/skydns/dev/webapp/{n}/r")).await;
    assert_eq!(svc["host"], "2001:db8:6::5", "{svc}");
    assert_eq!(svc["port"].to_string(), v6_port);
    assert_eq!(
        host.keys(&format!("/skydns/dev/webapp/{n}/")),
        [format!("/skydns/dev/webapp/{n}/r")]
    );
}

/// A dual-stack host, no `--ip`: its primary IPv4 address and the global IPv6 address of the
/// interface of its IPv6 default route (not the link-local one) are
/// detected, and a published port is registered at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_host_registers_both_of_its_addresses() {
    let mut host = Host::create(
        "6d",
        &["10.66.0.5/24", "fe80::5/64", "2001:db8:66::5/64"],
        &["10.66.0.1", "2001:db8:66::1"],
    );
    host.registrator();
    let n = unique("v6dual");
    let ctr = service_r_on_80("v6dual", &n);
    let (v4_port, v6_port) = bound_ports(&ctr, "80/tcp");
    let key = format!("/skydns/dev/webapp/{n}/r");
    let v4 = host.value(&key).await;
    let v6 = host.value(&format!("{key}-ipv6")).await;
    assert_eq!(v4["host"], "10.66.0.5", "{v4}");
    assert_eq!(v4["port"].to_string(), v4_port);
    assert_eq!(v6["host"], "2001:db8:66::5", "{v6}");
    assert_eq!(v6["port"].to_string(), v6_port);
}
