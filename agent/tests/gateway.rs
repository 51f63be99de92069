//! Gateways and nested encryption (issue 14): two sites behind agents acting
//! as gateways (`oemesh_testkit::topology::sites`) on the namespace testnet,
//! with a sniffer on the WAN (the testnet's switch) and one on each LAN.
//!
//! ```text
//! WAN 192.0.2.0/24 ── gw-a 192.0.2.31 ── LAN A 10.1.0.0/24: a-plain .10, a-agent .11
//!                  ── gw-b 192.0.2.32 ── LAN B 10.2.0.0/24: b-plain .10, b-agent .11
//! ```
//!
//! Each test says what must cross which segment, and nothing about timings:
//!
//! - `sites_route_in_the_clear_without_agents`: the topology and the records alone;
//! - `site_to_site_*`: plain hosts, ESP only between the gateways on the WAN,
//!   clear on each LAN;
//! - `nested_*`: agents behind the gateways, host ESP inside gateway ESP,
//!   nothing in clear anywhere; and a 1 MiB TCP transfer through both layers
//!   with the default MTUs (a stall there is the MTU item of the issue);
//! - `a_lone_host_*`: alice (agent, on the WAN) to a plain host behind gw-b;
//! - `the_wildcard_*`: a host without a record of its own is reached through
//!   its subnet's wildcard;
//! - `a_named_gateway_*`: the wildcard names its gateway by a domain name;
//! - `a_gateway_refuses_*`: a stock strongSwan asking gw-b for selectors
//!   outside `protects` gets TS_UNACCEPTABLE and no CHILD SA;
//! - `strongswan_*`: a stock strongSwan as the far site's gateway, both
//!   directions; `a_far_gateway_claiming_*`: one whose `local_ts` is wider
//!   than DNS vouches for.
//!
//! Run one at a time:
//! `CARGO_BUILD_JOBS=1 cargo test -p oemesh-agent --test gateway -- --test-threads 1 <name>`.
//! Needs root, BIND 9, tcpdump, nft, sysctl (and strongSwan for the last
//! ones). `OEMESH_E2E_KEEP=1` leaves the testnet up.

#![allow(clippy::unwrap_used, clippy::panic)]

#[allow(dead_code)]
mod e2e_support;
#[allow(dead_code)]
mod hostile;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use e2e_support::*;
use oemesh_testkit::capture::{Capture, Packet};
use oemesh_testkit::strongswan::{
    Charon, CharonConfig, Ed25519Key, ipseckey_rdata, require_charon, write_ed25519_public_pem,
};
use oemesh_testkit::topology::sites::{
    GATEWAY_PRECEDENCE, SITES, Site, Sites, SitesOptions, gateway_rdata,
};
use oemesh_testkit::topology::{AgentConfig, Binaries, DNS_V4, Host, Options, Testnet};

/// A bound on the 1 MiB transfer through both layers (TCP recovers losses
/// itself; a stall is a black hole, not slowness).
const TRANSFER: Duration = Duration::from_secs(90);

/// A testnet whose own agents (alice, bob, carol) are not started: the
/// sites' agents are the subjects here.
fn wan(label: &str) -> Testnet {
    oemesh_testkit::process::require_root();
    let bins = Binaries::locate(std::path::Path::new(OEMESH)).expect("oemesh and dnskeys binaries");
    let mut opts = Options::new(label, bins);
    opts.start_agents = false;
    opts.keep = std::env::var_os("OEMESH_E2E_KEEP").is_some();
    Testnet::up(opts).expect("testnet comes up")
}

fn two_sites(net: &Testnet, opts: &SitesOptions) -> Sites {
    net.two_sites(opts)
        .unwrap_or_else(|e| panic!("two sites: {e:#}"))
}

/// Sites whose LAN hosts run nothing: only the gateways have agents.
fn plain_sites() -> SitesOptions {
    SitesOptions {
        lan_agents: false,
        ..SitesOptions::default()
    }
}

