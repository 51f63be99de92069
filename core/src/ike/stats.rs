//! The endpoint's counters ([`Stats`]), and why a received message was
//! dropped ([`DropReason`]), one reason per place that drops one.

/// Why the endpoint dropped a received IKE message without acting on it.
/// Each place that drops one has its own reason; [`DropReason::label`] names
/// it for a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an IKE header, or its lengths do not add up.
    MalformedHeader,
    /// A major version other than 2 (§3.1).
    MajorVersion,
    /// An IKE_SA_INIT request without the Initiator flag.
    InitRequestNotInitiator,
    /// No IKE SA of this host has the SPI (§2.6).
    UnknownSpi,
    /// The SPI names an IKE SA that is gone.
    StaleSpi,
    /// The Initiator flag or the other SPI does not match the IKE SA.
    SpiMismatch,
    /// From another IP address than the SA's IKE_SA_INIT, or another port
    /// without a NAT (§2.23); also in [`Stats::wrong_address`].
    WrongAddress,
    /// A malformed IKE_SA_INIT request.
    MalformedInitRequest,
    /// An IKE_SA_INIT request with a message ID other than 0.
    InitRequestMessageId,
    /// An IKE_SA_INIT request over its source's share of half-open SAs;
    /// also in [`Stats::half_open_source_full`].
    HalfOpenSourceFull,
    /// An IKE_SA_INIT request over `half_open_limit`.
    HalfOpenLimit,
    /// Initiator: anything but the IKE_SA_INIT response while waiting for it.
    NotInitResponse,
    /// A malformed IKE_SA_INIT response.
    MalformedInitResponse,
    /// An IKE_SA_INIT response with a message ID other than 0.
    InitResponseMessageId,
    /// Initiator: anything but the IKE_AUTH response while waiting for it.
    NotAuthResponse,
    /// An IKE_AUTH response to another message ID than the request's.
    AuthResponseMessageId,
    /// Responder: anything but an IKE_AUTH request while half-open.
    NotAuthRequest,
    /// An IKE_AUTH request with another message ID than the expected one.
    AuthRequestMessageId,
    /// An SK payload whose ICV did not verify (§2.21.2); also in
    /// [`Stats::auth_failures`].
    Icv,
    /// A protected message that did not parse.
    MalformedProtected,
    /// A response to no outstanding request (§2.3).
    UnexpectedResponse,
    /// A request neither the next one nor the last one answered (§2.3).
    RequestOutOfWindow,
}

impl DropReason {
    /// Every reason, in the order of [`Stats::drops`].
    pub const ALL: [DropReason; 22] = [
        DropReason::MalformedHeader,
        DropReason::MajorVersion,
        DropReason::InitRequestNotInitiator,
        DropReason::UnknownSpi,
        DropReason::StaleSpi,
        DropReason::SpiMismatch,
        DropReason::WrongAddress,
        DropReason::MalformedInitRequest,
        DropReason::InitRequestMessageId,
        DropReason::HalfOpenSourceFull,
        DropReason::HalfOpenLimit,
        DropReason::NotInitResponse,
        DropReason::MalformedInitResponse,
        DropReason::InitResponseMessageId,
        DropReason::NotAuthResponse,
        DropReason::AuthResponseMessageId,
        DropReason::NotAuthRequest,
        DropReason::AuthRequestMessageId,
        DropReason::Icv,
        DropReason::MalformedProtected,
        DropReason::UnexpectedResponse,
        DropReason::RequestOutOfWindow,
    ];

