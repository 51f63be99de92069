//! ICMP errors for this host's IKE datagrams (design.md, "Reach": hosts
//! without OE must not stall). The agent reads them from the IKE socket's
//! error queue (`IP_RECVERR`/`IPV6_RECVERR`) and hands over what the kernel
//! gave: where our datagram went, who sent the error, its type and code, and
//! as much of our datagram as the error quoted. This module parses that; the
//! node matches it to an attempt, and the machine decides what it may end.
//!
//! Who vouches for an ICMP error: nobody. Anyone on the path, and anyone off
//! it who guesses the addresses and ports, can send one. So an error ends an
//! attempt at once only when the destination publishes no key (its anonymous
//! IKE protects against passive attackers only, and an active one can stop
//! it anyway) and the error quotes our attempt's random initiator SPI (an
//! attacker off the path cannot know it). Any other error only shortens the
//! wait to `icmp_grace`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Which "destination unreachable" came back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnreachableKind {
    /// The host is there and nothing listens on the port (it runs no IKE).
    Port,
    /// The host is unreachable (or, for ICMPv6, its address is).
    Host,
    /// No route to the network.
    Network,
    /// A firewall refused the datagram.
    Prohibited,
}

impl UnreachableKind {
    /// The kind of an ICMP (type 3, RFC 792/1812) or ICMPv6 (type 1, RFC
    /// 4443) destination-unreachable error; `None` for every other error
    /// (time exceeded, packet too big, parameter problem, source route
    /// failed, …): those say nothing about whether the peer runs IKE.
    pub fn from_icmp(v6: bool, icmp_type: u8, code: u8) -> Option<Self> {
        use UnreachableKind::*;
        if v6 {
            if icmp_type != 1 {
                return None;
            }
            return match code {
                0 => Some(Network),            // no route to destination
                1 | 5 | 6 => Some(Prohibited), // admin prohibited, policy, reject route
                3 => Some(Host),               // address unreachable
                4 => Some(Port),
                _ => None,
            };
        }
        if icmp_type != 3 {
            return None;
        }
        match code {
            0 | 6 | 11 => Some(Network),
            1 | 7 | 12 => Some(Host),
            3 => Some(Port),
            9 | 10 | 13 => Some(Prohibited),
            _ => None, // 2 protocol, 4 fragmentation needed, 5 source route, 14, 15
        }
    }
}

impl fmt::Display for UnreachableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnreachableKind::Port => "port unreachable",
            UnreachableKind::Host => "host unreachable",
            UnreachableKind::Network => "network unreachable",
            UnreachableKind::Prohibited => "administratively prohibited",
        })
    }
}

/// An ICMP error for one of this host's IKE datagrams.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Unreachable {
    /// Where our datagram went (address and port).
    pub to: SocketAddr,
    /// Who sent the error (the peer itself or a router on the way), if the
    /// kernel said.
    pub from: Option<IpAddr>,
    /// What it said.
    pub kind: UnreachableKind,
    /// The IKE initiator SPI of our datagram, when the error quoted that much
    /// of it (hosts quote the whole datagram; some routers only its UDP header).
    pub spi_i: Option<u64>,
}

impl Unreachable {
    /// Reads one error queue entry. `quoted` is the UDP payload of our
    /// datagram as far as the error quoted it; `natt` says it was sent on the
    /// NAT-T port, where IKE follows a four-byte zero marker (RFC 3948 §2.2).
    /// `None` when it is not a destination-unreachable error, or the datagram
    /// was ESP rather than IKE.
    pub fn parse(
        to: SocketAddr,
        from: Option<IpAddr>,
        v6: bool,
        icmp_type: u8,
        code: u8,
        quoted: &[u8],
        natt: bool,
    ) -> Option<Unreachable> {
        let kind = UnreachableKind::from_icmp(v6, icmp_type, code)?;
        let ike = if natt {
            match quoted {
                [0, 0, 0, 0, rest @ ..] => rest,
                [] => &[][..],
                // A non-zero marker is an ESP SPI: not an IKE datagram.
                _ if quoted.len() >= 4 => return None,
                _ => &[][..],
            }
        } else {
            quoted
        };
        let spi_i = ike
            .first_chunk::<8>()
            .map(|b| u64::from_be_bytes(*b))
            .filter(|&s| s != 0);
        Some(Unreachable {
            to: SocketAddr::new(to.ip().to_canonical(), to.port()),
            from: from.map(|a| a.to_canonical()),
            kind,
            spi_i,
        })
    }
}

