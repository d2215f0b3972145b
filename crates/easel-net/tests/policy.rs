//! The address policy: every special-purpose range of both registries refused (its first and
//! last address, and the neighbours outside it accepted), embedded IPv4 judged as IPv4, the
//! allow-list, and URLs resolved and checked.

use std::net::IpAddr;

use easel_net::{is_public, special_purpose, Allow, Policy, Refused};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn every_ipv4_special_range_is_refused_at_both_ends() {
    // (first, last, the address before, the address after): neighbours are public unless
    // another range starts there (then `None`).
    let ranges = [
        ("0.0.0.0", "0.255.255.255", None, Some("1.0.0.0")),
        (
            "10.0.0.0",
            "10.255.255.255",
            Some("9.255.255.255"),
            Some("11.0.0.0"),
        ),
        (
            "100.64.0.0",
            "100.127.255.255",
            Some("100.63.255.255"),
            Some("100.128.0.0"),
        ),
        (
            "127.0.0.0",
            "127.255.255.255",
            Some("126.255.255.255"),
            Some("128.0.0.0"),
        ),
        (
            "169.254.0.0",
            "169.254.255.255",
            Some("169.253.255.255"),
            Some("169.255.0.0"),
        ),
        (
            "172.16.0.0",
            "172.31.255.255",
            Some("172.15.255.255"),
            Some("172.32.0.0"),
        ),
        (
            "192.0.0.0",
            "192.0.0.255",
            Some("191.255.255.255"),
            Some("192.0.1.0"),
        ),
        (
            "192.0.2.0",
            "192.0.2.255",
            Some("192.0.1.255"),
            Some("192.0.3.0"),
        ),
        (
            "192.88.99.0",
            "192.88.99.255",
            Some("192.88.98.255"),
            Some("192.88.100.0"),
        ),
        (
            "192.168.0.0",
            "192.168.255.255",
            Some("192.167.255.255"),
            Some("192.169.0.0"),
        ),
        (
            "198.18.0.0",
            "198.19.255.255",
            Some("198.17.255.255"),
            Some("198.20.0.0"),
        ),
        (
            "198.51.100.0",
            "198.51.100.255",
            Some("198.51.99.255"),
            Some("198.51.101.0"),
        ),
        (
            "203.0.113.0",
            "203.0.113.255",
            Some("203.0.112.255"),
            Some("203.0.114.0"),
        ),
        (
            "224.0.0.0",
            "239.255.255.255",
            Some("223.255.255.255"),
            None,
        ),
        ("240.0.0.0", "255.255.255.255", None, None),
    ];
    for (first, last, before, after) in ranges {
        for a in [first, last] {
            assert!(!is_public(ip(a)), "{a} must be refused");
        }
        for a in [before, after].into_iter().flatten() {
            assert!(is_public(ip(a)), "{a} must be public");
        }
    }
    assert_eq!(
        special_purpose(ip("169.254.169.254")),
        Some("link local (cloud metadata)")
    );
    for a in [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "192.31.196.1",
        "192.175.48.1",
    ] {
        assert!(is_public(ip(a)), "{a}");
    }
}

