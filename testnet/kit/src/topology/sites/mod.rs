//! Two sites behind gateways on the testnet's switch (issue 14): the
//! site-to-site and nested layouts that IPSECKEY's gateway field was made for.
//!
//! ```text
//! switch (WAN 192.0.2.0/24) ── gw-a (192.0.2.31) ── LAN A 10.1.0.0/24 (gw-a 10.1.0.1)
//!                                                     ├ a-plain 10.1.0.10 (no agent)
//!                                                     └ a-agent 10.1.0.11 (agent, own key)
//!                           ── gw-b (192.0.2.32) ── LAN B 10.2.0.0/24 (gw-b 10.2.0.1)
//!                                                     ├ b-plain 10.2.0.10 (no agent)
//!                                                     └ b-agent 10.2.0.11 (agent, own key)
//! ```
//!
//! [`Testnet::two_sites`] builds it ([`SitesOptions`]). Every address is a
//! constant here ([`SITES`], [`SiteSpec`], [`PLAIN_HOST`], [`AGENT_HOST`]).
//!
//! - **Routing, no NAT.** Each gateway is a namespace that forwards
//!   (`ip_forward`, IPv6 forwarding) with loose reverse-path filtering
//!   (`rp_filter=2`) and no masquerade. Every host on the WAN (alice … dave,
//!   `dns`) and the other gateway (if it runs oemesh) route each LAN via its
//!   gateway's WAN address.
//!   LAN hosts have a default route via their gateway.
//! - **Agents.** Each gateway runs `oemesh run` with its own key,
//!   `address` = its WAN address and `[gateway] protects` = its LAN; each
//!   `*-agent` host runs one with a key of its own. Every agent's
//!   `private-or-clear` group gets the other sites' LANs beside the base
//!   config's prefixes (never its own LAN). [`SitesOptions::oemesh_gateways`]
//!   leaves a gateway without `oemesh` (a plain router, e.g. for a strongSwan in
//!   its place).
//! - **Records** ([`SitesOptions::publish`]), in the reverse zones BIND serves
//!   for the LANs ([`crate::bind::SITE_ZONES`]), all with the real `dnskeys
//!   publish` but the A/AAAA records: per gateway a wildcard
//!   `*.0.1.10.in-addr.arpa. IPSECKEY 10 1 4 192.0.2.31 <gw-a key>`
//!   (`--subnet`), its own record at its WAN address (`--ip`) and an A/AAAA
//!   record `gw-a.oe.test.`; per agent host behind a gateway its own key at
//!   precedence 5 without a gateway AND a precedence-10 record naming its
//!   gateway with the gateway's key (a name that has records of its own is
//!   not covered by the wildcard, RFC 4592).
//! - **Captures.** The testnet's switch sees the WAN ([`Testnet::capture`]);
//!   [`Site::capture_lan`] sees everything on one LAN, [`Site::capture_wan`]
//!   what one gateway sends and receives on the WAN.
//! - **IPv6.** The LANs are addressed (`2001:db8:1::/64`, `2001:db8:2::/64`)
//!   and routed, in the clear: the gateways protect only the IPv4 LANs.
//!
//! Teardown on drop: the LAN hosts' agents, then each gateway (agent, then
//! namespace), then the LAN segments. Drop the [`Sites`] before the
//! [`Testnet`] (declare it after). The WAN hosts keep their routes to the
//! LANs (harmless; [`Testnet::two_sites`] replaces them when run again).

mod records;
mod spec;

pub use records::gateway_rdata;
pub use spec::{
    AGENT_HOST, GATEWAY_HOST, GATEWAY_PRECEDENCE, LAN_V4_LEN, LAN_V6_LEN, OWN_PRECEDENCE,
    PLAIN_HOST, SITE_A, SITE_B, SITES, SiteSpec,
};

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{AgentConfig, Host, Testnet};
use crate::capture::Capture;
use crate::netns::{Netns, Switch};
use crate::process::require_programs;
use records::{Owner, gateway_config, publish_record, publish_site, with_lans};

