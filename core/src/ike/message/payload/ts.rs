//! The Traffic Selector payloads TSi and TSr (RFC 7296 §3.13).
//!
//! ```text
//! | Number of TSs |                 RESERVED                      |
//! |                       <Traffic Selectors> ~                   |
//! ```
//!
//! Each selector (§3.13.1):
//!
//! ```text
//! |   TS Type     |IP Protocol ID*|       Selector Length         |
//! |           Start Port*         |           End Port*           |
//! |                         Starting Address*  ~                  |
//! |                         Ending Address*    ~                  |
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ike::message::Error;
use crate::ike::message::budget::Budget;
use crate::ike::message::enums::TsType;
use crate::ike::message::reader::{Reader, put_u16};

/// A TSi or TSr payload: a set of traffic selectors.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ts {
    /// The selectors; at most 255.
    pub selectors: Vec<TrafficSelector>,
}

/// One traffic selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE.
    Addr(AddrSelector),
    /// Another TS Type (e.g. RFC 4595's FC_ADDR_RANGE), kept as it came.
    Unknown {
        /// TS Type
        ty: TsType,
        /// the octet after the type (IP Protocol ID in the address types)
        second_octet: u8,
        /// the bytes after Selector Length
        data: Vec<u8>,
    },
}

/// An address-range selector: IP protocol, port range, address range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddrSelector {
    /// IP protocol number; 0 means any.
    pub ip_protocol: u8,
    /// First port of the range (0 with `end_port` 65535 means any).
    pub start_port: u16,
    /// Last port of the range.
    pub end_port: u16,
    /// The address range; its family decides the TS Type.
    pub addrs: AddrRange,
}

/// An inclusive address range of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrRange {
    /// TS_IPV4_ADDR_RANGE.
    V4(Ipv4Addr, Ipv4Addr),
    /// TS_IPV6_ADDR_RANGE.
    V6(Ipv6Addr, Ipv6Addr),
}

impl AddrSelector {
    /// All protocols and ports of one address: the host selectors of OE tunnels.
    /// Every address, protocol and port of `like`'s family.
    pub fn any_of(like: IpAddr) -> Self {
        let addrs = match like {
            IpAddr::V4(_) => AddrRange::V4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
            IpAddr::V6(_) => AddrRange::V6(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from(u128::MAX)),
        };
        Self {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            addrs,
        }
    }

    /// The one address this selector covers, if it covers one.
    pub fn single_address(&self) -> Option<IpAddr> {
        match self.addrs {
            AddrRange::V4(lo, hi) if lo == hi => Some(IpAddr::V4(lo)),
            AddrRange::V6(lo, hi) if lo == hi => Some(IpAddr::V6(lo)),
            _ => None,
        }
    }

    /// Every address, protocol and port of the subnet `addr/len` (host bits
    /// ignored; a length beyond the family's is the host).
    pub fn subnet(addr: IpAddr, len: u8) -> Self {
        let addrs = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(len.min(32)))
                    .unwrap_or(0);
                let lo = u32::from(a) & mask;
                AddrRange::V4(Ipv4Addr::from(lo), Ipv4Addr::from(lo | !mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(len.min(128)))
                    .unwrap_or(0);
                let lo = u128::from(a) & mask;
                AddrRange::V6(Ipv6Addr::from(lo), Ipv6Addr::from(lo | !mask))
            }
        };
        Self {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            addrs,
        }
    }

    /// The subnet `(address, prefix length)` this selector's address range
    /// is exactly, if it is one (whatever its protocol and ports).
    pub fn as_prefix(&self) -> Option<(IpAddr, u8)> {
        let (lo, hi, bits) = match self.addrs {
            AddrRange::V4(lo, hi) => (u128::from(u32::from(lo)), u128::from(u32::from(hi)), 32),
            AddrRange::V6(lo, hi) => (u128::from(lo), u128::from(hi), 128),
        };
        let span = hi.checked_sub(lo)?;
        // A prefix spans 2^k - 1 from an address whose low k bits are zero.
        if span.checked_add(1).is_some_and(|n| !n.is_power_of_two()) || lo & span != 0 {
            return None;
        }
        let host_bits = 128 - span.leading_zeros();
        let len = u8::try_from(bits - host_bits).ok()?;
        let start = match self.addrs {
            AddrRange::V4(lo, _) => IpAddr::V4(lo),
            AddrRange::V6(lo, _) => IpAddr::V6(lo),
        };
        Some((start, len))
    }

    /// Every address, protocol and port of one host.
    pub fn host(addr: IpAddr) -> Self {
        let addrs = match addr {
            IpAddr::V4(a) => AddrRange::V4(a, a),
            IpAddr::V6(a) => AddrRange::V6(a, a),
        };
        Self {
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            addrs,
        }
    }

    /// The TS Type of this selector.
    pub fn ts_type(&self) -> TsType {
        match self.addrs {
            AddrRange::V4(..) => TsType::IPV4_ADDR_RANGE,
            AddrRange::V6(..) => TsType::IPV6_ADDR_RANGE,
        }
    }
}

