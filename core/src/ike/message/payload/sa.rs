//! The Security Association payload (RFC 7296 §3.3): proposals, their
//! transforms, and transform attributes.
//!
//! ```text
//! Proposal Substructure (§3.3.1)
//! | Last Substruc |   RESERVED    |         Proposal Length       |
//! | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
//! |                        SPI (variable) ~                       |
//! |                        <Transforms> ~                         |
//!
//! Transform Substructure (§3.3.2)
//! | Last Substruc |   RESERVED    |        Transform Length       |
//! |Transform Type |   RESERVED    |          Transform ID         |
//! |                      Transform Attributes ~                   |
//!
//! Data Attributes (§3.3.5)
//! |A|       Attribute Type        |    AF=0  Attribute Length     |
//! |                               |    AF=1  Attribute Value      |
//! |                   AF=0  Attribute Value ~                     |
//! ```

use std::fmt;

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::{
    AttributeType, DhGroup, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType,
};
use crate::ike::message::reader::{Reader, put_u16};

/// Last Substruc values (§3.3.1, §3.3.2).
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
/// The Attribute Format bit: set for the TV (two-octet value) form.
const AF_TV: u16 = 0x8000;

/// The most proposals one SA payload may carry. Proposal Num is one octet,
/// and real offers have a handful (strongSwan sends one per configured
/// proposal); each is a 56-byte [`Proposal`] however few bytes it came in.
pub const MAX_PROPOSALS: usize = 64;

/// The most attributes one transform may carry. RFC 7296 defines one (Key
/// Length); each is a 32-byte [`Attribute`] for 4 bytes on the wire.
/// Transforms per proposal need no cap of their own: Num Transforms is one
/// octet, and the parser stops at the first transform beyond it.
pub const MAX_ATTRIBUTES: usize = 16;

/// Counts the substructures of `body` (each starts with Last Substruc,
/// reserved, a 16-bit length) up to `limit`, looking only at their lengths:
/// the vector of them is allocated once, at its size. A malformed list
/// counts what it can; parsing it then reports the error.
fn count_substructures(body: &[u8], what: &'static str, limit: usize) -> Result<usize, Error> {
    let mut r = Reader::new(body, what);
    let mut count = 0;
    while r.remaining() >= 4 {
        if count == limit {
            return Err(Error::TooManySubstructures { what, limit });
        }
        r.u16()?;
        let length = usize::from(r.u16()?);
        count += 1;
        if length < 4 || r.take(length - 4).is_err() {
            break;
        }
    }
    Ok(count)
}

/// Counts transform attributes (4 bytes in TV form, 4 + length in TLV form)
/// as [`count_substructures`] counts substructures.
fn count_attributes(body: &[u8]) -> Result<usize, Error> {
    let mut r = Reader::new(body, "transform attribute");
    let mut count = 0;
    while r.remaining() >= 4 {
        if count == MAX_ATTRIBUTES {
            return Err(Error::TooManySubstructures {
                what: "transform attribute",
                limit: MAX_ATTRIBUTES,
            });
        }
        let ty = r.u16()?;
        let value = usize::from(r.u16()?);
        count += 1;
        if ty & AF_TV == 0 && r.take(value).is_err() {
            break;
        }
    }
    Ok(count)
}

/// An SA payload: the proposals, in order of preference.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sa {
    /// The proposals; a response carries exactly one.
    pub proposals: Vec<Proposal>,
}

/// One proposal: a protocol with a set of transforms (one of each type chosen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Proposal Num: 1 for the first, then the same or one more (§3.3.1).
    pub number: u8,
    /// IKE, ESP or AH.
    pub protocol: ProtocolId,
    /// Empty in IKE_SA_INIT, 8 bytes when rekeying the IKE SA, the 4-byte inbound SPI for ESP.
    pub spi: Vec<u8>,
    /// The transforms, any order.
    pub transforms: Vec<Transform>,
}

/// One transform: a type, an ID in that type's number space, and attributes.
#[derive(Clone, PartialEq, Eq)]
pub struct Transform {
    /// Transform Type, which decides the number space of `id`.
    pub ty: TransformType,
    /// Transform ID; use the helper constructors to pick it from the typed spaces.
    pub id: u16,
    /// Transform attributes; Key Length is the only one RFC 7296 defines.
    pub attributes: Vec<Attribute>,
}

