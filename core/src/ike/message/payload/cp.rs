//! The Configuration payload (RFC 7296 §3.15).
//!
//! ```text
//! |   CFG Type    |                    RESERVED                   |
//! |R|         Attribute Type      |            Length             |
//! |                             Value ~                           |
//! ```
//!
//! Here it carries one thing: the address a responder gives an initiator
//! behind a NAT (§3.15.1 INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS), the
//! client address translation of `docs/architecture.md`. The attributes are
//! kept as the bytes they came in (one allocation, however many there are)
//! and read through [`Cp::attributes`]: a list whose lengths do not add up
//! still parses as a payload, so that the responder can refuse it with a
//! notify and a reason instead of dropping the whole IKE_AUTH request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::{CfgAttributeType, CfgType};
use crate::ike::message::reader::Reader;

/// The most attributes read from one payload: strongSwan sends a handful (an
/// address or two, DNS servers, vendor ones); more is refused as malformed.
pub const MAX_CP_ATTRIBUTES: usize = 64;

/// A Configuration payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cp {
    /// CFG_REQUEST, CFG_REPLY, CFG_SET or CFG_ACK.
    pub cfg_type: CfgType,
    /// The attributes, back to back as on the wire.
    attributes: Vec<u8>,
}

/// One configuration attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CfgAttribute<'a> {
    /// Its type (the reserved R bit cleared).
    pub ty: CfgAttributeType,
    /// Its value (empty in a request for "any").
    pub value: &'a [u8],
}

/// Why the attributes of a CP payload cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpError {
    /// An attribute header or value runs past the end of the payload.
    #[error("CP attribute {index} runs past the end of the payload")]
    Truncated {
        /// Its position in the list, from 0.
        index: usize,
    },
    /// More than [`MAX_CP_ATTRIBUTES`] attributes.
    #[error("more than {MAX_CP_ATTRIBUTES} CP attributes")]
    TooMany,
    /// An address attribute of a length §3.15.1 does not allow.
    #[error("CP attribute {ty:?} has {len} bytes (expected {expected})")]
    BadLength {
        /// The attribute.
        ty: CfgAttributeType,
        /// Its length.
        len: usize,
        /// What §3.15.1 allows.
        expected: &'static str,
    },
}

/// The address families a CFG_REQUEST asks an address of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddressRequest {
    /// INTERNAL_IP4_ADDRESS was asked for.
    pub v4: bool,
    /// INTERNAL_IP6_ADDRESS was asked for.
    pub v6: bool,
}

impl AddressRequest {
    /// Whether it asks for an address of `addr`'s family.
    pub fn wants(self, addr: IpAddr) -> bool {
        if addr.is_ipv4() { self.v4 } else { self.v6 }
    }
}

impl Cp {
    /// An empty payload of `cfg_type`.
    pub fn new(cfg_type: CfgType) -> Self {
        Self {
            cfg_type,
            attributes: Vec::new(),
        }
    }

    /// A CFG_REQUEST for one address of the family of `like` (the value
    /// empty: "any", §3.15.1).
    pub fn address_request(like: IpAddr) -> Self {
        let mut cp = Self::new(CfgType::CFG_REQUEST);
        cp.push(address_type(like), &[]);
        cp
    }

    /// A CFG_REPLY giving `addr` (IPv6 with prefix length 128).
    pub fn address_reply(addr: IpAddr) -> Self {
        let mut cp = Self::new(CfgType::CFG_REPLY);
        match addr {
            IpAddr::V4(a) => cp.push(CfgAttributeType::INTERNAL_IP4_ADDRESS, &a.octets()),
            IpAddr::V6(a) => {
                let mut value = [128u8; 17];
                value[..16].copy_from_slice(&a.octets());
                cp.push(CfgAttributeType::INTERNAL_IP6_ADDRESS, &value);
            }
        }
        cp
    }

    /// Appends an attribute. A value longer than 65,535 bytes is cut there.
    pub fn push(&mut self, ty: CfgAttributeType, value: &[u8]) {
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        self.attributes
            .extend_from_slice(&(ty.0 & 0x7fff).to_be_bytes());
        self.attributes
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.attributes.extend_from_slice(value);
    }

