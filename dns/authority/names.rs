//! The small pure functions answers are built with: the SRV/MX target a record makes, the group
//! that narrows a name's records, CNAMEs that lead nowhere, an even sample, reverse names.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use lodestar::key::path_to_name;
use lodestar::{Entry, Host};

/// Whether `path` is `base` or below it, with exact label boundaries.
pub fn under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The SRV/MX/NS target a record makes: its host when that is a name, else the name of its key
/// minus `targetstrip` labels. Pure.
pub fn target_name(path: &str, e: &Entry) -> Option<Name> {
    match &e.host {
        Host::Name(h) => fqdn(h).ok(),
        Host::V4(_) | Host::V6(_) => {
            let name = path_to_name(path);
            let strip =
                (e.service.targetstrip as usize).min(name.split('.').count().saturating_sub(1));
            let stripped = name.splitn(strip + 1, '.').last().unwrap_or(&name);
            fqdn(stripped).ok()
        }
        Host::None => None,
    }
}

/// The group that narrows `found`: the one carried by every shortest key that carries a group;
/// `None` when no key carries one or when those keys disagree. Pure, linear.
pub fn pick_group(found: &[(&str, &Entry)]) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    let mut disagree = false;
    for (p, e) in found {
        let g = e.service.group.as_str();
        if g.is_empty() {
            continue;
        }
        let depth = p.split('/').count();
        match best {
            Some((d, _)) if depth > d => {}
            Some((d, bg)) if depth == d => disagree |= bg != g,
            _ => {
                best = Some((depth, g));
                disagree = false;
            }
        }
    }
    match best {
        Some((_, g)) if !disagree => Some(g.to_string()),
        _ => None,
    }
}

/// What [`target_name`] would make of a record, as a key that costs no allocation in the common
/// case (it runs over every record of an SRV question, 100,000 under a large apex): a host name
/// as written (lower-cased only when it has capitals), an address record's key path minus its
/// `targetstrip` segments (paths are lower case). Equal keys, equal targets.
#[derive(Hash, PartialEq, Eq)]
pub enum TargetKey<'a> {
    Host(std::borrow::Cow<'a, str>),
    Path(&'a str),
}

pub fn target_key<'a>(path: &'a str, e: &'a Entry) -> Option<TargetKey<'a>> {
    match &e.host {
        Host::Name(h) => {
            let h = h.trim_end_matches('.');
            Some(TargetKey::Host(
                if h.bytes().any(|b| b.is_ascii_uppercase()) {
                    std::borrow::Cow::Owned(h.to_ascii_lowercase())
                } else {
                    std::borrow::Cow::Borrowed(h)
                },
            ))
        }
        Host::V4(_) | Host::V6(_) => {
            // The name's leftmost labels are the path's last segments; one label always stays.
            let segments = path.split('/').count();
            let strip = (e.service.targetstrip as usize).min(segments.saturating_sub(1));
            let mut end = path.len();
            for _ in 0..strip {
                end = path[..end].rfind('/').unwrap_or(0);
            }
            Some(TargetKey::Path(&path[..end]))
        }
        Host::None => None,
    }
}

/// How many different host names `entries` point at (case-insensitive), counting up to two.
pub fn distinct_names(entries: &[(&str, &Entry)]) -> usize {
    let mut first: Option<&str> = None;
    for (_, e) in entries {
        if let Host::Name(h) = &e.host {
            let h = h.trim_end_matches('.');
            match first {
                None => first = Some(h),
                Some(f) if !f.eq_ignore_ascii_case(h) => return 2,
                Some(_) => {}
            }
        }
    }
    usize::from(first.is_some())
}

/// Leaves out the CNAMEs that lead to no data in `records` (their target owns nothing that is
/// kept), chains included. Linear per link of the longest chain.
pub fn prune_dangling_cnames(records: &mut Vec<Record>) {
    let mut live: HashSet<Name> = records
        .iter()
        .filter(|r| r.record_type() != RecordType::CNAME)
        .map(|r| r.name.clone())
        .collect();
    loop {
        let before = live.len();
        for r in records.iter() {
            if let RData::CNAME(c) = &r.data {
                if live.contains(&c.0) {
                    live.insert(r.name.clone());
                }
            }
        }
        if live.len() == before {
            break;
        }
    }
    records.retain(|r| match &r.data {
        RData::CNAME(c) => live.contains(&c.0),
        _ => true,
    });
}

/// At most `max` of `items`, evenly spread over all of them (every k-th), in their order.
pub fn sample<T>(items: Vec<T>, max: usize) -> Vec<T> {
    if items.len() <= max {
        return items;
    }
    let step = items.len().div_ceil(max.max(1));
    items.into_iter().step_by(step).take(max).collect()
}

pub fn fqdn(name: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut n = Name::from_ascii(name)?;
    n.set_fqdn(true);
    Ok(n)
}

pub fn is_reverse(lower: &Name) -> bool {
    static ZONES: std::sync::LazyLock<Vec<Name>> = std::sync::LazyLock::new(|| {
        ["in-addr.arpa.", "ip6.arpa."]
            .into_iter()
            .filter_map(|z| Name::from_ascii(z).ok())
            .collect()
    });
    ZONES.iter().any(|z| z.zone_of(lower))
}

pub fn reverse_addr(lower: &Name) -> Option<IpAddr> {
    let net = lower.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

/// Removes repeated records (same owner and data), keeping the first: one hash lookup each.
pub fn dedup(records: &mut Vec<Record>) {
    if records.len() < 2 {
        return;
    }
    let keep: Vec<bool> = {
        let mut seen: HashSet<(&Name, &RData)> = HashSet::with_capacity(records.len());
        records
            .iter()
            .map(|r| seen.insert((&r.name, &r.data)))
            .collect()
    };
    let mut flags = keep.into_iter();
    records.retain(|_| flags.next().unwrap_or(true));
}
