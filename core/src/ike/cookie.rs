//! Stateless cookies against IKE_SA_INIT floods (RFC 7296 §2.6).
//!
//! When the half-open IKE SAs reach `cookie_threshold`, the responder answers
//! an IKE_SA_INIT request without a valid N(COOKIE) with only an N(COOKIE) and
//! keeps no state. The cookie is
//!
//! ```text
//! Cookie = <VersionIDofSecret> | SHA-256(Ni | IPi | SPIi | <secret>)
//! ```
//!
//! with a one-octet version and a 32-byte secret drawn from a CSPRNG seeded
//! by the endpoint's. The secret is replaced every [`ROTATE`]; a cookie made
//! with the previous secret is still accepted, so a rotation never fails an
//! initiator that is just repeating its request.
//!
//! The secrets live in [`Cookies`], shared (`Arc`) between the engine and
//! whoever reads the socket: the agent's UDP workers call
//! [`Cookies::triage`] on every IKE datagram and answer a cookie-less
//! IKE_SA_INIT themselves while the engine says cookies are required
//! ([`Cookies::required`]), with no copy into the engine's queue and no
//! state. The triage reads the fixed header and walks the generic payload
//! headers to the nonce (the hash needs Ni); no payload body is parsed. What
//! it says:
//!
//! - [`Triage::Priority`]: anything but an IKE_SA_INIT request, or one whose
//!   first payload is a cookie this host made: for the engine, never shed
//!   while cookie-less requests are;
//! - [`Triage::Sheddable`]: a cookie-less request while cookies are not
//!   required: for the engine, the first to go when it cannot keep up;
//! - [`Triage::Cookie`]: answer with this reply;
//! - [`Triage::Unanswerable`]: cookies are required, and no reply may be
//!   sent: the request has no nonce, or is shorter than the reply would be
//!   (a cookie reply is never larger than the request it answers, so the
//!   responder amplifies nothing).
//!
//! Who vouches for a request's source address: nobody, until it returns the
//! cookie sent there. So replies are also rate-limited per source (an
//! address; an IPv6 /64) by [`ReplyLimiter`]: a spoofed flood can make this
//! host send at most that rate, at most the request's size, to any victim.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use ring::digest;
use zeroize::Zeroizing;

use crate::crypto::ct_eq;
use crate::ike::message::{
    ExchangeType, Flags, HEADER_LEN, Header, HeaderPacket, MAJOR_VERSION, NotifyType, PayloadType,
};

/// How long one secret is used for new cookies.
pub const ROTATE: Duration = Duration::from_secs(120);

/// Cookie length: version octet and a SHA-256 hash.
pub const COOKIE_LEN: usize = 33;

/// Length of a cookie reply: the IKE header, one Notify payload (generic
/// header, protocol ID, SPI size, type) and the cookie. Without the non-ESP
/// marker (on the NAT-T port both carry one, so the comparison holds).
pub const REPLY_LEN: usize = HEADER_LEN + 8 + COOKIE_LEN;

/// The most payloads walked to find the nonce: an IKE_SA_INIT request has
/// about six (SA, KE, Ni, two NAT_DETECTION, SIGNATURE_HASH_ALGORITHMS, …).
const MAX_PAYLOADS_WALKED: usize = 32;

#[derive(Debug)]
struct Secret {
    version: u8,
    bytes: Zeroizing<[u8; 32]>,
}

#[derive(Debug)]
struct Secrets {
    current: Secret,
    previous: Option<Secret>,
    since: Option<Instant>,
}

/// The responder's cookie secrets (the current one and the one before), and
/// whether cookies are required now. Shared read-mostly between the engine
/// and the socket's workers; see the module docs.
#[derive(Debug)]
pub struct Cookies {
    secrets: RwLock<Secrets>,
    /// Draws the next secret at rotation.
    rng: Mutex<ChaCha20Rng>,
    /// Set by the engine while its half-open SAs are at `cookie_threshold`.
    required: AtomicBool,
}

