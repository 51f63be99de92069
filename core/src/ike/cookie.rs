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
//! with a one-octet version and a 32-byte secret drawn from the endpoint's
//! CSPRNG. The secret is replaced every [`ROTATE`]; a cookie made with the
//! previous secret is still accepted, so a rotation never fails an initiator
//! that is just repeating its request.
//!
//! Cookies make a flood cheap to answer, not free: each request is still
//! parsed and hashed. When requests arrive faster than the responder answers,
//! [`sheddable`] tells the caller which to drop first before they queue: an
//! IKE_SA_INIT request without a COOKIE, the kind a spoofed flood is made of
//! (a real initiator retransmits it). Requests that carry a cookie and
//! messages of existing IKE SAs (IKE_AUTH, …) keep the rest of the queue.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand_core::RngCore;
use ring::digest;
use zeroize::Zeroizing;

use crate::crypto::ct_eq;
use crate::ike::message::{ExchangeType, HEADER_LEN, HeaderPacket, NotifyType, PayloadType};

/// How long one secret is used for new cookies.
pub const ROTATE: Duration = Duration::from_secs(120);

/// Cookie length: version octet and a SHA-256 hash.
pub const COOKIE_LEN: usize = 33;

#[derive(Debug)]
struct Secret {
    version: u8,
    bytes: Zeroizing<[u8; 32]>,
}

/// The responder's cookie secrets: the current one and the one before.
#[derive(Debug)]
pub(crate) struct CookieJar {
    current: Secret,
    previous: Option<Secret>,
    since: Option<Instant>,
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

impl CookieJar {
    pub(crate) fn new(rng: &mut impl RngCore) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut bytes[..]);
        Self {
            current: Secret { version: 0, bytes },
            previous: None,
            since: None,
        }
    }

    fn rotate_if_due(&mut self, now: Instant, rng: &mut impl RngCore) {
        match self.since {
            None => self.since = Some(now),
            Some(since) if now.saturating_duration_since(since) >= ROTATE => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(&mut bytes[..]);
                let next = Secret {
                    version: self.current.version.wrapping_add(1),
                    bytes,
                };
                self.previous = Some(std::mem::replace(&mut self.current, next));
                self.since = Some(now);
            }
            Some(_) => {}
        }
    }

    /// The cookie for this initiator (§2.6).
    pub(crate) fn make(
        &mut self,
        now: Instant,
        rng: &mut impl RngCore,
        ni: &[u8],
        ip: IpAddr,
        spi_i: u64,
    ) -> [u8; COOKIE_LEN] {
        self.rotate_if_due(now, rng);
        hash(&self.current, ni, ip, spi_i)
    }

    /// Whether `cookie` is one this responder made for this initiator.
    pub(crate) fn check(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        let Some(&version) = cookie.first() else {
            return false;
        };
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.version == version)
            .is_some_and(|s| ct_eq(&hash(s, ni, ip, spi_i), cookie))
    }
}

/// Whether `message` (an IKE message, without the non-ESP marker) is an
/// IKE_SA_INIT request whose first payload is not N(COOKIE): the first to
/// drop when the responder cannot keep up. A peek at fixed offsets, no parse;
/// anything that is not such a request (or is too short to tell) is `false`.
pub fn sheddable(message: &[u8]) -> bool {
    let Ok(h) = HeaderPacket::new_checked(message) else {
        return false;
    };
    if h.exchange_type() != ExchangeType::IKE_SA_INIT || h.flags().response() || h.spi_r() != 0 {
        return false;
    }
    // Generic payload header (4), then the Notify's protocol ID, SPI size and
    // type (RFC 7296 §3.10).
    let cookie_first = h.next_payload() == PayloadType::NOTIFY
        && message
            .get(HEADER_LEN + 6..HEADER_LEN + 8)
            .is_some_and(|t| u16::from_be_bytes([t[0], t[1]]) == NotifyType::COOKIE.0);
    !cookie_first
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use crate::ike::message::{Flags, Header, Message, Nonce, Notify, Payload};

    fn init(flags: Flags, spi_r: u64, cookie: bool) -> Vec<u8> {
        let mut payloads = vec![Payload::Nonce(Nonce(vec![7; 32]))];
        if cookie {
            payloads.insert(
                0,
                Payload::Notify(Notify::new(NotifyType::COOKIE, vec![1; 33])),
            );
        }
        let header = Header::new(1, spi_r, ExchangeType::IKE_SA_INIT, flags, 0);
        let mut out = Vec::new();
        Message::new(header, payloads).emit(&mut out);
        out
    }

    #[test]
    fn sheds_only_init_requests_without_a_cookie() {
        assert!(sheddable(&init(Flags::INITIATOR, 0, false)));
        assert!(!sheddable(&init(Flags::INITIATOR, 0, true)));
        assert!(!sheddable(&init(Flags::RESPONSE, 2, false)), "a response");
        assert!(!sheddable(&init(Flags::INITIATOR, 2, false)), "SPIr set");
        let auth = Header::new(1, 2, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
        let mut out = Vec::new();
        Message::new(auth, vec![]).emit(&mut out);
        assert!(!sheddable(&out));
        assert!(!sheddable(&[0u8; 10]), "too short to tell");
    }

    #[test]
    fn accepts_its_own_cookie_across_one_rotation() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let mut jar = CookieJar::new(&mut rng);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let c = jar.make(t0, &mut rng, b"nonce", ip, 7);
        assert!(jar.check(&c, b"nonce", ip, 7));
        assert!(!jar.check(&c, b"nonce", ip, 8));
        assert!(!jar.check(&c, b"other", ip, 7));
        assert!(!jar.check(&c[..5], b"nonce", ip, 7));
        let c2 = jar.make(t0 + ROTATE, &mut rng, b"nonce", ip, 7);
        assert_ne!(c, c2);
        assert!(
            jar.check(&c, b"nonce", ip, 7),
            "previous secret still accepted"
        );
        jar.make(t0 + ROTATE * 2, &mut rng, b"nonce", ip, 7);
        assert!(
            !jar.check(&c, b"nonce", ip, 7),
            "two rotations later it is not"
        );
    }
}
