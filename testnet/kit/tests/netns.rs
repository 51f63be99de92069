//! The namespace and process helpers on their own: veth, switch, sockets bound
//! inside namespaces, ping, cleanup on drop and of stale namespaces.
//!
//! Needs root: fails (never skips) otherwise, saying to run `sudo scripts/test`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use oemesh_testkit::netns::{self, Netns, Switch, veth};
use oemesh_testkit::process::{self, Child};

fn namespaces() -> String {
    let out = process::run(
        Command::new("ip").args(["netns", "list"]),
        Duration::from_secs(5),
    )
    .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn veth_udp_ping_and_cleanup() {
    process::require_root();
    let a = Netns::new("a").expect("netns");
    let b = Netns::new("b").expect("netns");
    let names = (a.name().to_owned(), b.name().to_owned());
    assert!(names.0.starts_with(&format!("oet-{}-", std::process::id())));
    let (a_if, b_if) = veth(&a, "192.0.2.1/24", &b, "192.0.2.2/24").expect("veth");
    assert_eq!((a_if.as_str(), b_if.as_str()), ("eth0", "eth0"));
    a.add_addr(&a_if, "2001:db8::1/64").expect("v6");
    b.add_addr(&b_if, "2001:db8::2/64").expect("v6");

    a.ping(
        "192.0.2.1".parse().expect("ip"),
        "192.0.2.2".parse().expect("ip"),
        Duration::from_secs(3),
    )
    .expect("ping v4");
    a.ping(
        "2001:db8::1".parse().expect("ip"),
        "2001:db8::2".parse().expect("ip"),
        Duration::from_secs(3),
    )
    .expect("ping v6");

    let server = b
        .bind_udp("192.0.2.2:0".parse().expect("addr"))
        .expect("bind b");
    let client = a
        .bind_udp("192.0.2.1:0".parse().expect("addr"))
        .expect("bind a");
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    client
        .send_to(b"x", server.local_addr().expect("addr"))
        .expect("send");
    let mut buf = [0u8; 8];
    let (n, from) = server.recv_from(&mut buf).expect("recv");
    assert_eq!(
        (&buf[..n], from),
        (&b"x"[..], client.local_addr().expect("addr"))
    );

    // run() executes in the namespace, not in the caller's.
    let ns_link = || std::fs::read_link("/proc/thread-self/ns/net").expect("ns link");
    assert_ne!(a.run(ns_link).expect("run"), ns_link());
    // run() returns the closure's value and sees the namespace's interfaces.
    let links = a
        .run(|| std::fs::read_to_string("/proc/net/dev"))
        .expect("run");
    assert!(links.expect("read").contains("eth0:"));

    // A process left running inside is killed when the namespace goes.
    let out = tempfile::NamedTempFile::new().expect("tmp");
    let sleeper = a
        .spawn("sleep", &["sleep", "60"], out.path())
        .expect("spawn");
    let pid = sleeper.pid();
    std::mem::forget(sleeper);
    drop(a);
    drop(b);
    process::wait_until("sleep to be killed", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    })
    .expect("sleeper killed");
    let list = namespaces();
    assert!(
        !list.contains(&names.0) && !list.contains(&names.1),
        "{list}"
    );
}

#[test]
fn switch_joins_three_hosts() {
    process::require_root();
    let sw = Switch::new("sw").expect("switch");
    let hosts: Vec<Netns> = (1..=3)
        .map(|i| {
            let h = Netns::new(&format!("h{i}")).expect("netns");
            sw.attach(&h, &format!("192.0.2.{i}/24")).expect("attach");
            h
        })
        .collect();
    for (i, h) in hosts.iter().enumerate() {
        let src = format!("192.0.2.{}", i + 1).parse().expect("ip");
        let dst = format!("192.0.2.{}", (i + 1) % 3 + 1).parse().expect("ip");
        h.ping(src, dst, Duration::from_secs(3))
            .expect("ping across the switch");
    }
    let bound = hosts[2]
        .bind_tcp(SocketAddr::from(([192, 0, 2, 3], 0)))
        .expect("tcp bind");
    assert!(bound.local_addr().expect("addr").port() > 0);
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed() {
    process::require_root();
    // PIDs never reach this value (pid_max ≤ 2^22).
    let stale = "oet-999999999-0-stale";
    process::run(
        Command::new("ip").args(["netns", "add", stale]),
        Duration::from_secs(5),
    )
    .expect("add");
    let removed = netns::cleanup_stale().expect("cleanup");
    assert!(removed.iter().any(|n| n == stale) || !namespaces().contains(stale));
    assert!(!namespaces().contains(stale));
}

#[test]
fn child_is_stopped_on_drop_and_waits_are_bounded() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("out");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo started; trap '' TERM; exec sleep 30"]);
    let mut child = Child::spawn("stubborn", cmd, &log).expect("spawn");
    process::wait_until("output", Duration::from_secs(5), || {
        child.output_tail(1) == "started"
    })
    .expect("output");
    let t = Instant::now();
    child.stop_within(Duration::from_millis(300)).expect("stop");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "SIGKILL after the grace period"
    );
    assert!(!child.is_running());

    let t = Instant::now();
    let err =
        process::wait_until("never", Duration::from_millis(200), || false).expect_err("times out");
    assert!(err.to_string().contains("never"));
    assert!(t.elapsed() < Duration::from_secs(2));

    let err = process::run(Command::new("sleep").arg("10"), Duration::from_millis(200))
        .expect_err("killed");
    assert!(err.to_string().contains("did not finish"));
}
