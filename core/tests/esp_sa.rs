//! ESP SAs end to end: encapsulate → decapsulate for both AEADs, both providers,
//! with and without ESN; every rejection reason is returned and counted; the
//! window at the ESN wrap of the low 32 bits; lifetimes.

use std::time::{Duration, Instant};

use oemesh_core::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};
use oemesh_core::esp::{
    DecapError, EncapError, HEADER_LEN, InboundCounters, InboundSa, InnerProtocol, LifetimeEvent,
    LifetimeLimits, LifetimeState, Limits, MAX_TRAILER_LEN, OutboundSa, SaConfig, encapsulated_len,
    peek_spi,
};

const SPI: u32 = 0xc0ff_ee01;

fn material() -> KeyAndSalt {
    KeyAndSalt::from_bytes(std::array::from_fn(|i| i as u8 * 7 + 1))
}

fn config(alg: AeadAlg, provider: Provider, esn: bool) -> SaConfig {
    SaConfig {
        spi: SPI,
        alg,
        provider,
        esn,
        limits: LifetimeLimits::UNLIMITED,
    }
}

fn pair(alg: AeadAlg, out: Provider, inb: Provider, esn: bool) -> (OutboundSa, InboundSa) {
    let now = Instant::now();
    (
        OutboundSa::new(config(alg, out, esn), &material(), now),
        InboundSa::new(config(alg, inb, esn), &material(), now),
    )
}

/// A fake IP packet of `len` bytes with the version nibble set.
fn inner(len: usize, version: u8) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| (i * 31 + 5) as u8).collect();
    p[0] = version << 4 | 5;
    p
}

/// Encapsulates `packet` through `sa` into a fresh buffer; returns the ESP packet.
fn send(sa: &mut OutboundSa, packet: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN + packet.len() + MAX_TRAILER_LEN];
    buf[HEADER_LEN..HEADER_LEN + packet.len()].copy_from_slice(packet);
    let len = sa.encapsulate(&mut buf, packet.len()).expect("encapsulate");
    assert_eq!(len, encapsulated_len(packet.len()));
    assert_eq!(len % 4, 0, "ESP packet is 4-byte aligned");
    buf.truncate(len);
    buf
}

fn all_combinations() -> Vec<(AeadAlg, Provider, Provider, bool)> {
    let mut v = vec![];
    for alg in AeadAlg::ALL {
        for out in Provider::ALL {
            for inb in Provider::ALL {
                for esn in [false, true] {
                    v.push((alg, out, inb, esn));
                }
            }
        }
    }
    v
}

#[test]
fn round_trip_all_aeads_providers_and_esn() {
    for (alg, out, inb, esn) in all_combinations() {
        let (mut tx, mut rx) = pair(alg, out, inb, esn);
        for (i, len) in [
            1usize, 2, 3, 4, 5, 20, 40, 41, 42, 43, 576, 1280, 1400, 1500,
        ]
        .into_iter()
        .enumerate()
        {
            let version = if i % 2 == 0 { 4 } else { 6 };
            let original = inner(len, version);
            let mut esp = send(&mut tx, &original);
            assert_eq!(peek_spi(&esp), Some(SPI));
            assert_eq!(
                esp[4..8],
                (i as u32 + 1).to_be_bytes(),
                "sequence numbers start at 1"
            );
            assert_ne!(esp[HEADER_LEN..HEADER_LEN + len], original[..], "encrypted");
            let d = rx
                .decapsulate(&mut esp)
                .unwrap_or_else(|e| panic!("{alg:?} {out:?}->{inb:?} esn={esn} len={len}: {e}"));
            assert_eq!(esp[d.inner.clone()], original[..]);
            assert_eq!(d.seq, i as u64 + 1);
            assert_eq!(
                d.protocol,
                if version == 4 {
                    InnerProtocol::Ipv4
                } else {
                    InnerProtocol::Ipv6
                }
            );
        }
        assert_eq!(rx.counters().packets, 14);
        assert_eq!(tx.counters().packets, 14);
        assert_eq!(rx.counters().bytes, tx.counters().bytes);
    }
}

#[test]
fn esn_and_non_esn_do_not_interoperate() {
    // The AAD differs (RFC 4106 §5), so a mismatched ESN setting fails the ICV.
    let now = Instant::now();
    let mut tx = OutboundSa::new(
        config(AeadAlg::Aes256Gcm, Provider::Ring, true),
        &material(),
        now,
    );
    let mut rx = InboundSa::new(
        config(AeadAlg::Aes256Gcm, Provider::Ring, false),
        &material(),
        now,
    );
    let mut esp = send(&mut tx, &inner(100, 4));
    assert_eq!(
        rx.decapsulate(&mut esp),
        Err(DecapError::AuthenticationFailed)
    );
}

