//! Arbitrary datagram sequences into a responder endpoint, and into an
//! initiator that has just sent IKE_SA_INIT: neither may panic, and no
//! datagram may make `Endpoint::handle` hold more heap at once than the parse
//! bound of its size plus the endpoint's own share (issue 11), which a
//! counting allocator checks for every datagram:
//!
//! - a datagram it drops (counted in `Stats::dropped`: malformed, over the
//!   parse bounds, unknown SPI, bad ICV): `parse_allocation_bound(len)` +
//!   [`DROPPED_SLACK`];
//! - any other, which may create or advance an SA (a half-open SA, IKE_AUTH
//!   with its keys, CHILD SAs and events): the parse bound + [`STATE_SLACK`].
//!
//! Input: a sequence of records `len(u16, big endian) | flags(u8) | bytes[len]`. Flag bit 0
//! picks the initiator, bit 1 the NAT-T port, bit 2 advances the clock by a
//! second and runs the timers; bit 3 answers pending AuthorizePeer events.
#![no_main]

#[path = "support/counting.rs"]
mod counting;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::ike::endpoint::{Config, Endpoint, Event, LocalAuth, PeerAuth, TrafficSelectors};
use oemesh_core::ike::message::{AddrSelector, Identity, parse_allocation_bound};

/// What the endpoint may allocate beyond the parse for a datagram it drops:
/// an error notify and its transmit.
const DROPPED_SLACK: usize = 2048;

/// What it may allocate beyond the parse for a datagram it takes, which may
/// create or advance an SA: the SA record, its keys, the messages it keeps for
/// retransmission and AUTH, CHILD SA keys, events, and the growth of its
/// tables by one entry. A whole handshake takes at most 5.3 KB a step
/// (`core/tests/ike_bounds.rs`, `handshake_steps_are_bounded`, which allows
/// 8 KiB); the fuzzer may find costlier paths, so twice that.
const STATE_SLACK: usize = 16 * 1024;

fn endpoint(seed: u8) -> Endpoint {
    let mut config = Config::new(
        LocalAuth::Ed25519(Ed25519SigningKey::from_seed(&[seed; 32])),
        Identity::fqdn("fuzz.test"),
    );
    config.cookie_threshold = 4;
    config.half_open_limit = 16;
    Endpoint::new(config, [seed; 32])
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut responder = endpoint(1);
    let mut initiator = endpoint(2);
    let (ia, ib) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let peer = PeerAuth::ed25519(Ed25519SigningKey::from_seed(&[1; 32]).public_key());
    let ts = TrafficSelectors {
        local: vec![AddrSelector::host(ia)],
        remote: vec![AddrSelector::host(ib)],
    };
    initiator.connect(
        now,
        ia,
        ib,
        Some(peer.clone()),
        ts,
        now + Duration::from_secs(2),
    );
    let mut rest = data;
    while let [hi, lo, flags, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        let port = if flags & 2 != 0 { 4500 } else { 500 };
        let (ep, local, remote) = if flags & 1 != 0 {
            (
                &mut initiator,
                SocketAddr::new(ia, port),
                SocketAddr::new(ib, port),
            )
        } else {
            (
                &mut responder,
                SocketAddr::new(ib, port),
                SocketAddr::new(ia, port),
            )
        };
        let dropped = ep.stats().dropped;
        let ((), peak) = counting::peak(|| ep.handle(now, local, remote, datagram));
        let (what, slack) = if ep.stats().dropped > dropped {
            ("Endpoint::handle (dropped)", DROPPED_SLACK)
        } else {
            ("Endpoint::handle (taken)", STATE_SLACK)
        };
        counting::assert_within(
            what,
            datagram.len(),
            peak,
            parse_allocation_bound(datagram.len()) + slack,
        );
        if flags & 4 != 0 {
            now += Duration::from_secs(1);
            ep.handle_timeout(now);
        }
        while ep.poll_transmit().is_some() {}
        while let Some(e) = ep.poll_event() {
            if let (Event::AuthorizePeer { sa, .. }, true) = (&e, flags & 8 != 0) {
                ep.authorize(now, *sa, Some(peer.clone()));
            }
        }
        let _ = ep.poll_timeout();
        let _ = ep.stats();
    }
});
