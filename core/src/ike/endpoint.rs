//! The IKEv2 endpoint (RFC 7296): every IKE SA of this host, driven sans-IO.
//!
//! How to drive it (quinn-proto's model):
//!
//! 1. Feed every received IKE message with [`Endpoint::handle`] (after
//!    [`super::udp_encap::classify`] took the non-ESP marker off on port 4500);
//!    ESP packets never come here.
//! 2. After any call, drain [`Endpoint::poll_transmit`] (send each datagram as
//!    is: the non-ESP marker is already in front where the port needs it) and
//!    [`Endpoint::poll_event`].
//! 3. Arm one timer for [`Endpoint::poll_timeout`]; when it fires call
//!    [`Endpoint::handle_timeout`].
//! 4. Start exchanges with [`Endpoint::connect`], [`Endpoint::rekey_child`],
//!    [`Endpoint::rekey_ike`], [`Endpoint::delete_child`], [`Endpoint::close`];
//!    answer [`Event::AuthorizePeer`] with [`Endpoint::authorize`].
//!
//! Inside, every IKE SA is an `IkeSa` (module `sa`): its record and its state,
//! one struct per handshake state (`state`), moved by value through each step
//! of IKE_SA_INIT (`sa_init`) and IKE_AUTH (`auth`); established SAs run
//! CREATE_CHILD_SA (`create_child_sa`) and INFORMATIONAL (`informational`)
//! exchanges with a window of one (RFC 7296 §2.3). Datagrams are routed by
//! this host's IKE SPI (§2.6); a rekeyed IKE SA keeps its [`SaHandle`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::ike::cookie::Cookies;
use crate::ike::index::SaIndex;
use crate::ike::keys::{KeyPairPool, NONCE_LEN};
use crate::ike::message::{ExchangeType, HeaderPacket, MAJOR_VERSION};
use crate::ike::sa::{IkeSa, Queued, SaCore, sa_timeout};
use crate::ike::state::{Fate, InitSent, InitiatorAuthorize, State, Step};
use crate::trust::IdentityRefused;

pub use crate::ike::config::{
    Config, LocalAuth, MAX_PEER_KEYS, MAX_VOUCHED, PeerAuth, RequestAddress, Vouched,
};
pub use crate::ike::event::{
    ChildSa, ChildSpis, Event, PeerAuthenticated, SaHandle, TrafficSelectors, Transmit,
};
pub use crate::ike::failure::{AuthFailure, Exchange, Failure, ProtocolError, Refusal};
pub use crate::ike::stats::{DropReason, Stats};

/// What the endpoint has for the caller.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: Stats,
}

/// All IKE SAs of this host.
#[derive(Debug)]
pub struct Endpoint {
    pub(crate) config: Config,
    pub(crate) rng: ChaCha20Rng,
    /// Boxed: an `IkeSa` is several hundred bytes, and a map of them inline
    /// would keep that much again in empty slots.
    pub(crate) sas: HashMap<u64, Box<IkeSa>>,
    /// This host's IKE SPI → SA.
    pub(crate) by_spi: HashMap<u64, u64>,
    /// Responder: (initiator's address, SPIi) → half-open SA, for retransmitted IKE_SA_INIT.
    pub(crate) init_index: HashMap<(SocketAddr, u64), u64>,
    /// Handle → the SA that currently carries it.
    pub(crate) handles: HashMap<SaHandle, u64>,
    /// Inbound ESP SPIs in use (they must be unique on this host).
    pub(crate) child_spis: HashSet<u32>,
    pub(crate) cookies: std::sync::Arc<Cookies>,
    pub(crate) out: Output,
    /// Every SA in `sas` with something to do, by when: `(IkeSa::timer_at, id)`,
    /// kept in step by [`Self::put`] and [`Self::discard`], so that the next
    /// deadline is the first entry instead of a scan of every SA.
    pub(crate) timers: BTreeSet<(Instant, u64)>,
    /// The counts and indexes over `sas` that limits and INITIAL_CONTACT use.
    pub(crate) index: SaIndex,
    /// The next IKE_SA_INIT's X25519 key pair, made when the endpoint is
    /// and after its timers ran: off the first packet's path.
    pub(crate) dh_pool: KeyPairPool,
    /// Addresses for initiators behind a NAT (`Config::address_pool`).
    pub(crate) pool: crate::ike::pool::Pool,
    next_id: u64,
    next_handle: u64,
}

