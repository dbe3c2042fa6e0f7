//! Domain name <-> etcd key mapping, and name validation.
//!
//! A name maps to a key by reversing its labels under the prefix, lower case:
//! `redis-1.redis.webapp.dev` <-> `/skydns/dev/webapp/redis/redis-1`. The part after the prefix is
//! the *path* (`dev/webapp/redis/redis-1`); the in-memory view is keyed by paths.

/// Why a name or prefix is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The name is empty.
    #[error("empty name")]
    Empty,
    /// The whole name is longer than 253 characters.
    #[error("name is {0} characters long, at most 253 are allowed")]
    TooLong(usize),
    /// A label is empty or longer than 63 characters.
    #[error("label {0:?} must have 1 to 63 characters")]
    BadLabelLength(String),
    /// A label has a character outside `[A-Za-z0-9_-]`.
    #[error("label {0:?} may hold only letters, digits, '-' and '_'")]
    BadLabelChar(String),
    /// The prefix is not of the form `/name[/name...]`.
    #[error("prefix {0:?} must start with '/' and name at least one path element")]
    BadPrefix(String),
}

/// Checks a domain name (with or without the trailing dot): 1 to 63 characters per label from
/// `[A-Za-z0-9_-]` (or a label that is exactly `*`), at most 253 in all.
pub fn validate_name(name: &str) -> Result<(), KeyError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(KeyError::Empty);
    }
    if name.len() > 253 {
        return Err(KeyError::TooLong(name.len()));
    }
    for label in name.split('.') {
        validate_label(label)?;
    }
    Ok(())
}

/// Checks one label, as [`validate_name`] does for each.
pub fn validate_label(label: &str) -> Result<(), KeyError> {
    if label.is_empty() || label.len() > 63 {
        return Err(KeyError::BadLabelLength(label.to_string()));
    }
    if label != "*"
        && !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(KeyError::BadLabelChar(label.to_string()));
    }
    Ok(())
}

/// A name's path: labels reversed, joined by `/`, lower case.
///
/// `redis-1.redis.webapp.dev.` -> `dev/webapp/redis/redis-1`
pub fn name_to_path(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    labels.reverse();
    labels.join("/").to_ascii_lowercase()
}

/// A path's name, without the trailing dot.
///
/// `dev/webapp/redis/redis-1` -> `redis-1.redis.webapp.dev`
pub fn path_to_name(path: &str) -> String {
    let mut labels: Vec<&str> = path.split('/').filter(|l| !l.is_empty()).collect();
    labels.reverse();
    labels.join(".")
}

/// The etcd key prefix records live under (default `/skydns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Default for Prefix {
    fn default() -> Self {
        Prefix("/skydns".into())
    }
}

impl Prefix {
    /// Normalises a prefix: `/skydns/` -> `/skydns`. It must start with `/`.
    pub fn new(prefix: &str) -> Result<Prefix, KeyError> {
        let trimmed = prefix.trim_end_matches('/');
        if !trimmed.starts_with('/') || trimmed.len() < 2 || trimmed.contains("//") {
            return Err(KeyError::BadPrefix(prefix.to_string()));
        }
        Ok(Prefix(trimmed.to_string()))
    }

    /// The prefix as given, normalised (`/skydns`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What to range over or watch to see every record: `/skydns/`.
    pub fn range_start(&self) -> String {
        format!("{}/", self.0)
    }

    /// The key of a name, after validating it.
    ///
    /// `redis-1.redis.webapp.dev` -> `/skydns/dev/webapp/redis/redis-1`
    pub fn key_for_name(&self, name: &str) -> Result<String, KeyError> {
        validate_name(name)?;
        Ok(format!("{}/{}", self.0, name_to_path(name)))
    }

    /// The path of a key under this prefix, or `None` for a key outside it.
    ///
    /// `/skydns/dev/webapp/redis/redis-1` -> `dev/webapp/redis/redis-1`
    pub fn path_of_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.0.as_str())?.strip_prefix('/')?;
        (!rest.is_empty()).then_some(rest)
    }

    /// The name of a key under this prefix, or `None` for a key outside it.
    pub fn name_for_key(&self, key: &str) -> Option<String> {
        self.path_of_key(key).map(path_to_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_map_both_ways() {
        let p = Prefix::default();
        let cases = [
            (
                "redis-1.redis.webapp.dev",
                "/skydns/dev/webapp/redis/redis-1",
            ),
            ("Redis.WebApp.dev.", "/skydns/dev/webapp/redis"),
            ("dev", "/skydns/dev"),
        ];
        for (name, key) in cases {
            assert_eq!(p.key_for_name(name).unwrap(), key);
            assert_eq!(
                p.name_for_key(key).unwrap(),
                name.trim_end_matches('.').to_ascii_lowercase()
            );
        }
    }

    #[test]
    fn keys_outside_the_prefix_have_no_name() {
        let p = Prefix::new("/skydns/").unwrap();
        assert_eq!(p.name_for_key("/other/dev/x"), None);
        assert_eq!(p.name_for_key("/skydnsx/dev"), None);
        assert_eq!(p.name_for_key("/skydns/"), None);
        assert_eq!(p.path_of_key("/skydns/dev/a"), Some("dev/a"));
    }

    #[test]
    fn prefixes_are_normalised_or_refused() {
        assert_eq!(Prefix::new("/a/b/").unwrap().as_str(), "/a/b");
        for bad in ["", "/", "skydns", "//x", "/a//b"] {
            assert!(Prefix::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn validation() {
        for ok in ["a", "a.b", "x-1_y.dev.", "*.b", &"a".repeat(63)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
        let long = vec!["a".repeat(60); 5].join(".");
        let cases = [
            ("", KeyError::Empty),
            ("a..b", KeyError::BadLabelLength(String::new())),
            ("a b", KeyError::BadLabelChar("a b".into())),
            ("a/b", KeyError::BadLabelChar("a/b".into())),
            ("x*", KeyError::BadLabelChar("x*".into())),
        ];
        for (bad, want) in cases {
            assert_eq!(validate_name(bad), Err(want), "{bad:?}");
        }
        assert_eq!(validate_name(&long), Err(KeyError::TooLong(304)));
        assert!(matches!(
            validate_name(&"a".repeat(64)),
            Err(KeyError::BadLabelLength(_))
        ));
    }
}
