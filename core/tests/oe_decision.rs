//! The outbound decision: policy rows, merged triggers, held packets released in
//! order, NXDOMAIN → clear within the negative TTL, DNS failures per group,
//! several keys tried in precedence order, unusable records, downgrades,
//! anonymous IKE, the pending limit and the lookup rate limit. All on a virtual clock.

mod oe_common;

use oe_common::*;
use oemesh_core::ike::endpoint::Failure;
use oemesh_core::ipseckey::Gateway;
use oemesh_core::oe::{
    Action, Auth, Cause, Config, DnsResult, Group, IkeResult, NoRecord, PacketFate, PeerKey, State,
};

#[test]
fn clear_and_clear_or_private_pass_at_once() {
    let mut m = machine();
    let now = t0();
    for dst in ["10.0.0.5", "10.0.1.5", "192.0.2.1"] {
        assert_eq!(
            m.on_packet(now, ip(dst), b"p".to_vec()),
            PacketFate::Decided
        );
        let actions = drain(&mut m);
        let [Action::PassClear { outcome, packets }] = actions.as_slice() else {
            panic!("{dst}: {actions:?}")
        };
        assert_eq!(outcome.state, State::Clear);
        assert_eq!(outcome.cause, Cause::Policy);
        assert_eq!(
            outcome.expires_at,
            Some(now + Config::default().clear_lifetime)
        );
        assert_eq!(bytes(packets), vec![b"p".to_vec()]);
    }
    assert!(!m.is_pending(ip("10.0.1.5")));
    m.on_packet(now, ip("10.0.1.5"), vec![]);
    let Some(Action::PassClear { outcome, .. }) = m.poll_action() else {
        panic!()
    };
    assert_eq!(
        outcome.to_string(),
        "10.0.1.5: policy clear-or-private (10.0.1.0/24) → clear for 15m"
    );
}

