//! Gateways (issue 14) on the virtual clock: two nodes with `protects`, the
//! IPSECKEY records that send IKE for a host to its gateway, and the wildcard
//! that vouches for a whole site. What is checked is what each side installed:
//! the traffic selectors of its CHILD SA.

use oemesh_core::ike::message::AddrSelector;
use oemesh_core::ipseckey::wildcard_name;
use oemesh_core::oe::Cidr;

use super::*;

const GW_A: &str = "192.0.2.31";
const GW_B: &str = "192.0.2.32";
const SITE_A: (&str, u8) = ("10.1.0.0", 24);
const SITE_B: (&str, u8) = ("10.2.0.0", 24);
/// A host behind B, with no agent.
const B_HOST: &str = "10.2.0.7";

fn host(s: &str) -> AddrSelector {
    AddrSelector::host(ip(s))
}

fn subnet((s, len): (&str, u8)) -> AddrSelector {
    AddrSelector::subnet(ip(s), len)
}

fn v4(s: &str) -> Gateway {
    match ip(s) {
        IpAddr::V4(a) => Gateway::Ipv4(a),
        IpAddr::V6(_) => panic!("{s}"),
    }
}

/// Every address private-or-clear (both roles answer and initiate).
fn everywhere() -> oemesh_core::oe::Policy {
    oemesh_core::oe::Policy::new(
        [(Group::PrivateOrClear, "0.0.0.0/0".parse().unwrap())],
        [(Group::PrivateOrClear, GroupOptions::default())],
    )
    .unwrap()
}

/// A node at `addr` signing with key `seed`, protecting `protects`.
fn gateway(addr: &str, seed: u8, protects: &[(&str, u8)], now: Instant) -> Host {
    gateway_with(addr, seed, protects, everywhere(), now)
}

/// [`gateway`] with its own policy.
fn gateway_with(
    addr: &str,
    seed: u8,
    protects: &[(&str, u8)],
    policy: oemesh_core::oe::Policy,
    now: Instant,
) -> Host {
    gateway_configured(addr, seed, protects, policy, Config::default(), now)
}

/// [`gateway_with`] from `base` (its `protects` set from `protects`).
fn gateway_configured(
    addr: &str,
    seed: u8,
    protects: &[(&str, u8)],
    policy: oemesh_core::oe::Policy,
    base: Config,
    now: Instant,
) -> Host {
    let mut h = Host::new(addr, seed, false, now);
    let key = Ed25519SigningKey::from_seed(&[seed; 32]);
    let IpAddr::V4(a) = ip(addr) else { panic!() };
    let mut ike = IkeConfig::new(LocalAuth::Ed25519(key), Identity::Ipv4(a));
    ike.dpd_interval = None;
    ike.protects = protects.iter().map(|p| subnet(*p)).collect();
    let config = Config {
        protects: protects
            .iter()
            .map(|(s, len)| Cidr::new(ip(s), *len).unwrap())
            .collect(),
        ..base
    };
    let machine = Machine::new(config, policy);
    let node_config = NodeConfig {
        addresses: Addresses::one(ip(addr)),
        idle_timeout: IDLE,
    };
    h.node = Node::new(node_config, Endpoint::new(ike, [seed; 32]), machine, now);
    h
}

/// Everywhere private-or-clear but `prefix`, in `group`.
fn everywhere_but(group: Group, prefix: &str) -> oemesh_core::oe::Policy {
    oemesh_core::oe::Policy::new(
        [
            (Group::PrivateOrClear, "0.0.0.0/0".parse().unwrap()),
            (group, prefix.parse().unwrap()),
        ],
        [(Group::PrivateOrClear, GroupOptions::default())],
    )
    .unwrap()
}

