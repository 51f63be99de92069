//! `oemesh reload` and SIGHUP (issue 18, part 1): the configuration file and
//! the host key are read again and the difference applied without a restart.
//!
//! - new, moved and regrouped prefixes change the routes, the SAs and the
//!   cached outcomes they concern, and nothing else: an SA the new policy
//!   still allows stays up;
//! - an invalid file or key is refused whole, and the running configuration
//!   stays;
//! - a new host key signs every new IKE SA, while SAs already up live on, and
//!   a peer that fetched the new record authenticates the host.
//!
//! Needs root, BIND 9, tcpdump and nft (like `e2e.rs`).

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;
#[allow(dead_code)]
mod hostile;

use std::net::IpAddr;
use std::time::Duration;

use e2e_support::*;
use hostile::*;
use oemesh_testkit::process::wait_until;
use oemesh_testkit::topology::{AgentConfig, Host};

/// `oemesh reload --json` on `host`, parsed.
fn reload(host: &Host) -> serde_json::Value {
    let out = host
        .oemesh_cli(&["reload", "--json"])
        .unwrap_or_else(|e| panic!("reload: {e:#}\n{}", host.log_tail(30)));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `oemesh reload` on `host`, which must fail; its error text.
fn reload_refused(host: &Host) -> String {
    match host.oemesh_cli(&["reload"]) {
        Ok(out) => panic!("reload accepted: {out}"),
        Err(e) => format!("{e:#}"),
    }
}

fn strings(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The routes of the agent's table in `host`'s namespace (IPv4).
fn table_routes(host: &Host) -> String {
    let table = status(host)["table"].as_u64().unwrap().to_string();
    let out = host
        .exec(
            &["ip", "route", "show", "table", &table],
            Duration::from_secs(5),
        )
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many IKE SAs `host` logged as established with `peer`.
fn established(host: &Host, peer: IpAddr) -> usize {
    log_lines(host, &format!("IKE SA established with {peer}:")).len()
}

fn wait_state(host: &Host, peer: IpAddr, state: &str) -> oemesh_testkit::topology::Peer {
    host.wait_peer(peer, state, DECISION, |p| p.state == state)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", host.log_tail(30)))
}

/// The testnet's policy plus a `clear-or-private` prefix to regroup later.
fn start_config() -> AgentConfig {
    let mut c = AgentConfig::default();
    c.set_policy("clear-or-private", &["203.0.113.0/24"]);
    c
}

#[test]
fn reload_applies_prefix_changes_and_refuses_bad_files() {
    let cfg = start_config();
    let net = testnet("reload", cfg.clone());
    let (alice, bob, carol, dave) = (net.alice(), net.bob(), net.carol(), net.dave());
    let client = udp_client(alice);
    let (to_bob, to_carol, to_dave) = (
        UdpEcho::start(bob, 7401),
        UdpEcho::start(carol, 7402),
        UdpEcho::start(dave, 7403),
    );
    for (echo, what) in [(&to_bob, "bob"), (&to_carol, "carol"), (&to_dave, "dave")] {
        udp_until_echo(&client, echo.addr(), what.as_bytes(), DECISION)
            .unwrap_or_else(|e| panic!("{what}: {e:#}\n{}", alice.log_tail(30)));
    }
    wait_state(alice, bob.ip(), "private");
    wait_state(alice, carol.ip(), "private");
    wait_state(alice, dave.ip(), "clear");
    let carol_sas = established(alice, carol.ip());
    assert!(table_routes(alice).contains("throw 203.0.113.0/24"));

    // dave moves into `private` (a /32 inside the OE segment), bob into
    // `clear`, a new `private` prefix appears, and 203.0.113.0/24 is regrouped.
    let mut moved = cfg.clone();
    moved.policy.retain(|(g, _)| g != "clear-or-private");
    moved.set_policy(
        "private",
        &["192.0.2.40/32", "198.51.100.0/24", "203.0.113.0/24"],
    );
    moved.set_policy("clear", &["192.0.2.53/32", "192.0.2.20/32"]);
    alice.set_agent_config(&moved).unwrap();
    let cap = net.capture("reload").unwrap();
    let r = reload(alice);
    let policy = strings(&r, "policy");
    for line in [
        "+ 192.0.2.40/32 private",
        "+ 198.51.100.0/24 private",
        "+ 192.0.2.20/32 clear",
        "~ 203.0.113.0/24 clear-or-private -> private",
    ] {
        assert!(policy.iter().any(|l| l == line), "{line} not in {r}");
    }
    assert_eq!(
        strings(&r, "closed"),
        vec!["192.0.2.20: now in `clear`".to_owned()],
        "{r}"
    );
    assert!(
        r["forgotten"].as_u64().unwrap() >= 1,
        "dave's clear outcome: {r}"
    );
    assert!(strings(&r, "restart_needed").is_empty(), "{r}");

    // Routes: only the changed prefixes moved.
    let routes = table_routes(alice);
    for want in [
        "198.51.100.0/24 dev",
        "unreachable 198.51.100.0/24",
        "203.0.113.0/24 dev",
        "unreachable 203.0.113.0/24",
        "192.0.2.40 dev",
        "throw 192.0.2.20",
        "192.0.2.0/24 dev",
    ] {
        assert!(routes.contains(want), "no `{want}` in:\n{routes}");
    }
    assert!(!routes.contains("throw 203.0.113.0/24"), "{routes}");

    // bob's SA went (DELETE reached him); carol's stayed up, the same SA.
    wait_until("bob to drop his SA with alice", DECISION, || {
        bob.peer(alice.ip())
            .is_ok_and(|p| p.is_none_or(|p| p.state != "private"))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nbob:\n{}", bob.log_tail(30)));
    udp_until_echo(&client, to_carol.addr(), b"carol again", DECISION).unwrap();
    assert_eq!(wait_state(alice, carol.ip(), "private").state, "private");
    assert_eq!(
        established(alice, carol.ip()),
        carol_sas,
        "carol's SA was replaced"
    );

    // dave is private now: no key, no IKE, so blocked, and nothing in clear.
    let marker = b"reload-dave-must-not-leak";
    let _ = client.send_to(&marked_payload(marker, 200), to_dave.addr());
    wait_state(alice, dave.ip(), "blocked");
    // bob is clear now (a `throw` route: the agent no longer sees his
    // packets): traffic flows in clear.
    udp_until_echo(&client, to_bob.addr(), b"bob in clear", DECISION).unwrap();
    let packets = cap.stop().unwrap();
    assert_marker_absent(&packets, marker);
    assert!(
        to_dave.received().iter().all(|p| !contains(p, marker)),
        "dave received the marker in clear"
    );

    // An invalid file is refused whole; the running policy stays.
    let before = status(alice)["policy"].clone();
    std::fs::write(
        alice.config_path(),
        "[policy]\nprivate = [\"not-a-prefix\"]\n",
    )
    .unwrap();
    let e = reload_refused(alice);
    let path = alice.config_path().display().to_string();
    assert!(e.contains("refused") && e.contains(&path), "{e}");
    assert!(e.contains("not-a-prefix"), "{e}");
    // So is a configuration whose key file is missing.
    alice.set_agent_config(&moved).unwrap();
    let text = std::fs::read_to_string(alice.config_path()).unwrap();
    let missing = net.dir().join("no-such.key");
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("key = ") {
                format!("key = {:?}", missing.display().to_string())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("no-such.key"),
        "alice's config names a key:\n{text}"
    );
    std::fs::write(alice.config_path(), text).unwrap();
    let e = reload_refused(alice);
    assert!(e.contains("no-such.key"), "{e}");
    assert_eq!(status(alice)["policy"], before);
    udp_until_echo(&client, to_carol.addr(), b"carol still", DECISION).unwrap();
    assert_eq!(established(alice, carol.ip()), carol_sas);

    // SIGHUP does the same as `oemesh reload`.
    let mut hup = moved.clone();
    hup.set_policy(
        "private",
        &[
            "192.0.2.40/32",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "198.18.0.0/15",
        ],
    );
    alice.set_agent_config(&hup).unwrap();
    let pid = alice.agent_pid().unwrap().to_string();
    let out = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_until("SIGHUP to apply", DECISION, || {
        status(alice)["policy"]
            .as_array()
            .is_some_and(|p| p.iter().any(|l| l == "198.18.0.0/15 private"))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", alice.log_tail(20)));
    assert!(table_routes(alice).contains("198.18.0.0/15 dev"));
    let s = status(alice);
    assert_eq!(s["reloads"].as_u64(), Some(2), "{s}");
    assert!(s["config"].as_str().unwrap().ends_with("alice.toml"), "{s}");
    assert!(!log_lines(alice, "SIGHUP: reloading").is_empty());
}

/// A host key rollover on the host, without a restart: bob's new key is
/// published beside the old one, bob reloads with it, the old record goes.
/// alice's SA with bob stays up; carol, who has only the new record, starts
/// IKE with bob and authenticates him.
#[test]
fn reload_with_a_new_host_key() {
    let net = testnet("reloadkey", AgentConfig::default());
    let (alice, bob, carol) = (net.alice(), net.bob(), net.carol());
    let echo = UdpEcho::start(bob, 7411);
    let client = udp_client(alice);
    udp_until_echo(&client, echo.addr(), b"before", DECISION).unwrap();
    let p = wait_state(alice, bob.ip(), "private");
    assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
    let bob_sas = established(bob, alice.ip());

    let old = real_key_rdata(bob);
    let (new_key, new_pub) = keygen(&net, "bob-2").unwrap();
    set_ipseckey(&net, bob.ip(), Some(&old)).unwrap();
    let name = reverse_name(bob.ip());
    net.dns()
        .bind()
        .nsupdate(&format!(
            "update add {name} 60 IPSECKEY 20 0 4 . {new_pub}\n"
        ))
        .unwrap();
    // Same key path, new contents: what `dnskeys rotate` tells the admin to do.
    std::fs::copy(&new_key, bob.key_path().unwrap()).unwrap();
    let r = reload(bob);
    let key = r["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key change: {r}"));
    assert!(key.contains(&new_pub), "{r}");
    assert!(strings(&r, "closed").is_empty(), "{r}");
    assert_eq!(status(bob)["public_key"].as_str(), Some(new_pub.as_str()));
    // The old record goes; only the new key authenticates bob from now on.
    set_ipseckey(&net, bob.ip(), Some(&format!("10 0 4 . {new_pub}"))).unwrap();

    // alice's SA with bob lives on.
    udp_until_echo(&client, echo.addr(), b"after", DECISION).unwrap();
    assert_eq!(
        established(bob, alice.ip()),
        bob_sas,
        "bob's SA with alice was replaced"
    );
    assert_eq!(
        wait_state(alice, bob.ip(), "private").auth.as_deref(),
        Some("authenticated")
    );

    // carol starts a new IKE SA: bob signs with the new key.
    let from_carol = udp_client(carol);
    udp_until_echo(&from_carol, echo.addr(), b"carol", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\ncarol:\n{}", carol.log_tail(30)));
    let p = wait_state(carol, bob.ip(), "private");
    assert_eq!(
        p.auth.as_deref(),
        Some("authenticated"),
        "{p:?}\ncarol:\n{}",
        carol.log_tail(30)
    );
}
