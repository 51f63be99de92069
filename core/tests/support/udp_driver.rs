//! A small std-UDP driver for oemesh-core in tests: one IKE [`Endpoint`] and the
//! ESP SAs it negotiates, on UDP 500 and 4500 sockets, with the test process
//! itself as the data plane (there is no kernel IPsec here).
//!
//! Threads: one reader per socket (blocking `recv_from` with a short read
//! timeout) feeds a channel; one driver thread owns the [`Host`] and does what
//! `docs/architecture.md` says the agent's loop does, in the quinn-proto style
//! of the endpoint's module doc: feed IKE to [`Endpoint::handle`], call
//! [`Endpoint::handle_timeout`] at [`Endpoint::poll_timeout`], drain
//! [`Endpoint::poll_transmit`] and [`Endpoint::poll_event`], install ESP SAs from
//! the CHILD SA events. ESP arriving on 4500 is decapsulated; an ICMP echo
//! request inside is answered through the outbound SA (so a `ping` from the
//! peer's side proves both directions), an echo reply is recorded.
//!
//! The test talks to the driver thread with [`Driver::call`] (run a closure on
//! the [`Host`], get its result) and [`Driver::wait_for`] (poll a condition,
//! bounded). A panic on the driver thread is re-raised in the test with its
//! message.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use oemesh_core::crypto::{AeadAlg, KeyAndSalt, Provider};
use oemesh_core::esp::{
    self, HEADER_LEN, InboundSa, LifetimeLimits, MAX_TRAILER_LEN, OutboundSa, SaConfig,
};
use oemesh_core::ike::endpoint::{
    ChildSa, ChildSpis, Endpoint, Event, Failure, PeerAuth, PeerAuthenticated, SaHandle,
};
use oemesh_core::ike::message::Identity;
use oemesh_core::ike::udp_encap::Datagram;
use oemesh_core::test_util::demux;
use oemesh_testkit::netns::Netns;

use crate::icmp::{Echo, EchoKind};

/// IKE_SA_INIT's port.
pub(crate) const IKE_PORT: u16 = 500;
/// IKE after IKE_SA_INIT, and ESP in UDP (RFC 3948).
pub(crate) const NATT_PORT: u16 = 4500;
/// How long a reader blocks before it looks at the stop flag.
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// The driver thread's longest sleep (it also wakes at the endpoint's timer).
const IDLE: Duration = Duration::from_millis(50);
/// How often [`Driver::wait_for`] polls.
const POLL: Duration = Duration::from_millis(20);
/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;

/// What the driver saw the endpoint report, in order: a cloneable summary of
/// each [`Event`] (keys left out) for the test's assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// [`Event::AuthorizePeer`]; `answered` says whether the driver had a
    /// `PeerAuth` to answer with.
    Authorize {
        sa: SaHandle,
        id: Identity,
        null_auth: bool,
        answered: bool,
    },
    /// [`Event::IkeSaEstablished`].
    IkeUp {
        sa: SaHandle,
        peer_id: Identity,
        auth: PeerAuthenticated,
        initiator: bool,
    },
    /// [`Event::ChildSaEstablished`] (installed by the driver).
    ChildUp {
        sa: SaHandle,
        spis: ChildSpis,
        alg: AeadAlg,
        esn: bool,
    },
    /// [`Event::ChildSaRekeyed`] (new pair installed, old inbound SA kept).
    ChildRekeyed {
        sa: SaHandle,
        old: ChildSpis,
        new: ChildSpis,
    },
    /// [`Event::ChildSaDeleted`] (removed by the driver).
    ChildDeleted { sa: SaHandle, spis: ChildSpis },
    /// [`Event::IkeSaRekeyed`].
    IkeRekeyed { sa: SaHandle },
    /// [`Event::IkeSaDeleted`].
    IkeDeleted { sa: SaHandle, reason: Failure },
    /// [`Event::Failed`].
    Failed { sa: SaHandle, reason: Failure },
    /// An event this driver does not know (the enum is non-exhaustive).
    Other(String),
}

