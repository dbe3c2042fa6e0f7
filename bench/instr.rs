//! `instr`: instructions per answered query, counted by valgrind (callgrind), for
//! `lodestar-dns --threads 1` and Knot (`udp-workers: 1`) serving the same names in the same run.
//! Deterministic where wall-clock CPU time wobbles: the same build, inputs and queries give the
//! same count whatever else the machine does. It counts user space only (not the kernel's part
//! of a system call); `cost` keeps measuring that.
//!
//! Each server runs under callgrind from its start; per mix the same client sends the mix's
//! questions one at a time (each waits for its answer, so no server ever batches), twice to warm
//! the caches (Lodestar keeps its own answers on their second ask), then the counters are zeroed
//! (`callgrind_control -z`), the questions sent again, and the counters dumped (`-d`): the whole
//! process's instructions over the queries it
//! answered. `--rounds` repeats the measured part (the spread between rounds is printed), and
//! the functions that cost Lodestar most are listed per mix (self cost, from the dump). The
//! median round is reported: Lodestar's own background work (its once-a-second check of the
//! etcd member, tens of thousands of instructions) falls into some rounds and not others.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::big::{big_zone, load_big};
use crate::data::{example_org, keygen, load_services, mix_lines, wait_loaded};
use crate::harness::{median, pid_listening_udp, Server};
use crate::opts::Opts;
use crate::support;
use crate::support::{Etcd, Knot};

/// One mix: its questions, and how they are asked.
struct Mix {
    label: &'static str,
    questions: Vec<(String, RecordType)>,
    /// EDNS payload size, if any.
    edns: Option<u16>,
    dnssec: bool,
}

/// A server counted by callgrind: where it listens, its pid, where its dumps go.
struct Counted {
    label: &'static str,
    addr: SocketAddr,
    pid: u32,
    out: PathBuf,
}

pub async fn instr(o: &Opts) {
    let dir = tempfile::TempDir::new().expect("tempdir");
    // A directory per run: two runs at once never read each other's dumps.
    let dumps = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-instr")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dumps).expect("target/bench-instr");
    let etcd = Etcd::start().await;
    load_services(&etcd, o.services).await;
    load_big(&etcd).await;
    let ex = example_org();
    let upstream = Knot::with_zones(&[("example.org", &ex)]).await;
    let z = big_zone(o.services);
    let zones = [("webapp.dev", z.as_str()), ("example.org", ex.as_str())];
    let policy =
        "policy:\n  - id: ec\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n";
    let online_conf = format!("{policy}mod-onlinesign:\n  - id: ol\n    policy: ec\n");
    let (knot, knot_c) = counted_knot(&dumps, "knot", &zones, "", "").await;
    let (online, online_c) = counted_knot(
        &dumps,
        "knot-online",
        &zones,
        &online_conf,
        "    module: mod-onlinesign/ol\n",
    )
    .await;
    let key = keygen(dir.path(), "webapp.dev");
    let mut lodestars = vec![counted_lodestar(
        &dumps,
        "Lodestar",
        env!("CARGO_BIN_EXE_lodestar-dns"),
        &key,
        &etcd,
        upstream.addr,
        o.services,
    )];
    if let Some(bin) = &o.baseline {
        lodestars.push(counted_lodestar(
            &dumps,
            "baseline",
            bin,
            &key,
            &etcd,
            upstream.addr,
            o.services,
        ));
    }
    println!(
        "\n### Instructions per answered query (callgrind, whole process): {} services, {} queries a mix, one at a time, {} rounds; --threads 1, Knot udp-workers 1\n",
        o.services, o.queries, o.rounds
    );
    let mut header = "| mix | Knot |".to_string();
    let mut rule = "|---|---:|".to_string();
    for (c, _) in &lodestars {
        header.push_str(&format!(" {} | / Knot |", c.label));
        rule.push_str("---:|---:|");
    }
    println!("{header} Knot's and Lodestar's rounds agree within |\n{rule}---:|");
    let mut profiles = Vec::new();
    for mix in mixes(o) {
        let reference = if mix.dnssec { &online_c } else { &knot_c };
        let knot_runs = measure(reference, &mix, o.rounds);
        let knot_ir = median(knot_runs.clone());
        let mut cells = format!("| {} | {knot_ir:.0} |", mix.label);
        let mut spread = spread_of(&knot_runs);
        for (c, _) in &lodestars {
            let runs = measure(c, &mix, o.rounds);
            let ir = median(runs.clone());
            if c.label == "Lodestar" {
                spread = spread.max(spread_of(&runs));
                cells.push_str(&format!(" {ir:.0} | {:.2}x |", ir / knot_ir));
            } else {
                // Another build's rounds may wander (an earlier one parked and woke its runtime
                // per query, as timing allowed): its own spread beside it.
                cells.push_str(&format!(
                    " {ir:.0} (rounds within {:.0}%) | {:.2}x |",
                    spread_of(&runs) * 100.0,
                    ir / knot_ir
                ));
            }
            if c.label == "Lodestar" {
                profiles.push((mix.label, ir, top_functions(&latest_dump(&c.out), 8)));
            }
        }
        println!("{cells} {:.2}% |", spread * 100.0);
    }
    println!(
        "\nWhere Lodestar's instructions go, per answered query (self cost, the last round):\n"
    );
    for (mix, ir, top) in profiles {
        let list: Vec<String> = top
            .iter()
            .map(|(f, share)| format!("{f} {:.0}", share * ir))
            .collect();
        println!("- {mix}: {}", list.join("; "));
    }
    println!(
        "\nThe dumps are in {} (callgrind_annotate reads them).",
        dumps.display()
    );
    drop((knot, online, lodestars));
}

