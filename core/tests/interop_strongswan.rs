//! oemesh-core against a real strongSwan: our IKEv2 [`Endpoint`] and ESP SAs in
//! one network namespace, a stock `charon` (Debian, userspace ESP through
//! kernel-libipsec) in another, joined by a veth pair.
//!
//! ```text
//!  namespace A "swan"                          namespace B "oemesh"
//!  charon 192.0.2.1 (UDP 500/4500)  <-veth->   this test 192.0.2.2 (UDP 500/4500)
//!  ipsec0 (libipsec TUN), A's kernel           support::udp_driver: Endpoint + ESP SAs
//! ```
//!
//! The kernel may have no XFRM, so our side has no kernel IPsec: the test
//! process is the data plane. ESP is proved both ways twice over:
//!
//! - we build an ICMP echo request 192.0.2.2 → 192.0.2.1, encapsulate it with our
//!   outbound SA and send it in UDP 4500; charon decrypts it into `ipsec0`, A's
//!   kernel answers, charon encrypts the reply, our inbound SA decapsulates it and
//!   the test checks id, sequence number and data;
//! - A's kernel pings 192.0.2.2 (a raw-socket ping, `Netns::ping`): charon sends
//!   ESP to us, the driver answers the echo through our outbound SA, and the ping
//!   returning proves it.
//!
//! Cases, each with AES-256-GCM and with ChaCha20-Poly1305 (IKE and ESP):
//!
//! | test | who initiates | then | ends with |
//! |---|---|---|---|
//! | `we_initiate_*` | we (`connect`) | — | our `close` |
//! | `strongswan_initiates_*` | charon (`swanctl --initiate`) | — | `swanctl --terminate --ike` |
//! | `child_rekey_by_us_*` | we | our `rekey_child` | our `delete_child` |
//! | `child_rekey_by_strongswan_*` | charon | `swanctl --rekey --child` | `swanctl --terminate --child` |
//! | `ike_rekey_by_us_*` | we | our `rekey_ike` | our `close` |
//! | `ike_rekey_by_strongswan_*` | charon | `swanctl --rekey --ike` | `--terminate --child`, our `close` |
//! | `esp_only_*` | a charon stand-in | stand-in killed, our SAs take its keys | — |
//!
//! ESP is checked both ways after every step. `esp_only_*` needs no IKE
//! engine: a charon pair negotiates, the responder charon is SIGKILLed, and our
//! ESP SAs take over its SPIs and keys (read from its level-4 log).
//!
//! libipsec refuses extended sequence numbers, so charon's ESP proposals carry
//! no ESN and the CHILD SAs must come out with `esn = false` (`docs/interop.md`).
//!
//! Needs root and strongSwan: it fails (never skips) otherwise, saying to run
//! `sudo scripts/test`. Run alone: `cargo test -p oemesh-core --test interop_strongswan`.

// Not `mod support;`: support/mod.rs is the engine tests' harness (`pair`);
// these two files are this test's own.
#[path = "support/icmp.rs"]
mod icmp;
#[path = "support/udp_driver.rs"]
mod udp_driver;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use oemesh_core::crypto::ed25519::{Ed25519PublicKey, Ed25519SigningKey};
use oemesh_core::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};
use oemesh_core::esp::LifetimeLimits;
use oemesh_core::ike::endpoint::{
    ChildSpis, Config, Endpoint, Failure, LocalAuth, PeerAuth, PeerAuthenticated, SaHandle,
    TrafficSelectors,
};
use oemesh_core::ike::message::{
    AddrSelector, DhGroup, ExchangeType, Identity, Message, NotifyType, Payload, PayloadType,
    Proposal, ProtocolId, TransformType,
};
use oemesh_testkit::netns::{Netns, veth};
use oemesh_testkit::process;
use oemesh_testkit::strongswan::{self, Charon, CharonConfig, Ed25519Key, IkeSa};
use tempfile::TempDir;

use icmp::EchoKind;
use udp_driver::{Driver, NATT_PORT, Seen};

/// charon's address (namespace A).
const SWAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Our address (namespace B).
const OURS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// Bound on every wait for a negotiation or a state change.
const WAIT: Duration = Duration::from_secs(10);
/// Bound on one echo round trip.
const PING: Duration = Duration::from_secs(3);
/// Echo requests per direction and round.
const PINGS: u16 = 3;

/// One AEAD as oemesh and strongSwan name it.
#[derive(Clone, Copy, Debug)]
struct Aead {
    alg: AeadAlg,
    /// In strongSwan's proposal strings.
    proposal: &'static str,
    /// In `swanctl --list-sas`.
    listed: &'static str,
}

