//! Unit tests of the module above.

use super::*;
use crate::view::View;

fn snap(values: &[(&str, &str)]) -> Snapshot {
    Snapshot::from_values(values.iter().map(|(p, v)| (*p, v.as_bytes(), 1)))
}

#[test]
fn subtree_respects_label_boundaries() {
    let s = snap(&[
        ("dev/webapp/redis", r#"{"host":"10.0.0.1"}"#),
        ("dev/webapp/redis/a", r#"{"host":"10.0.0.2"}"#),
        ("dev/webapp/redis2/b", r#"{"host":"10.0.0.3"}"#),
        ("dev/webapp/redis-x", r#"{"host":"10.0.0.4"}"#),
    ]);
    let paths: Vec<_> = s.subtree("dev/webapp/redis").map(|(p, _)| p).collect();
    assert_eq!(paths, ["dev/webapp/redis", "dev/webapp/redis/a"]);
    assert_eq!(s.subtree("").count(), 4);
    assert!(s.exists("dev/webapp"));
    assert!(!s.exists("dev/webapp/red"));
}

#[test]
fn malformed_values_are_skipped_once_and_counted() {
    let mut s = Snapshot::default();
    assert_eq!(
        s.put("dev/a", br#"{"host":"10.0.0.1"}"#, 1),
        Applied::Stored
    );
    assert!(matches!(
        s.put("dev/a", b"{nope", 2),
        Applied::Skipped { first: true, .. }
    ));
    assert!(s.get("dev/a").is_none(), "a bad value replaces the old one");
    assert!(matches!(
        s.put("dev/a", b"{nope", 2),
        Applied::Skipped { first: false, .. }
    ));
    assert!(matches!(
        s.put("dev/b c", b"{}", 3),
        Applied::Skipped { first: true, .. }
    ));
    assert_eq!(s.skipped_total(), 2);
    assert_eq!(s.invalid_now(), 2);
    s.put("dev/a", b"{}", 4);
    assert_eq!(s.invalid_now(), 1);
}

#[test]
fn address_index_follows_puts_and_deletes() {
    let mut s = snap(&[
        ("dev/x/a", r#"{"host":"10.0.0.1"}"#),
        ("dev/x/b", r#"{"host":"10.0.0.1"}"#),
    ]);
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(
        s.paths_for_addr(ip).collect::<Vec<_>>(),
        ["dev/x/a", "dev/x/b"]
    );
    s.put("dev/x/a", br#"{"host":"10.0.0.2"}"#, 2);
    s.delete("dev/x/b");
    assert_eq!(s.paths_for_addr(ip).count(), 0);
    assert_eq!(
        s.paths_for_addr("10.0.0.2".parse().unwrap())
            .collect::<Vec<_>>(),
        ["dev/x/a"]
    );
}

#[test]
fn keys_are_lower_cased() {
    let s = snap(&[("dev/WebApp/X", r#"{"host":"10.0.0.1"}"#)]);
    assert!(s.get("dev/webapp/x").is_some());
}

#[test]
fn publishing_bumps_the_generation() {
    let v = View::new();
    assert!(v.load().is_none());
    assert_eq!(v.generation(), 0);
    let mut s = Snapshot::default();
    assert_eq!(v.publish(&mut s, true).generation(), 1);
    assert_eq!(v.publish(&mut s, false).generation(), 2);
    assert_eq!(v.generation(), 2);
}

#[test]
fn a_change_is_seen_at_its_path_and_above_only() {
    let v = View::new();
    let mut s = snap(&[
        ("dev/webapp/redis/a", r#"{"host":"10.0.0.1"}"#),
        ("dev/webapp/web/b", r#"{"host":"10.0.0.2"}"#),
    ]);
    let g1 = v.publish(&mut s, true).generation();
    s.put("dev/webapp/redis/a", br#"{"host":"10.0.0.3"}"#, 2);
    let p = v.publish(&mut s, false);
    for changed in [
        "dev/webapp/redis/a",
        "dev/webapp/redis",
        "dev/webapp",
        "dev",
        "",
        "arpa/in-addr/10/0/0/1",
        "arpa/in-addr/10/0/0/3",
    ] {
        assert!(p.changed_since(changed, g1), "{changed}");
    }
    for same in [
        "dev/webapp/web",
        "dev/webapp/web/b",
        "dev/webapp/redis2",
        "arpa/in-addr/10/0/0/2",
    ] {
        assert!(!p.changed_since(same, g1), "{same}");
    }
    assert!(!p.changed_since("dev/webapp/redis", p.generation()));
    // A reload retires everything built before it.
    let r = v.publish(&mut s, true);
    assert!(r.changed_since("dev/webapp/web", p.generation()));
    assert!(!r.changed_since("dev/webapp/web", r.generation()));
}

#[test]
fn reverse_paths() {
    assert_eq!(
        reverse_path("10.0.0.5".parse().unwrap()),
        "arpa/in-addr/10/0/0/5"
    );
    let v6 = reverse_path("2001:db8::1".parse().unwrap());
    assert!(v6.starts_with("arpa/ip6/2/0/0/1/0/d/b/8/0"), "{v6}");
    assert!(v6.ends_with("/0/1"), "{v6}");
    assert_eq!(v6.split('/').count(), 34);
}

/// Whether `path` (below `base`) matches `pattern` label for label (`None`: any label).
fn matches(path: &str, base: &str, pattern: &[Option<&str>]) -> bool {
    let mut segs = path[base.len()..].split('/').skip(1);
    pattern
        .iter()
        .all(|p| segs.next().is_some_and(|s| p.is_none_or(|p| p == s)))
}

#[test]
fn the_wildcard_index_finds_exactly_what_the_walk_finds() {
    // A small tree of every shape: shallow and deep, shared labels at several depths.
    let mut values = Vec::new();
    for env in ["prod", "dev", "x"] {
        for svc in ["redis", "web", "x"] {
            for i in 0..3 {
                values.push(format!("dev/webapp/{env}/{svc}/{svc}-{i}"));
                values.push(format!("dev/webapp/{env}/{svc}/{svc}-{i}/x"));
            }
            values.push(format!("dev/webapp/{env}/{svc}"));
        }
    }
    values.push("dev/webapp".into());
    values.push("dev/webapp/x".into());
    values.push("dev/other/prod/redis/redis-1".into());
    let mut s = Snapshot::from_values(
        values
            .iter()
            .map(|p| (p.as_str(), br#"{"host":"10.0.0.1"}"#.as_slice(), 1)),
    );
    // Deleting some keeps the index in step.
    s.delete("dev/webapp/dev/web/web-1");
    s.delete("dev/webapp/x/x/x-2/x");
    let labels = [
        None,
        Some("x"),
        Some("redis"),
        Some("redis-1"),
        Some("prod"),
    ];
    let mut patterns: Vec<Vec<Option<&str>>> = Vec::new();
    for a in labels {
        for b in labels {
            patterns.push(vec![None, a]);
            patterns.push(vec![None, a, b]);
            patterns.push(vec![a, None, b]);
            patterns.push(vec![None, None, a, b]);
        }
    }
    patterns.push(vec![None; 6]);
    for base in ["dev/webapp", "dev", "dev/webapp/prod"] {
        for p in &patterns {
            let walk: Vec<&str> = s
                .subtree(base)
                .map(|(k, _)| k)
                .filter(|k| matches(k, base, p))
                .collect();
            let indexed: Vec<&str> = match s.wildcard_candidates(base, p) {
                Some(c) => c.map(|(k, _)| k).filter(|k| matches(k, base, p)).collect(),
                None => continue,
            };
            assert_eq!(indexed, walk, "{base} {p:?}");
        }
    }
}
