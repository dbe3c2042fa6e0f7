//! Reading the whole prefix into a new snapshot: the load at start, and again after a compaction
//! of etcd's history or a watch response that could not be applied.
//!
//! Pages of [`DEFAULT_PAGE`] records (etcd counts the rest of the range for every page, so pages
//! are large), each asked for while the one before is applied (decoded on another worker), all
//! at the first page's revision, into a [`Loader`] that builds the snapshot's compact base in
//! one pass. Part of the watcher's shell ([`super::watch`]); imports the snapshot and etcd's
//! settings.

use etcd_client::GetOptions;
use std::time::Instant;
use tracing::{debug, warn};

use super::layers::Loader;
use super::snapshot::{Applied, Snapshot};
use super::ViewError;
use crate::etcd::{EtcdError, REQUEST_TIMEOUT};
use crate::key::Prefix;

/// Records read per request when loading, by default. etcd counts every key left in the range for
/// each page, so pages must be large for a million records to load in seconds, not minutes
/// (20,000 a page: 5.8 s for 1,000,000 records that etcd hands over in one request in 2.3 s;
/// 100,000: 2.5 s). A page too large to decode is asked again at half the size, down to one
/// record. A page is held in memory while it is applied: about 20 MB at 100,000.
pub const DEFAULT_PAGE: i64 = 100_000;

/// The largest message accepted from etcd, a load page or a watch response (gRPC's default,
/// 4 MiB, is less than etcd sends for 100,000 deletes in one request: 5.3 MB). Past it (several
/// million keys changed in one request) the view loads the prefix again.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Whether an etcd error is a message past the decode limit.
pub(crate) fn too_large(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("message length too large"))
}

/// Reads every record under the prefix into a new snapshot, page by page, all at one revision;
/// the snapshot, that revision and the etcd cluster's id. The next page is asked for (and decoded, on another worker)
/// while this one is applied. A page too large to decode is asked again with half as many records
/// (`page` keeps the size that worked). `previous`: the snapshot this one replaces, whose invalid
/// values are not reported again.
pub(super) async fn load(
    client: &mut etcd_client::Client,
    prefix: &Prefix,
    page: &mut i64,
    previous: Option<&Snapshot>,
    leases: &mut super::Leases,
) -> Result<(Snapshot, i64, u64), ViewError> {
    let kv = client
        .kv_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    // Everything that starts with "/skydns/" sorts below "/skydns0".
    let end = format!("{}0", prefix.as_str()).into_bytes();
    let fetch = |from: Vec<u8>, revision: i64, limit: i64| {
        let mut kv = kv.clone();
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(limit);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            tokio::time::timeout(REQUEST_TIMEOUT * 10, kv.get(from, Some(opts))).await
        }))
    };
    let mut from = prefix.range_start().into_bytes();
    let mut revision = 0;
    let mut cluster_id = 0;
    let mut pending = fetch(from.clone(), revision, *page);
    let mut loader = Loader::after(previous);
    let started = Instant::now();
    loop {
        let resp = match (&mut pending).await {
            Err(e) => return Err(ViewError::Interrupted(e.to_string())),
            Ok(Err(_)) => return Err(EtcdError::Timeout(REQUEST_TIMEOUT * 10).into()),
            Ok(Ok(Err(e))) if too_large(&e) && *page > 1 => {
                *page = (*page / 2).max(1);
                debug!(
                    page = *page,
                    "a load page was too large; asking for fewer records"
                );
                pending = fetch(from.clone(), revision, *page);
                continue;
            }
            Ok(Ok(r)) => r?,
        };
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
            cluster_id = resp.header().map_or(0, |h| h.cluster_id());
            // The first page says how many records there are: room for all of them at once,
            // the paths estimated from this page's.
            let keys: usize = resp.kvs().iter().map(|kv| kv.key().len()).sum();
            let records = usize::try_from(resp.count()).unwrap_or(0);
            let per_key = keys / resp.kvs().len().max(1);
            let prefix_len = prefix.as_str().len() + 1;
            // At most 16M records at once (etcd holds a few million at its default quota).
            let records = records.min(1 << 24);
            loader.reserve(
                records,
                records.saturating_mul(per_key.saturating_sub(prefix_len) + 1),
            );
        }
        let more = match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
                true
            }
            _ => false,
        };
        // The next page is on its way while this one is applied.
        if more {
            pending = fetch(from.clone(), revision, *page);
        }
        let ids: Vec<i64> = resp.kvs().iter().map(|kv| kv.lease()).collect();
        leases.learn(client, &ids).await;
        for kv in resp.kvs() {
            if let Some(path) = path_of(prefix, kv.key()) {
                let ttl = leases.ttl(kv.lease());
                report(
                    &path,
                    kv.mod_revision(),
                    loader.put(&path, kv.value(), kv.mod_revision(), ttl),
                );
            }
        }
        if !more {
            break;
        }
    }
    debug!(
        records = loader.len(),
        ms = started.elapsed().as_millis() as u64,
        "prefix read; building the view"
    );
    Ok((loader.finish(), revision, cluster_id))
}

/// Gives the memory freed after a load (etcd's pages, the old view) back to the system: glibc
/// keeps freed small allocations in its heap, so without this the peak of a load stays resident.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub(super) fn path_of(prefix: &Prefix, key: &[u8]) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    prefix.path_of_key(key).map(str::to_string)
}

pub(super) fn apply_put(
    snap: &mut Snapshot,
    path: &str,
    value: &[u8],
    mod_revision: i64,
    lease_ttl: u32,
) {
    report(
        path,
        mod_revision,
        snap.put_leased(path, value, mod_revision, lease_ttl),
    );
}

pub(super) fn report(path: &str, mod_revision: i64, applied: Applied) {
    if let Applied::Skipped {
        first: true,
        reason,
    } = applied
    {
        warn!(key = path, error = %reason, revision = mod_revision, "skipping malformed record");
    }
}
