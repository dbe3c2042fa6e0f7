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
        r#"lodestar_dns_queries_total{qtype="A",rcode="NOERROR"} 1"#,
        r#"lodestar_dns_queries_total{qtype="A",rcode="NXDOMAIN"} 1"#,
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
