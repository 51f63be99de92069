//! keygen, pubkey, record, and bad key files — no DNS server needed.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use common::{chmod, dnskeys, keygen, openssl_pubkey, pubkey, tool};

#[test]
fn keygen_writes_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (path, pk) = keygen(dir.path(), "host.key");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(pk.len(), 44, "base64 of 32 bytes: {pk}");
    assert_eq!(pubkey(&path), pk);
    assert_eq!(
        openssl_pubkey(&path),
        pk,
        "OpenSSL reads the same public key"
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");

    let again = dnskeys(&["keygen", "--out", path.to_str().unwrap()]).expect_code(3);
    assert!(
        again.error_line().contains("already exists") && again.error_line().contains("--force")
    );
    assert_eq!(pubkey(&path), pk, "the old key is untouched");

    let forced = dnskeys(&["keygen", "--out", path.to_str().unwrap(), "--force"]).expect_code(0);
    assert_ne!(forced.stdout.trim(), pk);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn openssl_and_strongswan_pki_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    let ossl = dir.path().join("openssl.pem");
    tool(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            ossl.to_str().unwrap(),
        ],
    );
    chmod(&ossl, 0o600);
    let run = dnskeys(&["pubkey", "--key", ossl.to_str().unwrap()]).expect_code(0);
    assert_eq!(run.stdout.trim(), openssl_pubkey(&ossl));
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    let pki = dir.path().join("pki.pem");
    let out = Command::new("pki")
        .args(["--gen", "--type", "ed25519", "--outform", "pem"])
        .output()
        .expect("strongSwan's pki is installed (scripts/test installs strongswan-pki)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(&pki, &out.stdout).unwrap();
    chmod(&pki, 0o600);
    let run = dnskeys(&["pubkey", "--key", pki.to_str().unwrap()]).expect_code(0);
    assert_eq!(run.stdout.trim(), openssl_pubkey(&pki));
}

#[test]
fn wrong_algorithms_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (file, args, want) in [
        (
            "rsa.pem",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"][..],
            "the key is RSA",
        ),
        (
            "p256.pem",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"][..],
            "ECDSA P-256",
        ),
        (
            "ed448.pem",
            &["-algorithm", "ed448"][..],
            "the key is Ed448",
        ),
    ] {
        let path = dir.path().join(file);
        let mut a = vec!["genpkey"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-out", path.to_str().unwrap()]);
        tool("openssl", &a);
        let run = dnskeys(&["pubkey", "--key", path.to_str().unwrap()]).expect_code(3);
        let line = run.error_line();
        assert!(
            line.contains(want) && line.contains(file) && line.contains("Ed25519"),
            "{line}"
        );
    }
}

#[test]
fn bad_key_files_give_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.key");
    let run = dnskeys(&["pubkey", "--key", missing.to_str().unwrap()]).expect_code(3);
    assert!(
        run.error_line().contains("missing.key does not exist")
            && run.error_line().contains("keygen")
    );

    let garbage = dir.path().join("garbage.key");
    fs::write(&garbage, "this is not a key\n").unwrap();
    let run = dnskeys(&["pubkey", "--key", garbage.to_str().unwrap()]).expect_code(3);
    assert!(
        run.error_line().contains("garbage.key") && run.error_line().contains("PEM"),
        "{}",
        run.stderr
    );

    let truncated = dir.path().join("truncated.key");
    fs::write(
        &truncated,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let run = dnskeys(&["pubkey", "--key", truncated.to_str().unwrap()]).expect_code(3);
    assert!(run.error_line().contains("truncated.key"), "{}", run.stderr);

    let public = dir.path().join("public.pem");
    let (k, _) = keygen(dir.path(), "k");
    tool(
        "openssl",
        &[
            "pkey",
            "-in",
            k.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    );
    let run = dnskeys(&["pubkey", "--key", public.to_str().unwrap()]).expect_code(3);
    assert!(run.error_line().contains("public key"), "{}", run.stderr);

    let run = dnskeys(&["pubkey", "--key", dir.path().to_str().unwrap()]).expect_code(3);
    assert!(run.error_line().contains("directory"), "{}", run.stderr);
}

#[test]
fn readable_key_warns_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (path, pk) = keygen(dir.path(), "host.key");
    chmod(&path, 0o644);
    let run = dnskeys(&["pubkey", "--key", path.to_str().unwrap()]).expect_code(0);
    assert_eq!(run.stdout.trim(), pk);
    assert!(
        run.stderr.contains("warning")
            && run.stderr.contains("everyone")
            && run.stderr.contains("chmod 600"),
        "{}",
        run.stderr
    );
}

