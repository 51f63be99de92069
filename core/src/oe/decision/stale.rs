//! ESP with an unknown SPI: after this host restarts (a crash sends no
//! DELETE), its peers go on sending ESP under SAs it no longer has, and
//! until their dead peer detection notices (`dpd_interval` + the exchange
//! timeout, 30–60 s) the flow is dead if this host has nothing to send. So
//! the data path reports the source of such ESP, and the machine starts a
//! decision toward it as a first packet would, with nothing to hold: its
//! IKE_AUTH carries INITIAL_CONTACT, and the peer replaces its stale SAs at
//! once.
//!
//! Who vouches for the report: nobody. ESP with a random SPI can be sent
//! from any source address by anyone. So it starts only what a packet from
//! this host to that address would start (a DNS lookup and IKE, under the
//! same policy, outcomes and limits), and only when that is all it can do:
//! - only toward sources in a group that initiates (`private`,
//!   `private-or-clear`), with no SA, decision under way or cached outcome
//!   (the node and its driver check those);
//! - once per source per `stale_spi_interval`, in a bounded map
//!   (`stale_spi_sources`, the oldest forgotten first);
//! - from a budget of its own (`stale_spi_per_second`, `stale_spi_burst`), so
//!   that spoofed sources can neither use up the lookups of this host's real
//!   first packets (`lookups_per_second`) nor make it send IKE_SA_INITs to
//!   many addresses (a reflector) faster than that;
//! - and, being a decision, within `max_pending`.
//!
//! Every refusal is returned as a [`StaleSpiFate`] for the driver to count.

use std::net::IpAddr;
use std::time::Instant;

use super::{Machine, Pending, Phase};
use crate::ipseckey::reverse_name;

/// What ESP with an unknown SPI from a source did
/// ([`super::Machine::on_stale_spi`], `crate::oe::Node::handle_stale_spi`;
/// for metrics: `oemesh_stale_spi_total{fate}`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StaleSpiFate {
    /// A decision toward the source started.
    Started,
    /// The source has an SA, a decision under way or a cached outcome: a
    /// leftover of a rekey or of a deleted SA, nothing to start.
    Known,
    /// The source's group does not start OE (`clear`, `clear-or-private`, `block`).
    NotInitiating,
    /// The source had one within `stale_spi_interval`.
    TooSoon,
    /// The budget of decisions started this way is used up.
    RateLimited,
    /// `max_pending` destinations are being decided.
    PendingFull,
    /// The driver could not pass it on (its queue was full).
    QueueFull,
}

impl StaleSpiFate {
    /// All fates, in label order.
    pub const ALL: [StaleSpiFate; 7] = [
        StaleSpiFate::Started,
        StaleSpiFate::Known,
        StaleSpiFate::NotInitiating,
        StaleSpiFate::TooSoon,
        StaleSpiFate::RateLimited,
        StaleSpiFate::PendingFull,
        StaleSpiFate::QueueFull,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            StaleSpiFate::Started => "started",
            StaleSpiFate::Known => "known",
            StaleSpiFate::NotInitiating => "not_initiating",
            StaleSpiFate::TooSoon => "too_soon",
            StaleSpiFate::RateLimited => "rate_limited",
            StaleSpiFate::PendingFull => "pending_full",
            StaleSpiFate::QueueFull => "queue_full",
        }
    }
}

impl Machine {
    /// ESP with an unknown SPI came from `src`, which has no SA and no cached
    /// outcome (the caller checked): starts deciding `src` as
    /// [`Machine::on_packet`] would, with no packet to hold, so that this
    /// host (restarted, most likely) meets the peer that still uses SAs it
    /// lost. Nobody vouches for `src` (anyone can send ESP from any address),
    /// so only within bounds, each refusal a [`StaleSpiFate`]: only for a
    /// group that initiates; at most once per source per
    /// `Config::stale_spi_interval` (`stale_spi_sources` remembered, the
    /// oldest forgotten first); from a budget of its own
    /// (`stale_spi_per_second`, `stale_spi_burst`), never the lookups of real
    /// first packets; within `max_pending`. Call [`Machine::poll_action`]
    /// afterwards.
    pub fn on_stale_spi(&mut self, now: Instant, src: IpAddr) -> StaleSpiFate {
        if self.pending.contains_key(&src) {
            return StaleSpiFate::Known;
        }
        let policy = self.policy.lookup(src);
        if !policy.group.initiates() {
            return StaleSpiFate::NotInitiating;
        }
        if self.pending.len() >= self.config.max_pending {
            return StaleSpiFate::PendingFull;
        }
        if self.stale_sources.seen(now, src) {
            return StaleSpiFate::TooSoon;
        }
        // Not recorded when refused here: a real peer's next packet may find
        // a token, where a spoofed flood has used them all.
        if !self.stale_bucket.take(now) {
            return StaleSpiFate::RateLimited;
        }
        self.stale_sources.record(now, src);
        let name = reverse_name(src);
        let phase = Phase::Dns { name: name.clone() };
        self.pending.insert(src, Pending { policy, phase });
        self.start_lookup(now, src, name, None);
        StaleSpiFate::Started
    }
}
