//! The decision machine against peers that lie (issue 11, SECURITY.md
//! "Trust"): identities bound to addresses, anonymous peers that may not stand
//! in for keyed ones, downgrades through negative answers, a budget of their
//! own for inbound lookups, every published key a candidate.
#![allow(clippy::panic, reason = "test helpers outside #[test] functions")]

mod oe_common;

use std::net::IpAddr;

use oe_common::*;
use oemesh_core::ike::message::Identity;
use oemesh_core::ipseckey::{DomainName, Gateway};
use oemesh_core::oe::{
    Action, AddressResult, Config, DnsResult, Group, IkeResult, NoRecord, Outcome, PeerAnswer,
    PeerKey,
};

fn id(addr: &str) -> Identity {
    match ip(addr) {
        IpAddr::V4(a) => Identity::Ipv4(a),
        IpAddr::V6(a) => Identity::Ipv6(a),
    }
}

fn answers(actions: &[Action]) -> Vec<&PeerAnswer> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::AnswerPeer { answer, .. } => Some(answer),
            _ => None,
        })
        .collect()
}

fn refusal(actions: &[Action]) -> String {
    match answers(actions).as_slice() {
        [PeerAnswer::Refuse { reason }] => reason.clone(),
        other => panic!("expected one refusal: {other:?} in {actions:?}"),
    }
}

fn servfail() -> DnsResult {
    DnsResult::Failed {
        reason: oemesh_core::oe::DnsFailure::Rcode(2),
    }
}

fn established(anonymous: bool, lookup_failed: bool) -> IkeResult {
    IkeResult::Established {
        anonymous,
        dnssec: false,
        lookup_failed,
    }
}

/// The outcome of the one decision in `actions`.
fn outcome(actions: &[Action]) -> &Outcome {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Private { outcome, .. }
            | Action::PassClear { outcome, .. }
            | Action::Drop { outcome, .. } => Some(outcome),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no decision in {actions:?}"))
}

/// Makes `peer` private and authenticated as a responder would see it, then
/// ends its SA: it is remembered, no longer live.
fn was_private(m: &mut oemesh_core::oe::Machine, peer: IpAddr, now: std::time::Instant) {
    m.on_ike_result(now, peer, peer, established(false, false));
    drain(m);
    m.on_private_ended(now, peer);
}

#[test]
fn an_address_id_of_another_address_is_refused_without_a_lookup() {
    let mut m = machine();
    m.on_ike_request(t0(), 1, ip("10.0.2.66"), &id("10.0.2.10"), false);
    let actions = drain(&mut m);
    assert_eq!(actions.len(), 1, "no lookup: {actions:?}");
    assert_eq!(
        refusal(&actions),
        "identity 10.0.2.10 is not the address 10.0.2.66 the SA would protect"
    );
    assert_eq!(m.counters().identity_refused, 1);
}

#[test]
fn an_fqdn_identity_must_resolve_to_the_address() {
    let now = t0();
    let peer = ip("10.0.2.7");
    let fqdn = DomainName::from_ascii("evil.example.").unwrap();
    let keys = || records(vec![ed(10, Gateway::None, 1)], true);
    let cases: [(AddressResult, Option<bool>, &str); 5] = [
        (
            AddressResult::Addresses {
                addrs: vec![ip("192.0.2.99")],
                dnssec_validated: true,
            },
            None,
            "FQDN identity evil.example. does not resolve to 10.0.2.7 (it resolves to 192.0.2.99)",
        ),
        (
            AddressResult::NoRecords {
                kind: NoRecord::Nxdomain,
            },
            None,
            "does not resolve to 10.0.2.7 (NXDOMAIN)",
        ),
        (
            AddressResult::Failed {
                reason: oemesh_core::oe::DnsFailure::Rcode(2),
            },
            None,
            "could not be checked against 10.0.2.7: the lookup failed: SERVFAIL",
        ),
        // Resolves there: the key at the address's reverse name, and the
        // weaker DNSSEC status of the two answers.
        (
            AddressResult::Addresses {
                addrs: vec![ip("192.0.2.99"), peer],
                dnssec_validated: false,
            },
            Some(false),
            "",
        ),
        (
            AddressResult::Addresses {
                addrs: vec![peer],
                dnssec_validated: true,
            },
            Some(true),
            "",
        ),
    ];
    for (i, (result, dnssec, why)) in cases.into_iter().enumerate() {
        let mut m = machine();
        m.on_ike_request(now, i as u64, peer, &Identity::fqdn("evil.example"), false);
        drain(&mut m);
        m.on_dns_result(now, &name_of(peer), keys());
        assert!(drain(&mut m).is_empty(), "waits for the address check");
        m.on_address_result(now, &fqdn, peer, result);
        let actions = drain(&mut m);
        match dnssec {
            Some(dnssec) => assert_eq!(
                answers(&actions),
                vec![&PeerAnswer::Ed25519 {
                    keys: vec![pk(1)],
                    dnssec,
                    vouched: Vec::new(),
                    not_vouched: Vec::new(),
                }]
            ),
            None => {
                let reason = refusal(&actions);
                assert!(reason.contains(why), "{reason}");
            }
        }
    }
    // No answer at all: refused when the lookup times out.
    let mut m = machine();
    m.on_ike_request(now, 9, peer, &Identity::fqdn("evil.example"), false);
    drain(&mut m);
    m.handle_timeout(now + Config::default().dns_timeout);
    let reason = refusal(&drain(&mut m));
    assert!(reason.contains("timed out after 1s"), "{reason}");
}

