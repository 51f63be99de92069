use super::*;
use crate::datapath::ip::tests::v4_udp;
use crate::metrics::PmtuEvent;
use oemesh_core::crypto::{AeadAlg, KeyAndSalt, Provider};
use oemesh_core::esp::{HEADER_LEN, LifetimeLimits, MAX_TRAILER_LEN, SaConfig};
use std::time::Instant;

fn pair(spi_in: u32, spi_out: u32, key: &KeyAndSalt) -> (OutboundSa, InboundSa) {
    let cfg = |spi| SaConfig {
        spi,
        alg: AeadAlg::Aes256Gcm,
        provider: Provider::default(),
        esn: true,
        limits: LifetimeLimits::UNLIMITED,
    };
    let now = Instant::now();
    (
        OutboundSa::new(cfg(spi_out), key, now),
        InboundSa::new(cfg(spi_in), key, now),
    )
}

/// Installs the pair `spi_in`/`spi_out` of IKE SA `sa` between `local`
/// and `dst` (host selectors, port 4500).
fn install(
    table: &SaTable,
    sa: u64,
    spis: (u32, u32),
    (local, dst): (IpAddr, IpAddr),
    publish: bool,
) -> Arc<Outbound> {
    let install = install_of(sa, spis, (local, dst), None, false);
    table.install(install, publish)
}

/// The `Install` of [`install`], with a translation (whose assigned address
/// is then the local selector) and floating.
fn install_of(
    sa: u64,
    (spi_in, spi_out): (u32, u32),
    (local, dst): (IpAddr, IpAddr),
    translate: Option<Translation>,
    floats: bool,
) -> Install {
    let key = KeyAndSalt::from_slice(&[7u8; 36]).unwrap();
    let (outbound, inbound) = pair(spi_in, spi_out, &key);
    let ts = translate.map_or(local, |t| t.assigned);
    Install {
        sa: SaHandle(sa),
        dst,
        outbound,
        inbound,
        local_ts: vec![AddrSelector::host(ts)],
        remote_ts: vec![AddrSelector::host(dst)],
        local: SocketAddr::new(local, 4500),
        remote: SocketAddr::new(dst, 4500),
        translate,
        floats,
    }
}

#[test]
fn unpublished_outbound_is_invisible_until_published() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let table = SaTable::new(tx);
    let (local, dst): (IpAddr, IpAddr) =
        ("192.0.2.1".parse().unwrap(), "192.0.2.20".parse().unwrap());
    let out = install(&table, 1, (1, 2), (local, dst), false);
    assert!(
        table.outbound(dst).is_none(),
        "new packets must wait for the held ones"
    );
    assert!(table.inbound(1).is_some(), "the peer may already send");
    table.publish(out);
    assert_eq!(table.outbound(dst).map(|o| o.inbound_spi), Some(1));
}

#[test]
fn seal_open_and_selectors() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let table = SaTable::new(tx);
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "192.0.2.20".parse().unwrap();
    // One table holding both ends: out SPI 2 is the in SPI of the other end.
    install(&table, 1, (1, 2), (a, b), true);
    install(&table, 2, (2, 1), (b, a), true);
    let udp = |src| v4_udp(src, [192, 0, 2, 20], 1, 2);
    let mut inner = udp([192, 0, 2, 1]);
    let mut buf = vec![0u8; HEADER_LEN + inner.len() + MAX_TRAILER_LEN];
    buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(&inner);
    let len = table
        .outbound(b)
        .unwrap()
        .seal(&mut buf, inner.len())
        .unwrap();
    let spi = oemesh_core::esp::peek_spi(&buf[..len]).unwrap();
    assert_eq!(spi, 2);
    // B's inbound SA 2: the inner packet's source A is the peer: admitted.
    let range = table.inbound(2).unwrap().open(&mut buf[..len]).unwrap();
    assert_eq!(&buf[range], &inner[..]);
    // A spoofed inner source is refused.
    inner = udp([192, 0, 2, 99]);
    buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(&inner);
    let len = table
        .outbound(b)
        .unwrap()
        .seal(&mut buf, inner.len())
        .unwrap();
    assert!(matches!(
        table.inbound(2).unwrap().open(&mut buf[..len]),
        Err(OpenError::TsMismatch)
    ));
    assert!(table.serves(b));
    let (i, o) = table.remove_pair(1);
    assert!(i.is_some() && o.is_some());
    assert!(table.outbound(b).is_none());
    assert_eq!(table.len(), (1, 1));
}

