//! `GET /explain?name=redis.webapp.dev&type=A[&client=10.1.2.3]` on the metrics listener: what
//! decided a question's answer, as JSON. The pipeline says what a query gets and which records
//! of the snapshot it is made of ([`Handler::explain`]); this shell adds what etcd holds under
//! that name at the snapshot's revision: each key's value (or why it was skipped: bad JSON, a
//! group left out, another transport), its lease and the seconds the lease has left. Bounded: at
//! most [`LISTED`] keys, with the total; one explanation at a time; etcd's part within
//! [`ETCD_WITHIN`], and without it (etcd away) the snapshot's records are listed instead.
//!
//! A top tier beside `http` (which routes to it) and `main`: it imports the pipeline, the
//! authority's [`Made`] and the library's etcd client.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use etcd_client::GetOptions;
use hickory_proto::rr::{Name, RecordType};
use lodestar::etcd::EtcdConfig;
use lodestar::{Prefix, Service, View};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::authority::explain::{Made, LISTED};
use crate::pipeline::Handler;

/// How long etcd's part of an explanation may take.
pub const ETCD_WITHIN: Duration = Duration::from_secs(2);

/// What `/explain` needs.
#[derive(Clone)]
pub struct Explainer {
    handler: Arc<Handler>,
    view: Arc<View>,
    etcd: EtcdConfig,
    prefix: Prefix,
    one: Arc<Semaphore>,
}

impl Explainer {
    pub fn new(handler: Arc<Handler>, view: Arc<View>, etcd: &EtcdConfig, prefix: Prefix) -> Self {
        Explainer {
            handler,
            view,
            // A member of its own: connecting here never moves the view's watch.
            etcd: EtcdConfig {
                current: Default::default(),
                ..etcd.clone()
            },
            prefix,
            one: Arc::new(Semaphore::new(1)),
        }
    }
}

/// The query string.
#[derive(Debug, serde::Deserialize)]
pub struct Params {
    name: String,
    #[serde(rename = "type", default = "a")]
    qtype: String,
    #[serde(default = "loopback")]
    client: String,
}

fn a() -> String {
    "A".into()
}
fn loopback() -> String {
    "127.0.0.1".into()
}

/// `value` as an `application/json` response.
fn reply(status: StatusCode, value: &Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{value:#}\n"),
    )
        .into_response()
}

fn bad(what: String) -> Response {
    reply(StatusCode::BAD_REQUEST, &json!({ "error": what }))
}

/// The route's handler.
pub async fn explain(State(e): State<Explainer>, Query(p): Query<Params>) -> Response {
    let Ok(_one) = e.one.clone().try_acquire_owned() else {
        return reply(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({ "error": "one explanation at a time" }),
        );
    };
    let name = match Name::from_utf8(p.name.trim()) {
        Ok(mut n) => {
            n.set_fqdn(true);
            n
        }
        Err(err) => return bad(format!("name {:?}: {err}", p.name)),
    };
    let Ok(qtype) = p.qtype.trim().to_ascii_uppercase().parse::<RecordType>() else {
        return bad(format!("type {:?} is not a record type", p.qtype));
    };
    let Ok(client) = p.client.trim().parse::<IpAddr>() else {
        return bad(format!("client {:?} is not an IP address", p.client));
    };
    let explained = e.handler.explain(&name, qtype, client);
    let mut out = explained.json;
    if let (Some(made), Some(revision), Some(o)) =
        (explained.made, explained.revision, out.as_object_mut())
    {
        o.insert("path".into(), json!(made.base));
        if let Some((service, proto)) = &made.service {
            o.insert(
                "rfc2782".into(),
                json!({ "service": service, "proto": proto }),
            );
        }
        if let Some(g) = &made.group {
            o.insert("group".into(), json!(g));
        }
        o.insert("records_used".into(), json!(made.used_total));
        let keys = match tokio::time::timeout(ETCD_WITHIN, from_etcd(&e, &made, revision)).await {
            Ok(Ok(keys)) => keys,
            Ok(Err(err)) => from_snapshot(&e, &made, format!("etcd: {err}")),
            Err(_) => from_snapshot(
                &e,
                &made,
                format!("etcd did not answer within {ETCD_WITHIN:?}"),
            ),
        };
        o.extend(keys);
    }
    reply(StatusCode::OK, &out)
}