    /// The reason in snake_case, for a metrics label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::MalformedHeader => "malformed_header",
            DropReason::MajorVersion => "major_version",
            DropReason::InitRequestNotInitiator => "init_request_not_initiator",
            DropReason::UnknownSpi => "unknown_spi",
            DropReason::StaleSpi => "stale_spi",
            DropReason::SpiMismatch => "spi_mismatch",
            DropReason::WrongAddress => "wrong_address",
            DropReason::MalformedInitRequest => "malformed_init_request",
            DropReason::InitRequestMessageId => "init_request_message_id",
            DropReason::HalfOpenSourceFull => "half_open_source_full",
            DropReason::HalfOpenLimit => "half_open_limit",
            DropReason::NotInitResponse => "not_init_response",
            DropReason::MalformedInitResponse => "malformed_init_response",
            DropReason::InitResponseMessageId => "init_response_message_id",
            DropReason::NotAuthResponse => "not_auth_response",
            DropReason::AuthResponseMessageId => "auth_response_message_id",
            DropReason::NotAuthRequest => "not_auth_request",
            DropReason::AuthRequestMessageId => "auth_request_message_id",
            DropReason::Icv => "icv",
            DropReason::MalformedProtected => "malformed_protected",
            DropReason::UnexpectedResponse => "unexpected_response",
            DropReason::RequestOutOfWindow => "request_out_of_window",
        }
    }

    /// Its index in [`DropReason::ALL`] and [`Stats::drops`].
    fn index(self) -> usize {
        self as usize
    }
}

/// Counters for `oemesh status` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// IKE SAs in any state.
    pub ike_sas: usize,
    /// Responder IKE SAs not yet authenticated.
    pub half_open: usize,
    /// COOKIE notifies sent (§2.6).
    pub cookies_sent: u64,
    /// IKE SAs established.
    pub established: u64,
    /// Messages dropped: unparsable, unknown SPI, bad ICV, half-open limit, etc.
    /// (the sum of [`Stats::drops`]).
    pub dropped: u64,
    /// Of those, per reason, in the order of [`DropReason::ALL`] (read one
    /// with [`Stats::drops_for`]).
    pub drops: [u64; DropReason::ALL.len()],
    /// Of those, ICV or AUTH failures.
    pub auth_failures: u64,
    /// Of those, messages of an IKE SA from another IP address than its
    /// IKE_SA_INIT's, or from another port without a NAT (§2.23).
    pub wrong_address: u64,
    /// Of those, IKE_SA_INIT requests over a source's share of half-open SAs.
    pub half_open_source_full: u64,
    /// Peers refused because their identity is not their address ([`crate::trust`]).
    pub identity_refused: u64,
    /// CHILD SAs refused with TS_UNACCEPTABLE: nothing of what the peer
    /// proposed is this host or inside `protects` (TSr), or its own address
    /// or what DNS vouched for (TSi).
    pub ts_refused: u64,
    /// INITIAL_CONTACT notifies ignored (AUTH NULL: anonymous peers replace nothing).
    pub initial_contact_ignored: u64,
    /// INITIAL_CONTACT notifies sent: in every IKE_AUTH request (with
    /// `Config::initial_contact`), and in IKE_AUTH responses to peers at an
    /// address this host had no other IKE SA with (§2.4).
    pub initial_contact_sent: u64,
    /// IKE SAs replaced by a signed peer's INITIAL_CONTACT (the peer started over).
    pub initial_contact_replaced: u64,
    /// Anonymous SAs evicted to make room (`anonymous_limit`, `anonymous_per_source`).
    pub anonymous_evicted: u64,
    /// NAT-keepalives sent (RFC 3948 §2.3): this host is behind a NAT.
    pub nat_keepalives_sent: u64,
    /// Addresses given to initiators behind a NAT (CP, §3.15).
    pub addresses_assigned: u64,
    /// Address requests refused, per reason, in the order of
    /// [`crate::ike::error::AddressRefusal::ALL`].
    pub addresses_refused: [u64; crate::ike::error::AddressRefusal::ALL.len()],
    /// Pool addresses out now (held by IKE SAs).
    pub addresses_out: usize,
}

impl Stats {
    /// Messages dropped for `reason`.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Counts a dropped message.
    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.dropped += 1;
        self.drops[reason.index()] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_labels_are_distinct() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let labels: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
    }

    #[test]
    fn a_drop_counts_in_the_total_and_under_its_reason() {
        let mut s = Stats::default();
        s.count_drop(DropReason::Icv);
        s.count_drop(DropReason::Icv);
        s.count_drop(DropReason::UnknownSpi);
        assert_eq!(s.dropped, 3);
        assert_eq!(s.drops_for(DropReason::Icv), 2);
        assert_eq!(s.drops_for(DropReason::UnknownSpi), 1);
        assert_eq!(s.drops_for(DropReason::WrongAddress), 0);
    }
}
