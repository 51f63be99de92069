//! The config file as written: serde structs that reject unknown keys, with every
//! value that needs checking kept as text so validation can name the key.

use serde::Deserialize;

/// The top level of `oemesh.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) key: Option<String>,
    pub(crate) address: Option<RawAddress>,
    pub(crate) control_socket: Option<String>,
    pub(crate) control_group: Option<String>,
    #[serde(default)]
    pub(crate) dns: RawDns,
    #[serde(default)]
    pub(crate) ike: RawIke,
    #[serde(default)]
    pub(crate) hold: RawHold,
    #[serde(default)]
    pub(crate) outcome: RawOutcome,
    #[serde(default)]
    pub(crate) policy: RawPolicy,
    #[serde(default)]
    pub(crate) metrics: RawMetrics,
    #[serde(default)]
    pub(crate) tun: RawTun,
    #[serde(default)]
    pub(crate) routing: RawRouting,
    #[serde(default)]
    pub(crate) nat: RawNat,
    #[serde(default)]
    pub(crate) gateway: RawGateway,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub(crate) protects: Option<Vec<String>>,
}

/// `address`: one address, or a list (at most one per family).
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "an address like \"192.0.2.10\", or a list with one per family like [\"192.0.2.10\", \"2001:db8::10\"]"
)]
pub(crate) enum RawAddress {
    One(String),
    List(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNat {
    pub(crate) pool: Option<Vec<String>>,
    pub(crate) max_addresses: Option<usize>,
    pub(crate) request_address: Option<bool>,
    pub(crate) anonymous: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub(crate) servers: Option<Vec<String>>,
    pub(crate) timeout: Option<String>,
    pub(crate) lookups_per_second: Option<usize>,
    pub(crate) lookup_burst: Option<usize>,
    pub(crate) inbound_lookups_per_second: Option<usize>,
    pub(crate) inbound_lookup_burst: Option<usize>,
    pub(crate) dnssec: Option<String>,
    pub(crate) trust_anchors: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIke {
    pub(crate) timeout: Option<String>,
    pub(crate) anonymous_timeout: Option<String>,
    pub(crate) icmp_grace: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) natt_port: Option<u16>,
    pub(crate) ike_lifetime: Option<String>,
    pub(crate) child_lifetime: Option<String>,
    pub(crate) rekey_margin: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) dpd_interval: Option<String>,
    pub(crate) nat_keepalive: Option<String>,
    pub(crate) exchange_timeout: Option<String>,
    pub(crate) esp_aead: Option<String>,
    pub(crate) half_open_per_source: Option<usize>,
    pub(crate) anonymous_limit: Option<usize>,
    pub(crate) cookie_rate: Option<usize>,
    pub(crate) udp_workers: Option<usize>,
    pub(crate) anonymous_per_source: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHold {
    pub(crate) packets: Option<usize>,
    pub(crate) bytes: Option<usize>,
    pub(crate) total_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutcome {
    pub(crate) clear_lifetime: Option<String>,
    pub(crate) downgrade_guard: Option<String>,
    pub(crate) retry_lifetime: Option<String>,
    pub(crate) refuse_downgrade: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    pub(crate) clear: Vec<String>,
    #[serde(default, rename = "clear-or-private")]
    pub(crate) clear_or_private: Vec<String>,
    #[serde(default, rename = "private-or-clear")]
    pub(crate) private_or_clear: Vec<String>,
    #[serde(default)]
    pub(crate) private: Vec<String>,
    #[serde(default)]
    pub(crate) block: Vec<String>,
    #[serde(default, rename = "require-authenticated")]
    pub(crate) require_authenticated: Vec<String>,
    #[serde(default, rename = "require-dnssec")]
    pub(crate) require_dnssec: Vec<String>,
    /// Group name → `hold` or `passthrough`.
    #[serde(default)]
    pub(crate) negotiation: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTun {
    pub(crate) name: Option<String>,
    pub(crate) mtu: Option<u32>,
    pub(crate) offload: Option<bool>,
    pub(crate) multi_queue: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub(crate) table: Option<u32>,
    pub(crate) fwmark: Option<u32>,
    pub(crate) rule_priority: Option<u32>,
    pub(crate) suppress_main: Option<bool>,
}
