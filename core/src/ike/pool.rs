//! The addresses a responder gives initiators behind a NAT (RFC 7296
//! §3.15.1 INTERNAL_IP4_ADDRESS / INTERNAL_IP6_ADDRESS): client address
//! translation, `docs/architecture.md` "Behind a NAT".
//!
//! One prefix per family. An address belongs to one IKE SA at a time (the
//! endpoint's SA id): it is handed out only when free, moves to the SA that
//! rekeys its owner, and is released when its owner is forgotten. At most
//! `limit` are out at once. The search for a free address starts after the
//! last one given, so it costs at most one step per address out, and an
//! address just released is not handed again before the others.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A prefix to take addresses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolPrefix {
    /// The network address.
    pub addr: IpAddr,
    /// Its length.
    pub len: u8,
}

impl PoolPrefix {
    /// The prefix `addr/len`, `None` if `len` is too long for the family or
    /// leaves fewer than two usable addresses.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (len <= bits - 2).then(|| Self {
            addr: mask(addr, len),
            len,
        })
    }

    /// Whether `a` lies inside.
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.addr.is_ipv4() && mask(a, self.len) == self.addr
    }

    /// How many addresses are handed out from it: all but the first and the
    /// last (the network and broadcast addresses of IPv4), saturating.
    pub fn usable(&self) -> u128 {
        let bits = if self.addr.is_ipv4() { 32 } else { 128 };
        let host_bits = u32::from(bits - self.len);
        (1u128.checked_shl(host_bits).unwrap_or(u128::MAX)).saturating_sub(2)
    }

    fn nth(&self, n: u128) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
                u32::from(a).wrapping_add(n as u32).wrapping_add(1),
            )),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(
                u128::from(a).wrapping_add(n).wrapping_add(1),
            )),
        }
    }
}

impl std::fmt::Display for PoolPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn mask(a: IpAddr, len: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

/// Why no address was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No prefix of that family is configured.
    #[error("no address pool for {family}")]
    NoPool {
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// Every address is out, or `limit` is reached.
    #[error("address pool {prefix} exhausted ({out} out)")]
    Exhausted {
        /// The prefix.
        prefix: PoolPrefix,
        /// How many addresses are out.
        out: usize,
    },
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    prefixes: Vec<PoolPrefix>,
    limit: usize,
    /// Address → the IKE SA (endpoint id) that holds it.
    out: HashMap<IpAddr, u64>,
    /// Per prefix, where the next search starts.
    cursor: Vec<u128>,
}

impl Pool {
    pub(crate) fn new(prefixes: &[PoolPrefix], limit: usize) -> Self {
        Self {
            prefixes: prefixes.to_vec(),
            limit,
            out: HashMap::new(),
            cursor: vec![0; prefixes.len()],
        }
    }

    /// Whether `a` is one of the pool's addresses (handed out or not).
    pub(crate) fn contains(&self, a: IpAddr) -> bool {
        self.prefixes.iter().any(|p| p.contains(a))
    }

    /// A free address of `like`'s family for IKE SA `owner`.
    pub(crate) fn assign(&mut self, like: IpAddr, owner: u64) -> Result<IpAddr, PoolError> {
        let family = if like.is_ipv4() { "IPv4" } else { "IPv6" };
        let Some(i) = self
            .prefixes
            .iter()
            .position(|p| p.addr.is_ipv4() == like.is_ipv4())
        else {
            return Err(PoolError::NoPool { family });
        };
        let prefix = self.prefixes[i];
        let usable = prefix.usable();
        let exhausted = PoolError::Exhausted {
            prefix,
            out: self.out.len(),
        };
        if self.out.len() >= self.limit || usable == 0 {
            return Err(exhausted);
        }
        // Each step passes one address that is out, so at most `out + 1` steps.
        let steps = (self.out.len() as u128 + 1).min(usable);
        for _ in 0..steps {
            let n = self.cursor[i] % usable;
            self.cursor[i] = (n + 1) % usable;
            let a = prefix.nth(n);
            if let std::collections::hash_map::Entry::Vacant(e) = self.out.entry(a) {
                e.insert(owner);
                return Ok(a);
            }
        }
        Err(exhausted)
    }

    /// `a` now belongs to `new_owner` (a rekey of its IKE SA, §2.18).
    pub(crate) fn transfer(&mut self, a: IpAddr, from: u64, to: u64) {
        if let Some(owner) = self.out.get_mut(&a)
            && *owner == from
        {
            *owner = to;
        }
    }

    /// Releases `a` if `owner` holds it.
    pub(crate) fn release(&mut self, a: IpAddr, owner: u64) {
        if self.out.get(&a) == Some(&owner) {
            self.out.remove(&a);
        }
    }

    /// How many addresses are out.
    pub(crate) fn out(&self) -> usize {
        self.out.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hands_out_each_address_once_and_reuses_released_ones_last() {
        let p = PoolPrefix::new(v4("100.64.0.0"), 30).unwrap();
        assert_eq!(p.usable(), 2);
        let mut pool = Pool::new(&[p], 100);
        let a = pool.assign(v4("0.0.0.0"), 1).unwrap();
        let b = pool.assign(v4("0.0.0.0"), 2).unwrap();
        assert_eq!((a, b), (v4("100.64.0.1"), v4("100.64.0.2")));
        assert!(matches!(
            pool.assign(v4("0.0.0.0"), 3),
            Err(PoolError::Exhausted { out: 2, .. })
        ));
        // Only the owner releases.
        pool.release(a, 2);
        assert_eq!(pool.out(), 2);
        pool.release(a, 1);
        assert_eq!(pool.assign(v4("0.0.0.0"), 3).unwrap(), a);
        pool.transfer(b, 2, 9);
        pool.release(b, 2);
        assert_eq!(pool.out(), 2);
        pool.release(b, 9);
        assert_eq!(pool.out(), 1);
    }

    #[test]
    fn limit_family_and_prefix_checks() {
        let p4 = PoolPrefix::new(v4("100.64.9.9"), 16).unwrap();
        assert_eq!(p4.addr, v4("100.64.0.0"));
        assert_eq!(p4.usable(), 65534);
        assert!(PoolPrefix::new(v4("10.0.0.0"), 31).is_none());
        let p6 = PoolPrefix::new(v4("fd00:6f65::"), 112).unwrap();
        let mut pool = Pool::new(&[p4, p6], 2);
        assert_eq!(pool.assign(v4("::"), 1).unwrap(), v4("fd00:6f65::1"));
        assert!(pool.contains(v4("100.64.200.1")));
        assert!(!pool.contains(v4("100.65.0.1")));
        pool.assign(v4("0.0.0.0"), 2).unwrap();
        assert!(matches!(
            pool.assign(v4("0.0.0.0"), 3),
            Err(PoolError::Exhausted { .. })
        ));
        let mut only4 = Pool::new(&[p4], 10);
        assert_eq!(
            only4.assign(v4("::"), 1),
            Err(PoolError::NoPool { family: "IPv6" })
        );
        // A /0 of IPv6 does not overflow.
        assert_eq!(
            PoolPrefix::new(v4("::"), 0).unwrap().usable(),
            u128::MAX - 2
        );
    }
}