#[test]
fn the_initiator_checks_an_fqdn_responder() {
    let now = t0();
    let mut m = machine();
    let peer = ip("10.0.2.20");
    let name = DomainName::from_ascii("bob.example.").unwrap();
    m.on_identity_check(now, 5, peer, name.clone());
    let actions = drain(&mut m);
    assert!(
        matches!(actions.as_slice(), [Action::LookupAddress { addr, .. }] if *addr == peer),
        "{actions:?}"
    );
    m.on_address_result(
        now,
        &name,
        peer,
        AddressResult::Addresses {
            addrs: vec![peer],
            dnssec_validated: true,
        },
    );
    let actions = drain(&mut m);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::IdentityChecked {
                request: 5,
                result: Ok(true)
            }]
        ),
        "{actions:?}"
    );
    m.on_identity_check(now, 6, peer, name.clone());
    drain(&mut m);
    m.on_address_result(
        now,
        &name,
        peer,
        AddressResult::NoRecords {
            kind: NoRecord::Nodata,
        },
    );
    let actions = drain(&mut m);
    let [Action::IdentityChecked { result: Err(e), .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        e.to_string(),
        "FQDN identity bob.example. does not resolve to 10.0.2.20 (NODATA)"
    );
}

/// SERVFAIL (or no answer) for the key of an AUTH NULL initiator: nobody
/// knows whether it publishes one. Fail-open groups take the chance and say
/// so; `private` does not.
#[test]
fn anonymous_after_a_failed_key_lookup() {
    let now = t0();
    let mut m = machine();
    let peer = ip("10.0.2.30");
    m.on_ike_request(now, 1, peer, &Identity::Null, true);
    drain(&mut m);
    m.on_dns_result(now, &name_of(peer), servfail());
    assert_eq!(
        answers(&drain(&mut m)),
        vec![&PeerAnswer::Anonymous {
            lookup_failed: true
        }]
    );
    assert_eq!(m.counters().anonymous_lookup_failed, 1);
    m.on_ike_result(now, peer, peer, established(true, true));
    let actions = drain(&mut m);
    let o = outcome(&actions);
    assert!(
        o.reason
            .ends_with("→ private (anonymous, AUTH NULL); anonymous (key lookup failed)"),
        "{o}"
    );
    // `private` fails closed: refused, on SERVFAIL and on a timeout.
    let peer = ip("10.0.3.30");
    m.on_ike_request(now, 2, peer, &Identity::Null, true);
    drain(&mut m);
    m.on_dns_result(now, &name_of(peer), servfail());
    let reason = refusal(&drain(&mut m));
    assert!(
        reason.starts_with("AUTH NULL from 10.0.3.30 refused: the lookup of its key at 30.3.0.10.in-addr.arpa. failed: SERVFAIL"),
        "{reason}"
    );
    m.on_ike_request(now, 3, peer, &Identity::Null, true);
    drain(&mut m);
    m.handle_timeout(now + Config::default().dns_timeout);
    let reason = refusal(&drain(&mut m));
    assert!(reason.contains("timed out after 1s"), "{reason}");
}

#[test]
fn anonymous_cannot_stand_in_for_a_live_authenticated_peer() {
    let now = t0();
    let mut m = machine();
    let peer = ip("10.0.2.10");
    m.on_ike_result(now, peer, peer, established(false, false));
    drain(&mut m);
    m.on_ike_request(now, 1, peer, &Identity::Null, true);
    let actions = drain(&mut m);
    assert_eq!(actions.len(), 1, "refused without a lookup: {actions:?}");
    assert!(
        refusal(&actions).contains("has a live authenticated SA"),
        "{actions:?}"
    );
    // Its SA is gone: an anonymous peer there is accepted again, but the
    // outcome says it was authenticated lately.
    m.on_private_ended(now, peer);
    m.on_ike_request(now, 2, peer, &Identity::Null, true);
    drain(&mut m);
    m.on_dns_result(now, &name_of(peer), nxdomain(None));
    assert_eq!(
        answers(&drain(&mut m)),
        vec![&PeerAnswer::Anonymous {
            lookup_failed: false
        }]
    );
    m.on_ike_result(now, peer, peer, established(true, false));
    let actions = drain(&mut m);
    let o = outcome(&actions);
    assert!(o.downgrade, "{o}");
    assert!(o.reason.contains("DOWNGRADE: peer was private"), "{o}");
    assert_eq!(m.counters().downgrades, 1);
}

