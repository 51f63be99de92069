//! Timers (RFC 7296 §2.4, §2.8): request retransmission, half-open and
//! authorization deadlines, IKE SA and CHILD SA lifetimes, dead peer detection,
//! and NAT-keepalives (RFC 3948 §2.3) when this host is behind a NAT.

use std::net::SocketAddr;
use std::time::Instant;

use rand_core::RngCore;

use crate::ike::endpoint::Endpoint;
use crate::ike::event::Transmit;
use crate::ike::failure::Failure;
use crate::ike::message::ExchangeType;
use crate::ike::retransmit::{Retransmit, RetransmitAction, RetransmitConfig};
use crate::ike::sa::{IkeSa, Queued, SaCore, dpd_due, keepalive_due};
use crate::ike::state::{Fate, State};
use crate::ike::udp_encap::NAT_KEEPALIVE;

impl Endpoint {
    /// Initiator: the deadline passed while an authenticated responder was
    /// held for the caller (an FQDN to confirm, selectors to vouch for).
    fn held_auth_expired(&mut self, sa: &mut SaCore, spi: u32, exchange: &'static str) -> Fate {
        let reason = Failure::Timeout { exchange, sends: 1 };
        self.release_child_spi(spi);
        // The responder installed its side: tell it, as for a refusal.
        self.send_delete_ike_once(sa);
        Fate::Remove(self.fail(sa, reason))
    }

