//! Moving from SkyDNS: the binary swapped into an existing `skydns.service` (SkyDNS's environment
//! and Go-style flags), SkyDNS's settings in etcd (`/skydns/config`), and etcd v2 records moved
//! to v3 with `etcdctl migrate` (etcd 3.4), as docs/skydns.md tells.

use std::process::{Command, Stdio};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::support::{eventually, free_port, path_str, query, until_a_contains, Dns, Etcd, Knot};

/// A SkyDNS unit's environment and flags, unchanged: SKYDNS_ADDR, SKYDNS_DOMAIN,
/// SKYDNS_NAMESERVERS, ETCD_MACHINES and `-verbose -rtimeout 1s -ns-rotate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skydns_unit_runs_with_the_binary_swapped() {
    let etcd = Etcd::start().await;
    etcd.put(
        "/skydns/local/skydns/redis/r1",
        r#"{"host":"10.0.0.5","port":6379}"#,
    )
    .await;
    let knot = Knot::start().await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (ep, up) = (etcd.endpoint(), knot.addr.to_string());
    let dns = Dns::start_with(
        &["-verbose", "-rtimeout", "1s", "-ns-rotate"],
        &[
            ("SKYDNS_ADDR", &addr),
            ("SKYDNS_DOMAIN", "skydns.local."),
            ("SKYDNS_NAMESERVERS", &up),
            ("ETCD_MACHINES", &ep),
        ],
        1,
    );
    assert_eq!(dns.addr.port(), port, "listening where SKYDNS_ADDR says");
    until_a_contains(&dns, "redis.skydns.local.", "10.0.0.5").await;
    // Forwarding to SKYDNS_NAMESERVERS, and -verbose logs queries.
    until_a_contains(&dns, "www.example.org.", "192.0.2.10").await;
    assert!(dns.logs().contains("\"query\""), "-verbose: {}", dns.logs());
    assert!(dns.logs().contains("SkyDNS flag -ns-rotate ignored"));
}

/// SkyDNS's `-discover` and `-ndots`, as a unit that uses them has them: the member given (here
/// through a proxy) finds the cluster's others, and names with fewer labels than `-ndots` are
/// not forwarded (SERVFAIL, as SkyDNS), longer ones are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skydns_discover_and_ndots_work() {
    let etcd = Etcd::start().await;
    etcd.put("/skydns/local/skydns/redis/r1", r#"{"host":"10.0.0.5"}"#)
        .await;
    let proxy = crate::support::TcpProxy::start(([127, 0, 0, 1], etcd.port).into()).await;
    let knot = Knot::start().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let (ep, up) = (proxy.url(), knot.addr.to_string());
    let dns = Dns::start_with(
        &[
            "-addr",
            &addr,
            "-domain",
            "skydns.local.",
            "-machines",
            &ep,
            "-nameservers",
            &up,
            "-discover",
            "-ndots",
            "3",
        ],
        &[],
        1,
    );
    until_a_contains(&dns, "redis.skydns.local.", "10.0.0.5").await;
    let logs = dns.logs();
    assert!(
        logs.contains("etcd members discovered") && logs.contains(&etcd.endpoint()),
        "{logs}"
    );
    until_a_contains(&dns, "www.example.org.", "192.0.2.10").await;
    let m = query(dns.addr, "example.org.", RecordType::SOA)
        .await
        .expect("answer");
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::ServFail,
        "two labels, -ndots 3: not forwarded"
    );
    assert!(m.metadata.recursion_available);
    // The member given goes away: the one discovered keeps the view following etcd.
    proxy.cut();
    etcd.put("/skydns/local/skydns/redis/r2", r#"{"host":"10.0.0.6"}"#)
        .await;
    until_a_contains(&dns, "redis.skydns.local.", "10.0.0.6").await;
}

/// SkyDNS's settings in etcd fill what the command line does not set: the domain, the TTL, the
/// nameservers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skydns_config_in_etcd_is_read() {
    let etcd = Etcd::start().await;
    let knot = Knot::start().await;
    let config = format!(
        r#"{{"domain":"cfg.local.","ttl":77,"nameservers":["{}"],"dns_addr":"127.0.0.1:53"}}"#,
        knot.addr
    );
    etcd.put("/skydns/config", &config).await;
    etcd.put("/skydns/local/cfg/web", r#"{"host":"10.0.0.6"}"#)
        .await;
    let ep = etcd.endpoint();
    // --listen given: the command line wins over dns_addr.
    let dns = Dns::start(&["--etcd", &ep]);
    until_a_contains(&dns, "web.cfg.local.", "10.0.0.6").await;
    let m = query(dns.addr, "web.cfg.local.", RecordType::A)
        .await
        .expect("answer");
    assert_eq!(m.answers.first().map(|r| r.ttl), Some(77));
    until_a_contains(&dns, "www.example.org.", "192.0.2.10").await;
    assert!(dns.logs().contains("settings from SkyDNS's config in etcd"));
}

fn etcdctl(api: &str, endpoint: &str, args: &[&str]) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", api)
        .args(["--endpoints", endpoint])
        .args(args)
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// etcd v2 records (SkyDNS before etcd3) moved to v3 keys with `etcdctl migrate`, then answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_v2_records_migrated_to_v3_are_answered() {
    let dir = TempDir::new().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (port, peer) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let start = |v2: bool| {
        let mut c = Command::new("etcd");
        c.args(["--name", "m", "--data-dir"])
            .arg(&data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args([
                "--initial-cluster",
                &format!("m={peer_url}"),
                "--log-level",
                "error",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if v2 {
            c.arg("--enable-v2");
        }
        c.spawn().expect("etcd")
    };
    let mut etcd = start(true);
    let healthy = || async {
        let ok = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &client, "endpoint", "health"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(())
    };
    eventually(Duration::from_secs(30), "etcd (v2 enabled) up", healthy).await;
    // SkyDNS's records as it wrote them to etcd v2.
    etcdctl(
        "2",
        &client,
        &[
            "set",
            "/skydns/local/skydns/db/db1",
            r#"{"host":"10.0.0.7","port":5432}"#,
        ],
    );
    etcdctl(
        "2",
        &client,
        &[
            "set",
            "/skydns/local/skydns/db/db2",
            r#"{"host":"10.0.0.8","port":5432}"#,
        ],
    );
    let _ = etcd.kill();
    let _ = etcd.wait();
    // docs/skydns.md's step: offline, v2 store -> v3 keys.
    etcdctl(
        "3",
        &client,
        &["migrate", "--data-dir", &path_str(&data_dir)],
    );
    let mut etcd = start(false);
    eventually(
        Duration::from_secs(30),
        "etcd up after the migration",
        healthy,
    )
    .await;
    let handle = Etcd::attach(port);
    let dns = Dns::for_etcd(&handle, None, &["--domain", "skydns.local"]);
    until_a_contains(&dns, "db.skydns.local.", "10.0.0.7").await;
    until_a_contains(&dns, "db.skydns.local.", "10.0.0.8").await;
    let _ = etcd.kill();
    let _ = etcd.wait();
}