#[test]
fn record_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (path, pk) = keygen(dir.path(), "host.key");
    let k = path.to_str().unwrap();
    let run = dnskeys(&["record", "--key", k, "--ip", "192.0.2.10"]).expect_code(0);
    assert_eq!(
        run.stdout,
        format!("10.2.0.192.in-addr.arpa. 3600 IN IPSECKEY 10 0 4 . {pk}\n")
    );

    let run = dnskeys(&[
        "record",
        "--key",
        k,
        "--ip",
        "2001:db8::10",
        "--precedence",
        "5",
        "--gateway",
        "192.0.2.1",
        "--ttl",
        "60",
    ])
    .expect_code(0);
    assert_eq!(
        run.stdout,
        format!(
            "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 60 IN IPSECKEY 5 1 4 192.0.2.1 {pk}\n"
        )
    );

    let run = dnskeys(&[
        "record",
        "--key",
        k,
        "--ip",
        "192.0.2.10",
        "--format",
        "nsupdate",
    ])
    .expect_code(0);
    assert!(run.stdout.contains(&format!(
        "update add 10.2.0.192.in-addr.arpa. 3600 IN IPSECKEY 10 0 4 . {pk}\n"
    )));
    assert!(run.stdout.ends_with("send\n"));

    let run = dnskeys(&[
        "record",
        "--key",
        k,
        "--ip",
        "192.0.2.10",
        "--gateway",
        "gw.example.net",
        "--format",
        "json",
    ])
    .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["owner"], "10.2.0.192.in-addr.arpa.");
    assert_eq!(v["ttl"], 3600);
    assert_eq!(v["precedence"], 10);
    assert_eq!(v["gateway_type"], 3);
    assert_eq!(v["gateway"], "gw.example.net.");
    assert_eq!(v["algorithm"], 4);
    assert_eq!(v["public_key"], pk.as_str());
}

/// named-checkzone (BIND's own parser) accepts every form `record` prints.
#[test]
fn named_checkzone_accepts_records() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = keygen(dir.path(), "host.key");
    let k = path.to_str().unwrap();
    let mut zone = String::from(
        "$TTL 300\n@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n@ IN NS ns.example.test.\n",
    );
    let mut count = 0;
    for ip in ["192.0.2.10", "2001:db8::10"] {
        for gw in ["none", "192.0.2.1", "2001:db8::1", "gw.example.net."] {
            let run = dnskeys(&[
                "record",
                "--key",
                k,
                "--ip",
                ip,
                "--gateway",
                gw,
                "--precedence",
                "20",
            ])
            .expect_code(0);
            zone.push_str(&run.stdout);
            count += 1;
        }
    }
    let file = dir.path().join("arpa.zone");
    fs::write(&file, &zone).unwrap();
    let out = Command::new("named-checkzone")
        .args(["-i", "full", "arpa", file.to_str().unwrap()])
        .output()
        .expect("named-checkzone (bind9-utils) is installed; run scripts/test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "named-checkzone refused:\n{stdout}\n{zone}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
    // Every record survived: dump the loaded zone and count them.
    let dump = tool(
        "named-compilezone",
        &["-q", "-o", "-", "arpa", file.to_str().unwrap()],
    );
    assert_eq!(dump.matches("IPSECKEY").count(), count, "{dump}");
}

#[test]
fn bad_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = keygen(dir.path(), "host.key");
    let k = path.to_str().unwrap();
    let run = dnskeys(&["record", "--key", k, "--ip", "192.0.2.300"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("'192.0.2.300' is not an IP address"),
        "{}",
        run.stderr
    );
    let run = dnskeys(&[
        "record",
        "--key",
        k,
        "--ip",
        "192.0.2.1",
        "--gateway",
        "bad..name",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--gateway"), "{}", run.stderr);
    let run = dnskeys(&[
        "record",
        "--key",
        k,
        "--ip",
        "192.0.2.1",
        "--precedence",
        "256",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn man_page_is_up_to_date() {
    let run = dnskeys(&["man"]).expect_code(0);
    let committed = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/dnskeys.1"))
        .unwrap_or_default();
    if run.stdout != committed && std::env::var_os("DNSKEYS_BLESS").is_some() {
        fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/man/dnskeys.1"),
            &run.stdout,
        )
        .unwrap();
        return;
    }
    assert!(
        run.stdout == committed,
        "dnskeys/man/dnskeys.1 is stale: regenerate with \
         'DNSKEYS_BLESS=1 cargo test -p dnskeys --test keys man_page' (or 'dnskeys man > dnskeys/man/dnskeys.1')"
    );
    for section in [
        "DNSKEYS PUBLISH",
        "EXIT STATUS",
        "\\-\\-tsig\\-key",
        "Examples",
    ] {
        assert!(run.stdout.contains(section), "man page lacks {section}");
    }
}

#[test]
fn completions_and_help() {
    for shell in ["bash", "zsh", "fish"] {
        let run = dnskeys(&["completions", shell]).expect_code(0);
        assert!(
            run.stdout.contains("publish") && run.stdout.contains("tsig-key"),
            "{shell}"
        );
    }
    for cmd in [
        "keygen",
        "pubkey",
        "record",
        "publish",
        "verify",
        "rotate",
        "remove",
        "completions",
        "man",
    ] {
        let run = dnskeys(&[cmd, "--help"]).expect_code(0);
        assert!(
            run.stdout.contains("Examples:"),
            "{cmd} --help has examples"
        );
    }
    assert!(
        dnskeys(&["--help"])
            .expect_code(0)
            .stdout
            .contains("Exit status")
    );
}
