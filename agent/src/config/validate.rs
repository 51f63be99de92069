//! Validation of the parsed file ([`RawConfig`]) into [`Config`]: each key's
//! range and syntax checked, defaults filled in, and every problem collected
//! as a [`KeyError`] so that one run reports all of them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use oemesh_core::oe::Negotiation;
use oemesh_core::resolv::{self, ServerSpec};

use super::raw::{self, RawConfig};
use super::{Cidr, Config, DnssecMode, EspAead, Group, KeyError, Policy, defaults};

/// Collects problems so that one run reports all of them.
#[derive(Default)]
struct Checker {
    errors: Vec<KeyError>,
}

impl Checker {
    fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(KeyError {
            key: key.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, value: Option<String>, default: Duration) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                self.fail(
                    key,
                    format!("{text:?} is zero; give a positive duration like \"2s\""),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.fail(
                    key,
                    format!("{text:?} is not a duration: {e}; write it like \"2s\", \"500ms\" or \"15m\""),
                );
                default
            }
        }
    }

    fn positive(&mut self, key: &str, value: Option<usize>, default: usize) -> usize {
        match value {
            Some(0) => {
                self.fail(key, "must be at least 1");
                default
            }
            Some(v) => v,
            None => default,
        }
    }
}

pub(super) fn validate(raw: RawConfig) -> Result<Config, Vec<KeyError>> {
    let mut c = Checker::default();
    let mut cfg = Config {
        key: raw.key.map(PathBuf::from),
        ..Config::default()
    };
    if let Some(k) = &cfg.key
        && k.as_os_str().is_empty()
    {
        c.fail("key", "is empty; remove the key for anonymous-only operation or give the path of a PKCS#8 PEM file");
    }
    if let Some(a) = raw.address {
        match super::address::parse(a) {
            Ok(a) => cfg.address = Some(a),
            Err(errors) => errors.into_iter().for_each(|(k, m)| c.fail(k, m)),
        }
    }
    if let Some(s) = raw.control_socket {
        if s.is_empty() || !s.starts_with('/') {
            c.fail("control_socket", format!("{s:?} is not an absolute path"));
        } else {
            cfg.control_socket = s.into();
        }
    }
    if let Some(g) = raw.control_group {
        if g.is_empty() || g.contains([':', '\n', ' ']) {
            c.fail(
                "control_group",
                format!("{g:?} is not a group name or number"),
            );
        } else {
            cfg.control_group = Some(g);
        }
    }

    // [dns]
    if let Some(servers) = raw.dns.servers {
        for (i, s) in servers.iter().enumerate() {
            match parse_server(s) {
                Some(addr) => cfg.dns.servers.push(addr),
                None => c.fail(
                    format!("dns.servers[{i}]"),
                    format!("{s:?} is not an address with an optional port (write \"192.0.2.53\", \"192.0.2.53:53\" or \"[2001:db8::53]:53\")"),
                ),
            }
        }
    }
    cfg.dns.timeout = c.duration("dns.timeout", raw.dns.timeout, defaults::DNS_TIMEOUT);
    match raw.dns.dnssec.as_deref() {
        None | Some("validate") => cfg.dns.dnssec = DnssecMode::Validate,
        Some("resolver") => cfg.dns.dnssec = DnssecMode::Resolver,
        Some("off") => cfg.dns.dnssec = DnssecMode::Off,
        Some(other) => c.fail(
            "dns.dnssec",
            format!("{other:?} is not a DNSSEC mode; use validate (the agent checks signatures), resolver (trust the resolver's AD bit) or off"),
        ),
    }
    for (i, path) in raw
        .dns
        .trust_anchors
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let key = format!("dns.trust_anchors[{i}]");
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            c.fail(key, format!("{} is not an absolute path", path.display()));
            continue;
        }
        match crate::dns::load_anchors(std::slice::from_ref(&path)) {
            Ok(_) => cfg.dns.trust_anchors.push(path),
            Err(e) => c.fail(key, e),
        }
    }
    if !cfg.dns.trust_anchors.is_empty() && cfg.dns.dnssec != DnssecMode::Validate {
        c.fail(
            "dns.trust_anchors",
            format!("anchors are used only with dns.dnssec = \"validate\" (it is {:?}); remove them or validate", cfg.dns.dnssec.name()),
        );
    }
    let rate = |c: &mut Checker, key: &str, v: Option<usize>, d: u32| {
        u32::try_from(c.positive(key, v, d as usize)).unwrap_or(u32::MAX)
    };
    cfg.dns.lookups_per_second = rate(
        &mut c,
        "dns.lookups_per_second",
        raw.dns.lookups_per_second,
        defaults::LOOKUPS_PER_SECOND,
    );
    cfg.dns.lookup_burst = rate(
        &mut c,
        "dns.lookup_burst",
        raw.dns.lookup_burst,
        defaults::LOOKUP_BURST,
    );
    cfg.dns.inbound_lookups_per_second = rate(
        &mut c,
        "dns.inbound_lookups_per_second",
        raw.dns.inbound_lookups_per_second,
        defaults::INBOUND_LOOKUPS_PER_SECOND,
    );
    cfg.dns.inbound_lookup_burst = rate(
        &mut c,
        "dns.inbound_lookup_burst",
        raw.dns.inbound_lookup_burst,
        defaults::INBOUND_LOOKUP_BURST,
    );

    // [ike]
    let ike = raw.ike;
    cfg.ike.timeout = c.duration("ike.timeout", ike.timeout, defaults::IKE_TIMEOUT);
    cfg.ike.anonymous_timeout = c.duration(
        "ike.anonymous_timeout",
        ike.anonymous_timeout,
        defaults::ANONYMOUS_TIMEOUT,
    );
    cfg.ike.icmp_grace = c.duration("ike.icmp_grace", ike.icmp_grace, defaults::ICMP_GRACE);
    if cfg.ike.anonymous_timeout > cfg.ike.timeout {
        c.fail(
            "ike.anonymous_timeout",
            format!(
                "{} is longer than ike.timeout ({}); the anonymous wait is a part of it",
                humantime::format_duration(cfg.ike.anonymous_timeout),
                humantime::format_duration(cfg.ike.timeout)
            ),
        );
    }
    cfg.ike.port = ike.port.unwrap_or(defaults::IKE_PORT);
    cfg.ike.natt_port = ike.natt_port.unwrap_or(defaults::NATT_PORT);
    if cfg.ike.port == 0 {
        c.fail("ike.port", "must not be 0");
    }
    if cfg.ike.natt_port == 0 {
        c.fail("ike.natt_port", "must not be 0");
    }
    if cfg.ike.port == cfg.ike.natt_port && cfg.ike.port != 0 {
        c.fail(
            "ike.natt_port",
            format!(
                "equals ike.port ({}); the two need separate sockets",
                cfg.ike.port
            ),
        );
    }
    cfg.ike.ike_lifetime = c.duration("ike.ike_lifetime", ike.ike_lifetime, defaults::IKE_LIFETIME);
    cfg.ike.child_lifetime = c.duration(
        "ike.child_lifetime",
        ike.child_lifetime,
        defaults::CHILD_LIFETIME,
    );
    cfg.ike.rekey_margin = c.duration("ike.rekey_margin", ike.rekey_margin, defaults::REKEY_MARGIN);
    cfg.ike.idle_timeout = c.duration("ike.idle_timeout", ike.idle_timeout, defaults::IDLE_TIMEOUT);
    cfg.ike.dpd_interval = c.duration("ike.dpd_interval", ike.dpd_interval, defaults::DPD_INTERVAL);
    cfg.ike.nat_keepalive = c.duration(
        "ike.nat_keepalive",
        ike.nat_keepalive,
        defaults::NAT_KEEPALIVE,
    );
    cfg.ike.exchange_timeout = c.duration(
        "ike.exchange_timeout",
        ike.exchange_timeout,
        defaults::EXCHANGE_TIMEOUT,
    );
    cfg.ike.esp_aead = match ike.esp_aead.as_deref() {
        None => defaults::ESP_AEAD,
        Some(name) => EspAead::from_name(name).unwrap_or_else(|| {
            c.fail(
                "ike.esp_aead",
                format!(
                    "{name:?} is not an ESP AEAD; use one of {:?}",
                    EspAead::NAMES
                ),
            );
            defaults::ESP_AEAD
        }),
    };
    cfg.ike.half_open_per_source = c.positive(
        "ike.half_open_per_source",
        ike.half_open_per_source,
        defaults::HALF_OPEN_PER_SOURCE,
    );
    cfg.ike.anonymous_limit = c.positive(
        "ike.anonymous_limit",
        ike.anonymous_limit,
        defaults::ANONYMOUS_LIMIT,
    );
    cfg.ike.cookie_rate = rate(
        &mut c,
        "ike.cookie_rate",
        ike.cookie_rate,
        defaults::COOKIE_RATE,
    );
    cfg.ike.udp_workers = c.positive(
        "ike.udp_workers",
        ike.udp_workers,
        super::default_udp_workers(),
    );
    if cfg.ike.udp_workers > 64 {
        c.fail(
            "ike.udp_workers",
            format!(
                "{} workers is more than 64; one per CPU is enough",
                cfg.ike.udp_workers
            ),
        );
    }
    cfg.ike.anonymous_per_source = c.positive(
        "ike.anonymous_per_source",
        ike.anonymous_per_source,
        defaults::ANONYMOUS_PER_SOURCE,
    );
    let shortest = cfg.ike.child_lifetime.min(cfg.ike.ike_lifetime);
    if cfg.ike.rekey_margin * 2 > shortest {
        c.fail(
            "ike.rekey_margin",
            format!(
                "{} is more than half the shortest SA lifetime ({}); make it smaller or the lifetimes longer",
                humantime::format_duration(cfg.ike.rekey_margin),
                humantime::format_duration(shortest)
            ),
        );
    }

    // [hold]
    cfg.hold.packets = c.positive("hold.packets", raw.hold.packets, defaults::HOLD_PACKETS);
    cfg.hold.bytes = c.positive("hold.bytes", raw.hold.bytes, defaults::HOLD_BYTES);
    cfg.hold.total_bytes = c.positive(
        "hold.total_bytes",
        raw.hold.total_bytes,
        defaults::HOLD_TOTAL_BYTES,
    );
    if cfg.hold.total_bytes < cfg.hold.bytes {
        c.fail(
            "hold.total_bytes",
            format!(
                "{} is less than hold.bytes ({}); raise it",
                cfg.hold.total_bytes, cfg.hold.bytes
            ),
        );
    }

    // [outcome]
    cfg.outcome.clear_lifetime = c.duration(
        "outcome.clear_lifetime",
        raw.outcome.clear_lifetime,
        defaults::CLEAR_LIFETIME,
    );
    cfg.outcome.downgrade_guard = c.duration(
        "outcome.downgrade_guard",
        raw.outcome.downgrade_guard,
        defaults::DOWNGRADE_GUARD,
    );
    cfg.outcome.retry_lifetime = c.duration(
        "outcome.retry_lifetime",
        raw.outcome.retry_lifetime,
        defaults::RETRY_LIFETIME,
    );
    cfg.outcome.refuse_downgrade = raw.outcome.refuse_downgrade.unwrap_or(false);

    // [policy]
    cfg.policy = validate_policy(&mut c, raw.policy);

    // [metrics]
    if let Some(l) = raw.metrics.listen {
        match l.parse::<SocketAddr>() {
            Ok(a) => cfg.metrics_listen = Some(a),
            Err(_) => c.fail(
                "metrics.listen",
                format!("{l:?} is not an address:port (write e.g. \"{}\"; remove the key to turn metrics off)", defaults::METRICS_LISTEN),
            ),
        }
    }

    // [tun]
    if let Some(name) = raw.tun.name {
        if name.is_empty()
            || name.len() > 15
            || name.contains(['/', ':', ' ', '%'])
            || name == "."
            || name == ".."
        {
            c.fail("tun.name", format!("{name:?} is not a valid interface name (1-15 characters, no '/', ':', '%' or spaces)"));
        } else {
            cfg.tun.name = name;
        }
    }
    if let Some(mtu) = raw.tun.mtu {
        match u16::try_from(mtu) {
            Ok(m) if m >= 1280 => cfg.tun.mtu = m,
            _ => c.fail(
                "tun.mtu",
                format!("{mtu} is outside 1280..=65535 (IPv6 needs at least 1280)"),
            ),
        }
    }
    cfg.tun.offload = raw.tun.offload.unwrap_or(true);
    cfg.tun.multi_queue = raw.tun.multi_queue.unwrap_or(true);

    // [routing]
    if let Some(t) = raw.routing.table {
        if t == 0 || (253..=255).contains(&t) {
            c.fail("routing.table", format!("{t} is reserved (0 unspec, 253 default, 254 main, 255 local); pick another number"));
        } else {
            cfg.routing.table = t;
        }
    }
    if let Some(m) = raw.routing.fwmark {
        if m == 0 {
            c.fail(
                "routing.fwmark",
                "must not be 0 (unmarked packets must be told apart from ours)",
            );
        } else {
            cfg.routing.fwmark = m;
        }
    }
    if let Some(p) = raw.routing.rule_priority {
        if !(2..=32765).contains(&p) {
            c.fail(
                "routing.rule_priority",
                format!("{p} is outside 2..=32765 (the rule must come before main at 32766)"),
            );
        } else {
            cfg.routing.rule_priority = p;
        }
    }
    cfg.routing.suppress_main = raw.routing.suppress_main.unwrap_or(false);
    validate_nat(&mut c, raw.nat, &mut cfg);
    let (gateway, errors) = super::gateway::validate(raw.gateway, &cfg);
    cfg.gateway = gateway;
    c.errors.extend(errors);

    if c.errors.is_empty() {
        Ok(cfg)
    } else {
        Err(c.errors)
    }
}