#[test]
fn many_pairs_across_shards() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let table = SaTable::new(tx);
    let local: IpAddr = "2001:db8::1".parse().unwrap();
    let n = 2000u32;
    let dst = |i: u32| {
        IpAddr::from(std::net::Ipv6Addr::from_bits(
            (0x2001_0db8_0001u128 << 80) | u128::from(i),
        ))
    };
    for i in 0..n {
        install(
            &table,
            u64::from(i),
            (1000 + i, 5000 + i),
            (local, dst(i)),
            true,
        );
    }
    assert_eq!(table.len(), (n as usize, n as usize));
    let used = table
        .inbound
        .shards
        .iter()
        .filter(|s| !s.load().is_empty())
        .count();
    assert!(used > SHARDS / 2, "SPIs spread over the shards: {used}");
    let used = table
        .outbound
        .shards
        .iter()
        .filter(|s| !s.load().is_empty())
        .count();
    assert!(
        used > SHARDS / 2,
        "addresses spread over the shards: {used}"
    );
    for i in 0..n {
        assert_eq!(
            table.outbound(dst(i)).map(|o| o.inbound_spi),
            Some(1000 + i)
        );
        assert_eq!(table.inbound(1000 + i).map(|s| s.peer), Some(dst(i)));
    }
    // A rekey: a second pair for destination 7; the old inbound half stays.
    install(&table, 7, (9999, 9998), (local, dst(7)), true);
    // Removing the old pair leaves the new outbound half alone.
    let (i, o) = table.remove_pair(1007);
    assert!(i.is_some() && o.is_none());
    assert_eq!(table.outbound(dst(7)).map(|o| o.inbound_spi), Some(9999));
    assert!(table.serves(dst(7)));
    let (i, o) = table.remove_pair(9999);
    assert!(i.is_some() && o.is_some());
    assert!(!table.serves(dst(7)));
    let (i, o) = table.remove_pair(9999);
    assert!(i.is_none() && o.is_none());
    assert_eq!(table.len(), (n as usize - 1, n as usize - 1));
    assert_eq!(table.inbound_all().len(), n as usize - 1);
}

/// `serves` as it was first written: a scan of every inbound half.
fn serves_by_scan(table: &SaTable, peer: IpAddr) -> bool {
    table.outbound.contains(&peer) || table.inbound_all().iter().any(|i| i.peer == peer)
}

