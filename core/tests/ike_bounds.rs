//! What one unauthenticated IKE datagram may make the responder allocate
//! (issue 11, item 4, "bounded parsing before the cookie"), measured with a
//! counting global allocator on crafted worst-case datagrams
//! (`oemesh_testkit::attacker::bombs`): a Delete with SPI Size 0 and 65,535
//! SPIs, hundreds of empty payloads, SA payloads of the most proposals,
//! transforms or attributes that fit, TS payloads of 255 selectors each.
//!
//! The bounds, for a datagram of `len` bytes (peak bytes live during the
//! call, above what was live before it):
//!
//! - **parse**: [`Message::parse`] and [`Message::parse_protected`] take at
//!   most `PARSE_PER_BYTE × len + PARSE_SLACK` (4 × len + 4 KiB), whatever
//!   the bytes, and fail with a typed error rather than exceed it; real
//!   messages, the largest offers the codec takes included, fit;
//! - **refused**: [`Endpoint::handle`] on a datagram it refuses (a bomb, as
//!   IKE_SA_INIT on UDP 500 or 4500, or inside the SK payload of an
//!   IKE_AUTH request to a half-open SA) takes the parse bound plus
//!   `ENDPOINT_SLACK` for its own bookkeeping (the error notify it answers
//!   with, the SK key it expands), keeps nothing afterwards, and counts the
//!   datagram as dropped;
//! - **state created**: an IKE_SA_INIT it accepts creates one half-open SA,
//!   which keeps the request and its answer (§2.15 signs both) plus a fixed
//!   record: at most `STATE_PER_BYTE × len + STATE_SLACK`. How many such
//!   SAs there can be is the cookie threshold's and half-open limit's
//!   business (`docs/floods.md`).
//!
//! `cargo test -p oemesh-core --test ike_bounds -- --nocapture` prints the
//! bytes allocated per datagram byte for every bomb.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a measurement test: failing with context is its job"
)]

use std::net::SocketAddr;
use std::time::Instant;

use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};
use oemesh_core::ike::endpoint::{Config, Endpoint, Event, LocalAuth, PeerAuth, TrafficSelectors};
use oemesh_core::ike::message::{
    AddrSelector, Auth, AuthMethod, DhGroup, EncrId, EsnId, ExchangeType, Flags, HashAlgorithm,
    Header, Identity, Ke, Message, Nonce, Notify, NotifyType, Payload, PrfId, Proposal, ProtocolId,
    Sa, Transform, Ts,
};
use oemesh_core::ike::udp_encap::{Datagram, classify};
use oemesh_core::test_util::{Host, Net, Node};
use oemesh_testkit::attacker::bombs::{self, Bomb, SkBomber};
use oemesh_testkit::counting::{Counting, live, measure};

/// The test kit's counting allocator: per thread, so that the tests of this
/// file, running in parallel threads, each measure only their own calls.
#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- the bounds (see the module comment) ----

const PARSE_PER_BYTE: usize = 4;
const PARSE_SLACK: usize = 4096;
const ENDPOINT_SLACK: usize = 2048;
const STATE_PER_BYTE: usize = 4;
const STATE_SLACK: usize = 8 * 1024;

fn parse_bound(len: usize) -> usize {
    PARSE_PER_BYTE * len + PARSE_SLACK
}

fn refused_bound(len: usize) -> usize {
    parse_bound(len) + ENDPOINT_SLACK
}

thread_local! {
    /// Bounds exceeded in this test so far: each test reports them all at
    /// its end, so that one run prints every measurement.
    static OVER: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn check(what: &str, len: usize, peak: usize, bound: usize) {
    #[allow(clippy::cast_precision_loss, reason = "a ratio to print")]
    let ratio = peak as f64 / len as f64;
    eprintln!(
        "{what:<48} {len:>5} bytes -> peak {peak:>11} bytes allocated ({ratio:>9.1} per byte)"
    );
    if peak > bound {
        OVER.with(|o| {
            o.borrow_mut().push(format!(
                "{what}: a {len}-byte datagram made {peak} bytes live at once (bound {bound})"
            ));
        });
    }
}

/// Fails the test if any [`check`] found a bound exceeded.
fn assert_within_bounds() {
    let over = OVER.with(|o| std::mem::take(&mut *o.borrow_mut()));
    assert!(over.is_empty(), "bounds exceeded:\n{}", over.join("\n"));
}

const RESPONDER: &str = "192.0.2.20";
const ATTACKER: &str = "198.51.100.7";

fn responder() -> Endpoint {
    let config = Config::new(
        LocalAuth::Ed25519(Ed25519SigningKey::from_seed(&[2; 32])),
        Identity::Ipv4(RESPONDER.parse().unwrap()),
    );
    Endpoint::new(config, [5; 32])
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Drains what the endpoint has to send and to say; returns the datagrams.
fn drain(ep: &mut Endpoint) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        out.push(t.payload);
    }
    while ep.poll_event().is_some() {}
    out
}

