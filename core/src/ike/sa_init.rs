//! IKE_SA_INIT (RFC 7296 §1.2): both ends agree on the IKE SA's transforms,
//! exchange Diffie-Hellman values and nonces, and derive the keys (§2.14).
//!
//! ```text
//! Initiator                         Responder
//! HDR, [N(COOKIE),] SAi1, KEi, Ni,
//!   N(NAT_DETECTION_*), N(SIGNATURE_HASH_ALGORITHMS)  -->
//!                              <--  HDR, SAr1, KEr, Nr,
//!                                     N(NAT_DETECTION_*), N(SIGNATURE_HASH_ALGORITHMS)
//! ```
//!
//! The responder may instead answer with only N(COOKIE) (§2.6, under load),
//! N(INVALID_KE_PAYLOAD) (§1.2, wrong group) or N(NO_PROPOSAL_CHOSEN); none of
//! these create state on the responder. The initiator repeats its request with
//! the cookie first, or with a KE payload of the group asked for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand_core::RngCore;

use crate::ike::cookie::Cookies;
use crate::ike::endpoint::{Endpoint, SaHandle};
use crate::ike::error::{RequestError, check_nonce};
use crate::ike::event::{Event, Transmit};
use crate::ike::failure::{Exchange, Failure, ProtocolError, Refusal};
use crate::ike::keys::{NONCE_LEN, Skeyseed};
use crate::ike::message::{
    DhGroup, ExchangeType, Flags, HashAlgorithm, Header, Ke, Message, Nonce, Notify, NotifyType,
    Payload, PayloadType,
};
use crate::ike::sa::{IkeCrypto, IkeSa, Outstanding, Request, SaCore};
use crate::ike::state::{InitSent, State};
use crate::ike::stats::DropReason;
use crate::ike::udp_encap::push_non_esp_marker;
use crate::ike::{nat, proposal};

/// The most cookie or INVALID_KE_PAYLOAD retries before giving up.
const MAX_INIT_RETRIES: u32 = 3;

fn has_nat_detection(m: &Message) -> bool {
    m.notify(NotifyType::NAT_DETECTION_SOURCE_IP).is_some()
        || m.notify(NotifyType::NAT_DETECTION_DESTINATION_IP).is_some()
}

/// Whether the sender of `m` is behind a NAT (§2.23): it sent
/// NAT_DETECTION_SOURCE_IP notifies, and none matches the address its
/// message came from (`from`) as this host saw it. A sender that forces UDP
/// encapsulation (as this host does with `force_udp_encap`) looks the same.
fn sender_behind_nat(m: &Message, spi_i: u64, spi_r: u64, from: SocketAddr) -> bool {
    let expected = nat::nat_hash(spi_i, spi_r, from);
    let mut sources = m
        .notifies()
        .filter(|n| n.ty == NotifyType::NAT_DETECTION_SOURCE_IP)
        .peekable();
    sources.peek().is_some() && !sources.any(|n| n.data == expected)
}

/// Whether this host, the receiver of `m`, is behind a NAT (§2.23): the sender
/// sent NAT_DETECTION_DESTINATION_IP notifies, and none matches the address
/// and port `m` arrived at (`local`). A peer that forces UDP encapsulation
/// forces only its source hash, so this holds whatever the peer's setting.
fn receiver_behind_nat(m: &Message, spi_i: u64, spi_r: u64, local: SocketAddr) -> bool {
    let expected = nat::nat_hash(spi_i, spi_r, local);
    let mut destinations = m
        .notifies()
        .filter(|n| n.ty == NotifyType::NAT_DETECTION_DESTINATION_IP)
        .peekable();
    destinations.peek().is_some() && !destinations.any(|n| n.data == expected)
}

/// The datagram of an unprotected IKE_SA_INIT error response (no state kept).
fn init_error(
    config_ike_port: u16,
    local: SocketAddr,
    remote: SocketAddr,
    spi_i: u64,
    notify: Notify,
) -> Transmit {
    let header = Header::new(spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::RESPONSE, 0);
    let message = Message::new(header, vec![Payload::Notify(notify)]);
    let mut payload = Vec::new();
    if local.port() != config_ike_port {
        push_non_esp_marker(&mut payload);
    }
    message.emit(&mut payload);
    Transmit {
        local,
        remote,
        payload,
    }
}

