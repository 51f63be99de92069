//! Timeouts, lifetimes and limits of the decision machine, with their defaults.

use std::time::Duration;

use super::hold::HoldLimits;

/// Configuration of [`super::Machine`]. `Config::default()` gives the documented
/// defaults; override fields with `Config { dns_timeout, ..Config::default() }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How long to wait for an IPSECKEY answer (default 1 s).
    pub dns_timeout: Duration,
    /// How long all IKE attempts for one destination may take together
    /// (default 2 s), shared evenly among the keys still to try.
    pub ike_timeout: Duration,
    /// How long the anonymous attempt with a destination that publishes no
    /// key may wait for the peer's first IKE answer (default 250 ms): such a
    /// destination can only be an anonymous OE peer, and most hosts are none.
    /// Once it answers IKE_SA_INIT, the attempt has the rest of `ike_timeout`.
    pub anonymous_timeout: Duration,
    /// How long an attempt with a keyed destination still waits after an
    /// ICMP error for its IKE_SA_INIT (default 200 ms): a forged error must
    /// not end it, so the error only shortens the wait to this.
    pub icmp_grace: Duration,
    /// How long a clear (or policy-blocked) outcome lasts (default 15 min, like
    /// Libreswan's shunt lifetime); never longer than the DNS TTL that decided it.
    pub clear_lifetime: Duration,
    /// How long an outcome decided by a transient failure lasts: clear after a
    /// DNS failure, blocked after a failure of `private` (default 30 s).
    pub retry_lifetime: Duration,
    /// Held-packet limits.
    pub hold: HoldLimits,
    /// Destinations being decided at once, at most (default 1024). A packet to
    /// a new destination beyond that is dropped and counted.
    pub max_pending: usize,
    /// Responder requests waiting for DNS at once, at most (default 1024).
    pub max_responder_pending: usize,
    /// New DNS lookups per second, sustained (default 50).
    pub lookups_per_second: u32,
    /// New DNS lookups in a burst (default 100).
    pub lookup_burst: u32,
    /// New DNS lookups per second for peers that start IKE with this host
    /// (their keys, their FQDNs' addresses, prefetches): a budget of their
    /// own, so that inbound IKE never starves this host's new outbound flows
    /// (default 50).
    pub inbound_lookups_per_second: u32,
    /// The inbound budget's burst (default 100).
    pub inbound_lookup_burst: u32,
    /// How long a peer that was private and authenticated is remembered for
    /// downgrade detection (default 1 h after it was last so; the agent's
    /// `downgrade_guard`). Within it, the peer going clear or blocked for any
    /// reason but policy, or coming back anonymous, is a downgrade.
    pub private_memory: Duration,
    /// Peers remembered at most (default 4096; the one expiring first is forgotten).
    pub private_memory_limit: usize,
    /// `true`: a downgrade (a remembered private peer that fails IKE, has no
    /// key in DNS any more, or comes back anonymous) blocks even a
    /// `private-or-clear` destination for `retry_lifetime` instead of going
    /// clear, and refuses the peer's anonymous IKE (default `false`: clear or
    /// anonymous, loudly).
    pub refuse_downgrade: bool,
    /// `true`: an initiator using AUTH NULL whose address publishes a usable
    /// IPSECKEY is refused, so nobody can pass as a keyed host anonymously
    /// (default `true`; costs a DNS lookup per anonymous request).
    pub refuse_anonymous_with_key: bool,
    /// ESP with an unknown SPI starts OE toward its source at most once per
    /// source in this long (default 10 s; [`super::Machine::on_stale_spi`]).
    pub stale_spi_interval: Duration,
    /// Sources remembered for that bound at most (default 4096; the oldest
    /// is forgotten first).
    pub stale_spi_sources: usize,
    /// Decisions started by ESP with unknown SPIs per second, sustained
    /// (default 10): a budget of their own, not `lookups_per_second`.
    pub stale_spi_per_second: u32,
    /// Their burst (default 20).
    pub stale_spi_burst: u32,
    /// Gateway mode (issue 14): the subnets behind this host
    /// (`[gateway] protects`; set the engine's `ike::Config::protects` to the
    /// same). A gateway prefers IPSECKEY records that name a gateway (it
    /// forwards for others: their traffic goes gateway to gateway), a host
    /// those without one (its own traffic goes to the end host). Empty: a host.
    pub protects: Vec<super::Cidr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dns_timeout: Duration::from_secs(1),
            ike_timeout: Duration::from_secs(2),
            anonymous_timeout: Duration::from_millis(250),
            icmp_grace: Duration::from_millis(200),
            clear_lifetime: Duration::from_secs(15 * 60),
            retry_lifetime: Duration::from_secs(30),
            hold: HoldLimits::default(),
            max_pending: 1024,
            max_responder_pending: 1024,
            lookups_per_second: 50,
            lookup_burst: 100,
            inbound_lookups_per_second: 50,
            inbound_lookup_burst: 100,
            private_memory: Duration::from_secs(3600),
            private_memory_limit: 4096,
            refuse_downgrade: false,
            refuse_anonymous_with_key: true,
            stale_spi_interval: Duration::from_secs(10),
            stale_spi_sources: 4096,
            stale_spi_per_second: 10,
            stale_spi_burst: 20,
            protects: Vec::new(),
        }
    }
}

