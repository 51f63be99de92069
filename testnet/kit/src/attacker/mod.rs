//! A small IKEv2 attacker for the trust tests and the flood runs: core's own
//! initiator ([`Endpoint`]), told to lie. The knobs ([`Knobs`]) are what a
//! hostile peer controls:
//!
//! - the identity it claims (IDi), whatever its address;
//! - how it authenticates: a key of its own, or AUTH NULL (RFC 7619);
//! - the source address of IKE_SA_INIT, and a *different* one for IKE_AUTH and
//!   what follows (an address it spoofs, to capture a victim's traffic);
//! - whether IKE_AUTH carries N(INITIAL_CONTACT).
//!
//! Payload bombs (crafted datagrams the codec would refuse to build, to bound
//! what parsing may allocate) are in [`bombs`].
//!
//! Two ways to run it:
//! - sans-IO against a core [`Endpoint`] on a virtual clock ([`run_against`],
//!   core's harness `oemesh_core::test_util`): deterministic, for core's tests;
//! - over real sockets inside a namespace ([`Attacker::run_udp`]): sent from a
//!   raw socket (so any source address can be written), answers read on UDP
//!   500/4500 of the attacker's namespace.

pub mod bombs;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oemesh_core::crypto::ed25519::{Ed25519PublicKey, Ed25519SigningKey};
use oemesh_core::ike::endpoint::{
    Config, Endpoint, Event, LocalAuth, PeerAuth, SaHandle, TrafficSelectors, Transmit,
};
use oemesh_core::ike::message::{AddrSelector, ExchangeType, HeaderPacket, Identity};
use oemesh_core::ike::udp_encap::push_non_esp_marker;
use oemesh_core::test_util::{Host, Net, Node, Peer, answer_and_record, answer_authorize};

/// UDP port of IKE.
pub const IKE_PORT: u16 = 500;
/// UDP port of NAT-T.
pub const NATT_PORT: u16 = 4500;

/// What the attacker lies about.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// The IDi it sends.
    pub claimed_id: Identity,
    /// The seed of its Ed25519 signing key; `None` authenticates with AUTH NULL.
    pub key: Option<[u8; 32]>,
    /// The address IKE_SA_INIT comes from.
    pub source: IpAddr,
    /// The address IKE_AUTH and every later message come from; `None`: `source`.
    pub later_source: Option<IpAddr>,
    /// Whether IKE_AUTH carries N(INITIAL_CONTACT).
    pub initial_contact: bool,
    /// The victim's key, to accept its AUTH; `None` accepts AUTH NULL only.
    pub victim_key: Option<Ed25519PublicKey>,
}

impl Knobs {
    /// An honest-looking anonymous initiator at `source`: ID_NULL, AUTH NULL,
    /// no INITIAL_CONTACT, everything from `source`.
    pub fn anonymous(source: IpAddr) -> Knobs {
        Knobs {
            claimed_id: Identity::Null,
            key: None,
            source,
            later_source: None,
            initial_contact: false,
            victim_key: None,
        }
    }
}

/// One datagram as the attacker sends it (source possibly spoofed) or receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Its source.
    pub from: SocketAddr,
    /// Its destination.
    pub to: SocketAddr,
    /// The UDP payload (with the non-ESP marker on port 4500).
    pub payload: Vec<u8>,
}

/// Core's initiator with the knobs applied.
#[derive(Debug)]
pub struct Attacker {
    /// The initiator endpoint.
    pub ep: Endpoint,
    knobs: Knobs,
    sa: Option<SaHandle>,
    /// Everything the endpoint reported.
    pub events: Vec<Event>,
}

impl Attacker {
    /// An attacker whose endpoint draws its randomness from `seed`.
    pub fn new(knobs: Knobs, seed: u8) -> Attacker {
        let auth = match &knobs.key {
            Some(seed) => LocalAuth::Ed25519(Ed25519SigningKey::from_seed(seed)),
            None => LocalAuth::Null,
        };
        let mut config = Config::new(auth, knobs.claimed_id.clone());
        config.initial_contact = knobs.initial_contact;
        config.id_is_sa_address = false; // it says what the knob says
        config.dpd_interval = None;
        Attacker {
            ep: Endpoint::new(config, [seed; 32]),
            knobs,
            sa: None,
            events: Vec::new(),
        }
    }

