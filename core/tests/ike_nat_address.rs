//! Client address translation behind a NAT (issue 13; RFC 7296 §2.23,
//! §3.15): an initiator that finds itself behind a NAT in IKE_SA_INIT asks
//! for an address in IKE_AUTH (CP(CFG_REQUEST)) and proposes the whole
//! family as TSi; the responder gives one from its pool, narrows TSi to it
//! and answers CP(CFG_REPLY). Both CHILD SAs then name that address, the
//! initiator's as the one its data path translates to (`local_vip`). The
//! pool's addresses are held by IKE SAs (a rekey keeps them) and released
//! with them; a request the responder cannot grant is refused with
//! INTERNAL_ADDRESS_FAILURE and counted. A NAT rebinding (a new port) moves
//! the responder's SA on the next authenticated message.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

mod support;

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use oemesh_core::ike::endpoint::{Event, PeerAuth, SaHandle, Transmit};
use oemesh_core::ike::error::AddressRefusal;
use oemesh_core::ike::message::AddrSelector;
use oemesh_core::ike::pool::{PoolError, PoolPrefix};
use support::pair::*;

/// The NAT's public address.
const PUBLIC: &str = "198.51.100.1";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(prefix: &str, len: u8) -> Vec<PoolPrefix> {
    vec![PoolPrefix::new(ip(prefix), len).unwrap()]
}

/// `a` (anonymous initiator), `b` (Ed25519 responder with `pool`).
fn pair(pool: Vec<PoolPrefix>, limit: usize) -> Pair {
    let a = null_config();
    let mut b = ed25519_config(2, B);
    b.address_pool = pool;
    b.address_pool_limit = limit;
    let mut p = Pair::new(a, b);
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::Null));
    p
}

/// `a` behind a masquerading NAT: its source becomes `PUBLIC` with its port
/// plus `shift` (which the test may change: a rebinding), and what `b`
/// sends to `PUBLIC` goes back to `a` (whatever the port).
fn masquerade_a(p: &mut Pair, shift: Rc<Cell<u16>>) {
    let a = ip(A);
    p.filter = Some(Box::new(move |from, _, t: &mut Transmit| {
        if from == 0 {
            t.local = SocketAddr::new(ip(PUBLIC), t.local.port() + shift.get());
        } else if t.remote.ip() == ip(PUBLIC) {
            let port = if t.remote.port() % 10_000 == 500 {
                500
            } else {
                4500
            };
            t.remote = SocketAddr::new(a, port);
        }
        false
    }));
}

fn connect(p: &mut Pair) -> SaHandle {
    let ts = p.host_ts();
    let (now, a_ip, b_ip) = (p.now, p.a.ip, p.b.ip);
    let peer = Some(PeerAuth::ed25519(public(2)));
    let h =
        p.a.ep
            .connect(now, a_ip, b_ip, peer, ts, now + Duration::from_secs(2));
    p.flush();
    p.run_for(Duration::from_secs(3));
    h
}

fn address_events(n: &Node) -> Vec<Result<IpAddr, AddressRefusal>> {
    n.events
        .iter()
        .filter_map(|e| match e {
            Event::AddressRequest { result, .. } => Some(*result),
            _ => None,
        })
        .collect()
}

#[test]
fn behind_a_nat_the_initiator_gets_an_address_and_both_sas_name_it() {
    let mut p = pair(pool("100.64.0.0", 24), 8192);
    masquerade_a(&mut p, Rc::new(Cell::new(20_000)));
    connect(&mut p);
    assert_eq!(p.a.established(), 1, "{:?}", p.a.failures());
    let given = ip("100.64.0.1");
    let a_child = p.a.children()[0];
    assert_eq!(a_child.local_ts, vec![AddrSelector::host(given)]);
    assert_eq!(a_child.local_vip, Some(given));
    assert_eq!(a_child.remote_ts, vec![AddrSelector::host(p.b.ip)]);
    let b_child = p.b.children()[0];
    assert_eq!(b_child.remote_ts, vec![AddrSelector::host(given)]);
    assert_eq!(b_child.local_vip, None);
    // The responder's ESP goes to the NAT, where the initiator is seen.
    assert_eq!(b_child.remote.ip(), ip(PUBLIC));
    assert_eq!(address_events(&p.b), vec![Ok(given)]);
    let stats = p.b.ep.stats();
    assert_eq!((stats.addresses_assigned, stats.addresses_out), (1, 1));
    assert!(p.b.ep.is_pool_address(given));
    assert!(!p.b.ep.is_pool_address(ip(PUBLIC)));
}

