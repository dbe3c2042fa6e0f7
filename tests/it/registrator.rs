//! The registrator through the real binaries: a real Docker engine, a real etcd, and
//! `lodestar-dns` answering what `lodestar-registrator` wrote.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

use crate::support::*;

const SOON: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_container_is_answered_within_3s_and_gone_within_3s_of_stop() {
    let (_etcd, dns, _reg) = stack("h-basic", &[]).await;
    let name = unique("svc");
    let c = Ctr::run(
        "basic",
        &[
            "-p",
            "6379",
            "-e",
            &format!("SERVICE_NAME={name}"),
            "-e",
            "SERVICE_ID=redis-1",
        ],
    );
    let port = host_port(&c, "6379/tcp");
    let fqdn = format!("{name}.webapp.dev.");
    until_srv(
        &dns,
        &fqdn,
        &[&format!("10 100 {port} redis-1.{name}.webapp.dev.")],
        SOON,
    )
    .await;
    let m = query(
        dns.addr,
        &format!("redis-1.{name}.webapp.dev."),
        RecordType::A,
    )
    .await
    .unwrap();
    assert_eq!(data(&m), ["10.99.0.1"], "the --ip address");
    docker(&["stop", "-t", "0", &c.name]);
    let what = format!("{fqdn} gone");
    eventually(SOON, &what, || async {
        dns.is_nxdomain(&fqdn).await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn labels_several_ports_and_ignored_containers() {
    let (_etcd, dns, _reg) = stack("h-labels", &[]).await;
    let n = unique("lbl");
    // A label wins over env.
    let _a = Ctr::run(
        "lbl",
        &[
            "-p",
            "80",
            "-e",
            "SERVICE_NAME=from-env",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-l",
            "SERVICE_ID=a1",
        ],
    );
    // Two ports, one with its own name.
    let b = Ctr::run(
        "ports",
        &[
            "-p",
            "80",
            "-p",
            "443",
            "-l",
            &format!("SERVICE_NAME={n}-b"),
            "-l",
            &format!("SERVICE_443_NAME={n}-tls"),
            "-l",
            "SERVICE_ID=b1",
        ],
    );
    // Ignored: never registered.
    let _c = Ctr::run(
        "ign",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}-ignored"),
            "-l",
            "SERVICE_IGNORE=true",
        ],
    );
    // Invalid labels: refused with a log line, the container skipped.
    let _d = Ctr::run("bad", &["-p", "80", "-l", "SERVICE_NAME=not valid!"]);
    // A marker started last: once it is answered, every container before it was seen.
    let _m = Ctr::run(
        "mark",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}-marker"),
            "-l",
            "SERVICE_ID=m",
        ],
    );
    let p80 = host_port(&b, "80/tcp");
    let p443 = host_port(&b, "443/tcp");
    until_srv(
        &dns,
        &format!("{n}-marker.webapp.dev."),
        &[&format!(
            "10 100 {} m.{n}-marker.webapp.dev.",
            host_port(&_m, "80/tcp")
        )],
        SOON,
    )
    .await;
    assert_eq!(
        srv(&dns, &format!("{n}.webapp.dev.")).await.len(),
        1,
        "the label's name"
    );
    assert!(dns.is_nxdomain("from-env.webapp.dev.").await);
    assert_eq!(
        srv(&dns, &format!("{n}-b-80.webapp.dev.")).await,
        [format!("10 100 {p80} b1-80.{n}-b-80.webapp.dev.")]
    );
    assert_eq!(
        srv(&dns, &format!("{n}-tls.webapp.dev.")).await,
        [format!("10 100 {p443} b1-443.{n}-tls.webapp.dev.")]
    );
    assert!(dns.is_nxdomain(&format!("{n}-ignored.webapp.dev.")).await);
    assert!(
        _reg.logs().contains("its labels make no valid record"),
        "{}",
        _reg.logs()
    );
}

#[tokio::test]
async fn health_gates_registration_and_pause_withdraws() {
    let (_etcd, dns, _reg) = stack("h-health", &[]).await;
    let n = unique("hc");
    let c = Ctr::run(
        "hc",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-l",
            "SERVICE_ID=x",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
    );
    let fqdn = format!("{n}.webapp.dev.");
    // Unhealthy first: wait for the engine to say so, then for a later container to be registered.
    eventually(Duration::from_secs(20), "unhealthy", || async {
        (docker(&["inspect", "-f", "{{.State.Health.Status}}", &c.name]) == "unhealthy")
            .then_some(())
    })
    .await;
    let m = Ctr::run(
        "mark",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}-marker"),
            "-l",
            "SERVICE_ID=m",
        ],
    );
    until_srv(
        &dns,
        &format!("{n}-marker.webapp.dev."),
        &[&format!(
            "10 100 {} m.{n}-marker.webapp.dev.",
            host_port(&m, "80/tcp")
        )],
        SOON,
    )
    .await;
    assert!(
        dns.is_nxdomain(&fqdn).await,
        "not registered while unhealthy"
    );
    docker(&["exec", &c.name, "touch", "/tmp/ok"]);
    let port = host_port(&c, "80/tcp");
    until_srv(
        &dns,
        &fqdn,
        &[&format!("10 100 {port} x.{n}.webapp.dev.")],
        Duration::from_secs(10),
    )
    .await;
    docker(&["pause", &c.name]);
    let what = format!("{fqdn} withdrawn while paused");
    eventually(SOON, &what, || async {
        dns.is_nxdomain(&fqdn).await.then_some(())
    })
    .await;
    docker(&["unpause", &c.name]);
    until_srv(
        &dns,
        &fqdn,
        &[&format!("10 100 {port} x.{n}.webapp.dev.")],
        SOON,
    )
    .await;
}

