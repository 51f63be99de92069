//! Allocation bombs: IKE messages that cost a parser the most memory per byte
//! sent (issue 11, "bounded parsing before the cookie").
//!
//! Each [`Bomb`] is a payload chain that packs as many of one cheap structure
//! as fit in a datagram: 8-byte Delete payloads announcing 65,535 SPIs of size
//! 0, empty 4-byte payloads, 8-byte proposals, 4-byte transform attributes,
//! 4-byte traffic selectors. [`ike_sa_init`] wraps one in an IKE_SA_INIT
//! request, which a responder parses before it looks at cookies or creates
//! any state; [`SkBomber`] gets past IKE_SA_INIT as a real (unauthenticated)
//! initiator would and then seals one inside the SK payload of its IKE_AUTH
//! request, which the responder decrypts and parses.
//!
//! The bytes are written by hand, not with oemesh-core's codec: the codec
//! refuses to emit most of these (a Delete with SPI Size 0 and a nonzero
//! count), which is the point of them.
//!
//! ```
//! use oemesh_testkit::attacker::bombs::{self, Bomb};
//!
//! let datagram = bombs::delete_bomb(0x0102_0304_0506_0708);
//! assert!(datagram.len() <= bombs::DATAGRAM_LEN);
//! for bomb in Bomb::ALL {
//!     let d = bombs::ike_sa_init(7, bomb);
//!     assert!(d.len() > bombs::DATAGRAM_LEN - 8, "{} fills the datagram", bomb.name());
//! }
//! ```

use anyhow::{Context, Result, bail};
use oemesh_core::crypto::x25519::X25519Secret;
use oemesh_core::crypto::{AeadAlg, AeadKey, Provider};
use oemesh_core::ike::keys::Skeyseed;
use oemesh_core::ike::message::{
    CryptoError, DhGroup, EncrId, ExchangeType, Flags, HEADER_LEN, Header, Ke, Message, Nonce,
    Notify, NotifyType, Payload, PayloadType, PrfId, Proposal, ProtocolId, Sa, SkCipher, Transform,
};
use oemesh_core::ike::udp_encap::NON_ESP_MARKER;

/// The largest IKE message a bomb fills: what fits in one unfragmented
/// datagram on an Ethernet path with room for IP and UDP headers (the size
/// the issue's measurement used, and the flood generator's limit).
pub const DATAGRAM_LEN: usize = 1400;

/// Generic payload header (RFC 7296 §3.2).
const GENERIC: usize = 4;
/// SK payload's header before the IV (RFC 7296 §3.14).
const SK_HEADER: usize = 4;

/// One kind of allocation bomb: a payload chain of one cheap structure,
/// repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bomb {
    /// Delete payloads (§3.11) of protocol ESP with SPI Size 0 and Num of
    /// SPIs 65,535, 8 bytes each: the bomb of issue 11 (one empty vector per
    /// announced SPI, 1.5 MiB per payload).
    Delete,
    /// Empty Vendor ID payloads, 4 bytes each: one payload value per 4 bytes.
    EmptyPayloads,
    /// Minimal Notify payloads, 8 bytes each: the largest payload value.
    Notifies,
    /// One SA payload (§3.3) of empty proposals, 8 bytes each.
    Proposals,
    /// One SA payload with one proposal of as many 8-byte transforms as it
    /// may announce (255) or as fit.
    Transforms,
    /// One SA payload, one proposal, one transform with as many 4-byte Key
    /// Length attributes as fit.
    Attributes,
    /// TS payloads (§3.13) of 255 selectors each, 4 bytes per selector (an
    /// unknown TS Type with no data).
    Selectors,
}

impl Bomb {
    /// Every bomb.
    pub const ALL: [Bomb; 7] = [
        Bomb::Delete,
        Bomb::EmptyPayloads,
        Bomb::Notifies,
        Bomb::Proposals,
        Bomb::Transforms,
        Bomb::Attributes,
        Bomb::Selectors,
    ];

