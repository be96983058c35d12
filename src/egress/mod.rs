//! Egress policy: which addresses webhookd may connect to. Destinations are chosen by other
//! people (customers register endpoint URLs), so without a guard a URL such as
//! `http://169.254.169.254/latest/meta-data/` or `http://10.0.0.5:6379/` makes webhookd reach
//! into the operator's own network. Every address a destination resolves to is checked here
//! before connecting (`deliver::http` dials only the addresses that pass), so a name that
//! resolves to a public address at one moment and a private one the next gains nothing.
//!
//! Denied by default: the ranges of `DENIED` (loopback, private, shared/CGNAT, link-local and
//! cloud metadata, unique-local, unspecified, multicast, broadcast, documentation, benchmarking,
//! reserved), and the IPv4-mapped, IPv4-compatible, 6to4 and NAT64 forms of any denied IPv4
//! address. `egress.allow` opens ranges, `egress.deny` adds ranges (and wins over `allow`), and
//! an endpoint's `allow_private` opens the private ranges (loopback, RFC 1918, CGNAT, unique-
//! local) for that endpoint alone; link-local (metadata) is opened only by `egress.allow`.
//!
//! A pure module: no I/O; the classifier is table-tested.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;

/// What a denied range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Internal networks an operator may run receivers in: `allow_private` opens them.
    Private,
    /// Link-local, with the cloud metadata services: only `egress.allow` opens it.
    LinkLocal,
    /// Addresses no receiver has: only `egress.allow` opens them.
    Special,
}

/// The ranges denied by default, most specific first where they overlap.
const DENIED: &[(&str, &str, Kind)] = &[
    ("0.0.0.0/8", "unspecified (this network)", Kind::Special),
    ("10.0.0.0/8", "private", Kind::Private),
    (
        "100.64.0.0/10",
        "shared address space (CGNAT)",
        Kind::Private,
    ),
    ("127.0.0.0/8", "loopback", Kind::Private),
    (
        "169.254.0.0/16",
        "link-local (cloud metadata)",
        Kind::LinkLocal,
    ),
    ("172.16.0.0/12", "private", Kind::Private),
    ("192.0.0.0/24", "IETF protocol assignments", Kind::Special),
    ("192.0.2.0/24", "documentation", Kind::Special),
    ("192.88.99.0/24", "6to4 relay anycast", Kind::Special),
    ("192.168.0.0/16", "private", Kind::Private),
    ("198.18.0.0/15", "benchmarking", Kind::Special),
    ("198.51.100.0/24", "documentation", Kind::Special),
    ("203.0.113.0/24", "documentation", Kind::Special),
    ("224.0.0.0/4", "multicast", Kind::Special),
    ("255.255.255.255/32", "broadcast", Kind::Special),
    ("240.0.0.0/4", "reserved", Kind::Special),
    ("::/128", "unspecified", Kind::Special),
    ("::1/128", "loopback", Kind::Private),
    ("64:ff9b:1::/48", "local-use NAT64", Kind::Private),
    ("100::/64", "discard-only", Kind::Special),
    ("2001:db8::/32", "documentation", Kind::Special),
    ("2001::/23", "IETF protocol assignments", Kind::Special),
    ("3fff::/20", "documentation", Kind::Special),
    ("fc00::/7", "unique-local", Kind::Private),
    ("fe80::/10", "link-local", Kind::LinkLocal),
    ("fec0::/10", "site-local (deprecated)", Kind::Private),
    ("ff00::/8", "multicast", Kind::Special),
];

/// Why an address may not be connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) ip: IpAddr,
    /// The IPv4 address an IPv6 one embeds, when that is what was denied.
    pub(crate) embedded: Option<Ipv4Addr>,
    pub(crate) range: IpNet,
    /// What the range is ("private", "loopback", "in egress.deny", ...).
    pub(crate) what: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some(v4) => write!(
                f,
                "{} (which embeds {v4}) is {} ({})",
                self.ip, self.what, self.range
            ),
            None => write!(f, "{} is {} ({})", self.ip, self.what, self.range),
        }
    }
}

/// The default class of `ip`: its denied range, what it is and its kind; `None` for an address
/// allowed by default. An IPv6 address that embeds an IPv4 one (mapped, compatible, 6to4,
/// NAT64) is classed as that IPv4 address when it is denied.
pub(crate) fn classify(ip: IpAddr) -> Option<(IpNet, &'static str, Kind, Option<Ipv4Addr>)> {
    if let IpAddr::V6(v6) = ip {
        if let Some(v4) = embedded_v4(v6) {
            if let Some((net, what, kind, _)) = classify(IpAddr::V4(v4)) {
                return Some((net, what, kind, Some(v4)));
            }
        }
    }
    denied()
        .iter()
        .find_map(|(net, what, kind)| net.contains(&ip).then_some((*net, *what, *kind, None)))
}

/// `DENIED`, parsed once.
fn denied() -> &'static [(IpNet, &'static str, Kind)] {
    static PARSED: OnceLock<Vec<(IpNet, &'static str, Kind)>> = OnceLock::new();
    PARSED.get_or_init(|| {
        DENIED
            .iter()
            .map(|(net, what, kind)| {
                (
                    net.parse().expect("a valid range in the table"),
                    *what,
                    *kind,
                )
            })
            .collect()
    })
}

/// The IPv4 address an IPv6 one carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, not `::` or `::1`), 6to4 (`2002:AABB:CCDD::/48`), NAT64 (`64:ff9b::/96`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// `egress.allow` and `egress.deny`: the operator's ranges over the default table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) allow: Vec<IpNet>,
    pub(crate) deny: Vec<IpNet>,
}

