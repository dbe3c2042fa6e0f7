//! Encoded answers, kept per question until something they depend on changes.
//!
//! An answer built from a snapshot is kept under its question (lower-case name, type, class,
//! EDNS, size limit) with the generation of that snapshot and what it depends on ([`Dep`]): a
//! hit is still good while nothing at or below its name changed ([`Snapshot::changed_since`]),
//! so a write retires the answers of the names it touches, not the whole cache. Several answers
//! rotate: an entry encodes each of its (at most [`MAX_VARIANTS`]) rotations the first time it
//! is sent, each bounded by the size limit. A hit is copied and patched ([`crate::proto::wire::patch`]).
//!
//! Our own answers are kept on their second ask ([`AnswerCache::offer`]): a question asked once
//! leaves only its hash in a fixed table ([`SEEN`] slots in buckets of [`WAYS`]: two questions
//! whose hashes pick the same bucket do not push each other out), so a client asking endless distinct
//! names (random labels, search-list expansions) costs no memory; building an answer again is
//! cheap, and a name asked twice is kept from then on. An upstream's answer, dear to fetch again,
//! is kept at once ([`AnswerCache::insert`]). When the cache is full it starts over, the old
//! entries freed on a thread of their own, never under the lock the queries read through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use lodestar::Snapshot;
use prometheus_client::metrics::counter::Counter;

use super::respond::{self, Body};
use crate::authority::{Answer, Dep};
use crate::dnssec::Signers;
use crate::proto::Query;

/// Rotations of one answer that are encoded and sent in turn.
const MAX_VARIANTS: usize = 16;

/// What the cache may hold, in approximate bytes, before it starts over.
const CAPACITY_BYTES: usize = 64 << 20;

/// Slots of the table of questions asked once (8 bytes each: 2 MB, touched as it fills).
const SEEN: usize = 1 << 18;

/// Slots a question's hash may be in. With one, two questions asked in turn that picked the same
/// slot pushed each other out for ever and were never kept: with 5,000 names asked in rotation,
/// 7% of them (bench-instr: their answers built on every ask, 1.7x the instructions a query).
const WAYS: usize = 4;

/// One cached answer.
pub struct Cached {
    generation: u64,
    dep: Dep,
    query: Query,
    answer: Answer,
    variants: Box<[OnceLock<Vec<u8>>]>,
    next: AtomicUsize,
    weight: usize,
    /// The counter of its question type and response code, counted on every hit.
    pub counter: Counter,
    /// The keys its RRsets are signed with (a query with DO in a signed domain), and when.
    signers: Option<(Arc<Signers>, Instant)>,
    /// An upstream's answer: aged on every hit, good for its TTL.
    forwarded: Option<Aging>,
    /// Built while the view was stale: sent with EDE 3 and no TTL above this.
    stale: Option<u32>,
}

/// What ages a forwarded answer kept here: its TTL fields, when it was kept, for how long.
struct Aging {
    ttls: Box<[u16]>,
    stored: Instant,
    ttl: std::time::Duration,
}

impl Cached {
    /// The answer to `query` (normalised: id 0, lower case) built from snapshot `generation`.
    pub fn new(
        generation: u64,
        dep: Dep,
        query: Query,
        answer: Answer,
        counter: Counter,
        signers: Option<Arc<Signers>>,
    ) -> Self {
        let (variants, weight) = match &answer {
            Answer::Records(r) => {
                let n = if r.rotate { r.answers.len() } else { 1 };
                (n.clamp(1, MAX_VARIANTS), weigh(r))
            }
            Answer::NoData(soa) | Answer::NxDomain(soa) => (1, record_weight(soa)),
            Answer::NotOurs => (1, 0),
        };
        // Each rotation, once encoded, holds a message of at most the size limit and at most
        // about the records' own size.
        let encoded = usize::from(query.limit()).min(weight + 512);
        let weight = weight + variants * encoded + 256;
        Cached {
            generation,
            dep,
            query,
            answer,
            variants: (0..variants).map(|_| OnceLock::new()).collect(),
            next: AtomicUsize::new(0),
            weight,
            counter,
            signers: signers.map(|s| (s, Instant::now())),
            forwarded: None,
            stale: None,
        }
    }

    /// The same answer, built while the view is stale when `ttl_cap` is given: each rotation is
    /// encoded with EDE 3 (Stale Answer) and no TTL above the cap. Kept under
    /// [`stale_key`], so that it is never sent once the view follows etcd again.
    pub fn stale(mut self, ttl_cap: Option<u32>) -> Self {
        self.stale = ttl_cap;
        self
    }

