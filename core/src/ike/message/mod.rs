//! IKEv2 messages (RFC 7296 §3): the header, the payload chain, and the SK
//! payload's sealing and opening.
//!
//! Two levels, after smoltcp: [`HeaderPacket`] is a zero-copy view for routing a
//! datagram by SPI and Message ID; [`Message`] and the payload values are owned
//! representations with `parse`, `emit` (into a caller's `Vec<u8>`) and
//! `buffer_len`. Parsing never panics; every refusal is an [`Error`] that names
//! the reason and the notification it calls for.
//!
//! Building an IKE_SA_INIT request:
//!
//! ```
//! use oemesh_core::ike::message::*;
//!
//! let header = Header::new(0x1122334455667788, 0, ExchangeType::IKE_SA_INIT, Flags::INITIATOR, 0);
//! let sa = Sa {
//!     proposals: vec![Proposal {
//!         number: 1,
//!         protocol: ProtocolId::IKE,
//!         spi: vec![],
//!         transforms: vec![
//!             Transform::encr(EncrId::CHACHA20_POLY1305, None),
//!             Transform::prf(PrfId::HMAC_SHA2_256),
//!             Transform::dh(DhGroup::CURVE25519),
//!         ],
//!     }],
//! };
//! let message = Message::new(header, vec![
//!     Payload::Sa(sa),
//!     Payload::Ke(Ke { group: DhGroup::CURVE25519, data: vec![9; 32] }),
//!     Payload::Nonce(Nonce(vec![7; 32])),
//!     Payload::Notify(Notify::signature_hash_algorithms(&[HashAlgorithm::IDENTITY])),
//! ]);
//! let mut datagram = Vec::new();
//! message.emit(&mut datagram);
//! assert_eq!(Message::parse(&datagram).unwrap(), message);
//! ```

mod budget;
pub mod enums;
mod error;
mod header;
pub mod payload;
mod reader;
mod sk;

pub use budget::{PARSE_ALLOC_PER_BYTE, PARSE_ALLOC_SLACK, parse_allocation_bound};
pub use enums::*;
pub use error::Error;
pub use header::{Flags, HEADER_LEN, Header, HeaderPacket, MAJOR_VERSION};
pub use payload::{
    AddrRange, AddrSelector, AddressRequest, Attribute, Auth, CfgAttribute, Cp, CpError, Delete,
    ED25519_ALGORITHM_IDENTIFIER, Identity, Ke, MAX_PAYLOADS, Nonce, Notify, Payload, Proposal, Sa,
    Sk, Skf, TrafficSelector, Transform, Ts, Unknown, VendorId,
};
pub use sk::{CryptoError, SkCipher};

use budget::Budget;
use payload::{GENERIC_HEADER_LEN, chain_len, emit_chain, first_type, parse_chain_in};

