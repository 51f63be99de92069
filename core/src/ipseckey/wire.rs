//! IPSECKEY RDATA on the wire (RFC 4025 §2.1).
//!
//! ```text
//!   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |  precedence   | gateway type  |  algorithm  |     gateway     |
//!  +---------------+---------------+-------------+                 +
//!  ~                            gateway                            ~
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  |                                                               /
//!  /                          public key                           /
//!  /                                                               /
//!  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-|
//! ```
//!
//! The public key is whatever follows the gateway; an algorithm we do not know
//! still parses and round-trips byte for byte.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Algorithm, DomainName, Gateway, Ipseckey, WireError};

/// precedence, gateway type, algorithm.
const HEADER_LEN: usize = 3;

impl Ipseckey {
    /// Parses RDATA (the RR's RDATA bytes only).
    pub fn parse_wire(rdata: &[u8]) -> Result<Self, WireError> {
        let &[precedence, gateway_type, algorithm, ref rest @ ..] = rdata else {
            return Err(WireError::Truncated {
                need: HEADER_LEN,
                have: rdata.len(),
            });
        };
        let truncated = |need: usize| WireError::Truncated {
            need,
            have: rdata.len(),
        };
        let (gateway, key) = match gateway_type {
            0 => (Gateway::None, rest),
            1 => {
                let (addr, key) = rest
                    .split_first_chunk::<4>()
                    .ok_or(truncated(HEADER_LEN + 4))?;
                (Gateway::Ipv4(Ipv4Addr::from(*addr)), key)
            }
            2 => {
                let (addr, key) = rest
                    .split_first_chunk::<16>()
                    .ok_or(truncated(HEADER_LEN + 16))?;
                (Gateway::Ipv6(Ipv6Addr::from(*addr)), key)
            }
            3 => {
                let (name, used) = DomainName::parse_wire(rest).map_err(|e| match e {
                    // Report lengths relative to the whole RDATA.
                    WireError::Truncated { need, .. } => truncated(HEADER_LEN + need),
                    other => other,
                })?;
                let key = rest.get(used..).ok_or(truncated(HEADER_LEN + used))?;
                (Gateway::Name(name), key)
            }
            other => return Err(WireError::UnknownGatewayType(other)),
        };
        Ok(Self {
            precedence,
            gateway,
            algorithm: Algorithm(algorithm),
            public_key: key.to_vec(),
        })
    }

    /// Appends the RDATA wire form to `out`.
    pub fn emit_wire(&self, out: &mut Vec<u8>) {
        out.reserve(self.wire_len());
        out.extend_from_slice(&[self.precedence, self.gateway_type(), self.algorithm.0]);
        match &self.gateway {
            Gateway::None => {}
            Gateway::Ipv4(addr) => out.extend_from_slice(&addr.octets()),
            Gateway::Ipv6(addr) => out.extend_from_slice(&addr.octets()),
            Gateway::Name(name) => name.emit_wire(out),
        }
        out.extend_from_slice(&self.public_key);
    }

    /// Length of the RDATA wire form.
    pub fn wire_len(&self) -> usize {
        let gateway = match &self.gateway {
            Gateway::None => 0,
            Gateway::Ipv4(_) => 4,
            Gateway::Ipv6(_) => 16,
            Gateway::Name(name) => name.wire_len(),
        };
        HEADER_LEN + gateway + self.public_key.len()
    }

    /// The RDATA wire form as a new vector.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire_len());
        self.emit_wire(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_truncation() {
        for len in 0..3 {
            let buf = vec![0u8; len];
            assert_eq!(
                Ipseckey::parse_wire(&buf),
                Err(WireError::Truncated { need: 3, have: len })
            );
        }
    }

    #[test]
    fn gateway_truncation() {
        assert_eq!(
            Ipseckey::parse_wire(&[10, 1, 2, 192, 0, 2]),
            Err(WireError::Truncated { need: 7, have: 6 })
        );
        assert_eq!(
            Ipseckey::parse_wire(&[10, 2, 2, 0x20, 0x01]),
            Err(WireError::Truncated { need: 19, have: 5 })
        );
        assert_eq!(
            Ipseckey::parse_wire(&[10, 3, 2, 3, b'c', b'o']),
            Err(WireError::Truncated { need: 7, have: 6 })
        );
        assert_eq!(
            Ipseckey::parse_wire(&[10, 3, 2, 3, b'c', b'o', b'm']),
            Err(WireError::Truncated { need: 8, have: 7 })
        );
    }

    #[test]
    fn unknown_gateway_type_and_algorithm() {
        assert_eq!(
            Ipseckey::parse_wire(&[10, 4, 2, 1]),
            Err(WireError::UnknownGatewayType(4))
        );
        let k = Ipseckey::parse_wire(&[1, 0, 200, 0xde, 0xad]).unwrap();
        assert_eq!(k.algorithm, Algorithm(200));
        assert_eq!(k.to_wire(), [1, 0, 200, 0xde, 0xad]);
    }

    #[test]
    fn compressed_gateway_name_is_refused() {
        assert!(matches!(
            Ipseckey::parse_wire(&[10, 3, 2, 0xc0, 0x0c, 1, 2]),
            Err(WireError::BadName(_))
        ));
    }
}
