//! `dnskeys publish` into zones BIND signs itself (`dnssec-policy`, the zones
//! dynamic): the published IPSECKEY comes back with an RRSIG made by the
//! zone's key, that key is the one in the anchor file, and `delv` validates
//! the answer from the anchor file alone. Both address families; then a
//! `remove` leaves a signed denial (NSEC), not a stale signed key.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;

use common::{dnskeys, keygen};
use oemesh_testkit::bind::dnssec::anchor_lines;
use oemesh_testkit::bind::{Bind, REVERSE_V4_ZONE, REVERSE_V6_ZONE};

/// `text` with each line's fields joined by one space (dig aligns short
/// owner names with tabs, long ones with spaces).
fn normalized(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The key tag of the zone's anchor, from the RRSIG over its DNSKEY RRset.
fn anchor_tag(bind: &Bind, zone: &str) -> String {
    let out = bind.dig(&["+dnssec", zone, "DNSKEY"]).unwrap();
    normalized(&out)
        .into_iter()
        .find(|l| l.contains("RRSIG DNSKEY"))
        .and_then(|l| l.split_whitespace().nth(10).map(str::to_owned))
        .unwrap_or_else(|| panic!("no RRSIG over {zone} DNSKEY:\n{out}"))
}

#[test]
fn published_key_is_signed_and_validates_from_the_anchor() {
    let bind = Bind::start_signed().expect("BIND 9 starts and signs its zones");
    let tmp = tempfile::tempdir().unwrap();
    let (key, public) = keygen(tmp.path(), "host.key");
    let anchors = fs::read_to_string(bind.anchor_file().unwrap()).unwrap();

    for (ip, zone) in [
        ("192.0.2.10", REVERSE_V4_ZONE),
        ("2001:db8::10", REVERSE_V6_ZONE),
    ] {
        dnskeys(&[
            "publish",
            "--key",
            key.to_str().unwrap(),
            "--ip",
            ip,
            "--server",
            &bind.server(),
            "--tsig-key",
            bind.tsig_key_file().to_str().unwrap(),
        ])
        .expect_code(0);

        // The IPSECKEY and BIND's RRSIG over it, by the zone's (anchored) key.
        let answer = bind.dig(&["+dnssec", "-x", ip, "IPSECKEY"]).unwrap();
        assert!(answer.contains(&public), "{ip}: {answer}");
        let rrsig = normalized(&answer)
            .into_iter()
            .find(|l| l.contains("RRSIG IPSECKEY 13 "))
            .unwrap_or_else(|| panic!("{ip}: no RRSIG (ECDSAP256SHA256):\n{answer}"));
        let signer: Vec<&str> = rrsig.split_whitespace().skip(10).take(2).collect();
        assert_eq!(signer, [anchor_tag(&bind, zone).as_str(), zone], "{rrsig}");

        // The zone's DNSKEY with flags 257 is the anchor file's.
        let dnskey = bind.dig(&[zone, "DNSKEY"]).unwrap();
        let live = anchor_lines(&dnskey);
        assert_eq!(live.len(), 1, "{dnskey}");
        assert!(
            normalized(&anchors).contains(&normalized(&live[0])[0]),
            "{live:?} vs\n{anchors}"
        );

        // delv, given only the anchor file, validates the chain.
        let delv = bind.delv(zone, &["-x", ip, "IPSECKEY"]).unwrap();
        assert!(delv.contains("; fully validated"), "{ip}: {delv}");
        assert!(delv.contains(&public), "{ip}: {delv}");
    }

    // Removing the key: the name is gone, and its absence is signed too.
    dnskeys(&[
        "remove",
        "--key",
        key.to_str().unwrap(),
        "--ip",
        "192.0.2.10",
        "--server",
        &bind.server(),
        "--tsig-key",
        bind.tsig_key_file().to_str().unwrap(),
    ])
    .expect_code(0);
    let delv = bind
        .delv(REVERSE_V4_ZONE, &["-x", "192.0.2.10", "IPSECKEY"])
        .unwrap();
    assert!(
        delv.contains("; negative response, fully validated"),
        "signed denial: {delv}"
    );
}
