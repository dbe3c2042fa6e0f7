//! Unit tests of the module above.

use super::*;

fn args(endpoints: &[&str]) -> EtcdArgs {
    EtcdArgs {
        etcd: endpoints.iter().map(|e| e.to_string()).collect(),
        etcd_user: None,
        etcd_password: None,
        etcd_ca: None,
        etcd_cert: None,
        etcd_key: None,
    }
}

#[test]
fn a_failed_member_is_left_for_the_next_and_clones_share_the_choice() {
    let cfg = args(&["http://a:2379", "http://b:2379", "http://c:2379"])
        .config()
        .expect("config");
    let clone = cfg.clone();
    assert_eq!(cfg.current_endpoint(), "http://a:2379");
    cfg.avoid_current();
    assert_eq!(clone.current_endpoint(), "http://b:2379");
    clone.avoid_current();
    clone.avoid_current();
    assert_eq!(cfg.current_endpoint(), "http://a:2379", "wraps around");
}

#[test]
fn what_no_retry_fixes_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let good_cert = dir.path().join("c.pem");
    let good_key = dir.path().join("k.pem");
    std::fs::write(
        &good_cert,
        "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        &good_key,
        "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let not_pem = dir.path().join("key.der");
    std::fs::write(&not_pem, [0x30u8, 0x82, 1, 2]).unwrap();
    let cfg = |eps: &[&str],
               ca: Option<&std::path::Path>,
               ck: Option<(&std::path::Path, &std::path::Path)>| EtcdConfig {
        endpoints: eps.iter().map(|s| s.to_string()).collect(),
        ca_file: ca.map(|p| p.to_path_buf()),
        cert_key_files: ck.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
        ..Default::default()
    };
    assert!(cfg(&["http://127.0.0.1:2379"], None, None)
        .validate()
        .is_ok());
    assert!(cfg(
        &["https://e:2379"],
        Some(&good_cert),
        Some((&good_cert, &good_key))
    )
    .validate()
    .is_ok());
    let err = |c: EtcdConfig| c.validate().unwrap_err().to_string();
    assert!(err(cfg(&["127.0.0.1:2379"], None, None)).starts_with("--etcd 127.0.0.1:2379"));
    assert!(err(cfg(&["http://e"], None, None)).contains("a host and a port"));
    assert!(err(cfg(&["https://e:2379"], None, None)).contains("needs --etcd-ca"));
    assert!(err(cfg(&["http://e:2379"], Some(&good_cert), None)).contains("use https://"));
    let missing = dir.path().join("nope.pem");
    let e = err(cfg(&["https://e:2379"], Some(&missing), None));
    assert!(e.starts_with("--etcd-ca ") && e.contains("nope.pem"), "{e}");
    let e = err(cfg(
        &["https://e:2379"],
        Some(&good_cert),
        Some((&good_cert, &not_pem)),
    ));
    assert!(
        e.starts_with("--etcd-key ") && e.contains("not a PEM file"),
        "{e}"
    );
}

#[test]
fn settings_that_do_not_fit_together_are_refused() {
    assert!(args(&[]).config().is_err());
    let user = EtcdArgs {
        etcd_user: Some("u".into()),
        ..args(&["http://a:2379"])
    };
    assert!(user.config().is_err());
    let cert = EtcdArgs {
        etcd_cert: Some("c.pem".into()),
        ..args(&["http://a:2379"])
    };
    assert!(cert.config().is_err());
}

#[tokio::test]
async fn no_usable_member_names_each_endpoint_and_why() {
    // Two closed loopback ports: refused at once, each named in the error.
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("port")
        })
        .collect();
    let eps: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let eps_str: Vec<&str> = eps.iter().map(String::as_str).collect();
    let cfg = args(&eps_str).config().expect("cfg");
    let err = match cfg.connect().await {
        Ok(_) => panic!("nothing listens"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&eps[0]) && err.contains(&eps[1]), "{err}");
}
