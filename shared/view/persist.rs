//! The state file's shell (`--state-dir`): read it once at start ([`StateFile::restore`]), and
//! keep it close to the view afterwards ([`StateFile::keep`]): written in the background, on a
//! blocking thread, atomically (a temporary file, synced, renamed over the old one, the directory
//! synced), at most every [`WRITE_EVERY`] and never taking more than a tenth of a CPU.
//!
//! Data flows: file -> [`super::state::decode`] -> [`View::restore`] at start; the view's
//! published snapshot -> [`super::state::encode`] -> file while it runs. Imports the view.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::state::{decode_from, encode, StateError, StateHeader};
use super::View;

/// The shortest time between two writes.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);

/// The file's name in the state directory.
pub const FILE_NAME: &str = "view.state";

/// The state file of one server: where, and whose (prefix and domains).
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    prefix: String,
    domains: Vec<String>,
}

impl StateFile {
    /// The state file in `dir` of a server of `prefix` answering `domains`.
    pub fn new(dir: &Path, prefix: &str, domains: &[String]) -> StateFile {
        let mut domains = domains.to_vec();
        domains.sort();
        StateFile {
            path: dir.join(FILE_NAME),
            prefix: prefix.to_string(),
            domains,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Publishes the file's snapshot in `view` if the file is there and whole and this server's:
    /// the view answers from it at once, stale until a watch is open, and the watcher resumes
    /// from its revision. Anything else is logged once and ignored. The header, when used.
    pub fn restore(&self, view: &View) -> Option<StateHeader> {
        let started = Instant::now();
        let opened = std::fs::File::open(&self.path).and_then(|f| Ok((f.metadata()?.len(), f)));
        let (len, file) = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                info!(path = %self.path.display(), "no state file yet");
                return None;
            }
            Err(error) => {
                warn!(path = %self.path.display(), %error, "cannot read the state file; loading from etcd");
                return None;
            }
        };
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        match decode_from(reader, len, &self.prefix, &self.domains) {
            Ok((header, snap)) => {
                view.restore(snap, header.cluster_id);
                info!(path = %self.path.display(), revision = header.revision, records = header.records,
                    ms = started.elapsed().as_millis() as u64,
                    "answering from the state file (stale) until etcd is followed again");
                Some(header)
            }
            Err(error) => {
                warn!(path = %self.path.display(), %error, "ignoring the state file; loading from etcd");
                None
            }
        }
    }

    /// Writes the view's snapshot whenever it changed, until `token` is cancelled (then once
    /// more, if it changed).
    pub async fn keep(self, view: Arc<View>, token: CancellationToken) {
        let mut written = view.generation();
        let mut due = Instant::now();
        let mut failed = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                () = token.cancelled() => true,
                _ = tick.tick() => false,
            };
            let generation = view.generation();
            if generation != written && (stopping || Instant::now() >= due) {
                let started = Instant::now();
                match self.write(&view).await {
                    Ok(revision) => {
                        written = generation;
                        if failed {
                            info!(path = %self.path.display(), "the state file is written again");
                        }
                        failed = false;
                        debug!(path = %self.path.display(), revision, ms = started.elapsed().as_millis() as u64, "state file written");
                    }
                    Err(error) => {
                        if !failed {
                            warn!(path = %self.path.display(), %error, "cannot write the state file; retrying");
                        }
                        failed = true;
                    }
                }
                // At most a tenth of a CPU: wait ten times what the write took.
                due = Instant::now() + WRITE_EVERY.max(started.elapsed() * 10);
            }
            if stopping {
                return;
            }
        }
    }

    /// Writes the current snapshot (on a blocking thread); its revision.
    async fn write(&self, view: &View) -> Result<i64, StateError> {
        let Some(snap) = view.load() else {
            return Ok(0);
        };
        let header = StateHeader {
            prefix: self.prefix.clone(),
            domains: self.domains.clone(),
            revision: snap.revision(),
            cluster_id: view.cluster_id(),
            records: 0,
        };
        let (path, revision) = (self.path.clone(), header.revision);
        tokio::task::spawn_blocking(move || {
            write_atomically(&path, |out| encode(&snap, &header, out))
        })
        .await
        .map_err(|e| StateError::Io(std::io::Error::other(e)))??;
        Ok(revision)
    }
}

/// Writes `path` through a temporary file beside it, synced and renamed over it, and syncs the
/// directory: a reader finds the old file or the new one, whole.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<()>,
) -> Result<(), StateError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
        fill(&mut out)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}
