//! Traffic selector narrowing (RFC 7296 §2.9).
//!
//! The responder intersects what the initiator proposed with its own view and
//! answers with the intersection; the initiator checks the answer is a subset of
//! its proposal. For opportunistic encryption the usual result is host to host:
//! `TSi = initiator/32`, `TSr = responder/32` (or /128), any protocol and port.

use std::net::IpAddr;

use crate::ike::message::{AddrRange, AddrSelector, TrafficSelector, Ts};

/// What a responder accepts as the traffic of a CHILD SA.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TsPolicy {
    /// Host to host: TSi narrowed to the initiator's address, TSr to ours
    /// (the addresses the IKE SA runs between), each side widened by what
    /// the caller allows beyond its host: the subnets DNS vouched for on the
    /// initiator's side, this gateway's `protects` on ours. The OE default.
    #[default]
    Hosts,
    /// Whatever the initiator proposes (tests, interop with subnet tunnels).
    AsProposed,
    /// Narrow TSi to `remote` and TSr to `local`.
    Narrow {
        /// The initiator's side.
        remote: Vec<AddrSelector>,
        /// This host's side.
        local: Vec<AddrSelector>,
    },
}

fn intersect_range<T: Ord + Copy>(a: (T, T), b: (T, T)) -> Option<(T, T)> {
    let lo = a.0.max(b.0);
    let hi = a.1.min(b.1);
    (lo <= hi).then_some((lo, hi))
}