impl fmt::Display for Unreachable {
    /// `port unreachable (ICMP from 192.0.2.7)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        match self.from {
            Some(from) => write!(f, " (ICMP from {from})"),
            None => f.write_str(" (ICMP)"),
        }
    }
}

/// What an ICMP error did (for metrics: `oemesh_icmp_errors_total{fate}`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnreachableFate {
    /// It ended the attempt with a keyless destination.
    Ended,
    /// It shortened the wait of an attempt to `icmp_grace`.
    Shortened,
    /// It matched no attempt waiting for its first answer (late, for another
    /// datagram, or forged with a wrong SPI).
    Ignored,
}

impl UnreachableFate {
    /// All fates, in label order.
    pub const ALL: [UnreachableFate; 3] = [
        UnreachableFate::Ended,
        UnreachableFate::Shortened,
        UnreachableFate::Ignored,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            UnreachableFate::Ended => "ended",
            UnreachableFate::Shortened => "shortened",
            UnreachableFate::Ignored => "ignored",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(spi: u64) -> Vec<u8> {
        let mut m = spi.to_be_bytes().to_vec();
        m.extend_from_slice(&[0; 8]); // SPIr
        m.extend_from_slice(&[33, 0x20, 34, 0x08, 0, 0, 0, 0, 0, 0, 0, 28]);
        m
    }

    #[test]
    fn port_unreachable_quoting_the_whole_datagram_names_the_spi() {
        let to: SocketAddr = "192.0.2.7:500".parse().unwrap();
        let from = Some("192.0.2.7".parse().unwrap());
        let u = Unreachable::parse(to, from, false, 3, 3, &init(0x1122), false).unwrap();
        assert_eq!(u.kind, UnreachableKind::Port);
        assert_eq!(u.spi_i, Some(0x1122));
        assert_eq!(u.to_string(), "port unreachable (ICMP from 192.0.2.7)");
    }

    #[test]
    fn a_short_quote_has_no_spi_and_an_esp_quote_is_not_ike() {
        let to: SocketAddr = "[2001:db8::7]:4500".parse().unwrap();
        let u = Unreachable::parse(to, None, true, 1, 4, &[0, 0, 0, 0, 1, 2], true).unwrap();
        assert_eq!((u.kind, u.spi_i), (UnreachableKind::Port, None));
        let mut natt = vec![0, 0, 0, 0];
        natt.extend(init(7));
        let u = Unreachable::parse(to, None, true, 1, 4, &natt, true).unwrap();
        assert_eq!(u.spi_i, Some(7));
        assert!(Unreachable::parse(to, None, true, 1, 4, &[0, 0, 1, 0, 9, 9], true).is_none());
    }

    #[test]
    fn only_destination_unreachable_counts() {
        // Time exceeded, fragmentation needed, packet too big: not about IKE.
        assert!(UnreachableKind::from_icmp(false, 11, 0).is_none());
        assert!(UnreachableKind::from_icmp(false, 3, 4).is_none());
        assert!(UnreachableKind::from_icmp(true, 2, 0).is_none());
        assert_eq!(
            UnreachableKind::from_icmp(false, 3, 13),
            Some(UnreachableKind::Prohibited)
        );
        assert_eq!(
            UnreachableKind::from_icmp(true, 1, 3),
            Some(UnreachableKind::Host)
        );
    }

    #[test]
    fn v4_mapped_addresses_are_canonical() {
        let to: SocketAddr = "[::ffff:192.0.2.7]:500".parse().unwrap();
        let from = Some("::ffff:192.0.2.7".parse().unwrap());
        let u = Unreachable::parse(to, from, false, 3, 3, &init(1), false).unwrap();
        assert_eq!(u.to, "192.0.2.7:500".parse().unwrap());
        assert_eq!(u.from, Some("192.0.2.7".parse().unwrap()));
    }
}
