//! The testnet with signed zones (`Options::dnssec`): BIND signs the forward
//! and reverse zones itself, alice's key published with the real `dnskeys
//! publish` comes back signed and `delv` validates it from the anchor file
//! alone; the agents' configs validate from that file; a forger at
//! 192.0.2.54 serves an unsigned copy or expired signatures; a validating
//! resolver at 192.0.2.55 sets AD on the real answer.
//!
//! The agents are not started: until the agent side of DNSSEC (issue 12) is
//! in, `oemesh run` refuses the `[dns] dnssec` keys.
//!
//! Needs root, BIND 9 (bind9, bind9-dnsutils), tcpdump, nft.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::IpAddr;
use std::time::Instant;

use oemesh_testkit::bind::forge::Forgery;
use oemesh_testkit::bind::resolver::authenticated;
use oemesh_testkit::bind::{REVERSE_V4_ZONE, REVERSE_V6_ZONE};
use oemesh_testkit::process;
use oemesh_testkit::topology::{Binaries, FORGER_V4, FORGER_V6, Options, RESOLVER_V4, Testnet};

#[test]
fn signed_zones_anchors_forger_and_resolver() {
    process::require_root();
    let bins = Binaries::from_test_target_dir().unwrap();
    let mut opts = Options::new("dnssec", bins);
    opts.dnssec = true;
    opts.start_agents = false;
    let started = Instant::now();
    let net = Testnet::up(opts).unwrap();
    eprintln!("signed testnet up in {:?}", started.elapsed());

    let anchors = net.anchor_file().expect("signed testnet has anchors");
    let text = std::fs::read_to_string(&anchors).unwrap();
    let zones = net.dns().bind().signed_zones().len();
    assert_eq!(text.lines().count(), zones, "one 257 key per zone:\n{text}");
    assert!(
        text.lines().all(|l| l.contains("\tDNSKEY\t257 3 13 ")),
        "{text}"
    );
    let config = std::fs::read_to_string(net.alice().config_path()).unwrap();
    assert!(config.contains("dnssec = \"validate\"\n"), "{config}");
    assert!(
        config.contains(&format!(
            "trust_anchors = [{:?}]",
            anchors.display().to_string()
        )),
        "{config}"
    );

    // alice's IPSECKEY (published by `dnskeys publish` over TSIG) is signed
    // by BIND and validates from the anchors alone.
    let bind = net.dns().bind();
    let alice = net.alice().ip().to_string();
    let answer = bind.dig(&["+dnssec", "-x", &alice, "IPSECKEY"]).unwrap();
    assert!(answer.contains("RRSIG\tIPSECKEY 13 6"), "{answer}");
    let delv = bind
        .delv(REVERSE_V4_ZONE, &["-x", &alice, "IPSECKEY"])
        .unwrap();
    assert!(delv.contains("; fully validated"), "{delv}");

    // The forger: alice's name has a lie, bob's is gone, nothing is signed.
    let bob: IpAddr = net.bob().ip();
    let forger = net
        .start_forger(
            IpAddr::V4(FORGER_V4),
            Forgery::Unsigned(vec![
                (net.alice().ip(), Some("10 0 2 . AQPZZZZZ".into())),
                (bob, None),
            ]),
        )
        .unwrap();
    let lie = forger.dig(&["+dnssec", "-x", &alice, "IPSECKEY"]).unwrap();
    assert!(lie.contains("AQPZZZZZ") && !lie.contains("RRSIG"), "{lie}");
    let gone = forger.dig(&["-x", &bob.to_string(), "IPSECKEY"]).unwrap();
    assert!(gone.is_empty(), "{gone}");
    let delv_anchors = bind.delv_anchor_file().unwrap();
    let check = forger
        .delv(&delv_anchors, REVERSE_V4_ZONE, &["-x", &alice, "IPSECKEY"])
        .unwrap();
    assert!(
        check.contains("resolution failed") && !check.contains("fully validated"),
        "the unsigned lie does not validate: {check}"
    );
    eprintln!("delv at the unsigned forger: {}", check.trim());
    drop(forger);
    let t = Instant::now();
    let expired = net
        .start_forger(IpAddr::V4(FORGER_V4), Forgery::Expired)
        .unwrap();
    eprintln!("expired forger up in {:?}", t.elapsed());
    let old = expired.dig(&["+dnssec", "-x", &alice, "IPSECKEY"]).unwrap();
    assert!(old.contains(" 20200102000000 20200101000000 "), "{old}");
    let check = expired
        .delv(&delv_anchors, REVERSE_V4_ZONE, &["-x", &alice, "IPSECKEY"])
        .unwrap();
    assert!(
        check.contains("resolution failed") && !check.contains("fully validated"),
        "expired signatures do not validate: {check}"
    );
    eprintln!("delv at the expired forger: {}", check.trim());
    drop(expired);

    // At an IPv6 address too, lying about an IPv6 name.
    let v6 = net
        .start_forger(
            IpAddr::V6(FORGER_V6),
            Forgery::Unsigned(vec![(IpAddr::V6(net.alice().v6()), None)]),
        )
        .unwrap();
    assert_eq!(v6.addr().ip(), IpAddr::V6(FORGER_V6));
    let soa = v6.dig(&["+norecurse", REVERSE_V6_ZONE, "SOA"]).unwrap();
    assert!(soa.contains("SOA"), "{soa}");
    drop(v6);

    // The validating resolver: AD on alice's signed IPSECKEY.
    let t = Instant::now();
    let resolver = net
        .start_validating_resolver(IpAddr::V4(RESOLVER_V4))
        .unwrap();
    eprintln!("validating resolver up in {:?}", t.elapsed());
    let out = resolver
        .dig(&["+comments", "+dnssec", "-x", &alice, "IPSECKEY"])
        .unwrap();
    assert!(authenticated(&out), "{out}");
    assert!(out.contains("IPSECKEY 10 0 4 . "), "{out}");
    drop(resolver);
    net.down().unwrap();
}
