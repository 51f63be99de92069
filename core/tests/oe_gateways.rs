//! Gateways in the outbound decision (issue 14 parts 3 and 6): which records a
//! host and a gateway try first, and gateways named by domain name, resolved
//! to an address with the key's DNSSEC rules. All on a virtual clock.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod oe_common;

use std::net::IpAddr;

use oe_common::*;
use oemesh_core::ipseckey::{DomainName, Gateway};
use oemesh_core::oe::outcome::AttemptPeer;
use oemesh_core::oe::{
    Action, AddressResult, Cause, Config, DnsFailure, DnsResult, Dnssec, Group, GroupOptions,
    IkeResult, Machine, NoRecord, PeerKey, State,
};

/// One instant for everything (`now()` reads the clock at each call).
fn now() -> std::time::Instant {
    static NOW: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *NOW.get_or_init(t0)
}

fn gw_name() -> DomainName {
    DomainName::from_ascii("gw.example.").unwrap()
}

fn keyed(records: Vec<oemesh_core::ipseckey::Ipseckey>, dnssec: Dnssec) -> DnsResult {
    DnsResult::Records {
        records,
        dnssec,
        ttl: 3600,
    }
}

fn addresses(addrs: &[&str], validated: bool) -> AddressResult {
    AddressResult::Addresses {
        addrs: addrs.iter().map(|a| ip(a)).collect(),
        dnssec_validated: validated,
    }
}

/// A packet to `dst` and the IPSECKEY answer; the actions that follow.
fn answer(m: &mut Machine, dst: IpAddr, result: DnsResult) -> Vec<Action> {
    let now = now();
    m.on_packet(now, dst, b"a".to_vec());
    let Some(Action::LookupKey { name, .. }) = m.poll_action() else {
        panic!("no key lookup")
    };
    m.on_dns_result(now, &name, result);
    drain(m)
}

