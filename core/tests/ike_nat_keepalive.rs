//! NAT-keepalives (RFC 3948 §2.3, issue 13): a host that finds itself behind a
//! NAT in IKE_SA_INIT (RFC 7296 §2.23) sends a single 0xFF octet to the peer's
//! NAT-T address whenever it has sent nothing for `nat_keepalive`, while the
//! IKE SA is up; a host that is not behind one sends none. The NATs here are
//! filters on the virtual net that rewrite addresses and ports as a
//! masquerading router (initiator behind it) or a port forward (responder
//! behind it) would.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions"
)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use oemesh_core::ike::endpoint::{Config, LocalAuth, PeerAuth, SaHandle, Transmit};
use oemesh_core::ike::message::Identity;
use oemesh_core::ike::ts::TsPolicy;
use oemesh_core::ike::udp_encap::NAT_KEEPALIVE;
use support::pair::*;

/// The NAT's public address.
const PUBLIC: &str = "198.51.100.1";
/// What the NAT adds to a private port (a fixed mapping keeps the test simple).
const PORT_SHIFT: u16 = 10_000;

fn public() -> IpAddr {
    PUBLIC.parse().unwrap()
}

fn shift(addr: SocketAddr, to: IpAddr, up: bool) -> SocketAddr {
    let port = if up {
        addr.port() + PORT_SHIFT
    } else {
        addr.port() - PORT_SHIFT
    };
    SocketAddr::new(to, port)
}

/// `a` (anonymous, the initiator) and `b` (Ed25519), `b` taking `a`'s
/// traffic selectors as proposed (the inner address is not the outer one).
fn pair(keepalive: Option<Duration>) -> Pair {
    let mut a = null_config();
    a.nat_keepalive = keepalive;
    // The NAT-keepalive on its own: no address asked for (CP is
    // `ike_nat_address.rs`'s).
    a.request_address = oemesh_core::ike::endpoint::RequestAddress::Never;
    let mut b = ed25519_config(2, B);
    b.nat_keepalive = keepalive;
    b.responder_ts = TsPolicy::AsProposed;
    let mut p = Pair::new(a, b);
    p.b.authorizer = Authorizer::Answer(Some(PeerAuth::Null));
    p
}

/// `a` behind a masquerading NAT: its source becomes `PUBLIC` with the port
/// shifted, and what `b` sends to `PUBLIC` goes back to `a`.
fn masquerade_a(p: &mut Pair) {
    let a: IpAddr = A.parse().unwrap();
    p.filter = Some(Box::new(move |from, _, t: &mut Transmit| {
        if from == 0 {
            t.local = shift(t.local, public(), true);
        } else if t.remote.ip() == public() {
            t.remote = shift(t.remote, a, false);
        }
        false
    }));
}

/// `b` behind a port-forwarding NAT: `a` reaches it at `PUBLIC` (the same
/// ports), and `b`'s answers leave from there.
fn forward_to_b(p: &mut Pair) {
    let b: IpAddr = B.parse().unwrap();
    p.filter = Some(Box::new(move |from, _, t: &mut Transmit| {
        if from == 0 && t.remote.ip() == public() {
            t.remote = SocketAddr::new(b, t.remote.port());
        } else if from == 1 {
            t.local = SocketAddr::new(public(), t.local.port());
        }
        false
    }));
}

/// `a` connects to `remote` (`b`, or the NAT in front of it) and both come up.
fn handshake_to(p: &mut Pair, remote: IpAddr) -> SaHandle {
    let ts = p.host_ts();
    let (now, a_ip) = (p.now, p.a.ip);
    let peer = Some(PeerAuth::ed25519(public_key()));
    let h =
        p.a.ep
            .connect(now, a_ip, remote, peer, ts, now + Duration::from_secs(2));
    p.flush();
    assert!(
        p.run_until(Duration::from_secs(3), |p| p.a.established() == 1
            && p.b.established() == 1),
        "a: {:?}, b: {:?}",
        p.a.failures(),
        p.b.failures()
    );
    h
}

fn public_key() -> oemesh_core::crypto::ed25519::Ed25519PublicKey {
    support::pair::public(2)
}

fn keepalives(sent: &[Transmit]) -> Vec<&Transmit> {
    sent.iter()
        .filter(|t| t.payload == [NAT_KEEPALIVE])
        .collect()
}

#[test]
fn behind_a_nat_the_initiator_keeps_the_mapping_alive_while_the_sa_is_up() {
    let mut p = pair(Some(Duration::from_secs(20)));
    masquerade_a(&mut p);
    let h = handshake_to(&mut p, B.parse().unwrap());
    let b_sa = Pair::handle_of(&p.b, 0);
    p.run_for(Duration::from_secs(65));
    let sent = keepalives(&p.a.sent);
    // 65 s of silence at 20 s: three keepalives.
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(p.a.ep.stats().nat_keepalives_sent, 3);
    for t in &sent {
        // One 0xFF octet, from the NAT-T port to the peer's NAT-T address.
        assert_eq!(t.payload, vec![0xff]);
        assert_eq!(t.local, SocketAddr::new(p.a.ip, 4500));
        assert_eq!(t.remote, SocketAddr::new(p.b.ip, 4500));
    }
    // The responder is not behind a NAT: it sends none.
    assert!(keepalives(&p.b.sent).is_empty());
    assert_eq!(p.b.ep.stats().nat_keepalives_sent, 0);
    // The peer ignored them (as its receiver classifies them), its SA is up,
    // and nothing was dropped as a broken IKE message.
    assert!(p.b.ep.is_established(b_sa));
    assert_eq!(p.b.ep.stats().dropped, 0);
    assert!(p.b.failures().is_empty());
    // Deleted: no more keepalives.
    let now = p.now;
    p.a.ep.close(now, h);
    p.flush();
    p.run_for(Duration::from_secs(5));
    assert!(!p.a.ep.is_established(h));
    assert!(!p.b.ep.is_established(b_sa));
    let before = keepalives(&p.a.sent).len();
    p.run_for(Duration::from_secs(60));
    assert_eq!(keepalives(&p.a.sent).len(), before);
}