/// An IKE message: the header and the payloads in order.
///
/// A message parsed with [`Message::parse`] keeps an SK payload sealed as
/// [`Payload::Sk`]; [`Message::parse_protected`] returns the payloads inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header; Next Payload and Length are derived from `payloads` on emit.
    pub header: Header,
    /// The payloads, in wire order.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// A message from its parts.
    pub fn new(header: Header, payloads: Vec<Payload>) -> Self {
        Self { header, payloads }
    }

    /// Parses one whole IKE message (without the UDP 4500 non-ESP marker).
    ///
    /// However the bytes are made, this holds at most
    /// [`parse_allocation_bound`]`(bytes.len())` bytes of heap at once, and
    /// at most [`MAX_PAYLOADS`] payloads: a message that would need more is
    /// refused ([`Error::is_resource_limit`]) before the memory is taken.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse_in(bytes, &mut Budget::for_input(bytes.len()))
    }

    fn parse_in(bytes: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let packet = HeaderPacket::new_checked(bytes)?;
        let header = Header::parse(&packet)?;
        let payloads = parse_chain_in(packet.next_payload(), packet.payload(), Vec::new(), budget)?;
        Ok(Self { header, payloads })
    }

    /// Size of the emitted message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + chain_len(&self.payloads)
    }

    /// Appends the message to `out`, writing Next Payload and Length fields.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        self.header
            .emit(first_type(&self.payloads), self.buffer_len() as u32, out);
        emit_chain(&self.payloads, out);
    }

    /// The first payload of a type.
    pub fn payload(&self, ty: PayloadType) -> Option<&Payload> {
        self.payloads.iter().find(|p| p.payload_type() == ty)
    }

    /// The Notify payloads, in order.
    pub fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.payloads.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// The first Notify payload of a type.
    pub fn notify(&self, ty: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.ty == ty)
    }

    /// Appends a message whose payloads are `inner`, all inside one SK payload
    /// sealed by `cipher` with explicit IV `iv` (RFC 7296 §3.14, RFC 5282 §5.1).
    ///
    /// Padding is the fewest zero bytes that fill the cipher's block size. The
    /// header and SK lengths are final before sealing, since both are in the AAD.
    /// Bytes already in `out` (e.g. the UDP 4500 non-ESP marker) stay in front and
    /// are not authenticated. On error `out` is left as it was.
    pub fn emit_protected<C: SkCipher + ?Sized>(
        header: &Header,
        inner: &[Payload],
        cipher: &C,
        iv: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if iv.len() != cipher.iv_len() {
            return Err(Error::IvLength {
                got: iv.len(),
                expected: cipher.iv_len(),
            });
        }
        let block = cipher.block_size().max(1);
        let inner_len = chain_len(inner);
        let pad = (block - (inner_len + 1) % block) % block;
        let plaintext_len = inner_len + pad + 1;
        let sk_len = GENERIC_HEADER_LEN + iv.len() + plaintext_len + cipher.icv_len();
        let total = HEADER_LEN + sk_len;

        let start = out.len();
        out.reserve(total);
        header.emit(PayloadType::SK, total as u32, out);
        out.push(first_type(inner).0);
        out.push(0);
        out.extend_from_slice(&(sk_len as u16).to_be_bytes());

        let mut buf = Vec::with_capacity(plaintext_len + cipher.icv_len());
        emit_chain(inner, &mut buf);
        buf.resize(inner_len + pad, 0);
        buf.push(pad as u8);
        let sealed = cipher.seal(iv, &out[start..], &mut buf);
        if let Err(e) = sealed {
            out.truncate(start);
            return Err(e.into());
        }
        if buf.len() != plaintext_len + cipher.icv_len() {
            out.truncate(start);
            return Err(CryptoError::InvalidLength.into());
        }
        out.extend_from_slice(iv);
        out.extend_from_slice(&buf);
        Ok(())
    }

    /// Parses a message whose last payload is SK, verifies and decrypts it with
    /// `cipher`, and returns the header with the payloads in the clear: any
    /// payloads before SK, then the ones inside it.
    ///
    /// An ICV failure is [`Error::Crypto`], whose [`Error::notify_type`] is `None`:
    /// such a message is dropped without an answer (RFC 7296 §2.21.2).
    ///
    /// The payloads outside and inside SK share one allocation budget
    /// ([`parse_allocation_bound`] of `bytes`) and one [`MAX_PAYLOADS`]; the
    /// SK body is decrypted where it was copied, not copied again.
    pub fn parse_protected<C: SkCipher + ?Sized>(bytes: &[u8], cipher: &C) -> Result<Self, Error> {
        let mut budget = Budget::for_input(bytes.len());
        let Message {
            header,
            mut payloads,
        } = Self::parse_in(bytes, &mut budget)?;
        let sk = match payloads.pop() {
            Some(Payload::Sk(sk)) => sk,
            _ => return Err(Error::NotProtected),
        };
        let (iv_len, icv_len) = (cipher.iv_len(), cipher.icv_len());
        let need = iv_len + icv_len + 1;
        if sk.body.len() < need {
            return Err(Error::SkTooShort {
                length: sk.body.len(),
                need,
            });
        }
        // SK is last and the chain fills the message: its generic header ends
        // where its body starts, and the body is the tail of `bytes`.
        let aad_len = bytes.len() - sk.body.len();
        let (aad, body) = bytes.split_at(aad_len);
        let iv = &body[..iv_len];
        let mut buf = sk.body;
        buf.drain(..iv_len);
        cipher.open(iv, aad, &mut buf)?;
        let Some((&pad, rest)) = buf.split_last() else {
            return Err(Error::PadLength {
                pad: 0,
                available: 0,
            });
        };
        if pad as usize > rest.len() {
            return Err(Error::PadLength {
                pad,
                available: rest.len(),
            });
        }
        let inner = &rest[..rest.len() - pad as usize];
        let payloads = parse_chain_in(sk.first_inner, inner, payloads, &mut budget)?;
        if payloads
            .iter()
            .any(|p| matches!(p, Payload::Sk(_) | Payload::Skf(_)))
        {
            return Err(Error::NestedSk);
        }
        Ok(Self { header, payloads })
    }
}