#[tokio::test]
async fn sigkill_records_expire_within_the_ttl() {
    let (_etcd, dns, mut reg) = stack("h-kill", &["--ttl", "3"]).await;
    let n = unique("kill");
    let _c = Ctr::run("kill", &["-p", "80", "-l", &format!("SERVICE_NAME={n}")]);
    let fqdn = format!("{n}.webapp.dev.");
    eventually(SOON, "registered", || async {
        (!srv(&dns, &fqdn).await.is_empty()).then_some(())
    })
    .await;
    reg.signal("KILL");
    reg.wait_exit(Duration::from_secs(5)).expect("killed");
    let killed = Instant::now();
    eventually(
        Duration::from_secs(3 + 3),
        "expired with the lease",
        || async { dns.is_nxdomain(&fqdn).await.then_some(()) },
    )
    .await;
    assert!(
        killed.elapsed() >= Duration::from_secs(1),
        "records outlive a SIGKILL until the lease expires"
    );
}

// Multi-threaded: the probe must keep running while this test blocks on processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_adopts_the_lease_without_a_gap_and_removes_what_is_stale() {
    let (etcd, dns, mut reg) = stack("h-restart", &["--ttl", "10"]).await;
    let n = unique("rs");
    let _a = Ctr::run(
        "keep",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-l",
            "SERVICE_ID=keep",
        ],
    );
    let b = Ctr::run(
        "stale",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-l",
            "SERVICE_ID=stale",
        ],
    );
    let fqdn = format!("{n}.webapp.dev.");
    eventually(SOON, "both registered", || async {
        (srv(&dns, &fqdn).await.len() == 2).then_some(())
    })
    .await;
    // Watch the name all through the restart: it must never stop answering.
    let addr = dns.addr;
    let probe_name = format!("keep.{n}.webapp.dev.");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let probe = tokio::spawn(async move {
        let (mut ok, mut gaps) = (0, 0);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match query(addr, &probe_name, RecordType::A).await {
                Ok(m) if !m.answers.is_empty() => ok += 1,
                _ => gaps += 1,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (ok, gaps)
    });
    reg.signal("TERM");
    let status = reg
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s of SIGTERM");
    assert!(status.success());
    docker(&["rm", "-f", &b.name]); // goes while no registrator runs
    let reg2 = Registrator::start(&etcd, "h-restart", &["--ttl", "10"]);
    let what = format!("{fqdn}: only the live container");
    eventually(SOON, &what, || async {
        (srv(&dns, &fqdn).await.len() == 1).then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, gaps) = probe.await.unwrap();
    assert!(ok > 10, "the probe ran ({ok})");
    assert_eq!(gaps, 0, "no gap in answers across the restart");
    assert!(
        reg2.logs().contains("adopted this host's lease"),
        "{}",
        reg2.logs()
    );
    let logs = reg2.logs();
    // Only this test's record: containers of tests running beside it on the same engine may be
    // registered by this registrator meanwhile.
    let rewritten = format!(r#""message":"registered","name":"keep.{n}."#);
    assert!(
        !logs.contains(&rewritten),
        "the live record is not rewritten: {logs}"
    );
    assert!(
        logs.contains(r#""message":"deregistered","name":"stale."#),
        "the stale one is removed: {logs}"
    );
}

#[tokio::test]
async fn etcd_down_at_start_then_records_arrive() {
    let mut etcd = Etcd::start().await;
    etcd.kill();
    let n = unique("late");
    let _c = Ctr::run("late", &["-p", "80", "-l", &format!("SERVICE_NAME={n}")]);
    let reg = Registrator::start(&etcd, "h-late", &[]);
    eventually(
        Duration::from_secs(10),
        "etcd being away is logged",
        || async {
            reg.logs()
                .contains("etcd unavailable, retrying")
                .then_some(())
        },
    )
    .await;
    etcd.restart().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let fqdn = format!("{n}.webapp.dev.");
    // Backoff is capped at 2 s, so the record is there soon after etcd is.
    eventually(
        Duration::from_secs(6),
        "registered once etcd is up",
        || async { (!srv(&dns, &fqdn).await.is_empty()).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn records_deleted_behind_its_back_come_back_within_the_ttl() {
    let (etcd, dns, _reg) = stack("h-heal", &["--ttl", "3"]).await;
    let n = unique("heal");
    let _c = Ctr::run(
        "heal",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-l",
            "SERVICE_ID=i1",
        ],
    );
    let fqdn = format!("{n}.webapp.dev.");
    eventually(SOON, "registered", || async {
        (!srv(&dns, &fqdn).await.is_empty()).then_some(())
    })
    .await;
    // The registrator may put it back before any query sees it gone (it checks every
    // --ttl/3): what is asserted is that a key deleted in etcd is written again, within --ttl.
    let key = format!("/skydns/dev/webapp/{n}/i1");
    etcd.delete(&key).await;
    eventually(
        Duration::from_secs(3),
        "back in etcd within --ttl",
        || async {
            let mut c = etcd.client().await;
            let r = c.get(key.as_str(), None).await.ok()?;
            (!r.kvs().is_empty()).then_some(())
        },
    )
    .await;
    eventually(SOON, "answering again", || async {
        (!srv(&dns, &fqdn).await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn cleanup_on_exit_revokes_and_on_success_keeps_failed_containers() {
    let (_etcd, dns, mut reg) = stack(
        "h-clean",
        &["--cleanup-on-exit", "--deregister", "on-success"],
    )
    .await;
    let n = unique("cl");
    let fail = Ctr::run_cmd(
        "fail",
        &["-p", "80", "-l", &format!("SERVICE_NAME={n}-fail")],
        &["sh", "-c", "sleep 4; exit 3"],
    );
    let ok = Ctr::run_cmd(
        "ok",
        &["-p", "80", "-l", &format!("SERVICE_NAME={n}-ok")],
        &["sh", "-c", "sleep 4; exit 0"],
    );
    for svc in ["fail", "ok"] {
        let fqdn = format!("{n}-{svc}.webapp.dev.");
        eventually(SOON, &fqdn, || async {
            (!srv(&dns, &fqdn).await.is_empty()).then_some(())
        })
        .await;
    }
    // Both exit after 4 s: the one that succeeded goes, the one that failed stays.
    let fqdn = format!("{n}-ok.webapp.dev.");
    eventually(Duration::from_secs(10), "exit 0 deregisters", || async {
        dns.is_nxdomain(&fqdn).await.then_some(())
    })
    .await;
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.ExitCode}}", &fail.name]),
        "3"
    );
    assert!(
        !srv(&dns, &format!("{n}-fail.webapp.dev.")).await.is_empty(),
        "a failed container keeps its record"
    );
    drop(ok);
    // --cleanup-on-exit: SIGTERM takes every record of this host away at once.
    reg.signal("TERM");
    assert!(reg.wait_exit(Duration::from_secs(5)).is_some());
    let fqdn = format!("{n}-fail.webapp.dev.");
    eventually(Duration::from_secs(1), "revoked on exit", || async {
        dns.is_nxdomain(&fqdn).await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn internal_registers_container_addresses_and_metrics_count() {
    let (_etcd, dns, reg) = stack("h-int", &["--internal", "--metrics", "127.0.0.1:0"]).await;
    let n = unique("int");
    let c = Ctr::run(
        "int",
        &[
            "--expose",
            "5432",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-l",
            "SERVICE_ID=db",
        ],
    );
    let ip = docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &c.name]);
    let fqdn = format!("db.{n}.webapp.dev.");
    eventually(SOON, "registered", || async {
        (!srv(&dns, &fqdn).await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        srv(&dns, &fqdn).await,
        [format!("10 100 5432 db.{n}.webapp.dev.")]
    );
    let m = query(dns.addr, &fqdn, RecordType::A).await.unwrap();
    assert_eq!(
        data(&m),
        [ip],
        "the container's own address (data only: never contacted)"
    );
    let (status, body) = http_get(reg.metrics.unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    for want in [
        "lodestar_registrator_reconciles_total",
        "lodestar_registrator_corrections_total",
        "lodestar_registrator_services",
    ] {
        assert!(body.contains(want), "{want}: {body}");
    }
    assert_eq!(http_get(reg.metrics.unwrap(), "/healthz").await.0, 200);
}

#[tokio::test]
async fn docker_connection_cut_and_restored() {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let mut proxy = DockerProxy::start();
    let url = proxy.url();
    let reg = Registrator::start(&etcd, "h-cut", &["--docker", &url, "--ttl", "5"]);
    let n = unique("cut");
    let a = Ctr::run("a", &["-p", "80", "-l", &format!("SERVICE_NAME={n}-a")]);
    let fa = format!("{n}-a.webapp.dev.");
    eventually(SOON, "a registered", || async {
        (!srv(&dns, &fa).await.is_empty()).then_some(())
    })
    .await;
    proxy.cut();
    eventually(Duration::from_secs(10), "the cut is noticed", || async {
        reg.logs().contains("Docker unavailable").then_some(())
    })
    .await;
    // While Docker is away the registered state stays, and the lease is kept alive past its TTL.
    docker(&["stop", "-t", "0", &a.name]);
    let b = Ctr::run("b", &["-p", "80", "-l", &format!("SERVICE_NAME={n}-b")]);
    let fb = format!("{n}-b.webapp.dev.");
    let cut_at = Instant::now();
    while cut_at.elapsed() < Duration::from_secs(6) {
        assert!(
            !srv(&dns, &fa).await.is_empty(),
            "records stay while Docker is unreachable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.restore();
    // Catch-up: the stop of a and the start of b happened while cut.
    eventually(
        Duration::from_secs(6),
        "caught up after the restore",
        || async { (dns.is_nxdomain(&fa).await && !srv(&dns, &fb).await.is_empty()).then_some(()) },
    )
    .await;
    drop(b);
}

#[tokio::test]
async fn runs_as_a_container_from_its_own_image() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_lodestar-registrator"));
    assert!(is_static_elf(bin), "{} is not statically linked: run the tests through `make test`, which builds static binaries", bin.display());
    let tag = format!("lodestar-test/registrator:{}", std::process::id());
    build_image(bin, &tag, 9154);
    // Not root; labelled; a health check through the binary itself.
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{.Config.User}}", &tag]),
        "65532:65532"
    );
    assert_eq!(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.opencontainers.image.version\"}}",
            &tag
        ]),
        "test"
    );
    let gid = std::fs::metadata("/var/run/docker.sock")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m).to_string())
        .expect("the Docker socket");
    let port = free_port();
    let metrics = format!("LODESTAR_METRICS=127.0.0.1:{port}");
    let check = format!("LODESTAR_CHECK_URL=http://127.0.0.1:{port}/healthz");
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    // Host network: etcd listens on the host's loopback, like the compose file and the units.
    let name = unique("registrator");
    let ep = etcd.endpoint();
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--group-add",
        &gid,
        "--health-interval",
        "1s",
        "-e",
        &metrics,
        "-e",
        &check,
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        &tag,
        "--etcd",
        &ep,
        "--domain",
        "webapp.dev",
        "--host-id",
        "h-image",
        "--ip",
        "10.99.0.1",
    ]);
    let registrator = Ctr { name: name.clone() };
    let n = unique("img");
    let _c = Ctr::run("img", &["-p", "80", "-l", &format!("SERVICE_NAME={n}")]);
    let fqdn = format!("{n}.webapp.dev.");
    // Generous: the engine starts two containers while the other tests load the machine.
    eventually(
        Duration::from_secs(20),
        "registered by the containerised registrator",
        || async { (!srv(&dns, &fqdn).await.is_empty()).then_some(()) },
    )
    .await;
    // The image's HEALTHCHECK (`/app --check`) reports healthy.
    eventually(
        Duration::from_secs(30),
        "the container is healthy",
        || async {
            let status = docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]);
            (status == "healthy").then_some(())
        },
    )
    .await;
    // `docker stop` sends SIGTERM: it exits cleanly, well within the 5 s grace period.
    let stopped = Instant::now();
    docker(&["stop", "-t", "5", &name]);
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]),
        "0"
    );
    drop(registrator);
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output();
}