/// Gateway A (key 31, site A) and gateway B (key 32, site B). A finds B_HOST's
/// record naming B; B finds A's own key at A's address. What B finds for
/// site A is up to each test.
fn sites() -> World {
    let now = Instant::now();
    let mut a = gateway(GW_A, 31, &[SITE_A], now);
    let b = gateway(GW_B, 32, &[SITE_B], now);
    a.dns.insert(
        reverse_name(ip(B_HOST)),
        records(vec![ed(10, v4(GW_B), 32)], false),
    );
    let mut w = World {
        net: Net::new(now),
        now,
        a,
        b,
    };
    w.b.dns.insert(
        reverse_name(ip(GW_A)),
        records(vec![ed(10, Gateway::None, 31)], false),
    );
    w.b.knows_no_key_at(wildcard_name(ip(SITE_A.0), SITE_A.1).unwrap());
    w.a.knows_no_key_at(wildcard_name(ip(SITE_B.0), SITE_B.1).unwrap());
    w.a.knows_no_key_at(reverse_name(ip(GW_B)));
    w
}

/// A's DNS: the wildcard of site B, with `records`.
fn site_b_wildcard(w: &mut World, records_: Vec<oemesh_core::ipseckey::Ipseckey>) {
    let name = wildcard_name(ip(SITE_B.0), SITE_B.1).unwrap();
    w.a.dns.insert(name, records(records_, false));
}

/// B's DNS: the wildcard of site A, with `records`.
fn site_a_wildcard(w: &mut World, records_: Vec<oemesh_core::ipseckey::Ipseckey>) {
    let name = wildcard_name(ip(SITE_A.0), SITE_A.1).unwrap();
    w.b.dns.insert(name, records(records_, false));
}

/// A packet from a host of site A to B_HOST reaches gateway A's TUN.
fn a_forwards(w: &mut World) {
    let fate =
        w.a.node
            .handle_packet(w.now, ip(B_HOST), b"from 10.1.0.10".to_vec());
    assert_eq!(fate, PacketFate::Held);
    w.settle();
}

fn only_child(h: &Host) -> &oemesh_core::ike::endpoint::ChildSa {
    let [c] = h.children.as_slice() else {
        panic!("{:#?}", h.did)
    };
    c
}

#[test]
fn site_to_site_carries_the_vouched_site_to_the_host_behind_the_far_gateway() {
    let mut w = sites();
    site_a_wildcard(&mut w, vec![ed(10, v4(GW_A), 31)]);
    a_forwards(&mut w);
    let a = only_child(&w.a);
    assert_eq!(a.local_ts, [host(GW_A), subnet(SITE_A)]);
    assert_eq!(a.remote_ts, [host(B_HOST)]);
    assert_eq!(a.remote.ip(), ip(GW_B));
    let b = only_child(&w.b);
    assert_eq!(b.remote_ts, [host(GW_A), subnet(SITE_A)]);
    // B answers for all it protects; A's DNS vouches for none of it beyond
    // the destination, so A's side keeps the destination only.
    assert_eq!(b.local_ts, [host(GW_B), subnet(SITE_B)]);
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!((outcome.dst, outcome.state), (ip(B_HOST), State::Private));
    assert_eq!(w.b.node.machine().counters().not_vouched, 0);
}

#[test]
fn the_initiator_widens_to_the_far_site_only_as_dns_vouches() {
    // Site B's wildcard names B with the key B signed with: A's CHILD SA
    // carries the whole site (one SA for every host there).
    let mut w = sites();
    site_a_wildcard(&mut w, vec![ed(10, v4(GW_A), 31)]);
    site_b_wildcard(&mut w, vec![ed(10, v4(GW_B), 32)]);
    a_forwards(&mut w);
    assert_eq!(only_child(&w.a).remote_ts, [subnet(SITE_B)]);
    assert_eq!(w.a.node.machine().counters().not_vouched, 0);
    // The same wildcard with another key, or naming another gateway, or
    // none: the destination only. B's own address is never A's to use.
    for record in [
        ed(10, v4(GW_B), 99),
        ed(10, v4("192.0.2.99"), 32),
        ed(10, Gateway::None, 32),
    ] {
        let mut w = sites();
        site_b_wildcard(&mut w, vec![record.clone()]);
        a_forwards(&mut w);
        assert_eq!(only_child(&w.a).remote_ts, [host(B_HOST)], "{record:?}");
        assert_eq!(only_child(&w.a).remote.ip(), ip(GW_B));
    }
}

