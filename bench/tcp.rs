//! `tcp` (bench-big's last table): hostile TCP clients (connections that never read, or never
//! finish a query) beside Knot, and the head-of-line latency of small names from a steady client
//! while others ask the large names and they change 10 times a second.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::harness::{percentile, Server};
use crate::opts::Opts;
use crate::probe::{answered, timed, Wire};
use crate::support;
use crate::support::{Etcd, Knot};

/// TCP queries from one client while 512 connections from another address send queries for
/// large answers and never read them; each server in turn.
pub async fn hostile_tcp(lodestar: &Server, knot: &Knot) {
    use tokio::io::AsyncWriteExt;
    println!("\n### TCP while 512 connections from another client never read their answers\n");
    println!("| server | hostile connections accepted | TCP queries answered (10 s timeout each) | p50 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (label, addr) in [("Knot", knot.addr), ("Lodestar", lodestar.addr)] {
        let q = support::message("big5000.webapp.dev.", RecordType::A)
            .to_vec()
            .expect("query");
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        let many = framed.repeat(40);
        let mut hostile = Vec::new();
        for _ in 0..512 {
            let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                break;
            };
            if socket.bind("127.0.0.2:0".parse().expect("addr")).is_err() {
                break;
            }
            let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(2), socket.connect(addr)).await
            else {
                continue;
            };
            let _ = tokio::time::timeout(Duration::from_millis(20), s.write_all(&many)).await;
            hostile.push(s);
        }
        let mut times = Vec::new();
        let tries = 10;
        for i in 0..tries {
            let name = format!("svc{i}.webapp.dev.");
            if let Some((s, n, _)) =
                tokio::task::spawn_blocking(move || timed(addr, &name, RecordType::A, Wire::Tcp))
                    .await
                    .ok()
                    .flatten()
            {
                if n > 0 {
                    times.push(s * 1000.0);
                }
            }
        }
        let hostile_count = hostile.len();
        drop(hostile);
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "| {label} | {} | {} of {tries} | {:.2} ms | {:.2} ms |",
            hostile_count,
            times.len(),
            percentile(&times, 0.5),
            times.last().copied().unwrap_or(f64::NAN)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Small names from a steady client while two others ask the large names (UDP and TCP) and a
/// writer changes them 10 times a second; each server in turn, the same load.
pub async fn head_of_line(o: &Opts, etcd: &Etcd, lodestar: &Server, knot: &Knot) {
    println!(
        "\n### Small names while large ones are asked for and change 10 times a second ({} s each)\n",
        o.seconds
    );
    println!("| server | small answered | lost | p50 | p99 | max | large answers meanwhile |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, addr, signed) in [
        ("Knot", knot.addr, false),
        ("Lodestar", lodestar.addr, false),
        (
            "Lodestar, large ones asked with DO (signed)",
            lodestar.addr,
            true,
        ),
    ] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut client = etcd.client().await;
        let writer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut v = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    v += 1;
                    for n in [1000, 5000] {
                        let _ = client
                            .put(
                                format!("/skydns/dev/webapp/big{n}/changing"),
                                format!(r#"{{"host":"10.252.{}.{}"}}"#, v / 250 % 250, v % 250 + 1),
                                None,
                            )
                            .await;
                    }
                }
            })
        };
        let loaders: Vec<_> = [Wire::Udp, Wire::Tcp]
            .into_iter()
            .map(|wire| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for name in ["big5000.webapp.dev.", "webapp.dev.", "big1000.webapp.dev."] {
                            let qtype = if wire == Wire::Udp {
                                RecordType::SRV
                            } else {
                                RecordType::A
                            };
                            let asked = match (signed, wire) {
                                (true, Wire::Udp) => Wire::EdnsDo,
                                (true, _) => Wire::TcpDo,
                                (false, w) => w,
                            };
                            if timed(addr, name, qtype, asked).is_some() {
                                n += 1;
                            }
                        }
                    }
                    n
                })
            })
            .collect();
        let seconds = o.seconds;
        let services = o.services;
        let steady = tokio::task::spawn_blocking(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
            sock.set_read_timeout(Some(Duration::from_millis(1000)))
                .ok();
            let mut lat = Vec::new();
            let mut lost = 0u64;
            let end = Instant::now() + Duration::from_secs(u64::from(seconds));
            let mut i = 0usize;
            while Instant::now() < end {
                i += 1;
                let k = (i * 7919) % services;
                let ip = format!("172.17.{}.{}", (k / 250) % 250, k % 250 + 1);
                let t = Instant::now();
                if answered(
                    &sock,
                    addr,
                    &format!("svc{k}.webapp.dev."),
                    RecordType::A,
                    &ip,
                ) {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    lost += 1;
                }
                // A steady client: 1,000 queries a second at most.
                let spent = t.elapsed();
                if spent < Duration::from_millis(1) {
                    std::thread::sleep(Duration::from_millis(1) - spent);
                }
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            (lat, lost)
        })
        .await
        .expect("steady client");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = writer.await;
        let large: u64 = loaders.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        let (lat, lost) = steady;
        println!(
            "| {label} | {} | {lost} | {:.3} ms | {:.3} ms | {:.3} ms | {large} |",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
    }
}