const AES: Aead = Aead {
    alg: AeadAlg::Aes256Gcm,
    proposal: "aes256gcm16",
    listed: "AES_GCM_16",
};
const CHACHA: Aead = Aead {
    alg: AeadAlg::ChaCha20Poly1305,
    proposal: "chacha20poly1305",
    listed: "CHACHA20_POLY1305",
};

/// 32 bytes from the OS (key seeds, the endpoint's RNG seed).
fn random32() -> [u8; 32] {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .expect("reading /dev/urandom");
    seed
}

fn hex_spi(spi: u32) -> String {
    format!("{spi:08x}")
}

#[allow(
    clippy::panic,
    reason = "a test helper: failing the test with context is its job"
)]
fn parse_spi(hex: &str) -> u32 {
    u32::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("SPI {hex:?} from swanctl: {e}"))
}

/// charon's connection config for the oemesh peer: IDs are the addresses,
/// Ed25519 raw keys, host-to-host tunnel, one AEAD, no ESN.
fn charon_config(aead: Aead, key: &Ed25519Key, peer_pub: std::path::PathBuf) -> CharonConfig {
    let mut c = CharonConfig::new(&SWAN.to_string(), &OURS.to_string());
    c.local_key = Some(key.clone());
    c.remote_pubkey = Some(peer_pub);
    c.local_id = Some(SWAN.to_string());
    c.remote_id = Some(OURS.to_string());
    c.local_ts = vec![format!("{SWAN}/32")];
    c.remote_ts = vec![format!("{OURS}/32")];
    c.proposals = vec![format!("{}-prfsha256-x25519", aead.proposal)];
    c.esp_proposals = vec![format!("{}-x25519", aead.proposal)];
    c
}

/// `OEMESH_INTEROP_CAPTURE=<dir>`: charon logs keys (level 4) and each test
/// leaves the IKE messages our endpoint received, and charon's log, in `<dir>`
/// (how `core/tests/data/strongswan-interop-*` were made).
const CAPTURE_ENV: &str = "OEMESH_INTEROP_CAPTURE";

/// One oemesh ↔ strongSwan setup. Fields drop in order: our driver (threads,
/// sockets) first, then charon, then the namespaces and files.
struct Interop {
    driver: Driver,
    swan: Charon,
    aead: Aead,
    a: Netns,
    _b: Netns,
    _files: TempDir,
}

impl Interop {
    /// Namespaces, keys, charon started and loaded, our endpoint running in B
    /// and answering `AuthorizePeer` with charon's key.
    fn start(aead: Aead) -> Interop {
        strongswan::require_charon();
        let a = Netns::new("swan").expect("netns A");
        let b = Netns::new("oemesh").expect("netns B");
        veth(&a, &format!("{SWAN}/24"), &b, &format!("{OURS}/24")).expect("veth");
        let files = tempfile::tempdir().expect("tempdir");

        let swan_key = Ed25519Key::generate(files.path(), "swan").expect("pki --gen");
        let swan_pub = Ed25519PublicKey::from_slice(&swan_key.public_raw).expect("charon's key");
        let our_key = Ed25519SigningKey::from_seed(&random32());
        let our_pub = files.path().join("oemesh.pub");
        strongswan::write_ed25519_public_pem(&our_key.public_key().to_bytes(), &our_pub)
            .expect("our public key for charon");
        let mut c = charon_config(aead, &swan_key, our_pub);
        if std::env::var_os(CAPTURE_ENV).is_some() {
            c.log_levels = CharonConfig::levels(CharonConfig::LOG_KEYS);
        }
        let swan = Charon::start(&a, "swan", c).expect("charon in A");

        let mut config = Config::new(LocalAuth::Ed25519(our_key), Identity::Ipv4(OURS));
        config.ike_algs = vec![aead.alg];
        config.esp_algs = vec![aead.alg];
        let endpoint = Endpoint::new(config, random32());
        let driver = Driver::start(&b, OURS, Some(endpoint)).expect("driver in B");
        driver.call(move |h| h.authorize = Some(PeerAuth::ed25519(swan_pub)));
        Interop {
            driver,
            swan,
            aead,
            a,
            _b: b,
            _files: files,
        }
    }