#[test]
fn encapsulate_refuses_bad_input() {
    let (mut tx, _) = pair(
        AeadAlg::ChaCha20Poly1305,
        Provider::Ring,
        Provider::Ring,
        false,
    );
    let mut small = vec![0x45; encapsulated_len(100) - 1];
    assert_eq!(
        tx.encapsulate(&mut small, 100),
        Err(EncapError::BufferTooSmall {
            needed: encapsulated_len(100),
            available: encapsulated_len(100) - 1
        })
    );
    let mut not_ip = vec![0u8; 200];
    assert_eq!(tx.encapsulate(&mut not_ip, 100), Err(EncapError::NotIp));
    assert_eq!(tx.encapsulate(&mut not_ip, 0), Err(EncapError::NotIp));
    // Refusals do not burn sequence numbers.
    assert_eq!(tx.last_seq(), 0);
}

fn counters_with(f: impl FnOnce(&mut InboundCounters)) -> InboundCounters {
    let mut c = InboundCounters::default();
    f(&mut c);
    c
}

#[test]
fn replay_reorder_and_too_old() {
    for (alg, out, inb, esn) in all_combinations() {
        let (mut tx, mut rx) = pair(alg, out, inb, esn);
        let packets: Vec<Vec<u8>> = (0..1100).map(|_| send(&mut tx, &inner(60, 4))).collect();
        // Deliver 1, then 1100, then reorder within the window.
        rx.decapsulate(&mut packets[0].clone()).unwrap();
        rx.decapsulate(&mut packets[1099].clone()).unwrap();
        // Seq 1100 - 1023 = 77 is the oldest inside the window.
        for i in (76..1099).rev() {
            rx.decapsulate(&mut packets[i].clone()).unwrap();
        }
        let accepted = rx.counters().packets;
        assert_eq!(accepted, 2 + 1023);
        // Too old: seq 76 (index 75), and 2. With ESN, low bits left of the
        // window are inferred to be from the next 2^32 subspace (RFC 4303
        // Appendix A2.2), so they fail the ICV instead.
        if esn {
            assert_eq!(
                rx.decapsulate(&mut packets[75].clone()),
                Err(DecapError::AuthenticationFailed)
            );
            assert_eq!(
                rx.decapsulate(&mut packets[1].clone()),
                Err(DecapError::AuthenticationFailed)
            );
        } else {
            assert_eq!(
                rx.decapsulate(&mut packets[75].clone()),
                Err(DecapError::OutsideWindow { seq: 76 })
            );
            assert_eq!(
                rx.decapsulate(&mut packets[1].clone()),
                Err(DecapError::OutsideWindow { seq: 2 })
            );
        }
        // Replays of the newest and of a reordered one.
        assert_eq!(
            rx.decapsulate(&mut packets[1099].clone()),
            Err(DecapError::Replayed { seq: 1100 })
        );
        assert_eq!(
            rx.decapsulate(&mut packets[500].clone()),
            Err(DecapError::Replayed { seq: 501 })
        );
        let c = *rx.counters();
        assert_eq!(
            c,
            counters_with(|c| {
                c.packets = accepted;
                c.bytes = accepted * 60;
                if esn {
                    c.auth_failed = 2;
                } else {
                    c.outside_window = 2;
                }
                c.replayed = 2;
            })
        );
    }
}

#[test]
fn truncated_tampered_and_wrong_spi() {
    for (alg, out, inb, esn) in all_combinations() {
        let (mut tx, mut rx) = pair(alg, out, inb, esn);
        let good = send(&mut tx, &inner(100, 4));
        let mut expected = InboundCounters::default();

        for len in [0, 3, 8, 16, 33] {
            assert_eq!(
                rx.decapsulate(&mut good[..len].to_vec()),
                Err(DecapError::Truncated { len })
            );
            expected.truncated += 1;
        }
        // Cut the ICV short: still long enough to parse, fails authentication.
        assert_eq!(
            rx.decapsulate(&mut good[..good.len() - 1].to_vec()),
            Err(DecapError::AuthenticationFailed)
        );
        expected.auth_failed += 1;

        let mut wrong_spi = good.clone();
        wrong_spi[3] ^= 1;
        assert!(matches!(
            rx.decapsulate(&mut wrong_spi),
            Err(DecapError::WrongSpi { .. })
        ));
        expected.wrong_spi += 1;

        // Any flipped bit in the sequence number (AAD), IV, ciphertext or ICV.
        // (Turning seq 1 into 0 would be caught by the window instead.)
        for pos in [
            6,
            8,
            15,
            16,
            60,
            good.len() - 17,
            good.len() - 16,
            good.len() - 1,
        ] {
            let mut bad = good.clone();
            bad[pos] ^= 0x01;
            assert_eq!(
                rx.decapsulate(&mut bad),
                Err(DecapError::AuthenticationFailed),
                "byte {pos}"
            );
            expected.auth_failed += 1;
        }
        assert_eq!(*rx.counters(), expected);
        // A failed packet does not move the window: the genuine one still passes.
        rx.decapsulate(&mut good.clone()).unwrap();
    }
}

