//! `--subnet`: one wildcard IPSECKEY for a site behind a gateway, against a
//! real BIND 9, checked with dig. Each test starts its own `named`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;

use common::{Run, dnskeys, keygen};
use oemesh_core::ipseckey::reverse_name;
use oemesh_testkit::bind::Bind;

/// The testkit's IPv4 reverse zone is 192.0.2.0/24: the site is all of it.
const SUBNET: &str = "192.0.2.0/24";
const WILDCARD: &str = "*.2.0.192.in-addr.arpa.";
/// The gateway, outside the site.
const GATEWAY: &str = "198.51.100.1";

const SUBNET6: &str = "2001:db8:1::/64";
const WILDCARD6: &str = "*.0.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
const GATEWAY6: &str = "2001:db8::1";

fn start() -> Bind {
    Bind::start().expect("BIND 9 starts (run scripts/test to install bind9)")
}

fn rev(ip: &str) -> String {
    reverse_name(ip.parse().unwrap()).to_string()
}

/// `dnskeys CMD --key KEY --subnet SUBNET --server … --tsig-key … EXTRA…`.
fn update(bind: &Bind, cmd: &str, key: &Path, subnet: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        cmd.to_owned(),
        "--key".into(),
        key.to_str().unwrap().into(),
        "--subnet".into(),
        subnet.into(),
        "--server".into(),
        bind.server(),
        "--tsig-key".into(),
        bind.tsig_key_file().to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    dnskeys(&args)
}

fn verify(bind: &Bind, subnet: &str, key: &Path, extra: &[&str]) -> Run {
    let server = bind.server();
    let mut args = vec![
        "verify",
        "--subnet",
        subnet,
        "--key",
        key.to_str().unwrap(),
        "--server",
        &server,
    ];
    args.extend(extra);
    dnskeys(&args)
}

/// The IPSECKEY RDATA dig gets for `name`, sorted: "10 1 4 198.51.100.1 KEY".
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

/// The response code dig reports for `name` IPSECKEY (NOERROR, NXDOMAIN).
fn dig_status(bind: &Bind, name: &str) -> String {
    let out = bind
        .dig(&["+norecurse", "+noall", "+comments", name, "IPSECKEY"])
        .unwrap();
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in {out}"))
        .to_owned()
}

#[test]
fn one_wildcard_serves_every_host_of_an_ipv4_site() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (gw, gw_pk) = keygen(dir.path(), "gw.key");
    let record = format!("10 1 4 {GATEWAY} {gw_pk}");

    let run = update(&bind, "publish", &gw, SUBNET, &["--gateway", GATEWAY]).expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("published: {WILDCARD} 3600 IN IPSECKEY {record}"))
            && run.stdout.contains("zone 2.0.192.in-addr.arpa."),
        "the zone is found from the SOA of the wildcard: {}",
        run.stdout
    );
    assert_eq!(dig_ipseckey(&bind, WILDCARD), vec![record.clone()]);
    // Any host inside gets the record by synthesis (RFC 4592).
    for host in ["192.0.2.1", "192.0.2.77", "192.0.2.254"] {
        assert_eq!(
            dig_ipseckey(&bind, &rev(host)),
            vec![record.clone()],
            "{host}"
        );
    }

    let run = verify(&bind, SUBNET, &gw, &[]).expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("{WILDCARD} (wildcard for {SUBNET})"))
            && run
                .stdout
                .contains("1.2.0.192.in-addr.arpa. (192.0.2.1, a host inside")
            && run.stdout.contains("OK: a record carries key"),
        "{}",
        run.stdout
    );
    let run = verify(&bind, SUBNET, &gw, &["--json", "--probe", "192.0.2.77"]).expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["subnet"], SUBNET);
    assert_eq!(v["name"], WILDCARD);
    assert_eq!(v["ip"], serde_json::Value::Null);
    assert_eq!(v["records"][0]["gateway"], GATEWAY);
    assert_eq!(v["records"][0]["matches_key"], true);
    assert_eq!(v["probe"]["ip"], "192.0.2.77");
    assert_eq!(v["probe"]["name"], rev("192.0.2.77"));
    assert_eq!(v["probe"]["records"][0]["matches_key"], true);
    assert_eq!(v["problems"], serde_json::json!([]));

    // A host whose reverse name holds a PTR does not get the wildcard: verify says so.
    bind.nsupdate(&format!(
        "update add {} 300 IN PTR h77.example.test.",
        rev("192.0.2.77")
    ))
    .unwrap();
    assert!(dig_ipseckey(&bind, &rev("192.0.2.77")).is_empty());
    let run = verify(&bind, SUBNET, &gw, &["--probe", "192.0.2.77"]).expect_code(1);
    assert!(
        run.stdout
            .contains("FAIL: 77.2.0.192.in-addr.arpa. (192.0.2.77) exists")
            && run
                .stdout
                .contains("dnskeys publish --ip 192.0.2.77 --gateway GATEWAY"),
        "{}",
        run.stdout
    );
    let run = verify(&bind, SUBNET, &gw, &["--probe", "192.0.3.1"]).expect_code(2);
    assert!(
        run.error_line()
            .contains("--probe 192.0.3.1 is not inside --subnet 192.0.2.0/24"),
        "{}",
        run.stderr
    );

    // Step 1 of a rollover at the wildcard keeps the gateway.
    let (gw2, gw2_pk) = keygen(dir.path(), "gw-2.key");
    let mut args: Vec<String> = [
        "rotate",
        "--old",
        gw.to_str().unwrap(),
        "--new",
        gw2.to_str().unwrap(),
        "--subnet",
        SUBNET,
        "--server",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        bind.server(),
        "--tsig-key".into(),
        bind.tsig_key_file().to_str().unwrap().into(),
    ]);
    dnskeys(&args).expect_code(0);
    assert_eq!(
        dig_ipseckey(&bind, &rev("192.0.2.9")),
        vec![record.clone(), format!("20 1 4 {GATEWAY} {gw2_pk}")]
    );
    update(&bind, "remove", &gw2, SUBNET, &[]).expect_code(0);

    // remove --subnet takes the key's record away from the wildcard, and so from every host.
    let run = update(&bind, "remove", &gw, SUBNET, &[]).expect_code(0);
    assert!(
        run.stdout
            .contains(&format!("removed: {WILDCARD} IN IPSECKEY {record}")),
        "{}",
        run.stdout
    );
    assert!(dig_ipseckey(&bind, WILDCARD).is_empty());
    assert!(dig_ipseckey(&bind, &rev("192.0.2.1")).is_empty());
    assert_eq!(dig_status(&bind, &rev("192.0.2.1")), "NXDOMAIN");
    let run = verify(&bind, SUBNET, &gw, &[]).expect_code(1);
    assert!(
        run.stdout.contains("FAIL: no record carries key"),
        "{}",
        run.stdout
    );
}