/// The IKE message in a datagram received on `port` (the non-ESP marker
/// taken off on 4500, as the agent does).
fn ike_of(datagram: &[u8], port: u16) -> &[u8] {
    if port == 500 {
        return datagram;
    }
    match classify(datagram) {
        Datagram::Ike(m) => m,
        _ => panic!("not an IKE message"),
    }
}

#[test]
fn parse_of_every_bomb_is_bounded() {
    for bomb in Bomb::ALL {
        let d = bombs::ike_sa_init(0x0a0b_0c0d, bomb);
        let (result, peak, kept) = measure(|| Message::parse(&d).map(drop));
        check(
            &format!("Message::parse, {} bomb", bomb.name()),
            d.len(),
            peak,
            parse_bound(d.len()),
        );
        assert!(kept <= 0, "{}: {kept} bytes kept", bomb.name());
        drop(result);
    }
    assert_within_bounds();
}

#[test]
fn parse_protected_of_every_bomb_is_bounded() {
    for alg in AeadAlg::ALL {
        let key = AeadKey::new(alg, Provider::Ring, &KeyAndSalt::from_bytes([7; 36]));
        let header = Header::new(1, 2, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
        for bomb in Bomb::ALL {
            let d = bombs::sealed(&header, bomb, &key, &[1; 8]).unwrap();
            let (result, peak, _) = measure(|| Message::parse_protected(&d, &key).map(drop));
            check(
                &format!("Message::parse_protected, {} bomb", bomb.name()),
                d.len(),
                peak,
                parse_bound(d.len()),
            );
            drop(result);
        }
    }
    assert_within_bounds();
}

/// Whether the codec refuses `bomb` outright. All but one are: the
/// Transforms bomb is one proposal of 170 transforms, legal (Num Transforms is
/// one octet) and within the bound, which the responder parses and answers
/// with NO_PROPOSAL_CHOSEN.
fn refused_at_parse(bomb: Bomb) -> bool {
    bomb != Bomb::Transforms
}

/// Bombs as IKE_SA_INIT requests from spoofed sources, on 500 and 4500:
/// each is handled within the bound and leaves nothing behind, and those the
/// codec refuses are counted as dropped; the responder then still completes
/// a real IKE_SA_INIT.
#[test]
fn responder_refuses_init_bombs_within_bound() {
    let mut ep = responder();
    let now = Instant::now();
    // Warm the endpoint's queues, as a running one is.
    let warm = bombs::ike_sa_init(1, Bomb::Transforms);
    ep.handle(now, addr(RESPONDER, 500), addr(ATTACKER, 500), &warm);
    drain(&mut ep);
    let mut spi = 100;
    for port in [500, 4500] {
        for bomb in Bomb::ALL {
            spi += 1;
            let ike = bombs::ike_sa_init(spi, bomb);
            let datagram = if port == 500 {
                ike.clone()
            } else {
                bombs::with_non_esp_marker(&ike)
            };
            let dropped = ep.stats().dropped;
            let before = live();
            let ((), peak, _) = measure(|| {
                let msg = ike_of(&datagram, port);
                ep.handle(now, addr(RESPONDER, port), addr(ATTACKER, port), msg);
            });
            let answers = drain(&mut ep);
            let (answered, longest) = (answers.len(), answers.iter().map(Vec::len).max());
            drop(answers);
            // What the endpoint keeps once its answer is sent.
            let kept = live() - before;
            check(
                &format!("Endpoint::handle, {} bomb to {port}", bomb.name()),
                datagram.len(),
                peak,
                refused_bound(datagram.len()),
            );
            let s = ep.stats();
            if refused_at_parse(bomb) {
                assert_eq!(
                    s.dropped,
                    dropped + 1,
                    "{} to {port}: not counted as dropped",
                    bomb.name()
                );
            }
            assert_eq!(
                (s.ike_sas, s.half_open),
                (0, 0),
                "{}: state kept",
                bomb.name()
            );
            assert!(
                answered <= 1 && longest.unwrap_or(0) < 64,
                "{}: answered with {answered} datagrams, the longest of {longest:?} bytes",
                bomb.name()
            );
            assert!(kept <= 0, "{}: {kept} bytes kept", bomb.name());
        }
    }
    // A real initiator still gets its half-open SA.
    let mut real = SkBomber::new(42);
    ep.handle(
        now,
        addr(RESPONDER, 500),
        addr(ATTACKER, 500),
        &real.init_request(None),
    );
    let answers = drain(&mut ep);
    assert_eq!(answers.len(), 1);
    assert_eq!(real.on_init_response(&answers[0]).unwrap(), None);
    assert_eq!(ep.stats().half_open, 1);
    assert_within_bounds();
}

/// An IKE_SA_INIT the responder accepts: what the half-open SA keeps.
#[test]
fn accepted_init_state_is_bounded() {
    let mut ep = responder();
    let now = Instant::now();
    for (i, port) in [500u16, 4500].into_iter().enumerate() {
        let b = SkBomber::new(7 + i as u64);
        let request = b.init_request(None);
        let ((), peak, kept) = measure(|| {
            ep.handle(now, addr(RESPONDER, port), addr(ATTACKER, port), &request);
        });
        let answers = drain(&mut ep);
        assert_eq!(answers.len(), 1, "answered");
        let state_bound = STATE_PER_BYTE * request.len() + STATE_SLACK;
        eprintln!(
            "accepted IKE_SA_INIT on {port}: {} bytes -> {kept} bytes kept (with the queued answer), peak {peak}",
            request.len()
        );
        assert!(
            usize::try_from(kept).unwrap_or(0) <= state_bound,
            "a half-open SA keeps {kept} bytes (bound {state_bound})"
        );
        check(
            &format!("Endpoint::handle, accepted IKE_SA_INIT to {port}"),
            request.len(),
            peak,
            state_bound + parse_bound(request.len()),
        );
    }
    assert_eq!(ep.stats().half_open, 2);
    assert_within_bounds();
}

/// After a real IKE_SA_INIT, bombs sealed with the SA's SK_ei as IKE_AUTH
/// requests: the responder decrypts each and parses what is inside, within
/// the bound. Those the codec refuses are dropped and counted, and the
/// half-open SA stays as it was. One responder and SA per bomb.
#[test]
fn sk_bombs_to_a_half_open_sa_are_bounded() {
    for port in [500u16, 4500] {
        for bomb in Bomb::ALL {
            let mut ep = responder();
            let now = Instant::now();
            let mut b = SkBomber::new(u64::from(port));
            let (local, remote) = (addr(RESPONDER, port), addr(ATTACKER, port));
            let mut init = b.init_request(None);
            if port != 500 {
                init = bombs::with_non_esp_marker(&init);
            }
            ep.handle(now, local, remote, ike_of(&init, port));
            let answers = drain(&mut ep);
            assert_eq!(answers.len(), 1);
            assert_eq!(b.on_init_response(ike_of(&answers[0], port)).unwrap(), None);
            // A refused bomb twice, the first to bring the endpoint's queues
            // to their running size; one the codec takes ends the SA.
            let rounds = if refused_at_parse(bomb) { 2 } else { 1 };
            for round in 1..=rounds {
                let mut d = b.auth_bomb(bomb).unwrap();
                if port != 500 {
                    d = bombs::with_non_esp_marker(&d);
                }
                let dropped = ep.stats().dropped;
                let ((), peak, _) = measure(|| ep.handle(now, local, remote, ike_of(&d, port)));
                drain(&mut ep);
                if round < rounds {
                    continue;
                }
                check(
                    &format!("Endpoint::handle, {} bomb in SK to {port}", bomb.name()),
                    d.len(),
                    peak,
                    refused_bound(d.len()),
                );
                if refused_at_parse(bomb) {
                    let s = ep.stats();
                    assert_eq!(s.dropped, dropped + 1, "{}: not counted", bomb.name());
                    assert_eq!((s.ike_sas, s.half_open), (1, 1), "{}", bomb.name());
                }
            }
        }
    }
    assert_within_bounds();
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_key(file: &str, name: &str) -> KeyAndSalt {
    let text = String::from_utf8(fixture(file)).unwrap();
    let hex = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{name} not in {file}"));
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    KeyAndSalt::from_slice(&bytes).unwrap()
}

/// Real strongSwan messages stay well inside the bound (it refuses no real
/// peer), opened ones included.
#[test]
fn real_messages_fit_the_bound() {
    for prefix in ["strongswan-", "strongswan-chacha-"] {
        for (file, key) in [
            ("ike_sa_init-req", None),
            ("ike_sa_init-resp", None),
            ("ike_auth-req", Some("sk_ei")),
            ("ike_auth-resp", Some("sk_er")),
        ] {
            let bytes = fixture(&format!("{prefix}{file}.bin"));
            let name = format!("{prefix}{file}");
            let (m, peak, _) = measure(|| Message::parse(&bytes));
            m.unwrap_or_else(|e| panic!("{name}: {e}"));
            check(&name, bytes.len(), peak, parse_bound(bytes.len()));
            if let Some(key) = key {
                let alg = if prefix.contains("chacha") {
                    AeadAlg::ChaCha20Poly1305
                } else {
                    AeadAlg::Aes256Gcm
                };
                let cipher = AeadKey::new(
                    alg,
                    Provider::Ring,
                    &fixture_key(&format!("{prefix}keys.txt"), key),
                );
                let (m, peak, _) = measure(|| Message::parse_protected(&bytes, &cipher));
                m.unwrap_or_else(|e| panic!("{name} opened: {e}"));
                check(
                    &format!("{name} opened"),
                    bytes.len(),
                    peak,
                    parse_bound(bytes.len()),
                );
            }
        }
    }
    assert_within_bounds();
}

/// The largest offers the codec takes (64 proposals, its limit), of real
/// proposals: an IKE_SA_INIT offering AES-GCM-256, PRF HMAC-SHA2-256 and
/// Curve25519 64 times, and an IKE_AUTH offering 64 ESP proposals with their
/// SPIs. Both parse, within the bound: its slack is sized for them.
#[test]
fn largest_real_offers_fit() {
    let proposals = |protocol: ProtocolId, spi: &[u8], transforms: &[Transform]| Sa {
        proposals: (1..=64)
            .map(|number| Proposal {
                number,
                protocol,
                spi: spi.to_vec(),
                transforms: transforms.to_vec(),
            })
            .collect(),
    };
    let ike = proposals(
        ProtocolId::IKE,
        &[],
        &[
            Transform::encr(EncrId::AES_GCM_16, Some(256)),
            Transform::prf(PrfId::HMAC_SHA2_256),
            Transform::dh(DhGroup::CURVE25519),
        ],
    );
    let init = Message::new(
        Header::new(1, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0),
        vec![
            Payload::Sa(ike),
            Payload::Ke(Ke {
                group: DhGroup::CURVE25519,
                data: vec![9; 32],
            }),
            Payload::Nonce(Nonce(vec![7; 32])),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                vec![1; 20],
            )),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                vec![2; 20],
            )),
            Payload::Notify(Notify::signature_hash_algorithms(&[
                HashAlgorithm::IDENTITY,
            ])),
        ],
    );
    let mut bytes = Vec::new();
    init.emit(&mut bytes);
    let (parsed, peak, _) = measure(|| Message::parse(&bytes));
    assert_eq!(parsed.unwrap(), init);
    check(
        "IKE_SA_INIT, 64 IKE proposals",
        bytes.len(),
        peak,
        parse_bound(bytes.len()),
    );

    let esp = proposals(
        ProtocolId::ESP,
        &[0xc0, 0, 0, 1],
        &[
            Transform::encr(EncrId::AES_GCM_16, Some(256)),
            Transform::esn(EsnId::ESN),
        ],
    );
    let host = AddrSelector::host("192.0.2.10".parse().unwrap());
    let inner = vec![
        Payload::IdI(Identity::Ipv4("192.0.2.10".parse().unwrap())),
        Payload::Auth(Auth {
            method: AuthMethod::DIGITAL_SIGNATURE,
            data: vec![3; 72],
        }),
        Payload::Sa(esp),
        Payload::TsI(Ts::single(host.clone())),
        Payload::TsR(Ts::single(host)),
    ];
    let key = AeadKey::new(
        AeadAlg::Aes256Gcm,
        Provider::Ring,
        &KeyAndSalt::from_bytes([4; 36]),
    );
    let header = Header::new(1, 2, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
    let mut bytes = Vec::new();
    Message::emit_protected(&header, &inner, &key, &[5; 8], &mut bytes).unwrap();
    let (parsed, peak, _) = measure(|| Message::parse_protected(&bytes, &key));
    assert_eq!(parsed.unwrap().payloads, inner);
    check(
        "IKE_AUTH, 64 ESP proposals, opened",
        bytes.len(),
        peak,
        parse_bound(bytes.len()),
    );
    assert_within_bounds();
}