/// The last log lines of every agent of the sites, for failure messages.
fn logs(sites: &Sites) -> String {
    let mut s = String::new();
    for site in sites.sites() {
        let hosts = std::iter::once(site.gateway()).chain(site.hosts());
        for h in hosts.filter(|h| h.runs_agent()) {
            s.push_str(&format!("--- {}:\n{}\n", h.name(), h.log_tail(25)));
        }
    }
    s
}

/// Asserts that no IKE SA between the gateways was torn down because the
/// other one started over (INITIAL_CONTACT): two gateways that each open an
/// IKE SA for their own direction of one flow, each replacing the other's,
/// churn forever and the flow stalls (seen in the nested test, 2026-12-08).
fn assert_no_churn(sites: &Sites) {
    for site in sites.sites() {
        let gw = site.gateway();
        let replaced: Vec<String> = gw
            .log()
            .lines()
            .filter(|l| l.contains("started over (INITIAL_CONTACT) and replaced the IKE SA"))
            .map(str::to_owned)
            .collect();
        assert!(
            replaced.is_empty(),
            "{}: IKE SAs replaced by the other gateway's INITIAL_CONTACT:\n{}",
            gw.name(),
            replaced.join("\n")
        );
    }
}

/// Pings `dst` from `host` until a reply comes (bounded by [`DECISION`]).
fn ping(host: &Host, dst: IpAddr, sites: &Sites) {
    let deadline = std::time::Instant::now() + DECISION;
    loop {
        match host.netns().ping(host.ip(), dst, Duration::from_secs(2)) {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("{} -> {dst}: {e:#}\n{}", host.name(), logs(sites))
            }
            Err(_) => {}
        }
    }
}

/// A TCP exchange of `len` bytes carrying `marker` from `from` to `echo`.
fn tcp(from: &Host, echo: &TcpEcho, marker: &[u8], len: usize, sites: &Sites, bound: Duration) {
    let payload = marked_payload(marker, len);
    tcp_exchange(from, echo.addr(), &payload, bound)
        .unwrap_or_else(|e| panic!("{} -> {}: {e:#}\n{}", from.name(), echo.addr(), logs(sites)));
    assert!(echo.received().contains(&payload));
}

/// Stops a capture and insists that it lost nothing: the assertions below
/// are about what is absent.
fn stop(cap: Capture, what: &str) -> Vec<Packet> {
    let got = cap.stop_counted().unwrap();
    assert!(
        got.stats.complete(),
        "the {what} capture dropped packets: {:?}",
        got.stats
    );
    got.packets
}

/// Whether a packet has a site LAN address at either end.
fn lan_addressed(p: &Packet) -> bool {
    SITES.iter().any(|s| s.contains(p.src) || s.contains(p.dst))
}

/// DNS with the testnet's server (clear by policy, also from the LANs).
fn is_dns(p: &Packet) -> bool {
    p.involves(IpAddr::V4(DNS_V4)) && p.ports.is_some_and(|(s, d)| s == 53 || d == 53)
}

/// On the WAN: nothing with a LAN address but DNS, and `marker` nowhere.
fn assert_lans_hidden_on_wan(wan: &[Packet], marker: &[u8]) {
    let leaks: Vec<String> = wan
        .iter()
        .filter(|p| lan_addressed(p) && !is_dns(p))
        .map(show)
        .collect();
    assert!(
        leaks.is_empty(),
        "LAN addresses on the WAN outside the gateways' ESP:\n{}",
        leaks.join("\n")
    );
    assert_marker_absent(wan, marker);
}

/// Asserts that `a` and `b` talked in the clear on a LAN: ICMP, and TCP
/// carrying `marker`.
fn assert_clear_between(lan: &[Packet], a: IpAddr, b: IpAddr, marker: &[u8], what: &str) {
    let pair = between(lan, a, b);
    assert!(
        pair.iter().any(|p| p.is_icmp()),
        "{what}: no ICMP between {a} and {b} in the clear ({} packets)",
        pair.len()
    );
    assert!(
        pair.iter().any(|p| contains(&p.payload, marker)),
        "{what}: the marker between {a} and {b} is not in the clear ({} packets)",
        pair.len()
    );
}

