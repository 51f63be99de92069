//! OE behind NAT (issue 13): home LANs behind a real nftables masquerade
//! (`oemesh_testkit::topology::nat`) on the namespace testnet, with bob's
//! agent (key published) as the server.
//!
//! - the topology itself: one outer address, same private address and ports
//!   behind it, a rebinding moves a flow to a new outer port;
//! - two agents behind one NAT address, private with bob at the same time;
//! - a NAT rebinding in the middle of a TCP transfer;
//! - a stock strongSwan road warrior (`vips = 0.0.0.0`) behind the NAT
//!   against bob's agent;
//! - our agent behind the NAT against a stock strongSwan responder with `pools`.
//!
//! Not here: a configuration request from a host that is not behind a NAT.
//! A stock strongSwan cannot send one: with kernel-libipsec (and with
//! `encap = yes`) it fakes its NAT_DETECTION_SOURCE_IP to force ESP in UDP,
//! and so is, as far as any responder can tell, behind a NAT.
//!
//! Needs root, BIND 9, nft, conntrack, tcpdump and strongSwan (like `e2e.rs`
//! and `trust.rs`). Every wait is bounded; nothing asserts timings.

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;
#[allow(dead_code)]
mod hostile;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;
use e2e_support::*;
use oemesh_testkit::capture::{IKE_PORT, NAT_T_PORT, Packet};
use oemesh_testkit::strongswan::{
    Charon, CharonConfig, Ed25519Key, ipseckey_rdata, require_charon, write_ed25519_public_pem,
};
use oemesh_testkit::topology::nat::ROUTER_WAN_V4;
use oemesh_testkit::topology::{Binaries, HomeLan, HomeLanOptions, Host, Options, Peer, Testnet};

/// The port range a rebinding moves the masquerade to.
const REBIND_PORTS: (u16, u16) = (40000, 40999);

/// A testnet with bob's agent as the server (alice's and carol's agents not
/// started: they are not part of these tests and would only add load).
fn server_net(label: &str) -> Testnet {
    oemesh_testkit::process::require_root();
    let bins = Binaries::locate(std::path::Path::new(OEMESH)).expect("oemesh and dnskeys binaries");
    let mut opts = Options::new(label, bins);
    opts.start_agents = false;
    opts.keep = std::env::var_os("OEMESH_E2E_KEEP").is_some();
    let net = Testnet::up(opts).expect("testnet comes up");
    net.bob().start_agent().unwrap();
    net
}

fn lan(net: &Testnet, opts: &HomeLanOptions) -> HomeLan {
    net.home_lan(opts)
        .unwrap_or_else(|e| panic!("home LAN: {e:#}"))
}

/// Packets between the router's outer address and `server`.
fn router_server(packets: &[Packet], server: IpAddr) -> Vec<&Packet> {
    between(packets, IpAddr::V4(ROUTER_WAN_V4), server)
}

/// The server's end of a packet between the router and `server` is IKE's or
/// NAT-T's port, and the packet is UDP: IKE or ESP in UDP, nothing else.
fn is_nat_ipsec(p: &Packet, server: IpAddr) -> bool {
    let server_port = |(s, d): (u16, u16)| if p.src == server { s } else { d };
    p.ports
        .map(server_port)
        .is_some_and(|port| port == IKE_PORT || port == NAT_T_PORT)
}

/// The router's source ports towards `to` (UDP), in capture order, deduplicated.
fn outer_ports(packets: &[Packet], to: IpAddr, dst_port: u16) -> Vec<u16> {
    let mut ports = Vec::new();
    for p in packets {
        if p.src == IpAddr::V4(ROUTER_WAN_V4)
            && p.dst == to
            && let Some((s, d)) = p.ports
            && d == dst_port
            && !ports.contains(&s)
        {
            ports.push(s);
        }
    }
    ports
}

/// Pings `dst` from `host`'s address until a reply comes (bounded).
fn ping_until(host: &Host, src: IpAddr, dst: IpAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match host.netns().ping(src, dst, Duration::from_secs(1)) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
    }
}

