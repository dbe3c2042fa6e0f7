//! [`EtcdRegistry`]: the [`Registry`] over etcd, one lease per owner.
//!
//! Connecting claims the owner ([`super::owner`]): the lease at the owner key is adopted when its
//! holder is this process or released it, a new one is granted when none is alive, and any other
//! holder is watched for a third of its lease's TTL (plus two seconds): if it keeps the lease
//! alive, it is a live claimant and the connection is refused ([`RegistryError::Claimed`]);
//! if not, it died and its lease is adopted. [`EtcdRegistry::release`] marks the owner key
//! released on a clean stop. The owner key is only ever written with a compare on its
//! revision, so two processes that claim at once cannot both win. Afterwards every delete is a
//! transaction that removes the key only if it is still on this owner's lease, and
//! [`EtcdRegistry::check_owner`] says whether the owner key still names this process.
//!
//! A member that fails (a request that timed out or could not reach it) is left: the request
//! that saw it fails (the caller retries it, as after any error), and the next one first connects
//! to another member ([`EtcdConfig::avoid_current`], [`EtcdConfig::connect`]) and goes on with the
//! same lease, which every member knows. A custom registry survives the death of its member
//! without code of its own.
//!
//! Reading back what the lease holds is paged by size: the values come in transactions of at
//! most [`READ_CHUNK`] keys, halved whenever an answer is too large to decode.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, LeaseTimeToLiveOptions,
    PutOptions, Txn, TxnOp,
};

use super::owner::{decide, Claim, Holder, Identity};
use super::{LeaseOrigin, Registry, RegistryError};
use crate::etcd::{EtcdConfig, EtcdError, REQUEST_TIMEOUT};
use crate::key::Prefix;
use crate::record::Service;
use crate::view::MAX_MESSAGE_BYTES;

/// Keys read per transaction when listing what the lease holds (etcd allows 128 operations in a
/// transaction by default); fewer when an answer is too large.
pub const READ_CHUNK: usize = 100;

/// How often a lease held elsewhere is looked at while deciding whether its holder lives.
const OBSERVE_EVERY: Duration = Duration::from_millis(500);

