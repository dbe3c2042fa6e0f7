//! Proxies a test can cut and heal while the server behind runs on: one in front of the Docker
//! engine's socket, one in front of a TCP server (an etcd member).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

use super::docker::docker_ready;

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
