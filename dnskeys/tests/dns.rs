//! publish / verify / rotate / remove against a real BIND 9, checked with dig.
//! Each test starts its own `named` (own port, own directory).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::fs;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use common::{Run, dnskeys, keygen};
use oemesh_testkit::bind::{Bind, TSIG_KEY_NAME};

const V4: &str = "192.0.2.10";
const V4_NAME: &str = "10.2.0.192.in-addr.arpa.";
const V6: &str = "2001:db8::10";
const V6_NAME: &str = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";

fn start() -> Bind {
    Bind::start().expect("BIND 9 starts (run scripts/test to install bind9)")
}

fn update(bind: &Bind, cmd: &str, key: &Path, ip: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        cmd.to_owned(),
        "--key".into(),
        key.to_str().unwrap().into(),
        "--ip".into(),
        ip.into(),
        "--server".into(),
        bind.server(),
        "--tsig-key".into(),
        bind.tsig_key_file().to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    dnskeys(&args)
}

/// The IPSECKEY RDATA at `name` according to dig, sorted: "10 0 4 . KEY".
fn dig_ipseckey(bind: &Bind, name: &str) -> Vec<String> {
    let out = bind.dig(&["+norecurse", name, "IPSECKEY"]).unwrap();
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| l.contains("IPSECKEY"))
        .map(|l| l.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
        .collect();
    v.sort();
    v
}

/// The TTL of the IPSECKEY RRset at `name` according to dig.
fn dig_ttl(bind: &Bind, name: &str) -> u32 {
    let out = bind.dig(&["+norecurse", name, "IPSECKEY"]).unwrap();
    out.split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{out}"))
}

fn verify(bind: &Bind, ip: &str, key: Option<&Path>, json: bool) -> Run {
    let mut args = vec![
        "verify".to_owned(),
        "--ip".into(),
        ip.into(),
        "--server".into(),
        bind.server(),
    ];
    if let Some(k) = key {
        args.extend(["--key".into(), k.to_str().unwrap().into()]);
    }
    if json {
        args.push("--json".into());
    }
    dnskeys(&args)
}

#[test]
fn publish_replaces_and_leaves_other_records_alone() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = keygen(dir.path(), "host.key");
    let (other, other_pk) = keygen(dir.path(), "other.key");
    bind.nsupdate(&format!(
        "update add {V4_NAME} 300 IN PTR host10.example.test."
    ))
    .unwrap();

    let run = update(&bind, "publish", &key, V4, &[]).expect_code(0);
    assert!(run.stdout.contains("published:"), "{}", run.stdout);
    assert!(
        run.stdout.contains("zone 2.0.192.in-addr.arpa."),
        "zone found from the SOA: {}",
        run.stdout
    );
    assert_eq!(dig_ipseckey(&bind, V4_NAME), vec![format!("10 0 4 . {pk}")]);
    assert_eq!(dig_ttl(&bind, V4_NAME), 3600);

    // Another key at the same name (another admin, or a rollover) stays.
    update(&bind, "publish", &other, V4, &["--precedence", "30"]).expect_code(0);
    // Publishing again with another precedence and gateway replaces, never duplicates.
    update(
        &bind,
        "publish",
        &key,
        V4,
        &[
            "--precedence",
            "20",
            "--gateway",
            "192.0.2.1",
            "--zone",
            "2.0.192.in-addr.arpa",
        ],
    )
    .expect_code(0);
    assert_eq!(
        dig_ipseckey(&bind, V4_NAME),
        vec![
            format!("20 1 4 192.0.2.1 {pk}"),
            format!("30 0 4 . {other_pk}")
        ]
    );
    // The PTR is untouched.
    let ptr = bind.dig(&["+norecurse", V4_NAME, "PTR"]).unwrap();
    assert!(ptr.contains("host10.example.test."), "{ptr}");

    // The same again is a no-op (no UPDATE sent).
    let run = update(
        &bind,
        "publish",
        &key,
        V4,
        &["--precedence", "20", "--gateway", "192.0.2.1"],
    )
    .expect_code(0);
    assert!(run.stdout.contains("nothing to change"), "{}", run.stdout);
    assert_eq!(dig_ipseckey(&bind, V4_NAME).len(), 2);
}

