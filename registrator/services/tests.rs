//! The precedence table of container -> services.

use super::*;

fn settings() -> Settings {
    Settings {
        host_id: "node1".into(),
        host_ip: "10.0.0.1".parse().unwrap(),
        host_ip6: None,
        internal: false,
        explicit: false,
        domain: "webapp.dev".into(),
        network: None,
    }
}

fn port(port: u16, host_port: u16) -> Published {
    Published {
        port,
        proto: Proto::Tcp,
        host_ip: None,
        host_port,
    }
}

fn container(env: &[&str], labels: &[(&str, &str)], ports: Vec<Published>) -> Container {
    Container {
        id: "abc".into(),
        name: "web".into(),
        image: "docker.io/library/redis:7".into(),
        env: env.iter().map(|s| s.to_string()).collect(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        published: ports,
        ..Default::default()
    }
}

/// `name host:port` for each service.
fn show(c: &Container, s: &Settings) -> Vec<String> {
    let mut v: Vec<String> = services(c, s)
        .unwrap()
        .iter()
        .map(|(n, svc)| format!("{n} {}:{}", svc.host, svc.port))
        .collect();
    v.sort();
    v
}

#[test]
fn precedence_table() {
    let s = settings();
    let one = || vec![port(6379, 32768)];
    let two = || vec![port(6379, 32768), port(8080, 32769)];
    let cases: Vec<(&str, Container, Vec<&str>)> = vec![
        (
            "image name and generated id",
            container(&[], &[], one()),
            vec!["node1-web-6379.redis.webapp.dev 10.0.0.1:32768"],
        ),
        (
            "SERVICE_NAME from env",
            container(&["SERVICE_NAME=cache"], &[], one()),
            vec!["node1-web-6379.cache.webapp.dev 10.0.0.1:32768"],
        ),
        (
            "SERVICE_ID from env",
            container(&["SERVICE_NAME=cache", "SERVICE_ID=redis-1"], &[], one()),
            vec!["redis-1.cache.webapp.dev 10.0.0.1:32768"],
        ),
        (
            "labels win over env",
            container(
                &["SERVICE_NAME=fromenv"],
                &[("SERVICE_NAME", "fromlabel")],
                one(),
            ),
            vec!["node1-web-6379.fromlabel.webapp.dev 10.0.0.1:32768"],
        ),
        (
            "port-specific wins",
            container(
                &["SERVICE_NAME=general", "SERVICE_6379_NAME=specific"],
                &[],
                one(),
            ),
            vec!["node1-web-6379.specific.webapp.dev 10.0.0.1:32768"],
        ),
        (
            "port-specific env wins over general label",
            container(
                &["SERVICE_6379_NAME=specific"],
                &[("SERVICE_NAME", "general")],
                one(),
            ),
            vec!["node1-web-6379.specific.webapp.dev 10.0.0.1:32768"],
        ),
        (
            "several ports get -<port>",
            container(&[], &[], two()),
            vec![
                "node1-web-6379.redis-6379.webapp.dev 10.0.0.1:32768",
                "node1-web-8080.redis-8080.webapp.dev 10.0.0.1:32769",
            ],
        ),
        (
            "a per-port name is kept as is",
            container(&["SERVICE_NAME=app", "SERVICE_8080_NAME=http"], &[], two()),
            vec![
                "node1-web-6379.app-6379.webapp.dev 10.0.0.1:32768",
                "node1-web-8080.http.webapp.dev 10.0.0.1:32769",
            ],
        ),
        (
            "a shared SERVICE_ID gets -<port>",
            container(&["SERVICE_ID=x", "SERVICE_8080_ID=web"], &[], two()),
            vec![
                "web.redis-8080.webapp.dev 10.0.0.1:32769",
                "x-6379.redis-6379.webapp.dev 10.0.0.1:32768",
            ],
        ),
        (
            "SERVICE_IGNORE",
            container(&["SERVICE_IGNORE=1"], &[], one()),
            vec![],
        ),
        (
            "SERVICE_IGNORE as a label",
            container(&[], &[("SERVICE_IGNORE", "true")], one()),
            vec![],
        ),
        (
            "empty SERVICE_IGNORE does not ignore",
            container(&["SERVICE_IGNORE="], &[], one()),
            vec!["node1-web-6379.redis.webapp.dev 10.0.0.1:32768"],
        ),
        (
            "per-port ignore",
            container(&["SERVICE_8080_IGNORE=1"], &[], two()),
            vec!["node1-web-6379.redis-6379.webapp.dev 10.0.0.1:32768"],
        ),
        (
            "no ports, no services",
            container(&["SERVICE_NAME=x"], &[], vec![]),
            vec![],
        ),
        (
            "names are lower-cased",
            container(&["SERVICE_NAME=Cache", "SERVICE_ID=Redis-1"], &[], one()),
            vec!["redis-1.cache.webapp.dev 10.0.0.1:32768"],
        ),
    ];
    for (what, c, want) in cases {
        assert_eq!(show(&c, &s), want, "{what}");
    }
}

#[test]
fn explicit_registers_only_named_ports() {
    let s = Settings {
        explicit: true,
        ..settings()
    };
    let c = container(&[], &[], vec![port(6379, 1), port(8080, 2)]);
    assert!(show(&c, &s).is_empty());
    let c = container(
        &["SERVICE_8080_NAME=http"],
        &[],
        vec![port(6379, 1), port(8080, 2)],
    );
    assert_eq!(show(&c, &s), ["node1-web-8080.http.webapp.dev 10.0.0.1:2"]);
    let c = container(&["SERVICE_NAME=app"], &[], vec![port(6379, 1)]);
    assert_eq!(show(&c, &s), ["node1-web-6379.app.webapp.dev 10.0.0.1:1"]);
}

#[test]
fn record_fields_from_keys() {
    let c = container(
        &[
            "SERVICE_TTL=5",
            "SERVICE_PRIORITY=20",
            "SERVICE_6379_WEIGHT=7",
            "SERVICE_WEIGHT=1",
            "SERVICE_TEXT=hello",
        ],
        &[],
        vec![port(6379, 1)],
    );
    let got = services(&c, &settings()).unwrap();
    let svc = &got[0].1;
    assert_eq!(
        (svc.ttl, svc.priority, svc.weight, svc.text.as_str()),
        (5, 20, 7, "hello")
    );
    let c = container(&["SERVICE_TTL=soon"], &[], vec![port(6379, 1)]);
    assert!(matches!(
        services(&c, &settings()),
        Err(ServiceError::Number { .. })
    ));
    let c = container(&["SERVICE_PRIORITY=70000"], &[], vec![port(6379, 1)]);
    assert!(services(&c, &settings()).is_err());
}

#[test]
fn invalid_names_are_refused() {
    for (k, v) in [
        ("SERVICE_NAME", "has space"),
        ("SERVICE_NAME", "a..b"),
        ("SERVICE_ID", "with.dot"),
        ("SERVICE_NAME", "*"),
        ("SERVICE_6379_ID", &"x".repeat(64)),
    ] {
        let c = container(&[], &[(k, v)], vec![port(6379, 1)]);
        let err = services(&c, &settings()).unwrap_err();
        assert!(err.to_string().contains(k), "{k}={v}: {err}");
    }
}

#[test]
fn names_in_a_reserved_subtree_are_refused() {
    // The take-over: a stub zone for `dev.` written by a container's labels.
    for (k, v) in [
        ("SERVICE_NAME", "dev.stub.dns"),
        ("SERVICE_NAME", "ns.dns"),
        ("SERVICE_NAME", "apex.dns"),
        ("SERVICE_NAME", "dns"),
        ("SERVICE_6379_NAME", "x.dns.other"),
        ("SERVICE_ID", "dns"),
    ] {
        let c = container(&[], &[(k, v)], vec![port(6379, 1)]);
        let err = services(&c, &settings()).unwrap_err();
        assert!(
            matches!(err, ServiceError::Reserved { .. }) && err.to_string().contains(k),
            "{k}={v}: {err}"
        );
    }
    // The image's name too: an image called `dns` gets no default name in the reserved subtree.
    let mut c = container(&[], &[], vec![port(53, 1)]);
    c.image = "registry/dns:1".into();
    assert!(matches!(
        services(&c, &settings()),
        Err(ServiceError::Reserved { .. })
    ));
    // Labels that merely contain the letters are fine.
    let c = container(
        &["SERVICE_NAME=dnsmasq", "SERVICE_ID=mydns"],
        &[],
        vec![port(53, 1)],
    );
    assert_eq!(services(&c, &settings()).unwrap().len(), 1);
}

#[test]
fn a_record_over_the_size_limit_is_refused() {
    let text = format!(
        "SERVICE_TEXT={}",
        "x".repeat(lodestar::record::MAX_VALUE_BYTES)
    );
    let c = container(&[&text], &[], vec![port(6379, 1)]);
    assert!(matches!(
        services(&c, &settings()),
        Err(ServiceError::TooLarge { port: 6379, .. })
    ));
}

#[test]
fn udp_ports_and_host_addresses() {
    let mut c = container(
        &[],
        &[],
        vec![Published {
            port: 53,
            proto: Proto::Udp,
            host_ip: None,
            host_port: 5353,
        }],
    );
    assert_eq!(
        show(&c, &settings()),
        ["node1-web-53-udp.redis.webapp.dev 10.0.0.1:5353"]
    );
    c.published = vec![
        Published {
            port: 80,
            proto: Proto::Tcp,
            host_ip: Some("0.0.0.0".parse().unwrap()),
            host_port: 8080,
        },
        Published {
            port: 80,
            proto: Proto::Tcp,
            host_ip: Some("::".parse().unwrap()),
            host_port: 8080,
        },
    ];
    assert_eq!(
        show(&c, &settings()),
        ["node1-web-80.redis.webapp.dev 10.0.0.1:8080"],
        "one record for the v4 and v6 bindings"
    );
    c.published = vec![Published {
        port: 80,
        proto: Proto::Tcp,
        host_ip: Some("192.168.5.5".parse().unwrap()),
        host_port: 8080,
    }];
    assert_eq!(
        show(&c, &settings()),
        ["node1-web-80.redis.webapp.dev 192.168.5.5:8080"],
        "a specific binding address wins"
    );
}

fn bound(port: u16, host_ip: Option<&str>, host_port: u16) -> Published {
    Published {
        port,
        proto: Proto::Tcp,
        host_ip: host_ip.map(|ip| ip.parse().unwrap()),
        host_port,
    }
}

#[test]
fn ports_bound_on_ipv6_too_get_an_ipv6_twin() {
    let dual = Settings {
        host_ip6: Some("fd00::1".parse().unwrap()),
        ..settings()
    };
    // Docker lists `-p 80` as 0.0.0.0:X and :::Y (Y may differ from X).
    let mut c = container(
        &[],
        &[],
        vec![
            bound(80, Some("0.0.0.0"), 8080),
            bound(80, Some("::"), 8081),
        ],
    );
    assert_eq!(
        show(&c, &dual),
        [
            "node1-web-80-ipv6.redis.webapp.dev fd00::1:8081",
            "node1-web-80.redis.webapp.dev 10.0.0.1:8080"
        ]
    );
    assert_eq!(
        show(&c, &settings()),
        ["node1-web-80.redis.webapp.dev 10.0.0.1:8080"],
        "no IPv6 address for this host: no twin"
    );
    // Two ports, each with a twin: the twins do not make the names `-<port>`-suffixed twice.
    c.published.extend([
        bound(443, Some("0.0.0.0"), 8443),
        bound(443, Some("::"), 8443),
    ]);
    assert_eq!(
        show(&c, &dual),
        [
            "node1-web-443-ipv6.redis-443.webapp.dev fd00::1:8443",
            "node1-web-443.redis-443.webapp.dev 10.0.0.1:8443",
            "node1-web-80-ipv6.redis-80.webapp.dev fd00::1:8081",
            "node1-web-80.redis-80.webapp.dev 10.0.0.1:8080",
        ]
    );
    // Bound only on IPv6 (`-p [::1]:18081:80`, `-p [fd00::5]:80:80`): that address, no twin.
    c.published = vec![bound(80, Some("::1"), 18081)];
    assert_eq!(show(&c, &dual), ["node1-web-80.redis.webapp.dev ::1:18081"]);
    c.published = vec![bound(80, Some("fd00::5"), 80)];
    assert_eq!(
        show(&c, &settings()),
        ["node1-web-80.redis.webapp.dev fd00::5:80"]
    );
    // Only on `::`: the IPv6 address alone, with no IPv6 address known: nothing reachable.
    c.published = vec![bound(80, Some("::"), 8081)];
    assert_eq!(
        show(&c, &dual),
        ["node1-web-80.redis.webapp.dev fd00::1:8081"]
    );
    assert!(show(&c, &settings()).is_empty());
    // An IPv6-only host (`--ip fd00::9`): `::` at it, `0.0.0.0` unreachable.
    let v6_only = Settings {
        host_ip: "fd00::9".parse().unwrap(),
        ..settings()
    };
    c.published = vec![
        bound(80, Some("0.0.0.0"), 8080),
        bound(80, Some("::"), 8081),
    ];
    assert_eq!(
        show(&c, &v6_only),
        ["node1-web-80.redis.webapp.dev fd00::9:8081"]
    );
    // A specific address wins over a wildcard, a wildcard over loopback.
    c.published = vec![
        bound(80, Some("::1"), 18081),
        bound(80, Some("::"), 8081),
        bound(80, Some("127.0.0.1"), 18080),
        bound(80, Some("0.0.0.0"), 8080),
    ];
    assert_eq!(
        show(&c, &dual),
        [
            "node1-web-80-ipv6.redis.webapp.dev fd00::1:8081",
            "node1-web-80.redis.webapp.dev 10.0.0.1:8080"
        ]
    );
    c.published = vec![
        bound(80, Some("::"), 8081),
        bound(80, Some("fd00::7"), 80),
        bound(80, Some("127.0.0.1"), 18080),
    ];
    assert_eq!(
        show(&c, &dual),
        [
            "node1-web-80-ipv6.redis.webapp.dev fd00::7:80",
            "node1-web-80.redis.webapp.dev 127.0.0.1:18080"
        ]
    );
    // SERVICE_IP: one address, no twin.
    c.published = vec![
        bound(80, Some("0.0.0.0"), 8080),
        bound(80, Some("::"), 8081),
    ];
    c.labels.insert("SERVICE_IP".into(), "10.5.5.5".into());
    assert_eq!(
        show(&c, &dual),
        ["node1-web-80.redis.webapp.dev 10.5.5.5:8080"]
    );
}

#[test]
fn a_host_networked_container_gets_the_ipv6_address_too() {
    let mut c = container(&[], &[], vec![]);
    c.network_mode = "host".into();
    c.exposed = vec![(7100, Proto::Tcp)];
    let dual = Settings {
        host_ip6: Some("fd00::1".parse().unwrap()),
        ..settings()
    };
    assert_eq!(
        show(&c, &dual),
        [
            "node1-web-7100-ipv6.redis.webapp.dev fd00::1:7100",
            "node1-web-7100.redis.webapp.dev 10.0.0.1:7100"
        ]
    );
}

#[test]
fn a_stopped_containers_names_include_its_ipv6_twins() {
    let dual = Settings {
        host_ip6: Some("fd00::1".parse().unwrap()),
        ..settings()
    };
    let mut c = container(&[], &[], vec![]);
    c.state = RunState::Stopped(Some(1));
    c.configured = vec![(80, Proto::Tcp)];
    assert_eq!(
        names_when_running(&c, &dual),
        [
            "node1-web-80.redis.webapp.dev",
            "node1-web-80-ipv6.redis.webapp.dev"
        ]
    );
}

#[test]
fn internal_uses_exposed_ports_and_the_container_address() {
    let s = Settings {
        internal: true,
        ..settings()
    };
    let mut c = container(&["SERVICE_NAME=db"], &[], vec![]);
    c.exposed = vec![(5432, Proto::Tcp)];
    c.networks
        .insert("zeta".into(), (Some("172.18.0.9".parse().unwrap()), None));
    c.networks
        .insert("bridge".into(), (Some("172.17.0.9".parse().unwrap()), None));
    assert_eq!(
        show(&c, &s),
        ["node1-web-5432.db.webapp.dev 172.17.0.9:5432"],
        "first network by name"
    );
    c.networks.clear();
    c.networks
        .insert("v6only".into(), (None, Some("fd00::9".parse().unwrap())));
    assert_eq!(show(&c, &s), ["node1-web-5432.db.webapp.dev fd00::9:5432"]);
    c.networks.clear();
    assert!(show(&c, &s).is_empty(), "no address, nothing to register");
}

#[test]
fn state_and_health_gate_registration() {
    let base = container(&[], &[], vec![port(80, 8080)]);
    let cases = [
        (RunState::Running, Health::None, 1),
        (RunState::Running, Health::Healthy, 1),
        (RunState::Running, Health::Starting, 0),
        (RunState::Running, Health::Unhealthy, 0),
        (RunState::Paused, Health::None, 0),
        (RunState::Stopped(Some(0)), Health::None, 0),
    ];
    for (state, health, n) in cases {
        let c = Container {
            state,
            health,
            ..base.clone()
        };
        assert_eq!(
            services(&c, &settings()).unwrap().len(),
            n,
            "{state:?} {health:?}"
        );
    }
}

#[test]
fn default_ids_are_dns_safe_bounded_and_distinct() {
    assert_eq!(default_id("node1", "web", 80, Proto::Tcp), "node1-web-80");
    assert_eq!(
        default_id("node1", "web", 53, Proto::Udp),
        "node1-web-53-udp"
    );
    let a = default_id("node1", "web_1", 80, Proto::Tcp);
    let b = default_id("node1", "web.1", 80, Proto::Tcp);
    let c = default_id("node1", "web-1", 80, Proto::Tcp);
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(c, "node1-web-1-80");
    let long = default_id(&"h".repeat(40), &"c".repeat(60), 8080, Proto::Tcp);
    let long2 = default_id(
        &"h".repeat(40),
        &format!("{}d", "c".repeat(59)),
        8080,
        Proto::Tcp,
    );
    assert_ne!(long, long2);
    for id in [
        a,
        b,
        long,
        default_id("Node.Example.COM", "/x y", 1, Proto::Tcp),
    ] {
        assert!(id.len() <= 63, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{id}"
        );
        assert!(!id.starts_with('-') && !id.ends_with('-'), "{id}");
    }
    assert_eq!(
        default_id("Web", "x", 1, Proto::Tcp),
        default_id("Web", "x", 1, Proto::Tcp),
        "stable"
    );
}

#[test]
fn image_base_names() {
    for (image, want) in [
        ("redis", "redis"),
        ("redis:7", "redis"),
        ("docker.io/library/redis:7", "redis"),
        (
            "registry:5000/team/API_server:1.2@sha256:abcd",
            "api-server",
        ),
        ("localhost:5000/x", "x"),
        ("___", "service"),
    ] {
        assert_eq!(image_base_name(image), want, "{image}");
    }
}

fn on_networks(mut c: Container, nets: &[(&str, &str)]) -> Container {
    for (name, ip) in nets {
        let entry = c.networks.entry(name.to_string()).or_default();
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => entry.0 = Some(v4),
            Ok(IpAddr::V6(v6)) => entry.1 = Some(v6),
            Err(_) => {}
        }
    }
    c.exposed = vec![(5432, Proto::Tcp)];
    c
}

