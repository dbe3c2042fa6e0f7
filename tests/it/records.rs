//! `lodestar-registrator record put|get|ls|rm` through the binary, against a real etcd, with
//! `lodestar-dns` answering what it wrote.

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::*;

const SOON: Duration = Duration::from_secs(3);

fn record(etcd: &Etcd, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lodestar-registrator"))
        .arg("record")
        .args(args)
        .env("LODESTAR_ETCD_ENDPOINTS", etcd.endpoint())
        .env("LODESTAR_DOMAIN", "webapp.dev")
        .output()
        .expect("run record")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A refused command: non-zero, one line on stderr (clap's own errors add a hint after a blank
/// line) that names the field.
fn refused(out: &Output, field: &str) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains(field), "{field} in {stderr:?}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn put_get_ls_rm_and_every_invalid_field_refused_with_nothing_written() {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let out = record(
        &etcd,
        &[
            "put",
            "redis-1.redis.webapp.dev",
            "--host",
            "10.0.0.1",
            "--port",
            "6379",
            "--priority",
            "10",
            "--weight",
            "50",
            "--ttl",
            "30",
        ],
    );
    ok(&out);
    ok(&record(
        &etcd,
        &[
            "put",
            "t.redis.webapp.dev",
            "--host",
            "10.0.0.2",
            "--text",
            &"x".repeat(300),
        ],
    ));
    eventually(SOON, "redis answers", || async {
        (dns.answers("redis-1.redis.webapp.dev.", RecordType::A)
            .await
            == ["10.0.0.1"])
        .then_some(())
    })
    .await;
    assert_eq!(
        dns.answers("redis-1.redis.webapp.dev.", RecordType::SRV)
            .await,
        ["10 100 6379 redis-1.redis.webapp.dev."],
        "one record of its priority: its weight is all of it (SkyDNS)"
    );
    let txt = query(dns.addr, "t.redis.webapp.dev.", RecordType::TXT)
        .await
        .expect("TXT");
    assert_eq!(
        data(&txt).concat().matches('x').count(),
        300,
        "split, whole"
    );

    // get: the JSON as stored; --json: name, key, value, lease.
    let got = ok(&record(&etcd, &["get", "redis-1.redis.webapp.dev"]));
    let v: serde_json::Value = serde_json::from_str(got.trim()).expect("JSON");
    assert_eq!(v["host"], "10.0.0.1");
    assert_eq!(v["port"], 6379);
    let got = ok(&record(
        &etcd,
        &["get", "redis-1.redis.webapp.dev.", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(got.trim()).expect("JSON");
    assert_eq!(v["name"], "redis-1.redis.webapp.dev");
    assert_eq!(v["key"], "/skydns/dev/webapp/redis/redis-1");
    assert_eq!(v["lease"], 0);
    // ls: at or below the name.
    let ls = ok(&record(&etcd, &["ls", "redis.webapp.dev", "--json"]));
    let names: Vec<String> = ls
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["name"].to_string())
        .collect();
    assert_eq!(
        names,
        ["\"redis-1.redis.webapp.dev\"", "\"t.redis.webapp.dev\""]
    );

    // Every invalid field: refused, one line naming it, nothing written.
    let before = ok(&record(&etcd, &["ls", "--json"]));
    let long = "y".repeat(70_000);
    let put = |name: &str, more: &[&str]| -> Output {
        let mut args = vec!["put", name, "--host", "10.0.0.1"];
        args.extend(more);
        record(&etcd, &args)
    };
    let cases: [(Output, &str); 9] = [
        (put("a.other.dev", &[]), "NAME"),
        (put("a b.webapp.dev", &[]), "NAME"),
        (
            record(&etcd, &["put", "a.webapp.dev", "--host", "not a host"]),
            "--host",
        ),
        (put("a.webapp.dev", &["--port", "70000"]), "--port"),
        (put("a.webapp.dev", &["--port", "0"]), "--port"),
        (put("a.webapp.dev", &["--priority", "70000"]), "--priority"),
        (put("a.webapp.dev", &["--text", &long]), "bytes"),
        (put("ns.dns.webapp.dev", &[]), "reserved"),
        (record(&etcd, &["rm", "ns.dns.webapp.dev"]), "reserved"),
    ];
    for (out, field) in &cases {
        refused(out, field);
    }
    assert_eq!(
        ok(&record(&etcd, &["ls", "--json"])),
        before,
        "nothing written"
    );
    // The reserved subtree with --reserved: an NS record of the domain.
    ok(&record(
        &etcd,
        &[
            "put",
            "ns1.ns.dns.webapp.dev",
            "--host",
            "10.0.0.53",
            "--reserved",
        ],
    ));

    // rm, and rm --recursive.
    ok(&record(&etcd, &["rm", "t.redis.webapp.dev"]));
    assert!(
        !record(&etcd, &["rm", "t.redis.webapp.dev"])
            .status
            .success(),
        "gone"
    );
    refused(&record(&etcd, &["rm", "redis.webapp.dev"]), "no record");
    let out = ok(&record(&etcd, &["rm", "redis.webapp.dev", "--recursive"]));
    assert_eq!(out.trim(), "deleted 1");
    eventually(SOON, "redis gone", || async {
        dns.is_nxdomain("redis-1.redis.webapp.dev.")
            .await
            .then_some(())
    })
    .await;

    // A name with thousands of instances is listed whole, a page at a time.
    let many: Vec<(String, String)> = (0..2500)
        .map(|i| {
            (
                format!("/skydns/dev/webapp/many/i{i:04}"),
                format!(r#"{{"host":"10.5.{}.{}"}}"#, i / 250, i % 250 + 1),
            )
        })
        .collect();
    put_all(&etcd, &many).await;
    let ls = ok(&record(&etcd, &["ls", "many.webapp.dev", "--json"]));
    let names: Vec<String> = ls
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), 2500);
    assert_eq!(names[0], "i0000.many.webapp.dev");
    assert_eq!(names[2499], "i2499.many.webapp.dev");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "each once, in order");
}

