//! What `run` derives from the configuration: the IKE engine's and the
//! decision machine's settings, this host's credential, and the lines status
//! and the log show (shared with `crate::reload`).

use std::net::IpAddr;

use anyhow::Result;
use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::hostkey::HostKey;
use oemesh_core::ike::endpoint::{self as ike, LocalAuth};
use oemesh_core::ike::message::Identity;
use oemesh_core::oe;
use zeroize::Zeroizing;

use crate::config::{Addresses, Config};
use crate::dns::KeyResolver;

/// The policy as `oemesh status` lists it: `10.0.0.0/8 private`.
pub(crate) fn policy_lines(cfg: &Config) -> Vec<String> {
    cfg.policy
        .entries()
        .iter()
        .map(|(prefix, group)| format!("{prefix} {group}"))
        .collect()
}

/// The IKE identity as status shows it: with a key, each address (an IKE SA
/// speaks as the address it is on).
pub(crate) fn identity_text(address: Addresses, keyed: bool) -> String {
    if keyed {
        address.to_string()
    } else {
        "ID_NULL (anonymous)".to_owned()
    }
}

/// This host's credential and identity: its (first) address with a key,
/// ID_NULL and AUTH NULL without. The engine sends, instead of that address,
/// the one each IKE SA is on (`id_is_sa_address`), so a dual-stack host
/// speaks as its IPv6 address on IPv6 and is authenticated there by the key
/// published at that address's reverse name.
pub(crate) fn local_credential(address: Addresses, key: Option<&HostKey>) -> (LocalAuth, Identity) {
    match (key, address.first()) {
        (Some(k), Some(first)) => {
            let seed = Zeroizing::new(k.signing_key().to_bytes());
            let id = match first {
                IpAddr::V4(a) => Identity::Ipv4(a),
                IpAddr::V6(a) => Identity::Ipv6(a),
            };
            (LocalAuth::Ed25519(Ed25519SigningKey::from_seed(&seed)), id)
        }
        _ => (LocalAuth::Null, Identity::Null),
    }
}

/// The IKE engine's configuration: this host's credential and identity (its
/// address with a key; ID_NULL and AUTH NULL without), ports and lifetimes.
pub(crate) fn ike_config(cfg: &Config, address: Addresses, key: Option<&HostKey>) -> ike::Config {
    let (auth, id) = local_credential(address, key);
    let mut c = ike::Config::new(auth, id);
    c.ike_port = cfg.ike.port;
    c.natt_port = cfg.ike.natt_port;
    c.esp_algs = cfg.ike.esp_aead.proposal_order();
    c.ike_lifetime = cfg.ike.ike_lifetime;
    c.child_lifetime.hard.time = Some(cfg.ike.child_lifetime);
    c.dpd_interval = Some(cfg.ike.dpd_interval);
    c.nat_keepalive = Some(cfg.ike.nat_keepalive);
    c.exchange_timeout = cfg.ike.exchange_timeout;
    c.child_lifetime.soft.time = Some(cfg.ike.child_lifetime.saturating_sub(cfg.ike.rekey_margin));
    c.half_open_per_source = cfg.ike.half_open_per_source;
    c.anonymous_limit = cfg.ike.anonymous_limit;
    c.anonymous_per_source = cfg.ike.anonymous_per_source;
    c.request_address = if cfg.nat.request_address {
        ike::RequestAddress::BehindNat
    } else {
        ike::RequestAddress::Never
    };
    c.anonymous_behind_nat = cfg.nat.anonymous;
    c.address_pool = cfg
        .nat
        .pool
        .iter()
        .filter_map(|p| oemesh_core::ike::pool::PoolPrefix::new(p.addr(), p.prefix_len()))
        .collect();
    c.address_pool_limit = cfg.nat.max_addresses;
    // Gateway mode: the responder answers for selectors inside these.
    c.protects = cfg.gateway.selectors();
    c
}

/// The decision machine's configuration from `[dns]`, `[ike]`, `[hold]`, `[outcome]`.
pub(crate) fn machine_config(cfg: &Config) -> oe::Config {
    oe::Config {
        dns_timeout: cfg.dns.timeout,
        ike_timeout: cfg.ike.timeout,
        anonymous_timeout: cfg.ike.anonymous_timeout,
        icmp_grace: cfg.ike.icmp_grace,
        clear_lifetime: cfg.outcome.clear_lifetime,
        hold: oe::HoldLimits {
            packets_per_dst: cfg.hold.packets,
            bytes_per_dst: cfg.hold.bytes,
            total_bytes: cfg.hold.total_bytes,
            ..oe::HoldLimits::default()
        },
        private_memory: cfg.outcome.downgrade_guard,
        retry_lifetime: cfg.outcome.retry_lifetime,
        refuse_downgrade: cfg.outcome.refuse_downgrade,
        lookups_per_second: cfg.dns.lookups_per_second,
        lookup_burst: cfg.dns.lookup_burst,
        inbound_lookups_per_second: cfg.dns.inbound_lookups_per_second,
        inbound_lookup_burst: cfg.dns.inbound_lookup_burst,
        protects: cfg.gateway.protects.clone(),
        ..oe::Config::default()
    }
}

/// 32 bytes from the OS for the IKE engine's CSPRNG.
pub(crate) fn os_seed() -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("OS randomness: {e}"))?;
    Ok(seed)
}

/// Says at start who vouches for keys: the agent's own validation (and from
/// which anchors), the resolver's AD bit (a warning when that resolver is
/// not on loopback: anyone on the path to it can set AD), or nobody.
pub(crate) fn announce_dnssec(r: &KeyResolver) {
    use crate::config::DnssecMode;
    match r.dnssec_mode() {
        DnssecMode::Validate => tracing::info!("DNSSEC: {}", r.dnssec_summary()),
        DnssecMode::Resolver => {
            let remote: Vec<String> = r
                .servers()
                .iter()
                .filter(|s| !s.ip().is_loopback())
                .map(ToString::to_string)
                .collect();
            if remote.is_empty() {
                tracing::info!("DNSSEC: the AD bit of the local resolver is trusted");
            } else {
                tracing::warn!(
                    "DNSSEC: dns.dnssec = \"resolver\" trusts the AD bit of {}, which is not on \
                     loopback: anyone on the path to it can forge validated answers; use \
                     dns.dnssec = \"validate\" or a validating resolver on this host",
                    remote.join(", ")
                );
            }
        }
        DnssecMode::Off => {
            tracing::warn!("DNSSEC: off (dns.dnssec = \"off\"): no key from DNS is validated")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_gateway_s_protects_reach_both_engines() {
        let cfg = Config::parse(
            "address = \"192.0.2.1\"\n[gateway]\nprotects = [\"10.1.0.0/24\", \"2001:db8:1::/64\"]\n",
        )
        .unwrap();
        let address = cfg.address.unwrap();
        let ike = ike_config(&cfg, address, None);
        assert_eq!(ike.protects, cfg.gateway.selectors());
        assert_eq!(ike.protects.len(), 2);
        assert_eq!(machine_config(&cfg).protects, cfg.gateway.protects);
        // A host: none.
        let host = Config::parse("address = \"192.0.2.1\"\n").unwrap();
        assert!(ike_config(&host, address, None).protects.is_empty());
        assert!(machine_config(&host).protects.is_empty());
    }
}
