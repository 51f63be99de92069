//! The kernel side of outcomes in a fresh namespace, through the library: a
//! clear peer's `throw` route comes and goes, and a private peer's cleartext is
//! dropped by the nftables table while IKE/ESP ports stay open.

#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: failing loudly is the point

use std::net::IpAddr;
use std::time::Duration;

use oemesh_agent::config::{Cidr, Config, Group, TunConfig};
use oemesh_agent::driver::KernelActions;
use oemesh_agent::net::nft::{EnforceConfig, Enforcer};
use oemesh_agent::net::routes::{self, Routing};
use oemesh_agent::net::tun::Tun;
use oemesh_testkit::netns::{Netns, veth};
use oemesh_testkit::process::{require_programs, require_root};

#[test]
fn bypass_routes_and_cleartext_drop() {
    require_root();
    require_programs(&["ip", "nft"]);
    let ns = Netns::new("kernel").unwrap();
    let peer_ns = Netns::new("kpeer").unwrap();
    veth(&ns, "192.0.2.10/24", &peer_ns, "192.0.2.20/24").unwrap();
    let (me, peer): (IpAddr, IpAddr) =
        ("192.0.2.10".parse().unwrap(), "192.0.2.20".parse().unwrap());
    let cfg = Config::default();
    let table = cfg.routing.table.to_string();

    // Cleartext from the peer passes before it is private.
    peer_ns.ping(peer, me, Duration::from_secs(2)).unwrap();

    let routes = |ns: &Netns| {
        ns.ip(&["route", "show", "table", &table])
            .unwrap_or_default()
    };
    let (rt, kernel, tun) = ns
        .run(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (kernel, tun) = rt.block_on(async {
                let tun = Tun::open(&TunConfig {
                    name: "oet0".into(),
                    ..cfg.tun.clone()
                })
                .unwrap();
                let handle = routes::connect().unwrap();
                let prefix: Cidr = "192.0.2.0/24".parse().unwrap();
                let routing = Routing::install(
                    handle,
                    &cfg.routing,
                    tun.index(),
                    &[(prefix, Group::PrivateOrClear)],
                    oemesh_agent::config::Addresses::one(me),
                )
                .await
                .unwrap();
                let enforcer = Enforcer::install(&EnforceConfig {
                    tun: "oet0".into(),
                    ike_port: 500,
                    natt_port: 4500,
                })
                .unwrap();
                (KernelActions::new(routing, enforcer), tun)
            });
            (rt, kernel, tun)
        })
        .unwrap();

    // Now replies to the peer route into the TUN (nobody reads it in this test).
    assert!(peer_ns.ping(peer, me, Duration::from_millis(500)).is_err());
    // Clear outcome: a throw route, and the peer is reachable the normal way.
    ns.run(|| rt.block_on(kernel.clear(peer))).unwrap().unwrap();
    assert!(routes(&ns).contains("throw 192.0.2.20"), "{}", routes(&ns));
    peer_ns.ping(peer, me, Duration::from_secs(2)).unwrap();

    // Private: its cleartext is dropped at input; removal lets it through again.
    // (Both families in one transaction, and adding twice is no error.)
    let v6: IpAddr = "2001:db8::20".parse().unwrap();
    for _ in 0..2 {
        kernel.private_all(&[peer, v6]);
    }
    ns.run(|| rt.block_on(kernel.settle_private_set())).unwrap();
    let list = |set: &str| {
        let out = ns
            .exec(
                &["nft", "list", "set", "inet", "oemesh", set],
                Duration::from_secs(5),
            )
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(list("private_peers_v4").contains("192.0.2.20"));
    assert!(list("private_peers_v6").contains("2001:db8::20"));
    assert!(
        peer_ns.ping(peer, me, Duration::from_millis(500)).is_err(),
        "cleartext from a private peer got through"
    );
    // A peer named twice in one transaction: the kernel would drop the whole
    // transaction on the second delete, so the worker names it once.
    kernel.private_ended_all(&[peer, peer]);
    kernel.private_ended_all(&[peer]);
    ns.run(|| rt.block_on(kernel.settle_private_set())).unwrap();
    peer_ns.ping(peer, me, Duration::from_secs(2)).unwrap();
    assert!(!list("private_peers_v4").contains("192.0.2.20"));

    // The clear outcome expires (twice is fine): back into the TUN.
    ns.run(|| rt.block_on(kernel.clear_expired(peer)))
        .unwrap()
        .unwrap();
    ns.run(|| rt.block_on(kernel.clear_expired(peer)))
        .unwrap()
        .unwrap();
    assert!(!routes(&ns).contains("throw 192.0.2.20"), "{}", routes(&ns));

    ns.run(|| rt.block_on(kernel.teardown())).unwrap();
    drop(tun);
    assert_eq!(routes(&ns), "");
    let tables = ns
        .exec(&["nft", "list", "tables"], Duration::from_secs(5))
        .unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("oemesh"));
    ns.run(move || drop(rt)).unwrap();
}

/// A refused set update names the set and the addresses, and the errno.
#[test]
fn refused_set_update_says_what() {
    use oemesh_agent::net::nfnl::{SetOp, SetSocket};
    require_root();
    let ns = Netns::new("nfnl").unwrap();
    let err = ns
        .run(|| {
            let mut sock = SetSocket::open("oemesh-no-such-table").unwrap();
            let peer: IpAddr = "192.0.2.7".parse().unwrap();
            sock.update(SetOp::Add, &[peer], |_| "private_peers_v4")
        })
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("add element inet oemesh-no-such-table private_peers_v4 { 192.0.2.7 }")
            && err.contains("No such file"),
        "{err}"
    );
}
