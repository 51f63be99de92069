//! The ESP packet format and the stateless seal/open of one packet (RFC 4303 §2,
//! RFC 4106 §3–§5, RFC 7634 §2–§3).

use std::ops::Range;

use super::error::{DecapError, EncapError};
use crate::crypto::AeadKey;

/// SPI, low sequence number and the 8-byte IV in front of the ciphertext.
pub const HEADER_LEN: usize = 16;
/// ICV length of both AEADs.
pub const ICV_LEN: usize = crate::crypto::ICV_LEN;
/// The most padding encapsulation adds (to 4-byte alignment, RFC 4303 §2.4).
pub const MAX_PAD_LEN: usize = 3;
/// The most bytes that follow the inner packet: padding, pad length, next header, ICV.
pub const MAX_TRAILER_LEN: usize = MAX_PAD_LEN + 2 + ICV_LEN;
/// The shortest ESP packet: header, pad length, next header and ICV.
pub const MIN_PACKET_LEN: usize = HEADER_LEN + 2 + ICV_LEN;

/// Next header value of an IPv4 inner packet.
pub const NEXT_HEADER_IPV4: u8 = 4;
/// Next header value of an IPv6 inner packet.
pub const NEXT_HEADER_IPV6: u8 = 41;
/// Next header value of a dummy packet (RFC 4303 §2.6).
pub const NEXT_HEADER_NONE: u8 = 59;

/// The inner packet's protocol in tunnel mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InnerProtocol {
    /// IPv4, next header 4.
    Ipv4,
    /// IPv6, next header 41.
    Ipv6,
}

impl InnerProtocol {
    /// The ESP next header value.
    pub fn next_header(self) -> u8 {
        match self {
            InnerProtocol::Ipv4 => NEXT_HEADER_IPV4,
            InnerProtocol::Ipv6 => NEXT_HEADER_IPV6,
        }
    }

    /// From the version nibble of an IP packet.
    pub fn of_packet(packet: &[u8]) -> Option<Self> {
        match packet.first()? >> 4 {
            4 => Some(InnerProtocol::Ipv4),
            6 => Some(InnerProtocol::Ipv6),
            _ => None,
        }
    }
}

/// Length of the encrypted part for an inner packet: inner, padding to a
/// multiple of 4 (RFC 4303 §2.4; both AEADs are stream modes with block size 1),
/// pad length and next header.
pub fn payload_len(inner_len: usize) -> usize {
    (inner_len + 2 + 3) & !3
}

/// Length of the ESP packet that carries `inner_len` bytes.
pub fn encapsulated_len(inner_len: usize) -> usize {
    HEADER_LEN + payload_len(inner_len) + ICV_LEN
}

mod field {
    use std::ops::Range;
    pub(super) const SPI: Range<usize> = 0..4;
    pub(super) const SEQ: Range<usize> = 4..8;
    pub(super) const IV: Range<usize> = 8..16;
}

/// A view of an ESP packet (RFC 4303 §2) of the wire profile's AEADs: SPI,
/// the sequence number's low half, the 8-byte IV, the encrypted payload and
/// the 16-byte ICV.
#[derive(Debug, Clone)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic unless
    /// [`Self::check_len`] passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EspPacket { buffer }
    }

    /// Wraps a buffer of at least [`MIN_PACKET_LEN`] bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, DecapError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks room for the header, a pad length and next header, and the ICV.
    #[inline]
    pub fn check_len(&self) -> Result<(), DecapError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_PACKET_LEN {
            return Err(DecapError::Truncated { len });
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Security Parameters Index.
    #[inline]
    pub fn spi(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SPI];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The sequence number field (the low 32 bits with ESN).
    #[inline]
    pub fn seq_low(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SEQ];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The explicit IV (RFC 4106 §3.1, RFC 7634 §2).
    #[inline]
    pub fn iv(&self) -> [u8; 8] {
        let mut iv = [0u8; 8];
        iv.copy_from_slice(&self.buffer.as_ref()[field::IV]);
        iv
    }

    /// The encrypted payload: inner packet, padding, pad length, next header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[HEADER_LEN..b.len() - ICV_LEN]
    }

    /// The integrity check value.
    #[inline]
    pub fn icv(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[b.len() - ICV_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    /// Writes SPI, sequence number (its low half) and IV.
    #[inline]
    pub fn set_header(&mut self, spi: u32, seq_low: u32, iv: [u8; 8]) {
        let b = self.buffer.as_mut();
        b[field::SPI].copy_from_slice(&spi.to_be_bytes());
        b[field::SEQ].copy_from_slice(&seq_low.to_be_bytes());
        b[field::IV].copy_from_slice(&iv);
    }

    /// The payload and the ICV, both writable (to seal or open in place).
    #[inline]
    pub fn payload_and_icv_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        let b = self.buffer.as_mut();
        let end = b.len() - ICV_LEN;
        b[HEADER_LEN..].split_at_mut(end - HEADER_LEN)
    }
}

