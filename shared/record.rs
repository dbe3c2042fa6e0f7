//! The record stored in etcd: SkyDNS's JSON service object.
//!
//! Every field is optional and unknown fields are ignored, so records written by SkyDNS tools,
//! registrator or Lodestar itself all parse. [`Service::parse`] turns a value into a [`Service`],
//! and [`Service::host`] classifies its `host` once, at load time, never per query.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::key;

/// One SkyDNS record, as stored (JSON) under a key.
///
/// ```
/// let s = lodestar::Service::parse(br#"{"host":"10.0.0.7","port":6379,"x":1}"#).unwrap();
/// assert_eq!(s.port, 6379);
/// assert_eq!(s.priority(), 10); // missing priority means 10
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    /// An IPv4/IPv6 address (A/AAAA) or a domain name (CNAME, SRV/MX target).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// SRV port.
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    /// SRV priority and MX preference; 0 means 10.
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub priority: u16,
    /// SRV weight; 0 means "missing" and counts as 100.
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub weight: u16,
    /// TXT data.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// TTL of answers made from this record; 0 means the server's default.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    /// This record also answers MX.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mail: bool,
    /// Labels stripped from the left of the key-derived SRV/MX target.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub targetstrip: u32,
    /// Group: the shortest key carrying one picks it for a query.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Lodestar's own field: the transport of `port` (`"udp"`); missing means TCP. It picks the
    /// records an RFC 2782 name (`_redis._udp.webapp.dev`) answers. SkyDNS and CoreDNS ignore
    /// fields they do not know, so records carrying it stay theirs to read.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proto: String,
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// What a record's `host` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// No host: the record may still carry TXT.
    None,
    /// An IPv4 address: answers A.
    V4(Ipv4Addr),
    /// An IPv6 address: answers AAAA.
    V6(Ipv6Addr),
    /// A domain name, lower case, without the trailing dot: answers CNAME, or is an SRV/MX target.
    Name(String),
}

impl Host {
    /// The address, when the host is one.
    pub fn addr(&self) -> Option<std::net::IpAddr> {
        match self {
            Host::V4(a) => Some((*a).into()),
            Host::V6(a) => Some((*a).into()),
            Host::None | Host::Name(_) => None,
        }
    }
}

/// The largest record value, in bytes, that Lodestar writes or serves (64 KiB). A value can be
/// no larger than what etcd accepts in one request (1.5 MiB by default), but a record that large
/// makes no useful DNS answer (a TXT answer over TCP holds at most 64 KiB) and costs every
/// reader: the DNS server skips a larger value as it skips one that does not parse, and the
/// registrator never writes one.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Why a value is not a usable record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The value is larger than [`MAX_VALUE_BYTES`].
    #[error("the value is {0} bytes, more than the {MAX_VALUE_BYTES} a record may have")]
    TooLarge(usize),
    /// The value is not a JSON object of the expected shape.
    #[error("not a SkyDNS record: {0}")]
    Json(#[from] serde_json::Error),
    /// The value is not a JSON object.
    #[error("not a SkyDNS record: the value is not a JSON object")]
    NotAnObject,
    /// `host` is neither an address nor a valid domain name.
    #[error("host {host:?} is neither an IP address nor a domain name: {source}")]
    Host {
        /// The offending value.
        host: String,
        /// Why the name is invalid.
        source: key::KeyError,
    },
}

