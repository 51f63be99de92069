//! The decision machine's DNSSEC rules (issue 12): a bogus answer is a DNS
//! failure, never a key and never "no key"; `require-dnssec` authenticates
//! only with a secure key and fails closed on answers DNSSEC rejects.

mod oe_common;

use oe_common::*;
use oemesh_core::oe::{
    Action, Config, DnsFailure, DnsResult, Dnssec, Group, GroupOptions, NoRecord, State,
};

const REQUIRE_DNSSEC: GroupOptions = GroupOptions {
    require_dnssec: true,
    ..GroupOptions::REQUIRE_AUTHENTICATED
};

fn with_anonymous(mut o: GroupOptions) -> GroupOptions {
    o.allow_anonymous = true;
    o
}

fn keyed(dnssec: Dnssec) -> DnsResult {
    DnsResult::Records {
        records: vec![ed(10, oemesh_core::ipseckey::Gateway::None, 1)],
        dnssec,
        ttl: 600,
    }
}

fn bogus() -> DnsResult {
    DnsResult::Failed {
        reason: DnsFailure::Bogus("RRSIG expired".into()),
    }
}

/// The single action after a DNS answer for a fresh private-or-clear destination.
fn decide(options: GroupOptions, result: DnsResult) -> Action {
    let mut m = machine_with(Config::default(), &[(Group::PrivateOrClear, options)]);
    let now = t0();
    let dst = ip("10.0.2.10");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.on_dns_result(now, &name_of(dst), result);
    let mut actions = drain(&mut m);
    assert_eq!(actions.len(), 1, "{actions:?}");
    actions.remove(0)
}

#[test]
fn a_bogus_answer_is_a_dns_failure_not_no_key() {
    let Action::PassClear { outcome, .. } = decide(GroupOptions::default(), bogus()) else {
        panic!("private-or-clear without require-dnssec: a DNS failure goes clear (30 s)")
    };
    assert!(
        outcome.reason.contains("DNSSEC bogus: RRSIG expired"),
        "{outcome:?}"
    );
    assert!(outcome.reason.contains("clear for 30s"), "{outcome:?}");
    assert_eq!(outcome.dnssec_state, Some(Dnssec::Bogus));
    assert_eq!(outcome.cause.label(), "dnssec_failed");
}

#[test]
fn require_dnssec_fails_closed_on_bogus() {
    let Action::Drop { outcome, dropped } = decide(REQUIRE_DNSSEC, bogus()) else {
        panic!("require-dnssec: bogus must never go clear")
    };
    assert_eq!(dropped, 1);
    assert_eq!(outcome.state, State::Blocked);
    assert!(outcome.reason.contains("bogus"), "{outcome:?}");
    assert!(
        outcome.reason.contains("require-dnssec fails closed"),
        "{outcome:?}"
    );
}

#[test]
fn require_dnssec_fails_closed_on_an_unproven_denial() {
    let nx = DnsResult::NoRecords {
        kind: NoRecord::Nxdomain,
        negative_ttl: Some(300),
        dnssec: Dnssec::Indeterminate,
    };
    let Action::Drop { outcome, .. } = decide(REQUIRE_DNSSEC, nx.clone()) else {
        panic!("require-dnssec: an indeterminate NXDOMAIN must not go clear")
    };
    assert!(outcome.reason.contains("indeterminate"), "{outcome:?}");
    // Without require-dnssec it is an ordinary "no key".
    let Action::PassClear { outcome, .. } = decide(NO_ANON, nx) else {
        panic!()
    };
    assert!(
        outcome.reason.starts_with("no IPSECKEY (NXDOMAIN)"),
        "{outcome:?}"
    );
}

#[test]
fn require_dnssec_takes_a_proven_denial_as_no_key() {
    for state in [Dnssec::Secure, Dnssec::Insecure] {
        let nx = DnsResult::NoRecords {
            kind: NoRecord::Nxdomain,
            negative_ttl: Some(300),
            dnssec: state,
        };
        let Action::PassClear { outcome, .. } = decide(REQUIRE_DNSSEC, nx) else {
            panic!("{state}: a proven denial is no key: clear for private-or-clear")
        };
        assert!(
            outcome.reason.starts_with("no IPSECKEY (NXDOMAIN)"),
            "{outcome:?}"
        );
    }
}