#[test]
fn publish_and_verify_ipv6() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = keygen(dir.path(), "host.key");
    let (wrong, _) = keygen(dir.path(), "wrong.key");

    // Nothing published yet: verify fails.
    let run = verify(&bind, V6, Some(&key), false).expect_code(1);
    assert!(run.stdout.contains("FAIL"), "{}", run.stdout);

    update(
        &bind,
        "publish",
        &key,
        V6,
        &["--gateway", "gw.example.test.", "--ttl", "600"],
    )
    .expect_code(0);
    assert_eq!(
        dig_ipseckey(&bind, V6_NAME),
        vec![format!("10 3 4 gw.example.test. {pk}")]
    );

    let run = verify(&bind, V6, Some(&key), false).expect_code(0);
    assert!(
        run.stdout.contains("[match  ]") && run.stdout.contains("OK"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("DNSSEC: not validated"),
        "{}",
        run.stdout
    );
    let run = verify(&bind, V6, Some(&wrong), false).expect_code(1);
    assert!(
        run.stdout.contains("FAIL: no record carries key"),
        "{}",
        run.stdout
    );
    verify(&bind, V6, None, false).expect_code(0);

    let run = verify(&bind, V6, Some(&key), true).expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["name"], V6_NAME);
    assert_eq!(v["records"][0]["matches_key"], true);
    assert_eq!(v["records"][0]["ttl"], 600);
    assert_eq!(v["records"][0]["gateway"], "gw.example.test.");
    assert_eq!(v["dnssec"]["validated"], false);
    assert_eq!(v["dnssec"]["source"], "resolver-ad-bit");
}

#[test]
fn verify_shows_unusable_records_without_crashing() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "host.key");
    // An RSA (algorithm 2) record and an EdDSA record with a 3-byte key: valid
    // IPSECKEY RDATA for BIND, useless for oemesh.
    bind.nsupdate(&format!(
        "update add {V4_NAME} 300 IN IPSECKEY 10 0 2 . AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ==\n\
         update add {V4_NAME} 300 IN IPSECKEY 10 0 4 . AQID"
    ))
    .unwrap();
    let run = verify(&bind, V4, None, false).expect_code(1);
    assert_eq!(run.stdout.matches("[invalid]").count(), 2, "{}", run.stdout);
    assert!(run.stdout.contains("not an Ed25519 key"), "{}", run.stdout);
    let run = verify(&bind, V4, None, true).expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["records"][0]["valid"], false);
    assert!(
        v["records"][0]["error"]
            .as_str()
            .unwrap()
            .contains("Ed25519")
    );

    // Publishing ours leaves them in place; verify then succeeds.
    update(&bind, "publish", &key, V4, &[]).expect_code(0);
    assert_eq!(dig_ipseckey(&bind, V4_NAME).len(), 3);
    verify(&bind, V4, Some(&key), false).expect_code(0);
}

