//! The registrator on hosts that are not the single-bridge default, through the real registrator
//! and Docker engine: user-defined networks, a container on two networks, `--network`,
//! `SERVICE_IP`, host networking, compose service names, images referenced by id, and networks
//! connected to or disconnected from a running container. Networks are made with
//! `docker network create --internal` (no traffic leaves them) and removed after.

use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::*;

/// How long a container may take to be answered: Docker starts containers slowly while the
/// other tests run beside this one (one run took more than 5 s); what is asserted here is which
/// address is registered, not how fast.
const SOON: Duration = Duration::from_secs(15);

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

/// With --internal, a host-networked container's exposed ports are at --ip (the README's claim),
/// and without any host address it is skipped with a line that says so, never silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_with_ip_registers_host_networked_containers_there() {
    let (etcd, dns, reg) = stack("h-intip", &["--internal", "--ip", "10.99.0.17"]).await;
    let n = unique("hostnet");
    let c = Ctr::run(
        "hostnet-int",
        &[
            "--network",
            "host",
            "--expose",
            "7100",
            "-e",
            &format!("SERVICE_NAME={n}"),
            "-e",
            "SERVICE_ID=h",
        ],
    );
    a_of(&dns, &format!("h.{n}.webapp.dev."), "10.99.0.17").await;
    drop(reg);
    // No --ip, and an address this host cannot have: a registrator whose host address is unknown.
    let mut args = vec!["--internal"];
    args.extend(["--ip", "0.0.0.0"]);
    let reg = Registrator::start(&etcd, "h-intip2", &args);
    eventually(Duration::from_secs(5), "the skip is logged", || async {
        let logs = reg.logs();
        (logs.contains(&c.name) && logs.contains("this host's address is not known: give --ip"))
            .then_some(())
    })
    .await;
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

/// `/readyz`: 200 while Docker and etcd answer, 503 within 5 s of losing either (the body says
/// which), 200 again when it is back; `/healthz` stays 200 (the process is alive) and says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_docker_and_etcd() {
    let mut etcd = Etcd::start().await;
    let mut proxy = DockerProxy::start();
    let url = proxy.url();
    let reg = Registrator::start(
        &etcd,
        "h-ready",
        &["--docker", &url, "--metrics", "127.0.0.1:0"],
    );
    let addr = reg.metrics.expect("metrics address");
    let ready = |want: u16| async move {
        eventually(
            Duration::from_secs(5),
            &format!("/readyz {want}"),
            || async move {
                let (code, body) = http_get(addr, "/readyz").await;
                (code == want).then_some(body)
            },
        )
        .await
    };
    ready(200).await;
    proxy.cut();
    let body = ready(503).await;
    assert!(body.contains("docker: unreachable"), "{body}");
    let (code, health) = http_get(addr, "/healthz").await;
    assert_eq!(code, 200);
    assert!(
        health.contains("docker: unreachable") && health.contains("etcd: ok"),
        "{health}"
    );
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(
        metrics.contains("lodestar_registrator_docker_up 0"),
        "{metrics}"
    );
    proxy.restore();
    ready(200).await;
    etcd.kill();
    // A reconcile pass may notice first ("reconcile: failing"); the probe says which within 5 s.
    let body = eventually(
        Duration::from_secs(5),
        "/readyz 503 naming etcd",
        || async {
            let (code, body) = http_get(addr, "/readyz").await;
            (code == 503 && body.contains("etcd: unreachable")).then_some(body)
        },
    )
    .await;
    assert!(body.contains("etcd: unreachable"), "{body}");
    etcd.restart().await;
    ready(200).await;
}

fn sh(dir: &std::path::Path, script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(out.status.success(), "{script}: {out:?}");
}

