//! Restarts that fail closed (issue 18, part 2) and `oemesh down`.
//!
//! A stop (SIGTERM, as `systemctl stop|restart` and a package upgrade send)
//! keeps the rules and the `unreachable` routes of `private` and `block`
//! prefixes: while alice's agent is away, a flow to bob (`private`) gets "no
//! route to host" instead of leaving in clear, and a `private-or-clear`
//! destination is routed the normal way. The next start installs its state
//! over the kept one before removing anything (make before break), and the
//! flow goes on over new SAs. `oemesh down` removes everything, is
//! idempotent, and refuses while an agent runs.
//!
//! Needs root, BIND 9, tcpdump and nft (like `e2e.rs`).

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e_support::*;
use oemesh_testkit::capture::Packet;
use oemesh_testkit::process::{run_unchecked, wait_until};
use oemesh_testkit::topology::{AgentConfig, Host};

const TABLE: &str = "28517";
const BOB: &str = "192.0.2.20";
const DAVE: &str = "192.0.2.40";
/// IP protocol number of ICMP.
const ICMP: u8 = 1;

/// alice's view: bob is `private`, the rest of the segment
/// `private-or-clear` (dave, with no agent, ends up clear), BIND `clear`.
fn config() -> AgentConfig {
    let mut c = AgentConfig::default();
    c.set_policy("private", &[&format!("{BOB}/32")]);
    c
}