#[test]
fn a_far_site_in_a_group_that_does_not_do_oe_is_not_taken() {
    // A's policy keeps site B's upper half clear: the wildcard vouches, but
    // A will not send there through B, so the site is narrowed away.
    let now = Instant::now();
    let mut w = sites();
    let policy = everywhere_but(Group::Clear, "10.2.0.128/25");
    let dns = std::mem::take(&mut w.a.dns);
    w.a = gateway_with(GW_A, 31, &[SITE_A], policy, now);
    w.a.dns = dns;
    site_b_wildcard(&mut w, vec![ed(10, v4(GW_B), 32)]);
    a_forwards(&mut w);
    assert_eq!(only_child(&w.a).remote_ts, [host(B_HOST)]);
    assert_eq!(w.a.node.machine().counters().not_vouched, 1);
}

#[test]
fn without_a_wildcard_for_its_site_the_initiator_speaks_for_itself_only() {
    let mut w = sites();
    a_forwards(&mut w);
    assert_eq!(only_child(&w.b).remote_ts, [host(GW_A)]);
    assert_eq!(only_child(&w.a).local_ts, [host(GW_A)]);
}

#[test]
fn a_wildcard_with_another_key_or_naming_another_gateway_vouches_for_nothing() {
    for record in [
        ed(10, v4(GW_A), 99),
        ed(10, v4("192.0.2.99"), 31),
        ed(10, Gateway::None, 31),
    ] {
        let mut w = sites();
        site_a_wildcard(&mut w, vec![record.clone()]);
        a_forwards(&mut w);
        assert_eq!(only_child(&w.b).remote_ts, [host(GW_A)], "{record:?}");
    }
}

#[test]
fn a_gateway_with_only_a_wildcard_gets_its_site_but_not_its_own_address() {
    let mut w = sites();
    w.b.knows_no_key_at(reverse_name(ip(GW_A)));
    site_a_wildcard(&mut w, vec![ed(10, v4(GW_A), 31)]);
    a_forwards(&mut w);
    assert_eq!(only_child(&w.b).remote_ts, [subnet(SITE_A)]);
    assert_eq!(only_child(&w.a).local_ts, [subnet(SITE_A)]);
}

#[test]
fn a_site_that_contains_its_gateway_is_not_vouched_for_and_counted() {
    // A lying gateway claims the whole WAN, and B's DNS even has a wildcard
    // for it: a gateway is not behind itself.
    let now = Instant::now();
    let wan = ("192.0.2.0", 24);
    let mut w = sites();
    w.a = gateway(GW_A, 31, &[wan], now);
    w.a.dns.insert(
        reverse_name(ip("192.0.2.77")),
        records(vec![ed(10, v4(GW_B), 32)], false),
    );
    w.b.dns.insert(
        wildcard_name(ip(wan.0), wan.1).unwrap(),
        records(vec![ed(10, v4(GW_A), 31)], false),
    );
    // B protects only its site: aim at a host there instead.
    w.a.dns.insert(
        reverse_name(ip(B_HOST)),
        records(vec![ed(10, v4(GW_B), 32)], false),
    );
    a_forwards(&mut w);
    assert_eq!(only_child(&w.b).remote_ts, [host(GW_A)]);
    assert_eq!(w.b.node.machine().counters().not_vouched, 1);
}