/// The outbound half of the CHILD SA the driver sends with.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The SA.
    pub(crate) sa: OutboundSa,
    /// Where its packets go (the peer's UDP 4500).
    pub(crate) remote: SocketAddr,
}

/// Everything the driver thread owns; closures given to [`Driver::call`] get it.
#[derive(Debug)]
pub(crate) struct Host {
    /// The IKE endpoint; `None` for an ESP-only host whose SAs the test installs.
    pub(crate) endpoint: Option<Endpoint>,
    /// This host's address (inner and outer: host-to-host tunnels).
    pub(crate) addr: Ipv4Addr,
    /// How to answer [`Event::AuthorizePeer`]; `None` leaves it unanswered.
    pub(crate) authorize: Option<PeerAuth>,
    /// Inbound ESP SAs by SPI.
    pub(crate) inbound: HashMap<u32, InboundSa>,
    /// The outbound SA in use (the newest CHILD SA's).
    pub(crate) outbound: Option<Outbound>,
    /// The endpoint's events, summarised.
    pub(crate) seen: Vec<Seen>,
    /// Echo replies that came back through ESP.
    pub(crate) echo_replies: Vec<Echo>,
    /// Echo requests that came in through ESP and were answered.
    pub(crate) echo_answered: Vec<Echo>,
    /// Every IKE message received: (local port, message without the non-ESP marker).
    pub(crate) ike_received: Vec<(u16, Vec<u8>)>,
    /// ESP packets received per inbound SPI (decapsulated or not).
    pub(crate) esp_received: HashMap<u32, u64>,
    /// Things that went wrong in the data path (unknown SPI, failed
    /// decapsulation, unexpected inner packet, send errors), for failure messages.
    pub(crate) problems: Vec<String>,
    /// Which provider runs the ESP AEADs.
    pub(crate) provider: Provider,
    ike_socket: UdpSocket,
    natt_socket: UdpSocket,
}

impl Host {
    /// The endpoint; panics on an ESP-only host.
    pub(crate) fn endpoint(&mut self) -> &mut Endpoint {
        self.endpoint
            .as_mut()
            .expect("this host runs no IKE endpoint")
    }

    /// Installs a CHILD SA pair: the inbound SA joins the table, the outbound
    /// one replaces the one in use.
    pub(crate) fn install(
        &mut self,
        spis: ChildSpis,
        alg: AeadAlg,
        esn: bool,
        keys: (&KeyAndSalt, &KeyAndSalt),
        lifetime: LifetimeLimits,
        remote: SocketAddr,
    ) {
        let now = Instant::now();
        let config = |spi| SaConfig {
            spi,
            alg,
            provider: self.provider,
            esn,
            limits: lifetime,
        };
        self.inbound.insert(
            spis.inbound,
            InboundSa::new(config(spis.inbound), keys.0, now),
        );
        self.outbound = Some(Outbound {
            sa: OutboundSa::new(config(spis.outbound), keys.1, now),
            remote,
        });
    }

    fn install_child(&mut self, child: &ChildSa) {
        self.install(
            child.spis,
            child.alg,
            child.esn,
            (&child.inbound_key, &child.outbound_key),
            child.lifetime,
            child.remote,
        );
    }

    /// The SPIs of the outbound SA in use.
    pub(crate) fn outbound_spi(&self) -> Option<u32> {
        self.outbound.as_ref().map(|o| o.sa.spi())
    }

    /// Sends an ICMP echo request to `dst` through the outbound ESP SA.
    pub(crate) fn send_echo_request(&mut self, dst: Ipv4Addr, id: u16, seq: u16) -> Result<()> {
        let payload = format!("oemesh interop id {id} seq {seq}");
        let echo = Echo::request(self.addr, dst, id, seq, payload.as_bytes());
        self.send_esp(&echo)
    }