#[test]
fn refuse_downgrade_refuses_an_authenticated_peer_back_anonymous() {
    let now = t0();
    let config = Config {
        refuse_downgrade: true,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let peer = ip("10.0.2.10");
    was_private(&mut m, peer, now);
    m.on_ike_request(now, 1, peer, &Identity::Null, true);
    let reason = refusal(&drain(&mut m));
    assert!(
        reason.starts_with("AUTH NULL refused: DOWNGRADE: 10.0.2.10 was authenticated within 1h"),
        "{reason}"
    );
    // Once the memory has passed, it is an ordinary anonymous peer.
    let later = now + Config::default().private_memory + ms(1);
    m.on_ike_request(later, 2, peer, &Identity::Null, true);
    let actions = drain(&mut m);
    assert!(
        matches!(actions.as_slice(), [Action::LookupKey { .. }]),
        "{actions:?}"
    );
}

/// A forged NXDOMAIN (or NODATA, or no answer) for a peer that was private a
/// minute ago: a downgrade, whatever comes of it.
#[test]
fn negative_answers_after_a_private_period_are_downgrades() {
    let now = t0();
    for (i, result) in [
        nxdomain(Some(300)),
        DnsResult::NoRecords {
            kind: NoRecord::Nodata,
            negative_ttl: None,
            dnssec: oemesh_core::oe::Dnssec::Insecure,
        },
        servfail(),
    ]
    .into_iter()
    .enumerate()
    {
        let dst = ip(&format!("10.0.2.{}", 40 + i));
        // Default: goes on (anonymous IKE, then clear), flagged.
        let mut m = machine();
        was_private(&mut m, dst, now);
        m.on_packet(now, dst, b"hello".to_vec());
        drain(&mut m);
        let failed = matches!(result, DnsResult::Failed { .. });
        m.on_dns_result(now, &name_of(dst), result.clone());
        let mut actions = drain(&mut m);
        if !failed {
            assert!(
                matches!(
                    actions.as_slice(),
                    [Action::StartIke {
                        key: PeerKey::Null,
                        ..
                    }]
                ),
                "AUTH NULL is tried: {actions:?}"
            );
            m.on_ike_result(now, dst, dst, IkeResult::TimedOut);
            actions = drain(&mut m);
        }
        let o = outcome(&actions);
        assert!(o.downgrade, "{o}");
        assert!(o.is_warning());
        assert_eq!(o.state, oemesh_core::oe::State::Clear, "{o}");

        // refuse_downgrade: blocked at once, AUTH NULL not even tried.
        let config = Config {
            refuse_downgrade: true,
            ..Config::default()
        };
        let mut m = machine_with(config, &[]);
        was_private(&mut m, dst, now);
        m.on_packet(now, dst, b"hello".to_vec());
        drain(&mut m);
        m.on_dns_result(now, &name_of(dst), result);
        let actions = drain(&mut m);
        let [Action::Drop { outcome: o, .. }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert!(o.downgrade, "{o}");
        assert!(o.reason.contains("downgrade refused"), "{o}");
        assert_eq!(
            o.lifetime(),
            Some(Config::default().retry_lifetime),
            "blocked only for the retry lifetime: {o}"
        );
    }
}

#[test]
fn an_anonymous_peer_is_never_remembered_as_private() {
    let now = t0();
    let mut m = machine();
    let dst = ip("10.0.2.50");
    m.on_ike_result(now, dst, dst, established(true, false));
    drain(&mut m);
    // A rekey of its SA does not make it remembered either.
    m.remember_private(now, dst);
    m.on_private_ended(now, dst);
    m.on_packet(now, dst, b"x".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), servfail());
    let o = outcome(&drain(&mut m)).clone();
    assert!(!o.downgrade, "{o}");
    assert_eq!(m.remembered_private(), 0);
}

/// Inbound IKE pays for its lookups from a budget of its own: a flood of
/// initiators (random identities, random addresses) cannot starve this
/// host's new flows, nor the other way round.
#[test]
fn inbound_lookups_have_a_budget_of_their_own() {
    let now = t0();
    let config = Config {
        lookup_burst: 2,
        lookups_per_second: 1,
        inbound_lookup_burst: 3,
        inbound_lookups_per_second: 1,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    for i in 0..10u64 {
        let peer = ip(&format!("10.0.2.{}", 100 + i));
        m.on_ike_request(now, i, peer, &id(&format!("10.0.2.{}", 100 + i)), false);
    }
    let actions = drain(&mut m);
    let lookups = actions
        .iter()
        .filter(|a| matches!(a, Action::LookupKey { .. }))
        .count();
    assert_eq!(lookups, 3, "{actions:?}");
    assert_eq!(m.counters().responder_overload, 7);
    // This host's own new flows still get their lookups.
    for i in 0..2 {
        m.on_packet(now, ip(&format!("10.0.2.{}", 200 + i)), b"x".to_vec());
    }
    let actions = drain(&mut m);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::LookupKey { .. }))
            .count(),
        2,
        "{actions:?}"
    );
    // And their exhaustion does not touch the inbound budget.
    m.on_packet(now, ip("10.0.2.250"), b"x".to_vec());
    assert_eq!(m.counters().lookup_rate_limited, 1);
    let later = now + ms(1000);
    m.on_ike_request(later, 99, ip("10.0.2.99"), &id("10.0.2.99"), false);
    assert!(
        matches!(drain(&mut m).as_slice(), [Action::LookupKey { .. }]),
        "one token back after a second"
    );
}

