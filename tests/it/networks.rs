//! The registrator on hosts that are not the single-bridge default, through the real registrator
//! and Docker engine: user-defined networks, a container on two networks, `--network`,
//! `SERVICE_IP`, host networking, compose service names, images referenced by id, and networks
//! connected to or disconnected from a running container. Networks are made with
//! `docker network create --internal` (no traffic leaves them) and removed after.

use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::*;

const SOON: Duration = Duration::from_secs(5);

async fn stack(host: &str, extra: &[&str]) -> (Etcd, Dns, Registrator) {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let reg = Registrator::start(&etcd, host, extra);
    (etcd, dns, reg)
}

/// A Docker network, removed when dropped.
struct Net {
    name: String,
}

impl Net {
    fn create(what: &str) -> Net {
        docker_ready();
        let name = unique(what);
        docker(&["network", "create", "--internal", &name]);
        Net { name }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

fn ip_on(ctr: &Ctr, net: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        &ctr.name,
    ])
}

async fn a_of(dns: &Dns, name: &str, want: &str) {
    eventually(
        SOON,
        &format!("{name} -> {want}: {}", dns.logs()),
        || async {
            let m = query(dns.addr, name, RecordType::A).await.ok()?;
            (data(&m) == [want.to_string()]).then_some(())
        },
    )
    .await;
}

/// Two networks: SERVICE_NETWORK picks one; `--network` is the default for containers that name
/// none; without either, the first network by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_a_container_is_registered_on() {
    let (a, b) = (Net::create("neta"), Net::create("netb"));
    let (_etcd, dns, _reg) = stack("h-nets", &["--internal", "--network", &b.name]).await;
    let (n1, n2) = (unique("pick"), unique("dflt"));
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["--network", a.name.as_str(), "--expose", "5432"];
        args.extend(["-l", "SERVICE_ID=x"]);
        let svc = format!("SERVICE_NAME={name}");
        args.extend(["-e", svc.as_str()]);
        args.extend(extra);
        let c = Ctr::run("two-nets", &args);
        docker(&["network", "connect", &b.name, &c.name]);
        c
    };
    let label = format!("SERVICE_NETWORK={}", a.name);
    let picked = run(&n1, &["-l", &label]);
    let defaulted = run(&n2, &[]);
    // The registrator inspects again on the network's connect event.
    a_of(
        &dns,
        &format!("x.{n1}.webapp.dev."),
        &ip_on(&picked, &a.name),
    )
    .await;
    a_of(
        &dns,
        &format!("x.{n2}.webapp.dev."),
        &ip_on(&defaulted, &b.name),
    )
    .await;

    // Disconnect the default network: the record moves to the address that is left.
    docker(&["network", "disconnect", &b.name, &defaulted.name]);
    // --network names a network it is no longer on: nothing registered for it.
    eventually(SOON, "withdrawn after disconnect", || async {
        let m = query(dns.addr, &format!("x.{n2}.webapp.dev."), RecordType::A)
            .await
            .ok()?;
        m.answers.is_empty().then_some(())
    })
    .await;
    docker(&["network", "connect", &b.name, &defaulted.name]);
    a_of(
        &dns,
        &format!("x.{n2}.webapp.dev."),
        &ip_on(&defaulted, &b.name),
    )
    .await;
    drop((picked, defaulted));
}

/// SERVICE_IP wins (published or not); a host-networked container's exposed ports are at --ip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_ip_and_host_networking() {
    let (_etcd, dns, _reg) = stack("h-ip", &["--ip", "10.99.0.7"]).await;
    let (n1, n2) = (unique("sip"), unique("hostnet"));
    let _c1 = Ctr::run(
        "sip",
        &[
            "-p",
            "6379",
            "-e",
            &format!("SERVICE_NAME={n1}"),
            "-l",
            "SERVICE_IP=192.0.2.44",
            "-l",
            "SERVICE_ID=s",
        ],
    );
    a_of(&dns, &format!("s.{n1}.webapp.dev."), "192.0.2.44").await;
    let _c2 = Ctr::run(
        "hostnet",
        &[
            "--network",
            "host",
            "--expose",
            "7100",
            "-e",
            &format!("SERVICE_NAME={n2}"),
            "-e",
            "SERVICE_ID=h",
        ],
    );
    a_of(&dns, &format!("h.{n2}.webapp.dev."), "10.99.0.7").await;
    assert_eq!(
        srv(&dns, &format!("h.{n2}.webapp.dev.")).await,
        [format!("10 100 7100 h.{n2}.webapp.dev.")]
    );
}

/// Names without SERVICE_NAME: a compose service's label; an image referenced by id gives the
/// container's name, not `sha256`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_services_and_images_by_id_get_useful_names() {
    let (_etcd, dns, _reg) = stack("h-names", &["--ip", "10.99.0.8"]).await;
    let svc = unique("web");
    let _compose = Ctr::run(
        "compose",
        &[
            "-p",
            "80",
            "-l",
            &format!("com.docker.compose.service={svc}"),
            "-l",
            "SERVICE_ID=c",
        ],
    );
    a_of(&dns, &format!("c.{svc}.webapp.dev."), "10.99.0.8").await;

    let id = docker(&["image", "inspect", "-f", "{{.Id}}", IMAGE]);
    assert!(id.starts_with("sha256:"), "{id}");
    let name = unique("byid");
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            "lodestar-test=1",
            "-p",
            "81",
            "-l",
            "SERVICE_ID=i",
            &id,
            "sleep",
            "3600",
        ])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "{out:?}");
    let _byid = Ctr { name: name.clone() };
    a_of(&dns, &format!("i.{name}.webapp.dev."), "10.99.0.8").await;
}