/// `site`'s wildcard record (its gateway by address) as dig prints its RDATA.
fn wildcard_rdata(site: &Site) -> String {
    let key = site.gateway().public_key().unwrap();
    gateway_rdata(GATEWAY_PRECEDENCE, &site.spec().wan_v4.to_string(), key)
}

/// The topology and its records without any agent: every host reaches every
/// other through the gateways in the clear; the wildcard answers for a host
/// without records, an agent host has its own record and one naming its
/// gateway, each gateway has its record and its name.
#[test]
fn sites_route_in_the_clear_without_agents() {
    let net = wan("sites");
    let opts = SitesOptions {
        start_agents: false,
        ..SitesOptions::default()
    };
    let sites = two_sites(&net, &opts);
    let (a, b) = (sites.a(), sites.b());
    let cap = net.capture("sites-wan").unwrap();
    for (from, to) in [
        (a.plain(), b.plain().ip()),
        (b.agent(), a.plain().ip()),
        (net.alice(), b.plain().ip()),
        (a.agent(), net.dave().ip()),
    ] {
        ping(from, to, &sites);
    }
    let packets = stop(cap, "WAN");
    assert!(
        between(&packets, a.plain().ip(), b.plain().ip())
            .iter()
            .any(|p| p.is_icmp()),
        "no ICMP between the LANs on the WAN: the routes are not the testnet's"
    );

    let dns = net.dns();
    assert_eq!(
        dns.ipseckeys(b.plain().ip()).unwrap(),
        vec![wildcard_rdata(b)]
    );
    let mut on_agent = dns.ipseckeys(a.agent().ip()).unwrap();
    on_agent.sort();
    let own = format!("5 0 4 . {}", a.agent().public_key().unwrap());
    assert_eq!(on_agent, vec![wildcard_rdata(a), own]);
    for site in sites.sites() {
        let gw = site.gateway();
        let own = format!("10 0 4 . {}", gw.public_key().unwrap());
        assert_eq!(dns.ipseckeys(gw.ip()).unwrap(), vec![own]);
        let a_rr = dns.bind().dig(&[&site.spec().gateway_fqdn(), "A"]).unwrap();
        assert!(a_rr.contains(&gw.v4().to_string()), "{a_rr}");
    }
}

/// Site to site: plain hosts on both sides, agents only on the gateways. A
/// ping and a TCP transfer get through; the WAN sees ESP between the gateways
/// and no LAN address and no marker; each LAN sees the traffic in clear.
#[test]
fn site_to_site_plain_hosts_talk_through_gateway_esp() {
    let net = wan("s2s");
    let sites = two_sites(&net, &plain_sites());
    let (a, b) = (sites.a(), sites.b());
    let marker = b"OEMESH-MARKER-site-to-site-41c2";
    let wan_cap = net.capture("s2s-wan").unwrap();
    let lan_a = a.capture_lan(net.dir(), "s2s-lan-a").unwrap();
    let lan_b = b.capture_lan(net.dir(), "s2s-lan-b").unwrap();
    ping(a.plain(), b.plain().ip(), &sites);
    let echo = TcpEcho::start(b.plain(), 7401);
    tcp(a.plain(), &echo, marker, 100_000, &sites, DECISION);

    assert_no_churn(&sites);
    let wan_p = stop(wan_cap, "WAN");
    let (gw_a, gw_b) = (a.gateway().ip(), b.gateway().ip());
    assert_only_ipsec(&wan_p, gw_a, gw_b, marker);
    assert_lans_hidden_on_wan(&wan_p, marker);
    let (pa, pb) = (a.plain().ip(), b.plain().ip());
    assert_clear_between(&stop(lan_a, "LAN A"), pa, pb, marker, "LAN A");
    assert_clear_between(&stop(lan_b, "LAN B"), pa, pb, marker, "LAN B");
    let private = a.gateway().peers().unwrap();
    assert!(
        private.iter().any(|p| p.state == "private"),
        "gw-a has no private peer: {private:?}"
    );
}