#[test]
fn block_drops() {
    let mut m = machine();
    let now = t0();
    m.on_packet(now, ip("10.0.4.9"), b"x".to_vec());
    let actions = drain(&mut m);
    let [
        Action::Drop {
            outcome,
            dropped: 1,
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(outcome.state, State::Blocked);
    assert_eq!(
        outcome.reason,
        "policy block (10.0.4.0/24) → blocked for 15m"
    );
    assert_eq!(m.counters().blocked_by_policy, 1);
}

#[test]
fn oe_groups_look_up_the_reverse_name_and_merge_triggers() {
    let mut m = machine();
    let now = t0();
    for dst in ["10.0.2.7", "10.0.3.7", "2001:db8::7"] {
        let dst = ip(dst);
        assert_eq!(m.on_packet(now, dst, b"1".to_vec()), PacketFate::Held);
        assert_eq!(
            m.on_packet(now + ms(1), dst, b"2".to_vec()),
            PacketFate::Held
        );
        assert_eq!(
            m.on_packet(now + ms(2), dst, b"3".to_vec()),
            PacketFate::Held
        );
        let actions = drain(&mut m);
        let [
            Action::LookupKey {
                dst: d,
                name,
                deadline,
            },
        ] = actions.as_slice()
        else {
            panic!("{actions:?}")
        };
        assert_eq!((*d, name), (dst, &name_of(dst)));
        assert_eq!(*deadline, now + ms(1000));
        assert_eq!(m.hold().packets(dst), 3);
    }
    assert_eq!(m.pending_len(), 3);
    assert_eq!(m.poll_timeout(), Some(now + ms(1000)));
}

#[test]
fn private_releases_held_packets_encrypted_in_order() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.3.7");
    for i in 0..5u8 {
        m.on_packet(now, dst, vec![i; 10]);
    }
    drain(&mut m);
    m.on_dns_result(
        now + ms(20),
        &name_of(dst),
        records(vec![ed(10, Gateway::None, 7)], true),
    );
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
    assert_eq!(
        (*d, *peer_addr, key.clone()),
        (dst, dst, PeerKey::Ed25519(vec![pk(7)]))
    );
    assert!(*authenticated_by_dnssec);
    assert_eq!(*deadline, now + ms(20) + ms(2000));
    m.on_packet(now + ms(30), dst, vec![5; 10]);
    m.on_ike_result(
        now + ms(50),
        dst,
        dst,
        IkeResult::Established {
            anonymous: false,
            dnssec: true,
            lookup_failed: false,
        },
    );
    let actions = drain(&mut m);
    let [Action::Private { outcome, packets }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        bytes(packets),
        (0..6u8).map(|i| vec![i; 10]).collect::<Vec<_>>()
    );
    assert_eq!(
        (outcome.state, outcome.auth, outcome.dnssec),
        (State::Private, Auth::Authenticated, true)
    );
    assert_eq!(outcome.expires_at, None);
    assert_eq!(
        outcome.reason,
        "IKE established with 10.0.3.7 → private (authenticated) (key DNSSEC-validated)"
    );
    assert_eq!(m.pending_len(), 0);
    assert_eq!(m.hold().total_bytes(), 0);
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(m.remembered_private(), 1);
}

#[test]
fn nxdomain_goes_clear_within_the_negative_ttl() {
    let mut m = machine_with(Config::default(), &[(Group::PrivateOrClear, NO_ANON)]);
    let now = t0();
    let dst = ip("10.0.2.8");
    m.on_packet(now, dst, b"a".to_vec());
    m.on_packet(now, dst, b"b".to_vec());
    drain(&mut m);
    m.on_dns_result(now + ms(5), &name_of(dst), nxdomain(Some(120)));
    let actions = drain(&mut m);
    let [Action::PassClear { outcome, packets }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(bytes(packets), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(outcome.expires_at, Some(now + ms(5) + ms(120_000)));
    assert!(
        outcome
            .reason
            .starts_with("no IPSECKEY (NXDOMAIN) → clear for 2m"),
        "{}",
        outcome.reason
    );
    // Without a negative TTL, the configured 15 minutes; NODATA reads as such.
    let dst = ip("10.0.2.9");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    let nodata = DnsResult::NoRecords {
        kind: NoRecord::Nodata,
        negative_ttl: None,
        dnssec: oemesh_core::oe::Dnssec::Insecure,
    };
    m.on_dns_result(now, &name_of(dst), nodata);
    let Some(Action::PassClear { outcome, .. }) = m.poll_action() else {
        panic!()
    };
    assert_eq!(outcome.lifetime(), Some(ms(15 * 60_000)));
    assert!(
        outcome
            .reason
            .starts_with("no IPSECKEY (NODATA) → clear for 15m")
    );
}

#[test]
fn private_without_key_and_without_anonymous_is_blocked() {
    let mut m = machine_with(Config::default(), &[(Group::Private, NO_ANON)]);
    let now = t0();
    let dst = ip("10.0.3.8");
    m.on_packet(now, dst, b"secret".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), nxdomain(Some(60)));
    let actions = drain(&mut m);
    let [
        Action::Drop {
            outcome,
            dropped: 1,
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(outcome.state, State::Blocked);
    assert_eq!(outcome.lifetime(), Some(ms(60_000)));
    assert_eq!(m.counters().failed_closed, 1);
}

#[test]
fn dns_timeout_fails_open_for_private_or_clear() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.2.10");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.handle_timeout(now + ms(999));
    assert!(drain(&mut m).is_empty());
    m.handle_timeout(now + ms(1000));
    let actions = drain(&mut m);
    let [
        Action::CancelLookup { name },
        Action::PassClear { outcome, packets },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(name, &name_of(dst));
    assert_eq!(bytes(packets), vec![b"a".to_vec()]);
    assert_eq!(outcome.cause, Cause::DnsTimeout(ms(1000)));
    assert_eq!(outcome.reason, "DNS timed out after 1s → clear for 30s");
    assert_eq!(m.counters().dns_timeouts, 1);
    // A late answer is stale.
    m.on_dns_result(now + ms(1500), &name_of(dst), nxdomain(None));
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.counters().stale_results, 1);
}

#[test]
fn dns_failure_fails_closed_for_private() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.3.10");
    m.on_packet(now, dst, b"a".to_vec());
    m.on_packet(now, dst, b"b".to_vec());
    drain(&mut m);
    let fail = DnsResult::Failed {
        reason: oemesh_core::oe::DnsFailure::Rcode(2),
    };
    m.on_dns_result(now, &name_of(dst), fail);
    let actions = drain(&mut m);
    let [
        Action::Drop {
            outcome,
            dropped: 2,
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(
        outcome.reason,
        "DNS lookup failed: SERVFAIL → blocked for 30s; policy private fails closed"
    );
    assert_eq!(m.hold().total_packets(), 0);
    // Timeout too.
    let dst = ip("10.0.3.11");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.handle_timeout(now + ms(1000));
    let actions = drain(&mut m);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::CancelLookup { .. }, Action::Drop { .. }]
        ),
        "{actions:?}"
    );
    assert_eq!(m.counters().failed_closed, 3);
}

#[test]
fn keys_tried_in_precedence_order_until_the_deadline() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.2.20");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    let (g1, g2, g3) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("2001:db8::3"));
    let recs = vec![
        ed(30, Gateway::Ipv6("2001:db8::3".parse().unwrap()), 3),
        ed(10, Gateway::Ipv4("192.0.2.1".parse().unwrap()), 1),
        ed(20, Gateway::Ipv4("192.0.2.2".parse().unwrap()), 2),
    ];
    m.on_dns_result(now, &name_of(dst), records(recs, false));
    // Three candidates share 2 s: the first gets a third of it.
    let Some(Action::StartIke {
        peer_addr,
        key,
        deadline,
        ..
    }) = m.poll_action()
    else {
        panic!()
    };
    assert_eq!((peer_addr, key), (g1, PeerKey::Ed25519(vec![pk(1)])));
    assert_eq!(deadline, now + ms(2000) / 3);
    // It fails fast: the second gets half of what is left.
    let t = now + ms(100);
    m.on_ike_result(
        t,
        dst,
        g1,
        IkeResult::Failed {
            reason: Failure::NoProposalChosen,
        },
    );
    let Some(Action::StartIke {
        peer_addr,
        deadline,
        ..
    }) = m.poll_action()
    else {
        panic!()
    };
    assert_eq!(peer_addr, g2);
    assert_eq!(deadline, t + ms(950));
    // It times out: cancelled, the third gets the rest.
    m.handle_timeout(deadline);
    let actions = drain(&mut m);
    let [
        Action::CancelIke { peer_addr: c, .. },
        Action::StartIke {
            peer_addr,
            deadline: d3,
            ..
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!((*c, *peer_addr), (g2, g3));
    assert_eq!(*d3, now + ms(2000));
    // A late failure of the second is stale.
    m.on_ike_result(deadline + ms(1), dst, g2, IkeResult::TimedOut);
    assert_eq!(m.counters().stale_results, 1);
    m.handle_timeout(*d3);
    let actions = drain(&mut m);
    let [
        Action::CancelIke { .. },
        Action::PassClear { outcome, packets },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(bytes(packets), vec![b"a".to_vec()]);
    assert_eq!(
        outcome.reason,
        "IKE failed after 2s, 192.0.2.1: no proposal in common with the peer (NO_PROPOSAL_CHOSEN); 192.0.2.2: timed out; \
         2001:db8::3: timed out (key in DNS) → clear for 15m"
    );
    assert!(!outcome.downgrade);
    let c = m.counters();
    assert_eq!((c.ike_failures, c.ike_timeouts), (1, 2));
}

#[test]
fn success_on_a_later_key_cancels_nothing_else_and_is_private() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.2.21");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    let recs = vec![
        ed(10, Gateway::None, 1),
        ed(20, Gateway::Ipv4("192.0.2.2".parse().unwrap()), 2),
    ];
    m.on_dns_result(now, &name_of(dst), records(recs, false));
    drain(&mut m);
    m.on_ike_result(now, dst, dst, IkeResult::TimedOut);
    let Some(Action::StartIke { peer_addr, .. }) = m.poll_action() else {
        panic!()
    };
    m.on_ike_result(
        now + ms(10),
        dst,
        peer_addr,
        IkeResult::Established {
            anonymous: false,
            dnssec: false,
            lookup_failed: false,
        },
    );
    let actions = drain(&mut m);
    let [Action::Private { outcome, packets }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(packets.len(), 1);
    assert_eq!(
        outcome.cause,
        Cause::Established {
            peer_addr: ip("192.0.2.2")
        }
    );
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn unusable_records_are_skipped_with_the_reason() {
    let mut m = machine_with(Config::default(), &[(Group::PrivateOrClear, NO_ANON)]);
    let now = t0();
    let dst = ip("10.0.2.30");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    let mut ed448 = ed(5, Gateway::None, 9);
    ed448.public_key = vec![9; 57];
    let recs = vec![rsa(1), ed448.clone(), ed(20, Gateway::None, 4)];
    m.on_dns_result(now, &name_of(dst), records(recs, false));
    let Some(Action::StartIke { key, .. }) = m.poll_action() else {
        panic!()
    };
    assert_eq!(key, PeerKey::Ed25519(vec![pk(4)]));
    assert_eq!(m.counters().unusable_records, 2);
    // With nothing usable: no usable IPSECKEY, every reason listed. (A
    // gateway given by name is usable: see oe_gateways.rs.)
    let dst = ip("10.0.2.31");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), records(vec![rsa(1), ed448], false));
    let Some(Action::PassClear { outcome, .. }) = m.poll_action() else {
        panic!()
    };
    assert_eq!(
        outcome.reason,
        "no usable IPSECKEY (precedence 1: algorithm RSA(2) is not supported; \
         precedence 5: EdDSA key of 57 bytes is not Ed25519 (32)) \
         → clear for 15m; anonymous IKE not allowed (require-authenticated)"
    );
    // Capped by the answer's TTL (3600 s) — 15 min is shorter.
    assert_eq!(outcome.lifetime(), Some(ms(15 * 60_000)));
}

#[test]
fn anonymous_ike_where_allowed() {
    let mut m = machine(); // anonymous allowed by default
    let now = t0();
    let dst = ip("10.0.2.40");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), nxdomain(Some(300)));
    let actions = drain(&mut m);
    let [
        Action::StartIke {
            peer_addr,
            key: PeerKey::Null,
            authenticated_by_dnssec: false,
            ..
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(*peer_addr, dst);
    m.on_ike_result(
        now,
        dst,
        dst,
        IkeResult::Established {
            anonymous: true,
            dnssec: false,
            lookup_failed: false,
        },
    );
    let Some(Action::Private { outcome, packets }) = m.poll_action() else {
        panic!()
    };
    assert_eq!((outcome.auth, packets.len()), (Auth::Anonymous, 1));
    assert_eq!(
        outcome.reason,
        "IKE established with 10.0.2.40 → private (anonymous, AUTH NULL)"
    );
    // Anonymous peers are not remembered for downgrade detection.
    assert_eq!(m.remembered_private(), 0);

    // An anonymous attempt that times out: clear, capped by the negative TTL.
    let dst = ip("10.0.2.41");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), nxdomain(Some(300)));
    drain(&mut m);
    m.handle_timeout(now + ms(2000));
    let actions = drain(&mut m);
    let [Action::CancelIke { .. }, Action::PassClear { outcome, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        outcome.reason,
        "IKE timed out after 2s (anonymous, no key in DNS) → clear for 5m; no IPSECKEY (NXDOMAIN)"
    );
}