    /// Whether it was built while the view was stale.
    pub fn is_stale(&self) -> bool {
        self.stale.is_some()
    }

    /// An upstream's answer to `query` as it was sent to a client (`bytes`, whose TTL fields
    /// are at `ttls`), good for `ttl` seconds: the next client to ask the same gets it from the
    /// receive loop, aged, instead of from the forwarder through a task.
    pub fn forwarded(
        query: Query,
        bytes: Vec<u8>,
        ttls: Vec<u16>,
        ttl: u32,
        counter: Counter,
    ) -> Self {
        let weight = 2 * bytes.len() + 2 * ttls.len() + 256;
        Cached {
            generation: 0,
            dep: Dep::Static,
            query,
            answer: Answer::NotOurs,
            variants: Box::new([OnceLock::from(bytes)]),
            next: AtomicUsize::new(0),
            weight,
            counter,
            signers: None,
            forwarded: Some(Aging {
                ttls: ttls.into(),
                stored: Instant::now(),
                ttl: std::time::Duration::from_secs(u64::from(ttl)),
            }),
            stale: None,
        }
    }

    /// Whether this is an upstream's answer (given only to clients that may recurse).
    pub fn is_forwarded(&self) -> bool {
        self.forwarded.is_some()
    }

    /// Lowers every TTL of a copy of a forwarded answer by the seconds it has been kept.
    pub fn age(&self, bytes: &mut [u8]) {
        let Some(aging) = &self.forwarded else { return };
        let age = aging.stored.elapsed().as_secs().min(u64::from(u32::MAX)) as u32;
        if age == 0 {
            return;
        }
        for &at in aging.ttls.iter() {
            let at = usize::from(at);
            if let Some(field) = bytes.get_mut(at..at + 4) {
                let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                field.copy_from_slice(&ttl.saturating_sub(age).to_be_bytes());
            }
        }
    }

    /// Encodes every rotation now: a signed answer's rotations are encoded (and signed) by a
    /// worker, never by the receive loop that later sends them.
    pub fn prepare(&self) {
        self.prepare_while(|_| true);
    }

    /// [`Cached::prepare`], one rotation at a time while `current` says this answer is still the
    /// one to give: under churn an answer already replaced is not signed any further.
    pub fn prepare_while(&self, current: impl Fn(&Cached) -> bool) {
        for i in 0..self.variants.len() {
            if !current(self) {
                return;
            }
            self.variant(i);
        }
    }

    /// The first rotation, encoded now; the answer to the query that built a signed entry.
    pub fn first_variant(&self) -> &[u8] {
        self.variant(0)
    }

    /// Whether every rotation is encoded.
    pub fn prepared(&self) -> bool {
        self.variants.iter().all(|v| v.get().is_some())
    }

    /// Whether this answer is still the one `snap` would give.
    pub fn valid(&self, snap: &Snapshot) -> bool {
        if let Some(aging) = &self.forwarded {
            return aging.stored.elapsed() < aging.ttl;
        }
        // Signatures are not sent when they are older than a day (they are valid for a week).
        if let Some((_, signed)) = &self.signers {
            if signed.elapsed() > crate::dnssec::sign::REUSE {
                return false;
            }
        }
        match &self.dep {
            Dep::Static => true,
            _ if self.generation == snap.generation() => true,
            Dep::All => false,
            Dep::Path(path) => !snap.changed_since(path, self.generation),
            Dep::Either(a, b) => {
                !snap.changed_since(a, self.generation) && !snap.changed_since(b, self.generation)
            }
        }
    }

    /// The next rotation in turn, encoded (on its first use).
    pub fn next_variant(&self) -> &[u8] {
        let count = self.variants.len().max(1);
        let i = self.next.fetch_add(1, Ordering::Relaxed) % count;
        if self.signers.is_some() {
            // Signed rotations are encoded by workers ([`Cached::prepare`]); until one is
            // ready, a ready one goes out instead of signing here.
            if let Some(ready) = self
                .variants
                .iter()
                .cycle()
                .skip(i)
                .take(count)
                .find_map(|v| v.get())
            {
                return ready;
            }
        }
        self.variant(i)
    }

