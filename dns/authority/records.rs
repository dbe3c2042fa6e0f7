//! One function per record type (as CoreDNS's `backend_lookup.go`): each makes the records of
//! its type for a question from the entries under its name ([`Lookup::collect`]), pushing them
//! into the answer being built, with the targets' addresses in the additional section. Names that
//! point at names (CNAME chains, SRV/MX/NS targets) are followed through [`Lookup::addresses`] and
//! [`Lookup::target`], within the question's budget.

use std::collections::HashSet;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, HINFO, MX, NS, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use lodestar::{Entry, Host};

use super::lookup::{Ask, Lookup};
use super::names::{distinct_names, fqdn, prune_dangling_cnames, target_key, target_name, under};
use super::{Records, MAX_CHAIN};

impl<'a> Lookup<'a> {
    /// A/AAAA: the addresses under the name, CNAMEs followed (the apex's own `dns/apex` records
    /// when it has any).
    pub(super) fn a_or_aaaa(
        &mut self,
        ask: &Ask,
        entries: Vec<(&'a str, &'a Entry)>,
        out: &mut Records,
    ) {
        let qname = ask.qname;
        let lower = ask.lower;
        let qtype = ask.qtype;
        let domain = ask.domain;
        let apex = ask.apex;
        let mut chain = vec![lower.clone()];
        // CoreDNS's apex records: `<domain>/dns/apex/...` answer the apex itself when
        // there are any (else the apex answers everything below it, as SkyDNS).
        let entries = match self.apex_records(domain, apex) {
            Some(own) => own,
            None => entries,
        };
        let entries = self.fit(entries);
        self.addresses(qname, &entries, qtype, &mut chain, false, out);
    }

    /// ANY: RFC 8482, one synthesised HINFO for a name that exists, not everything it has.
    pub(super) fn any(&mut self, ask: &Ask, out: &mut Records) {
        let qname = ask.qname;
        let hinfo = HINFO::new("RFC8482".to_string(), String::new());
        out.answers.push(Record::from_rdata(
            qname.clone(),
            self.auth.default_ttl,
            RData::HINFO(hinfo),
        ));
    }

    /// CNAME: at most one (RFC 2181 10.1): the record at the name itself when it names a host;
    /// else the one host that every record below names (no addresses).
    pub(super) fn cname(
        &mut self,
        ask: &Ask,
        entries: Vec<(&'a str, &'a Entry)>,
        out: &mut Records,
    ) {
        let qname = ask.qname;
        let lower = ask.lower;
        let auth = self.auth;
        let ttl = |e: &Entry| auth.ttl(e);
        // One CNAME at most (RFC 2181 10.1): the record at the name itself when it names
        // a host; else the one host that every record below names (no addresses).
        let exact = lodestar::key::name_to_path(&lower.to_ascii());
        let own = entries
            .iter()
            .find(|(p, e)| *p == exact && matches!(e.host, Host::Name(_)));
        let only = (distinct_names(&entries) == 1
            && !entries
                .iter()
                .any(|(_, e)| matches!(e.host, Host::V4(_) | Host::V6(_))))
        .then(|| {
            entries
                .iter()
                .find(|(_, e)| matches!(e.host, Host::Name(_)))
        })
        .flatten();
        if let Some((_, e)) = own.or(only) {
            if let Host::Name(h) = &e.host {
                if let Ok(target) = fqdn(h) {
                    out.answers.push(Record::from_rdata(
                        qname.clone(),
                        ttl(e),
                        RData::CNAME(CNAME(target)),
                    ));
                }
            }
        }
    }