#[test]
fn anonymous_not_tried_where_authentication_is_required() {
    let mut m = machine_with(Config::default(), &[(Group::PrivateOrClear, NO_ANON)]);
    let now = t0();
    let dst = ip("10.0.2.42");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), nxdomain(Some(300)));
    let actions = drain(&mut m);
    assert!(
        matches!(actions.as_slice(), [Action::PassClear { .. }]),
        "{actions:?}"
    );
}

fn fail_ike_for(
    m: &mut oemesh_core::oe::Machine,
    now: std::time::Instant,
    dst: std::net::IpAddr,
) -> Vec<Action> {
    m.on_packet(now, dst, b"a".to_vec());
    drain(m);
    m.on_dns_result(
        now,
        &name_of(dst),
        records(vec![ed(10, Gateway::None, 1)], true),
    );
    drain(m);
    m.handle_timeout(now + ms(2000));
    drain(m)
}

fn become_private(
    m: &mut oemesh_core::oe::Machine,
    now: std::time::Instant,
    dst: std::net::IpAddr,
) {
    m.on_packet(now, dst, b"a".to_vec());
    drain(m);
    m.on_dns_result(
        now,
        &name_of(dst),
        records(vec![ed(10, Gateway::None, 1)], true),
    );
    drain(m);
    m.on_ike_result(
        now,
        dst,
        dst,
        IkeResult::Established {
            anonymous: false,
            dnssec: true,
            lookup_failed: false,
        },
    );
    drain(m);
}