#[test]
fn every_ipv6_special_range_is_refused_at_both_ends() {
    let ranges = [
        ("::", "::ffff:ffff", None),
        (
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            Some("64:ff9b:2::"),
        ),
        ("100::", "100::ffff:ffff:ffff:ffff", None),
        (
            "100:0:0:1::",
            "100:0:0:1:ffff:ffff:ffff:ffff",
            Some("100:0:0:2::"),
        ),
        (
            "2001::",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("2001:200::"),
        ),
        (
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("2001:db9::"),
        ),
        (
            "3fff::",
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("3fff:1000::"),
        ),
        (
            "5f00::",
            "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("5f01::"),
        ),
        (
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ),
        (
            "fe80::",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Some("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ),
        ("fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
        ("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
    ];
    for (first, last, outside) in ranges {
        for a in [first, last] {
            assert!(!is_public(ip(a)), "{a} must be refused");
        }
        if let Some(a) = outside {
            assert!(is_public(ip(a)), "{a} must be public");
        }
    }
    for a in [
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2a00:1450::1",
    ] {
        assert!(is_public(ip(a)), "{a}");
    }
}

#[test]
fn embedded_ipv4_is_judged_as_ipv4() {
    // Mapped, translated (SIIT), NAT64 and 6to4 forms of a metadata, loopback, private and
    // benchmarking address are refused; the same forms of a public address pass.
    for v4 in [
        "169.254.169.254",
        "127.0.0.1",
        "10.0.0.1",
        "198.18.0.1",
        "0.0.0.0",
    ] {
        let o: Vec<u8> = v4.split('.').map(|p| p.parse().unwrap()).collect();
        let hi = format!("{:x}", (o[0] as u16) << 8 | o[1] as u16);
        let lo = format!("{:x}", (o[2] as u16) << 8 | o[3] as u16);
        for form in [
            format!("::ffff:{v4}"),
            format!("::ffff:0:{v4}"),
            format!("64:ff9b::{v4}"),
            format!("2002:{hi}:{lo}::1"),
        ] {
            assert!(!is_public(ip(&form)), "{form} embeds {v4}");
        }
    }
    for form in [
        "::ffff:8.8.8.8",
        "::ffff:0:8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
    ] {
        assert!(is_public(ip(form)), "{form} embeds 8.8.8.8");
    }
    // IPv4-compatible addresses are deprecated: refused whatever they embed.
    assert!(!is_public(ip("::8.8.8.8")));
}

#[test]
fn the_allow_list_admits_networks_and_host_names() {
    let allow = Allow::parse_list("10.1.0.0/16, 127.0.0.1 ,hooks.Internal.,fd00::/8").unwrap();
    assert_eq!(allow.len(), 4);
    let p = Policy::allowing(allow);
    assert!(p.permits("x", ip("10.1.2.3")));
    assert!(
        p.permits("x", ip("::ffff:10.1.2.3")),
        "embedded forms match IPv4 entries"
    );
    assert!(!p.permits("x", ip("10.2.0.1")));
    assert!(p.permits("x", ip("127.0.0.1")));
    assert!(!p.permits("x", ip("127.0.0.2")));
    assert!(p.permits("fd00::1", ip("fd00::1")));
    assert!(
        p.permits("HOOKS.internal", ip("192.168.1.1")),
        "host names, case-insensitive"
    );
    assert!(!p.permits("other.internal", ip("192.168.1.1")));
    assert!(
        p.permits("x", ip("8.8.8.8")),
        "public addresses stay permitted"
    );
    assert!(Policy::any().permits("x", ip("127.0.0.1")));
    assert!(!Policy::public().permits("localhost", ip("127.0.0.1")));
    for bad in ["10.0.0.0/33", "a b", "http://x", "x/y", ""] {
        assert!(Allow::parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn urls_are_resolved_and_every_address_checked() {
    let url = |s: &str| url::Url::parse(s).unwrap();
    let public = Policy::public();
    for u in [
        "http://127.0.0.1:7878/v1/keys",
        "http://[::1]/",
        "http://localhost:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://0x7f.1/",
        "http://2130706433/",
    ] {
        match public.resolve(&url(u)).await {
            Err(Refused::NotPublic { .. }) => {}
            other => panic!("{u}: {other:?}"),
        }
    }
    assert_eq!(
        public
            .resolve(&url("ftp://example.com/"))
            .await
            .unwrap_err(),
        Refused::Scheme
    );
    let t = public.resolve(&url("http://8.8.8.8:8080/x")).await.unwrap();
    assert_eq!(t.addrs, ["8.8.8.8:8080".parse().unwrap()]);
    // Loopback allowed by network: resolved, checked and pinned.
    let t = Policy::allowing(vec![Allow::parse("127.0.0.0/8").unwrap()])
        .resolve(&url("http://127.0.0.1:9/"))
        .await
        .unwrap();
    assert!(t.addrs.iter().all(|a| a.ip().is_loopback()));
    // A host name the operator allows is trusted as it is: not even looked up.
    let t = Policy::allowing(vec![Allow::parse("hooks.test").unwrap()])
        .resolve(&url("http://hooks.test:9/"))
        .await
        .unwrap();
    assert!(t.addrs.is_empty());
    let err = public
        .resolve(&url("http://localhost/"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("localhost resolves to a loopback"),
        "no address named: {err}"
    );
    let err = Policy::public()
        .resolve(&url("http://127.0.0.1/"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-public"), "{err}");
}