#[test]
fn a_gateway_refuses_a_host_outside_what_it_protects() {
    let mut w = sites();
    // A record names B as the gateway of a host B does not protect.
    let outside = "10.9.0.1";
    w.a.dns.insert(
        reverse_name(ip(outside)),
        records(vec![ed(10, v4(GW_B), 32)], false),
    );
    let fate = w.a.node.handle_packet(w.now, ip(outside), b"x".to_vec());
    assert_eq!(fate, PacketFate::Held);
    w.settle();
    assert!(w.a.children.is_empty() && w.b.children.is_empty());
    // Logged with what was proposed and what B answers for.
    let refused: Vec<&String> =
        w.b.did
            .iter()
            .filter_map(|d| match d {
                Did::ChildRefused(r) => Some(r),
                _ => None,
            })
            .collect();
    assert_eq!(
        refused,
        [&"traffic selectors unacceptable: it proposed TSi 192.0.2.31, 10.1.0.0/24 and TSr 10.9.0.1, 0.0.0.0/0; this host answers for 192.0.2.32, 10.2.0.0/24".to_owned()]
    );
    assert_eq!(
        w.b.node.endpoint().stats().ts_refused,
        1,
        "{:?} {:#?}",
        w.a.outcomes,
        w.b.did
    );
    let [outcome] = w.a.outcomes.as_slice() else {
        panic!("{:?}", w.a.outcomes)
    };
    assert_eq!(outcome.state, State::Clear);
}

#[test]
fn a_lone_host_reaches_a_host_behind_a_gateway() {
    // An end host (no `protects`) and gateway B: TSi is the host alone.
    let now = Instant::now();
    let mut w = sites();
    w.a = gateway("192.0.2.40", 40, &[], now);
    w.a.knows_no_key_at(wildcard_name(ip(SITE_B.0), SITE_B.1).unwrap());
    w.a.knows_no_key_at(reverse_name(ip(GW_B)));
    w.a.dns.insert(
        reverse_name(ip(B_HOST)),
        records(vec![ed(10, v4(GW_B), 32)], false),
    );
    w.b.dns.insert(
        reverse_name(ip("192.0.2.40")),
        records(vec![ed(10, Gateway::None, 40)], false),
    );
    a_forwards(&mut w);
    assert_eq!(only_child(&w.a).local_ts, [host("192.0.2.40")]);
    assert_eq!(only_child(&w.a).remote_ts, [host(B_HOST)]);
    assert_eq!(only_child(&w.b).local_ts, [host(GW_B), subnet(SITE_B)]);
    assert_eq!(only_child(&w.b).remote_ts, [host("192.0.2.40")]);
}

#[test]
fn a_child_rekey_by_either_side_keeps_the_site_selectors() {
    for responder_rekeys in [false, true] {
        let mut w = sites();
        site_a_wildcard(&mut w, vec![ed(10, v4(GW_A), 31)]);
        a_forwards(&mut w);
        let soft = oemesh_core::esp::LifetimeEvent::SoftExpired;
        let rekeyer = if responder_rekeys { &mut w.b } else { &mut w.a };
        let [(sa, old)] = rekeyer.installed[..] else {
            panic!("{:?}", rekeyer.installed)
        };
        rekeyer.node.handle_lifetime(w.now, sa, old, soft);
        w.settle();
        let (a, b) = (&w.a.children, &w.b.children);
        assert_eq!((a.len(), b.len()), (2, 2), "{:#?}", w.b.did);
        assert_eq!(a[1].local_ts, [host(GW_A), subnet(SITE_A)]);
        assert_eq!(a[1].remote_ts, [host(B_HOST)]);
        assert_eq!(b[1].remote_ts, [host(GW_A), subnet(SITE_A)]);
        // B's first answer was wider than A took; the rekey, by either
        // side, settles on what A took.
        assert_eq!(b[1].local_ts, [host(B_HOST)]);
    }
}