#[tokio::test]
async fn the_library_example_registers_and_keeps_alive_until_ctrl_c() {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let bin = example_bin("register");
    let ep = etcd.endpoint();
    let mut child = std::process::Command::new(&bin)
        .args([
            "--etcd",
            &ep,
            "--name",
            "web-1.web.webapp.dev",
            "--host",
            "10.1.2.3",
            "--port",
            "8080",
            "--ttl",
            "2",
        ])
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    until_srv(
        &dns,
        "web.webapp.dev.",
        &["10 100 8080 web-1.web.webapp.dev."],
        SOON,
    )
    .await;
    // Kept alive past its 2 s TTL.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(srv(&dns, "web.webapp.dev.").await.len(), 1, "kept alive");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ok = std::process::Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    eventually(Duration::from_secs(1), "gone after Ctrl-C", || async {
        dns.is_nxdomain("web.webapp.dev.").await.then_some(())
    })
    .await;
}

#[tokio::test]
async fn etcd_down_later_and_a_lost_lease_are_recovered() {
    let (mut etcd, dns, reg) = stack("h-lost", &["--ttl", "3"]).await;
    let n = unique("lost");
    let _a = Ctr::run("a", &["-p", "80", "-l", &format!("SERVICE_NAME={n}-a")]);
    let fa = format!("{n}-a.webapp.dev.");
    eventually(SOON, "a registered", || async {
        (!srv(&dns, &fa).await.is_empty()).then_some(())
    })
    .await;
    // etcd goes away; a container starts meanwhile; etcd comes back: the new one is registered.
    etcd.kill();
    let _b = Ctr::run("b", &["-p", "80", "-l", &format!("SERVICE_NAME={n}-b")]);
    eventually(Duration::from_secs(10), "the loss is noticed", || async {
        reg.logs().contains("etcd unavailable").then_some(())
    })
    .await;
    etcd.restart().await;
    let fb = format!("{n}-b.webapp.dev.");
    eventually(
        Duration::from_secs(10),
        "b registered after etcd is back",
        || async {
            (!srv(&dns, &fb).await.is_empty() && !srv(&dns, &fa).await.is_empty()).then_some(())
        },
    )
    .await;
    // The lease is revoked behind its back (as when etcd's data is lost): every record goes...
    let mut client = etcd.client().await;
    let owner = client
        .get("/lodestar/owners/skydns/h-lost", None)
        .await
        .unwrap();
    let holder: serde_json::Value = serde_json::from_slice(owner.kvs()[0].value()).unwrap();
    let lease = holder["lease"]
        .as_i64()
        .expect("the owner key names its lease");
    client.lease_revoke(lease).await.unwrap();
    eventually(SOON, "records gone with the lease", || async {
        dns.is_nxdomain(&fa).await.then_some(())
    })
    .await;
    // ...and within --ttl a new lease holds them all again.
    eventually(
        Duration::from_secs(3),
        "re-registered on a new lease",
        || async {
            (!srv(&dns, &fa).await.is_empty() && !srv(&dns, &fb).await.is_empty()).then_some(())
        },
    )
    .await;
    assert!(reg.logs().contains("lease lost"), "{}", reg.logs());
}

