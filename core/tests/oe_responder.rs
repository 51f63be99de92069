//! The responder side: whom to answer, with which key, per the peer's group.

mod oe_common;

use oe_common::*;
use oemesh_core::ike::message::Identity;
use oemesh_core::ipseckey::{DomainName, Gateway};
use oemesh_core::oe::{Action, Config, DnsResult, Group, PeerAnswer};

fn answer(actions: &[Action]) -> &PeerAnswer {
    let last = actions.last().expect("an action");
    let Action::AnswerPeer { answer, .. } = last else {
        unreachable!("no answer: {actions:?}")
    };
    answer
}

fn id(addr: &str) -> Identity {
    match ip(addr) {
        std::net::IpAddr::V4(a) => Identity::Ipv4(a),
        std::net::IpAddr::V6(a) => Identity::Ipv6(a),
    }
}

#[test]
fn clear_and_block_are_refused() {
    let mut m = machine();
    let now = t0();
    for (i, peer) in ["10.0.0.5", "10.0.4.5", "192.0.2.9"]
        .into_iter()
        .enumerate()
    {
        m.on_ike_request(now, i as u64, ip(peer), &id(peer), false);
        let actions = drain(&mut m);
        let PeerAnswer::Refuse { reason } = answer(&actions) else {
            panic!("{actions:?}")
        };
        assert!(reason.ends_with("does not answer OE"), "{reason}");
        assert_eq!(actions.len(), 1);
    }
    assert_eq!(m.counters().refused_peers, 3);
}

#[test]
fn answering_groups_look_up_the_initiators_key() {
    let mut m = machine();
    let now = t0();
    for (i, peer) in ["10.0.1.5", "10.0.2.5", "10.0.3.5"].into_iter().enumerate() {
        let request = 100 + i as u64;
        m.on_ike_request(now, request, ip(peer), &id(peer), false);
        let actions = drain(&mut m);
        let [Action::LookupKey { name, .. }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(name, &name_of(ip(peer)));
        let recs = vec![ed(20, Gateway::None, 2), rsa(1), ed(10, Gateway::None, 1)];
        m.on_dns_result(now, name, records(recs, true));
        let actions = drain(&mut m);
        let [
            Action::AnswerPeer {
                request: r,
                peer_addr,
                answer,
            },
        ] = actions.as_slice()
        else {
            panic!("{actions:?}")
        };
        assert_eq!((*r, *peer_addr), (request, ip(peer)));
        assert_eq!(
            answer,
            &PeerAnswer::Ed25519 {
                keys: vec![pk(1), pk(2)],
                dnssec: true,
                vouched: Vec::new(),
                not_vouched: Vec::new(),
            }
        );
    }
}

#[test]
fn a_signing_initiator_without_a_key_is_refused() {
    let mut m = machine();
    let now = t0();
    let peer = ip("10.0.2.6");
    m.on_ike_request(now, 1, peer, &id("10.0.2.6"), false);
    drain(&mut m);
    m.on_dns_result(now, &name_of(peer), nxdomain(None));
    let actions = drain(&mut m);
    assert_eq!(
        answer(&actions),
        &PeerAnswer::Refuse {
            reason: "no IPSECKEY at 6.2.0.10.in-addr.arpa. (NXDOMAIN)".into()
        }
    );
    // DNS timeout: refused too.
    m.on_ike_request(now, 2, peer, &id("10.0.2.6"), false);
    drain(&mut m);
    m.handle_timeout(now + ms(1000));
    let actions = drain(&mut m);
    let PeerAnswer::Refuse { reason } = answer(&actions) else {
        panic!()
    };
    assert!(reason.contains("timed out after 1s"), "{reason}");
}

/// An FQDN identity is no key location (issue 11): the key is looked up at
/// the address's reverse name, and the name must resolve to the address.
#[test]
fn fqdn_identity_is_checked_against_the_address_and_keyed_by_it() {
    let mut m = machine();
    let now = t0();
    let peer = ip("10.0.2.7");
    m.on_ike_request(now, 7, peer, &Identity::fqdn("carol.example"), false);
    let actions = drain(&mut m);
    let [
        Action::LookupAddress {
            name: fqdn, addr, ..
        },
        Action::LookupKey { name, .. },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(fqdn, &DomainName::from_ascii("carol.example.").unwrap());
    assert_eq!(*addr, peer);
    assert_eq!(name, &name_of(peer));
    // ID_NULL with a signature makes no sense: refused.
    m.on_ike_request(now, 8, peer, &Identity::Null, false);
    let actions = drain(&mut m);
    assert!(matches!(answer(&actions), PeerAnswer::Refuse { .. }));
}

#[test]
fn anonymous_initiators_where_allowed_unless_they_publish_a_key() {
    let mut m = machine();
    let now = t0();
    let peer = ip("10.0.2.8");
    m.on_ike_request(now, 1, peer, &Identity::Null, true);
    let actions = drain(&mut m);
    let [Action::LookupKey { name, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    m.on_dns_result(now, name, nxdomain(None));
    assert_eq!(
        answer(&drain(&mut m)),
        &PeerAnswer::Anonymous {
            lookup_failed: false
        }
    );
    // The same address publishing a key: an impostor, refused.
    m.on_ike_request(now, 2, peer, &Identity::Null, true);
    drain(&mut m);
    m.on_dns_result(
        now,
        &name_of(peer),
        records(vec![ed(10, Gateway::None, 1)], false),
    );
    let actions = drain(&mut m);
    let PeerAnswer::Refuse { reason } = answer(&actions) else {
        panic!()
    };
    assert_eq!(
        reason,
        "10.0.2.8 used AUTH NULL but publishes an IPSECKEY at 8.2.0.10.in-addr.arpa."
    );
    // Without that check: accepted at once.
    let config = Config {
        refuse_anonymous_with_key: false,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    m.on_ike_request(now, 3, peer, &Identity::Null, true);
    assert_eq!(
        answer(&drain(&mut m)),
        &PeerAnswer::Anonymous {
            lookup_failed: false
        }
    );
}

#[test]
fn anonymous_refused_where_authentication_is_required() {
    let mut m = machine_with(Config::default(), &[(Group::Private, NO_ANON)]);
    let now = t0();
    m.on_ike_request(now, 1, ip("10.0.3.8"), &Identity::Null, true);
    let actions = drain(&mut m);
    assert_eq!(actions.len(), 1);
    let PeerAnswer::Refuse { reason } = answer(&actions) else {
        panic!()
    };
    assert_eq!(
        reason,
        "AUTH NULL refused: policy private (10.0.3.0/24) requires authentication"
    );
}

#[test]
fn a_responder_lookup_is_shared_with_a_pending_destination() {
    let mut m = machine();
    let now = t0();
    let peer = ip("10.0.2.9");
    m.on_packet(now, peer, b"a".to_vec());
    m.on_ike_request(now, 1, peer, &id("10.0.2.9"), false);
    let actions = drain(&mut m);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::LookupKey { .. }))
            .count(),
        1
    );
    m.on_dns_result(
        now,
        &name_of(peer),
        records(vec![ed(10, Gateway::None, 1)], false),
    );
    let actions = drain(&mut m);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::StartIke { .. }, Action::AnswerPeer { .. }]
        ),
        "{actions:?}"
    );
}

