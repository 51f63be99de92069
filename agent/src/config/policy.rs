//! The OE policy groups (Libreswan's vocabulary) and the per-CIDR table the
//! config declares. Longest prefix wins; an address no prefix covers is `clear`.
//!
// TODO(integration): the decision machine's policy type lives in core (branch `oe`);
// build it from [`Policy::entries`] and drop the lookup here once it has landed.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::prefix::Prefix;

/// What the agent does for destinations in a prefix (docs/oemesh.example.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Never initiate or answer OE.
    Clear,
    /// Answer OE, never initiate it; cleartext otherwise.
    ClearOrPrivate,
    /// Initiate and answer OE; cleartext when it fails (fail open).
    PrivateOrClear,
    /// Initiate and answer OE; drop when it fails (fail closed).
    Private,
    /// Drop everything.
    Block,
}

impl Group {
    /// Every group, in the order the config lists them.
    pub const ALL: [Group; 5] = [
        Group::Clear,
        Group::ClearOrPrivate,
        Group::PrivateOrClear,
        Group::Private,
        Group::Block,
    ];

    /// The name used in the config and in output (`private-or-clear`).
    pub fn name(self) -> &'static str {
        match self {
            Group::Clear => "clear",
            Group::ClearOrPrivate => "clear-or-private",
            Group::PrivateOrClear => "private-or-clear",
            Group::Private => "private",
            Group::Block => "block",
        }
    }

    /// Whether outbound packets to this group go through the agent (the TUN):
    /// the groups that initiate OE, and `block`, whose drops the agent counts.
    pub fn routed_to_tun(self) -> bool {
        matches!(self, Group::PrivateOrClear | Group::Private | Group::Block)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Group {
    type Err = ();

    fn from_str(s: &str) -> Result<Group, ()> {
        Group::ALL.into_iter().find(|g| g.name() == s).ok_or(())
    }
}

/// The validated `[policy]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Every configured prefix with its group, longest first.
    entries: Vec<(Prefix, Group)>,
    /// Groups in which anonymous (AUTH NULL) peers are refused.
    require_authenticated: BTreeSet<Group>,
}

impl Policy {
    /// Builds the table; `entries` must not list one prefix twice (validation
    /// rejects that before calling this).
    pub fn new(mut entries: Vec<(Prefix, Group)>, require_authenticated: BTreeSet<Group>) -> Self {
        entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        Policy {
            entries,
            require_authenticated,
        }
    }

    /// Every prefix and its group, longest prefix first.
    pub fn entries(&self) -> &[(Prefix, Group)] {
        &self.entries
    }

    /// The group of `ip` (longest matching prefix), `clear` when none matches,
    /// with the prefix that decided it.
    pub fn lookup(&self, ip: IpAddr) -> (Group, Option<Prefix>) {
        self.entries
            .iter()
            .find(|(p, _)| p.contains(ip))
            .map_or((Group::Clear, None), |&(p, g)| (g, Some(p)))
    }

    /// Whether anonymous (AUTH NULL, RFC 7619) peers are accepted in `group`.
    pub fn accepts_anonymous(&self, group: Group) -> bool {
        !self.require_authenticated.contains(&group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let p = |s: &str| s.parse::<Prefix>().unwrap();
        let policy = Policy::new(
            vec![
                (p("192.0.2.0/24"), Group::PrivateOrClear),
                (p("192.0.2.53/32"), Group::Clear),
                (p("192.0.2.128/25"), Group::Private),
            ],
            [Group::Private].into(),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(policy.lookup(ip("192.0.2.53")).0, Group::Clear);
        assert_eq!(policy.lookup(ip("192.0.2.10")).0, Group::PrivateOrClear);
        assert_eq!(policy.lookup(ip("192.0.2.200")).0, Group::Private);
        assert_eq!(policy.lookup(ip("198.51.100.1")), (Group::Clear, None));
        assert!(!policy.accepts_anonymous(Group::Private));
        assert!(policy.accepts_anonymous(Group::PrivateOrClear));
        assert_eq!("clear-or-private".parse(), Ok(Group::ClearOrPrivate));
    }
}
