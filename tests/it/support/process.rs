//! A binary started with JSON logs, its log lines collected and its bound addresses read from
//! them; killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    cmd.args(args).env("RUST_LOG", "info,lodestar=debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_command_logged(cmd)
}

/// [`spawn_logged`] of a command made by the caller (its program, arguments, environment; the
/// log format is added last).
pub fn spawn_command_logged(
    mut cmd: Command,
) -> (
    Child,
    Arc<Mutex<Vec<String>>>,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    cmd.args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
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

/// Kills and reaps a child, if there is one.
pub fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