#[test]
fn require_dnssec_authenticates_only_with_a_secure_key() {
    let Action::StartIke {
        authenticated_by_dnssec,
        ..
    } = decide(REQUIRE_DNSSEC, keyed(Dnssec::Secure))
    else {
        panic!("a secure key starts IKE with it")
    };
    assert!(authenticated_by_dnssec);
    for state in [Dnssec::Insecure, Dnssec::Indeterminate, Dnssec::Unvalidated] {
        // Without anonymous IKE: no usable key, clear (private-or-clear).
        let Action::PassClear { outcome, .. } = decide(REQUIRE_DNSSEC, keyed(state)) else {
            panic!("{state}: an unvalidated key must not authenticate")
        };
        assert!(
            outcome
                .reason
                .contains(&format!("IPSECKEY not DNSSEC-secure ({state})")),
            "{outcome:?}"
        );
        // With anonymous IKE allowed: AUTH NULL, not the key.
        let Action::StartIke {
            key,
            authenticated_by_dnssec,
            ..
        } = decide(with_anonymous(REQUIRE_DNSSEC), keyed(state))
        else {
            panic!("{state}: anonymous IKE instead")
        };
        assert_eq!(key, oemesh_core::oe::PeerKey::Null, "{state}");
        assert!(!authenticated_by_dnssec);
    }
}

#[test]
fn without_require_dnssec_an_insecure_key_authenticates_but_not_by_dnssec() {
    let Action::StartIke {
        key,
        authenticated_by_dnssec,
        ..
    } = decide(GroupOptions::default(), keyed(Dnssec::Insecure))
    else {
        panic!()
    };
    assert_ne!(key, oemesh_core::oe::PeerKey::Null);
    assert!(!authenticated_by_dnssec);
}

/// As responder: an initiator signing with its address ID under
/// `require-dnssec` is authenticated only with a key from a secure answer.
#[test]
fn as_responder_require_dnssec_takes_only_a_secure_key() {
    use oemesh_core::ike::message::Identity;
    use oemesh_core::oe::PeerAnswer;
    let answer = |options: GroupOptions, result: DnsResult| {
        let mut m = machine_with(Config::default(), &[(Group::PrivateOrClear, options)]);
        let now = t0();
        let peer = ip("10.0.2.30");
        m.on_ike_request(
            now,
            1,
            peer,
            &Identity::Ipv4("10.0.2.30".parse().unwrap()),
            false,
        );
        drain(&mut m);
        m.on_dns_result(now, &name_of(peer), result);
        drain(&mut m)
            .into_iter()
            .find_map(|a| match a {
                Action::AnswerPeer { answer, .. } => Some(answer),
                _ => None,
            })
            .expect("an answer")
    };
    let secure = answer(REQUIRE_DNSSEC, keyed(Dnssec::Secure));
    assert!(
        matches!(secure, PeerAnswer::Ed25519 { dnssec: true, .. }),
        "{secure:?}"
    );
    let insecure = answer(REQUIRE_DNSSEC, keyed(Dnssec::Insecure));
    let PeerAnswer::Refuse { reason } = insecure else {
        panic!("an insecure key must not authenticate under require-dnssec: {insecure:?}")
    };
    assert!(reason.contains("not DNSSEC-secure (insecure)"), "{reason}");
    // Without require-dnssec the same key authenticates, not by DNSSEC.
    let plain = answer(GroupOptions::default(), keyed(Dnssec::Insecure));
    assert!(
        matches!(plain, PeerAnswer::Ed25519 { dnssec: false, .. }),
        "{plain:?}"
    );
    let bogus = answer(GroupOptions::default(), bogus());
    assert!(matches!(bogus, PeerAnswer::Refuse { .. }), "{bogus:?}");
}

#[test]
fn answers_are_counted_by_dnssec_state() {
    let mut m = machine_with(Config::default(), &[]);
    let now = t0();
    for (last, result) in [
        (10, keyed(Dnssec::Secure)),
        (11, bogus()),
        (12, keyed(Dnssec::Indeterminate)),
    ] {
        let dst = ip(&format!("10.0.2.{last}"));
        m.on_packet(now, dst, b"a".to_vec());
        drain(&mut m);
        m.on_dns_result(now, &name_of(dst), result);
        drain(&mut m);
    }
    let c = m.counters().dnssec;
    assert_eq!(c[Dnssec::Secure as usize], 1);
    assert_eq!(c[Dnssec::Bogus as usize], 1);
    assert_eq!(c[Dnssec::Indeterminate as usize], 1);
    assert_eq!(c[Dnssec::Insecure as usize], 0);
}

/// A policy reloaded while a lookup runs: require-dnssec applies to the
/// answer if either policy has it (the stricter wins, as for failing closed).
#[test]
fn require_dnssec_from_a_reloaded_policy_applies_to_a_pending_lookup() {
    let mut m = machine_with(Config::default(), &[]);
    let now = t0();
    let dst = ip("10.0.2.10");
    m.on_packet(now, dst, b"a".to_vec());
    drain(&mut m);
    m.set_policy(policy(&[(Group::PrivateOrClear, REQUIRE_DNSSEC)]));
    m.on_dns_result(now, &name_of(dst), bogus());
    let actions = drain(&mut m);
    assert!(
        matches!(actions.as_slice(), [Action::Drop { .. }]),
        "bogus under the reloaded require-dnssec must not go clear: {actions:?}"
    );
}
