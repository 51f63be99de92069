//! What the agents say about a peer behind a NAT, from `oemesh peers --json`:
//! `endpoint` (the outer `ip:port` the peer's IKE and ESP come from) and
//! `assigned` (on the responder, the address it gave the peer from its
//! `[nat] pool`, which is then also `peer`; on the initiator, the address it
//! was given). Both ends of one SA agree on `assigned` (RFC 7296 §3.15: the
//! responder's CFG_REPLY names the address, the initiator takes it).

use std::net::{IpAddr, SocketAddr};

use oemesh_testkit::topology::Peer;

/// The peer's outer address and port, when the agent reports it.
pub(crate) fn endpoint(p: &Peer) -> Option<SocketAddr> {
    p.raw.get("endpoint")?.as_str()?.parse().ok()
}

/// The address assigned across this SA (by or to this host), if any.
pub(crate) fn assigned(p: &Peer) -> Option<IpAddr> {
    p.raw.get("assigned")?.as_str()?.parse().ok()
}

/// `, endpoint 192.0.2.1:4500, assigned 100.64.0.1` (whichever of the two the
/// agent reports; empty when neither).
pub(crate) fn describe(p: &Peer) -> String {
    let mut s = String::new();
    if let Some(e) = endpoint(p) {
        s.push_str(&format!(", endpoint {e}"));
    }
    if let Some(a) = assigned(p) {
        s.push_str(&format!(", assigned {a}"));
    }
    s
}

/// Whether `p` is the responder's view of a client behind the router at
/// `router`: it comes from the router's address, and it is known by the
/// address the responder assigned it (`peer` == `assigned`).
pub(crate) fn is_behind(p: &Peer, router: IpAddr) -> bool {
    endpoint(p).is_some_and(|e| e.ip() == router) && assigned(p) == Some(p.peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oemesh_testkit::topology::parse_peers;

    #[test]
    fn reads_endpoint_and_assigned() {
        let json = r#"[
            {"peer": "100.64.0.1", "state": "private", "auth": "anonymous",
             "endpoint": "192.0.2.1:4500", "assigned": "100.64.0.1"},
            {"peer": "192.0.2.20", "state": "private", "auth": "authenticated"}
        ]"#;
        let peers = parse_peers(json).unwrap();
        let router: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(is_behind(&peers[0], router));
        assert_eq!(
            describe(&peers[0]),
            ", endpoint 192.0.2.1:4500, assigned 100.64.0.1"
        );
        assert!(!is_behind(&peers[1], router));
        assert_eq!(describe(&peers[1]), "");
    }
}
