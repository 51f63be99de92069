//! Prefixes and the policy lookup: parsing, errors that name the text, longest
//! prefix wins (IPv4, IPv6, /0, host prefixes), unlisted = clear.

use std::net::IpAddr;

use oemesh_core::oe::{Cidr, CidrError, Group, GroupOptions, Policy, PolicyError, parse_list};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn cidr(s: &str) -> Cidr {
    s.parse().expect("test address")
}

#[test]
fn cidr_parses_and_prints() {
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(cidr(" 2001:db8::/32 ").to_string(), "2001:db8::/32");
    assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
    assert_eq!(cidr("::1").prefix_len(), 128);
    assert_eq!(cidr("0.0.0.0/0").prefix_len(), 0);
    assert!(cidr("0.0.0.0/0").is_default());
    assert!(cidr("10.0.0.0/8").contains(ip("10.255.0.1")));
    assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
    assert!(!cidr("::/0").contains(ip("10.0.0.1")));
}

#[test]
fn cidr_errors_name_the_text() {
    let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "`10.0.0.0/33`: prefix length 33 is longer than 32"
    );
    let e = "2001:db8::/129".parse::<Cidr>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "`2001:db8::/129`: prefix length 129 is longer than 128"
    );
    let e = "10.0.0.0/99999999999".parse::<Cidr>().unwrap_err();
    assert!(matches!(e, CidrError::TooLong { .. }), "{e}");
    let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "`10.0.0.1/8`: host bits are set (the network is 10.0.0.0/8)"
    );
    let e = "2001:db8::1/64".parse::<Cidr>().unwrap_err();
    assert!(matches!(e, CidrError::HostBitsSet { .. }));
    let e = "10.0.0/8".parse::<Cidr>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "`10.0.0/8`: `10.0.0` is not an IPv4 or IPv6 address"
    );
    for bad in [
        "10.0.0.0/",
        "10.0.0.0/x",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
    ] {
        let e = bad.parse::<Cidr>().unwrap_err();
        assert!(matches!(e, CidrError::BadLength { .. }), "{bad}: {e}");
    }
}

#[test]
fn truncating_and_new() {
    assert_eq!(Cidr::truncating(ip("10.1.2.3"), 8), cidr("10.0.0.0/8"));
    assert_eq!(Cidr::truncating(ip("10.1.2.3"), 40), cidr("10.1.2.3/32"));
    assert!(Cidr::new(ip("10.1.2.3"), 8).is_err());
    assert_eq!(Cidr::new(ip("10.0.0.0"), 8).unwrap(), cidr("10.0.0.0/8"));
}

#[test]
fn list_with_comments_and_line_numbers() {
    let list = parse_list("# private peers\n10.0.0.0/8\n\n  192.0.2.1 # one host\n").unwrap();
    assert_eq!(list, vec![cidr("10.0.0.0/8"), cidr("192.0.2.1/32")]);
    let e = parse_list("10.0.0.0/8\n10.0.0.0/33\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(
        e.to_string(),
        "line 2: `10.0.0.0/33`: prefix length 33 is longer than 32"
    );
}

fn policy(entries: &[(Group, &str)]) -> Policy {
    Policy::new(entries.iter().map(|(g, c)| (*g, cidr(c))), []).expect("test policy")
}

#[test]
fn longest_prefix_wins_ipv4() {
    let p = policy(&[
        (Group::PrivateOrClear, "0.0.0.0/0"),
        (Group::Private, "10.0.0.0/8"),
        (Group::Clear, "10.1.0.0/16"),
        (Group::Block, "10.1.2.3/32"),
        (Group::ClearOrPrivate, "10.1.2.0/24"),
    ]);
    let m = p.lookup(ip("192.0.2.1"));
    assert_eq!(
        (m.group, m.prefix),
        (Group::PrivateOrClear, Some(cidr("0.0.0.0/0")))
    );
    let m = p.lookup(ip("10.9.9.9"));
    assert_eq!(
        (m.group, m.prefix),
        (Group::Private, Some(cidr("10.0.0.0/8")))
    );
    let m = p.lookup(ip("10.1.9.9"));
    assert_eq!(
        (m.group, m.prefix),
        (Group::Clear, Some(cidr("10.1.0.0/16")))
    );
    let m = p.lookup(ip("10.1.2.4"));
    assert_eq!(
        (m.group, m.prefix),
        (Group::ClearOrPrivate, Some(cidr("10.1.2.0/24")))
    );
    let m = p.lookup(ip("10.1.2.3"));
    assert_eq!(
        (m.group, m.prefix),
        (Group::Block, Some(cidr("10.1.2.3/32")))
    );
    assert_eq!(m.to_string(), "block (10.1.2.3/32)");
    // /0 for IPv4 says nothing about IPv6.
    let m = p.lookup(ip("2001:db8::1"));
    assert_eq!((m.group, m.prefix), (Group::Clear, None));
    assert_eq!(m.to_string(), "clear (unlisted)");
}

#[test]
fn longest_prefix_wins_ipv6() {
    let p = policy(&[
        (Group::PrivateOrClear, "::/0"),
        (Group::Private, "2001:db8::/32"),
        (Group::Clear, "2001:db8:1::/48"),
        (Group::Block, "2001:db8:1::66/128"),
        (Group::ClearOrPrivate, "2001:db8:1:0:8000::/65"),
    ]);
    assert_eq!(p.lookup(ip("2001:db9::1")).group, Group::PrivateOrClear);
    assert_eq!(p.lookup(ip("2001:db8:2::1")).group, Group::Private);
    assert_eq!(p.lookup(ip("2001:db8:1::1")).group, Group::Clear);
    assert_eq!(p.lookup(ip("2001:db8:1::66")).group, Group::Block);
    assert_eq!(
        p.lookup(ip("2001:db8:1::8000:0:0:1")).group,
        Group::ClearOrPrivate
    );
    assert_eq!(
        p.lookup(ip("2001:db8:1::8000:0:0:1")).prefix,
        Some(cidr("2001:db8:1:0:8000::/65"))
    );
    // IPv4 is untouched by ::/0, and IPv4-mapped IPv6 is IPv6.
    assert_eq!(p.lookup(ip("10.0.0.1")).group, Group::Clear);
    let p = policy(&[(Group::Private, "10.0.0.0/8")]);
    assert_eq!(p.lookup(ip("::ffff:10.1.1.1")).group, Group::Clear);
}

