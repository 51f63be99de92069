//! Gateway mode (`[gateway] protects`, issue 14) on the host side, in fresh
//! network namespaces: `check-config` refuses a gateway whose host does not
//! forward, and warns of a non-zero `all.rp_filter`; `oemesh run` routes the
//! protected prefixes as `throw` (traffic to the LAN never enters the TUN,
//! forwarded traffic from it does), sets the TUN's `rp_filter` to 0, warns
//! at start about forwarding, shows the gateway in `status`, and keeps the
//! `throw` across a stop like a `clear` prefix's until `oemesh down`.
//!
//! The reverse-path checks (`ip route get … iif oemesh0`) pin what
//! `agent/src/net/forwarding.rs` says of the kernel: a decrypted packet whose
//! source is routed into the TUN passes at any `rp_filter`; one from a source
//! that is not passes only when the TUN's effective value is 0 (the TUN has
//! no address, so loose fails like strict).
//!
//! Needs root, `ip` and `nft` (`sudo scripts/test` installs them).

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: failing loudly is the point

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use oemesh_testkit::netns::{Netns, veth};
use oemesh_testkit::process::{self, require_programs, require_root, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_oemesh");
const TABLE: &str = "28517";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes `value` to `/proc/sys/<path>` inside `ns` (its own copy of the
/// net sysctls).
fn sysctl(ns: &Netns, path: &str, value: &str) {
    let script = format!("echo {value} > /proc/sys/{path}");
    ns.exec(&["sh", "-c", &script], Duration::from_secs(10))
        .unwrap();
}

fn read_sysctl(ns: &Netns, path: &str) -> String {
    let out = ns
        .exec(
            &["cat", &format!("/proc/sys/{path}")],
            Duration::from_secs(10),
        )
        .unwrap();
    text(&out.stdout).trim().to_owned()
}

fn check_config(ns: &Netns, config: &Path) -> Output {
    process::run_unchecked(
        ns.command(BIN)
            .args(["check-config", "--config", config.to_str().unwrap()]),
        Duration::from_secs(10),
    )
    .unwrap()
}

#[test]
fn check_config_refuses_a_gateway_that_does_not_forward() {
    require_root();
    require_programs(&["ip"]);
    let ns = Netns::new("gw-sysctl").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oemesh.toml");
    std::fs::write(
        &config,
        "address = \"192.0.2.1\"\n[gateway]\nprotects = [\"10.1.0.0/24\", \"2001:db8:1::/64\"]\n",
    )
    .unwrap();
    sysctl(&ns, "net/ipv4/ip_forward", "0");
    sysctl(&ns, "net/ipv6/conf/all/forwarding", "0");
    sysctl(&ns, "net/ipv4/conf/all/rp_filter", "0");

    let o = check_config(&ns, &config);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}{}", text(&o.stdout));
    assert!(
        err.contains("[gateway] needs settings this host lacks"),
        "{err}"
    );
    assert!(
        err.contains("net.ipv4.ip_forward is 0")
            && err.contains("run `sysctl -w net.ipv4.ip_forward=1`"),
        "{err}"
    );
    assert!(
        err.contains("net.ipv6.conf.all.forwarding is 0")
            && err.contains("`sysctl -w net.ipv6.conf.all.forwarding=1`"),
        "{err}"
    );

    // IPv4 on, IPv6 still off: only IPv6 is named.
    sysctl(&ns, "net/ipv4/ip_forward", "1");
    let o = check_config(&ns, &config);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !err.contains("ip_forward") && err.contains("net.ipv6.conf.all.forwarding is 0"),
        "{err}"
    );

    // Both on: valid, with the gateway listed.
    sysctl(&ns, "net/ipv6/conf/all/forwarding", "1");
    let o = check_config(&ns, &config);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        out.contains("gateway: protects 10.1.0.0/24, 2001:db8:1::/64"),
        "{out}"
    );
    assert!(!out.contains("warning:"), "{out}");

    // A non-zero all.rp_filter (loose, as most distributions ship): a
    // warning, not an error.
    sysctl(&ns, "net/ipv4/conf/all/rp_filter", "2");
    let o = check_config(&ns, &config);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        out.contains("warning: net.ipv4.conf.all.rp_filter is 2"),
        "{out}"
    );
    assert!(
        out.contains("`sysctl -w net.ipv4.conf.all.rp_filter=0`"),
        "{out}"
    );

    // An IPv4-only gateway does not need IPv6 forwarding; a host needs none.
    sysctl(&ns, "net/ipv6/conf/all/forwarding", "0");
    std::fs::write(&config, "[gateway]\nprotects = [\"10.1.0.0/24\"]\n").unwrap();
    assert!(check_config(&ns, &config).status.success());
    sysctl(&ns, "net/ipv4/ip_forward", "0");
    std::fs::write(&config, "address = \"192.0.2.1\"\n").unwrap();
    let o = check_config(&ns, &config);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("gateway"));
}