#[test]
fn wildcards_that_would_mislead_are_refused_and_reported() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (gw, gw_pk) = keygen(dir.path(), "gw.key");

    // No gateway: refused before anything is sent.
    let run = update(&bind, "publish", &gw, SUBNET, &[]).expect_code(2);
    assert!(
        run.error_line()
            .contains("--subnet 192.0.2.0/24 needs --gateway IP|NAME"),
        "{}",
        run.stderr
    );
    let run = update(&bind, "publish", &gw, SUBNET, &["--gateway", "none"]).expect_code(2);
    assert!(
        run.error_line().contains("needs --gateway"),
        "{}",
        run.stderr
    );
    // A gateway inside the subnet: the wildcard would cover it.
    let run = update(&bind, "publish", &gw, SUBNET, &["--gateway", "192.0.2.1"]).expect_code(2);
    let line = run.error_line();
    assert!(
        line.contains("--gateway 192.0.2.1 is inside --subnet 192.0.2.0/24")
            && line.contains("dnskeys publish --ip 192.0.2.1"),
        "{line}"
    );
    // A /16 wildcard cannot live in the /24 zone.
    let run = update(
        &bind,
        "publish",
        &gw,
        "192.0.0.0/16",
        &["--gateway", GATEWAY, "--zone", "2.0.192.in-addr.arpa"],
    )
    .expect_code(2);
    let line = run.error_line();
    assert!(
        line.contains("--subnet 192.0.0.0/16: its wildcard *.0.192.in-addr.arpa. is not inside --zone 2.0.192.in-addr.arpa.")
            && line.contains("below the subnet's reverse zone"),
        "{line}"
    );
    // Host bits and off-boundary prefixes are usage errors naming --subnet.
    let run = update(
        &bind,
        "publish",
        &gw,
        "192.0.2.5/24",
        &["--gateway", GATEWAY],
    )
    .expect_code(2);
    assert!(
        run.stderr
            .contains("give the network address, --subnet 192.0.2.0/24"),
        "{}",
        run.stderr
    );
    let run = update(
        &bind,
        "publish",
        &gw,
        "192.0.2.0/23",
        &["--gateway", GATEWAY],
    )
    .expect_code(2);
    assert!(
        run.stderr
            .contains("--subnet 192.0.2.0/23: /23 is not on a reverse-zone boundary"),
        "{}",
        run.stderr
    );
    // --ip and --subnet together: clap's group refuses.
    let run = update(&bind, "publish", &gw, SUBNET, &["--ip", "192.0.2.10"]).expect_code(2);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
    assert!(
        dig_ipseckey(&bind, WILDCARD).is_empty(),
        "nothing was published"
    );

    // A gateway by name cannot be checked at publish time (a warning says
    // so); verify resolves it and finds its address inside the subnet.
    bind.nsupdate("update add gw.example.test. 300 IN A 192.0.2.1")
        .unwrap();
    let run = update(
        &bind,
        "publish",
        &gw,
        SUBNET,
        &["--gateway", "gw.example.test"],
    )
    .expect_code(0);
    assert!(
        run.stderr
            .contains("dnskeys: warning: --gateway gw.example.test. is a name"),
        "{}",
        run.stderr
    );
    let run = verify(&bind, SUBNET, &gw, &[]).expect_code(1);
    assert!(
        run.stdout.contains(
            "names gateway gw.example.test., whose address 192.0.2.1 is inside 192.0.2.0/24"
        ),
        "{}",
        run.stdout
    );
    update(&bind, "remove", &gw, SUBNET, &[]).expect_code(0);

    // A wildcard published by other means that covers its own gateway, and one
    // without a gateway: verify fails and says why, though the key matches.
    bind.nsupdate(&format!(
        "update add {WILDCARD} 300 IN IPSECKEY 10 1 4 192.0.2.1 {gw_pk}\n\
         update add {WILDCARD} 300 IN IPSECKEY 20 0 4 . {gw_pk}"
    ))
    .unwrap();
    let run = verify(&bind, SUBNET, &gw, &[]).expect_code(1);
    assert!(
        run.stdout
            .contains("FAIL: the wildcard record '10 1 4 192.0.2.1 ")
            && run
                .stdout
                .contains("names gateway 192.0.2.1, which is inside 192.0.2.0/24"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("has no gateway"), "{}", run.stdout);
    let run = verify(&bind, SUBNET, &gw, &["--json"]).expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 2, "{v}");

    // A rollover there would copy the old record's gateway (inside the
    // subnet) to the new key: refused; and so is --gateway none.
    let (gw2, _) = keygen(dir.path(), "gw-2.key");
    let rotate = |extra: &[&str]| {
        let server = bind.server();
        let tsig = bind.tsig_key_file();
        let mut args = vec![
            "rotate",
            "--old",
            gw.to_str().unwrap(),
            "--new",
            gw2.to_str().unwrap(),
            "--subnet",
            SUBNET,
            "--server",
            &server,
            "--tsig-key",
            tsig.to_str().unwrap(),
        ];
        args.extend(extra);
        dnskeys(&args)
    };
    let run = rotate(&[]).expect_code(4);
    assert!(
        run.error_line()
            .contains("--gateway 192.0.2.1 is inside --subnet 192.0.2.0/24"),
        "{}",
        run.stderr
    );
    let run = rotate(&["--gateway", "none"]).expect_code(2);
    assert!(
        run.error_line().contains("needs --gateway"),
        "{}",
        run.stderr
    );
    assert_eq!(dig_ipseckey(&bind, WILDCARD).len(), 2, "nothing changed");
}

