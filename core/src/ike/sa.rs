//! One IKE SA (RFC 7296 §2): its SPIs, keys, message IDs and window, the
//! request it has outstanding, the response it keeps for retransmitted
//! requests, its CHILD SAs, and the state of its handshake.
//!
//! The window size is 1 in both directions (§2.3): one request of ours is
//! outstanding at a time (others wait in `queue`), and the peer's next request
//! must carry the next message ID. A request that repeats the last one is
//! answered from `last_response` and not processed again (§2.1).

use crate::crypto::x25519::X25519Secret;
use crate::ike::config::Config;
use crate::ike::state::State;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};
use crate::ike::child_sa::Child;

use crate::ike::event::{ChildSpis, PeerAuthenticated, SaHandle, Transmit};
use crate::ike::keys::{IkeSaKeys, SkD, SkP};
use crate::ike::message::{self, ExchangeType, Flags, Header, Identity, Message, Payload};
use crate::ike::retransmit::Retransmit;
use crate::ike::udp_encap::push_non_esp_marker;

/// The keys of an IKE SA once IKE_SA_INIT is done, per direction.
///
/// The SK_e keys are kept as key material and expanded for each message:
/// an expanded AEAD key is about 1 KiB, two per IKE SA, while an established
/// IKE SA seals or opens a message only every few seconds at most (liveness
/// checks, rekeys); the expansion costs less than a microsecond.
#[derive(Debug)]
pub(crate) struct IkeCrypto {
    pub(crate) sk_d: SkD,
    pub(crate) sk_pi: SkP,
    pub(crate) sk_pr: SkP,
    alg: AeadAlg,
    provider: Provider,
    /// Seals what this host sends (SK_ei for the original initiator, §2.14).
    outbound: KeyAndSalt,
    /// Opens what the peer sends.
    inbound: KeyAndSalt,
    /// Explicit IV counter: unique per message under `outbound` (RFC 5282 §3.1).
    iv: u64,
}

impl IkeCrypto {
    pub(crate) fn new(keys: &IkeSaKeys, alg: AeadAlg, provider: Provider, initiator: bool) -> Self {
        let (out, inb) = if initiator {
            (&keys.sk_ei, &keys.sk_er)
        } else {
            (&keys.sk_er, &keys.sk_ei)
        };
        Self {
            sk_d: keys.sk_d.clone(),
            sk_pi: keys.sk_pi.clone(),
            sk_pr: keys.sk_pr.clone(),
            alg,
            provider,
            outbound: out.clone(),
            inbound: inb.clone(),
            iv: 0,
        }
    }

    fn next_iv(&mut self) -> [u8; 8] {
        self.iv += 1;
        self.iv.to_be_bytes()
    }

    /// The expanded key that seals what this host sends.
    fn outbound_key(&self) -> AeadKey {
        AeadKey::new(self.alg, self.provider, &self.outbound)
    }

    /// The expanded key that opens what the peer sends.
    fn inbound_key(&self) -> AeadKey {
        AeadKey::new(self.alg, self.provider, &self.inbound)
    }
}

/// A rekey of a CHILD SA that this host started.
#[derive(Debug)]
pub(crate) struct RekeyChildRequest {
    pub(crate) old_inbound: u32,
    pub(crate) new_spi: u32,
    pub(crate) ni: Vec<u8>,
    pub(crate) dh: Option<X25519Secret>,
}

/// A rekey of the IKE SA that this host started.
#[derive(Debug)]
pub(crate) struct RekeyIkeRequest {
    pub(crate) new_spi: u64,
    pub(crate) ni: Vec<u8>,
    pub(crate) dh: X25519Secret,
}

/// The peer's rekey of the IKE SA that crossed ours: its nonces and the new
/// SA it made (in `sas`, retiring until the collision is decided).
#[derive(Debug)]
pub(crate) struct PeerIkeRekey {
    pub(crate) nonces: (Vec<u8>, Vec<u8>),
    pub(crate) sa_id: u64,
}

/// A request of ours that is waiting for its response.
#[derive(Debug)]
pub(crate) struct Outstanding {
    pub(crate) msg_id: u32,
    pub(crate) exchange: ExchangeType,
    /// The datagram as sent (non-ESP marker included where the port needs it).
    pub(crate) datagram: Vec<u8>,
    pub(crate) timer: Retransmit,
    pub(crate) request: Request,
}

