//! Hosts in network namespaces, for the cluster tests and `make bench-failover`: a bridge, one
//! namespace per host with one address (`10.88.<k>.101`, `.102`, ...), an etcd member per host,
//! and partitions made with iptables inside a host's namespace. Everything is removed when dropped.
//!
//! `<k>` is the first of 20..60 whose lock file is free, so that tests running side by side get
//! subnets of their own (`make cluster` uses 10.88.8.0/24). The test process reaches the hosts
//! through the bridge's address `10.88.<k>.1`; nothing else is ever a destination.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn must(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (apt-get install iproute2 iptables)"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `program` to be run inside the network namespace `ns` (only the network is entered).
pub fn in_netns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(program);
    c
}

/// One host: its namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// A bridge with `n` hosts on it.
pub struct Net {
    pub k: u8,
    pub bridge: String,
    pub hosts: Vec<Host>,
    _lock: File,
}

impl Net {
    /// Creates `n` hosts (at most 9) on a new bridge.
    pub fn create(n: usize) -> Net {
        assert!((1..10).contains(&n));
        let (k, lock) = (20u8..60)
            .find_map(|k| {
                let f = File::create(format!("/tmp/lodestar-test-net-{k}.lock")).ok()?;
                f.try_lock().ok()?;
                Some((k, f))
            })
            .expect("a free test subnet among 10.88.20-59.0/24");
        let bridge = format!("lsbr{k}");
        let hosts: Vec<Host> = (1..=n)
            .map(|i| Host {
                ns: format!("ls{k}-core-0{i}"),
                ip: Ipv4Addr::new(10, 88, k, 100 + i as u8),
            })
            .collect();
        let net = Net {
            k,
            bridge,
            hosts,
            _lock: lock,
        };
        net.remove(); // whatever a crashed run with this subnet left behind
        let br = net.bridge.as_str();
        must(&["ip", "link", "add", br, "type", "bridge"]);
        let gw = format!("{}/24", net.gateway());
        must(&["ip", "addr", "add", &gw, "dev", br]);
        must(&["ip", "link", "set", br, "up"]);
        // Docker sets FORWARD's policy to DROP, which bridged traffic meets when br_netfilter is
        // loaded: let this bridge's own traffic through.
        must(&[
            "iptables", "-I", "FORWARD", "-i", br, "-o", br, "-j", "ACCEPT",
        ]);
        for (i, h) in net.hosts.iter().enumerate() {
            let (outer, inner) = (format!("lsv{k}h{i}"), format!("lsv{k}n{i}"));
            must(&["ip", "netns", "add", &h.ns]);
            must(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            must(&["ip", "link", "set", &outer, "master", br, "up"]);
            must(&["ip", "link", "set", &inner, "netns", &h.ns]);
            must(&["ip", "-n", &h.ns, "link", "set", &inner, "name", "eth0"]);
            must(&[
                "ip",
                "-n",
                &h.ns,
                "addr",
                "add",
                &format!("{}/24", h.ip),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", &h.ns, "link", "set", "eth0", "up"]);
            must(&["ip", "-n", &h.ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// The bridge's own address: where the test process sits.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 88, self.k, 1)
    }

    /// `program` to be run inside host `i`'s namespace (only the network is entered, so the
    /// process sees the machine's files, cgroups and Docker socket).
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_netns(&self.hosts[i].ns, program)
    }

    /// Cuts host `i` off from its peers' etcd traffic (port 2380, both ways) while its clients'
    /// port stays open: its member loses the leader but keeps answering connections.
    pub fn partition_peers(&self, i: usize) {
        for rule in Self::peer_rules() {
            let mut args = vec!["ip", "netns", "exec", &self.hosts[i].ns, "iptables", "-I"];
            args.extend(rule);
            must(&args);
        }
    }

    /// Undoes [`Net::partition_peers`].
    pub fn heal_peers(&self, i: usize) {
        for rule in Self::peer_rules() {
            let mut args = vec!["ip", "netns", "exec", &self.hosts[i].ns, "iptables", "-D"];
            args.extend(rule);
            must(&args);
        }
    }

    fn peer_rules() -> [[&'static str; 7]; 4] {
        [
            ["INPUT", "-p", "tcp", "--dport", "2380", "-j", "DROP"],
            ["INPUT", "-p", "tcp", "--sport", "2380", "-j", "DROP"],
            ["OUTPUT", "-p", "tcp", "--dport", "2380", "-j", "DROP"],
            ["OUTPUT", "-p", "tcp", "--sport", "2380", "-j", "DROP"],
        ]
    }

    fn remove(&self) {
        for (i, h) in self.hosts.iter().enumerate() {
            run(Command::new("ip").args(["netns", "del", &h.ns]));
            run(Command::new("ip").args(["link", "del", &format!("lsv{}h{i}", self.k)]));
        }
        run(Command::new("ip").args(["link", "del", &self.bridge]));
        while run(Command::new("iptables").args([
            "-D",
            "FORWARD",
            "-i",
            &self.bridge,
            "-o",
            &self.bridge,
            "-j",
            "ACCEPT",
        ])) {}
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A process run in a host, its stderr in a file; killed when dropped.
pub struct HostProc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl HostProc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> HostProc {
        let file = File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        HostProc {
            child: Some(child),
            log,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (nsenter execs the program: it is the program's own).
    #[allow(dead_code)] // the soak's (bench/soak)
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) without waiting.
    #[allow(dead_code)] // the soak's (bench/soak)
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid, which it stays until it is waited for.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// SIGTERM, then up to `grace` for it to exit (SIGKILL after): whether it exited in time.
    #[allow(dead_code)] // the soak's (bench/soak)
    pub fn terminate(&mut self, grace: Duration) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: as in `signal`: the child has not been waited for.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for HostProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An etcd cluster with one member per host of a [`Net`].
pub struct EtcdCluster {
    pub members: Vec<Option<HostProc>>,
    pub urls: Vec<String>,
    initial: String,
    /// Flags every member gets besides the cluster's own.
    extra: Vec<String>,
    pub dir: TempDir,
}

impl EtcdCluster {
    /// Starts a member on every host and waits until each has a leader.
    pub async fn start(net: &Net) -> EtcdCluster {
        EtcdCluster::start_with(net, &[]).await
    }

    /// The same, every member with `extra` flags.
    pub async fn start_with(net: &Net, extra: &[&str]) -> EtcdCluster {
        let urls: Vec<String> = net
            .hosts
            .iter()
            .map(|h| format!("http://{}:2379", h.ip))
            .collect();
        let initial = net
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| format!("m{i}=http://{}:2380", h.ip))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            members: net.hosts.iter().map(|_| None).collect(),
            urls,
            initial,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir: TempDir::new().expect("tempdir"),
        };
        for i in 0..net.hosts.len() {
            c.spawn(net, i);
        }
        for i in 0..net.hosts.len() {
            c.wait_leader(i, Duration::from_secs(30)).await;
        }
        c
    }

    fn spawn(&mut self, net: &Net, i: usize) {
        let h = &net.hosts[i];
        let client = format!("http://{}:2379", h.ip);
        let peer = format!("http://{}:2380", h.ip);
        let mut cmd = net.command(i, "etcd");
        cmd.args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(self.dir.path().join(format!("m{i}")))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial])
            .args(["--initial-cluster-token", &format!("lodestar-{}", net.k)])
            .args(["--log-level", "warn"])
            .args(&self.extra);
        let log = self.dir.path().join(format!("m{i}.log"));
        self.members[i] = Some(HostProc::spawn(cmd, log));
    }

    /// Waits until member `i` answers and has a leader.
    pub async fn wait_leader(&mut self, i: usize, deadline: Duration) {
        let start = Instant::now();
        loop {
            if member_leader(&self.urls[i]).await.unwrap_or(0) != 0 {
                return;
            }
            let logs = self.members[i]
                .as_ref()
                .map(HostProc::logs)
                .unwrap_or_default();
            assert!(
                start.elapsed() < deadline,
                "etcd member {i} has no leader after {deadline:?}:\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Member `i`'s process, while it runs.
    #[allow(dead_code)] // the soak's (bench/soak)
    pub fn member(&self, i: usize) -> Option<&HostProc> {
        self.members[i].as_ref()
    }

    /// SIGKILL member `i` (its data stays).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut m) = self.members[i].take() {
            m.kill();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, net: &Net, i: usize) {
        self.kill(i);
        self.spawn(net, i);
    }

    /// Every endpoint, host `i`'s own member first (the tutorial's convention).
    pub fn endpoints_from(&self, i: usize) -> String {
        let n = self.urls.len();
        (0..n)
            .map(|k| self.urls[(i + k) % n].clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Writes through member `i`: its revision. Retried for up to 15 s: a cluster that is
    /// electing a new leader (the old one was cut off) refuses writes for a second or two.
    pub async fn put(&self, i: usize, key: &str, value: &str) -> i64 {
        let start = Instant::now();
        loop {
            let put = async {
                let mut c = etcd_client::Client::connect([self.urls[i].as_str()], None).await?;
                c.put(key, value, None).await
            };
            match tokio::time::timeout(Duration::from_secs(5), put).await {
                Ok(Ok(r)) => return r.header().map(|h| h.revision()).unwrap_or_default(),
                other => assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "put through member {i}: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The leader id member `url` reports (0: none); `None` when it does not answer within a second.
pub async fn member_leader(url: &str) -> Option<u64> {
    let status = async {
        let mut c = etcd_client::Client::connect([url], None).await.ok()?;
        c.status().await.ok()
    };
    tokio::time::timeout(Duration::from_secs(1), status)
        .await
        .ok()
        .flatten()
        .map(|s| s.leader())
}

/// `lodestar-dns` in host `i` on `<ip>:53`, metrics on `<ip>:9153`, for webapp.dev, the
/// cluster's endpoints from its own member, no forwarding.
pub fn start_dns(net: &Net, etcd: &EtcdCluster, i: usize, bin: &Path, dir: &Path) -> HostProc {
    let ip = net.hosts[i].ip;
    let mut cmd = net.command(i, bin);
    cmd.args(["--listen", &format!("{ip}:53")])
        .args(["--metrics", &format!("{ip}:9153")])
        .args(["--domain", "webapp.dev", "--no-forward"])
        .args(["--etcd", &etcd.endpoints_from(i)])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info,lodestar=debug");
    HostProc::spawn(cmd, dir.join(format!("dns-{i}.log")))
}

/// `lodestar-registrator` in host `i`, registering at the host's address with lease `ttl`.
pub fn start_registrator(
    net: &Net,
    etcd: &EtcdCluster,
    i: usize,
    ttl: u64,
    bin: &Path,
    dir: &Path,
) -> HostProc {
    let ip = net.hosts[i].ip;
    let mut cmd = net.command(i, bin);
    cmd.args(["--ip", &ip.to_string()])
        .args(["--host-id", &format!("core-0{}", i + 1)])
        .args(["--domain", "webapp.dev", "--ttl", &ttl.to_string()])
        .args(["--metrics", &format!("{ip}:9154")])
        .args(["--etcd", &etcd.endpoints_from(i)])
        .args(["--log-format", "json"]);
    HostProc::spawn(cmd, dir.join(format!("registrator-{i}.log")))
}
