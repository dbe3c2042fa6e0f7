//! `--dry-run`: what this registrator would register, and why, written nowhere.
//!
//! `main` lists the engine's running containers once ([`crate::docker::containers`]) and prints
//! [`lines`]: one JSON object per record (container id and name, DNS name, etcd key, value, and
//! the rules that chose the name, the id and the address, [`crate::services::Why`]), and one per
//! container whose labels make no record (the error) or that does not count now (paused,
//! unhealthy). Pure; imports `services` only.

use lodestar::Prefix;
use serde_json::{json, Value};

use crate::services::{self, Container, Health, RunState, Settings};

/// The lines `--dry-run` prints for `containers`, in their order. `ip_given`: whether `--ip` was
/// on the command line (else the address it stands for is this host's primary one).
pub fn lines(
    containers: &[Container],
    settings: &Settings,
    prefix: &Prefix,
    ip_given: bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    for c in containers {
        let head = |v: Value| {
            let mut o = json!({"container_id": c.id, "container": c.name});
            if let (Some(o), Value::Object(more)) = (o.as_object_mut(), v) {
                o.extend(more);
            }
            o
        };
        if !services::counts(c) {
            let why = match (c.state, c.health) {
                (RunState::Paused, _) => "paused",
                (RunState::Stopped(_), _) => "not running",
                (_, Health::Starting) => "health check starting",
                (_, Health::Unhealthy) => "unhealthy",
                _ => "not counted",
            };
            out.push(head(json!({ "skipped": why })));
            continue;
        }
        match services::explained(c, settings) {
            Err(e) => out.push(head(json!({ "error": e.to_string() }))),
            Ok(list) => {
                for (name, svc, why) in list {
                    let address_from = match why.address_from.strip_prefix("--ip") {
                        Some(rest) if !ip_given => match rest.strip_prefix(", IPv6") {
                            Some(rest) => format!("this host's IPv6 address (no --ip){rest}"),
                            None => format!("this host's primary address (no --ip){rest}"),
                        },
                        _ => why.address_from,
                    };
                    let value: Value = serde_json::from_str(&svc.to_json()).unwrap_or(Value::Null);
                    out.push(head(json!({
                        "name": name,
                        "key": prefix.key_for_name(&name).unwrap_or_default(),
                        "value": value,
                        "name_from": why.name_from,
                        "id_from": why.id_from,
                        "address_from": address_from,
                    })));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{Proto, Published};

    fn settings() -> Settings {
        Settings {
            host_id: "h".into(),
            host_ip: "10.0.0.1".parse().unwrap(),
            host_ip6: None,
            internal: false,
            explicit: false,
            domain: "webapp.dev".into(),
            network: None,
        }
    }

    fn web(id: &str) -> Container {
        Container {
            id: id.into(),
            name: id.into(),
            image: "registry:5000/team/web:1".into(),
            published: vec![Published {
                port: 80,
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 8080,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn every_record_says_which_rule_chose_its_name_id_and_address() {
        let mut a = web("a");
        a.labels.insert("SERVICE_NAME".into(), "cache".into());
        a.env.push("SERVICE_IP=10.9.9.9".into());
        let b = web("b");
        let mut bad = web("bad");
        bad.labels.insert("SERVICE_NAME".into(), "no spaces".into());
        let mut paused = web("p");
        paused.state = RunState::Paused;
        let got = lines(&[a, b, bad, paused], &settings(), &Prefix::default(), false);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0]["name"], "h-a-80.cache.webapp.dev");
        assert_eq!(got[0]["key"], "/skydns/dev/webapp/cache/h-a-80");
        assert_eq!(got[0]["value"]["host"], "10.9.9.9");
        assert_eq!(got[0]["value"]["port"], 8080);
        assert_eq!(got[0]["name_from"], "SERVICE_NAME label");
        assert_eq!(got[0]["id_from"], "the default id (host-container-port)");
        assert_eq!(got[0]["address_from"], "SERVICE_IP env");
        assert_eq!(got[1]["name"], "h-b-80.web.webapp.dev");
        assert_eq!(got[1]["name_from"], "image base name");
        assert_eq!(
            got[1]["address_from"],
            "this host's primary address (no --ip)"
        );
        assert!(got[2]["error"].as_str().unwrap().contains("SERVICE_NAME"));
        assert_eq!(got[3]["skipped"], "paused");
        let given = lines(&[web("b")], &settings(), &Prefix::default(), true);
        assert_eq!(given[0]["address_from"], "--ip");
        // Bound on :: too, with an IPv6 address for this host: an `-ipv6` twin, said so.
        let mut both = web("b");
        both.published.push(Published {
            port: 80,
            proto: Proto::Tcp,
            host_ip: Some("::".parse().unwrap()),
            host_port: 8081,
        });
        let dual = Settings {
            host_ip6: Some("fd00::1".parse().unwrap()),
            ..settings()
        };
        let got = lines(&[both], &dual, &Prefix::default(), false);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["name"], "h-b-80-ipv6.web.webapp.dev");
        assert_eq!(got[1]["value"]["host"], "fd00::1");
        assert_eq!(got[1]["value"]["port"], 8081);
        assert_eq!(got[1]["address_from"], "this host's IPv6 address (no --ip)");
    }
}
