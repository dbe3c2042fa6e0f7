//! Unit tests of the module above.

use super::*;
use crate::services::{Health, Proto, Published};

fn settings() -> Settings {
    Settings {
        host_id: "h".into(),
        host_ip: "10.0.0.1".parse().unwrap(),
        internal: false,
        explicit: false,
        domain: "webapp.dev".into(),
        network: None,
    }
}

fn web(id: &str, state: RunState) -> Container {
    Container {
        id: id.into(),
        name: id.into(),
        image: "web".into(),
        env: vec![format!("SERVICE_ID={id}")],
        state,
        health: Health::None,
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
fn desired_follows_updates() {
    let mut st = State::default();
    st.apply(DockerUpdate::Listing(vec![
        web("a", RunState::Running),
        web("b", RunState::Running),
    ]));
    assert_eq!(
        st.desired(&settings(), Deregister::Always, &BTreeMap::new())
            .keys()
            .collect::<Vec<_>>(),
        ["a.web.webapp.dev", "b.web.webapp.dev"]
    );
    st.apply(DockerUpdate::Changed(Box::new(web("a", RunState::Paused))));
    st.apply(DockerUpdate::Gone("b".into()));
    assert!(st
        .desired(&settings(), Deregister::Always, &BTreeMap::new())
        .is_empty());
}

#[test]
fn on_success_keeps_failed_containers_records() {
    for (mode, code, kept) in [
        (Deregister::Always, 1, false),
        (Deregister::OnSuccess, 1, true),
        (Deregister::OnSuccess, 0, false),
    ] {
        let mut st = State::default();
        st.apply(DockerUpdate::Listing(vec![web("a", RunState::Running)]));
        assert_eq!(st.desired(&settings(), mode, &BTreeMap::new()).len(), 1);
        st.apply(DockerUpdate::Changed(Box::new(web(
            "a",
            RunState::Stopped(Some(code)),
        ))));
        assert_eq!(
            st.desired(&settings(), mode, &BTreeMap::new()).len(),
            usize::from(kept),
            "{mode:?} exit {code}"
        );
        st.apply(DockerUpdate::Gone("a".into()));
        assert!(
            st.desired(&settings(), mode, &BTreeMap::new()).is_empty(),
            "removed: gone in every mode"
        );
    }
}

#[test]
fn on_success_finds_a_failed_containers_records_after_a_restart() {
    // This process never saw the container run: its records are found on the lease by the
    // names it had, from the ports it was configured with.
    let mut stopped = web("a", RunState::Stopped(Some(137)));
    stopped.configured = vec![(80, Proto::Tcp)];
    stopped.published.clear();
    let record = Service {
        host: "10.0.0.1".into(),
        port: 32768,
        ..Default::default()
    };
    let registered: BTreeMap<String, Service> = [
        ("a.web.webapp.dev".to_string(), record.clone()),
        ("gone.web.webapp.dev".to_string(), record.clone()),
    ]
    .into();
    let mut st = State::default();
    st.apply(DockerUpdate::Listing(vec![stopped]));
    let kept = st.desired(&settings(), Deregister::OnSuccess, &registered);
    assert_eq!(kept, [("a.web.webapp.dev".to_string(), record)].into());
    let gone = st.desired(&settings(), Deregister::Always, &registered);
    assert!(gone.is_empty());
}
