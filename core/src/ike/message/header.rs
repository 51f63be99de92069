//! The IKE header (RFC 7296 §3.1): a zero-copy view for demultiplexing a datagram
//! before parsing it, and the owned [`Header`] the rest of the code builds with.
//!
//! ```text
//!                      1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;

use super::Error;
use super::enums::{ExchangeType, PayloadType};

/// Size of the IKE header in bytes.
pub const HEADER_LEN: usize = 28;

/// The major version this code speaks (RFC 7296 §3.1).
pub const MAJOR_VERSION: u8 = 2;

mod field {
    use std::ops::Range;
    pub(super) const SPI_I: Range<usize> = 0..8;
    pub(super) const SPI_R: Range<usize> = 8..16;
    pub(super) const NEXT_PAYLOAD: usize = 16;
    pub(super) const VERSION: usize = 17;
    pub(super) const EXCHANGE_TYPE: usize = 18;
    pub(super) const FLAGS: usize = 19;
    pub(super) const MESSAGE_ID: Range<usize> = 20..24;
    pub(super) const LENGTH: Range<usize> = 24..28;
}

/// A read (and, over a mutable buffer, write) view of an IKE message's header.
///
/// Use it to route a datagram by SPI, Message ID and flags without parsing its
/// payloads; [`super::Message::parse`] does the full parse.
#[derive(Debug, Clone)]
pub struct HeaderPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeaderPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic if it is shorter
    /// than [`HEADER_LEN`]. Call [`HeaderPacket::check_len`] before reading.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer holding one whole IKE message: at least [`HEADER_LEN`]
    /// bytes, and exactly as many as the Length field says.
    ///
    /// The version is not checked here, so that a responder can still read the
    /// SPIs to answer INVALID_MAJOR_VERSION; [`Header::parse`] checks it.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the buffer against the header size and the Length field.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                what: "IKE header",
                need: HEADER_LEN,
                have: len,
            });
        }
        if self.length() as usize != len {
            return Err(Error::LengthMismatch {
                header: self.length(),
                datagram: len,
            });
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u64_at(&self, range: std::ops::Range<usize>) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buffer.as_ref()[range]);
        u64::from_be_bytes(b)
    }

    fn u32_at(&self, range: std::ops::Range<usize>) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.buffer.as_ref()[range]);
        u32::from_be_bytes(b)
    }

    /// IKE SA Initiator's SPI.
    pub fn spi_i(&self) -> u64 {
        self.u64_at(field::SPI_I)
    }

    /// IKE SA Responder's SPI (zero in the first IKE_SA_INIT request).
    pub fn spi_r(&self) -> u64 {
        self.u64_at(field::SPI_R)
    }

    /// Type of the first payload.
    pub fn next_payload(&self) -> PayloadType {
        PayloadType(self.buffer.as_ref()[field::NEXT_PAYLOAD])
    }

    /// Major version (high nibble of the version octet).
    pub fn major_version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] >> 4
    }

    /// Minor version (low nibble of the version octet).
    pub fn minor_version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] & 0x0f
    }

    /// Exchange Type.
    pub fn exchange_type(&self) -> ExchangeType {
        ExchangeType(self.buffer.as_ref()[field::EXCHANGE_TYPE])
    }

    /// Flags octet.
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Message ID.
    pub fn message_id(&self) -> u32 {
        self.u32_at(field::MESSAGE_ID)
    }

    /// Length of the whole message, header included.
    pub fn length(&self) -> u32 {
        self.u32_at(field::LENGTH)
    }

    /// The bytes after the header: the payload chain.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> HeaderPacket<T> {
    /// Sets the IKE SA Responder's SPI.
    pub fn set_spi_r(&mut self, spi: u64) {
        self.buffer.as_mut()[field::SPI_R].copy_from_slice(&spi.to_be_bytes());
    }

    /// Sets the Message ID.
    pub fn set_message_id(&mut self, id: u32) {
        self.buffer.as_mut()[field::MESSAGE_ID].copy_from_slice(&id.to_be_bytes());
    }

    /// Sets the Length field.
    pub fn set_length(&mut self, length: u32) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&length.to_be_bytes());
    }
}

/// The Flags octet (RFC 7296 §3.1). Bits this code does not know are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// I: set by the original initiator of the IKE SA.
    pub const INITIATOR: Flags = Flags(0x08);
    /// V: the sender could speak a higher major version. Never set by this code.
    pub const VERSION: Flags = Flags(0x10);
    /// R: this message is a response.
    pub const RESPONSE: Flags = Flags(0x20);
    /// No flag set.
    pub const NONE: Flags = Flags(0);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The I bit.
    pub fn initiator(self) -> bool {
        self.contains(Self::INITIATOR)
    }

    /// The R bit.
    pub fn response(self) -> bool {
        self.contains(Self::RESPONSE)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// `Flags(I|R)`, with unknown bits in hex.
impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        for (flag, name) in [
            (Self::INITIATOR, "I"),
            (Self::VERSION, "V"),
            (Self::RESPONSE, "R"),
        ] {
            if self.contains(flag) {
                names.push(name.to_owned());
            }
        }
        let unknown = self.0 & !(Self::INITIATOR.0 | Self::VERSION.0 | Self::RESPONSE.0);
        if unknown != 0 {
            names.push(format!("{unknown:#04x}"));
        }
        write!(f, "Flags({})", names.join("|"))
    }
}

