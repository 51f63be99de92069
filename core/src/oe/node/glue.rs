//! The node's two translations: the IKE engine's [`Event`]s into the decision
//! machine's inputs and [`Command`]s, and the machine's [`Action`]s into the
//! engine's calls and [`Command`]s.

use std::net::IpAddr;
use std::time::Instant;

use super::children::single_host;
use super::{Attempt, Command, Node, Note, SaInfo};
use crate::crypto::ed25519::Ed25519PublicKey;
use crate::esp::{LifetimeLimits, Limits};
use crate::ike::endpoint::{
    ChildSa, Event, Failure, PeerAuth, PeerAuthenticated, SaHandle, TrafficSelectors, Vouched,
};
use crate::ike::message::AddrSelector;
use crate::oe::{Action, IkeResult, NotStarted, PeerAnswer, PeerKey};

impl Node {
    pub(super) fn on_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::AddressRequest { sa, remote, result } => {
                let note = match result {
                    Ok(addr) => Note::AddressGiven { remote, addr },
                    Err(reason) => Note::AddressRefused { remote, reason },
                };
                self.log(Some(sa), note);
            }
            Event::PeerMoved { sa, remote } => {
                self.commands.push_back(Command::MovePeer { sa, remote });
                self.log(Some(sa), Note::PeerMoved { remote });
            }
            // The peer's key is looked up now, not after its IKE_AUTH arrives.
            Event::IkeSaInitAccepted { remote, .. } => self.machine.on_ike_init(now, remote.ip()),
            // The peer speaks IKE: an anonymous attempt gets its whole share.
            Event::IkeSaInitAnswered { sa, .. } => {
                if let Some(a) = self.attempts.get(&sa) {
                    self.machine.on_ike_answered(a.dst, a.peer_addr);
                }
            }
            Event::AuthorizePeer {
                sa,
                remote,
                id,
                null_auth,
                ts_i,
            } => {
                self.track(sa, remote.ip(), null_auth, false, None);
                self.machine
                    .on_ike_request_from(now, sa.0, remote.ip(), &id, null_auth, &ts_i);
                let note = Note::IkeAuthFrom {
                    remote,
                    id,
                    null_auth,
                };
                // After `Track`, so that it is logged in the SA's span.
                self.log(Some(sa), note);
            }
            Event::IkeSaEstablished {
                sa,
                remote,
                peer_id,
                auth,
                initiator,
            } => {
                let anonymous = auth == PeerAuthenticated::Null;
                if let Some(info) = self.sas.get_mut(&sa) {
                    info.anonymous = anonymous;
                }
                if initiator && let Some(a) = self.attempts.get(&sa) {
                    let took = now.saturating_duration_since(a.started);
                    self.commands.push_back(Command::Handshake { took });
                }
                let note = Note::Established {
                    remote,
                    peer_id,
                    anonymous,
                    initiator,
                };
                self.log(Some(sa), note);
            }
            Event::ConfirmIdentity { sa, remote, name } => {
                self.log(
                    Some(sa),
                    Note::CheckingIdentity {
                        remote,
                        name: name.clone(),
                    },
                );
                self.machine.on_identity_check(now, sa.0, remote.ip(), name);
            }
            Event::VouchResponderTs { sa, remote, ts_r } => {
                self.machine.on_responder_ts(now, sa.0, remote.ip(), &ts_r);
            }
            Event::ChildSaRefused { sa, remote, reason } => {
                self.log(Some(sa), Note::ChildRefused { remote, reason });
            }
            Event::ChildSaEstablished { sa, child } => {
                let dst = self.install(sa, child, None, false);
                self.child_established(now, sa, dst);
            }
            Event::ChildSaRekeyed { sa, old, new } => {
                let dst = self.children.dst_of(old.inbound);
                let dst = self.install(sa, new, dst, true);
                self.machine.remember_private(now, dst);
                let note = Note::ChildRekeyed {
                    old_inbound: old.inbound,
                };
                self.log(Some(sa), note);
            }
            Event::ChildSaDeleted { sa, spis } => {
                let inbound_spi = spis.inbound;
                self.commands
                    .push_back(Command::RemoveChild { inbound_spi });
                if let Some(peer) = self.children.remove(inbound_spi) {
                    let note = Note::ChildDeleted {
                        inbound: inbound_spi,
                    };
                    self.log(Some(sa), note);
                    self.private_gone(now, peer);
                }
            }
            Event::IkeSaRekeyed { sa } => {
                if let Some(dst) = self.sas.get(&sa).and_then(|i| i.dst) {
                    self.machine.remember_private(now, dst);
                }
                self.log(Some(sa), Note::IkeRekeyed);
            }
            Event::IkeSaDeleted { sa, reason } => {
                self.log(Some(sa), Note::IkeDeleted(reason.clone()));
                self.machine.cancel_request(sa.0);
                self.activity.remove(&sa);
                if let Some(a) = self.attempts.remove(&sa) {
                    let result = IkeResult::Failed { reason };
                    self.machine.on_ike_result(now, a.dst, a.peer_addr, result);
                }
                if let Some(dst) = self.forget(sa).and_then(|i| i.dst) {
                    self.private_gone(now, dst);
                }
            }
            Event::Failed { sa, remote, reason } => {
                let note = Note::IkeFailed {
                    remote,
                    reason: reason.clone(),
                };
                self.log(Some(sa), note);
                // It may have been waiting for DNS to vouch for its site.
                self.machine.cancel_request(sa.0);
                if let Some(a) = self.attempts.remove(&sa) {
                    self.forget(sa);
                    let result = match reason {
                        Failure::Timeout { .. } => IkeResult::TimedOut,
                        reason => IkeResult::Failed { reason },
                    };
                    self.machine.on_ike_result(now, a.dst, a.peer_addr, result);
                }
            }
        }
    }

    pub(super) fn on_action(&mut self, now: Instant, action: Action) {
        match action {
            Action::LookupKey { name, .. } => self.commands.push_back(Command::LookupKey { name }),
            Action::CancelLookup { name } => {
                self.commands.push_back(Command::CancelLookup { name });
            }
            Action::StartIke {
                dst,
                peer_addr,
                key,
                authenticated_by_dnssec,
                deadline,
            } => self.start_ike(now, dst, peer_addr, key, authenticated_by_dnssec, deadline),
            Action::CancelIke { dst, peer_addr } => {
                let found = self
                    .attempts
                    .iter()
                    .find(|(_, a)| a.dst == dst && a.peer_addr == peer_addr)
                    .map(|(h, _)| *h);
                if let Some(h) = found {
                    self.attempts.remove(&h);
                    // It may be waiting for DNS to vouch for its responder's site.
                    self.machine.cancel_request(h.0);
                    self.endpoint.close(now, h);
                    // A handshake closed before it was up ends without an
                    // event: forget it here, or its record and the driver's
                    // log span would stay for good (one per clear destination).
                    self.forget(h);
                }
            }
            Action::Private { outcome, packets } => {
                let dst = outcome.dst;
                self.no_address.remove(&dst);
                self.decided(&outcome);
                self.commands.push_back(Command::SendHeld { dst, packets });
                self.commands.push_back(Command::Unbypass { dst });
                self.commands.push_back(Command::CacheOutcome { outcome });
            }
            Action::PassClear { outcome, packets } => {
                let dst = outcome.dst;
                self.decided(&outcome);
                self.commands.push_back(Command::Bypass { dst });
                self.commands.push_back(Command::SendClear { packets });
                if let Some(at) = outcome.expires_at {
                    self.expiries.insert((at, dst));
                }
                self.commands.push_back(Command::CacheOutcome { outcome });
            }
            Action::Passthrough { outcome, packets } => {
                // Not decided: `dst` stays pending, and no bypass route, so
                // that its packets reach the agent and find the SA once up.
                let dst = outcome.dst;
                self.log(None, Note::Passthrough { dst });
                self.commands.push_back(Command::SendClear { packets });
                self.commands.push_back(Command::CacheOutcome { outcome });
            }
            Action::Drop { outcome, dropped } => {
                self.decided(&outcome);
                self.commands
                    .push_back(Command::Dropped { packets: dropped });
                if let Some(at) = outcome.expires_at {
                    self.expiries.insert((at, outcome.dst));
                }
                self.commands.push_back(Command::CacheOutcome { outcome });
            }
            Action::AnswerPeer {
                request,
                peer_addr,
                answer,
            } => self.answer_peer(now, SaHandle(request), peer_addr, answer),
            Action::LookupAddress { name, addr, .. } => {
                self.commands
                    .push_back(Command::LookupAddress { name, addr });
            }
            Action::IdentityChecked { request, result } => {
                let sa = SaHandle(request);
                let result = match result {
                    Ok(dnssec) => {
                        // The weaker of the key's and the name's DNSSEC status.
                        if let Some(a) = self.attempts.get_mut(&sa) {
                            a.dnssec &= dnssec;
                        }
                        if let Some(info) = self.sas.get_mut(&sa) {
                            info.dnssec &= dnssec;
                        }
                        Ok(())
                    }
                    Err(refused) => {
                        self.log(Some(sa), Note::RefusingResponder(refused.clone()));
                        Err(refused)
                    }
                };
                self.endpoint.confirm_identity(now, sa, result);
            }
        }
    }

    /// The destination is decided: no longer pending; log and count it.
    fn decided(&mut self, outcome: &crate::oe::Outcome) {
        self.pending.remove(&outcome.dst);
        let outcome = outcome.clone();
        self.commands.push_back(Command::Decided { outcome });
    }

    /// Starts the IKE attempt the machine asked for, or reports why it could not.
    pub(super) fn start_ike(
        &mut self,
        now: Instant,
        dst: IpAddr,
        peer_addr: IpAddr,
        key: PeerKey,
        dnssec: bool,
        deadline: Instant,
    ) {
        let peer = match &key {
            PeerKey::Ed25519(keys) => {
                let parsed: Result<Vec<_>, _> = keys
                    .iter()
                    .map(|k| Ed25519PublicKey::from_slice(k))
                    .collect();
                match parsed {
                    Ok(keys) => PeerAuth::Ed25519(keys),
                    Err(e) => {
                        let result = IkeResult::NotStarted {
                            reason: NotStarted::InvalidKey(e),
                        };
                        return self.machine.on_ike_result(now, dst, peer_addr, result);
                    }
                }
            }
            PeerKey::Null => PeerAuth::Null,
        };
        // IKE from this host's address of the peer's family; the local
        // selector is its address of the destination's (a gateway of the
        // other family protects `dst`).
        let addresses = self.config.addresses;
        let (local, ts_local) = match (addresses.for_family(peer_addr), addresses.for_family(dst)) {
            (Some(local), Some(ts_local)) => (local, ts_local),
            (None, _) | (_, None) => {
                let missing = if addresses.for_family(peer_addr).is_none() {
                    peer_addr
                } else {
                    dst
                };
                self.no_address.insert(dst, missing);
                let result = IkeResult::NotStarted {
                    reason: NotStarted::NoAddressOfFamily { peer_addr: missing },
                };
                return self.machine.on_ike_result(now, dst, peer_addr, result);
            }
        };
        // A gateway speaks for its subnets too (of the destination's family):
        // the responder narrows them to what DNS vouches for.
        let mut local_ts = vec![AddrSelector::host(ts_local)];
        local_ts.extend(
            self.endpoint
                .config()
                .protects
                .iter()
                .filter(|p| p.ts_type() == AddrSelector::host(dst).ts_type())
                .cloned(),
        );
        // Through a gateway: the destination first, then room for the site
        // it protects, which DNS must vouch for (`ike::auth::vouch`).
        let mut remote_ts = vec![AddrSelector::host(dst)];
        if peer_addr.to_canonical() != dst.to_canonical() {
            remote_ts.push(AddrSelector::any_of(dst));
        }
        let ts = TrafficSelectors {
            local: local_ts,
            remote: remote_ts,
        };
        let anonymous = matches!(peer, PeerAuth::Null);
        let sa = self
            .endpoint
            .connect(now, local, peer_addr, Some(peer), ts, deadline);
        self.track(sa, peer_addr, anonymous, dnssec, Some(dst));
        let note = Note::Connecting {
            peer_addr,
            dst,
            anonymous,
        };
        self.log(Some(sa), note);
        let attempt = Attempt {
            dst,
            peer_addr,
            started: now,
            dnssec,
            key,
            deadline,
        };
        self.attempts.insert(sa, attempt);
    }

    /// Answers the engine's `AuthorizePeer` as the machine decided (or its
    /// `VouchResponderTs`: this host's own attempt).
    fn answer_peer(&mut self, now: Instant, sa: SaHandle, peer_addr: IpAddr, answer: PeerAnswer) {
        if self.attempts.contains_key(&sa) {
            return self.answer_responder_ts(now, sa, peer_addr, answer);
        }
        let auth = match answer {
            PeerAnswer::Ed25519 {
                keys,
                dnssec,
                vouched,
                not_vouched,
            } => {
                if let Some(info) = self.sas.get_mut(&sa) {
                    info.dnssec = dnssec;
                }
                for why in not_vouched {
                    self.log(Some(sa), Note::NotVouched { peer_addr, why });
                }
                let vouched = to_vouched(vouched);
                // Every published key is a candidate (a rollover has two).
                let keys = parse_keys(&keys);
                let usable = !keys.is_empty() || !vouched.is_empty();
                if !vouched.is_empty() {
                    self.endpoint.vouch(sa, vouched);
                }
                usable.then_some(PeerAuth::Ed25519(keys))
            }
            PeerAnswer::Anonymous { lookup_failed } => {
                if let Some(info) = self.sas.get_mut(&sa) {
                    info.lookup_failed = lookup_failed;
                }
                if lookup_failed {
                    self.log(Some(sa), Note::AnonymousLookupFailed { peer_addr });
                }
                Some(PeerAuth::Null)
            }
            PeerAnswer::Refuse { reason } => {
                self.log(Some(sa), Note::Refusing { peer_addr, reason });
                None
            }
        };
        if auth.is_none() {
            self.forget(sa);
        }
        self.endpoint.authorize(now, sa, auth);
    }

    /// Answers the engine's `VouchResponderTs`: the selectors DNS vouched
    /// for beyond the destination (none when the machine refused). An
    /// answer that was not DNSSEC-secure makes the attempt's outcome not
    /// secure either.
    fn answer_responder_ts(
        &mut self,
        now: Instant,
        sa: SaHandle,
        peer_addr: IpAddr,
        answer: PeerAnswer,
    ) {
        let vouched = match answer {
            PeerAnswer::Ed25519 {
                vouched,
                not_vouched,
                dnssec,
                ..
            } => {
                for why in not_vouched {
                    self.log(Some(sa), Note::NotVouched { peer_addr, why });
                }
                if !vouched.is_empty() && !dnssec {
                    if let Some(a) = self.attempts.get_mut(&sa) {
                        a.dnssec = false;
                    }
                    if let Some(info) = self.sas.get_mut(&sa) {
                        info.dnssec = false;
                    }
                }
                to_vouched(vouched)
            }
            PeerAnswer::Refuse { reason } => {
                self.log(
                    Some(sa),
                    Note::NotVouched {
                        peer_addr,
                        why: reason,
                    },
                );
                Vec::new()
            }
            PeerAnswer::Anonymous { .. } => Vec::new(),
        };
        self.endpoint.vouch_responder_ts(now, sa, vouched);
    }

    /// Installs a CHILD SA pair; returns the destination it protects: `dst`
    /// (a rekey's), else the attempt's, else the IKE SA's, else the one host
    /// the remote selector names, else the peer.
    fn install(
        &mut self,
        sa: SaHandle,
        mut child: ChildSa,
        dst: Option<IpAddr>,
        publish: bool,
    ) -> IpAddr {
        let dst = dst
            .or_else(|| self.attempts.get(&sa).map(|a| a.dst))
            .or_else(|| self.sas.get(&sa).and_then(|i| i.dst))
            .or_else(|| single_host(&child.remote_ts))
            .unwrap_or(child.remote.ip());
        if let Some(info) = self.sas.get_mut(&sa) {
            info.dst = Some(dst);
        }
        self.children
            .install(dst, child.spis.inbound, child.remote.ip(), publish);
        // The data path's limits are bytes and packets only. Time limits are
        // the engine's (it rekeys at the soft one and deletes at the hard one).
        let strip = |l: &Limits| Limits { time: None, ..*l };
        child.lifetime = LifetimeLimits {
            soft: strip(&child.lifetime.soft),
            hard: strip(&child.lifetime.hard),
        };
        let note = Note::EspPair {
            dst,
            inbound: child.spis.inbound,
            outbound: child.spis.outbound,
            remote: child.remote,
            alg: child.alg,
            esn: child.esn,
        };
        self.commands.push_back(Command::InstallChild {
            sa,
            dst,
            child,
            publish,
        });
        self.log(Some(sa), note);
        dst
    }

    /// The first CHILD SA of an IKE SA is in: the machine decides `dst`
    /// (its held packets go out encrypted), then the outbound half is
    /// published, and the peer joins the private set at the end of the round.
    fn child_established(&mut self, now: Instant, sa: SaHandle, dst: IpAddr) {
        let (anonymous, mut dnssec, lookup_failed) =
            self.sas.get(&sa).map_or((true, false, false), |i| {
                (i.anonymous, i.dnssec, i.lookup_failed)
            });
        let peer_addr = match self.attempts.remove(&sa) {
            Some(a) => {
                dnssec = a.dnssec;
                a.peer_addr
            }
            None => self.children.remote_of(dst).unwrap_or(dst),
        };
        let result = IkeResult::Established {
            anonymous,
            dnssec,
            lookup_failed,
        };
        self.machine.on_ike_result(now, dst, peer_addr, result);
        // The held packets go out first (the machine's `Private` action), and
        // only then may the data path seal new ones with this SA: in order.
        while let Some(action) = self.machine.poll_action() {
            self.on_action(now, action);
        }
        if self.children.publish(dst) {
            self.commands.push_back(Command::PublishOutbound { dst });
        }
        self.ended_private.retain(|p| *p != dst);
        self.newly_private.push(dst);
    }

    /// An SA of `peer` went away: if none is left, so is its private outcome
    /// (the next packet decides again) and its place in the private set.
    pub(super) fn private_gone(&mut self, now: Instant, peer: IpAddr) {
        // Also once only per round: closing an IKE SA removes its last CHILD
        // SA and then the IKE SA, and each calls this.
        if self.children.serves(peer) || self.ended_private.contains(&peer) {
            return;
        }
        self.machine.on_private_ended(now, peer);
        self.commands.push_back(Command::PrivateEnded { dst: peer });
        self.newly_private.retain(|p| *p != peer);
        self.ended_private.push(peer);
    }

    fn track(
        &mut self,
        sa: SaHandle,
        peer: IpAddr,
        anonymous: bool,
        dnssec: bool,
        dst: Option<IpAddr>,
    ) {
        let info = SaInfo {
            anonymous,
            dnssec,
            lookup_failed: false,
            dst,
        };
        self.sas.insert(sa, info);
        self.commands.push_back(Command::Track { sa, peer });
    }

    pub(super) fn forget(&mut self, sa: SaHandle) -> Option<SaInfo> {
        let info = self.sas.remove(&sa)?;
        self.commands.push_back(Command::Forget { sa });
        Some(info)
    }
}

/// The keys that parse (a record's key that does not is no candidate).
fn parse_keys(keys: &[[u8; 32]]) -> Vec<Ed25519PublicKey> {
    keys.iter()
        .filter_map(|k| Ed25519PublicKey::from_slice(k).ok())
        .collect()
}

/// What the machine found DNS vouching for, as the engine takes it: each
/// selector with the keys that parse, none without one.
fn to_vouched(found: Vec<crate::oe::VouchedFor>) -> Vec<Vouched> {
    found
        .into_iter()
        .map(|v| Vouched {
            keys: parse_keys(&v.keys),
            selector: v.selector,
        })
        .filter(|v| !v.keys.is_empty())
        .collect()
}