fn hash(secret: &Secret, ni: &[u8], ip: IpAddr, spi_i: u64) -> [u8; COOKIE_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(ni);
    match ip {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&secret.bytes[..]);
    let mut out = [0u8; COOKIE_LEN];
    out[0] = secret.version;
    out[1..].copy_from_slice(ctx.finish().as_ref());
    out
}

fn secret(version: u8, rng: &mut impl RngCore) -> Secret {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut bytes[..]);
    Secret { version, bytes }
}

impl Cookies {
    /// Fresh secrets, drawn from a CSPRNG seeded from `rng`.
    pub(crate) fn new(rng: &mut impl RngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        Self::with_seed(*seed)
    }

    /// Secrets drawn from a CSPRNG seeded with `seed` (the engine seeds it
    /// from its own; tests and fuzzing with a constant).
    pub fn with_seed(seed: [u8; 32]) -> Self {
        let mut own = ChaCha20Rng::from_seed(seed);
        Self {
            secrets: RwLock::new(Secrets {
                current: secret(0, &mut own),
                previous: None,
                since: None,
            }),
            rng: Mutex::new(own),
            required: AtomicBool::new(false),
        }
    }

    /// Whether IKE_SA_INIT requests must carry a cookie now.
    pub fn required(&self) -> bool {
        self.required.load(Ordering::Relaxed)
    }

    /// The engine's word on [`Self::required`] (public for tests and fuzzing;
    /// nothing else should say it).
    pub fn set_required(&self, required: bool) {
        self.required.store(required, Ordering::Relaxed);
    }

    /// Replaces the secret when [`ROTATE`] has passed since it was first used.
    fn rotate_if_due(&self, now: Instant) {
        let due = |s: &Secrets| match s.since {
            None => true,
            Some(since) => now.saturating_duration_since(since) >= ROTATE,
        };
        if !due(&self.secrets.read().unwrap_or_else(PoisonError::into_inner)) {
            return;
        }
        let mut s = self.secrets.write().unwrap_or_else(PoisonError::into_inner);
        match s.since {
            None => s.since = Some(now),
            Some(_) if due(&s) => {
                let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                let next = secret(s.current.version.wrapping_add(1), &mut *rng);
                s.previous = Some(std::mem::replace(&mut s.current, next));
                s.since = Some(now);
            }
            // Another thread rotated meanwhile.
            Some(_) => {}
        }
    }

    /// The cookie for this initiator (§2.6).
    pub(crate) fn make(&self, now: Instant, ni: &[u8], ip: IpAddr, spi_i: u64) -> [u8; COOKIE_LEN] {
        self.rotate_if_due(now);
        let s = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        hash(&s.current, ni, ip, spi_i)
    }

    /// Whether `cookie` is one this responder made for this initiator.
    pub(crate) fn check(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        let Some(&version) = cookie.first() else {
            return false;
        };
        let s = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
        [Some(&s.current), s.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.version == version)
            .is_some_and(|s| ct_eq(&hash(s, ni, ip, spi_i), cookie))
    }

    /// What to do with an IKE message (without the non-ESP marker) from
    /// `from`, before it reaches the engine; see the module docs. Never
    /// panics, whatever the bytes.
    pub fn triage(&self, now: Instant, message: &[u8], from: IpAddr) -> Triage {
        let Some(init) = InitRequest::peek(message) else {
            return Triage::Priority;
        };
        if let (Some(cookie), Some(ni)) = (init.cookie, init.nonce)
            && self.check(cookie, ni, from, init.spi_i)
        {
            return Triage::Priority;
        }
        if !self.required() {
            return Triage::Sheddable;
        }
        let Some(ni) = init.nonce else {
            return Triage::Unanswerable;
        };
        if message.len() < REPLY_LEN {
            return Triage::Unanswerable;
        }
        let cookie = self.make(now, ni, from, init.spi_i);
        Triage::Cookie(CookieReply::new(init.spi_i, &cookie))
    }
}