/// Nested: a-agent ↔ b-agent with their own agents behind the gateways. The
/// WAN sees only ESP between the gateways (neither host's address), each LAN
/// only IKE and ESP between the two hosts, and the marker is nowhere; both
/// hosts say private and authenticated about each other.
#[test]
fn nested_host_esp_travels_inside_gateway_esp() {
    let net = wan("nested");
    let sites = two_sites(&net, &SitesOptions::default());
    let (a, b) = (sites.a(), sites.b());
    let (ha, hb) = (a.agent(), b.agent());
    let marker = b"OEMESH-MARKER-nested-9d07";
    let wan_cap = net.capture("nested-wan").unwrap();
    let lan_a = a.capture_lan(net.dir(), "nested-lan-a").unwrap();
    let lan_b = b.capture_lan(net.dir(), "nested-lan-b").unwrap();
    ping(ha, hb.ip(), &sites);
    let echo = TcpEcho::start(hb, 7402);
    tcp(ha, &echo, marker, 100_000, &sites, DECISION);
    assert_no_churn(&sites);
    for (host, peer) in [(ha, hb), (hb, ha)] {
        let p = host
            .wait_peer(peer.ip(), "the other host private", DECISION, |p| {
                p.state == "private"
            })
            .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&sites)));
        assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
    }

    let wan_p = stop(wan_cap, "WAN");
    assert_only_ipsec(&wan_p, a.gateway().ip(), b.gateway().ip(), marker);
    assert_lans_hidden_on_wan(&wan_p, marker);
    for (cap, what) in [(lan_a, "LAN A"), (lan_b, "LAN B")] {
        let lan = stop(cap, what);
        let pair = between(&lan, ha.ip(), hb.ip());
        let clear: Vec<String> = pair
            .iter()
            .filter(|p| !is_ipsec(p))
            .map(|p| show(p))
            .collect();
        assert!(
            clear.is_empty(),
            "{what}: the hosts' traffic in the clear:\n{}",
            clear.join("\n")
        );
        assert!(
            pair.iter().any(|p| p.is_esp_in_udp()),
            "{what}: no host ESP ({} packets)",
            pair.len()
        );
        assert_marker_absent(&lan, marker);
    }
}

/// 1 MiB of TCP from a-agent to b-agent through both layers (host ESP inside
/// gateway ESP) with every MTU at its default: it arrives whole. A stall here
/// is a path-MTU black hole (issue 14, MTU): report it, do not shrink MTUs.
#[test]
fn nested_one_mib_tcp_transfer_with_default_mtus() {
    let net = wan("nestmtu");
    let sites = two_sites(&net, &SitesOptions::default());
    let (ha, hb) = (sites.a().agent(), sites.b().agent());
    let wan_cap = net.capture("nestmtu-wan").unwrap();
    let marker = b"OEMESH-MARKER-nested-mib-2b8e";
    let echo = TcpEcho::start(hb, 7403);
    tcp(ha, &echo, b"warm up", 7, &sites, DECISION);
    tcp(ha, &echo, marker, 1 << 20, &sites, TRANSFER);
    let wan_p = stop(wan_cap, "WAN");
    assert_lans_hidden_on_wan(&wan_p, marker);
}

