//! Online DNSSEC signing of our own answers: the RRSIGs of an RRset, the DNSKEY set of a signed
//! domain, and denial of existence by NSEC "black lies" (RFC 4470 minimal covering, in the
//! compact form of draft-ietf-dnsop-compact-denial-of-existence, as Cloudflare and CoreDNS'
//! dnssec plugin answer).
//!
//! Data flow: the pipeline's writer groups the records it is about to send into RRsets and asks
//! [`Signers::sign`] for their signatures. A signature depends only on the RRset's content (owner,
//! type, TTL, data) and the keys, so it is kept in a bounded cache under that content: a name
//! whose records did not change is not signed again in a new snapshot generation, and a changed
//! RRset has a new key in the cache and gets a fresh signature at once. Signatures are valid from
//! an hour ago (clock skew) for [`VALIDITY`]; a cached one is used for at most [`REUSE`], so
//! every signature sent has days left. The signing itself (ring, through hickory-proto's
//! signers) runs where answers are built off the receive loops (the pipeline's workers).
//!
//! Denial: a name that exists but lacks the type gets `NSEC name \000.name` with every type we
//! could serve there except the one asked (never CNAME, never NS below the apex, which would
//! read as a delegation); a name that does not exist gets NOERROR with `NSEC name \000.name
//! RRSIG NSEC NXNAME`. One NSEC, one signature, no zone walking, the cost of a positive answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::rdata::{DNSSECRData, SigInput, DNSKEY, NSEC, RRSIG};
use hickory_proto::dnssec::{DnssecSigner, PublicKey, TBS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::keys::{KeyError, ZoneKey};

/// How long a signature is valid.
pub const VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a signature is reused before the RRset is signed again.
pub const REUSE: Duration = Duration::from_secs(24 * 3600);
/// How far back inception is set, for validators whose clocks run behind.
const SKEW: u32 = 3600;
/// What the signature cache may hold, in approximate bytes.
const CACHE_BYTES: u64 = 64 << 20;

/// The NXNAME meta type (compact denial of existence): "this name does not exist".
pub const NXNAME: RecordType = RecordType::Unknown(128);

/// The signing keys of every signed domain, and their signatures.
pub struct Signers {
    zones: Vec<ZoneSigner>,
    cache: moka::sync::Cache<Vec<u8>, Arc<[Record]>>,
}

impl std::fmt::Debug for Signers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let zones: Vec<&Name> = self.zones.iter().map(|z| &z.zone).collect();
        f.debug_struct("Signers").field("zones", &zones).finish()
    }
}

/// One domain's keys.
struct ZoneSigner {
    zone: Name,
    /// Sign the DNSKEY set: the key-signing keys (every key when there is none).
    ksk: Vec<DnssecSigner>,
    /// Sign everything else: the zone-signing keys (the KSKs when there is none).
    zsk: Vec<DnssecSigner>,
    dnskeys: Vec<DNSKEY>,
}

impl Signers {
    /// No keys: nothing is signed.
    pub fn none() -> Signers {
        Signers {
            zones: Vec::new(),
            cache: moka::sync::Cache::new(0),
        }
    }