/// Labels can never write into a reserved subtree (a stub zone for `dev.`, an NS or apex record
/// of the domain): such a container is skipped with a line naming the label, nothing is written
/// under `<domain>/dns`, and the domain keeps answering from etcd.
#[tokio::test]
async fn labels_never_write_into_a_reserved_subtree() {
    let (etcd, dns, reg) = stack("h-reserved", &[]).await;
    let id = unique("hijack");
    let _stub = Ctr::run(
        "hijack-stub",
        &[
            "-p",
            "53/udp",
            "-l",
            "SERVICE_NAME=dev.stub.dns",
            "-l",
            "SERVICE_IP=127.0.0.9",
            "-l",
            &format!("SERVICE_ID={id}"),
        ],
    );
    let _ns = Ctr::run(
        "hijack-ns",
        &[
            "-p",
            "80",
            "-l",
            "SERVICE_NAME=ns.dns",
            "-l",
            "SERVICE_IP=127.0.0.9",
        ],
    );
    let n = unique("ok");
    let ok = Ctr::run("ok", &["-p", "6379", "-l", &format!("SERVICE_NAME={n}")]);
    let port = host_port(&ok, "6379/tcp");
    eventually(SOON, "the ordinary container is registered", || async {
        srv(&dns, &format!("{n}.webapp.dev."))
            .await
            .iter()
            .any(|s| s.contains(&format!(" {port} ")))
            .then_some(())
    })
    .await;
    eventually(SOON, "both skips are logged with the label", || async {
        let logs = reg.logs();
        (logs.contains("SERVICE_NAME=\\\"dev.stub.dns\\\" has the label `dns`, which is reserved")
            && logs.contains("SERVICE_NAME=\\\"ns.dns\\\" has the label `dns`, which is reserved"))
        .then_some(())
    })
    .await;
    assert_eq!(
        etcd.keys("/skydns/dev/webapp/dns/").await,
        Vec::<String>::new()
    );
    let m = query(dns.addr, "webapp.dev.", RecordType::NS)
        .await
        .unwrap();
    assert!(m.metadata.authoritative);
    assert_eq!(data(&m), Vec::<String>::new(), "no NS from a container");
}

