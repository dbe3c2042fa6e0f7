//! The state file's format: a snapshot on disk, so that a server restarting while etcd has no
//! quorum still answers the names it knew, and a large view answers within a second of start.
//!
//! ```text
//! "LODESTAR-VIEW\n"  u32 version  u32 header length  header (JSON: what it holds, whose it is)
//! per record: u32 path length, path, u32 value length, value (SkyDNS JSON), u32 lease TTL
//! SHA-256 of everything before it (32 bytes)
//! ```
//!
//! Integers little-endian. A file is trusted only whole: the checksum matches, the header names
//! the same prefix, domains and format version, the records are exactly as many as it says, and
//! each record passes the checks a value from etcd passes (it is parsed again, by the same
//! [`Loader`]). Anything else is a [`StateError`] and the file is not used.
//!
//! Pure: encode to a writer, decode from bytes. The shell that writes it in the background and
//! reads it at start is `super::persist`. Imports the snapshot and its loader.

use std::io::{Read, Write};

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use super::layers::Loader;
use super::snapshot::Snapshot;

const MAGIC: &[u8] = b"LODESTAR-VIEW\n";
const VERSION: u32 = 1;
const CHECKSUM: usize = 32;

/// What a state file holds and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHeader {
    /// The etcd prefix the records were read under (`/skydns`).
    pub prefix: String,
    /// The domains the server answered (sorted), so that a file of another set-up is not used.
    pub domains: Vec<String>,
    /// The etcd revision of the snapshot: every event up to it is in the file.
    pub revision: i64,
    /// The etcd cluster the revision is of (0: not known).
    pub cluster_id: u64,
    /// Records that follow.
    pub records: u64,
}

/// Why a state file is not used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing it failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Not a state file, or one of another format version.
    #[error("not a Lodestar state file of format {VERSION}")]
    Format,
    /// The checksum does not match: the file is damaged or was cut short.
    #[error("the checksum does not match (damaged or cut short)")]
    Checksum,
    /// A file of another prefix or other domains.
    #[error("the file is of prefix {prefix} and domains {domains:?}, not this server's")]
    Foreign {
        /// The file's prefix.
        prefix: String,
        /// The file's domains.
        domains: Vec<String>,
    },
    /// The contents do not read as the header says (after a matching checksum: written wrong).
    #[error("the contents do not read as a state file: {0}")]
    Malformed(String),
}

/// Writes `snap` under `header` (whose `revision` and `records` are taken from `snap`).
pub fn encode(snap: &Snapshot, header: &StateHeader, out: &mut impl Write) -> std::io::Result<()> {
    let mut out = Hashed::new(out);
    let header = StateHeader {
        revision: snap.revision(),
        records: snap.len() as u64,
        ..header.clone()
    };
    let head = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    write_field(&mut out, &head)?;
    for (path, entry) in snap.subtree("") {
        write_field(&mut out, path.as_bytes())?;
        write_field(&mut out, entry.service.to_json().as_bytes())?;
        out.write_all(&entry.lease_ttl.to_le_bytes())?;
    }
    let sum = out.sum.finish();
    out.inner.write_all(sum.as_ref())
}

fn write_field(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)
}

/// A writer that hashes what goes through it.
struct Hashed<W> {
    inner: W,
    sum: Context,
}

impl<W: Write> Hashed<W> {
    fn new(inner: W) -> Self {
        Hashed {
            inner,
            sum: Context::new(&SHA256),
        }
    }
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads a state file's bytes into a snapshot (at the header's revision), if it is whole and
/// of `prefix` and `domains`.
pub fn decode(
    bytes: &[u8],
    prefix: &str,
    domains: &[String],
) -> Result<(StateHeader, Snapshot), StateError> {
    decode_from(bytes, bytes.len() as u64, prefix, domains)
}

/// [`decode`] of a file of `len` bytes read from `r` as it goes (nothing but the records is
/// kept: a 1,000,000-record file is not held in memory beside its snapshot). The checksum covers
/// what was read; when the contents do not read, the rest is still hashed, so that a damaged
/// file is reported as damaged, not as whatever its damage looks like.
pub fn decode_from(
    r: impl Read,
    len: u64,
    prefix: &str,
    domains: &[String],
) -> Result<(StateHeader, Snapshot), StateError> {
    let body = len
        .checked_sub(CHECKSUM as u64)
        .ok_or(StateError::Checksum)?;
    let mut r = HashedReader {
        inner: r.take(body),
        sum: Context::new(&SHA256),
    };
    let read = read_body(&mut r, prefix, domains);
    // Whatever was not read (after an error) is hashed too, then the checksum compared.
    std::io::copy(&mut r, &mut std::io::sink())?;
    let HashedReader { inner, sum } = r;
    let mut trailer = [0u8; CHECKSUM];
    let mut rest = inner.into_inner();
    if rest.read_exact(&mut trailer).is_err() || sum.finish().as_ref() != trailer {
        return Err(StateError::Checksum);
    }
    if rest.read(&mut [0u8; 1])? != 0 {
        return Err(StateError::Checksum);
    }
    read
}

