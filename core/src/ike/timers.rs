//! Timers (RFC 7296 §2.4, §2.8): request retransmission, half-open and
//! authorization deadlines, IKE SA and CHILD SA lifetimes, dead peer detection.

use std::time::Instant;

use crate::ike::endpoint::{Config, Endpoint, Failure, Fate, Transmit};
use crate::ike::message::ExchangeType;
use crate::ike::retransmit::RetransmitAction;
use crate::ike::sa::{IkeSa, Queued, State};

impl Endpoint {
    pub(crate) fn on_sa_timeout(&mut self, now: Instant, sa: &mut IkeSa) -> Fate {
        if let Some(o) = sa.outstanding.as_mut()
            && o.timer.poll_timeout() <= now
        {
            {
                match o.timer.on_timeout(now) {
                    RetransmitAction::Wait => {}
                    RetransmitAction::Resend => {
                        let t = Transmit {
                            local: sa.local,
                            remote: sa.remote,
                            payload: o.datagram.clone(),
                        };
                        self.out.transmits.push_back(t);
                    }
                    RetransmitAction::GiveUp => {
                        let reason = Failure::Timeout {
                            exchange: exchange_name(o.exchange),
                            sends: o.timer.resends() + 1,
                        };
                        return match sa.state {
                            State::InitSent(_) | State::AuthSent(_) => self.fail(sa, reason),
                            State::Retiring { .. } => Fate::Remove(None),
                            _ => Fate::Remove(Some(reason)),
                        };
                    }
                }
            }
        }
        match &sa.state {
            State::InitiatorAuthorize(a) if a.sent.deadline <= now => {
                let reason = Failure::Timeout {
                    exchange: "authorization of the responder",
                    sends: 1,
                };
                let spi = a.sent.child_spi;
                self.release_child_spi(spi);
                return self.fail(sa, reason);
            }
            State::HalfOpen(h) if h.expires <= now => return Fate::Remove(None),
            State::ResponderAuthorize(r) if r.half.expires <= now => return Fate::Remove(None),
            State::Retiring { until } if *until <= now => return Fate::Remove(None),
            State::Established => {}
            _ => return Fate::Keep,
        }
        if sa.hard_expiry.is_some_and(|t| t <= now) {
            return Fate::Remove(Some(Failure::Expired));
        }
        if sa.rekey_at.is_some_and(|t| t <= now) {
            sa.rekey_at = None;
            sa.queue.push_back(Queued::RekeyIke);
        }
        if dpd_due(&self.config, sa).is_some_and(|t| t <= now) {
            sa.queue.push_back(Queued::Liveness);
        }
        for i in 0..sa.children.len() {
            let child = &mut sa.children[i];
            if child.expire_at.is_some_and(|t| t <= now) {
                child.expire_at = None;
                let spi = child.spis.inbound;
                if !sa.queue.contains(&Queued::DeleteChild(spi)) {
                    sa.queue.push_back(Queued::DeleteChild(spi));
                }
            } else if child.poll_timeout().is_some_and(|t| t <= now) {
                child.rekey_at = None;
                let spi = child.spis.inbound;
                sa.queue.push_back(Queued::RekeyChild(spi));
            }
        }
        self.start_next(now, sa);
        Fate::Keep
    }
}

/// A readable name for an exchange type, for [`Failure::Timeout`].
pub(crate) fn exchange_name(exchange: ExchangeType) -> &'static str {
    match exchange {
        ExchangeType::IKE_SA_INIT => "IKE_SA_INIT",
        ExchangeType::IKE_AUTH => "IKE_AUTH",
        ExchangeType::CREATE_CHILD_SA => "CREATE_CHILD_SA",
        ExchangeType::INFORMATIONAL => "INFORMATIONAL",
        _ => "an exchange",
    }
}

/// When a liveness check is due: `dpd_interval` after the peer was last heard,
/// if no exchange is running or waiting.
pub(crate) fn dpd_due(config: &Config, sa: &IkeSa) -> Option<Instant> {
    let interval = config.dpd_interval?;
    if sa.outstanding.is_some() || !sa.queue.is_empty() || !matches!(sa.state, State::Established) {
        return None;
    }
    sa.last_heard.checked_add(interval)
}

/// The next instant an SA has something to do.
pub(crate) fn sa_timeout(config: &Config, sa: &IkeSa) -> Option<Instant> {
    let retransmit = sa.outstanding.as_ref().map(|o| o.timer.poll_timeout());
    let state = match &sa.state {
        State::InitiatorAuthorize(a) => Some(a.sent.deadline),
        State::HalfOpen(h) => Some(h.expires),
        State::ResponderAuthorize(r) => Some(r.half.expires),
        State::Retiring { until } => Some(*until),
        State::Established => {
            let children = sa.children.iter().filter_map(|c| c.poll_timeout()).min();
            [sa.rekey_at, sa.hard_expiry, dpd_due(config, sa), children]
                .into_iter()
                .flatten()
                .min()
        }
        State::InitSent(_) | State::AuthSent(_) => None,
    };
    [retransmit, state].into_iter().flatten().min()
}