/// A whole handshake between two endpoints (Ed25519 both ways): what each
/// datagram a side takes makes it allocate, and what `authorize` does.
/// These are the costs of a peer that gets past the cookie; the fuzz target
/// `ike_responder` allows STATE_SLACK for a datagram that is taken.
#[test]
fn handshake_steps_are_bounded() {
    let now = Instant::now();
    let key = |seed| Ed25519SigningKey::from_seed(&[seed; 32]);
    let (a_ip, b_ip) = ("192.0.2.10", RESPONDER);
    let mut a = Endpoint::new(
        Config::new(
            LocalAuth::Ed25519(key(1)),
            Identity::Ipv4(a_ip.parse().unwrap()),
        ),
        [1; 32],
    );
    let mut b = responder();
    let ts = TrafficSelectors {
        local: vec![AddrSelector::host(a_ip.parse().unwrap())],
        remote: vec![AddrSelector::host(b_ip.parse().unwrap())],
    };
    a.connect(
        now,
        a_ip.parse().unwrap(),
        b_ip.parse().unwrap(),
        Some(PeerAuth::ed25519(key(2).public_key())),
        ts,
        now + std::time::Duration::from_secs(5),
    );
    let (mut up_a, mut up_b) = (0, 0);
    {
        let mut ha = Host::new(
            a_ip.parse().unwrap(),
            &mut a,
            |ep: &mut &mut Endpoint, now, e| {
                handle_event(ep, e, &key(2), now, &mut up_a);
            },
        );
        let mut hb = Host::new(
            b_ip.parse().unwrap(),
            &mut b,
            |ep: &mut &mut Endpoint, now, e| {
                handle_event(ep, e, &key(1), now, &mut up_b);
            },
        );
        let mut net = Net::new(now);
        let nodes: &mut [&mut dyn Node] = &mut [&mut ha, &mut hb];
        // One message at a time, checking what each costs the side that takes it.
        net.flush(nodes);
        while let Some(t) = net.pop_due() {
            let to = net.route(nodes, &t).expect("a node at the address");
            let len = ike_of(&t.payload, t.local.port()).len();
            let ((), peak, _) = measure(|| net.deliver_to(nodes, to, &t));
            check(
                &format!(
                    "handshake: {} takes a {len}-byte message",
                    ["initiator", "responder"][to]
                ),
                len,
                peak,
                parse_bound(len) + STATE_SLACK,
            );
            net.flush(nodes);
        }
    }
    assert_eq!(up_a + up_b, 2, "the handshake completed on both sides");
    assert_within_bounds();
}

/// Answers AuthorizePeer with `peer`'s key (checking what `authorize`
/// costs) and counts established IKE SAs.
fn handle_event(
    ep: &mut Endpoint,
    e: Event,
    peer: &Ed25519SigningKey,
    now: Instant,
    established: &mut u32,
) {
    match e {
        Event::AuthorizePeer { sa, .. } => {
            let auth = PeerAuth::ed25519(peer.public_key());
            let ((), peak, _) = measure(|| ep.authorize(now, sa, Some(auth)));
            eprintln!("handshake: authorize -> peak {peak} bytes");
            assert!(peak <= STATE_SLACK, "authorize: {peak} bytes");
        }
        Event::IkeSaEstablished { .. } => *established += 1,
        _ => {}
    }
}
