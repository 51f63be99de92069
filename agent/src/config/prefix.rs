//! CIDR prefixes as written in the config (`192.0.2.0/24`, `2001:db8::/32`, or a
//! bare address meaning /32 or /128), validated with messages that say what to fix.
//!
// TODO(integration): core's policy module (branch `oe`) defines the `Cidr` type the
// decision machine matches on; convert these into it once it lands on main.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix did not parse. The message is meant to follow `key: "value" is not a CIDR: `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// The part after `/` is not a number.
    #[error("prefix length {0:?} is not a number")]
    BadLength(String),
    /// The length exceeds the address width.
    #[error("prefix length {len} is longer than {max}")]
    TooLong {
        /// the length written
        len: u32,
        /// 32 or 128
        max: u8,
    },
    /// Bits beyond the prefix length are set.
    #[error("host bits are set; did you mean {0}?")]
    HostBits(Prefix),
}

impl Prefix {
    /// A prefix from its parts, clearing any host bits.
    pub fn new_truncating(addr: IpAddr, len: u8) -> Prefix {
        let max = max_len(addr);
        let len = len.min(max);
        Prefix {
            addr: mask(addr, len),
            len,
        }
    }

    /// The single-address prefix (/32 or /128) of `addr`.
    pub fn host(addr: IpAddr) -> Prefix {
        Prefix {
            addr,
            len: max_len(addr),
        }
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is the default route (length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` lies inside this prefix (same family and leading bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(text: &str) -> Result<Prefix, PrefixError> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| PrefixError::BadAddress(addr_text.to_owned()))?;
        let max = max_len(addr);
        let len = match len_text {
            None => max,
            Some(l) => {
                let len: u32 = l
                    .parse()
                    .map_err(|_| PrefixError::BadLength(l.to_owned()))?;
                if len > u32::from(max) {
                    return Err(PrefixError::TooLong { len, max });
                }
                u8::try_from(len).unwrap_or(max)
            }
        };
        let truncated = Prefix::new_truncating(addr, len);
        if truncated.addr != addr {
            return Err(PrefixError::HostBits(truncated));
        }
        Ok(truncated)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let p: Prefix = "192.0.2.0/24".parse().unwrap();
        assert_eq!(p.to_string(), "192.0.2.0/24");
        assert!(p.contains("192.0.2.77".parse().unwrap()));
        assert!(!p.contains("192.0.3.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        assert_eq!("192.0.2.53".parse::<Prefix>().unwrap().len(), 32);
        assert_eq!("2001:db8::/32".parse::<Prefix>().unwrap().len(), 32);
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap().len(), 0);
        assert!(
            "0.0.0.0/0"
                .parse::<Prefix>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Prefix>().unwrap_err().to_string(),
            "prefix length 33 is longer than 32"
        );
        assert_eq!(
            "10.0.0.1/24".parse::<Prefix>().unwrap_err().to_string(),
            "host bits are set; did you mean 10.0.0.0/24?"
        );
        assert!(matches!(
            "10.0.0/8".parse::<Prefix>(),
            Err(PrefixError::BadAddress(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<Prefix>(),
            Err(PrefixError::BadLength(_))
        ));
        assert!(matches!(
            "::/129".parse::<Prefix>(),
            Err(PrefixError::TooLong { len: 129, max: 128 })
        ));
    }
}