    /// The attributes in order; an `Err` ends the list.
    pub fn attributes(&self) -> impl Iterator<Item = Result<CfgAttribute<'_>, CpError>> {
        let mut r = Reader::new(&self.attributes, "CP attribute");
        let mut index = 0;
        std::iter::from_fn(move || {
            if r.is_empty() || index > MAX_CP_ATTRIBUTES {
                return None;
            }
            if index == MAX_CP_ATTRIBUTES {
                index += 1;
                return Some(Err(CpError::TooMany));
            }
            let at = index;
            index += 1;
            let item = (|| {
                let ty = CfgAttributeType(r.u16()? & 0x7fff);
                let len = r.u16()?;
                let value = r.take(usize::from(len))?;
                Ok::<_, Error>(CfgAttribute { ty, value })
            })();
            match item {
                Ok(a) => Some(Ok(a)),
                Err(_) => {
                    index = MAX_CP_ATTRIBUTES + 1;
                    Some(Err(CpError::Truncated { index: at }))
                }
            }
        })
    }

    /// The address families a request asks for (§3.15.1: the value of an
    /// address attribute in a request is empty, or an address the requester
    /// would like, which the pool's choice overrides).
    pub fn requested(&self) -> Result<AddressRequest, CpError> {
        let mut req = AddressRequest::default();
        for a in self.attributes() {
            let a = a?;
            match a.ty {
                CfgAttributeType::INTERNAL_IP4_ADDRESS => {
                    check_len(a, &[0, 4], "0 or 4")?;
                    req.v4 = true;
                }
                CfgAttributeType::INTERNAL_IP6_ADDRESS => {
                    check_len(a, &[0, 17], "0 or 17")?;
                    req.v6 = true;
                }
                _ => {}
            }
        }
        Ok(req)
    }

    /// The address of `like`'s family a reply gives, if any (the first).
    pub fn assigned(&self, like: IpAddr) -> Result<Option<IpAddr>, CpError> {
        let want = address_type(like);
        for a in self.attributes() {
            let a = a?;
            if a.ty != want {
                continue;
            }
            return Ok(Some(match like {
                IpAddr::V4(_) => {
                    let v: [u8; 4] = a.value.try_into().map_err(|_| CpError::BadLength {
                        ty: a.ty,
                        len: a.value.len(),
                        expected: "4",
                    })?;
                    IpAddr::V4(Ipv4Addr::from(v))
                }
                IpAddr::V6(_) => {
                    let v: [u8; 17] = a.value.try_into().map_err(|_| CpError::BadLength {
                        ty: a.ty,
                        len: a.value.len(),
                        expected: "17",
                    })?;
                    let mut o = [0u8; 16];
                    o.copy_from_slice(&v[..16]);
                    IpAddr::V6(Ipv6Addr::from(o))
                }
            }));
        }
        Ok(None)
    }

    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "CP payload");
        let cfg_type = CfgType(r.u8()?);
        r.take(3)?;
        Ok(Self {
            cfg_type,
            attributes: budget.copy(r.rest())?,
        })
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self.attributes.len()
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.cfg_type.0, 0, 0, 0]);
        out.extend_from_slice(&self.attributes);
    }

    /// A payload whose attribute bytes are `raw` as given (tests and fuzzing:
    /// lists that do not add up).
    pub fn from_raw(cfg_type: CfgType, raw: Vec<u8>) -> Self {
        Self {
            cfg_type,
            attributes: raw,
        }
    }
}

fn address_type(like: IpAddr) -> CfgAttributeType {
    match like {
        IpAddr::V4(_) => CfgAttributeType::INTERNAL_IP4_ADDRESS,
        IpAddr::V6(_) => CfgAttributeType::INTERNAL_IP6_ADDRESS,
    }
}