/// The address precedence: SERVICE_IP > SERVICE_NETWORK > --network > first network by name.
#[test]
fn address_precedence() {
    let internal = Settings {
        internal: true,
        ..settings()
    };
    let with_default = Settings {
        network: Some("back".into()),
        ..internal.clone()
    };
    let base = || {
        on_networks(
            container(&["SERVICE_NAME=db", "SERVICE_ID=db1"], &[], vec![]),
            &[
                ("back", "10.8.0.2"),
                ("front", "10.9.0.2"),
                ("aaa", "10.7.0.2"),
            ],
        )
    };
    assert_eq!(
        show(&base(), &internal),
        ["db1.db.webapp.dev 10.7.0.2:5432"],
        "first by name"
    );
    assert_eq!(
        show(&base(), &with_default),
        ["db1.db.webapp.dev 10.8.0.2:5432"],
        "--network"
    );
    let mut c = base();
    c.labels.insert("SERVICE_NETWORK".into(), "front".into());
    assert_eq!(
        show(&c, &with_default),
        ["db1.db.webapp.dev 10.9.0.2:5432"],
        "SERVICE_NETWORK"
    );
    c.env.push("SERVICE_IP=192.0.2.7".into());
    assert_eq!(
        show(&c, &with_default),
        ["db1.db.webapp.dev 192.0.2.7:5432"],
        "SERVICE_IP"
    );
    // A named network the container is not on: nothing registered.
    let mut c = base();
    c.labels
        .insert("SERVICE_NETWORK".into(), "elsewhere".into());
    assert!(show(&c, &internal).is_empty());
    // IPv6 only on the chosen network: AAAA data.
    let c = on_networks(
        container(&["SERVICE_NAME=db", "SERVICE_ID=db1"], &[], vec![]),
        &[("v6net", "fd00::5")],
    );
    assert_eq!(show(&c, &internal), ["db1.db.webapp.dev fd00::5:5432"]);
    // Dual-stack: the IPv4 record and its IPv6 twin, so the name answers A and AAAA.
    let c = on_networks(
        container(&["SERVICE_NAME=db", "SERVICE_ID=db1"], &[], vec![]),
        &[("dual", "10.6.0.2"), ("dual", "fd00::6")],
    );
    assert_eq!(
        show(&c, &internal),
        [
            "db1-ipv6.db.webapp.dev fd00::6:5432",
            "db1.db.webapp.dev 10.6.0.2:5432"
        ]
    );
    // SERVICE_IP with published ports: that address, the published port.
    let c = container(
        &[
            "SERVICE_NAME=cache",
            "SERVICE_ID=c1",
            "SERVICE_IP=192.0.2.8",
        ],
        &[],
        vec![port(6379, 32768)],
    );
    assert_eq!(
        show(&c, &settings()),
        ["c1.cache.webapp.dev 192.0.2.8:32768"]
    );
    let bad = container(&["SERVICE_IP=not-an-ip"], &[], vec![port(6379, 1)]);
    assert!(matches!(
        services(&bad, &settings()),
        Err(ServiceError::Address { .. })
    ));
}