    /// Unwraps `r` or fails with both sides' state: our events and data-path
    /// problems, charon's output and log tail.
    #[allow(
        clippy::panic,
        reason = "a test helper: failing the test with context is its job"
    )]
    fn ok<T>(&self, what: &str, r: anyhow::Result<T>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!(
                "{what}: {e:#}\n\n{}\n{}",
                self.driver.summary(),
                self.swan.context()
            ),
        }
    }

    /// Waits for an event from our endpoint.
    fn wait_seen<T: Send + 'static>(
        &self,
        what: &str,
        f: impl Fn(&Seen) -> Option<T> + Send + 'static,
    ) -> T {
        let r = self
            .driver
            .wait_for(what, WAIT, move |h| h.seen.iter().find_map(&f));
        self.ok(what, r)
    }

    /// Waits until charon lists one ESTABLISHED IKE SA whose CHILD_SAs pass `f`.
    fn wait_swan(&self, what: &str, f: impl Fn(&IkeSa) -> bool) -> IkeSa {
        let r = process::wait_for(what, WAIT, || {
            let sas = self.swan.list_sas().ok()?;
            match sas.as_slice() {
                [sa] if sa.state == "ESTABLISHED" && f(sa) => Some(sa.clone()),
                _ => None,
            }
        });
        self.ok(what, r)
    }

    /// The CHILD SA pair most recently installed on our side.
    fn current_child(&self) -> ChildSpis {
        let child = self.driver.call(|h| {
            h.seen.iter().rev().find_map(|e| match e {
                Seen::ChildUp { spis, .. } => Some(*spis),
                Seen::ChildRekeyed { new, .. } => Some(*new),
                _ => None,
            })
        });
        self.ok(
            "our current CHILD SA",
            child.ok_or_else(|| anyhow::anyhow!("no CHILD SA installed")),
        )
    }

    /// Both sides agree on the IKE SA and CHILD SA just established; returns our
    /// handle for the IKE SA.
    fn check_established(&self, we_initiated: bool) -> SaHandle {
        let (sa, peer_id, auth, initiator) =
            self.wait_seen("our IKE SA established", |e| match e {
                Seen::IkeUp {
                    sa,
                    peer_id,
                    auth,
                    initiator,
                } => Some((*sa, peer_id.clone(), *auth, *initiator)),
                _ => None,
            });
        assert_eq!(peer_id, Identity::Ipv4(SWAN), "charon's identity");
        assert_eq!(auth, PeerAuthenticated::Ed25519);
        assert_eq!(initiator, we_initiated);
        let (spis, alg, esn) = self.wait_seen("our CHILD SA installed", |e| match e {
            Seen::ChildUp { spis, alg, esn, .. } => Some((*spis, *alg, *esn)),
            _ => None,
        });
        assert_eq!(alg, self.aead.alg);
        assert!(!esn, "libipsec cannot do ESN; it must not be negotiated");

        let listed = self.aead.listed;
        let ike = self.wait_swan("charon: IKE SA ESTABLISHED, CHILD_SA INSTALLED", |sa| {
            sa.children.iter().any(|c| c.state == "INSTALLED")
        });
        assert_eq!(ike.initiator, !we_initiated, "{ike:?}");
        assert_eq!(
            (ike.encr_alg.as_str(), ike.dh_group.as_str()),
            (listed, "CURVE_25519")
        );
        assert_eq!(ike.fields["prf-alg"], "PRF_HMAC_SHA2_256");
        assert_eq!(ike.fields["remote-id"], OURS.to_string());
        assert_eq!(ike.fields["remote-host"], OURS.to_string());
        assert_eq!(ike.fields["remote-port"], NATT_PORT.to_string());
        let child = &ike.children[0];
        assert_eq!(
            (child.mode.as_str(), child.encap, child.esn),
            ("TUNNEL", true, false)
        );
        assert_eq!(child.encr_alg, listed);
        assert_eq!(
            child.spi_in,
            hex_spi(spis.outbound),
            "charon's inbound is our outbound"
        );
        assert_eq!(
            child.spi_out,
            hex_spi(spis.inbound),
            "charon's outbound is our inbound"
        );
        assert_eq!(child.local_ts, [format!("{SWAN}/32")]);
        assert_eq!(child.remote_ts, [format!("{OURS}/32")]);
        sa
    }

    /// ESP both ways through charon's userspace ESP (see the module doc), on the
    /// CHILD SA pair `spis`, which must be the one carrying the packets.
    fn esp_both_ways(&self, round: u16, spis: ChildSpis) {
        let r = esp_both_ways(&self.driver, &self.a, round);
        self.ok(&format!("ESP both ways, round {round}"), r);
        let (used_out, received) = self.driver.call(move |h| {
            (
                h.outbound_spi(),
                h.esp_received.get(&spis.inbound).copied().unwrap_or(0),
            )
        });
        assert_eq!(
            used_out,
            Some(spis.outbound),
            "round {round}: outbound SA in use"
        );
        assert!(
            received >= u64::from(2 * PINGS),
            "round {round}: ESP must arrive on SPI {:08x}, got {received}",
            spis.inbound
        );
    }

    /// We start the IKE SA (IKE_SA_INIT + IKE_AUTH with the first CHILD SA).
    fn connect(&self) -> SaHandle {
        let handle = self.driver.call(|h| {
            let now = Instant::now();
            let ts = TrafficSelectors {
                local: vec![AddrSelector::host(IpAddr::V4(OURS))],
                remote: vec![AddrSelector::host(IpAddr::V4(SWAN))],
            };
            h.endpoint().connect(
                now,
                IpAddr::V4(OURS),
                IpAddr::V4(SWAN),
                None,
                ts,
                now + WAIT,
            )
        });
        let sa = self.check_established(true);
        assert_eq!(sa, handle, "the established SA is the one connect returned");
        sa
    }
}