#[test]
fn ipv6_slash_64_wildcard_and_the_empty_non_terminal_trap() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (gw, gw_pk) = keygen(dir.path(), "gw.key");
    let record = format!("10 2 4 {GATEWAY6} {gw_pk}");

    update(&bind, "publish", &gw, SUBNET6, &["--gateway", GATEWAY6]).expect_code(0);
    assert_eq!(dig_ipseckey(&bind, WILDCARD6), vec![record.clone()]);
    assert_eq!(
        dig_ipseckey(&bind, &rev("2001:db8:1::abcd")),
        vec![record.clone()]
    );
    let run = verify(&bind, SUBNET6, &gw, &["--json"]).expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["name"], WILDCARD6);
    assert_eq!(v["probe"]["ip"], "2001:db8:1::1");
    assert_eq!(v["probe"]["records"][0]["matches_key"], true);

    // One PTR in the /64 makes empty non-terminals of its name's ancestors,
    // and hosts below them no longer get the wildcard (NXDOMAIN).
    bind.nsupdate(&format!(
        "update add {} 300 IN PTR h1.example.test.",
        rev("2001:db8:1::1")
    ))
    .unwrap();
    assert_eq!(dig_status(&bind, &rev("2001:db8:1::5")), "NXDOMAIN");
    let run = verify(&bind, SUBNET6, &gw, &["--probe", "2001:db8:1::5"]).expect_code(1);
    assert!(run.stdout.contains("empty non-terminal"), "{}", run.stdout);
    // A host whose interface ID differs in the first nibble still gets it.
    assert_eq!(
        dig_ipseckey(&bind, &rev("2001:db8:1:0:1000::5")),
        vec![record.clone()]
    );

    update(&bind, "remove", &gw, SUBNET6, &[]).expect_code(0);
    assert!(dig_ipseckey(&bind, WILDCARD6).is_empty());
}