/// DOCKER_HOST=tcp://..., DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH=dir (the Docker CLI's convention):
/// the registrator speaks TLS with its client certificate to a TLS-terminating stunnel in front
/// of the engine's socket (certificates made here), and registers the engine's containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_over_tls() {
    docker_ready();
    let dir = tempfile::TempDir::new().expect("tempdir");
    sh(
        dir.path(),
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
           -subj /CN=docker-ca -keyout ca.key -out ca.pem 2>/dev/null
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=engine \
           -keyout server.key -out server.csr 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
           -extfile server.ext -out server.pem 2>/dev/null
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=client \
           -keyout key.pem -out client.csr 2>/dev/null
         printf 'extendedKeyUsage=clientAuth\\n' > client.ext
         openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
           -extfile client.ext -out cert.pem 2>/dev/null",
    );
    // stunnel, not socat: socat's OpenSSL listener sets no session id context, so a client that
    // resumes its TLS session with a client certificate (rustls does) is refused.
    let port = free_port();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("stunnel.conf"),
        format!(
            "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{port}\nconnect = /var/run/docker.sock\n\
             cert = {d}/server.pem\nkey = {d}/server.key\nCAfile = {d}/ca.pem\nverify = 2\n"
        ),
    )
    .expect("stunnel.conf");
    let mut tunnel = std::process::Command::new("stunnel")
        .arg(dir.path().join("stunnel.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("stunnel (apt-get install stunnel4)");
    let etcd = Etcd::start().await;
    let dns = Dns::for_etcd(&etcd, None, &[]);
    dns.ready().await;
    let host = format!("tcp://127.0.0.1:{port}");
    let cert_path = dir.path().display().to_string();
    let args: Vec<String> = [
        "--etcd",
        &etcd.endpoint(),
        "--domain",
        "webapp.dev",
        "--host-id",
        "h-tls",
        "--ip",
        "10.99.0.9",
        "--metrics",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (child, logs, rx) = spawn_logged(
        env!("CARGO_BIN_EXE_lodestar-registrator"),
        &args,
        &[
            ("DOCKER_HOST", &host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", &cert_path),
        ],
    );
    let _reg = Proc::new(child, logs.clone());
    let _ = rx;
    let n = unique("tls");
    let _c = Ctr::run(
        "tls",
        &[
            "-p",
            "80",
            "-e",
            &format!("SERVICE_NAME={n}"),
            "-e",
            "SERVICE_ID=t",
        ],
    );
    let name = format!("t.{n}.webapp.dev.");
    let start = std::time::Instant::now();
    loop {
        if let Ok(m) = query(dns.addr, &name, RecordType::A).await {
            if data(&m) == ["10.99.0.9"] {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(10) {
            let joined = logs.lock().map(|l| l.join("\n")).unwrap_or_default();
            panic!("not registered through the TLS engine within 10 s:\n{joined}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let joined = logs.lock().map(|l| l.join("\n")).unwrap_or_default();
    assert!(joined.contains("\"tls\":true"), "{joined}");
    let _ = tunnel.kill();
    let _ = tunnel.wait();
}

/// A dual-stack network with `--internal`: the name answers A and AAAA with the container's own
/// addresses on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_network_answers_aaaa() {
    docker_ready();
    let net = unique("v6");
    docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:7e57::/64",
        "--internal",
        &net,
    ]);
    let _net = Net { name: net.clone() };
    let (_etcd, dns, _reg) = stack("h-v6", &["--internal"]).await;
    let n = unique("dual");
    let c = Ctr::run(
        "dual",
        &[
            "--network",
            &net,
            "--expose",
            "8080",
            "-e",
            &format!("SERVICE_NAME={n}"),
            "-e",
            "SERVICE_ID=d",
        ],
    );
    let v6 = docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").GlobalIPv6Address}}}}"),
        &c.name,
    ]);
    assert!(v6.starts_with("fd00:7e57:"), "{v6}");
    a_of(&dns, &format!("{n}.webapp.dev."), &ip_on(&c, &net)).await;
    eventually(SOON, "AAAA", || async {
        let m = query(dns.addr, &format!("{n}.webapp.dev."), RecordType::AAAA)
            .await
            .ok()?;
        (data(&m) == [v6.clone()]).then_some(())
    })
    .await;
}