/// The etcd [`Registry`]: one lease per owner, kept alive by [`Registry::keep_alive`].
pub struct EtcdRegistry {
    client: Client,
    etcd: EtcdConfig,
    /// The member in use failed a request: the next one connects to another first.
    failed: bool,
    prefix: Prefix,
    owner: String,
    me: Identity,
    ttl: Duration,
    lease: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// Keys per read transaction that decoded last time.
    chunk: usize,
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RegistryError::Etcd(EtcdError::Timeout(REQUEST_TIMEOUT))),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl EtcdRegistry {
    /// Connects as `owner`, adopting its lease when this process (or a restart of it) holds it,
    /// granting a new one of `ttl` (at least 2 s) when none is alive, and refusing
    /// ([`RegistryError::Claimed`]) when another live process holds it.
    pub async fn connect(
        etcd: &EtcdConfig,
        prefix: Prefix,
        owner: &str,
        ttl: Duration,
    ) -> Result<(EtcdRegistry, LeaseOrigin), RegistryError> {
        let client = etcd.connect().await?;
        let mut reg = EtcdRegistry {
            client,
            etcd: etcd.clone(),
            failed: false,
            prefix,
            owner: owner.to_string(),
            me: Identity::this_process(),
            ttl: ttl.max(Duration::from_secs(2)),
            lease: 0,
            keeper: None,
            chunk: READ_CHUNK,
        };
        let origin = reg.claim().await?;
        Ok((reg, origin))
    }

    /// Before a request: after a member failed, connects to another (the lease stays).
    async fn heal(&mut self) -> Result<(), RegistryError> {
        if self.failed {
            self.etcd.avoid_current();
            self.client = self.etcd.connect().await?;
            self.keeper = None;
            self.failed = false;
            tracing::info!(owner = %self.owner, "connected to another etcd member");
        }
        Ok(())
    }

    /// After a request: an error of etcd's (unreachable, timed out, refused by a member without
    /// a leader) marks the member failed.
    fn note<T>(&mut self, r: Result<T, RegistryError>) -> Result<T, RegistryError> {
        if let Err(RegistryError::Etcd(_)) = &r {
            self.failed = true;
        }
        r
    }

    /// The key that holds the owner's lease and holder: `/lodestar/owners/skydns/<owner>`.
    pub fn owner_key(&self) -> String {
        format!("/lodestar/owners{}/{}", self.prefix.as_str(), self.owner)
    }

    /// The current lease id.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The holder at the owner key and the key's mod revision (0 when there is none).
    async fn holder(&mut self) -> Result<(Option<Holder>, i64), RegistryError> {
        let resp = timed(self.client.get(self.owner_key(), None)).await?;
        Ok(match resp.kvs().first() {
            Some(kv) => (Holder::parse(kv.value()), kv.mod_revision()),
            None => (None, 0),
        })
    }

    /// The lease's remaining and granted TTL, seconds; a remaining TTL of 0 or less: gone.
    async fn lease_ttl(&mut self, lease: i64) -> Result<(i64, i64), RegistryError> {
        let r = timed(self.client.lease_time_to_live(lease, None)).await?;
        Ok((r.ttl(), r.granted_ttl()))
    }

    /// Writes this process as the holder of `lease`, if the owner key is still at revision
    /// `seen` (0: absent). Whether it was written.
    async fn write_holder(&mut self, lease: i64, seen: i64) -> Result<bool, RegistryError> {
        let key = self.owner_key();
        let value = self.me.holding(lease, now_secs()).to_json();
        let put = TxnOp::put(
            key.as_str(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        );
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, seen)])
            .and_then([put]);
        let resp = timed(self.client.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    /// Takes the owner's lease (see [`EtcdRegistry::connect`]).
    async fn claim(&mut self) -> Result<LeaseOrigin, RegistryError> {
        // A compare that fails means someone wrote the owner key meanwhile: look again.
        for _ in 0..5 {
            let (holder, seen) = self.holder().await?;
            let alive = match &holder {
                Some(h) => self.lease_ttl(h.lease).await?.0 > 0,
                None => false,
            };
            let claim = match decide(holder.as_ref(), alive, &self.me) {
                Claim::Observe => match &holder {
                    Some(h) => self.observe(h).await?,
                    None => Claim::Grant,
                },
                other => other,
            };
            match (claim, holder) {
                (Claim::Adopt, Some(h)) => {
                    if h.instance == self.me.instance || self.write_holder(h.lease, seen).await? {
                        self.lease = h.lease;
                        self.keeper = None;
                        return Ok(LeaseOrigin::Adopted);
                    }
                }
                _ => {
                    let secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
                    let lease = timed(self.client.lease_grant(secs, None)).await?.id();
                    if self.write_holder(lease, seen).await? {
                        self.lease = lease;
                        self.keeper = None;
                        return Ok(LeaseOrigin::Granted);
                    }
                    let _ = timed(self.client.lease_revoke(lease)).await;
                }
            }
        }
        Err(RegistryError::Etcd(EtcdError::Config(
            "the owner key kept changing while claiming it",
        )))
    }

    /// Watches a lease held by someone else for a third of its granted TTL and two seconds
    /// more: refreshed meanwhile, its holder lives ([`RegistryError::Claimed`]); expired, it can be
    /// granted anew; otherwise its holder is dead and it is adopted.
    async fn observe(&mut self, holder: &Holder) -> Result<Claim, RegistryError> {
        let (mut last, granted) = self.lease_ttl(holder.lease).await?;
        let window = Duration::from_secs(u64::try_from(granted.max(1)).unwrap_or(1)) / 3
            + Duration::from_secs(2);
        tracing::info!(
            owner = %self.owner, lease = format!("{:x}", holder.lease), host = %holder.host,
            window_ms = window.as_millis() as u64,
            "the owner's lease is held by another process: watching whether it is kept alive"
        );
        let started = Instant::now();
        while started.elapsed() < window {
            tokio::time::sleep(OBSERVE_EVERY).await;
            let (ttl, _) = self.lease_ttl(holder.lease).await?;
            if ttl <= 0 {
                return Ok(Claim::Grant);
            }
            if ttl > last {
                return Err(RegistryError::claimed(&self.owner, holder));
            }
            last = ttl;
        }
        Ok(Claim::Adopt)
    }

    /// Whether the owner key still names this process (another process may have taken the
    /// owner after this one's lease was lost): [`RegistryError::Claimed`] when it does not, and
    /// [`RegistryError::LeaseLost`] when the key is gone with the lease.
    pub async fn check_owner(&mut self) -> Result<(), RegistryError> {
        match self.holder().await? {
            (Some(h), _) if h.instance == self.me.instance => Ok(()),
            (Some(h), _) => Err(RegistryError::claimed(&self.owner, &h)),
            (None, _) => Err(RegistryError::LeaseLost(self.lease)),
        }
    }

    /// Lets the lease go on a clean stop: the owner key says so (the lease and the records stay
    /// until its TTL), and the next process for this owner adopts them at once.
    pub async fn release(&mut self) -> Result<(), RegistryError> {
        let (holder, seen) = self.holder().await?;
        let Some(h) = holder.filter(|h| h.instance == self.me.instance) else {
            return Ok(());
        };
        let key = self.owner_key();
        let released = Holder {
            released: true,
            ..h
        };
        let put = TxnOp::put(
            key.as_str(),
            released.to_json(),
            Some(PutOptions::new().with_lease(self.lease)),
        );
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, seen)])
            .and_then([put]);
        timed(self.client.txn(txn)).await?;
        Ok(())
    }

    /// Grants a new lease and records it as the owner's (refused when another live process took
    /// the owner meanwhile). Records on the old lease are not moved: register them again.
    pub async fn renew(&mut self) -> Result<(), RegistryError> {
        self.keeper = None;
        match self.claim().await? {
            LeaseOrigin::Granted | LeaseOrigin::Adopted => Ok(()),
        }
    }

    /// Revokes the lease: every record of this owner goes at once.
    pub async fn revoke(mut self) -> Result<(), RegistryError> {
        timed(self.client.lease_revoke(self.lease)).await?;
        Ok(())
    }

    fn key(&self, name: &str) -> Result<String, RegistryError> {
        self.prefix
            .key_for_name(name)
            .map_err(|source| RegistryError::Name {
                name: name.to_string(),
                source,
            })
    }

    /// The values of `keys`, in transactions of at most [`READ_CHUNK`] reads, halved while an
    /// answer is too large to decode.
    async fn read(&mut self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>, RegistryError> {
        let mut kv = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let mut out = Vec::with_capacity(keys.len());
        let mut at = 0;
        while at < keys.len() {
            let end = (at + self.chunk).min(keys.len());
            let ops: Vec<TxnOp> = keys[at..end]
                .iter()
                .map(|k| TxnOp::get(k.as_str(), None))
                .collect();
            let resp = match tokio::time::timeout(REQUEST_TIMEOUT, kv.txn(Txn::new().and_then(ops)))
                .await
            {
                Err(_) => return Err(RegistryError::Etcd(EtcdError::Timeout(REQUEST_TIMEOUT))),
                Ok(Err(e)) if crate::view::too_large(&e) && self.chunk > 1 => {
                    self.chunk = (self.chunk / 2).max(1);
                    continue;
                }
                Ok(r) => r?,
            };
            for op in resp.op_responses() {
                if let etcd_client::TxnOpResponse::Get(get) = op {
                    for kv in get.kvs() {
                        let key = String::from_utf8_lossy(kv.key()).into_owned();
                        out.push((key, kv.value().to_vec()));
                    }
                }
            }
            at = end;
        }
        Ok(out)
    }
}