#[test]
fn a_gateways_key_does_not_sign_for_a_host_behind_it() {
    // Gateway A (key 31) sits on the path of its host 10.1.0.11, whose
    // record names A: A speaks IKE from the host's address with its own key,
    // to pose as the host end to end (nested OE is defence against insiders).
    let now = Instant::now();
    let inside = "10.1.0.11";
    let mut w = sites();
    w.a = gateway(inside, 31, &[], now);
    w.b = gateway("192.0.2.40", 40, &[], now);
    w.a.dns.insert(
        reverse_name(ip("192.0.2.40")),
        records(vec![ed(10, Gateway::None, 40)], false),
    );
    w.b.dns.insert(
        reverse_name(ip(inside)),
        records(vec![ed(10, v4(GW_A), 31)], false),
    );
    let fate =
        w.a.node
            .handle_packet(w.now, ip("192.0.2.40"), b"x".to_vec());
    assert_eq!(fate, PacketFate::Held);
    w.settle();
    assert!(w.b.children.is_empty(), "{:#?}", w.b.did);
    assert!(w.a.children.is_empty());
    // With its own key published beside the gateway's, the host signs.
    let mut w2 = sites();
    w2.a = gateway(inside, 11, &[], now);
    w2.b = gateway("192.0.2.40", 40, &[], now);
    w2.a.dns.insert(
        reverse_name(ip("192.0.2.40")),
        records(vec![ed(10, Gateway::None, 40)], false),
    );
    w2.b.dns.insert(
        reverse_name(ip(inside)),
        records(vec![ed(5, Gateway::None, 11), ed(10, v4(GW_A), 31)], false),
    );
    w2.a.node
        .handle_packet(w2.now, ip("192.0.2.40"), b"x".to_vec());
    w2.settle();
    assert_eq!(only_child(&w2.b).remote_ts, [host(inside)]);
}

#[test]
fn two_destinations_behind_one_gateway_keep_two_ike_sas() {
    // One IKE SA per destination: the second must not tell the far gateway
    // (INITIAL_CONTACT) to drop the first.
    let mut w = sites();
    site_a_wildcard(&mut w, vec![ed(10, v4(GW_A), 31)]);
    let second = "10.2.0.8";
    w.a.dns.insert(
        reverse_name(ip(second)),
        records(vec![ed(10, v4(GW_B), 32)], false),
    );
    a_forwards(&mut w);
    let fate = w.a.node.handle_packet(w.now, ip(second), b"y".to_vec());
    assert_eq!(fate, PacketFate::Held);
    w.settle();
    assert_eq!(w.b.node.endpoint().stats().ike_sas, 2);
    assert_eq!(w.a.node.endpoint().stats().ike_sas, 2);
    assert_eq!(w.b.node.endpoint().stats().initial_contact_replaced, 0);
    assert_eq!(w.a.children.len(), 2);
    assert!(!w.b.did.iter().any(|d| matches!(d, Did::Remove { .. })));
}

#[test]
fn a_site_in_a_group_that_does_not_answer_oe_is_not_vouched_for() {
    // B blocks site A: its wildcard vouches, but B's policy does not answer
    // OE for those sources, so they are no selector of B's SA.
    let now = Instant::now();
    let mut w = sites();
    let policy = everywhere_but(Group::Block, "10.1.0.0/24");
    let dns = std::mem::take(&mut w.b.dns);
    w.b = gateway_with(GW_B, 32, &[SITE_B], policy, now);
    w.b.dns = dns;
    site_a_wildcard(&mut w, vec![ed(10, v4(GW_A), 31)]);
    a_forwards(&mut w);
    assert_eq!(only_child(&w.b).remote_ts, [host(GW_A)]);
    assert_eq!(w.b.node.machine().counters().not_vouched, 1);
}