/// What an outstanding request is for.
#[derive(Debug)]
pub(crate) enum Request {
    /// IKE_SA_INIT or IKE_AUTH: the data lives in [`State`].
    Handshake,
    RekeyChild(Box<RekeyChildRequest>),
    RekeyIke(Box<RekeyIkeRequest>),
    DeleteChild(ChildSpis),
    DeleteIke,
    Liveness,
}

/// An exchange waiting for the window (§2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    RekeyChild(u32),
    RekeyIke,
    DeleteChild(u32),
    DeleteIke,
    Liveness,
}

/// One IKE SA: what it keeps whatever its state ([`SaCore`]), and the state
/// of its handshake. Handling a message in the handshake moves the state out
/// (`let state = sa.state`), hands it by value with `&mut sa.core` to the
/// exchange's handler, and puts back the state the handler returns: while
/// the state is out, the compiler refuses any use of the SA as a whole, so
/// no code can see it in a state it has not reached.
#[derive(Debug)]
pub(crate) struct IkeSa {
    pub(crate) core: SaCore,
    pub(crate) state: State,
}

impl std::ops::Deref for IkeSa {
    type Target = SaCore;
    fn deref(&self) -> &SaCore {
        &self.core
    }
}

impl std::ops::DerefMut for IkeSa {
    fn deref_mut(&mut self) -> &mut SaCore {
        &mut self.core
    }
}

/// A rekeyed IKE SA's record as it takes over (§2.18): established.
impl From<SaCore> for Box<IkeSa> {
    fn from(core: SaCore) -> Self {
        Box::new(IkeSa {
            core,
            state: State::Established,
        })
    }
}

/// What an IKE SA keeps whatever its state.
#[derive(Debug)]
pub(crate) struct SaCore {
    /// The endpoint's key for this SA (not the handle: a rekeyed SA gets a new one).
    pub(crate) id: u64,
    pub(crate) handle: SaHandle,
    /// Whether this host is the original initiator of this IKE SA (the I flag).
    pub(crate) initiator: bool,
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) ike_port: u16,
    pub(crate) crypto: Option<IkeCrypto>,
    /// Message ID of our next request.
    pub(crate) next_msg_id: u32,
    /// Message ID the peer's next request must carry.
    pub(crate) peer_msg_id: u32,
    /// Boxed (as is `peer_ike_rekey`): an established SA mostly has none,
    /// and the SA stays small.
    pub(crate) outstanding: Option<Box<Outstanding>>,
    pub(crate) queue: VecDeque<Queued>,
    /// Our last response: its message ID and the datagram.
    pub(crate) last_response: Option<(u32, Vec<u8>)>,
    pub(crate) children: Vec<Child>,
    pub(crate) peer_id: Option<Identity>,
    /// How the peer authenticated, once it has.
    pub(crate) peer_auth: Option<PeerAuthenticated>,
    /// Whether the peer is behind a NAT (its NAT_DETECTION_SOURCE_IP did not
    /// match the address its IKE_SA_INIT came from, §2.23): only then may its
    /// port change later. Its address never may.
    pub(crate) peer_behind_nat: bool,
    /// Whether this host is behind a NAT (the peer's
    /// NAT_DETECTION_DESTINATION_IP did not match the local address and port
    /// IKE_SA_INIT used, §2.23): then it sends NAT-keepalives (RFC 3948 §2.3).
    pub(crate) local_behind_nat: bool,
    /// Responder: the address this host gave the peer from its pool (CP,
    /// §3.15.1); its traffic selector is narrowed to it.
    pub(crate) peer_vip: Option<IpAddr>,
    /// What the caller offered for the peer's side beyond its host, before
    /// its AUTH is checked ([`crate::ike::endpoint::Endpoint::vouch`]).
    pub(crate) vouch_offers: Vec<crate::ike::config::Vouched>,
    /// The selectors beyond the peer's host that this IKE SA's CHILD SAs may
    /// carry for the peer (gateway mode): as responder, those DNS vouched for
    /// with the key it signed with; as initiator, those the responder
    /// answered. A rekey the peer asks for is narrowed to them.
    pub(crate) peer_ts: Vec<crate::ike::message::AddrSelector>,
    /// The peer signed with a key that DNS publishes for what it protects
    /// but not for its own address: its own address is no selector of ours.
    pub(crate) peer_host_unvouched: bool,
    /// Initiator: the address the peer gave this host (CP, or the one host
    /// it narrowed TSi to behind a NAT); the data path translates to it.
    pub(crate) local_vip: Option<IpAddr>,
    /// When this host last sent a NAT-keepalive on this SA, or when the SA
    /// began (see [`keepalive_due`]).
    pub(crate) last_keepalive: Instant,
    /// When the caller last reported traffic on this SA's CHILD SAs
    /// ([`crate::ike::endpoint::Endpoint::note_activity`]), or when it was
    /// established: which anonymous SA is the idlest.
    pub(crate) last_active: Instant,
    /// When the peer was last heard from with an authenticated message (DPD).
    pub(crate) last_heard: Instant,
    /// When this host rekeys the IKE SA; `hard_expiry` ends it.
    pub(crate) rekey_at: Option<Instant>,
    pub(crate) hard_expiry: Option<Instant>,
    /// Whether the caller was told the SA is up (then its end is an event).
    pub(crate) announced: bool,
    /// A rekey of this IKE SA by the peer that crossed ours (§2.8.2).
    pub(crate) peer_ike_rekey: Option<Box<PeerIkeRekey>>,
    /// The deadline this SA has in the endpoint's timer index (see `Endpoint::put`).
    pub(crate) timer_at: Option<Instant>,
    /// Whether the endpoint's half-open counts (total, per source) include this SA.
    pub(crate) counted_half_open: bool,
    /// Whether the endpoint's `by_peer` index holds this SA (an announced SA
    /// of a peer that signed: what INITIAL_CONTACT may replace).
    pub(crate) indexed_peer: bool,
    /// The key this SA has in the endpoint's index of anonymous responder SAs
    /// (its `last_active` when indexed), if it is one.
    pub(crate) indexed_anonymous: Option<Instant>,
    /// Whether the endpoint's per-address count (`SaIndex::others_at`)
    /// includes this SA.
    pub(crate) indexed_addr: bool,
    /// Responder: the initiator's address as its IKE_SA_INIT came (the
    /// endpoint's `init_index` key; `remote` may move to port 4500 later).
    pub(crate) init_remote: SocketAddr,
}

