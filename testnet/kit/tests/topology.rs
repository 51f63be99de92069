//! The namespace testnet comes up as described in `oemesh_testkit::topology`:
//! BIND answers at 192.0.2.53:53 for the forward and reverse zones, alice's and
//! bob's keys are published (the real `dnskeys publish`), carol and dave have
//! none, the agents answer on their control sockets, a capture on the switch
//! sees traffic between two hosts, and teardown leaves no namespace behind.
//!
//! Needs root, BIND 9, tcpdump, nft (`sudo scripts/test` installs them), and
//! the `oemesh` and `dnskeys` binaries (built by cargo when missing).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use oemesh_testkit::process;
use oemesh_testkit::topology::{Binaries, DNS_V4, Options, Testnet};

fn namespaces() -> String {
    let out = process::run(
        Command::new("ip").args(["netns", "list"]),
        Duration::from_secs(5),
    )
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn comes_up_publishes_keys_and_tears_down() {
    process::require_root();
    let bins = Binaries::from_test_target_dir().unwrap();
    let net = Testnet::up(Options::new("topo", bins)).unwrap();
    let names: Vec<String> = net
        .hosts()
        .iter()
        .map(|h| h.netns().name().to_owned())
        .chain([net.dns().netns().name().to_owned()])
        .chain([net.switch().netns().name().to_owned()])
        .collect();
    let listed = namespaces();
    for n in &names {
        assert!(listed.contains(n.as_str()), "{n} missing from:\n{listed}");
    }

    // BIND answers at the namespace address for the forward zone.
    let bind = net.dns().bind();
    assert_eq!(bind.addr(), SocketAddr::from((DNS_V4, 53)));
    let a = bind.dig(&["+norecurse", "alice.oe.test.", "A"]).unwrap();
    assert!(a.contains("192.0.2.10"), "{a}");

    // IPSECKEY at alice's and bob's reverse names, none at carol's and dave's.
    for host in net.hosts() {
        let keys = net.dns().ipseckeys(host.ip()).unwrap();
        match host.public_key() {
            Some(pk) => {
                assert_eq!(keys.len(), 1, "{}: {keys:?}", host.name());
                assert!(
                    keys[0].starts_with("10 0 4 . ") && keys[0].ends_with(pk),
                    "{}: {keys:?} vs {pk}",
                    host.name()
                );
            }
            None => assert!(keys.is_empty(), "{}: {keys:?}", host.name()),
        }
    }
    assert!(net.alice().public_key().is_some() && net.bob().public_key().is_some());
    assert!(net.carol().public_key().is_none() && net.dave().public_key().is_none());

    // The hosts reach BIND from their namespaces (dig in alice's namespace).
    let out = net
        .alice()
        .exec(
            &[
                "dig",
                "@192.0.2.53",
                "+short",
                "+time=2",
                "+tries=1",
                "-x",
                "192.0.2.20",
                "IPSECKEY",
            ],
            Duration::from_secs(10),
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(net.bob().public_key().unwrap()),
        "alice's dig: {text}"
    );

    // Agents run on alice, bob and carol and answer; none on dave.
    for host in net.hosts() {
        assert_eq!(
            host.agent_pid().is_some(),
            host.runs_agent(),
            "{}",
            host.name()
        );
        if host.runs_agent() {
            let status = host.oemesh_cli(&["status", "--json"]).unwrap();
            assert!(status.contains(&host.v4().to_string()), "{status}");
            assert!(host.peers().unwrap().is_empty());
        }
    }
    assert!(!net.dave().runs_agent());

    // The capture on the switch sees traffic between two hosts (dave → dns:
    // neither end runs an agent, so this works before the data path does).
    let cap = net.capture("switch").unwrap();
    let dave = net.dave();
    let server = net
        .dns()
        .netns()
        .bind_udp("192.0.2.53:7777".parse().unwrap());
    let server = server.unwrap();
    let client = dave
        .netns()
        .bind_udp("192.0.2.40:0".parse().unwrap())
        .unwrap();
    client
        .send_to(b"through the switch", server.local_addr().unwrap())
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"through the switch");
    let packets = cap.stop().unwrap();
    let dave_ip: IpAddr = "192.0.2.40".parse().unwrap();
    assert!(
        packets
            .iter()
            .any(|p| p.src == dave_ip && p.payload == b"through the switch"),
        "{packets:?}"
    );

    // Restart keeps the agent answering; stop leaves its state removed.
    let alice = net.alice();
    let pid = alice.agent_pid().unwrap();
    alice.restart_agent().unwrap();
    assert_ne!(alice.agent_pid(), Some(pid));
    assert!(
        alice.stop_agent().unwrap().success(),
        "{}",
        alice.log_tail(20)
    );

    let dir = net.dir().to_owned();
    net.down().unwrap();
    let listed = namespaces();
    for n in &names {
        assert!(!listed.contains(n.as_str()), "{n} left behind:\n{listed}");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}
