//! Operations through the binary: metrics, health, shutdown, bad flags.

use std::process::Command;
use std::time::Duration;

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
    ] {
        let out = Command::new(bin).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