impl SaCore {
    /// A new IKE SA's record with the endpoint's key `id` (its creator gives
    /// it a state): no keys, no message IDs used, no CHILD SAs.
    pub(crate) fn new(
        id: u64,
        now: Instant,
        handle: SaHandle,
        initiator: bool,
        (spi_i, spi_r): (u64, u64),
        (local, remote): (SocketAddr, SocketAddr),
        ike_port: u16,
    ) -> Self {
        SaCore {
            id,
            handle,
            initiator,
            spi_i,
            spi_r,
            local,
            remote,
            ike_port,
            crypto: None,
            next_msg_id: 0,
            peer_msg_id: 0,
            outstanding: None,
            queue: VecDeque::new(),
            last_response: None,
            children: Vec::new(),
            peer_id: None,
            last_heard: now,
            rekey_at: None,
            hard_expiry: None,
            announced: false,
            peer_ike_rekey: None,
            timer_at: None,
            counted_half_open: false,
            init_remote: remote,
            peer_auth: None,
            peer_behind_nat: false,
            local_behind_nat: false,
            peer_vip: None,
            vouch_offers: Vec::new(),
            peer_ts: Vec::new(),
            peer_host_unvouched: false,
            local_vip: None,
            last_keepalive: now,
            last_active: now,
            indexed_peer: false,
            indexed_anonymous: None,
            indexed_addr: false,
        }
    }

    /// What a rekeyed IKE SA (§2.18) keeps of the one it replaces: who the peer
    /// is and how it authenticated, where it is and whether either end is behind
    /// a NAT, and when it was last active.
    pub(crate) fn inherit(&mut self, old: &SaCore) {
        self.peer_id.clone_from(&old.peer_id);
        self.peer_auth = old.peer_auth;
        self.peer_behind_nat = old.peer_behind_nat;
        self.local_behind_nat = old.local_behind_nat;
        self.peer_vip = old.peer_vip;
        self.local_vip = old.local_vip;
        self.last_active = old.last_active;
        self.init_remote = old.init_remote;
    }

    /// The peer's address inside the SA: the one this host gave it from the
    /// pool, else the one IKE runs to.
    pub(crate) fn ts_remote(&self) -> IpAddr {
        self.peer_vip.unwrap_or(self.remote.ip())
    }

    /// This host's address inside the SA: the one the peer gave it, else the
    /// one IKE runs from.
    pub(crate) fn ts_local(&self) -> IpAddr {
        self.local_vip.unwrap_or(self.local.ip())
    }

