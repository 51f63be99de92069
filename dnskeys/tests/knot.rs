//! publish / verify / remove against a real Knot DNS, the other authoritative
//! server dnskeys is meant for (beside BIND 9 in `dns.rs`). The zone's ACL lets
//! the TSIG key update IPSECKEY records only, as `docs/publishing-keys.md`
//! shows. Needs `knotd` (Debian package `knot`; `scripts/test` installs it).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Run, dnskeys, keygen};
use oemesh_testkit::knot::Knot;

const V4: &str = "192.0.2.10";
const V4_NAME: &str = "10.2.0.192.in-addr.arpa.";

fn update(knot: &Knot, cmd: &str, key: &Path) -> Run {
    dnskeys(&[
        cmd,
        "--key",
        key.to_str().unwrap(),
        "--ip",
        V4,
        "--server",
        &knot.server(),
        "--tsig-key",
        knot.tsig_key_file().to_str().unwrap(),
    ])
}

fn verify(knot: &Knot, key: &Path) -> Run {
    dnskeys(&[
        "verify",
        "--ip",
        V4,
        "--key",
        key.to_str().unwrap(),
        "--server",
        &knot.server(),
    ])
}

#[test]
fn publish_verify_remove_against_knot() {
    let knot = Knot::start().expect("Knot DNS starts (run scripts/test to install knot)");
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = keygen(dir.path(), "host.key");

    let run = update(&knot, "publish", &key).expect_code(0);
    assert!(run.stdout.contains("published:"), "{}", run.stdout);
    let served = knot.dig(&["+norecurse", V4_NAME, "IPSECKEY"]).unwrap();
    assert!(
        served.contains(&pk),
        "Knot serves the record:\n{served}\n{}",
        knot.log()
    );
    let run = verify(&knot, &key).expect_code(0);
    assert!(
        run.stdout.contains("OK: a record carries key"),
        "{}",
        run.stdout
    );

    // Publishing again changes nothing.
    let run = update(&knot, "publish", &key).expect_code(0);
    assert!(run.stdout.contains("nothing to change"), "{}", run.stdout);

    let run = update(&knot, "remove", &key).expect_code(0);
    assert!(run.stdout.contains("removed:"), "{}", run.stdout);
    verify(&knot, &key).expect_code(1);
    let served = knot.dig(&["+norecurse", V4_NAME, "IPSECKEY"]).unwrap();
    assert!(!served.contains("IPSECKEY"), "{served}");

    // A key Knot does not know: the message fits Knot too (no named.conf only).
    let unknown = dir.path().join("unknown.tsig");
    std::fs::write(
        &unknown,
        "key \"nobody-knows-me\" {\n\talgorithm hmac-sha256;\n\t\
         secret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=\";\n};\n",
    )
    .unwrap();
    let run = dnskeys(&[
        "publish",
        "--key",
        key.to_str().unwrap(),
        "--ip",
        V4,
        "--server",
        &knot.server(),
        "--tsig-key",
        unknown.to_str().unwrap(),
    ])
    .expect_code(4);
    let line = run.error_line();
    assert!(
        line.contains("BADKEY") && line.contains("knot.conf"),
        "{line}"
    );
}
