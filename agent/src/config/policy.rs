//! The `[policy]` table as the config declares it: Libreswan's groups, one list
//! of prefixes each, longest prefix wins, unlisted means `clear`.
//!
//! The groups, prefixes and the lookup are core's ([`oemesh_core::oe::Group`],
//! [`oemesh_core::oe::Cidr`], [`oemesh_core::oe::Policy`]); this type keeps the
//! validated lists (for `check-config`, the routes and equality in tests) next
//! to the core policy built from them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use oemesh_core::oe::{self, Cidr, Group, GroupOptions, Negotiation, PolicyMatch};

/// Whether outbound packets to `group` go through the agent (the TUN): the
/// groups that initiate OE, and `block`, whose drops the agent counts.
pub fn routed_to_tun(group: Group) -> bool {
    group.initiates() || group == Group::Block
}

/// The validated `[policy]` table.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Every configured prefix with its group, longest first.
    entries: Vec<(Cidr, Group)>,
    /// Groups in which anonymous (AUTH NULL) peers are refused.
    require_authenticated: BTreeSet<Group>,
    /// Groups in which only a DNSSEC-secure key authenticates.
    require_dnssec: BTreeSet<Group>,
    /// Groups whose negotiation is not the default (hold).
    negotiation: BTreeMap<Group, Negotiation>,
    /// The decision machine's policy, built from the two above.
    core: oe::Policy,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
            && self.require_authenticated == other.require_authenticated
            && self.require_dnssec == other.require_dnssec
            && self.negotiation == other.negotiation
    }
}

impl Eq for Policy {}

impl Policy {
    /// Builds the table; `entries` must not list one prefix twice (validation
    /// rejects that before calling this, so core's conflict check cannot fail).
    /// `negotiation` names the groups that pass packets through (validation
    /// allows that only where [`Negotiation::allowed_in`] says).
    pub fn new(
        mut entries: Vec<(Cidr, Group)>,
        require_authenticated: BTreeSet<Group>,
        require_dnssec: BTreeSet<Group>,
        negotiation: BTreeMap<Group, Negotiation>,
    ) -> Self {
        entries.sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then(a.0.cmp(&b.0)));
        let options = Group::ALL.into_iter().map(|g| {
            let o = GroupOptions {
                allow_anonymous: !require_authenticated.contains(&g),
                require_dnssec: require_dnssec.contains(&g),
                negotiation: negotiation.get(&g).copied().unwrap_or_default(),
            };
            (g, o)
        });
        let core =
            oe::Policy::new(entries.iter().map(|&(c, g)| (g, c)), options).unwrap_or_else(|e| {
                tracing::error!("policy: {e}");
                oe::Policy::default()
            });
        Policy {
            entries,
            require_authenticated,
            require_dnssec,
            negotiation,
            core,
        }
    }

    /// Every prefix and its group, longest prefix first.
    pub fn entries(&self) -> &[(Cidr, Group)] {
        &self.entries
    }

    /// The decision machine's policy.
    pub fn core(&self) -> &oe::Policy {
        &self.core
    }

    /// The group of `ip` (longest matching prefix, `clear` when none matches)
    /// with the prefix that decided it and the group's options.
    pub fn lookup(&self, ip: IpAddr) -> PolicyMatch {
        self.core.lookup(ip)
    }

    /// Whether anonymous (AUTH NULL, RFC 7619) peers are accepted in `group`.
    pub fn accepts_anonymous(&self, group: Group) -> bool {
        !self.require_authenticated.contains(&group)
    }

    /// Groups that refuse anonymous peers.
    pub fn require_authenticated(&self) -> impl Iterator<Item = Group> + '_ {
        self.require_authenticated.iter().copied()
    }

    /// Groups in which only a DNSSEC-secure key authenticates.
    pub fn require_dnssec(&self) -> impl Iterator<Item = Group> + '_ {
        self.require_dnssec.iter().copied()
    }

    /// Groups whose negotiation is not the default (hold).
    pub fn negotiation(&self) -> impl Iterator<Item = (Group, Negotiation)> + '_ {
        self.negotiation.iter().map(|(g, n)| (*g, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let p = |s: &str| s.parse::<Cidr>().unwrap();
        let policy = Policy::new(
            vec![
                (p("192.0.2.0/24"), Group::PrivateOrClear),
                (p("192.0.2.53/32"), Group::Clear),
                (p("192.0.2.128/25"), Group::Private),
            ],
            [Group::Private].into(),
            BTreeSet::new(),
            BTreeMap::new(),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(policy.lookup(ip("192.0.2.53")).group, Group::Clear);
        assert_eq!(policy.lookup(ip("192.0.2.10")).group, Group::PrivateOrClear);
        let m = policy.lookup(ip("192.0.2.200"));
        assert_eq!(m.group, Group::Private);
        assert!(m.options.require_authenticated());
        assert_eq!(policy.lookup(ip("198.51.100.1")).prefix, None);
        assert!(!policy.accepts_anonymous(Group::Private));
        assert!(policy.accepts_anonymous(Group::PrivateOrClear));
        assert_eq!(policy.entries()[0].0, p("192.0.2.53/32"));
        assert!(routed_to_tun(Group::Block) && !routed_to_tun(Group::ClearOrPrivate));
    }
}