#[test]
fn a_keepalive_reaching_the_endpoint_itself_changes_nothing() {
    let mut p = pair(Some(Duration::from_secs(20)));
    masquerade_a(&mut p);
    handshake_to(&mut p, B.parse().unwrap());
    let b_sa = Pair::handle_of(&p.b, 0);
    // A receiver that hands the octet to the engine anyway: dropped as
    // malformed, the SA untouched.
    let now = p.now;
    let from = shift(SocketAddr::new(p.a.ip, 4500), public(), true);
    let to = SocketAddr::new(p.b.ip, 4500);
    p.b.ep.handle(now, to, from, &[NAT_KEEPALIVE]);
    assert!(p.b.ep.is_established(b_sa));
    assert!(p.b.ep.poll_transmit().is_none());
    assert!(p.b.failures().is_empty());
}

#[test]
fn traffic_and_ike_messages_postpone_the_keepalive() {
    let mut p = pair(Some(Duration::from_secs(20)));
    masquerade_a(&mut p);
    let h = handshake_to(&mut p, B.parse().unwrap());
    // ESP traffic reported every 10 s: the mapping is in use, no keepalive.
    for _ in 0..6 {
        p.run_for(Duration::from_secs(10));
        let now = p.now;
        p.a.ep.note_activity(now, h);
    }
    assert!(keepalives(&p.a.sent).is_empty());
    // A liveness check (an IKE exchange) also counts as sending.
    let now = p.now;
    p.a.ep.check_liveness(now, h);
    p.flush();
    p.run_for(Duration::from_secs(15));
    assert!(keepalives(&p.a.sent).is_empty());
    // Then silence: the keepalive comes.
    p.run_for(Duration::from_secs(10));
    assert_eq!(keepalives(&p.a.sent).len(), 1);
}

#[test]
fn without_a_nat_no_keepalives() {
    // Both sides force UDP encapsulation (the default): each believes the
    // other is behind a NAT, but neither is itself.
    let mut p = pair(Some(Duration::from_secs(20)));
    handshake_to(&mut p, B.parse().unwrap());
    p.run_for(Duration::from_secs(120));
    assert!(keepalives(&p.a.sent).is_empty());
    assert!(keepalives(&p.b.sent).is_empty());
    assert_eq!(p.a.ep.stats().nat_keepalives_sent, 0);
    assert_eq!(p.b.ep.stats().nat_keepalives_sent, 0);
}

#[test]
fn keepalives_off_behind_a_nat() {
    let mut p = pair(None);
    masquerade_a(&mut p);
    handshake_to(&mut p, B.parse().unwrap());
    p.run_for(Duration::from_secs(120));
    assert!(keepalives(&p.a.sent).is_empty());
    assert_eq!(p.a.ep.stats().nat_keepalives_sent, 0);
}

#[test]
fn a_responder_behind_a_port_forward_sends_them_too() {
    let mut p = pair(Some(Duration::from_secs(20)));
    // A server behind a port forward is known by its public address.
    let mut b = ed25519_config(2, PUBLIC);
    b.id_is_sa_address = false;
    b.responder_ts = TsPolicy::AsProposed;
    p.b.ep = oemesh_core::ike::endpoint::Endpoint::new(b, [2; 32]);
    forward_to_b(&mut p);
    handshake_to(&mut p, public());
    p.run_for(Duration::from_secs(45));
    // The responder detects its NAT; the initiator, whose address is seen
    // as it is, does not.
    let sent = keepalives(&p.b.sent);
    assert_eq!(sent.len(), 2, "{sent:?}");
    for t in &sent {
        assert_eq!(t.local, SocketAddr::new(p.b.ip, 4500));
        assert_eq!(t.remote, SocketAddr::new(p.a.ip, 4500));
    }
    assert!(keepalives(&p.a.sent).is_empty());
}

#[test]
fn keepalives_go_on_after_an_ike_rekey() {
    let mut p = pair(Some(Duration::from_secs(20)));
    masquerade_a(&mut p);
    let h = handshake_to(&mut p, B.parse().unwrap());
    let now = p.now;
    p.a.ep.rekey_ike(now, h);
    p.flush();
    p.run_for(Duration::from_secs(5));
    let before = keepalives(&p.a.sent).len();
    p.run_for(Duration::from_secs(45));
    // The new IKE SA still knows this host is behind a NAT.
    assert_eq!(keepalives(&p.a.sent).len(), before + 2);
}

#[test]
fn the_default_interval_is_20_s() {
    let c = Config::new(LocalAuth::Null, Identity::Null);
    assert_eq!(c.nat_keepalive, Some(Duration::from_secs(20)));
}
