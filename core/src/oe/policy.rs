//! Which destinations get opportunistic encryption: Libreswan's policy groups,
//! one list of prefixes each, longest prefix wins, unlisted means `clear`.
//!
//! | group | initiates OE | answers OE | on failure |
//! |---|---|---|---|
//! | `clear` | no | no | — |
//! | `clear-or-private` | no | yes | clear |
//! | `private-or-clear` | yes | yes | clear (fail open) |
//! | `private` | yes | yes | drop (fail closed) |
//! | `block` | — | — | drop |
//!
//! The lookup flattens each family's nested prefixes into sorted disjoint
//! ranges, each naming its longest covering prefix: one binary search per
//! lookup (O(log n), whatever the mix of prefix lengths), no allocation.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::cidr::{Cidr, mask, to_bits};

/// A policy group (Libreswan's names).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Group {
    /// Never encrypt; do not answer OE either.
    Clear,
    /// Do not initiate OE; answer it; clear otherwise.
    ClearOrPrivate,
    /// Initiate and answer OE; fall back to clear when it fails (fail open).
    PrivateOrClear,
    /// Initiate and answer OE; drop when it fails (fail closed).
    Private,
    /// Drop everything.
    Block,
}

impl Group {
    /// All groups, in table order.
    pub const ALL: [Group; 5] = [
        Group::Clear,
        Group::ClearOrPrivate,
        Group::PrivateOrClear,
        Group::Private,
        Group::Block,
    ];

    /// The group's name as written in configuration (`private-or-clear`).
    pub fn name(self) -> &'static str {
        match self {
            Group::Clear => "clear",
            Group::ClearOrPrivate => "clear-or-private",
            Group::PrivateOrClear => "private-or-clear",
            Group::Private => "private",
            Group::Block => "block",
        }
    }

    /// Whether a packet to a destination in this group starts OE.
    pub fn initiates(self) -> bool {
        matches!(self, Group::PrivateOrClear | Group::Private)
    }

    /// Whether an IKE request from a peer in this group is answered.
    pub fn answers(self) -> bool {
        matches!(
            self,
            Group::ClearOrPrivate | Group::PrivateOrClear | Group::Private
        )
    }

    /// Whether a failed attempt drops traffic (`private`, `block`) rather than
    /// letting it go in clear.
    pub fn fails_closed(self) -> bool {
        matches!(self, Group::Private | Group::Block)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A group name that is not one of the five.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a policy group (clear, clear-or-private, private-or-clear, private, block)")]
pub struct UnknownGroup(pub String);

impl FromStr for Group {
    type Err = UnknownGroup;
    fn from_str(s: &str) -> Result<Self, UnknownGroup> {
        Group::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| UnknownGroup(s.to_owned()))
    }
}

/// Per-group options.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GroupOptions {
    /// Whether a peer without a published key may be private anonymously: as
    /// initiator, try AUTH NULL when DNS has no usable key; as responder, accept
    /// an initiator's AUTH NULL (RFC 7619). `false` is `require-authenticated`.
    pub allow_anonymous: bool,
    /// `require-dnssec`: only a key from a DNSSEC-secure answer authenticates
    /// a peer. An insecure or indeterminate key counts as no key; a bogus
    /// answer, or a denial that cannot be proven either way, fails closed.
    pub require_dnssec: bool,
    /// What packets to a destination without a published key do while its
    /// anonymous IKE runs (`[policy.negotiation]`).
    pub negotiation: Negotiation,
}

/// What packets to a keyless destination do while its anonymous IKE runs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Negotiation {
    /// Held until the outcome (the default): nothing leaks, the first packet
    /// waits for IKE or for its failure (`anonymous_timeout` at most when the
    /// destination stays silent).
    #[default]
    Hold,
    /// Sent in clear while IKE runs, encrypted once an SA is up: no wait, but
    /// the first packets of each new keyless destination travel in clear.
    /// Allowed in `private-or-clear` and `clear-or-private` only.
    Passthrough,
}

impl Negotiation {
    /// The name as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Negotiation::Hold => "hold",
            Negotiation::Passthrough => "passthrough",
        }
    }

    /// Whether `group` may use this negotiation: passthrough sends packets in
    /// clear, which `private` promises never to do (and `clear` and `block`
    /// never negotiate).
    pub fn allowed_in(self, group: Group) -> bool {
        match self {
            Negotiation::Hold => true,
            Negotiation::Passthrough => {
                matches!(group, Group::PrivateOrClear | Group::ClearOrPrivate)
            }
        }
    }
}

