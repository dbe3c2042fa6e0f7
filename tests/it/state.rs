//! `--state-dir` through the binary: the last snapshot kept on disk answers at once after a
//! restart, also with etcd down; it never brings back what etcd deleted meanwhile, and a damaged
//! or foreign file (another domain, another etcd cluster) is never trusted.

use std::path::Path;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

/// The revision of the state file in `dir`, once it reads whole.
fn file_revision(dir: &Path) -> Option<i64> {
    let bytes = std::fs::read(dir.join(lodestar::view::STATE_FILE_NAME)).ok()?;
    let domains = ["webapp.dev.".to_string()];
    lodestar::view::decode_state(&bytes, "/skydns", &domains)
        .ok()
        .map(|(h, _)| h.revision)
}

/// Waits until the state file in `dir` holds revision `rev` or later.
async fn until_written(dir: &Path, rev: i64) {
    eventually(
        Duration::from_secs(20),
        "the state file written",
        || async { file_revision(dir).filter(|r| *r >= rev).map(|_| ()) },
    )
    .await;
}

async fn a(dns: &Dns, name: &str) -> (ResponseCode, Vec<String>) {
    let m = query(dns.addr, name, RecordType::A)
        .await
        .expect("an answer");
    (m.metadata.response_code, data(&m))
}

fn start(etcd: &Etcd, dir: &Path, extra: &[&str]) -> Dns {
    let d = dir.to_str().expect("a UTF-8 path");
    let mut args = vec!["--metrics", "127.0.0.1:0", "--state-dir", d];
    args.extend(extra);
    Dns::for_etcd(etcd, None, &args)
}

