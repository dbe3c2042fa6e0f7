//! Register one service from your own code, the way the registrator does, and keep it alive
//! until Ctrl-C (then take it away).
//!
//! ```sh
//! cargo run --example register -- --etcd http://127.0.0.1:2379 \
//!     --name web-1.web.webapp.dev --host 10.0.0.5 --port 8080
//! dig @127.0.0.1 -p 1053 web.webapp.dev SRV
//! ```

use std::time::Duration;

use clap::Parser;
use lodestar::etcd::EtcdConfig;
use lodestar::registry::{EtcdRegistry, Registry, RegistryError};
use lodestar::{Prefix, Service};

/// Registers one service in etcd and keeps it alive until Ctrl-C.
#[derive(Parser)]
struct Args {
    /// etcd endpoint.
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    etcd: String,
    /// Full name of the record: <id>.<service>.<domain>.
    #[arg(long)]
    name: String,
    /// Address (A/AAAA) or name (CNAME) of the service.
    #[arg(long)]
    host: String,
    /// Port (SRV).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Owner of the lease (default: this program and its pid).
    #[arg(long)]
    owner: Option<String>,
    /// Seconds the record outlives this program if it dies.
    #[arg(long, default_value_t = 10)]
    ttl: u64,
}

#[tokio::main]
async fn main() -> Result<(), RegistryError> {
    let args = Args::parse();
    let etcd = EtcdConfig {
        endpoints: vec![args.etcd],
        ..Default::default()
    };
    let owner = args
        .owner
        .unwrap_or_else(|| format!("example-{}", std::process::id()));
    let ttl = Duration::from_secs(args.ttl);
    let (mut registry, _) = EtcdRegistry::connect(&etcd, Prefix::default(), &owner, ttl).await?;
    let service = Service {
        host: args.host,
        port: args.port,
        ..Default::default()
    };
    registry.register(&args.name, &service).await?;
    println!(
        "registered {} -> {}:{} (lease {:x})",
        args.name,
        service.host,
        service.port,
        registry.lease()
    );

    let mut tick = tokio::time::interval(ttl / 3);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                if let Err(RegistryError::LeaseLost(_)) = registry.keep_alive().await {
                    // etcd lost the lease (expired while unreachable): take a new one, register again.
                    registry.renew().await?;
                    registry.register(&args.name, &service).await?;
                }
            }
        }
    }
    registry.revoke().await?;
    println!("deregistered {}", args.name);
    Ok(())
}