#[test]
fn serves_agrees_with_a_scan_under_random_installs_and_removals() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let local: IpAddr = "192.0.2.1".parse().unwrap();
    // Six peers that come and go, and one that never has an SA.
    let peers: Vec<IpAddr> = (10..17u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
    for seed in [1u64, 0x5eed, 0xdead_beef, 42_424_242] {
        let table = SaTable::new(tx.clone());
        let mut rng = seed;
        let mut next = |n: u64| {
            // xorshift64: a fixed sequence per seed.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut unpublished: Vec<Arc<Outbound>> = Vec::new();
        for step in 0..3000 {
            // 24 SPIs for ~6 live pairs: removals often miss, and now and
            // then an install reuses a live SPI (replacing that half).
            let spi = 1 + u32::try_from(next(24)).unwrap();
            match next(8) {
                0..=3 => {
                    let dst = peers[usize::try_from(next(6)).unwrap()];
                    let out = install(
                        &table,
                        u64::from(spi),
                        (spi, 1000 + spi),
                        (local, dst),
                        next(2) == 0,
                    );
                    if table.outbound(dst).is_none_or(|o| !Arc::ptr_eq(&o, &out)) {
                        unpublished.push(out);
                    }
                }
                4 if !unpublished.is_empty() => {
                    let i = usize::try_from(next(unpublished.len() as u64)).unwrap();
                    table.publish(unpublished.swap_remove(i));
                }
                _ => {
                    table.remove_pair(spi);
                }
            }
            for &peer in &peers {
                assert_eq!(
                    table.serves(peer),
                    serves_by_scan(&table, peer),
                    "seed {seed:#x}, step {step}, peer {peer}"
                );
            }
        }
        // Emptied, the table keeps no count behind.
        for spi in 1..=24 {
            table.remove_pair(spi);
        }
        let outbound_left = table.outbound_all();
        assert!(table.inbound_all().is_empty());
        assert!(lock(&table.writers).inbound_per_peer.is_empty());
        for peer in &peers {
            assert_eq!(
                table.serves(*peer),
                outbound_left.iter().any(|o| o.dst == *peer)
            );
        }
    }
}

/// An IPv4 TCP segment with correct checksums.
fn v4_tcp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    use oemesh_core::wire::{checksum, pseudo_header};
    let mut tcp = vec![0u8; 20];
    tcp[..4].copy_from_slice(&[0x9c, 0x40, 0x00, 0x50]);
    tcp[12] = 0x50;
    tcp[13] = 0x18;
    tcp.extend_from_slice(b"GET / HTTP/1.1");
    let sum = pseudo_header(&src, &dst, 6, u32::try_from(tcp.len()).unwrap())
        .add_bytes(&tcp)
        .finish();
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let total = u16::try_from(20 + tcp.len()).unwrap();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&tcp);
    p
}

/// The packet's addresses, if its IPv4 header and TCP checksums verify.
fn tcp_addrs(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    use oemesh_core::wire::{IpPacket, checksum};
    let ip = IpPacket::new_checked(p).ok()?;
    let tcp = ip.payload();
    let pseudo = ip.pseudo_header(6, u32::try_from(tcp.len()).ok()?);
    (checksum(&p[..20]) == 0 && pseudo.add_bytes(tcp).finish() == 0)
        .then(|| (ip.src_addr(), ip.dst_addr()))
}

/// Seals `inner` with `out` and returns the ESP packet.
fn sealed(out: &Outbound, inner: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut buf = vec![0u8; HEADER_LEN + inner.len() + MAX_TRAILER_LEN];
    buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(inner);
    let len = out.seal(&mut buf, inner.len())?;
    buf.truncate(len);
    Ok(buf)
}