    /// A short name for test output and seed file names.
    pub fn name(self) -> &'static str {
        match self {
            Bomb::Delete => "delete",
            Bomb::EmptyPayloads => "empty-payloads",
            Bomb::Notifies => "notifies",
            Bomb::Proposals => "proposals",
            Bomb::Transforms => "transforms",
            Bomb::Attributes => "attributes",
            Bomb::Selectors => "selectors",
        }
    }

    /// The payload chain, at most `room` bytes (and at most one full payload
    /// length, 65,535, per payload): the type of its first payload and the
    /// bytes, each payload's Next Payload linked to the one after it.
    pub fn chain(self, room: usize) -> (PayloadType, Vec<u8>) {
        let payloads = match self {
            Bomb::Delete => repeat(PayloadType::DELETE, &[3, 0, 0xff, 0xff], room),
            Bomb::EmptyPayloads => repeat(PayloadType::VENDOR_ID, &[], room),
            // N(INITIAL_CONTACT)-like: protocol 0, no SPI, a status type, no data.
            Bomb::Notifies => repeat(PayloadType::NOTIFY, &[0, 0, 0x40, 0x00], room),
            Bomb::Proposals => vec![(PayloadType::SA, proposals(room.saturating_sub(GENERIC)))],
            Bomb::Transforms => vec![(PayloadType::SA, transforms(room.saturating_sub(GENERIC)))],
            Bomb::Attributes => vec![(PayloadType::SA, attributes(room.saturating_sub(GENERIC)))],
            Bomb::Selectors => selectors(room),
        };
        link(&payloads)
    }
}

/// As many payloads of type `ty` with body `body` as fit in `room`.
fn repeat(ty: PayloadType, body: &[u8], room: usize) -> Vec<(PayloadType, Vec<u8>)> {
    let n = room / (GENERIC + body.len());
    vec![(ty, body.to_vec()); n]
}

/// Largest body a payload can carry (its 16-bit length includes the header).
fn body_room(room: usize) -> usize {
    room.min(usize::from(u16::MAX) - GENERIC)
}

fn put_u16(out: &mut Vec<u8>, value: usize) {
    let v = u16::try_from(value).expect("bomb structures stay below 64 KiB");
    out.extend_from_slice(&v.to_be_bytes());
}

/// An SA body of empty 8-byte proposals (protocol IKE, no SPI, no transforms).
fn proposals(room: usize) -> Vec<u8> {
    let n = body_room(room) / 8;
    let mut body = Vec::with_capacity(n * 8);
    for i in 0..n {
        let last = if i + 1 == n { 0 } else { 2 };
        let number = u8::try_from(i % 255 + 1).unwrap_or(1);
        body.extend_from_slice(&[last, 0, 0, 8, number, 1, 0, 0]);
    }
    body
}

/// An SA body with one proposal of 8-byte ENCR transforms, as many as the
/// proposal can announce (Num Transforms is one octet) and as fit.
fn transforms(room: usize) -> Vec<u8> {
    let n = (body_room(room).saturating_sub(8) / 8).min(255);
    let mut body = Vec::with_capacity(8 + n * 8);
    body.extend_from_slice(&[0, 0]);
    put_u16(&mut body, 8 + n * 8);
    body.extend_from_slice(&[1, 1, 0, u8::try_from(n).unwrap_or(u8::MAX)]);
    for i in 0..n {
        let last = if i + 1 == n { 0 } else { 3 };
        body.extend_from_slice(&[last, 0, 0, 8, 1, 0, 0, 20]);
    }
    body
}

/// An SA body with one proposal holding one transform with 4-byte Key Length
/// attributes (TV form) filling the rest.
fn attributes(room: usize) -> Vec<u8> {
    let n = body_room(room).saturating_sub(16) / 4;
    let transform_len = 8 + 4 * n;
    let mut body = Vec::with_capacity(8 + transform_len);
    body.extend_from_slice(&[0, 0]);
    put_u16(&mut body, 8 + transform_len);
    body.extend_from_slice(&[1, 1, 0, 1]);
    body.extend_from_slice(&[0, 0]);
    put_u16(&mut body, transform_len);
    body.extend_from_slice(&[1, 0, 0, 20]);
    for _ in 0..n {
        body.extend_from_slice(&[0x80, 14, 1, 0]);
    }
    body
}

/// TSi payloads of up to 255 four-byte selectors of TS Type 240 (unassigned).
fn selectors(mut room: usize) -> Vec<(PayloadType, Vec<u8>)> {
    let mut payloads = Vec::new();
    while room >= GENERIC + 4 + 4 {
        let n = ((room - GENERIC - 4) / 4).min(255);
        let mut body = Vec::with_capacity(4 + 4 * n);
        body.extend_from_slice(&[u8::try_from(n).unwrap_or(u8::MAX), 0, 0, 0]);
        for _ in 0..n {
            body.extend_from_slice(&[240, 0, 0, 4]);
        }
        room -= GENERIC + body.len();
        payloads.push((PayloadType::TSI, body));
    }
    payloads
}