/// What [`Cookies::triage`] says of one IKE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triage {
    /// Not an IKE_SA_INIT request, or one with a valid cookie: for the
    /// engine, ahead of cookie-less requests.
    Priority,
    /// A cookie-less IKE_SA_INIT request while cookies are not required: for
    /// the engine, the first to be shed.
    Sheddable,
    /// Answer with this (and keep nothing).
    Cookie(CookieReply),
    /// Cookies are required and this request may get no reply: it has no
    /// nonce, or is shorter than [`REPLY_LEN`]. Drop it.
    Unanswerable,
}

/// An IKE_SA_INIT response carrying only N(COOKIE), [`REPLY_LEN`] bytes,
/// byte for byte what the engine sends.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieReply([u8; REPLY_LEN]);

impl std::fmt::Debug for CookieReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieReply")
    }
}

impl CookieReply {
    fn new(spi_i: u64, cookie: &[u8; COOKIE_LEN]) -> Self {
        let header = Header::new(spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::RESPONSE, 0);
        let mut b = [0u8; REPLY_LEN];
        b[..HEADER_LEN].copy_from_slice(&header.to_bytes(PayloadType::NOTIFY, REPLY_LEN as u32));
        let notify = &mut b[HEADER_LEN..];
        // Generic payload header: no next payload, not critical, length.
        notify[2..4].copy_from_slice(&((8 + COOKIE_LEN) as u16).to_be_bytes());
        // Protocol ID 0 and SPI size 0 (§3.10), the type, the data.
        notify[6..8].copy_from_slice(&NotifyType::COOKIE.0.to_be_bytes());
        notify[8..].copy_from_slice(cookie);
        Self(b)
    }

    /// The IKE message.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// An IKE_SA_INIT request as the triage sees it: the header's SPIi, and the
/// first payload's cookie and the nonce, if there.
struct InitRequest<'a> {
    spi_i: u64,
    cookie: Option<&'a [u8]>,
    nonce: Option<&'a [u8]>,
}

impl<'a> InitRequest<'a> {
    /// `None` when `message` is not an IKE_SA_INIT request (then the engine
    /// decides). A payload chain that overruns the message ends
    /// the walk: what was found so far is kept.
    fn peek(message: &'a [u8]) -> Option<Self> {
        let h = HeaderPacket::new_checked(message).ok()?;
        let flags = h.flags();
        if h.exchange_type() != ExchangeType::IKE_SA_INIT || flags.response() || h.spi_r() != 0 {
            return None;
        }
        let mut init = InitRequest {
            spi_i: h.spi_i(),
            cookie: None,
            nonce: None,
        };
        // The engine drops these; they get no priority and no reply.
        if !flags.initiator() || h.major_version() != MAJOR_VERSION {
            return Some(init);
        }
        let mut next = h.next_payload();
        let mut at = HEADER_LEN;
        for i in 0..MAX_PAYLOADS_WALKED {
            if next == PayloadType::NONE {
                break;
            }
            let Some(generic) = message.get(at..at + 4) else {
                break;
            };
            let len = usize::from(u16::from_be_bytes([generic[2], generic[3]]));
            let Some(body) = message.get(at + 4..at + len.max(4)).filter(|_| len >= 4) else {
                break;
            };
            match next {
                // §2.6: the cookie must be the first payload.
                PayloadType::NOTIFY
                    if i == 0
                        && body.len() >= 4
                        && u16::from_be_bytes([body[2], body[3]]) == NotifyType::COOKIE.0 =>
                {
                    // Protocol ID, SPI size (0 here), type, then the data.
                    init.cookie = body.get(4 + usize::from(body[1])..);
                }
                PayloadType::NONCE => {
                    init.nonce = Some(body);
                    break;
                }
                _ => {}
            }
            next = PayloadType(generic[0]);
            at += len;
        }
        Some(init)
    }
}

