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
    /// Where `from` shows on this capture when it sits behind a masquerading
    /// router: the router's outer (WAN) address. `None`: `from_ip` itself.
    pub(crate) via: Option<IpAddr>,
}

impl Flow {
    /// A flow between two named addresses, its marker
    /// `OEMESH-DEMO-MARKER[from->to]`, not behind a NAT.
    pub(crate) fn between(
        (from, from_ip): (&str, IpAddr),
        (to, to_ip): (&str, IpAddr),
        private: bool,
        expect: &'static str,
    ) -> Flow {
        Flow {
            from: from.to_owned(),
            to: to.to_owned(),
            from_ip,
            to_ip,
            marker: format!("OEMESH-DEMO-MARKER[{from}->{to}]"),
            private,
            expect,
            via: None,
        }
    }

    /// `alice → bob`.
    pub(crate) fn label(&self) -> String {
        format!("{} → {}", self.from, self.to)
    }

    /// The expected column: `private, anonymous, via NAT`, `clear`.
    pub(crate) fn expected(&self) -> String {
        match (self.private, self.via) {
            (false, _) => "clear".to_owned(),
            (true, None) => format!("private, {}", self.expect),
            (true, Some(_)) => format!("private, {}, via NAT", self.expect),
        }
    }
}

/// Packet counts between the two ends of a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// IKE messages (UDP 500, or 4500 with the non-ESP marker).
    pub(crate) ike: usize,
    /// ESP-in-UDP packets.
    pub(crate) esp: usize,
    /// NAT keepalives (RFC 3948 §2.3: one 0xff byte in UDP 4500).
    pub(crate) keepalive: usize,
    /// Anything else between the two (ICMP, TCP, UDP on other ports…); for a
    /// flow behind a NAT, also any packet that shows the private address of
    /// its `from` end (the router failed to hide it).
    pub(crate) clear: usize,
    /// Packets anywhere on the wire whose payload contains the flow's marker.
    pub(crate) marker_seen: usize,
}

impl Evidence {
    /// Counts what `packets` show about `flow`. A flow behind a NAT
    /// ([`Flow::via`]) is the traffic between the router's outer address and
    /// `to`: the router may have moved the client's port, so only `to`'s end
    /// must be UDP 500 or 4500 (RFC 7296 §2.23).
    pub(crate) fn of(flow: &Flow, packets: &[Packet]) -> Evidence {
        let mut e = Evidence::default();
        let (a, b) = (flow.via.unwrap_or(flow.from_ip), flow.to_ip);
        for p in packets {
            if contains(&p.payload, flow.marker.as_bytes()) {
                e.marker_seen += 1;
            }
            if flow.via.is_some() && p.involves(flow.from_ip) {
                e.clear += 1;
                continue;
            }
            if !((p.src == a && p.dst == b) || (p.src == b && p.dst == a)) {
                continue;
            }
            let ipsec = match flow.via {
                None => is_ipsec_ports(p),
                Some(_) => server_end_is_ipsec(p, b),
            };
            if ipsec && p.is_esp_in_udp() {
                e.esp += 1;
            } else if ipsec && p.ike_message().is_some() {
                e.ike += 1;
            } else if ipsec && is_nat_keepalive(p) {
                e.keepalive += 1;
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
        let keepalive = match self.keepalive {
            0 => String::new(),
            n => format!(", {n} keepalive"),
        };
        match (self.esp, self.clear) {
            (0, clear) => format!("cleartext ({clear} pkts{ike}), {marker}"),
            (esp, 0) => format!(
                "ESP only ({} IKE, {esp} ESP{keepalive}), {marker}",
                self.ike
            ),
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

fn ipsec_port(port: u16) -> bool {
    port == IKE_PORT || port == NAT_T_PORT
}

/// UDP with 500 or 4500 at both ends.
fn is_ipsec_ports(p: &Packet) -> bool {
    p.ports.is_some_and(|(s, d)| ipsec_port(s) && ipsec_port(d))
}

/// UDP with 500 or 4500 at `server`'s end, whatever port the other end has
/// (a NAT may have moved it).
fn server_end_is_ipsec(p: &Packet, server: IpAddr) -> bool {
    p.ports.is_some_and(|(s, d)| {
        (p.src == server && ipsec_port(s)) || (p.dst == server && ipsec_port(d))
    })
}

/// A NAT keepalive (RFC 3948 §2.3): the single byte 0xff in UDP 4500.
fn is_nat_keepalive(p: &Packet) -> bool {
    p.is_udp_port(NAT_T_PORT) && p.payload == [0xff]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// A captured packet for the tests (here and `sites`).
    pub(crate) fn pkt(
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
            via: None,
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
                keepalive: 0,
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

    #[test]
    fn nat_flow_is_seen_from_the_router() {
        let mut f = flow(true);
        f.from_ip = "192.168.1.10".parse().unwrap();
        f.via = Some("192.0.2.1".parse().unwrap());
        let esp = [0, 0, 1, 2, 0, 0, 0, 1, 9];
        let packets = [
            // The router kept port 500, then the float moved to a new one.
            pkt("192.0.2.1", "192.0.2.20", 17, Some((500, 500)), &[1; 40]),
            pkt("192.0.2.1", "192.0.2.20", 17, Some((1025, 4500)), &esp),
            pkt("192.0.2.20", "192.0.2.1", 17, Some((4500, 1025)), &esp),
            pkt("192.0.2.1", "192.0.2.20", 17, Some((1025, 4500)), &[0xff]),
            // Other hosts' traffic is not this flow's.
            pkt("192.0.2.10", "192.0.2.20", 6, None, b"xx"),
        ];
        let e = Evidence::of(&f, &packets);
        assert_eq!((e.ike, e.esp, e.keepalive, e.clear), (1, 2, 1, 0));
        assert!(e.as_expected(&f), "{e:?}");
        assert_eq!(
            e.summary(),
            "ESP only (1 IKE, 2 ESP, 1 keepalive), no marker"
        );
        assert_eq!(f.expected(), "private, authenticated, via NAT");

        // The private address on the WAN side, or the client's packets to a
        // port that is not IKE's: both count as clear.
        let leaks = [
            pkt("192.168.1.10", "192.0.2.20", 1, None, b"ping"),
            pkt("192.0.2.1", "192.0.2.20", 17, Some((4500, 7001)), b"dgram"),
        ];
        let e = Evidence::of(&f, &leaks);
        assert_eq!(e.clear, 2);
        assert!(!e.as_expected(&f));
    }
}
