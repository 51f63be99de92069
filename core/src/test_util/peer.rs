//! What the harness drives: a sans-IO [`Peer`], and a [`Node`] that puts one
//! at an address and acts on its events.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::ike::endpoint::{Endpoint, Event, PeerAuth, Transmit};
use crate::ike::udp_encap::{Datagram, classify};

/// A sans-IO protocol machine driven by datagrams and time: an IKE
/// [`Endpoint`], or a node that owns one.
pub trait Peer {
    /// What it reports to its owner.
    type Event;

    /// Takes one UDP datagram as it arrived on `local` from `remote` (with the
    /// non-ESP marker, on a port other than the IKE port).
    fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, datagram: &[u8]);

    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next event for the owner.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When [`Peer::handle_timeout`] is due next.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Runs the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
}

/// What a UDP receiver makes of `datagram`, arrived on `local_port`: on the
/// IKE port the whole datagram is an IKE message; on any other (NAT-T, RFC
/// 3948 §2.2) the non-ESP marker tells IKE from ESP.
pub fn demux(datagram: &[u8], local_port: u16, ike_port: u16) -> Datagram<'_> {
    if local_port == ike_port {
        Datagram::Ike(datagram)
    } else {
        classify(datagram)
    }
}

/// An endpoint takes the IKE messages among the datagrams, as the agent's
/// receiver hands them over; it drops ESP and keepalives.
impl Peer for Endpoint {
    type Event = Event;

    fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, datagram: &[u8]) {
        if let Datagram::Ike(message) = demux(datagram, local.port(), self.config().ike_port) {
            Endpoint::handle(self, now, local, remote, message);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        Endpoint::poll_transmit(self)
    }

    fn poll_event(&mut self) -> Option<Event> {
        Endpoint::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now);
    }
}

/// Answers `e` if it is `AuthorizePeer` and `answer` (shown every event)
/// returns `Some(answer)`; `None` leaves it to the caller.
pub fn answer_authorize(
    ep: &mut Endpoint,
    now: Instant,
    e: &Event,
    answer: impl FnOnce(&Event) -> Option<Option<PeerAuth>>,
) {
    if let Some(answer) = answer(e)
        && let Event::AuthorizePeer { sa, .. } = e
    {
        ep.authorize(now, *sa, answer);
    }
}

/// Takes every event `ep` has reported into `events`, answering
/// `AuthorizePeer` first ([`answer_authorize`]). Returns whether there was
/// any event.
pub fn answer_and_record(
    ep: &mut Endpoint,
    now: Instant,
    events: &mut Vec<Event>,
    mut answer: impl FnMut(&Event) -> Option<Option<PeerAuth>>,
) -> bool {
    let mut any = false;
    while let Some(e) = ep.poll_event() {
        any = true;
        answer_authorize(ep, now, &e, &mut answer);
        // The initiator's hint that the responder answered is not kept: the
        // tests check what a handshake ended in.
        if !matches!(e, Event::IkeSaInitAnswered { .. }) {
            events.push(e);
        }
    }
    any
}

/// A peer borrowed for a run (a responder that outlives many of them).
impl<P: Peer + ?Sized> Peer for &mut P {
    type Event = P::Event;

    fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, datagram: &[u8]) {
        (**self).handle(now, local, remote, datagram);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        (**self).poll_transmit()
    }

    fn poll_event(&mut self) -> Option<P::Event> {
        (**self).poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        (**self).handle_timeout(now);
    }
}

/// A peer on the [`Net`](super::Net): where datagrams for it go, and what it
/// does with its events.
pub trait Node {
    /// The address datagrams for this node are sent to.
    fn addr(&self) -> IpAddr;

    /// Takes a datagram off the wire ([`Peer::handle`]).
    fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, datagram: &[u8]);

    /// The next datagram to put on the wire ([`Peer::poll_transmit`]).
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// Acts on every event the peer has reported (answers, records);
    /// returns whether there was any.
    fn poll_events(&mut self, now: Instant) -> bool;

    /// [`Peer::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;

    /// [`Peer::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
}

/// A [`Peer`] at an address, whose events go to a closure (which gets the
/// peer too, to answer `AuthorizePeer`).
pub struct Host<P: Peer, F: FnMut(&mut P, Instant, P::Event)> {
    /// The peer.
    pub peer: P,
    /// Its address.
    pub addr: IpAddr,
    on_event: F,
}

impl<P: Peer, F: FnMut(&mut P, Instant, P::Event)> Host<P, F> {
    /// `peer` at `addr`, handing its events to `on_event`.
    pub fn new(addr: IpAddr, peer: P, on_event: F) -> Self {
        Self {
            peer,
            addr,
            on_event,
        }
    }
}

impl<P: Peer + fmt::Debug, F: FnMut(&mut P, Instant, P::Event)> fmt::Debug for Host<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("peer", &self.peer)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<P: Peer, F: FnMut(&mut P, Instant, P::Event)> Node for Host<P, F> {
    fn addr(&self) -> IpAddr {
        self.addr
    }

    fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, datagram: &[u8]) {
        self.peer.handle(now, local, remote, datagram);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.peer.poll_transmit()
    }

    fn poll_events(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(e) = self.peer.poll_event() {
            any = true;
            (self.on_event)(&mut self.peer, now, e);
        }
        any
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.peer.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.peer.handle_timeout(now);
    }
}
