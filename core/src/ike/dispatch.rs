//! Routing a received message inside an IKE SA (RFC 7296 §2.1–§2.3): by
//! handshake state, by request or response, by Message ID. A request that
//! repeats the last one gets the cached response; a response must match the
//! one outstanding request (window size 1).

use std::net::SocketAddr;
use std::time::Instant;

use crate::ike::endpoint::Endpoint;
use crate::ike::event::SaHandle;
use crate::ike::failure::Failure;
use crate::ike::message::{Delete, ExchangeType, Payload};
use crate::ike::sa::{IkeSa, Queued, Request, SaCore};
use crate::ike::state::{AuthSent, Fate, HalfOpen, InitSent, State, Step};
use crate::ike::stats::DropReason;

impl Endpoint {
    /// Routes a message of `sa` by its state, and puts the SA back in the
    /// state the step leads to (or forgets it).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_message(
        &mut self,
        now: Instant,
        mut sa: Box<IkeSa>,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        response: bool,
        exchange: ExchangeType,
    ) {
        if sa.state.is_authenticated() {
            let fate = self.on_protected(now, &mut sa, remote, bytes, response);
            return self.settle(sa, fate);
        }
        self.step(sa, |this, sa, state| match state {
            State::InitSent(init) => this.in_init_sent(now, sa, init, bytes, response, exchange),
            State::AuthSent(sent) => this.in_auth_sent(now, sa, sent, bytes, response, exchange),
            State::HalfOpen(half) => {
                let at = (local, remote);
                this.in_half_open(sa, half, bytes, at, response, exchange)
            }
            // The caller is deciding (or the SA is up, which was handled
            // above); a retransmission changes nothing.
            other => Ok(other),
        });
    }

    /// Initiator, IKE_SA_INIT sent: only its response moves the SA on.
    fn in_init_sent(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        init: Box<InitSent>,
        bytes: &[u8],
        response: bool,
        exchange: ExchangeType,
    ) -> Step {
        if !response || exchange != ExchangeType::IKE_SA_INIT {
            self.out.stats.count_drop(DropReason::NotInitResponse);
            return Ok(State::InitSent(init));
        }
        self.on_init_response(now, sa, init, bytes)
            .map_err(|reason| self.fail(sa, reason))
    }

    /// Initiator, IKE_AUTH sent: only its response moves the SA on.
    fn in_auth_sent(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        sent: Box<AuthSent>,
        bytes: &[u8],
        response: bool,
        exchange: ExchangeType,
    ) -> Step {
        if !response || exchange != ExchangeType::IKE_AUTH {
            self.out.stats.count_drop(DropReason::NotAuthResponse);
            return Ok(State::AuthSent(sent));
        }
        let Some(message) = self.open(sa, bytes) else {
            return Ok(State::AuthSent(sent));
        };
        if sa.outstanding.as_ref().map(|o| o.msg_id) != Some(message.header.message_id) {
            self.out.stats.count_drop(DropReason::AuthResponseMessageId);
            return Ok(State::AuthSent(sent));
        }
        self.on_auth_response(now, sa, *sent, message)
            .map_err(|reason| self.fail(sa, reason))
    }

    /// Responder, half-open: only the IKE_AUTH request moves the SA on.
    fn in_half_open(
        &mut self,
        sa: &mut SaCore,
        half: Box<HalfOpen>,
        bytes: &[u8],
        (local, remote): (SocketAddr, SocketAddr),
        response: bool,
        exchange: ExchangeType,
    ) -> Step {
        if response || exchange != ExchangeType::IKE_AUTH {
            self.out.stats.count_drop(DropReason::NotAuthRequest);
            return Ok(State::HalfOpen(half));
        }
        let Some(message) = self.open(sa, bytes) else {
            return Ok(State::HalfOpen(half));
        };
        if message.header.message_id != sa.peer_msg_id {
            self.out.stats.count_drop(DropReason::AuthRequestMessageId);
            return Ok(State::HalfOpen(half));
        }
        self.on_auth_request(sa, *half, message, local, remote)
            .ok_or(None)
    }

    /// Opens a protected message; a failure is dropped and counted (§2.21.2).
    pub(crate) fn open(
        &mut self,
        sa: &SaCore,
        bytes: &[u8],
    ) -> Option<crate::ike::message::Message> {
        match sa.open(bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                let icv = matches!(
                    e,
                    crate::ike::message::Error::Crypto(_)
                        | crate::ike::message::Error::SkTooShort { .. }
                );
                if icv {
                    self.out.stats.count_drop(DropReason::Icv);
                    self.out.stats.auth_failures += 1;
                } else {
                    self.out.stats.count_drop(DropReason::MalformedProtected);
                }
                None
            }
        }
    }

    /// An exchange on an established (or retiring) IKE SA.
    fn on_protected(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        remote: SocketAddr,
        bytes: &[u8],
        response: bool,
    ) -> Fate {
        let Some(message) = self.open(sa, bytes) else {
            return Fate::Keep;
        };
        sa.last_heard = now;
        // §2.23: behind a NAT, the peer's port may change (a rebinding); an
        // authenticated message says where it is now. `handle` admitted the
        // address: it is the one of IKE_SA_INIT. Its CHILD SAs follow.
        if sa.remote != remote {
            sa.remote = remote;
            if sa.announced {
                self.out
                    .events
                    .push_back(crate::ike::event::Event::PeerMoved {
                        sa: sa.handle,
                        remote,
                    });
            }
        }
        let id = message.header.message_id;
        if response {
            if sa.outstanding.as_ref().map(|o| o.msg_id) != Some(id) {
                self.out.stats.count_drop(DropReason::UnexpectedResponse);
                return Fate::Keep;
            }
            let Some(outstanding) = sa.outstanding.take() else {
                return Fate::Keep;
            };
            let fate = self.on_response(now, sa, outstanding.request, message);
            if matches!(fate, Fate::Keep) {
                self.start_next(now, sa);
            }
            return fate;
        }
        if id == sa.peer_msg_id {
            sa.peer_msg_id = sa.peer_msg_id.wrapping_add(1);
            let fate = self.on_request(now, sa, message);
            if matches!(fate, Fate::Keep) {
                self.start_next(now, sa);
            }
            fate
        } else if let Some((_, datagram)) = sa.last_response.as_ref().filter(|(rid, _)| *rid == id)
        {
            // §2.1: a retransmitted request gets the same response, not processed again.
            let t = sa.transmit(datagram.clone());
            self.out.transmits.push_back(t);
            Fate::Keep
        } else {
            self.out.stats.count_drop(DropReason::RequestOutOfWindow);
            Fate::Keep
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        message: crate::ike::message::Message,
    ) -> Fate {
        match message.header.exchange {
            ExchangeType::INFORMATIONAL => self.on_informational_request(now, sa, message),
            ExchangeType::CREATE_CHILD_SA => self.on_create_child_sa_request(now, sa, message),
            _ => {
                // Not an exchange for an established SA: answer it empty-handed.
                let n = crate::ike::message::Notify::new(
                    crate::ike::message::NotifyType::INVALID_SYNTAX,
                    Vec::new(),
                );
                let t = sa.send_response(
                    message.header.exchange,
                    message.header.message_id,
                    &[Payload::Notify(n)],
                );
                self.out.transmits.push_back(t);
                Fate::Keep
            }
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        sa: &mut IkeSa,
        request: Request,
        message: crate::ike::message::Message,
    ) -> Fate {
        match request {
            Request::Handshake | Request::Liveness => Fate::Keep,
            Request::DeleteChild(spis) => {
                self.remove_child(sa, spis.inbound);
                Fate::Keep
            }
            Request::DeleteIke => Fate::Remove(Some(Failure::Closed)),
            Request::RekeyChild(r) => self.on_rekey_child_response(now, sa, *r, message),
            Request::RekeyIke(r) => self.on_rekey_ike_response(now, sa, *r, message),
        }
    }
}

impl Endpoint {
    /// Starts queued exchanges while the window is free (§2.3).
    pub(crate) fn start_next(&mut self, now: Instant, sa: &mut IkeSa) {
        while sa.outstanding.is_none() && matches!(sa.state, State::Established) {
            let Some(op) = sa.queue.pop_front() else {
                return;
            };
            match op {
                Queued::Liveness => {
                    let timer = self.request_timer(now, None);
                    let t =
                        sa.send_request(ExchangeType::INFORMATIONAL, &[], Request::Liveness, timer);
                    self.out.transmits.push_back(t);
                }
                Queued::DeleteIke => {
                    let timer = self.request_timer(now, None);
                    let t = sa.send_request(
                        ExchangeType::INFORMATIONAL,
                        &[Payload::Delete(Delete::ike())],
                        Request::DeleteIke,
                        timer,
                    );
                    self.out.transmits.push_back(t);
                }
                Queued::DeleteChild(spi) => self.start_delete_child(now, sa, spi),
                Queued::RekeyChild(spi) => self.start_rekey_child(now, sa, spi),
                Queued::RekeyIke => self.start_rekey_ike(now, sa),
            }
        }
    }

    pub(crate) fn enqueue(&mut self, now: Instant, sa: SaHandle, op: Queued) {
        let Some(mut ike) = self.take(sa) else { return };
        if matches!(ike.state, State::Established) && !ike.queue.contains(&op) {
            ike.queue.push_back(op);
            self.start_next(now, &mut ike);
        }
        self.settle(ike, Fate::Keep);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::time::{Duration, Instant};

    use crate::ike::config::{Config, LocalAuth};
    use crate::ike::endpoint::Endpoint;
    use crate::ike::event::TrafficSelectors;
    use crate::ike::message::{ExchangeType, Flags, Header, Identity, Message};
    use crate::ike::state::State;
    use crate::ike::stats::DropReason;

    fn initiator(now: Instant) -> (Endpoint, u64, SocketAddr, SocketAddr) {
        let mut e = Endpoint::new(Config::new(LocalAuth::Null, Identity::Null), [7; 32]);
        let (local, remote): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let ts = TrafficSelectors {
            local: Vec::new(),
            remote: Vec::new(),
        };
        e.connect(now, local, remote, None, ts, now + Duration::from_secs(10));
        let spi_i = e.sas.values().next().map(|sa| sa.spi_i).unwrap();
        while e.poll_transmit().is_some() {}
        (
            e,
            spi_i,
            SocketAddr::new(local, 500),
            SocketAddr::new(remote, 500),
        )
    }

    fn state_name(e: &Endpoint) -> &'static str {
        match &e.sas.values().next().unwrap().state {
            State::InitSent(_) => "InitSent",
            State::AuthSent(_) => "AuthSent",
            State::HalfOpen(_) => "HalfOpen",
            State::InitiatorAuthorize(_) => "InitiatorAuthorize",
            State::ResponderAuthorize(_) => "ResponderAuthorize",
            State::InitiatorConfirm(_) => "InitiatorConfirm",
            State::InitiatorVouch(_) => "InitiatorVouch",
            State::Established => "Established",
            State::Retiring { .. } => "Retiring",
        }
    }

    /// A message the state does not wait for is dropped, counted under its
    /// reason, and the state it found is the state it leaves (no stand-in).
    #[test]
    fn a_dropped_message_leaves_the_handshake_state_as_it_was() {
        let now = Instant::now();
        let (mut e, spi_i, local, remote) = initiator(now);
        assert_eq!(state_name(&e), "InitSent");
        for (exchange, msg_id, reason) in [
            (ExchangeType::IKE_AUTH, 1, DropReason::NotInitResponse),
            (
                ExchangeType::IKE_SA_INIT,
                5,
                DropReason::InitResponseMessageId,
            ),
        ] {
            let header = Header::new(spi_i, 0x1234, exchange, Flags::RESPONSE, msg_id);
            let mut bytes = Vec::new();
            Message::new(header, Vec::new()).emit(&mut bytes);
            e.handle(now, local, remote, &bytes);
            assert_eq!(e.stats().drops_for(reason), 1, "{reason:?}");
            assert_eq!(state_name(&e), "InitSent", "after {reason:?}");
            assert!(e.poll_event().is_none(), "after {reason:?}");
        }
        assert_eq!(e.stats().dropped, 2);
    }
}