    /// The knobs.
    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    /// Starts IKE with `victim` (host-to-host selectors, as OE uses), to finish by `deadline`.
    pub fn start(&mut self, now: Instant, victim: IpAddr, deadline: Instant) -> SaHandle {
        let ts = TrafficSelectors {
            local: vec![AddrSelector::host(self.knobs.source)],
            remote: vec![AddrSelector::host(victim)],
        };
        let sa = self
            .ep
            .connect(now, self.knobs.source, victim, None, ts, deadline);
        self.sa = Some(sa);
        sa
    }

    /// Whether the attacker's IKE SA came up.
    pub fn established(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::IkeSaEstablished { .. }))
    }

    /// Why the attempt failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.events.iter().find_map(|e| match e {
            Event::Failed { reason, .. } => Some(reason.to_string()),
            _ => None,
        })
    }

    /// The datagrams to send now, each from the source the knobs say.
    pub fn outgoing(&mut self, now: Instant) -> Vec<Datagram> {
        self.poll_events(now);
        let mut out = Vec::new();
        while let Some(t) = Node::poll_transmit(self) {
            out.push(Datagram {
                from: t.local,
                to: t.remote,
                payload: t.payload,
            });
        }
        // Events the sends above may have caused (a failure, established).
        self.poll_events(now);
        out
    }

    /// `t` as sent from the source the knobs say.
    fn spoof(&self, mut t: Transmit) -> Transmit {
        let later = self.knobs.later_source.unwrap_or(self.knobs.source);
        let from_ip = if is_ike_sa_init(&t) {
            self.knobs.source
        } else {
            later
        };
        t.local = SocketAddr::new(from_ip, t.local.port());
        t
    }

    /// A datagram for the attacker (the victim's answer, wherever it was sent:
    /// an attacker on the path sees it).
    pub fn incoming(&mut self, now: Instant, from: SocketAddr, port: u16, payload: &[u8]) {
        let local = SocketAddr::new(self.knobs.source, port);
        Peer::handle(&mut self.ep, now, local, from, payload);
    }

    /// Runs the attack over real sockets from the calling thread's namespace
    /// (use [`crate::netns::Netns::run`]): sends from a raw socket, reads the
    /// answers on UDP 500 and 4500 (nothing else may hold those ports there),
    /// until the SA is up, the attempt failed, or `timeout` passed. IPv4 only.
    pub fn run_udp(&mut self, victim: IpAddr, timeout: Duration) -> Result<()> {
        let IpAddr::V4(_) = victim else {
            bail!("the UDP attacker speaks IPv4 only");
        };
        let ike = bind_udp(IKE_PORT)?;
        let natt = bind_udp(NATT_PORT)?;
        let raw = raw_socket()?;
        let started = Instant::now();
        self.start(started, victim, started + timeout);
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            for d in self.outgoing(now) {
                send_spoofed(&raw, &d)?;
            }
            if self.established() || self.failure().is_some() || now >= started + timeout {
                return Ok(());
            }
            for (socket, port) in [(&ike, IKE_PORT), (&natt, NATT_PORT)] {
                while let Ok((len, from)) = socket.recv_from(&mut buf) {
                    self.incoming(Instant::now(), from, port, &buf[..len]);
                }
            }
            if self.ep.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                self.ep.handle_timeout(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// On core's harness net ([`run_against`]): at its first source address, its
/// datagrams spoofed as the knobs say.
impl Node for Attacker {
    fn addr(&self) -> IpAddr {
        self.knobs.source
    }

    fn receive(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, datagram: &[u8]) {
        self.incoming(now, remote, local.port(), datagram);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.ep.poll_transmit()?;
        Some(self.spoof(t))
    }

    /// Answers `AuthorizePeer` with the victim's key (AUTH NULL where the
    /// victim used it) and keeps every event.
    fn poll_events(&mut self, now: Instant) -> bool {
        let victim_key = self.knobs.victim_key;
        answer_and_record(&mut self.ep, now, &mut self.events, |e| {
            let Event::AuthorizePeer { null_auth, .. } = e else {
                return None;
            };
            Some(match (victim_key, null_auth) {
                (_, true) => Some(PeerAuth::Null),
                (Some(k), false) => Some(PeerAuth::ed25519(k)),
                (None, false) => None,
            })
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
    }
}

fn is_ike_sa_init(t: &Transmit) -> bool {
    let bytes = match t.payload.get(..4) {
        Some([0, 0, 0, 0]) => &t.payload[4..],
        _ => &t.payload[..],
    };
    HeaderPacket::new_checked(bytes).is_ok_and(|h| h.exchange_type() == ExchangeType::IKE_SA_INIT)
}

fn bind_udp(port: u16) -> Result<UdpSocket> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("binding UDP {port} (is an agent running here?)"))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// `IPPROTO_RAW`: a send-only raw socket that takes the whole IP header.
const IPPROTO_RAW: i32 = 255;

fn raw_socket() -> Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))
        .context("raw socket (IPPROTO_RAW): needs CAP_NET_RAW")
}