impl Endpoint {
    /// An endpoint with no SAs. `rng_seed` seeds the CSPRNG that draws SPIs,
    /// nonces, DH secrets and cookie secrets (the caller takes it from the OS).
    pub fn new(config: Config, rng_seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(rng_seed);
        let cookies = std::sync::Arc::new(Cookies::new(&mut rng));
        let pool = crate::ike::pool::Pool::new(&config.address_pool, config.address_pool_limit);
        let mut endpoint = Self {
            config,
            rng,
            sas: HashMap::new(),
            by_spi: HashMap::new(),
            init_index: HashMap::new(),
            handles: HashMap::new(),
            child_spis: HashSet::new(),
            cookies,
            out: Output::default(),
            timers: BTreeSet::new(),
            index: SaIndex::default(),
            dh_pool: KeyPairPool::default(),
            pool,
            next_id: 1,
            next_handle: 1,
        };
        endpoint.dh_pool.fill(&mut endpoint.rng);
        endpoint
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts an IKE SA with a first CHILD SA toward `remote`, from `local`.
    /// `peer` is how to authenticate the responder; `None` means the caller does
    /// not know yet and will answer [`Event::AuthorizePeer`]. `ts.remote[0]` is
    /// the destination; an answer beyond it is [`Event::VouchResponderTs`]'s.
    /// IKE_SA_INIT + IKE_AUTH must finish by `deadline`, or [`Event::Failed`].
    pub fn connect(
        &mut self,
        now: Instant,
        local: IpAddr,
        remote: IpAddr,
        peer: Option<PeerAuth>,
        ts: TrafficSelectors,
        deadline: Instant,
    ) -> SaHandle {
        let handle = self.new_handle();
        let spi_i = self.new_ike_spi();
        let port = self.config.ike_port;
        let addrs = (SocketAddr::new(local, port), SocketAddr::new(remote, port));
        let mut sa = self.new_sa(now, handle, true, (spi_i, 0), addrs);
        let dh = self.dh_pool.take(&mut self.rng);
        let mut ni = vec![0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut ni);
        let mut init = InitSent {
            dh,
            group: crate::ike::proposal::GROUP,
            ni,
            cookie: None,
            request: Vec::new(),
            peer,
            ts,
            deadline,
            retries: 0,
        };
        self.send_init(now, &mut sa, &mut init);
        self.insert_sa(IkeSa {
            core: sa,
            state: State::InitSent(Box::new(init)),
        });
        handle
    }

    /// Answers [`Event::AuthorizePeer`]: `Some` says how to check the peer's AUTH,
    /// `None` refuses it (AUTHENTICATION_FAILED to a responder's peer).
    pub fn authorize(&mut self, now: Instant, sa: SaHandle, peer: Option<PeerAuth>) {
        let Some(ike) = self.take(sa) else { return };
        self.step(ike, |this, core, state| match state {
            State::InitiatorAuthorize(held) => {
                let InitiatorAuthorize { sent, response } = *held;
                let result = match peer {
                    Some(peer) => this.finish_initiator(now, core, sent, response, peer),
                    None => {
                        this.release_child_spi(sent.child_spi);
                        Err(Failure::NotAuthorized)
                    }
                };
                result.map_err(|reason| this.fail(core, reason))
            }
            State::ResponderAuthorize(held) => {
                this.finish_responder(now, core, *held, peer).ok_or(None)
            }
            other => Ok(other),
        });
    }

    /// Answers [`Event::ConfirmIdentity`]: `Ok` when the responder's FQDN
    /// resolves to its address (the SA is then established and its CHILD SA
    /// installed), `Err` with why not (the SA is deleted and the attempt fails
    /// with [`Failure::IdentityRefused`]).
    pub fn confirm_identity(
        &mut self,
        now: Instant,
        sa: SaHandle,
        result: Result<(), IdentityRefused>,
    ) {
        let Some(ike) = self.take(sa) else { return };
        self.step(ike, |this, core, state| match state {
            State::InitiatorConfirm(held) => this
                .confirmed(now, core, *held, result)
                .map_err(|reason| this.fail(core, reason)),
            other => Ok(other),
        });
    }

    /// Tells the endpoint that the CHILD SAs of `sa` carried traffic lately
    /// (call it for SAs whose ESP counters moved, e.g. from an idle scan). The
    /// idlest anonymous SAs are the first evicted when their limits are reached.
    pub fn note_activity(&mut self, now: Instant, sa: SaHandle) {
        if let Some(mut ike) = self.take(sa) {
            ike.last_active = now;
            self.put(ike);
        }
    }

    /// Feeds one received IKE message (the UDP payload without the non-ESP marker)
    /// that arrived at `local` from `remote`. Malformed input is dropped and counted.
    ///
    /// A message of an existing IKE SA must come from the IP address of its
    /// IKE_SA_INIT (design.md, "An SA's address is fixed at IKE_SA_INIT"); its
    /// port may change only with the move to the NAT-T port after IKE_SA_INIT,
    /// or when the peer is behind a NAT (§2.23). Anything else is dropped and
    /// counted in [`Stats::wrong_address`], before any decryption.
    pub fn handle(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, message: &[u8]) {
        let Ok(packet) = HeaderPacket::new_checked(message) else {
            self.out.stats.count_drop(DropReason::MalformedHeader);
            return;
        };
        if packet.major_version() != MAJOR_VERSION {
            self.out.stats.count_drop(DropReason::MajorVersion);
            return;
        }
        let flags = packet.flags();
        let exchange = packet.exchange_type();
        if exchange == ExchangeType::IKE_SA_INIT && !flags.response() && packet.spi_r() == 0 {
            if flags.initiator() {
                self.on_init_request(now, local, remote, message, packet.spi_i());
            } else {
                self.out
                    .stats
                    .count_drop(DropReason::InitRequestNotInitiator);
            }
            return;
        }
        // §2.6: route by this host's SPI; the I flag says which one that is.
        let our_spi = if flags.initiator() {
            packet.spi_r()
        } else {
            packet.spi_i()
        };
        let Some(&id) = self.by_spi.get(&our_spi) else {
            self.out.stats.count_drop(DropReason::UnknownSpi);
            return;
        };
        let Some(sa) = self.sas.remove(&id) else {
            self.out.stats.count_drop(DropReason::StaleSpi);
            return;
        };
        let spis_match =
            sa.spi_i == packet.spi_i() && (sa.spi_r == 0 || sa.spi_r == packet.spi_r());
        if flags.initiator() == sa.initiator || !spis_match {
            self.out.stats.count_drop(DropReason::SpiMismatch);
            self.put(sa);
            return;
        }
        if !self.admits_source(&sa, local, remote) {
            self.out.stats.count_drop(DropReason::WrongAddress);
            self.out.stats.wrong_address += 1;
            self.put(sa);
            return;
        }
        let response = flags.response();
        self.on_message(now, sa, local, remote, message, response, exchange);
    }

    /// Call when the clock reaches [`Self::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(sa) = self.sas.get_mut(&id) {
                sa.timer_at = None;
            }
            due.push(id);
        }
        for id in due {
            let Some(mut sa) = self.sas.remove(&id) else {
                continue;
            };
            let fate = self.on_sa_timeout(now, &mut sa);
            self.settle(sa, fate);
        }
        self.publish_cookie_demand();
        self.dh_pool.fill(&mut self.rng);
    }

    /// The next instant at which [`Self::handle_timeout`] has work; `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// Rekeys the CHILD SA whose inbound SPI is `inbound_spi` (CREATE_CHILD_SA, §1.3.3).
    pub fn rekey_child(&mut self, now: Instant, sa: SaHandle, inbound_spi: u32) {
        self.enqueue(now, sa, Queued::RekeyChild(inbound_spi));
    }

    /// Rekeys the IKE SA (CREATE_CHILD_SA, §1.3.2).
    pub fn rekey_ike(&mut self, now: Instant, sa: SaHandle) {
        self.enqueue(now, sa, Queued::RekeyIke);
    }

    /// Deletes one CHILD SA pair (INFORMATIONAL with D, §1.4.1).
    pub fn delete_child(&mut self, now: Instant, sa: SaHandle, inbound_spi: u32) {
        self.enqueue(now, sa, Queued::DeleteChild(inbound_spi));
    }

    /// Deletes the IKE SA and its CHILD SAs. An SA still in its handshake is
    /// dropped without a word to the peer.
    pub fn close(&mut self, now: Instant, sa: SaHandle) {
        let Some(ike) = self.take(sa) else { return };
        if matches!(ike.state, State::Established) {
            self.put(ike);
            self.enqueue(now, sa, Queued::DeleteIke);
        } else {
            self.settle(ike, Fate::Remove(Some(Failure::Closed)));
        }
    }

    /// Sends a liveness check (an empty INFORMATIONAL request, §1.4) now.
    pub fn check_liveness(&mut self, now: Instant, sa: SaHandle) {
        self.enqueue(now, sa, Queued::Liveness);
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            ike_sas: self.sas.len(),
            half_open: self.index.half_open(),
            addresses_out: self.pool.out(),
            ..self.out.stats.clone()
        }
    }

    /// The CHILD SAs (by SPIs) that the IKE SA `sa` currently carries.
    pub fn child_sas(&self, sa: SaHandle) -> Vec<ChildSpis> {
        self.handles
            .get(&sa)
            .and_then(|id| self.sas.get(id))
            .map(|ike| {
                ike.children
                    .iter()
                    .filter(|c| c.announced)
                    .map(|c| c.spis)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the IKE SA `sa` is established.
    pub fn is_established(&self, sa: SaHandle) -> bool {
        self.handles
            .get(&sa)
            .and_then(|id| self.sas.get(id))
            .is_some_and(|ike| matches!(ike.state, State::Established))
    }

    // ---- helpers shared by the exchange modules ----

    /// Whether a message of `sa` may come from `remote` (see [`Self::handle`]).
    fn admits_source(&self, sa: &IkeSa, local: SocketAddr, remote: SocketAddr) -> bool {
        if remote.ip().to_canonical() != sa.remote.ip().to_canonical() {
            return false;
        }
        if remote.port() == sa.remote.port() {
            return true;
        }
        // §2.23: the initiator's first message after IKE_SA_INIT moves to the
        // NAT-T port; behind a NAT its source port is then any port.
        let floating = matches!(sa.state, State::HalfOpen(_))
            && local.port() == self.config.natt_port
            && sa.local.port() != self.config.natt_port;
        floating || sa.peer_behind_nat
    }

    pub(crate) fn take(&mut self, sa: SaHandle) -> Option<Box<IkeSa>> {
        let id = *self.handles.get(&sa)?;
        self.sas.remove(&id)
    }

    pub(crate) fn new_handle(&mut self) -> SaHandle {
        let h = SaHandle(self.next_handle);
        self.next_handle += 1;
        h
    }

    /// A fresh non-zero IKE SPI not in use here (§2.6).
    pub(crate) fn new_ike_spi(&mut self) -> u64 {
        loop {
            let spi = self.rng.next_u64();
            if spi != 0 && !self.by_spi.contains_key(&spi) {
                return spi;
            }
        }
    }

    /// A fresh inbound ESP SPI (≥ 256, RFC 4303 §2.1), reserved until released.
    pub(crate) fn new_child_spi(&mut self) -> u32 {
        loop {
            let spi = self.rng.next_u32();
            if spi >= 256 && self.child_spis.insert(spi) {
                return spi;
            }
        }
    }

    pub(crate) fn release_child_spi(&mut self, spi: u32) {
        self.child_spis.remove(&spi);
    }

    /// A new IKE SA's record (to insert with a state): see [`SaCore::new`].
    pub(crate) fn new_sa(
        &mut self,
        now: Instant,
        handle: SaHandle,
        initiator: bool,
        spis: (u64, u64),
        addrs: (SocketAddr, SocketAddr),
    ) -> SaCore {
        self.next_id += 1;
        SaCore::new(
            self.next_id - 1,
            now,
            handle,
            initiator,
            spis,
            addrs,
            self.config.ike_port,
        )
    }

    /// Registers an SA under its SPI and, if none does yet, as its handle's carrier.
    pub(crate) fn insert_sa(&mut self, sa: IkeSa) {
        self.by_spi.insert(sa.local_spi(), sa.id);
        self.handles.entry(sa.handle).or_insert(sa.id);
        self.put(Box::new(sa));
    }

    /// Responder SAs not yet authenticated.
    pub(crate) fn half_open(&self) -> usize {
        self.index.half_open()
    }

    /// Puts an SA (back) into `sas`, with its entry in `timers` and its share
    /// of `half_open` brought up to date: every change to an SA happens while
    /// it is out of `sas`, so this is the one place where its deadline can
    /// have moved (O(log n), instead of a scan of all SAs per poll).
    pub(crate) fn put(&mut self, mut sa: Box<IkeSa>) {
        let next = sa_timeout(&self.config, &sa);
        if sa.timer_at != next {
            if let Some(old) = sa.timer_at {
                self.timers.remove(&(old, sa.id));
            }
            if let Some(at) = next {
                self.timers.insert((at, sa.id));
            }
            sa.timer_at = next;
        }
        let IkeSa { core, state } = &mut *sa;
        self.index.account(core, Some(state));
        self.sas.insert(sa.id, sa);
    }

    /// Makes room for one more anonymous SA from `remote`: evicts that source's
    /// idlest while it has `anonymous_per_source`, then the idlest of all while
    /// there are `anonymous_limit` (design.md: anonymous peers get no more than
    /// their share of any limit). Each evicted peer is told (a Delete).
    pub(crate) fn make_room_for_anonymous(&mut self, remote: IpAddr) {
        loop {
            let victim = self.index.anonymous_victim(
                remote,
                self.config.anonymous_per_source,
                self.config.anonymous_limit,
            );
            let Some(mut sa) = victim.and_then(|id| self.sas.remove(&id)) else {
                return;
            };
            self.out.stats.anonymous_evicted += 1;
            if matches!(sa.state, State::Established) {
                self.send_delete_ike_once(&mut sa);
            }
            self.discard(sa, Some(Failure::Evicted));
        }
    }

    /// Reports a failed `connect` (or other exchange of ours that ends the
    /// SA); the SA then goes without a further event (the `None`).
    pub(crate) fn fail(&mut self, sa: &SaCore, reason: Failure) -> Option<Failure> {
        self.out.events.push_back(Event::Failed {
            sa: sa.handle,
            remote: sa.remote,
            reason,
        });
        None
    }

    /// One step of `sa`'s handshake: `f` gets its state by value with its
    /// record, and the SA goes back in the state `f` returns, or is forgotten.
    /// While `f` runs the SA is out of `sas` and has no state at all.
    pub(crate) fn step(
        &mut self,
        mut sa: Box<IkeSa>,
        f: impl FnOnce(&mut Self, &mut SaCore, State) -> Step,
    ) {
        let state = sa.state;
        match f(self, &mut sa.core, state) {
            Ok(next) => {
                sa.state = next;
                self.put(sa);
            }
            Err(reason) => self.forget(&mut sa.core, reason),
        }
    }

    /// Puts an SA back, or forgets it.
    pub(crate) fn settle(&mut self, sa: Box<IkeSa>, fate: Fate) {
        match fate {
            Fate::Keep => self.put(sa),
            Fate::Remove(reason) => self.discard(sa, reason),
        }
    }

    /// Forgets an SA (already out of `sas`) and tells the caller if it was up.
    pub(crate) fn discard(&mut self, mut sa: Box<IkeSa>, reason: Option<Failure>) {
        match &sa.state {
            State::AuthSent(a) => self.child_spis.remove(&a.child_spi),
            State::InitiatorAuthorize(a) => self.child_spis.remove(&a.sent.child_spi),
            State::InitiatorConfirm(c) => self.child_spis.remove(&c.sent.child_spi),
            State::InitiatorVouch(v) => self.child_spis.remove(&v.sent.child_spi),
            _ => false,
        };
        self.forget(&mut sa.core, reason);
    }

    /// Forgets an SA whose state is gone (a handshake step ended it, and
    /// released what its state held) or was released by [`Self::discard`].
    pub(crate) fn forget(&mut self, sa: &mut SaCore, reason: Option<Failure>) {
        if let Some(at) = sa.timer_at {
            self.timers.remove(&(at, sa.id));
        }
        self.index.account(sa, None);
        if let Some(a) = sa.peer_vip {
            self.pool.release(a, sa.id);
        }
        if self.by_spi.get(&sa.local_spi()) == Some(&sa.id) {
            self.by_spi.remove(&sa.local_spi());
        }
        if self.handles.get(&sa.handle) == Some(&sa.id) {
            self.handles.remove(&sa.handle);
        }
        if !sa.initiator {
            let key = (sa.init_remote, sa.spi_i);
            if self.init_index.get(&key) == Some(&sa.id) {
                self.init_index.remove(&key);
            }
        }
        for child in &sa.children {
            self.child_spis.remove(&child.spis.inbound);
            if let Some(p) = &child.peer_rekey {
                self.child_spis.remove(&p.new.spis.inbound);
            }
            if reason.is_some() && sa.announced && child.announced {
                self.out.events.push_back(Event::ChildSaDeleted {
                    sa: sa.handle,
                    spis: child.spis,
                });
            }
        }
        if let (Some(reason), true) = (reason, sa.announced) {
            self.out.events.push_back(Event::IkeSaDeleted {
                sa: sa.handle,
                reason,
            });
        }
    }
}
