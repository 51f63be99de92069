//! Client address translation (core::wire::rewrite) on any bytes: the first
//! byte picks the address (its family and value), the rest is the packet.
//! Both directions are tried on the same buffer; neither panics, a refusal
//! leaves the packet as it was, and an accepted rewrite of an IPv4 packet
//! whose header checksum verified leaves it verifying (RFC 1624).
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use oemesh_core::wire::checksum::checksum;
use oemesh_core::wire::rewrite::{set_destination, set_source};

fn header_ok(p: &[u8]) -> Option<bool> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    (p[0] >> 4 == 4).then(|| p.get(..ihl).is_some_and(|h| checksum(h) == 0))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let addr: IpAddr = if pick & 1 == 0 {
        [100, 64, 0, pick].into()
    } else {
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(pick)].into()
    };
    let mut packet = rest.to_vec();
    for destination in [false, true] {
        let before = packet.clone();
        let verified = header_ok(&packet);
        let r = if destination {
            set_destination(&mut packet, addr)
        } else {
            set_source(&mut packet, addr)
        };
        match r {
            Err(_) => assert_eq!(packet, before, "a refusal writes nothing"),
            Ok(_) => {
                if verified == Some(true) {
                    assert_eq!(header_ok(&packet), Some(true));
                }
            }
        }
    }
});