/// Why a record under the name is not in the answer.
fn left_out(made: &Made, entry: &lodestar::Entry) -> String {
    if let Some((_, proto)) = &made.service {
        if !entry.service.is_proto(proto) {
            return format!("its transport is not {proto}");
        }
    }
    match &made.group {
        Some(g) if !entry.service.group.is_empty() && entry.service.group != *g => format!(
            "group {:?} left out: the records nearest the name picked group {g:?}",
            entry.service.group
        ),
        _ => "not in the answer (not matching the question's wildcard, or past the sample of a very large name)".into(),
    }
}

/// The keys under the name in etcd at `revision`: values, leases, and what became of each.
async fn from_etcd(
    e: &Explainer,
    made: &Made,
    revision: i64,
) -> Result<serde_json::Map<String, Value>, lodestar::etcd::EtcdError> {
    let mut c = e.etcd.connect().await?;
    let base = format!("{}/{}", e.prefix.as_str(), made.base);
    let mut at = revision;
    let mut note = None;
    let exact = match c
        .get(base.as_str(), Some(GetOptions::new().with_revision(at)))
        .await
    {
        Ok(r) => r,
        Err(err) => {
            // Compacted past the snapshot's revision (or gone): read the current one, and say so.
            note = Some(format!(
                "read at etcd's current revision: the snapshot's ({revision}) could not be read: {err}"
            ));
            at = 0;
            c.get(base.as_str(), None).await?
        }
    };
    let below_opts = GetOptions::new()
        .with_prefix()
        .with_limit(i64::try_from(LISTED).unwrap_or(100))
        .with_revision(at);
    let below = c.get(format!("{base}/"), Some(below_opts)).await?;
    let total = exact.count() + below.count();
    let snap = e.view.load();
    let mut leases: BTreeMap<i64, Value> = BTreeMap::new();
    let mut keys = Vec::new();
    for kv in exact.kvs().iter().chain(below.kvs()).take(LISTED) {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let path = e
            .prefix
            .path_of_key(&key)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let value: Value = serde_json::from_slice(kv.value())
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(kv.value()).into_owned()));
        let mut k = json!({ "key": key, "value": value, "mod_revision": kv.mod_revision() });
        let said = match Service::parse(kv.value()) {
            Err(err) => json!({ "used": false, "skipped": err.to_string() }),
            Ok(_) if made.used.contains(&path) => json!({ "used": true }),
            Ok(_) => match snap.as_deref().and_then(|s| s.get(&path)) {
                Some(entry) => json!({ "used": false, "why": left_out(made, entry) }),
                None => {
                    json!({ "used": false, "why": "not in the snapshot (an invalid key name, or written after it)" })
                }
            },
        };
        if let (Some(o), Value::Object(more)) = (k.as_object_mut(), said) {
            o.extend(more);
        }
        let lease = kv.lease();
        if lease != 0 {
            let left = match leases.get(&lease) {
                Some(known) => known.clone(),
                None => {
                    let left = match c.lease_time_to_live(lease, None).await {
                        Ok(r) if r.ttl() >= 0 => {
                            json!({ "granted": r.granted_ttl(), "seconds_left": r.ttl() })
                        }
                        Ok(_) => json!({ "expired": true }),
                        Err(err) => json!({ "error": err.to_string() }),
                    };
                    leases.insert(lease, left.clone());
                    left
                }
            };
            if let Some(o) = k.as_object_mut() {
                o.insert("lease".into(), json!(format!("{lease:x}")));
                o.insert("lease_ttl".into(), left);
            }
        }
        keys.push(k);
    }
    let mut out = serde_json::Map::new();
    out.insert("keys_total".into(), json!(total));
    out.insert("keys".into(), Value::Array(keys));
    if let Some(note) = note {
        out.insert("note".into(), json!(note));
    }
    Ok(out)
}

/// Without etcd: the snapshot's records that were used.
fn from_snapshot(e: &Explainer, made: &Made, why: String) -> serde_json::Map<String, Value> {
    let snap = e.view.load();
    let mut used: Vec<&String> = made.used.iter().collect();
    used.sort();
    let keys: Vec<Value> = used
        .into_iter()
        .map(|path| {
            let value = snap
                .as_deref()
                .and_then(|s| s.get(path))
                .and_then(|entry| serde_json::from_str::<Value>(&entry.service.to_json()).ok());
            json!({ "key": format!("{}/{path}", e.prefix.as_str()), "value": value, "used": true })
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("keys_total".into(), json!(made.used_total));
    out.insert("keys".into(), Value::Array(keys));
    out.insert(
        "etcd".into(),
        json!({ "error": why, "keys_from": "the snapshot (records used only)" }),
    );
    out
}