#[test]
fn rotate_then_finish_then_remove() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (old, old_pk) = keygen(dir.path(), "old.key");
    let (new, new_pk) = keygen(dir.path(), "new.key");
    update(&bind, "publish", &old, V4, &["--ttl", "300"]).expect_code(0);

    let rotate = |finish: bool, extra: &[&str]| {
        let mut args = vec![
            "rotate".to_owned(),
            "--old".into(),
            old.to_str().unwrap().into(),
            "--new".into(),
            new.to_str().unwrap().into(),
            "--ip".into(),
            V4.into(),
            "--server".into(),
            bind.server(),
            "--tsig-key".into(),
            bind.tsig_key_file().to_str().unwrap().into(),
        ];
        if finish {
            args.push("--finish".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        dnskeys(&args)
    };
    // --finish before step 1 is refused and changes nothing.
    let run = rotate(true, &[]).expect_code(4);
    assert!(
        run.error_line()
            .contains("run 'dnskeys rotate' without --finish first"),
        "{}",
        run.stderr
    );

    let run = rotate(false, &[]).expect_code(0);
    assert!(run.stdout.contains("wait at least 300 s"), "{}", run.stdout);
    assert!(
        new.with_extension("key.rollover").is_file(),
        "step 1 is recorded"
    );
    assert_eq!(
        dig_ipseckey(&bind, V4_NAME),
        vec![format!("10 0 4 . {old_pk}"), format!("20 0 4 . {new_pk}")]
    );
    verify(&bind, V4, Some(&old), false).expect_code(0);
    verify(&bind, V4, Some(&new), false).expect_code(0);

    // At once is too early: caches may still hold the RRset without the new key.
    let run = rotate(true, &[]).expect_code(4);
    assert!(
        run.error_line().contains("too early") && run.error_line().contains("--force"),
        "{}",
        run.stderr
    );
    assert_eq!(dig_ipseckey(&bind, V4_NAME).len(), 2, "nothing changed");
    rotate(true, &["--force"]).expect_code(0);
    assert!(
        !new.with_extension("key.rollover").exists(),
        "--finish removes the record"
    );
    assert_eq!(
        dig_ipseckey(&bind, V4_NAME),
        vec![format!("10 0 4 . {new_pk}")]
    );
    // Done already: running it again changes nothing and needs no wait.
    rotate(true, &[]).expect_code(0);
    verify(&bind, V4, Some(&old), false).expect_code(1);
    assert_eq!(dig_ttl(&bind, V4_NAME), 300, "the TTL is kept");

    let run = update(&bind, "remove", &new, V4, &[]).expect_code(0);
    assert!(run.stdout.contains("removed:"), "{}", run.stdout);
    assert!(dig_ipseckey(&bind, V4_NAME).is_empty());
    let run = update(&bind, "remove", &new, V4, &[]).expect_code(0);
    assert!(run.stdout.contains("nothing to change"), "{}", run.stdout);
}

#[test]
fn finish_waits_out_the_ttl_since_step_1() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (old, _) = keygen(dir.path(), "old.key");
    let (new, new_pk) = keygen(dir.path(), "new.key");
    update(&bind, "publish", &old, V4, &["--ttl", "2"]).expect_code(0);
    let rotate = |extra: &[&str]| {
        let mut args = vec![
            "rotate",
            "--old",
            old.to_str().unwrap(),
            "--new",
            new.to_str().unwrap(),
            "--ip",
            V4,
        ];
        args.extend(extra);
        let server = bind.server();
        let tsig = bind.tsig_key_file();
        args.extend(["--server", &server, "--tsig-key", tsig.to_str().unwrap()]);
        dnskeys(&args)
    };
    let run = rotate(&[]).expect_code(0);
    assert!(run.stdout.contains("wait at least 2 s"), "{}", run.stdout);
    let run = rotate(&["--finish"]).expect_code(4);
    assert!(run.error_line().contains("too early"), "{}", run.stderr);
    // Step 1 again changes nothing and keeps the clock of the first run.
    let again = rotate(&[]).expect_code(0);
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );

    std::thread::sleep(Duration::from_millis(2100));
    rotate(&["--finish"]).expect_code(0);
    assert_eq!(
        dig_ipseckey(&bind, V4_NAME),
        vec![format!("10 0 4 . {new_pk}")]
    );

    // Without the record of step 1 (it ran elsewhere), --finish wants --force.
    let (newer, _) = keygen(dir.path(), "newer.key");
    let rotate2 = |extra: &[&str]| {
        let mut args = vec![
            "rotate",
            "--old",
            new.to_str().unwrap(),
            "--new",
            newer.to_str().unwrap(),
            "--ip",
            V4,
        ];
        args.extend(extra);
        let server = bind.server();
        let tsig = bind.tsig_key_file();
        args.extend(["--server", &server, "--tsig-key", tsig.to_str().unwrap()]);
        dnskeys(&args)
    };
    rotate2(&[]).expect_code(0);
    fs::remove_file(newer.with_extension("key.rollover")).unwrap();
    let run = rotate2(&["--finish"]).expect_code(4);
    assert!(
        run.error_line().contains("no record of when step 1 ran"),
        "{}",
        run.stderr
    );
    rotate2(&["--finish", "--force"]).expect_code(0);
}