/// `[nat]`: the pool's prefixes (one per family, room for addresses, not
/// this host's own address), the bound, the initiator's switch.
fn validate_nat(c: &mut Checker, raw: raw::RawNat, cfg: &mut Config) {
    if let Some(list) = raw.pool {
        let mut pool: Vec<Cidr> = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let key = format!("nat.pool[{i}]");
            let Ok(p) = s.parse::<Cidr>() else {
                c.fail(
                    key,
                    format!("{s:?} is not a prefix (write e.g. \"100.64.0.0/16\")"),
                );
                continue;
            };
            let bits = if p.addr().is_ipv4() { 32 } else { 128 };
            if p.prefix_len() > bits - 2 {
                c.fail(
                    key,
                    format!(
                        "{p} leaves no address to give; use a /{} or shorter",
                        bits - 2
                    ),
                );
            } else if pool
                .iter()
                .any(|q| q.addr().is_ipv4() == p.addr().is_ipv4())
            {
                c.fail(key, format!("{p}: one prefix per family; remove the other"));
            } else if cfg.address.is_some_and(|a| a.iter().any(|a| p.contains(a))) {
                c.fail(
                    key,
                    format!("{p} holds this host's own address; pick a range no host uses"),
                );
            } else {
                pool.push(p);
            }
        }
        cfg.nat.pool = pool;
    }
    cfg.nat.max_addresses = c.positive(
        "nat.max_addresses",
        raw.max_addresses,
        defaults::NAT_MAX_ADDRESSES,
    );
    cfg.nat.request_address = raw.request_address.unwrap_or(true);
    cfg.nat.anonymous = raw.anonymous.unwrap_or(true);
}