/// The A data of `name`, empty when none.
/// A second registrator given the same host id while the first lives (a cloned machine keeps its
/// hostname) refuses to start, with one line naming --host-id; the first one's records are never
/// touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_registrator_with_the_same_host_id_refuses_to_start() {
    let (_etcd, dns, _first) = stack("h-clone", &["--ttl", "6"]).await;
    let etcd = &_etcd;
    let n = unique("clone");
    let _c = Ctr::run(
        "clone",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-l",
            "SERVICE_ID=web",
        ],
    );
    let name = format!("web.{n}.webapp.dev.");
    eventually(SOON, "registered by the first", || async {
        (dns.a(&name).await == ["10.99.0.1"]).then_some(())
    })
    .await;
    // The clone: the same host id, its own address.
    let mut clone = Registrator::start(etcd, "h-clone", &["--ttl", "6", "--ip", "10.99.0.2"]);
    let status = clone
        .wait_exit(Duration::from_secs(15))
        .expect("the clone stops");
    assert!(!status.success());
    let logs = clone.logs();
    assert!(
        logs.contains("--host-id h-clone: h-clone is held by another live process"),
        "{logs}"
    );
    // The first holds on: its record never flips nor goes, for longer than a TTL.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        assert_eq!(dns.a(&name).await, ["10.99.0.1"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Restarted while the Docker engine is away (live-restore keeps the containers running): the
/// adopted lease is kept alive from the start, so the running containers' records never expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_docker_is_down_keeps_the_lease_alive() {
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let mut proxy = DockerProxy::start();
    let url = proxy.url();
    let flags = ["--ttl", "3", "--docker", url.as_str()];
    let mut first = Registrator::start(&etcd, "h-ddown", &flags);
    let n = unique("ddown");
    let _c = Ctr::run("ddown", &["-p", "80", "-l", &format!("SERVICE_NAME={n}")]);
    let fqdn = format!("{n}.webapp.dev.");
    eventually(SOON, "registered", || async {
        (!srv(&dns, &fqdn).await.is_empty()).then_some(())
    })
    .await;
    proxy.cut();
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(5)).is_some());
    let second = Registrator::start(&etcd, "h-ddown", &flags);
    // Three TTLs with Docker away: the record answers all along.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        assert!(
            !srv(&dns, &fqdn).await.is_empty(),
            "the record expired: {}",
            second.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(second.logs().contains("adopted this host's lease"));
    proxy.restore();
    eventually(Duration::from_secs(10), "Docker listed again", || async {
        second.logs().contains("connected to Docker").then_some(())
    })
    .await;
    assert!(!srv(&dns, &fqdn).await.is_empty());
}

