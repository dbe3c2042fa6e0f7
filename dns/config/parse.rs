//! The small parsers of the command line's values: upstreams (`IP` or `IP:PORT`), CIDRs, the
//! nameservers of a resolv.conf, a mailbox, and whether an upstream is this server itself. Pure,
//! but for the list of this machine's addresses.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use hickory_proto::rr::Name;
use ipnet::IpNet;

/// The addresses of this machine's interfaces.
pub fn local_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|l| l.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// The `--listen` address that `upstream` reaches, if it reaches this server: the same address
/// and port, or the port of a wildcard listener (`0.0.0.0`, or `::` which also takes IPv4) on
/// one of this machine's addresses (`locals`). Pure.
pub fn own_address(
    upstream: SocketAddr,
    listen: &[SocketAddr],
    locals: &[IpAddr],
) -> Option<SocketAddr> {
    let up_ip = match upstream.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(upstream.ip(), IpAddr::V4),
        v4 => v4,
    };
    listen.iter().copied().find(|l| {
        if l.port() != upstream.port() {
            return false;
        }
        if l.ip() == up_ip || l.ip() == upstream.ip() {
            return true;
        }
        let family = match l.ip() {
            IpAddr::V4(_) => up_ip.is_ipv4(),
            IpAddr::V6(_) => true, // `::` takes both families (IPV6_V6ONLY off, Linux's default)
        };
        l.ip().is_unspecified() && family && (locals.contains(&up_ip) || up_ip.is_unspecified())
    })
}

/// `10.0.0.2` -> `10.0.0.2:53`; `10.0.0.2:5353` and `[::1]:53` as given.
pub fn parse_upstream(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: IpAddr = s
        .parse()
        .with_context(|| format!("--upstream {s:?} is not IP or IP:PORT"))?;
    Ok(SocketAddr::new(ip, 53))
}

/// `10.0.0.0/8` as a network, a bare address as a single host.
pub fn parse_cidr(s: &str) -> anyhow::Result<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n);
    }
    let ip: IpAddr = s.parse().context("not a CIDR (10.0.0.0/8) or an address")?;
    Ok(IpNet::from(ip))
}

/// The `nameserver` lines of a resolv.conf, port 53.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// `admin@example.com` -> `admin.example.com.` (dots in the local part escaped, RFC 1035 8);
/// a name stays a name.
pub fn mailbox(s: &str) -> Option<Name> {
    let text = match s.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            format!("{}.{domain}", local.replace('.', "\\."))
        }
        Some(_) => return None,
        None => s.to_string(),
    };
    let mut n = Name::from_ascii(&text).ok()?;
    n.set_fqdn(true);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text =
            "# c\nsearch x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\n";
        let got: Vec<String> = resolv_conf_nameservers(text)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["10.0.0.2:53", "[fe80::1]:53"]);
    }

    #[test]
    fn an_upstream_that_is_this_server_is_recognised() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let locals: Vec<IpAddr> = ["127.0.0.1", "10.0.0.5", "::1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let cases: &[(&str, &[&str], bool)] = &[
            ("127.0.0.1:53", &["127.0.0.1:53"], true),
            ("127.0.0.1:53", &["127.0.0.1:5353"], false),
            ("10.0.0.5:53", &["0.0.0.0:53"], true),
            ("127.0.0.1:53", &["0.0.0.0:53"], true),
            ("10.0.0.9:53", &["0.0.0.0:53"], false),
            // 127.0.0.53 is not an interface address: a more specific listener (a local
            // resolver's) takes its packets.
            ("127.0.0.53:53", &["0.0.0.0:53"], false),
            ("[::1]:53", &["0.0.0.0:53"], false),
            ("[::1]:53", &["[::]:53"], true),
            ("10.0.0.5:53", &["[::]:53"], true),
            ("[::ffff:127.0.0.1]:53", &["127.0.0.1:53"], true),
        ];
        for (up, listen, want) in cases {
            let listen: Vec<SocketAddr> = listen.iter().map(|l| sa(l)).collect();
            assert_eq!(
                own_address(sa(up), &listen, &locals).is_some(),
                *want,
                "{up} with --listen {listen:?}"
            );
        }
    }

    #[test]
    fn upstreams_and_cidrs() {
        assert_eq!(
            parse_upstream("10.0.0.2").unwrap().to_string(),
            "10.0.0.2:53"
        );
        assert_eq!(
            parse_upstream("127.0.0.1:5353").unwrap().to_string(),
            "127.0.0.1:5353"
        );
        assert!(parse_upstream("dns.example").is_err());
        assert_eq!(parse_cidr("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }
}
