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
