//! The sites' keys, records and agent configs.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};

use super::super::{AgentConfig, CLI_TIMEOUT, DnsHost, Host, Testnet};
use super::{GATEWAY_PRECEDENCE, OWN_PRECEDENCE, SITES, Site, SiteSpec};

/// The TTL of the records the sites publish.
pub(super) const TTL: u32 = 300;

/// IPSECKEY RDATA in presentation form, as dig prints it, for `key` (base64)
/// with `gateway` (an address, type 1 or 2, or a domain name, type 3).
pub fn gateway_rdata(precedence: u8, gateway: &str, key: &str) -> String {
    match gateway.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => format!("{precedence} 1 4 {a} {key}"),
        Ok(IpAddr::V6(a)) => format!("{precedence} 2 4 {a} {key}"),
        Err(_) if gateway.ends_with('.') => format!("{precedence} 3 4 {gateway} {key}"),
        Err(_) => format!("{precedence} 3 4 {gateway}. {key}"),
    }
}

/// `base` with the LANs of every site but `own` added to `private-or-clear`.
pub(super) fn with_lans(base: &AgentConfig, own: Option<&SiteSpec>) -> AgentConfig {
    let mut config = base.clone();
    let group = "private-or-clear";
    let mut prefixes: Vec<String> = config
        .policy
        .iter()
        .find(|(g, _)| g == group)
        .map(|(_, p)| p.clone())
        .unwrap_or_default();
    for s in SITES.iter().filter(|s| Some(*s) != own) {
        if !prefixes.contains(&s.lan_prefix()) {
            prefixes.push(s.lan_prefix());
        }
    }
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    config.set_policy(group, &prefixes);
    config
}

/// A gateway's config: [`with_lans`] and `[gateway] protects` = its LAN.
pub(super) fn gateway_config(base: &AgentConfig, spec: &SiteSpec) -> AgentConfig {
    let mut config = with_lans(base, Some(spec));
    if !config.extra.is_empty() {
        config.extra.push('\n');
    }
    let _ = write!(
        config.extra,
        "[gateway]\nprotects = [\"{}\"]",
        spec.lan_prefix()
    );
    config
}

/// Where a record goes: `--ip ADDR` (the reverse name) or `--subnet PREFIX`
/// (the subnet's wildcard).
pub(super) enum Owner {
    /// A host's reverse name.
    Ip(IpAddr),
    /// A subnet's wildcard (`dnskeys publish --subnet`).
    Subnet(String),
}

/// `dnskeys publish --key KEY --ip IP|--subnet PREFIX --precedence P
/// --gateway GW`, run in `admin`'s namespace (as that host's or site's admin
/// would) against the testnet's BIND with its TSIG key.
pub(super) fn publish_record(
    net: &Testnet,
    admin: &Host,
    key: &Path,
    owner: &Owner,
    precedence: u8,
    gateway: &str,
) -> Result<()> {
    let dns: &DnsHost = net.dns();
    let tsig = dns.bind.tsig_key_file();
    let (flag, at) = match owner {
        Owner::Ip(ip) => ("--ip", ip.to_string()),
        Owner::Subnet(prefix) => ("--subnet", prefix.clone()),
    };
    let (prec, server) = (precedence.to_string(), dns.bind.server());
    let argv = [
        net.binaries
            .dnskeys
            .to_str()
            .context("dnskeys path is not UTF-8")?,
        "publish",
        "--key",
        key.to_str().context("key path is not UTF-8")?,
        flag,
        &at,
        "--precedence",
        &prec,
        "--gateway",
        gateway,
        "--ttl",
        &TTL.to_string(),
        "--server",
        &server,
        "--tsig-key",
        tsig.to_str().context("TSIG path is not UTF-8")?,
    ];
    admin
        .ns
        .exec(&argv, CLI_TIMEOUT)
        .with_context(|| {
            format!(
                "{}: dnskeys publish {flag} {at} --gateway {gateway}",
                admin.name
            )
        })
        .map(drop)
}

/// The records of one site (see the [module docs](self)).
pub(super) fn publish_site(net: &Testnet, site: &Site) -> Result<()> {
    let spec = &site.spec;
    let gw = &site.gateway;
    let wan = spec.wan_v4.to_string();
    if let Some(gw_key) = gw.key_path() {
        let own = Owner::Ip(IpAddr::V4(spec.wan_v4));
        publish_record(net, gw, gw_key, &own, GATEWAY_PRECEDENCE, "none")?;
        let name = spec.gateway_fqdn();
        net.dns()
            .bind()
            .nsupdate(&format!(
                "update delete {name} A\nupdate delete {name} AAAA\n\
                 update add {name} {TTL} A {}\nupdate add {name} {TTL} AAAA {}",
                spec.wan_v4, spec.wan_v6
            ))
            .with_context(|| format!("publishing {name} A/AAAA"))?;
    }
    for h in site.hosts.iter().filter(|h| h.key.is_some()) {
        let key = h.key_path().context("a keyed host")?;
        let at = Owner::Ip(h.ip());
        publish_record(net, h, key, &at, OWN_PRECEDENCE, "none")?;
        if let Some(gw_key) = gw.key_path() {
            publish_record(net, gw, gw_key, &at, GATEWAY_PRECEDENCE, &wan)?;
        }
    }
    // The wildcard last, as a site's admin adding a gateway to a running
    // site would (dnskeys publishes at names under a wildcard either way).
    if let Some(gw_key) = gw.key_path() {
        let subnet = Owner::Subnet(spec.lan_prefix());
        publish_record(net, gw, gw_key, &subnet, GATEWAY_PRECEDENCE, &wan)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::sites::SITE_A;

    #[test]
    fn rdata_by_gateway_kind() {
        assert_eq!(gateway_rdata(10, "192.0.2.31", "K"), "10 1 4 192.0.2.31 K");
        assert_eq!(
            gateway_rdata(10, "2001:db8::31", "K"),
            "10 2 4 2001:db8::31 K"
        );
        assert_eq!(
            gateway_rdata(10, "gw-b.oe.test", "K"),
            "10 3 4 gw-b.oe.test. K"
        );
    }

    #[test]
    fn configs_add_the_other_lans() {
        let base = AgentConfig::default();
        let gw = gateway_config(&base, &SITE_A);
        let poc = &gw
            .policy
            .iter()
            .find(|(g, _)| g == "private-or-clear")
            .unwrap()
            .1;
        assert!(poc.contains(&"10.2.0.0/24".to_owned()), "{poc:?}");
        assert!(!poc.contains(&"10.1.0.0/24".to_owned()), "{poc:?}");
        assert!(gw.extra.contains("[gateway]\nprotects = [\"10.1.0.0/24\"]"));
        let wan = with_lans(&base, None);
        let poc = &wan
            .policy
            .iter()
            .find(|(g, _)| g == "private-or-clear")
            .unwrap()
            .1;
        assert_eq!(poc.len(), 3, "{poc:?}");
    }
}
