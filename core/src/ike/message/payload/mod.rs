//! IKEv2 payloads (RFC 7296 §3.2–§3.14) and the payload chain.
//!
//! Every payload starts with the generic payload header:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Each payload type is one file with an owned value type that has `parse` (the
//! body after the generic header), `emit` (appends the body to a `Vec<u8>`) and
//! `buffer_len` (the body's size). [`Payload`] ties them together; the chain
//! functions write Next Payload and Payload Length, so values never carry them.

mod auth;
mod cp;
mod delete;
mod id;
mod ke;
mod nonce;
mod notify;
mod sa;
mod sk;
mod ts;
mod unknown;
mod vendor;

pub use auth::{Auth, ED25519_ALGORITHM_IDENTIFIER};
pub use cp::{AddressRequest, CfgAttribute, Cp, CpError, MAX_CP_ATTRIBUTES};
pub use delete::Delete;
pub use id::Identity;
pub use ke::Ke;
pub use nonce::Nonce;
pub use notify::Notify;
pub use sa::{Attribute, Proposal, Sa, Transform};
pub use sk::{Sk, Skf};
pub use ts::{AddrRange, AddrSelector, TrafficSelector, Ts};
pub use unknown::Unknown;
pub use vendor::VendorId;

pub use sa::{MAX_ATTRIBUTES, MAX_PROPOSALS};

use super::Error;
use super::budget::Budget;
use super::enums::PayloadType;
use super::reader::{Reader, put_u16};

/// Size of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;

/// The most payloads one message may carry, those inside its SK payload
/// included. A real IKE_AUTH request has about ten (IDi, AUTH, SA, TSi, TSr
/// and a few notifications); strongSwan refuses a message with more than 20
/// Notify, 20 Delete, 20 Vendor ID or 8 CERT payloads (`message.c`). Each
/// payload is a [`Payload`] value of 56 bytes however few bytes it came in,
/// so without a cap a datagram of empty payloads is a list 14 times its size.
pub const MAX_PAYLOADS: usize = 64;

// The allocation budget charges each payload the size of its value, so a
// larger `Payload` makes every message cost more: 56 bytes, Notify's two
// vectors and its types (issue 11 measured it; keep it from growing).
const _: () = assert!(std::mem::size_of::<Payload>() <= 56);

/// The critical bit of the generic payload header (RFC 7296 §2.5, §3.2).
const CRITICAL: u8 = 0x80;

/// One payload of a message, as an owned value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {
    /// Security Association (§3.3).
    Sa(Sa),
    /// Key Exchange (§3.4).
    Ke(Ke),
    /// Identification - Initiator (§3.5).
    IdI(Identity),
    /// Identification - Responder (§3.5).
    IdR(Identity),
    /// Authentication (§3.8).
    Auth(Auth),
    /// Nonce (§3.9).
    Nonce(Nonce),
    /// Notify (§3.10).
    Notify(Notify),
    /// Delete (§3.11).
    Delete(Delete),
    /// Vendor ID (§3.12).
    Vendor(VendorId),
    /// Traffic Selector - Initiator (§3.13).
    TsI(Ts),
    /// Traffic Selector - Responder (§3.13).
    TsR(Ts),
    /// Configuration (§3.15).
    Cp(Cp),
    /// Encrypted and Authenticated, still sealed (§3.14). Always the last payload.
    Sk(Sk),
    /// Encrypted and Authenticated Fragment, still sealed (RFC 7383 §2.5). Always the last payload.
    Skf(Skf),
    /// A payload type this code does not interpret (CERT, CERTREQ, EAP and
    /// unassigned ones), kept so that it round-trips.
    Unknown(Unknown),
}

