//! Every decrypted packet from any anonymous peer goes through the flow parser
//! (agent/src/datapath/ip.rs, `Flow::of`) before the traffic selector check.
//! Arbitrary bytes never panic it nor the views under it (core::wire); a
//! buffer the IP view accepts has a flow that agrees with the view, one it
//! refuses has none, and every slice an accepted view hands out lies inside
//! the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_agent::datapath::ip::{Flow, destination, source};
use oemesh_core::wire::{IpPacket, TcpPacket, UdpPacket, ports};

/// Whether `inner` is a sub-slice of `outer`.
fn inside(inner: &[u8], outer: &[u8]) -> bool {
    let (start, end) = (outer.as_ptr() as usize, outer.as_ptr() as usize + outer.len());
    let at = inner.as_ptr() as usize;
    inner.is_empty() || (start <= at && at + inner.len() <= end)
}

fuzz_target!(|data: &[u8]| {
    let flow = Flow::of(data);
    assert_eq!(destination(data), flow.map(|f| f.dst));
    assert_eq!(source(data), flow.map(|f| f.src));
    let Ok(ip) = IpPacket::new_checked(data) else {
        assert!(flow.is_none(), "a refused packet has no flow");
        return;
    };
    let f = flow.expect("an accepted packet has a flow");
    assert_eq!((f.src, f.dst, f.protocol), (ip.src_addr(), ip.dst_addr(), ip.next_header()));
    let payload = ip.payload();
    assert!(inside(payload, data));
    if let Some(p) = f.ports {
        assert_eq!(ports(payload), Some(p));
    }
    match &ip {
        IpPacket::V4(v4) => {
            assert!(v4.header_len() >= 20 && v4.header_len() <= usize::from(v4.total_len()));
            assert!(usize::from(v4.total_len()) <= data.len());
            assert!(inside(v4.header(), data));
            let _ = v4.verify_checksum();
        }
        IpPacket::V6(v6) => {
            assert!(40 + usize::from(v6.payload_len()) <= data.len());
            let _ = (v6.traffic_class(), v6.flow_label(), v6.hop_limit());
        }
    }
    if let Ok(t) = TcpPacket::new_checked(payload) {
        assert!(t.header_len() >= 20 && t.header_len() <= payload.len());
        assert!(inside(t.options(), payload) && inside(t.payload(), payload));
        let _ = (t.seq_number(), t.ack_number(), t.flags(), t.window(), t.checksum());
    }
    if let Ok(u) = UdpPacket::new_checked(payload) {
        assert!(usize::from(u.len()) <= payload.len());
        assert!(inside(u.payload(), payload));
    }
});