/// A lone host with an agent (alice, on the WAN) to a plain host behind gw-b:
/// ESP between alice and gw-b on the WAN, clear on LAN B.
#[test]
fn a_lone_host_reaches_a_plain_host_behind_a_gateway() {
    let net = wan("lone");
    let sites = two_sites(&net, &plain_sites());
    let (alice, b) = (net.alice(), sites.b());
    let marker = b"OEMESH-MARKER-lone-host-6a11";
    let lan_b = b.capture_lan(net.dir(), "lone-lan-b").unwrap();
    alice_reaches_b_plain(&net, &sites, marker, 7404, 100_000);
    let lan = stop(lan_b, "LAN B");
    assert_clear_between(&lan, alice.ip(), b.plain().ip(), marker, "LAN B");
}

/// The wildcard: b-plain has no record of its own (its name is not in the
/// zone), BIND answers its reverse name from `*.0.2.10.in-addr.arpa.`, a
/// name with records of its own (b-agent) is not covered, and a-plain's
/// datagrams to b-plain go private through the gateways on the wildcard's
/// word alone.
#[test]
fn the_wildcard_vouches_for_a_host_without_records() {
    let net = wan("wildcard");
    let sites = two_sites(&net, &SitesOptions::default());
    let (a, b) = (sites.a(), sites.b());
    let zone = b.spec().reverse_zone();
    let axfr = net.dns().bind().dig(&[&zone, "AXFR"]).unwrap();
    let own_name = hostile::reverse_name(b.plain().ip());
    assert!(
        !axfr.lines().any(|l| l.starts_with(&own_name)),
        "b-plain has records of its own:\n{axfr}"
    );
    assert_eq!(
        net.dns().ipseckeys(b.plain().ip()).unwrap(),
        vec![wildcard_rdata(b)]
    );
    let at_agent = net.dns().ipseckeys(b.agent().ip()).unwrap();
    assert_eq!(at_agent.len(), 2, "b-agent's own two records: {at_agent:?}");

    let wan_cap = net.capture("wildcard-wan").unwrap();
    let udp = UdpEcho::start(b.plain(), 7405);
    let client = udp_client(a.plain());
    let marker = b"OEMESH-MARKER-wildcard-0c5f";
    udp_until_echo(&client, udp.addr(), &marker[..], DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&sites)));
    let wan_p = stop(wan_cap, "WAN");
    assert_only_ipsec(&wan_p, a.gateway().ip(), b.gateway().ip(), marker);
    assert_lans_hidden_on_wan(&wan_p, marker);
}

/// A named gateway: LAN B's wildcard names its gateway `gw-b.oe.test.`
/// (IPSECKEY gateway type 3), whose A record is gw-b's WAN address. alice
/// resolves it and reaches b-plain through gw-b: ESP between alice and gw-b.
#[test]
fn a_named_gateway_is_resolved_and_used() {
    let net = wan("named");
    let sites = two_sites(&net, &plain_sites());
    let b = sites.b();
    let name = b.spec().gateway_fqdn();
    sites.publish_wildcard(&net, b, &name).unwrap();
    let key = b.gateway().public_key().unwrap();
    assert_eq!(
        net.dns().ipseckeys(b.plain().ip()).unwrap(),
        vec![gateway_rdata(GATEWAY_PRECEDENCE, &name, key)]
    );
    alice_reaches_b_plain(&net, &sites, b"OEMESH-MARKER-named-gw-3f90", 7406, 50_000);
}

/// alice (agent, on the WAN) starts and sends ping and `len` bytes of TCP
/// with `marker` to b-plain's echo on `port`: b-plain ends up private and
/// authenticated in her view, and the WAN carries ESP between alice and gw-b
/// only, no LAN address outside it and no marker.
fn alice_reaches_b_plain(net: &Testnet, sites: &Sites, marker: &[u8], port: u16, len: usize) {
    let (alice, b) = (net.alice(), sites.b());
    alice
        .set_agent_config(&sites.wan_config(&AgentConfig::default()))
        .unwrap();
    alice.start_agent().unwrap();
    let wan_cap = net.capture(&format!("alice-b-plain-{port}")).unwrap();
    ping(alice, b.plain().ip(), sites);
    let echo = TcpEcho::start(b.plain(), port);
    tcp(alice, &echo, marker, len, sites, DECISION);
    let p = alice
        .wait_peer(b.plain().ip(), "b-plain private", DECISION, |p| {
            p.state == "private"
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(sites)));
    assert_eq!(p.auth.as_deref(), Some("authenticated"), "{p:?}");
    let wan_p = stop(wan_cap, "WAN");
    assert_only_ipsec(&wan_p, alice.ip(), b.gateway().ip(), marker);
    assert_lans_hidden_on_wan(&wan_p, marker);
}