    /// SRV: one per record with a host, weights shared per priority, duplicates made one.
    pub(super) fn srv(&mut self, ask: &Ask, entries: Vec<(&'a str, &'a Entry)>, out: &mut Records) {
        let qname = ask.qname;
        let auth = self.auth;
        let ttl = |e: &Entry| auth.ttl(e);
        // Records without a host make no SRV, so they take no share of the weights.
        // Records that would make the same SRV (priority, port, target) make one, and
        // share one weight (SkyDNS's dedup).
        // Address records without `targetstrip` have their own key path as target, and
        // paths are unique: they can only meet another target when some record strips
        // labels, so only then are they hashed (the common large set costs nothing).
        let address = |e: &Entry| matches!(e.host, Host::V4(_) | Host::V6(_));
        let strips = entries
            .iter()
            .any(|(_, e)| address(e) && e.service.targetstrip > 0);
        let mut seen = HashSet::new();
        let serving: Vec<(&str, &Entry)> = entries
            .into_iter()
            .filter(|(_, e)| e.host != Host::None)
            .filter(|(p, e)| {
                (address(e) && !strips)
                    || seen.insert((e.service.priority(), e.service.port, target_key(p, e)))
            })
            .collect();
        let pw: Vec<(u16, u16)> = serving
            .iter()
            .map(|(_, e)| (e.service.priority(), e.service.weight))
            .collect();
        let weights = lodestar::record::shared_weights(&pw);
        let weighted: Vec<((&str, &Entry), u16)> = serving.into_iter().zip(weights).collect();
        for ((path, e), weight) in self.fit(weighted) {
            let Some(target) = self.target(path, e, &mut out.additionals) else {
                continue;
            };
            let srv = SRV::new(e.service.priority(), weight, e.service.port, target);
            out.answers
                .push(Record::from_rdata(qname.clone(), ttl(e), RData::SRV(srv)));
        }
    }

    /// MX: the records marked `mail`.
    pub(super) fn mx(&mut self, ask: &Ask, entries: Vec<(&'a str, &'a Entry)>, out: &mut Records) {
        let qname = ask.qname;
        let auth = self.auth;
        let ttl = |e: &Entry| auth.ttl(e);
        let mail: Vec<_> = entries
            .into_iter()
            .filter(|(_, e)| e.service.mail)
            .collect();
        for (path, e) in self.fit(mail) {
            let Some(target) = self.target(path, e, &mut out.additionals) else {
                continue;
            };
            let mx = MX::new(e.service.priority(), target);
            out.answers
                .push(Record::from_rdata(qname.clone(), ttl(e), RData::MX(mx)));
        }
    }

    /// TXT: the records' text, or through the name's CNAME when it has none.
    pub(super) fn txt(&mut self, ask: &Ask, entries: Vec<(&'a str, &'a Entry)>, out: &mut Records) {
        let qname = ask.qname;
        let lower = ask.lower;
        let auth = self.auth;
        let ttl = |e: &Entry| auth.ttl(e);
        let texts: Vec<_> = entries
            .iter()
            .copied()
            .filter(|(_, e)| !e.service.text.is_empty())
            .collect();
        if texts.is_empty() {
            // A name that is only a CNAME (one host name, no address, no text) answers
            // TXT through it, as any type but its own (RFC 1034 3.6.2).
            let mut chain = vec![lower.clone()];
            self.txt_through_cname(qname, &entries, &mut chain, out);
            prune_dangling_cnames(&mut out.answers);
        }
        for (_, e) in self.fit(texts) {
            let txt = TXT::new(e.service.text_strings());
            out.answers
                .push(Record::from_rdata(qname.clone(), ttl(e), RData::TXT(txt)));
        }
    }

    /// NS at the apex: the records under `dns/ns`.
    pub(super) fn ns(&mut self, ask: &Ask, out: &mut Records) {
        let qname = ask.qname;
        let domain = ask.domain;
        let auth = self.auth;
        let ttl = |e: &Entry| auth.ttl(e);
        let servers: Vec<_> = self.snap.subtree(&domain.dns_path).collect();
        let servers: Vec<_> = servers
            .into_iter()
            .filter(|(p, _)| under(p, &format!("{}/ns", domain.dns_path)))
            .collect();
        for (path, e) in self.fit(servers) {
            let Some(target) = self.target(path, e, &mut out.additionals) else {
                continue;
            };
            out.answers.push(Record::from_rdata(
                qname.clone(),
                ttl(e),
                RData::NS(NS(target)),
            ));
        }
    }