impl Drop for Interop {
    /// With [`CAPTURE_ENV`] set: `<test>-<n>-<port>.bin` per IKE message
    /// received (UDP payload, non-ESP marker removed) and `<test>-charon.log`.
    fn drop(&mut self) {
        let Some(dir) = std::env::var_os(CAPTURE_ENV).map(std::path::PathBuf::from) else {
            return;
        };
        let test = std::thread::current()
            .name()
            .unwrap_or("interop")
            .replace("::", "-");
        let Some(messages) = self.driver.try_call(|h| h.ike_received.clone()) else {
            return;
        };
        let write = |name: String, data: &[u8]| {
            if let Err(e) = std::fs::write(dir.join(&name), data) {
                eprintln!("{CAPTURE_ENV}: writing {name}: {e}");
            }
        };
        for (n, (port, message)) in messages.iter().enumerate() {
            write(format!("{test}-{n:02}-{port}.bin"), message);
        }
        write(format!("{test}-charon.log"), self.swan.log().as_bytes());
    }
}

/// ESP both ways for any host driven by `driver` at [`OURS`], with charon's
/// namespace `a` at [`SWAN`].
fn esp_both_ways(driver: &Driver, a: &Netns, round: u16) -> anyhow::Result<()> {
    // Ours → strongSwan and back.
    let id = 0x0e00 + round;
    for seq in 1..=PINGS {
        driver.call(move |h| h.send_echo_request(SWAN, id, seq))?;
        let reply = driver.wait_for(
            &format!("echo reply id {id:#x} seq {seq} from {SWAN} through charon's ESP"),
            PING,
            move |h| {
                h.echo_replies
                    .iter()
                    .find(|e| e.id == id && e.seq == seq)
                    .cloned()
            },
        )?;
        anyhow::ensure!(
            (reply.src, reply.dst, reply.kind) == (SWAN, OURS, EchoKind::Reply),
            "unexpected reply {reply:?}"
        );
        anyhow::ensure!(
            reply.payload == format!("oemesh interop id {id} seq {seq}").into_bytes(),
            "reply data differs from the request's: {reply:?}"
        );
    }
    // strongSwan → ours and back: A's kernel pings us through ipsec0.
    let before = driver.call(|h| h.echo_answered.len());
    for n in 0..PINGS {
        a.ping(IpAddr::V4(SWAN), IpAddr::V4(OURS), PING)
            .map_err(|e| e.context(format!("ping {n} from charon's side")))?;
    }
    let answered = driver.call(|h| h.echo_answered.len());
    anyhow::ensure!(
        answered >= before + usize::from(PINGS),
        "we answered {} echo requests, expected {PINGS}",
        answered - before
    );
    Ok(())
}

// --- we initiate ----------------------------------------------------------------

fn we_initiate(aead: Aead) {
    let t = Interop::start(aead);
    let sa = t.connect();
    t.esp_both_ways(1, t.current_child());

    close(&t, sa);
}

