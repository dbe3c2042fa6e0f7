//! Lodestar benchmarks, side by side with Knot DNS. Every server listens on 127.0.0.1, except in
//! `failover`, whose hosts are network namespaces it creates (10.88.<k>.101..103) and removes.
//!
//! ```text
//! cargo bench --bench lodestar -- cost         [--services N] [--qps Q] [--seconds S] [--rounds R] [--baseline PATH]
//! cargo bench --bench lodestar -- instr        [--services N] [--queries Q] [--rounds R] [--baseline PATH]
//! cargo bench --bench lodestar -- cost2        [--services N] [--qps Q] [--seconds S] [--rounds R]
//! cargo bench --bench lodestar -- reads        [--services N] [--qps Q] [--seconds S]
//! cargo bench --bench lodestar -- propagation  [--writes W]
//! cargo bench --bench lodestar -- scale        [--sizes 100000,1000000]
//! cargo bench --bench lodestar -- churn        [--services N] [--qps Q] [--seconds S] [--rounds R] [--baseline PATH]
//! cargo bench --bench lodestar -- big          [--services N] [--seconds S] [--rounds R] [--baseline PATH]
//! cargo bench --bench lodestar -- tcp          (bench-big's last table alone)
//! cargo bench --bench lodestar -- wildcards    [--services N] [--baseline PATH]
//! cargo bench --bench lodestar -- failover     [--rounds R]   (three hosts in network namespaces)
//! cargo bench --bench lodestar -- fleet        [--hosts H] [--per-host P] [--lease-ttl S]
//! cargo bench --bench lodestar -- soak         [--soak-seconds S] [--fault-every S] [--soak-qps Q] [--settle S]
//! cargo bench --bench lodestar -- all
//! ```
//!
//! One file per family: `cost` (CPU per answer), `instr` (instructions per answer, valgrind), `view` (reads, propagation, scale, churn), `big`
//! and `shapes` (large names, answer shapes), `wildcards`, `tcp` (hostile clients, head of line),
//! `failover` (three hosts); `harness` (servers under test, measuring, dnsperf), `probe` (one
//! question asked or timed), `data` (what they hold) and `opts` (the flags) are shared, and the
//! real parts come from the integration tests' `support/`.
//! What they measured is in bench/README.md.

// The benchmarks use part of the integration tests' harness (this is its only other user).
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

mod big;
mod cost;
mod data;
mod failover;
mod fleet;
mod harness;
mod instr;
mod opts;
mod probe;
mod shapes;
mod soak;
mod tcp;
mod view;
mod wildcards;

use clap::{Parser, Subcommand};
use opts::Opts;

/// Lodestar's benchmarks (`make bench-*`), beside Knot DNS.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    bench: Option<Bench>,
    #[command(flatten)]
    opts: Opts,
}

/// Which benchmark.
#[derive(Subcommand, Clone, Copy)]
enum Bench {
    /// CPU per answered query, one CPU each, beside Knot (and signed).
    Cost,
    /// The same with both CPUs.
    Cost2,
    /// Instructions per answered query (valgrind), beside Knot: the measure that does not wobble.
    Instr,
    /// etcd requests caused by queries.
    Reads,
    /// A write (and a container start) until the answer changes.
    Propagation,
    /// Start-up and memory with many services.
    Scale,
    /// Answer times while records change under load.
    Churn,
    /// Large names and the apex, UDP/EDNS/TCP, then the answer shapes and TCP tables.
    Big,
    /// bench-big's last table alone (hostile TCP clients, head of line).
    Tcp,
    /// Wildcard questions over a large domain.
    Wildcards,
    /// Three hosts in network namespaces: member kill, partition.
    Failover,
    /// A fleet of hosts registering through the library: write -> answer, hosts dying, etcd's load.
    Fleet,
    /// An hour of load and faults on three hosts: nothing wrong, nothing lost, nothing leaking.
    Soak,
    /// Every benchmark.
    All,
}

fn main() {
    // cargo bench adds `--bench` to the arguments of a harness-less bench.
    let cli = Cli::parse_from(std::env::args().filter(|a| a != "--bench"));
    let opts = cli.opts;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match cli.bench.unwrap_or(Bench::All) {
            Bench::Cost => cost::cost(&opts).await,
            Bench::Cost2 => cost::cost2(&opts).await,
            Bench::Instr => instr::instr(&opts).await,
            Bench::Reads => view::reads(&opts).await,
            Bench::Propagation => view::propagation(&opts).await,
            Bench::Scale => view::scale(&opts).await,
            Bench::Churn => view::churn(&opts).await,
            Bench::Big => big::big(&opts).await,
            Bench::Tcp => {
                let opts = Opts {
                    only_tcp: true,
                    ..opts
                };
                big::big(&opts).await
            }
            Bench::Wildcards => wildcards::wildcard_bench(&opts).await,
            Bench::Failover => failover::failover(&opts).await,
            Bench::Fleet => fleet::fleet(&opts).await,
            Bench::Soak => soak::soak(&opts).await,
            Bench::All => {
                cost::cost(&opts).await;
                view::reads(&opts).await;
                view::propagation(&opts).await;
                view::churn(&opts).await;
                big::big(&opts).await;
                cost::cost2(&opts).await;
                view::scale(&opts).await;
                failover::failover(&opts).await;
                fleet::fleet(&opts).await;
            }
        }
    });
}
