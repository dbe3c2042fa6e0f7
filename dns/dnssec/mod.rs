//! DNSSEC: the keys (`--dnssec-key`, the pairs `dnssec-keygen` writes) and online signing of our
//! answers with them: RRSIGs of RRsets (cached by content), the DNSKEY set, NSEC black lies.
//!
//! A tier below the pipeline, beside `authority` and `upstream`: it imports `proto` and
//! hickory-proto's DNSSEC; the pipeline (its writer, its cache) and the static zones (which
//! hickory-server signs with these keys) import it.
//!
//! - [`keys`]: [`ZoneKey`], a key pair read and checked;
//! - [`sign`]: [`Signers`], the signatures and the denial records.

pub mod keys;
pub mod sign;

pub use keys::ZoneKey;
pub use sign::Signers;

/// The `--dnssec-key` pairs, each logged with the DS record its parent zone should publish; the
/// first that does not load is the error.
pub fn load(bases: &[std::path::PathBuf]) -> Result<Vec<ZoneKey>, keys::KeyError> {
    let mut out = Vec::new();
    for base in bases {
        let key = ZoneKey::load(base)?;
        let ds = key.ds().map(|ds| ds.to_string()).unwrap_or_default();
        tracing::info!(
            zone = %key.zone,
            tag = key.tag,
            algorithm = %key.algorithm(),
            ksk = key.is_ksk(),
            ds = %format!("{} IN DS {ds}", key.zone),
            "DNSSEC signing key loaded"
        );
        out.push(key);
    }
    Ok(out)
}

/// The first key whose zone is not served (`served` says which are): a key must sign a served
/// domain or a static zone.
pub fn unowned(
    keys: &[ZoneKey],
    served: impl Fn(&hickory_proto::rr::Name) -> bool,
) -> Option<&ZoneKey> {
    keys.iter().find(|k| !served(&k.zone))
}