fn established(
    m: &mut Machine,
    dst: IpAddr,
    peer: IpAddr,
    dnssec: bool,
) -> oemesh_core::oe::Outcome {
    let result = IkeResult::Established {
        anonymous: false,
        dnssec,
        lookup_failed: false,
    };
    m.on_ike_result(now(), dst, peer, result);
    let actions = drain(m);
    let [Action::Private { outcome, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    outcome.clone()
}

/// The nested scenario: the destination publishes its own key (precedence 5)
/// and a record naming its site's gateway (precedence 10).
fn nested() -> Vec<oemesh_core::ipseckey::Ipseckey> {
    vec![
        ed(10, Gateway::Ipv4("192.0.2.1".parse().unwrap()), 2),
        ed(5, Gateway::None, 1),
    ]
}

#[test]
fn a_host_goes_direct_and_a_gateway_goes_gateway_to_gateway() {
    let dst = ip("10.0.2.50");
    let mut host = machine();
    let actions = answer(&mut host, dst, records(nested(), true));
    let [Action::StartIke { peer_addr, key, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!((*peer_addr, key), (dst, &PeerKey::Ed25519(vec![pk(1)])));

    let config = Config {
        protects: vec!["10.9.0.0/24".parse().unwrap()],
        ..Config::default()
    };
    let mut gateway = machine_with(config, &[]);
    let actions = answer(&mut gateway, dst, records(nested(), true));
    let [Action::StartIke { peer_addr, key, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (*peer_addr, key),
        (ip("192.0.2.1"), &PeerKey::Ed25519(vec![pk(2)]))
    );
    // Its fallback is the destination's own key.
    gateway.on_ike_result(now(), dst, ip("192.0.2.1"), IkeResult::TimedOut);
    let Some(Action::StartIke { peer_addr, .. }) = gateway.poll_action() else {
        panic!()
    };
    assert_eq!(peer_addr, dst);
}

#[test]
fn a_gateway_reaches_a_lone_host_by_its_own_key() {
    let config = Config {
        protects: vec!["10.9.0.0/24".parse().unwrap()],
        ..Config::default()
    };
    let mut gateway = machine_with(config, &[]);
    let dst = ip("10.0.2.51");
    let actions = answer(
        &mut gateway,
        dst,
        records(vec![ed(10, Gateway::None, 1)], true),
    );
    let [Action::StartIke { peer_addr, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(*peer_addr, dst);
}

#[test]
fn a_named_gateway_is_resolved_in_the_destinations_family_and_used() {
    let mut m = machine();
    let now = now();
    let dst = ip("10.0.2.60");
    let recs = vec![ed(10, Gateway::Name(gw_name()), 1)];
    let actions = answer(&mut m, dst, keyed(recs, Dnssec::Secure));
    let [
        Action::LookupAddress {
            name,
            addr,
            deadline,
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!((name, *addr), (&gw_name(), dst), "an A lookup");
    assert_eq!(*deadline, now + Config::default().dns_timeout);
    // The answer may list another family's address too: the destination's is used.
    let resolved = addresses(&["2001:db8::7", "192.0.2.7"], true);
    m.on_address_result(now + ms(30), &gw_name(), dst, resolved);
    let actions = drain(&mut m);
    let [
        Action::StartIke {
            dst: d,
            peer_addr,
            key,
            authenticated_by_dnssec,
            deadline,
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(*d, dst);
    assert_eq!(*peer_addr, ip("192.0.2.7"));
    assert_eq!(key, &PeerKey::Ed25519(vec![pk(1)]), "the destination's key");
    assert!(*authenticated_by_dnssec);
    // The lookup's time counted against the IKE deadline.
    assert_eq!(*deadline, now + Config::default().ike_timeout);
    let outcome = established(&mut m, dst, ip("192.0.2.7"), true);
    assert_eq!(
        outcome.cause,
        Cause::Established {
            peer_addr: ip("192.0.2.7")
        }
    );
    assert_eq!(outcome.dnssec_state, Some(Dnssec::Secure));
    assert!(outcome.dnssec);
}

#[test]
fn an_ipv6_destination_looks_up_aaaa() {
    let mut m = machine();
    let dst = ip("2001:db8::60");
    let recs = vec![ed(10, Gateway::Name(gw_name()), 1)];
    let actions = answer(&mut m, dst, keyed(recs, Dnssec::Secure));
    let [Action::LookupAddress { addr, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert!(addr.is_ipv6());
    m.on_address_result(now(), &gw_name(), *addr, addresses(&["2001:db8::1"], true));
    let Some(Action::StartIke { peer_addr, .. }) = m.poll_action() else {
        panic!()
    };
    assert_eq!(peer_addr, ip("2001:db8::1"));
}

/// A named gateway (precedence 10), then the destination's own key through
/// an address gateway (precedence 20), with the name's answer `result`.
fn named_then_addressed(m: &mut Machine, dst: IpAddr, result: AddressResult) -> Vec<Action> {
    let recs = vec![
        ed(20, Gateway::Ipv4("192.0.2.2".parse().unwrap()), 2),
        ed(10, Gateway::Name(gw_name()), 1),
    ];
    let actions = answer(m, dst, keyed(recs, Dnssec::Secure));
    assert!(
        matches!(actions.as_slice(), [Action::LookupAddress { .. }]),
        "{actions:?}"
    );
    m.on_address_result(now(), &gw_name(), dst, result);
    drain(m)
}

#[test]
fn a_gateway_name_without_address_is_the_next_candidate_with_the_reason() {
    let mut m = machine();
    let dst = ip("10.0.2.61");
    let nx = AddressResult::NoRecords {
        kind: NoRecord::Nxdomain,
    };
    let actions = named_then_addressed(&mut m, dst, nx);
    let [Action::StartIke { peer_addr, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(*peer_addr, ip("192.0.2.2"));
    assert_eq!(m.counters().unusable_records, 1);
    m.on_ike_result(now(), dst, ip("192.0.2.2"), IkeResult::TimedOut);
    let actions = drain(&mut m);
    let [Action::PassClear { outcome, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        outcome.reason,
        "IKE failed after 0s, gateway gw.example. has no address: NXDOMAIN; \
         192.0.2.2: timed out (key in DNS) → clear for 15m"
    );
    let Cause::IkeFailed { attempts, .. } = &outcome.cause else {
        panic!()
    };
    assert_eq!(
        attempts[0].peer,
        AttemptPeer::Named {
            name: gw_name(),
            addr: None
        }
    );
}

#[test]
fn a_lone_named_gateway_without_address_says_so() {
    let mut m = machine();
    let dst = ip("10.0.2.62");
    let recs = vec![ed(10, Gateway::Name(gw_name()), 1)];
    answer(&mut m, dst, keyed(recs, Dnssec::Insecure));
    let nodata = AddressResult::NoRecords {
        kind: NoRecord::Nodata,
    };
    m.on_address_result(now(), &gw_name(), dst, nodata);
    let actions = drain(&mut m);
    let [Action::PassClear { outcome, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        outcome.reason,
        "gateway gw.example. has no address: NODATA (key in DNS) → clear for 15m"
    );
    assert!(outcome.is_warning(), "a key in DNS, and clear");
}

#[test]
fn a_bogus_gateway_address_is_never_used() {
    let mut m = machine();
    let dst = ip("10.0.2.63");
    let bogus = AddressResult::Failed {
        reason: DnsFailure::Bogus("RRSIG over A expired".into()),
    };
    let actions = named_then_addressed(&mut m, dst, bogus);
    let [Action::StartIke { peer_addr, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(*peer_addr, ip("192.0.2.2"), "the next candidate");
    let c = m.counters();
    assert_eq!((c.unusable_records, c.dns_failures), (1, 1));
    // Said even though the next candidate worked.
    let outcome = established(&mut m, dst, ip("192.0.2.2"), true);
    assert!(
        outcome.reason.ends_with(
            "; skipped gateway gw.example. has no usable address: DNSSEC bogus: RRSIG over A \
             expired; not used"
        ),
        "{}",
        outcome.reason
    );
}

#[test]
fn a_failed_gateway_lookup_is_the_next_candidate() {
    let mut m = machine();
    let dst = ip("10.0.2.64");
    let servfail = AddressResult::Failed {
        reason: DnsFailure::Rcode(2),
    };
    let actions = named_then_addressed(&mut m, dst, servfail);
    assert!(
        matches!(actions.as_slice(), [Action::StartIke { .. }]),
        "{actions:?}"
    );
    let outcome = established(&mut m, dst, ip("192.0.2.2"), true);
    assert!(
        outcome
            .reason
            .contains("skipped gateway gw.example. has no address: the lookup failed: SERVFAIL"),
        "{}",
        outcome.reason
    );
}

/// The DNSSEC status of an attempt through a named gateway, from the key's
/// status and whether the address answer was validated.
fn combined(key: Dnssec, validated: bool) -> (bool, Option<Dnssec>) {
    let mut m = machine();
    let dst = ip("10.0.2.65");
    let recs = vec![ed(10, Gateway::Name(gw_name()), 1)];
    answer(&mut m, dst, keyed(recs, key));
    m.on_address_result(now(), &gw_name(), dst, addresses(&["192.0.2.7"], validated));
    let Some(Action::StartIke {
        authenticated_by_dnssec,
        ..
    }) = m.poll_action()
    else {
        panic!()
    };
    let outcome = established(&mut m, dst, ip("192.0.2.7"), authenticated_by_dnssec);
    (authenticated_by_dnssec, outcome.dnssec_state)
}

#[test]
fn the_weaker_dnssec_status_of_key_and_address_counts() {
    assert_eq!(combined(Dnssec::Secure, true), (true, Some(Dnssec::Secure)));
    assert_eq!(
        combined(Dnssec::Secure, false),
        (false, Some(Dnssec::Unvalidated))
    );
    assert_eq!(
        combined(Dnssec::Insecure, true),
        (false, Some(Dnssec::Insecure))
    );
}

#[test]
fn require_dnssec_refuses_an_unvalidated_gateway_address() {
    let options = GroupOptions {
        require_dnssec: true,
        ..GroupOptions::REQUIRE_AUTHENTICATED
    };
    let mut m = machine_with(Config::default(), &[(Group::PrivateOrClear, options)]);
    let dst = ip("10.0.2.66");
    let actions = named_then_addressed(&mut m, dst, addresses(&["192.0.2.7"], false));
    let [Action::StartIke { peer_addr, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(*peer_addr, ip("192.0.2.2"), "not 192.0.2.7");
    assert_eq!(m.counters().unusable_records, 1);
    let outcome = established(&mut m, dst, ip("192.0.2.2"), true);
    assert!(
        outcome.reason.contains(
            "skipped gateway gw.example. has an address (192.0.2.7) that is not \
             DNSSEC-validated, and the group requires DNSSEC"
        ),
        "{}",
        outcome.reason
    );
}

#[test]
fn a_gateway_lookup_that_times_out_is_the_next_candidate() {
    let mut m = machine();
    let now = now();
    let dst = ip("10.0.2.67");
    let recs = vec![
        ed(10, Gateway::Name(gw_name()), 1),
        ed(20, Gateway::Ipv4("192.0.2.2".parse().unwrap()), 2),
    ];
    answer(&mut m, dst, keyed(recs, Dnssec::Secure));
    // Two candidates share 2 s; the lookup's own deadline (1 s) comes with
    // the first's share.
    m.handle_timeout(now + Config::default().dns_timeout);
    let actions = drain(&mut m);
    let [Action::StartIke { peer_addr, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        *peer_addr,
        ip("192.0.2.2"),
        "no CancelIke: no IKE had started"
    );
    // A late answer finds nothing to do.
    m.on_address_result(
        now + ms(1100),
        &gw_name(),
        dst,
        addresses(&["192.0.2.7"], true),
    );
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.counters().stale_results, 1);
}

#[test]
fn the_attempts_share_of_the_ike_timeout_bounds_the_lookup() {
    // A slow resolver: its own deadline (5 s) is after the attempt's share (1 s).
    let config = Config {
        dns_timeout: ms(5000),
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = now();
    let dst = ip("10.0.2.68");
    let recs = vec![
        ed(10, Gateway::Name(gw_name()), 1),
        ed(20, Gateway::Ipv4("192.0.2.2".parse().unwrap()), 2),
    ];
    answer(&mut m, dst, keyed(recs, Dnssec::Secure));
    assert_eq!(m.poll_timeout(), Some(now + ms(1000)));
    m.handle_timeout(now + ms(1000));
    let actions = drain(&mut m);
    let [Action::StartIke { peer_addr, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(*peer_addr, ip("192.0.2.2"));
    m.on_ike_result(now + ms(1500), dst, ip("192.0.2.2"), IkeResult::TimedOut);
    let Some(Action::PassClear { outcome, .. }) = m.poll_action() else {
        panic!()
    };
    assert_eq!(
        outcome.reason,
        "IKE failed after 1.5s, gateway gw.example. has no address within the attempt's \
         share of the IKE timeout; 192.0.2.2: timed out (key in DNS) → clear for 15m"
    );
    assert_eq!(outcome.state, State::Clear);
}

#[test]
fn destinations_behind_one_named_gateway_share_its_lookup() {
    let mut m = machine();
    let now = now();
    let (d1, d2) = (ip("10.0.2.70"), ip("10.0.2.71"));
    let recs = || keyed(vec![ed(10, Gateway::Name(gw_name()), 1)], Dnssec::Secure);
    let first = answer(&mut m, d1, recs());
    let second = answer(&mut m, d2, recs());
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(second.is_empty(), "joined: {second:?}");
    m.on_address_result(now, &gw_name(), d1, addresses(&["192.0.2.7"], true));
    let actions = drain(&mut m);
    let peers: Vec<(IpAddr, IpAddr)> = actions
        .iter()
        .map(|a| match a {
            Action::StartIke { dst, peer_addr, .. } => (*dst, *peer_addr),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(peers, vec![(d1, ip("192.0.2.7")), (d2, ip("192.0.2.7"))]);
}

#[test]
fn a_gateway_name_is_looked_up_only_within_the_lookup_budget() {
    let config = Config {
        lookups_per_second: 1,
        lookup_burst: 1,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let dst = ip("10.0.2.72");
    let recs = vec![
        ed(10, Gateway::Name(gw_name()), 1),
        ed(20, Gateway::Ipv4("192.0.2.2".parse().unwrap()), 2),
    ];
    // The key lookup took the only token.
    let actions = answer(&mut m, dst, keyed(recs, Dnssec::Secure));
    let [Action::StartIke { peer_addr, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(*peer_addr, ip("192.0.2.2"));
    let c = m.counters();
    assert_eq!((c.lookup_rate_limited, c.unusable_records), (0, 1));
    m.on_ike_result(now(), dst, ip("192.0.2.2"), IkeResult::TimedOut);
    let Some(Action::PassClear { outcome, .. }) = m.poll_action() else {
        panic!()
    };
    assert!(
        outcome
            .reason
            .contains("gateway gw.example. was not looked up: the DNS lookup rate limit"),
        "{}",
        outcome.reason
    );
}

#[test]
fn a_destination_decided_while_its_gateway_resolves_leaves_nothing_behind() {
    let mut m = machine();
    let now = now();
    let dst = ip("10.0.2.73");
    let recs = vec![ed(10, Gateway::Name(gw_name()), 1)];
    answer(&mut m, dst, keyed(recs, Dnssec::Secure));
    // The peer starts IKE with us and establishes first: no IKE of ours to cancel.
    let outcome = established(&mut m, dst, dst, true);
    assert_eq!(outcome.state, State::Private);
    m.on_address_result(now, &gw_name(), dst, addresses(&["192.0.2.7"], true));
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.counters().stale_results, 1);
    assert_eq!(m.poll_timeout(), None);
}
