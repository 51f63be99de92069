//! This host's addresses: at most one per family, as a dual-stack host has
//! them (`address = ["192.0.2.10", "2001:db8::10"]`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::{Command, Node, Note};
use crate::ike::endpoint::SaHandle;

/// This host's addresses, at most one per family: the local address of IKE
/// SAs and the local traffic selector towards a peer of that family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Addresses {
    /// The IPv4 address, if this host has one.
    pub v4: Option<Ipv4Addr>,
    /// The IPv6 address, if this host has one.
    pub v6: Option<Ipv6Addr>,
}

impl Addresses {
    /// Only `ip` (its family's), none of the other family.
    pub fn one(ip: IpAddr) -> Addresses {
        let mut a = Addresses::default();
        a.set(ip);
        a
    }

    /// Sets the address of `ip`'s family to `ip`; returns the one it replaced.
    pub fn set(&mut self, ip: IpAddr) -> Option<IpAddr> {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.replace(a).map(IpAddr::V4),
            IpAddr::V6(a) => self.v6.replace(a).map(IpAddr::V6),
        }
    }

    /// This host's address of `of`'s family (an IPv4-mapped IPv6 address
    /// counts as IPv4), or `None` if it has none.
    pub fn for_family(&self, of: IpAddr) -> Option<IpAddr> {
        match of.to_canonical() {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }

    /// The address of `of`'s family, else the unspecified address of that
    /// family (the kernel then picks a source).
    pub fn for_family_or_unspecified(&self, of: IpAddr) -> IpAddr {
        self.for_family(of).unwrap_or(match of.to_canonical() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        })
    }

    /// The first address, IPv4 before IPv6.
    pub fn first(&self) -> Option<IpAddr> {
        self.iter().next()
    }

    /// The addresses, IPv4 before IPv6.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + use<> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.for_family(ip) == Some(ip.to_canonical())
    }

    /// No address of either family.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }
}

/// `192.0.2.10, 2001:db8::10`; `-` for none.
impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, a) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl Node {
    /// This host's addresses changed (a DHCP renewal, a move to another
    /// network, an address added or removed): call with all of them, at
    /// most one per family, whenever the set differs from the last one.
    ///
    /// - New IKE SAs start from the new addresses at once.
    /// - An IKE SA whose local address is gone is closed: its DELETE goes
    ///   out where the host can still send it (RFC 7296 §1.4.1), and the
    ///   node lets go of its CHILD SAs and its peer's private outcome now,
    ///   not when the DELETE's exchange ends (it may never be answered), so
    ///   that the next packet to the peer decides again from the new address.
    ///   The address of an SA is fixed at IKE_SA_INIT (§2.23 allows only a
    ///   NAT to change the port), so the SA cannot move with the host.
    /// - An attempt still in its handshake from a vanished address starts
    ///   again from the new address of its family, with the same key and
    ///   deadline (or, without one, ends as
    ///   [`crate::oe::NotStarted::NoAddressOfFamily`]).
    /// - A clear or blocked outcome decided because this host had no address
    ///   of a family that now has one is forgotten ([`Command::ForgetOutcome`]).
    /// - A family without an address pauses OE for it: its IKE does not start
    ///   ([`crate::oe::NotStarted::NoAddressOfFamily`]) until it has one.
    ///
    /// Logs one [`Note::Addresses`] per change, and one [`Note::LocalGone`]
    /// per IKE SA it closes. Returns how many IKE SAs it closed and how many
    /// outcomes it forgot.
    pub fn handle_addresses(&mut self, now: Instant, addresses: Addresses) -> (usize, usize) {
        let old = self.config.addresses;
        if addresses == old {
            return (0, 0);
        }
        self.config.addresses = addresses;
        self.log(
            None,
            Note::Addresses {
                old,
                new: addresses,
            },
        );
        let mut stale: Vec<(SaHandle, IpAddr)> = self
            .sas
            .keys()
            .chain(self.attempts.keys())
            .filter_map(|&sa| {
                let local = self.endpoint.local_of(sa)?.ip().to_canonical();
                // Unspecified: no address of its family was known when it
                // came (the kernel chose); nothing to say it went.
                (!local.is_unspecified() && !addresses.contains(local)).then_some((sa, local))
            })
            .collect();
        stale.sort_by_key(|&(sa, _)| sa.0);
        stale.dedup();
        let closed = stale.len();
        for (sa, local) in stale {
            self.log(Some(sa), Note::LocalGone { local });
            self.local_gone(now, sa);
        }
        let regained: Vec<(Instant, IpAddr)> = self
            .expiries
            .iter()
            .filter(|&&(_, dst)| {
                self.no_address
                    .get(&dst)
                    .is_some_and(|&missing| addresses.for_family(missing).is_some())
            })
            .copied()
            .collect();
        let forgotten = regained.len();
        for (at, dst) in regained {
            self.expiries.remove(&(at, dst));
            self.no_address.remove(&dst);
            self.commands.push_back(Command::ForgetOutcome { dst });
        }
        // What no outcome or decision holds any more.
        let (expiries, pending) = (&self.expiries, &self.pending);
        self.no_address
            .retain(|dst, _| pending.contains_key(dst) || expiries.iter().any(|&(_, d)| d == *dst));
        (closed, forgotten)
    }

    /// Closes the IKE SA `sa`, whose local address is gone (see
    /// [`Node::handle_addresses`]).
    fn local_gone(&mut self, now: Instant, sa: SaHandle) {
        if let Some(a) = self.attempts.remove(&sa) {
            // Still in its handshake: it ends without a word or an event.
            self.endpoint.close(now, sa);
            self.forget(sa);
            return self.start_ike(now, a.dst, a.peer_addr, a.key, a.dnssec, a.deadline);
        }
        let children = self.endpoint.child_sas(sa);
        // Established: DELETE (the engine's events about it come later, and
        // find nothing left here); a responder's handshake ends silently.
        self.endpoint.close(now, sa);
        self.machine.cancel_request(sa.0);
        self.activity.remove(&sa);
        let dst = self.forget(sa).and_then(|info| info.dst);
        for spis in children {
            let inbound_spi = spis.inbound;
            self.commands
                .push_back(Command::RemoveChild { inbound_spi });
            if let Some(peer) = self.children.remove(inbound_spi) {
                self.private_gone(now, peer);
            }
        }
        if let Some(dst) = dst {
            self.private_gone(now, dst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_family() {
        let v4: IpAddr = "192.0.2.10".parse().unwrap();
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        let mut a = Addresses::one(v4);
        assert_eq!(a.for_family("198.51.100.1".parse().unwrap()), Some(v4));
        assert_eq!(a.for_family("2001:db8::3".parse().unwrap()), None);
        assert_eq!(
            a.for_family_or_unspecified("2001:db8::3".parse().unwrap()),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
        assert_eq!(a.set(v6), None);
        assert_eq!(a.for_family("2001:db8::3".parse().unwrap()), Some(v6));
        assert_eq!(
            a.for_family("::ffff:198.51.100.1".parse().unwrap()),
            Some(v4)
        );
        assert_eq!(a.iter().collect::<Vec<_>>(), [v4, v6]);
        assert_eq!(a.first(), Some(v4));
        assert!(a.contains(v6) && !a.contains("192.0.2.11".parse().unwrap()));
        assert_eq!(a.to_string(), "192.0.2.10, 2001:db8::10");
        assert_eq!(Addresses::default().to_string(), "-");
        assert_eq!(a.set("192.0.2.11".parse().unwrap()), Some(v4));
    }
}