/// The IKE header as an owned value. Next Payload and Length are not stored: they
/// follow from the payloads and are written by [`super::Message::emit`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA Initiator's SPI.
    pub spi_i: u64,
    /// IKE SA Responder's SPI; zero in the first IKE_SA_INIT request.
    pub spi_r: u64,
    /// Exchange Type.
    pub exchange: ExchangeType,
    /// Flags (I, V, R).
    pub flags: Flags,
    /// Message ID (RFC 7296 §2.2).
    pub message_id: u32,
    /// Minor version: 0 when sending; a received one is kept and ignored (§2.5).
    pub minor_version: u8,
}

impl Header {
    /// A version 2.0 header.
    pub fn new(
        spi_i: u64,
        spi_r: u64,
        exchange: ExchangeType,
        flags: Flags,
        message_id: u32,
    ) -> Self {
        Self {
            spi_i,
            spi_r,
            exchange,
            flags,
            message_id,
            minor_version: 0,
        }
    }

    /// Reads the header from a checked view; refuses a major version other than 2.
    pub fn parse<T: AsRef<[u8]>>(packet: &HeaderPacket<T>) -> Result<Self, Error> {
        if packet.major_version() != MAJOR_VERSION {
            return Err(Error::InvalidMajorVersion(packet.major_version()));
        }
        Ok(Self {
            spi_i: packet.spi_i(),
            spi_r: packet.spi_r(),
            exchange: packet.exchange_type(),
            flags: packet.flags(),
            message_id: packet.message_id(),
            minor_version: packet.minor_version(),
        })
    }

    /// Appends the 28 header bytes with the given first payload type and total length.
    pub fn emit(&self, next_payload: PayloadType, length: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes(next_payload, length));
    }

    /// The 28 header bytes with the given first payload type and total length.
    pub fn to_bytes(&self, next_payload: PayloadType, length: u32) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[field::SPI_I].copy_from_slice(&self.spi_i.to_be_bytes());
        b[field::SPI_R].copy_from_slice(&self.spi_r.to_be_bytes());
        b[field::NEXT_PAYLOAD] = next_payload.0;
        b[field::VERSION] = (MAJOR_VERSION << 4) | (self.minor_version & 0x0f);
        b[field::EXCHANGE_TYPE] = self.exchange.0;
        b[field::FLAGS] = self.flags.0;
        b[field::MESSAGE_ID].copy_from_slice(&self.message_id.to_be_bytes());
        b[field::LENGTH].copy_from_slice(&length.to_be_bytes());
        b
    }
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Header");
        s.field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .field("exchange", &self.exchange)
            .field("flags", &self.flags)
            .field("message_id", &self.message_id);
        if self.minor_version != 0 {
            s.field("minor_version", &self.minor_version);
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BYTES: [u8; 28] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // SPIi
        0, 0, 0, 0, 0, 0, 0, 0, // SPIr
        33, 0x20, 34, 0x08, // SA, 2.0, IKE_SA_INIT, I
        0, 0, 0, 0, // message ID
        0, 0, 0, 28, // length
    ];

    #[test]
    fn view_reads_fields() {
        let p = HeaderPacket::new_checked(&BYTES[..]).unwrap();
        assert_eq!(p.spi_i(), 0x0102030405060708);
        assert_eq!(p.spi_r(), 0);
        assert_eq!(p.next_payload(), PayloadType::SA);
        assert_eq!((p.major_version(), p.minor_version()), (2, 0));
        assert_eq!(p.exchange_type(), ExchangeType::IKE_SA_INIT);
        assert!(p.flags().initiator() && !p.flags().response());
        assert_eq!(p.message_id(), 0);
        assert_eq!(p.length(), 28);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn repr_round_trips() {
        let p = HeaderPacket::new_checked(&BYTES[..]).unwrap();
        let h = Header::parse(&p).unwrap();
        let mut out = Vec::new();
        h.emit(PayloadType::SA, 28, &mut out);
        assert_eq!(out, BYTES);
    }

    #[test]
    fn checks() {
        assert!(matches!(
            HeaderPacket::new_checked(&BYTES[..27]),
            Err(Error::Truncated {
                need: 28,
                have: 27,
                ..
            })
        ));
        let mut long = BYTES.to_vec();
        long.push(0);
        assert_eq!(
            HeaderPacket::new_checked(&long[..]).unwrap_err(),
            Error::LengthMismatch {
                header: 28,
                datagram: 29
            }
        );
        let mut v3 = BYTES;
        v3[17] = 0x30;
        let p = HeaderPacket::new_checked(&v3[..]).unwrap();
        assert_eq!(
            Header::parse(&p).unwrap_err(),
            Error::InvalidMajorVersion(3)
        );
        assert_eq!(
            Header::parse(&p).unwrap_err().notify_type(),
            Some(crate::ike::message::NotifyType::INVALID_MAJOR_VERSION)
        );
    }

    #[test]
    fn mutate() {
        let mut buf = BYTES;
        let mut p = HeaderPacket::new_unchecked(&mut buf[..]);
        p.set_spi_r(7);
        p.set_message_id(9);
        assert_eq!(p.spi_r(), 7);
        assert_eq!(p.message_id(), 9);
        assert_eq!(
            format!("{:?}", Flags::INITIATOR | Flags::RESPONSE),
            "Flags(I|R)"
        );
    }
}