/// Selector Length of TS_IPV4_ADDR_RANGE and TS_IPV6_ADDR_RANGE.
const V4_LEN: u16 = 16;
const V6_LEN: u16 = 40;

impl TrafficSelector {
    /// Size of the selector.
    pub fn buffer_len(&self) -> usize {
        match self {
            TrafficSelector::Addr(a) => match a.addrs {
                AddrRange::V4(..) => V4_LEN as usize,
                AddrRange::V6(..) => V6_LEN as usize,
            },
            TrafficSelector::Unknown { data, .. } => 4 + data.len(),
        }
    }

    fn parse(r: &mut Reader<'_>, budget: &mut Budget) -> Result<Self, Error> {
        let ty = TsType(r.u8()?);
        let second_octet = r.u8()?;
        let length = r.u16()?;
        let expected = match ty {
            TsType::IPV4_ADDR_RANGE => Some(V4_LEN),
            TsType::IPV6_ADDR_RANGE => Some(V6_LEN),
            _ => None,
        };
        if length < 4 || expected.is_some_and(|e| e != length) {
            return Err(Error::SelectorLength { ty, length });
        }
        let mut sel = Reader::new(r.take(length as usize - 4)?, "traffic selector");
        if expected.is_none() {
            return Ok(TrafficSelector::Unknown {
                ty,
                second_octet,
                data: budget.copy(sel.rest())?,
            });
        }
        let start_port = sel.u16()?;
        let end_port = sel.u16()?;
        let addrs = if ty == TsType::IPV4_ADDR_RANGE {
            AddrRange::V4(Ipv4Addr::from(sel.u32()?), Ipv4Addr::from(sel.u32()?))
        } else {
            let mut start = [0u8; 16];
            start.copy_from_slice(sel.take(16)?);
            let mut end = [0u8; 16];
            end.copy_from_slice(sel.take(16)?);
            AddrRange::V6(Ipv6Addr::from(start), Ipv6Addr::from(end))
        };
        Ok(TrafficSelector::Addr(AddrSelector {
            ip_protocol: second_octet,
            start_port,
            end_port,
            addrs,
        }))
    }

    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            TrafficSelector::Addr(a) => {
                out.push(a.ts_type().0);
                out.push(a.ip_protocol);
                put_u16(out, self.buffer_len());
                out.extend_from_slice(&a.start_port.to_be_bytes());
                out.extend_from_slice(&a.end_port.to_be_bytes());
                match a.addrs {
                    AddrRange::V4(s, e) => {
                        out.extend_from_slice(&s.octets());
                        out.extend_from_slice(&e.octets());
                    }
                    AddrRange::V6(s, e) => {
                        out.extend_from_slice(&s.octets());
                        out.extend_from_slice(&e.octets());
                    }
                }
            }
            TrafficSelector::Unknown {
                ty,
                second_octet,
                data,
            } => {
                out.push(ty.0);
                out.push(*second_octet);
                put_u16(out, self.buffer_len());
                out.extend_from_slice(data);
            }
        }
    }
}