    /// Encapsulates `echo` with the outbound SA and sends it to the peer's 4500.
    pub(crate) fn send_esp(&mut self, echo: &Echo) -> Result<()> {
        let out = self
            .outbound
            .as_mut()
            .context("no outbound ESP SA installed")?;
        let inner_len = echo.packet_len();
        let mut buf = vec![0u8; HEADER_LEN + inner_len + MAX_TRAILER_LEN];
        echo.emit(&mut buf[HEADER_LEN..]);
        let len = out
            .sa
            .encapsulate(&mut buf, inner_len)
            .map_err(|e| anyhow!("ESP encapsulation with SPI {:08x}: {e}", out.sa.spi()))?;
        self.natt_socket
            .send_to(&buf[..len], out.remote)
            .with_context(|| format!("sending ESP to {}", out.remote))?;
        Ok(())
    }

    fn on_datagram(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        match demux(data, local.port(), IKE_PORT) {
            Datagram::Ike(message) => self.on_ike(now, local, remote, message),
            Datagram::Esp(packet) => {
                let mut packet = packet.to_vec();
                self.on_esp(remote, &mut packet);
            }
            Datagram::Keepalive => {}
            Datagram::Invalid => self.problems.push(format!(
                "invalid {}-byte datagram from {remote}",
                data.len()
            )),
        }
    }

    fn on_ike(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, message: &[u8]) {
        self.ike_received.push((local.port(), message.to_vec()));
        match self.endpoint.as_mut() {
            Some(endpoint) => endpoint.handle(now, local, remote, message),
            None => self.problems.push(format!(
                "IKE message from {remote} on an ESP-only host ({} bytes)",
                message.len()
            )),
        }
    }

    fn on_esp(&mut self, remote: SocketAddr, packet: &mut [u8]) {
        let Some(spi) = esp::peek_spi(packet) else {
            self.problems
                .push(format!("short ESP packet from {remote}"));
            return;
        };
        *self.esp_received.entry(spi).or_default() += 1;
        let Some(sa) = self.inbound.get_mut(&spi) else {
            self.problems
                .push(format!("ESP from {remote} with unknown SPI {spi:08x}"));
            return;
        };
        let inner = match sa.decapsulate(packet) {
            Ok(d) => d.inner,
            Err(e) => {
                self.problems
                    .push(format!("ESP SPI {spi:08x} from {remote}: {e}"));
                return;
            }
        };
        let echo = match Echo::parse(&packet[inner]) {
            Ok(echo) => echo,
            Err(e) => {
                self.problems
                    .push(format!("ESP SPI {spi:08x}: inner packet is no echo: {e}"));
                return;
            }
        };
        if echo.dst != self.addr {
            self.problems.push(format!(
                "ESP SPI {spi:08x}: echo to {}, not to us",
                echo.dst
            ));
            return;
        }
        match echo.kind {
            EchoKind::Reply => self.echo_replies.push(echo),
            EchoKind::Request => match self.send_esp(&echo.reply()) {
                Ok(()) => self.echo_answered.push(echo),
                Err(e) => self.problems.push(format!("answering an echo: {e:#}")),
            },
        }
    }

    fn on_timer(&mut self, now: Instant) {
        if let Some(endpoint) = self.endpoint.as_mut()
            && endpoint.poll_timeout().is_some_and(|t| t <= now)
        {
            endpoint.handle_timeout(now);
        }
    }

    fn next_wakeup(&self, now: Instant) -> Duration {
        self.endpoint
            .as_ref()
            .and_then(Endpoint::poll_timeout)
            .map_or(IDLE, |t| t.saturating_duration_since(now).min(IDLE))
    }

