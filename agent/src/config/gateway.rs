//! `[gateway]`: gateway mode (issue 14). The agent protects the subnets behind
//! it: it answers IKE for traffic selectors inside `protects`, encrypts
//! traffic forwarded from them to OE destinations (the kernel routes it into
//! the TUN like this host's own), and writes what it decrypts for them to the
//! TUN, from where the kernel forwards it to the LAN.
//!
//! Traffic *to* a protected subnet never enters the TUN: each prefix is a
//! `throw` in our table ([`Config::routed_entries`](super::Config::routed_entries)),
//! and a policy line that would route a part of one into the TUN is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use oemesh_core::ike::message::{AddrRange, AddrSelector};

use super::raw::RawGateway;
use super::{Cidr, Config, KeyError, routed_to_tun};

/// `[gateway]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayConfig {
    /// `gateway.protects`: the subnets behind this host; empty: a host, not a
    /// gateway.
    pub protects: Vec<Cidr>,
}

impl GatewayConfig {
    /// Whether this agent is a gateway.
    pub fn enabled(&self) -> bool {
        !self.protects.is_empty()
    }

    /// The IKE engine's `protects`: one address range per prefix (every
    /// protocol and port).
    pub fn selectors(&self) -> Vec<AddrSelector> {
        self.protects.iter().map(|p| selector(*p)).collect()
    }

    /// `gateway: protects 10.1.0.0/24, 2001:db8:1::/64` for status and the
    /// log; `None` for a host.
    pub fn describe(&self) -> Option<String> {
        self.enabled().then(|| {
            let list: Vec<String> = self.protects.iter().map(ToString::to_string).collect();
            format!("protects {}", list.join(", "))
        })
    }
}

/// The traffic selector of `prefix`: from its first to its last address.
fn selector(prefix: Cidr) -> AddrSelector {
    let len = u32::from(prefix.prefix_len());
    let addrs = match prefix.addr() {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(len).unwrap_or(0);
            AddrRange::V4(a, Ipv4Addr::from(a.to_bits() | host))
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(len).unwrap_or(0);
            AddrRange::V6(a, Ipv6Addr::from(a.to_bits() | host))
        }
    };
    AddrSelector {
        addrs,
        ..AddrSelector::host(prefix.addr())
    }
}

/// Whether two prefixes share an address.
fn overlap(a: Cidr, b: Cidr) -> bool {
    a.contains(b.addr()) || b.contains(a.addr())
}

/// `[gateway] protects`, checked against what `cfg` already holds (this
/// host's `address`, `nat.pool`): each entry a prefix without host bits, not
/// a whole family, not holding this host's own address (a gateway is not
/// behind itself), not overlapping `nat.pool` or another entry.
pub(super) fn validate(raw: RawGateway, cfg: &Config) -> (GatewayConfig, Vec<KeyError>) {
    let mut errors = Vec::new();
    let mut protects: Vec<Cidr> = Vec::new();
    for (i, text) in raw.protects.unwrap_or_default().iter().enumerate() {
        let key = format!("gateway.protects[{i}]");
        let mut fail = |message: String| {
            errors.push(KeyError {
                key: key.clone(),
                message,
            })
        };
        let p = match text.parse::<Cidr>() {
            Ok(p) => p,
            Err(e) => {
                fail(format!(
                    "not a prefix: {e}; write the subnet behind this gateway, e.g. \"10.1.0.0/24\""
                ));
                continue;
            }
        };
        if p.is_default() {
            fail(format!(
                "{p} is a whole address family; list the prefixes of the subnets behind this gateway"
            ));
        } else if let Some(own) = cfg.address.and_then(|a| a.iter().find(|a| p.contains(*a))) {
            fail(format!(
                "{p} holds this host's own address {own} (`address`); a gateway is not behind \
                 itself: list only the subnets behind it, or set `address` to its outer address"
            ));
        } else if let Some(pool) = cfg.nat.pool.iter().find(|q| overlap(p, **q)) {
            fail(format!(
                "{p} overlaps nat.pool {pool} (addresses this host gives initiators behind a \
                 NAT); set nat.pool to a range no subnet here uses"
            ));
        } else if let Some(other) = protects.iter().find(|q| overlap(p, **q)) {
            fail(format!(
                "{p} overlaps {other}, listed before it; list each subnet once (the larger prefix covers the smaller)"
            ));
        } else {
            protects.push(p);
        }
    }
    let gateway = GatewayConfig { protects };
    errors.extend(policy_conflicts(cfg, &gateway));
    (gateway, errors)
}