/// Writes the generic headers: each Next Payload names the payload after it.
fn link(payloads: &[(PayloadType, Vec<u8>)]) -> (PayloadType, Vec<u8>) {
    let first = payloads.first().map_or(PayloadType::NONE, |p| p.0);
    let mut out = Vec::with_capacity(payloads.iter().map(|p| GENERIC + p.1.len()).sum());
    for (i, (_, body)) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(PayloadType::NONE, |p| p.0);
        out.extend_from_slice(&[next.0, 0]);
        put_u16(&mut out, GENERIC + body.len());
        out.extend_from_slice(body);
    }
    (first, out)
}

/// A whole IKE message: `header` (Next Payload and Length written here) and
/// the chain.
pub fn message(header: &Header, (first, chain): (PayloadType, Vec<u8>)) -> Vec<u8> {
    let total = HEADER_LEN + chain.len();
    let mut out = Vec::with_capacity(total);
    header.emit(
        first,
        u32::try_from(total).expect("a datagram's length fits in 32 bits"),
        &mut out,
    );
    out.extend_from_slice(&chain);
    out
}

/// An IKE_SA_INIT request from initiator SPI `spi_i` whose payloads are
/// `bomb`, [`DATAGRAM_LEN`] bytes at most: what reaches a responder's parser
/// from anyone, before any cookie check (RFC 7296 §2.6). Send it to UDP 500
/// as it is, or to 4500 after [`with_non_esp_marker`].
pub fn ike_sa_init(spi_i: u64, bomb: Bomb) -> Vec<u8> {
    ike_sa_init_within(spi_i, bomb, DATAGRAM_LEN)
}

/// [`ike_sa_init`] of at most `len` bytes (at least the 28-byte header).
pub fn ike_sa_init_within(spi_i: u64, bomb: Bomb, len: usize) -> Vec<u8> {
    let header = Header::new(spi_i, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0);
    message(&header, bomb.chain(len.saturating_sub(HEADER_LEN)))
}

/// The bomb as a UDP 4500 payload: the non-ESP marker and an IKE_SA_INIT
/// request, [`DATAGRAM_LEN`] bytes in all.
pub fn ike_sa_init_4500(spi_i: u64, bomb: Bomb) -> Vec<u8> {
    let marker = NON_ESP_MARKER.len();
    with_non_esp_marker(&ike_sa_init_within(spi_i, bomb, DATAGRAM_LEN - marker))
}

/// The Delete bomb of issue 11 as an IKE_SA_INIT request: 171 Delete payloads
/// (ESP, SPI Size 0, 65,535 SPIs each) in 1,396 bytes.
pub fn delete_bomb(spi_i: u64) -> Vec<u8> {
    ike_sa_init(spi_i, Bomb::Delete)
}

/// `ike` behind the non-ESP marker, as it goes to UDP 4500 (RFC 3948 §2.2).
pub fn with_non_esp_marker(ike: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NON_ESP_MARKER.len() + ike.len());
    out.extend_from_slice(&NON_ESP_MARKER);
    out.extend_from_slice(ike);
    out
}

/// A cipher that seals and opens nothing: an 8-byte IV, no ICV, no
/// encryption. With it a datagram's SK payload opens without a key, so that
/// bombs and fuzzers reach the parser of the payloads inside SK, which a real
/// AEAD keeps them from with its ICV check (the `ike_message` fuzz target and
/// its seeds).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClearCipher;

impl SkCipher for ClearCipher {
    fn iv_len(&self) -> usize {
        8
    }
    fn icv_len(&self) -> usize {
        0
    }
    fn block_size(&self) -> usize {
        1
    }
    fn seal(&self, _: &[u8], _: &[u8], _: &mut Vec<u8>) -> Result<(), CryptoError> {
        Ok(())
    }
    fn open(&self, _: &[u8], _: &[u8], _: &mut Vec<u8>) -> Result<(), CryptoError> {
        Ok(())
    }
}

