//! etcd with TLS (mutual, certificates made here with openssl) and etcd with authentication (a
//! read-only user for `lodestar-dns`, a user for the registrator with only its keys, short-lived
//! tokens, a password change): both binaries work with each, with the least privileges docs/cluster.md
//! documents.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use tempfile::TempDir;

use crate::support::{
    data, eventually, free_port, path_str, query, until_a_contains, Ctr, Dns, Registrator,
};

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn make_certs(dir: &Path) {
    sh(
        dir,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
           -subj /CN=lodestar-test-ca -keyout ca.key -out ca.pem 2>/dev/null
         for who in server client; do
           openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -subj /CN=$who -keyout $who.key -out $who.csr 2>/dev/null
         done
         printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
         printf 'extendedKeyUsage=clientAuth\\n' > client.ext
         for who in server client; do
           openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
             -extfile $who.ext -out $who.pem 2>/dev/null
         done",
    );
}

/// etcd on a free loopback port with `extra` flags; killed when dropped.
struct SecureEtcd {
    child: Child,
    endpoint: String,
    /// etcdctl's connection flags.
    ctl: Vec<String>,
    dir: TempDir,
}

impl SecureEtcd {
    fn start(scheme: &str, extra: &[String], ctl: Vec<String>, dir: TempDir) -> SecureEtcd {
        let (port, peer) = (free_port(), free_port());
        let endpoint = format!("{scheme}://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
        let child = Command::new("etcd")
            .args(["--name", "s", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("s={peer_url}")])
            .args(["--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd");
        SecureEtcd {
            child,
            endpoint,
            ctl,
            dir,
        }
    }

    fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint, "--dial-timeout", "2s"])
            .args(&self.ctl)
            .args(args)
            .output()
            .expect("etcdctl (apt-get install etcd-client)");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    fn ctl_stdin(&self, args: &[&str], input: &str) {
        use std::io::Write;
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint])
            .args(&self.ctl)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("etcdctl");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("stdin");
        }
        assert!(child.wait().expect("etcdctl").success(), "etcdctl {args:?}");
    }

    fn ctl(&self, args: &[&str]) -> String {
        self.etcdctl(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"))
    }

    async fn ready(&self) {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        eventually(
            Duration::from_secs(30),
            &format!("etcd answers: {log}"),
            || async { self.etcdctl(&["endpoint", "health"]).ok().map(|_| ()) },
        )
        .await;
    }
}

impl Drop for SecureEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mutual TLS: both binaries connect with the CA and a client certificate; without the client
/// certificate etcd refuses the server, which says why and answers nothing from etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_mutual_tls() {
    let dir = TempDir::new().expect("tempdir");
    make_certs(dir.path());
    let base = dir.path().to_path_buf();
    let p = |f: &str| path_str(&base.join(f));
    let etcd = SecureEtcd::start(
        "https",
        &[
            "--cert-file".into(),
            p("server.pem"),
            "--key-file".into(),
            p("server.key"),
            "--trusted-ca-file".into(),
            p("ca.pem"),
            "--client-cert-auth".into(),
        ],
        vec![
            "--cacert".into(),
            p("ca.pem"),
            "--cert".into(),
            p("client.pem"),
            "--key".into(),
            p("client.key"),
        ],
        dir,
    );
    etcd.ready().await;
    etcd.ctl(&[
        "put",
        "/skydns/dev/webapp/db/db-1",
        r#"{"host":"10.2.0.1","port":5432}"#,
    ]);
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));
    let tls = [
        "--etcd-ca",
        ca.as_str(),
        "--etcd-cert",
        cert.as_str(),
        "--etcd-key",
        key.as_str(),
    ];
    let mut args = vec![
        "--domain",
        "webapp.dev",
        "--no-forward",
        "--etcd",
        &etcd.endpoint,
    ];
    args.extend(tls);
    let dns = Dns::start(&args);
    until_a_contains(&dns, "db.webapp.dev.", "10.2.0.1").await;
    // Changes arrive over the TLS watch.
    etcd.ctl(&[
        "put",
        "/skydns/dev/webapp/db/db-2",
        r#"{"host":"10.2.0.2","port":5432}"#,
    ]);
    until_a_contains(&dns, "db.webapp.dev.", "10.2.0.2").await;

    // The registrator over TLS too.
    let svc = format!("tls{}", std::process::id());
    let _c = Ctr::run("tls", &["-e", &format!("SERVICE_NAME={svc}"), "-p", "80"]);
    let reg = Registrator::start_endpoint(&etcd.endpoint, "tls-host", &tls);
    until_a_contains(&dns, &format!("{svc}.webapp.dev."), "10.99.0.1").await;
    drop(reg);

    // Without a client certificate etcd refuses the handshake: logged, nothing answered from etcd.
    let args = [
        "--domain",
        "webapp.dev",
        "--no-forward",
        "--etcd",
        &etcd.endpoint,
        "--etcd-ca",
        ca.as_str(),
    ];
    let bare = Dns::start(&args);
    eventually(
        Duration::from_secs(20),
        "the refused connection is logged",
        || async { bare.logs().contains("etcd unavailable").then_some(()) },
    )
    .await;
    let m = query(bare.addr, "db.webapp.dev.", RecordType::A)
        .await
        .expect("answer");
    assert!(data(&m).is_empty(), "nothing answered without etcd: {m:?}");
}