fn validate_policy(c: &mut Checker, raw: raw::RawPolicy) -> Policy {
    let lists = [
        (Group::Clear, raw.clear),
        (Group::ClearOrPrivate, raw.clear_or_private),
        (Group::PrivateOrClear, raw.private_or_clear),
        (Group::Private, raw.private),
        (Group::Block, raw.block),
    ];
    let mut entries: Vec<(Cidr, Group)> = Vec::new();
    for (group, list) in lists {
        for (i, text) in list.iter().enumerate() {
            let key = format!("policy.{}[{i}]", group.name());
            match text.parse::<Cidr>() {
                Ok(p) => {
                    if let Some((_, other)) = entries.iter().find(|(q, _)| *q == p) {
                        c.fail(key, format!("{p} is already listed in policy.{other}; a prefix belongs to one group"));
                    } else {
                        entries.push((p, group));
                    }
                }
                Err(e) => c.fail(key, format!("not a CIDR: {e}")),
            }
        }
    }
    let require = groups(
        c,
        "policy.require-authenticated",
        &raw.require_authenticated,
    );
    let require_dnssec = groups(c, "policy.require-dnssec", &raw.require_dnssec);
    let mut negotiation = BTreeMap::new();
    for (name, value) in &raw.negotiation {
        let key = format!("policy.negotiation.{name}");
        let Ok(group) = name.parse::<Group>() else {
            c.fail(
                key,
                format!(
                    "{name:?} is not a group; use one of {}",
                    Group::ALL.map(Group::name).join(", ")
                ),
            );
            continue;
        };
        let n = match value.parse::<Negotiation>() {
            Ok(n) => n,
            Err(e) => {
                c.fail(key, e);
                continue;
            }
        };
        if !n.allowed_in(group) {
            let why = match group {
                Group::Private => {
                    "private never sends in clear; passthrough would leak the first packets \
                     of every keyless destination. Keep hold, or move those prefixes to \
                     private-or-clear"
                }
                _ => {
                    "this group never negotiates; only private-or-clear and clear-or-private take it"
                }
            };
            c.fail(key, format!("{value:?} is not allowed in {group}: {why}"));
            continue;
        }
        negotiation.insert(group, n);
    }
    Policy::new(entries, require, require_dnssec, negotiation)
}

/// The groups a `policy.require-*` list names.
fn groups(c: &mut Checker, key: &str, names: &[String]) -> BTreeSet<Group> {
    let mut set = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        match name.parse::<Group>() {
            Ok(g) => {
                set.insert(g);
            }
            Err(_) => c.fail(
                format!("{key}[{i}]"),
                format!(
                    "{name:?} is not a group; use one of {}",
                    Group::ALL.map(Group::name).join(", ")
                ),
            ),
        }
    }
    set
}

/// `192.0.2.53`, `192.0.2.53:53`, `2001:db8::53` or `[2001:db8::53]:53`: an
/// address, not a name (the agent resolves no names to find its resolver).
fn parse_server(s: &str) -> Option<SocketAddr> {
    match resolv::parse_server(s)? {
        ServerSpec::Addr(addr) => Some(addr),
        ServerSpec::Host { .. } => None,
    }
}