impl Service {
    /// Parses a record from its stored JSON. A `host` that is neither an address nor a valid
    /// domain name makes the whole record invalid.
    pub fn parse(value: &[u8]) -> Result<Service, RecordError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(RecordError::TooLarge(value.len()));
        }
        if value.trim_ascii_start().first() != Some(&b'{') {
            return Err(RecordError::NotAnObject);
        }
        let service: Service = serde_json::from_slice(value)?;
        service.parsed_host()?;
        Ok(service)
    }

    /// The record's JSON, as written to etcd.
    pub fn to_json(&self) -> String {
        // Serializing a struct of plain fields cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Classifies `host`: `"10.0.0.1"` -> `V4`, `"::1"` -> `V6`, `"db.example.org."` -> `Name("db.example.org")`.
    pub fn host(&self) -> Host {
        self.parsed_host().unwrap_or(Host::None)
    }

    fn parsed_host(&self) -> Result<Host, RecordError> {
        let h = self.host.trim();
        if h.is_empty() {
            return Ok(Host::None);
        }
        if let Ok(v4) = h.parse::<Ipv4Addr>() {
            return Ok(Host::V4(v4));
        }
        if let Ok(v6) = h.parse::<Ipv6Addr>() {
            return Ok(Host::V6(v6));
        }
        let name = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
        key::validate_name(&name).map_err(|source| RecordError::Host {
            host: self.host.clone(),
            source,
        })?;
        Ok(Host::Name(name))
    }

    /// Whether the record's port is of transport `proto` (`tcp`, `udp`, any case): a record
    /// without `proto` is TCP.
    pub fn is_proto(&self, proto: &str) -> bool {
        let own = self.proto.trim();
        let own = if own.is_empty() { "tcp" } else { own };
        own.eq_ignore_ascii_case(proto)
    }

    /// SRV priority and MX preference: 0 or missing means 10.
    pub fn priority(&self) -> u16 {
        if self.priority == 0 {
            10
        } else {
            self.priority
        }
    }

    /// SRV weight before sharing out: a missing weight counts as 100.
    pub fn weight(&self) -> u16 {
        if self.weight == 0 {
            100
        } else {
            self.weight
        }
    }

    /// TXT strings: `text` split into strings of at most 255 bytes (on character boundaries).
    pub fn text_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        for c in self.text.chars() {
            if cur.len() + c.len_utf8() > 255 {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

/// SRV weights shared out per priority: `floor(100 * w / sum)` over the records of one priority.
///
/// `weights(&[(10, 100), (10, 100), (20, 0)])` -> `[50, 50, 100]` (0 is "missing" and counts as 100).
pub fn shared_weights(prio_weight: &[(u16, u16)]) -> Vec<u16> {
    let eff = |w: u16| if w == 0 { 100u64 } else { u64::from(w) };
    // One pass for the sums, one for the shares: linear in the number of records.
    let mut sums: std::collections::HashMap<u16, u64> = std::collections::HashMap::new();
    for &(p, w) in prio_weight {
        *sums.entry(p).or_default() += eff(w);
    }
    prio_weight
        .iter()
        .map(|&(p, w)| {
            let sum = sums.get(&p).copied().unwrap_or(1).max(1);
            // sum >= eff(w) > 0, so the share is at most 100.
            u16::try_from(100 * eff(w) / sum).unwrap_or(100)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_is_lodestars_own_field_and_missing_means_tcp() {
        let udp = Service::parse(br#"{"host":"10.0.0.1","port":53,"proto":"udp"}"#).unwrap();
        assert!(udp.is_proto("udp") && udp.is_proto("UDP") && !udp.is_proto("tcp"));
        assert_eq!(
            udp.to_json(),
            r#"{"host":"10.0.0.1","port":53,"proto":"udp"}"#
        );
        let plain = Service::parse(br#"{"host":"10.0.0.1","port":80}"#).unwrap();
        assert!(plain.is_proto("tcp") && !plain.is_proto("udp"));
        assert_eq!(
            plain.to_json(),
            r#"{"host":"10.0.0.1","port":80}"#,
            "no proto written"
        );
    }

    #[test]
    fn parses_every_field_and_ignores_unknown() {
        let s = Service::parse(
            br#"{"host":"db.Example.org.","port":5432,"priority":20,"weight":5,"text":"hi",
                "ttl":60,"mail":true,"targetstrip":1,"group":"g","lodestar":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(s.port, 5432);
        assert_eq!(s.priority(), 20);
        assert_eq!(s.weight(), 5);
        assert_eq!(s.ttl, 60);
        assert!(s.mail);
        assert_eq!(s.targetstrip, 1);
        assert_eq!(s.group, "g");
        assert_eq!(s.host(), Host::Name("db.example.org".into()));
    }

    #[test]
    fn host_kinds() {
        let cases: &[(&str, Host)] = &[
            ("", Host::None),
            ("10.1.2.3", Host::V4(Ipv4Addr::new(10, 1, 2, 3))),
            ("2001:db8::1", Host::V6("2001:db8::1".parse().unwrap())),
            ("redis.webapp.dev", Host::Name("redis.webapp.dev".into())),
        ];
        for (host, want) in cases {
            let s = Service {
                host: host.to_string(),
                ..Default::default()
            };
            assert_eq!(&s.host(), want, "{host}");
        }
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            &b"{"[..],
            b"[]",
            b"\"host\"",
            br#"{"port":"eighty"}"#,
            br#"{"port":70000}"#,
            br#"{"host":"not a name!"}"#,
            br#"{"host":"a..b"}"#,
        ] {
            assert!(
                Service::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn values_past_the_size_limit_are_refused() {
        let text = |n: usize| format!(r#"{{"host":"10.0.0.1","text":"{}"}}"#, "x".repeat(n));
        let at_limit = text(MAX_VALUE_BYTES - text(0).len());
        assert_eq!(at_limit.len(), MAX_VALUE_BYTES);
        assert!(Service::parse(at_limit.as_bytes()).is_ok());
        let over = text(MAX_VALUE_BYTES);
        assert!(matches!(
            Service::parse(over.as_bytes()),
            Err(RecordError::TooLarge(n)) if n == over.len()
        ));
    }

    #[test]
    fn defaults_for_priority_and_weight() {
        let s = Service::parse(b"{}").unwrap();
        assert_eq!(s.priority(), 10);
        assert_eq!(s.weight(), 100);
    }

    #[test]
    fn weights_are_shared_per_priority() {
        type Case<'a> = (&'a [(u16, u16)], &'a [u16]);
        let cases: &[Case] = &[
            (&[(10, 0)], &[100]),
            (&[(10, 0), (10, 0)], &[50, 50]),
            (&[(10, 10), (10, 30), (20, 0)], &[25, 75, 100]),
            (&[(10, 1), (10, 1), (10, 1)], &[33, 33, 33]),
        ];
        for (input, want) in cases {
            assert_eq!(&shared_weights(input), want, "{input:?}");
        }
    }

    #[test]
    fn text_is_split_at_255_bytes() {
        let s = Service {
            text: "a".repeat(600),
            ..Default::default()
        };
        let parts = s.text_strings();
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            [255, 255, 90]
        );
    }

    #[test]
    fn json_round_trip_omits_empty_fields() {
        let s = Service {
            host: "10.0.0.1".into(),
            port: 80,
            ..Default::default()
        };
        assert_eq!(s.to_json(), r#"{"host":"10.0.0.1","port":80}"#);
        assert_eq!(Service::parse(s.to_json().as_bytes()).unwrap(), s);
    }
}
