//! The `oemesh` binary's command line: help with examples for every command,
//! completions, the committed man page, and `check-config` exit codes.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: failing loudly is the point

use std::path::Path;
use std::process::{Command, Output};

fn oemesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oemesh"))
        .args(args)
        .env_remove("OEMESH_SOCKET")
        .output()
        .expect("running oemesh")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_command_has_help_with_examples() {
    for cmd in [
        "run",
        "down",
        "check-config",
        "status",
        "peers",
        "check",
        "completions",
        "man",
    ] {
        let o = oemesh(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help: {}", stderr(&o));
        let text = stdout(&o);
        assert!(
            text.contains("Examples:\n  oemesh "),
            "{cmd} --help lacks examples:\n{text}"
        );
    }
    let top = stdout(&oemesh(&["--help"]));
    for cmd in ["run", "check-config", "status", "peers", "check"] {
        assert!(
            top.contains(&format!("  {cmd} ")),
            "top-level help lacks {cmd}:\n{top}"
        );
    }
    let peers = stdout(&oemesh(&["peers", "--help"]));
    assert!(
        peers.contains("--json") && peers.contains("--socket"),
        "{peers}"
    );
}

#[test]
fn completions_for_three_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let o = oemesh(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(
            text.contains("oemesh") && text.contains("check-config"),
            "{shell}"
        );
    }
    assert!(!oemesh(&["completions", "tcsh"]).status.success());
}

#[test]
fn committed_man_page_is_up_to_date() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/oemesh.1");
    let generated = oemesh(&["man"]);
    assert!(generated.status.success());
    let on_disk = std::fs::read(&committed).unwrap_or_default();
    assert!(
        on_disk == generated.stdout,
        "{} is stale: regenerate it with `cargo run -p oemesh-agent -- man > agent/man/oemesh.1`",
        committed.display()
    );
    assert!(stdout(&generated).contains("OEMESH CHECK-CONFIG"));
}

#[test]
fn check_config_good_and_bad() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/oemesh.example.toml");
    let o = oemesh(&["check-config", "--config", example.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("valid"));
    assert!(stdout(&o).contains("192.0.2.53/32"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[policy]\nprivate = [\"10.0.0.0/33\"]\n").unwrap();
    let o = oemesh(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(
            "policy.private[0]: not a CIDR: `10.0.0.0/33`: prefix length 33 is longer than 32"
        ),
        "{err}"
    );
    assert!(err.contains("bad.toml"), "{err}");

    std::fs::write(&bad, "[tun]\nnmae = \"x\"\n").unwrap();
    let o = oemesh(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown field `nmae`"),
        "{}",
        stderr(&o)
    );

    let o = oemesh(&[
        "check-config",
        "--config",
        dir.path().join("none.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[test]
fn queries_without_an_agent_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("oemesh.sock");
    for args in [
        &["status"][..],
        &["peers", "--json"],
        &["check", "192.0.2.1"],
    ] {
        let mut full = args.to_vec();
        full.extend(["--socket", sock.to_str().unwrap()]);
        let o = oemesh(&full);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("is `oemesh run` running?"),
            "{}",
            stderr(&o)
        );
    }
}