fn check_len(
    a: CfgAttribute<'_>,
    allowed: &[usize],
    expected: &'static str,
) -> Result<(), CpError> {
    if allowed.contains(&a.value.len()) {
        Ok(())
    } else {
        Err(CpError::BadLength {
            ty: a.ty,
            len: a.value.len(),
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_bytes() {
        let req = Cp::address_request("0.0.0.0".parse().unwrap());
        let mut out = Vec::new();
        req.emit(&mut out);
        // CFG_REQUEST, reserved, INTERNAL_IP4_ADDRESS (1), length 0.
        assert_eq!(out, [1, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(Cp::parse(&out).unwrap(), req);
        assert_eq!(
            req.requested().unwrap(),
            AddressRequest {
                v4: true,
                v6: false
            }
        );
        let reply = Cp::address_reply("100.64.0.7".parse().unwrap());
        out.clear();
        reply.emit(&mut out);
        assert_eq!(out, [2, 0, 0, 0, 0, 1, 0, 4, 100, 64, 0, 7]);
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(
            reply.assigned(any4).unwrap(),
            Some("100.64.0.7".parse().unwrap())
        );
        assert_eq!(reply.assigned("::".parse().unwrap()).unwrap(), None);
    }

    #[test]
    fn a_requested_value_names_only_the_family() {
        // §3.15.1 lets a requester name the address it would like; the
        // request reads as "an IPv4 address", and the pool chooses which.
        let cp = Cp::from_raw(CfgType::CFG_REQUEST, vec![0, 1, 0, 4, 192, 0, 2, 99]);
        assert_eq!(
            cp.requested().unwrap(),
            AddressRequest {
                v4: true,
                v6: false
            }
        );
    }

    #[test]
    fn ipv6_reply_carries_a_prefix_length() {
        let a: IpAddr = "fd00:6f65::9".parse().unwrap();
        let reply = Cp::address_reply(a);
        let mut out = Vec::new();
        reply.emit(&mut out);
        assert_eq!(&out[4..8], &[0, 8, 0, 17]);
        assert_eq!(out[8 + 16], 128);
        assert_eq!(reply.assigned("::".parse().unwrap()).unwrap(), Some(a));
        assert!(Cp::address_request(a).requested().unwrap().v6);
    }

    #[test]
    fn strongswan_request_with_other_attributes() {
        // What charon sends with `vips = 0.0.0.0`: the address, DNS servers and
        // a vendor attribute (R bit clear), each with an empty value.
        let body = [
            1, 0, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 10, 0, 0, 0x70, 0x00, 0, 0,
        ];
        let cp = Cp::parse(&body).unwrap();
        assert_eq!(cp.cfg_type, CfgType::CFG_REQUEST);
        assert_eq!(cp.attributes().count(), 4);
        assert!(cp.requested().unwrap().v4);
        assert!(!cp.requested().unwrap().v6);
    }

    #[test]
    fn malformed_lists_are_errors_not_panics() {
        let truncated = Cp::from_raw(CfgType::CFG_REQUEST, vec![0, 1, 0, 4, 10]);
        assert_eq!(truncated.requested(), Err(CpError::Truncated { index: 0 }));
        let short_header = Cp::from_raw(CfgType::CFG_REQUEST, vec![0, 1, 0]);
        assert!(short_header.requested().is_err());
        let bad_len = Cp::from_raw(CfgType::CFG_REQUEST, vec![0, 1, 0, 3, 1, 2, 3]);
        assert!(matches!(
            bad_len.requested(),
            Err(CpError::BadLength { len: 3, .. })
        ));
        let mut many = Cp::new(CfgType::CFG_REQUEST);
        for _ in 0..=MAX_CP_ATTRIBUTES {
            many.push(CfgAttributeType::INTERNAL_IP4_DNS, &[]);
        }
        assert_eq!(many.requested(), Err(CpError::TooMany));
        assert_eq!(many.attributes().count(), MAX_CP_ATTRIBUTES + 1);
        let reply = Cp::from_raw(CfgType::CFG_REPLY, vec![0, 1, 0, 2, 9, 9]);
        assert!(reply.assigned("0.0.0.0".parse().unwrap()).is_err());
        assert!(Cp::parse(&[1, 0]).is_err());
    }
}
