//! DNSSEC through the binary, judged by real validators: keys made by BIND's `dnssec-keygen`,
//! answers validated by `delv` (BIND 9) with the domain's DS or DNSKEY as trust anchor, RRSIGs
//! shown by Knot's `kdig +dnssec`, and the wire checked for what a client without DO gets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tempfile::TempDir;

use crate::support::{eventually, exchange, message, path_str, put_all, zone_dir, Dns, Etcd};

/// A key pair made by `dnssec-keygen` for `zone` (`-f KSK` when `ksk`); its base name.
fn keygen(dir: &Path, zone: &str, algorithm: &str, ksk: bool) -> PathBuf {
    let mut cmd = Command::new("dnssec-keygen");
    cmd.args(["-q", "-K"]).arg(dir).args(["-a", algorithm]);
    if algorithm.starts_with("RSA") {
        cmd.args(["-b", "2048"]);
    }
    if ksk {
        cmd.args(["-f", "KSK"]);
    }
    let out = cmd
        .arg(zone)
        .output()
        .expect("dnssec-keygen runs (apt-get install bind9-utils)");
    assert!(out.status.success(), "{out:?}");
    dir.join(String::from_utf8_lossy(&out.stdout).trim())
}

/// A `delv -a` file trusting `base`'s key: as its DS (what a parent publishes, from
/// `dnssec-dsfromkey`) or as the DNSKEY itself.
fn anchor(dir: &Path, base: &Path, as_ds: bool) -> PathBuf {
    let key_file = format!("{}.key", base.display());
    let line = if as_ds {
        let out = Command::new("dnssec-dsfromkey")
            .args(["-2", &key_file])
            .output()
            .expect("dnssec-dsfromkey");
        let ds = String::from_utf8_lossy(&out.stdout).to_string();
        let t: Vec<&str> = ds.split_whitespace().collect();
        // zone. IN DS tag alg digest-type digest
        format!(
            "{} static-ds {} {} {} \"{}\";",
            t[0],
            t[3],
            t[4],
            t[5],
            t[6..].concat()
        )
    } else {
        let text = std::fs::read_to_string(&key_file).expect(".key");
        let record = text
            .lines()
            .find(|l| !l.starts_with(';') && l.contains("DNSKEY"))
            .expect("DNSKEY line");
        let t: Vec<&str> = record.split_whitespace().collect();
        let at = t.iter().position(|x| *x == "DNSKEY").expect("DNSKEY");
        format!(
            "{} static-key {} {} {} \"{}\";",
            t[0],
            t[at + 1],
            t[at + 2],
            t[at + 3],
            t[at + 4..].concat()
        )
    };
    let path = dir.join(format!(
        "anchor-{}-{}.conf",
        base.file_name().and_then(|n| n.to_str()).unwrap_or("k"),
        as_ds
    ));
    std::fs::write(&path, format!("trust-anchors {{\n  {line}\n}};\n")).expect("anchor");
    path
}

