//! What the [`super::Node`] asks its driver to do: [`Command`]s, and the
//! [`Note`]s it wants logged.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::crypto::{AeadAlg, Provider};
use crate::esp::{InboundSa, OutboundSa, SaConfig};
use crate::ike::endpoint::{ChildSa, Failure, SaHandle, Transmit};
use crate::ike::message::Identity;
use crate::ipseckey::DomainName;
use crate::oe::hold::Held;
use crate::oe::outcome::{Outcome, human};
use crate::oe::unreachable::{Unreachable, UnreachableFate};
use crate::trust::IdentityRefused;

/// Something the driver must do. Drain with [`super::Node::poll_command`]
/// after every call into the node, and carry them out in order: the order is
/// part of the protocol (a CHILD SA is installed before the IKE_AUTH response
/// that announces it leaves; held packets go out before the SA is published).
#[derive(Debug)]
pub enum Command {
    /// Send an IKE datagram (UDP 500, or 4500 with the non-ESP marker).
    Transmit(Transmit),
    /// Look up IPSECKEY at `name`; answer with [`super::Node::handle_dns`].
    LookupKey {
        /// The owner name.
        name: DomainName,
    },
    /// The answer for `name` is no longer wanted: the query may be cancelled.
    CancelLookup {
        /// The name of the [`Command::LookupKey`].
        name: DomainName,
    },
    /// Look up the A (IPv4 `addr`) or AAAA records of `name`; answer with
    /// [`super::Node::handle_address`].
    LookupAddress {
        /// The FQDN identity, or a gateway's name.
        name: DomainName,
        /// The address it must resolve to, or the destination the gateway
        /// is for (its family is the record type).
        addr: IpAddr,
    },
    /// The node now tracks IKE SA `sa` with `peer` (a log span may start).
    Track {
        /// The IKE SA.
        sa: SaHandle,
        /// The peer's address.
        peer: IpAddr,
    },
    /// The node forgot IKE SA `sa` (its log span may end).
    Forget {
        /// The IKE SA.
        sa: SaHandle,
    },
    /// Log `note`, inside `sa`'s span if it is tracked.
    Log {
        /// The IKE SA the note is about, if any.
        sa: Option<SaHandle>,
        /// What to log.
        note: Note,
    },
    /// An IKE SA this host started is up after `took` (a metric).
    Handshake {
        /// From `StartIke` to established.
        took: Duration,
    },
    /// Install the ESP SA pair of `child` ([`esp_sas`]) for packets to and
    /// from `dst`; its lifetime holds only byte and packet limits (time limits
    /// are the engine's: it rekeys and deletes the pair itself). With
    /// `publish` false only the inbound half serves at once; the outbound one
    /// waits for [`Command::PublishOutbound`] (held packets first) but already
    /// carries [`Command::SendHeld`].
    InstallChild {
        /// The IKE SA it belongs to.
        sa: SaHandle,
        /// The destination the pair protects.
        dst: IpAddr,
        /// Keys, SPIs, selectors, addresses.
        child: ChildSa,
        /// Whether the outbound half serves new packets at once (a rekey).
        publish: bool,
    },
    /// The peer of IKE SA `sa`, behind a NAT, moved to `remote` (a new port,
    /// RFC 7296 §2.23): its ESP SA pairs send there, and expect it, from now on.
    MovePeer {
        /// The IKE SA.
        sa: SaHandle,
        /// Where the peer is now.
        remote: SocketAddr,
    },
    /// The outbound half installed for `dst` now serves new packets.
    PublishOutbound {
        /// The destination.
        dst: IpAddr,
    },
    /// Remove the ESP SA pair whose inbound SPI is `inbound_spi` (and its
    /// unpublished outbound half, if any).
    RemoveChild {
        /// The inbound SPI.
        inbound_spi: u32,
    },
    /// Seal `packets` (held, oldest first) with `dst`'s outbound SA,
    /// published or not, and send them in order; then give `packets` back with
    /// [`super::Node::recycle`].
    SendHeld {
        /// The destination.
        dst: IpAddr,
        /// The packets.
        packets: Held,
    },
    /// Send `packets` in cleartext, in order; then give them back with
    /// [`super::Node::recycle`].
    SendClear {
        /// The packets.
        packets: Held,
    },
    /// Held packets were dropped (a blocked outcome): count them.
    Dropped {
        /// How many.
        packets: usize,
    },
    /// Route `dst` around the agent (a clear outcome).
    Bypass {
        /// The destination.
        dst: IpAddr,
    },
    /// Remove `dst`'s bypass route, if one was added.
    Unbypass {
        /// The destination.
        dst: IpAddr,
    },
    /// A decision was made: log and count it (see [`Outcome::is_warning`]).
    Decided {
        /// The outcome.
        outcome: Outcome,
    },
    /// Cache `outcome` for the data path until it expires.
    CacheOutcome {
        /// The outcome.
        outcome: Outcome,
    },
    /// A clear or blocked outcome for `dst` reached its expiry: forget it and
    /// its bypass, unless a newer clear outcome replaced it.
    OutcomeExpired {
        /// The destination.
        dst: IpAddr,
    },
    /// A reloaded policy put `dst` in another group than its clear or
    /// blocked outcome was decided in: forget the outcome and its bypass, so
    /// that its next packet is decided under the new policy.
    ForgetOutcome {
        /// The destination.
        dst: IpAddr,
    },
    /// `dst` has no SA left: forget its private outcome, if cached.
    PrivateEnded {
        /// The destination.
        dst: IpAddr,
    },
    /// The set of private peers changed this round: `added` go in, `removed`
    /// go out (a peer is in at most one of the two), one transaction each.
    SetPrivatePeers {
        /// Peers that became private.
        added: Vec<IpAddr>,
        /// Peers whose last SA went.
        removed: Vec<IpAddr>,
    },
}

