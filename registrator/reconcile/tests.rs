//! Unit tests of the module above.

use std::collections::BTreeMap;

use super::*;
use crate::services::{Container, Health, Proto, Published, RunState};
use lodestar::Service;

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

#[test]
fn a_stopping_container_is_withheld_until_it_dies_or_its_grace_ends() {
    let names = |st: &mut State, mode| -> Vec<String> {
        st.desired(&settings(), mode, &BTreeMap::new())
            .into_keys()
            .collect()
    };
    let mut st = State {
        drain_grace: Duration::from_secs(3600),
        ..State::default()
    };
    st.apply(DockerUpdate::Listing(vec![
        web("a", RunState::Running),
        web("b", RunState::Running),
    ]));
    // docker stop: the container (still running) and then the drain.
    st.apply(DockerUpdate::Changed(Box::new(web("a", RunState::Running))));
    st.apply(DockerUpdate::Stopping("a".into()));
    assert_eq!(names(&mut st, Deregister::Always), ["b.web.webapp.dev"]);
    // Still running: a resync's listing keeps the drain.
    st.apply(DockerUpdate::Listing(vec![
        web("a", RunState::Running),
        web("b", RunState::Running),
    ]));
    assert_eq!(names(&mut st, Deregister::Always), ["b.web.webapp.dev"]);
    // It dies with 143: stopped on purpose, so on-success keeps nothing of it.
    st.apply(DockerUpdate::Changed(Box::new(web(
        "a",
        RunState::Stopped(Some(143)),
    ))));
    assert_eq!(names(&mut st, Deregister::OnSuccess), ["b.web.webapp.dev"]);
    // Started again: registered, and a later crash is a crash again.
    st.apply(DockerUpdate::Changed(Box::new(web("a", RunState::Running))));
    assert_eq!(names(&mut st, Deregister::OnSuccess).len(), 2);
    st.apply(DockerUpdate::Changed(Box::new(web(
        "a",
        RunState::Stopped(Some(1)),
    ))));
    assert_eq!(
        names(&mut st, Deregister::OnSuccess).len(),
        2,
        "a crash keeps"
    );

    // A drain whose grace is over: registered again (the signal was ignored).
    st.drain_grace = Duration::ZERO;
    st.apply(DockerUpdate::Stopping("b".into()));
    st.expire_drains();
    assert!(names(&mut st, Deregister::Always).contains(&"b.web.webapp.dev".to_string()));
    // A drain of a container that is gone ends with it.
    st.drain_grace = Duration::from_secs(3600);
    st.apply(DockerUpdate::Stopping("b".into()));
    st.apply(DockerUpdate::Gone("b".into()));
    assert_eq!(st.drains.next(), None);
}