/// The topology alone, no agents: two clients with the same private address
/// and the same source port leave through one outer address on distinct
/// outer ports; a rebinding moves a flow into the new port range; the WAN
/// side never sees a private address.
#[test]
fn double_nat_shares_one_address_and_rebinds() {
    let net = server_net("natnet");
    net.bob().stop_agent().unwrap();
    let mut opts = HomeLanOptions::double_nat(&["pc-a", "pc-b"]);
    opts.start_agents = false;
    let home = lan(&net, &opts);
    let dave = net.dave();
    let echo = UdpEcho::start(dave, 7201);
    let wan = home.outer().capture_wan(net.dir(), "natnet-wan").unwrap();
    let clients = home.clients();
    assert_eq!(clients[0].ip(), clients[1].ip(), "same private address");
    let sockets: Vec<_> = clients
        .iter()
        .map(|c| c.netns().bind_udp(SocketAddr::new(c.ip(), 7777)).unwrap())
        .collect();
    for (c, s) in clients.iter().zip(&sockets) {
        udp_until_echo(s, echo.addr(), c.name().as_bytes(), DECISION)
            .unwrap_or_else(|e| panic!("{}: {e:#}", c.name()));
    }
    home.outer().rebind(REBIND_PORTS).unwrap();
    udp_until_echo(&sockets[0], echo.addr(), b"after the rebinding", DECISION).unwrap();
    let packets = wan.stop().unwrap();

    let ports = outer_ports(&packets, dave.ip(), 7201);
    assert_eq!(ports.len(), 3, "two flows, one rebound: {ports:?}");
    assert!(
        (REBIND_PORTS.0..=REBIND_PORTS.1).contains(&ports[2]),
        "the rebound flow's port {} is outside {REBIND_PORTS:?}",
        ports[2]
    );
    let private: Vec<String> = packets
        .iter()
        .filter(|p| {
            [p.src, p.dst]
                .iter()
                .any(|a| matches!(a, IpAddr::V4(v) if v.is_private()))
        })
        .map(show)
        .collect();
    assert!(
        private.is_empty(),
        "private addresses on the WAN:\n{}",
        private.join("\n")
    );
    let got = echo.received();
    assert!(got.contains(&b"pc-a".to_vec()) && got.contains(&b"pc-b".to_vec()));
}

/// The outer `ip:port` a peer entry says the peer comes from (`endpoint`).
fn endpoint(p: &Peer) -> Option<SocketAddr> {
    p.raw.get("endpoint")?.as_str()?.parse().ok()
}

/// The inner address of a peer entry (`assigned`): on a responder the address
/// it gave the peer, on an initiator the address the peer gave this host.
fn assigned(p: &Peer) -> Option<IpAddr> {
    p.raw.get("assigned")?.as_str()?.parse().ok()
}

fn in_prefix(addr: IpAddr, net: Ipv4Addr, len: u32) -> bool {
    let IpAddr::V4(a) = addr else { return false };
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(a) & mask == u32::from(net) & mask
}

/// The agent's default pool (`[nat] pool`), IPv4 half.
const POOL_V4: (Ipv4Addr, u32) = (Ipv4Addr::new(100, 64, 0, 0), 16);

/// bob's private entries for peers behind the home LAN's outer address.
fn natted_peers(bob: &Host) -> Vec<Peer> {
    bob.peers()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.state == "private" && endpoint(p).is_some_and(|e| e.ip() == IpAddr::V4(ROUTER_WAN_V4))
        })
        .collect()
}

/// Waits until bob shows `n` private peers behind the home LAN's address.
fn wait_natted_peers(bob: &Host, n: usize) -> Vec<Peer> {
    oemesh_testkit::process::wait_for("bob to show the NATed peers private", DECISION, || {
        let peers = natted_peers(bob);
        (peers.len() >= n).then_some(peers)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\nbob's peers: {:?}\nbob:\n{}",
            bob.peers(),
            bob.log_tail(40)
        )
    })
}

/// Asserts that everything between the router's outer address and `server`
/// on the WAN is IKE or ESP in UDP (the server's port 500 or 4500), that some
/// of it is ESP, and that `marker` crossed nowhere in the clear.
fn assert_wan_only_ipsec(packets: &[Packet], server: IpAddr, marker: &[u8]) {
    let pair = router_server(packets, server);
    let other: Vec<String> = pair
        .iter()
        .filter(|p| !is_nat_ipsec(p, server))
        .map(|p| show(p))
        .collect();
    assert!(
        other.is_empty(),
        "non-IPsec packets between the router and {server} on the WAN:\n{}",
        other.join("\n")
    );
    assert!(
        pair.iter().any(|p| p.is_esp_in_udp()),
        "no ESP in UDP between the router and {server} ({} packets)",
        pair.len()
    );
    assert_marker_absent(packets, marker);
}

