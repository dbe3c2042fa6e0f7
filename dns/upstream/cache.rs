//! The cache of the upstreams' answers (moka, bounded): kept for their smallest TTL, negative
//! answers for the SOA's negative TTL (RFC 2308 section 5), keyed by name, type, class, DO and
//! CD, so that an answer asked with checking disabled never reaches a client that wants it
//! checked. A hit is the stored message with every TTL counted down. Pure but for the clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use moka::sync::Cache;
use moka::Expiry;

/// Largest TTL the cache keeps an answer for.
const MAX_CACHE_TTL: u32 = 3600;

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct CacheKey {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
    dnssec_ok: bool,
    checking_disabled: bool,
}

#[derive(Debug)]
pub struct Cached {
    message: Message,
    stored: Instant,
    ttl: Duration,
}

pub struct ByTtl;

impl Expiry<CacheKey, Arc<Cached>> for ByTtl {
    fn expire_after_create(&self, _: &CacheKey, v: &Arc<Cached>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The answers cache: up to `capacity` answers, each for its own TTL.
pub fn new(capacity: u64) -> Cache<CacheKey, Arc<Cached>> {
    Cache::builder()
        .max_capacity(capacity)
        .expire_after(ByTtl)
        .build()
}

/// An answer to keep for `ttl` seconds (from [`cache_ttl`]).
pub fn entry(message: Message, ttl: u32) -> Arc<Cached> {
    Arc::new(Cached {
        message,
        stored: Instant::now(),
        ttl: Duration::from_secs(u64::from(ttl)),
    })
}

pub fn cache_key(request: &Message) -> Option<CacheKey> {
    let q = request.queries.first()?;
    Some(CacheKey {
        name: q.name().to_lowercase(),
        qtype: q.query_type(),
        qclass: q.query_class(),
        dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        checking_disabled: request.metadata.checking_disabled,
    })
}

/// How long an answer may be cached: the smallest answer TTL, or for NXDOMAIN/NODATA
/// min(SOA TTL, SOA minimum) (RFC 2308 section 5). Truncated answers and failures are not cached.
pub fn cache_ttl(m: &Message) -> Option<u32> {
    if m.metadata.truncation {
        return None;
    }
    let ttl = match m.metadata.response_code {
        ResponseCode::NoError if !m.answers.is_empty() => m.answers.iter().map(|r| r.ttl).min()?,
        ResponseCode::NoError | ResponseCode::NXDomain => {
            m.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })?
        }
        _ => return None,
    };
    (ttl > 0).then_some(ttl.min(MAX_CACHE_TTL))
}

/// The cached answer with every TTL lowered by the time it has spent in the cache.
pub fn counted_down(c: &Cached) -> Message {
    let age = c.stored.elapsed().as_secs().min(u64::from(u32::MAX)) as u32;
    let mut m = c.message.clone();
    for r in m
        .answers
        .iter_mut()
        .chain(m.authorities.iter_mut())
        .chain(m.additionals.iter_mut())
    {
        r.ttl = r.ttl.saturating_sub(age);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::Record;

    fn answer(rcode: ResponseCode, answers: &[u32], soa: Option<(u32, u32)>) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = rcode;
        let n = Name::from_ascii("x.example.").unwrap();
        for ttl in answers {
            m.add_answer(Record::from_rdata(
                n.clone(),
                *ttl,
                RData::A(A::new(1, 2, 3, 4)),
            ));
        }
        if let Some((ttl, min)) = soa {
            let soa = SOA::new(n.clone(), n.clone(), 1, 1, 1, 1, min);
            m.add_authority(Record::from_rdata(n.clone(), ttl, RData::SOA(soa)));
        }
        m
    }

    #[test]
    fn cache_ttls() {
        let cases: &[(Message, Option<u32>)] = &[
            (answer(ResponseCode::NoError, &[300, 60], None), Some(60)),
            (
                answer(ResponseCode::NoError, &[99999], None),
                Some(MAX_CACHE_TTL),
            ),
            (answer(ResponseCode::NoError, &[0], None), None),
            (
                answer(ResponseCode::NXDomain, &[], Some((900, 120))),
                Some(120),
            ),
            (
                answer(ResponseCode::NoError, &[], Some((30, 120))),
                Some(30),
            ),
            (answer(ResponseCode::NXDomain, &[], None), None),
            (answer(ResponseCode::ServFail, &[300], None), None),
        ];
        for (m, want) in cases {
            assert_eq!(cache_ttl(m), *want, "{m:?}");
        }
        let mut tc = answer(ResponseCode::NoError, &[300], None);
        tc.metadata.truncation = true;
        assert_eq!(cache_ttl(&tc), None);
    }
}
