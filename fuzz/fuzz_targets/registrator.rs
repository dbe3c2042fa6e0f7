//! The registrator's container -> services mapping (structure-aware): arbitrary labels and
//! environment (names, ids, tags, addresses, text, a `dns` label, dots, huge values), ports,
//! networks and settings. Every record it makes has a name inside the domain (never the apex,
//! never under the reserved `dns` label), a key inside `<prefix>/<domain>/` that maps back to
//! that name, and a value that parses within the size a record may have; what it cannot make is
//! an error, never a panic.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lodestar::{Prefix, Service};
use server::services::{services, Container, Health, Proto, Published, RunState, Settings};

const KEYS: &[&str] = &[
    "SERVICE_NAME",
    "SERVICE_ID",
    "SERVICE_TAGS",
    "SERVICE_IP",
    "SERVICE_TEXT",
    "SERVICE_TTL",
    "SERVICE_PRIORITY",
    "SERVICE_WEIGHT",
    "SERVICE_GROUP",
    "SERVICE_NETWORK",
    "SERVICE_IGNORE",
    "SERVICE_80_NAME",
    "SERVICE_80_ID",
    "SERVICE_53_NAME",
    "SERVICE_80_IGNORE",
    "com.docker.compose.service",
];

const VALUES: &[&str] = &[
    "redis",
    "dns",
    "a.b",
    "web.dns",
    "x-1",
    "",
    " ",
    "..",
    "-a",
    "UPPER",
    "10.0.0.1",
    "::1",
    "webapp.dev",
    "*",
    "a_b",
];

#[derive(Arbitrary, Debug)]
enum Text {
    Known(u8),
    Free(String),
    Long(u8, u16),
}

impl Text {
    fn get(&self) -> String {
        match self {
            Text::Known(i) => VALUES[usize::from(*i) % VALUES.len()].into(),
            Text::Free(s) => s.clone(),
            Text::Long(c, n) => char::from(b'a' + c % 26)
                .to_string()
                .repeat(usize::from(*n)),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    name: Text,
    image: Text,
    labels: Vec<(u8, Text)>,
    env: Vec<(u8, Text)>,
    published: Vec<(u16, bool, Option<(bool, u128)>, u16)>,
    exposed: Vec<(u16, bool)>,
    networks: Vec<(Text, Option<u32>, Option<u128>)>,
    host_mode: bool,
    internal: bool,
    explicit: bool,
    host_v6: bool,
    host_v6_too: bool,
}

fn proto(udp: bool) -> Proto {
    if udp {
        Proto::Udp
    } else {
        Proto::Tcp
    }
}

fuzz_target!(|i: Input| {
    let key = |k: u8| KEYS[usize::from(k) % KEYS.len()].to_string();
    let c = Container {
        id: "0123456789abcdef".into(),
        name: i.name.get(),
        image: i.image.get(),
        env: i
            .env
            .iter()
            .map(|(k, v)| format!("{}={}", key(*k), v.get()))
            .collect(),
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (key(*k), v.get()))
            .collect::<BTreeMap<_, _>>(),
        state: RunState::Running,
        health: Health::None,
        published: i
            .published
            .iter()
            .take(8)
            .map(|(port, udp, ip, host_port)| Published {
                port: *port,
                proto: proto(*udp),
                host_ip: ip.map(|(v6, a)| {
                    if v6 {
                        IpAddr::V6(Ipv6Addr::from(a))
                    } else {
                        IpAddr::V4(Ipv4Addr::from(a as u32))
                    }
                }),
                host_port: *host_port,
            })
            .collect(),
        exposed: i
            .exposed
            .iter()
            .take(8)
            .map(|(p, udp)| (*p, proto(*udp)))
            .collect(),
        configured: Vec::new(),
        networks: i
            .networks
            .iter()
            .take(4)
            .map(|(n, v4, v6)| (n.get(), (v4.map(Ipv4Addr::from), v6.map(Ipv6Addr::from))))
            .collect(),
        network_mode: if i.host_mode { "host" } else { "bridge" }.into(),
        stop_signal: None,
        stop_timeout: None,
    };
    let settings = Settings {
        host_id: "host-1".into(),
        host_ip: if i.host_v6 {
            "2001:db8::9".parse().unwrap()
        } else {
            "192.0.2.9".parse().unwrap()
        },
        host_ip6: i.host_v6_too.then(|| "2001:db8::6".parse().unwrap()),
        internal: i.internal,
        explicit: i.explicit,
        domain: "webapp.dev".into(),
        network: None,
    };
    let Ok(made) = services(&c, &settings) else {
        return;
    };
    let prefix = Prefix::new("/skydns").unwrap();
    for (name, svc) in made {
        let lower = name.trim_end_matches('.').to_ascii_lowercase();
        let below = lower
            .strip_suffix(".webapp.dev")
            .unwrap_or_else(|| panic!("{name} is not inside the domain"));
        assert!(!below.is_empty(), "{name}: the apex");
        assert!(
            below.rsplit('.').next() != Some("dns"),
            "{name}: under the reserved dns label"
        );
        let key = prefix
            .key_for_name(&name)
            .unwrap_or_else(|e| panic!("{name} has no key: {e}"));
        assert!(key.starts_with("/skydns/dev/webapp/"), "{key}");
        let back = prefix.name_for_key(&key).expect("the key maps back");
        assert_eq!(back.trim_end_matches('.').to_ascii_lowercase(), lower);
        let json = svc.to_json();
        assert!(
            json.len() <= lodestar::record::MAX_VALUE_BYTES,
            "{name}: {} bytes",
            json.len()
        );
        assert_eq!(
            Service::parse(json.as_bytes()).expect("the value parses"),
            svc
        );
    }
});