impl Endpoint {
    /// Initiator: builds (or rebuilds, after COOKIE or INVALID_KE_PAYLOAD) the
    /// IKE_SA_INIT request and records it as outstanding.
    pub(crate) fn send_init(&mut self, now: Instant, sa: &mut SaCore, init: &mut InitSent) {
        let mut payloads = Vec::with_capacity(7);
        if let Some(cookie) = &init.cookie {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::COOKIE,
                cookie.clone(),
            )));
        }
        payloads.push(Payload::Sa(proposal::ike_offer(
            &self.config.ike_algs,
            None,
        )));
        payloads.push(Payload::Ke(Ke {
            group: init.group,
            data: init.dh.public_key().to_vec(),
        }));
        payloads.push(Payload::Nonce(Nonce(init.ni.clone())));
        let force = self.config.force_udp_encap;
        payloads
            .extend(nat::notifies(sa.spi_i, 0, sa.local, sa.remote, force).map(Payload::Notify));
        payloads.push(Payload::Notify(Notify::signature_hash_algorithms(&[
            HashAlgorithm::IDENTITY,
        ])));
        let message = Message::new(sa.header(ExchangeType::IKE_SA_INIT, false, 0), payloads);
        let mut request = Vec::new();
        message.emit(&mut request);
        let datagram = sa.emit_plain(&message);
        init.request = request;
        let timer = self.request_timer(now, Some(init.deadline));
        sa.outstanding = Some(Box::new(Outstanding {
            msg_id: 0,
            exchange: ExchangeType::IKE_SA_INIT,
            datagram: datagram.clone(),
            timer,
            request: Request::Handshake,
        }));
        sa.next_msg_id = 1;
        self.out.transmits.push_back(sa.transmit(datagram));
    }

    /// Initiator: the IKE_SA_INIT response. Returns a failure that ends the SA.
    pub(crate) fn on_init_response(
        &mut self,
        now: Instant,
        sa: &mut SaCore,
        mut init: Box<InitSent>,
        bytes: &[u8],
    ) -> Result<State, Failure> {
        let Ok(message) = Message::parse(bytes) else {
            self.out.stats.count_drop(DropReason::MalformedInitResponse);
            return Ok(State::InitSent(init));
        };
        if message.header.message_id != 0 {
            self.out.stats.count_drop(DropReason::InitResponseMessageId);
            return Ok(State::InitSent(init));
        }
        if let Some(cookie) = message.notify(NotifyType::COOKIE) {
            if init.retries >= MAX_INIT_RETRIES {
                return Err(ProtocolError::CookieLoop.into());
            }
            init.retries += 1;
            init.cookie = Some(cookie.data.clone());
            self.send_init(now, sa, &mut init);
            return Ok(State::InitSent(init));
        }
        if let Some(n) = message.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let group = n.requested_group().unwrap_or(DhGroup::NONE);
            if group != proposal::GROUP || group == init.group || init.retries >= MAX_INIT_RETRIES {
                return Err(ProtocolError::UnsupportedGroup(group).into());
            }
            init.retries += 1;
            init.group = group;
            self.send_init(now, sa, &mut init);
            return Ok(State::InitSent(init));
        }
        if let Some(n) = message.notifies().find(|n| n.is_error()) {
            return Err(match n.ty {
                NotifyType::NO_PROPOSAL_CHOSEN => Failure::NoProposalChosen,
                notify => Failure::PeerRefused(Refusal::Notify {
                    exchange: Exchange::IkeSaInit,
                    notify,
                }),
            });
        }
        let (Some(Payload::Sa(sa_r)), Some(Payload::Ke(ke)), Some(Payload::Nonce(Nonce(nr)))) = (
            message.payload(PayloadType::SA),
            message.payload(PayloadType::KE),
            message.payload(PayloadType::NONCE),
        ) else {
            return Err(ProtocolError::MissingPayload {
                exchange: Exchange::IkeSaInit,
                missing: "SA, KE or Nonce",
            }
            .into());
        };
        let (choice, _) = proposal::accept_ike(sa_r, &self.config.ike_algs, 0)?;
        if ke.group != init.group {
            return Err(ProtocolError::KeGroup(ke.group).into());
        }
        check_nonce(nr).map_err(|_| ProtocolError::NonceLength(nr.len()))?;
        if message.header.spi_r == 0 {
            return Err(ProtocolError::ZeroSpi.into());
        }
        let g_ir = init
            .dh
            .diffie_hellman(&ke.data)
            .map_err(ProtocolError::KeyExchange)?;
        sa.spi_r = message.header.spi_r;
        let keys = Skeyseed::initial(&init.ni, nr, &g_ir).ike_sa_keys(
            &init.ni,
            nr,
            sa.spi_i.to_be_bytes(),
            sa.spi_r.to_be_bytes(),
        );
        sa.crypto = Some(IkeCrypto::new(
            &keys,
            choice.alg,
            self.config.provider,
            true,
        ));
        sa.outstanding = None;
        self.out.events.push_back(Event::IkeSaInitAnswered {
            sa: sa.handle,
            remote: sa.remote,
        });
        sa.peer_behind_nat = sender_behind_nat(&message, sa.spi_i, sa.spi_r, sa.remote);
        sa.local_behind_nat = receiver_behind_nat(&message, sa.spi_i, sa.spi_r, sa.local);
        // §2.23: with NAT-T on both sides, everything after IKE_SA_INIT uses UDP 4500.
        if has_nat_detection(&message) && sa.local.port() != self.config.natt_port {
            sa.local = SocketAddr::new(sa.local.ip(), self.config.natt_port);
            sa.remote = SocketAddr::new(sa.remote.ip(), self.config.natt_port);
        }
        self.send_auth_request(now, sa, *init, nr.clone(), bytes.to_vec())
    }

    /// Responder: an IKE_SA_INIT request (Message ID 0, SPIr zero).
    pub(crate) fn on_init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        spi_i: u64,
    ) {
        // A retransmission of a request already answered: the same answer (§2.1).
        if let Some(id) = self.init_index.get(&(remote, spi_i)) {
            if let Some(State::HalfOpen(h)) = self.sas.get(id).map(|s| &s.state) {
                let t = Transmit {
                    local,
                    remote,
                    payload: h.datagram.clone(),
                };
                self.out.transmits.push_back(t);
            }
            return;
        }
        let message = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.out.stats.count_drop(DropReason::MalformedInitRequest);
                if let Some(n) = e.to_notify() {
                    self.reply_to_init(local, remote, spi_i, n, bytes.len());
                }
                return;
            }
        };
        if message.header.message_id != 0 {
            self.out.stats.count_drop(DropReason::InitRequestMessageId);
            return;
        }
        let nonce = match message.payload(PayloadType::NONCE) {
            Some(Payload::Nonce(Nonce(n))) => n.clone(),
            _ => Vec::new(),
        };
        let half_open = self.half_open();
        self.publish_cookie_demand();
        if half_open >= self.config.cookie_threshold {
            // §2.6: the cookie must be the first payload.
            let valid = match message.payloads.first() {
                Some(Payload::Notify(n)) if n.ty == NotifyType::COOKIE => {
                    self.cookies.check(&n.data, &nonce, remote.ip(), spi_i)
                }
                _ => false,
            };
            if !valid {
                let cookie = self.cookies.make(now, &nonce, remote.ip(), spi_i);
                let n = Notify::new(NotifyType::COOKIE, cookie.to_vec());
                if self.reply_to_init(local, remote, spi_i, n, bytes.len()) {
                    self.out.stats.cookies_sent += 1;
                }
                return;
            }
        }
        // Past the cookie, the source is real: it gets its share and no more.
        if self.index.half_open_from(remote.ip()) >= self.config.half_open_per_source {
            self.out.stats.count_drop(DropReason::HalfOpenSourceFull);
            self.out.stats.half_open_source_full += 1;
            return;
        }
        if half_open >= self.config.half_open_limit {
            self.out.stats.count_drop(DropReason::HalfOpenLimit);
            return;
        }
        match self.accept_init(now, local, remote, &message, bytes) {
            Ok(()) => {}
            Err(e) => {
                if let Some(n) = e.to_notify() {
                    self.reply_to_init(local, remote, spi_i, n, bytes.len());
                }
            }
        }
    }

    fn accept_init(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        message: &Message,
        bytes: &[u8],
    ) -> Result<(), RequestError> {
        let (Some(Payload::Sa(offer)), Some(Payload::Ke(ke)), Some(Payload::Nonce(Nonce(ni)))) = (
            message.payload(PayloadType::SA),
            message.payload(PayloadType::KE),
            message.payload(PayloadType::NONCE),
        ) else {
            return Err(RequestError::MissingPayload(PayloadType::SA));
        };
        let (answer, choice, _) = proposal::select_ike(offer, &self.config.ike_algs, None)?;
        if ke.group != proposal::GROUP {
            return Err(RequestError::InvalidKe {
                got: ke.group,
                wanted: proposal::GROUP,
            });
        }
        check_nonce(ni)?;
        let dh = self.dh_pool.take(&mut self.rng);
        let g_ir = dh
            .diffie_hellman(&ke.data)
            .map_err(RequestError::KeyExchange)?;
        let mut nr = vec![0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nr);

        let spi_i = message.header.spi_i;
        let spi_r = self.new_ike_spi();
        let keys = Skeyseed::initial(ni, &nr, &g_ir).ike_sa_keys(
            ni,
            &nr,
            spi_i.to_be_bytes(),
            spi_r.to_be_bytes(),
        );
        let handle = self.new_handle();
        let mut sa = self.new_sa(now, handle, false, (spi_i, spi_r), (local, remote));
        sa.crypto = Some(IkeCrypto::new(
            &keys,
            choice.alg,
            self.config.provider,
            false,
        ));
        sa.peer_msg_id = 1;
        sa.peer_behind_nat = sender_behind_nat(message, spi_i, 0, remote);
        sa.local_behind_nat = receiver_behind_nat(message, spi_i, 0, local);

        let mut payloads = vec![
            Payload::Sa(answer),
            Payload::Ke(Ke {
                group: proposal::GROUP,
                data: dh.public_key().to_vec(),
            }),
            Payload::Nonce(Nonce(nr.clone())),
        ];
        if has_nat_detection(message) {
            let force = self.config.force_udp_encap;
            payloads.extend(nat::notifies(spi_i, spi_r, local, remote, force).map(Payload::Notify));
        }
        payloads.push(Payload::Notify(Notify::signature_hash_algorithms(&[
            HashAlgorithm::IDENTITY,
        ])));
        let response = Message::new(sa.header(ExchangeType::IKE_SA_INIT, true, 0), payloads);
        let mut real_message2 = Vec::new();
        response.emit(&mut real_message2);
        let datagram = sa.emit_plain(&response);
        self.out.transmits.push_back(sa.transmit(datagram.clone()));
        let half = crate::ike::state::HalfOpen {
            ni: ni.clone(),
            nr,
            real_message1: bytes.to_vec(),
            real_message2,
            datagram,
            expires: now + self.config.half_open_timeout,
        };
        self.init_index.insert((remote, spi_i), sa.id);
        self.insert_sa(IkeSa {
            core: sa,
            state: State::HalfOpen(Box::new(half)),
        });
        self.out
            .events
            .push_back(Event::IkeSaInitAccepted { sa: handle, remote });
        Ok(())
    }
}