    /// This host's SPI.
    pub(crate) fn local_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    pub(crate) fn header(&self, exchange: ExchangeType, response: bool, msg_id: u32) -> Header {
        let mut flags = if self.initiator {
            Flags::INITIATOR
        } else {
            Flags::NONE
        };
        if response {
            flags = flags | Flags::RESPONSE;
        }
        Header::new(self.spi_i, self.spi_r, exchange, flags, msg_id)
    }

    fn marker(&self) -> bool {
        self.local.port() != self.ike_port
    }

    /// The datagram of an unprotected message (IKE_SA_INIT).
    pub(crate) fn emit_plain(&self, message: &Message) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.buffer_len() + 4);
        if self.marker() {
            push_non_esp_marker(&mut out);
        }
        message.emit(&mut out);
        out
    }

    /// The datagram of a message with `payloads` inside an SK payload.
    pub(crate) fn emit_sealed(&mut self, header: &Header, payloads: &[Payload]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.marker() {
            push_non_esp_marker(&mut out);
        }
        if let Some(crypto) = self.crypto.as_mut() {
            let iv = crypto.next_iv();
            // The IV has the cipher's length, so sealing cannot fail.
            if Message::emit_protected(header, payloads, &crypto.outbound_key(), &iv, &mut out)
                .is_err()
            {
                out.clear();
            }
        }
        out
    }

    /// Opens a protected message from the peer.
    pub(crate) fn open(&self, bytes: &[u8]) -> Result<Message, message::Error> {
        match &self.crypto {
            Some(c) => Message::parse_protected(bytes, &c.inbound_key()),
            None => Err(message::Error::NotProtected),
        }
    }

    pub(crate) fn transmit(&self, payload: Vec<u8>) -> Transmit {
        Transmit {
            local: self.local,
            remote: self.remote,
            payload,
        }
    }

    /// Seals and records a request, and returns the datagram to send.
    pub(crate) fn send_request(
        &mut self,
        exchange: ExchangeType,
        payloads: &[Payload],
        request: Request,
        timer: Retransmit,
    ) -> Transmit {
        let msg_id = self.next_msg_id;
        self.next_msg_id = self.next_msg_id.wrapping_add(1);
        let header = self.header(exchange, false, msg_id);
        let datagram = self.emit_sealed(&header, payloads);
        self.outstanding = Some(Box::new(Outstanding {
            msg_id,
            exchange,
            datagram: datagram.clone(),
            timer,
            request,
        }));
        self.transmit(datagram)
    }

    /// Seals a response, keeps it for retransmitted requests, and returns it.
    pub(crate) fn send_response(
        &mut self,
        exchange: ExchangeType,
        msg_id: u32,
        payloads: &[Payload],
    ) -> Transmit {
        let header = self.header(exchange, true, msg_id);
        let datagram = self.emit_sealed(&header, payloads);
        self.last_response = Some((msg_id, datagram.clone()));
        self.transmit(datagram)
    }

    pub(crate) fn child_by_inbound(&self, spi: u32) -> Option<usize> {
        self.children.iter().position(|c| c.spis.inbound == spi)
    }

    pub(crate) fn child_by_outbound(&self, spi: u32) -> Option<usize> {
        self.children.iter().position(|c| c.spis.outbound == spi)
    }
}

/// The next instant an SA has something to do.
pub(crate) fn sa_timeout(config: &Config, sa: &IkeSa) -> Option<Instant> {
    let retransmit = sa.outstanding.as_ref().map(|o| o.timer.poll_timeout());
    let state = match &sa.state {
        State::InitiatorAuthorize(a) => Some(a.sent.deadline),
        State::InitiatorConfirm(c) => Some(c.sent.deadline),
        State::InitiatorVouch(v) => Some(v.sent.deadline),
        State::HalfOpen(h) => Some(h.expires),
        State::ResponderAuthorize(r) => Some(r.half.expires),
        State::Retiring { until } => Some(*until),
        State::Established => {
            let children = sa.children.iter().filter_map(|c| c.poll_timeout()).min();
            let keepalive = keepalive_due(config, sa);
            [
                sa.rekey_at,
                sa.hard_expiry,
                dpd_due(config, sa),
                keepalive,
                children,
            ]
            .into_iter()
            .flatten()
            .min()
        }
        State::InitSent(_) | State::AuthSent(_) => None,
    };
    [retransmit, state].into_iter().flatten().min()
}

