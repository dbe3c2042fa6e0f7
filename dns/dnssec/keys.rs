//! DNSSEC keys as BIND writes them: `--dnssec-key BASE` names the pair `BASE.key` (the DNSKEY
//! record) and `BASE.private` (`Private-key-format: v1.3`), as `dnssec-keygen` writes them and
//! SkyDNS's `-dnssec` reads them.
//!
//! [`ZoneKey::load`] reads both files, turns the private fields into a ring key pair through
//! hickory-proto's signing keys (ECDSA P-256/SHA-256 = 13, Ed25519 = 15, RSA/SHA-256 = 8), and
//! checks that the public half derived from the private key is the one the `.key` file
//! publishes: a mismatched pair is an error at start, never a zone that fails to validate. The
//! rest of the server only sees [`ZoneKey`]: its zone, its DNSKEY, and a signer made from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use data_encoding::BASE64;
use hickory_proto::dnssec::crypto::{EcdsaSigningKey, Ed25519SigningKey, RsaSigningKey};
use hickory_proto::dnssec::rdata::{DNSKEY, DS};
use hickory_proto::dnssec::{
    Algorithm, DigestType, DnssecSigner, PublicKey, PublicKeyBuf, SigningKey, Verifier,
};
use hickory_proto::rr::Name;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// Why a key pair could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what `dnssec-keygen` writes.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One zone's key pair, loaded and checked.
pub struct ZoneKey {
    /// The zone (the owner of the DNSKEY record), lower case.
    pub zone: Name,
    /// The public key as published.
    pub dnskey: DNSKEY,
    /// Its key tag.
    pub tag: u16,
    private: Private,
    base: PathBuf,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneKey")
            .field("zone", &self.zone)
            .field("tag", &self.tag)
            .field("algorithm", &self.dnskey.algorithm())
            .finish()
    }
}

const MISMATCH: &str = "this private key does not belong to the public key of the .key file";

/// The private half, as read.
enum Private {
    Ecdsa(Vec<u8>),
    Ed25519(Vec<u8>),
    /// PKCS#1 DER of the RSA private key.
    Rsa(Vec<u8>),
}

impl ZoneKey {
    /// Reads `BASE.key` and `BASE.private` (a `.key` or `.private` suffix on `base` is ignored).
    pub fn load(base: &Path) -> Result<ZoneKey, KeyError> {
        let base = strip_suffix(base);
        let key_path = with_suffix(&base, "key");
        let private_path = with_suffix(&base, "private");
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                path: path.clone(),
                source,
            })
        };
        let (zone, published) =
            parse_key_file(&read(&key_path)?).map_err(|reason| KeyError::Format {
                path: key_path.clone(),
                reason,
            })?;
        let bad = |reason: String| KeyError::Format {
            path: private_path.clone(),
            reason,
        };
        let private = parse_private(&read(&private_path)?).map_err(bad)?;
        if private.algorithm != published.algorithm() {
            return Err(bad(format!(
                "algorithm {} here, {} in the .key file",
                private.algorithm,
                published.algorithm()
            )));
        }
        let key = ZoneKey {
            zone,
            tag: published
                .calculate_key_tag()
                .map_err(|e| bad(e.to_string()))?,
            dnskey: published,
            private: private.key,
            base: base.clone(),
        };
        // The pair must match: the public half of the private key is the published one.
        let derived = key
            .signing_key()?
            .to_public_key()
            .map_err(|e| bad(e.to_string()))?;
        if derived.public_bytes() != key.dnskey.public_key().public_bytes() {
            return Err(bad(MISMATCH.into()));
        }
        Ok(key)
    }

    /// A key pair for signing (ring's, through hickory-proto).
    pub fn signing_key(&self) -> Result<Box<dyn SigningKey>, KeyError> {
        let bad = |reason: String| KeyError::Format {
            path: with_suffix(&self.base, "private"),
            reason,
        };
        let public = self.dnskey.public_key().public_bytes();
        Ok(match &self.private {
            Private::Ecdsa(d) => {
                // ring wants the uncompressed point: 0x04 | X | Y.
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(public);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    d,
                    &point,
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(|e| bad(format!("{MISMATCH} (ECDSA P-256: {e})")))?;
                Box::new(EcdsaSigningKey::from_ecdsa(
                    pair,
                    Algorithm::ECDSAP256SHA256,
                ))
            }
            Private::Ed25519(seed) => {
                let pair = Ed25519KeyPair::from_seed_and_public_key(seed, public)
                    .map_err(|e| bad(format!("{MISMATCH} (Ed25519: {e})")))?;
                Box::new(Ed25519SigningKey::from_ed25519(pair))
            }
            Private::Rsa(der) => {
                let der = rustls_pki_types::PrivatePkcs1KeyDer::from(der.clone());
                Box::new(
                    RsaSigningKey::from_pkcs1(&der, Algorithm::RSASHA256)
                        .map_err(|e| bad(format!("not an RSA key pair: {e}")))?,
                )
            }
        })
    }

    /// A signer for this key; signatures last `validity`.
    pub fn signer(&self, validity: Duration) -> Result<DnssecSigner, KeyError> {
        Ok(DnssecSigner::new(
            self.dnskey.clone(),
            self.signing_key()?,
            self.zone.clone(),
            validity,
        ))
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.dnskey.algorithm()
    }

    /// Whether this is a key-signing key (the SEP flag: 257).
    pub fn is_ksk(&self) -> bool {
        self.dnskey.secure_entry_point()
    }

    /// The DS record to publish in the parent zone (SHA-256 digest).
    pub fn ds(&self) -> Option<DS> {
        let digest = self.dnskey.to_digest(&self.zone, DigestType::SHA256).ok()?;
        Some(DS::new(
            self.tag,
            self.dnskey.algorithm(),
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        ))
    }
}