/// Bound on `sysctl` runs.
const SYSCTL_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Testnet::two_sites`] builds.
#[derive(Clone, Debug)]
pub struct SitesOptions {
    /// Run an agent with a key of its own on `a-agent` and `b-agent`
    /// (default true); false: they are plain hosts too.
    pub lan_agents: bool,
    /// Run `oemesh` (with a key) on each site's gateway, `[site A, site B]`
    /// (default both). A gateway without it only routes, and nothing is
    /// published for it: the place for a strongSwan gateway.
    pub oemesh_gateways: [bool; 2],
    /// Publish the records (default true): see the [module docs](self).
    pub publish: bool,
    /// Start the agents (default true): the gateways' first.
    pub start_agents: bool,
    /// The base of every agent's config: the sites add the other sites' LANs
    /// to `private-or-clear`, and to a gateway's `extra` its `[gateway]`
    /// section (so `extra` must not have one). The testnet's DNSSEC anchors
    /// are added when its zones are signed.
    pub agent: AgentConfig,
}

impl Default for SitesOptions {
    fn default() -> Self {
        SitesOptions {
            lan_agents: true,
            oemesh_gateways: [true, true],
            publish: true,
            start_agents: true,
            agent: AgentConfig::default(),
        }
    }
}

/// One site: its gateway, its LAN segment and the hosts on it.
#[derive(Debug)]
pub struct Site {
    // Field order is drop order: the LAN hosts' agents stop first, then the
    // gateway (agent, namespace), then the LAN segment.
    hosts: Vec<Host>,
    gateway: Host,
    lan: Switch,
    lan_if: String,
    spec: SiteSpec,
}

impl Site {
    /// Its addresses.
    pub fn spec(&self) -> &SiteSpec {
        &self.spec
    }

    /// The gateway: a [`Host`] whose namespace routes, whose address is its
    /// WAN address and whose interface is its WAN leg.
    pub fn gateway(&self) -> &Host {
        &self.gateway
    }

    /// The LAN hosts (`a-plain`, `a-agent`).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The LAN host without an agent.
    pub fn plain(&self) -> &Host {
        &self.hosts[0]
    }

    /// The LAN host with an agent (unless [`SitesOptions::lan_agents`] is false).
    pub fn agent(&self) -> &Host {
        &self.hosts[1]
    }

    /// The LAN segment (a bridge `br0` in a namespace of its own).
    pub fn lan(&self) -> &Switch {
        &self.lan
    }

    /// The gateway's LAN interface (in its namespace).
    pub fn lan_iface(&self) -> &str {
        &self.lan_if
    }

    /// tcpdump on the LAN's bridge, writing `<dir>/<name>.pcap`: every frame
    /// on the LAN, between its hosts and through the gateway.
    pub fn capture_lan(&self, dir: &Path, name: &str) -> Result<Capture> {
        let pcap = dir.join(format!("{name}.pcap"));
        Capture::start(self.lan.netns(), super::SWITCH_IFACE, "", &pcap)
    }

    /// tcpdump on the gateway's WAN interface: what the site sends into the
    /// world and gets back.
    pub fn capture_wan(&self, dir: &Path, name: &str) -> Result<Capture> {
        let pcap = dir.join(format!("{name}.pcap"));
        Capture::start(&self.gateway.ns, &self.gateway.iface, "", &pcap)
    }
}

/// The two sites [`Testnet::two_sites`] built. Drop it before the testnet.
#[derive(Debug)]
pub struct Sites {
    sites: [Site; 2],
}

impl Sites {
    /// Site A (`gw-a`, 10.1.0.0/24).
    pub fn a(&self) -> &Site {
        &self.sites[0]
    }

    /// Site B (`gw-b`, 10.2.0.0/24).
    pub fn b(&self) -> &Site {
        &self.sites[1]
    }

    /// Both sites, A first.
    pub fn sites(&self) -> &[Site; 2] {
        &self.sites
    }

    /// The gateway or LAN host called `name` (`gw-a`, `a-plain`, …).
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.sites
            .iter()
            .flat_map(|s| std::iter::once(&s.gateway).chain(&s.hosts))
            .find(|h| h.name == name)
    }

    /// `base` with every site's LAN added to `private-or-clear`: the config
    /// of a host on the WAN (alice) that does OE with the sites' hosts.
    /// Write it with [`Host::set_agent_config`] and restart the agent.
    pub fn wan_config(&self, base: &AgentConfig) -> AgentConfig {
        with_lans(base, None)
    }

    /// Publishes site `site`'s wildcard anew with `gateway` as its gateway
    /// field: an address (type 1 or 2) or a domain name (type 3, e.g.
    /// [`SiteSpec::gateway_fqdn`]), with the gateway's key, by
    /// `dnskeys publish --subnet` in the gateway's namespace (it replaces the
    /// record that carries the same key).
    pub fn publish_wildcard(&self, net: &Testnet, site: &Site, gateway: &str) -> Result<()> {
        let key = site
            .gateway
            .key_path()
            .with_context(|| format!("{} runs no oemesh: it has no key", site.spec.gateway))?;
        let subnet = Owner::Subnet(site.spec.lan_prefix());
        publish_record(
            net,
            &site.gateway,
            key,
            &subnet,
            GATEWAY_PRECEDENCE,
            gateway,
        )
    }

    /// Every namespace of the sites (gateways, LAN segments, LAN hosts).
    pub fn namespaces(&self) -> Vec<String> {
        let mut names = Vec::new();
        for s in &self.sites {
            names.push(s.gateway.ns.name().to_owned());
            names.push(s.lan.netns().name().to_owned());
            names.extend(s.hosts.iter().map(|h| h.ns.name().to_owned()));
        }
        names
    }

    /// How to reach each gateway and LAN host by hand.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for site in &self.sites {
            let hosts = std::iter::once(&site.gateway).chain(&site.hosts);
            for h in hosts {
                h.describe_into(&mut s, 8);
            }
            let _ = writeln!(
                s,
                "  LAN {}    ip netns exec {} tcpdump -ni br0",
                site.spec.lan_prefix(),
                site.lan.netns().name()
            );
        }
        s
    }

    /// Leaves everything running (no SIGTERM, no namespace deletion), for a
    /// kept demo that records [`Sites::namespaces`] and the agents' PIDs.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Testnet {
    /// Builds the two sites ([`SitesOptions`], layout in the
    /// [module docs](self)) on the switch: routes, keys, records, configs,
    /// and (unless told otherwise) starts the agents. Fails when a name is
    /// taken (another `two_sites` on this testnet) or `sysctl` is missing.
    pub fn two_sites(&self, opts: &SitesOptions) -> Result<Sites> {
        require_programs(&["sysctl"]);
        for spec in &SITES {
            for name in [
                spec.gateway.to_owned(),
                spec.plain_name(),
                spec.agent_name(),
            ] {
                if self.host(&name).is_some() {
                    bail!("site host name {name:?} is taken by the testnet");
                }
            }
        }
        let mut base = opts.agent.clone();
        if let Some(anchors) = self.anchor_file() {
            base.validate_dnssec(&anchors);
        }
        let [a, b] = SITES;
        let mut sites = Sites {
            sites: [
                build_site(self, &a, opts, opts.oemesh_gateways[0])?,
                build_site(self, &b, opts, opts.oemesh_gateways[1])?,
            ],
        };
        self.route_to_sites()?;
        let dnskeys = self.binaries.dnskeys.clone();
        for site in &mut sites.sites {
            if site.gateway.runs_agent {
                site.gateway.keygen(&dnskeys)?;
            }
            for h in site.hosts.iter_mut().filter(|h| h.runs_agent) {
                h.keygen(&dnskeys)?;
            }
        }
        if opts.publish {
            for site in &sites.sites {
                publish_site(self, site)?;
            }
        }
        for site in &sites.sites {
            if site.gateway.runs_agent {
                site.gateway
                    .set_agent_config(&gateway_config(&base, &site.spec))?;
            }
            for h in site.hosts.iter().filter(|h| h.runs_agent) {
                h.set_agent_config(&with_lans(&base, Some(&site.spec)))?;
            }
        }
        if opts.start_agents {
            let gateways = sites.sites.iter().map(|s| &s.gateway);
            let lan = sites.sites.iter().flat_map(|s| &s.hosts);
            for h in gateways.chain(lan).filter(|h| h.runs_agent) {
                h.start_agent()?;
            }
        }
        Ok(sites)
    }

    /// Routes from the WAN hosts and `dns` to each LAN via its gateway (with
    /// the device named: an agent's policy routing must not resolve the next
    /// hop to its TUN).
    fn route_to_sites(&self) -> Result<()> {
        let dns = (&self.dns().ns, "eth0");
        let wan = self.hosts().iter().map(|h| (&h.ns, h.iface.as_str()));
        for (ns, dev) in std::iter::once(dns).chain(wan) {
            for s in &SITES {
                route(ns, &s.lan_prefix(), IpAddr::V4(s.wan_v4), dev)?;
                route(ns, &s.lan_prefix_v6(), IpAddr::V6(s.wan_v6), dev)?;
            }
        }
        Ok(())
    }
}

/// `ip route replace PREFIX via GW dev DEV` (IPv4 or IPv6 by `via`).
fn route(ns: &Netns, prefix: &str, via: IpAddr, dev: &str) -> Result<()> {
    let via = via.to_string();
    let mut args = vec!["route", "replace", prefix, "via", &via, "dev", dev];
    if via.contains(':') {
        args.insert(0, "-6");
    }
    ns.ip(&args)
        .with_context(|| format!("{}: route {prefix} via {via}", ns.name()))
        .map(drop)
}

/// Forwarding on, reverse-path filtering loose (a gateway sees LAN sources on
/// its TUN, and decrypted packets arrive there from the WAN's peers).
fn enable_routing(ns: &Netns, name: &str, ifaces: &[&str]) -> Result<()> {
    let mut argv = vec![
        "sysctl".to_owned(),
        "-qw".to_owned(),
        "net.ipv4.ip_forward=1".to_owned(),
        "net.ipv6.conf.all.forwarding=1".to_owned(),
        "net.ipv4.conf.all.rp_filter=2".to_owned(),
        "net.ipv4.conf.default.rp_filter=2".to_owned(),
    ];
    argv.extend(
        ifaces
            .iter()
            .map(|i| format!("net.ipv4.conf.{i}.rp_filter=2")),
    );
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    ns.exec(&argv, SYSCTL_TIMEOUT)
        .with_context(|| format!("{name}: enabling forwarding"))
        .map(drop)
}

/// One site: the LAN segment, the gateway on the WAN and the LAN, the LAN
/// hosts with default routes via the gateway.
fn build_site(net: &Testnet, spec: &SiteSpec, opts: &SitesOptions, oemesh: bool) -> Result<Site> {
    let label = |s: &str| format!("{}-{s}", net.label);
    let lan = Switch::new(&label(&format!("lan-{}", spec.name)))?;
    let ns = Netns::new(&label(spec.gateway))?;
    let wan_if = net.switch().attach(&ns, &format!("{}/24", spec.wan_v4))?;
    ns.add_addr(&wan_if, &format!("{}/64", spec.wan_v6))?;
    let lan_if = lan.attach(&ns, &format!("{}/{LAN_V4_LEN}", spec.lan_gateway_v4()))?;
    let gw_v6 = spec.lan_host_v6(GATEWAY_HOST);
    ns.add_addr(&lan_if, &format!("{gw_v6}/{LAN_V6_LEN}"))?;
    enable_routing(&ns, spec.gateway, &[&wan_if, &lan_if])?;
    // An oemesh gateway routes the other LANs via their gateways: its agent
    // takes what its policy covers into the TUN, and what goes clear takes
    // this route. A gateway without oemesh gets none: the other LANs are
    // reached through its own tunnel (strongSwan's routes) or not at all; a
    // route here would leak in the clear, and charon's kernel-libipsec fails
    // to install its route via ipsec0 beside it ("error installing route").
    for other in SITES.iter().filter(|o| oemesh && *o != spec) {
        route(&ns, &other.lan_prefix(), IpAddr::V4(other.wan_v4), &wan_if)?;
        route(
            &ns,
            &other.lan_prefix_v6(),
            IpAddr::V6(other.wan_v6),
            &wan_if,
        )?;
    }
    let log_level = net
        .hosts()
        .first()
        .map_or_else(|| "debug".to_owned(), |h| h.log_level.clone());
    let host = |ns: Netns, name: String, v4, v6, iface, runs_agent| Host {
        agent: Mutex::new(None),
        ns,
        name,
        v4,
        v6,
        iface,
        key: None,
        public_key: None,
        runs_agent,
        dir: net.dir().to_owned(),
        oemesh: net.binaries.oemesh.clone(),
        log_level: log_level.clone(),
    };
    let mut hosts = Vec::new();
    for (name, part, agent) in [
        (spec.plain_name(), PLAIN_HOST, false),
        (spec.agent_name(), AGENT_HOST, opts.lan_agents),
    ] {
        let hns = Netns::new(&label(&name))?;
        let (v4, v6) = (spec.lan_host_v4(part), spec.lan_host_v6(part));
        let iface = lan.attach(&hns, &format!("{v4}/{LAN_V4_LEN}"))?;
        hns.add_addr(&iface, &format!("{v6}/{LAN_V6_LEN}"))?;
        let gw4 = spec.lan_gateway_v4().to_string();
        hns.ip(&["route", "add", "default", "via", &gw4, "dev", &iface])?;
        let gw6 = gw_v6.to_string();
        hns.ip(&["-6", "route", "add", "default", "via", &gw6, "dev", &iface])?;
        hosts.push(host(hns, name, v4, v6, iface, agent));
    }
    let gateway = host(
        ns,
        spec.gateway.to_owned(),
        spec.wan_v4,
        spec.wan_v6,
        wan_if,
        oemesh,
    );
    Ok(Site {
        hosts,
        gateway,
        lan,
        lan_if,
        spec: *spec,
    })
}
