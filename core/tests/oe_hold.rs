//! The hold store on its own: per-destination and total limits, oldest dropped,
//! order kept, buffers reused.

use std::net::IpAddr;

use oemesh_core::oe::{HoldLimits, HoldStore};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn limits() -> HoldLimits {
    HoldLimits {
        packets_per_dst: 4,
        bytes_per_dst: 400,
        total_packets: 6,
        total_bytes: 500,
    }
}

#[test]
fn order_is_kept_and_oldest_dropped_per_destination() {
    let mut h = HoldStore::new(limits());
    let a = ip("10.0.0.1");
    for i in 0..6u8 {
        let dropped = h.push(a, vec![i; 10]);
        assert_eq!(dropped, usize::from(i >= 4));
    }
    let mut held = h.take(a);
    let got: Vec<u8> = held.iter().map(|p| p[0]).collect();
    assert_eq!(got, vec![2, 3, 4, 5]);
    assert_eq!(held.drain().count(), 4);
    assert!(held.is_empty());
    assert_eq!(h.drops().dst_full, 2);
    assert_eq!((h.total_packets(), h.total_bytes()), (0, 0));
    h.recycle(held);
}

#[test]
fn total_limit_drops_from_the_biggest_destination() {
    let mut h = HoldStore::new(limits());
    let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
    h.push(a, vec![1; 100]);
    h.push(b, vec![2; 50]);
    h.push(a, vec![3; 100]);
    h.push(a, vec![4; 100]);
    h.push(b, vec![5; 50]);
    assert_eq!(h.total_bytes(), 400);
    // 150 more bytes for b: 550 > 500, so a (300 bytes, the biggest) loses its oldest.
    assert_eq!(h.push(b, vec![6; 150]), 1);
    assert_eq!(h.drops().total_full, 1);
    assert_eq!(h.bytes(a), 200);
    assert_eq!(h.bytes(b), 250);
    assert!(h.total_bytes() <= 500 && h.total_packets() <= 6);
    // Packet count: 5 held, two more → one dropped from the biggest (b, now 250 + 10).
    h.push(a, vec![7; 10]);
    h.push(b, vec![8; 10]);
    assert_eq!(h.total_packets(), 6);
    assert_eq!(h.drops().total_full, 2);
    let firsts: Vec<u8> = h.take(b).iter().map(|p| p[0]).collect();
    assert_eq!(firsts, vec![5, 6, 8]);
}

#[test]
fn too_big_and_spare_buffers() {
    let mut h = HoldStore::new(limits());
    assert!(!h.admits(401));
    assert_eq!(
        h.push(
            ip("10.0.0.1"),
            Vec::with_capacity(2048)
                .into_iter()
                .chain([0; 401])
                .collect()
        ),
        1
    );
    assert_eq!(h.drops().too_big, 1);
    let buf = h.spare_buffer().expect("dropped buffer kept");
    assert!(buf.is_empty() && buf.capacity() >= 401);
    h.push(ip("10.0.0.1"), vec![0; 10]);
    assert_eq!(h.discard(ip("10.0.0.1")), 1);
    assert!(h.spare_buffer().is_some());
    assert!(h.spare_buffer().is_none());
}