/// A transform attribute (§3.3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// AF=1: a two-octet value, e.g. Key Length.
    Tv {
        /// Attribute Type (15 bits)
        ty: AttributeType,
        /// Attribute Value
        value: u16,
    },
    /// AF=0: a variable-length value.
    Tlv {
        /// Attribute Type (15 bits)
        ty: AttributeType,
        /// Attribute Value
        value: Vec<u8>,
    },
}

impl Attribute {
    fn buffer_len(&self) -> usize {
        match self {
            Attribute::Tv { .. } => 4,
            Attribute::Tlv { value, .. } => 4 + value.len(),
        }
    }

    fn parse(r: &mut Reader<'_>, budget: &mut Budget) -> Result<Self, Error> {
        let ty_field = r.u16()?;
        let value = r.u16()?;
        let ty = AttributeType(ty_field & !AF_TV);
        if ty_field & AF_TV != 0 {
            return Ok(Attribute::Tv { ty, value });
        }
        let available = r.remaining();
        if value as usize > available {
            return Err(Error::SubstructureLength {
                what: "transform attribute",
                length: value as usize,
                min: 0,
                available,
            });
        }
        Ok(Attribute::Tlv {
            ty,
            value: budget.copy(r.take(value as usize)?)?,
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Attribute::Tv { ty, value } => {
                out.extend_from_slice(&(ty.0 | AF_TV).to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
            Attribute::Tlv { ty, value } => {
                out.extend_from_slice(&(ty.0 & !AF_TV).to_be_bytes());
                put_u16(out, value.len());
                out.extend_from_slice(value);
            }
        }
    }
}

impl Transform {
    /// A transform without attributes.
    pub fn new(ty: TransformType, id: u16) -> Self {
        Self {
            ty,
            id,
            attributes: Vec::new(),
        }
    }

    /// An encryption transform, with the Key Length attribute when `key_bits` is given
    /// (required for AES-GCM, absent for ChaCha20-Poly1305, RFC 7634 §4).
    pub fn encr(id: EncrId, key_bits: Option<u16>) -> Self {
        let attributes = key_bits
            .map(|bits| Attribute::Tv {
                ty: AttributeType::KEY_LENGTH,
                value: bits,
            })
            .into_iter()
            .collect();
        Self {
            ty: TransformType::ENCR,
            id: id.0,
            attributes,
        }
    }

    /// A PRF transform.
    pub fn prf(id: PrfId) -> Self {
        Self::new(TransformType::PRF, id.0)
    }

    /// An integrity transform.
    pub fn integ(id: IntegId) -> Self {
        Self::new(TransformType::INTEG, id.0)
    }

    /// A Diffie-Hellman group transform.
    pub fn dh(group: DhGroup) -> Self {
        Self::new(TransformType::DH, group.0)
    }

    /// An ESN transform.
    pub fn esn(id: EsnId) -> Self {
        Self::new(TransformType::ESN, id.0)
    }

    /// The Key Length attribute, in bits.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Tv {
                ty: AttributeType::KEY_LENGTH,
                value,
            } => Some(*value),
            _ => None,
        })
    }

    fn buffer_len(&self) -> usize {
        8 + self
            .attributes
            .iter()
            .map(Attribute::buffer_len)
            .sum::<usize>()
    }

    fn parse(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "transform");
        let ty = TransformType(r.u8()?);
        r.u8()?;
        let id = r.u16()?;
        let mut attributes = budget.vec(count_attributes(r.peek())?)?;
        while !r.is_empty() {
            if attributes.len() == MAX_ATTRIBUTES {
                return Err(Error::TooManySubstructures {
                    what: "transform attribute",
                    limit: MAX_ATTRIBUTES,
                });
            }
            attributes.push(Attribute::parse(&mut r, budget)?);
        }
        Ok(Self { ty, id, attributes })
    }

    fn emit(&self, last: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(&[if last { 0 } else { MORE_TRANSFORMS }, 0]);
        put_u16(out, self.buffer_len());
        out.extend_from_slice(&[self.ty.0, 0]);
        out.extend_from_slice(&self.id.to_be_bytes());
        for a in &self.attributes {
            a.emit(out);
        }
    }
}