    fn variant(&self, i: usize) -> &[u8] {
        let count = self.variants.len().max(1);
        let Some(slot) = self.variants.get(i) else {
            return &[];
        };
        slot.get_or_init(|| {
            let n = match &self.answer {
                Answer::Records(r) => r.answers.len(),
                _ => 0,
            };
            // Rotations spread over the whole list: with 5,000 answers and 16 rotations,
            // each starts 312 records after the one before.
            let rotation = i * n / count;
            let rcode = respond::rcode_of(&self.answer);
            respond::encode(
                &self.query,
                rcode,
                true,
                false,
                Body::of(&self.answer, rotation)
                    .signed(self.signers.as_ref().map(|s| &*s.0))
                    .stale(self.stale),
            )
        })
    }
}

/// The key answers built while the view is stale are kept under: the question's key with two
/// bytes after it (a question's key ends with its name's root label, so no question's key is
/// this), so that a stale answer is found only while the view is stale.
pub fn stale_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.extend_from_slice(key);
    k.extend_from_slice(b"\xffS");
    k
}

/// What a record holds in memory, about: the struct, its owner name, and its data's own bytes
/// (a TXT record's strings, a target name). A 60 KB TXT weighs 60 KB, not a fixed guess.
fn record_weight(r: &hickory_proto::rr::Record) -> usize {
    use hickory_proto::rr::RData;
    let data = match &r.data {
        RData::TXT(t) => t.txt_data.iter().map(|s| s.len() + 24).sum(),
        RData::CNAME(n) => n.0.len(),
        RData::NS(n) => n.0.len(),
        RData::PTR(n) => n.0.len(),
        RData::SRV(srv) => srv.target.len(),
        RData::MX(mx) => mx.exchange.len(),
        RData::SOA(soa) => soa.mname.len() + soa.rname.len(),
        _ => 0,
    };
    std::mem::size_of::<hickory_proto::rr::Record>() + r.name.len() + data
}

/// The weight of every record of an answer.
fn weigh(r: &crate::authority::Records) -> usize {
    r.answers
        .iter()
        .chain(&r.authorities)
        .chain(&r.additionals)
        .map(record_weight)
        .sum()
}

/// The cache: a map from question key to entry, under a reader-writer lock.
pub struct AnswerCache {
    /// foldhash, seeded per process: SipHash cost a tenth of a cached answer.
    map: RwLock<HashMap<Box<[u8]>, Arc<Cached>, foldhash::fast::RandomState>>,
    weight: AtomicUsize,
    /// Hashes of questions asked once and not kept, each in the slot its hash picks.
    seen: Box<[AtomicU64]>,
    seen_hash: foldhash::fast::RandomState,
}

impl Default for AnswerCache {
    fn default() -> Self {
        AnswerCache {
            map: RwLock::default(),
            weight: AtomicUsize::new(0),
            seen: (0..SEEN).map(|_| AtomicU64::new(0)).collect(),
            seen_hash: foldhash::fast::RandomState::default(),
        }
    }
}

impl AnswerCache {
    /// The entry for `key`, if it is still good for `snap`.
    pub fn get(&self, key: &[u8], snap: &Snapshot) -> Option<Arc<Cached>> {
        let map = self.map.read().ok()?;
        map.get(key).filter(|c| c.valid(snap)).cloned()
    }

    /// Our own answer, just built: kept when its question was asked before (see the module),
    /// handed back either way to be sent.
    // The miss path: kept out of line, away from the hit path beside it in `Handler::handle`
    // (bench-instr: 10-20 fewer instructions a hit).
    #[inline(never)]
    pub fn offer(&self, key: &[u8], entry: Cached) -> Arc<Cached> {
        use std::hash::BuildHasher;
        let h = self.seen_hash.hash_one(key) | 1;
        let bucket = (h >> 32) as usize % (SEEN / WAYS) * WAYS;
        let ways = &self.seen[bucket..bucket + WAYS];
        if ways.iter().any(|s| s.load(Ordering::Relaxed) == h) {
            // Asked before: kept now. Its hash stays, so that when a change retires the answer
            // its next ask keeps the new one at once (cleared, every changed name was built
            // twice: bench-churn 1.14x the quiet cost a query, against 1.00x before).
            return self.insert(key, entry);
        }
        // Asked once: remembered in a free slot of its bucket, else in one picked by its hash.
        let slot = ways
            .iter()
            .find(|s| s.load(Ordering::Relaxed) == 0)
            .unwrap_or(&ways[(h >> 8) as usize % WAYS]);
        slot.store(h, Ordering::Relaxed);
        Arc::new(entry)
    }

