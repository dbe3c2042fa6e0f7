//! The registrator against Podman (`podman system service`, which speaks the Docker API), through
//! the real binaries: a real Podman service of the test's own, etcd and `lodestar-dns`. The first
//! listing, events, published ports (TCP and UDP), labels over env, pause, health checks, stop and
//! kill, and a restart of the Podman service while containers run and change.
//!
//! What differs from Docker (README, "Podman"): Podman 4.3 sends no event when a stop begins (no
//! `kill`, no `stop` before `died`) and its `kill` event names no signal, so records go when the
//! container has died, not at the start of its stop; without systemd, Podman runs no health
//! checks by itself (`podman healthcheck run` does, and its result is an event).

use std::process::Command;
use std::time::Duration;

use crate::support::*;

const SOON: Duration = Duration::from_secs(15);

/// etcd, `lodestar-dns` and a registrator on `svc`.
async fn stack_on(svc: &PodmanService, host: &str) -> (Etcd, Dns, Registrator) {
    stack(host, &["--docker", &svc.url()]).await
}

/// Waits until `name` answers SRV with at least one record.
async fn until_registered(dns: &Dns, name: &str, what: &str) {
    eventually(SOON, what, || async {
        (!srv(dns, name).await.is_empty()).then_some(())
    })
    .await;
}

async fn until_gone(dns: &Dns, name: &str) {
    eventually(SOON, &format!("{name} gone"), || async {
        dns.is_nxdomain(name).await.then_some(())
    })
    .await;
}

/// A container running before the registrator starts (the first listing) and ones started after
/// (events); TCP and UDP ports; a label winning over env; pause; `kill -s HUP` withdrawing
/// nothing; `podman stop` and `podman kill` withdrawing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_containers_are_registered_and_withdrawn() {
    let svc = PodmanService::start();
    let n = unique("pm");
    let a = Pod::run(
        "pm-a",
        &[
            "-p",
            "80",
            "--label",
            &format!("SERVICE_NAME={n}-a"),
            "-e",
            "SERVICE_ID=a",
        ],
        &["sleep", "3600"],
    );
    let (_etcd, dns, reg) = stack_on(&svc, "h-pm").await;
    let a_name = format!("{n}-a.webapp.dev.");
    until_srv(
        &dns,
        &a_name,
        &[&format!("10 100 {} a.{a_name}", a.host_port("80/tcp"))],
        SOON,
    )
    .await;
    assert_eq!(dns.a(&a_name).await, ["10.99.0.1"], "the --ip address");

    // Two ports, one UDP; labels win over env.
    let b = Pod::run(
        "pm-b",
        &[
            "-p",
            "80",
            "-p",
            "5353/udp",
            "-e",
            &format!("SERVICE_80_NAME={n}-wrong"),
            "--label",
            &format!("SERVICE_80_NAME={n}-web"),
            "--label",
            &format!("SERVICE_5353_NAME={n}-dns"),
            "--label",
            "SERVICE_ID=b",
        ],
        &["sleep", "3600"],
    );
    let web = format!("{n}-web.webapp.dev.");
    let udp = format!("{n}-dns.webapp.dev.");
    until_srv(
        &dns,
        &web,
        &[&format!("10 100 {} b-80.{web}", b.host_port("80/tcp"))],
        SOON,
    )
    .await;
    until_srv(
        &dns,
        &udp,
        &[&format!(
            "10 100 {} b-5353-udp.{udp}",
            b.host_port("5353/udp")
        )],
        SOON,
    )
    .await;
    assert!(dns.is_nxdomain(&format!("{n}-wrong.webapp.dev.")).await);

    // HUP withdraws nothing: once a container started after it is registered (events are taken
    // in order), b still answers.
    podman(&["kill", "-s", "HUP", &b.name]);
    let c = Pod::run(
        "pm-c",
        &["-p", "80", "--label", &format!("SERVICE_NAME={n}-c")],
        &["sleep", "3600"],
    );
    let c_name = format!("{n}-c.webapp.dev.");
    until_registered(&dns, &c_name, "c registered").await;
    assert_eq!(
        srv(&dns, &web).await.len(),
        1,
        "b after HUP: {}",
        reg.logs()
    );

    // Pause withdraws, unpause brings back.
    podman(&["pause", &c.name]);
    until_gone(&dns, &c_name).await;
    podman(&["unpause", &c.name]);
    until_registered(&dns, &c_name, "c back").await;

    // Stop and kill withdraw.
    podman(&["stop", "-t", "0", &b.name]);
    until_gone(&dns, &web).await;
    until_gone(&dns, &udp).await;
    podman(&["kill", &a.name]);
    until_gone(&dns, &a_name).await;
    assert_eq!(srv(&dns, &c_name).await.len(), 1, "c untouched");
}

