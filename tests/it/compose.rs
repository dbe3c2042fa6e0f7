//! `docker/compose.yml` brought up with Debian's docker-compose (1.29, the compose file format
//! 2.4 that the compose plugin reads too), on images built here (the two binaries' own images and
//! etcd's from Debian's etcd binary: no registry): a container is registered and answered, with
//! the host's own name and address as the registrator's defaults, then everything goes down.

use std::process::Command;
use std::time::Duration;

use hickory_proto::rr::RecordType;

use crate::support::*;

struct Project {
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn compose(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new("docker-compose");
        c.args([
            "-p",
            &self.name,
            "-f",
            &path_str(&repo_file("docker/compose.yml")),
        ])
        .args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output()
            .expect("docker-compose (apt-get install docker-compose)")
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "-t", "2"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_up_registers_and_answers() {
    let id = std::process::id();
    let (etcd_tag, dns_tag, reg_tag) = (
        format!("lodestar-test/etcd:{id}"),
        format!("lodestar-test/dns:{id}"),
        format!("lodestar-test/registrator:c{id}"),
    );
    build_etcd_image(&etcd_tag);
    build_image(
        std::path::Path::new(env!("CARGO_BIN_EXE_lodestar-dns")),
        &dns_tag,
        9153,
    );
    build_image(
        std::path::Path::new(env!("CARGO_BIN_EXE_lodestar-registrator")),
        &reg_tag,
        9154,
    );
    let ports: Vec<u16> = (0..5).map(|_| free_port()).collect();
    let env: Vec<(String, String)> = [
        ("LODESTAR_ETCD_IMAGE", etcd_tag.clone()),
        ("LODESTAR_DNS_IMAGE", dns_tag.clone()),
        ("LODESTAR_REGISTRATOR_IMAGE", reg_tag.clone()),
        ("LODESTAR_ETCD_PORT", ports[0].to_string()),
        ("LODESTAR_ETCD_PEER_PORT", ports[1].to_string()),
        ("LODESTAR_DNS_PORT", ports[2].to_string()),
        ("LODESTAR_DNS_METRICS_PORT", ports[3].to_string()),
        ("LODESTAR_REGISTRATOR_METRICS_PORT", ports[4].to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let project = Project {
        name: format!("lodestartest{id}"),
        env,
    };
    let up = project.compose(&["up", "-d"]);
    assert!(
        up.status.success(),
        "compose up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let dns: std::net::SocketAddr = ([127, 0, 0, 1], ports[2]).into();
    eventually(
        Duration::from_secs(30),
        "the composed DNS server answers",
        || async move {
            let m = query(dns, "webapp.dev.", RecordType::SOA).await.ok()?;
            (m.metadata.response_code == hickory_proto::op::ResponseCode::NoError).then_some(())
        },
    )
    .await;
    let n = unique("composed");
    let ctr = Ctr::run(
        "composed",
        &["-p", "80", "-e", &format!("SERVICE_NAME={n}")],
    );
    let port = host_port(&ctr, "80/tcp");
    let name = format!("{n}.webapp.dev.");
    let srv = eventually(
        Duration::from_secs(20),
        "registered by the composed registrator",
        || {
            let name = name.clone();
            async move {
                let m = query(dns, &name, RecordType::SRV).await.ok()?;
                (!m.answers.is_empty()).then(|| data(&m))
            }
        },
    )
    .await;
    // On a host with a global IPv6 address a dual-stack binding is registered twice, the IPv6
    // twin (`-ipv6`, its own host port) beside it: the IPv4 record is the one looked at here.
    let srv: Vec<String> = srv.into_iter().filter(|s| !s.contains("-ipv6.")).collect();
    assert_eq!(srv.len(), 1, "one IPv4 record: {srv:?}");
    // The host's hostname is the registrator's default id, and the host's address its address.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let host_label: String = hostname
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    assert!(srv[0].contains(&format!(" {port} ")), "{srv:?}");
    assert!(
        srv[0].contains(&host_label),
        "the host's name in the id: {srv:?}"
    );
    let a = query(dns, &name, RecordType::A).await.expect("A");
    let addr = data(&a);
    assert_eq!(addr.len(), 1, "{addr:?}");
    assert!(
        !addr[0].starts_with("127."),
        "the host's address, not loopback: {addr:?}"
    );
    // The DNS image keeps its state file (`--state-dir` on its volume), with the new record in it.
    let ps = project.compose(&["ps", "-q", "dns"]);
    let dns_ctr = String::from_utf8_lossy(&ps.stdout).trim().to_string();
    let copy = tempfile::tempdir().expect("tempdir");
    let copied = copy.path().join("view.state");
    let path = format!("dev/webapp/{}/", n.to_ascii_lowercase());
    eventually(
        Duration::from_secs(20),
        "the state file holds the record",
        || {
            let (dns_ctr, copied, path) = (dns_ctr.clone(), copied.clone(), path.clone());
            async move {
                let from = format!("{dns_ctr}:/var/lib/lodestar-dns/view.state");
                let ok = Command::new("docker")
                    .args(["cp", &from, &path_str(&copied)])
                    .output()
                    .ok()?
                    .status
                    .success();
                let bytes = std::fs::read(&copied).ok().filter(|_| ok)?;
                let domains = ["webapp.dev.".to_string()];
                let (_, snap) = lodestar::view::decode_state(&bytes, "/skydns", &domains).ok()?;
                let found = snap.subtree("").any(|(p, _)| p.starts_with(&path));
                found.then_some(())
            }
        },
    )
    .await;
    // Health through the images' own check.
    let ps = project.compose(&["ps"]);
    let table = String::from_utf8_lossy(&ps.stdout).to_string();
    assert!(table.contains("Up"), "{table}");
    drop(ctr);
    let down = project.compose(&["down", "-v", "-t", "2"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for tag in [&etcd_tag, &dns_tag, &reg_tag] {
        let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    }
}
