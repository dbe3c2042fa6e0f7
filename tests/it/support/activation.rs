//! What systemd does for `lodestar-dns.socket`, in small: a launcher that holds a UDP socket and
//! a TCP listener on one loopback port for as long as it lives, starts `lodestar-dns` with them
//! as descriptors 3 and 4 (`LISTEN_FDS=2`, `LISTEN_FDNAMES=dns:dns`, and `LISTEN_PID` set by the
//! shell that then execs the server, so that it is the server's own pid), and restarts it as
//! `systemctl restart` does: SIGTERM, wait for the exit, start again on the same sockets.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::process::{spawn_command_logged, Proc};

/// The sockets, and the server started on them (if one runs).
pub struct Launcher {
    udp: UdpSocket,
    tcp: TcpListener,
    pub addr: SocketAddr,
    args: Vec<String>,
    env: Vec<(String, String)>,
    server: Option<Proc>,
    /// A third socket, named `metrics`, when [`Launcher::with_metrics_socket`] made one.
    metrics_socket: Option<TcpListener>,
    pub metrics: Option<SocketAddr>,
    /// The log lines of servers that have exited, oldest first.
    past_logs: Vec<String>,
}

impl Launcher {
    /// Binds UDP and TCP on one free loopback port; starts nothing yet.
    pub fn new(args: &[&str], env: &[(&str, &str)]) -> Launcher {
        let (udp, tcp) = (0..20)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = TcpListener::bind(udp.local_addr().ok()?).ok()?;
                Some((udp, tcp))
            })
            .expect("a loopback port free for UDP and TCP");
        Launcher {
            addr: udp.local_addr().expect("bound"),
            udp,
            tcp,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            server: None,
            metrics_socket: None,
            metrics: None,
            past_logs: Vec::new(),
        }
    }

    /// Holds a TCP listener for the metrics endpoints too, passed as descriptor 5 named
    /// `metrics`; its address is [`Launcher::metrics`].
    pub fn with_metrics_socket(mut self) -> Launcher {
        let l = TcpListener::bind("127.0.0.1:0").expect("metrics socket");
        self.metrics = l.local_addr().ok();
        self.metrics_socket = Some(l);
        self
    }

    /// Starts the server on the sockets and waits (20 s at most) for its log line saying it
    /// took them (and the metrics address, when `--metrics` is among the arguments). It may
    /// not read them yet: it reads once its view has a snapshot.
    pub fn start(&mut self) {
        assert!(self.server.is_none(), "a server runs already");
        let (udp, tcp) = (self.udp.as_raw_fd(), self.tcp.as_raw_fd());
        let metrics = self.metrics_socket.as_ref().map(|m| m.as_raw_fd());
        let (fds, names) = match metrics {
            Some(_) => ("3", "dns:dns:metrics"),
            None => ("2", "dns:dns"),
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#])
            .arg(env!("CARGO_BIN_EXE_lodestar-dns"))
            .args(&self.args)
            .env("LISTEN_FDS", fds)
            .env("LISTEN_FDNAMES", names)
            .env("RUST_LOG", "info,lodestar=debug");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first (10 and up), so that neither target overwrites a source.
                let (u, t) = (
                    libc::fcntl(udp, libc::F_DUPFD, 10),
                    libc::fcntl(tcp, libc::F_DUPFD, 10),
                );
                if u < 0 || t < 0 || libc::dup2(u, 3) < 0 || libc::dup2(t, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(u);
                libc::close(t);
                if let Some(m) = metrics {
                    let m2 = libc::fcntl(m, libc::F_DUPFD, 10);
                    if m2 < 0 || libc::dup2(m2, 5) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(m2);
                }
                Ok(())
            });
        }
        let (child, logs, rx) = spawn_command_logged(cmd);
        let wants_metrics =
            self.metrics_socket.is_some() || self.args.iter().any(|a| a == "--metrics");
        let metrics = wait_listening(&rx, wants_metrics, || {
            logs.lock().map(|l| l.join("\n")).unwrap_or_default()
        });
        if wants_metrics {
            self.metrics = metrics;
        }
        self.server = Some(Proc::new(child, logs));
    }

    /// SIGTERM to the server, and its exit status once it has exited (within 10 s, else None).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut server = self.server.take().expect("a server runs");
        server.signal("TERM");
        let status = server.wait_exit(Duration::from_secs(10));
        self.past_logs.push(server.logs());
        status
    }

    /// `systemctl restart`: stop (which must succeed), start; the time the two took.
    pub fn restart(&mut self) -> Duration {
        let t = Instant::now();
        let status = self.stop();
        assert!(
            status.is_some_and(|s| s.success()),
            "the server did not exit cleanly on SIGTERM: {status:?}\n{}",
            self.logs()
        );
        self.start();
        t.elapsed()
    }

    /// Every server's logs, the running one's last.
    pub fn logs(&self) -> String {
        let mut all = self.past_logs.join("\n");
        if let Some(s) = &self.server {
            all.push('\n');
            all.push_str(&s.logs());
        }
        all
    }
}

/// Reads log lines until both passed sockets are announced (`"passed": true`), and the metrics
/// address when wanted.
fn wait_listening(
    rx: &Receiver<serde_json::Value>,
    wants_metrics: bool,
    logs: impl Fn() -> String,
) -> Option<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut udp, mut tcp, mut metrics) = (false, false, None);
    while !(udp && tcp && (metrics.is_some() || !wants_metrics)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("lodestar-dns did not take the sockets:\n{}", logs()));
        if v.get("passed").and_then(|p| p.as_bool()) == Some(true) {
            udp |= v.get("udp").is_some();
            tcp |= v.get("tcp").is_some();
        }
        if let Some(a) = v.get("metrics").and_then(|a| a.as_str()) {
            metrics = a.parse().ok();
        }
    }
    metrics
}