    /// Signers for `keys`, grouped by zone. Every key is published in its zone's DNSKEY set.
    pub fn new(keys: &[ZoneKey]) -> Result<Signers, KeyError> {
        let mut zones: Vec<ZoneSigner> = Vec::new();
        for key in keys {
            let i = match zones.iter().position(|z| z.zone == key.zone) {
                Some(i) => i,
                None => {
                    zones.push(ZoneSigner {
                        zone: key.zone.clone(),
                        ksk: Vec::new(),
                        zsk: Vec::new(),
                        dnskeys: Vec::new(),
                    });
                    zones.len() - 1
                }
            };
            let z = &mut zones[i];
            z.dnskeys.push(key.dnskey.clone());
            if key.is_ksk() {
                z.ksk.push(key.signer(VALIDITY)?);
            } else {
                z.zsk.push(key.signer(VALIDITY)?);
            }
        }
        for z in &mut zones {
            // A single kind of key signs both (a combined signing key, or ZSKs only).
            if z.zsk.is_empty() {
                for k in keys.iter().filter(|k| k.zone == z.zone && k.is_ksk()) {
                    z.zsk.push(k.signer(VALIDITY)?);
                }
            }
            if z.ksk.is_empty() {
                for k in keys.iter().filter(|k| k.zone == z.zone) {
                    z.ksk.push(k.signer(VALIDITY)?);
                }
            }
        }
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_BYTES)
            // The key (the RRset's canonical content) and about 400 bytes per signature record.
            .weigher(|k: &Vec<u8>, v: &Arc<[Record]>| {
                u32::try_from(k.len() + v.len() * 400).unwrap_or(u32::MAX)
            })
            .time_to_live(REUSE)
            .build();
        Ok(Signers { zones, cache })
    }

    /// The signed domains.
    pub fn zones(&self) -> impl Iterator<Item = &Name> {
        self.zones.iter().map(|z| &z.zone)
    }

    /// The signed domain holding `name` (any letter case: names compare without it), most
    /// specific first.
    fn zone_of(&self, name: &Name) -> Option<&ZoneSigner> {
        self.zones
            .iter()
            .filter(|z| z.zone.zone_of(name))
            .max_by_key(|z| z.zone.num_labels())
    }

    /// Whether a name is inside a signed domain.
    pub fn signs(&self, name: &Name) -> bool {
        self.zone_of(name).is_some()
    }

    /// The DNSKEY records of the signed domain whose apex is `apex` (any letter case), owned by
    /// `owner`.
    pub fn dnskeys(&self, apex: &Name, owner: &Name, ttl: u32) -> Option<Vec<Record>> {
        let z = self.zones.iter().find(|z| z.zone == *apex)?;
        Some(
            z.dnskeys
                .iter()
                .map(|k| {
                    Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::DNSSEC(DNSSECRData::DNSKEY(k.clone())),
                    )
                })
                .collect(),
        )
    }

    /// The RRSIGs of one RRset (records of one owner and type, equal TTLs), owned by its owner;
    /// empty when the name is in no signed domain or signing fails (logged).
    pub fn sign(&self, rrset: &[&Record]) -> Arc<[Record]> {
        let Some(first) = rrset.first() else {
            return Arc::from([]);
        };
        let Some(zone) = self.zone_of(&first.name) else {
            return Arc::from([]);
        };
        let Ok(canonical) = Canonical::of(&first.name, rrset) else {
            return Arc::from([]);
        };
        let key = canonical.key();
        let owner = first.name.clone();
        self.cache.get_with(key, || {
            let signers = if first.record_type() == RecordType::DNSKEY {
                &zone.ksk
            } else {
                &zone.zsk
            };
            let sigs: Vec<Record> = signers
                .iter()
                .filter_map(|s| match rrsig(s, &owner, &canonical) {
                    Ok(data) => Some(Record::from_rdata(
                        owner.clone(),
                        first.ttl,
                        RData::DNSSEC(DNSSECRData::RRSIG(data)),
                    )),
                    Err(error) => {
                        tracing::warn!(%error, name = %owner, "signing an RRset failed");
                        None
                    }
                })
                .collect();
            Arc::from(sigs)
        })
    }

    /// The most the signatures of one RRset at `name` take, their owners written in
    /// `owner_len` bytes (0 outside signed domains).
    pub fn room(&self, name: &Name, owner_len: usize) -> usize {
        let Some(z) = self.zone_of(name) else {
            return 0;
        };
        let one = |s: &DnssecSigner| {
            let sig = match s.key().algorithm() {
                hickory_proto::dnssec::Algorithm::RSASHA256 => {
                    s.dnskey().public_key().public_bytes().len()
                }
                _ => 64,
            };
            owner_len + 10 + 18 + z.zone.len() + 1 + sig
        };
        let zsk: usize = z.zsk.iter().map(one).sum();
        let ksk: usize = z.ksk.iter().map(one).sum();
        zsk.max(ksk)
    }

    /// Signatures computed and kept (for the metrics).
    pub fn cached(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// The NSEC that denies `qtype` at `owner` (a name that exists), or the name itself when
/// `exists` is false; `apex` says whether the name is its domain's apex.
pub fn denial(owner: &Name, qtype: RecordType, exists: bool, apex: bool, ttl: u32) -> Record {
    let next = owner
        .prepend_label(&b"\0"[..])
        .unwrap_or_else(|_| owner.clone());
    let types: Vec<RecordType> = if exists {
        let mut served = vec![
            RecordType::A,
            RecordType::AAAA,
            RecordType::TXT,
            RecordType::SRV,
            RecordType::MX,
            RecordType::PTR,
        ];
        if apex {
            served.extend([RecordType::SOA, RecordType::NS, RecordType::DNSKEY]);
        }
        served.retain(|t| *t != qtype);
        served.extend([RecordType::RRSIG, RecordType::NSEC]);
        served
    } else {
        vec![RecordType::RRSIG, RecordType::NSEC, NXNAME]
    };
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, types))),
    )
}