/// Our `close`: charon sees the Delete and has no SAs left; we report the IKE
/// SA gone with `Failure::Closed`.
fn close(t: &Interop, sa: SaHandle) {
    t.driver
        .call(move |h| h.endpoint().close(Instant::now(), sa));
    let r = process::wait_until("charon: no SAs left after our close", WAIT, || {
        t.swan.list_sas().is_ok_and(|sas| sas.is_empty())
    });
    t.ok("our close", r);
    let reason = t.wait_seen("our IKE SA deleted", move |e| match e {
        Seen::IkeDeleted { sa: s, reason } if *s == sa => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason, Failure::Closed);
}

#[test]
fn we_initiate_aes256gcm16() {
    we_initiate(AES);
}

#[test]
fn we_initiate_chacha20poly1305() {
    we_initiate(CHACHA);
}

// --- strongSwan initiates -------------------------------------------------------

fn strongswan_initiates(aead: Aead) {
    let t = Interop::start(aead);
    let r = t.swan.initiate();
    t.ok("swanctl --initiate --child oe", r);
    let sa = t.check_established(false);
    let (id, null_auth, answered) = t.wait_seen("AuthorizePeer for charon", |e| match e {
        Seen::Authorize {
            id,
            null_auth,
            answered,
            ..
        } => Some((id.clone(), *null_auth, *answered)),
        _ => None,
    });
    assert_eq!(
        (id, null_auth, answered),
        (Identity::Ipv4(SWAN), false, true)
    );
    let child = t.current_child();
    t.esp_both_ways(1, child);

    // strongSwan's delete of the IKE SA, seen by us.
    let r = t.swan.terminate();
    t.ok("swanctl --terminate --ike oe", r);
    let spis = t.wait_seen("our CHILD SA deleted by the peer", |e| match e {
        Seen::ChildDeleted { spis, .. } => Some(*spis),
        _ => None,
    });
    assert_eq!(spis, child);
    let reason = t.wait_seen("our IKE SA deleted by the peer", move |e| match e {
        Seen::IkeDeleted { sa: s, reason } if *s == sa => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason, Failure::DeletedByPeer);
    let left = t.driver.call(|h| (h.inbound.len(), h.outbound_spi()));
    assert_eq!(left, (0, None), "ESP SAs removed");
}

#[test]
fn strongswan_initiates_aes256gcm16() {
    strongswan_initiates(AES);
}

#[test]
fn strongswan_initiates_chacha20poly1305() {
    strongswan_initiates(CHACHA);
}

// --- CHILD SA rekeys -------------------------------------------------------------

/// Waits for our side to report the rekey of `old` and for charon to list the
/// new pair as its only CHILD_SA; returns the new pair.
fn child_rekeyed(t: &Interop, old: ChildSpis, who: &str) -> ChildSpis {
    let new = t.wait_seen(
        &format!("our ChildSaRekeyed ({who} rekeyed)"),
        move |e| match e {
            Seen::ChildRekeyed { old: o, new, .. } if *o == old => Some(*new),
            _ => None,
        },
    );
    assert_ne!(new, old);
    // charon may list the old pair a little longer (REKEYED, or DELETED while
    // `delete_rekeyed_delay` keeps its inbound SA), but not as INSTALLED.
    let spi_in = hex_spi(new.outbound);
    t.wait_swan(
        &format!("charon: only the new CHILD_SA installed ({who} rekeyed)"),
        |sa| {
            let mut installed = sa.children.iter().filter(|c| c.state == "INSTALLED");
            matches!((installed.next(), installed.next()), (Some(c), None) if c.spi_in == spi_in)
        },
    );
    t.wait_seen(
        &format!("our old CHILD SA deleted ({who} rekeyed)"),
        move |e| match e {
            Seen::ChildDeleted { spis, .. } if *spis == old => Some(()),
            _ => None,
        },
    );
    new
}

/// Ours (CREATE_CHILD_SA with N(REKEY_SA), PFS with X25519) on the SA we
/// initiated, then our delete of the new CHILD SA: charon keeps the IKE SA.
fn child_rekey_by_us(aead: Aead) {
    let t = Interop::start(aead);
    let sa = t.connect();
    let first = t.current_child();
    t.esp_both_ways(1, first);

    t.driver
        .call(move |h| h.endpoint().rekey_child(Instant::now(), sa, first.inbound));
    let second = child_rekeyed(&t, first, "we");
    t.esp_both_ways(2, second);

    t.driver.call(move |h| {
        h.endpoint()
            .delete_child(Instant::now(), sa, second.inbound)
    });
    t.wait_swan("charon: CHILD_SA gone after our delete_child", |sa| {
        sa.children.iter().all(|c| c.state != "INSTALLED")
    });
    t.wait_seen("our CHILD SA deleted", move |e| match e {
        Seen::ChildDeleted { spis, .. } if *spis == second => Some(()),
        _ => None,
    });
    let left = t.driver.call(|h| (h.inbound.len(), h.outbound_spi()));
    assert_eq!(left, (0, None), "ESP SAs removed");
}

/// strongSwan's (`swanctl --rekey --child`) on the SA it initiated, then its
/// delete of the new CHILD SA (`swanctl --terminate --child`).
fn child_rekey_by_strongswan(aead: Aead) {
    let t = Interop::start(aead);
    let r = t.swan.initiate();
    t.ok("swanctl --initiate --child oe", r);
    t.check_established(false);
    let first = t.current_child();
    t.esp_both_ways(1, first);

    let r = t.swan.rekey_child();
    t.ok("swanctl --rekey --child oe", r);
    let second = child_rekeyed(&t, first, "strongSwan");
    t.esp_both_ways(2, second);

    terminate_child(&t, second);
}

/// `swanctl --terminate --child oe`: we see the delete and drop the ESP SAs;
/// charon keeps the IKE SA.
fn terminate_child(t: &Interop, child: ChildSpis) {
    let r = t
        .swan
        .swanctl(&["--terminate", "--child", "oe", "--timeout", "10"]);
    t.ok("swanctl --terminate --child oe", r);
    t.wait_seen("our CHILD SA deleted by the peer", move |e| match e {
        Seen::ChildDeleted { spis, .. } if *spis == child => Some(()),
        _ => None,
    });
    let left = t.driver.call(|h| (h.inbound.len(), h.outbound_spi()));
    assert_eq!(left, (0, None), "ESP SAs removed");
    t.wait_swan("charon: IKE SA without CHILD_SA", |sa| {
        sa.children.is_empty()
    });
}

#[test]
fn child_rekey_by_us_aes256gcm16() {
    child_rekey_by_us(AES);
}

#[test]
fn child_rekey_by_us_chacha20poly1305() {
    child_rekey_by_us(CHACHA);
}

#[test]
fn child_rekey_by_strongswan_aes256gcm16() {
    child_rekey_by_strongswan(AES);
}

#[test]
fn child_rekey_by_strongswan_chacha20poly1305() {
    child_rekey_by_strongswan(CHACHA);
}

// --- IKE SA rekeys ---------------------------------------------------------------

/// Waits for our IkeSaRekeyed and for charon to list one IKE SA with SPIs
/// other than `before`'s; returns charon's new IKE SA.
fn ike_rekeyed(t: &Interop, sa: SaHandle, before: &IkeSa, who: &str) -> IkeSa {
    t.wait_seen(
        &format!("our IkeSaRekeyed ({who} rekeyed)"),
        move |e| match e {
            Seen::IkeRekeyed { sa: s } if *s == sa => Some(()),
            _ => None,
        },
    );
    let old_spi = before.initiator_spi.clone();
    t.wait_swan(
        &format!("charon: only the new IKE SA ({who} rekeyed)"),
        |sa| sa.initiator_spi != old_spi && sa.children.iter().any(|c| c.state == "INSTALLED"),
    )
}

/// Whether charon's IKE SA `ike` holds our CHILD SA pair `child`, installed.
fn carries(ike: &IkeSa, child: ChildSpis) -> bool {
    ike.children.iter().any(|c| {
        c.state == "INSTALLED"
            && c.spi_in == hex_spi(child.outbound)
            && c.spi_out == hex_spi(child.inbound)
    })
}

/// Ours on the SA we initiated: the CHILD SA moves to the new IKE SA and
/// keeps working; then our `close` goes over the new IKE SA.
fn ike_rekey_by_us(aead: Aead) {
    let t = Interop::start(aead);
    let sa = t.connect();
    let child = t.current_child();
    t.esp_both_ways(1, child);
    let first = t.wait_swan("charon: the first IKE SA", |_| true);

    t.driver
        .call(move |h| h.endpoint().rekey_ike(Instant::now(), sa));
    let second = ike_rekeyed(&t, sa, &first, "we");
    assert!(carries(&second, child), "{second:?}");
    t.esp_both_ways(2, child);

    close(&t, sa);
}

/// strongSwan's on the SA it initiated; then its delete of the CHILD SA and
/// our `close`, both over the new IKE SA.
fn ike_rekey_by_strongswan(aead: Aead) {
    let t = Interop::start(aead);
    let r = t.swan.initiate();
    t.ok("swanctl --initiate --child oe", r);
    let sa = t.check_established(false);
    let child = t.current_child();
    t.esp_both_ways(1, child);
    let first = t.wait_swan("charon: the first IKE SA", |_| true);

    let r = t.swan.rekey_ike();
    t.ok("swanctl --rekey --ike oe", r);
    let second = ike_rekeyed(&t, sa, &first, "strongSwan");
    assert!(carries(&second, child), "{second:?}");
    t.esp_both_ways(2, child);

    terminate_child(&t, child);
    close(&t, sa);
}

#[test]
fn ike_rekey_by_us_aes256gcm16() {
    ike_rekey_by_us(AES);
}

#[test]
fn ike_rekey_by_us_chacha20poly1305() {
    ike_rekey_by_us(CHACHA);
}

#[test]
fn ike_rekey_by_strongswan_aes256gcm16() {
    ike_rekey_by_strongswan(AES);
}

#[test]
fn ike_rekey_by_strongswan_chacha20poly1305() {
    ike_rekey_by_strongswan(CHACHA);
}

// --- ESP alone (no IKE engine) ------------------------------------------------------

/// Our ESP SAs against libipsec without our IKE: charon "swan" (A) negotiates
/// with a second charon "stand-in" at our address (B), which logs its KEYMAT;
/// the stand-in is killed (SIGKILL: no Delete reaches A) and our driver takes
/// over its address, SPIs and keys.
#[allow(
    clippy::panic,
    reason = "a test helper: failing the test with context is its job"
)]
fn esp_only(aead: Aead) {
    strongswan::require_charon();
    let a = Netns::new("swan").expect("netns A");
    let b = Netns::new("standin").expect("netns B");
    veth(&a, &format!("{SWAN}/24"), &b, &format!("{OURS}/24")).expect("veth");
    let files = tempfile::tempdir().expect("tempdir");
    let ka = Ed25519Key::generate(files.path(), "swan").expect("pki");
    let kb = Ed25519Key::generate(files.path(), "standin").expect("pki");
    let swan = Charon::start(&a, "swan", charon_config(aead, &ka, kb.public_pem.clone()))
        .expect("charon in A");
    let mut cb = CharonConfig::new(&OURS.to_string(), &SWAN.to_string());
    cb.local_key = Some(kb);
    cb.remote_pubkey = Some(ka.public_pem.clone());
    cb.local_id = Some(OURS.to_string());
    cb.remote_id = Some(SWAN.to_string());
    cb.local_ts = vec![format!("{OURS}/32")];
    cb.remote_ts = vec![format!("{SWAN}/32")];
    cb.proposals = vec![format!("{}-prfsha256-x25519", aead.proposal)];
    cb.esp_proposals = vec![format!("{}-x25519", aead.proposal)];
    cb.log_levels = CharonConfig::levels(&[("default", 1), ("ike", 1), ("chd", 4)]);
    let standin = Charon::start(&b, "standin", cb).expect("charon in B");

    swan.initiate().expect("swanctl --initiate");
    let sa = swan.wait_established(WAIT).expect("swan established");
    let theirs = standin
        .wait_established(WAIT)
        .expect("stand-in established");
    let child = &theirs.children[0];
    assert_eq!((child.encr_alg.as_str(), child.esn), (aead.listed, false));
    let spis = ChildSpis {
        inbound: parse_spi(&child.spi_in),
        outbound: parse_spi(&child.spi_out),
    };
    // The stand-in responded: the initiator's keys protect packets to it.
    let log = standin.log();
    let key = |label: &str| {
        let bytes = strongswan::log_secret(&log, label)
            .unwrap_or_else(|| panic!("{label} not in the stand-in's log"));
        KeyAndSalt::from_slice(&bytes).expect("32 + 4 bytes")
    };
    let (inbound_key, outbound_key) = (
        key("encryption initiator key"),
        key("encryption responder key"),
    );

    let pid = standin.pid().to_string();
    process::run(Command::new("kill").args(["-KILL", &pid]), WAIT).expect("kill -KILL charon");
    process::wait_until("the stand-in's ipsec0 to go", WAIT, || {
        b.ip(&["link", "show", "ipsec0"]).is_err()
    })
    .expect("stand-in gone");
    drop(standin);

    let driver = Driver::start(&b, OURS, None).expect("driver in B");
    let remote = SocketAddr::new(IpAddr::V4(SWAN), NATT_PORT);
    driver.call(move |h| {
        h.install(
            spis,
            aead.alg,
            false,
            (&inbound_key, &outbound_key),
            LifetimeLimits::UNLIMITED,
            remote,
        );
    });
    if let Err(e) = esp_both_ways(&driver, &a, 1) {
        panic!("{e:#}\n\n{}\n{}", driver.summary(), swan.context());
    }
    let after = swan.wait_established(WAIT).expect("swan still up");
    assert_eq!(after.initiator_spi, sa.initiator_spi);
    let c = &after.children[0];
    assert!(c.counter("packets-in") >= u64::from(2 * PINGS), "{c:?}");
    assert!(c.counter("packets-out") >= u64::from(2 * PINGS), "{c:?}");
    drop(driver);
}

