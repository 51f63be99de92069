//! ESP with an unknown SPI starting OE toward its source (issue 18: a host
//! that restarted asks at once for new SAs with the peers still sending
//! under the old ones). Nobody vouches for the source, so what it may start
//! is bounded: only groups that initiate, once per source per interval, from
//! a budget of its own (not the lookups of real first packets), within
//! `max_pending`. All on a virtual clock.

mod oe_common;

use std::net::IpAddr;
use std::time::Duration;

use oe_common::*;
use oemesh_core::oe::{Action, Config, Machine, PacketFate, StaleSpiFate};

/// A machine whose decisions end on their DNS deadline (nothing answers).
fn timed_out(m: &mut Machine, now: std::time::Instant) -> std::time::Instant {
    drain(m);
    let later = now + Config::default().dns_timeout;
    m.handle_timeout(later);
    drain(m);
    later
}

fn source(i: u32) -> IpAddr {
    let [_, _, c, d] = i.to_be_bytes();
    // 10.0.2.0/24 is private-or-clear, 10.0.3.0/24 private: use both.
    IpAddr::from([10, 0, 2 + (c & 1), d])
}

#[test]
fn only_groups_that_initiate_start_a_decision() {
    let mut m = machine();
    let now = t0();
    // clear, clear-or-private (answers, never starts), block, and outside
    // every prefix (clear).
    for src in ["10.0.0.5", "10.0.1.5", "10.0.4.5", "192.0.2.9"] {
        assert_eq!(
            m.on_stale_spi(now, ip(src)),
            StaleSpiFate::NotInitiating,
            "{src}"
        );
        assert!(!m.is_pending(ip(src)));
    }
    assert!(
        drain(&mut m).is_empty(),
        "nothing looked up, nothing decided"
    );
    for src in ["10.0.2.5", "10.0.3.5", "2001:db8::5"] {
        assert_eq!(m.on_stale_spi(now, ip(src)), StaleSpiFate::Started, "{src}");
        assert!(m.is_pending(ip(src)));
        let actions = drain(&mut m);
        let [Action::LookupKey { name, .. }] = actions.as_slice() else {
            panic!("{src}: {actions:?}")
        };
        assert_eq!(*name, name_of(ip(src)));
        // Being decided: another report changes nothing.
        assert_eq!(m.on_stale_spi(now, ip(src)), StaleSpiFate::Known);
    }
    // Nothing was held: the hold store is empty.
    assert_eq!(m.hold().total_packets(), 0);
}

#[test]
fn once_per_source_per_interval() {
    let mut m = machine();
    let now = t0();
    let src = ip("10.0.2.7");
    assert_eq!(m.on_stale_spi(now, src), StaleSpiFate::Started);
    let now = timed_out(&mut m, now);
    assert!(!m.is_pending(src));
    // Decided (clear, after the DNS timeout); the driver would now find a
    // cached outcome, but even without one the source waits its interval.
    let interval = Config::default().stale_spi_interval;
    assert_eq!(m.on_stale_spi(now, src), StaleSpiFate::TooSoon);
    let start = now - Config::default().dns_timeout;
    assert_eq!(
        m.on_stale_spi(start + interval - Duration::from_millis(1), src),
        StaleSpiFate::TooSoon
    );
    assert_eq!(m.on_stale_spi(start + interval, src), StaleSpiFate::Started);
}

#[test]
fn the_memory_of_sources_is_bounded_oldest_first() {
    let config = Config {
        stale_spi_sources: 2,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = t0();
    let (a, b, c) = (ip("10.0.2.1"), ip("10.0.2.2"), ip("10.0.2.3"));
    for src in [a, b, c] {
        assert_eq!(m.on_stale_spi(now, src), StaleSpiFate::Started);
    }
    let now = timed_out(&mut m, now);
    // a was forgotten to make room for c; b and c are remembered.
    assert_eq!(m.on_stale_spi(now, c), StaleSpiFate::TooSoon);
    assert_eq!(m.on_stale_spi(now, a), StaleSpiFate::Started);
}

#[test]
fn a_budget_of_its_own_spares_real_first_packets() {
    // The real lookups' budget is one; the stale one is 10/s, burst 20.
    let config = Config {
        lookups_per_second: 1,
        lookup_burst: 1,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = t0();
    let burst = Config::default().stale_spi_burst;
    for i in 0..burst {
        assert_eq!(m.on_stale_spi(now, source(i)), StaleSpiFate::Started, "{i}");
    }
    // Spoofed sources have used the whole burst: the next is refused and
    // not remembered, so a real peer's later report still counts.
    let late = source(burst);
    assert_eq!(m.on_stale_spi(now, late), StaleSpiFate::RateLimited);
    assert!(!m.is_pending(late));
    // This host's own first packet still gets its lookup.
    assert_eq!(
        m.on_packet(now, ip("10.0.2.200"), b"first".to_vec()),
        PacketFate::Held
    );
    // 10/s: one more token 100 ms later, for the refused source too.
    let later = now + Duration::from_millis(100);
    assert_eq!(m.on_stale_spi(later, late), StaleSpiFate::Started);
    assert_eq!(
        m.on_stale_spi(later, source(burst + 1)),
        StaleSpiFate::RateLimited
    );
}

#[test]
fn it_is_a_decision_within_max_pending() {
    let config = Config {
        max_pending: 1,
        ..Config::default()
    };
    let mut m = machine_with(config, &[]);
    let now = t0();
    assert_eq!(
        m.on_packet(now, ip("10.0.2.9"), b"x".to_vec()),
        PacketFate::Held
    );
    assert_eq!(
        m.on_stale_spi(now, ip("10.0.2.10")),
        StaleSpiFate::PendingFull
    );
    assert!(!m.is_pending(ip("10.0.2.10")));
}

#[test]
fn labels_are_distinct_and_in_order() {
    let labels: Vec<&str> = StaleSpiFate::ALL.iter().map(|f| f.label()).collect();
    let mut unique = labels.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), labels.len(), "{labels:?}");
    for (i, f) in StaleSpiFate::ALL.iter().enumerate() {
        assert_eq!(*f as usize, i);
    }
}