    /// SOA at the apex, its serial the snapshot's revision.
    pub(super) fn soa(&mut self, ask: &Ask, out: &mut Records) {
        let qname = ask.qname;
        let domain = ask.domain;
        let mut soa = self.auth.soa(domain, self.snap);
        soa.name = qname.clone();
        out.answers.push(soa);
    }

    /// TXT for `owner` through its CNAME when its records are exactly one host name: the CNAME,
    /// then the target's TXT (in the zone, followed again if the target is a CNAME too, or left
    /// to the upstream). A chain that ends without text is removed by the caller.
    pub(super) fn txt_through_cname(
        &mut self,
        owner: &Name,
        entries: &[(&'a str, &'a Entry)],
        chain: &mut Vec<Name>,
        out: &mut Records,
    ) {
        let plain_cname = entries
            .iter()
            .all(|(_, e)| matches!(e.host, Host::Name(_)) && e.service.text.is_empty())
            && distinct_names(entries) == 1;
        let Some((_, e)) = entries.first().filter(|_| plain_cname) else {
            return;
        };
        let Host::Name(h) = &e.host else { return };
        let Ok(target) = fqdn(h) else { return };
        let lower = target.to_lowercase();
        if chain.contains(&lower) || chain.len() > MAX_CHAIN || self.room == 0 {
            return;
        }
        // Followed in the zone only (as CoreDNS): a host elsewhere makes no TXT here.
        let Some(d) = self.auth.domain_of(&lower) else {
            return;
        };
        self.room -= 1;
        let ttl = self.auth.ttl(e);
        out.answers.push(Record::from_rdata(
            owner.clone(),
            ttl,
            RData::CNAME(CNAME(target.clone())),
        ));
        if self.expand(&lower).is_some() {
            return;
        }
        let (sub, _) = self.collect(d, &lower);
        let sub = self.fit(sub);
        let texts: Vec<_> = sub
            .iter()
            .filter(|(_, e)| !e.service.text.is_empty())
            .collect();
        if texts.is_empty() {
            chain.push(lower.clone());
            self.txt_through_cname(&target, &sub, chain, out);
            chain.pop();
        } else {
            for (_, e) in texts {
                out.answers.push(Record::from_rdata(
                    target.clone(),
                    self.auth.ttl(e),
                    RData::TXT(TXT::new(e.service.text_strings())),
                ));
            }
        }
        self.expanded.insert(lower, true);
    }