impl fmt::Display for Negotiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Negotiation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hold" => Ok(Negotiation::Hold),
            "passthrough" => Ok(Negotiation::Passthrough),
            _ => Err(format!(
                "`{s}` is not a negotiation; use hold or passthrough"
            )),
        }
    }
}

impl GroupOptions {
    /// `require-authenticated`: no AUTH NULL peers.
    pub const REQUIRE_AUTHENTICATED: Self = Self {
        allow_anonymous: false,
        require_dnssec: false,
        negotiation: Negotiation::Hold,
    };

    /// Whether only authenticated (signature-checked) peers are accepted.
    pub fn require_authenticated(&self) -> bool {
        !self.allow_anonymous
    }
}

impl Default for GroupOptions {
    /// Anonymous peers allowed: opportunistic encryption protects against passive
    /// attackers even without keys.
    fn default() -> Self {
        Self {
            allow_anonymous: true,
            require_dnssec: false,
            negotiation: Negotiation::Hold,
        }
    }
}

/// The result of a lookup: the group and the prefix that put the address there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PolicyMatch {
    /// The group.
    pub group: Group,
    /// The longest matching prefix; `None` when no list holds the address (→ `clear`).
    pub prefix: Option<Cidr>,
    /// The group's options.
    pub options: GroupOptions,
}

impl PolicyMatch {
    /// What becomes of a packet to the address, for `oemesh check`: `current`
    /// is the state of its cached outcome, `pending` whether a decision is
    /// under way (and none is cached).
    pub fn treatment(&self, current: Option<crate::oe::State>, pending: bool) -> String {
        use crate::oe::State;
        let anonymous = if self.options.allow_anonymous {
            "anonymous IKE (AUTH NULL) without a key"
        } else {
            "no anonymous IKE (require-authenticated)"
        };
        match (self.group, current) {
            (_, Some(State::Private)) => "encrypted with the installed SA".to_owned(),
            (_, Some(State::Clear)) => "sent in cleartext until the outcome expires".to_owned(),
            _ if pending => "held until the decision under way".to_owned(),
            (Group::Clear, _) => "sent in cleartext by the kernel (not routed to the agent)".into(),
            (Group::ClearOrPrivate, _) => {
                "sent in cleartext; OE is answered if the peer starts it".into()
            }
            (Group::PrivateOrClear, _)
                if self.options.allow_anonymous
                    && self.options.negotiation == Negotiation::Passthrough =>
            {
                format!(
                    "held for the IPSECKEY lookup; without a key sent in cleartext while \
                     {anonymous} runs (passthrough), encrypted once it succeeds"
                )
            }
            (Group::PrivateOrClear, _) => {
                format!("held; IPSECKEY lookup, then IKE ({anonymous}), or cleartext if that fails")
            }
            (Group::Private, _) => {
                format!("held; IPSECKEY lookup, then IKE ({anonymous}), or dropped if that fails")
            }
            (Group::Block, _) => "dropped".into(),
        }
    }
}

impl fmt::Display for PolicyMatch {
    /// `private-or-clear (10.0.0.0/8)` or `clear (unlisted)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{} ({p})", self.group),
            None => write!(f, "{} (unlisted)", self.group),
        }
    }
}

/// Why a policy could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The same prefix is listed in two groups; which one wins would be a guess.
    #[error("{cidr} is listed in both `{first}` and `{second}`")]
    Conflict {
        /// the prefix
        cidr: Cidr,
        /// one group (the earlier in table order)
        first: Group,
        /// the other group (the later in table order)
        second: Group,
    },
}

/// One address family's table, flattened into disjoint ranges: `ranges[i]`
/// covers addresses from its start up to the next range's start, and names the
/// longest listed prefix covering them (`None`: unlisted). Prefixes are always
/// nested or disjoint, so `n` prefixes give at most `2n + 1` ranges, and a
/// lookup is one binary search whatever the mix of prefix lengths.
#[derive(Clone, Debug, Default)]
struct Table {
    ranges: Vec<(u128, Option<u32>)>,
    prefixes: Vec<(Cidr, Group)>,
}