fn strip_suffix(base: &Path) -> PathBuf {
    match base.extension().and_then(|e| e.to_str()) {
        Some("key" | "private") => base.with_extension(""),
        _ => base.to_path_buf(),
    }
}

/// `Kzone.+013+12345` + `key`: the base name has dots of its own, so no `with_extension`.
fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// The DNSKEY line of a `.key` file: `zone. [ttl] [IN] DNSKEY flags 3 alg base64...`.
fn parse_key_file(text: &str) -> Result<(Name, DNSKEY), String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with(';'))
        .ok_or("no DNSKEY record")?;
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let at = tokens
        .iter()
        .position(|t| t.eq_ignore_ascii_case("DNSKEY"))
        .ok_or("no DNSKEY record")?;
    let owner = tokens.first().ok_or("no owner name")?;
    let zone = Name::from_ascii(owner)
        .map_err(|e| format!("owner {owner:?}: {e}"))?
        .to_lowercase();
    if !zone.is_fqdn() {
        return Err(format!("owner {owner:?} is not absolute"));
    }
    let field = |i: usize, what: &str| {
        tokens
            .get(at + i)
            .copied()
            .ok_or_else(|| format!("the DNSKEY record has no {what}"))
    };
    let flags: u16 = field(1, "flags")?
        .parse()
        .map_err(|_| "bad DNSKEY flags".to_string())?;
    if field(2, "protocol")? != "3" {
        return Err("DNSKEY protocol is not 3".into());
    }
    let algorithm = algorithm(field(3, "algorithm")?)?;
    let b64: String = tokens.get(at + 4..).unwrap_or_default().concat();
    let public = BASE64
        .decode(b64.as_bytes())
        .map_err(|e| format!("the public key is not base64: {e}"))?;
    if flags & 0x0100 == 0 {
        return Err("not a zone key (flags 256 or 257 expected)".into());
    }
    Ok((
        zone,
        DNSKEY::with_flags(flags, PublicKeyBuf::new(public, algorithm)),
    ))
}

fn algorithm(number: &str) -> Result<Algorithm, String> {
    match number {
        "13" => Ok(Algorithm::ECDSAP256SHA256),
        "15" => Ok(Algorithm::ED25519),
        "8" => Ok(Algorithm::RSASHA256),
        other => Err(format!(
            "algorithm {other} is not supported (13 ECDSAP256SHA256, 15 ED25519, 8 RSASHA256)"
        )),
    }
}

struct ParsedPrivate {
    algorithm: Algorithm,
    key: Private,
}

