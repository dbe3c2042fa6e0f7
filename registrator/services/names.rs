//! The names and ids a container's services get when its keys give none, and the checks of
//! those its keys give: DNS-safe, bounded, stable across builds. Pure.

use lodestar::key;

use super::{Container, Proto, ServiceError};

/// The service name a container gets when none is set: its compose service, else its image's
/// base name, else (an image referenced by id) its own name. DNS-safe; with the rule that chose
/// it (for `--dry-run`).
pub fn default_name_from(c: &Container) -> (String, &'static str) {
    if let Some(svc) = c.labels.get("com.docker.compose.service") {
        let safe = dns_safe(svc);
        if !safe.is_empty() {
            return (safe, "com.docker.compose.service label");
        }
    }
    if !is_image_id(&c.image) {
        let base = image_base_name(&c.image);
        if !base.is_empty() {
            return (base, "image base name");
        }
    }
    (dns_safe(&c.name), "container name")
}

/// Whether `image` is an image id (`sha256:...`, or 12 to 64 hex digits), not a name.
fn is_image_id(image: &str) -> bool {
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    image.starts_with("sha256:")
        || ((12..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ServiceError> {
    value.trim().parse().map_err(|_| ServiceError::Number {
        key: key.into(),
        value: value.into(),
    })
}

/// A name from env or labels: lower case, one or more valid labels.
pub fn checked_name(key: &str, value: &str) -> Result<String, ServiceError> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    match key::validate_name(&v) {
        Ok(()) if !v.contains('*') => Ok(v),
        Ok(()) => Err(ServiceError::Name {
            key: key.into(),
            value: value.into(),
            reason: "'*' is a wildcard".into(),
        }),
        Err(e) => Err(ServiceError::Name {
            key: key.into(),
            value: value.into(),
            reason: e.to_string(),
        }),
    }
}

/// An id from env or labels: lower case, exactly one valid label.
pub fn checked_label(key: &str, value: &str) -> Result<String, ServiceError> {
    let v = checked_name(key, value)?;
    if v.contains('.') {
        return Err(ServiceError::Name {
            key: key.into(),
            value: value.into(),
            reason: "an id is one label, without dots".into(),
        });
    }
    Ok(v)
}

/// The image's base name as a DNS label: `registry:5000/team/API_server:1.2@sha256:ab` -> `api-server`.
pub fn image_base_name(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let no_tag = last.split(':').next().unwrap_or(last);
    let label = dns_safe(no_tag);
    if label.is_empty() {
        "service".into()
    } else {
        label
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string()
    }
}

/// Lower case, every character outside `[a-z0-9-]` as `-`, no leading/trailing or doubled `-`.
fn dns_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        let c = ch.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('-').to_string()
}

/// A DNS-safe id for a port: `<host>-<container>-<port>[-udp]`, only `[a-z0-9-]`, at most 63
/// characters. When making it safe changed or shortened anything, a hash of the exact inputs is
/// appended, so that two containers never get the same id.
///
/// `("node1", "web", 80, Tcp)` -> `node1-web-80`; `("node1", "Web_1", 80, Tcp)` -> `node1-web-1-80-<hash>`
pub fn default_id(host_id: &str, container: &str, port: u16, proto: Proto) -> String {
    let udp = if proto == Proto::Udp { "-udp" } else { "" };
    let raw = format!("{host_id}-{container}-{port}{udp}");
    let safe = dns_safe(&raw);
    if safe == raw && safe.len() <= 63 {
        return safe;
    }
    let tag = format!("{:08x}", fnv1a(raw.as_bytes()));
    let keep = 63 - tag.len() - 1;
    let head: String = safe.chars().take(keep).collect();
    format!("{}-{tag}", head.trim_end_matches('-'))
}

/// FNV-1a, 32 bits: a hash that stays the same across builds, so ids survive upgrades.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}