    /// Sends what the endpoint has to send and acts on its events, until it has
    /// neither (answering `AuthorizePeer` can produce more of both).
    fn flush(&mut self) {
        loop {
            let Some(endpoint) = self.endpoint.as_mut() else {
                return;
            };
            let mut progress = false;
            while let Some(t) = endpoint.poll_transmit() {
                progress = true;
                let socket = if t.local.port() == NATT_PORT {
                    &self.natt_socket
                } else {
                    &self.ike_socket
                };
                if let Err(e) = socket.send_to(&t.payload, t.remote) {
                    self.problems
                        .push(format!("sending IKE {} -> {}: {e}", t.local, t.remote));
                }
            }
            while let Some(event) = self.endpoint().poll_event() {
                progress = true;
                self.on_event(event);
            }
            if !progress {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let seen = match event {
            Event::AuthorizePeer {
                sa, id, null_auth, ..
            } => {
                let answer = self.authorize.clone();
                let answered = answer.is_some();
                if answered {
                    self.endpoint().authorize(Instant::now(), sa, answer);
                }
                Seen::Authorize {
                    sa,
                    id,
                    null_auth,
                    answered,
                }
            }
            Event::IkeSaEstablished {
                sa,
                peer_id,
                auth,
                initiator,
                ..
            } => Seen::IkeUp {
                sa,
                peer_id,
                auth,
                initiator,
            },
            Event::ChildSaEstablished { sa, child } => {
                self.install_child(&child);
                Seen::ChildUp {
                    sa,
                    spis: child.spis,
                    alg: child.alg,
                    esn: child.esn,
                }
            }
            Event::ChildSaRekeyed { sa, old, new } => {
                self.install_child(&new);
                Seen::ChildRekeyed {
                    sa,
                    old,
                    new: new.spis,
                }
            }
            Event::ChildSaDeleted { sa, spis } => {
                self.inbound.remove(&spis.inbound);
                if self.outbound_spi() == Some(spis.outbound) {
                    self.outbound = None;
                }
                Seen::ChildDeleted { sa, spis }
            }
            Event::IkeSaRekeyed { sa } => Seen::IkeRekeyed { sa },
            Event::IkeSaDeleted { sa, reason } => Seen::IkeDeleted { sa, reason },
            Event::Failed { sa, reason, .. } => Seen::Failed { sa, reason },
            other => Seen::Other(format!("{other:?}")),
        };
        self.seen.push(seen);
    }

    /// A few lines on what this host saw, for failure messages.
    pub(crate) fn summary(&self) -> String {
        let mut s = String::from("oemesh side:\n  events:\n");
        for e in &self.seen {
            let _ = writeln!(s, "    {e:?}");
        }
        let _ = writeln!(
            s,
            "  IKE messages received: {}; ESP received per SPI: {:x?}",
            self.ike_received.len(),
            self.esp_received
        );
        let _ = writeln!(
            s,
            "  inbound SAs: {:x?}; outbound SA: {:x?}",
            self.inbound.keys().collect::<Vec<_>>(),
            self.outbound_spi()
        );
        let _ = writeln!(
            s,
            "  echo replies received: {}; echo requests answered: {}",
            self.echo_replies.len(),
            self.echo_answered.len()
        );
        if let Some(endpoint) = &self.endpoint {
            let _ = writeln!(s, "  endpoint stats: {:?}", endpoint.stats());
        }
        s.push_str("  data-path problems:\n");
        for p in self.problems.iter().rev().take(10).rev() {
            let _ = writeln!(s, "    {p}");
        }
        s
    }
}

type Call = Box<dyn FnOnce(&mut Host) + Send>;

enum Input {
    Datagram {
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    Call(Call),
    Stop,
}

/// The running driver: its threads stop and its sockets close on drop.
#[derive(Debug)]
pub(crate) struct Driver {
    tx: Sender<Input>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Driver {
    /// Binds UDP 500 and 4500 on `addr` inside `ns` and starts the threads.
    /// `endpoint` is `None` for an ESP-only host (SAs installed with
    /// [`Host::install`]).
    pub(crate) fn start(ns: &Netns, addr: Ipv4Addr, endpoint: Option<Endpoint>) -> Result<Driver> {
        let ike_socket = ns.bind_udp(SocketAddr::new(IpAddr::V4(addr), IKE_PORT))?;
        let natt_socket = ns.bind_udp(SocketAddr::new(IpAddr::V4(addr), NATT_PORT))?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for socket in [&ike_socket, &natt_socket] {
            let socket = socket.try_clone().context("cloning a UDP socket")?;
            socket.set_read_timeout(Some(READ_TIMEOUT))?;
            let (tx, stop) = (tx.clone(), Arc::clone(&stop));
            readers.push(
                thread::Builder::new()
                    .name(format!("udp {}", socket.local_addr()?))
                    .spawn(move || read_loop(&socket, &tx, &stop))?,
            );
        }
        let host = Host {
            endpoint,
            addr,
            authorize: None,
            inbound: HashMap::new(),
            outbound: None,
            seen: Vec::new(),
            echo_replies: Vec::new(),
            echo_answered: Vec::new(),
            ike_received: Vec::new(),
            esp_received: HashMap::new(),
            problems: Vec::new(),
            provider: Provider::default(),
            ike_socket,
            natt_socket,
        };
        let thread = thread::Builder::new()
            .name("oemesh driver".into())
            .spawn(move || drive(host, &rx))?;
        Ok(Driver {
            tx,
            stop,
            thread: Mutex::new(Some(thread)),
            readers,
        })
    }

    /// Runs `f` on the driver thread with the [`Host`] and returns its result;
    /// transmits and events it causes are handled right after. Panics with the
    /// driver thread's panic message if that thread died.
    #[allow(
        clippy::panic,
        reason = "a test helper: the test fails with the driver's message"
    )]
    pub(crate) fn call<R, F>(&self, f: F) -> R
    where
        R: Send + 'static,
        F: FnOnce(&mut Host) -> R + Send + 'static,
    {
        match self.try_call(f) {
            Some(r) => r,
            None => panic!("oemesh driver thread is gone: {}", self.join_panic()),
        }
    }

    /// [`Driver::call`], but `None` if the driver thread is gone (for `Drop`s).
    pub(crate) fn try_call<R, F>(&self, f: F) -> Option<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Host) -> R + Send + 'static,
    {
        let (rtx, rrx) = mpsc::channel();
        let call: Call = Box::new(move |host| {
            let _ = rtx.send(f(host));
        });
        self.tx.send(Input::Call(call)).ok()?;
        rrx.recv().ok()
    }

    /// Polls `f` on the driver thread until it returns `Some` (bounded by
    /// `timeout`; the error names `what`).
    pub(crate) fn wait_for<T, F>(&self, what: &str, timeout: Duration, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Host) -> Option<T> + Send + 'static,
    {
        let f = Arc::new(Mutex::new(f));
        let deadline = Instant::now() + timeout;
        loop {
            let g = Arc::clone(&f);
            let found = self.call(move |host| {
                let mut f = g.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                f(host)
            });
            if let Some(v) = found {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                bail!("oemesh: timed out after {timeout:?} waiting for {what}");
            }
            thread::sleep(POLL);
        }
    }

    /// [`Host::summary`], from the driver thread.
    pub(crate) fn summary(&self) -> String {
        self.call(|h| h.summary())
    }

    fn join_panic(&self) -> String {
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match thread.map(JoinHandle::join) {
            Some(Err(panic)) => panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".into()),
            Some(Ok(())) => "it stopped".into(),
            None => "it had already stopped".into(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.tx.send(Input::Stop);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

fn read_loop(socket: &UdpSocket, tx: &Sender<Input>, stop: &AtomicBool) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, remote)) => {
                let input = Input::Datagram {
                    local,
                    remote,
                    data: buf[..n].to_vec(),
                };
                if tx.send(input).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // ICMP port unreachable from an earlier send surfaces here; keep reading.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(_) => return,
        }
    }
}

fn drive(mut host: Host, rx: &Receiver<Input>) {
    loop {
        let wait = host.next_wakeup(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Input::Datagram {
                local,
                remote,
                data,
            }) => host.on_datagram(Instant::now(), local, remote, &data),
            Ok(Input::Call(f)) => f(&mut host),
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        host.on_timer(Instant::now());
        host.flush();
    }
}