/// `delv` asks `dns` and validates from the trust anchor in `anchor` (zone `root`).
fn delv(dns: &Dns, anchor: &Path, root: &str, name: &str, qtype: &str) -> String {
    let out = Command::new("delv")
        .arg(format!("@{}", dns.addr.ip()))
        .args(["-p", &dns.addr.port().to_string()])
        .arg("-a")
        .arg(anchor)
        .arg(format!("+root={root}"))
        .args([name, qtype])
        .output()
        .expect("delv runs (apt-get install bind9-dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// lodestar-dns for webapp.dev on `etcd` (no forwarding) signing with `keys` (and `extra`
/// flags), once its view is loaded.
async fn signing(etcd: &Etcd, keys: &str, extra: &[&str]) -> Dns {
    let mut args = vec!["--dnssec-key", keys];
    args.extend(extra);
    let dns = Dns::for_etcd(etcd, None, &args);
    dns.ready().await;
    dns
}

/// `m` asked of `dns` over UDP, or TCP when `tcp`.
async fn ask(dns: &Dns, m: &Message, tcp: bool) -> Message {
    exchange(dns.addr, m, tcp).await.expect("answer")
}

fn validated(out: &str) -> bool {
    out.lines().any(|l| l == "; fully validated")
}

fn negative_validated(out: &str) -> bool {
    out.lines()
        .any(|l| l == "; negative response, fully validated")
}

/// A query with EDNS (`size`) and DO.
fn with_do(name: &str, qtype: RecordType, size: u16) -> Message {
    let mut m = message(name, qtype);
    let mut e = Edns::new();
    e.set_max_payload(size);
    e.set_dnssec_ok(true);
    m.set_edns(e);
    m
}

fn count(m: &Message, t: RecordType) -> usize {
    m.answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .filter(|r| r.record_type() == t)
        .count()
}

fn records() -> Vec<(String, String)> {
    [
        (
            "/skydns/dev/webapp/redis/1",
            r#"{"host":"10.0.0.1","port":6379}"#,
        ),
        (
            "/skydns/dev/webapp/redis/2",
            r#"{"host":"10.0.0.2","port":6379}"#,
        ),
        ("/skydns/dev/webapp/db", r#"{"host":"redis.webapp.dev"}"#),
        ("/skydns/dev/webapp/txt", r#"{"text":"hello"}"#),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The three algorithms, each with the anchor a user would have: ECDSA P-256 as a KSK trusted
/// through its DS, Ed25519 trusted as a DNSKEY, RSA/SHA-256 as a lone ZSK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_accept_positive_and_negative_answers() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &records()).await;
    let dir = TempDir::new().expect("tempdir");
    for (algorithm, ksk, as_ds) in [
        ("ECDSAP256SHA256", true, true),
        ("ED25519", true, false),
        ("RSASHA256", false, false),
    ] {
        let base = keygen(dir.path(), "webapp.dev", algorithm, ksk);
        let trust = anchor(dir.path(), &base, as_ds);
        let key = path_str(&base);
        let dns = signing(&etcd, &key, &[]).await;
        let ask = |name: &str, t: &str| delv(&dns, &trust, "webapp.dev", name, t);
        for (name, t, want) in [
            ("redis.webapp.dev", "A", "10.0.0.2"),
            ("redis.webapp.dev", "SRV", "6379 1.redis.webapp.dev."),
            ("db.webapp.dev", "A", "CNAME\tredis.webapp.dev."),
            ("txt.webapp.dev", "TXT", "\"hello\""),
            // SkyDNS's wildcard label, asked literally: the RRSIG's labels leave out the `*`.
            ("*.redis.webapp.dev", "A", "10.0.0.1"),
            ("REDIS.WebApp.dev", "A", "10.0.0.1"),
            ("webapp.dev", "SOA", "ns.dns.webapp.dev."),
            ("webapp.dev", "DNSKEY", "DNSKEY"),
        ] {
            let out = ask(name, t);
            assert!(
                validated(&out) && out.contains(want),
                "{algorithm}: {name} {t}: {out}"
            );
        }
        // NODATA: the name exists, the type does not.
        let out = ask("redis.webapp.dev", "AAAA");
        assert!(
            negative_validated(&out) && out.contains("NXRRSET"),
            "{algorithm}: NODATA: {out}"
        );
        // A name that does not exist: the black lie's NSEC says NXNAME (type 128).
        let out = ask("nope.webapp.dev", "A");
        assert!(
            negative_validated(&out) && out.contains("TYPE128"),
            "{algorithm}: NXDOMAIN: {out}"
        );
        // The DS logged at start is the one dnssec-dsfromkey computes.
        let ds = Command::new("dnssec-dsfromkey")
            .args(["-2", &format!("{key}.key")])
            .output()
            .expect("dnssec-dsfromkey");
        let ds = String::from_utf8_lossy(&ds.stdout);
        let digest: String = ds.split_whitespace().skip(6).collect();
        assert!(
            dns.logs().contains(&digest),
            "{algorithm}: DS {digest} not logged: {}",
            dns.logs()
        );
    }
    // The validator is really judging: another key as the anchor fails every answer.
    let other = keygen(dir.path(), "webapp.dev", "ECDSAP256SHA256", true);
    let wrong = anchor(dir.path(), &other, true);
    let served = keygen(dir.path(), "webapp.dev", "ECDSAP256SHA256", true);
    let key = path_str(&served);
    let dns = signing(&etcd, &key, &[]).await;
    let out = delv(&dns, &wrong, "webapp.dev", "redis.webapp.dev", "A");
    assert!(
        !validated(&out) && out.contains("resolution failed"),
        "{out}"
    );
}

/// A rollover by restart: with the old and the new key both given, both are published and every
/// RRset is signed by both, so a validator that trusts either one accepts every answer; after the
/// restart with the new key alone, only the new anchor validates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollover_by_restart_is_trusted_by_either_anchor() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &records()).await;
    let dir = TempDir::new().expect("tempdir");
    let old = keygen(dir.path(), "webapp.dev", "ECDSAP256SHA256", true);
    let new = keygen(dir.path(), "webapp.dev", "ECDSAP256SHA256", true);
    let (old_anchor, new_anchor) = (
        anchor(dir.path(), &old, true),
        anchor(dir.path(), &new, true),
    );
    let both = format!("{},{}", path_str(&old), path_str(&new));
    let dns = signing(&etcd, &both, &[]).await;
    let m = ask(
        &dns,
        &with_do("webapp.dev.", RecordType::DNSKEY, 1232),
        false,
    )
    .await;
    assert_eq!(count(&m, RecordType::DNSKEY), 2);
    let m = ask(
        &dns,
        &with_do("redis.webapp.dev.", RecordType::A, 1232),
        false,
    )
    .await;
    assert_eq!(count(&m, RecordType::RRSIG), 2, "signed by both keys");
    for trust in [&old_anchor, &new_anchor] {
        for (name, t) in [("redis.webapp.dev", "A"), ("nope.webapp.dev", "A")] {
            let out = delv(&dns, trust, "webapp.dev", name, t);
            assert!(validated(&out) || negative_validated(&out), "{name}: {out}");
        }
    }
    drop(dns);
    let key = path_str(&new);
    let dns = signing(&etcd, &key, &[]).await;
    assert!(validated(&delv(
        &dns,
        &new_anchor,
        "webapp.dev",
        "redis.webapp.dev",
        "A"
    )));
    assert!(!validated(&delv(
        &dns,
        &old_anchor,
        "webapp.dev",
        "redis.webapp.dev",
        "A"
    )));
}

/// kdig shows the RRSIGs; a client without DO, or without EDNS, gets no DNSSEC records and the
/// plain NXDOMAIN; DNSKEY is answered with or without DO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rrsigs_only_for_do_and_kdig_shows_them() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &records()).await;
    let dir = TempDir::new().expect("tempdir");
    let key = path_str(&keygen(dir.path(), "webapp.dev", "ED25519", true));
    let dns = signing(&etcd, &key, &[]).await;

    let out = Command::new("kdig")
        .arg(format!("@{}", dns.addr.ip()))
        .args(["-p", &dns.addr.port().to_string(), "+dnssec"])
        .args(["redis.webapp.dev", "A"])
        .output()
        .expect("kdig");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("RRSIG\tA 15 3 30 ") && out.contains("flags: do"),
        "{out}"
    );

    let signed = ask(
        &dns,
        &with_do("redis.webapp.dev.", RecordType::A, 1232),
        false,
    )
    .await;
    assert_eq!(count(&signed, RecordType::RRSIG), 1, "{signed:?}");
    assert!(signed.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));

    for q in [
        message("redis.webapp.dev.", RecordType::A),
        crate::support::message_edns("redis.webapp.dev.", RecordType::A, 1232),
    ] {
        let m = ask(&dns, &q, false).await;
        assert_eq!(m.answers.len(), 2);
        assert_eq!(count(&m, RecordType::RRSIG), 0, "{m:?}");
        assert!(!m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    }
    let plain = ask(&dns, &message("nope.webapp.dev.", RecordType::A), false).await;
    assert_eq!(plain.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        count(&plain, RecordType::NSEC) + count(&plain, RecordType::RRSIG),
        0
    );
    let lie = ask(
        &dns,
        &with_do("nope.webapp.dev.", RecordType::A, 1232),
        false,
    )
    .await;
    assert_eq!(lie.metadata.response_code, ResponseCode::NoError);
    assert_eq!(count(&lie, RecordType::NSEC), 1);
    assert_eq!(
        count(&lie, RecordType::RRSIG),
        2,
        "SOA and NSEC signed: {lie:?}"
    );

    let keys = ask(&dns, &message("webapp.dev.", RecordType::DNSKEY), false).await;
    assert_eq!(count(&keys, RecordType::DNSKEY), 1);
    assert_eq!(count(&keys, RecordType::RRSIG), 0);
    // Not at the apex: no DNSKEY.
    let below = ask(
        &dns,
        &message("redis.webapp.dev.", RecordType::DNSKEY),
        false,
    )
    .await;
    assert_eq!(count(&below, RecordType::DNSKEY), 0);
}

/// A record changed in etcd is answered, signed afresh, within a second, and validates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_record_is_signed_again_within_a_second() {
    let etcd = Etcd::start().await;
    put_all(&etcd, &records()).await;
    let dir = TempDir::new().expect("tempdir");
    let base = keygen(dir.path(), "webapp.dev", "ECDSAP256SHA256", true);
    let trust = anchor(dir.path(), &base, true);
    let key = path_str(&base);
    let dns = signing(&etcd, &key, &[]).await;
    let q = with_do("redis.webapp.dev.", RecordType::A, 1232);
    let before = ask(&dns, &q, false).await;
    let sig = |m: &Message| {
        m.answers
            .iter()
            .find(|r| r.record_type() == RecordType::RRSIG)
            .map(|r| r.data.to_string())
    };
    let old = sig(&before).expect("signed");
    etcd.put(
        "/skydns/dev/webapp/redis/1",
        r#"{"host":"10.0.0.9","port":6379}"#,
    )
    .await;
    let start = Instant::now();
    let after = eventually(Duration::from_secs(1), "the new address, signed", || {
        let q = q.clone();
        async move {
            let m = exchange(dns.addr, &q, false).await.ok()?;
            let has = m
                .answers
                .iter()
                .any(|r| matches!(&r.data, RData::A(a) if a.to_string() == "10.0.0.9"));
            has.then_some(m)
        }
    })
    .await;
    let new = sig(&after).expect("the new RRset is signed");
    assert_ne!(new, old);
    println!("re-signed answer after {:?}", start.elapsed());
    let out = delv(&dns, &trust, "webapp.dev", "redis.webapp.dev", "A");
    assert!(validated(&out) && out.contains("10.0.0.9"), "{out}");
}

/// Signed answers and size limits: what does not fit sets TC, what is sent is signed as sent,
/// and a name with 5,000 instances validates over TCP (the part that fits in 64 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_answers_that_do_not_fit_set_tc() {
    let etcd = Etcd::start().await;
    let mut all = records();
    for i in 0..40 {
        all.push((
            format!("/skydns/dev/webapp/forty/i{i}"),
            format!(r#"{{"host":"10.1.0.{i}","port":80}}"#),
        ));
    }
    for i in 0..5000u32 {
        all.push((
            format!("/skydns/dev/webapp/huge/i{i}"),
            format!(
                r#"{{"host":"10.{}.{}.{}"}}"#,
                2 + i / 65536,
                (i / 256) % 256,
                i % 256
            ),
        ));
    }
    put_all(&etcd, &all).await;
    let dir = TempDir::new().expect("tempdir");
    let base = keygen(dir.path(), "webapp.dev", "ECDSAP256SHA256", true);
    let trust = anchor(dir.path(), &base, true);
    let key = path_str(&base);
    let dns = signing(&etcd, &key, &[]).await;

    // 40 addresses fit 1232 bytes with their signature; not 512.
    let big = ask(
        &dns,
        &with_do("forty.webapp.dev.", RecordType::A, 1232),
        false,
    )
    .await;
    assert!(!big.metadata.truncation);
    assert_eq!((big.answers.len(), count(&big, RecordType::RRSIG)), (41, 1));
    let raw = crate::support::udp_raw(
        dns.addr,
        &with_do("forty.webapp.dev.", RecordType::A, 512)
            .to_vec()
            .expect("bytes"),
        Duration::from_secs(5),
    )
    .await
    .expect("answer");
    assert!(raw.len() <= 512, "{} bytes", raw.len());
    let small = Message::from_vec(&raw).expect("parses");
    assert!(
        small.metadata.truncation,
        "TC when the signed RRset does not fit"
    );
    let addresses = small
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .count();
    assert!(addresses < 40);
    if addresses > 0 {
        assert_eq!(
            count(&small, RecordType::RRSIG),
            1,
            "what is sent is signed"
        );
    }
    // Without DO the same 512 bytes hold more addresses and no signature.
    let plain = ask(
        &dns,
        &crate::support::message_edns("forty.webapp.dev.", RecordType::A, 512),
        false,
    )
    .await;
    assert_eq!(count(&plain, RecordType::RRSIG), 0);
    // delv retries over TCP on TC and validates the whole set.
    let out = delv(&dns, &trust, "webapp.dev", "forty.webapp.dev", "A");
    assert!(validated(&out) && out.contains("10.1.0.39"), "{out}");
    // 5,000 addresses do not fit a TCP message: the part sent is the part signed.
    let huge = ask(
        &dns,
        &with_do("huge.webapp.dev.", RecordType::A, 1232),
        true,
    )
    .await;
    assert!(huge.answers.len() > 3000, "{}", huge.answers.len());
    assert!(!huge.metadata.truncation, "no TC over TCP");
    assert_eq!(count(&huge, RecordType::RRSIG), 1);
    let out = delv(&dns, &trust, "webapp.dev", "huge.webapp.dev", "A");
    assert!(validated(&out), "{}", &out[..out.len().min(2000)]);
}

/// A static zone with a key is signed by hickory-server (NSEC chain): positive and negative
/// answers validate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_zones_are_signed() {
    let etcd = Etcd::start().await;
    let zones = zone_dir(&[(
        "static.test.zone",
        "$ORIGIN static.test.\n$TTL 300\n@ SOA ns.static.test. admin.static.test. 1 7200 3600 1209600 60\n\
         @ NS ns\nns A 127.0.0.1\nwww A 192.0.2.80\nmail A 192.0.2.25\n",
    )]);
    let dir = TempDir::new().expect("tempdir");
    let base = keygen(dir.path(), "static.test", "ECDSAP256SHA256", true);
    let trust = anchor(dir.path(), &base, false);
    let key = path_str(&base);
    let zdir = path_str(zones.path());
    let dns = signing(&etcd, &key, &["--zones", &zdir]).await;
    let out = delv(&dns, &trust, "static.test", "www.static.test", "A");
    assert!(validated(&out) && out.contains("192.0.2.80"), "{out}");
    let out = delv(&dns, &trust, "static.test", "nope.static.test", "A");
    assert!(negative_validated(&out), "{out}");
    let out = delv(&dns, &trust, "static.test", "www.static.test", "AAAA");
    assert!(negative_validated(&out), "{out}");
}