#[test]
fn translation_both_ways() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let own: IpAddr = "192.168.1.10".parse().unwrap();
    let assigned: IpAddr = "100.64.0.7".parse().unwrap();
    let peer: IpAddr = "192.0.2.20".parse().unwrap();
    let t = Translation { assigned, own };
    // The initiator behind the NAT, given 100.64.0.7; the responder knows
    // it only as that.
    let initiator = SaTable::new(tx.clone());
    initiator.install(install_of(1, (1, 2), (own, peer), Some(t), false), true);
    let responder = SaTable::new(tx);
    responder.install(install_of(2, (2, 1), (peer, assigned), None, false), true);

    // Out: the kernel's packet from 192.168.1.10 leaves from 100.64.0.7.
    let mut esp = sealed(
        &initiator.outbound(peer).unwrap(),
        &v4_tcp([192, 168, 1, 10], [192, 0, 2, 20]),
    )
    .unwrap();
    let range = responder.inbound(2).unwrap().open(&mut esp).unwrap();
    assert_eq!(tcp_addrs(&esp[range]), Some((assigned, peer)));

    // In: the responder's reply to 100.64.0.7 reaches the kernel as 192.168.1.10.
    let reply = v4_tcp([192, 0, 2, 20], [100, 64, 0, 7]);
    let mut esp = sealed(&responder.outbound(assigned).unwrap(), &reply).unwrap();
    let range = initiator.inbound(1).unwrap().open(&mut esp).unwrap();
    assert_eq!(tcp_addrs(&esp[range]), Some((peer, own)));

    // The selectors are checked before the rewrite: a reply to the own
    // address (not the assigned one) is refused.
    let mut esp = sealed(
        &responder.outbound(assigned).unwrap(),
        &v4_tcp([192, 0, 2, 20], [192, 168, 1, 10]),
    )
    .unwrap();
    assert!(matches!(
        initiator.inbound(1).unwrap().open(&mut esp),
        Err(OpenError::TsMismatch)
    ));

    // An inner packet of the other family cannot take the assigned address:
    // refused before ESP, so no sequence number is spent.
    let v6 = [0x60u8, 0, 0, 0, 0, 0, 59, 64]
        .into_iter()
        .chain([0u8; 32])
        .collect::<Vec<_>>();
    let out = initiator.outbound(peer).unwrap();
    assert!(matches!(sealed(&out, &v6), Err(SealError::Translate(_))));
    assert_eq!(out.counters().0, 1);
}

#[test]
fn move_peer_and_moved() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let table = SaTable::new(tx);
    let local: IpAddr = "192.0.2.1".parse().unwrap();
    let (b, c): (IpAddr, IpAddr) = ("192.0.2.20".parse().unwrap(), "192.0.2.30".parse().unwrap());
    // IKE SA 1 to b floats, with a CHILD SA and its rekey; IKE SA 2 to c not.
    table.install(install_of(1, (1, 2), (local, b), None, true), true);
    table.install(install_of(1, (3, 4), (local, b), None, true), true);
    table.install(install_of(2, (5, 6), (local, c), None, false), true);
    let old = SocketAddr::new(b, 4500);
    let new = SocketAddr::new(b, 61_000);
    let inb = table.inbound(3).unwrap();
    assert!(!inb.moved(old));
    assert!(inb.moved(new), "same IP, new port: the NAT rebound");
    assert!(inb.moved("[::ffff:192.0.2.20]:61000".parse().unwrap()));
    assert!(
        !inb.moved(SocketAddr::new(c, 61_000)),
        "another IP is never a move"
    );
    assert!(
        !table.inbound(5).unwrap().moved(SocketAddr::new(c, 1)),
        "does not float"
    );

    table.move_peer(SaHandle(1), new);
    assert_eq!(table.outbound(b).unwrap().remote(), new);
    for spi in [1, 3] {
        assert_eq!(table.inbound(spi).unwrap().remote(), new);
    }
    assert!(!inb.moved(new));
    assert!(inb.moved(old), "and back again");
    assert_eq!(
        table.outbound(c).unwrap().remote(),
        SocketAddr::new(c, 4500)
    );
    assert_eq!(table.inbound(5).unwrap().remote(), SocketAddr::new(c, 4500));
}