/// How loud a [`Note`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// For debugging.
    Debug,
    /// Worth a line in the log.
    Info,
    /// Something an operator should look at.
    Warn,
}

/// A line for the log; `Display` is the sentence.
#[derive(Debug)]
pub enum Note {
    /// IKE_SA_INIT sent to start protecting `dst`.
    Connecting {
        /// The IKE peer.
        peer_addr: IpAddr,
        /// The destination.
        dst: IpAddr,
        /// AUTH NULL, not a key from DNS.
        anonymous: bool,
    },
    /// A peer's IKE_AUTH arrived.
    IkeAuthFrom {
        /// The peer.
        remote: SocketAddr,
        /// Its identity.
        id: Identity,
        /// AUTH NULL.
        null_auth: bool,
    },
    /// An IKE SA is up.
    Established {
        /// The peer.
        remote: SocketAddr,
        /// Its identity.
        peer_id: Identity,
        /// AUTH NULL.
        anonymous: bool,
        /// This host started it.
        initiator: bool,
    },
    /// A responder signed with an FQDN; its address records are checked.
    CheckingIdentity {
        /// The responder.
        remote: SocketAddr,
        /// The name.
        name: DomainName,
    },
    /// A responder's FQDN does not resolve to its address.
    RefusingResponder(IdentityRefused),
    /// A CHILD SA the peer asked for was refused (the IKE SA stays).
    ChildRefused {
        /// The peer.
        remote: SocketAddr,
        /// Why, with what it proposed.
        reason: String,
    },
    /// A selector a peer proposed beyond its own address that DNS does not
    /// vouch for: narrowed away (gateway mode).
    NotVouched {
        /// The peer.
        peer_addr: IpAddr,
        /// Which selector, and why.
        why: String,
    },
    /// A peer accepted as anonymous although the lookup of its key failed.
    AnonymousLookupFailed {
        /// The peer.
        peer_addr: IpAddr,
    },
    /// A peer's IKE refused.
    Refusing {
        /// The peer.
        peer_addr: IpAddr,
        /// Why.
        reason: String,
    },
    /// An ESP SA pair was installed.
    EspPair {
        /// The destination.
        dst: IpAddr,
        /// Inbound SPI.
        inbound: u32,
        /// Outbound SPI.
        outbound: u32,
        /// Where ESP goes.
        remote: SocketAddr,
        /// The AEAD.
        alg: AeadAlg,
        /// Extended sequence numbers.
        esn: bool,
    },
    /// A CHILD SA was rekeyed.
    ChildRekeyed {
        /// The old pair's inbound SPI.
        old_inbound: u32,
    },
    /// A CHILD SA was deleted.
    ChildDeleted {
        /// Its inbound SPI.
        inbound: u32,
    },
    /// An IKE SA was rekeyed.
    IkeRekeyed,
    /// An IKE SA was deleted.
    IkeDeleted(Failure),
    /// An exchange with `remote` failed.
    IkeFailed {
        /// The peer.
        remote: SocketAddr,
        /// Why.
        reason: Failure,
    },
    /// The first packet to `dst` is held while it is decided.
    FirstHeld {
        /// The destination.
        dst: IpAddr,
    },
    /// This host's addresses changed ([`super::Node::handle_addresses`]).
    Addresses {
        /// Before.
        old: super::Addresses,
        /// Now.
        new: super::Addresses,
    },
    /// The IKE SA's local address is no longer this host's: closing it.
    LocalGone {
        /// The address.
        local: IpAddr,
    },
    /// An IKE SA carried nothing for `idle`: closing it.
    Idle {
        /// The idle timeout.
        idle: Duration,
    },
    /// An ICMP error came back for the attempt's IKE_SA_INIT.
    Unreachable {
        /// The error.
        error: Unreachable,
        /// What it did: ended the attempt (keyless) or shortened its wait.
        fate: UnreachableFate,
    },
    /// Packets to keyless `dst` pass in clear while anonymous IKE runs.
    Passthrough {
        /// The destination.
        dst: IpAddr,
    },
    /// This host gave an initiator behind a NAT an address from its pool.
    AddressGiven {
        /// Where the initiator is.
        remote: SocketAddr,
        /// The address.
        addr: IpAddr,
    },
    /// An initiator's address request (CP) was refused.
    AddressRefused {
        /// Where the initiator is.
        remote: SocketAddr,
        /// Why.
        reason: crate::ike::error::AddressRefusal,
    },
    /// The peer, behind a NAT, moved to a new port.
    PeerMoved {
        /// Where it is now.
        remote: SocketAddr,
    },
    /// ESP from `src` named no SA here (this host restarted, most likely,
    /// and `src` still uses SAs from before): OE toward it was started.
    StaleSpi {
        /// The ESP sender.
        src: IpAddr,
    },
}

