//! RFC 2782 service names (`_redis._tcp.webapp.dev SRV`) through the real binaries: records a
//! registrator wrote for a container's TCP and UDP ports, and records written with `record put
//! --proto udp`, answered by `lodestar-dns` from a real etcd; a name stored literally with
//! underscores answers as stored.

use std::process::Command;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::*;

const SOON: Duration = Duration::from_secs(15);

async fn sorted_srv(dns: &Dns, name: &str) -> Vec<String> {
    let mut v = srv(dns, name).await;
    v.sort();
    v
}

/// A container with a TCP and a UDP port under one name: `_<name>._tcp` answers the TCP one,
/// `_<name>._udp` the UDP one (the registrator marks it `"proto":"udp"`), with its address as
/// additional data; `A` on them is NODATA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_tcp_and_udp_ports_answer_their_own_service_names() {
    let (etcd, dns, _reg) = stack("h-2782", &[]).await;
    let n = unique("s2782");
    let c = Ctr::run(
        "s2782",
        &[
            "-p",
            "80",
            "-p",
            "53/udp",
            "-e",
            &format!("SERVICE_80_NAME={n}"),
            "-e",
            &format!("SERVICE_53_NAME={n}"),
            "-e",
            "SERVICE_ID=b",
        ],
    );
    let (tcp, udp) = (host_port(&c, "80/tcp"), host_port(&c, "53/udp"));
    let tcp_name = format!("_{n}._tcp.webapp.dev.");
    let udp_name = format!("_{n}._udp.webapp.dev.");
    let want_tcp = [format!("10 100 {tcp} b-80.{n}.webapp.dev.")];
    eventually(SOON, &format!("{tcp_name} SRV {want_tcp:?}"), || async {
        (sorted_srv(&dns, &tcp_name).await == want_tcp).then_some(())
    })
    .await;
    let want_udp = [format!("10 100 {udp} b-53-udp.{n}.webapp.dev.")];
    eventually(SOON, &format!("{udp_name} SRV {want_udp:?}"), || async {
        (sorted_srv(&dns, &udp_name).await == want_udp).then_some(())
    })
    .await;
    let m = query(dns.addr, &udp_name, RecordType::SRV)
        .await
        .expect("answer");
    assert_eq!(
        m.additionals
            .iter()
            .map(|r| r.data.to_string())
            .collect::<Vec<_>>(),
        ["10.99.0.1"],
        "the target's address"
    );
    let a = query(dns.addr, &tcp_name, RecordType::A)
        .await
        .expect("answer");
    assert!(
        a.answers.is_empty()
            && a.metadata.response_code == hickory_proto::op::ResponseCode::NoError,
        "A: NODATA: {a}"
    );
    assert!(dns.is_nxdomain(&format!("_{n}._sctp.webapp.dev.")).await);
    // The plain name answers both, as before.
    assert_eq!(sorted_srv(&dns, &format!("{n}.webapp.dev.")).await.len(), 2);
    // The stored value: Lodestar's own field on the UDP record only.
    let keys = etcd.keys(&format!("/skydns/dev/webapp/{n}/")).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
}

/// `record put --proto udp` and a literally stored `_ldap._tcp` name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_put_proto_and_literal_names() {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let put = |name: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lodestar-registrator"))
            .args(["record", "put", name, "--host", "10.0.0.7"])
            .args(extra)
            .env("LODESTAR_ETCD_ENDPOINTS", etcd.endpoint())
            .env("LODESTAR_DOMAIN", "webapp.dev")
            .output()
            .expect("record put");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    put(
        "ns1.dns-svc.webapp.dev",
        &["--port", "53", "--proto", "udp"],
    );
    put(
        "ns2.dns-svc.webapp.dev",
        &["--port", "5353", "--proto", "tcp"],
    );
    put("l1._ldap._tcp.webapp.dev", &["--port", "389"]);
    let want = ["10 100 53 ns1.dns-svc.webapp.dev."];
    eventually(SOON, "_dns-svc._udp", || async {
        (sorted_srv(&dns, "_dns-svc._udp.webapp.dev.").await == want).then_some(())
    })
    .await;
    assert_eq!(
        sorted_srv(&dns, "_dns-svc._tcp.webapp.dev.").await,
        ["10 100 5353 ns2.dns-svc.webapp.dev."],
        "--proto tcp is TCP"
    );
    assert_eq!(
        sorted_srv(&dns, "_ldap._tcp.webapp.dev.").await,
        ["10 100 389 l1._ldap._tcp.webapp.dev."],
        "stored as it is asked: answered as stored"
    );
    let get = Command::new(env!("CARGO_BIN_EXE_lodestar-registrator"))
        .args(["record", "get", "ns1.dns-svc.webapp.dev"])
        .env("LODESTAR_ETCD_ENDPOINTS", etcd.endpoint())
        .env("LODESTAR_DOMAIN", "webapp.dev")
        .output()
        .expect("record get");
    let v: serde_json::Value =
        serde_json::from_slice(&get.stdout).unwrap_or_else(|e| panic!("{e}: {get:?}"));
    assert_eq!(v["proto"], "udp", "{v}");
}
