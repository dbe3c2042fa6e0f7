//! What bounds the pipeline's work: the limits main passes in, the constants behind them, and
//! the lower CPU priority of the threads that build large answers. A leaf of the pipeline.

/// How much work clients can make the server take on at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Jobs computed at the same time (blocking workers).
    pub workers: usize,
    /// Jobs admitted and not finished (waiting for a worker, computing or forwarding).
    pub admitted: usize,
    /// Forwarded queries in flight.
    pub forwards: usize,
    /// `--log-queries`: one INFO line per answered query (SkyDNS's `-verbose`).
    pub log_queries: bool,
    /// How long a forwarded (or stub zone) question may take in all.
    pub upstream_timeout: std::time::Duration,
    /// `--ndots`: names with fewer labels are not forwarded.
    pub ndots: u8,
    /// `--stale-ttl`: the most a TTL may be in an answer from a stale view.
    pub stale_ttl: u32,
}

/// Signed answers that may wait at once for a worker to sign their other rotations.
pub const MAX_QUEUED_SIGNING: usize = 256;

/// The most CNAME targets outside the served domains that one question resolves upstream.
pub const MAX_OUTSIDE_TARGETS: usize = 8;

/// Lowers the calling thread's CPU priority (nice 10) once: the workers that build large
/// answers yield to the receive loops whenever both want the CPU.
pub fn lower_priority() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    LOWERED.with(|done| {
        if !done.replace(true) {
            #[cfg(target_os = "linux")]
            // SAFETY: setpriority on this thread's own id; failure only leaves the priority as is.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, 10);
            }
        }
    });
}