/// The intersection of two address selectors, `None` when it is empty.
pub fn intersect(a: &AddrSelector, b: &AddrSelector) -> Option<AddrSelector> {
    let ip_protocol = match (a.ip_protocol, b.ip_protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let (start_port, end_port) =
        intersect_range((a.start_port, a.end_port), (b.start_port, b.end_port))?;
    let addrs = match (a.addrs, b.addrs) {
        (AddrRange::V4(s1, e1), AddrRange::V4(s2, e2)) => {
            let (s, e) = intersect_range((s1, e1), (s2, e2))?;
            AddrRange::V4(s, e)
        }
        (AddrRange::V6(s1, e1), AddrRange::V6(s2, e2)) => {
            let (s, e) = intersect_range((s1, e1), (s2, e2))?;
            AddrRange::V6(s, e)
        }
        _ => return None,
    };
    Some(AddrSelector {
        ip_protocol,
        start_port,
        end_port,
        addrs,
    })
}

/// Whether `inner` lies inside `outer`.
pub fn contains(outer: &AddrSelector, inner: &AddrSelector) -> bool {
    intersect(outer, inner).as_ref() == Some(inner)
}

/// The address selectors of a TS payload (other types are ignored, §3.13.1).
pub(crate) fn addr_selectors(ts: &Ts) -> Vec<AddrSelector> {
    ts.selectors
        .iter()
        .filter_map(|s| match s {
            TrafficSelector::Addr(a) => Some(a.clone()),
            TrafficSelector::Unknown { .. } => None,
        })
        .collect()
}

/// A TS payload holding `selectors`.
pub(crate) fn to_payload(selectors: &[AddrSelector]) -> Ts {
    Ts {
        selectors: selectors
            .iter()
            .cloned()
            .map(TrafficSelector::Addr)
            .collect(),
    }
}

/// Narrows `proposed` to `allowed`: every non-empty pairwise intersection.
pub fn narrow(proposed: &[AddrSelector], allowed: &[AddrSelector]) -> Vec<AddrSelector> {
    let mut out: Vec<AddrSelector> = Vec::new();
    for p in proposed {
        for a in allowed {
            if let Some(i) = intersect(p, a)
                && !out.contains(&i)
            {
                out.push(i);
            }
        }
    }
    out
}

impl TsPolicy {
    /// The responder's narrowing of `(TSi, TSr)` for an IKE SA between
    /// `remote` (initiator) and `local`, each with the selectors `Hosts`
    /// allows beyond that host (`remote_more`, `local_more`); `None` if either
    /// side ends up empty.
    pub fn apply(
        &self,
        tsi: &[AddrSelector],
        tsr: &[AddrSelector],
        (remote, remote_more): (IpAddr, &[AddrSelector]),
        (local, local_more): (IpAddr, &[AddrSelector]),
    ) -> Option<(Vec<AddrSelector>, Vec<AddrSelector>)> {
        let with_host = |host: IpAddr, more: &[AddrSelector]| {
            let mut all = Vec::with_capacity(1 + more.len());
            all.push(AddrSelector::host(host));
            all.extend(more.iter().cloned());
            all
        };
        let (i, r) = match self {
            TsPolicy::Hosts => {
                let ours = with_host(local, local_more);
                // §2.9: a first TSr of one address is the packet's
                // destination: not ours to answer for, nothing is (a
                // gateway's proposal adds room for its site after it).
                if let Some(first) = tsr.first()
                    && first.single_address().is_some()
                    && narrow(std::slice::from_ref(first), &ours).is_empty()
                {
                    return None;
                }
                (
                    dedup(narrow(tsi, &with_host(remote, remote_more))),
                    dedup(narrow(tsr, &ours)),
                )
            }
            TsPolicy::AsProposed => (tsi.to_vec(), tsr.to_vec()),
            TsPolicy::Narrow { remote, local } => (narrow(tsi, remote), narrow(tsr, local)),
        };
        (!i.is_empty() && !r.is_empty()).then_some((i, r))
    }
}

/// `selectors` without those inside another one of them (narrowing against
/// overlapping allowances yields both a subnet and a host inside it).
fn dedup(mut selectors: Vec<AddrSelector>) -> Vec<AddrSelector> {
    let mut i = 0;
    while i < selectors.len() {
        let covered = selectors.iter().enumerate().any(|(j, other)| {
            j != i && contains(other, &selectors[i]) && (selectors[i] != *other || j < i)
        });
        if covered {
            selectors.remove(i);
        } else {
            i += 1;
        }
    }
    selectors
}

/// A selector for people: `10.1.0.0/24`, `192.0.2.7`, or a range
/// `10.1.0.1-10.1.0.9`, with `proto N` and ports when narrower than all.
pub fn describe(sel: &AddrSelector) -> String {
    let addrs = match sel.as_prefix() {
        Some((a, len)) if (a.is_ipv4() && len == 32) || len == 128 => a.to_string(),
        Some((a, len)) => format!("{a}/{len}"),
        None => match sel.addrs {
            AddrRange::V4(lo, hi) => format!("{lo}-{hi}"),
            AddrRange::V6(lo, hi) => format!("{lo}-{hi}"),
        },
    };
    let mut out = addrs;
    if sel.ip_protocol != 0 {
        out.push_str(&format!(" proto {}", sel.ip_protocol));
    }
    if (sel.start_port, sel.end_port) != (0, u16::MAX) {
        out.push_str(&format!(" ports {}-{}", sel.start_port, sel.end_port));
    }
    out
}

/// Initiator: every selector of the answer lies inside one it proposed.
pub(crate) fn is_subset(answer: &[AddrSelector], proposed: &[AddrSelector]) -> bool {
    !answer.is_empty()
        && answer
            .iter()
            .all(|a| proposed.iter().any(|p| contains(p, a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str) -> AddrSelector {
        AddrSelector {
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            addrs: AddrRange::V4(start.parse().unwrap(), end.parse().unwrap()),
        }
    }

    #[test]
    fn narrows_a_subnet_to_the_host() {
        let host = AddrSelector::host("192.0.2.7".parse().unwrap());
        assert_eq!(
            narrow(
                &[range("192.0.2.0", "192.0.2.255")],
                std::slice::from_ref(&host)
            ),
            vec![host.clone()]
        );
        assert!(
            narrow(
                &[range("198.51.100.0", "198.51.100.255")],
                std::slice::from_ref(&host)
            )
            .is_empty()
        );
        let tcp = AddrSelector {
            ip_protocol: 6,
            start_port: 80,
            end_port: 80,
            ..host.clone()
        };
        assert_eq!(intersect(&host, &tcp), Some(tcp.clone()));
        assert!(contains(&host, &tcp) && !contains(&tcp, &host));
        let v6 = AddrSelector::host("2001:db8::1".parse().unwrap());
        assert_eq!(intersect(&host, &v6), None);
    }

    #[test]
    fn policy_hosts() {
        let any = range("0.0.0.0", "255.255.255.255");
        let any = [any];
        let (i, r) = TsPolicy::Hosts
            .apply(
                &any,
                &any,
                ("192.0.2.1".parse().unwrap(), &[]),
                ("192.0.2.2".parse().unwrap(), &[]),
            )
            .unwrap();
        assert_eq!(i, [AddrSelector::host("192.0.2.1".parse().unwrap())]);
        assert_eq!(r, [AddrSelector::host("192.0.2.2".parse().unwrap())]);
    }

    #[test]
    fn a_gateway_narrows_to_its_host_and_what_it_protects() {
        let site = AddrSelector::subnet("10.1.0.0".parse().unwrap(), 24);
        let gw: IpAddr = "192.0.2.31".parse().unwrap();
        let peer: IpAddr = "192.0.2.32".parse().unwrap();
        let far = AddrSelector::subnet("10.2.0.0".parse().unwrap(), 24);
        // The initiator proposes its host and its site; TSr one host behind us.
        let tsi = [AddrSelector::host(peer), far.clone()];
        let inside = AddrSelector::host("10.1.0.10".parse().unwrap());
        let (i, r) = TsPolicy::Hosts
            .apply(
                &tsi,
                std::slice::from_ref(&inside),
                (peer, std::slice::from_ref(&far)),
                (gw, std::slice::from_ref(&site)),
            )
            .unwrap();
        assert_eq!(i, tsi);
        assert_eq!(r, [inside]);
        // Without DNS vouching for its site: only its host.
        let (i, _) = TsPolicy::Hosts
            .apply(
                &tsi,
                &[AddrSelector::host(gw)],
                (peer, &[]),
                (gw, std::slice::from_ref(&site)),
            )
            .unwrap();
        assert_eq!(i, [AddrSelector::host(peer)]);
        // A TSr outside what we protect: nothing left, TS_UNACCEPTABLE.
        let outside = AddrSelector::host("10.9.0.1".parse().unwrap());
        assert!(
            TsPolicy::Hosts
                .apply(
                    &tsi,
                    &[outside],
                    (peer, &[]),
                    (gw, std::slice::from_ref(&site))
                )
                .is_none()
        );
    }

    #[test]
    fn selectors_that_are_prefixes() {
        let sub = AddrSelector::subnet("10.1.0.77".parse().unwrap(), 24);
        assert_eq!(
            sub.addrs,
            AddrRange::V4("10.1.0.0".parse().unwrap(), "10.1.0.255".parse().unwrap())
        );
        assert_eq!(sub.as_prefix(), Some(("10.1.0.0".parse().unwrap(), 24)));
        let h = AddrSelector::host("2001:db8::1".parse().unwrap());
        assert_eq!(h.as_prefix(), Some(("2001:db8::1".parse().unwrap(), 128)));
        let all = AddrSelector::any_of("0.0.0.0".parse().unwrap());
        assert_eq!(all.as_prefix(), Some(("0.0.0.0".parse().unwrap(), 0)));
        let v6 = AddrSelector::subnet("2001:db8:1::".parse().unwrap(), 48);
        assert_eq!(v6.as_prefix(), Some(("2001:db8:1::".parse().unwrap(), 48)));
        assert_eq!(range("10.1.0.1", "10.1.0.2").as_prefix(), None);
        assert_eq!(range("10.1.0.0", "10.1.0.2").as_prefix(), None);
        assert_eq!(range("10.1.0.2", "10.1.0.1").as_prefix(), None);
    }
}