/// One container whose record would be 1.4 MB (three published ports, a huge SERVICE_TEXT) is
/// skipped with a line saying why; the host's other containers are registered and removed as
/// ever, and the registrator stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_container_with_a_huge_label_wedges_nothing() {
    let (etcd, dns, reg) = stack("h-huge", &["--metrics", "127.0.0.1:0"]).await;
    // Made through the Engine API: the CLI's label files stop at 64 KB a line.
    docker_ready();
    let huge = unique("huge");
    let ports = ["80/tcp", "81/tcp", "82/tcp"];
    let body = serde_json::json!({
        "Image": IMAGE,
        "Cmd": ["sleep", "3600"],
        "Labels": {
            "lodestar-test": "1",
            "SERVICE_NAME": huge,
            "SERVICE_TEXT": "x".repeat(1_400_000),
        },
        "ExposedPorts": ports.iter().map(|p| (p.to_string(), serde_json::json!({}))).collect::<serde_json::Map<_, _>>(),
        "HostConfig": {
            "PortBindings": ports.iter().map(|p| (p.to_string(), serde_json::json!([{"HostPort": ""}]))).collect::<serde_json::Map<_, _>>(),
        },
    });
    let dir = tempfile::TempDir::new().expect("tempdir");
    let file = dir.path().join("create.json");
    std::fs::write(&file, body.to_string()).expect("request body");
    let out = std::process::Command::new("curl")
        .args(["-sf", "--unix-socket", "/var/run/docker.sock", "-X", "POST"])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", path_str(&file)))
        .arg(format!(
            "http://localhost/v1.41/containers/create?name={huge}"
        ))
        .output()
        .expect("curl");
    assert!(out.status.success(), "create: {out:?}");
    let _big = Ctr { name: huge.clone() };
    docker(&["start", &huge]);
    eventually(SOON, "the skip is logged", || async {
        let logs = reg.logs();
        (logs.contains(&huge) && logs.contains("more than the 65536 a record may have"))
            .then_some(())
    })
    .await;
    let n = unique("after");
    let c = Ctr::run("after", &["-p", "80", "-l", &format!("SERVICE_NAME={n}")]);
    let fqdn = format!("{n}.webapp.dev.");
    eventually(
        SOON,
        "a container started after it is registered",
        || async { (!srv(&dns, &fqdn).await.is_empty()).then_some(()) },
    )
    .await;
    drop(c);
    eventually(SOON, "and removed", || async {
        dns.is_nxdomain(&fqdn).await.then_some(())
    })
    .await;
    assert!(etcd
        .keys(&format!("/skydns/dev/webapp/{huge}"))
        .await
        .is_empty());
    let (code, body) = http_get(reg.metrics.expect("metrics"), "/readyz").await;
    assert_eq!(code, 200, "{body}");
}

/// /readyz says 503 while reconciling fails even though etcd answers (here: etcd is out of
/// space and refuses every write), and 200 once the records are written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_reconciling_fails() {
    let (etcd, dns, reg) = stack("h-nospace", &["--metrics", "127.0.0.1:0"]).await;
    let addr = reg.metrics.expect("metrics");
    eventually(SOON, "ready", || async {
        (http_get(addr, "/readyz").await.0 == 200).then_some(())
    })
    .await;
    let mut client = etcd.client().await;
    let nospace = |action| {
        let mut c = client.clone();
        async move {
            c.alarm(
                action,
                etcd_client::AlarmType::Nospace,
                Some(etcd_client::AlarmOptions::new()),
            )
            .await
            .expect("alarm")
        }
    };
    nospace(etcd_client::AlarmAction::Activate).await;
    let n = unique("nospace");
    let _c = Ctr::run("nospace", &["-p", "80", "-l", &format!("SERVICE_NAME={n}")]);
    let body = eventually(Duration::from_secs(10), "/readyz 503", || async {
        let (code, body) = http_get(addr, "/readyz").await;
        (code == 503).then_some(body)
    })
    .await;
    assert!(
        body.contains("etcd: ok") && body.contains("reconcile: failing"),
        "{body}"
    );
    nospace(etcd_client::AlarmAction::Deactivate).await;
    let fqdn = format!("{n}.webapp.dev.");
    eventually(
        Duration::from_secs(10),
        "registered and ready again",
        || async {
            (!srv(&dns, &fqdn).await.is_empty() && http_get(addr, "/readyz").await.0 == 200)
                .then_some(())
        },
    )
    .await;
    let _ = client.status().await;
}