/// Writes `value` at `key` on `lease` (0: on none) unless another owner's live lease holds the
/// key: when it is on `lease` already, nobody's (absent, or written without a lease), or on a
/// lease that is gone. `Ok(Some(holder))`: not written, the live lease `holder` holds it. The
/// common cases are one request (a nested transaction); a holder found dead is compared against
/// and written over, a key that moved meanwhile looked at again, a few times. The one rule of
/// ownership for [`EtcdRegistry`] and the registrator's `record put`.
pub async fn put_unless_held(
    client: &mut Client,
    key: &str,
    value: &str,
    lease: i64,
) -> Result<Option<i64>, RegistryError> {
    let put = || TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)));
    let when = |l: i64| Compare::lease(key, CompareOp::Equal, l);
    let mut txn = Txn::new()
        .when([when(lease)])
        .and_then([put()])
        .or_else([TxnOp::txn(
            Txn::new()
                .when([when(0)])
                .and_then([put()])
                .or_else([TxnOp::get(key, None)]),
        )]);
    for _ in 0..3 {
        let resp = timed(client.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(None);
        }
        let lease_of = |g: &etcd_client::GetResponse| g.kvs().first().map(|kv| kv.lease());
        let holder = match resp.op_responses().into_iter().next() {
            Some(etcd_client::TxnOpResponse::Txn(inner)) if inner.succeeded() => return Ok(None),
            Some(etcd_client::TxnOpResponse::Txn(inner)) => {
                inner.op_responses().into_iter().find_map(|op| match op {
                    etcd_client::TxnOpResponse::Get(g) => lease_of(&g),
                    _ => None,
                })
            }
            Some(etcd_client::TxnOpResponse::Get(g)) => lease_of(&g),
            _ => None,
        }
        .unwrap_or(0);
        if holder != 0 && holder != lease {
            let ttl = timed(client.lease_time_to_live(holder, None)).await?.ttl();
            if ttl > 0 {
                return Ok(Some(holder));
            }
        }
        txn = Txn::new()
            .when([when(holder)])
            .and_then([put()])
            .or_else([TxnOp::get(key, None)]);
    }
    Err(RegistryError::Etcd(EtcdError::Timeout(REQUEST_TIMEOUT)))
}