/// An RRset in canonical form (RFC 4034 6.2, 6.3): the lower-case owner in wire form, the
/// type and TTL, and each RDATA in canonical form, sorted, duplicates removed.
struct Canonical {
    owner: Vec<u8>,
    rtype: RecordType,
    ttl: u32,
    rdatas: Vec<Vec<u8>>,
}

impl Canonical {
    /// `name`: the RRset's owner, in any letter case (it is written lower case).
    fn of(name: &Name, rrset: &[&Record]) -> Result<Canonical, hickory_proto::ProtoError> {
        let first = rrset
            .first()
            .ok_or_else(|| hickory_proto::ProtoError::from("an empty RRset"))?;
        let mut rdatas: Vec<Vec<u8>> = Vec::with_capacity(rrset.len());
        for r in rrset {
            let mut buf = Vec::with_capacity(32);
            let mut enc = BinEncoder::new(&mut buf);
            enc.set_canonical_form(true);
            r.data.emit(&mut enc)?;
            rdatas.push(buf);
        }
        rdatas.sort();
        rdatas.dedup();
        let mut owner = Vec::with_capacity(name.len() + 1);
        {
            let mut enc = BinEncoder::new(&mut owner);
            enc.set_name_encoding(NameEncoding::UncompressedLowercase);
            name.emit(&mut enc)?;
        }
        Ok(Canonical {
            owner,
            rtype: first.record_type(),
            ttl: first.ttl,
            rdatas,
        })
    }

    /// What a signature depends on: all of it.
    fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(
            self.owner.len() + 8 + self.rdatas.iter().map(|d| d.len() + 2).sum::<usize>(),
        );
        key.extend_from_slice(&self.owner);
        key.extend_from_slice(&u16::from(self.rtype).to_be_bytes());
        key.extend_from_slice(&self.ttl.to_be_bytes());
        for d in &self.rdatas {
            key.extend_from_slice(&(d.len() as u16).to_be_bytes());
            key.extend_from_slice(d);
        }
        key
    }

    /// The data to be signed (RFC 4034 3.1.8.1): the RRSIG's fields, then every record as
    /// owner | type | class | original TTL | RDATA length | RDATA. Written here rather than by
    /// hickory's `TBS::from_input`, whose encoder stops at 64 KiB: the part of a 5,000-address
    /// RRset that fits a TCP message is larger than that in canonical form.
    fn tbs(&self, input: &SigInput) -> Result<TBS, hickory_proto::ProtoError> {
        let mut head = Vec::with_capacity(64);
        {
            let mut enc = BinEncoder::new(&mut head);
            enc.set_canonical_form(true);
            enc.set_name_encoding(NameEncoding::Uncompressed);
            input.emit(&mut enc)?;
        }
        let each = self.owner.len() + 10;
        let mut data = Vec::with_capacity(
            head.len() + self.rdatas.iter().map(|d| d.len() + each).sum::<usize>(),
        );
        data.extend_from_slice(&head);
        for d in &self.rdatas {
            data.extend_from_slice(&self.owner);
            data.extend_from_slice(&u16::from(self.rtype).to_be_bytes());
            data.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
            data.extend_from_slice(&input.original_ttl.to_be_bytes());
            let len = u16::try_from(d.len())
                .map_err(|_| hickory_proto::ProtoError::from("RDATA longer than 65,535"))?;
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(d);
        }
        Ok(TBS::from(data.as_slice()))
    }
}

