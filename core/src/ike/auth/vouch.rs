//! The initiator's side of gateway vouching (issue 14; design.md, "The trust
//! model": for a gateway, the protected address is the traffic selector).
//!
//! An initiator going to a destination through its gateway proposes
//! `TSr = [destination, the destination's whole family]` (the first is the
//! packet that started it, §2.9): the gateway narrows the second to the site
//! it protects. A stock strongSwan gateway needs that room: with
//! kernel-libipsec it cannot install a CHILD SA narrowed to one host it does
//! not own, and answers TS_UNACCEPTABLE. With it, one CHILD SA carries the
//! whole site, and the far site's other hosts need no IKE SA of their own.
//!
//! Who vouches for the answer: the destination's record (the key the
//! gateway signed with was published there, naming it) vouches for the
//! destination only. Every answered selector beyond it goes to the caller
//! ([`Event::VouchResponderTs`](crate::ike::endpoint::Event::VouchResponderTs)), which asks DNS as a responder does for a
//! gateway's TSi (`oe::vouch`); the CHILD SA keeps only the destination and
//! what a record naming the gateway, with the key that signed, vouches for.
//! The rest is narrowed away here, however the responder answered: its
//! packets from there are dropped by the data path's selector check, and
//! nothing of ours goes there through it.

use std::net::IpAddr;
use std::time::Instant;

use crate::ike::config::{MAX_VOUCHED, Vouched};
use crate::ike::endpoint::{Endpoint, SaHandle};
use crate::ike::message::{AddrSelector, Message, PayloadType};
use crate::ike::state::{AuthSent, InitiatorVouch, State};
use crate::ike::ts;

use super::ts_of;

/// `answer` (a responder's TSr, already a subset of `proposed`) narrowed to
/// the destination (`proposed`'s first selector) and `vouched`; in
/// `answer`'s order, without repeats.
pub(super) fn narrowed(
    answer: &[AddrSelector],
    proposed: &[AddrSelector],
    vouched: &[AddrSelector],
) -> Vec<AddrSelector> {
    let Some(dst) = proposed.first() else {
        return answer.to_vec();
    };
    let allowed: Vec<AddrSelector> = std::iter::once(dst.clone())
        .chain(vouched.iter().cloned())
        .collect();
    let mut out = ts::narrow(answer, &allowed);
    // A host beside the subnet that holds it says nothing more.
    let all = out.clone();
    out.retain(|s| !all.iter().any(|o| o != s && ts::contains(o, s)));
    out
}

/// The answered selectors beyond the destination: what DNS must vouch for.
fn beyond_destination(answer: &[AddrSelector], proposed: &[AddrSelector]) -> Vec<AddrSelector> {
    let Some(dst) = proposed.first() else {
        return Vec::new();
    };
    answer
        .iter()
        .filter(|s| !ts::contains(dst, s))
        .take(MAX_VOUCHED)
        .cloned()
        .collect()
}

/// Whether the destination `proposed` names is not the responder at `peer`
/// itself (it answers as that destination's gateway).
pub(super) fn is_gateway(proposed: &[AddrSelector], peer: IpAddr) -> bool {
    proposed
        .first()
        .is_some_and(|dst| !ts::contains(dst, &AddrSelector::host(peer)))
}

impl Endpoint {
    /// Answers [`Event::VouchResponderTs`](crate::ike::endpoint::Event::VouchResponderTs): `vouched` are the selectors DNS
    /// vouches for with the keys of the records that do. The first CHILD SA
    /// is installed with the destination and those of them whose keys hold
    /// the one the responder signed with; the rest of its answer is narrowed
    /// away (empty: only the destination).
    pub fn vouch_responder_ts(&mut self, now: Instant, sa: SaHandle, vouched: Vec<Vouched>) {
        let Some(ike) = self.take(sa) else { return };
        self.step(ike, |this, core, state| match state {
            State::InitiatorVouch(held) => {
                let InitiatorVouch {
                    sent,
                    response,
                    how,
                    signer,
                } = *held;
                let allowed: Vec<AddrSelector> = vouched
                    .into_iter()
                    .filter(|v| v.keys.contains(&signer))
                    .map(|v| v.selector)
                    .collect();
                this.install_initiator_child(now, core, sent, &response, how, &allowed)
                    .map_err(|reason| this.fail(core, reason))
            }
            other => Ok(other),
        });
    }
}

/// The selectors of the responder's TSr answer beyond the destination, for
/// DNS to vouch for; none when the answer is no subset of the proposal (the
/// CHILD SA is then refused anyway).
pub(super) fn to_vouch(sent: &AuthSent, response: &Message) -> Vec<AddrSelector> {
    match ts_of(response, PayloadType::TSR) {
        Some(tsr) if ts::is_subset(&tsr, &sent.ts.remote) => {
            beyond_destination(&tsr, &sent.ts.remote)
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_answer_keeps_the_destination_and_what_dns_vouched_for() {
        let dst = AddrSelector::host(ip("10.2.0.10"));
        let proposed = [dst.clone(), AddrSelector::any_of(ip("0.0.0.0"))];
        let site = AddrSelector::subnet(ip("10.2.0.0"), 24);
        let gw = AddrSelector::host(ip("192.0.2.32"));
        let answer = [dst.clone(), gw.clone(), site.clone()];
        let (only_dst, only_site) = (vec![dst.clone()], vec![site.clone()]);
        assert_eq!(beyond_destination(&answer, &proposed), [gw, site]);
        // Nothing vouched: the destination alone.
        assert_eq!(narrowed(&answer, &proposed, &[]), only_dst);
        // The site vouched: the host inside it says nothing more.
        assert_eq!(narrowed(&answer, &proposed, &only_site), only_site);
        // A stock strongSwan answers the site alone: narrowed to the host.
        assert_eq!(narrowed(&only_site, &proposed, &[]), only_dst);
        // Host to host: nothing beyond, nothing narrowed.
        assert!(beyond_destination(&only_dst, &only_dst).is_empty());
        assert_eq!(narrowed(&only_dst, &only_dst, &[]), only_dst);
        assert!(is_gateway(&proposed, ip("192.0.2.32")));
        assert!(!is_gateway(&proposed, ip("10.2.0.10")));
    }
}
