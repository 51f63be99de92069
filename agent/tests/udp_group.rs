//! The UDP workers' sockets against a real kernel, in a namespace of their
//! own (issue 19): a port's `SO_REUSEPORT` group refuses to form when
//! anything holds the port, spreads datagrams over its members, and
//! `try_send_many` sends a batch from the address asked for, with the
//! non-ESP marker in front. Needs root.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use oemesh_agent::net::udp::UdpEndpoint;
use oemesh_testkit::netns::Netns;

const PORT: u16 = 500;

fn in_namespace(name: &str, f: impl AsyncFnOnce() + Send + 'static) {
    oemesh_testkit::process::require_root();
    let ns = Netns::new(name).unwrap();
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f());
    })
    .unwrap();
}

#[test]
fn a_group_forms_only_on_a_free_port() {
    in_namespace("udpgroup", async || {
        let group = UdpEndpoint::bind_group(PORT, 0, 2).unwrap();
        assert_eq!(group.len(), 2);
        // Another agent (or IKE daemon) asking for the same port is refused,
        // with or without SO_REUSEPORT: it would otherwise get a share.
        let again = UdpEndpoint::bind_group(PORT, 0, 2).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AddrInUse, "{again}");
        let plain = UdpEndpoint::bind(PORT, 0).unwrap_err();
        assert_eq!(plain.kind(), std::io::ErrorKind::AddrInUse, "{plain}");
        drop(group);
        // A daemon that holds the port without SO_REUSEPORT keeps it.
        let daemon = UdpSocket::bind(("::", PORT)).unwrap();
        let e = UdpEndpoint::bind_group(PORT, 0, 2).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
        drop(daemon);
    });
}

#[test]
fn the_group_shares_the_datagrams_and_loses_none() {
    in_namespace("udpshare", async || {
        let group = UdpEndpoint::bind_group(PORT, 0, 2).unwrap();
        let senders: Vec<UdpSocket> = (0..64)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for s in &senders {
            s.send_to(b"hello", ("127.0.0.1", PORT)).unwrap();
        }
        let mut seen = HashSet::new();
        let mut per_member = Vec::new();
        for member in &group {
            let mut batch = member.recv_batch();
            let mut n = 0;
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(300), member.recv(&mut batch)).await
            {
                for d in batch.datagrams() {
                    assert_eq!(d.data, b"hello");
                    seen.insert(d.from);
                    n += 1;
                }
            }
            per_member.push(n);
        }
        assert_eq!(seen.len(), senders.len(), "per member: {per_member:?}");
        // 64 sources hashed over 2 members: all on one has odds of 2^-63.
        assert!(per_member.iter().all(|&n| n > 0), "{per_member:?}");
    });
}

#[test]
fn a_batch_leaves_from_the_address_asked_for_with_its_prefix() {
    in_namespace("udpmany", async || {
        let sock = UdpEndpoint::bind(4500, 0).unwrap();
        let dest = UdpSocket::bind("127.0.0.1:0").unwrap();
        dest.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = dest.local_addr().unwrap();
        // A second local address, so that the source is a choice.
        let from: IpAddr = "127.0.0.2".parse().unwrap();
        let batch: Vec<(SocketAddr, &[u8])> =
            vec![(to, b"one".as_slice()), (to, b"two"), (to, b"three")];
        let sent = sock.try_send_many(Some(from), &[0; 4], &batch).unwrap();
        assert_eq!(sent, 3);
        for want in [b"one".as_slice(), b"two", b"three"] {
            let mut buf = [0u8; 64];
            let (n, src) = dest.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..4], &[0; 4], "the non-ESP marker");
            assert_eq!(&buf[4..n], want);
            assert_eq!(src, SocketAddr::new(from, 4500));
        }
        // IPv6, where the namespace has it.
        let Ok(dest6) = UdpSocket::bind("[::1]:0") else {
            return;
        };
        dest6
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let to6 = dest6.local_addr().unwrap();
        let from6: IpAddr = "::1".parse().unwrap();
        let sent = sock
            .try_send_many(Some(from6), &[], &[(to6, b"six".as_slice())])
            .unwrap();
        assert_eq!(sent, 1);
        let mut buf = [0u8; 64];
        let (n, src) = dest6.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"six");
        assert_eq!(src, SocketAddr::new(from6, 4500));
    });
}