/// `host`'s oemesh public key as an SPKI PEM file for charon.
fn pem_of(net: &Testnet, host: &Host) -> std::path::PathBuf {
    let path = net.dir().join(format!("{}-spki.pub", host.name()));
    let raw: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(host.public_key().unwrap().trim())
        .unwrap()
        .try_into()
        .unwrap();
    write_ed25519_public_pem(&raw, &path).unwrap();
    path
}

/// The counter of CHILD SAs refused for their traffic selectors.
const TS_REFUSED: &str = "oemesh_trust_events_total{event=\"ts_refused\"}";
const NOT_VOUCHED: &str = "oemesh_trust_events_total{event=\"not_vouched\"}";
const ESP_TS_MISMATCH: &str = "oemesh_esp_ts_mismatch_total";

/// A charon on dave (192.0.2.40, key published at dave's reverse name)
/// asking gw-b for `remote_ts`.
fn charon_to_gw_b(net: &Testnet, sites: &Sites, key: &Ed25519Key, remote_ts: &str) -> Charon {
    let (dave, gw_b) = (net.dave(), sites.b().gateway());
    let mut cfg = CharonConfig::new(&dave.ip().to_string(), &gw_b.ip().to_string());
    cfg.local_key = Some(key.clone());
    cfg.local_id = Some(dave.ip().to_string());
    cfg.remote_pubkey = Some(pem_of(net, gw_b));
    cfg.remote_id = Some(gw_b.ip().to_string());
    cfg.local_ts = vec![format!("{}/32", dave.ip())];
    cfg.remote_ts = vec![remote_ts.to_owned()];
    Charon::start(dave.netns(), "dave", cfg).unwrap()
}