fn rrsig(
    signer: &DnssecSigner,
    owner: &Name,
    rrset: &Canonical,
) -> Result<RRSIG, hickory_proto::ProtoError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;
    let input = SigInput {
        type_covered: rrset.rtype,
        algorithm: signer.key().algorithm(),
        num_labels: owner.num_labels(),
        original_ttl: rrset.ttl,
        sig_expiration: SerialNumber::new(now.wrapping_add(VALIDITY.as_secs() as u32)),
        sig_inception: SerialNumber::new(now.wrapping_sub(SKEW)),
        key_tag: signer.calculate_key_tag()?,
        signer_name: signer.signer_name().clone(),
    };
    let sig = signer.sign(&rrset.tbs(&input)?)?;
    Ok(RRSIG::from_sig(input, sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME, SRV};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn our_data_to_be_signed_is_hickorys() {
        let owner = name("Redis.WebApp.dev.");
        let sets: Vec<Vec<Record>> = vec![
            (0..5u8)
                .rev()
                .map(|i| Record::from_rdata(owner.clone(), 30, RData::A(A::new(10, 0, 0, i))))
                .collect(),
            vec![
                Record::from_rdata(
                    owner.clone(),
                    60,
                    RData::SRV(SRV::new(10, 50, 6379, name("b.redis.webapp.dev."))),
                ),
                Record::from_rdata(
                    owner.clone(),
                    60,
                    RData::SRV(SRV::new(10, 50, 6379, name("a.redis.webapp.dev."))),
                ),
            ],
            vec![Record::from_rdata(
                owner.clone(),
                60,
                RData::CNAME(CNAME(name("Other.WebApp.dev."))),
            )],
        ];
        let lower = owner.to_lowercase();
        for set in sets {
            let refs: Vec<&Record> = set.iter().collect();
            // The owner as asked (mixed case): written lower case all the same.
            let c = Canonical::of(&owner, &refs).unwrap();
            let input = SigInput {
                type_covered: c.rtype,
                algorithm: hickory_proto::dnssec::Algorithm::ECDSAP256SHA256,
                num_labels: lower.num_labels(),
                original_ttl: c.ttl,
                sig_expiration: SerialNumber::new(2000),
                sig_inception: SerialNumber::new(1000),
                key_tag: 11263,
                signer_name: name("webapp.dev."),
            };
            let lowered: Vec<Record> = set
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.name = lower.clone();
                    r
                })
                .collect();
            let theirs = TBS::from_input(&lower, DNSClass::IN, &input, lowered.iter()).unwrap();
            assert_eq!(c.tbs(&input).unwrap().as_ref(), theirs.as_ref());
        }
        // Letter case inside RDATA names does not change the canonical form or its order
        // (hickory's own TBS sorts mixed-case targets case-sensitively, against RFC 4034 6.3).
        let srv = |t: &str| {
            Record::from_rdata(owner.clone(), 60, RData::SRV(SRV::new(10, 50, 1, name(t))))
        };
        let mixed = [srv("B.redis.webapp.dev."), srv("a.redis.webapp.dev.")];
        let plain = [srv("a.redis.webapp.dev."), srv("b.redis.webapp.dev.")];
        let of = |rs: &[Record]| {
            let refs: Vec<&Record> = rs.iter().collect();
            Canonical::of(&lower, &refs).unwrap().key()
        };
        assert_eq!(of(&mixed), of(&plain));
    }

    #[test]
    fn signatures_are_kept_per_content_and_made_again_when_it_changes() {
        let signers = Signers::new(&[crate::dnssec::keys::test_key()]).unwrap();
        let owner = name("redis.webapp.dev.");
        let one = [Record::from_rdata(
            owner.clone(),
            30,
            RData::A(A::new(10, 0, 0, 1)),
        )];
        let refs: Vec<&Record> = one.iter().collect();
        let a = signers.sign(&refs);
        let b = signers.sign(&refs);
        assert_eq!(a.len(), 1);
        assert!(Arc::ptr_eq(&a, &b), "the second is the cached one");
        let two = [Record::from_rdata(owner, 30, RData::A(A::new(10, 0, 0, 2)))];
        let refs: Vec<&Record> = two.iter().collect();
        let c = signers.sign(&refs);
        assert_ne!(a[0].data, c[0].data);
        // Outside the signed domain: nothing.
        let out = [Record::from_rdata(
            name("x.example.org."),
            30,
            RData::A(A::new(1, 2, 3, 4)),
        )];
        let refs: Vec<&Record> = out.iter().collect();
        assert!(signers.sign(&refs).is_empty());
    }

    #[test]
    fn denials_never_claim_cname_or_a_delegation() {
        let owner = name("x.webapp.dev.");
        let bits = |r: &Record| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(n)) => (
                n.next_domain_name().to_string(),
                n.type_bit_maps().collect::<Vec<_>>(),
            ),
            other => panic!("{other:?}"),
        };
        let (next, types) = bits(&denial(&owner, RecordType::AAAA, true, false, 30));
        assert_eq!(next, "\\000.x.webapp.dev.");
        assert!(!types.contains(&RecordType::AAAA));
        assert!(types.contains(&RecordType::A));
        for t in [RecordType::CNAME, RecordType::NS, RecordType::SOA, NXNAME] {
            assert!(!types.contains(&t), "{t}");
        }
        let (_, types) = bits(&denial(
            &name("webapp.dev."),
            RecordType::TXT,
            true,
            true,
            30,
        ));
        assert!(types.contains(&RecordType::SOA) && types.contains(&RecordType::NS));
        let (_, types) = bits(&denial(&owner, RecordType::A, false, false, 30));
        assert_eq!(types, [RecordType::RRSIG, RecordType::NSEC, NXNAME]);
    }
}