/// The mixes of `cost` (names, srv, nxdomain, forward10), the large ones (a name with 1,000
/// instances and the apex, over UDP with EDNS 1232) and `names` signed (DO).
fn mixes(o: &Opts) -> Vec<Mix> {
    let plain = |label: &'static str| Mix {
        label,
        questions: mix_lines(label, o.services, o.queries)
            .iter()
            .filter_map(|l| {
                let (name, t) = l.split_once(' ')?;
                Some((format!("{name}."), t.parse().ok()?))
            })
            .collect(),
        edns: None,
        dnssec: false,
    };
    let same = |label: &'static str, name: &str, edns, dnssec| Mix {
        label,
        questions: vec![(name.to_string(), RecordType::A); o.queries],
        edns,
        dnssec,
    };
    // Knot signs every answer anew (about 750,000 instructions): a fifth of the queries.
    let mut signed = plain("names");
    signed.label = "names, DO (signed; Knot online)";
    signed.questions.truncate(o.queries.div_ceil(5));
    signed.edns = Some(1232);
    signed.dnssec = true;
    vec![
        plain("names"),
        plain("srv"),
        plain("nxdomain"),
        plain("forward10"),
        same(
            "big1000, EDNS 1232",
            "big1000.webapp.dev.",
            Some(1232),
            false,
        ),
        same("apex, EDNS 1232", "webapp.dev.", Some(1232), false),
        signed,
    ]
}

/// Knot under callgrind serving `zones`; its counted handle.
async fn counted_knot(
    dumps: &Path,
    label: &'static str,
    zones: &[(&str, &str)],
    global: &str,
    each: &str,
) -> (Knot, Counted) {
    let out = dumps.join(format!("{label}.out"));
    let wrapper = valgrind(&out, &dumps.join(format!("{label}.valgrind.log")));
    let knot = Knot::under(&wrapper, zones, 1, support::free_port(), global, each).await;
    let pid = pid_listening_udp(knot.addr.port()).expect("knot's pid");
    let addr = knot.addr;
    (
        knot,
        Counted {
            label: "Knot",
            addr,
            pid,
            out,
        },
    )
}

/// A lodestar-dns binary under callgrind (`--threads 1`, signing with `key`), once loaded.
fn counted_lodestar(
    dumps: &Path,
    label: &'static str,
    bin: &str,
    key: &str,
    etcd: &Etcd,
    upstream: SocketAddr,
    services: usize,
) -> (Counted, Server) {
    let out = dumps.join(format!("{label}.out"));
    let mut args = valgrind(&out, &dumps.join(format!("{label}.valgrind.log")));
    args.extend(
        [bin, "--threads", "1", "--dnssec-key", key]
            .iter()
            .map(|s| s.to_string()),
    );
    let (first, rest) = args.split_first().expect("valgrind");
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let server = Server::binary(first, &rest, etcd, upstream, "1");
    wait_loaded(server.addr, services);
    (
        Counted {
            label,
            addr: server.addr,
            pid: server.pid(),
            out,
        },
        server,
    )
}

/// valgrind's command line: callgrind, its dumps at `out` (`out.1`, `out.2`, ...).
fn valgrind(out: &Path, log: &Path) -> Vec<String> {
    vec![
        "valgrind".to_string(),
        "--tool=callgrind".to_string(),
        format!("--callgrind-out-file={}", out.display()),
        format!("--log-file={}", log.display()),
    ]
}

