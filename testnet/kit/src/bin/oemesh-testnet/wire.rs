//! What the sniffer saw, per flow: IKE, ESP-in-UDP, anything else in the clear,
//! and where a flow's marker showed up.

use std::net::IpAddr;

use oemesh_testkit::capture::{IKE_PORT, NAT_T_PORT, Packet};

use crate::traffic::contains;

/// One flow the demo drives and what it should look like on the wire.
#[derive(Clone, Debug)]
pub(crate) struct Flow {
    /// `alice`.
    pub(crate) from: String,
    /// `bob`.
    pub(crate) to: String,
    pub(crate) from_ip: IpAddr,
    pub(crate) to_ip: IpAddr,
    /// The string inside every payload of this flow.
    pub(crate) marker: String,
    /// Whether it should cross as ESP (else: in the clear).
    pub(crate) private: bool,
    /// `authenticated`, `anonymous` (private flows) or `clear`.
    pub(crate) expect: &'static str,
}

impl Flow {
    /// `alice → bob`.
    pub(crate) fn label(&self) -> String {
        format!("{} → {}", self.from, self.to)
    }
}

/// Packet counts between the two ends of a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// IKE messages (UDP 500, or 4500 with the non-ESP marker).
    pub(crate) ike: usize,
    /// ESP-in-UDP packets.
    pub(crate) esp: usize,
    /// Anything else between the two (ICMP, TCP, UDP on other ports…).
    pub(crate) clear: usize,
    /// Packets anywhere on the wire whose payload contains the flow's marker.
    pub(crate) marker_seen: usize,
}

impl Evidence {
    /// Counts what `packets` show about `flow`.
    pub(crate) fn of(flow: &Flow, packets: &[Packet]) -> Evidence {
        let mut e = Evidence::default();
        let (a, b) = (flow.from_ip, flow.to_ip);
        for p in packets {
            if contains(&p.payload, flow.marker.as_bytes()) {
                e.marker_seen += 1;
            }
            if !((p.src == a && p.dst == b) || (p.src == b && p.dst == a)) {
                continue;
            }
            if is_ipsec_ports(p) && p.is_esp_in_udp() {
                e.esp += 1;
            } else if is_ipsec_ports(p) && p.ike_message().is_some() {
                e.ike += 1;
            } else {
                e.clear += 1;
            }
        }
        e
    }

    /// Whether this is what `flow` should look like: ESP and nothing in the
    /// clear, marker never seen; or (clear flows) cleartext with the marker and
    /// no ESP.
    pub(crate) fn as_expected(&self, flow: &Flow) -> bool {
        if flow.private {
            self.esp > 0 && self.clear == 0 && self.marker_seen == 0
        } else {
            self.clear > 0 && self.esp == 0 && self.marker_seen > 0
        }
    }

    /// One short line: `ESP only (2 IKE, 1546 ESP), no marker`,
    /// `cleartext (120 pkts, 4 IKE tries), marker in 71`.
    pub(crate) fn summary(&self) -> String {
        let marker = match self.marker_seen {
            0 => "no marker".to_owned(),
            n => format!("marker in {n}"),
        };
        let ike = match self.ike {
            0 => String::new(),
            n => format!(", {n} IKE tries"),
        };
        match (self.esp, self.clear) {
            (0, clear) => format!("cleartext ({clear} pkts{ike}), {marker}"),
            (esp, 0) => format!("ESP only ({} IKE, {esp} ESP), {marker}", self.ike),
            (esp, clear) => format!("MIXED ({esp} ESP, {clear} clear), {marker}"),
        }
    }
}

/// The verdict on one flow, or on a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    /// Every check passed on a complete capture.
    Pass,
    /// Every check that could be made passed, but the sniffer lost packets,
    /// so an absence ("no marker", "no ESP") is not proven.
    Incomplete,
    /// Some check failed.
    Fail,
}

impl Verdict {
    /// The result column of the summary table.
    pub(crate) fn mark(self) -> &'static str {
        match self {
            Verdict::Pass => "✔",
            Verdict::Incomplete => "INCOMPLETE",
            Verdict::Fail => "✘",
        }
    }

    /// A flow's verdict: what it showed (`as_expected`, the traffic and agent
    /// checks) and whether the capture lost packets. What was seen outright
    /// (a marker, cleartext, missing ESP) fails whatever the capture lost.
    pub(crate) fn of(passed: bool, capture_complete: bool) -> Verdict {
        match (passed, capture_complete) {
            (false, _) => Verdict::Fail,
            (true, true) => Verdict::Pass,
            (true, false) => Verdict::Incomplete,
        }
    }

    /// The exit status: 0 pass, 1 fail, 3 incomplete.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Incomplete => 3,
        }
    }
}

/// UDP with 500 or 4500 at both ends.
fn is_ipsec_ports(p: &Packet) -> bool {
    let ok = |port: u16| port == IKE_PORT || port == NAT_T_PORT;
    p.ports.is_some_and(|(s, d)| ok(s) && ok(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pkt(
        src: &str,
        dst: &str,
        protocol: u8,
        ports: Option<(u16, u16)>,
        payload: &[u8],
    ) -> Packet {
        Packet {
            time: Duration::ZERO,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol,
            ports,
            payload: payload.to_vec(),
        }
    }

    fn flow(private: bool) -> Flow {
        Flow {
            from: "alice".into(),
            to: "bob".into(),
            from_ip: "192.0.2.10".parse().unwrap(),
            to_ip: "192.0.2.20".parse().unwrap(),
            marker: "MARK".into(),
            private,
            expect: "authenticated",
        }
    }

    #[test]
    fn private_flow_counts() {
        let packets = [
            pkt("192.0.2.10", "192.0.2.20", 17, Some((500, 500)), &[1; 40]),
            pkt(
                "192.0.2.20",
                "192.0.2.10",
                17,
                Some((4500, 4500)),
                &[0, 0, 1, 2, 0, 0, 0, 1, 9],
            ),
            pkt("192.0.2.30", "192.0.2.20", 6, None, b"xxMARKxx"),
        ];
        let f = flow(true);
        let e = Evidence::of(&f, &packets);
        assert_eq!(
            e,
            Evidence {
                ike: 1,
                esp: 1,
                clear: 0,
                marker_seen: 1
            }
        );
        assert!(!e.as_expected(&f), "a marker anywhere is a leak");
        let e = Evidence::of(&f, &packets[..2]);
        assert!(e.as_expected(&f));
        assert!(e.summary().starts_with("ESP only"), "{}", e.summary());
    }

    #[test]
    fn drops_make_a_pass_incomplete_but_never_hide_a_failure() {
        assert_eq!(Verdict::of(true, true), Verdict::Pass);
        assert_eq!(Verdict::of(true, false), Verdict::Incomplete);
        assert_eq!(Verdict::of(false, false), Verdict::Fail);
        // The run's verdict is its worst flow's.
        let run = [Verdict::Pass, Verdict::Incomplete, Verdict::Pass]
            .into_iter()
            .max();
        assert_eq!(run, Some(Verdict::Incomplete));
        assert_eq!(Verdict::Incomplete.exit_code(), 3);
    }

    #[test]
    fn clear_flow_needs_the_marker() {
        let f = flow(false);
        let packets = [pkt("192.0.2.10", "192.0.2.20", 1, None, b"..MARK..")];
        let e = Evidence::of(&f, &packets);
        assert!(e.as_expected(&f));
        assert_eq!(e.summary(), "cleartext (1 pkts), marker in 1");
    }
}