    /// Keeps an entry (starting over when full) and hands it back.
    pub fn insert(&self, key: &[u8], entry: Cached) -> Arc<Cached> {
        let entry = Arc::new(entry);
        if let Ok(mut map) = self.map.write() {
            if self.weight.load(Ordering::Relaxed) + entry.weight > CAPACITY_BYTES {
                let old = std::mem::take(&mut *map);
                self.weight.store(0, Ordering::Relaxed);
                // Tens of thousands of entries take a while to free: not here, where every
                // reader waits for this lock.
                let _ = std::thread::Builder::new()
                    .name("cache-free".into())
                    .spawn(move || drop(old));
            }
            self.weight.fetch_add(entry.weight, Ordering::Relaxed);
            if let Some(old) = map.insert(key.into(), entry.clone()) {
                self.weight.fetch_sub(old.weight, Ordering::Relaxed);
            }
        }
        entry
    }

    /// Entries held (for the metrics).
    pub fn len(&self) -> usize {
        self.map.read().map_or(0, |m| m.len())
    }

    /// What the entries weigh, bytes (for the metrics).
    pub fn weight(&self) -> usize {
        self.weight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Records;
    use crate::proto::Transport;
    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
    use lodestar::View;

    fn query() -> Query {
        Query {
            id: 0,
            recursion_desired: false,
            checking_disabled: false,
            name: Name::from_ascii("x.webapp.dev.").unwrap(),
            qtype: RecordType::A,
            qclass: DNSClass::IN,
            edns: None,
            transport: Transport::Udp,
            size: 0,
        }
    }

    fn answer(n: u8) -> Answer {
        let owner = Name::from_ascii("x.webapp.dev.").unwrap();
        Answer::Records(Records {
            answers: (0..n)
                .map(|i| Record::from_rdata(owner.clone(), 30, RData::A(A::new(10, 0, 0, i))))
                .collect(),
            rotate: true,
            ..Records::default()
        })
    }

    #[test]
    fn signed_rotations_are_only_sent_once_a_worker_encoded_them() {
        let signers = Arc::new(Signers::new(&[crate::dnssec::keys::test_key()]).unwrap());
        let mut q = query();
        let mut e = hickory_proto::op::Edns::new();
        e.set_dnssec_ok(true);
        q.edns = Some(e);
        let c = Cached::new(1, Dep::All, q, answer(3), Counter::default(), Some(signers));
        let first = c.first_variant().to_vec();
        assert!(!c.prepared());
        for _ in 0..5 {
            assert_eq!(
                c.next_variant(),
                first.as_slice(),
                "no encoding on the hit path"
            );
        }
        assert!(!c.prepared());
        c.prepare_while(|_| false);
        assert!(
            !c.prepared(),
            "an answer replaced meanwhile is not signed further"
        );
        c.prepare();
        let firsts: std::collections::BTreeSet<String> = (0..3)
            .map(|_| {
                Message::from_vec(c.next_variant()).unwrap().answers[0]
                    .data
                    .to_string()
            })
            .collect();
        assert_eq!(firsts.len(), 3, "rotations once prepared");
        let m = Message::from_vec(&first).unwrap();
        assert_eq!(
            m.answers
                .iter()
                .filter(|r| r.record_type() == RecordType::RRSIG)
                .count(),
            1
        );
    }

    #[test]
    fn entries_live_until_their_name_changes_and_rotate() {
        let view = View::new();
        let mut s = Snapshot::from_values([
            ("dev/webapp/x/1", br#"{"host":"10.0.0.1"}"#.as_slice(), 1),
            ("dev/webapp/y/1", br#"{"host":"10.0.0.9"}"#.as_slice(), 1),
        ]);
        let g = view.publish(&mut s, true).generation();
        let c = AnswerCache::default();
        let dep = |p: &str| Dep::Path(p.to_string());
        c.insert(
            b"x",
            Cached::new(
                g,
                dep("dev/webapp/x"),
                query(),
                answer(3),
                Counter::default(),
                None,
            ),
        );
        c.insert(
            b"all",
            Cached::new(g, Dep::All, query(), answer(1), Counter::default(), None),
        );
        s.put("dev/webapp/y/1", br#"{"host":"10.0.0.8"}"#, 2);
        let now = view.publish(&mut s, false);
        let e = c.get(b"x", &now).expect("another name changed: still good");
        assert!(c.get(b"all", &now).is_none(), "depends on everything");
        assert!(c.get(b"other", &now).is_none());
        let first = |b: &[u8]| Message::from_vec(b).unwrap().answers[0].data.to_string();
        let order: Vec<String> = (0..4).map(|_| first(e.next_variant())).collect();
        assert_eq!(order, ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.0"]);
        s.put("dev/webapp/x/2", br#"{"host":"10.0.0.2"}"#, 3);
        let now = view.publish(&mut s, false);
        assert!(c.get(b"x", &now).is_none(), "its own name changed");
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn entries_weigh_what_they_hold() {
        let owner = Name::from_ascii("t.webapp.dev.").unwrap();
        let txt = |n: usize| {
            let strings: Vec<String> = (0..n / 255).map(|_| "x".repeat(255)).collect();
            Answer::Records(Records {
                answers: vec![Record::from_rdata(
                    owner.clone(),
                    30,
                    RData::TXT(hickory_proto::rr::rdata::TXT::new(strings)),
                )],
                ..Records::default()
            })
        };
        let mut tcp = query();
        tcp.transport = Transport::Tcp;
        let big = Cached::new(1, Dep::All, tcp, txt(60_000), Counter::default(), None);
        // The record's 60 KB, and its one encoded rotation's 60 KB.
        assert!(big.weight > 2 * 59_000, "{}", big.weight);
        // Over UDP its rotation is cut at the limit, the record is still held.
        let small = Cached::new(1, Dep::All, query(), txt(60_000), Counter::default(), None);
        assert!(
            small.weight > 59_000 && small.weight < 60_000 + 8_000,
            "{}",
            small.weight
        );
        assert!(big.weight > small.weight + 50_000);
        let a = Cached::new(1, Dep::All, query(), answer(3), Counter::default(), None);
        assert!(a.weight < 4096, "{}", a.weight);
    }

    #[test]
    fn our_answers_are_kept_on_their_second_ask_and_a_flood_of_new_names_keeps_nothing() {
        let view = View::new();
        let mut s =
            Snapshot::from_values([("dev/webapp/x/1", br#"{"host":"10.0.0.1"}"#.as_slice(), 1)]);
        let snap = view.publish(&mut s, true);
        let g = snap.generation();
        let c = AnswerCache::default();
        let built = || Cached::new(g, Dep::All, query(), answer(1), Counter::default(), None);
        let sent = c.offer(b"x", built());
        assert!(
            !sent.first_variant().is_empty(),
            "an answer not kept is still sent"
        );
        assert!(c.get(b"x", &snap).is_none(), "asked once: not kept");
        c.offer(b"x", built());
        assert!(c.get(b"x", &snap).is_some(), "asked twice: kept");
        for i in 0..100_000u32 {
            c.offer(format!("random-{i}").as_bytes(), built());
        }
        assert_eq!(c.len(), 1, "names asked once each leave nothing");
        // Questions asked in turn, a sixteenth as many as the table has buckets: every one kept
        // on its second ask (one slot a hash let pairs push each other out for ever: 7% of
        // 5,000 names never kept).
        let c = AnswerCache::default();
        let names: Vec<String> = (0..SEEN / WAYS / 16).map(|i| format!("turn-{i}")).collect();
        for _ in 0..2 {
            for n in &names {
                c.offer(n.as_bytes(), built());
            }
        }
        assert_eq!(c.len(), names.len(), "every name asked twice is kept");
        // An upstream's answer is kept at once.
        c.insert(b"forwarded", built());
        assert_eq!(c.len(), names.len() + 1);
    }

    #[test]
    fn a_full_cache_starts_over() {
        let view = View::new();
        let mut s =
            Snapshot::from_values([("dev/webapp/x/1", br#"{"host":"10.0.0.1"}"#.as_slice(), 1)]);
        let g = view.publish(&mut s, true).generation();
        let c = AnswerCache::default();
        let built = || Cached::new(g, Dep::All, query(), answer(1), Counter::default(), None);
        let each = built().weight;
        let fits = CAPACITY_BYTES / each;
        for i in 0..fits + 10 {
            c.insert(format!("n{i}").as_bytes(), built());
        }
        assert!(
            c.len() < fits,
            "{} entries after {} inserts",
            c.len(),
            fits + 10
        );
        assert!(c.weight() <= CAPACITY_BYTES);
    }
}