/// The SPI of an ESP packet, to find its SA. `None` if shorter than 4 bytes.
pub fn peek_spi(packet: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(*packet.first_chunk()?))
}

/// SPI and low sequence number of a packet at least [`MIN_PACKET_LEN`] long.
pub fn parse_header(packet: &[u8]) -> Result<(u32, u32), DecapError> {
    let packet = EspPacket::new_checked(packet)?;
    Ok((packet.spi(), packet.seq_low()))
}

/// The AAD: SPI | seq low, or SPI | seq high | seq low with ESN (RFC 4106 §5,
/// RFC 7634 §3). Returns the buffer and how much of it is used.
fn aad(spi: u32, seq: u64, esn: bool) -> ([u8; 12], usize) {
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        aad[4..12].copy_from_slice(&seq.to_be_bytes());
        (aad, 12)
    } else {
        aad[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        (aad, 8)
    }
}

/// Builds and encrypts one ESP packet in place; returns its length.
///
/// The inner IP packet is `buf[HEADER_LEN..HEADER_LEN + inner_len]`; the buffer
/// must reach to [`encapsulated_len`]`(inner_len)`. The IV is the 64-bit
/// sequence number (RFC 4106 §3.1, RFC 7634 §2 allow any value unique per key).
/// This is stateless: the caller guarantees `seq` is fresh and non-zero.
pub fn seal(
    key: &AeadKey,
    spi: u32,
    seq: u64,
    esn: bool,
    buf: &mut [u8],
    inner_len: usize,
) -> Result<usize, EncapError> {
    let total = encapsulated_len(inner_len);
    if buf.len() < total {
        return Err(EncapError::BufferTooSmall {
            needed: total,
            available: buf.len(),
        });
    }
    let protocol = InnerProtocol::of_packet(&buf[HEADER_LEN..HEADER_LEN + inner_len])
        .ok_or(EncapError::NotIp)?;
    let iv = seq.to_be_bytes();
    let mut packet = EspPacket::new_unchecked(&mut buf[..total]);
    packet.set_header(spi, seq as u32, iv);
    let (payload, icv_out) = packet.payload_and_icv_mut();

    // Trailer (RFC 4303 §2.4): padding 1, 2, 3, …, pad length, next header.
    let payload_len = payload.len();
    let pad_len = payload_len - inner_len - 2;
    for (i, b) in payload[inner_len..inner_len + pad_len]
        .iter_mut()
        .enumerate()
    {
        *b = i as u8 + 1;
    }
    payload[payload_len - 2] = pad_len as u8;
    payload[payload_len - 1] = protocol.next_header();

    let (aad, aad_len) = aad(spi, seq, esn);
    let icv = key.seal_in_place_detached(&iv, &aad[..aad_len], payload)?;
    icv_out.copy_from_slice(&icv);
    Ok(total)
}

/// Verifies the ICV and decrypts in place; returns the length of the decrypted
/// payload (inner packet and trailer) at `packet[HEADER_LEN..]`.
///
/// `seq` is the full sequence number (inferred from the low bits with ESN). The
/// replay check is the caller's, before and after.
pub fn open_payload(
    key: &AeadKey,
    seq: u64,
    esn: bool,
    packet: &mut [u8],
) -> Result<usize, DecapError> {
    let mut packet = EspPacket::new_checked(packet)?;
    let (aad, aad_len) = aad(packet.spi(), seq, esn);
    let iv = packet.iv();
    let (payload, icv) = packet.payload_and_icv_mut();
    let payload_len = payload.len();
    let icv: &[u8; ICV_LEN] = (&*icv)
        .try_into()
        .map_err(|_| DecapError::AuthenticationFailed)?;
    key.open_in_place_detached(&iv, &aad[..aad_len], payload, icv)
        .map_err(|_| DecapError::AuthenticationFailed)?;
    Ok(payload_len)
}