/// `header` with one SK payload that holds `bomb`'s chain, sealed by `cipher`
/// with explicit IV `iv` (RFC 7296 §3.14): [`DATAGRAM_LEN`] bytes at most.
pub fn sealed<C: SkCipher + ?Sized>(
    header: &Header,
    bomb: Bomb,
    cipher: &C,
    iv: &[u8],
) -> Result<Vec<u8>> {
    let block = cipher.block_size().max(1);
    let overhead = HEADER_LEN + SK_HEADER + iv.len() + block + cipher.icv_len();
    let (first, mut plain) = bomb.chain(DATAGRAM_LEN.saturating_sub(overhead));
    let pad = (block - (plain.len() + 1) % block) % block;
    plain.resize(plain.len() + pad, 0);
    plain.push(u8::try_from(pad).context("pad length over 255")?);
    let sk_len = SK_HEADER + iv.len() + plain.len() + cipher.icv_len();
    let total = HEADER_LEN + sk_len;
    let mut out = Vec::with_capacity(total);
    header.emit(PayloadType::SK, u32::try_from(total)?, &mut out);
    out.extend_from_slice(&[first.0, 0]);
    put_u16(&mut out, sk_len);
    cipher
        .seal(iv, &out, &mut plain)
        .map_err(|e| anyhow::anyhow!("sealing the SK payload: {e}"))?;
    out.extend_from_slice(iv);
    out.extend_from_slice(&plain);
    Ok(out)
}

/// splitmix64: reproducible values from a seed.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fill(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        let r = splitmix(state).to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
}

/// An initiator made by hand that gets as far as an unauthenticated peer can:
/// its IKE_SA_INIT offers AES-256-GCM, PRF HMAC-SHA2-256 and Curve25519, it
/// derives the IKE SA's keys from the responder's answer (RFC 7296 §2.14),
/// and then seals bombs as its IKE_AUTH request (Message ID 1). The responder
/// decrypts and parses each one while the SA is half-open.
#[derive(Debug)]
pub struct SkBomber {
    spi_i: u64,
    ni: [u8; 32],
    dh: X25519Secret,
    keyed: Option<(u64, AeadKey)>,
    iv: u64,
}

impl SkBomber {
    /// A fresh initiator; `seed` picks its SPI, nonce and DH secret.
    pub fn new(seed: u64) -> SkBomber {
        let mut state = seed;
        let mut spi_i = 0;
        while spi_i == 0 {
            spi_i = splitmix(&mut state);
        }
        let mut ni = [0u8; 32];
        fill(&mut state, &mut ni);
        let mut secret = [0u8; 32];
        fill(&mut state, &mut secret);
        SkBomber {
            spi_i,
            ni,
            dh: X25519Secret::from_random(secret),
            keyed: None,
            iv: 0,
        }
    }

    /// Its IKE SPI.
    pub fn spi_i(&self) -> u64 {
        self.spi_i
    }