impl Payload {
    /// The type written in the previous Next Payload field.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::Vendor(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Cp(_) => PayloadType::CP,
            Payload::Sk(_) => PayloadType::SK,
            Payload::Skf(_) => PayloadType::SKF,
            Payload::Unknown(u) => u.ty,
        }
    }

    /// Whether [`Payload::parse`] interprets this type (other types become [`Payload::Unknown`]).
    pub fn is_interpreted(ty: PayloadType) -> bool {
        matches!(
            ty,
            PayloadType::SA
                | PayloadType::KE
                | PayloadType::IDI
                | PayloadType::IDR
                | PayloadType::AUTH
                | PayloadType::NONCE
                | PayloadType::NOTIFY
                | PayloadType::DELETE
                | PayloadType::VENDOR_ID
                | PayloadType::TSI
                | PayloadType::TSR
                | PayloadType::CP
                | PayloadType::SK
                | PayloadType::SKF
        )
    }

    /// Parses a body of type `ty`. `next` is the header's Next Payload field, which
    /// SK and SKF keep as their first inner payload type. An uninterpreted type
    /// with `critical` set is [`Error::UnsupportedCriticalPayload`] (§2.5); on
    /// interpreted types the bit is ignored, as §3.2 requires.
    pub fn parse(
        ty: PayloadType,
        next: PayloadType,
        critical: bool,
        body: &[u8],
    ) -> Result<Self, Error> {
        Self::parse_in(ty, next, critical, body, &mut Budget::for_input(body.len()))
    }

    /// [`Payload::parse`], charging what it allocates to `budget`.
    pub(crate) fn parse_in(
        ty: PayloadType,
        next: PayloadType,
        critical: bool,
        body: &[u8],
        budget: &mut Budget,
    ) -> Result<Self, Error> {
        Ok(match ty {
            PayloadType::SA => Payload::Sa(Sa::parse_in(body, budget)?),
            PayloadType::KE => Payload::Ke(Ke::parse_in(body, budget)?),
            PayloadType::IDI => Payload::IdI(Identity::parse_in(body, budget)?),
            PayloadType::IDR => Payload::IdR(Identity::parse_in(body, budget)?),
            PayloadType::AUTH => Payload::Auth(Auth::parse_in(body, budget)?),
            PayloadType::NONCE => Payload::Nonce(Nonce(budget.copy(body)?)),
            PayloadType::NOTIFY => Payload::Notify(Notify::parse_in(body, budget)?),
            PayloadType::DELETE => Payload::Delete(Delete::parse_in(body, budget)?),
            PayloadType::VENDOR_ID => Payload::Vendor(VendorId(budget.copy(body)?)),
            PayloadType::TSI => Payload::TsI(Ts::parse_in(body, budget)?),
            PayloadType::TSR => Payload::TsR(Ts::parse_in(body, budget)?),
            PayloadType::CP => Payload::Cp(Cp::parse_in(body, budget)?),
            PayloadType::SK => Payload::Sk(Sk {
                first_inner: next,
                body: budget.copy(body)?,
            }),
            PayloadType::SKF => Payload::Skf(Skf::parse_in(next, body, budget)?),
            _ if critical => return Err(Error::UnsupportedCriticalPayload(ty)),
            _ => Payload::Unknown(Unknown {
                ty,
                critical: false,
                body: budget.copy(body)?,
            }),
        })
    }

    /// Size of the body, without the generic header.
    pub fn body_len(&self) -> usize {
        match self {
            Payload::Sa(p) => p.buffer_len(),
            Payload::Ke(p) => p.buffer_len(),
            Payload::IdI(p) | Payload::IdR(p) => p.buffer_len(),
            Payload::Auth(p) => p.buffer_len(),
            Payload::Nonce(p) => p.buffer_len(),
            Payload::Notify(p) => p.buffer_len(),
            Payload::Delete(p) => p.buffer_len(),
            Payload::Vendor(p) => p.buffer_len(),
            Payload::TsI(p) | Payload::TsR(p) => p.buffer_len(),
            Payload::Cp(p) => p.buffer_len(),
            Payload::Sk(p) => p.buffer_len(),
            Payload::Skf(p) => p.buffer_len(),
            Payload::Unknown(p) => p.body.len(),
        }
    }

    /// Size of the payload, generic header included.
    pub fn buffer_len(&self) -> usize {
        GENERIC_HEADER_LEN + self.body_len()
    }

    /// Appends the body, without the generic header.
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(p) => p.emit(out),
            Payload::Ke(p) => p.emit(out),
            Payload::IdI(p) | Payload::IdR(p) => p.emit(out),
            Payload::Auth(p) => p.emit(out),
            Payload::Nonce(p) => p.emit(out),
            Payload::Notify(p) => p.emit(out),
            Payload::Delete(p) => p.emit(out),
            Payload::Vendor(p) => p.emit(out),
            Payload::TsI(p) | Payload::TsR(p) => p.emit(out),
            Payload::Cp(p) => p.emit(out),
            Payload::Sk(p) => p.emit(out),
            Payload::Skf(p) => p.emit(out),
            Payload::Unknown(p) => out.extend_from_slice(&p.body),
        }
    }

    /// Appends the generic header and the body. `next` is the type of the payload
    /// that follows ([`PayloadType::NONE`] at the end); SK and SKF write their
    /// first inner payload type instead, as §3.14 requires.
    pub fn emit(&self, next: PayloadType, out: &mut Vec<u8>) {
        let (next, flags) = match self {
            Payload::Sk(sk) => (sk.first_inner, 0),
            Payload::Skf(skf) => (skf.first_inner, 0),
            Payload::Unknown(u) if u.critical => (next, CRITICAL),
            _ => (next, 0),
        };
        out.push(next.0);
        out.push(flags);
        put_u16(out, self.buffer_len());
        self.emit_body(out);
    }
}