#[test]
fn esp_only_aes256gcm16() {
    esp_only(AES);
}

#[test]
fn esp_only_chacha20poly1305() {
    esp_only(CHACHA);
}

// --- captured strongSwan requests (no root needed) ------------------------------------

/// `core/tests/data/<name>`.
#[allow(
    clippy::panic,
    reason = "a test helper: failing the test with context is its job"
)]
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A `name = hex` value from `strongswan-interop-keys.txt`.
#[allow(
    clippy::panic,
    reason = "a test helper: failing the test with context is its job"
)]
fn fixture_hex(name: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture("strongswan-interop-keys.txt")).expect("UTF-8");
    let hex = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{name} not in strongswan-interop-keys.txt"));
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Opens a captured charon request with our SK cipher (`AeadKey`, AES-256-GCM)
/// and checks the header and the inner payload types.
#[allow(
    clippy::panic,
    reason = "a test helper: failing the test with context is its job"
)]
fn open_captured(
    file: &str,
    key: &str,
    exchange: ExchangeType,
    payloads: &[PayloadType],
) -> Message {
    let bytes = fixture(file);
    let material = KeyAndSalt::from_slice(&fixture_hex(key)).expect("32 + 4 bytes");
    let cipher = AeadKey::new(AeadAlg::Aes256Gcm, Provider::default(), &material);
    let m = Message::parse_protected(&bytes, &cipher).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(m.header.exchange, exchange, "{file}");
    assert!(
        m.header.flags.initiator() && !m.header.flags.response(),
        "{file}"
    );
    let types: Vec<_> = m.payloads.iter().map(Payload::payload_type).collect();
    assert_eq!(types, payloads, "{file}");
    m
}