fn read_body(
    r: &mut impl Read,
    prefix: &str,
    domains: &[String],
) -> Result<(StateHeader, Snapshot), StateError> {
    let mut magic = [0u8; MAGIC.len()];
    r.read_exact(&mut magic).map_err(|_| StateError::Format)?;
    if magic != MAGIC || read_u32(r)? != VERSION {
        return Err(StateError::Format);
    }
    let mut buf = Vec::new();
    read_field(r, &mut buf)?;
    let header: StateHeader =
        serde_json::from_slice(&buf).map_err(|e| StateError::Malformed(format!("header: {e}")))?;
    if header.prefix != prefix || header.domains != domains {
        return Err(StateError::Foreign {
            prefix: header.prefix,
            domains: header.domains,
        });
    }
    let mut load = Loader::after(None);
    let mut value = Vec::new();
    for _ in 0..header.records {
        read_field(r, &mut buf)?;
        let path = std::str::from_utf8(&buf)
            .map_err(|_| StateError::Malformed("a path that is not UTF-8".into()))?;
        read_field(r, &mut value)?;
        let lease_ttl = read_u32(r)?;
        if let super::Applied::Skipped { reason, .. } =
            load.put(path, &value, header.revision, lease_ttl)
        {
            return Err(StateError::Malformed(format!("record {path}: {reason}")));
        }
    }
    if r.read(&mut [0u8; 1])? != 0 {
        return Err(StateError::Malformed("bytes after the last record".into()));
    }
    let mut snap = load.finish();
    snap.revision = header.revision;
    Ok((header, snap))
}

/// The longest field read: a path, a value (at most 64 KiB) or the header.
const MAX_FIELD: usize = 1 << 20;

fn cut_short(e: std::io::Error) -> StateError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        StateError::Malformed("cut short".into())
    } else {
        StateError::Io(e)
    }
}

fn read_u32(r: &mut impl Read) -> Result<u32, StateError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(cut_short)?;
    Ok(u32::from_le_bytes(b))
}

fn read_field(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), StateError> {
    let n = read_u32(r)? as usize;
    if n > MAX_FIELD {
        return Err(StateError::Malformed(format!("a field of {n} bytes")));
    }
    buf.resize(n, 0);
    r.read_exact(buf).map_err(cut_short)
}

/// A reader that hashes what goes through it.
struct HashedReader<R> {
    inner: R,
    sum: Context,
}

impl<R: Read> Read for HashedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sum.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> StateHeader {
        StateHeader {
            prefix: "/skydns".into(),
            domains: vec!["webapp.dev.".into()],
            revision: 0,
            cluster_id: 7,
            records: 0,
        }
    }

    fn sample() -> Snapshot {
        let mut s = Snapshot::from_values([
            (
                "dev/webapp/a/1",
                br#"{"host":"10.0.0.1","port":80}"#.as_slice(),
                3,
            ),
            (
                "dev/webapp/b",
                br#"{"host":"db.example.org","text":"t"}"#,
                4,
            ),
        ]);
        s.put_leased("dev/webapp/c", br#"{"host":"2001:db8::1"}"#, 5, 30);
        s.delete("dev/webapp/b");
        s.revision = 42;
        s
    }

    fn encoded() -> Vec<u8> {
        let mut out = Vec::new();
        encode(&sample(), &header(), &mut out).unwrap();
        out
    }

    #[test]
    fn a_snapshot_reads_back_as_it_was() {
        let (h, s) = decode(&encoded(), "/skydns", &header().domains).unwrap();
        assert_eq!((h.revision, h.records, h.cluster_id), (42, 2, 7));
        assert_eq!(s.revision(), 42);
        let got: Vec<(&str, &str, u32)> = s
            .subtree("")
            .map(|(p, e)| (p, e.service.host.as_str(), e.lease_ttl))
            .collect();
        assert_eq!(
            got,
            [
                ("dev/webapp/a/1", "10.0.0.1", 0),
                ("dev/webapp/c", "2001:db8::1", 30)
            ]
        );
        assert_eq!(s.get("dev/webapp/a/1").unwrap().service.port, 80);
    }

    #[test]
    fn a_damaged_short_or_foreign_file_is_refused() {
        let good = encoded();
        for i in [0, MAGIC.len() + 2, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            assert!(
                decode(&bad, "/skydns", &header().domains).is_err(),
                "byte {i}"
            );
        }
        for n in [0, 10, good.len() / 2, good.len() - 1] {
            assert!(
                decode(&good[..n], "/skydns", &header().domains).is_err(),
                "{n} bytes"
            );
        }
        assert!(matches!(
            decode(&good, "/other", &header().domains),
            Err(StateError::Foreign { .. })
        ));
        assert!(matches!(
            decode(&good, "/skydns", &["other.dev.".to_string()]),
            Err(StateError::Foreign { .. })
        ));
    }

    #[test]
    fn damage_is_reported_as_damage_whatever_it_looks_like() {
        // A byte of the prefix in the header: the file would read as another server's.
        let mut bad = encoded();
        let at = bad.windows(7).position(|w| w == b"/skydns").unwrap() + 1;
        bad[at] = b'S';
        assert!(matches!(
            decode(&bad, "/skydns", &header().domains),
            Err(StateError::Checksum)
        ));
        let mut longer = encoded();
        longer.push(0);
        assert!(decode(&longer, "/skydns", &header().domains).is_err());
    }

    #[test]
    fn a_file_with_a_matching_checksum_is_still_checked_record_by_record() {
        // A record whose value is not JSON, with the checksum made to match.
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&VERSION.to_le_bytes());
        let h = serde_json::to_vec(&StateHeader {
            records: 1,
            ..header()
        })
        .unwrap();
        write_field(&mut body, &h).unwrap();
        write_field(&mut body, b"dev/webapp/x").unwrap();
        write_field(&mut body, b"{nope").unwrap();
        body.extend_from_slice(&0u32.to_le_bytes());
        let sum = ring::digest::digest(&SHA256, &body);
        body.extend_from_slice(sum.as_ref());
        assert!(matches!(
            decode(&body, "/skydns", &header().domains),
            Err(StateError::Malformed(_))
        ));
    }
}