#[test]
fn a_far_site_off_a_label_boundary_is_narrowed_away_and_counted() {
    // B protects a /23: no reverse zone of its own, so no record can vouch
    // for it, and A says so rather than dropping it silently.
    let now = Instant::now();
    let mut w = sites();
    let dns = std::mem::take(&mut w.b.dns);
    w.b = gateway(GW_B, 32, &[("10.2.0.0", 23)], now);
    w.b.dns = dns;
    a_forwards(&mut w);
    assert_eq!(only_child(&w.a).remote_ts, [host(B_HOST)]);
    assert_eq!(w.a.node.machine().counters().not_vouched, 1);
    assert!(
        w.a.did
            .iter()
            .any(|d| matches!(d, Did::NotVouched(l) if l.contains("10.2.0.0/23: no reverse zone"))),
        "{:#?}",
        w.a.did
    );
}

#[test]
fn the_far_gateways_own_address_is_taken_only_with_its_own_key() {
    // B answers for itself beside its site. A takes B's own address only
    // when the record at B's name is B's own (no gateway) with the key B
    // signed with: B's own traffic to A may then use the SA; else it is
    // narrowed away, logged and counted, in rekeys too.
    let mut w = sites();
    site_b_wildcard(&mut w, vec![ed(10, v4(GW_B), 32)]);
    w.a.dns.insert(
        reverse_name(ip(GW_B)),
        records(vec![ed(10, Gateway::None, 32)], false),
    );
    a_forwards(&mut w);
    assert_eq!(only_child(&w.a).remote_ts, [host(GW_B), subnet(SITE_B)]);
    assert_eq!(w.a.node.machine().counters().not_vouched, 0);
    for record in [ed(10, Gateway::None, 99), ed(10, v4("192.0.2.99"), 32)] {
        let mut w = sites();
        site_b_wildcard(&mut w, vec![ed(10, v4(GW_B), 32)]);
        w.a.dns
            .insert(reverse_name(ip(GW_B)), records(vec![record.clone()], false));
        a_forwards(&mut w);
        assert_eq!(only_child(&w.a).remote_ts, [subnet(SITE_B)], "{record:?}");
        // A record naming another gateway is no key of B's own, and A says
        // so (one with another key vouches, but not for the key B signed with).
        let said =
            w.a.did
                .iter()
                .any(|d| matches!(d, Did::NotVouched(l) if l.contains("of 192.0.2.32 itself")));
        assert_eq!(
            said,
            record.gateway != Gateway::None,
            "{record:?}: {:#?}",
            w.a.did
        );
        // B rekeys, naming itself again: A narrows it away again.
        let soft = oemesh_core::esp::LifetimeEvent::SoftExpired;
        let [(sa, old)] = w.b.installed[..] else {
            panic!("{:?}", w.b.installed)
        };
        w.b.node.handle_lifetime(w.now, sa, old, soft);
        w.settle();
        assert_eq!(w.a.children[1].remote_ts, [subnet(SITE_B)]);
        assert_eq!(w.b.children[1].local_ts, [subnet(SITE_B)]);
    }
}

#[test]
fn an_attempt_that_ends_while_dns_vouches_stops_its_lookups() {
    // Site B's wildcard never answers: A holds B's authenticated answer
    // until the attempt's deadline, fails it, and cancels the lookup rather
    // than leaving it waiting.
    // A DNS timeout longer than the IKE one, so that the attempt ends first.
    let now = Instant::now();
    let mut w = sites();
    let slow_dns = Config {
        dns_timeout: Duration::from_secs(10),
        ike_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let mut dns = std::mem::take(&mut w.a.dns);
    w.a = gateway_configured(GW_A, 31, &[SITE_A], everywhere(), slow_dns, now);
    let wildcard = wildcard_name(ip(SITE_B.0), SITE_B.1).unwrap();
    dns.remove(&wildcard);
    w.a.dns = dns;
    a_forwards(&mut w);
    assert!(w.a.children.is_empty(), "{:#?}", w.a.did);
    // Past the attempt's deadline, well before the lookup's own.
    w.advance(Duration::from_secs(3));
    assert!(
        w.a.did
            .iter()
            .any(|d| matches!(d, Did::CancelLookup(n) if *n == wildcard)),
        "{:#?}",
        w.a.did
    );
}