#[allow(
    clippy::panic,
    reason = "a test helper: failing the test with context is its job"
)]
fn sa_proposal(m: &Message) -> &Proposal {
    let Some(Payload::Sa(sa)) = m.payload(PayloadType::SA) else {
        panic!("no SA payload")
    };
    assert_eq!(sa.proposals.len(), 1);
    &sa.proposals[0]
}

#[allow(
    clippy::panic,
    reason = "a test helper: failing the test with context is its job"
)]
fn check_x25519_ke(m: &Message) {
    let Some(Payload::Ke(ke)) = m.payload(PayloadType::KE) else {
        panic!("no KE payload")
    };
    assert_eq!((ke.group, ke.data.len()), (DhGroup::CURVE25519, 32));
}

/// charon's CHILD SA rekey request: N(REKEY_SA) naming the old SA, an ESP
/// proposal with X25519 (PFS: what our own rekey_child must send too), no ESN.
#[test]
fn captured_strongswan_rekey_child_request() {
    use PayloadType as P;
    let m = open_captured(
        "strongswan-interop-create_child_sa-rekey_child-req.bin",
        "rekey_child_sk_ei",
        ExchangeType::CREATE_CHILD_SA,
        &[P::NOTIFY, P::SA, P::NONCE, P::KE, P::TSI, P::TSR],
    );
    let rekey = m.notify(NotifyType::REKEY_SA).expect("N(REKEY_SA)");
    assert_eq!(rekey.protocol, ProtocolId::ESP);
    assert_eq!(rekey.spi, fixture_hex("rekey_child_old_spi_i"));
    let p = sa_proposal(&m);
    assert_eq!((p.protocol, p.spi.len()), (ProtocolId::ESP, 4));
    let dh: Vec<_> = p.transforms_of(TransformType::DH).map(|t| t.id).collect();
    assert_eq!(dh, [DhGroup::CURVE25519.0]);
    let esn: Vec<_> = p.transforms_of(TransformType::ESN).map(|t| t.id).collect();
    assert_eq!(esn, [0], "libipsec: no ESN");
    check_x25519_ke(&m);
}