#[tokio::test]
async fn a_restart_with_etcd_down_answers_from_the_state_file() {
    let mut etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    etcd.put("/skydns/dev/webapp/redis/r1", r#"{"host":"10.0.0.1"}"#)
        .await;
    let rev = etcd
        .put("/skydns/dev/webapp/web", r#"{"host":"10.0.0.2"}"#)
        .await;
    let dns = start(&etcd, dir.path(), &[]);
    dns.ready().await;
    until_written(dir.path(), rev).await;
    drop(dns);
    etcd.kill();

    let dns = start(&etcd, dir.path(), &[]);
    // At once: no wait for etcd, which is down.
    assert_eq!(
        a(&dns, "redis.webapp.dev.").await,
        (ResponseCode::NoError, vec!["10.0.0.1".to_string()])
    );
    assert_eq!(a(&dns, "web.webapp.dev.").await.1, ["10.0.0.2"]);
    assert_eq!(a(&dns, "nope.webapp.dev.").await.0, ResponseCode::NXDomain);
    let (code, body) = dns.http_get("/readyz").await;
    assert_eq!(code, 503, "stale until etcd is followed: {body}");
    assert!(body.contains("stale"), "{body}");
    assert_eq!(dns.metric("lodestar_dns_view_stale").await, Some(1.0));
    assert!(dns.logs().contains("answering from the state file"));

    // etcd back: followed from the file's revision on, a change after it answers.
    etcd.restart().await;
    etcd.put("/skydns/dev/webapp/web", r#"{"host":"10.0.0.3"}"#)
        .await;
    until_a_contains(&dns, "web.webapp.dev.", "10.0.0.3").await;
    eventually(Duration::from_secs(20), "ready again", || async {
        (dns.http_get("/readyz").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_state_file_from_before_a_deletion_never_brings_the_name_back() {
    let etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    etcd.put("/skydns/dev/webapp/x", r#"{"host":"10.0.1.1"}"#)
        .await;
    etcd.put("/skydns/dev/webapp/y", r#"{"host":"10.0.1.2"}"#)
        .await;
    let rev = etcd
        .put("/skydns/dev/webapp/keep", r#"{"host":"10.0.1.9"}"#)
        .await;
    let dns = start(&etcd, dir.path(), &[]);
    dns.ready().await;
    until_written(dir.path(), rev).await;
    drop(dns);

    // Deleted while the server was down: resumed from the file's revision, the delete is seen.
    etcd.delete("/skydns/dev/webapp/x").await;
    let rev = etcd
        .put("/skydns/dev/webapp/z", r#"{"host":"10.0.1.3"}"#)
        .await;
    let dns = start(&etcd, dir.path(), &[]);
    until_a_contains(&dns, "z.webapp.dev.", "10.0.1.3").await;
    assert_eq!(a(&dns, "x.webapp.dev.").await.0, ResponseCode::NXDomain);
    assert_eq!(a(&dns, "keep.webapp.dev.").await.1, ["10.0.1.9"]);
    assert!(dns.logs().contains("answering from the state file"));
    until_written(dir.path(), rev).await;
    drop(dns);

    // Deleted and then compacted away: the file's revision cannot be resumed; loaded again.
    etcd.delete("/skydns/dev/webapp/y").await;
    let rev = etcd
        .put("/skydns/dev/webapp/w", r#"{"host":"10.0.1.4"}"#)
        .await;
    etcd.client()
        .await
        .compact(rev, None)
        .await
        .expect("compact");
    let dns = start(&etcd, dir.path(), &[]);
    until_a_contains(&dns, "w.webapp.dev.", "10.0.1.4").await;
    assert_eq!(a(&dns, "y.webapp.dev.").await.0, ResponseCode::NXDomain);
    assert_eq!(a(&dns, "x.webapp.dev.").await.0, ResponseCode::NXDomain);
    assert_eq!(a(&dns, "z.webapp.dev.").await.1, ["10.0.1.3"]);
    assert!(dns.logs().contains("compacted"), "{}", dns.logs());
}

#[tokio::test]
async fn a_damaged_or_foreign_state_file_is_never_trusted() {
    let mut etcd = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rev = etcd
        .put("/skydns/dev/webapp/a", r#"{"host":"10.0.2.1"}"#)
        .await;
    let dns = start(&etcd, dir.path(), &[]);
    dns.ready().await;
    until_written(dir.path(), rev).await;
    drop(dns);
    etcd.kill();
    let file = dir.path().join(lodestar::view::STATE_FILE_NAME);
    let good = std::fs::read(&file).unwrap();

    // Another domain: not this server's file.
    let ep = etcd.endpoint();
    let d = dir.path().to_str().unwrap();
    let other = Dns::start(&[
        "--domain",
        "other.dev",
        "--etcd",
        &ep,
        "--no-forward",
        "--state-dir",
        d,
    ]);
    let m = query(other.addr, "a.other.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    eventually(Duration::from_secs(10), "the file refused", || async {
        other.logs().contains("not this server's").then_some(())
    })
    .await;
    drop(other);

    // One byte changed in the middle.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(&file, &bad).unwrap();
    let dns = start(&etcd, dir.path(), &[]);
    assert_eq!(a(&dns, "a.webapp.dev.").await.0, ResponseCode::ServFail);
    assert!(
        dns.logs().contains("ignoring the state file"),
        "{}",
        dns.logs()
    );
    let (code, body) = dns.http_get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    // etcd back: loaded from it, and the file written whole again.
    etcd.restart().await;
    dns.ready().await;
    assert_eq!(a(&dns, "a.webapp.dev.").await.1, ["10.0.2.1"]);
    until_written(dir.path(), rev).await;
}

/// A state file of another etcd cluster (at a revision this one may have passed) is not resumed
/// on it: the server loads this cluster's records instead of missing every one before that
/// revision.
#[tokio::test]
async fn a_state_file_of_another_etcd_cluster_is_loaded_over() {
    let first = Etcd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rev = first
        .put("/skydns/dev/webapp/old", r#"{"host":"10.0.3.1"}"#)
        .await;
    let dns = start(&first, dir.path(), &[]);
    dns.ready().await;
    until_written(dir.path(), rev).await;
    drop(dns);
    drop(first);

    // Another cluster, already past the file's revision, with other records.
    let second = Etcd::start().await;
    second
        .put("/skydns/dev/webapp/new", r#"{"host":"10.0.3.2"}"#)
        .await;
    for i in 0..rev + 5 {
        second
            .put(
                "/skydns/dev/webapp/filler",
                &format!(r#"{{"host":"10.0.4.{}"}}"#, i % 250 + 1),
            )
            .await;
    }
    let dns = start(&second, dir.path(), &[]);
    until_a_contains(&dns, "new.webapp.dev.", "10.0.3.2").await;
    assert_eq!(a(&dns, "old.webapp.dev.").await.0, ResponseCode::NXDomain);
    assert!(dns.logs().contains("not of this etcd"), "{}", dns.logs());
}