/// Runs `verify --subnet SUBNET --dnssec` against a signed BIND with the
/// wildcard published, returning the text and the JSON runs.
fn verify_signed(bind: &Bind, gw: &Path) -> (Run, serde_json::Value) {
    update(bind, "publish", gw, SUBNET, &["--gateway", GATEWAY]).expect_code(0);
    let anchors = bind.anchor_file().unwrap();
    let args = ["--dnssec", "--trust-anchor", anchors.to_str().unwrap()];
    let run = verify(bind, SUBNET, gw, &[&args[..], &["--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    (verify(bind, SUBNET, gw, &args), v)
}

/// delv says "fully validated" for the expansion; hickory-net 0.26.3 says
/// bogus (it looks for an NSEC *covering* the wildcard where the wildcard's
/// own NSEC *matches* it: hickory-dns pull request 3812, a failing test
/// upstream). Run with `--ignored` once the workspace has a fixed hickory.
#[test]
#[ignore = "hickory-net 0.26.3 judges NSEC-proven wildcard expansions bogus (hickory-dns#3812)"]
fn a_wildcard_in_a_signed_zone_validates_for_the_wildcard_and_the_host() {
    let bind = Bind::start_signed().expect("BIND 9 starts with signed zones");
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = keygen(dir.path(), "gw.key");
    let (run, v) = verify_signed(&bind, &gw);
    let delv = std::process::Command::new("delv")
        .args(["@127.0.0.1", "-p", &bind.port().to_string(), "-a"])
        .arg(bind.delv_anchor_file().unwrap())
        .args(["+root=2.0.192.in-addr.arpa", &rev("192.0.2.1"), "IPSECKEY"])
        .output()
        .unwrap();
    let delv = String::from_utf8_lossy(&delv.stdout) + String::from_utf8_lossy(&delv.stderr);
    assert!(delv.contains("; fully validated"), "{delv}");
    assert_eq!(v["dnssec"]["state"], "secure", "{v}");
    assert_eq!(v["probe"]["dnssec"]["state"], "secure", "{v}");
    assert_eq!(v["ok"], true, "{v}");
    run.expect_code(0);
}

/// Until hickory is fixed: the wildcard is secure, its expansion bogus, the
/// verdict fails (closed), and a note says that this may be the validator.
#[test]
fn a_bogus_expansion_of_a_secure_wildcard_fails_with_a_note() {
    let bind = Bind::start_signed().expect("BIND 9 starts with signed zones");
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = keygen(dir.path(), "gw.key");
    let (run, v) = verify_signed(&bind, &gw);
    if v["probe"]["dnssec"]["state"] == "secure" {
        // hickory fixed: the ignored test above is the one to run now.
        assert_eq!(v["ok"], true, "{v}");
        return;
    }
    assert_eq!(v["dnssec"]["state"], "secure", "{v}");
    assert_eq!(v["probe"]["dnssec"]["state"], "bogus", "{v}");
    assert_eq!(v["ok"], false);
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .contains("hickory-dns pull request 3812"),
        "{v}"
    );
    let run = run.expect_code(1);
    assert!(
        run.stdout
            .contains("NOTE: the wildcard validates as secure")
            && run.stdout.contains(
                "FAIL: the answer for 1.2.0.192.in-addr.arpa. (a host inside) is not \
                 DNSSEC-secure (bogus)"
            ),
        "{}",
        run.stdout
    );
}

/// A host inside a site with a wildcard publishes its own record: the
/// wildcard answered for its name when dnskeys read it, so the "RRset
/// exists" prerequisite built from that answer fails; dnskeys sees that
/// the answer was the wildcard's and publishes at the empty name.
#[test]
fn a_host_publishes_its_own_record_under_a_wildcard() {
    let bind = start();
    let dir = tempfile::tempdir().unwrap();
    let (gw, gw_pk) = keygen(dir.path(), "gw.key");
    let (host, host_pk) = keygen(dir.path(), "host.key");
    update(&bind, "publish", &gw, SUBNET, &["--gateway", GATEWAY]).expect_code(0);
    let inside = "192.0.2.77";
    let (server, tsig) = (bind.server(), bind.tsig_key_file());
    let args = [
        "publish",
        "--key",
        host.to_str().unwrap(),
        "--ip",
        inside,
        "--precedence",
        "5",
        "--server",
        &server,
        "--tsig-key",
        tsig.to_str().unwrap(),
    ];
    dnskeys(&args).expect_code(0);
    // Its name now holds its own record alone; its neighbours keep the wildcard.
    assert_eq!(
        dig_ipseckey(&bind, &rev(inside)),
        vec![format!("5 0 4 . {host_pk}")]
    );
    assert_eq!(
        dig_ipseckey(&bind, &rev("192.0.2.78")),
        vec![format!("10 1 4 {GATEWAY} {gw_pk}")]
    );
}
