//! `GET /explain` through the binary: real etcd (a record on a lease, a value that is not JSON,
//! records of another group, 150 records under one name), Knot as the upstream; what decided the
//! answer, the keys and why each was used or not, the lease's seconds left, the cache, staleness
//! with etcd gone, forwarding and refusal, and the bounds.

use std::time::Duration;

use etcd_client::PutOptions;
use serde_json::Value;

use crate::support::*;

async fn explain(dns: &Dns, query: &str) -> (u16, Value) {
    let (status, body) = dns.http_get(&format!("/explain?{query}")).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

fn key<'v>(v: &'v Value, k: &str) -> &'v Value {
    v["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|x| x["key"] == k))
        .unwrap_or_else(|| panic!("{k} listed: {v:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_what_decided_an_answer_and_which_keys_made_it() {
    let mut etcd = Etcd::start().await;
    let knot = Knot::start().await;
    let mut c = etcd.client().await;
    let lease = c.lease_grant(60, None).await.expect("lease").id();
    c.put(
        "/skydns/dev/webapp/redis/r1",
        r#"{"host":"10.0.0.1","port":6379}"#,
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("put");
    etcd.put(
        "/skydns/dev/webapp/redis/r2",
        r#"{"host":"10.0.0.2","port":6379}"#,
    )
    .await;
    etcd.put("/skydns/dev/webapp/redis/bad", r#"{"host":"#)
        .await;
    etcd.put(
        "/skydns/dev/webapp/api/a",
        r#"{"host":"10.1.0.1","group":"blue"}"#,
    )
    .await;
    etcd.put(
        "/skydns/dev/webapp/api/b/x",
        r#"{"host":"10.1.0.2","group":"green"}"#,
    )
    .await;
    for i in 0..150 {
        let value = format!(r#"{{"host":"10.2.0.{i}"}}"#);
        etcd.put(&format!("/skydns/dev/webapp/many/m{i}"), &value)
            .await;
    }
    let dns = Dns::for_etcd(
        &etcd,
        Some(knot.addr),
        &[
            "--metrics",
            "127.0.0.1:0",
            "--allow-recursion",
            "127.0.0.0/8",
        ],
    );
    dns.ready().await;
    until_a_contains(&dns, "many.webapp.dev.", "10.2.0.149").await;

    let (status, v) = explain(&dns, "name=redis.webapp.dev&type=A").await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["decided"], "served domain webapp.dev.");
    assert_eq!(v["rcode"], "NOERROR");
    assert_eq!(v["answers_total"], 2);
    assert_eq!(v["ttl"], 30);
    assert_eq!(v["stale"], false);
    assert_eq!(v["cached"], false, "asked once: not kept yet");
    assert_eq!(v["path"], "dev/webapp/redis");
    assert_eq!(v["keys_total"], 3);
    let r1 = key(&v, "/skydns/dev/webapp/redis/r1");
    assert_eq!(r1["used"], true);
    assert_eq!(r1["lease"], format!("{lease:x}"));
    assert_eq!(r1["lease_ttl"]["granted"], 60);
    let left = r1["lease_ttl"]["seconds_left"]
        .as_i64()
        .expect("seconds left");
    assert!((1..=60).contains(&left), "{left}");
    let bad = key(&v, "/skydns/dev/webapp/redis/bad");
    assert_eq!(bad["used"], false);
    assert!(
        bad["skipped"]
            .as_str()
            .unwrap()
            .contains("not a SkyDNS record"),
        "{bad}"
    );
    assert!(v["revision"].as_i64().unwrap() > 0);

    // Asked twice, the answer is kept: explain says it comes from the cache.
    for _ in 0..2 {
        dns.a("redis.webapp.dev.").await;
    }
    let (_, v) = explain(&dns, "name=redis.webapp.dev&type=A").await;
    assert_eq!(v["cached"], true, "{v:#}");

    // The nearer group picks: green is left out, and said so.
    let (_, v) = explain(&dns, "name=api.webapp.dev").await;
    assert_eq!(v["group"], "blue", "{v:#}");
    let green = key(&v, "/skydns/dev/webapp/api/b/x");
    assert_eq!(green["used"], false);
    assert!(
        green["why"]
            .as_str()
            .unwrap()
            .contains("group \"green\" left out"),
        "{green}"
    );

    // Bounded: 100 keys listed of 150.
    let (_, v) = explain(&dns, "name=many.webapp.dev").await;
    assert_eq!(v["keys_total"], 150, "{v:#}");
    assert_eq!(v["keys"].as_array().unwrap().len(), 100);
    assert_eq!(v["records_used"], 150);
    assert_eq!(v["answers_total"], 150);
    assert_eq!(v["answers"].as_array().unwrap().len(), 100);

    // Other names: forwarded for a client inside --allow-recursion, refused outside it.
    let (_, v) = explain(&dns, "name=www.example.org&type=A").await;
    assert_eq!(v["decided"], "forwarded", "{v:#}");
    assert_eq!(v["upstreams"][0], knot.addr.to_string());
    let (_, v) = explain(&dns, "name=www.example.org&type=A&client=192.0.2.1").await;
    assert_eq!(v["decided"], "refused", "{v:#}");
    assert_eq!(v["rcode"], "REFUSED");
    assert!(v["why"].as_str().unwrap().contains("--allow-recursion"));

    // Bad input: 400 naming the parameter.
    let (status, v) = explain(&dns, "name=redis.webapp.dev&type=NOPE").await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("type"), "{v}");
    let (status, _) = dns.http_get("/explain?type=A").await;
    assert_eq!(status, 400, "name is required");

    // etcd gone: stale, TTLs capped, the keys from the snapshot, etcd's error said.
    etcd.kill();
    eventually(Duration::from_secs(20), "stale", || async {
        (dns.metric("lodestar_dns_view_stale").await == Some(1.0)).then_some(())
    })
    .await;
    let (status, v) = explain(&dns, "name=redis.webapp.dev&type=A").await;
    assert_eq!(status, 200);
    assert_eq!(v["stale"], true, "{v:#}");
    assert_eq!(v["ttl"], 5);
    assert!(
        v["answers"][0].as_str().unwrap().contains(" 5 IN A "),
        "{v:#}"
    );
    assert!(v["etcd"]["error"].is_string(), "{v:#}");
    assert_eq!(v["keys"].as_array().unwrap().len(), 2, "the records used");
}