#[test]
fn without_a_nat_no_address_is_asked_for() {
    let mut p = pair(pool("100.64.0.0", 24), 8192);
    connect(&mut p);
    assert_eq!(p.a.established(), 1);
    let a_child = p.a.children()[0];
    assert_eq!(a_child.local_vip, None);
    assert_eq!(a_child.local_ts, vec![AddrSelector::host(p.a.ip)]);
    assert!(address_events(&p.b).is_empty());
    assert_eq!(p.b.ep.stats().addresses_out, 0);
}

#[test]
fn a_responder_without_a_pool_refuses_with_internal_address_failure() {
    let mut p = pair(Vec::new(), 8192);
    masquerade_a(&mut p, Rc::new(Cell::new(20_000)));
    connect(&mut p);
    assert!(p.a.children().is_empty());
    assert!(p.b.children().is_empty());
    let failures = p.a.failures();
    assert!(
        failures
            .iter()
            .any(|f| f.contains("INTERNAL_ADDRESS_FAILURE")),
        "{failures:?}"
    );
    assert_eq!(
        address_events(&p.b),
        vec![Err(AddressRefusal::Pool(PoolError::NoPool {
            family: "IPv4"
        }))]
    );
    let stats = p.b.ep.stats();
    assert_eq!(
        stats.addresses_refused[AddressRefusal::Pool(PoolError::NoPool { family: "" }).index()],
        1
    );
    assert_eq!(stats.addresses_out, 0);
}

#[test]
fn an_exhausted_pool_refuses_and_a_released_address_is_given_again() {
    // Room for one address at a time.
    let mut p = pair(pool("100.64.0.0", 29), 1);
    let shift = Rc::new(Cell::new(20_000));
    masquerade_a(&mut p, shift.clone());
    let first = connect(&mut p);
    assert_eq!(p.b.ep.stats().addresses_out, 1);
    // A second IKE SA from the same host while the first holds the address.
    shift.set(30_000);
    connect(&mut p);
    let events = address_events(&p.b);
    assert!(
        matches!(
            events.as_slice(),
            [
                Ok(_),
                Err(AddressRefusal::Pool(PoolError::Exhausted { out: 1, .. }))
            ]
        ),
        "{events:?}"
    );
    // The first goes: its address is free again, and the next SA gets one.
    let now = p.now;
    p.a.ep.close(now, first);
    p.flush();
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.b.ep.stats().addresses_out, 0);
    shift.set(40_000);
    connect(&mut p);
    assert!(matches!(address_events(&p.b).last(), Some(Ok(_))));
    assert_eq!(p.b.ep.stats().addresses_out, 1);
}

#[test]
fn rekeys_keep_the_address_and_the_ike_rekey_hands_it_over() {
    let mut p = pair(pool("100.64.0.0", 24), 8192);
    masquerade_a(&mut p, Rc::new(Cell::new(20_000)));
    let h = connect(&mut p);
    let given = ip("100.64.0.1");
    let inbound = p.a.children()[0].spis.inbound;
    let now = p.now;
    p.a.ep.rekey_child(now, h, inbound);
    p.flush();
    p.run_for(Duration::from_secs(2));
    let a_new = *p.a.children().last().unwrap();
    assert_ne!(a_new.spis.inbound, inbound, "the CHILD SA was rekeyed");
    assert_eq!(a_new.local_vip, Some(given));
    assert_eq!(a_new.local_ts, vec![AddrSelector::host(given)]);
    let b_new = *p.b.children().last().unwrap();
    assert_eq!(b_new.remote_ts, vec![AddrSelector::host(given)]);
    // The responder rekeys the CHILD SA too: the initiator's side narrows
    // to the address it was given, not to its own.
    let b_sa = Pair::handle_of(&p.b, 0);
    let now = p.now;
    p.b.ep.rekey_child(now, b_sa, b_new.spis.inbound);
    p.flush();
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.a.children().len(), 3, "{:?}", p.a.failures());
    assert_eq!(p.a.children()[2].local_vip, Some(given));
    // The IKE SA is rekeyed: the new one holds the address, which the old
    // one's deletion does not release.
    let now = p.now;
    p.a.ep.rekey_ike(now, h);
    p.flush();
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.b.ep.stats().addresses_out, 1);
    let now = p.now;
    p.a.ep.close(now, h);
    p.flush();
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.b.ep.stats().addresses_out, 0);
}

