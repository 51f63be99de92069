//! A kept testnet goes entirely with `oemesh-testnet down` (what
//! `testnet/demo --down` runs): no process, namespace, directory or record is
//! left, even after someone deleted some of its namespaces by hand with
//! `ip netns del` (which leaves the processes in them running: issue 16).
//! Along the way: `oemesh peers` works in a host's shell as the printout says,
//! and the agents' logs, written to files, carry no colour escapes.
//!
//! Needs root, BIND 9, tcpdump, nft (`scripts/test` installs them).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use oemesh_testkit::process;
use oemesh_testkit::topology::{Binaries, Options, Testnet};

fn namespaces() -> String {
    let out = process::run(
        Command::new("ip").args(["netns", "list"]),
        Duration::from_secs(5),
    )
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn down_after_keep_leaves_nothing() {
    process::require_root();
    let bins = Binaries::from_test_target_dir().unwrap();
    let net = Testnet::up(Options::new("kept", bins)).unwrap();
    // A capture, as the demo leaves one.
    net.capture("demo").unwrap().stop().unwrap();
    let kept = net.leave_running().unwrap();

    // What it recorded runs: named and the three agents.
    let names: Vec<&str> = kept.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "named",
            "oemesh on alice",
            "oemesh on bob",
            "oemesh on carol"
        ]
    );
    assert!(kept.processes.iter().all(|p| p.is_running()), "{kept:?}");
    assert!(kept.file.is_file() && kept.dir.is_dir() && kept.bind_dir.is_dir());
    assert!(kept.dir.join("demo.pcap").is_file());
    let text = kept.instructions();
    assert!(text.contains("testnet/demo --down"), "{text}");
    assert!(
        text.contains("demo.pcap") && text.contains("tshark -r"),
        "{text}"
    );

    // `oemesh peers` inside a host, as the printout says: the rc file puts
    // oemesh on PATH and sets OEMESH_SOCKET.
    let mut shell = kept.shell_command("alice").unwrap();
    shell.extend([
        "-i".into(),
        "-c".into(),
        "command -v oemesh; echo \"socket=$OEMESH_SOCKET\"; oemesh peers --json".into(),
    ]);
    let out = process::run(
        Command::new(&shell[0])
            .args(&shell[1..])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        Duration::from_secs(15),
    )
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = said.trim_end().lines().collect();
    assert_eq!(lines.last(), Some(&"[]"), "{out:?}");
    let alice = kept.host("alice").unwrap();
    let socket = alice.socket.as_ref().unwrap().display().to_string();
    assert!(
        lines.contains(&format!("socket={socket}").as_str()),
        "{said}"
    );
    let oemesh = kept.bin_dirs[0].join("oemesh").display().to_string();
    assert!(
        lines.contains(&oemesh.as_str()),
        "oemesh from the testnet's bin dir:\n{said}"
    );

    // The agents' logs go to files (checked below, once all is down).
    let logs: Vec<(&str, String)> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|a| {
            let log = std::fs::read_to_string(kept.dir.join(format!("{a}-agent.log"))).unwrap();
            (a, log)
        })
        .collect();

    // What the issue saw: the namespaces deleted by hand. Their processes live on.
    for ns in kept
        .namespaces
        .iter()
        .filter(|n| n.ends_with("-dns") || n.ends_with("-alice"))
    {
        process::run(
            Command::new("ip").args(["netns", "del", ns]),
            Duration::from_secs(5),
        )
        .unwrap();
    }
    assert!(kept.processes.iter().all(|p| p.is_running()));

    let out = process::run(
        Command::new(env!("CARGO_BIN_EXE_oemesh-testnet"))
            .arg("down")
            .arg(&kept.file),
        Duration::from_secs(60),
    )
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("named (pid"), "{said}");
    assert!(said.contains("(2 were gone already)"), "{said}");

    for p in &kept.processes {
        assert!(
            !p.is_running(),
            "{} (pid {}) still runs:\n{said}",
            p.name,
            p.pid
        );
    }
    let listed = namespaces();
    for ns in &kept.namespaces {
        assert!(!listed.contains(ns.as_str()), "{ns} still there:\n{listed}");
    }
    for path in [&kept.dir, &kept.bind_dir, &kept.file] {
        assert!(!path.exists(), "{} still there:\n{said}", path.display());
    }

    // Plain text in files: no colour escapes (issue 16).
    for (agent, log) in &logs {
        assert!(log.contains("INFO"), "{agent}: {log}");
        assert!(
            !log.contains('\x1b'),
            "{agent}'s log has escape codes:\n{log}"
        );
    }
}