/// Counts of every drop and noteworthy event, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// IPSECKEY answers by DNSSEC state, indexed by [`super::Dnssec`] as
    /// `usize` (failures DNSSEC did not decide are not counted).
    pub dnssec: [u64; 5],
    /// Held packets dropped (oldest first) because their destination's queue was full.
    pub hold_dst_full: u64,
    /// Held packets dropped because the total hold limit was reached.
    pub hold_total_full: u64,
    /// Packets dropped for being larger than a destination's hold limit.
    pub hold_too_big: u64,
    /// Packets dropped because `max_pending` destinations were being decided.
    pub pending_full: u64,
    /// Packets dropped because the DNS lookup rate limit was exhausted.
    pub lookup_rate_limited: u64,
    /// Responder requests refused because `max_responder_pending` were waiting
    /// or the lookup rate limit was exhausted.
    pub responder_overload: u64,
    /// Packets dropped by the `block` group.
    pub blocked_by_policy: u64,
    /// Held packets dropped because their destination failed closed.
    pub failed_closed: u64,
    /// DNS lookups that timed out.
    pub dns_timeouts: u64,
    /// DNS lookups that failed.
    pub dns_failures: u64,
    /// IPSECKEY records skipped as unusable.
    pub unusable_records: u64,
    /// IKE attempts that timed out.
    pub ike_timeouts: u64,
    /// IKE attempts that failed.
    pub ike_failures: u64,
    /// Downgrades detected.
    pub downgrades: u64,
    /// DNS or IKE results for nothing pending (late, or already decided).
    pub stale_results: u64,
    /// IKE peers refused by the responder side.
    pub refused_peers: u64,
    /// Of those, peers whose identity is not their address ([`crate::trust`]).
    pub identity_refused: u64,
    /// Selectors a peer proposed beyond its own address that could not be
    /// vouched for outright (a subnet containing the peer itself).
    pub not_vouched: u64,
    /// Anonymous peers accepted although the lookup of their key failed.
    pub anonymous_lookup_failed: u64,
    /// Key lookups started at a peer's IKE_SA_INIT, ahead of its IKE_AUTH.
    pub prefetches: u64,
    /// IKE_AUTHs whose key lookup was already answered or in flight.
    pub prefetch_hits: u64,
    /// Attempts ended at once by an ICMP error (keyless destination, our SPI quoted).
    pub unreachable_ended: u64,
    /// Attempts whose wait an ICMP error shortened to `icmp_grace` (keyed
    /// destination, or an error that did not quote our SPI).
    pub unreachable_shortened: u64,
    /// Anonymous attempts that got no IKE answer within `anonymous_timeout`.
    pub anonymous_timeouts: u64,
    /// Keyless destinations whose packets went in clear while IKE ran (passthrough).
    pub passthroughs: u64,
}