#[test]
fn cancelled_requests_and_overload() {
    let config = Config {
        max_responder_pending: 1,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = t0();
    m.on_ike_request(now, 1, ip("10.0.2.10"), &id("10.0.2.10"), false);
    m.on_ike_request(now, 2, ip("10.0.2.11"), &id("10.0.2.11"), false);
    let actions = drain(&mut m);
    let PeerAnswer::Refuse { reason } = answer(&actions) else {
        panic!()
    };
    assert!(reason.starts_with("overloaded"));
    assert_eq!(m.counters().responder_overload, 1);
    m.cancel_request(1);
    let actions = drain(&mut m);
    assert!(
        matches!(actions.as_slice(), [Action::CancelLookup { .. }]),
        "{actions:?}"
    );
    assert_eq!(m.poll_timeout(), None);
    // A late answer is stale and answers nobody.
    m.on_dns_result(
        now,
        &name_of(ip("10.0.2.10")),
        DnsResult::Failed {
            reason: oemesh_core::oe::DnsFailure::NoResponse,
        },
    );
    assert!(drain(&mut m).is_empty());
}

/// IKE_SA_INIT starts the lookup its IKE_AUTH will need: an answer that came
/// first is used at IKE_AUTH without a second query, and one still in flight
/// is joined.
#[test]
fn ike_sa_init_prefetches_the_initiators_key() {
    let mut m = machine();
    let now = t0();
    let peer = ip("10.0.2.5");
    m.on_ike_init(now, peer);
    let actions = drain(&mut m);
    let [Action::LookupKey { name, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(name, &name_of(peer));
    // The answer comes before IKE_AUTH: kept, nothing answered yet.
    m.on_dns_result(now, name, records(vec![ed(10, Gateway::None, 1)], false));
    assert!(drain(&mut m).is_empty());
    // IKE_AUTH: answered at once, no new lookup.
    m.on_ike_request(now, 7, peer, &id("10.0.2.5"), false);
    let actions = drain(&mut m);
    let [
        Action::AnswerPeer {
            request: 7, answer, ..
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(
        answer,
        &PeerAnswer::Ed25519 {
            keys: vec![pk(1)],
            dnssec: false,
            vouched: Vec::new(),
            not_vouched: Vec::new(),
        }
    );
    // Used once: the next IKE_AUTH from there looks up again.
    m.on_ike_request(now, 8, peer, &id("10.0.2.5"), false);
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Action::LookupKey { .. }]
    ));

    // In flight when IKE_AUTH comes: joined, one query, one answer.
    let other = ip("10.0.1.9");
    m.on_ike_init(now, other);
    let actions = drain(&mut m);
    let [Action::LookupKey { name, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    let name = name.clone();
    m.on_ike_request(now, 9, other, &id("10.0.1.9"), false);
    assert!(drain(&mut m).is_empty());
    m.on_dns_result(now, &name, records(vec![ed(10, Gateway::None, 3)], false));
    let actions = drain(&mut m);
    assert!(
        matches!(actions.as_slice(), [Action::AnswerPeer { request: 9, .. }]),
        "{actions:?}"
    );
    let c = m.counters();
    assert_eq!((c.prefetches, c.prefetch_hits), (2, 2));
}

/// No prefetch for peers the policy does not answer, nor once half the lookup
/// burst is used up; and a kept answer expires.
#[test]
fn prefetch_is_bounded() {
    let config = Config {
        inbound_lookup_burst: 4,
        inbound_lookups_per_second: 1,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = t0();
    m.on_ike_init(now, ip("10.0.0.5")); // clear: does not answer OE
    m.on_ike_init(now, ip("10.0.4.5")); // block
    assert!(drain(&mut m).is_empty());
    for last in 1..=4 {
        m.on_ike_init(now, ip(&format!("10.0.2.{last}")));
    }
    // A burst of 4 keeps 2 back: only the first 2 prefetch.
    let lookups = drain(&mut m);
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    // The reserve is still there for a lookup something waits for.
    m.on_ike_request(now, 1, ip("10.0.2.9"), &id("10.0.2.9"), false);
    assert!(matches!(
        drain(&mut m).as_slice(),
        [Action::LookupKey { .. }]
    ));

    // An answer kept past the DNS timeout is not used.
    let Action::LookupKey { name, .. } = &lookups[0] else {
        unreachable!()
    };
    m.on_dns_result(now, name, records(vec![ed(10, Gateway::None, 1)], false));
    let later = now + Config::default().dns_timeout + std::time::Duration::from_millis(1);
    m.on_ike_request(later, 2, ip("10.0.2.1"), &id("10.0.2.1"), false);
    assert!(
        matches!(drain(&mut m).as_slice(), [Action::LookupKey { .. }]),
        "a stale prefetched answer was used"
    );
}

/// A request refused as overloaded uses nothing up: the answer kept from its
/// IKE_SA_INIT still serves the next request from there.
#[test]
fn an_overloaded_refusal_keeps_the_prefetched_answer() {
    let config = Config {
        max_responder_pending: 1,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = t0();
    let peer = ip("10.0.2.5");
    m.on_ike_init(now, peer);
    drain(&mut m);
    m.on_dns_result(
        now,
        &name_of(peer),
        records(vec![ed(10, Gateway::None, 1)], false),
    );
    // Another request fills the only slot; the one from `peer` is refused.
    m.on_ike_request(now, 1, ip("10.0.2.6"), &id("10.0.2.6"), false);
    m.on_ike_request(now, 2, peer, &id("10.0.2.5"), false);
    let actions = drain(&mut m);
    let PeerAnswer::Refuse { reason } = answer(&actions) else {
        panic!("{actions:?}")
    };
    assert!(reason.starts_with("overloaded"), "{reason}");
    assert_eq!(m.counters().prefetch_hits, 0);
    m.cancel_request(1);
    drain(&mut m);
    m.on_ike_request(now, 3, peer, &id("10.0.2.5"), false);
    let actions = drain(&mut m);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::AnswerPeer {
                request: 3,
                answer: PeerAnswer::Ed25519 { .. },
                ..
            }]
        ),
        "answered from the kept answer, no lookup: {actions:?}"
    );
    assert_eq!(m.counters().prefetch_hits, 1);
}