impl Endpoint {
    /// Queues a stateless answer (`notify` alone) to an IKE_SA_INIT request
    /// of `request_len` bytes, unless the answer would be larger: nobody
    /// vouches for the request's source, and this host amplifies nothing
    /// toward it (SECURITY.md, "Reflection"). Whether it was queued.
    fn reply_to_init(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        spi_i: u64,
        notify: Notify,
        request_len: usize,
    ) -> bool {
        let t = init_error(self.config.ike_port, local, remote, spi_i, notify);
        let marker = if local.port() != self.config.ike_port {
            4
        } else {
            0
        };
        let fits = t.payload.len() <= request_len + marker;
        if fits {
            self.out.transmits.push_back(t);
        }
        fits
    }

    /// The cookie secrets, to share with whoever reads the socket: see
    /// [`Cookies::triage`].
    pub fn cookies(&self) -> Arc<Cookies> {
        self.cookies.clone()
    }

    /// Tells [`Cookies::required`] whether the half-open SAs are at the
    /// threshold (on each IKE_SA_INIT request and after the timers ran).
    pub(crate) fn publish_cookie_demand(&self) {
        let required = self.half_open() >= self.config.cookie_threshold;
        self.cookies.set_required(required);
    }

    /// Initiator: where the IKE_SA_INIT request of `sa` went and its SPIi,
    /// while no usable response has come back (the peer has not shown that it
    /// speaks IKE). `None` for any other SA or state. For matching an ICMP
    /// error to the attempt it is about.
    pub fn init_sent(&self, sa: SaHandle) -> Option<(SocketAddr, u64)> {
        let ike = self.handles.get(&sa).and_then(|id| self.sas.get(id))?;
        matches!(ike.state, State::InitSent(_)).then_some((ike.remote, ike.spi_i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::message::Header;

    /// A message with the NAT detection notifies a sender at `from` puts in
    /// a message to `to` (the initiator's request: SPIr zero).
    fn detection(from: SocketAddr, to: SocketAddr) -> Message {
        let header = Header::new(7, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0);
        let notifies = nat::notifies(7, 0, from, to, false).map(Payload::Notify);
        Message::new(header, notifies.to_vec())
    }

    #[test]
    fn the_receiver_is_behind_a_nat_when_the_destination_hash_differs() {
        let a: SocketAddr = "192.0.2.1:500".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:500".parse().unwrap();
        let public: SocketAddr = "198.51.100.1:500".parse().unwrap();
        // Sent to where it arrived: no NAT in front of the receiver.
        assert!(!receiver_behind_nat(&detection(a, b), 7, 0, b));
        // Sent to the NAT's public address, arrived at the private one.
        assert!(receiver_behind_nat(&detection(a, public), 7, 0, b));
        // Another port is another mapping.
        let moved: SocketAddr = "192.0.2.2:4500".parse().unwrap();
        assert!(receiver_behind_nat(&detection(a, b), 7, 0, moved));
        // No notifies: nothing is known, nothing is assumed.
        let header = Header::new(7, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0);
        assert!(!receiver_behind_nat(
            &Message::new(header, Vec::new()),
            7,
            0,
            b
        ));
        // The sender's own source hash says nothing about the receiver.
        assert!(!sender_behind_nat(&detection(a, public), 7, 0, a));
    }
}