/// Two agents behind one NAT address, with the same private address and the
/// same source ports (double NAT), are private with bob at the same time:
/// ping and TCP both ways. bob shows two peers with distinct pool addresses,
/// the same outer address and distinct outer ports; each client shows bob
/// private and authenticated; the WAN sees only IKE and ESP in UDP.
#[test]
fn two_agents_behind_one_nat_address_are_private_with_bob_at_once() {
    let net = server_net("nattwo");
    let home = lan(&net, &HomeLanOptions::double_nat(&["pc-a", "pc-b"]));
    let bob = net.bob();
    let clients = home.clients();
    let wan = home.outer().capture_wan(net.dir(), "nattwo-wan").unwrap();
    let marker = b"OEMESH-MARKER-nat-two-5e1d";
    let to_bob = TcpEcho::start(bob, 7210);
    for c in clients {
        let fail = |e: anyhow::Error| {
            panic!(
                "{}: {e:#}\n{}:\n{}\nbob:\n{}",
                c.name(),
                c.name(),
                c.log_tail(30),
                bob.log_tail(30)
            )
        };
        ping_until(c, c.ip(), bob.ip(), DECISION).unwrap_or_else(fail);
        let payload = marked_payload(marker, 100_000);
        tcp_exchange(c, to_bob.addr(), &payload, DECISION).unwrap_or_else(fail);
    }

    let on_bob = wait_natted_peers(bob, 2);
    assert_eq!(on_bob.len(), 2, "{on_bob:?}");
    let (a, b) = (&on_bob[0], &on_bob[1]);
    assert_ne!(a.peer, b.peer, "one pool address for two peers: {on_bob:?}");
    assert_ne!(
        endpoint(a),
        endpoint(b),
        "one outer port for two peers: {on_bob:?}"
    );
    for p in &on_bob {
        assert!(
            in_prefix(p.peer, POOL_V4.0, POOL_V4.1),
            "not from the pool: {p:?}"
        );
        assert_eq!(assigned(p), Some(p.peer), "{p:?}");
        assert_eq!(p.auth.as_deref(), Some("anonymous"), "{p:?}");
    }

    // Each client: bob private, authenticated, and the address bob gave it;
    // then bob reaches the client at that address (the other way).
    for (i, c) in clients.iter().enumerate() {
        let p = c
            .wait_peer(bob.ip(), "bob private", DECISION, |p| p.state == "private")
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
        let given = assigned(&p).unwrap_or_else(|| panic!("{}: no `assigned`: {p:?}", c.name()));
        assert!(
            on_bob.iter().any(|b| b.peer == given),
            "{given} not in {on_bob:?}"
        );
        let port = 7220 + u16::try_from(i).unwrap();
        let from_bob = TcpEcho::start(c, port);
        let payload = marked_payload(marker, 50_000);
        tcp_exchange(bob, SocketAddr::new(given, port), &payload, DECISION).unwrap_or_else(|e| {
            panic!(
                "bob -> {} at {given}: {e:#}\nbob:\n{}",
                c.name(),
                bob.log_tail(30)
            )
        });
        assert_eq!(from_bob.received(), vec![payload]);
        bob.netns()
            .ping(bob.ip(), given, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("bob pings {}: {e:#}", c.name()));
    }
    assert_eq!(natted_peers(bob).len(), 2, "{:?}", bob.peers());

    let packets = wan.stop().unwrap();
    assert_wan_only_ipsec(&packets, bob.ip(), marker);
}