/// Whether etcd refused a request for what it holds rather than for being unavailable (a
/// request over `--max-request-bytes`, say): the same request will never succeed.
fn rejected(e: &etcd_client::Error) -> Option<String> {
    match e {
        etcd_client::Error::GRpcStatus(s)
            if s.message().contains("too large") || s.message().contains("too many") =>
        {
            Some(s.message().to_string())
        }
        _ => None,
    }
}

impl Registry for EtcdRegistry {
    async fn register(&mut self, name: &str, service: &Service) -> Result<(), RegistryError> {
        self.heal().await?;
        let r = self.put(name, service).await;
        self.note(r)
    }

    /// Deletes the record of `name` if it is on this owner's lease; a record another owner
    /// wrote there is left alone.
    async fn deregister(&mut self, name: &str) -> Result<(), RegistryError> {
        self.heal().await?;
        let r = self.delete(name).await;
        self.note(r)
    }

    async fn registered(&mut self) -> Result<BTreeMap<String, Service>, RegistryError> {
        self.heal().await?;
        let r = self.list().await;
        self.note(r)
    }

    async fn keep_alive(&mut self) -> Result<(), RegistryError> {
        self.heal().await?;
        let r = self.refresh().await;
        self.note(r)
    }
}

impl EtcdRegistry {
    /// Writes the record of `name` on this owner's lease unless another owner's live lease holds
    /// its key ([`put_unless_held`]): one owner per record.
    async fn put(&mut self, name: &str, service: &Service) -> Result<(), RegistryError> {
        let key = self.key(name)?;
        match put_unless_held(&mut self.client, &key, &service.to_json(), self.lease).await {
            Ok(None) => Ok(()),
            Ok(Some(holder)) => Err(RegistryError::Conflict {
                name: name.to_string(),
                lease: holder,
            }),
            // etcd says "requested lease not found" when the lease expired under us.
            Err(RegistryError::Etcd(EtcdError::Client(e)))
                if e.to_string().contains("lease not found") =>
            {
                Err(RegistryError::LeaseLost(self.lease))
            }
            Err(RegistryError::Etcd(EtcdError::Client(e))) if rejected(&e).is_some() => {
                Err(RegistryError::Rejected {
                    name: name.to_string(),
                    why: rejected(&e).unwrap_or_default(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The owner whose lease is `lease` (its owner key is on it), when it has one.
    pub async fn owner_of(&mut self, lease: i64) -> Result<Option<String>, RegistryError> {
        let opts = LeaseTimeToLiveOptions::new().with_keys();
        let r = timed(self.client.lease_time_to_live(lease, Some(opts))).await?;
        let under = format!("/lodestar/owners{}/", self.prefix.as_str());
        Ok(r.keys().iter().find_map(|k| {
            let k = std::str::from_utf8(k).ok()?;
            k.strip_prefix(&under).map(str::to_string)
        }))
    }

    async fn delete(&mut self, name: &str) -> Result<(), RegistryError> {
        let key = self.key(name)?;
        let txn = Txn::new()
            .when([Compare::lease(key.as_str(), CompareOp::Equal, self.lease)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let resp = timed(self.client.txn(txn)).await?;
        if !resp.succeeded() {
            tracing::debug!(key, "not deleted: no longer on this owner's lease");
        }
        Ok(())
    }

    async fn list(&mut self) -> Result<BTreeMap<String, Service>, RegistryError> {
        let ttl = timed(
            self.client
                .lease_time_to_live(self.lease, Some(LeaseTimeToLiveOptions::new().with_keys())),
        )
        .await?;
        if ttl.ttl() <= 0 {
            return Err(RegistryError::LeaseLost(self.lease));
        }
        let owner_key = self.owner_key();
        let keys: Vec<String> = ttl
            .keys()
            .iter()
            .filter_map(|k| String::from_utf8(k.clone()).ok())
            .filter(|k| *k != owner_key)
            .collect();
        let mut out = BTreeMap::new();
        for (key, value) in self.read(&keys).await? {
            // A value that no longer parses (or is too large) is left out: it counts as missing
            // and is rewritten.
            let (Ok(svc), Some(name)) = (Service::parse(&value), self.prefix.name_for_key(&key))
            else {
                continue;
            };
            out.insert(name, svc);
        }
        Ok(out)
    }

    async fn refresh(&mut self) -> Result<(), RegistryError> {
        if self.keeper.is_none() {
            let (keeper, stream) = timed(self.client.lease_keep_alive(self.lease)).await?;
            self.keeper = Some((keeper, stream));
        }
        let Some((keeper, stream)) = self.keeper.as_mut() else {
            return Ok(());
        };
        let result = async {
            keeper.keep_alive().await?;
            stream.message().await
        };
        // Well inside the TTL, so that a member that stopped answering is left in time to
        // refresh the lease through another.
        let limit = (self.ttl / 5).clamp(Duration::from_millis(500), REQUEST_TIMEOUT);
        match tokio::time::timeout(limit, result).await {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => Ok(()),
            Ok(Ok(_)) => {
                self.keeper = None;
                Err(RegistryError::LeaseLost(self.lease))
            }
            Ok(Err(e)) => {
                self.keeper = None;
                Err(e.into())
            }
            Err(_) => {
                self.keeper = None;
                Err(RegistryError::Etcd(EtcdError::Timeout(limit)))
            }
        }
    }
}