/// `--deregister on-success` keeps a failed container's records until it is removed, across a
/// restart of the registrator too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_success_keeps_a_failed_containers_records_across_a_restart() {
    let flags = ["--deregister", "on-success"];
    let (etcd, dns, mut first) = stack("h-onsucc", &flags).await;
    let n = unique("onsucc");
    let c = Ctr::run("onsucc", &["-p", "80", "-l", &format!("SERVICE_NAME={n}")]);
    let fqdn = format!("{n}.webapp.dev.");
    eventually(SOON, "registered", || async {
        (!srv(&dns, &fqdn).await.is_empty()).then_some(())
    })
    .await;
    docker(&["kill", "-s", "KILL", &c.name]); // exit code 137: a failure
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert!(!srv(&dns, &fqdn).await.is_empty(), "kept after the failure");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.signal("TERM");
    assert!(first.wait_exit(Duration::from_secs(5)).is_some());
    let second = Registrator::start(&etcd, "h-onsucc", &flags);
    eventually(SOON, "the restarted registrator reconciled", || async {
        second
            .logs()
            .contains("adopted this host's lease")
            .then_some(())
    })
    .await;
    // Several passes (a third of --ttl apart): still there.
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        assert!(!srv(&dns, &fqdn).await.is_empty(), "{}", second.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(c);
    eventually(SOON, "gone once removed", || async {
        dns.is_nxdomain(&fqdn).await.then_some(())
    })
    .await;
}

/// Whether container `name` is running, as the engine says.
fn running(name: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", name]).trim() == "true"
}

/// How long until `fqdn` stops answering (NXDOMAIN), polled every 20 ms up to `deadline`.
async fn until_gone(dns: &Dns, fqdn: &str, deadline: Duration) -> Duration {
    let start = Instant::now();
    eventually(deadline, &format!("{fqdn} withdrawn"), || async {
        dns.is_nxdomain(fqdn).await.then_some(())
    })
    .await;
    start.elapsed()
}

/// Drain (registrator #685): records go when the engine starts stopping a container, while it
/// still runs out its stop timeout; a kill with a signal that does not terminate withdraws
/// nothing; a container still running after its drain grace (signal ignored) comes back.
#[tokio::test]
async fn a_stopping_container_is_withdrawn_at_once_while_it_still_runs() {
    let (_etcd, dns, _reg) = stack("h-drain", &["--drain-grace", "2"]).await;
    let name = unique("drain");
    let ignore_term = ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"];
    let env = format!("SERVICE_NAME={name}");
    let run = |id: &str, extra: &[&str], cmd: &[&str]| {
        let sid = format!("SERVICE_ID={id}");
        let mut args = vec!["-p", "80", "-e", &env, "-e", &sid];
        args.extend(extra);
        Ctr::run_cmd(id, &args, cmd)
    };
    // Serves on for 10 s after TERM (its stop timeout), then gets KILL.
    let a = run("a", &["--stop-timeout", "10"], &ignore_term);
    let b = run("b", &[], &["sleep", "3600"]);
    let c = run("c", &[], &ignore_term);
    let fqdn = |id: &str| format!("{id}.{name}.webapp.dev.");
    for id in ["a", "b", "c"] {
        let f = fqdn(id);
        eventually(SOON, &format!("{f} answers"), || async {
            (dns.a(&f).await == ["10.99.0.1"]).then_some(())
        })
        .await;
    }

    docker(&["kill", "-s", "HUP", &b.name]);
    let stop = {
        let a = a.name.clone();
        std::thread::spawn(move || docker(&["stop", &a]))
    };
    let took = until_gone(&dns, &fqdn("a"), SOON).await;
    assert!(running(&a.name), "withdrawn while the container still runs");
    assert!(
        took <= Duration::from_secs(1),
        "docker stop -> a.{name} gone took {took:?}"
    );
    eprintln!("docker stop -> withdrawn: {took:?}");
    // The HUP came before the stop: seen, and it withdrew nothing.
    assert_eq!(
        dns.a(&fqdn("b")).await,
        ["10.99.0.1"],
        "a HUP withdraws nothing"
    );

    // TERM ignored, no stop timeout: withdrawn for --drain-grace (2 s), then registered again.
    docker(&["kill", "-s", "TERM", &c.name]);
    let took = until_gone(&dns, &fqdn("c"), SOON).await;
    assert!(
        took <= Duration::from_secs(1),
        "kill -s TERM -> gone took {took:?}"
    );
    let gone = Instant::now();
    let f = fqdn("c");
    eventually(
        Duration::from_secs(10),
        &format!("{f} registered again"),
        || async { (dns.a(&f).await == ["10.99.0.1"]).then_some(()) },
    )
    .await;
    assert!(running(&c.name));
    assert!(
        gone.elapsed() >= Duration::from_secs(1),
        "back after {:?}: sooner than its grace",
        gone.elapsed()
    );

    // A's stop ends with KILL after its 10 s; dead, it stays withdrawn.
    stop.join().expect("docker stop");
    assert!(!running(&a.name));
    assert!(
        dns.is_nxdomain(&fqdn("a")).await,
        "a stopped container is not registered again"
    );
    // A restart withdraws, then registers the new run.
    docker(&["restart", "-t", "1", &b.name]);
    let f = fqdn("b");
    eventually(SOON, &format!("{f} back after a restart"), || async {
        (dns.a(&f).await == ["10.99.0.1"]).then_some(())
    })
    .await;
}