/// Size of a payload chain.
pub fn chain_len(payloads: &[Payload]) -> usize {
    payloads.iter().map(Payload::buffer_len).sum()
}

/// The type of the first payload of a chain ([`PayloadType::NONE`] for an empty one).
pub fn first_type(payloads: &[Payload]) -> PayloadType {
    payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type)
}

/// Appends a payload chain, linking each Next Payload to the following payload.
pub fn emit_chain(payloads: &[Payload], out: &mut Vec<u8>) {
    for (i, payload) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or(PayloadType::NONE, Payload::payload_type);
        payload.emit(next, out);
    }
}

/// Parses the chain in `bytes` whose first payload has type `first`. The chain
/// must fill `bytes` exactly; an SK or SKF payload must be the last one. At
/// most [`MAX_PAYLOADS`] payloads, within [`super::parse_allocation_bound`]
/// of `bytes`.
pub fn parse_chain(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, Error> {
    parse_chain_in(
        first,
        bytes,
        Vec::new(),
        &mut Budget::for_input(bytes.len()),
    )
}

/// Parses a chain as [`parse_chain`] does, after the payloads in `before`
/// (which count toward [`MAX_PAYLOADS`]), into one vector of exactly the
/// payloads' number, charged to `budget`.
pub(crate) fn parse_chain_in(
    first: PayloadType,
    bytes: &[u8],
    before: Vec<Payload>,
    budget: &mut Budget,
) -> Result<Vec<Payload>, Error> {
    let count = before.len().saturating_add(count_chain(first, bytes)?);
    if count > MAX_PAYLOADS {
        return Err(Error::TooManyPayloads {
            limit: MAX_PAYLOADS,
        });
    }
    let mut payloads = if before.capacity() >= count {
        before
    } else {
        let mut all = budget.vec(count)?;
        all.extend(before);
        all
    };
    let mut reader = Reader::new(bytes, "generic payload header");
    let mut ty = first;
    while ty != PayloadType::NONE {
        let (next, critical, body) = chain_step(&mut reader, ty)?;
        payloads.push(Payload::parse_in(ty, next, critical, body, budget)?);
        if matches!(ty, PayloadType::SK | PayloadType::SKF) {
            // The Next Payload of SK/SKF names its first inner payload (§3.14),
            // and count_chain has seen that nothing follows.
            return Ok(payloads);
        }
        ty = next;
    }
    Ok(payloads)
}

/// Reads one generic payload header and the body it announces: (Next
/// Payload, critical bit, body).
fn chain_step<'a>(
    reader: &mut Reader<'a>,
    ty: PayloadType,
) -> Result<(PayloadType, bool, &'a [u8]), Error> {
    let available = reader.remaining();
    let next = PayloadType(reader.u8()?);
    let critical = reader.u8()? & CRITICAL != 0;
    let length = reader.u16()?;
    if (length as usize) < GENERIC_HEADER_LEN || length as usize > available {
        return Err(Error::PayloadLength {
            payload: ty,
            length,
            available,
        });
    }
    let body = reader.take(length as usize - GENERIC_HEADER_LEN)?;
    Ok((next, critical, body))
}

