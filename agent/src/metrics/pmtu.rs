//! `oemesh_pmtu_events_total{event}`: path MTU through ESP (`datapath::pmtu`).

use super::Metrics;

/// What a path MTU event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PmtuEvent {
    /// A router's "too big" for our ESP lowered a peer's path MTU.
    Lowered,
    /// The same, with an MTU below the family's minimum, taken as that minimum.
    Clamped,
    /// A "too big" whose MTU does not lower the known one (nothing done).
    NotLower,
    /// A "too big" quoting no ESP datagram of an installed SA to that address
    /// and port (and SPI, when quoted): ignored, perhaps forged.
    NotOurs,
    /// A packet from the TUN too big for its peer's path, answered with
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big".
    TooBigSent,
    /// The same, but the answer could not be sent (no raw socket, no address).
    ReplyFailed,
    /// A packet too big for its peer's path that may get no answer (IPv4
    /// without DF, an ICMP error): sent anyway.
    OversizeSent,
    /// A packet too big for its peer's path beyond the answers allowed a
    /// second (`datapath::pmtu::TOO_BIG_PER_SECOND`): dropped unanswered.
    RateLimited,
}

impl PmtuEvent {
    /// Every event, in label order.
    pub const ALL: [PmtuEvent; 8] = [
        PmtuEvent::Lowered,
        PmtuEvent::Clamped,
        PmtuEvent::NotLower,
        PmtuEvent::NotOurs,
        PmtuEvent::TooBigSent,
        PmtuEvent::ReplyFailed,
        PmtuEvent::OversizeSent,
        PmtuEvent::RateLimited,
    ];

    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            PmtuEvent::Lowered => "lowered",
            PmtuEvent::Clamped => "clamped",
            PmtuEvent::NotLower => "not_lower",
            PmtuEvent::NotOurs => "not_ours",
            PmtuEvent::TooBigSent => "too_big_sent",
            PmtuEvent::ReplyFailed => "reply_failed",
            PmtuEvent::OversizeSent => "oversize_sent",
            PmtuEvent::RateLimited => "rate_limited",
        }
    }
}

impl Metrics {
    /// Counts one path MTU event.
    pub fn pmtu(&self, event: PmtuEvent) {
        self.pmtu[event as usize].inc();
    }

    /// Path MTU events counted so far with `event`.
    pub fn pmtu_events(&self, event: PmtuEvent) -> u64 {
        self.pmtu[event as usize].get()
    }
}