    pub(crate) fn on_sa_timeout(&mut self, now: Instant, sa: &mut IkeSa) -> Fate {
        if let Some(o) = sa.core.outstanding.as_mut()
            && o.timer.poll_timeout() <= now
        {
            {
                match o.timer.on_timeout(now) {
                    RetransmitAction::Wait => {}
                    RetransmitAction::Resend => {
                        let t = Transmit {
                            local: sa.core.local,
                            remote: sa.core.remote,
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
                            State::InitSent(_) | State::AuthSent(_) => {
                                Fate::Remove(self.fail(sa, reason))
                            }
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
                return Fate::Remove(self.fail(sa, reason));
            }
            State::InitiatorConfirm(c) if c.sent.deadline <= now => {
                let spi = c.sent.child_spi;
                let exchange = "confirmation of the responder's identity";
                return self.held_auth_expired(sa, spi, exchange);
            }
            State::InitiatorVouch(v) if v.sent.deadline <= now => {
                let spi = v.sent.child_spi;
                let exchange = "DNS vouching for the responder's selectors";
                return self.held_auth_expired(sa, spi, exchange);
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
        if keepalive_due(&self.config, sa).is_some_and(|t| t <= now) {
            self.send_keepalive(now, sa);
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

impl Endpoint {
    /// Sends one NAT-keepalive (a single 0xFF octet, RFC 3948 §2.3) from this
    /// host's NAT-T port to the peer's NAT-T address and port, as for IKE.
    fn send_keepalive(&mut self, now: Instant, sa: &mut SaCore) {
        sa.last_keepalive = now;
        self.out.transmits.push_back(Transmit {
            local: SocketAddr::new(sa.local.ip(), self.config.natt_port),
            remote: sa.remote,
            payload: vec![NAT_KEEPALIVE],
        });
        self.out.stats.nat_keepalives_sent += 1;
    }
}

impl Endpoint {
    /// Sets when this host rekeys the IKE SA (lifetime minus up to 10 % jitter)
    /// and when it dies without a rekey (1.1 × lifetime).
    pub(crate) fn schedule_ike_rekey(&mut self, now: Instant, sa: &mut SaCore) {
        let life = self.config.ike_lifetime;
        if life.is_zero() {
            return;
        }
        let jitter = life.mul_f64(f64::from(self.rng.next_u32() % 1000) / 10_000.0);
        sa.rekey_at = now.checked_add(life - jitter);
        sa.hard_expiry = now.checked_add(life + life / 10);
    }
}

impl Endpoint {
    /// The retransmission timer of a new request; `deadline` for the
    /// handshake, `exchange_timeout` from now for later exchanges.
    pub(crate) fn request_timer(&self, now: Instant, deadline: Option<Instant>) -> Retransmit {
        match deadline {
            Some(d) => Retransmit::new(self.config.retransmit, now, d),
            None => {
                let config = RetransmitConfig {
                    max_resends: u32::MAX,
                    ..self.config.retransmit
                };
                Retransmit::new(config, now, now + self.config.exchange_timeout)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    use crate::crypto::ed25519::Ed25519SigningKey;
    use crate::ike::config::{Config, LocalAuth, PeerAuth};
    use crate::ike::endpoint::Endpoint;
    use crate::ike::event::{Event, SaHandle, TrafficSelectors};
    use crate::ike::message::{AddrSelector, Identity};
    use crate::ike::udp_encap::{Datagram, classify};

    use crate::ike::sa::sa_timeout;

    /// What the index must say: the earliest deadline over all SAs, by scan.
    fn scanned(e: &Endpoint) -> Option<Instant> {
        e.sas
            .values()
            .filter_map(|sa| sa_timeout(&e.config, sa))
            .min()
    }

    fn check(e: &Endpoint) {
        assert_eq!(e.poll_timeout(), scanned(e));
        assert_eq!(
            e.timers.len(),
            e.sas
                .values()
                .filter(|sa| sa_timeout(&e.config, sa).is_some())
                .count()
        );
        for sa in e.sas.values() {
            assert_eq!(sa.timer_at, sa_timeout(&e.config, sa), "SA {}", sa.id);
        }
        let half = e
            .sas
            .values()
            .filter(|s| s.state.is_half_open_responder())
            .count();
        assert_eq!(e.half_open(), half);
    }

    /// Delivers `from`'s datagrams to `to`; collects `from`'s events.
    fn deliver(
        from: &mut Endpoint,
        to: &mut Endpoint,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> bool {
        let mut moved = false;
        while let Some(t) = from.poll_transmit() {
            moved = true;
            let msg = if t.remote.port() == 500 {
                &t.payload[..]
            } else {
                match classify(&t.payload) {
                    Datagram::Ike(m) => m,
                    _ => continue,
                }
            };
            to.handle(now, t.remote, t.local, msg);
        }
        while let Some(e) = from.poll_event() {
            moved = true;
            if let Event::AuthorizePeer { sa, .. } = e {
                from.authorize(now, sa, Some(PeerAuth::Null));
            } else {
                events.push(e);
            }
        }
        moved
    }

    #[test]
    fn the_timer_index_follows_every_change() {
        let t0 = Instant::now();
        let b_ip: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0; 4]));
        let key = Ed25519SigningKey::from_seed(&[2; 32]);
        let b_pub = PeerAuth::ed25519(key.public_key());
        let mut b = Endpoint::new(
            Config::new(
                LocalAuth::Ed25519(key),
                Identity::Ipv4([192, 0, 2, 2].into()),
            ),
            [7; 32],
        );
        let mut initiators = Vec::new();
        let mut b_events = Vec::new();
        // Handshakes at different times: each SA gets its own deadlines.
        for i in 0..6u8 {
            let now = t0 + Duration::from_secs(u64::from(i));
            let a_ip = IpAddr::from([192, 0, 2, 10 + i]);
            let mut a = Endpoint::new(Config::new(LocalAuth::Null, Identity::Null), [i; 32]);
            let ts = TrafficSelectors {
                local: vec![AddrSelector::host(a_ip)],
                remote: vec![AddrSelector::host(b_ip)],
            };
            a.connect(
                now,
                a_ip,
                b_ip,
                Some(b_pub.clone()),
                ts,
                now + Duration::from_secs(2),
            );
            // IKE_SA_INIT only: b holds a half-open SA.
            let mut ev = Vec::new();
            deliver(&mut a, &mut b, now, &mut ev);
            check(&b);
            assert_eq!(b.half_open(), 1);
            loop {
                let x = deliver(&mut b, &mut a, now, &mut ev);
                let y = deliver(&mut a, &mut b, now, &mut ev);
                check(&b);
                if !x && !y {
                    break;
                }
            }
            deliver(&mut b, &mut a, now, &mut b_events);
            initiators.push(a);
        }
        assert_eq!(b.stats().ike_sas, 6);
        assert_eq!(b.half_open(), 0);
        check(&b);
        // A half-open SA that is never completed, then expires.
        let mut stray = Endpoint::new(Config::new(LocalAuth::Null, Identity::Null), [99; 32]);
        let stray_ip = IpAddr::from([192, 0, 2, 99]);
        let ts = TrafficSelectors {
            local: vec![AddrSelector::host(stray_ip)],
            remote: vec![AddrSelector::host(b_ip)],
        };
        let now = t0 + Duration::from_secs(6);
        stray.connect(
            now,
            stray_ip,
            b_ip,
            Some(b_pub),
            ts,
            now + Duration::from_secs(2),
        );
        deliver(&mut stray, &mut b, now, &mut Vec::new());
        check(&b);
        let half_open_expiry = now + b.config.half_open_timeout;
        assert_eq!(
            b.poll_timeout(),
            Some(half_open_expiry),
            "the earliest deadline"
        );
        b.handle_timeout(half_open_expiry);
        check(&b);
        assert_eq!(b.half_open(), 0);
        assert_eq!(b.stats().ike_sas, 6);
        // Closing an SA (a DELETE goes out) and forgetting another one.
        let handles: Vec<SaHandle> = b.sas.values().map(|sa| sa.handle).collect();
        let now = t0 + Duration::from_secs(12);
        b.close(now, handles[0]);
        check(&b);
        let id = b.handles[&handles[1]];
        let sa = b.sas.remove(&id).expect("the SA");
        b.discard(sa, None);
        check(&b);
        // The clock runs: liveness checks, retransmissions, the closed SA's
        // DELETE timing out; the index agrees with a scan at every step.
        let mut now = now;
        for _ in 0..200 {
            let Some(next) = b.poll_timeout() else { break };
            now = now.max(next);
            b.handle_timeout(now);
            check(&b);
            while b.poll_transmit().is_some() {}
            while b.poll_event().is_some() {}
            check(&b);
        }
        assert!(b.stats().ike_sas < 6, "SAs went away");
    }
}
