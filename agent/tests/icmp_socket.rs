//! The IKE socket with `IP_RECVERR` against a real kernel, in a namespace of
//! its own: an nftables rule on input answers one UDP port with ICMPv6
//! "administratively prohibited". Needs root and nft.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use oemesh_agent::net::udp::UdpEndpoint;
use oemesh_testkit::netns::Netns;

const REJECTED: u16 = 9999;

#[test]
fn an_icmpv6_prohibited_error_is_read_and_costs_no_later_datagram() {
    oemesh_testkit::process::require_root();
    let ns = Netns::new("icmpsock").unwrap();
    let rules = format!(
        "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n  \
         meta nfproto ipv6 udp dport {REJECTED} reject with icmpv6 type admin-prohibited\n \
         }}\n}}\n"
    );
    let out = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(rules.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "nft: {out:?}");
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let open = std::net::UdpSocket::bind("[::1]:0").unwrap();
            let sock = UdpEndpoint::bind(0, 0).unwrap();
            sock.enable_icmp_errors().unwrap();
            let rejected: SocketAddr = format!("[::1]:{REJECTED}").parse().unwrap();
            sock.send(rejected, None, b"IKE_SA_INIT", None)
                .await
                .unwrap();
            // The kernel now holds EACCES for the socket's next call: a
            // datagram to someone else must still leave.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let to = open.local_addr().unwrap();
            sock.send(to, None, b"to another peer", None)
                .await
                .unwrap_or_else(|e| panic!("a queued ICMPv6 error cost a datagram: {e}"));
            let mut buf = [0u8; 64];
            open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let (n, _) = open.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"to another peer");
            let e = tokio::time::timeout(Duration::from_secs(5), sock.icmp_error())
                .await
                .expect("the ICMPv6 error within 5 s")
                .unwrap();
            assert_eq!(e.to, rejected);
            assert_eq!((e.v6, e.icmp_type, e.code), (true, 1, 1), "{e:?}");
            let u = e.unreachable(false).unwrap();
            assert_eq!(u.kind, oemesh_core::oe::UnreachableKind::Prohibited);
        });
    })
    .unwrap();
}
