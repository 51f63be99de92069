//! Full IKE handshakes per second (IKE_SA_INIT + IKE_AUTH with the first CHILD
//! SA, Ed25519 on both sides), initiator and responder in one process: the
//! work of both ends of a handshake on one core.
//!
//! `cargo bench -p oemesh-core --bench ike`

use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use oemesh_core::crypto::AeadAlg;
use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::ike::endpoint::{Config, Endpoint, Event, LocalAuth, PeerAuth, TrafficSelectors};
use oemesh_core::ike::message::{AddrSelector, Identity};
use oemesh_core::test_util::{Host, Net};

fn config(seed: u8, ip: &str, alg: AeadAlg) -> Config {
    let mut c = Config::new(
        LocalAuth::Ed25519(Ed25519SigningKey::from_seed(&[seed; 32])),
        Identity::Ipv4(ip.parse().expect("address")),
    );
    c.ike_algs = vec![alg];
    c.esp_algs = vec![alg];
    c
}

/// Answers `AuthorizePeer` with `peer_key` and counts the CHILD SAs established.
fn on_event(ep: &mut Endpoint, now: Instant, e: Event, peer_key: &PeerAuth, children: &mut usize) {
    match e {
        Event::AuthorizePeer { sa, .. } => ep.authorize(now, sa, Some(peer_key.clone())),
        Event::ChildSaEstablished { .. } => *children += 1,
        _ => {}
    }
}

/// Delivers everything each side sends to the other (core's harness, no
/// latency, the clock standing at `now`) until both are quiet; returns the
/// CHILD SAs established.
fn run(
    (a, ia): (&mut Endpoint, IpAddr),
    (b, ib): (&mut Endpoint, IpAddr),
    now: Instant,
    b_key: &PeerAuth,
    a_key: &PeerAuth,
) -> usize {
    let (mut ca, mut cb) = (0, 0);
    {
        let mut ha = Host::new(ia, a, |ep: &mut &mut Endpoint, now, e| {
            on_event(ep, now, e, b_key, &mut ca);
        });
        let mut hb = Host::new(ib, b, |ep: &mut &mut Endpoint, now, e| {
            on_event(ep, now, e, a_key, &mut cb);
        });
        Net::new(now).run(&mut [&mut ha, &mut hb], now);
    }
    ca + cb
}

fn handshakes(c: &mut Criterion) {
    let a_key = PeerAuth::ed25519(Ed25519SigningKey::from_seed(&[1; 32]).public_key());
    let b_key = PeerAuth::ed25519(Ed25519SigningKey::from_seed(&[2; 32]).public_key());
    let (ia, ib) = (
        "192.0.2.1".parse().expect("a"),
        "192.0.2.2".parse().expect("b"),
    );
    let ts = TrafficSelectors {
        local: vec![AddrSelector::host(ia)],
        remote: vec![AddrSelector::host(ib)],
    };
    let mut group = c.benchmark_group("ike");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    for alg in AeadAlg::ALL {
        let mut seed = 0u8;
        group.bench_function(format!("handshake/{alg:?}"), |bench| {
            bench.iter_batched(
                || {
                    seed = seed.wrapping_add(1);
                    (
                        Endpoint::new(config(1, "192.0.2.1", alg), [seed; 32]),
                        Endpoint::new(config(2, "192.0.2.2", alg), [!seed; 32]),
                    )
                },
                |(mut a, mut b)| {
                    let now = Instant::now();
                    a.connect(
                        now,
                        ia,
                        ib,
                        Some(b_key.clone()),
                        ts.clone(),
                        now + Duration::from_secs(2),
                    );
                    let n = run((&mut a, ia), (&mut b, ib), now, &b_key, &a_key);
                    assert_eq!(n, 2, "both ends installed the CHILD SA");
                    (a, b)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, 100 Hz ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Handshakes per CPU second, which a shared machine's wall clock hides.
fn per_cpu_second(_: &mut Criterion) {
    let a_key = PeerAuth::ed25519(Ed25519SigningKey::from_seed(&[1; 32]).public_key());
    let b_key = PeerAuth::ed25519(Ed25519SigningKey::from_seed(&[2; 32]).public_key());
    let (ia, ib) = (
        "192.0.2.1".parse().expect("a"),
        "192.0.2.2".parse().expect("b"),
    );
    let ts = TrafficSelectors {
        local: vec![AddrSelector::host(ia)],
        remote: vec![AddrSelector::host(ib)],
    };
    for alg in AeadAlg::ALL {
        let n = 3000u32;
        let mut pairs: Vec<(Endpoint, Endpoint)> = (0..n)
            .map(|i| {
                let seed = i.to_le_bytes()[0];
                (
                    Endpoint::new(config(1, "192.0.2.1", alg), [seed; 32]),
                    Endpoint::new(config(2, "192.0.2.2", alg), [!seed; 32]),
                )
            })
            .collect();
        let Some(start) = cpu_seconds() else { return };
        for (a, b) in &mut pairs {
            let (a, b) = (a, b);
            let now = Instant::now();
            a.connect(
                now,
                ia,
                ib,
                Some(b_key.clone()),
                ts.clone(),
                now + Duration::from_secs(2),
            );
            assert_eq!(run((a, ia), (b, ib), now, &b_key, &a_key), 2);
        }
        let Some(end) = cpu_seconds() else { return };
        println!(
            "ike/handshake/{alg:?}: {:.0} handshakes per CPU second (both ends)",
            f64::from(n) / (end - start)
        );
    }
}

criterion_group!(benches, handshakes, per_cpu_second);
criterion_main!(benches);