/// Seals a hand-made payload (inner packet plus a trailer of our choosing)
/// with the SA's key, as a misbehaving but keyed peer would.
fn craft(alg: AeadAlg, seq: u32, payload: &[u8]) -> Vec<u8> {
    let key = AeadKey::new(alg, Provider::Ring, &material());
    let mut p = vec![];
    p.extend_from_slice(&SPI.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&u64::from(seq).to_be_bytes());
    let mut body = payload.to_vec();
    key.seal_append(&p[8..16], &p[..8], &mut body)
        .expect("seal");
    p.extend_from_slice(&body);
    p
}

#[test]
fn authentic_but_malformed_trailers() {
    for alg in AeadAlg::ALL {
        let (_, mut rx) = pair(alg, Provider::Ring, Provider::RustCrypto, false);
        let cases: [(&[u8], DecapError); 5] = [
            (&[0x45, 0x00, 1, 3, 2, 4], DecapError::BadPadding),
            (&[0x45, 0x00, 9, 4], DecapError::BadPadding),
            (&[0x45, 0x00, 0, 17], DecapError::BadNextHeader(17)),
            (&[0x45, 0x00, 0, 59], DecapError::Dummy),
            (&[1, 2, 3, 4, 5, 6, 8, 7, 4], DecapError::BadPadding),
        ];
        for (seq, (payload, err)) in cases.into_iter().enumerate() {
            let mut p = craft(alg, seq as u32 + 1, payload);
            assert_eq!(rx.decapsulate(&mut p), Err(err));
        }
        let c = *rx.counters();
        assert_eq!(
            (c.bad_padding, c.bad_next_header, c.dummy, c.packets),
            (3, 1, 1, 0)
        );
        // Authentic packets move the window even if their contents are bad.
        assert_eq!(
            rx.decapsulate(&mut craft(alg, 1, &[0x45, 0, 4])),
            Err(DecapError::Replayed { seq: 1 })
        );
        // And a well-formed hand-made one passes, with pad bytes 1, 2.
        let mut ok = craft(alg, 9, &[0x45, 1, 2, 2, 4]);
        let d = rx.decapsulate(&mut ok).unwrap();
        assert_eq!(ok[d.inner], [0x45]);
    }
}

#[test]
fn esn_window_across_the_low_32_bit_wrap() {
    for (alg, out, inb, _) in all_combinations() {
        let (mut tx, mut rx) = pair(alg, out, inb, true);
        // Bring both ends close to 2^32 (a jump of < 2^32 - window from 0 is
        // inferred as forward).
        tx.set_last_seq_for_test(0xffff_fbff);
        rx.decapsulate(&mut send(&mut tx, &inner(40, 4))).unwrap();
        tx.set_last_seq_for_test(0xffff_ffef);
        // 0xffff_fff0 ..= 0x1_0000_000f
        let packets: Vec<Vec<u8>> = (0..32).map(|_| send(&mut tx, &inner(40, 4))).collect();
        assert_eq!(
            packets[16][4..8],
            [0, 0, 0, 0],
            "only the low 32 bits are sent"
        );
        // Deliver the post-wrap half first, then the pre-wrap half (reordered
        // across the wrap), then replay both halves.
        for p in packets[16..].iter().chain(&packets[..16]) {
            let d = rx.decapsulate(&mut p.clone()).unwrap();
            assert_eq!(
                d.seq & 0xffff_ffff,
                u64::from(u32::from_be_bytes(p[4..8].try_into().unwrap()))
            );
        }
        assert_eq!(rx.window().top(), 0x1_0000_000f);
        assert_eq!(
            rx.decapsulate(&mut packets[3].clone()),
            Err(DecapError::Replayed { seq: 0xffff_fff3 })
        );
        assert_eq!(
            rx.decapsulate(&mut packets[20].clone()),
            Err(DecapError::Replayed { seq: 0x1_0000_0004 })
        );
        assert_eq!(rx.counters().packets, 33);
    }
}

