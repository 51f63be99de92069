//! Address prefixes (`10.0.0.0/8`, `2001:db8::/32`) as the policy lists hold them.
//!
//! Text with host bits set (`10.0.0.1/8`) is **rejected**, never silently
//! normalised: a policy line that says more than its prefix length means is
//! almost always a typo, and guessing which half the author meant could put a
//! host in the wrong group. A bare address (`192.0.2.7`) is a host prefix
//! (`/32`, `/128`), as in Libreswan's policy files.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 prefix whose host bits are all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix did not parse or build. The message names the offending text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("`{text}`: `{addr}` is not an IPv4 or IPv6 address")]
    BadAddress {
        /// the whole text
        text: String,
        /// the address part
        addr: String,
    },
    /// The part after `/` is not a decimal number.
    #[error("`{text}`: prefix length `{len}` is not a number")]
    BadLength {
        /// the whole text
        text: String,
        /// the length part
        len: String,
    },
    /// The prefix length exceeds the address width.
    #[error("`{text}`: prefix length {len} is longer than {max}")]
    TooLong {
        /// the whole text
        text: String,
        /// the length given
        len: u32,
        /// 32 or 128
        max: u8,
    },
    /// Bits beyond the prefix length are set; the suggestion is the network.
    #[error("`{text}`: host bits are set (the network is {network})")]
    HostBitsSet {
        /// the whole text
        text: String,
        /// the prefix with the host bits cleared
        network: Cidr,
    },
}

impl Cidr {
    /// The prefix `addr/len`; fails if `len` is too long or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, CidrError> {
        let text = || format!("{addr}/{len}");
        let max = max_len(addr);
        if len > max {
            return Err(CidrError::TooLong {
                text: text(),
                len: len.into(),
                max,
            });
        }
        let network = Self::truncating(addr, len);
        if network.addr != addr {
            return Err(CidrError::HostBitsSet {
                text: text(),
                network,
            });
        }
        Ok(network)
    }

    /// The prefix of length `len` (clamped to the address width) containing `addr`.
    pub fn truncating(addr: IpAddr, len: u8) -> Self {
        let len = len.min(max_len(addr));
        let bits = to_bits(addr) & mask(addr, len);
        Self {
            addr: from_bits(addr, bits),
            len,
        }
    }

    /// The host prefix of one address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Self {
        Self {
            addr,
            len: max_len(addr),
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether the prefix is `/0` (the whole address family).
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// Whether `addr` is inside this prefix (always false across families).
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4()
            && to_bits(addr) & mask(addr, self.len) == to_bits(self.addr)
    }

    /// The network as left-aligned bits in a `u128` (IPv4 in the low 32 bits).
    pub(crate) fn bits(&self) -> u128 {
        to_bits(self.addr)
    }
}

/// 32 for IPv4, 128 for IPv6.
fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// The address as an integer: IPv4 in the low 32 bits of the `u128`.
pub(crate) fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(family: IpAddr, bits: u128) -> IpAddr {
    match family {
        // The IPv4 mask keeps only the low 32 bits.
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(0))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

/// The network mask of `len` bits for `family`, in the same layout as [`to_bits`].
pub(crate) fn mask(family: IpAddr, len: u8) -> u128 {
    let width = max_len(family);
    let len = len.min(width);
    if len == 0 {
        return 0;
    }
    let ones = if width == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    // Shift by at most width - 1, so never overflows; keep only `width` bits.
    (ones << (width - len)) & ones
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `addr/len` or a bare address (a host prefix). Surrounding whitespace is ignored.
    fn from_str(text: &str) -> Result<Self, CidrError> {
        let trimmed = text.trim();
        let (addr_text, len_text) = match trimmed.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| CidrError::BadAddress {
            text: trimmed.to_owned(),
            addr: addr_text.to_owned(),
        })?;
        let Some(len_text) = len_text else {
            return Ok(Self::host(addr));
        };
        let bad_len = || CidrError::BadLength {
            text: trimmed.to_owned(),
            len: len_text.to_owned(),
        };
        if len_text.is_empty() || !len_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_len());
        }
        let len: u32 = len_text.parse().unwrap_or(u32::MAX);
        let max = max_len(addr);
        let Ok(len8) = u8::try_from(len) else {
            return Err(CidrError::TooLong {
                text: trimmed.to_owned(),
                len,
                max,
            });
        };
        Self::new(addr, len8).map_err(|e| match e {
            CidrError::TooLong { len, max, .. } => CidrError::TooLong {
                text: trimmed.to_owned(),
                len,
                max,
            },
            CidrError::HostBitsSet { network, .. } => CidrError::HostBitsSet {
                text: trimmed.to_owned(),
                network,
            },
            other => other,
        })
    }
}

/// `10.0.0.0/8`; a host prefix prints with its length too (`192.0.2.7/32`).
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

/// Why a list of prefixes (one per line) did not parse: the line and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct ListError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub error: CidrError,
}

/// Parses a Libreswan-style policy file body: one prefix per line, `#` starts a
/// comment, blank lines are skipped.
pub fn parse_list(text: &str) -> Result<Vec<Cidr>, ListError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let cidr = content
            .parse()
            .map_err(|error| ListError { line: i + 1, error })?;
        out.push(cidr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let v4: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(mask(v4, 0), 0);
        assert_eq!(mask(v4, 8), 0xff00_0000);
        assert_eq!(mask(v4, 32), 0xffff_ffff);
        let v6: IpAddr = "::".parse().unwrap();
        assert_eq!(mask(v6, 128), u128::MAX);
        assert_eq!(mask(v6, 1), 1 << 127);
    }
}