/// A NAT rebinding (new masquerade port range, conntrack flushed) in the
/// middle of an 8 MiB TCP transfer from the laptop to bob and back: the
/// transfer completes byte for byte, and bob follows the laptop to its new
/// outer port.
#[test]
fn a_nat_rebinding_mid_transfer_leaves_tcp_intact() {
    const LEN: usize = 8 << 20;
    const CHUNK: usize = 64 << 10;
    let net = server_net("natrebind");
    let home = lan(&net, &HomeLanOptions::new(&["laptop"]));
    let (bob, laptop) = (net.bob(), &home.clients()[0]);
    let echo = TcpEcho::start(bob, 7230);
    tcp_exchange(laptop, echo.addr(), b"warm up", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\nlaptop:\n{}", laptop.log_tail(30)));
    laptop
        .wait_peer(bob.ip(), "bob private", DECISION, |p| p.state == "private")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let before = wait_natted_peers(bob, 1)[0].clone();
    let wan = home
        .outer()
        .capture_wan(net.dir(), "natrebind-wan")
        .unwrap();

    let data = noise(LEN, 0x6f65_6d65_7368);
    let mut stream = laptop
        .netns()
        .run(|| TcpStream::connect_timeout(&echo.addr(), DECISION))
        .unwrap()
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        stream
            .write_all(chunk)
            .unwrap_or_else(|e| panic!("writing chunk {i}: {e}\nlaptop:\n{}", laptop.log_tail(30)));
        if i == LEN / CHUNK / 2 {
            home.outer().rebind(REBIND_PORTS).unwrap();
        }
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::with_capacity(LEN);
    stream
        .read_to_end(&mut back)
        .unwrap_or_else(|e| panic!("reading the echo: {e}\nbob:\n{}", bob.log_tail(30)));
    assert!(
        back == data,
        "echo differs: {} bytes back of {LEN}",
        back.len()
    );
    assert_eq!(echo.received().last().map(Vec::len), Some(LEN));

    let packets = wan.stop().unwrap();
    let rebound = |port: u16| (REBIND_PORTS.0..=REBIND_PORTS.1).contains(&port);
    assert!(
        outer_ports(&packets, bob.ip(), NAT_T_PORT)
            .into_iter()
            .any(rebound),
        "no ESP from the new port range on the WAN"
    );
    let after = oemesh_testkit::process::wait_for("bob to follow the new port", DECISION, || {
        natted_peers(bob)
            .into_iter()
            .find(|p| endpoint(p).is_some_and(|e| rebound(e.port())))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:?}\nbob:\n{}", bob.peers(), bob.log_tail(30)));
    assert_eq!(after.peer, before.peer, "the laptop's pool address changed");
    assert_wan_only_ipsec(&packets, bob.ip(), &data[LEN / 3..LEN / 3 + 32]);
}

/// `host`'s public key (its agent's) as an SPKI PEM file for charon.
fn pem_of(net: &Testnet, host: &Host) -> std::path::PathBuf {
    let path = net.dir().join(format!("{}-spki.pub", host.name()));
    let b64 = host.public_key().unwrap();
    let raw: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap()
        .try_into()
        .unwrap();
    write_ed25519_public_pem(&raw, &path).unwrap();
    path
}

/// A home LAN with one client, `name`, without an agent (for a charon).
fn lan_without_agent(net: &Testnet, name: &str) -> HomeLan {
    let mut opts = HomeLanOptions::new(&[name]);
    opts.start_agents = false;
    lan(net, &opts)
}

/// The first virtual IP charon got (`local-vips`).
fn vip_of(charon: &Charon) -> IpAddr {
    let sa = charon
        .wait_established(DECISION)
        .unwrap_or_else(|e| panic!("{e:#}"));
    sa.local_vips
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no virtual IP: {sa:?}\n{}", charon.context()))
}

/// A strongSwan road warrior's identity: strongSwan 5.9.8 has no AUTH NULL
/// in swanctl.conf, so it signs, under a name that passes the binding rules
/// of the trust model: its A record is the address IKE comes from (the
/// NAT's outer address) and the key at that address's reverse name is its
/// key (what the owner of a home LAN with one published host would publish).
const RW_ID: &str = "rw.oe.test";

/// Publishes `RW_ID` (A = the router's outer address, IPSECKEY = `key`) and
/// `key` at the outer address's reverse name.
fn publish_rw(net: &Testnet, key: &Ed25519Key) {
    let name = format!("{RW_ID}.");
    let rdata = ipseckey_rdata(key);
    let script = format!(
        "update delete {name} A\nupdate delete {name} IPSECKEY\n\
         update add {name} 60 A {ROUTER_WAN_V4}\n\
         update add {name} 60 IPSECKEY {rdata}\n"
    );
    net.dns().bind().nsupdate(&script).unwrap();
    hostile::set_ipseckey(net, IpAddr::V4(ROUTER_WAN_V4), Some(&rdata)).unwrap();
}

/// The configs themselves, without an agent: a stock strongSwan road warrior
/// behind the NAT gets an address from a stock strongSwan responder's pool on
/// dave and pings it through the tunnel.
#[test]
fn strongswan_road_warrior_and_pool_responder_through_the_nat() {
    require_charon();
    let net = server_net("natswan");
    net.bob().stop_agent().unwrap();
    let home = lan_without_agent(&net, "rw");
    let (rw, dave) = (&home.clients()[0], net.dave());
    let dave_key = Ed25519Key::generate(net.dir(), "dave-charon").unwrap();
    let rw_key = Ed25519Key::generate(net.dir(), "rw-charon").unwrap();
    let mut server = CharonConfig::pool_responder(dave.ip(), dave_key.clone(), "10.99.0.0/24");
    server.remote_pubkey = Some(rw_key.public_pem.clone());
    server.remote_id = Some(RW_ID.into());
    let responder = Charon::start(dave.netns(), "dave", server).unwrap();
    let mut cfg = CharonConfig::road_warrior(&rw.ip().to_string(), dave.ip(), dave_key.public_pem);
    cfg.local_key = Some(rw_key);
    cfg.local_id = Some(RW_ID.into());
    let client = Charon::start(rw.netns(), "rw", cfg).unwrap();
    client
        .initiate()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", responder.context()));
    let vip = vip_of(&client);
    assert!(in_prefix(vip, Ipv4Addr::new(10, 99, 0, 0), 24), "{vip}");
    ping_until(rw, vip, dave.ip(), DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\n{}\n{}", client.context(), responder.context()));
    let on_dave = responder.wait_established(DECISION).unwrap();
    assert_eq!(on_dave.remote_vips, vec![vip.to_string()], "{on_dave:?}");
    assert_eq!(
        on_dave.fields.get("remote-host").map(String::as_str),
        Some("192.0.2.1")
    );
}

/// A stock strongSwan client behind the NAT (`vips = 0.0.0.0`, signing as
/// `rw.oe.test`) against bob's agent: bob assigns it an address from his
/// pool, the client pings bob through the tunnel, and bob shows it private
/// at that address, coming from the router's outer address.
#[test]
fn a_strongswan_client_behind_nat_is_private_with_bob() {
    require_charon();
    let net = server_net("natrw");
    let home = lan_without_agent(&net, "rw");
    let (rw, bob) = (&home.clients()[0], net.bob());
    let key = Ed25519Key::generate(net.dir(), "rw-charon").unwrap();
    publish_rw(&net, &key);
    let mut cfg = CharonConfig::road_warrior(&rw.ip().to_string(), bob.ip(), pem_of(&net, bob));
    cfg.local_key = Some(key);
    cfg.local_id = Some(RW_ID.into());
    let client = Charon::start(rw.netns(), "rw", cfg).unwrap();
    client
        .initiate()
        .unwrap_or_else(|e| panic!("{e:#}\nbob:\n{}", bob.log_tail(40)));
    let vip = vip_of(&client);
    assert!(
        in_prefix(vip, POOL_V4.0, POOL_V4.1),
        "{vip} is not from bob's pool"
    );
    ping_until(rw, vip, bob.ip(), DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\n{}\nbob:\n{}", client.context(), bob.log_tail(40)));
    let p = bob
        .wait_peer(vip, "the road warrior private", DECISION, |p| {
            p.state == "private"
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(assigned(&p), Some(vip), "{p:?}");
    assert_eq!(
        endpoint(&p).map(|e| e.ip()),
        Some(IpAddr::V4(ROUTER_WAN_V4)),
        "{p:?}"
    );
}

/// Our agent behind the NAT against a stock strongSwan responder on dave
/// with `pools` (its key published at dave's reverse name): the laptop asks
/// for an address, gets one from the pool, and its pings to dave go through
/// the tunnel from that address. The laptop has a key of its own, given to
/// charon (strongSwan 5.9.8 takes no AUTH NULL).
#[test]
fn our_agent_behind_nat_is_private_with_a_strongswan_pool_responder() {
    require_charon();
    let net = server_net("natpool");
    net.bob().stop_agent().unwrap();
    let dave = net.dave();
    let mut opts = HomeLanOptions::new(&["laptop"]);
    opts.keyed = true;
    opts.start_agents = false;
    // charon knows the laptop by its key and address: sign, not AUTH NULL.
    opts.agent.extra = "[nat]\nanonymous = false".into();
    let home = lan(&net, &opts);
    let laptop = &home.clients()[0];
    let key = Ed25519Key::generate(net.dir(), "dave-charon").unwrap();
    hostile::set_ipseckey(&net, dave.ip(), Some(&ipseckey_rdata(&key))).unwrap();
    let mut server = CharonConfig::pool_responder(dave.ip(), key, "10.99.0.0/24");
    server.remote_pubkey = Some(pem_of(&net, laptop));
    server.remote_id = Some(laptop.ip().to_string());
    let responder = Charon::start(dave.netns(), "dave", server).unwrap();
    laptop.start_agent().unwrap();
    let wan = home.outer().capture_wan(net.dir(), "natpool-wan").unwrap();
    ping_until(laptop, laptop.ip(), dave.ip(), DECISION).unwrap_or_else(|e| {
        panic!(
            "{e:#}\nlaptop:\n{}\n{}",
            laptop.log_tail(40),
            responder.context()
        )
    });
    let p = laptop
        .wait_peer(dave.ip(), "dave private", DECISION, |p| {
            p.state == "private"
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", responder.context()));
    assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
    let given = assigned(&p).unwrap_or_else(|| panic!("no `assigned`: {p:?}"));
    assert!(in_prefix(given, Ipv4Addr::new(10, 99, 0, 0), 24), "{p:?}");
    let sa = responder.wait_established(DECISION).unwrap();
    assert_eq!(sa.remote_vips, vec![given.to_string()], "{sa:?}");
    ping_until(laptop, laptop.ip(), dave.ip(), DECISION).unwrap();
    let child = &responder.wait_established(DECISION).unwrap().children[0];
    assert!(child.counter("packets-in") > 0, "{child:?}");
    let packets = wan.stop().unwrap();
    assert_wan_only_ipsec(&packets, dave.ip(), b"");
}

/// IPv6 behind a NAT (the router masquerades its ULA LAN): the client,
/// dual-stack with only ULA space, is private with bob's IPv6 address, from
/// an address bob gives it out of the IPv6 pool (`fd00:6f65::/112`), and bob
/// lists it by that address, reached through the router's outer IPv6
/// address.
#[test]
fn behind_an_ipv6_nat_the_client_gets_an_address_from_the_ipv6_pool() {
    let net = server_net("nat6");
    let bob = net.bob();
    let bins = Binaries::locate(std::path::Path::new(OEMESH)).unwrap();
    let mut config = oemesh_testkit::topology::AgentConfig::default();
    config.set_policy(
        "private-or-clear",
        &[
            oemesh_testkit::topology::SUBNET_V4,
            oemesh_testkit::topology::SUBNET_V6,
        ],
    );
    bob.stop_agent().unwrap();
    publish_v6(&net, &bins.dnskeys, bob);
    configure_dual(bob, &config);
    bob.start_agent().unwrap();

    let mut opts = HomeLanOptions::new(&["pc6"]);
    opts.start_agents = false;
    opts.agent = config.clone();
    let home = lan(&net, &opts);
    let pc = &home.clients()[0];
    configure_dual(pc, &config);
    pc.start_agent().unwrap();

    let (pc6, bob6) = (IpAddr::V6(pc.v6()), IpAddr::V6(bob.v6()));
    ping_until(pc, pc6, bob6, DECISION).unwrap_or_else(|e| {
        panic!(
            "{e:#}\npc6:\n{}\nbob:\n{}",
            pc.log_tail(40),
            bob.log_tail(40)
        )
    });
    let p = pc
        .wait_peer(bob6, "bob private over IPv6", DECISION, |p| {
            p.state == "private"
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
    let given = assigned(&p).unwrap_or_else(|| panic!("no `assigned`: {p:?}"));
    let IpAddr::V6(g) = given else {
        panic!("an IPv4 address for an IPv6 SA: {p:?}")
    };
    assert_eq!(g.segments()[..7], [0xfd00, 0x6f65, 0, 0, 0, 0, 0], "{p:?}");
    let on_bob = bob
        .wait_peer(given, "the client private", DECISION, |p| {
            p.state == "private"
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(assigned(&on_bob), Some(given), "{on_bob:?}");
    assert_eq!(
        endpoint(&on_bob).map(|e| e.ip()),
        Some(IpAddr::V6(oemesh_testkit::topology::nat::ROUTER_WAN_V6)),
        "{on_bob:?}"
    );
}