impl Policy {
    /// Whether `ip` may be connected to (`allow_private`: the endpoint's setting).
    ///
    /// # Errors
    /// `Denied`, naming the address and the range.
    pub(crate) fn check(&self, ip: IpAddr, allow_private: bool) -> Result<(), Denied> {
        let forms = forms(ip);
        if let Some(net) = self
            .deny
            .iter()
            .find(|n| forms.iter().any(|f| n.contains(f)))
        {
            return Err(Denied {
                ip,
                embedded: None,
                range: *net,
                what: "in egress.deny".into(),
            });
        }
        if self
            .allow
            .iter()
            .any(|n| forms.iter().any(|f| n.contains(f)))
        {
            return Ok(());
        }
        match classify(ip) {
            Some((_, _, Kind::Private, _)) if allow_private => Ok(()),
            Some((range, what, _, embedded)) => Err(Denied {
                ip,
                embedded,
                range,
                what: what.into(),
            }),
            None => Ok(()),
        }
    }

    /// Checks the host of `url` when it is an IP literal (a name is checked when it is
    /// resolved, at each attempt).
    ///
    /// # Errors
    /// `Denied`, as for `check`.
    pub(crate) fn check_url(&self, url: &str, allow_private: bool) -> Result<(), Denied> {
        match literal(url) {
            Some(ip) => self.check(ip, allow_private),
            None => Ok(()),
        }
    }
}

/// `ip`, and the IPv4 address it embeds if any: an operator's range may name either.
fn forms(ip: IpAddr) -> Vec<IpAddr> {
    let mut forms = vec![ip];
    if let IpAddr::V6(v6) = ip {
        forms.extend(embedded_v4(v6).map(IpAddr::V4));
    }
    forms
}

/// The host of `url` when it is an IP literal (`http://10.0.0.5/`, `http://[::1]:8080/`).
pub(crate) fn literal(url: &str) -> Option<IpAddr> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse()
        .ok()
        .or_else(|| numeric_v4(host).map(IpAddr::V4))
}

/// The IPv4 address the system resolver makes of a numeric host that is not dotted-quad
/// decimal (`inet_aton`): `127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`.
fn numeric_v4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u32> = host
        .split('.')
        .map(|p| {
            if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
                u32::from_str_radix(hex, 16).ok()
            } else if p.len() > 1 && p.starts_with('0') {
                u32::from_str_radix(&p[1..], 8).ok()
            } else if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                p.parse().ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|&p| p > 255) {
        return None;
    }
    let room = 32 - 8 * head.len() as u32;
    if room < 32 && *last >= 1 << room {
        return None;
    }
    let high = head
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &p)| acc | p << (24 - 8 * i));
    Some(Ipv4Addr::from(high | last))
}

/// Parses a list of ranges (`10.20.0.0/16`, or a single address `127.0.0.1`).
///
/// # Errors
/// The entry that is not a range, and why.
pub(crate) fn ranges(list: &[String]) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| format!("{s:?} is not an address range (e.g. \"10.20.0.0/16\")"))
        })
        .collect()
}

/// A proxy: `http://`, `https://` (CONNECT over TLS), `socks5://` or `socks5h://`, with a host
/// and a port, and optionally `user:password@`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ProxyUrl {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

/// The proxy without its password.
impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(u) => write!(f, "{}://{u}:***@{}", self.scheme, self.authority()),
            None => write!(f, "{}://{}", self.scheme, self.authority()),
        }
    }
}

impl ProxyUrl {
    /// # Errors
    /// Why `text` is not a proxy URL.
    pub(crate) fn parse(text: &str) -> Result<ProxyUrl, String> {
        let bad = |why: &str| Err(format!("{why} (e.g. \"http://proxy.internal:3128\")"));
        let Some((scheme, rest)) = text.split_once("://") else {
            return bad("not a URL");
        };
        if !matches!(scheme, "http" | "https" | "socks5" | "socks5h") {
            return bad(&format!(
                "scheme {scheme:?} is not one of http, https, socks5, socks5h"
            ));
        }
        let rest = rest.trim_end_matches('/');
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        if hostport.contains('/') || hostport.contains('?') {
            return bad("a proxy URL has no path");
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p),
            _ => return bad("no port"),
        };
        let Ok(port @ 1..) = port.parse::<u16>() else {
            return bad(&format!("port {port:?} is not in 1..=65535"));
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("no host");
        }
        let (user, password) = match auth.map(|a| a.split_once(':').unwrap_or((a, ""))) {
            None => (None, None),
            Some((u, p)) => (Some(u.to_owned()), Some(p.to_owned())),
        };
        Ok(ProxyUrl {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            port,
            user,
            password,
        })
    }

    /// `host:port` (as a request to it is addressed).
    pub(crate) fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How an endpoint's requests leave: `http.proxy` (if set), directly, or through its own proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) enum Via {
    #[default]
    Default,
    Direct,
    Proxy(ProxyUrl),
}

/// A TLS client identity (mutual TLS): a certificate chain and its key, as PEM.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
    /// Where they came from, for messages.
    pub(crate) source: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.source)
    }
}

/// How one endpoint's destination is reached: the private ranges it may use, the proxy, the
/// extra CA certificates it trusts and its client identity. Requests of different routes never
/// share a connection (`deliver::http` keeps one agent, with its own pool, per route).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Route {
    pub(crate) allow_private: bool,
    pub(crate) via: Via,
    /// PEM certificates trusted beside the system's and `http.ca_file`'s.
    pub(crate) ca_pem: Option<Arc<Vec<u8>>>,
    pub(crate) identity: Option<Arc<Identity>>,
    /// Its proxy's own address passes the policy too (a proxy set on an endpoint managed at
    /// runtime: whoever manages endpoints must not reach the network through it).
    pub(crate) vet_proxy: bool,
}

#[cfg(test)]
mod tests;
