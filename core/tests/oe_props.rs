//! Property: whatever the events and their order, a `private` destination's
//! packets never go out in clear, the hold limits are never exceeded, and every
//! packet is accounted for (held, released, or dropped and counted).

mod oe_common;

use std::collections::HashMap;
use std::net::IpAddr;

use oe_common::*;
use oemesh_core::ike::endpoint::Failure;
use oemesh_core::ipseckey::{DomainName, Gateway};
use oemesh_core::oe::{
    Action, AddressResult, Config, DnsResult, Dnssec, Group, HoldLimits, IkeResult, Machine,
    NoRecord, State,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Event {
    Packet {
        dst: usize,
        size: usize,
    },
    Records {
        dst: usize,
        keys: u8,
        dnssec: bool,
    },
    NoRecords {
        dst: usize,
        ttl: Option<u32>,
    },
    DnsFailed {
        dst: usize,
    },
    Established {
        dst: usize,
        anonymous: bool,
    },
    IkeFailed {
        dst: usize,
    },
    IkeTimedOut {
        dst: usize,
    },
    Advance {
        ms: u64,
    },
    Request {
        dst: usize,
        null: bool,
    },
    /// The answer for `gw.example.` (named by the records' third key) in one
    /// family: an address, none, or bogus.
    GatewayAddress {
        v4: bool,
        answer: u8,
    },
}

/// Destinations across the groups; the private ones are 10.0.3.x.
const DSTS: [&str; 8] = [
    "10.0.3.1",
    "10.0.3.2",
    "10.0.2.1",
    "10.0.2.2",
    "2001:db8::1",
    "10.0.0.1",
    "10.0.1.1",
    "10.0.4.1",
];

fn event() -> impl Strategy<Value = Event> {
    let dst = 0..DSTS.len();
    prop_oneof![
        4 => (dst.clone(), 0usize..700).prop_map(|(dst, size)| Event::Packet { dst, size }),
        1 => (dst.clone(), 0u8..4, any::<bool>()).prop_map(|(dst, keys, dnssec)| Event::Records { dst, keys, dnssec }),
        1 => (dst.clone(), proptest::option::of(0u32..100)).prop_map(|(dst, ttl)| Event::NoRecords { dst, ttl }),
        1 => dst.clone().prop_map(|dst| Event::DnsFailed { dst }),
        1 => (dst.clone(), any::<bool>()).prop_map(|(dst, anonymous)| Event::Established { dst, anonymous }),
        1 => dst.clone().prop_map(|dst| Event::IkeFailed { dst }),
        1 => dst.clone().prop_map(|dst| Event::IkeTimedOut { dst }),
        2 => (0u64..1500).prop_map(|ms| Event::Advance { ms }),
        1 => (dst, any::<bool>()).prop_map(|(dst, null)| Event::Request { dst, null }),
        1 => (any::<bool>(), 0u8..3).prop_map(|(v4, answer)| Event::GatewayAddress { v4, answer }),
    ]
}

fn config() -> Config {
    Config {
        hold: HoldLimits {
            packets_per_dst: 4,
            bytes_per_dst: 1000,
            total_packets: 10,
            total_bytes: 2500,
        },
        max_pending: 4,
        lookups_per_second: 5,
        lookup_burst: 3,
        ..Config::default()
    }
}

fn is_private_group(dst: IpAddr) -> bool {
    dst.to_string().starts_with("10.0.3.")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn private_never_clear_and_limits_hold(events in proptest::collection::vec(event(), 1..80)) {
        let limits = config().hold;
        let mut m = Machine::new(config(), policy(&[(Group::Private, NO_ANON)]));
        let mut now = t0();
        let mut ike_peer: HashMap<IpAddr, IpAddr> = HashMap::new();
        let (mut sent, mut released, mut dropped_in_actions) = (0u64, 0u64, 0u64);
        let mut request = 0u64;
        for ev in events {
            match ev {
                Event::Packet { dst, size } => {
                    sent += 1;
                    m.on_packet(now, ip(DSTS[dst]), vec![0xab; size]);
                }
                Event::Records { dst, keys, dnssec } => {
                    let recs = (0..keys)
                        .map(|k| ed(k * 10, match k {
                            1 => Gateway::Ipv4("192.0.2.1".parse().unwrap()),
                            2 => Gateway::Name(DomainName::from_ascii("gw.example.").unwrap()),
                            _ => Gateway::None,
                        }, k))
                        .chain([rsa(0)])
                        .collect();
                    m.on_dns_result(now, &name_of(ip(DSTS[dst])), records(recs, dnssec));
                }
                Event::NoRecords { dst, ttl } => {
                    let r = DnsResult::NoRecords { kind: NoRecord::Nxdomain, negative_ttl: ttl, dnssec: Dnssec::Insecure };
                    m.on_dns_result(now, &name_of(ip(DSTS[dst])), r);
                }
                Event::DnsFailed { dst } => {
                    let r = DnsResult::Failed { reason: oemesh_core::oe::DnsFailure::Rcode(2) };
                    m.on_dns_result(now, &name_of(ip(DSTS[dst])), r);
                }
                Event::Established { dst, anonymous } => {
                    let d = ip(DSTS[dst]);
                    let peer = ike_peer.get(&d).copied().unwrap_or(d);
                    m.on_ike_result(now, d, peer, IkeResult::Established { anonymous, dnssec: false, lookup_failed: false });
                }
                Event::IkeFailed { dst } => {
                    let d = ip(DSTS[dst]);
                    let peer = ike_peer.get(&d).copied().unwrap_or(d);
                    m.on_ike_result(now, d, peer, IkeResult::Failed { reason: Failure::Closed });
                }
                Event::IkeTimedOut { dst } => {
                    let d = ip(DSTS[dst]);
                    let peer = ike_peer.get(&d).copied().unwrap_or(d);
                    m.on_ike_result(now, d, peer, IkeResult::TimedOut);
                }
                Event::Advance { ms: n } => {
                    now += ms(n);
                    if m.poll_timeout().is_some_and(|t| t <= now) {
                        m.handle_timeout(now);
                    }
                }
                Event::GatewayAddress { v4, answer } => {
                    let (like, addr) = if v4 { ("10.0.2.1", "192.0.2.9") } else { ("2001:db8::1", "2001:db8::9") };
                    let result = match answer {
                        0 => AddressResult::Addresses { addrs: vec![ip(addr)], dnssec_validated: v4 },
                        1 => AddressResult::NoRecords { kind: NoRecord::Nxdomain },
                        _ => AddressResult::Failed { reason: oemesh_core::oe::DnsFailure::Bogus("test".into()) },
                    };
                    let gw = DomainName::from_ascii("gw.example.").unwrap();
                    m.on_address_result(now, &gw, ip(like), result);
                }
                Event::Request { dst, null } => {
                    request += 1;
                    let d = ip(DSTS[dst]);
                    let id = match d {
                        IpAddr::V4(a) => oemesh_core::ike::message::Identity::Ipv4(a),
                        IpAddr::V6(a) => oemesh_core::ike::message::Identity::Ipv6(a),
                    };
                    m.on_ike_request(now, request, d, &id, null);
                }
            }
            while let Some(action) = m.poll_action() {
                match action {
                    Action::PassClear { outcome, packets } => {
                        prop_assert!(!is_private_group(outcome.dst), "private went clear: {outcome}");
                        prop_assert_eq!(outcome.state, State::Clear);
                        released += packets.len() as u64;
                        m.recycle(packets);
                    }
                    Action::Private { packets, .. } => {
                        released += packets.len() as u64;
                        m.recycle(packets);
                    }
                    Action::Drop { outcome, dropped } => {
                        prop_assert_eq!(outcome.state, State::Blocked);
                        dropped_in_actions += dropped as u64;
                    }
                    Action::StartIke { dst, peer_addr, .. } => {
                        ike_peer.insert(dst, peer_addr);
                    }
                    _ => {}
                }
            }
            let h = m.hold();
            prop_assert!(h.total_packets() <= limits.total_packets);
            prop_assert!(h.total_bytes() <= limits.total_bytes);
            for d in DSTS {
                prop_assert!(h.packets(ip(d)) <= limits.packets_per_dst);
                prop_assert!(h.bytes(ip(d)) <= limits.bytes_per_dst);
                if !m.is_pending(ip(d)) {
                    prop_assert_eq!(h.packets(ip(d)), 0);
                }
            }
            let c = m.counters();
            let counted = c.hold_dst_full + c.hold_total_full + c.hold_too_big
                + c.pending_full + c.lookup_rate_limited;
            prop_assert_eq!(
                sent,
                h.total_packets() as u64 + released + dropped_in_actions + counted,
                "every packet accounted for"
            );
            prop_assert!(m.pending_len() <= 4);
        }
    }
}
