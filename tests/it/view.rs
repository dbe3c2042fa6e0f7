//! The watched view through the binary: propagation, etcd failures, compaction, bad values.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

#[tokio::test]
async fn writes_and_deletes_are_seen_within_a_second() {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    etcd.put("/skydns/dev/webapp/web/w1", r#"{"host":"172.17.0.10"}"#)
        .await;
    eventually(Duration::from_secs(1), "new record answered", || async {
        (dns.a("web.webapp.dev.").await == ["172.17.0.10"]).then_some(())
    })
    .await;
    etcd.put("/skydns/dev/webapp/web/w1", r#"{"host":"172.17.0.11"}"#)
        .await;
    eventually(
        Duration::from_secs(1),
        "changed record answered",
        || async { (dns.a("web.webapp.dev.").await == ["172.17.0.11"]).then_some(()) },
    )
    .await;
    etcd.delete("/skydns/dev/webapp/web/w1").await;
    eventually(Duration::from_secs(1), "deleted record gone", || async {
        let m = query(dns.addr, "web.webapp.dev.", RecordType::A)
            .await
            .ok()?;
        (m.metadata.response_code == ResponseCode::NXDomain).then_some(())
    })
    .await;
}

#[tokio::test]
async fn etcd_down_keeps_answering_and_recovers() {
    let mut etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/redis/r1", r#"{"host":"172.17.0.5"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    etcd.kill();
    // The watch notices the loss; answers keep coming from the last snapshot meanwhile.
    eventually(
        Duration::from_secs(15),
        "the loss of etcd is logged",
        || async { dns.logs().contains("etcd unavailable").then_some(()) },
    )
    .await;
    for _ in 0..20 {
        assert_eq!(dns.a("redis.webapp.dev.").await, ["172.17.0.5"]);
    }
    etcd.restart().await;
    etcd.put("/skydns/dev/webapp/redis/r2", r#"{"host":"172.17.0.6"}"#)
        .await;
    eventually(
        Duration::from_secs(15),
        "writes after the restart are seen",
        || async {
            (dns.a("redis.webapp.dev.").await == ["172.17.0.5", "172.17.0.6"]).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn compaction_while_behind_reloads() {
    let mut etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/old/o1", r#"{"host":"172.17.0.1"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    // Freeze the server, so its watch falls behind while etcd restarts, changes and compacts.
    dns.signal("STOP");
    etcd.restart().await;
    etcd.delete("/skydns/dev/webapp/old/o1").await;
    let rev = etcd
        .put("/skydns/dev/webapp/new/n1", r#"{"host":"172.17.0.2"}"#)
        .await;
    etcd.client()
        .await
        .compact(rev, None)
        .await
        .expect("compact");
    dns.signal("CONT");
    eventually(
        Duration::from_secs(15),
        "the new state after a reload",
        || async {
            let gone = query(dns.addr, "old.webapp.dev.", RecordType::A)
                .await
                .ok()?
                .metadata
                .response_code
                == ResponseCode::NXDomain;
            (gone && dns.a("new.webapp.dev.").await == ["172.17.0.2"]).then_some(())
        },
    )
    .await;
    assert!(
        dns.logs().contains("compacted"),
        "the reload is logged: {}",
        dns.logs()
    );
}

#[tokio::test]
async fn malformed_values_are_skipped_logged_and_counted() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/dev/webapp/good", r#"{"host":"172.17.0.5"}"#)
        .await;
    etcd.put("/skydns/dev/webapp/bad1", "{not json").await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    etcd.put("/skydns/dev/webapp/bad2", r#"{"host":"no spaces allowed"}"#)
        .await;
    etcd.put("/skydns/dev/webapp/bad3", r#"["an","array"]"#)
        .await;
    etcd.put("/skydns/dev/webapp/after", r#"{"host":"172.17.0.6"}"#)
        .await;
    eventually(
        Duration::from_secs(5),
        "the record after the bad ones",
        || async { (dns.a("after.webapp.dev.").await == ["172.17.0.6"]).then_some(()) },
    )
    .await;
    assert_eq!(dns.a("good.webapp.dev.").await, ["172.17.0.5"]);
    let m = query(dns.addr, "bad1.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let (_, body) = dns.http_get("/metrics").await;
    assert!(
        body.contains("lodestar_dns_view_skipped_values_total 3"),
        "{body}"
    );
    let logs = dns.logs();
    assert_eq!(
        logs.matches("skipping malformed record").count(),
        3,
        "each logged once: {logs}"
    );
    // Fixing a value brings it in.
    etcd.put("/skydns/dev/webapp/bad1", r#"{"host":"172.17.0.7"}"#)
        .await;
    eventually(Duration::from_secs(5), "a fixed value answers", || async {
        (dns.a("bad1.webapp.dev.").await == ["172.17.0.7"]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn servfail_and_not_ready_until_the_first_snapshot() {
    // etcd is not there yet: the server starts, says so, and answers SERVFAIL for its names.
    let port = free_port();
    let ep = format!("http://127.0.0.1:{port}");
    let dns = Dns::start(&[
        "--domain",
        "webapp.dev",
        "--etcd",
        &ep,
        "--no-forward",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let m = query(dns.addr, "anything.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(dns.http_get("/readyz").await.0, 503);
    assert_eq!(dns.http_get("/healthz").await.0, 200);
    eventually(
        Duration::from_secs(10),
        "etcd being away is logged",
        || async {
            dns.logs()
                .contains("etcd unavailable, retrying")
                .then_some(())
        },
    )
    .await;
    assert!(dns.logs().contains(&ep), "the log names the endpoint");
    let m = query(dns.addr, "www.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "other names: forwarding is off"
    );
}

#[tokio::test]
async fn a_view_larger_than_one_page_loads_whole() {
    let etcd = Etcd::start().await;
    let mut c = etcd.client().await;
    let n = 4500; // more than two pages of 2000 (the page size is set small below)
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|i| {
                etcd_client::TxnOp::put(
                    format!("/skydns/dev/webapp/svc{i}/i"),
                    format!(r#"{{"host":"10.0.{}.{}"}}"#, i / 250, i % 250),
                    None,
                )
            })
            .collect();
        c.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    }
    let dns = Dns::for_etcd(&etcd, None, &["--load-page", "2000"]);
    dns.ready().await;
    for i in [0, 1999, 2000, 2001, 4499] {
        let want = format!("10.0.{}.{}", i / 250, i % 250);
        assert_eq!(
            dns.a(&format!("svc{i}.webapp.dev.")).await,
            [want],
            "svc{i}"
        );
    }
    assert!(dns.logs().contains(r#""records":4500"#), "{}", dns.logs());
}

/// The view's revision and record count, as `/metrics` says them.
async fn view_state(dns: &Dns) -> (i64, i64) {
    let rev = dns
        .metric("lodestar_dns_view_revision")
        .await
        .unwrap_or(0.0);
    let n = dns.metric("lodestar_dns_view_records").await.unwrap_or(0.0);
    (rev as i64, n as i64)
}

/// 100,000 keys deleted in one request: etcd sends one watch message of about 6 MB (more than
/// gRPC's default 4 MiB). The view applies it whole; it never claims the revision of the delete
/// while still answering the deleted names.
#[tokio::test]
async fn a_mass_delete_in_one_request_is_applied_whole() {
    let etcd = Etcd::start().await;
    let n = 100_000;
    let records: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("/skydns/dev/webapp/big/s{i}/instance-{i}"),
                format!(
                    r#"{{"host":"10.{}.{}.{}"}}"#,
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ),
            )
        })
        .collect();
    put_all(&etcd, &records).await;
    etcd.put("/skydns/dev/webapp/keep/k1", r#"{"host":"172.17.0.9"}"#)
        .await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    let one = "instance-77777.s77777.big.webapp.dev.";
    assert_eq!(dns.a(one).await, ["10.1.47.209"]);
    assert_eq!(view_state(&dns).await.1, n + 1);
    let deleted = etcd
        .client()
        .await
        .delete(
            "/skydns/dev/webapp/big/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .expect("delete the prefix");
    assert_eq!(deleted.deleted(), n);
    let rev = deleted.header().map(|h| h.revision()).unwrap_or_default();
    eventually(
        Duration::from_secs(60),
        "the view holds what etcd holds, at the delete's revision",
        || async { (view_state(&dns).await == (rev, 1)).then_some(()) },
    )
    .await;
    for name in ["s0.big.webapp.dev.", one, "big.webapp.dev."] {
        let m = query(dns.addr, name, RecordType::A).await.unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
    }
    assert_eq!(dns.a("keep.webapp.dev.").await, ["172.17.0.9"]);
    let (code, body) = dns.http_get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!("revision {rev} with 1 records")),
        "{body}"
    );
}

/// A cut from etcd while three values of 1.4 MB and a small record are written: the catch-up
/// after it is one batch of more than 4 MiB. Nothing is skipped: the small record answers, and
/// the large values are left out for their size (each logged once and counted), not lost.
#[tokio::test]
async fn values_past_a_megabyte_written_during_a_cut_lose_nothing() {
    let etcd = Etcd::start().await;
    let proxy = TcpProxy::start(([127, 0, 0, 1], etcd.port).into()).await;
    let dns = Dns::start(&[
        "--domain",
        "webapp.dev",
        "--etcd",
        &proxy.url(),
        "--no-forward",
        "--metrics",
        "127.0.0.1:0",
    ]);
    dns.ready().await;
    proxy.cut();
    eventually(Duration::from_secs(15), "the cut is noticed", || async {
        (dns.metric("lodestar_dns_view_stale").await == Some(1.0)).then_some(())
    })
    .await;
    let huge = format!(
        r#"{{"host":"10.0.0.1","text":"{}"}}"#,
        "x".repeat(1_400_000)
    );
    for i in 1..=3 {
        etcd.put(&format!("/skydns/dev/webapp/huge/h{i}"), &huge)
            .await;
    }
    let rev = etcd
        .put("/skydns/dev/webapp/small/s1", r#"{"host":"172.17.0.3"}"#)
        .await;
    proxy.heal();
    eventually(
        Duration::from_secs(30),
        "the small record written during the cut answers",
        || async { (dns.a("small.webapp.dev.").await == ["172.17.0.3"]).then_some(()) },
    )
    .await;
    assert_eq!(view_state(&dns).await, (rev, 1));
    let m = query(dns.addr, "huge.webapp.dev.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        dns.metric("lodestar_dns_view_skipped_values_total").await,
        Some(3.0)
    );
    let logs = dns.logs();
    assert_eq!(
        logs.matches("more than the 65536 a record may have")
            .count(),
        3,
        "{logs}"
    );
}

/// A server far behind etcd (5,000 single-key writes while it was cut off) catches up 1,000
/// revisions a response, each stamped with etcd's current revision. Cut again as soon as the
/// first of them answers, and healed: it resumes from what it applied, and every record answers.
#[tokio::test]
async fn a_watcher_far_behind_cut_again_mid_catch_up_loses_nothing() {
    let etcd = Etcd::start().await;
    let proxies = [
        TcpProxy::start(([127, 0, 0, 1], etcd.port).into()).await,
        TcpProxy::start(([127, 0, 0, 1], etcd.port).into()).await,
    ];
    let endpoints = format!("{},{}", proxies[0].url(), proxies[1].url());
    let dns = Dns::start(&[
        "--domain",
        "webapp.dev",
        "--etcd",
        &endpoints,
        "--no-forward",
        "--metrics",
        "127.0.0.1:0",
    ]);
    dns.ready().await;
    let cut = || proxies.iter().for_each(TcpProxy::cut);
    let heal = || proxies.iter().for_each(TcpProxy::heal);
    cut();
    eventually(Duration::from_secs(15), "the cut is noticed", || async {
        (dns.metric("lodestar_dns_view_stale").await == Some(1.0)).then_some(())
    })
    .await;
    let n = 5_000;
    let client = etcd.client().await;
    let mut last = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let puts = chunk.iter().map(|i| {
            let mut c = client.clone();
            async move {
                c.put(
                    format!("/skydns/dev/webapp/r/r{i}"),
                    format!(r#"{{"host":"10.9.{}.{}"}}"#, i / 250, i % 250),
                    None,
                )
                .await
                .expect("put")
                .header()
                .map(|h| h.revision())
                .unwrap_or_default()
            }
        });
        let revs = futures_util::future::join_all(puts).await;
        last = last.max(revs.into_iter().max().unwrap_or_default());
    }
    heal();
    eventually(
        Duration::from_secs(30),
        "the first replayed record answers",
        || async { (dns.a("r0.r.webapp.dev.").await == ["10.9.0.0"]).then_some(()) },
    )
    .await;
    cut();
    let (applied, records) = view_state(&dns).await;
    eprintln!("cut again at revision {applied} with {records} of {n} records (etcd at {last})");
    heal();
    eventually(
        Duration::from_secs(60),
        "every record written while cut off is in the view",
        || async { (view_state(&dns).await == (last, n)).then_some(()) },
    )
    .await;
    for i in [1, 999, 1000, 1001, 2500, 4999] {
        assert_eq!(
            dns.a(&format!("r{i}.r.webapp.dev.")).await,
            [format!("10.9.{}.{}", i / 250, i % 250)],
            "r{i}"
        );
    }
}

/// Thousands of changes after the load (overwrites, deletes, new names; past the share of the
/// view that is merged into its compact base on a blocking thread, while more changes arrive):
/// every name answers what etcd holds, the reverse names follow the new addresses, and the
/// changes are merged (the gauge of paths held apart falls back under the threshold).
#[tokio::test]
async fn thousands_of_changes_are_merged_into_the_view_and_answer_right() {
    let etcd = Etcd::start().await;
    let n = 20_000;
    let ip = |i: usize, v: usize| format!("10.{v}.{}.{}", i / 250, i % 250 + 1);
    let key = |i: usize| format!("/skydns/dev/webapp/a/s{i}");
    let initial: Vec<(String, String)> = (0..n)
        .map(|i| (key(i), format!(r#"{{"host":"{}"}}"#, ip(i, 1))))
        .collect();
    put_all(&etcd, &initial).await;
    let dns = Dns::for_etcd(&etcd, None, &["--metrics", "127.0.0.1:0"]);
    dns.ready().await;
    assert_eq!(view_state(&dns).await.1, n as i64);
    // 3,000 overwritten, 2,000 deleted, 3,000 new: 8,000 changes in 63 requests.
    let mut c = etcd.client().await;
    let ops: Vec<etcd_client::TxnOp> = (0..3_000)
        .map(|i| etcd_client::TxnOp::put(key(i), format!(r#"{{"host":"{}"}}"#, ip(i, 2)), None))
        .chain((3_000..5_000).map(|i| etcd_client::TxnOp::delete(key(i), None)))
        .chain((n..n + 3_000).map(|i| {
            etcd_client::TxnOp::put(key(i), format!(r#"{{"host":"{}"}}"#, ip(i, 3)), None)
        }))
        .collect();
    let mut rev = 0;
    for chunk in ops.chunks(128) {
        let r = c
            .txn(etcd_client::Txn::new().and_then(chunk.to_vec()))
            .await
            .expect("txn");
        rev = r.header().map(|h| h.revision()).unwrap_or_default();
    }
    eventually(
        Duration::from_secs(30),
        "the view at the last write's revision, its changes merged",
        || async {
            let merged = dns.metric("lodestar_dns_view_changes").await? <= 4096.0;
            (view_state(&dns).await == (rev, n as i64 + 1_000) && merged).then_some(())
        },
    )
    .await;
    for i in (0..n + 3_000).step_by(97) {
        let name = format!("s{i}.a.webapp.dev.");
        let want: Vec<String> = match i {
            0..3_000 => vec![ip(i, 2)],
            3_000..5_000 => vec![],
            _ if i < n => vec![ip(i, 1)],
            _ => vec![ip(i, 3)],
        };
        assert_eq!(dns.a(&name).await, want, "{name}");
    }
    // The reverse names: an overwritten record's new address, not its old one.
    let ptr = |a: String| {
        let o: Vec<&str> = a.split('.').rev().collect();
        format!("{}.in-addr.arpa.", o.join("."))
    };
    let m = query(dns.addr, &ptr(ip(7, 2)), RecordType::PTR)
        .await
        .unwrap();
    assert_eq!(data(&m), ["s7.a.webapp.dev."]);
    let m = query(dns.addr, &ptr(ip(7, 1)), RecordType::PTR)
        .await
        .unwrap();
    assert!(data(&m).is_empty(), "{m:?}");
    let (code, body) = dns.http_get("/readyz").await;
    assert_eq!(code, 200, "{body}");
}
