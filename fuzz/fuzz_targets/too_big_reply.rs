//! `wire::icmp::too_big_reply` (core/src/wire/icmp.rs) builds an ICMP error
//! from whatever packet the TUN hands over, into a buffer of any size:
//! arbitrary input never panics it, a reply fits the buffer and the RFCs'
//! size limits, is a valid IP packet to the inner packet's source whose ICMP
//! checksum verifies, and quotes the inner packet's first bytes. And
//! `accepted_path_mtu` never returns an MTU below the family's minimum or
//! one that does not lower the known value.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use oemesh_core::wire::icmp::{
    ICMPV6, MAX_REPLY_V4, MAX_REPLY_V6, MIN_PATH_MTU_V4, MIN_PATH_MTU_V6, accepted_path_mtu,
    too_big_reply,
};
use oemesh_core::wire::{IpPacket, checksum, protocol};

fuzz_target!(|data: &[u8]| {
    let [flags, m0, m1, o0, o1, inner @ ..] = data else {
        return;
    };
    let mtu = u16::from_be_bytes([*m0, *m1]);
    let v6 = flags & 1 == 1;

    let current = (flags & 2 == 2).then_some(u16::from_be_bytes([*o0, *o1]));
    if let Some(m) = accepted_path_mtu(u32::from(mtu), v6, current) {
        assert!(m >= if v6 { MIN_PATH_MTU_V6 } else { MIN_PATH_MTU_V4 });
        assert!(current.is_none_or(|c| m < c), "{m} does not lower {current:?}");
    }

    let from: IpAddr = if v6 {
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into()
    } else {
        Ipv4Addr::new(192, 0, 2, 1).into()
    };
    let mut out = vec![0u8; usize::from(u16::from_be_bytes([*o0, *o1])) % 2048];
    let Some(n) = too_big_reply(inner, mtu, from, &mut out) else {
        return;
    };
    assert!(n <= out.len() && n <= if v6 { MAX_REPLY_V6 } else { MAX_REPLY_V4 });
    let reply = IpPacket::new_checked(&out[..n]).expect("the reply is an IP packet");
    let original = IpPacket::new_checked(inner).expect("only a valid packet is answered");
    assert_eq!(reply.src_addr(), from);
    assert_eq!(reply.dst_addr(), original.src_addr());
    let icmp = reply.payload();
    match &reply {
        IpPacket::V4(p) => {
            assert!(p.verify_checksum());
            assert_eq!(p.protocol(), protocol::ICMP);
            assert_eq!(checksum(icmp), 0);
            assert_eq!(&icmp[..2], &[3, 4]);
        }
        IpPacket::V6(_) => {
            assert_eq!(reply.next_header(), ICMPV6);
            let sum = reply.pseudo_header(ICMPV6, icmp.len() as u32).add_bytes(icmp);
            assert_eq!(sum.finish(), 0);
            assert_eq!(icmp[0], 2);
        }
    }
    assert!(icmp.len() >= 8 + 28);
    assert_eq!(&icmp[8..], &inner[..icmp.len() - 8]);
});
