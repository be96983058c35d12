//! Every default range and its edges, the embedded IPv4 forms, and the operator's ranges.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (address, denied by default?, the range that denies it)
const TABLE: &[(&str, bool, &str)] = &[
    ("0.0.0.0", true, "0.0.0.0/8"),
    ("0.255.255.255", true, "0.0.0.0/8"),
    ("1.0.0.0", false, ""),
    ("9.255.255.255", false, ""),
    ("10.0.0.0", true, "10.0.0.0/8"),
    ("10.255.255.255", true, "10.0.0.0/8"),
    ("11.0.0.0", false, ""),
    ("100.63.255.255", false, ""),
    ("100.64.0.0", true, "100.64.0.0/10"),
    ("100.127.255.255", true, "100.64.0.0/10"),
    ("100.128.0.0", false, ""),
    ("126.255.255.255", false, ""),
    ("127.0.0.1", true, "127.0.0.0/8"),
    ("127.255.255.255", true, "127.0.0.0/8"),
    ("128.0.0.0", false, ""),
    ("169.253.255.255", false, ""),
    ("169.254.169.254", true, "169.254.0.0/16"),
    ("169.255.0.0", false, ""),
    ("172.15.255.255", false, ""),
    ("172.16.0.0", true, "172.16.0.0/12"),
    ("172.31.255.255", true, "172.16.0.0/12"),
    ("172.32.0.0", false, ""),
    ("192.0.0.8", true, "192.0.0.0/24"),
    ("192.0.1.0", false, ""),
    ("192.0.2.1", true, "192.0.2.0/24"),
    ("192.88.99.1", true, "192.88.99.0/24"),
    ("192.167.255.255", false, ""),
    ("192.168.0.0", true, "192.168.0.0/16"),
    ("192.168.255.255", true, "192.168.0.0/16"),
    ("192.169.0.0", false, ""),
    ("198.17.255.255", false, ""),
    ("198.18.0.0", true, "198.18.0.0/15"),
    ("198.19.255.255", true, "198.18.0.0/15"),
    ("198.20.0.0", false, ""),
    ("198.51.100.7", true, "198.51.100.0/24"),
    ("203.0.113.255", true, "203.0.113.0/24"),
    ("223.255.255.255", false, ""),
    ("224.0.0.1", true, "224.0.0.0/4"),
    ("239.255.255.255", true, "224.0.0.0/4"),
    ("240.0.0.1", true, "240.0.0.0/4"),
    ("255.255.255.255", true, "255.255.255.255/32"),
    ("8.8.8.8", false, ""),
    ("::", true, "::/128"),
    ("::1", true, "::1/128"),
    ("::2", true, "0.0.0.0/8"),
    ("2606:4700::1111", false, ""),
    ("64:ff9b:1::1", true, "64:ff9b:1::/48"),
    ("100::1", true, "100::/64"),
    ("2001:db8::1", true, "2001:db8::/32"),
    ("2001::1", true, "2001::/23"),
    ("2001:200::1", false, ""),
    ("3fff::1", true, "3fff::/20"),
    ("fbff:ffff::1", false, ""),
    ("fc00::1", true, "fc00::/7"),
    ("fdff:ffff::1", true, "fc00::/7"),
    ("fe00::1", false, ""),
    ("fe80::1", true, "fe80::/10"),
    ("febf::1", true, "fe80::/10"),
    ("fec0::1", true, "fec0::/10"),
    ("ff02::1", true, "ff00::/8"),
    // IPv4 inside IPv6: denied when the IPv4 address is.
    ("::ffff:127.0.0.1", true, "127.0.0.0/8"),
    ("::ffff:169.254.169.254", true, "169.254.0.0/16"),
    ("::ffff:8.8.8.8", false, ""),
    ("::10.0.0.5", true, "10.0.0.0/8"),
    ("::8.8.8.8", false, ""),
    ("2002:7f00:1::", true, "127.0.0.0/8"),
    ("2002:a9fe:a9fe::1", true, "169.254.0.0/16"),
    ("2002:808:808::1", false, ""),
    ("64:ff9b::10.1.2.3", true, "10.0.0.0/8"),
    ("64:ff9b::192.168.1.1", true, "192.168.0.0/16"),
    ("64:ff9b::8.8.8.8", false, ""),
];

#[test]
fn every_default_range_and_its_edges() {
    let policy = Policy::default();
    for (addr, denied, range) in TABLE {
        let got = policy.check(ip(addr), false);
        assert_eq!(got.is_err(), *denied, "{addr}: {got:?}");
        if let Err(d) = got {
            assert_eq!(d.range.to_string(), *range, "{addr}");
        }
    }
}