/// Token buckets for cookie replies, one per source (an IPv4 address, an
/// IPv6 /64), in a fixed table: sources are hashed with a per-process key
/// into [`LIMITER_SLOTS`] buckets, and sources that collide share one (which
/// only makes them stricter). Its memory does not grow with the sources.
#[derive(Debug)]
pub struct ReplyLimiter {
    rate: f64,
    burst: f64,
    slots: Box<[Bucket]>,
    key: std::collections::hash_map::RandomState,
    /// Replies refused so far.
    pub limited: u64,
}

/// Buckets in a [`ReplyLimiter`].
pub const LIMITER_SLOTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl ReplyLimiter {
    /// At most `per_second` replies per second to one source, after a burst
    /// of as many.
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        Self {
            rate,
            burst: rate.max(1.0),
            slots: vec![
                Bucket {
                    tokens: 0.0,
                    at: None
                };
                LIMITER_SLOTS
            ]
            .into_boxed_slice(),
            key: Default::default(),
            limited: 0,
        }
    }

    /// Whether one more reply to `to` is allowed now (and takes it).
    pub fn allow(&mut self, now: Instant, to: IpAddr) -> bool {
        let prefix: u128 = match to {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a) >> 64 | 1 << 64,
        };
        let slot = (self.key.hash_one(prefix) as usize) % LIMITER_SLOTS;
        let b = &mut self.slots[slot];
        b.tokens = match b.at {
            None => self.burst,
            Some(at) => {
                let refill = now.saturating_duration_since(at).as_secs_f64() * self.rate;
                (b.tokens + refill).min(self.burst)
            }
        };
        b.at = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            self.limited += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    use crate::ike::message::{Flags, Header, Message, Nonce, Notify, Payload};

    fn init(flags: Flags, spi_r: u64, cookie: Option<Vec<u8>>) -> Vec<u8> {
        let mut payloads = vec![Payload::Nonce(Nonce(vec![7; 64]))];
        if let Some(c) = cookie {
            payloads.insert(0, Payload::Notify(Notify::new(NotifyType::COOKIE, c)));
        }
        let header = Header::new(1, spi_r, ExchangeType::IKE_SA_INIT, flags, 0);
        let mut out = Vec::new();
        Message::new(header, payloads).emit(&mut out);
        out
    }

    fn cookies() -> Cookies {
        Cookies::new(&mut ChaCha20Rng::from_seed([1; 32]))
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn accepts_its_own_cookie_across_one_rotation() {
        let jar = cookies();
        let t0 = Instant::now();
        let c = jar.make(t0, b"nonce", IP, 7);
        assert!(jar.check(&c, b"nonce", IP, 7));
        assert!(!jar.check(&c, b"nonce", IP, 8));
        assert!(!jar.check(&c, b"other", IP, 7));
        assert!(!jar.check(&c[..5], b"nonce", IP, 7));
        let c2 = jar.make(t0 + ROTATE, b"nonce", IP, 7);
        assert_ne!(c, c2);
        assert!(
            jar.check(&c, b"nonce", IP, 7),
            "previous secret still accepted"
        );
        jar.make(t0 + ROTATE * 2, b"nonce", IP, 7);
        assert!(
            !jar.check(&c, b"nonce", IP, 7),
            "two rotations later it is not"
        );
    }

    #[test]
    fn triage_answers_cookieless_requests_only_when_required() {
        let jar = cookies();
        let now = Instant::now();
        let plain = init(Flags::INITIATOR, 0, None);
        assert_eq!(jar.triage(now, &plain, IP), Triage::Sheddable);
        jar.set_required(true);
        let Triage::Cookie(reply) = jar.triage(now, &plain, IP) else {
            panic!("no cookie reply");
        };
        // Byte for byte the engine's reply (sa_init's init_error).
        let cookie = jar.make(now, &[7; 64], IP, 1);
        let header = Header::new(1, 0, ExchangeType::IKE_SA_INIT, Flags::RESPONSE, 0);
        let n = Notify::new(NotifyType::COOKIE, cookie.to_vec());
        let mut engine = Vec::new();
        Message::new(header, vec![Payload::Notify(n)]).emit(&mut engine);
        assert_eq!(reply.bytes(), &engine[..]);
        assert!(
            reply.bytes().len() <= plain.len(),
            "never larger than the request"
        );

        // The initiator returns it: priority, required or not.
        let back = init(Flags::INITIATOR, 0, Some(cookie.to_vec()));
        assert_eq!(jar.triage(now, &back, IP), Triage::Priority);
        jar.set_required(false);
        assert_eq!(jar.triage(now, &back, IP), Triage::Priority);
        jar.set_required(true);
        // Someone else's cookie (or from another address) is no cookie.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(matches!(jar.triage(now, &back, other), Triage::Cookie(_)));
        let forged = init(Flags::INITIATOR, 0, Some(vec![0; COOKIE_LEN]));
        assert!(matches!(jar.triage(now, &forged, IP), Triage::Cookie(_)));
    }

    #[test]
    fn triage_gives_priority_to_everything_but_init_requests() {
        let jar = cookies();
        jar.set_required(true);
        let now = Instant::now();
        assert_eq!(
            jar.triage(now, &init(Flags::RESPONSE, 2, None), IP),
            Triage::Priority
        );
        assert_eq!(
            jar.triage(now, &init(Flags::INITIATOR, 2, None), IP),
            Triage::Priority,
            "SPIr set: an existing SA's"
        );
        let auth = Header::new(1, 2, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
        let mut out = Vec::new();
        Message::new(auth, vec![]).emit(&mut out);
        assert_eq!(jar.triage(now, &out, IP), Triage::Priority);
        assert_eq!(jar.triage(now, &[0u8; 10], IP), Triage::Priority);
        // An init request without the I flag: no priority, no reply.
        assert_eq!(
            jar.triage(now, &init(Flags(0), 0, None), IP),
            Triage::Unanswerable
        );
    }

    #[test]
    fn no_reply_without_a_nonce_or_to_a_shorter_request() {
        let jar = cookies();
        jar.set_required(true);
        let now = Instant::now();
        let header = Header::new(1, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0);
        let mut bare = Vec::new();
        Message::new(header, vec![]).emit(&mut bare);
        assert_eq!(jar.triage(now, &bare, IP), Triage::Unanswerable);
        // A nonce, but a request shorter than the reply would be.
        let mut short = Vec::new();
        Message::new(header, vec![Payload::Nonce(Nonce(vec![7; 16]))]).emit(&mut short);
        assert!(short.len() < REPLY_LEN);
        assert_eq!(jar.triage(now, &short, IP), Triage::Unanswerable);
        // A chain that lies about a length: what was walked is kept, no panic.
        let mut lying = init(Flags::INITIATOR, 0, None);
        lying[HEADER_LEN + 2] = 0xff;
        assert_eq!(jar.triage(now, &lying, IP), Triage::Unanswerable);
        lying[HEADER_LEN + 2] = 0;
        lying[HEADER_LEN + 3] = 0;
        assert_eq!(jar.triage(now, &lying, IP), Triage::Unanswerable);
    }

    #[test]
    fn limiter_bounds_replies_per_source() {
        let mut l = ReplyLimiter::new(10);
        let t0 = Instant::now();
        let victim: IpAddr = "198.51.100.7".parse().unwrap();
        let allowed = (0..100).filter(|_| l.allow(t0, victim)).count();
        assert_eq!(allowed, 10, "a burst of the rate");
        assert_eq!(l.limited, 90);
        // A second later, the rate again.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| l.allow(t1, victim)).count(), 10);
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        let both = (0..20)
            .filter(|i| l.allow(t1, if i % 2 == 0 { v6a } else { v6b }))
            .count();
        assert_eq!(both, 10, "one /64 is one source");
    }
}
