//! One outbound and one inbound ESP SA: the per-direction state the data path
//! keeps (RFC 4301 §4.4.2.1): SPI, AEAD key, sequence numbers, anti-replay
//! window, lifetime and counters.

use std::ops::Range;
use std::time::Instant;

use super::error::{DecapError, EncapError};
use super::lifetime::{Lifetime, LifetimeEvent, LifetimeLimits, LifetimeState};
use super::packet::{self, InnerProtocol};
use super::replay::{ReplayCheck, ReplayWindow};
use crate::crypto::{AeadAlg, AeadKey, KeyAndSalt, Provider};

/// What an ESP SA is, as negotiated by IKE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaConfig {
    /// The SPI: chosen by the receiving end.
    pub spi: u32,
    /// The AEAD transform.
    pub alg: AeadAlg,
    /// Which implementation runs it ([`Provider::default()`] for the data path).
    pub provider: Provider,
    /// Extended (64-bit) sequence numbers negotiated (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Soft and hard lifetimes.
    pub limits: LifetimeLimits,
}

fn record(lifetime: &mut Lifetime, pending: &mut Option<LifetimeEvent>, bytes: usize) {
    if let Some(event) = lifetime.record(bytes) {
        *pending = (*pending).max(Some(event));
    }
}

/// Counters of an outbound SA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundCounters {
    /// Packets encapsulated.
    pub packets: u64,
    /// Inner bytes encapsulated.
    pub bytes: u64,
    /// Packets refused because the SA expired or its sequence space ran out.
    pub refused: u64,
}

/// The sending half of a CHILD SA.
#[derive(Debug)]
pub struct OutboundSa {
    config: SaConfig,
    key: AeadKey,
    /// The last sequence number sent; 0 before the first packet.
    last_seq: u64,
    lifetime: Lifetime,
    pending: Option<LifetimeEvent>,
    counters: OutboundCounters,
}

impl OutboundSa {
    /// Installs the SA at `now` with its key material from
    /// [`ChildSaKeys`](crate::ike::keys::ChildSaKeys).
    pub fn new(config: SaConfig, key: &KeyAndSalt, now: Instant) -> Self {
        Self {
            key: AeadKey::new(config.alg, config.provider, key),
            config,
            last_seq: 0,
            lifetime: Lifetime::new(config.limits, now),
            pending: None,
            counters: OutboundCounters::default(),
        }
    }

    /// The SA's configuration.
    pub fn config(&self) -> &SaConfig {
        &self.config
    }

    /// The SPI packets carry.
    pub fn spi(&self) -> u32 {
        self.config.spi
    }

    /// The last sequence number used (0 before the first packet).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Counters.
    pub fn counters(&self) -> &OutboundCounters {
        &self.counters
    }

    /// Lifetime state and use.
    pub fn lifetime(&self) -> &Lifetime {
        &self.lifetime
    }

    /// Encapsulates the inner IP packet at `buf[HEADER_LEN..HEADER_LEN +
    /// inner_len]` in place; the ESP packet is `buf[..returned length]`. The
    /// buffer must be at least [`encapsulated_len`](super::encapsulated_len)
    /// `(inner_len)` long. Call [`poll_event`](Self::poll_event) afterwards.
    pub fn encapsulate(&mut self, buf: &mut [u8], inner_len: usize) -> Result<usize, EncapError> {
        if self.lifetime.state() == LifetimeState::Expired {
            self.counters.refused += 1;
            return Err(EncapError::Expired);
        }
        let max = if self.config.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        let Some(seq) = self.last_seq.checked_add(1).filter(|&s| s <= max) else {
            self.counters.refused += 1;
            return Err(EncapError::SequenceExhausted);
        };
        let len = packet::seal(
            &self.key,
            self.config.spi,
            seq,
            self.config.esn,
            buf,
            inner_len,
        )?;
        self.last_seq = seq;
        self.counters.packets += 1;
        self.counters.bytes += inner_len as u64;
        record(&mut self.lifetime, &mut self.pending, inner_len);
        Ok(len)
    }

    /// Checks time limits; call at [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(event) = self.lifetime.handle_timeout(now) {
            self.pending = self.pending.max(Some(event));
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lifetime.poll_timeout()
    }

    /// A lifetime limit crossed since the last call, if any (the more severe
    /// one if both were).
    pub fn poll_event(&mut self) -> Option<LifetimeEvent> {
        self.pending.take()
    }

    /// Makes the next packet use `seq + 1`: for tests of sequence number wrap.
    #[doc(hidden)]
    pub fn set_last_seq_for_test(&mut self, seq: u64) {
        self.last_seq = seq;
    }
}