/// Host networking: the exposed ports, at the host's address.
#[test]
fn host_networked_containers_register_their_exposed_ports() {
    let mut c = container(&["SERVICE_NAME=api", "SERVICE_ID=a1"], &[], vec![]);
    c.network_mode = "host".into();
    c.exposed = vec![(7100, Proto::Tcp)];
    assert_eq!(show(&c, &settings()), ["a1.api.webapp.dev 10.0.0.1:7100"]);
    let internal = Settings {
        internal: true,
        ..settings()
    };
    assert_eq!(show(&c, &internal), ["a1.api.webapp.dev 10.0.0.1:7100"]);
    // No host address known (--internal without --ip, no primary address): said, not silent.
    let unknown = Settings {
        host_ip: "0.0.0.0".parse().unwrap(),
        ..internal
    };
    assert_eq!(services(&c, &unknown), Err(ServiceError::NoHostAddress));
    let mut given = c.clone();
    given.labels.insert("SERVICE_IP".into(), "10.0.0.9".into());
    assert_eq!(show(&given, &unknown), ["a1.api.webapp.dev 10.0.0.9:7100"]);
}

/// Names: SERVICE_<port>_NAME > SERVICE_NAME > compose service > image base name > container name.
#[test]
fn name_precedence() {
    let mut c = container(
        &[],
        &[("com.docker.compose.service", "web_front")],
        vec![port(80, 1)],
    );
    assert_eq!(
        show(&c, &settings()),
        ["node1-web-80.web-front.webapp.dev 10.0.0.1:1"]
    );
    c.labels.clear();
    c.image = "sha256:4f3c0a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccdd".into();
    c.name = "My_App".into();
    let names = show(&c, &settings());
    assert!(names[0].contains(".my-app.webapp.dev "), "{names:?}");
    c.image = "4f3c0a1b2c3d".into();
    assert!(show(&c, &settings())[0].contains(".my-app.webapp.dev "));
}

/// SERVICE_GROUP, SERVICE_MAIL, SERVICE_TARGETSTRIP, like SERVICE_TTL.
#[test]
fn remaining_record_fields() {
    let c = container(
        &[
            "SERVICE_GROUP=blue",
            "SERVICE_MAIL=true",
            "SERVICE_80_TARGETSTRIP=1",
        ],
        &[],
        vec![port(80, 1)],
    );
    let (_, svc) = services(&c, &settings()).unwrap().remove(0);
    assert_eq!(svc.group, "blue");
    assert!(svc.mail);
    assert_eq!(svc.targetstrip, 1);
    let bad = container(&["SERVICE_MAIL=maybe"], &[], vec![port(80, 1)]);
    assert!(services(&bad, &settings()).is_err());
}
