//! Operations through the binary: metrics, health, shutdown, bad flags.

use std::process::Command;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

#[tokio::test]
async fn metrics_count_queries_and_show_the_view() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/x", r#"{"host":"172.17.0.5"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    query(dns.addr, "x.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    query(dns.addr, "nope.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    let (status, body) = dns.http_get("/metrics").await;
    assert_eq!(status, 200);
    for want in [
        r#"lodestar_dns_queries_total{type="A",rcode="NOERROR",proto="udp",zone="webapp.dev."} 1"#,
        r#"lodestar_dns_queries_total{type="A",rcode="NXDOMAIN",proto="udp",zone="webapp.dev."} 1"#,
        "lodestar_dns_view_records 1",
        "lodestar_dns_view_loaded 1",
        "lodestar_dns_answer_latency_seconds_count",
    ] {
        assert!(body.contains(want), "{want} in\n{body}");
    }
    let (status, body) = dns.http_get("/readyz").await;
    assert_eq!((status, body.starts_with("ready")), (200, true), "{body}");
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let etcd = Etcd::start().await;
    let mut dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    dns.signal("TERM");
    let status = dns
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s");
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_flags_are_clear_errors() {
    let bin = env!("CARGO_BIN_EXE_lodestar-dns");
    for (args, want) in [
        (vec!["--domain", "not a domain"], "--domain"),
        (vec!["--domain", "a.dev", "--prefix", "skydns"], "--prefix"),
        (
            vec!["--domain", "a.dev", "--upstream", "dns.google"],
            "--upstream",
        ),
        (
            vec!["--domain", "a.dev", "--allow-recursion", "10.0.0.0/99"],
            "--allow-recursion",
        ),
        (vec!["--domain", "a.dev", "--listen", "nowhere"], "--listen"),
        (
            vec!["--domain", "a.dev", "--etcd-user", "root"],
            "--etcd-user",
        ),
        (
            vec!["--domain", "a.dev", "--etcd-key", "/k.pem"],
            "--etcd-cert",
        ),
    ] {
        let out = Command::new(bin).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn every_listen_address_every_domain_and_env_variables() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/a", r#"{"host":"172.17.0.5"}"#)
        .await;
    etcd.put("/skydns/local/cluster/b", r#"{"host":"172.17.0.6"}"#)
        .await;
    etcd.put("/other/dev/webapp/c", r#"{"host":"172.17.0.7"}"#)
        .await;
    // Flags from the environment, lists comma-separated; 127.0.0.2 is loopback too.
    let ep = etcd.endpoint();
    let env = [
        ("LODESTAR_LISTEN", "127.0.0.1:0,127.0.0.2:0"),
        ("LODESTAR_DOMAIN", "webapp.dev,cluster.local"),
        ("ETCD_ENDPOINTS", ep.as_str()),
        ("LODESTAR_NO_FORWARD", "true"),
    ];
    let dns = Dns::start_with(&[], &env, 2);
    assert_eq!(dns.addrs.len(), 2);
    // Our own names, booleans as 1/0, yes/no: LODESTAR_ETCD_ENDPOINTS wins over ETCD_ENDPOINTS.
    let ours = [
        ("LODESTAR_LISTEN", "127.0.0.1:0"),
        ("LODESTAR_DOMAIN", "webapp.dev"),
        ("LODESTAR_ETCD_ENDPOINTS", ep.as_str()),
        ("ETCD_ENDPOINTS", "http://127.0.0.1:1"),
        ("LODESTAR_NO_FORWARD", "1"),
        ("LODESTAR_LOG_QUERIES", "no"),
    ];
    let mine = Dns::start_with(&[], &ours, 1);
    mine.ready().await;
    let m = query(mine.addr, "www.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "LODESTAR_NO_FORWARD=1"
    );
    assert!(
        !mine.logs().contains("\"query\""),
        "LODESTAR_LOG_QUERIES=no"
    );
    for addr in &dns.addrs {
        for tcp in [false, true] {
            let m = eventually(Duration::from_secs(10), "answered", || async {
                exchange(*addr, &message("a.webapp.dev.", RecordType::A), tcp)
                    .await
                    .ok()
                    .filter(|m| !m.answers.is_empty())
            })
            .await;
            assert_eq!(data(&m), ["172.17.0.5"], "{addr} tcp={tcp}");
            let m = exchange(*addr, &message("b.cluster.local.", RecordType::A), tcp)
                .await
                .unwrap();
            assert_eq!(data(&m), ["172.17.0.6"], "{addr} tcp={tcp}");
        }
    }
    // Another prefix is another tree.
    let dns = Dns::for_etcd(&etcd, None, &["--prefix", "/other/"]);
    dns.ready().await;
    let m = query(dns.addr, "c.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(data(&m), ["172.17.0.7"]);
    let m = query(dns.addr, "a.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert!(m.answers.is_empty());
}

/// Text logs written to a pipe or a file carry no colour codes (only a terminal gets them).
#[test]
fn text_logs_off_a_terminal_have_no_colour_codes() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lodestar-dns"))
        .args([
            "--log-format",
            "text",
            "--domain",
            "webapp.dev",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--etcd", "http://127.0.0.1:1", "--no-forward"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lodestar-dns");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // Until a few log lines are there (it logs its listening address at once).
    while !String::from_utf8_lossy(&text).contains("listening") {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "no ANSI escape codes: {text:?}");
}

/// Settings no retry can fix stop both binaries at once (non-zero, within seconds), with one
/// line naming the flag and the file; an etcd that is merely down is retried (tested elsewhere).
#[test]
fn configuration_errors_fail_fast_with_the_flag_and_the_file() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let cert = dir.path().join("cert.pem");
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
    )
    .expect("cert");
    let der = dir.path().join("key.der");
    std::fs::write(&der, [0x30u8, 0x82, 0x01, 0x02]).expect("key");
    let (cert, der) = (path_str(&cert), path_str(&der));
    let missing = path_str(&dir.path().join("missing-ca.pem"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--etcd", "https://127.0.0.1:2379", "--etcd-ca", &missing],
            "--etcd-ca",
        ),
        (
            vec![
                "--etcd",
                "https://127.0.0.1:2379",
                "--etcd-ca",
                &cert,
                "--etcd-cert",
                &cert,
                "--etcd-key",
                &der,
            ],
            "--etcd-key",
        ),
        (
            vec!["--etcd", "http://127.0.0.1:2379", "--etcd-ca", &cert],
            "--etcd http://127.0.0.1:2379",
        ),
    ];
    let binaries = [
        (
            env!("CARGO_BIN_EXE_lodestar-dns"),
            ["--listen", "127.0.0.1:0"],
        ),
        (
            env!("CARGO_BIN_EXE_lodestar-registrator"),
            ["--ip", "10.0.0.1"],
        ),
    ];
    for (bin, own) in binaries {
        for (args, flag) in &cases {
            let started = std::time::Instant::now();
            let out = Command::new(bin)
                .args(["--domain", "webapp.dev"])
                .args(own)
                .args(args)
                .output()
                .expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{bin} {args:?}");
            assert!(err.contains(flag), "{bin} {args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{bin} {args:?} took long"
            );
        }
    }
}

/// The metric families a binary exposes, from its `# TYPE` lines.
fn families(body: &str) -> std::collections::BTreeSet<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Whole metric names, as the README lists them (not substrings): the DNS server's and the
/// registrator's families are exactly these, and every sample of a query counter has the
/// labels dashboards for CoreDNS expect (type, rcode, proto, zone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_names_are_exactly_the_documented_ones() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/x", r#"{"host":"172.17.0.5"}"#)
        .await;
    let knot = Knot::start().await;
    let dns = Dns::for_etcd(&etcd, Some(knot.addr), &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    query(dns.addr, "x.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    query(dns.addr, "www.example.org.", RecordType::A)
        .await
        .unwrap();
    let (_, body) = dns.http_get("/metrics").await;
    let want: std::collections::BTreeSet<String> = [
        "lodestar_dns_queries",
        "lodestar_dns_answer_latency_seconds",
        "lodestar_dns_forwarded_queries",
        "lodestar_dns_forward_cache_hits",
        "lodestar_dns_upstream_failures",
        "lodestar_dns_malformed_packets",
        "lodestar_dns_shed_queries",
        "lodestar_dns_forward_loops",
        "lodestar_dns_stale_answers",
        "lodestar_dns_worker_answers",
        "lodestar_dns_answer_cache_hits",
        "lodestar_dns_answer_cache_misses",
        "lodestar_dns_request_size_bytes",
        "lodestar_dns_response_size_bytes",
        "lodestar_dns_forward_requests",
        "lodestar_dns_forward_failures",
        "lodestar_dns_forward_request_duration_seconds",
        "lodestar_dns_view_revision",
        "lodestar_dns_view_records",
        "lodestar_dns_view_invalid_keys",
        "lodestar_dns_view_loaded",
        "lodestar_dns_view_stale",
        "lodestar_dns_view_progress_age_seconds",
        "lodestar_dns_view_skipped_values",
        "lodestar_dns_view_changes",
        "lodestar_dns_answer_cache_entries",
        "lodestar_dns_answer_cache_bytes",
        "lodestar_dns_dnssec_signatures_cached",
        "lodestar_dns_tcp_connections",
        "lodestar_build_info",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A labelled family without samples yet (no upstream has failed) is not written.
    let have = families(&body);
    assert!(
        have.is_subset(&want),
        "unexpected: {:?}",
        have.difference(&want)
    );
    let missing: Vec<_> = want
        .difference(&have)
        .filter(|n| *n != "lodestar_dns_forward_failures")
        .collect();
    assert!(missing.is_empty(), "missing {missing:?}:\n{body}");
    assert!(
        body.contains(r#"lodestar_dns_queries_total{type="A",rcode="NOERROR",proto="udp",zone="webapp.dev."} 1"#),
        "{body}"
    );
    assert!(
        body.contains(
            r#"lodestar_dns_queries_total{type="A",rcode="NOERROR",proto="udp",zone="."} 1"#
        ),
        "forwarded: zone . {body}"
    );
    assert!(
        body.contains(&format!(
            r#"lodestar_dns_forward_requests_total{{to="{}"}} 1"#,
            knot.addr
        )),
        "{body}"
    );
    assert!(body.contains(&format!(
        r#"lodestar_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    )));

    let reg = Registrator::start(&etcd, "h-metrics", &["--metrics", "127.0.0.1:0"]);
    let addr = reg.metrics.expect("registrator metrics");
    let body = eventually(
        Duration::from_secs(10),
        "registrator probes ran",
        || async move {
            let (_, body) = http_get(addr, "/metrics").await;
            body.contains("lodestar_registrator_docker_up 1")
                .then_some(body)
        },
    )
    .await;
    let want: std::collections::BTreeSet<String> = [
        "lodestar_registrator_containers",
        "lodestar_registrator_services",
        "lodestar_registrator_etcd_errors",
        "lodestar_registrator_docker_errors",
        "lodestar_registrator_reconciles",
        "lodestar_registrator_corrections",
        "lodestar_registrator_conflicts",
        "lodestar_registrator_docker_up",
        "lodestar_registrator_etcd_up",
        "lodestar_build_info",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(families(&body), want, "{body}");
}

/// The Grafana dashboard (`docker/grafana-dashboard.json`) queries only metrics that exist: every
/// metric name in its expressions is a family the two binaries expose (`_bucket`, `_count`,
/// `_sum` and `_total` being parts of a family).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_metrics_that_exist() {
    let json =
        std::fs::read_to_string(repo_file("docker/grafana-dashboard.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let mut names = std::collections::BTreeSet::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("lodestar_") || word.starts_with("process_") {
                    names.insert(word.to_string());
                }
            }
        }
    }
    assert!(names.len() > 10, "{names:?}");
    let etcd = Etcd::start().await;
    let knot = Knot::start().await;
    // A second upstream that refuses: forwarding failures are counted too.
    let dead = format!("127.0.0.1:{}", free_port());
    let dns = Dns::for_etcd(
        &etcd,
        Some(knot.addr),
        &["--metrics", "127.0.0.1:0", "--upstream", &dead],
    );
    dns.ready().await;
    for name in ["www.example.org.", "mail.example.org."] {
        query(dns.addr, name, RecordType::A).await.unwrap();
    }
    let reg = Registrator::start(&etcd, "h-dash", &["--metrics", "127.0.0.1:0"]);
    let (_, a) = dns.http_get("/metrics").await;
    let (_, b) = http_get(reg.metrics.expect("metrics"), "/metrics").await;
    let mut have = families(&a);
    have.extend(families(&b));
    for name in &names {
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            have.contains(family),
            "the dashboard asks for {name}, which no binary exposes"
        );
    }
}

/// `--check URL`: the images' HEALTHCHECK through the binary itself (no curl in a scratch image):
/// exit 0 when the URL answers 200, 1 otherwise.
#[tokio::test]
async fn check_mode_tells_health_by_exit_code() {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    let url = format!("http://{}/healthz", dns.metrics.expect("metrics"));
    let dead = format!("http://127.0.0.1:{}/healthz", free_port());
    for (bin, url, ok) in [
        (env!("CARGO_BIN_EXE_lodestar-dns"), &url, true),
        (env!("CARGO_BIN_EXE_lodestar-registrator"), &url, true),
        (env!("CARGO_BIN_EXE_lodestar-dns"), &dead, false),
    ] {
        let status = Command::new(bin)
            .args(["--check", url])
            .status()
            .expect("run");
        assert_eq!(status.success(), ok, "{bin} --check {url}");
    }
    // The URL from the environment, as the image sets it.
    let status = Command::new(env!("CARGO_BIN_EXE_lodestar-dns"))
        .arg("--check")
        .env("LODESTAR_CHECK_URL", &url)
        .status()
        .expect("run");
    assert!(status.success());
}

/// The native systemd units (and lodestar-dns.socket) pass `systemd-analyze verify` (with
/// ExecStart pointing at the binaries built here, since verify checks that the executable exists).
#[test]
fn systemd_units_verify() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    for (unit, bin) in [
        ("lodestar-dns.service", env!("CARGO_BIN_EXE_lodestar-dns")),
        (
            "lodestar-registrator.service",
            env!("CARGO_BIN_EXE_lodestar-registrator"),
        ),
    ] {
        let text = std::fs::read_to_string(repo_file(&format!("systemd/{unit}"))).expect("unit");
        let name = unit.rsplit('/').next().unwrap_or(unit);
        assert!(
            text.contains("Type=notify") && text.contains("DynamicUser=yes"),
            "{unit}"
        );
        let text = text.replace(
            &format!("/usr/local/bin/{}", name.trim_end_matches(".service")),
            bin,
        );
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let mut units = vec![path];
        if unit == "lodestar-dns.service" {
            // The sockets systemd holds for it, verified beside it (their Service=).
            let socket = dir.path().join("lodestar-dns.socket");
            std::fs::copy(repo_file("systemd/lodestar-dns.socket"), &socket).expect("socket unit");
            let text = std::fs::read_to_string(&socket).expect("socket unit");
            assert!(
                text.contains("ListenDatagram=127.0.0.1:53")
                    && text.contains("ListenStream=127.0.0.1:53")
                    && text.contains("Service=lodestar-dns.service"),
                "lodestar-dns.socket"
            );
            units.push(socket);
        }
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(&units)
            .output()
            .expect("systemd-analyze (apt-get install systemd)");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{unit}: {err}");
        // verify only warns about a setting it cannot parse ("ignoring"): none may be there.
        assert!(err.trim().is_empty(), "{unit}: {err}");
    }
}

/// `Type=notify`: READY=1 goes to $NOTIFY_SOCKET once the first snapshot answers.
#[tokio::test]
async fn sd_notify_says_ready_once_the_view_is_loaded() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).expect("bind");
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/a", r#"{"host":"10.0.0.1"}"#)
        .await;
    let ep = etcd.endpoint();
    let notify = path_str(&sock_path);
    let dns = Dns::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--domain",
            "webapp.dev",
            "--etcd",
            &ep,
            "--no-forward",
        ],
        &[("NOTIFY_SOCKET", notify.as_str())],
        1,
    );
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(20), sock.recv(&mut buf))
        .await
        .expect("READY within 20 s")
        .expect("recv");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means answering.
    let m = query(dns.addr, "a.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(data(&m), ["10.0.0.1"]);
}

/// `make run` finds the binaries where cargo puts them: with `CARGO_TARGET_DIR` set (a shared
/// target directory), not under ./target (it used to start a path that did not exist).
#[test]
fn make_run_locates_the_binaries_through_cargo() {
    let out = Command::new("make")
        .args(["-s", "-p", "-n", "stop"])
        .current_dir(repo_file(""))
        .env("CARGO_TARGET_DIR", "/tmp/lodestar-shared-target")
        .output()
        .expect("make");
    let text = String::from_utf8_lossy(&out.stdout);
    let bin = text
        .lines()
        .find(|l| l.starts_with("BIN := "))
        .expect("the BIN variable");
    assert!(
        bin.starts_with("BIN := /tmp/lodestar-shared-target/") && bin.ends_with("/release"),
        "{bin}"
    );
    let makefile = std::fs::read_to_string(repo_file("Makefile")).expect("Makefile");
    assert!(
        makefile.contains("exited at once; the end of"),
        "dying processes are reported"
    );
}