impl Note {
    /// How loud it is.
    pub fn level(&self) -> Level {
        match self {
            Note::Connecting { .. }
            | Note::IkeAuthFrom { .. }
            | Note::CheckingIdentity { .. }
            | Note::ChildDeleted { .. }
            | Note::EspPair { .. }
            | Note::FirstHeld { .. }
            | Note::Unreachable { .. }
            | Note::Passthrough { .. } => Level::Debug,
            Note::RefusingResponder(_)
            | Note::NotVouched { .. }
            | Note::ChildRefused { .. }
            | Note::AnonymousLookupFailed { .. }
            | Note::AddressRefused { .. } => Level::Warn,
            Note::Established { .. }
            | Note::Refusing { .. }
            | Note::ChildRekeyed { .. }
            | Note::IkeRekeyed
            | Note::IkeDeleted(_)
            | Note::IkeFailed { .. }
            | Note::StaleSpi { .. }
            | Note::AddressGiven { .. }
            | Note::PeerMoved { .. }
            | Note::Addresses { .. }
            | Note::LocalGone { .. }
            | Note::Idle { .. } => Level::Info,
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Connecting {
                peer_addr,
                dst,
                anonymous,
            } => {
                let how = if *anonymous {
                    "AUTH NULL"
                } else {
                    "Ed25519 key from DNS"
                };
                write!(f, "IKE_SA_INIT to {peer_addr} for {dst} ({how})")
            }
            Note::IkeAuthFrom {
                remote,
                id,
                null_auth,
            } => {
                let null = if *null_auth { " (AUTH NULL)" } else { "" };
                write!(f, "IKE_AUTH from {remote} as {id:?}{null}")
            }
            Note::Established {
                remote,
                peer_id,
                anonymous,
                initiator,
            } => write!(
                f,
                "IKE SA established with {remote} ({peer_id:?}, {}, {})",
                if *anonymous { "AUTH NULL" } else { "Ed25519" },
                if *initiator { "initiator" } else { "responder" }
            ),
            Note::CheckingIdentity { remote, name } => {
                write!(
                    f,
                    "{remote} signed as {name}: checking that it resolves there"
                )
            }
            Note::RefusingResponder(refused) => write!(f, "refusing the responder: {refused}"),
            Note::ChildRefused { remote, reason } => {
                write!(f, "refusing a CHILD SA to {remote}: {reason}")
            }
            Note::NotVouched { peer_addr, why } => {
                write!(f, "{peer_addr} is not vouched for as the gateway of: {why}")
            }
            Note::AnonymousLookupFailed { peer_addr } => write!(
                f,
                "accepting {peer_addr} as anonymous although the lookup of its key failed"
            ),
            Note::Refusing { peer_addr, reason } => {
                write!(f, "refusing IKE from {peer_addr}: {reason}")
            }
            Note::EspPair {
                dst,
                inbound,
                outbound,
                remote,
                alg,
                esn,
            } => {
                let esn = if *esn { ", ESN" } else { "" };
                write!(
                    f,
                    "ESP SA pair for {dst}: in {inbound:#010x}, out {outbound:#010x} to {remote} ({alg:?}{esn})"
                )
            }
            Note::ChildRekeyed { old_inbound } => {
                write!(f, "CHILD SA rekeyed (old inbound SPI {old_inbound:#010x})")
            }
            Note::ChildDeleted { inbound } => write!(f, "CHILD SA {inbound:#010x} deleted"),
            Note::IkeRekeyed => f.write_str("IKE SA rekeyed"),
            Note::IkeDeleted(reason) => write!(f, "IKE SA deleted: {reason}"),
            Note::IkeFailed { remote, reason } => write!(f, "IKE with {remote} failed: {reason}"),
            Note::FirstHeld { dst } => write!(f, "{dst}: first packet held, deciding"),
            Note::Idle { idle } => write!(f, "idle for {}: closing", human(*idle)),
            Note::Addresses { old, new } => {
                write!(f, "this host's addresses changed: {old} → {new}")?;
                if old.v4.is_some() && new.v4.is_none() {
                    f.write_str("; OE for IPv4 pauses until it has one")?;
                }
                if old.v6.is_some() && new.v6.is_none() {
                    f.write_str("; OE for IPv6 pauses until it has one")?;
                }
                Ok(())
            }
            Note::LocalGone { local } => {
                write!(f, "this host's address {local} is gone: closing")
            }
            Note::Unreachable { error, fate } => match fate {
                UnreachableFate::Ended => write!(
                    f,
                    "{error} for IKE_SA_INIT to {}: no key in DNS, giving up now",
                    error.to
                ),
                _ => write!(
                    f,
                    "{error} for IKE_SA_INIT to {}: the key is in DNS or the SPI was not quoted, \
                     so waiting a short grace period only",
                    error.to
                ),
            },
            Note::Passthrough { dst } => write!(
                f,
                "{dst}: no key in DNS; packets pass in clear while anonymous IKE runs (passthrough)"
            ),
            Note::AddressGiven { remote, addr } => {
                write!(
                    f,
                    "{remote} is behind a NAT: gave it {addr} to use inside its SA"
                )
            }
            Note::AddressRefused { remote, reason } => write!(
                f,
                "{remote}: refused its address request ({reason}): no CHILD SA"
            ),
            Note::PeerMoved { remote } => {
                write!(f, "the peer's NAT moved it to {remote}: its SAs follow")
            }
            Note::StaleSpi { src } => write!(
                f,
                "{src}: ESP with an SPI unknown here (SAs from before a restart?): starting IKE \
                 with INITIAL_CONTACT, so that the peer replaces them"
            ),
        }
    }
}

/// The ESP SAs of a [`Command::InstallChild`], created at `now`.
pub fn esp_sas(child: &ChildSa, now: Instant) -> (OutboundSa, InboundSa) {
    let config = |spi| SaConfig {
        spi,
        alg: child.alg,
        provider: Provider::default(),
        esn: child.esn,
        limits: child.lifetime,
    };
    let outbound = OutboundSa::new(config(child.spis.outbound), &child.outbound_key, now);
    let inbound = InboundSa::new(config(child.spis.inbound), &child.inbound_key, now);
    (outbound, inbound)
}