/// The registrator's gauge `lodestar_registrator_<name>`.
async fn reg_metric(reg: &Registrator, name: &str) -> Option<f64> {
    let (_, body) = http_get(reg.metrics?, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("lodestar_registrator_{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// One owner per record: a name another host's live lease holds (the same `SERVICE_ID` on two
/// hosts; here the other host is a custom registry on the library) is not overwritten, the
/// conflict is logged once and counted; stopping this host's container never deletes the other's
/// record; the name is taken once the other lease is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_another_hosts_lease_holds_is_not_overwritten() {
    use lodestar::registry::{EtcdRegistry, Registry};
    use lodestar::{Prefix, Service};

    let (etcd, dns, reg) = stack("h-second", &["--ttl", "3", "--metrics", "127.0.0.1:0"]).await;
    let n = unique("owner");
    let fqdn = format!("web.{n}.webapp.dev");
    let config = lodestar::etcd::EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        ..Default::default()
    };
    let (mut first, _) = EtcdRegistry::connect(
        &config,
        Prefix::default(),
        "h-first",
        Duration::from_secs(30),
    )
    .await
    .expect("the first host's registry");
    let record = Service {
        host: "10.0.0.7".into(),
        port: 80,
        ..Default::default()
    };
    first
        .register(&fqdn, &record)
        .await
        .expect("first host registers");
    let name = format!("{fqdn}.");
    eventually(SOON, "the first host's record answers", || async {
        (dns.a(&name).await == ["10.0.0.7"]).then_some(())
    })
    .await;

    let c = Ctr::run(
        "owner",
        &[
            "-p",
            "80",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-l",
            "SERVICE_ID=web",
        ],
    );
    eventually(SOON, "the conflict counted", || async {
        (reg_metric(&reg, "conflicts").await == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(dns.a(&name).await, ["10.0.0.7"], "not overwritten");
    // Passes go on every --ttl/3 (1 s): still one log line, still the first host's record.
    let passes = reg_metric(&reg, "reconciles_total").await.unwrap_or(0.0);
    eventually(SOON, "two more passes", || async {
        (reg_metric(&reg, "reconciles_total").await.unwrap_or(0.0) >= passes + 2.0).then_some(())
    })
    .await;
    assert_eq!(dns.a(&name).await, ["10.0.0.7"]);
    let logs = reg.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("another host's live lease holds this name"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once: {logs}");
    for want in ["h-second", "h-first", &fqdn, &c.name, "/skydns/dev/webapp/"] {
        assert!(lines[0].contains(want), "{want} in {}", lines[0]);
    }

    // This host's container stops: the first host's record stays.
    docker(&["stop", "-t", "0", &c.name]);
    eventually(SOON, "no conflict once the container is gone", || async {
        (reg_metric(&reg, "conflicts").await == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(dns.a(&name).await, ["10.0.0.7"], "never deleted");

    // Started again, and the first host goes away (its lease revoked): taken.
    docker(&["start", &c.name]);
    eventually(SOON, "the conflict again", || async {
        (reg_metric(&reg, "conflicts").await == Some(1.0)).then_some(())
    })
    .await;
    first.revoke().await.expect("revoke");
    eventually(SOON, "taken once the other lease is gone", || async {
        (dns.a(&name).await == ["10.99.0.1"]).then_some(())
    })
    .await;
    assert_eq!(reg_metric(&reg, "conflicts").await, Some(0.0));
}

/// `--dry-run`: the records the running containers would get, with the rule that chose each
/// name and address, printed as JSON lines; nothing written (its etcd does not even exist).
#[test]
fn dry_run_prints_each_record_and_why_and_writes_nothing() {
    let n = unique("dry");
    let c = Ctr::run(
        "dry",
        &[
            "-p",
            "6379",
            "-l",
            &format!("SERVICE_NAME={n}"),
            "-e",
            "SERVICE_ID=r1",
        ],
    );
    let ipped = Ctr::run("dryip", &["-p", "80", "-e", "SERVICE_IP=10.7.7.7"]);
    let port = host_port(&c, "6379/tcp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lodestar-registrator"))
        .args([
            "--dry-run",
            "--domain",
            "webapp.dev",
            "--etcd",
            "http://127.0.0.1:9",
            "--ip",
            "10.99.0.1",
            "--host-id",
            "h-dry",
        ])
        .output()
        .expect("run --dry-run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let of = |name: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["container"] == name).collect()
    };
    let mine = of(&c.name);
    assert_eq!(mine.len(), 1, "{stdout}");
    let l = mine[0];
    assert_eq!(l["name"], format!("r1.{n}.webapp.dev"));
    assert_eq!(l["key"], format!("/skydns/dev/webapp/{n}/r1"));
    assert_eq!(l["value"]["host"], "10.99.0.1");
    assert_eq!(l["value"]["port"].to_string(), port);
    assert_eq!(l["name_from"], "SERVICE_NAME label");
    assert_eq!(l["id_from"], "SERVICE_ID env");
    assert_eq!(l["address_from"], "--ip");
    assert!(l["container_id"].as_str().is_some_and(|id| id.len() == 64));
    let other = of(&ipped.name);
    assert_eq!(other.len(), 1, "{stdout}");
    assert_eq!(other[0]["value"]["host"], "10.7.7.7");
    assert_eq!(other[0]["address_from"], "SERVICE_IP env");
    assert_eq!(other[0]["name_from"], "image base name");
    assert_eq!(other[0]["id_from"], "the default id (host-container-port)");
}
