//! The flags every benchmark reads (a leaf: every benchmark imports it, it imports nothing).

/// The flags every benchmark reads (each uses those that apply to it).
#[derive(clap::Args, Clone)]
pub struct Opts {
    /// Services in etcd (and in Knot's zone).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub services: usize,
    /// Queries per second offered.
    #[arg(long, global = true, default_value_t = 20_000)]
    pub qps: u32,
    /// Seconds each load lasts.
    #[arg(long, global = true, default_value_t = 10)]
    pub seconds: u32,
    /// Rounds (servers alternate; the median is reported).
    #[arg(long, global = true, default_value_t = 3)]
    pub rounds: usize,
    /// Queries a mix sends in `instr` (each round; one at a time).
    #[arg(long, global = true, default_value_t = 5_000)]
    pub queries: usize,
    /// Writes timed by `propagation`.
    #[arg(long, global = true, default_value_t = 200)]
    pub writes: usize,
    /// Service counts for `scale`.
    #[arg(long, global = true, value_delimiter = ',', default_values_t = [100_000, 1_000_000])]
    pub sizes: Vec<usize>,
    /// Another lodestar-dns binary to measure beside this one (before/after a change).
    #[arg(long, global = true)]
    pub baseline: Option<String>,
    /// `fleet`: simulated hosts.
    #[arg(long, global = true, default_value_t = 1_000)]
    pub hosts: usize,
    /// `fleet`: services each host registers.
    #[arg(long, global = true, default_value_t = 100)]
    pub per_host: usize,
    /// `fleet`: the TTL of each host's lease, seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub lease_ttl: u64,
    /// `cost`: the plain mixes only, not the signed table.
    #[arg(long, global = true)]
    pub plain: bool,
    /// `soak`: how long it runs, seconds.
    #[arg(long, global = true, default_value_t = 3600)]
    pub soak_seconds: u64,
    /// `soak`: seconds between faults.
    #[arg(long, global = true, default_value_t = 60)]
    pub fault_every: u64,
    /// `soak`: questions per second from all clients together.
    #[arg(long, global = true, default_value_t = 2000)]
    pub soak_qps: u32,
    /// `soak`: seconds a process settles before its growth is measured.
    #[arg(long, global = true, default_value_t = 300)]
    pub settle: u64,
    /// `tcp`: only bench-big's last table.
    #[arg(skip)]
    pub only_tcp: bool,
}
