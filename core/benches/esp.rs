//! Data path throughput: the raw AEAD seal of a 1400-byte buffer, and ESP
//! encapsulation / decapsulation of a 1400-byte inner packet, for each AEAD and
//! each provider. Method and numbers: `docs/benchmarks.md`.
//!
//! ```text
//! cargo bench -p oemesh-core --bench esp -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use oemesh_core::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};
use oemesh_core::esp::{
    HEADER_LEN, InboundSa, LifetimeLimits, OutboundSa, SaConfig, encapsulated_len,
};

const INNER: usize = 1400;

fn name(alg: AeadAlg, provider: Provider) -> String {
    let alg = match alg {
        AeadAlg::Aes256Gcm => "aes256gcm",
        AeadAlg::ChaCha20Poly1305 => "chacha20poly1305",
    };
    let provider = match provider {
        Provider::Ring => "ring",
        Provider::RustCrypto => "rustcrypto",
    };
    format!("{alg}/{provider}")
}

fn material() -> KeyAndSalt {
    KeyAndSalt::from_bytes([0x5a; 36])
}

fn config(alg: AeadAlg, provider: Provider) -> SaConfig {
    SaConfig {
        spi: 0x1234_5678,
        alg,
        provider,
        esn: true,
        limits: LifetimeLimits::UNLIMITED,
    }
}

fn combinations() -> impl Iterator<Item = (AeadAlg, Provider)> {
    AeadAlg::ALL
        .into_iter()
        .flat_map(|alg| Provider::ALL.into_iter().map(move |p| (alg, p)))
}

fn aead_seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("aead_seal_1400");
    group.throughput(Throughput::Bytes(INNER as u64));
    for (alg, provider) in combinations() {
        let key = AeadKey::new(alg, provider, &material());
        let mut buf = vec![0u8; INNER];
        let aad = [0u8; 12];
        let mut iv = 0u64;
        group.bench_function(name(alg, provider), |b| {
            b.iter(|| {
                iv += 1;
                let tag = key
                    .seal_in_place_detached(&iv.to_be_bytes(), &aad, black_box(&mut buf))
                    .expect("seal");
                black_box(tag);
            })
        });
    }
    group.finish();
}

fn esp_encap(c: &mut Criterion) {
    let mut group = c.benchmark_group("esp_encap_1400");
    group.throughput(Throughput::Bytes(INNER as u64));
    for (alg, provider) in combinations() {
        let mut sa = OutboundSa::new(config(alg, provider), &material(), Instant::now());
        let mut buf = vec![0u8; encapsulated_len(INNER)];
        group.bench_function(name(alg, provider), |b| {
            b.iter(|| {
                // The previous iteration encrypted the inner packet in place;
                // restore the version nibble, the rest is payload either way.
                buf[HEADER_LEN] = 0x45;
                let len = sa
                    .encapsulate(black_box(&mut buf), INNER)
                    .expect("encapsulate");
                black_box(len);
            })
        });
    }
    group.finish();
}

fn esp_decap(c: &mut Criterion) {
    let mut group = c.benchmark_group("esp_decap_1400");
    group.throughput(Throughput::Bytes(INNER as u64));
    for (alg, provider) in combinations() {
        let mut tx = OutboundSa::new(config(alg, provider), &material(), Instant::now());
        let mut rx = InboundSa::new(config(alg, provider), &material(), Instant::now());
        group.bench_function(name(alg, provider), |b| {
            b.iter_batched_ref(
                || {
                    // Fresh packets (the window rejects replays); not timed.
                    let mut buf = vec![0x45u8; encapsulated_len(INNER)];
                    tx.encapsulate(&mut buf, INNER).expect("encapsulate");
                    buf
                },
                |packet| {
                    let d = rx.decapsulate(black_box(packet)).expect("decapsulate");
                    black_box(d);
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, aead_seal, esp_encap, esp_decap);
criterion_main!(benches);
