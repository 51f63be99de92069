//! `oemesh run` in a fresh network namespace: it creates the TUN, our routing
//! table, the rule and the nftables table; `oemesh status` answers; a packet to
//! an OE prefix reaches the agent through the TUN; SIGTERM removes the TUN, its
//! routes and the nftables table and keeps the rules and the `throw` of the
//! clear prefix (what fails closed: `restart.rs`), which `oemesh down` removes;
//! after SIGKILL a new start replaces the stale state without duplicating it.
//! Needs root, `ip` and `nft` (`sudo scripts/test` installs them).

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: failing loudly is the point

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oemesh_testkit::netns::{Netns, veth};
use oemesh_testkit::process::{self, Child, require_programs, require_root, wait_until};
use rustix::process::Signal;

const TABLE: &str = "28517";
const BIN: &str = env!("CARGO_BIN_EXE_oemesh");
const READY: Duration = Duration::from_secs(20);

struct Fixture {
    ns: Netns,
    _peer: Netns,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        require_root();
        require_programs(&["ip", "nft"]);
        let ns = Netns::new("agent").unwrap();
        let peer = Netns::new("peer").unwrap();
        veth(&ns, "192.0.2.10/24", &peer, "192.0.2.20/24").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"address = "192.0.2.10"
control_socket = "{sock}"
[dns]
servers = ["192.0.2.53"]
[policy]
private-or-clear = ["192.0.2.0/24", "2001:db8::/64"]
clear = ["192.0.2.53/32"]
[metrics]
listen = "127.0.0.1:9618"
"#,
            sock = dir.path().join("oemesh.sock").display()
        );
        std::fs::write(dir.path().join("oemesh.toml"), config).unwrap();
        Fixture {
            ns,
            _peer: peer,
            dir,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("oemesh.sock")
    }

    fn start(&self, n: u32) -> Child {
        let config = self.dir.path().join("oemesh.toml");
        let out = self.dir.path().join(format!("agent-{n}.log"));
        let mut child = self
            .ns
            .spawn(
                "oemesh run",
                &[
                    BIN,
                    "run",
                    "--config",
                    config.to_str().unwrap(),
                    "--log-level",
                    "debug",
                ],
                &out,
            )
            .unwrap();
        let sock = self.socket();
        let ready = wait_until("`oemesh status` to answer", READY, || {
            child.is_running() && oemesh(&["status", "--socket", sock.to_str().unwrap()]).0
        });
        if let Err(e) = ready {
            panic!("{e}; agent output:\n{}", child.output_tail(40));
        }
        child
    }

    fn rules(&self) -> Vec<String> {
        let mut rules = Vec::new();
        for family in ["-4", "-6"] {
            let out = self.ns.ip(&[family, "rule", "show"]).unwrap();
            rules.extend(
                out.lines()
                    .filter(|l| l.contains(TABLE) || l.contains("0x6f65"))
                    .map(str::to_owned),
            );
        }
        rules
    }

    fn routes(&self) -> Vec<String> {
        let mut routes = Vec::new();
        for family in ["-4", "-6"] {
            // An empty table may not exist at all; that counts as no routes.
            if let Ok(out) = self.ns.ip(&[family, "route", "show", "table", TABLE]) {
                routes.extend(out.lines().map(str::to_owned));
            }
        }
        routes
    }

    fn has_tun(&self) -> bool {
        self.ns.ip(&["link", "show"]).unwrap().contains("oemesh0")
    }

    fn nft_tables(&self) -> String {
        let out = self
            .ns
            .exec(&["nft", "list", "tables"], Duration::from_secs(10))
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn assert_installed(&self) {
        let rules = self.rules();
        assert_eq!(rules.len(), 2, "one rule per family expected: {rules:?}");
        assert!(
            rules
                .iter()
                .all(|r| r.contains("not from all fwmark 0x6f65 lookup 28517")),
            "{rules:?}"
        );
        let routes = self.routes();
        assert!(
            routes
                .iter()
                .any(|r| r.starts_with("192.0.2.0/24 dev oemesh0") && r.contains("src 192.0.2.10")),
            "{routes:?}"
        );
        assert!(
            routes.iter().any(|r| r.starts_with("throw 192.0.2.53")),
            "{routes:?}"
        );
        assert!(
            routes
                .iter()
                .any(|r| r.starts_with("2001:db8::/64 dev oemesh0")),
            "{routes:?}"
        );
        // nat.pool's prefixes (the defaults), routed as `private`: into the
        // TUN, over an `unreachable` that fails closed.
        for pool in ["100.64.0.0/16", "fd00:6f65::/112"] {
            for want in [format!("{pool} dev oemesh0"), format!("unreachable {pool}")] {
                assert!(
                    routes.iter().any(|r| r.starts_with(&want)),
                    "no {want:?} in {routes:?}"
                );
            }
        }
        assert_eq!(routes.len(), 7, "{routes:?}");
        assert!(self.has_tun());
        assert!(self.nft_tables().contains("table inet oemesh"));
    }

    /// What a stop keeps: the rules, and of the routes only the clear
    /// prefix's `throw` (a `private` prefix would keep its `unreachable`),
    /// and the `unreachable` routes of nat.pool (given addresses fail closed).
    fn assert_stopped(&self) {
        assert_eq!(self.rules().len(), 2, "{:?}", self.rules());
        let routes = self.routes();
        assert_eq!(routes.len(), 3, "{routes:?}");
        for want in [
            "throw 192.0.2.53",
            "unreachable 100.64.0.0/16",
            "unreachable fd00:6f65::/112",
        ] {
            assert!(
                routes.iter().any(|r| r.starts_with(want)),
                "no {want:?} in {routes:?}"
            );
        }
        assert!(!self.has_tun());
        assert!(
            !self.nft_tables().contains("oemesh"),
            "{}",
            self.nft_tables()
        );
        assert!(!self.socket().exists(), "control socket left behind");
    }

    /// `oemesh down` in the namespace: its stdout; fails the test on an error.
    fn down(&self) -> String {
        let config = self.dir.path().join("oemesh.toml");
        let out = process::run_unchecked(
            self.ns
                .command(BIN)
                .args(["down", "--config", config.to_str().unwrap()]),
            Duration::from_secs(30),
        )
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "oemesh down: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn assert_clean(&self) {
        assert_eq!(self.rules(), Vec::<String>::new());
        assert_eq!(self.routes(), Vec::<String>::new());
        assert!(
            !self.has_tun(),
            "{}",
            self.ns.ip(&["link", "show"]).unwrap()
        );
        assert!(
            !self.nft_tables().contains("oemesh"),
            "{}",
            self.nft_tables()
        );
        assert!(!self.socket().exists(), "control socket left behind");
    }
}