#[test]
fn a_rebinding_moves_the_responders_sa_to_the_new_port() {
    let mut p = pair(pool("100.64.0.0", 24), 8192);
    let shift = Rc::new(Cell::new(20_000));
    masquerade_a(&mut p, shift.clone());
    let h = connect(&mut p);
    let b_sa = Pair::handle_of(&p.b, 0);
    // The NAT forgets the mapping and picks another port.
    shift.set(30_000);
    let now = p.now;
    p.a.ep.check_liveness(now, h);
    p.flush();
    p.run_for(Duration::from_secs(1));
    let moved: Vec<SocketAddr> =
        p.b.events
            .iter()
            .filter_map(|e| match e {
                Event::PeerMoved { sa, remote } if *sa == b_sa => Some(*remote),
                _ => None,
            })
            .collect();
    assert_eq!(moved, vec![SocketAddr::new(ip(PUBLIC), 34_500)]);
    // ESP seen from yet another port moves it again; another address never.
    assert!(p.b.ep.esp_moved(b_sa, SocketAddr::new(ip(PUBLIC), 40_000)));
    assert!(!p.b.ep.esp_moved(b_sa, SocketAddr::new(ip(PUBLIC), 40_000)));
    assert!(
        !p.b.ep
            .esp_moved(b_sa, SocketAddr::new(ip("203.0.113.9"), 40_001))
    );
    // A peer whose NAT detection matched (not behind a NAT) never moves.
    let mut p = pair(pool("100.64.0.0", 24), 8192);
    p.a.ep = oemesh_core::ike::endpoint::Endpoint::new(
        {
            let mut c = null_config();
            c.force_udp_encap = false;
            c
        },
        [7; 32],
    );
    connect(&mut p);
    let b_sa = Pair::handle_of(&p.b, 0);
    assert!(!p.b.ep.esp_moved(b_sa, SocketAddr::new(p.a.ip, 4501)));
}

#[test]
fn a_request_from_a_host_not_behind_a_nat_is_refused() {
    // `a` asks for an address whatever NAT detection says (a VPN client's
    // `vips = 0.0.0.0`), sends true NAT detection hashes, and is not behind
    // a NAT: it may use its own address, and gets none from the pool.
    let mut p = pair(pool("100.64.0.0", 24), 8192);
    let mut c = null_config();
    c.force_udp_encap = false;
    c.request_address = oemesh_core::ike::endpoint::RequestAddress::Always;
    p.a.ep = oemesh_core::ike::endpoint::Endpoint::new(c, [7; 32]);
    connect(&mut p);
    assert_eq!(
        address_events(&p.b),
        vec![Err(AddressRefusal::NotBehindNat)],
        "a: {:?}, b: {:?}",
        p.a.failures(),
        p.b.failures()
    );
    assert!(p.b.children().is_empty());
    let failures = p.a.failures();
    assert!(
        failures
            .iter()
            .any(|f| f.contains("INTERNAL_ADDRESS_FAILURE")),
        "{failures:?}"
    );
    let stats = p.b.ep.stats();
    assert_eq!(
        stats.addresses_refused[AddressRefusal::NotBehindNat.index()],
        1
    );
    assert_eq!(stats.addresses_out, 0);
}

#[test]
fn a_keyed_host_behind_a_nat_speaks_as_anonymous() {
    // `a` has a key and its address as identity, which the responder sees
    // as the NAT's: it authenticates with AUTH NULL there, and is private.
    let mut p = pair(pool("100.64.0.0", 24), 8192);
    p.a.ep = oemesh_core::ike::endpoint::Endpoint::new(ed25519_config(1, A), [7; 32]);
    masquerade_a(&mut p, Rc::new(Cell::new(20_000)));
    connect(&mut p);
    assert_eq!(
        p.a.established(),
        1,
        "a: {:?}, b: {:?}",
        p.a.failures(),
        p.b.failures()
    );
    let b_auth = p.b.events.iter().find_map(|e| match e {
        Event::IkeSaEstablished { auth, peer_id, .. } => Some((*auth, peer_id.clone())),
        _ => None,
    });
    assert_eq!(
        b_auth,
        Some((
            oemesh_core::ike::endpoint::PeerAuthenticated::Null,
            oemesh_core::ike::message::Identity::Null
        ))
    );
}