/// Shows the ID in its type's number space: `Transform(ENCR AES_GCM_16, key 256)`.
impl fmt::Debug for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transform({:?} ", self.ty)?;
        match self.ty {
            TransformType::ENCR => write!(f, "{:?}", EncrId(self.id))?,
            TransformType::PRF => write!(f, "{:?}", PrfId(self.id))?,
            TransformType::INTEG => write!(f, "{:?}", IntegId(self.id))?,
            TransformType::DH => write!(f, "{:?}", DhGroup(self.id))?,
            TransformType::ESN => write!(f, "{:?}", EsnId(self.id))?,
            _ => write!(f, "{}", self.id)?,
        }
        for a in &self.attributes {
            match a {
                Attribute::Tv {
                    ty: AttributeType::KEY_LENGTH,
                    value,
                } => write!(f, ", key {value}")?,
                other => write!(f, ", {other:?}")?,
            }
        }
        f.write_str(")")
    }
}

/// Reads one substructure with a Last Substruc / Length header and returns its
/// body and whether it was the last one.
fn substructure<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    more: u8,
    min: usize,
) -> Result<(&'a [u8], bool), Error> {
    let available = r.remaining();
    let last_substruc = r.u8()?;
    r.u8()?;
    let length = r.u16()? as usize;
    if length < min || length > available {
        return Err(Error::SubstructureLength {
            what,
            length,
            min,
            available,
        });
    }
    let body = r.take(length - 4)?;
    let last = r.is_empty();
    let expected = if last { 0 } else { more };
    if last_substruc != expected {
        return Err(Error::LastSubstruc {
            what,
            value: last_substruc,
            expected,
        });
    }
    Ok((body, last))
}

impl Proposal {
    fn buffer_len(&self) -> usize {
        8 + self.spi.len()
            + self
                .transforms
                .iter()
                .map(Transform::buffer_len)
                .sum::<usize>()
    }

    fn parse(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "proposal");
        let number = r.u8()?;
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let announced = r.u8()?;
        let spi = budget.copy(r.take(spi_size as usize)?)?;
        // Num Transforms bounds the list; a transform takes at least 8 bytes.
        let room = usize::from(announced).min(r.remaining() / 8);
        let mut transforms = budget.vec(room)?;
        while !r.is_empty() {
            if transforms.len() == usize::from(announced) {
                return Err(Error::TransformCount {
                    announced,
                    found: transforms.len() + 1,
                });
            }
            let (body, _) = substructure(&mut r, "transform", MORE_TRANSFORMS, 8)?;
            transforms.push(Transform::parse(body, budget)?);
        }
        if transforms.len() != announced as usize {
            return Err(Error::TransformCount {
                announced,
                found: transforms.len(),
            });
        }
        Ok(Self {
            number,
            protocol,
            spi,
            transforms,
        })
    }

    fn emit(&self, last: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(&[if last { 0 } else { MORE_PROPOSALS }, 0]);
        put_u16(out, self.buffer_len());
        out.extend_from_slice(&[
            self.number,
            self.protocol.0,
            self.spi.len() as u8,
            self.transforms.len() as u8,
        ]);
        out.extend_from_slice(&self.spi);
        for (i, t) in self.transforms.iter().enumerate() {
            t.emit(i + 1 == self.transforms.len(), out);
        }
    }

    /// The transforms of one type, in order.
    pub fn transforms_of(&self, ty: TransformType) -> impl Iterator<Item = &Transform> {
        self.transforms.iter().filter(move |t| t.ty == ty)
    }
}

impl Sa {
    /// Parses the body: a sequence of at most [`MAX_PROPOSALS`] proposals.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "SA payload");
        let mut proposals = budget.vec(count_substructures(body, "proposal", MAX_PROPOSALS)?)?;
        while !r.is_empty() {
            let (body, _) = substructure(&mut r, "proposal", MORE_PROPOSALS, 8)?;
            proposals.push(Proposal::parse(body, budget)?);
        }
        Ok(Self { proposals })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        for (i, p) in self.proposals.iter().enumerate() {
            p.emit(i + 1 == self.proposals.len(), out);
        }
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        self.proposals.iter().map(Proposal::buffer_len).sum()
    }
}

#[cfg(test)]
mod tests;