/// Instructions per answered query of `mix` at `c`, for each of `rounds` rounds.
fn measure(c: &Counted, mix: &Mix, rounds: usize) -> Vec<f64> {
    let queries: Vec<Vec<u8>> = mix
        .questions
        .iter()
        .filter_map(|(name, qtype)| {
            let mut m = match mix.edns {
                Some(size) => support::message_edns(name, *qtype, size),
                None => support::message(name, *qtype),
            };
            if mix.dnssec {
                if let Some(e) = m.edns.as_mut() {
                    e.set_dnssec_ok(true);
                }
            }
            m.to_vec().ok()
        })
        .collect();
    // Twice: Lodestar keeps its own answers on their second ask.
    ask_all(c.addr, &queries);
    ask_all(c.addr, &queries);
    (0..rounds.max(1))
        .map(|_| {
            control(c.pid, "-z");
            let answered = ask_all(c.addr, &queries);
            control(c.pid, "-d");
            let total = totals(&latest_dump(&c.out));
            let ir = total as f64 / answered.max(1) as f64;
            eprintln!(
                "{} {}: {answered} answered, {ir:.0} instructions a query",
                c.label, mix.label
            );
            ir
        })
        .collect()
}

/// Sends each query and waits for its answer (5 s at most); how many were answered.
fn ask_all(addr: SocketAddr, queries: &[Vec<u8>]) -> usize {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut buf = vec![0u8; 65_535];
    let mut answered = 0;
    for (i, q) in queries.iter().enumerate() {
        let id = (i as u16).to_be_bytes();
        let mut q = q.clone();
        q[..2].copy_from_slice(&id);
        if sock.send_to(&q, addr).is_err() {
            continue;
        }
        while let Ok(n) = sock.recv(&mut buf) {
            if n >= 2 && buf[..2] == id {
                answered += 1;
                break;
            }
        }
    }
    answered
}

fn control(pid: u32, what: &str) {
    let ok = Command::new("callgrind_control")
        .args([what, &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "callgrind_control {what} {pid} failed (apt-get install valgrind)"
    );
}

/// The newest dump of `out` (`out.N` with the largest N).
fn latest_dump(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let dir = out.parent().unwrap_or(Path::new("."));
    let newest = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().to_string();
            let n: u32 = file.strip_prefix(&format!("{name}."))?.parse().ok()?;
            Some((n, e.path()))
        })
        .max();
    newest.map(|(_, p)| p).expect("a callgrind dump")
}

/// The instructions a dump counted (its `totals:` or `summary:` line).
fn totals(dump: &Path) -> u64 {
    let text = std::fs::read_to_string(dump).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The `n` functions with the largest self cost in a dump, each with its share of the total.
fn top_functions(dump: &Path, n: usize) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(dump).unwrap_or_default();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut cost: HashMap<String, u64> = HashMap::new();
    let mut current = String::new();
    let mut after_call = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("fn=") {
            current = compressed_name(&mut names, rest);
        } else if let Some(rest) = line.strip_prefix("cfn=") {
            compressed_name(&mut names, rest);
        } else if line.starts_with("calls=") {
            after_call = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            let c: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if !after_call {
                *cost.entry(current.clone()).or_default() += c;
            }
            after_call = false;
        }
    }
    let total = totals(dump).max(1) as f64;
    let share = |c: u64| c as f64 / total;
    let mut top: Vec<(String, u64)> = cost.into_iter().collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    top.into_iter()
        .take(n)
        .map(|(f, c)| (short(&f), share(c)))
        .collect()
}

/// A callgrind name entry, `(id) name` or `(id)`: the name, remembering it for its id.
fn compressed_name(names: &mut HashMap<String, String>, entry: &str) -> String {
    let (id, name) = match entry.split_once(' ') {
        Some((id, name)) => (id.to_string(), Some(name.to_string())),
        None => (entry.to_string(), None),
    };
    match name {
        Some(name) => {
            names.insert(id, name.clone());
            name
        }
        None => names.get(&id).cloned().unwrap_or(id),
    }
}

/// A function's name without its crate path (`lodestar_dns::net::udp::receive_loop` ->
/// `udp::receive_loop`).
fn short(name: &str) -> String {
    let parts: Vec<&str> = name.split("::").collect();
    if parts.len() > 2 {
        parts[parts.len() - 2..].join("::")
    } else {
        name.to_string()
    }
}

/// The largest relative difference between rounds.
fn spread_of(runs: &[f64]) -> f64 {
    let max = runs.iter().copied().fold(f64::MIN, f64::max);
    let min = runs.iter().copied().fold(f64::MAX, f64::min);
    if min > 0.0 {
        (max - min) / min
    } else {
        0.0
    }
}
