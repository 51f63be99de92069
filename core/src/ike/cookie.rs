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

use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand_core::RngCore;
use ring::digest;
use zeroize::Zeroizing;

use crate::crypto::ct_eq;

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
        Self { current: Secret { version: 0, bytes }, previous: None, since: None }
    }

    fn rotate_if_due(&mut self, now: Instant, rng: &mut impl RngCore) {
        match self.since {
            None => self.since = Some(now),
            Some(since) if now.saturating_duration_since(since) >= ROTATE => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rng.fill_bytes(&mut bytes[..]);
                let next = Secret { version: self.current.version.wrapping_add(1), bytes };
                self.previous = Some(std::mem::replace(&mut self.current, next));
                self.since = Some(now);
            }
            Some(_) => {}
        }
    }

    /// The cookie for this initiator (§2.6).
    pub(crate) fn make(&mut self, now: Instant, rng: &mut impl RngCore, ni: &[u8], ip: IpAddr, spi_i: u64) -> [u8; COOKIE_LEN] {
        self.rotate_if_due(now, rng);
        hash(&self.current, ni, ip, spi_i)
    }

    /// Whether `cookie` is one this responder made for this initiator.
    pub(crate) fn check(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        let Some(&version) = cookie.first() else { return false };
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|s| s.version == version)
            .is_some_and(|s| ct_eq(&hash(s, ni, ip, spi_i), cookie))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

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
        assert!(jar.check(&c, b"nonce", ip, 7), "previous secret still accepted");
        jar.make(t0 + ROTATE * 2, &mut rng, b"nonce", ip, 7);
        assert!(!jar.check(&c, b"nonce", ip, 7), "two rotations later it is not");
    }
}