/// Policy lines that would route (a part of) a protected subnet into the
/// TUN: traffic to the LAN behind a gateway goes to the LAN, never through
/// the agent. `clear` and `clear-or-private` lines there are allowed (they
/// route nothing into the TUN either).
pub fn policy_conflicts(cfg: &Config, gateway: &GatewayConfig) -> Vec<KeyError> {
    let mut errors = Vec::new();
    // The key is the group's list; the message names the prefix (the
    // validated policy keeps prefixes sorted, not as written).
    for &(prefix, group) in cfg.policy.entries() {
        if !routed_to_tun(group) {
            continue;
        }
        if let Some(p) = gateway
            .protects
            .iter()
            .find(|p| p.contains(prefix.addr()) && p.prefix_len() <= prefix.prefix_len())
        {
            errors.push(KeyError {
                key: format!("policy.{group}"),
                message: format!(
                    "{prefix} is inside gateway.protects {p}: traffic to a protected subnet goes \
                     to the LAN, never into the TUN; remove {prefix} from policy.{group} (or list \
                     it under clear), or take {p} out of gateway.protects"
                ),
            });
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::super::{Group, ParseError};
    use super::*;

    fn errors(text: &str) -> Vec<KeyError> {
        match Config::parse(text) {
            Err(ParseError::Invalid(errors)) => errors,
            other => panic!("expected validation errors for {text:?}, got {other:?}"),
        }
    }

    fn one_error(text: &str) -> KeyError {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn protects_parses_and_routes_as_throw() {
        let cfg = Config::parse(
            "address = \"192.0.2.1\"\n[policy]\nprivate-or-clear = [\"10.0.0.0/8\"]\n\
             [gateway]\nprotects = [\"10.1.0.0/24\", \"2001:db8:1::/64\"]\n",
        )
        .unwrap();
        assert_eq!(
            cfg.gateway.protects,
            [c("10.1.0.0/24"), c("2001:db8:1::/64")]
        );
        assert!(cfg.gateway.enabled() && !Config::default().gateway.enabled());
        let routed = cfg.routed_entries();
        assert!(
            routed.contains(&(c("10.1.0.0/24"), Group::Clear)),
            "{routed:?}"
        );
        assert!(routed.contains(&(c("2001:db8:1::/64"), Group::Clear)));
        assert!(routed.contains(&(c("10.0.0.0/8"), Group::PrivateOrClear)));
        assert_eq!(
            cfg.gateway.describe().unwrap(),
            "protects 10.1.0.0/24, 2001:db8:1::/64"
        );
        // A protected prefix the policy lists as clear is routed once.
        let cfg = Config::parse(
            "[policy]\nclear = [\"10.1.0.0/24\"]\n[gateway]\nprotects = [\"10.1.0.0/24\"]\n",
        )
        .unwrap();
        let n = cfg
            .routed_entries()
            .iter()
            .filter(|(p, _)| *p == c("10.1.0.0/24"))
            .count();
        assert_eq!(n, 1);
    }

    #[test]
    fn selectors_span_each_prefix() {
        let sel = selector(c("10.1.0.0/24"));
        assert_eq!(
            sel.addrs,
            AddrRange::V4("10.1.0.0".parse().unwrap(), "10.1.0.255".parse().unwrap())
        );
        assert_eq!(
            (sel.ip_protocol, sel.start_port, sel.end_port),
            (0, 0, 65535)
        );
        let sel = selector(c("2001:db8:1::/64"));
        assert_eq!(
            sel.addrs,
            AddrRange::V6(
                "2001:db8:1::".parse().unwrap(),
                "2001:db8:1:0:ffff:ffff:ffff:ffff".parse().unwrap()
            )
        );
        let host = selector(c("10.1.0.7/32"));
        assert_eq!(host, AddrSelector::host("10.1.0.7".parse().unwrap()));
    }

    #[test]
    fn each_refusal_names_the_entry_and_what_to_do() {
        let e = one_error("[gateway]\nprotects = [\"10.1.0.1/24\"]\n");
        assert_eq!(e.key, "gateway.protects[0]");
        assert!(
            e.message
                .contains("host bits are set (the network is 10.1.0.0/24)"),
            "{e}"
        );
        let e = one_error("[gateway]\nprotects = [\"10.1.0.0/24\", \"lan\"]\n");
        assert_eq!(e.key, "gateway.protects[1]");
        assert!(e.message.contains("not a prefix"), "{e}");
        let e = one_error("[gateway]\nprotects = [\"0.0.0.0/0\"]\n");
        assert!(e.message.contains("whole address family"), "{e}");
        // This host's own (outer) address.
        let e = one_error(
            "address = [\"192.0.2.1\", \"2001:db8::1\"]\n[gateway]\nprotects = [\"2001:db8::/48\"]\n",
        );
        assert!(e.message.contains("own address 2001:db8::1"), "{e}");
        assert!(e.message.contains("not behind itself"), "{e}");
        // The NAT pool (the default one, and a configured one).
        let e = one_error("[gateway]\nprotects = [\"100.64.0.0/10\"]\n");
        assert!(e.message.contains("overlaps nat.pool 100.64.0.0/16"), "{e}");
        let e =
            one_error("[nat]\npool = [\"10.9.0.0/16\"]\n[gateway]\nprotects = [\"10.9.3.0/24\"]\n");
        assert!(e.message.contains("overlaps nat.pool 10.9.0.0/16"), "{e}");
        // Duplicates and overlaps among the entries.
        let e = one_error("[gateway]\nprotects = [\"10.1.0.0/24\", \"10.1.0.0/24\"]\n");
        assert_eq!(e.key, "gateway.protects[1]");
        assert!(e.message.contains("overlaps 10.1.0.0/24"), "{e}");
        let e = one_error("[gateway]\nprotects = [\"10.1.0.0/24\", \"10.0.0.0/8\"]\n");
        assert_eq!(e.key, "gateway.protects[1]");
        // A policy line that would route a protected subnet into the TUN.
        for group in ["private", "private-or-clear", "block"] {
            let e = one_error(&format!(
                "[policy]\n{group} = [\"10.1.0.128/25\"]\n[gateway]\nprotects = [\"10.1.0.0/24\"]\n"
            ));
            assert_eq!(e.key, format!("policy.{group}"));
            assert!(
                e.message.contains("inside gateway.protects 10.1.0.0/24"),
                "{e}"
            );
        }
        // Lines that route nothing into the TUN there, or cover it, are fine.
        Config::parse(
            "[policy]\nclear-or-private = [\"10.1.0.0/24\"]\nprivate = [\"10.0.0.0/8\"]\n\
             [gateway]\nprotects = [\"10.1.0.0/24\"]\n",
        )
        .unwrap();
    }
}