/// Counters of an inbound SA: one per reason a packet is dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundCounters {
    /// Packets accepted.
    pub packets: u64,
    /// Inner bytes accepted.
    pub bytes: u64,
    /// Shorter than the minimal ESP packet.
    pub truncated: u64,
    /// Routed to this SA with another SPI.
    pub wrong_spi: u64,
    /// Replays inside the window.
    pub replayed: u64,
    /// Left of the window (or sequence number 0).
    pub outside_window: u64,
    /// ICV failures.
    pub auth_failed: u64,
    /// Authentic but with malformed padding.
    pub bad_padding: u64,
    /// Authentic but not carrying IPv4/IPv6.
    pub bad_next_header: u64,
    /// Dummy packets (next header 59).
    pub dummy: u64,
    /// Arrived after the hard lifetime.
    pub expired: u64,
}

/// A decapsulated packet: the inner IP packet is `packet[inner]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated {
    /// Where the inner packet lies in the buffer given to
    /// [`InboundSa::decapsulate`].
    pub inner: Range<usize>,
    /// IPv4 or IPv6, from the next header field.
    pub protocol: InnerProtocol,
    /// The full sequence number.
    pub seq: u64,
}

/// The receiving half of a CHILD SA.
#[derive(Debug)]
pub struct InboundSa {
    config: SaConfig,
    key: AeadKey,
    window: ReplayWindow,
    lifetime: Lifetime,
    pending: Option<LifetimeEvent>,
    counters: InboundCounters,
}

impl InboundSa {
    /// Installs the SA at `now`.
    pub fn new(config: SaConfig, key: &KeyAndSalt, now: Instant) -> Self {
        Self {
            key: AeadKey::new(config.alg, config.provider, key),
            config,
            window: ReplayWindow::new(),
            lifetime: Lifetime::new(config.limits, now),
            pending: None,
            counters: InboundCounters::default(),
        }
    }

    /// The SA's configuration.
    pub fn config(&self) -> &SaConfig {
        &self.config
    }

    /// The SPI this SA receives.
    pub fn spi(&self) -> u32 {
        self.config.spi
    }

    /// Counters.
    pub fn counters(&self) -> &InboundCounters {
        &self.counters
    }

    /// The anti-replay window.
    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Lifetime state and use.
    pub fn lifetime(&self) -> &Lifetime {
        &self.lifetime
    }

    /// Authenticates, decrypts and checks an ESP packet in place (RFC 4303
    /// §3.4). Every rejection is counted in [`counters`](Self::counters).
    pub fn decapsulate(&mut self, packet: &mut [u8]) -> Result<Decapsulated, DecapError> {
        let result = self.decapsulate_inner(packet);
        if let Err(e) = &result {
            let c = &mut self.counters;
            match e {
                DecapError::Truncated { .. } => c.truncated += 1,
                DecapError::WrongSpi { .. } => c.wrong_spi += 1,
                DecapError::Replayed { .. } => c.replayed += 1,
                DecapError::OutsideWindow { .. } => c.outside_window += 1,
                DecapError::AuthenticationFailed => c.auth_failed += 1,
                DecapError::BadPadding => c.bad_padding += 1,
                DecapError::BadNextHeader(_) => c.bad_next_header += 1,
                DecapError::Dummy => c.dummy += 1,
                DecapError::Expired => c.expired += 1,
            }
        }
        result
    }

    fn decapsulate_inner(&mut self, packet: &mut [u8]) -> Result<Decapsulated, DecapError> {
        if self.lifetime.state() == LifetimeState::Expired {
            return Err(DecapError::Expired);
        }
        let (spi, seq_low) = packet::parse_header(packet)?;
        if spi != self.config.spi {
            return Err(DecapError::WrongSpi {
                expected: self.config.spi,
                got: spi,
            });
        }
        let seq = if self.config.esn {
            self.window
                .infer_esn(seq_low)
                .ok_or(DecapError::OutsideWindow {
                    seq: u64::from(seq_low),
                })?
        } else {
            u64::from(seq_low)
        };
        let replay_error = |check| match check {
            ReplayCheck::Replayed => DecapError::Replayed { seq },
            ReplayCheck::OutsideWindow => DecapError::OutsideWindow { seq },
        };
        // Check before decrypting, update only once the ICV verified.
        self.window.check(seq).map_err(replay_error)?;
        let payload_len = packet::open_payload(&self.key, seq, self.config.esn, packet)?;
        self.window.update(seq).map_err(replay_error)?;
        let payload = &packet[packet::HEADER_LEN..packet::HEADER_LEN + payload_len];
        let (inner, protocol) = packet::parse_trailer(payload)?;
        self.counters.packets += 1;
        self.counters.bytes += inner.len() as u64;
        record(&mut self.lifetime, &mut self.pending, inner.len());
        Ok(Decapsulated {
            inner,
            protocol,
            seq,
        })
    }

    /// Checks time limits; call at [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(event) = self.lifetime.handle_timeout(now) {
            self.pending = self.pending.max(Some(event));
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lifetime.poll_timeout()
    }

    /// A lifetime limit crossed since the last call, if any.
    pub fn poll_event(&mut self) -> Option<LifetimeEvent> {
        self.pending.take()
    }
}