/// `Private-key-format: v1.x` with `Algorithm:` and the key's fields.
fn parse_private(text: &str) -> Result<ParsedPrivate, String> {
    let mut fields = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let format = fields
        .get("private-key-format")
        .ok_or("not a BIND private key file (no Private-key-format)")?;
    if !format.starts_with("v1.") {
        return Err(format!("private key format {format} is not v1.x"));
    }
    let number = fields
        .get("algorithm")
        .and_then(|a| a.split_whitespace().next())
        .ok_or("no Algorithm")?;
    let algorithm = algorithm(number)?;
    let b64 = |name: &str| -> Result<Vec<u8>, String> {
        let v = fields.get(name).ok_or_else(|| format!("no {name} field"))?;
        BASE64
            .decode(v.as_bytes())
            .map_err(|e| format!("{name} is not base64: {e}"))
    };
    let key = match algorithm {
        // BIND writes the scalar without its leading zero bytes (31 bytes in one key of 256):
        // ring wants all 32.
        Algorithm::ECDSAP256SHA256 => {
            let d = b64("privatekey")?;
            if d.len() > 32 {
                return Err(format!(
                    "PrivateKey is {} bytes, more than ECDSA P-256's 32",
                    d.len()
                ));
            }
            let mut scalar = vec![0u8; 32 - d.len()];
            scalar.extend_from_slice(&d);
            Private::Ecdsa(scalar)
        }
        Algorithm::ED25519 => Private::Ed25519(b64("privatekey")?),
        _ => {
            let parts = [
                "modulus",
                "publicexponent",
                "privateexponent",
                "prime1",
                "prime2",
                "exponent1",
                "exponent2",
                "coefficient",
            ]
            .iter()
            .map(|name| b64(name))
            .collect::<Result<Vec<_>, _>>()?;
            Private::Rsa(rsa_private_key_der(&parts))
        }
    };
    Ok(ParsedPrivate { algorithm, key })
}

