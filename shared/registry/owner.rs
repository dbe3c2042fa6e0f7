//! Who holds an owner's lease: the record at the owner key, and the rule that decides whether a
//! starting process may take it.
//!
//! The owner key (`/lodestar/owners<prefix>/<owner>`, on the lease itself) holds a [`Holder`]:
//! the lease id and which process holds it (a random instance id, the machine's boot id and
//! hostname, for the log line of a refusal), and whether that process let it go. A process that
//! finds a live lease there takes it over ("adopts" it, so that a restart keeps every record
//! answering) when it is that same process, when its holder released it (a clean stop:
//! SIGTERM, `docker stop`, `systemctl restart`), or when nobody keeps the lease alive any more
//! (the holder died: its lease is not refreshed for a third of its TTL and more). A live holder
//! (a cloned machine with the same hostname, two registrators given one `--host-id`) is refused:
//! [`super::RegistryError::Claimed`]. Pure: [`decide`] and the parsing; the etcd side is in
//! `super::etcd`.

use serde::{Deserialize, Serialize};

/// The process holding an owner's lease, as stored at the owner key (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The lease id.
    pub lease: i64,
    /// A random id of the holding process, made at its start.
    #[serde(default)]
    pub instance: String,
    /// The holding machine's boot id (`/proc/sys/kernel/random/boot_id`; empty if unknown).
    #[serde(default)]
    pub boot: String,
    /// The holding machine's hostname, for the log line of a refusal.
    #[serde(default)]
    pub host: String,
    /// When it took the lease, seconds since the epoch.
    #[serde(default)]
    pub since: u64,
    /// Whether it let the lease go (it stopped cleanly): the next process adopts it at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

impl Holder {
    /// The holder of a value at the owner key: this JSON, or (written by versions before it) a
    /// bare lease id, whose holder is unknown.
    pub fn parse(value: &[u8]) -> Option<Holder> {
        if let Ok(h) = serde_json::from_slice::<Holder>(value) {
            return Some(h);
        }
        let id = std::str::from_utf8(value)
            .ok()?
            .trim()
            .parse::<i64>()
            .ok()?;
        Some(Holder {
            lease: id,
            instance: String::new(),
            boot: String::new(),
            host: String::new(),
            since: 0,
            released: false,
        })
    }

    /// The JSON written at the owner key.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// This process, as a holder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Random, made once per process.
    pub instance: String,
    /// The kernel's boot id (shared by the containers of one machine).
    pub boot: String,
    /// The hostname.
    pub host: String,
}

impl Identity {
    /// This process: the same value for every call.
    pub fn this_process() -> Identity {
        static ME: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
        ME.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|b| b.trim().to_string())
                .unwrap_or_default();
            Identity {
                instance: format!("{:016x}", h.finish()),
                boot,
                host: crate::runtime::hostname().unwrap_or_default(),
            }
        })
        .clone()
    }

    /// The record of this process holding `lease`, from `since` (seconds since the epoch).
    pub fn holding(&self, lease: i64, since: u64) -> Holder {
        Holder {
            lease,
            instance: self.instance.clone(),
            boot: self.boot.clone(),
            host: self.host.clone(),
            since,
            released: false,
        }
    }
}

/// What a starting process does about the owner key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds a live lease: grant a new one and write the owner key.
    Grant,
    /// This process holds it, or its holder released it: take it over at once.
    Adopt,
    /// Someone else may hold it: watch whether the lease is kept alive before deciding.
    Observe,
}

/// The rule, given the holder at the owner key (if any) and whether its lease is alive. Pure.
///
/// No holder, or a dead lease -> `Grant`; this very process, or a holder that released it (a
/// clean restart) -> `Adopt`; anyone else (alive, or crashed: the lease tells) -> `Observe`.
pub fn decide(holder: Option<&Holder>, lease_alive: bool, me: &Identity) -> Claim {
    match holder {
        None => Claim::Grant,
        Some(_) if !lease_alive => Claim::Grant,
        Some(h) if h.instance == me.instance || h.released => Claim::Adopt,
        Some(_) => Claim::Observe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Identity {
        Identity {
            instance: "aaaa".into(),
            boot: "boot-1".into(),
            host: "core-01".into(),
        }
    }

    #[test]
    fn holders_parse_as_json_or_a_bare_lease_id() {
        let h = me().holding(0x1234, 99);
        assert_eq!(Holder::parse(h.to_json().as_bytes()), Some(h));
        let legacy = Holder::parse(b"4660\n").unwrap();
        assert_eq!((legacy.lease, legacy.instance.as_str()), (4660, ""));
        assert_eq!(Holder::parse(b"not a lease"), None);
    }

    #[test]
    fn who_may_take_a_lease() {
        let other_boot = Holder {
            boot: "boot-2".into(),
            instance: "bbbb".into(),
            ..me().holding(1, 0)
        };
        let same_machine = Holder {
            instance: "cccc".into(),
            ..me().holding(1, 0)
        };
        let released = Holder {
            released: true,
            ..other_boot.clone()
        };
        let legacy = Holder::parse(b"1").unwrap();
        let cases = [
            (None, true, Claim::Grant),
            (Some(&other_boot), false, Claim::Grant),
            (Some(&other_boot), true, Claim::Observe),
            (Some(&same_machine), true, Claim::Observe),
            (Some(&released), true, Claim::Adopt),
            (Some(&legacy), true, Claim::Observe),
        ];
        for (holder, alive, want) in cases {
            assert_eq!(
                decide(holder, alive, &me()),
                want,
                "{holder:?} alive={alive}"
            );
        }
        let this = me().holding(1, 0);
        assert_eq!(decide(Some(&this), true, &me()), Claim::Adopt);
    }
}