/// Authentication: `lodestar-dns` as a read-only user of the prefix, the registrator as a user that
/// may write only the prefix and its owner keys; tokens that expire after 2 s; a password change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_authentication_and_least_privileges() {
    let dir = TempDir::new().expect("tempdir");
    let etcd = SecureEtcd::start(
        "http",
        &[
            "--auth-token".into(),
            "simple".into(),
            "--auth-token-ttl".into(),
            "2".into(),
        ],
        vec![],
        dir,
    );
    etcd.ready().await;
    // The roles docs/cluster.md documents.
    for cmd in [
        "user add root --new-user-password=rootpw",
        "role add lodestar-dns",
        "role grant-permission lodestar-dns read /skydns/ --prefix=true",
        "role add lodestar-registrator",
        "role grant-permission lodestar-registrator readwrite /skydns/ --prefix=true",
        "role grant-permission lodestar-registrator readwrite /lodestar/owners/skydns/ --prefix=true",
        "user add dns --new-user-password=dnspw",
        "user grant-role dns lodestar-dns",
        "user add registrator --new-user-password=regpw",
        "user grant-role registrator lodestar-registrator",
        "auth enable",
    ] {
        etcd.ctl(&cmd.split(' ').collect::<Vec<_>>());
    }
    let root = ["--user", "root:rootpw"];
    let put = |k: &str, v: &str| {
        let mut a = root.to_vec();
        a.extend(["put", k, v]);
        etcd.ctl(&a);
    };
    put("/skydns/dev/webapp/db/db-1", r#"{"host":"10.3.0.1"}"#);
    // The DNS server's user cannot write.
    assert!(etcd
        .etcdctl(&["--user", "dns:dnspw", "put", "/skydns/dev/webapp/x", "{}"])
        .is_err());

    let auth = ["--etcd-user", "dns", "--etcd-password", "dnspw"];
    let mut args = vec![
        "--domain",
        "webapp.dev",
        "--no-forward",
        "--etcd",
        &etcd.endpoint,
    ];
    args.extend(auth);
    let dns = Dns::start(&args);
    until_a_contains(&dns, "db.webapp.dev.", "10.3.0.1").await;

    let svc = format!("auth{}", std::process::id());
    let _c = Ctr::run("auth", &["-e", &format!("SERVICE_NAME={svc}"), "-p", "80"]);
    let reg_auth = [
        "--etcd-user",
        "registrator",
        "--etcd-password",
        "regpw",
        "--ttl",
        "3",
    ];
    let reg = Registrator::start_endpoint(&etcd.endpoint, "auth-host", &reg_auth);
    until_a_contains(&dns, &format!("{svc}.webapp.dev."), "10.99.0.1").await;
    // The read-only user may read the lease's TTL: the answer does not outlive it (--ttl 3).
    let m = query(dns.addr, &format!("{svc}.webapp.dev."), RecordType::A)
        .await
        .expect("answer");
    assert!(
        m.answers.iter().all(|r| r.ttl <= 3),
        "TTL within the registrator's lease: {m:?}"
    );

    // Tokens live 2 s: after they expired the watch still delivers, and the registrator (which
    // refreshes its lease every second) still writes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    put("/skydns/dev/webapp/db/db-2", r#"{"host":"10.3.0.2"}"#);
    until_a_contains(&dns, "db.webapp.dev.", "10.3.0.2").await;
    let svc2 = format!("auth2x{}", std::process::id());
    let _c2 = Ctr::run(
        "auth2",
        &["-e", &format!("SERVICE_NAME={svc2}"), "-p", "80"],
    );
    until_a_contains(&dns, &format!("{svc2}.webapp.dev."), "10.99.0.1").await;
    assert!(
        !reg.logs().contains("lease lost"),
        "the lease outlived the tokens: {}",
        reg.logs()
    );

    // A password change: a server started with the old password says why it gets nothing; one
    // with the new password answers.
    etcd.ctl_stdin(
        &[
            "--user",
            "root:rootpw",
            "user",
            "passwd",
            "dns",
            "--interactive=false",
        ],
        "dnspw2\n",
    );
    drop(dns);
    let old = Dns::start(&args);
    eventually(
        Duration::from_secs(20),
        "the old password's refusal is logged",
        || async { old.logs().contains("authentication failed").then_some(()) },
    )
    .await;
    let mut args = vec![
        "--domain",
        "webapp.dev",
        "--no-forward",
        "--etcd",
        &etcd.endpoint,
    ];
    args.extend(["--etcd-user", "dns", "--etcd-password", "dnspw2"]);
    let dns = Dns::start(&args);
    until_a_contains(&dns, "db.webapp.dev.", "10.3.0.2").await;
    drop(reg);
}
