//! Decapsulates real ESP packets strongSwan 5.9.8 (kernel-libipsec) sent, with
//! the CHILD SA keys our key schedule derives from its logged IKE inputs
//! (`data/strongswan-README.md`). libipsec does not do ESN, so these SAs don't.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use oemesh_core::crypto::x25519::SharedSecret;
use oemesh_core::crypto::{AeadAlg, Provider};
use oemesh_core::esp::{InboundSa, InnerProtocol, LifetimeLimits, OutboundSa, SaConfig, peek_spi};
use oemesh_core::ike::keys::{ChildSaKeys, Side, Skeyseed};
use oemesh_core::wire::{Ipv4Packet, protocol};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}{name}")).expect("fixture")
}

fn child_keys(prefix: &str) -> ChildSaKeys {
    let text = String::from_utf8(read(&format!("{prefix}keys.txt"))).expect("utf-8");
    let v: HashMap<&str, Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("name = hex");
            (k.trim(), hex(v.trim()))
        })
        .collect();
    let resp = read(&format!("{prefix}ike_sa_init-resp.bin"));
    let g_ir =
        SharedSecret::from_bytes(v["dh_shared_secret"].clone().try_into().expect("32 bytes"));
    let keys = Skeyseed::initial(&v["ni"], &v["nr"], &g_ir).ike_sa_keys(
        &v["ni"],
        &v["nr"],
        resp[..8].try_into().expect("SPIi"),
        resp[8..16].try_into().expect("SPIr"),
    );
    ChildSaKeys::derive(&keys.sk_d, None, &v["ni"], &v["nr"])
}

fn check(prefix: &str, alg: AeadAlg) {
    let keys = child_keys(prefix);
    for provider in Provider::ALL {
        for (file, side) in [
            ("esp-i2r.bin", Side::Initiator),
            ("esp-r2i.bin", Side::Responder),
        ] {
            let mut packet = read(&format!("{prefix}{file}"));
            let spi = peek_spi(&packet).expect("SPI");
            let config = SaConfig {
                spi,
                alg,
                provider,
                esn: false,
                limits: LifetimeLimits::UNLIMITED,
            };
            // The receiver of an i2r packet is the responder: its inbound key is
            // the initiator's outbound one.
            let (sender_out, _) = keys.split(side);
            let mut sa = InboundSa::new(config, sender_out, Instant::now());
            let d = sa
                .decapsulate(&mut packet)
                .expect("strongSwan's ESP decapsulates");
            assert_eq!(d.protocol, InnerProtocol::Ipv4);
            assert_eq!(d.seq, 1);
            let inner = &packet[d.inner.clone()];
            let ip = Ipv4Packet::new_checked(inner).expect("an IPv4 packet inside");
            assert_eq!(ip.header_len(), 20);
            assert!(ip.verify_checksum());
            assert_eq!(ip.protocol(), protocol::UDP);
            assert!(inner.ends_with(b"hello through ipsec0"), "{inner:02x?}");
            let (a, b) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1));
            if side == Side::Initiator {
                assert_eq!((ip.src_addr(), ip.dst_addr()), (a, b));
            } else {
                assert_eq!((ip.src_addr(), ip.dst_addr()), (b, a));
            }

            // Our encapsulation of the same inner packet with the same SA has
            // the same length: the same padding rule as libipsec.
            let inner = inner.to_vec();
            let mut out = OutboundSa::new(config, sender_out, Instant::now());
            let mut buf = vec![0u8; packet.len()];
            buf[16..16 + inner.len()].copy_from_slice(&inner);
            let len = out.encapsulate(&mut buf, inner.len()).expect("encapsulate");
            assert_eq!(len, packet.len());
        }
    }
}

#[test]
fn strongswan_aes_gcm_esp() {
    check("strongswan-", AeadAlg::Aes256Gcm);
}

#[test]
fn strongswan_chacha20_poly1305_esp() {
    check("strongswan-chacha-", AeadAlg::ChaCha20Poly1305);
}