/// Runs `oemesh <args> --config <host's config>` in the host's namespace;
/// (success, stdout, stderr), non-zero exits included.
fn oemesh_in(host: &Host, args: &[&str]) -> (bool, String, String) {
    let config = host.config_path();
    let mut cmd: Command = host.netns().command(OEMESH);
    cmd.args(args).arg("--config").arg(&config);
    let out: Output = run_unchecked(&mut cmd, Duration::from_secs(30)).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ip route get ADDR` in the host's namespace: its answer, or its error.
fn route_get(host: &Host, addr: &str) -> String {
    let mut cmd = Command::new("ip");
    cmd.args(["-n", host.netns().name(), "route", "get", addr]);
    let out = run_unchecked(&mut cmd, Duration::from_secs(10)).unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Our rules (lines naming our table) in both families.
fn rules(host: &Host) -> Vec<String> {
    ["-4", "-6"]
        .iter()
        .flat_map(|f| {
            host.netns()
                .ip(&[f, "rule", "show"])
                .unwrap()
                .lines()
                .filter(|l| l.contains(TABLE))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The routes of our table in both families (an empty table may not exist).
fn routes(host: &Host) -> Vec<String> {
    ["-4", "-6"]
        .iter()
        .flat_map(|f| {
            host.netns()
                .ip(&[f, "route", "show", "table", TABLE])
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn has_tun(host: &Host) -> bool {
    host.netns()
        .ip(&["link", "show"])
        .unwrap()
        .contains("oemesh0")
}

fn nft_tables(host: &Host) -> String {
    let out = host
        .exec(&["nft", "list", "tables"], Duration::from_secs(10))
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// The ESP SPIs alice → bob in `packets` captured within `[from, to)`.
fn spis(
    packets: &[Packet],
    alice: &Host,
    bob: &Host,
    from: Duration,
    to: Duration,
) -> BTreeSet<[u8; 4]> {
    packets
        .iter()
        .filter(|p| p.src == alice.ip() && p.dst == bob.ip() && p.is_esp_in_udp())
        .filter(|p| p.time >= from && p.time < to)
        .map(|p| p.payload[..4].try_into().unwrap())
        .collect()
}

/// A UDP flow alice → bob with `marker` in every datagram, one every 20 ms,
/// until dropped. Send errors (no route to host while the agent is away)
/// are expected and ignored.
struct Flow {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Flow {
    fn start(socket: UdpSocket, to: SocketAddr, marker: &'static [u8]) -> Flow {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::spawn(move || {
            let mut n = 0u32;
            while !s.load(Ordering::Relaxed) {
                let mut d = marked_payload(marker, 200);
                d[..4].copy_from_slice(&n.to_be_bytes());
                let _ = socket.send_to(&d, to);
                n += 1;
                thread::sleep(Duration::from_millis(20));
            }
        });
        Flow {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// alice's agent is stopped (SIGTERM) and started again while a `private`
/// flow to bob keeps sending: the sniffer sees nothing of it but IKE and ESP,
/// the marker never, and the flow goes on afterwards over SAs with new SPIs.
#[test]
fn restart_with_a_private_flow_sends_nothing_in_clear() {
    let net = testnet("restart", config());
    let (alice, bob) = (net.alice(), net.bob());
    let marker: &'static [u8] = b"OEMESH-MARKER-restart-5d1e";
    let cap = net.capture("restart").unwrap();
    let echo = UdpEcho::start(bob, 7201);
    let client = udp_client(alice);
    udp_until_echo(&client, echo.addr(), &marked_payload(marker, 64), DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nalice:\n{}", alice.log_tail(30)));
    alice
        .wait_peer(bob.ip(), "bob private", DECISION, |p| p.state == "private")
        .unwrap();

    let flow = Flow::start(client.try_clone().unwrap(), echo.addr(), marker);
    thread::sleep(Duration::from_millis(300));
    let stopped_at = now();
    let exit = alice.stop_agent().unwrap();
    assert!(
        exit.success(),
        "alice's agent: {exit:?}\n{}",
        alice.log_tail(20)
    );
    // Stopped: how bob (private) and dave (private-or-clear) are routed
    // (checked below, after the wire).
    let (to_bob, to_dave) = (route_get(alice, BOB), route_get(alice, DAVE));
    thread::sleep(Duration::from_secs(1)); // the flow keeps sending meanwhile
    alice.start_agent().unwrap();
    let started_at = now();

    // The flow goes on: an echo, and bob gets the flow's datagrams again.
    udp_until_echo(&client, echo.addr(), &marked_payload(marker, 100), DECISION).unwrap_or_else(
        |e| {
            panic!(
                "{e:#}\nalice:\n{}\nbob:\n{}",
                alice.log_tail(30),
                bob.log_tail(30)
            )
        },
    );
    let got = echo.received().len();
    wait_until("more of the flow to reach bob", DECISION, || {
        echo.received().len() > got + 10
    })
    .unwrap();
    drop(flow);
    let packets = cap.stop().unwrap();

    // Nothing between them but IKE and ESP (an ICMP error about an IKE or
    // ESP datagram that reached a stopped agent's closed port quotes only
    // ciphertext: the marker check covers it), and the marker nowhere.
    let clear: Vec<String> = between(&packets, alice.ip(), bob.ip())
        .into_iter()
        .filter(|p| !is_ipsec(p) && p.protocol != ICMP)
        .map(show)
        .collect();
    assert!(
        clear.is_empty(),
        "cleartext between alice and bob:\n{}",
        clear.join("\n")
    );
    assert_marker_absent(&packets, marker);
    // While stopped, bob was unreachable and dave routed the normal way.
    assert!(
        to_bob.contains("unreachable") || to_bob.contains("No route to host"),
        "{to_bob}"
    );
    assert!(
        to_dave.contains(" dev ")
            && !to_dave.contains("oemesh0")
            && !to_dave.contains("unreachable"),
        "{to_dave}"
    );
    let before = spis(&packets, alice, bob, Duration::ZERO, stopped_at);
    let after = spis(&packets, alice, bob, started_at, Duration::MAX);
    assert!(
        !before.is_empty() && !after.is_empty(),
        "{before:?} {after:?}"
    );
    assert!(
        after.is_disjoint(&before),
        "an SPI from before the restart is still used after it: {before:?} {after:?}"
    );
    let kept = alice
        .log()
        .lines()
        .filter(|l| l.contains("private and block prefixes stay unreachable until the agent is back or `oemesh down` runs"))
        .count();
    assert_eq!(kept, 1, "{}", alice.log_tail(40));
}

/// A stop keeps what fails closed and nothing else; `oemesh down` refuses
/// while the agent runs, removes everything after the stop, and says nothing
/// was left the second time.
#[test]
fn stop_keeps_what_fails_closed_and_down_removes_it() {
    let mut c = config();
    c.set_policy("block", &["192.0.2.30/32"]);
    let net = testnet("down", c);
    let (alice, dave) = (net.alice(), net.dave());
    // dave goes clear: a bypass route, which a stop removes.
    let echo = UdpEcho::start(dave, 7202);
    let client = udp_client(alice);
    udp_until_echo(&client, echo.addr(), b"dave", DECISION).unwrap();
    alice
        .wait_peer(dave.ip(), "dave clear", DECISION, |p| p.state == "clear")
        .unwrap();
    assert!(
        routes(alice)
            .iter()
            .any(|r| r.starts_with(&format!("throw {DAVE}")))
    );

    let pid = alice.agent_pid().unwrap();
    let (ok, _, err) = oemesh_in(alice, &["down"]);
    assert!(!ok, "down ran under a live agent");
    assert!(
        err.contains("an agent is running") && err.contains("stop it first"),
        "{err}"
    );
    assert!(has_tun(alice), "a refused down removed the TUN");
    eprintln!("refused (agent pid {pid}): {err}");

    let exit = alice.stop_agent().unwrap();
    assert!(exit.success(), "{exit:?}\n{}", alice.log_tail(20));
    // What a stop keeps: both rules, bob's and carol's unreachable routes,
    // nat.pool's (given addresses fail closed) and BIND's throw; not the TUN,
    // its routes, dave's bypass or the nft table.
    let left = routes(alice);
    assert_eq!(rules(alice).len(), 2, "{:?}", rules(alice));
    for want in [
        format!("unreachable {BOB} "),
        "unreachable 192.0.2.30 ".to_owned(),
        "throw 192.0.2.53 ".to_owned(),
        "unreachable 100.64.0.0/16 ".to_owned(),
    ] {
        assert!(
            left.iter().any(|r| r.starts_with(&want)),
            "no {want:?} in {left:?}"
        );
    }
    assert_eq!(left.len(), 5, "{left:?}");
    assert!(!has_tun(alice));
    assert!(
        !nft_tables(alice).contains("oemesh"),
        "{}",
        nft_tables(alice)
    );
    let err = client
        .send_to(
            b"to bob while stopped",
            SocketAddr::new(BOB.parse().unwrap(), 7203),
        )
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::HostUnreachable, "{err}");

    let (ok, out, err) = oemesh_in(alice, &["down"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("removed 2 rule(s), 5 route(s) of table 28517"),
        "{out}"
    );
    assert_eq!(rules(alice), Vec::<String>::new());
    assert_eq!(routes(alice), Vec::<String>::new());
    assert!(!has_tun(alice));
    assert!(!nft_tables(alice).contains("oemesh"));
    // Removed means removed: bob is routed the normal way again.
    let to_bob = route_get(alice, BOB);
    assert!(
        to_bob.contains(" dev ") && !to_bob.contains("unreachable"),
        "{to_bob}"
    );

    let (ok, out, err) = oemesh_in(alice, &["down"]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing to remove"), "{out}");
}

/// A start after a stop with a changed policy: bob moves from `private` to
/// `private-or-clear`, dave from `clear` to `private`. The new state goes in
/// before the old is swept (`ip monitor` sees no rule deleted, dave's kept
/// `throw` replaced in place, bob's stale `unreachable` deleted only after
/// the TUN route that now covers him is in), the result equals a fresh
/// start's with the new policy, and the start says what it replaced.
#[test]
fn start_after_a_stop_replaces_the_kept_state() {
    let mut old = config();
    old.set_policy("clear", &["192.0.2.53/32", &format!("{DAVE}/32")]);
    let net = testnet("replace", old);
    let alice = net.alice();
    alice.stop_agent().unwrap();
    let kept = routes(alice);
    assert!(
        kept.iter()
            .any(|r| r.starts_with(&format!("unreachable {BOB} ")))
            && kept
                .iter()
                .any(|r| r.starts_with(&format!("throw {DAVE} "))),
        "{kept:?}"
    );

    let mut new = AgentConfig::default();
    new.set_policy("private", &[&format!("{DAVE}/32")]);
    alice.set_agent_config(&new).unwrap();
    let events = net.dir().join("replace-monitor.log");
    let mut monitor = alice
        .netns()
        .spawn("ip monitor", &["ip", "monitor", "rule", "route"], &events)
        .unwrap();
    // The monitor listens once it reports a change of ours (made again until
    // it does: the first may come before it subscribed).
    const MARK: &str = "198.51.100.0/24";
    wait_until("ip monitor to listen", Duration::from_secs(10), || {
        for verb in ["add", "del"] {
            let _ = alice
                .netns()
                .ip(&["route", verb, "unreachable", MARK, "table", "100"]);
        }
        thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(&events).is_ok_and(|t| t.contains(MARK))
    })
    .unwrap();
    alice.start_agent().unwrap();
    monitor.stop().unwrap();
    let events = std::fs::read_to_string(&events).unwrap();
    let deleted: Vec<&str> = events
        .lines()
        .filter(|l| l.starts_with("Deleted") && !l.contains(MARK))
        .collect();
    assert_eq!(deleted.len(), 1, "{events}");
    assert!(
        deleted[0].starts_with(&format!("Deleted unreachable {BOB} ")),
        "{events}"
    );
    let at = |needle: &str| {
        events
            .lines()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{events}"))
    };
    assert!(
        at("192.0.2.0/24 dev oemesh0") < at(&format!("Deleted unreachable {BOB} ")),
        "{events}"
    );

    let replaced = routes(alice);
    let replaced_rules = rules(alice);
    assert!(
        replaced
            .iter()
            .any(|r| r.starts_with(&format!("{DAVE} dev oemesh0")))
            && replaced
                .iter()
                .any(|r| r.starts_with(&format!("unreachable {DAVE} ")))
            && !replaced
                .iter()
                .any(|r| r.starts_with(&format!("throw {DAVE}")))
            && !replaced.iter().any(|r| r.contains(BOB)),
        "{replaced:?}"
    );
    assert_eq!(replaced_rules.len(), 2, "{replaced_rules:?}");
    let line = alice
        .log()
        .lines()
        .filter(|l| l.contains("replaced state left by a previous run"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert_eq!(line.len(), 1, "{}", alice.log_tail(30));
    assert!(
        line[0].contains("removed 0 stale rule(s) and 1 stale route(s)"),
        "{}",
        line[0]
    );

    // The same as a start from nothing.
    alice.stop_agent().unwrap();
    let (ok, _, err) = oemesh_in(alice, &["down"]);
    assert!(ok, "{err}");
    alice.start_agent().unwrap();
    assert_eq!(routes(alice), replaced);
    assert_eq!(rules(alice), replaced_rules);
}

/// A SIGTERM while the agent is still setting up (a `systemctl stop` right
/// after a start, or the test kit stopping an agent it just started) waits
/// for the setup and gets the orderly teardown: exit 0, the TUN removed.
/// Before, the handlers came only after the setup, and such a SIGTERM
/// killed the process with its TUN and routes in place.
#[test]
fn a_stop_during_start_up_still_tears_down() {
    let net = testnet("stopearly", config());
    let alice = net.alice();
    alice.stop_agent().unwrap();
    let cfg = alice.config_path();
    let argv = [
        OEMESH,
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--log-level",
        "info",
    ];
    let mut agent = alice.spawn("early-stop", &argv).unwrap();
    let log = net.dir().join("alice-early-stop.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    // The handlers are in place before this line is written.
    wait_until("the agent to start", DECISION, || {
        read().contains("starting")
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", read()));
    let status = agent.stop_within(Duration::from_secs(30)).unwrap();
    let text = read();
    assert!(status.success(), "{status}\n{text}");
    assert!(text.contains("SIGTERM: shutting down"), "{text}");
    assert!(!has_tun(alice), "the TUN was left behind:\n{text}");
}
