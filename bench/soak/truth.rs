//! What the soak knows to be true, and the one place an answer is judged against it.
//!
//! - stable names (`s<k>.stable.webapp.dev`, one to three addresses each) and a large one
//!   (`large.webapp.dev`, [`LARGE`] addresses), written once before the clients start and never
//!   changed: an answer must be exactly their records;
//! - churning slots (`i<k>.churn.webapp.dev`), each one address or none at a time: every address
//!   a slot was ever given is remembered before it is written, so an answer must be NXDOMAIN or
//!   exactly one of those (a lagging server may be behind, never invent or mix);
//! - names that never exist (NXDOMAIN) and a forwarded one (Knot's `www.example.org`).
//!
//! Imports: `support` (the DNS client), `hickory_proto`, `etcd_client`.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;

pub const STABLE: usize = 200;
pub const LARGE: usize = 1000;
pub const SLOTS: usize = 300;

/// What an answer must be.
#[derive(Clone, Debug)]
pub enum Want {
    /// NOERROR with exactly these addresses (sorted).
    Exactly(Vec<String>),
    NxDomain,
    /// NXDOMAIN, or one address slot `k` has had.
    Slot(usize),
}

pub struct Truth {
    pub stable: Vec<(String, Vec<String>)>,
    pub large: (String, Vec<String>),
    /// Every address each slot was ever given.
    pub ever: Vec<Mutex<HashSet<String>>>,
    /// Bumped before each write to a slot: a convergence check of an older write stops.
    pub version: Vec<AtomicU64>,
}

pub fn slot_name(k: usize) -> String {
    format!("i{k}.churn.webapp.dev.")
}

fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// The ports of the SRV records of an answer, sorted and without repeats.
pub fn srv_ports(m: &Message) -> Vec<u16> {
    let mut v: Vec<u16> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Whether `m` answers `want`.
pub fn judge(truth: &Truth, want: &Want, m: &Message) -> bool {
    let rcode = m.metadata.response_code;
    match want {
        Want::Exactly(a) => rcode == ResponseCode::NoError && addrs(m) == *a,
        Want::NxDomain => rcode == ResponseCode::NXDomain && m.answers.is_empty(),
        Want::Slot(k) => {
            if rcode == ResponseCode::NXDomain {
                return m.answers.is_empty();
            }
            let got = addrs(m);
            rcode == ResponseCode::NoError
                && got.len() == 1
                && truth.ever[*k].lock().expect("slot").contains(&got[0])
        }
    }
}

/// Whether `m` says a slot holds `expected` (`None`: the name is gone).
pub fn holds(m: &Message, expected: Option<&str>) -> bool {
    match expected {
        None => m.metadata.response_code == ResponseCode::NXDomain,
        Some(a) => m.metadata.response_code == ResponseCode::NoError && addrs(m) == [a.to_string()],
    }
}

/// One record per address under `dir`: `<dir>/i<j>` = `{"host":"<address j>"}`.
async fn put_hosts(c: &mut etcd_client::Client, dir: &str, ips: &[String]) {
    for (j, ip) in ips.iter().enumerate() {
        c.put(
            format!("{dir}/i{j}"),
            format!("{{\"host\":\"{ip}\"}}"),
            None,
        )
        .await
        .expect("seed put");
    }
}

impl Truth {
    /// Writes the stable and large names through etcd (plain puts, no lease).
    pub async fn seed(endpoints: &[String]) -> Truth {
        let mut c = etcd_client::Client::connect(endpoints, None)
            .await
            .expect("etcd for the seed");
        let mut stable = Vec::new();
        for k in 0..STABLE {
            let mut a: Vec<String> = (0..k % 3 + 1)
                .map(|j| format!("10.1.{k}.{}", j + 1))
                .collect();
            put_hosts(&mut c, &format!("/skydns/dev/webapp/stable/s{k}"), &a).await;
            a.sort();
            stable.push((format!("s{k}.stable.webapp.dev."), a));
        }
        let mut large: Vec<String> = (0..LARGE)
            .map(|j| format!("10.2.{}.{}", j / 250, j % 250 + 1))
            .collect();
        put_hosts(&mut c, "/skydns/dev/webapp/large", &large).await;
        large.sort();
        Truth {
            stable,
            large: ("large.webapp.dev.".to_string(), large),
            ever: (0..SLOTS).map(|_| Mutex::new(HashSet::new())).collect(),
            version: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}