    /// The IKE_SA_INIT request, with the responder's cookie first if it asked
    /// for one.
    pub fn init_request(&self, cookie: Option<&[u8]>) -> Vec<u8> {
        let mut payloads = Vec::new();
        if let Some(c) = cookie {
            payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.to_vec())));
        }
        payloads.push(Payload::Sa(Sa {
            proposals: vec![Proposal {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: Vec::new(),
                transforms: vec![
                    Transform::encr(EncrId::AES_GCM_16, Some(256)),
                    Transform::prf(PrfId::HMAC_SHA2_256),
                    Transform::dh(DhGroup::CURVE25519),
                ],
            }],
        }));
        payloads.push(Payload::Ke(Ke {
            group: DhGroup::CURVE25519,
            data: self.dh.public_key().to_vec(),
        }));
        payloads.push(Payload::Nonce(Nonce(self.ni.to_vec())));
        let header = Header::new(
            self.spi_i,
            0,
            ExchangeType::IKE_SA_INIT,
            Flags::INITIATOR,
            0,
        );
        let mut out = Vec::new();
        Message::new(header, payloads).emit(&mut out);
        out
    }

    /// Takes the responder's IKE_SA_INIT response (without a non-ESP
    /// marker). `Ok(Some(cookie))`: it asked for a cookie, send
    /// [`Self::init_request`] again with it; `Ok(None)`: keyed, ready for
    /// [`Self::auth_bomb`].
    pub fn on_init_response(&mut self, response: &[u8]) -> Result<Option<Vec<u8>>> {
        let m = Message::parse(response).context("IKE_SA_INIT response")?;
        if let Some(c) = m.notify(NotifyType::COOKIE) {
            return Ok(Some(c.data.clone()));
        }
        let (Some(Payload::Ke(ke)), Some(Payload::Nonce(Nonce(nr)))) =
            (m.payload(PayloadType::KE), m.payload(PayloadType::NONCE))
        else {
            bail!("IKE_SA_INIT response without KE and Nonce: {m:?}");
        };
        if m.header.spi_r == 0 {
            bail!("IKE_SA_INIT response without the responder's SPI");
        }
        let g_ir = self
            .dh
            .diffie_hellman(&ke.data)
            .map_err(|e| anyhow::anyhow!("the responder's KE: {e}"))?;
        let keys = Skeyseed::initial(&self.ni, nr, &g_ir).ike_sa_keys(
            &self.ni,
            nr,
            self.spi_i.to_be_bytes(),
            m.header.spi_r.to_be_bytes(),
        );
        let key = AeadKey::new(AeadAlg::Aes256Gcm, Provider::Ring, &keys.sk_ei);
        self.keyed = Some((m.header.spi_r, key));
        Ok(None)
    }

    /// An IKE_AUTH request (Message ID 1) whose SK payload holds `bomb`,
    /// sealed with SK_ei: it passes the ICV check and reaches the parser of
    /// the decrypted payloads. Each call uses the next IV.
    pub fn auth_bomb(&mut self, bomb: Bomb) -> Result<Vec<u8>> {
        let Some((spi_r, key)) = &self.keyed else {
            bail!("no IKE_SA_INIT response yet");
        };
        self.iv += 1;
        let header = Header::new(
            self.spi_i,
            *spi_r,
            ExchangeType::IKE_AUTH,
            Flags::INITIATOR,
            1,
        );
        sealed(&header, bomb, key, &self.iv.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oemesh_core::ike::message::HeaderPacket;

    #[test]
    fn bombs_fill_the_datagram_and_have_valid_headers() {
        for bomb in Bomb::ALL {
            let d = ike_sa_init(0x1122, bomb);
            assert!(
                d.len() <= DATAGRAM_LEN && d.len() + 8 > DATAGRAM_LEN,
                "{}: {} bytes",
                bomb.name(),
                d.len()
            );
            let p = HeaderPacket::new_checked(&d[..]).expect("a valid IKE header");
            assert_eq!(p.exchange_type(), ExchangeType::IKE_SA_INIT);
            assert_eq!(p.length() as usize, d.len());
            assert_eq!(p.spi_i(), 0x1122);
            let marked = ike_sa_init_4500(0x1122, bomb);
            assert_eq!(marked[..4], [0; 4]);
            assert!(marked.len() <= DATAGRAM_LEN && marked.len() + 8 > DATAGRAM_LEN);
            assert_eq!(
                HeaderPacket::new_checked(&marked[4..]).map(|p| p.length() as usize),
                Ok(marked.len() - 4)
            );
        }
    }

    #[test]
    fn delete_bomb_is_the_issue_s() {
        let d = delete_bomb(1);
        // 171 Delete payloads, each announcing 65,535 SPIs of size 0.
        assert_eq!(d.len(), HEADER_LEN + 171 * 8);
        assert_eq!(d[16], PayloadType::DELETE.0);
        assert_eq!(
            d[HEADER_LEN..HEADER_LEN + 8],
            [42, 0, 0, 8, 3, 0, 0xff, 0xff]
        );
    }

    #[test]
    fn sealed_bombs_open_with_the_key() {
        let key = AeadKey::new(
            AeadAlg::Aes256Gcm,
            Provider::Ring,
            &oemesh_core::crypto::KeyAndSalt::from_bytes([3; 36]),
        );
        let header = Header::new(1, 2, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
        for bomb in Bomb::ALL {
            let d = sealed(&header, bomb, &key, &[9; 8]).unwrap();
            assert!(d.len() <= DATAGRAM_LEN, "{}", bomb.name());
            let mut buf = d[HEADER_LEN + SK_HEADER + 8..].to_vec();
            key.open_truncate(&[9; 8], &d[..HEADER_LEN + SK_HEADER], &mut buf)
                .unwrap();
            assert_eq!(buf.last(), Some(&0), "pad length");
        }
    }
}