    /// A/AAAA for `owner` from `entries`. A CNAME may only stand alone (RFC 1034 3.6.2, RFC 2181
    /// 10.1), so:
    /// - when any record has an address, the records that name a host are left out of A/AAAA;
    /// - when the records name exactly one host, that is a CNAME, followed in-zone (loops cut, at
    ///   most [`MAX_CHAIN`] deep, each name once) or left for the upstream, and answered only if
    ///   it leads to an address (as SkyDNS and CoreDNS do);
    /// - when they name several hosts, their addresses are answered as `owner`'s own, without a
    ///   CNAME (`flatten`; so are the names below a flattened one).
    pub(super) fn addresses(
        &mut self,
        owner: &Name,
        entries: &[(&'a str, &'a Entry)],
        qtype: RecordType,
        chain: &mut Vec<Name>,
        flatten: bool,
        out: &mut Records,
    ) {
        let has_addr = entries
            .iter()
            .any(|(_, e)| matches!(e.host, Host::V4(_) | Host::V6(_)));
        let flatten = flatten || (!has_addr && distinct_names(entries) > 1);
        for (_, e) in entries {
            if self.room == 0 {
                self.exceeded |= self.strict;
                return;
            }
            let ttl = self.auth.ttl(e);
            match &e.host {
                Host::V4(ip) if qtype != RecordType::AAAA => {
                    self.room -= 1;
                    out.answers
                        .push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))));
                }
                Host::V6(ip) if qtype != RecordType::A => {
                    self.room -= 1;
                    out.answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::AAAA(AAAA(*ip)),
                    ));
                }
                Host::Name(_) if has_addr => {}
                Host::Name(h) => {
                    let Ok(target) = fqdn(h) else { continue };
                    let lower = target.to_lowercase();
                    if chain.contains(&lower) || chain.len() > MAX_CHAIN {
                        continue;
                    }
                    let t = if qtype == RecordType::ANY {
                        RecordType::A
                    } else {
                        qtype
                    };
                    let Some(d) = self.auth.domain_of(&lower) else {
                        if !out.external.iter().any(|(n, _)| *n == target) {
                            out.external.push((target.clone(), t));
                        }
                        if flatten {
                            out.flatten = Some(owner.clone());
                        } else {
                            self.room = self.room.saturating_sub(1);
                            out.answers.push(Record::from_rdata(
                                owner.clone(),
                                ttl,
                                RData::CNAME(CNAME(target)),
                            ));
                        }
                        continue;
                    };
                    let cname =
                        Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(target.clone())));
                    // An in-zone CNAME that leads nowhere is left out. A name expanded before in
                    // this question already put its records in.
                    match self.expand(&lower) {
                        Some(true) if !flatten => {
                            self.room = self.room.saturating_sub(1);
                            out.answers.push(cname);
                        }
                        Some(_) => {}
                        None => {
                            let (sub, _) = self.collect(d, &lower);
                            let sub = self.fit(sub);
                            let mut chained = Records::default();
                            chain.push(lower.clone());
                            let under = if flatten { owner } else { &target };
                            self.addresses(under, &sub, qtype, chain, flatten, &mut chained);
                            chain.pop();
                            let led = !chained.answers.is_empty() || !chained.external.is_empty();
                            self.expanded.insert(lower, led);
                            if led {
                                if !flatten {
                                    self.room = self.room.saturating_sub(1);
                                    out.answers.push(cname);
                                }
                                out.answers.extend(chained.answers);
                                out.external.extend(chained.external);
                                out.flatten = out.flatten.take().or(chained.flatten);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The SRV/MX/NS target of a record: its host when that is a name, else the name made from
    /// its key (minus `targetstrip` labels), whose address goes to the additional section.
    pub(super) fn target(
        &mut self,
        path: &str,
        e: &Entry,
        additionals: &mut Vec<Record>,
    ) -> Option<Name> {
        let ttl = self.auth.ttl(e);
        self.room = self.room.saturating_sub(1);
        match &e.host {
            Host::Name(h) => {
                let target = fqdn(h).ok()?;
                let lower = target.to_lowercase();
                if let Some(d) = self.auth.domain_of(&lower) {
                    if self.expand(&lower).is_none() {
                        let (sub, _) = self.collect(d, &lower);
                        let sub = self.fit(sub);
                        let mut extra = Records::default();
                        self.addresses(
                            &target,
                            &sub,
                            RecordType::ANY,
                            &mut vec![lower.clone()],
                            false,
                            &mut extra,
                        );
                        self.expanded.insert(lower, !extra.answers.is_empty());
                        additionals.extend(extra.answers);
                    }
                }
                Some(target)
            }
            Host::V4(_) | Host::V6(_) => {
                let target = target_name(path, e)?;
                let rdata = match e.host {
                    Host::V4(ip) => RData::A(A(ip)),
                    Host::V6(ip) => RData::AAAA(AAAA(ip)),
                    _ => return None,
                };
                additionals.push(Record::from_rdata(target.clone(), ttl, rdata));
                Some(target)
            }
            Host::None => None,
        }
    }
}
