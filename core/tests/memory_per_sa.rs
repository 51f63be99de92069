//! Memory per live SA pair on a responder, without the network: N full
//! handshakes (IKE_SA_INIT + IKE_AUTH with the first CHILD SA) of fresh AUTH
//! NULL initiators against one Ed25519 responder, in process, with a counting
//! global allocator. Prints the heap bytes the responder keeps per SA pair:
//! its `Endpoint` (IKE SA, CHILD SA bookkeeping, indexes) and the two ESP SAs
//! the data path would build from the `ChildSaEstablished` event.
//!
//! `cargo test --release -p oemesh-core --test memory_per_sa -- --nocapture`
//! (`OEMESH_MEM_SAS=10000` for more SAs; the default is 2,000).
#![allow(
    unsafe_code,
    reason = "the counting allocator below: GlobalAlloc is an unsafe trait (test only)"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "a measurement test that prints its figures"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::crypto::{AeadAlg, Provider};
use oemesh_core::esp::{InboundSa, OutboundSa, SaConfig};
use oemesh_core::ike::endpoint::{
    Config, Endpoint, Event, LocalAuth, PeerAuth, TrafficSelectors, Transmit,
};
use oemesh_core::ike::message::{AddrSelector, Identity};
use oemesh_core::test_util::{Host, Net};

/// Counts the bytes allocated and not yet freed (all threads).
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static BLOCKS: AtomicI64 = AtomicI64::new(0);

#[allow(clippy::cast_possible_wrap, reason = "allocation sizes fit in i64")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The length of the last datagram sent from port 4500 (the responder's is
/// its IKE_AUTH response, which it keeps for a retransmitted request).
static LAST_4500_LEN: AtomicUsize = AtomicUsize::new(0);

fn live() -> (i64, i64) {
    (LIVE.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

/// Resident set size in bytes (`/proc/self/statm`, 4 KiB pages).
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

const B: &str = "2001:db8::2";

fn responder() -> Endpoint {
    let c = Config::new(
        LocalAuth::Ed25519(Ed25519SigningKey::from_seed(&[2; 32])),
        Identity::Ipv6(B.parse().unwrap()),
    );
    Endpoint::new(c, [9; 32])
}

fn initiator(seed: u32) -> Endpoint {
    let mut s = [0u8; 32];
    s[..4].copy_from_slice(&seed.to_le_bytes());
    Endpoint::new(Config::new(LocalAuth::Null, Identity::Null), s)
}

/// The ESP SA pair the data path keeps for one CHILD SA.
struct EspPair {
    _outbound: OutboundSa,
    _inbound: InboundSa,
}

#[test]
fn responder_bytes_per_sa_pair() {
    let n: u32 = std::env::var("OEMESH_MEM_SAS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let b_ip: IpAddr = B.parse().unwrap();
    let b_key = PeerAuth::ed25519(Ed25519SigningKey::from_seed(&[2; 32]).public_key());
    let now = Instant::now();
    let mut b = responder();
    let mut esp: HashMap<u32, EspPair> = HashMap::new();
    let rss_before = rss();
    let (before, blocks_before) = live();
    let mut esp_bytes = 0i64;
    let mut halves = [Duration::ZERO; 2];
    for i in 0..n {
        let started = Instant::now();
        // One /64 each: per-source limits (half-open, anonymous SAs) count /64s.
        let a_ip = IpAddr::V6(Ipv6Addr::from(
            0x2001_0db8_0000_0000_0000_0000_0000_0001u128 | (u128::from(i) << 64),
        ));
        let mut a = initiator(i);
        let ts = TrafficSelectors {
            local: vec![AddrSelector::host(a_ip)],
            remote: vec![AddrSelector::host(b_ip)],
        };
        a.connect(
            now,
            a_ip,
            b_ip,
            Some(b_key.clone()),
            ts,
            now + Duration::from_secs(2),
        );
        let (mut children_a, mut children_b) = (0, 0);
        {
            let mut ha = Host::new(a_ip, &mut a, |_: &mut &mut Endpoint, _, e| {
                if let Event::ChildSaEstablished { .. } = e {
                    children_a += 1;
                }
            });
            let mut hb = Host::new(b_ip, &mut b, |b: &mut &mut Endpoint, now, e| match e {
                Event::AuthorizePeer { sa, .. } => b.authorize(now, sa, Some(PeerAuth::Null)),
                Event::ChildSaEstablished { child, .. } => {
                    children_b += 1;
                    let (l0, _) = live();
                    let config = |spi| SaConfig {
                        spi,
                        alg: child.alg,
                        provider: Provider::default(),
                        esn: child.esn,
                        limits: child.lifetime,
                    };
                    let pair = EspPair {
                        _outbound: OutboundSa::new(
                            config(child.spis.outbound),
                            &child.outbound_key,
                            now,
                        ),
                        _inbound: InboundSa::new(
                            config(child.spis.inbound),
                            &child.inbound_key,
                            now,
                        ),
                    };
                    esp.insert(child.spis.inbound, pair);
                    esp_bytes += live().0 - l0;
                }
                _ => {}
            });
            let mut net = Net::new(now);
            net.filter = Some(Box::new(|_, _, t: &mut Transmit| {
                if t.local.port() == 4500 {
                    LAST_4500_LEN.store(t.payload.len(), Ordering::Relaxed);
                }
                false
            }));
            net.run(&mut [&mut ha, &mut hb], now);
        }
        let children = children_a + children_b;
        halves[usize::from(i >= n / 2)] += started.elapsed();
        assert_eq!(children, 2, "handshake {i} completed on both ends");
    }
    let (after, blocks_after) = live();
    let per = |x: i64| x as f64 / f64::from(n);
    let total = after - before;
    let endpoint = total - esp_bytes;
    assert_eq!(b.stats().ike_sas, n as usize);
    println!(
        "{n} SA pairs on the responder ({:?} IKE, {:?} ESP): {:.0} B heap per SA pair \
         ({:.1} allocations): endpoint {:.0} B, ESP SA pair + its map {:.0} B",
        AeadAlg::Aes256Gcm,
        AeadAlg::Aes256Gcm,
        per(total),
        per(blocks_after - blocks_before),
        per(endpoint),
        per(esp_bytes),
    );
    println!("RSS growth {:.0} B per SA pair", per(rss() - rss_before));
    println!(
        "wall time per handshake (both ends, one thread): first half {:.0} µs, second half {:.0} µs",
        halves[0].as_secs_f64() * 1e6 / f64::from(n / 2),
        halves[1].as_secs_f64() * 1e6 / f64::from(n - n / 2),
    );
    println!(
        "the IKE_AUTH response kept for retransmissions: {} B",
        LAST_4500_LEN.load(Ordering::Relaxed)
    );
    println!(
        "sizes: InboundSa {} B, OutboundSa {} B (inline)",
        size_of::<InboundSa>(),
        size_of::<OutboundSa>()
    );
    // Loose bound, so that a regression shows; the figure is printed above.
    assert!(per(total) < 16_384.0, "{} B per SA pair", per(total));
    drop(esp);
    drop(b);
}
