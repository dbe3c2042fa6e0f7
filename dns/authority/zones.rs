//! Static zones: RFC 1035 master files from `--zones DIR`, served authoritatively beside the view
//! by hickory-server's in-memory zone handlers and catalog.
//!
//! Each `*.zone` file is parsed (hickory's zone parser; the origin is the file's `$ORIGIN`, else
//! its name without `.zone`) into an `InMemoryZoneHandler`, and the zones make one `Catalog`.
//! Questions inside a zone go to the catalog, which does what an authoritative server does:
//! wildcards, CNAMEs inside the zone, delegations (a referral without AA, the child's NS in the
//! authority section and their glue), additional records for NS/MX/SRV targets, NODATA and
//! NXDOMAIN with the SOA. Its answer is encoded within the client's size limit (TC when it does
//! not fit). [`StaticZones::load_dir`] runs again on SIGHUP; a set that fails to load leaves the
//! one in service as it is.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hickory_proto::op::Message;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::serialize::txt::Parser;
use hickory_server::dnssec::NxProofKind;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponse, ZoneType};

use crate::dnssec::keys::ZoneKey;
use crate::proto::Transport;

/// Why the zones could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    /// A file or the directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a valid zone.
    #[error("parsing {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Every static zone, served by one catalog.
#[derive(Default)]
pub struct StaticZones {
    origins: Vec<Name>,
    catalog: Option<Catalog>,
    /// Delegations (NS sets below a zone's apex), most specific first: a question at or below
    /// one gets a referral (hickory-server 0.26 answers those with AA and no glue).
    cuts: Vec<(Name, Vec<Record>)>,
    /// Every address record of the zones, for glue.
    addresses: HashMap<Name, Vec<Record>>,
}

impl std::fmt::Debug for StaticZones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticZones")
            .field("origins", &self.origins)
            .finish()
    }
}

impl StaticZones {
    /// Loads every `*.zone` file of `dir`; a zone whose origin has keys in `keys` is signed
    /// (hickory-server's signer: RRSIGs on every RRset, an NSEC chain, the DNSKEY set).
    pub fn load_dir(dir: &Path, keys: &[ZoneKey]) -> Result<StaticZones, ZoneError> {
        let read_err = |source| ZoneError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "zone"))
            .collect();
        files.sort();
        let mut catalog = Catalog::new();
        let mut origins = Vec::new();
        let mut cuts = Vec::new();
        let mut addresses: HashMap<Name, Vec<Record>> = HashMap::new();
        for f in &files {
            let (origin, records) = load_file(f)?;
            for (key, set) in &records {
                let name = Name::from(key.name.clone()).to_lowercase();
                match key.record_type {
                    RecordType::NS if name != origin => {
                        cuts.push((name, set.records_without_rrsigs().cloned().collect()));
                    }
                    RecordType::A | RecordType::AAAA => addresses
                        .entry(name)
                        .or_default()
                        .extend(set.records_without_rrsigs().cloned()),
                    _ => {}
                }
            }
            let signing: Vec<&ZoneKey> = keys.iter().filter(|k| k.zone == origin).collect();
            let proof = (!signing.is_empty()).then_some(NxProofKind::Nsec);
            let mut handler =
                InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::new(
                    origin.clone(),
                    records,
                    ZoneType::Primary,
                    AxfrPolicy::Deny,
                    proof,
                )
                .map_err(|reason| ZoneError::Parse {
                    path: f.clone(),
                    reason,
                })?;
            if !signing.is_empty() {
                let sign_err = |reason: String| ZoneError::Parse {
                    path: f.clone(),
                    reason: format!("signing: {reason}"),
                };
                for key in signing {
                    let signer = key
                        .signer(crate::dnssec::sign::VALIDITY)
                        .map_err(|e| sign_err(e.to_string()))?;
                    handler
                        .add_zone_signing_key_mut(signer)
                        .map_err(|e| sign_err(e.to_string()))?;
                }
                handler
                    .secure_zone_mut()
                    .map_err(|e| sign_err(e.to_string()))?;
            }
            catalog.upsert(LowerName::from(&origin), vec![Arc::new(handler)]);
            origins.push(origin);
        }
        cuts.sort_by_key(|(n, _): &(Name, Vec<Record>)| std::cmp::Reverse(n.num_labels()));
        Ok(StaticZones {
            origins,
            catalog: Some(catalog),
            cuts,
            addresses,
        })
    }

    /// The origins served, for logging.
    pub fn origins(&self) -> impl Iterator<Item = &Name> {
        self.origins.iter()
    }

    /// Whether a static zone holds `lower` (a lower-case name).
    pub fn holds(&self, lower: &Name) -> bool {
        self.origins.iter().any(|o| o.zone_of(lower))
    }

    /// The catalog's answer to `request` (a question inside a static zone), encoded within
    /// `limit` bytes; `None` when the query cannot be read.
    pub async fn answer(
        &self,
        request: &Message,
        client: IpAddr,
        transport: Transport,
        limit: u16,
        client_edns: bool,
    ) -> Option<Vec<u8>> {
        let catalog = self.catalog.as_ref()?;
        if let Some(bytes) = self.referral(request, limit, client_edns) {
            return Some(bytes);
        }
        // hickory-server's catalog takes a request as bytes.
        let raw = request.to_vec().ok()?;
        let protocol = match transport {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
        };
        let request = Request::from_bytes(raw, SocketAddr::new(client, 0), protocol).ok()?;
        let edns = client_edns.then(|| crate::proto::edns::ours(false));
        let capture = Capture {
            out: Arc::new(Mutex::new(None)),
            limit,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        catalog
            .lookup(&request, edns.as_ref(), now, capture.clone())
            .await;
        let out = match capture.out.lock() {
            Ok(mut o) => o.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        out
    }
}

impl StaticZones {
    /// A referral (RFC 1034 4.3.2, RFC 2181 6.1) when the question is at or below a delegation:
    /// no AA, the child's NS set in the authority section, the addresses of its in-zone
    /// nameservers as additional records. `None` when no delegation holds the name (or the
    /// query cannot be read).
    fn referral(&self, request: &Message, limit: u16, client_edns: bool) -> Option<Vec<u8>> {
        if self.cuts.is_empty() {
            return None;
        }
        let q = request.queries.first()?;
        let lower = q.name().to_lowercase();
        // DS belongs to the parent side of the cut.
        if q.query_type() == RecordType::DS {
            return None;
        }
        let (_, ns) = self.cuts.iter().find(|(cut, _)| cut.zone_of(&lower))?;
        let mut m = Message::response(request.metadata.id, request.metadata.op_code);
        m.metadata.recursion_desired = request.metadata.recursion_desired;
        m.metadata.authoritative = false;
        m.add_query(q.clone());
        m.authorities.extend(ns.iter().cloned());
        for r in ns {
            if let RData::NS(target) = &r.data {
                if let Some(glue) = self.addresses.get(&target.0.to_lowercase()) {
                    m.additionals.extend(glue.iter().cloned());
                }
            }
        }
        if client_edns {
            m.edns = Some(crate::proto::edns::ours(false));
        }
        let mut buf = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(limit);
        m.emit(&mut enc).ok()?;
        Some(buf)
    }
}

/// A response handler that keeps the encoded answer instead of sending it.
#[derive(Clone)]
struct Capture {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    limit: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut buf = Vec::with_capacity(usize::from(self.limit.min(4096)));
        let info = {
            let mut enc = BinEncoder::new(&mut buf);
            enc.set_max_size(self.limit);
            response.destructive_emit(&mut enc)?
        };
        if let Ok(mut out) = self.out.lock() {
            *out = Some(buf);
        }
        Ok(info)
    }
}