impl Ts {
    /// A payload with one selector.
    pub fn single(selector: AddrSelector) -> Self {
        Self {
            selectors: vec![TrafficSelector::Addr(selector)],
        }
    }

    /// Parses the body; Number of TSs must match the selectors present.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        Self::parse_in(body, &mut Budget::for_input(body.len()))
    }

    pub(crate) fn parse_in(body: &[u8], budget: &mut Budget) -> Result<Self, Error> {
        let mut r = Reader::new(body, "TS payload");
        let announced = r.u8()?;
        r.take(3)?;
        // Number of TSs bounds the list; a selector takes at least 4 bytes.
        let room = usize::from(announced).min(r.remaining() / 4);
        let mut selectors = budget.vec(room)?;
        while !r.is_empty() {
            if selectors.len() == usize::from(announced) {
                return Err(Error::SelectorCount {
                    announced,
                    found: selectors.len() + 1,
                });
            }
            selectors.push(TrafficSelector::parse(&mut r, budget)?);
        }
        if selectors.len() != announced as usize {
            return Err(Error::SelectorCount {
                announced,
                found: selectors.len(),
            });
        }
        Ok(Self { selectors })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.selectors.len() as u8, 0, 0, 0]);
        for s in &self.selectors {
            s.emit(out);
        }
    }

    /// Size of the body.
    pub fn buffer_len(&self) -> usize {
        4 + self
            .selectors
            .iter()
            .map(TrafficSelector::buffer_len)
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: &[u8], expected: &Ts) {
        let ts = Ts::parse(body).unwrap();
        assert_eq!(&ts, expected);
        let mut out = Vec::new();
        ts.emit(&mut out);
        assert_eq!(out, body);
        assert_eq!(ts.buffer_len(), body.len());
    }

    #[test]
    fn ipv4_host() {
        #[rustfmt::skip]
        let body = [
            1, 0, 0, 0,
            7, 0, 0, 16, 0, 0, 0xff, 0xff, 10, 0, 77, 10, 10, 0, 77, 10,
        ];
        round_trip(
            &body,
            &Ts::single(AddrSelector::host("10.0.77.10".parse().unwrap())),
        );
    }

    #[test]
    fn ipv6_range_and_unknown() {
        let mut body = vec![2, 0, 0, 0, 8, 6, 0, 40, 0, 80, 0, 80];
        body.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        body.extend_from_slice(&[0; 12]);
        body.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        body.extend_from_slice(&[0xff; 12]);
        body.extend_from_slice(&[9, 0, 0, 6, 0xab, 0xcd]);
        let start: Ipv6Addr = "2001:db8::".parse().unwrap();
        let end: Ipv6Addr = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        round_trip(
            &body,
            &Ts {
                selectors: vec![
                    TrafficSelector::Addr(AddrSelector {
                        ip_protocol: 6,
                        start_port: 80,
                        end_port: 80,
                        addrs: AddrRange::V6(start, end),
                    }),
                    TrafficSelector::Unknown {
                        ty: TsType::FC_ADDR_RANGE,
                        second_octet: 0,
                        data: vec![0xab, 0xcd],
                    },
                ],
            },
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            Ts::parse(&[1, 0, 0, 0, 7, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            Error::SelectorLength {
                ty: TsType::IPV4_ADDR_RANGE,
                length: 15
            }
        );
        assert_eq!(
            Ts::parse(&[2, 0, 0, 0, 9, 0, 0, 4]).unwrap_err(),
            Error::SelectorCount {
                announced: 2,
                found: 1
            }
        );
        assert!(matches!(
            Ts::parse(&[1, 0, 0, 0, 7, 0, 0, 16, 0]),
            Err(Error::Truncated { .. })
        ));
    }
}