/// A router's "too big" lowers the path MTU of every half to the peer's
/// address and port, but only when it quotes an SA of ours: an error for an
/// address, port or SPI we do not use is refused (an off-path sender must
/// not shrink our datagrams), and no MTU goes below the family's minimum.
#[test]
fn path_mtu_is_taken_only_for_our_sas_and_only_lower() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let table = SaTable::new(tx);
    let local: IpAddr = "192.0.2.1".parse().unwrap();
    let (a, b): (IpAddr, IpAddr) = ("192.0.2.20".parse().unwrap(), "192.0.2.30".parse().unwrap());
    let to_a = install(&table, 1, (1, 2), (local, a), true);
    // A second SA to the same peer's UDP address (another destination
    // behind it, as through a gateway).
    let mut other = install_of(1, (3, 4), (local, "10.9.0.1".parse().unwrap()), None, false);
    other.remote = SocketAddr::new(a, 4500);
    let to_a2 = table.install(other, true);
    let to_b = install(&table, 2, (5, 6), (local, b), true);
    let peer = SocketAddr::new(a, 4500);
    let now = Instant::now();

    // Not ours: unknown port, unknown address, unknown SPI.
    let refused = [
        (SocketAddr::new(a, 4501), Some(2)),
        (SocketAddr::new("192.0.2.99".parse().unwrap(), 4500), None),
        (peer, Some(0xdead)),
    ];
    for (to, spi) in refused {
        assert_eq!(table.lower_path_mtu(to, spi, 1300, now), PmtuEvent::NotOurs);
    }
    assert_eq!(to_a.pmtu.learned(), None, "nothing learned from those");

    // Ours (the SPI of one half, or no SPI quoted): every half to the peer.
    assert_eq!(
        table.lower_path_mtu(peer, Some(2), 1300, now),
        PmtuEvent::Lowered
    );
    assert_eq!(to_a.pmtu.learned(), Some(1300));
    assert_eq!(to_a2.pmtu.learned(), Some(1300));
    assert_eq!(to_b.pmtu.learned(), None, "another peer's path is its own");
    assert_eq!(
        table.lower_path_mtu(peer, None, 1400, now),
        PmtuEvent::NotLower
    );
    assert_eq!(to_a.pmtu.learned(), Some(1300));
    // Below the IPv4 minimum: the minimum, once.
    assert_eq!(
        table.lower_path_mtu(peer, Some(4), 100, now),
        PmtuEvent::Clamped
    );
    assert_eq!(to_a.pmtu.learned(), Some(576));
    assert_eq!(
        table.lower_path_mtu(peer, Some(4), 1, now),
        PmtuEvent::NotLower
    );
    assert_eq!(to_a2.pmtu.learned(), Some(576));
}

#[test]
fn a_site_selector_carries_every_address_inside_until_its_pair_goes() {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let table = SaTable::new(tx);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (local, gw) = (ip("192.0.2.32"), ip("192.0.2.31"));
    let site = AddrSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        addrs: oemesh_core::ike::message::AddrRange::V4(
            "10.1.0.0".parse().unwrap(),
            "10.1.0.255".parse().unwrap(),
        ),
    };
    let mut i = install_of(1, (1, 2), (local, gw), None, false);
    i.remote_ts.push(site);
    let out = table.install(i, false);
    // Not before it is published (held packets go first).
    assert!(table.outbound(ip("10.1.0.5")).is_none());
    table.publish(out);
    for inside in ["10.1.0.5", "10.1.0.255"] {
        assert_eq!(
            table.outbound(ip(inside)).map(|o| o.dst),
            Some(gw),
            "{inside}"
        );
    }
    assert!(table.outbound(ip("10.1.1.5")).is_none());
    // A rekey replaces the route with the new pair's.
    let mut i = install_of(1, (3, 4), (local, gw), None, false);
    i.remote_ts = vec![AddrSelector::host(gw)];
    table.install(i, true);
    assert!(table.outbound(ip("10.1.0.5")).is_none());
    let mut i = install_of(1, (5, 6), (local, gw), None, false);
    i.remote_ts.push(AddrSelector {
        addrs: oemesh_core::ike::message::AddrRange::V4(
            "10.1.0.0".parse().unwrap(),
            "10.1.0.255".parse().unwrap(),
        ),
        ..AddrSelector::host(gw)
    });
    table.install(i, true);
    assert_eq!(
        table.outbound(ip("10.1.0.9")).map(|o| o.inbound_spi),
        Some(5)
    );
    table.remove_pair(5);
    assert!(table.outbound(ip("10.1.0.9")).is_none());
}
