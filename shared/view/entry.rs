//! One record of the view ([`Entry`]) and how it is made from an etcd key's path and value: the
//! path checked label by label and lower-cased, the value parsed as SkyDNS JSON, its host
//! classified once.
//!
//! Pure functions; imports the record model and the key rules, nothing else of the view.

use crate::key;
use crate::record::{Host, Service};

/// One record of the view: the parsed service and its classified host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The record as stored.
    pub service: Service,
    /// `service.host`, classified once at load time.
    pub host: Host,
    /// The TTL of the etcd lease the record hangs on, as granted (0: no lease, or not known):
    /// answers never claim the record for longer (as SkyDNS caps a record's TTL at its key's).
    pub lease_ttl: u32,
}

pub(super) fn parse_entry(path: &str, value: &[u8], lease_ttl: u32) -> Result<Entry, String> {
    validate_path(path).map_err(|e| e.to_string())?;
    let service = Service::parse(value).map_err(|e| e.to_string())?;
    Ok(Entry {
        host: service.host(),
        service,
        lease_ttl,
    })
}

pub(super) fn normalise_path(path: &str) -> String {
    path.to_ascii_lowercase()
}

fn validate_path(path: &str) -> Result<(), key::KeyError> {
    path.split('/').try_for_each(key::validate_label)
}