/// Key rollover: two records at one address (old and new key). One IKE
/// attempt tries both; the responder checks against both.
#[test]
fn every_published_key_is_a_candidate() {
    let now = t0();
    let mut m = machine();
    let dst = ip("10.0.2.60");
    m.on_packet(now, dst, b"x".to_vec());
    drain(&mut m);
    let recs = vec![
        ed(20, Gateway::None, 2),
        ed(10, Gateway::None, 1),
        ed(10, Gateway::None, 1),
    ];
    m.on_dns_result(now, &name_of(dst), records(recs.clone(), true));
    let actions = drain(&mut m);
    let [
        Action::StartIke {
            peer_addr,
            key,
            deadline,
            ..
        },
    ] = actions.as_slice()
    else {
        panic!("one attempt: {actions:?}")
    };
    assert_eq!(*peer_addr, dst);
    assert_eq!(key, &PeerKey::Ed25519(vec![pk(1), pk(2)]));
    assert_eq!(
        *deadline,
        now + Config::default().ike_timeout,
        "all the time"
    );
    // The responder side.
    m.on_ike_request(now, 1, ip("10.0.2.61"), &id("10.0.2.61"), false);
    drain(&mut m);
    m.on_dns_result(now, &name_of(ip("10.0.2.61")), records(recs, false));
    assert_eq!(
        answers(&drain(&mut m)),
        vec![&PeerAnswer::Ed25519 {
            keys: vec![pk(1), pk(2)],
            dnssec: false,
            vouched: Vec::new(),
            not_vouched: Vec::new(),
        }]
    );
    // At most eight keys per peer.
    let dst = ip("10.0.2.62");
    m.on_packet(now, dst, b"x".to_vec());
    drain(&mut m);
    let many = (1..=12).map(|k| ed(k, Gateway::None, k)).collect();
    m.on_dns_result(now, &name_of(dst), records(many, true));
    let actions = drain(&mut m);
    let [
        Action::StartIke {
            key: PeerKey::Ed25519(keys),
            ..
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(keys.len(), 8);
}

#[test]
fn anonymous_in_a_group_that_requires_authentication_is_refused_without_a_lookup() {
    let mut m = machine_with(Config::default(), &[(Group::PrivateOrClear, NO_ANON)]);
    m.on_ike_request(t0(), 1, ip("10.0.2.8"), &Identity::Null, true);
    let actions = drain(&mut m);
    assert_eq!(actions.len(), 1);
    assert!(refusal(&actions).contains("requires authentication"));
}

/// A record whose key is a small-order point (it would vouch for any message)
/// is skipped with the reason, and the next one is tried.
#[test]
fn a_small_order_key_is_unusable_and_the_next_record_counts() {
    let now = t0();
    let mut m = machine();
    let dst = ip("10.0.2.63");
    m.on_packet(now, dst, b"x".to_vec());
    drain(&mut m);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let bad = oemesh_core::ipseckey::Ipseckey::ed25519(5, Gateway::None, identity);
    m.on_dns_result(
        now,
        &name_of(dst),
        records(vec![bad.clone(), ed(10, Gateway::None, 3)], true),
    );
    let actions = drain(&mut m);
    let [Action::StartIke { key, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(key, &PeerKey::Ed25519(vec![pk(3)]));
    assert_eq!(m.counters().unusable_records, 1);
    // Alone, it leaves no key: the reason says why.
    let dst = ip("10.0.2.64");
    m.on_packet(now, dst, b"x".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), records(vec![bad], true));
    m.on_ike_result(now, dst, dst, IkeResult::TimedOut);
    let actions = drain(&mut m);
    let o = outcome(&actions);
    assert!(o.reason.contains("small-order point"), "{o}");
}