/// Walks the generic headers of a chain without looking into the bodies and
/// returns how many payloads it holds, so that the list of them is allocated
/// once, at its size, and only when there are few enough of them. Stops at
/// [`MAX_PAYLOADS`] + 1: more is refused anyway.
fn count_chain(first: PayloadType, bytes: &[u8]) -> Result<usize, Error> {
    let mut reader = Reader::new(bytes, "generic payload header");
    let mut ty = first;
    let mut count = 0;
    while ty != PayloadType::NONE {
        if count > MAX_PAYLOADS {
            return Ok(count);
        }
        let (next, _, _) = chain_step(&mut reader, ty)?;
        count += 1;
        if matches!(ty, PayloadType::SK | PayloadType::SKF) {
            if !reader.is_empty() {
                return Err(Error::SkNotLast);
            }
            return Ok(count);
        }
        ty = next;
    }
    if !reader.is_empty() {
        return Err(Error::TrailingBytes {
            count: reader.remaining(),
        });
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::message::enums::NotifyType;

    #[test]
    fn unknown_non_critical_is_kept_and_critical_refused() {
        // Vendor-ish unknown type 200 (non-critical), then a Nonce.
        let bytes = [40, 0x00, 0, 6, 0xaa, 0xbb, 0, 0, 0, 5, 0x01];
        let chain = parse_chain(PayloadType(200), &bytes).unwrap();
        assert_eq!(
            chain,
            vec![
                Payload::Unknown(Unknown {
                    ty: PayloadType(200),
                    critical: false,
                    body: vec![0xaa, 0xbb]
                }),
                Payload::Nonce(Nonce(vec![0x01])),
            ]
        );
        let mut out = Vec::new();
        emit_chain(&chain, &mut out);
        // Next Payload of the first is NONCE (40), of the last NONE.
        assert_eq!(out, [40, 0, 0, 6, 0xaa, 0xbb, 0, 0, 0, 5, 0x01]);

        let critical = [0, 0x80, 0, 4];
        let err = parse_chain(PayloadType(200), &critical).unwrap_err();
        assert_eq!(err, Error::UnsupportedCriticalPayload(PayloadType(200)));
        let notify = err.to_notify().unwrap();
        assert_eq!(notify.ty, NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD);
        assert_eq!(notify.data, [200]);
    }

    #[test]
    fn critical_bit_on_known_payload_is_ignored() {
        let bytes = [0, 0x80, 0, 5, 0x42];
        assert_eq!(
            parse_chain(PayloadType::NONCE, &bytes).unwrap(),
            vec![Payload::Nonce(Nonce(vec![0x42]))]
        );
    }

    #[test]
    fn payload_count_is_capped() {
        // MAX_PAYLOADS empty Vendor IDs parse; one more is refused before
        // anything is allocated for them.
        let chain = |n: usize| {
            let mut bytes = Vec::new();
            for i in 0..n {
                let next = if i + 1 == n { 0 } else { 43 };
                bytes.extend_from_slice(&[next, 0, 0, 4]);
            }
            bytes
        };
        let ok = chain(MAX_PAYLOADS);
        let mut budget = Budget::for_input(10_000);
        let parsed = parse_chain_in(PayloadType::VENDOR_ID, &ok, Vec::new(), &mut budget).unwrap();
        assert_eq!(parsed.len(), MAX_PAYLOADS);
        assert_eq!(parsed.capacity(), MAX_PAYLOADS);
        let err = parse_chain(PayloadType::VENDOR_ID, &chain(MAX_PAYLOADS + 1)).unwrap_err();
        assert_eq!(
            err,
            Error::TooManyPayloads {
                limit: MAX_PAYLOADS
            }
        );
        assert!(err.is_resource_limit());
        assert_eq!(err.notify_type(), Some(NotifyType::INVALID_SYNTAX));
        // Payloads already parsed (outside SK) count too.
        let before = vec![Payload::Vendor(VendorId(vec![])); 2];
        assert!(matches!(
            parse_chain_in(
                PayloadType::VENDOR_ID,
                &chain(MAX_PAYLOADS - 1),
                before,
                &mut budget
            ),
            Err(Error::TooManyPayloads { .. })
        ));
        // 64 empty payloads in 256 bytes are a 3.5 KiB list: within a
        // message's budget (4 × 256 + 4 KiB), which the cap keeps so; a
        // smaller budget refuses it before allocating.
        assert_eq!(
            parse_chain(PayloadType::VENDOR_ID, &ok).unwrap().len(),
            MAX_PAYLOADS
        );
        assert!(matches!(
            parse_chain_in(
                PayloadType::VENDOR_ID,
                &ok,
                Vec::new(),
                &mut Budget::with_limit(3000)
            ),
            Err(Error::AllocationLimit { limit: 3000 })
        ));
    }

    #[test]
    fn chain_errors() {
        assert!(matches!(
            parse_chain(PayloadType::NONCE, &[0, 0, 0, 3]),
            Err(Error::PayloadLength { .. })
        ));
        assert!(matches!(
            parse_chain(PayloadType::NONCE, &[0, 0, 0, 9]),
            Err(Error::PayloadLength { .. })
        ));
        assert!(matches!(
            parse_chain(PayloadType::NONCE, &[0, 0, 0, 4, 1]),
            Err(Error::TrailingBytes { count: 1 })
        ));
        assert!(matches!(
            parse_chain(PayloadType::NONCE, &[40, 0, 0, 4]),
            Err(Error::Truncated { .. })
        ));
        assert_eq!(
            parse_chain(PayloadType::SK, &[0, 0, 0, 4, 0, 0, 0, 4]).unwrap_err(),
            Error::SkNotLast
        );
    }
}