fn load_file(path: &Path) -> Result<(Name, BTreeMap<RrKey, RecordSet>), ZoneError> {
    let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_err = |reason: String| ZoneError::Parse {
        path: path.to_path_buf(),
        reason,
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let origin = Name::from_ascii(format!("{stem}.")).ok();
    let (origin, sets) = Parser::new(text, Some(path.to_path_buf()), origin)
        .parse()
        .map_err(|e| parse_err(e.to_string()))?;
    Ok((origin.to_lowercase(), sets))
}

/// Loads `dir` (or nothing) and logs what is served, signed or not.
pub fn load_logged(dir: Option<&Path>, keys: &[ZoneKey]) -> Result<StaticZones, ZoneError> {
    let zones = match dir {
        Some(dir) => StaticZones::load_dir(dir, keys)?,
        None => StaticZones::default(),
    };
    for origin in zones.origins() {
        let signed = keys.iter().any(|k| k.zone == *origin);
        tracing::info!(zone = %origin, signed, "serving static zone");
    }
    Ok(zones)
}

/// On SIGHUP (and once a day when keys sign them) the zone files of `dir` are read again and
/// handed to `replace`; a set that does not load leaves the one in service.
pub async fn reload_on_hup(
    dir: std::path::PathBuf,
    keys: Arc<Vec<ZoneKey>>,
    replace: impl Fn(StaticZones),
    token: tokio_util::sync::CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: zone files will not be reloaded");
        return;
    };
    // Signed static zones are signed again once a day (their signatures last a week).
    let mut resign = tokio::time::interval(crate::dnssec::sign::REUSE);
    resign.tick().await;
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
            _ = resign.tick(), if !keys.is_empty() => {},
        }
        match StaticZones::load_dir(&dir, &keys) {
            Ok(z) => {
                let origins: Vec<String> = z.origins().map(|o| o.to_string()).collect();
                tracing::info!(?origins, "static zones reloaded");
                replace(z);
            }
            Err(error) => {
                tracing::warn!(%error, "static zones not reloaded: the ones in service stay")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.zone"), "@ IN A\n").unwrap();
        let err = StaticZones::load_dir(dir.path(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.zone"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("nosoa.test.zone"),
            "www 300 IN A 10.0.0.1\n",
        )
        .unwrap();
        let err = StaticZones::load_dir(dir.path(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nosoa.test.zone") && err.contains("SOA"),
            "{err}"
        );
    }
}