/// gw-b answers only for what it protects: a stock strongSwan on the WAN
/// asking for 10.2.0.0/24 (inside `protects`) gets a CHILD SA; asking for
/// 10.9.0.0/24 (outside) gets TS_UNACCEPTABLE and none, and gw-b says why.
#[test]
fn a_gateway_refuses_traffic_selectors_outside_protects() {
    require_charon();
    let net = wan("tsout");
    let sites = two_sites(&net, &plain_sites());
    let key = Ed25519Key::generate(net.dir(), "dave-charon").unwrap();
    hostile::set_ipseckey(&net, net.dave().ip(), Some(&ipseckey_rdata(&key))).unwrap();
    let gw_b = sites.b().gateway();

    let mut inside = charon_to_gw_b(&net, &sites, &key, &sites.b().spec().lan_prefix());
    inside
        .initiate()
        .unwrap_or_else(|e| panic!("{e:#}\ngw-b:\n{}", gw_b.log_tail(40)));
    inside.wait_established(DECISION).unwrap();
    inside.stop().unwrap();
    drop(inside);

    let refused_before = metric(gw_b, TS_REFUSED);
    let outside = charon_to_gw_b(&net, &sites, &key, "10.9.0.0/24");
    assert!(
        outside.initiate().is_err(),
        "gw-b accepted 10.9.0.0/24:\n{}",
        outside.context()
    );
    outside
        .wait_log("TS_UNACCEPTABLE", DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\ngw-b:\n{}", gw_b.log_tail(40)));
    let sas = outside.list_sas().unwrap();
    assert!(
        sas.iter()
            .all(|sa| sa.children.iter().all(|c| c.state != "INSTALLED")),
        "a CHILD SA outside protects: {sas:?}"
    );
    // Counted, and in gw-b's log (core's `RequestError::TsUnacceptable`).
    let refused = metric(gw_b, TS_REFUSED);
    assert!(refused > refused_before, "{TS_REFUSED}: {refused}");
    assert!(
        gw_b.log()
            .lines()
            .any(|l| l.contains("traffic selectors unacceptable") || l.contains("TS_UNACCEPTABLE")),
        "gw-b does not log the refusal:\n{}",
        gw_b.log_tail(40)
    );
}

/// A strongSwan charon in gw-b's place (no oemesh there): local_ts
/// 10.2.0.0/24, remote_ts 10.1.0.0/24, kernel-libipsec, its key published
/// as LAN B's wildcard (naming 192.0.2.32) and at 192.0.2.32.
fn charon_gateway(net: &Testnet, sites: &Sites) -> Charon {
    charon_gateway_for(net, sites, &sites.b().spec().lan_prefix())
}

/// [`charon_gateway`] with `local_ts` = `local` (LAN B's wildcard still
/// vouches for LAN B only).
fn charon_gateway_for(net: &Testnet, sites: &Sites, local: &str) -> Charon {
    let (a, b) = (sites.a(), sites.b());
    let key = Ed25519Key::generate(net.dir(), "gw-b-charon").unwrap();
    let rdata = ipseckey_rdata(&key);
    let raw = base64::engine::general_purpose::STANDARD.encode(key.public_raw);
    let wildcard = gateway_rdata(GATEWAY_PRECEDENCE, &b.spec().wan_v4.to_string(), &raw);
    let owner = b.spec().wildcard();
    net.dns()
        .bind()
        .nsupdate(&format!(
            "update delete {owner} IPSECKEY\nupdate add {owner} 300 IPSECKEY {wildcard}"
        ))
        .unwrap();
    hostile::set_ipseckey(net, b.gateway().ip(), Some(&rdata)).unwrap();
    let (gw_a, gw_b) = (a.gateway(), b.gateway());
    let mut cfg = CharonConfig::new(&gw_b.ip().to_string(), &gw_a.ip().to_string());
    cfg.local_key = Some(key);
    cfg.local_id = Some(gw_b.ip().to_string());
    cfg.remote_pubkey = Some(pem_of(net, gw_a));
    cfg.remote_id = Some(gw_a.ip().to_string());
    cfg.local_ts = vec![local.to_owned()];
    cfg.remote_ts = vec![a.spec().lan_prefix()];
    Charon::start(gw_b.netns(), "gw-b", cfg).unwrap()
}

fn swan_sites() -> SitesOptions {
    SitesOptions {
        lan_agents: false,
        oemesh_gateways: [true, false],
        ..SitesOptions::default()
    }
}

/// Our gw-a initiates to a stock strongSwan gateway at site B: a-plain's
/// ping to b-plain brings up a CHILD SA between the sites' subnets, and the
/// WAN sees only ESP between the gateways.
#[test]
fn strongswan_far_gateway_answers_our_gateway() {
    require_charon();
    let net = wan("swanresp");
    let sites = two_sites(&net, &swan_sites());
    let charon = charon_gateway(&net, &sites);
    let (a, b) = (sites.a(), sites.b());
    let wan_cap = net.capture("swanresp-wan").unwrap();
    ping(a.plain(), b.plain().ip(), &sites);
    let marker = b"OEMESH-MARKER-swan-resp-77d1";
    let echo = TcpEcho::start(b.plain(), 7407);
    tcp(a.plain(), &echo, marker, 50_000, &sites, DECISION);
    let sa = charon
        .wait_established(DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&sites)));
    assert!(sa.children[0].counter("packets-in") > 0, "{sa:?}");
    // gw-a proposed TSr = [b-plain, any] and charon narrowed it to its
    // site, with a route it could install (it owns 10.2.0.1).
    assert_eq!(sa.children[0].local_ts, [b.spec().lan_prefix()], "{sa:?}");
    let wan_p = stop(wan_cap, "WAN");
    assert_only_ipsec(&wan_p, a.gateway().ip(), b.gateway().ip(), marker);
    assert_lans_hidden_on_wan(&wan_p, marker);
}