/// A container with a health check is registered once Podman finds it healthy, and withdrawn
/// when unhealthy. (Without systemd Podman runs no checks by itself: the test runs them, with
/// `podman healthcheck run`, as a systemd timer would.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_health_checks_decide_registration() {
    let svc = PodmanService::start();
    let (_etcd, dns, _reg) = stack_on(&svc, "h-pmh").await;
    let n = unique("pmh");
    let h = Pod::run(
        "pm-h",
        &[
            "-p",
            "80",
            "--label",
            &format!("SERVICE_NAME={n}-h"),
            "--health-cmd",
            "test -e /tmp/ok",
            "--health-retries",
            "1",
            "--health-interval",
            "1h",
        ],
        &["sleep", "3600"],
    );
    // Starting: not registered. (A container started after it is: its events were taken.)
    let _s = Pod::run(
        "pm-s",
        &["-p", "80", "--label", &format!("SERVICE_NAME={n}-s")],
        &["sleep", "3600"],
    );
    let s_name = format!("{n}-s.webapp.dev.");
    until_registered(&dns, &s_name, "s registered").await;
    let h_name = format!("{n}-h.webapp.dev.");
    assert!(dns.is_nxdomain(&h_name).await, "registered while starting");
    podman(&["exec", &h.name, "touch", "/tmp/ok"]);
    podman(&["healthcheck", "run", &h.name]);
    until_registered(&dns, &h_name, "h registered once healthy").await;
    podman(&["exec", &h.name, "rm", "/tmp/ok"]);
    // Exits 1: unhealthy.
    let _ = Command::new("podman")
        .args(["healthcheck", "run", &h.name])
        .output();
    until_gone(&dns, &h_name).await;
}

/// A container that ignores TERM, stopped with `podman stop -t 2`: its records go when it has
/// died (Podman sends no event before), not during its stop; gone within seconds of that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_stop_withdraws_at_death() {
    let svc = PodmanService::start();
    let (_etcd, dns, _reg) = stack_on(&svc, "h-pms").await;
    let n = unique("pms");
    let t = Pod::run(
        "pm-t",
        &["-p", "80", "--label", &format!("SERVICE_NAME={n}")],
        &["sh", "-c", "trap '' TERM; sleep 3600 & wait"],
    );
    let name = format!("{n}.webapp.dev.");
    until_registered(&dns, &name, "registered").await;
    // Returns once the container has died (KILL after 2 s).
    podman(&["stop", "-t", "2", &t.name]);
    eventually(
        Duration::from_secs(3),
        "gone within 3 s of its death",
        || async { dns.is_nxdomain(&name).await.then_some(()) },
    )
    .await;
}

/// The Podman service restarted while containers run and change: while it is down the records
/// stay; after, what changed meanwhile (a container started, one stopped) is registered and
/// withdrawn, and events flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_podman_service_loses_nothing() {
    let mut svc = PodmanService::start();
    let (_etcd, dns, reg) = stack_on(&svc, "h-pmr").await;
    let n = unique("pmr");
    let label = |x: &str| format!("SERVICE_NAME={n}-{x}");
    let fqdn = |x: &str| format!("{n}-{x}.webapp.dev.");
    let keep = Pod::run(
        "pm-keep",
        &["-p", "80", "--label", &label("keep")],
        &["sleep", "3600"],
    );
    let gone = Pod::run(
        "pm-gone",
        &["-p", "80", "--label", &label("gone")],
        &["sleep", "3600"],
    );
    for x in ["keep", "gone"] {
        until_registered(&dns, &fqdn(x), &format!("{x} registered")).await;
    }
    svc.stop();
    // The CLI works without the service: changes while it is down.
    let _new = Pod::run(
        "pm-new",
        &["-p", "80", "--label", &label("new")],
        &["sleep", "3600"],
    );
    podman(&["stop", "-t", "0", &gone.name]);
    eventually(SOON, "the registrator sees the service gone", || async {
        reg.logs().contains("Docker unavailable").then_some(())
    })
    .await;
    assert_eq!(
        srv(&dns, &fqdn("keep")).await.len(),
        1,
        "kept while the service is down"
    );
    assert_eq!(
        srv(&dns, &fqdn("gone")).await.len(),
        1,
        "nothing is known yet"
    );
    svc.restart();
    until_registered(&dns, &fqdn("new"), "new registered after the restart").await;
    until_gone(&dns, &fqdn("gone")).await;
    let _later = Pod::run(
        "pm-later",
        &["-p", "80", "--label", &label("later")],
        &["sleep", "3600"],
    );
    until_registered(&dns, &fqdn("later"), "events flow again").await;
    assert_eq!(srv(&dns, &fqdn("keep")).await.len(), 1, "keep throughout");
    drop(keep);
}
