//! A real etcd on free loopback ports with a temporary data dir, and writing many keys at once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::common::free_port;
use super::process::kill;

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