#[test]
fn downgrade_is_reported_loudly() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.2.50");
    become_private(&mut m, now, dst);
    // 20 minutes later the SA is gone and IKE to the same key times out.
    let later = now + ms(20 * 60_000);
    let actions = fail_ike_for(&mut m, later, dst);
    let [Action::CancelIke { .. }, Action::PassClear { outcome, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert!(outcome.downgrade);
    assert_eq!(
        outcome.reason,
        "IKE timed out after 2s (key in DNS) → clear for 15m; DOWNGRADE: peer was private"
    );
    assert_eq!(m.counters().downgrades, 1);
    // After the memory (1 h) expires, a failure is no downgrade.
    let much_later = later + ms(2 * 3_600_000);
    let actions = fail_ike_for(&mut m, much_later, dst);
    let Some(Action::PassClear { outcome, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    assert!(!outcome.downgrade);
}

/// A key in DNS but IKE failing (never private before): clear for
/// `private-or-clear`, no downgrade flag, but a warning — the peer meant to be
/// private. A key without DNSSEC is said to be so in the reason.
#[test]
fn key_in_dns_but_ike_failed_is_a_warning_and_unvalidated_keys_say_so() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.2.60");
    let actions = fail_ike_for(&mut m, now, dst);
    let Some(Action::PassClear { outcome, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    assert!(!outcome.downgrade);
    assert!(outcome.is_warning(), "{}", outcome.reason);

    // No key in DNS, anonymous IKE fails → clear is not a warning.
    let dst = ip("10.0.2.61");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), nxdomain(Some(60)));
    drain(&mut m);
    m.handle_timeout(now + ms(2000));
    let actions = drain(&mut m);
    let Some(Action::PassClear { outcome, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    assert!(!outcome.is_warning(), "{}", outcome.reason);

    let dst = ip("10.0.2.62");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.on_dns_result(
        now,
        &name_of(dst),
        records(vec![ed(10, Gateway::None, 1)], false),
    );
    drain(&mut m);
    m.on_ike_result(
        now,
        dst,
        dst,
        IkeResult::Established {
            anonymous: false,
            dnssec: false,
            lookup_failed: false,
        },
    );
    let actions = drain(&mut m);
    let [Action::Private { outcome, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert!(!outcome.dnssec);
    assert!(!outcome.is_warning());
    assert_eq!(
        outcome.reason,
        "IKE established with 10.0.2.62 → private (authenticated) (key not DNSSEC-validated)"
    );
}

#[test]
fn downgrade_of_private_never_goes_clear_and_can_be_refused_for_private_or_clear() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.3.50");
    become_private(&mut m, now, dst);
    let actions = fail_ike_for(&mut m, now + ms(60_000), dst);
    let Some(Action::Drop {
        outcome,
        dropped: 1,
    }) = actions.last()
    else {
        panic!("{actions:?}")
    };
    assert!(outcome.downgrade);
    assert_eq!(
        outcome.reason,
        "IKE timed out after 2s (key in DNS) → blocked for 30s; policy private fails closed; \
         DOWNGRADE: peer was private"
    );

    let config = Config {
        refuse_downgrade: true,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let dst = ip("10.0.2.51");
    become_private(&mut m, now, dst);
    let actions = fail_ike_for(&mut m, now + ms(60_000), dst);
    let Some(Action::Drop { outcome, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    assert!(outcome.downgrade);
    assert!(
        outcome
            .reason
            .contains("→ blocked for 30s; downgrade refused; DOWNGRADE"),
        "{}",
        outcome.reason
    );
}

#[test]
fn responder_established_sa_releases_a_pending_destination() {
    let mut m = machine();
    let now = t0();
    let dst = ip("10.0.2.60");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    // The peer initiated to us meanwhile and the SA is up before our DNS answer.
    m.on_ike_result(
        now + ms(3),
        dst,
        dst,
        IkeResult::Established {
            anonymous: false,
            dnssec: false,
            lookup_failed: false,
        },
    );
    let actions = drain(&mut m);
    let [Action::CancelLookup { .. }, Action::Private { packets, .. }] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(packets.len(), 1);
    // No pending entry at all: still a private outcome to cache.
    m.on_ike_result(
        now,
        ip("10.0.1.1"),
        ip("10.0.1.1"),
        IkeResult::Established {
            anonymous: true,
            dnssec: false,
            lookup_failed: false,
        },
    );
    let Some(Action::Private { outcome, packets }) = m.poll_action() else {
        panic!()
    };
    assert_eq!(
        (outcome.policy.group, packets.len()),
        (Group::ClearOrPrivate, 0)
    );
}

#[test]
fn pending_limit_drops_and_counts() {
    let config = Config {
        max_pending: 2,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = t0();
    assert_eq!(m.on_packet(now, ip("10.0.2.1"), vec![1]), PacketFate::Held);
    assert_eq!(m.on_packet(now, ip("10.0.2.2"), vec![1]), PacketFate::Held);
    assert_eq!(
        m.on_packet(now, ip("10.0.2.3"), vec![1]),
        PacketFate::DroppedPendingFull
    );
    // Joining an existing entry is not limited.
    assert_eq!(m.on_packet(now, ip("10.0.2.2"), vec![2]), PacketFate::Held);
    assert_eq!(m.counters().pending_full, 1);
    assert_eq!(drain(&mut m).len(), 2);
    assert_eq!(m.spare_buffer(), Some(Vec::new()));
}

#[test]
fn lookup_rate_limit_is_a_token_bucket_on_the_virtual_clock() {
    let config = Config {
        lookups_per_second: 10,
        lookup_burst: 3,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = t0();
    let fates: Vec<_> = (1..=5)
        .map(|i| m.on_packet(now, ip(&format!("10.0.2.{i}")), vec![1]))
        .collect();
    assert_eq!(&fates[..3], &[PacketFate::Held; 3]);
    assert_eq!(&fates[3..], &[PacketFate::DroppedRateLimited; 2]);
    assert_eq!(m.counters().lookup_rate_limited, 2);
    // 100 ms buys one more lookup.
    assert_eq!(
        m.on_packet(now + ms(99), ip("10.0.2.6"), vec![1]),
        PacketFate::DroppedRateLimited
    );
    assert_eq!(
        m.on_packet(now + ms(100), ip("10.0.2.7"), vec![1]),
        PacketFate::Held
    );
    assert_eq!(
        m.on_packet(now + ms(100), ip("10.0.2.8"), vec![1]),
        PacketFate::DroppedRateLimited
    );
}

#[test]
fn held_packets_overflow_drops_oldest_and_counts() {
    let mut config = Config::default();
    config.hold.packets_per_dst = 3;
    config.hold.bytes_per_dst = 1000;
    let mut m = machine_with(config, &[]);
    let now = t0();
    let dst = ip("10.0.2.70");
    for i in 0..5u8 {
        assert_eq!(m.on_packet(now, dst, vec![i; 100]), PacketFate::Held);
    }
    assert_eq!(
        m.on_packet(now, dst, vec![9; 1001]),
        PacketFate::DroppedTooBig
    );
    // 400 + 100 + 100 + ... bytes: the byte limit drops oldest too.
    assert_eq!(m.on_packet(now, dst, vec![5; 900]), PacketFate::Held);
    drain(&mut m);
    m.on_dns_result(
        now,
        &name_of(dst),
        DnsResult::Failed {
            reason: oemesh_core::oe::DnsFailure::NoResponse,
        },
    );
    let Some(Action::PassClear { packets, .. }) = m.poll_action() else {
        panic!()
    };
    assert_eq!(bytes(&packets), vec![vec![4; 100], vec![5; 900]]);
    let c = m.counters();
    assert_eq!((c.hold_dst_full, c.hold_too_big), (4, 1));
    m.recycle(packets);
}