fn send_spoofed(raw: &socket2::Socket, d: &Datagram) -> Result<()> {
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (d.from, d.to) else {
        bail!("the UDP attacker speaks IPv4 only");
    };
    let packet = ipv4_udp(from, to, &d.payload);
    raw.send_to(&packet, &SocketAddr::V4(to).into())
        .with_context(|| format!("sending {} → {}", d.from, d.to))?;
    Ok(())
}

/// Sends one IPv4/UDP datagram with any source address, from a raw socket in
/// the calling thread's namespace (IP_HDRINCL: the kernel fills in the IP
/// checksum and ID).
pub fn send_spoofed_udp(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Result<()> {
    let raw = raw_socket()?;
    send_spoofed(
        &raw,
        &Datagram {
            from: from.into(),
            to: to.into(),
            payload: payload.to_vec(),
        },
    )
}

/// An IPv4 header (checksum left to the kernel) and a UDP header (checksum 0:
/// none, allowed over IPv4) around `payload`.
pub fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let total = 20u16.saturating_add(udp_len);
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// A responder for [`run_against`]: a core endpoint at `addr`, with the answer
/// it gives to each `AuthorizePeer`.
#[derive(Debug)]
pub struct Victim {
    /// The endpoint.
    pub ep: Endpoint,
    /// Its address.
    pub addr: IpAddr,
    /// Every event it reported.
    pub events: Vec<Event>,
}

impl Victim {
    /// A victim at `addr` with `config`.
    pub fn new(config: Config, addr: IpAddr, seed: u8) -> Victim {
        Victim {
            ep: Endpoint::new(config, [seed; 32]),
            addr,
            events: Vec::new(),
        }
    }

    /// How many IKE SAs it saw established.
    pub fn established(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::IkeSaEstablished { .. }))
            .count()
    }

    /// The reasons of the IKE SAs it saw deleted.
    pub fn deleted(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::IkeSaDeleted { reason, .. } => Some(reason.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// Runs `attacker` against `victim` on a virtual clock from `now` until
/// neither has anything left to do (at most 10 s of virtual time). The
/// victim's datagrams reach the attacker whatever address they go to (an
/// on-path attacker sees them); `authorize` answers the victim's
/// `AuthorizePeer` events (`None` leaves one unanswered). Returns the clock.
pub fn run_against(
    attacker: &mut Attacker,
    victim: &mut Victim,
    now: Instant,
    authorize: impl FnMut(&Event) -> Option<Option<PeerAuth>>,
) -> Instant {
    run_for(attacker, victim, now, Duration::from_secs(10), authorize)
}

/// [`run_against`] for at most `d` of virtual time: timers due later do not fire.
pub fn run_for(
    attacker: &mut Attacker,
    victim: &mut Victim,
    now: Instant,
    d: Duration,
    mut authorize: impl FnMut(&Event) -> Option<Option<PeerAuth>>,
) -> Instant {
    let events = &mut victim.events;
    let mut victim = Host::new(
        victim.addr,
        &mut victim.ep,
        |ep: &mut &mut Endpoint, now, e| {
            answer_authorize(ep, now, &e, &mut authorize);
            events.push(e);
        },
    );
    let mut net = Net::new(now);
    // The attacker (node 0) sees the victim's answers wherever they go.
    net.fallback = Some(0);
    net.run(&mut [attacker, &mut victim], now + d);
    net.now
}

/// The datagram of `payload` as sent on port `port` (with the non-ESP marker on NAT-T).
pub fn on_port(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    if port != IKE_PORT {
        push_non_esp_marker(&mut out);
    }
    out.extend_from_slice(payload);
    out
}