/// PKCS#1 `RSAPrivateKey` (RFC 8017 A.1.2) in DER: version 0 and the eight integers, in the
/// order BIND's file lists them. Only the ASN.1 framing is done here; ring reads and checks it.
fn rsa_private_key_der(parts: &[Vec<u8>]) -> Vec<u8> {
    fn length(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    fn integer(out: &mut Vec<u8>, magnitude: &[u8]) {
        let trimmed: &[u8] = {
            let skip = magnitude.iter().take_while(|b| **b == 0).count();
            &magnitude[skip.min(magnitude.len().saturating_sub(1))..]
        };
        let pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        length(out, trimmed.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(trimmed);
    }
    let mut body = Vec::new();
    integer(&mut body, &[0]);
    for p in parts {
        integer(&mut body, p);
    }
    let mut out = vec![0x30];
    length(&mut out, body.len());
    out.extend(body);
    out
}

/// A key pair for unit tests elsewhere: BIND's files for `webapp.dev.`, ECDSA P-256.
#[cfg(test)]
pub fn test_key() -> ZoneKey {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("Kwebapp.dev.+013+11263");
    std::fs::write(with_suffix(&base, "key"), tests::EC_KEY).expect("write");
    std::fs::write(with_suffix(&base, "private"), tests::EC_PRIVATE).expect("write");
    ZoneKey::load(&base).expect("test key loads")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by `dnssec-keygen -a ECDSAP256SHA256 -f KSK webapp.dev` (BIND 9.18).
    pub(super) const EC_KEY: &str = "; This is a key-signing key, keyid 11263, for webapp.dev.\n\
        webapp.dev. IN DNSKEY 257 3 13 CRuUc/236aLiKz6KWxC9q69UiSC1iWQgs4MxoFF34MSu9+mVOOYwW5Fy \
        RAv4aLKD5q250K/DB5CZfA/uFiRmew==\n";
    pub(super) const EC_PRIVATE: &str =
        "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n\
        PrivateKey: fmGHXdy8kiqxUKX+mP6r8UU/yQAvQLbEGqjlJyJdrNE=\nCreated: 20261124031455\n";
    const ED_KEY: &str =
        "webapp.dev. IN DNSKEY 257 3 15 paLhhYiOLurYbj2cOgVtam0kEwJHfhyWXbA//WJ+6Zw=\n";
    const ED_PRIVATE: &str = "Private-key-format: v1.3\nAlgorithm: 15 (ED25519)\n\
        PrivateKey: AoYo1Akz1OE8E5oTeKGTEa9NC3wU3UcpKAVlEzTAdtI=\n";

    fn write(dir: &Path, base: &str, key: &str, private: &str) -> PathBuf {
        let base = dir.join(base);
        std::fs::write(with_suffix(&base, "key"), key).unwrap();
        std::fs::write(with_suffix(&base, "private"), private).unwrap();
        base
    }

    #[test]
    fn bind_key_pairs_load_with_their_tags() {
        let dir = tempfile::tempdir().unwrap();
        let ec = ZoneKey::load(&write(
            dir.path(),
            "Kwebapp.dev.+013+11263",
            EC_KEY,
            EC_PRIVATE,
        ))
        .unwrap();
        assert_eq!(ec.zone.to_string(), "webapp.dev.");
        assert_eq!(ec.tag, 11263);
        assert!(ec.is_ksk());
        let ed = ZoneKey::load(&write(
            dir.path(),
            "Kwebapp.dev.+015+52783",
            ED_KEY,
            ED_PRIVATE,
        ))
        .unwrap();
        assert_eq!(ed.tag, 52783);
        assert_eq!(ed.ds().unwrap().key_tag(), 52783);
        // The .private path works as the base too.
        let p = dir.path().join("Kwebapp.dev.+015+52783.private");
        assert_eq!(ZoneKey::load(&p).unwrap().tag, 52783);
    }

    #[test]
    fn a_private_key_written_without_its_leading_zero_loads() {
        // dnssec-keygen (BIND 9.18) wrote this scalar in 31 bytes: its first byte is zero.
        let key = "x391.test. IN DNSKEY 257 3 13 04T3r1QKiRbSSLEDxyrV3zdVvPNEBoAFtfTQYIjquanPEgNazJ2tnrM1 \
            0N5SVwDg24BPw6yFarlq9DyR8DTwIA==\n";
        let private = "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n\
            PrivateKey: 1vbAsEC4fYvGR1KYADQZGWygvSIQ9KrDgueE/xIwjw==\n";
        let dir = tempfile::tempdir().unwrap();
        let k = ZoneKey::load(&write(dir.path(), "Kx391.test.+013+15437", key, private)).unwrap();
        assert_eq!(k.tag, 15437);
        assert!(k.signing_key().is_ok());
        let long = private.replace("1vbAsEC4", "AAAA1vbAsEC4");
        let err = ZoneKey::load(&write(dir.path(), "Klong", key, &long))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than ECDSA P-256's 32"), "{err}");
    }

    #[test]
    fn a_mismatched_or_broken_pair_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mixed = write(dir.path(), "Kmixed", EC_KEY, ED_PRIVATE);
        let err = ZoneKey::load(&mixed).unwrap_err().to_string();
        assert!(
            err.contains("Kmixed.private") && err.contains("algorithm"),
            "{err}"
        );
        let other = EC_PRIVATE.replace("fmGHX", "AmGHX");
        let wrong = write(dir.path(), "Kwrong", EC_KEY, &other);
        let err = ZoneKey::load(&wrong).unwrap_err().to_string();
        assert!(err.contains("Kwrong.private"), "{err}");
        let rsa1 = write(
            dir.path(),
            "Kold",
            &EC_KEY.replace(" 13 ", " 5 "),
            EC_PRIVATE,
        );
        let err = ZoneKey::load(&rsa1).unwrap_err().to_string();
        assert!(err.contains("algorithm 5 is not supported"), "{err}");
        let err = ZoneKey::load(&dir.path().join("Knone"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Knone.key"), "{err}");
        let garbage = write(dir.path(), "Kgarbage", "nothing here\n", EC_PRIVATE);
        assert!(ZoneKey::load(&garbage).is_err());
    }

    #[test]
    fn der_lengths_and_signs_are_framed() {
        let der = rsa_private_key_der(&[vec![0x80], vec![0, 0, 1]]);
        // SEQUENCE { INTEGER 0, INTEGER 0x0080, INTEGER 1 }
        assert_eq!(der, [0x30, 10, 2, 1, 0, 2, 2, 0, 0x80, 2, 1, 1]);
        let long = rsa_private_key_der(&[vec![0x11; 200]]);
        assert_eq!(&long[..4], &[0x30, 0x81, 206, 2]);
    }
}