/// A stock strongSwan gateway at site B initiates to our gw-a for
/// 10.2.0.0/24 ↔ 10.1.0.0/24: gw-a accepts the subnet (LAN B's wildcard
/// names the initiator's address, with the key it signed with), and b-plain
/// reaches a-plain through the tunnel.
#[test]
fn our_gateway_answers_a_strongswan_far_gateway() {
    require_charon();
    let net = wan("swaninit");
    let sites = two_sites(&net, &swan_sites());
    let charon = charon_gateway(&net, &sites);
    let (a, b) = (sites.a(), sites.b());
    let wan_cap = net.capture("swaninit-wan").unwrap();
    charon
        .initiate()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&sites)));
    charon.wait_established(DECISION).unwrap();
    ping(b.plain(), a.plain().ip(), &sites);
    let marker = b"OEMESH-MARKER-swan-init-1e4a";
    let echo = TcpEcho::start(a.plain(), 7408);
    tcp(b.plain(), &echo, marker, 50_000, &sites, DECISION);
    let wan_p = stop(wan_cap, "WAN");
    assert_only_ipsec(&wan_p, a.gateway().ip(), b.gateway().ip(), marker);
    assert_lans_hidden_on_wan(&wan_p, marker);
    let sa = charon.wait_established(DECISION).unwrap();
    assert!(sa.children[0].counter("packets-out") > 0, "{sa:?}");
}

/// A stock strongSwan gateway at site B claims 10.2.0.0/16, where DNS
/// vouches only for LAN B (its /24 wildcard) and gw-a's policy does OE with
/// LAN B only: gw-a keeps b-plain alone of charon's answer, logs and counts
/// the rest, and b-plain is still reached.
#[test]
fn a_far_gateway_claiming_more_than_dns_vouches_is_narrowed() {
    require_charon();
    let net = wan("swanwide");
    let sites = two_sites(&net, &swan_sites());
    let claimed = "10.2.0.0/16";
    let charon = charon_gateway_for(&net, &sites, claimed);
    let (a, b) = (sites.a(), sites.b());
    let gw_a = a.gateway();
    let before = metric(gw_a, NOT_VOUCHED);
    ping(a.plain(), b.plain().ip(), &sites);
    let sa = charon
        .wait_established(DECISION)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&sites)));
    assert_eq!(sa.children[0].local_ts, [claimed], "{sa:?}");
    assert!(metric(gw_a, NOT_VOUCHED) > before, "{}", gw_a.log_tail(40));
    let logged = || {
        gw_a.log()
            .lines()
            .any(|l| l.contains("192.0.2.32 is not vouched for as the gateway of: 10.2.0.0/16"))
    };
    oemesh_testkit::process::wait_until("gw-a's log line", DECISION, logged)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw_a.log()));
    // charon sends from inside its claim but outside LAN B's /24 through the
    // same CHILD SA: gw-a decrypts and drops it at the selector check.
    let inside_claim: IpAddr = "10.2.1.5".parse().unwrap();
    let gw_b = b.gateway();
    gw_b.netns()
        .ip(&["addr", "add", &format!("{inside_claim}/32"), "dev", "lo"])
        .unwrap();
    let mismatched = metric(gw_a, ESP_TS_MISMATCH);
    let sent = gw_b
        .netns()
        .ping(inside_claim, a.plain().ip(), Duration::from_secs(2));
    assert!(sent.is_err(), "{inside_claim} reached a-plain through gw-a");
    assert!(
        metric(gw_a, ESP_TS_MISMATCH) > mismatched,
        "{ESP_TS_MISMATCH}\n{}",
        gw_a.log_tail(40)
    );
}
