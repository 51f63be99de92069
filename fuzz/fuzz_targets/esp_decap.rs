//! Arbitrary bytes into an inbound ESP SA's decapsulation never panic, and what
//! it accepts lies inside the buffer.
//!
//! The first byte picks the AEAD (bit 0), ESN (bit 1), the provider (bit 2) and
//! the mode (bit 3): raw bytes as a stream of length-prefixed packets, or
//! "authentic": the rest is `seq(4) || payload`, sealed with the SA's key so that
//! fuzzed trailers (padding, next header) reach the checks behind the ICV.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use oemesh_core::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};
use oemesh_core::esp::{InboundSa, LifetimeLimits, SaConfig};

const SPI: u32 = 0x0102_0304;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let alg = if mode & 1 == 0 {
        AeadAlg::Aes256Gcm
    } else {
        AeadAlg::ChaCha20Poly1305
    };
    let esn = mode & 2 != 0;
    let provider = if mode & 4 == 0 {
        Provider::Ring
    } else {
        Provider::RustCrypto
    };
    let material = KeyAndSalt::from_bytes([0x33; 36]);
    let config = SaConfig {
        spi: SPI,
        alg,
        provider,
        esn,
        limits: LifetimeLimits::UNLIMITED,
    };
    let mut sa = InboundSa::new(config, &material, Instant::now());

    if mode & 8 == 0 {
        // A stream of packets, each prefixed by a one-byte length.
        let mut rest = rest;
        while let Some((&len, tail)) = rest.split_first() {
            let len = (len as usize).min(tail.len());
            let mut packet = tail[..len].to_vec();
            if let Ok(d) = sa.decapsulate(&mut packet) {
                assert!(d.inner.end <= packet.len());
            }
            rest = &tail[len..];
        }
        return;
    }

    // Authentic packets with fuzzed contents.
    let Some((seq, payload)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let seq_low = u32::from_be_bytes(*seq);
    let full_seq = if esn {
        sa.window().infer_esn(seq_low).unwrap_or(u64::from(seq_low))
    } else {
        u64::from(seq_low)
    };
    let key = AeadKey::new(alg, Provider::Ring, &material);
    let mut packet = Vec::with_capacity(payload.len() + 32);
    packet.extend_from_slice(&SPI.to_be_bytes());
    packet.extend_from_slice(seq);
    packet.extend_from_slice(&full_seq.to_be_bytes());
    let mut aad = SPI.to_be_bytes().to_vec();
    if esn {
        aad.extend_from_slice(&((full_seq >> 32) as u32).to_be_bytes());
    }
    aad.extend_from_slice(seq);
    let mut body = payload.to_vec();
    if key
        .seal_append(&full_seq.to_be_bytes(), &aad, &mut body)
        .is_err()
    {
        return;
    }
    packet.extend_from_slice(&body);
    if let Ok(d) = sa.decapsulate(&mut packet) {
        assert!(d.inner.end <= packet.len());
        assert_eq!(d.seq, full_seq);
    }
});