#[test]
fn gateway_routes_its_lan_around_the_tun() {
    require_root();
    require_programs(&["ip", "nft"]);
    let ns = Netns::new("gw").unwrap();
    let peer = Netns::new("gw-peer").unwrap();
    let (wan, _) = veth(&ns, "192.0.2.1/24", &peer, "192.0.2.20/24").unwrap();
    ns.ip(&["route", "add", "default", "via", "192.0.2.20"])
        .unwrap();
    let lan_host = Netns::new("gw-lan").unwrap();
    let (lan, _) = veth(&ns, "10.1.0.1/24", &lan_host, "10.1.0.5/24").unwrap();
    let on_lan = format!("dev {lan}");
    sysctl(&ns, "net/ipv4/ip_forward", "0");
    sysctl(&ns, "net/ipv4/conf/all/rp_filter", "0");
    // A new interface would start strict: the agent must turn its TUN's off.
    sysctl(&ns, "net/ipv4/conf/default/rp_filter", "1");

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("oemesh.sock");
    let sock = sock.to_str().unwrap();
    let config = dir.path().join("oemesh.toml");
    std::fs::write(
        &config,
        format!(
            "address = \"192.0.2.1\"\ncontrol_socket = \"{sock}\"\n[dns]\nservers = [\"192.0.2.53\"]\n\
             [policy]\nprivate-or-clear = [\"10.0.0.0/8\"]\nclear-or-private = [\"203.0.113.0/24\"]\n\
             [nat]\npool = []\n[gateway]\nprotects = [\"10.1.0.0/24\"]\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let argv = [BIN, "run", "--config", config.to_str().unwrap()];
    let mut agent = ns.spawn("oemesh run", &argv, &log).unwrap();
    let status = |json: bool| {
        let mut args = vec!["status", "--socket", sock];
        if json {
            args.push("--json");
        }
        process::run_unchecked(
            std::process::Command::new(BIN).args(&args),
            Duration::from_secs(10),
        )
        .unwrap()
    };
    if let Err(e) = wait_until("`oemesh status` to answer", Duration::from_secs(20), || {
        agent.is_running() && status(false).status.success()
    }) {
        panic!("{e}; agent output:\n{}", agent.output_tail(40));
    }

    // The log: the gateway, its TUN's rp_filter, the missing forwarding.
    let logged = process::tail_of_file(&log, 200);
    for want in [
        "gateway: protects 10.1.0.0/24",
        "net.ipv4.conf.oemesh0.rp_filter = 0",
        "net.ipv4.ip_forward is 0",
    ] {
        assert!(logged.contains(want), "no {want:?} in:\n{logged}");
    }
    assert_eq!(read_sysctl(&ns, "net/ipv4/conf/oemesh0/rp_filter"), "0");

    // Forwarded cleartext into the LAN from peers with a live SA is dropped.
    let nft = ns
        .exec(
            &["nft", "list", "chain", "inet", "oemesh", "forward"],
            Duration::from_secs(10),
        )
        .unwrap();
    let nft = text(&nft.stdout);
    assert!(
        nft.contains(
            "ip daddr 10.1.0.0/24 ip saddr @private_peers_v4 counter packets 0 bytes 0 drop"
        ),
        "{nft}"
    );
    assert!(nft.contains("iifname \"oemesh0\" accept"), "{nft}");

    // Our table: the protected prefix is a throw beside the OE prefix.
    let routes = ns.ip(&["route", "show", "table", TABLE]).unwrap();
    assert!(routes.contains("throw 10.1.0.0/24"), "{routes}");
    assert!(routes.contains("10.0.0.0/8 dev oemesh0"), "{routes}");

    sysctl(&ns, "net/ipv4/ip_forward", "1");
    let get = |args: &[&str]| {
        let mut full = vec!["route", "get"];
        full.extend_from_slice(args);
        ns.ip(&full).unwrap_or_else(|e| format!("error: {e:#}"))
    };
    // The gateway's own traffic to its LAN, and the WAN's: the LAN.
    assert!(
        get(&["10.1.0.5"]).contains(&on_lan),
        "{}",
        get(&["10.1.0.5"])
    );
    let wan_to_lan = get(&["10.1.0.5", "from", "192.0.2.20", "iif", &wan]);
    assert!(wan_to_lan.contains(&on_lan), "{wan_to_lan}");
    // Forwarded from the LAN to an OE destination: into the TUN.
    let lan_out = get(&["10.2.0.5", "from", "10.1.0.5", "iif", &lan]);
    assert!(lan_out.contains("dev oemesh0"), "{lan_out}");
    // Decrypted from a remote site routed into the TUN: passes even with a
    // strict all.rp_filter. From one whose way back is not the TUN (a
    // clear-or-private peer): passes with the TUN's 0 and all at 0...
    let routed = ["10.1.0.5", "from", "10.2.0.9", "iif", "oemesh0"];
    let other = ["10.1.0.5", "from", "203.0.113.9", "iif", "oemesh0"];
    assert!(get(&other).contains(&on_lan), "{}", get(&other));
    assert!(check_config(&ns, &config).status.success());
    // ...and is dropped with all at 2 (loose), which check-config warns of.
    sysctl(&ns, "net/ipv4/conf/all/rp_filter", "2");
    assert!(!get(&other).contains(&on_lan), "{}", get(&other));
    assert!(get(&routed).contains(&on_lan), "{}", get(&routed));
    let o = check_config(&ns, &config);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("warning: net.ipv4.conf.all.rp_filter is 2"),
        "{}",
        text(&o.stdout)
    );
    // The TUN's own value counts as well: check-config names it.
    sysctl(&ns, "net/ipv4/conf/all/rp_filter", "0");
    sysctl(&ns, "net/ipv4/conf/oemesh0/rp_filter", "1");
    assert!(!get(&other).contains(&on_lan), "{}", get(&other));
    let o = check_config(&ns, &config);
    assert!(
        text(&o.stdout).contains("warning: net.ipv4.conf.oemesh0.rp_filter is 1"),
        "{}",
        text(&o.stdout)
    );

    // Cleartext from the WAN to the LAN is forwarded, until its source is a
    // peer with a live SA (put in the set here, as the control plane does
    // when an SA comes up): then the forward chain drops and counts it.
    peer.ip(&["route", "add", "10.1.0.0/24", "via", "192.0.2.1"])
        .unwrap();
    lan_host
        .ip(&["route", "add", "default", "via", "10.1.0.1"])
        .unwrap();
    let (from, to) = ("192.0.2.20".parse().unwrap(), "10.1.0.5".parse().unwrap());
    peer.ping(from, to, Duration::from_secs(2)).unwrap();
    ns.exec(
        &[
            "nft",
            "add",
            "element",
            "inet",
            "oemesh",
            "private_peers_v4",
            "{ 192.0.2.20 }",
        ],
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(peer.ping(from, to, Duration::from_millis(500)).is_err());
    let nft = ns
        .exec(
            &["nft", "list", "chain", "inet", "oemesh", "forward"],
            Duration::from_secs(10),
        )
        .unwrap();
    let nft = text(&nft.stdout);
    assert!(
        !nft.contains("counter packets 0 bytes 0 drop"),
        "the drop was not counted:\n{nft}"
    );

    let shown = text(&status(false).stdout);
    assert!(shown.contains("gateway: protects 10.1.0.0/24"), "{shown}");
    let json: serde_json::Value = serde_json::from_slice(&status(true).stdout).unwrap();
    assert_eq!(json["gateway"], serde_json::json!(["10.1.0.0/24"]));
    let check = process::run_unchecked(
        std::process::Command::new(BIN).args(["check", "10.1.0.5", "--json", "--socket", sock]),
        Duration::from_secs(10),
    )
    .unwrap();
    let check: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(
        check["action"]
            .as_str()
            .unwrap()
            .starts_with("behind this gateway (gateway.protects 10.1.0.0/24)"),
        "{check}"
    );

    // A stop keeps the throw (as a clear prefix's); `down` removes it.
    let stopped = agent.stop().unwrap();
    assert!(stopped.success(), "{}", process::tail_of_file(&log, 40));
    let routes = ns.ip(&["route", "show", "table", TABLE]).unwrap();
    assert!(routes.contains("throw 10.1.0.0/24"), "{routes}");
    let down = process::run_unchecked(
        ns.command(BIN)
            .args(["down", "--config", config.to_str().unwrap()]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(down.status.success(), "{}", text(&down.stderr));
    let left = ns
        .ip(&["route", "show", "table", TABLE])
        .unwrap_or_default();
    assert!(left.trim().is_empty(), "{left}");
}

/// Without `address`, the default route's address is checked at start: a
/// gateway whose `protects` holds it is refused (validation can check only a
/// configured `address`).
#[test]
fn run_refuses_protects_holding_the_default_route_address() {
    require_root();
    require_programs(&["ip"]);
    let ns = Netns::new("gw-self").unwrap();
    let peer = Netns::new("gw-self-peer").unwrap();
    veth(&ns, "10.1.0.1/24", &peer, "10.1.0.254/24").unwrap();
    ns.ip(&["route", "add", "default", "via", "10.1.0.254"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oemesh.toml");
    let sock = dir.path().join("oemesh.sock");
    std::fs::write(
        &config,
        format!(
            "control_socket = \"{}\"\n[gateway]\nprotects = [\"10.1.0.0/16\"]\n",
            sock.display()
        ),
    )
    .unwrap();
    let o = process::run_unchecked(
        ns.command(BIN)
            .args(["run", "--config", config.to_str().unwrap()]),
        Duration::from_secs(20),
    )
    .unwrap();
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("gateway.protects 10.1.0.0/16 holds this host's own address 10.1.0.1 (from the default route)"),
        "{err}"
    );
    // Nothing was set up.
    let routes = ns
        .ip(&["route", "show", "table", TABLE])
        .unwrap_or_default();
    assert!(routes.trim().is_empty(), "{routes}");
}