#[test]
fn allow_private_opens_internal_networks_not_metadata_or_special_ranges() {
    let p = Policy::default();
    for addr in [
        "10.1.2.3",
        "127.0.0.1",
        "::1",
        "172.16.5.5",
        "100.64.1.1",
        "fd00::1",
        "::ffff:192.168.1.1",
    ] {
        assert_eq!(p.check(ip(addr), true), Ok(()), "{addr}");
    }
    for addr in [
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.1",
        "192.0.2.1",
        "::ffff:169.254.169.254",
    ] {
        assert!(p.check(ip(addr), true).is_err(), "{addr}");
    }
}

#[test]
fn the_operators_ranges_open_and_close_and_deny_wins() {
    let p = Policy {
        allow: ranges(&[
            "10.20.0.0/16".into(),
            "127.0.0.1".into(),
            "169.254.169.254/32".into(),
        ])
        .unwrap(),
        deny: ranges(&["10.20.9.0/24".into(), "8.8.8.0/24".into()]).unwrap(),
    };
    assert_eq!(p.check(ip("10.20.1.1"), false), Ok(()));
    assert_eq!(
        p.check(ip("::ffff:10.20.1.1"), false),
        Ok(()),
        "mapped form of an allowed address"
    );
    assert_eq!(p.check(ip("127.0.0.1"), false), Ok(()));
    assert!(
        p.check(ip("127.0.0.2"), false).is_err(),
        "only the address given"
    );
    assert_eq!(p.check(ip("169.254.169.254"), false), Ok(()));
    let d = p.check(ip("10.20.9.9"), true).unwrap_err();
    assert_eq!(d.to_string(), "10.20.9.9 is in egress.deny (10.20.9.0/24)");
    assert!(p.check(ip("8.8.8.8"), false).is_err());
    assert!(
        p.check(ip("::ffff:8.8.8.8"), false).is_err(),
        "mapped form of a denied address"
    );
    assert!(p.check(ip("10.21.0.1"), false).is_err());
}

#[test]
fn messages_name_the_address_and_the_range() {
    let p = Policy::default();
    assert_eq!(
        p.check(ip("10.0.0.5"), false).unwrap_err().to_string(),
        "10.0.0.5 is private (10.0.0.0/8)"
    );
    assert_eq!(
        p.check(ip("::ffff:169.254.169.254"), false).unwrap_err().to_string(),
        "::ffff:169.254.169.254 (which embeds 169.254.169.254) is link-local (cloud metadata) (169.254.0.0/16)"
    );
}

#[test]
fn literals_in_urls() {
    assert_eq!(literal("http://10.0.0.5:6379/x"), Some(ip("10.0.0.5")));
    assert_eq!(literal("https://[::1]:8443/"), Some(ip("::1")));
    assert_eq!(literal("https://example.com/"), None);
    // Numeric forms the system resolver turns into addresses.
    for (url, ip_) in [
        ("http://127.1/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://0xa9fea9fe/", "169.254.169.254"),
        ("http://10.1/", "10.0.0.1"),
    ] {
        assert_eq!(literal(url), Some(ip(ip_)), "{url}");
    }
    for name in [
        "http://a.1/",
        "http://1.2.3.4.5/",
        "http://256.1.1.1/",
        "http://1.2.3.256/",
        "http://deadbeef/",
    ] {
        assert_eq!(literal(name), None, "{name}");
    }
    let p = Policy::default();
    assert!(p
        .check_url("http://169.254.169.254/latest/meta-data/", false)
        .is_err());
    assert_eq!(p.check_url("https://example.com/", false), Ok(()));
    assert!(ranges(&["10.0.0.0/33".into()]).is_err());
    assert!(ranges(&["nonsense".into()]).is_err());
}

#[test]
fn proxy_urls() {
    let p = ProxyUrl::parse("http://user:pw@proxy.internal:3128/").unwrap();
    assert_eq!(
        (p.scheme.as_str(), p.host.as_str(), p.port),
        ("http", "proxy.internal", 3128)
    );
    assert_eq!(
        p.to_string(),
        "http://user:***@proxy.internal:3128",
        "no password shown"
    );
    assert_eq!(
        ProxyUrl::parse("socks5h://[::1]:1080").unwrap().authority(),
        "[::1]:1080"
    );
    for bad in [
        "proxy:3128",
        "ftp://p:21",
        "http://p",
        "http://p:0",
        "http://:3128",
        "http://p:3128/x",
    ] {
        assert!(ProxyUrl::parse(bad).is_err(), "{bad}");
    }
}