/// `record put --lease-ttl`: a heartbeat. The record lives while the command runs, goes at once
/// when it is stopped (the lease revoked), within the TTL when it is killed; a name on another
/// owner's live lease is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_a_lease_is_a_heartbeat() {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let beat = |name: &str| {
        let child = Command::new(env!("CARGO_BIN_EXE_lodestar-registrator"))
            .args([
                "record",
                "put",
                name,
                "--host",
                "10.0.0.9",
                "--lease-ttl",
                "2",
            ])
            .env("LODESTAR_ETCD_ENDPOINTS", etcd.endpoint())
            .env("LODESTAR_DOMAIN", "webapp.dev")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        Proc::new(child, Arc::new(Mutex::new(Vec::new())))
    };
    let mut a = beat("hb.webapp.dev");
    eventually(SOON, "hb answers", || async {
        (dns.answers("hb.webapp.dev.", RecordType::A).await == ["10.0.0.9"]).then_some(())
    })
    .await;
    // Kept alive past several TTLs.
    let lease = |etcd: &Etcd| {
        let out = ok(&record(etcd, &["get", "hb.webapp.dev", "--json"]));
        serde_json::from_str::<serde_json::Value>(out.trim()).expect("JSON")["lease"]
            .as_i64()
            .unwrap_or(0)
    };
    assert_ne!(lease(&etcd), 0, "on a lease");
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        assert_eq!(
            dns.answers("hb.webapp.dev.", RecordType::A).await,
            ["10.0.0.9"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Another owner's live lease holds it: a second put is refused, nothing changes.
    let out = record(&etcd, &["put", "hb.webapp.dev", "--host", "10.0.0.10"]);
    refused(&out, "held by the live lease");
    // Stopped: revoked, gone at once.
    a.signal("TERM");
    assert!(a.wait_exit(SOON).is_some_and(|s| s.success()));
    eventually(Duration::from_millis(500), "hb gone at once", || async {
        dns.is_nxdomain("hb.webapp.dev.").await.then_some(())
    })
    .await;
    // Killed: gone within its TTL.
    let b = beat("hb2.webapp.dev");
    eventually(SOON, "hb2 answers", || async {
        (dns.answers("hb2.webapp.dev.", RecordType::A).await == ["10.0.0.9"]).then_some(())
    })
    .await;
    b.signal("KILL");
    eventually(
        Duration::from_secs(4),
        "hb2 gone within its TTL",
        || async { dns.is_nxdomain("hb2.webapp.dev.").await.then_some(()) },
    )
    .await;
}
