//! The flood generator's packets, parsed back.
use super::*;

#[test]
fn icmp_errors_quote_an_ike_datagram_of_the_target() {
    let target = Ipv4Addr::new(192, 0, 2, 10);
    let kind = Kind::IcmpUnreachable {
        target,
        sources: (Ipv4Addr::new(198, 51, 100, 0), 24),
    };
    let mut src = source_of(kind).unwrap();
    let mut rng = Rng::new(3);
    let mut p = vec![0u8; 1500];
    let (len, to) = src.next(&mut rng, &mut p).unwrap();
    assert_eq!(to.ip(), IpAddr::V4(target));
    let p = &p[..len];
    assert_eq!(len, 20 + 8 + 20 + 8 + QUOTED_IKE);
    assert_eq!((p[9], p[12]), (protocol::ICMP, 198));
    assert_eq!(oemesh_core::wire::checksum(&p[..20]), 0, "IP checksum");
    assert_eq!((p[20], p[21]), (3, 3), "port unreachable");
    assert_eq!(oemesh_core::wire::checksum(&p[20..]), 0, "ICMP checksum");
    let inner = &p[28..];
    assert_eq!(
        &inner[12..16],
        &target.octets(),
        "quoted source: the target"
    );
    assert_eq!(
        &inner[20..24],
        &[1, 244, 1, 244],
        "quoted ports: 500 -> 500"
    );
}

#[test]
fn ike_packets_parse_and_differ() {
    let kind = Kind::IkeInit {
        target: Ipv4Addr::new(192, 0, 2, 20),
        sources: (Ipv4Addr::new(198, 51, 100, 0), 24),
    };
    let mut src = source_of(kind).unwrap();
    let mut rng = Rng::new(7);
    let mut a = vec![0u8; 1500];
    let mut b = vec![0u8; 1500];
    let (la, to) = src.next(&mut rng, &mut a).unwrap();
    let (lb, _) = src.next(&mut rng, &mut b).unwrap();
    assert_eq!(to, "192.0.2.20:500".parse().unwrap());
    assert_eq!(la, lb);
    assert_ne!(a[..la], b[..lb]);
    for p in [&a[..la], &b[..lb]] {
        assert_eq!(p[0], 0x45);
        assert_eq!(p[12], 198);
        assert_eq!(oemesh_core::wire::checksum(&p[..20]), 0, "IP checksum");
        let m = Message::parse(&p[28..]).unwrap();
        assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
        assert_ne!(m.header.spi_i, 0);
        let Some(Payload::Nonce(Nonce(n))) =
            m.payload(oemesh_core::ike::message::PayloadType::NONCE)
        else {
            panic!("no nonce");
        };
        assert_ne!(n.as_slice(), NONCE_MARK.as_slice());
    }
}

#[test]
fn esp_spis_are_never_the_non_esp_marker() {
    let kind = Kind::EspRandomSpi {
        target: Ipv4Addr::new(192, 0, 2, 20),
        sources: (Ipv4Addr::new(198, 51, 100, 0), 24),
        len: 64,
    };
    let mut src = source_of(kind).unwrap();
    let mut rng = Rng::new(1);
    let mut buf = vec![0u8; 1500];
    for _ in 0..1000 {
        let (len, _) = src.next(&mut rng, &mut buf).unwrap();
        assert_eq!(len, 28 + 64);
        assert_ne!(buf[28..32], [0; 4]);
        assert_eq!(u16::from_be_bytes([buf[22], buf[23]]), NAT_T_PORT);
    }
}

#[test]
fn addresses_stay_in_the_prefix() {
    let mut rng = Rng::new(3);
    for _ in 0..1000 {
        let a = rng.addr_in((Ipv4Addr::new(198, 51, 100, 0), 24)).octets();
        assert_eq!(a[..3], [198, 51, 100]);
        assert!(a[3] != 0 && a[3] != 255);
    }
    assert_eq!(
        parse_prefix("198.18.0.0/15").unwrap(),
        (Ipv4Addr::new(198, 18, 0, 0), 15)
    );
    assert!(parse_prefix("198.18.0.0").is_err());
}

#[test]
fn ike_random_spi_messages_look_like_ike_auth_of_no_sa() {
    let kind = Kind::IkeRandomSpi {
        target: Ipv4Addr::new(192, 0, 2, 20),
        sources: (Ipv4Addr::new(198, 51, 100, 0), 24),
        len: 160,
    };
    let mut src = source_of(kind).unwrap();
    let mut rng = Rng::new(5);
    let mut buf = vec![0u8; 1500];
    let mut spis = std::collections::HashSet::new();
    for _ in 0..100 {
        let (len, to) = src.next(&mut rng, &mut buf).unwrap();
        assert_eq!(to, "192.0.2.20:4500".parse().unwrap());
        assert_eq!(len, 28 + 4 + 28 + 4 + 160);
        assert_eq!(oemesh_core::wire::checksum(&buf[..20]), 0, "IP checksum");
        let ike = &buf[32..len];
        assert_eq!(&buf[28..32], &[0; 4], "the non-ESP marker");
        let h = oemesh_core::ike::message::HeaderPacket::new_checked(ike).unwrap();
        assert_eq!(h.exchange_type(), ExchangeType::IKE_AUTH);
        assert_eq!(h.next_payload(), PayloadType::SK);
        assert_eq!(h.length() as usize, ike.len());
        assert!(h.flags().initiator() && !h.flags().response());
        assert_ne!(h.spi_r(), 0);
        assert_eq!(u16::from_be_bytes([ike[30], ike[31]]) as usize, 4 + 160);
        spis.insert(h.spi_r());
    }
    assert_eq!(spis.len(), 100, "a new SA every time");
}
