//! The named.conf snippets in docs/publishing-keys.md are accepted by
//! `named-checkconf`, and its knot.conf snippet by `knotc conf-check`, so the
//! guide's configuration is not just plausible.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::process::Command;

#[test]
fn guide_named_conf_snippets_pass_named_checkconf() {
    let guide = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/publishing-keys.md"
    ))
    .unwrap();
    let marker = "<!-- dnskeys/tests/docs.rs checks this block with named-checkconf -->\n```conf\n";
    let blocks: Vec<&str> = guide
        .split(marker)
        .skip(1)
        .map(|rest| rest.split("\n```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "the guide's checked blocks");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key = Command::new("tsig-keygen")
        .args(["-a", "hmac-sha256", "oemesh-update"])
        .output();
    let key = key.unwrap_or_else(|e| panic!("tsig-keygen (bind9) missing ({e}); run scripts/test"));
    fs::write(dir.path().join("oemesh-update.key"), &key.stdout).unwrap();
    for (i, block) in blocks.iter().enumerate() {
        let mut conf = block
            .replace("/etc/bind/", &format!("{d}/"))
            .replace("/var/lib/bind/", &format!("{d}/"));
        if !conf.contains("include") {
            conf = format!("include \"{d}/oemesh-update.key\";\n{conf}");
        }
        let path = dir.path().join(format!("named-{i}.conf"));
        fs::write(&path, &conf).unwrap();
        let out = Command::new("named-checkconf").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "named-checkconf refused block {i}:\n{conf}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The knot.conf snippet in the guide passes `knotc conf-check` (Knot DNS,
/// Debian package `knot`; `scripts/test` installs it).
#[test]
fn guide_knot_conf_snippet_passes_knotc_conf_check() {
    let guide = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/publishing-keys.md"
    ))
    .unwrap();
    let marker =
        "<!-- dnskeys/tests/docs.rs checks this block with knotc conf-check -->\n```yaml\n";
    let blocks: Vec<&str> = guide
        .split(marker)
        .skip(1)
        .map(|rest| rest.split("\n```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 1, "the guide's checked Knot block");
    let conf = blocks[0].replace(
        "<the secret printed above>",
        "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("knot.conf");
    fs::write(&path, &conf).unwrap();
    let out = Command::new("knotc")
        .arg("-c")
        .arg(&path)
        .arg("conf-check")
        .output()
        .unwrap_or_else(|e| panic!("knotc (knot) missing ({e}); run scripts/test"));
    assert!(
        out.status.success(),
        "knotc conf-check rejects the guide's block:\n{conf}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
