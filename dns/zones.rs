//! Static zones: RFC 1035 master files from `--zones DIR`, served authoritatively beside the view.
//!
//! Each `*.zone` file is parsed once at start (hickory's zone parser; the origin is the file's
//! `$ORIGIN`, else its name without `.zone`). Questions inside a zone are answered from it:
//! exact matches, CNAME chains inside the zone, NODATA and NXDOMAIN with the zone's SOA.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

use crate::answer::{Answer, Records};

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

/// One zone from a file.
#[derive(Debug)]
struct Zone {
    origin: Name,
    soa: Record,
    records: HashMap<(Name, RecordType), Vec<Record>>,
}

/// Every static zone, looked up by longest origin.
#[derive(Debug, Default)]
pub struct StaticZones {
    zones: Vec<Zone>,
}

impl StaticZones {
    /// Loads every `*.zone` file of `dir`.
    pub fn load_dir(dir: &Path) -> Result<StaticZones, ZoneError> {
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
        let zones = files
            .iter()
            .map(|f| load_file(f))
            .collect::<Result<_, _>>()?;
        Ok(StaticZones { zones })
    }

    /// The origins served, for logging.
    pub fn origins(&self) -> impl Iterator<Item = &Name> {
        self.zones.iter().map(|z| &z.origin)
    }

    /// Answers a question inside a static zone; `None` when no zone holds `qname`.
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Option<Answer> {
        let lower = qname.to_lowercase();
        let zone = self
            .zones
            .iter()
            .filter(|z| z.origin.zone_of(&lower))
            .max_by_key(|z| z.origin.num_labels())?;
        Some(zone.answer(qname, &lower, qtype))
    }
}

impl Zone {
    fn answer(&self, qname: &Name, lower: &Name, qtype: RecordType) -> Answer {
        let mut out = Records::default();
        let mut owner = qname.clone();
        let mut cur = lower.clone();
        for _ in 0..8 {
            if let Some(rs) = self.records.get(&(cur.clone(), qtype)) {
                out.answers.extend(rs.iter().map(|r| with_owner(r, &owner)));
                break;
            }
            let Some(cname) = self
                .records
                .get(&(cur.clone(), RecordType::CNAME))
                .and_then(|v| v.first())
            else {
                break;
            };
            out.answers.push(with_owner(cname, &owner));
            let RData::CNAME(target) = &cname.data else {
                break;
            };
            owner = target.0.clone();
            cur = owner.to_lowercase();
            if !self.origin.zone_of(&cur) {
                out.external.push((owner.clone(), qtype));
                break;
            }
        }
        if !out.answers.is_empty() {
            return Answer::Records(out);
        }
        let exists = self.records.keys().any(|(n, _)| lower.zone_of(n));
        if exists {
            Answer::NoData(self.soa.clone())
        } else {
            Answer::NxDomain(self.soa.clone())
        }
    }
}

fn with_owner(r: &Record, owner: &Name) -> Record {
    let mut r = r.clone();
    r.name = owner.clone();
    r
}

fn load_file(path: &Path) -> Result<Zone, ZoneError> {
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
    let origin = origin.to_lowercase();
    let mut records: HashMap<(Name, RecordType), Vec<Record>> = HashMap::new();
    for (key, set) in sets {
        let name = Name::from(key.name.clone()).to_lowercase();
        records
            .entry((name, key.record_type))
            .or_default()
            .extend(set.records_without_rrsigs().cloned());
    }
    let soa = records
        .get(&(origin.clone(), RecordType::SOA))
        .and_then(|v| v.first().cloned())
        .ok_or_else(|| parse_err(format!("no SOA record at the origin {origin}")))?;
    Ok(Zone {
        origin,
        soa,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "$ORIGIN static.test.\n$TTL 300\n\
        @ IN SOA ns.static.test. admin.static.test. 1 7200 3600 1209600 300\n\
        @ IN NS ns.static.test.\nns IN A 10.5.0.1\nwww IN A 10.5.0.2\n\
        alias IN CNAME www\nout IN CNAME www.example.org.\na.b IN TXT \"deep\"\n";

    fn zones() -> StaticZones {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("static.test.zone"), ZONE).unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "not a zone").unwrap();
        StaticZones::load_dir(dir.path()).unwrap()
    }

    fn lines(a: Option<Answer>) -> Vec<String> {
        match a {
            Some(Answer::Records(r)) => r
                .answers
                .iter()
                .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
                .collect(),
            Some(Answer::NoData(_)) => vec!["NODATA".into()],
            Some(Answer::NxDomain(_)) => vec!["NXDOMAIN".into()],
            Some(Answer::NotOurs) => vec!["NOTOURS".into()],
            None => vec![],
        }
    }

    #[test]
    fn answers_from_the_file() {
        let z = zones();
        let n = |s| Name::from_ascii(s).unwrap();
        assert_eq!(
            lines(z.answer(&n("WWW.static.test."), RecordType::A)),
            ["WWW.static.test. A 10.5.0.2"]
        );
        assert_eq!(
            lines(z.answer(&n("alias.static.test."), RecordType::A)),
            [
                "alias.static.test. CNAME www.static.test.",
                "www.static.test. A 10.5.0.2"
            ]
        );
        assert_eq!(
            lines(z.answer(&n("www.static.test."), RecordType::AAAA)),
            ["NODATA"]
        );
        assert_eq!(
            lines(z.answer(&n("b.static.test."), RecordType::A)),
            ["NODATA"]
        );
        assert_eq!(
            lines(z.answer(&n("nope.static.test."), RecordType::A)),
            ["NXDOMAIN"]
        );
        assert!(z.answer(&n("www.other.test."), RecordType::A).is_none());
        let Some(Answer::Records(r)) = z.answer(&n("out.static.test."), RecordType::A) else {
            panic!()
        };
        assert_eq!(r.external, [(n("www.example.org."), RecordType::A)]);
    }

    #[test]
    fn a_broken_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.zone"), "@ IN A\n").unwrap();
        let err = StaticZones::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.zone"), "{err}");
    }
}