/// Checks the trailer of a decrypted payload (RFC 4303 §2.4 padding 1, 2, 3, ...;
/// next header IPv4 or IPv6) and returns where the inner packet is in the whole
/// ESP packet.
pub fn parse_trailer(payload: &[u8]) -> Result<(Range<usize>, InnerProtocol), DecapError> {
    let [.., pad_len, next_header] = *payload else {
        return Err(DecapError::BadPadding);
    };
    let pad_len = pad_len as usize;
    let inner_len = payload
        .len()
        .checked_sub(2 + pad_len)
        .ok_or(DecapError::BadPadding)?;
    let monotonic = payload[inner_len..inner_len + pad_len]
        .iter()
        .enumerate()
        .all(|(i, &b)| b as usize == i + 1);
    if !monotonic {
        return Err(DecapError::BadPadding);
    }
    let protocol = match next_header {
        NEXT_HEADER_IPV4 => InnerProtocol::Ipv4,
        NEXT_HEADER_IPV6 => InnerProtocol::Ipv6,
        NEXT_HEADER_NONE => return Err(DecapError::Dummy),
        other => return Err(DecapError::BadNextHeader(other)),
    };
    Ok((HEADER_LEN..HEADER_LEN + inner_len, protocol))
}

/// [`open_payload`] then [`parse_trailer`]: the stateless receive half.
pub fn open(
    key: &AeadKey,
    seq: u64,
    esn: bool,
    packet: &mut [u8],
) -> Result<(Range<usize>, InnerProtocol), DecapError> {
    let len = open_payload(key, seq, esn, packet)?;
    parse_trailer(&packet[HEADER_LEN..HEADER_LEN + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(payload_len(0), 4);
        assert_eq!(payload_len(2), 4);
        assert_eq!(payload_len(3), 8);
        assert_eq!(payload_len(1400), 1404);
        assert_eq!(payload_len(1401), 1404);
        assert_eq!(encapsulated_len(1400), 16 + 1404 + 16);
        assert!(encapsulated_len(1401) - 1401 - HEADER_LEN <= MAX_TRAILER_LEN);
        assert_eq!(peek_spi(&[0, 0, 1, 0, 9]), Some(256));
        assert_eq!(peek_spi(&[0, 0, 1]), None);
    }

    #[test]
    fn view_fields() {
        let mut buf = [0u8; MIN_PACKET_LEN + 2];
        let mut p = EspPacket::new_checked(&mut buf[..]).unwrap();
        p.set_header(0x0102_0304, 7, [9; 8]);
        let (payload, icv) = p.payload_and_icv_mut();
        assert_eq!((payload.len(), icv.len()), (4, ICV_LEN));
        payload.fill(0xaa);
        icv.fill(0xbb);
        let p = EspPacket::new_checked(&buf[..]).unwrap();
        assert_eq!((p.spi(), p.seq_low(), p.iv()), (0x0102_0304, 7, [9; 8]));
        assert_eq!(
            (p.payload(), p.icv()),
            (&[0xaa; 4][..], &[0xbb; ICV_LEN][..])
        );
        assert_eq!(parse_header(&buf), Ok((0x0102_0304, 7)));
        assert_eq!(
            EspPacket::new_checked(&buf[..MIN_PACKET_LEN - 1]).unwrap_err(),
            DecapError::Truncated {
                len: MIN_PACKET_LEN - 1
            }
        );
    }

    #[test]
    fn trailer_checks() {
        assert_eq!(
            parse_trailer(&[0x45, 0, 4]),
            Ok((16..17, InnerProtocol::Ipv4))
        );
        assert_eq!(
            parse_trailer(&[0x60, 1, 2, 2, 41]),
            Ok((16..17, InnerProtocol::Ipv6))
        );
        assert_eq!(
            parse_trailer(&[0x60, 1, 3, 2, 41]),
            Err(DecapError::BadPadding)
        );
        assert_eq!(parse_trailer(&[1, 2, 3, 4]), Err(DecapError::BadPadding));
        assert_eq!(parse_trailer(&[0, 4]), Ok((16..16, InnerProtocol::Ipv4)));
        assert_eq!(parse_trailer(&[0, 59]), Err(DecapError::Dummy));
        assert_eq!(parse_trailer(&[0, 17]), Err(DecapError::BadNextHeader(17)));
        assert_eq!(parse_trailer(&[4]), Err(DecapError::BadPadding));
    }
}