/// Runs the CLI; returns (success, stdout, stderr).
fn oemesh(args: &[&str]) -> (bool, String, String) {
    let out =
        process::run_unchecked(Command::new(BIN).args(args), Duration::from_secs(10)).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metrics(ns: &Netns) -> String {
    ns.run(|| {
        let mut s = TcpStream::connect("127.0.0.1:9618").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .unwrap()
}

fn exited_cleanly(child: &mut Child, log: &Path) {
    let status = child.stop().unwrap();
    assert!(
        status.success(),
        "agent exited with {status}:\n{}",
        process::tail_of_file(log, 40)
    );
}

#[test]
fn run_sets_up_answers_and_tears_down() {
    let fx = Fixture::new();
    let sock = fx.socket();
    let sock = sock.to_str().unwrap();

    let mut agent = fx.start(1);
    fx.assert_installed();

    let (ok, status, err) = oemesh(&["status", "--socket", sock]);
    assert!(ok, "{err}");
    assert!(
        status.contains("oemesh0") && status.contains("192.0.2.10"),
        "{status}"
    );
    let (ok, peers, _) = oemesh(&["peers", "--json", "--socket", sock]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&peers).unwrap(),
        serde_json::json!([])
    );
    let (ok, check, _) = oemesh(&["check", "192.0.2.53", "--json", "--socket", sock]);
    assert!(ok);
    let check: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert_eq!(check["group"], "clear");
    assert_eq!(check["reverse_name"], "53.2.0.192.in-addr.arpa.");

    // A packet to the OE prefix takes our table into the TUN and reaches the
    // agent, which holds it while it decides (DNS is unreachable here: clear).
    let src: IpAddr = "192.0.2.10".parse().unwrap();
    let _ = fx.ns.ping(
        src,
        "192.0.2.20".parse().unwrap(),
        Duration::from_millis(300),
    );
    let text = metrics(&fx.ns);
    let held = text
        .lines()
        .find_map(|l| l.strip_prefix("oemesh_packets_total{outcome=\"held\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        held >= 1,
        "no packet reached the agent through the TUN:\n{text}"
    );

    exited_cleanly(&mut agent, &fx.dir.path().join("agent-1.log"));
    fx.assert_stopped();
    let removed = fx.down();
    assert!(
        removed.contains("removed 2 rule(s), 3 route(s) of table 28517"),
        "{removed}"
    );
    fx.assert_clean();
    assert!(fx.down().contains("nothing to remove"));
    fx.assert_clean();
}

#[test]
fn stale_state_after_sigkill_is_cleaned_at_start() {
    let fx = Fixture::new();
    let mut agent = fx.start(1);
    fx.assert_installed();
    agent.signal(Signal::KILL).unwrap();
    wait_until("the killed agent to exit", Duration::from_secs(10), || {
        !agent.is_running()
    })
    .unwrap();
    // SIGKILL leaves the rules, routes and nftables table (the TUN goes with its fd).
    assert_eq!(fx.rules().len(), 2);
    assert!(!fx.routes().is_empty());
    assert!(fx.nft_tables().contains("oemesh"));

    let mut agent = fx.start(2);
    fx.assert_installed(); // exactly one of each: nothing duplicated
    let log = fx.dir.path().join("agent-2.log");
    assert!(
        process::tail_of_file(&log, 100).contains("replaced state left by a previous run"),
        "{}",
        process::tail_of_file(&log, 40)
    );
    exited_cleanly(&mut agent, &log);
    fx.assert_stopped();
    fx.down();
    fx.assert_clean();
}