/// When a liveness check is due: `dpd_interval` after the peer was last heard,
/// if no exchange is running or waiting.
pub(crate) fn dpd_due(config: &Config, sa: &IkeSa) -> Option<Instant> {
    let interval = config.dpd_interval?;
    if sa.outstanding.is_some() || !sa.queue.is_empty() || !matches!(sa.state, State::Established) {
        return None;
    }
    sa.last_heard.checked_add(interval)
}

/// When a NAT-keepalive is due (RFC 3948 §2.3): on an established SA of a
/// host behind a NAT, `nat_keepalive` after this host last sent anything to
/// the peer. "Sent anything" is approximated without a clock in every sending
/// path: the last keepalive, the last authenticated IKE message from the peer
/// (each one answers a request of ours or gets our response), and the last
/// ESP traffic the caller reported ([`crate::ike::endpoint::Endpoint::note_activity`]).
pub(crate) fn keepalive_due(config: &Config, sa: &IkeSa) -> Option<Instant> {
    let interval = config.nat_keepalive.filter(|i| !i.is_zero())?;
    if !sa.local_behind_nat || !matches!(sa.state, State::Established) {
        return None;
    }
    let last = sa.last_keepalive.max(sa.last_heard).max(sa.last_active);
    last.checked_add(interval)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::{IkeCrypto, Request, SaCore};
    use crate::crypto::x25519::X25519Secret;
    use crate::crypto::{AeadAlg, Provider};
    use crate::ike::event::SaHandle;
    use crate::ike::keys::Skeyseed;
    use crate::ike::message::ExchangeType;
    use crate::ike::retransmit::{Retransmit, RetransmitConfig};

    /// Both ends of one IKE SA, keyed as after IKE_SA_INIT, without an endpoint.
    fn pair(now: Instant) -> (SaCore, SaCore) {
        let (a, b) = (
            X25519Secret::from_random([1; 32]),
            X25519Secret::from_random([2; 32]),
        );
        let g_ir = a.diffie_hellman(&b.public_key()).expect("shared secret");
        let (ni, nr) = ([3u8; 32], [4u8; 32]);
        let (spi_i, spi_r) = (0x1111, 0x2222);
        let keys = Skeyseed::initial(&ni, &nr, &g_ir).ike_sa_keys(
            &ni,
            &nr,
            u64::to_be_bytes(spi_i),
            u64::to_be_bytes(spi_r),
        );
        let (i_addr, r_addr): (SocketAddr, SocketAddr) = (
            "192.0.2.1:4500".parse().expect("i"),
            "192.0.2.2:4500".parse().expect("r"),
        );
        let side = |id, initiator, addrs| {
            let mut sa = SaCore::new(id, now, SaHandle(id), initiator, (spi_i, spi_r), addrs, 500);
            let alg = AeadAlg::Aes256Gcm;
            sa.crypto = Some(IkeCrypto::new(&keys, alg, Provider::default(), initiator));
            sa
        };
        (
            side(1, true, (i_addr, r_addr)),
            side(2, false, (r_addr, i_addr)),
        )
    }

    /// One request and its response between the two ends of an SA: Message
    /// IDs advance, the request waits as outstanding, the response is kept
    /// for a retransmitted request (§2.1, §2.3), and each end opens what the
    /// other sealed.
    #[test]
    fn a_request_and_its_response_on_one_sa() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        let timer = Retransmit::new(
            RetransmitConfig::default(),
            now,
            now + Duration::from_secs(5),
        );
        let req = i.send_request(ExchangeType::INFORMATIONAL, &[], Request::Liveness, timer);
        assert_eq!((req.local, req.remote), (i.local, i.remote));
        assert_eq!(i.next_msg_id, 1);
        assert_eq!(i.outstanding.as_ref().map(|o| o.msg_id), Some(0));
        // On port 4500 the datagram carries the non-ESP marker.
        assert_eq!(req.payload[..4], [0; 4]);
        let request = r
            .open(&req.payload[4..])
            .expect("the responder opens the request");
        assert_eq!(request.header.message_id, 0);
        assert!(request.header.flags.initiator() && !request.header.flags.response());
        let resp = r.send_response(ExchangeType::INFORMATIONAL, 0, &[]);
        assert_eq!(
            r.last_response.as_ref().map(|(id, d)| (*id, d)),
            Some((0, &resp.payload))
        );
        let response = i
            .open(&resp.payload[4..])
            .expect("the initiator opens the response");
        assert!(response.header.flags.response() && !response.header.flags.initiator());
        // A message sealed by one end does not open as the other's.
        assert!(i.open(&req.payload[4..]).is_err());
    }
}
