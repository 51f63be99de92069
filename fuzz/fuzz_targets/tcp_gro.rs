//! The TUN writer's TCP coalescing (agent/src/datapath/gro.rs) parses every
//! decrypted packet: any sequence of packets is taken or left without a panic,
//! and no super-packet outgrows its buffer. Input: packets, each preceded by
//! its length (2 bytes, big-endian); the coalescer is emptied twice, to
//! exercise reuse of its buffers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oemesh_agent::datapath::gro::{BUF_CAPACITY, Coalescer};

fuzz_target!(|data: &[u8]| {
    let mut c = Coalescer::default();
    let half = data.len() / 2;
    for part in [&data[..half], &data[half..]] {
        let mut rest = part;
        while rest.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let (packet, r) = rest[2..].split_at(n.min(rest.len() - 2));
            rest = r;
            c.push(packet);
        }
        for buf in c.finish() {
            assert!(buf.len() <= BUF_CAPACITY);
        }
        assert!(c.is_empty());
    }
});