/// A key that cannot be used stops the start with the reason: a zone not served, a private key
/// that does not match, a missing file.
#[test]
fn unusable_keys_stop_the_start() {
    let dir = TempDir::new().expect("tempdir");
    let other = keygen(dir.path(), "other.dev", "ECDSAP256SHA256", true);
    let a = keygen(dir.path(), "webapp.dev", "ECDSAP256SHA256", true);
    let b = keygen(dir.path(), "webapp.dev", "ECDSAP256SHA256", true);
    // a's public key with b's private key
    let mixed = dir.path().join("Kmixed");
    std::fs::copy(
        format!("{}.key", a.display()),
        format!("{}.key", mixed.display()),
    )
    .expect("copy");
    std::fs::copy(
        format!("{}.private", b.display()),
        format!("{}.private", mixed.display()),
    )
    .expect("copy");
    let bin = env!("CARGO_BIN_EXE_lodestar-dns");
    for (key, want) in [
        (path_str(&other), "belongs to no domain served"),
        (path_str(&mixed), "does not belong to the public key"),
        (path_str(&dir.path().join("Kmissing")), "Kmissing.key"),
    ] {
        let out = Command::new(bin)
            .args(["--domain", "webapp.dev", "--listen", "127.0.0.1:0"])
            .args(["--etcd", "http://127.0.0.1:9", "--dnssec-key", &key])
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}");
        assert!(err.contains(want), "{key}: {err}");
    }
}