impl Table {
    fn build(mut prefixes: Vec<(Cidr, Group)>) -> Result<Self, PolicyError> {
        // By network, then shorter first: a prefix comes before the ones inside it.
        prefixes.sort_by_key(|(c, g)| (c.bits(), c.prefix_len(), *g));
        prefixes.dedup();
        for pair in prefixes.windows(2) {
            if let [(a, g1), (b, g2)] = pair
                && a == b
            {
                return Err(PolicyError::Conflict {
                    cidr: *a,
                    first: *g1,
                    second: *g2,
                });
            }
        }
        let mut ranges: Vec<(u128, Option<u32>)> = vec![(0, None)];
        let mut emit = |start: u128, value: Option<u32>| match ranges.last_mut() {
            Some(last) if last.0 == start => last.1 = value,
            Some(last) if last.1 == value => {}
            _ => ranges.push((start, value)),
        };
        // The prefixes containing the current position, outermost first.
        let mut open: Vec<(u128, u32)> = Vec::new(); // (last address, index)
        for (i, (cidr, _)) in prefixes.iter().enumerate() {
            let first = cidr.bits();
            while let Some(&(last, _)) = open.last() {
                if last >= first {
                    break;
                }
                open.pop();
                emit(last + 1, open.last().map(|o| o.1));
            }
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            // All ones in the family's width (`mask` clamps the length).
            let full = mask(cidr.addr(), 128);
            open.push((
                first | (full & !mask(cidr.addr(), cidr.prefix_len())),
                index,
            ));
            emit(first, Some(index));
        }
        while let Some((last, _)) = open.pop() {
            if let Some(next) = last.checked_add(1) {
                emit(next, open.last().map(|o| o.1));
            }
        }
        Ok(Self { ranges, prefixes })
    }

    fn lookup(&self, addr: IpAddr) -> Option<(Group, Cidr)> {
        let bits = to_bits(addr);
        let after = self.ranges.partition_point(|(start, _)| *start <= bits);
        let (_, index) = self.ranges.get(after.checked_sub(1)?)?;
        let (cidr, group) = self.prefixes.get(usize::try_from((*index)?).ok()?)?;
        Some((*group, *cidr))
    }
}

/// The policy: prefixes per group for IPv4 and IPv6, and the options of each group.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    v4: Table,
    v6: Table,
    options: [GroupOptions; 5],
    lists: Vec<(Cidr, Group)>,
}

impl Policy {
    /// Builds the lookup tables. Fails if one prefix is in two groups.
    pub fn new(
        entries: impl IntoIterator<Item = (Group, Cidr)>,
        options: impl IntoIterator<Item = (Group, GroupOptions)>,
    ) -> Result<Self, PolicyError> {
        let mut lists: Vec<(Cidr, Group)> = entries.into_iter().map(|(g, c)| (c, g)).collect();
        lists.sort();
        lists.dedup();
        let (v4, v6): (Vec<_>, Vec<_>) = lists.iter().partition(|(c, _)| c.addr().is_ipv4());
        let mut opts = [GroupOptions::default(); 5];
        for (group, o) in options {
            if let Some(slot) = opts.get_mut(group.index()) {
                *slot = o;
            }
        }
        Ok(Self {
            v4: Table::build(v4)?,
            v6: Table::build(v6)?,
            options: opts,
            lists,
        })
    }

    /// The group of `addr`: the longest listed prefix that contains it, else `clear`.
    /// Families are separate: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is
    /// an IPv6 address here, as it is in an IPv6 packet header.
    pub fn lookup(&self, addr: IpAddr) -> PolicyMatch {
        let table = if addr.is_ipv4() { &self.v4 } else { &self.v6 };
        let (group, prefix) = match table.lookup(addr) {
            Some((g, p)) => (g, Some(p)),
            None => (Group::Clear, None),
        };
        PolicyMatch {
            group,
            prefix,
            options: self.options(group),
        }
    }

    /// The options of a group.
    pub fn options(&self, group: Group) -> GroupOptions {
        self.options.get(group.index()).copied().unwrap_or_default()
    }

    /// Every listed prefix with its group, sorted by prefix.
    pub fn entries(&self) -> impl Iterator<Item = (Group, Cidr)> + '_ {
        self.lists.iter().map(|(c, g)| (*g, *c))
    }
}