#[test]
fn many_prefixes_against_a_linear_scan() {
    // 500 pseudo-random prefixes of assorted lengths, 2000 pseudo-random lookups.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut entries = Vec::new();
    for i in 0..500u64 {
        let addr = IpAddr::from((next() as u32 & 0x0fff_ffff).to_be_bytes());
        let len = (next() % 33) as u8;
        let group = Group::ALL[(i % 5) as usize];
        entries.push((group, Cidr::truncating(addr, len)));
        // The same shape in IPv6, in the top 32 bits.
        let v6 = IpAddr::from((u128::from(next() as u32 & 0x0fff_ffff) << 96).to_be_bytes());
        entries.push((group, Cidr::truncating(v6, (next() % 40) as u8)));
    }
    // Drop conflicting duplicates: first listing wins.
    let mut seen = std::collections::HashMap::new();
    entries.retain(|(g, c)| *seen.entry(*c).or_insert(*g) == *g);
    let p = Policy::new(entries.iter().copied(), []).unwrap();
    for i in 0..4000 {
        let r = next() as u32 & 0x0fff_ffff;
        let addr = if i % 2 == 0 {
            IpAddr::from(r.to_be_bytes())
        } else {
            IpAddr::from((u128::from(r) << 96 | u128::from(next())).to_be_bytes())
        };
        let expect = entries
            .iter()
            .filter(|(_, c)| c.contains(addr))
            .max_by_key(|(_, c)| c.prefix_len());
        let got = p.lookup(addr);
        assert_eq!(got.prefix, expect.map(|(_, c)| *c), "{addr}");
        assert_eq!(
            got.group,
            expect.map_or(Group::Clear, |(g, _)| *g),
            "{addr}"
        );
    }
}

#[test]
fn same_prefix_in_two_groups_is_an_error() {
    let e = Policy::new(
        [
            (Group::Private, cidr("10.0.0.0/8")),
            (Group::Clear, cidr("10.0.0.0/8")),
        ],
        [],
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::Conflict { .. }));
    assert_eq!(
        e.to_string(),
        "10.0.0.0/8 is listed in both `clear` and `private`"
    );
    // The same prefix twice in one group is fine.
    Policy::new(
        [
            (Group::Private, cidr("10.0.0.0/8")),
            (Group::Private, cidr("10.0.0.0/8")),
        ],
        [],
    )
    .unwrap();
}

#[test]
fn group_table_and_options() {
    let rows = [
        // group, initiates, answers, fails closed
        (Group::Clear, false, false, false),
        (Group::ClearOrPrivate, false, true, false),
        (Group::PrivateOrClear, true, true, false),
        (Group::Private, true, true, true),
        (Group::Block, false, false, true),
    ];
    for (g, initiates, answers, closed) in rows {
        assert_eq!(g.initiates(), initiates, "{g}");
        assert_eq!(g.answers(), answers, "{g}");
        assert_eq!(g.fails_closed(), closed, "{g}");
        assert_eq!(g.name().parse::<Group>().unwrap(), g);
    }
    assert!("private-or-block".parse::<Group>().is_err());
    let p = Policy::new(
        [(Group::Private, cidr("10.0.0.0/8"))],
        [(Group::Private, GroupOptions::REQUIRE_AUTHENTICATED)],
    )
    .unwrap();
    assert!(p.lookup(ip("10.0.0.1")).options.require_authenticated());
    assert!(p.options(Group::PrivateOrClear).allow_anonymous);
    assert_eq!(p.entries().count(), 1);
}

/// Lookup cost with 10 000 IPv4 and 10 000 IPv6 prefixes of assorted lengths.
/// `cargo test -p oemesh-core --test oe_policy -- --ignored --nocapture lookup_speed`
#[test]
#[ignore = "measurement, not a check"]
fn lookup_speed() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut entries = Vec::new();
    for _ in 0..10_000 {
        let v4 = IpAddr::from((next() as u32).to_be_bytes());
        entries.push((
            Group::Private,
            Cidr::truncating(v4, 8 + (next() % 25) as u8),
        ));
        let v6 = IpAddr::from((u128::from(next()) << 64 | u128::from(next())).to_be_bytes());
        entries.push((
            Group::Private,
            Cidr::truncating(v6, 16 + (next() % 113) as u8),
        ));
    }
    let p = Policy::new(entries, []).expect("one group");
    let addrs: Vec<IpAddr> = (0..1_000_000)
        .map(|i| {
            if i % 2 == 0 {
                IpAddr::from((next() as u32).to_be_bytes())
            } else {
                IpAddr::from((u128::from(next()) << 64 | u128::from(next())).to_be_bytes())
            }
        })
        .collect();
    let start = std::time::Instant::now();
    let hits = addrs
        .iter()
        .filter(|a| p.lookup(**a).prefix.is_some())
        .count();
    let elapsed = start.elapsed();
    println!(
        "{} lookups in {elapsed:?}: {:.0} ns each ({hits} matched)",
        addrs.len(),
        elapsed.as_nanos() as f64 / addrs.len() as f64
    );
}