/// charon's IKE SA rekey request: an IKE proposal with its new SPI, Ni, KE.
#[test]
fn captured_strongswan_rekey_ike_request() {
    use PayloadType as P;
    let m = open_captured(
        "strongswan-interop-create_child_sa-rekey_ike-req.bin",
        "rekey_ike_sk_ei",
        ExchangeType::CREATE_CHILD_SA,
        &[P::SA, P::NONCE, P::KE],
    );
    let p = sa_proposal(&m);
    assert_eq!((p.protocol, p.spi.len()), (ProtocolId::IKE, 8));
    check_x25519_ke(&m);
}

/// charon's Deletes: the old CHILD SA after its rekey (ESP, its inbound SPI),
/// the old IKE SA after the IKE SA rekey.
#[test]
fn captured_strongswan_deletes() {
    let m = open_captured(
        "strongswan-interop-informational-delete_esp-req.bin",
        "rekey_child_sk_ei",
        ExchangeType::INFORMATIONAL,
        &[PayloadType::DELETE],
    );
    let Some(Payload::Delete(d)) = m.payload(PayloadType::DELETE) else {
        panic!("no Delete")
    };
    assert_eq!(d.protocol, ProtocolId::ESP);
    assert_eq!(d.spis, fixture_hex("rekey_child_old_spi_i"));
    let m = open_captured(
        "strongswan-interop-informational-delete_ike-req.bin",
        "rekey_ike_sk_ei",
        ExchangeType::INFORMATIONAL,
        &[PayloadType::DELETE],
    );
    let Some(Payload::Delete(d)) = m.payload(PayloadType::DELETE) else {
        panic!("no Delete")
    };
    assert_eq!((d.protocol, d.spi_count()), (ProtocolId::IKE, 0));
}