/// Writes a TSIG key file with `name` and `secret`.
fn tsig_file(dir: &Path, file: &str, name: &str, secret: &str) -> String {
    let path = dir.join(file);
    fs::write(
        &path,
        format!("key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn tsig_refusals_are_explained() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "host.key");
    let k = key.to_str().unwrap();
    let server = bind.server();
    let publish = |tsig: &str| {
        dnskeys(&[
            "publish",
            "--key",
            k,
            "--ip",
            V4,
            "--server",
            &server,
            "--tsig-key",
            tsig,
        ])
    };

    // Right name, wrong secret: BADSIG.
    let wrong = tsig_file(
        dir.path(),
        "wrong.tsig",
        TSIG_KEY_NAME,
        "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
    );
    let run = publish(&wrong).expect_code(4);
    let line = run.error_line();
    assert!(
        line.contains("BADSIG")
            && line.contains(&format!("'{TSIG_KEY_NAME}'"))
            && line.contains("secret"),
        "{line}"
    );

    // A name the server does not know: BADKEY.
    let unknown = tsig_file(
        dir.path(),
        "unknown.tsig",
        "nobody-knows-me",
        "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
    );
    let run = publish(&unknown).expect_code(4);
    let line = run.error_line();
    assert!(
        line.contains("BADKEY")
            && line.contains("'nobody-knows-me'")
            && line.contains("hmac-sha256"),
        "{line}"
    );

    // A key the server knows but that may not update: REFUSED.
    let run = publish(bind.readonly_tsig_key_file().to_str().unwrap()).expect_code(4);
    let line = run.error_line();
    assert!(
        line.contains("REFUSED") && line.contains("update-policy"),
        "{line}"
    );

    // Another algorithm is refused before anything is sent.
    let md5 = dir.path().join("md5.tsig");
    fs::write(&md5, "key \"x\" { algorithm hmac-md5; secret \"AAAA\"; };").unwrap();
    let run = publish(md5.to_str().unwrap()).expect_code(3);
    assert!(run.error_line().contains("hmac-md5"), "{}", run.stderr);

    assert!(
        dig_ipseckey(&bind, V4_NAME).is_empty(),
        "nothing was published"
    );
}

#[test]
fn name_outside_zone_is_refused() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "host.key");
    let run = update(&bind, "publish", &key, V4, &["--zone", "example.test."]).expect_code(2);
    let line = run.error_line();
    assert!(
        line.contains(V4_NAME) && line.contains("--zone example.test."),
        "{line}"
    );
}

/// A loopback port nobody listens on (UDP and TCP), found by binding and closing.
fn closed_port() -> String {
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = udp.local_addr().unwrap().port();
    drop(udp);
    let _ = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
    format!("127.0.0.1:{port}")
}

#[test]
fn unreachable_server_times_out_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "host.key");
    let tsig = tsig_file(
        dir.path(),
        "t.tsig",
        "k",
        "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
    );
    let server = closed_port();
    let k = key.to_str().unwrap();

    let run =
        dnskeys(&["verify", "--ip", V4, "--server", &server, "--timeout", "1"]).expect_code(5);
    let line = run.error_line();
    assert!(
        line.contains("no answer from") && line.contains(&server) && line.contains("--timeout"),
        "{line}"
    );
    assert!(
        run.took < Duration::from_secs(4),
        "bounded: took {:?}",
        run.took
    );

    // Without --zone, the SOA lookup is what times out.
    let run = dnskeys(&[
        "publish",
        "--key",
        k,
        "--ip",
        V4,
        "--server",
        &server,
        "--tsig-key",
        &tsig,
        "--timeout",
        "1",
    ])
    .expect_code(5);
    assert!(
        run.error_line().contains("no answer from"),
        "{}",
        run.stderr
    );
    assert!(
        run.took < Duration::from_secs(4),
        "bounded: took {:?}",
        run.took
    );
}
