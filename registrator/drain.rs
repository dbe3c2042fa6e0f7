//! Drain: a container's records are withdrawn when the engine starts stopping it, not when it has
//! died, so that no client is sent to a process that is shutting down (registrator #685).
//!
//! The engine's `kill` event names the signal it sent: one that asks for a shutdown (TERM, INT,
//! QUIT, or the container's own `StopSignal`) starts a drain; any other (`docker kill -s HUP`)
//! does not. Nor does KILL: the process dies at once, so there is nothing to drain, and its `die`
//! applies `--deregister` as for any death (under `on-success`, `docker kill` stays the failure it
//! always was). `stop` always does. A drain ends when the container is seen stopped (or gone); if it is still
//! running when its grace has passed (the stop was cancelled, or the signal trapped and ignored)
//! the drain ends and the container is registered again. The grace is the container's own stop
//! timeout plus [`MARGIN`] when it has one, else `--drain-grace`.
//!
//! Pure: [`starts_drain`] decides from an event, [`Drains`] keeps the deadlines; the Docker side
//! ([`crate::docker`]) and the reconciler ([`crate::reconcile`]) feed them. Imports nothing of the
//! registrator's.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// Beyond a container's own stop timeout: the engine sends KILL at its end, and `die` follows.
pub const MARGIN: Duration = Duration::from_secs(5);

/// A signal as engines write it (`15`, `SIGTERM`, `TERM`, `sigterm`) -> its Linux number.
pub fn signal_number(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "WINCH" => 28,
        "PWR" => 30,
        _ => return None,
    })
}

/// Whether an engine event starts a drain: `stop`, or `kill` with a signal that asks for a
/// shutdown (TERM, INT, QUIT, or the container's `StopSignal`); never KILL, nor a `kill` naming no
/// signal (`docker kill` without `-s` sends KILL).
pub fn starts_drain(action: &str, signal: Option<&str>, stop_signal: Option<&str>) -> bool {
    match action {
        "stop" => true,
        "kill" => {
            let Some(n) = signal.and_then(signal_number) else {
                return false;
            };
            n != 9 && (matches!(n, 2 | 3 | 15) || stop_signal.and_then(signal_number) == Some(n))
        }
        _ => false,
    }
}

/// The grace of a drain: the container's own stop timeout (seconds, as the engine reports it)
/// plus [`MARGIN`], else `default`.
pub fn grace(stop_timeout: Option<i64>, default: Duration) -> Duration {
    match stop_timeout.and_then(|s| u64::try_from(s).ok()) {
        Some(s) => Duration::from_secs(s) + MARGIN,
        None => default,
    }
}

/// The containers being drained, each until its deadline.
#[derive(Debug, Default)]
pub struct Drains(BTreeMap<String, Instant>);

impl Drains {
    /// Container `id` is being stopped: its records are withheld until `until` (a second stop
    /// signal, such as the KILL after the timeout, keeps the first deadline or a later one).
    pub fn start(&mut self, id: &str, until: Instant) {
        let at = self.0.entry(id.to_string()).or_insert(until);
        *at = (*at).max(until);
    }

    /// The container stopped, or is gone: no longer draining. Whether it was.
    pub fn end(&mut self, id: &str) -> bool {
        self.0.remove(id).is_some()
    }

    /// Whether `id`'s records are withheld at `now`.
    pub fn draining(&self, id: &str, now: Instant) -> bool {
        self.0.get(id).is_some_and(|&at| now < at)
    }

    /// Ends the drains whose grace has passed at `now`: the ids (their containers still run).
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let over: Vec<String> = self
            .0
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &over {
            self.0.remove(id);
        }
        over
    }

    /// Keeps the drains of the containers `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|id, _| keep(id));
    }

    /// The next deadline, when a drain is on.
    pub fn next(&self) -> Option<Instant> {
        self.0.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_as_engines_write_them() {
        for s in ["15", "SIGTERM", "TERM", "sigterm", " 15 "] {
            assert_eq!(signal_number(s), Some(15), "{s}");
        }
        assert_eq!(signal_number("SIGHUP"), Some(1));
        assert_eq!(signal_number("0"), None);
        assert_eq!(signal_number("65"), None);
        assert_eq!(signal_number("SIGBOGUS"), None);
        assert_eq!(signal_number(""), None);
    }

    #[test]
    fn terminating_signals_and_stop_start_a_drain() {
        for s in ["15", "SIGTERM", "2", "SIGINT", "3", "SIGQUIT"] {
            assert!(starts_drain("kill", Some(s), None), "{s}");
        }
        assert!(starts_drain("stop", None, None));
        assert!(
            !starts_drain("kill", None, None),
            "no signal named: docker kill's KILL"
        );
        assert!(
            !starts_drain("kill", Some("SIGKILL"), Some("SIGKILL")),
            "KILL: dies at once"
        );
        for s in [
            "1", "SIGHUP", "9", "SIGKILL", "10", "SIGUSR1", "28", "garbage",
        ] {
            assert!(!starts_drain("kill", Some(s), None), "{s}");
        }
        // The container's own StopSignal is what `docker stop` sends it.
        assert!(starts_drain("kill", Some("10"), Some("SIGUSR1")));
        assert!(starts_drain("kill", Some("SIGWINCH"), Some("28")));
        assert!(!starts_drain("kill", Some("1"), Some("SIGUSR1")));
        for a in ["die", "start", "restart", "pause", "health_status: healthy"] {
            assert!(!starts_drain(a, Some("15"), None), "{a}");
        }
    }

    #[test]
    fn grace_is_the_containers_stop_timeout_plus_a_margin() {
        let d = Duration::from_secs(15);
        assert_eq!(grace(None, d), d);
        assert_eq!(grace(Some(60), d), Duration::from_secs(65));
        assert_eq!(grace(Some(0), d), MARGIN);
        assert_eq!(
            grace(Some(-1), d),
            d,
            "a negative timeout is the engine's odd value"
        );
    }

    #[test]
    fn drains_keep_the_later_deadline_end_and_expire() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Drains::default();
        d.start("a", t0 + s(10));
        d.start("a", t0 + s(5)); // KILL after TERM: the first deadline stays
        d.start("b", t0 + s(3));
        assert!(d.draining("a", t0 + s(9)));
        assert!(!d.draining("a", t0 + s(10)));
        assert!(!d.draining("c", t0));
        assert_eq!(d.next(), Some(t0 + s(3)));
        assert_eq!(d.expire(t0 + s(4)), ["b"]);
        assert_eq!(d.next(), Some(t0 + s(10)));
        assert!(d.end("a"));
        assert!(!d.end("a"));
        assert_eq!(d.next(), None);
        assert!(d.expire(t0 + s(100)).is_empty());
    }
}