#[test]
fn sequence_number_exhaustion() {
    let (mut tx, mut rx) = pair(AeadAlg::Aes256Gcm, Provider::Ring, Provider::Ring, false);
    tx.set_last_seq_for_test(u64::from(u32::MAX) - 1);
    let last = rx.decapsulate(&mut send(&mut tx, &inner(40, 4))).unwrap();
    assert_eq!(last.seq, u64::from(u32::MAX));
    let mut buf = vec![0x45u8; 200];
    assert_eq!(
        tx.encapsulate(&mut buf, 40),
        Err(EncapError::SequenceExhausted)
    );
    assert_eq!(tx.counters().refused, 1);
    // With ESN the same point is not the end.
    let (mut tx, _) = pair(AeadAlg::Aes256Gcm, Provider::Ring, Provider::Ring, true);
    tx.set_last_seq_for_test(u64::from(u32::MAX));
    let p = send(&mut tx, &inner(40, 4));
    assert_eq!(p[4..8], [0, 0, 0, 0]);
    assert_eq!(tx.last_seq(), 1 << 32);
}

#[test]
fn lifetimes_soft_then_hard_by_packets_and_bytes() {
    let now = Instant::now();
    let limits = LifetimeLimits {
        soft: Limits {
            packets: Some(3),
            ..Limits::UNLIMITED
        },
        hard: Limits {
            bytes: Some(500),
            ..Limits::UNLIMITED
        },
    };
    let cfg = SaConfig {
        limits,
        ..config(AeadAlg::ChaCha20Poly1305, Provider::Ring, false)
    };
    let mut tx = OutboundSa::new(cfg, &material(), now);
    let mut rx = InboundSa::new(cfg, &material(), now);
    let mut events = vec![];
    let mut rx_events = vec![];
    for _ in 0..5 {
        let mut p = send(&mut tx, &inner(100, 4));
        events.push(tx.poll_event());
        rx.decapsulate(&mut p).unwrap();
        rx_events.push(rx.poll_event());
    }
    let want = vec![
        None,
        None,
        Some(LifetimeEvent::SoftExpired),
        None,
        Some(LifetimeEvent::HardExpired),
    ];
    assert_eq!(events, want);
    assert_eq!(rx_events, want);
    assert_eq!(tx.lifetime().state(), LifetimeState::Expired);
    let mut buf = vec![0x45u8; 200];
    assert_eq!(tx.encapsulate(&mut buf, 40), Err(EncapError::Expired));
    // The inbound SA is dead too: packets are refused and counted.
    let mut late = craft(AeadAlg::ChaCha20Poly1305, 6, &[0x45, 0, 4]);
    assert_eq!(rx.decapsulate(&mut late), Err(DecapError::Expired));
    assert_eq!(rx.counters().expired, 1);
}

#[test]
fn lifetimes_by_time() {
    let t0 = Instant::now();
    let limits = LifetimeLimits {
        soft: Limits {
            time: Some(Duration::from_secs(3000)),
            ..Limits::UNLIMITED
        },
        hard: Limits {
            time: Some(Duration::from_secs(3600)),
            ..Limits::UNLIMITED
        },
    };
    let cfg = SaConfig {
        limits,
        ..config(AeadAlg::Aes256Gcm, Provider::RustCrypto, true)
    };
    let mut tx = OutboundSa::new(cfg, &material(), t0);
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(3000)));
    tx.handle_timeout(t0 + Duration::from_secs(2999));
    assert_eq!(tx.poll_event(), None);
    tx.handle_timeout(t0 + Duration::from_secs(3000));
    assert_eq!(tx.poll_event(), Some(LifetimeEvent::SoftExpired));
    assert_eq!(tx.lifetime().state(), LifetimeState::Rekey);
    // Still usable while rekeying.
    send(&mut tx, &inner(40, 6));
    assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(3600)));
    tx.handle_timeout(t0 + Duration::from_secs(3601));
    assert_eq!(tx.poll_event(), Some(LifetimeEvent::HardExpired));
    assert_eq!(tx.poll_event(), None);
    assert_eq!(tx.poll_timeout(), None);
    // Crossing both at once reports the hard limit.
    let mut rx = InboundSa::new(cfg, &material(), t0);
    rx.handle_timeout(t0 + Duration::from_secs(9999));
    assert_eq!(rx.poll_event(), Some(LifetimeEvent::HardExpired));
}
