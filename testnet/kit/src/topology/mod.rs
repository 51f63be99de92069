//! The oemesh testnet in network namespaces: a switch, a `dns` host (BIND 9), four end hosts.
//!
//! | host    | IPv4          | IPv6           | runs                                   |
//! |---------|---------------|----------------|----------------------------------------|
//! | `dns`   | 192.0.2.53    | 2001:db8::53   | BIND 9: `oe.test.`, `2.0.192.in-addr.arpa.`, `8.b.d.0.1.0.0.2.ip6.arpa.`, TSIG updates |
//! | `alice` | 192.0.2.10    | 2001:db8::10   | `oemesh run`, key published with `dnskeys publish` |
//! | `bob`   | 192.0.2.20    | 2001:db8::20   | `oemesh run`, key published            |
//! | `carol` | 192.0.2.30    | 2001:db8::30   | `oemesh run` without a key (anonymous OE) |
//! | `dave`  | 192.0.2.40    | 2001:db8::40   | nothing (the legacy host)              |
//!
//! With [`Options::dnssec`] the zones are signed and the agents validate from
//! [`Testnet::anchor_file`]; `dns` can also run a forger ([`Testnet::start_forger`],
//! 192.0.2.54) and a validating resolver (192.0.2.55).
//!
//! The switch is a Linux bridge (`br0`) in a namespace of its own;
//! [`Testnet::capture`] runs tcpdump on it and so sees everything between the
//! hosts. Keys are made with the real `dnskeys keygen` and published with the
//! real `dnskeys publish --server 192.0.2.53:53 --tsig-key …`, run inside the
//! host's namespace as that host's admin would.
//!
//! ```no_run
//! use oemesh_testkit::topology::{Binaries, Options, Testnet};
//! let bins = Binaries::locate(std::path::Path::new("target/debug/oemesh")).unwrap();
//! let net = Testnet::up(Options::new("demo", bins)).unwrap();
//! let peers = net.alice().peers().unwrap();
//! println!("{peers:?}");
//! ```
//!
//! Binaries: the caller passes the paths of `oemesh` and `dnskeys`
//! ([`Binaries`]). A test of the agent crate has only
//! `env!("CARGO_BIN_EXE_oemesh")`; [`Binaries::locate`] finds `dnskeys` next to
//! it (or in `$OEMESH_DNSKEYS`), building it with `cargo build -p dnskeys` when
//! it is not there.
//!
//! Teardown (on drop): agents get SIGTERM (so they remove their routes), then
//! BIND and the namespaces go, then the temporary directory. With
//! [`Options::keep`] (or [`Testnet::leave_running`]) nothing is torn down:
//! the testnet writes a record of what it left running ([`Kept`], in
//! [`KEPT_DIR`]) and says how to enter each host and how to tear it all down
//! (`testnet/demo --down`, which is [`Kept::down`]). The stale-namespace sweep
//! ([`crate::netns::cleanup_stale`]) leaves recorded namespaces alone.

mod config;
mod host;
mod kept;
pub mod nat;
pub mod sites;

pub use config::{AgentConfig, Binaries, Options};
pub use host::{Host, LinkCounters, Peer, parse_link_counters, parse_peers};
pub use kept::{DownReport, KEPT_DIR, Kept, KeptHost, KeptProcess};
pub use nat::{HomeLan, HomeLanOptions, NatLayout, NatRouter};

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bind::forge::{Forgery, start_forger};
use crate::bind::resolver::start_validating_resolver;
use crate::bind::{Bind, Named};
use crate::capture::Capture;
use crate::netns::{Netns, Switch};
use crate::process::{require_programs, require_root};

/// The testnet's IPv4 segment (TEST-NET-1).
pub const SUBNET_V4: &str = "192.0.2.0/24";
/// The testnet's IPv6 segment (documentation prefix).
pub const SUBNET_V6: &str = "2001:db8::/64";
/// The forward zone BIND serves (`alice.oe.test.` …).
pub const FORWARD_ZONE: &str = "oe.test.";
/// The DNS server's address.
pub const DNS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// The DNS server's IPv6 address.
pub const DNS_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);
/// Where [`Testnet::start_forger`] is usually asked to listen (the `dns` host).
pub const FORGER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 54);
/// The forger's IPv6 address.
pub const FORGER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x54);
/// Where [`Testnet::start_validating_resolver`] is usually asked to listen.
pub const RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 55);
/// The validating resolver's IPv6 address.
pub const RESOLVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x55);
/// The anchor file in the testnet's directory (with [`Options::dnssec`]).
pub const ANCHOR_FILE: &str = "anchors.txt";
/// The switch interface every capture listens on (in the switch namespace).
pub const SWITCH_IFACE: &str = "br0";

/// How long an agent may take to answer `oemesh status` after starting.
const AGENT_READY: Duration = Duration::from_secs(20);
/// Bound on one `oemesh` CLI call or `dnskeys` run.
const CLI_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on `cargo build -p dnskeys`.
const BUILD_TIMEOUT: Duration = Duration::from_secs(540);

/// What each end host is and does.
#[derive(Clone, Copy, Debug)]
struct HostSpec {
    name: &'static str,
    last_octet: u8,
    agent: bool,
    key: bool,
}

const HOSTS: [HostSpec; 4] = [
    HostSpec {
        name: "alice",
        last_octet: 10,
        agent: true,
        key: true,
    },
    HostSpec {
        name: "bob",
        last_octet: 20,
        agent: true,
        key: true,
    },
    HostSpec {
        name: "carol",
        last_octet: 30,
        agent: true,
        key: false,
    },
    HostSpec {
        name: "dave",
        last_octet: 40,
        agent: false,
        key: false,
    },
];

/// The DNS host: its namespace and BIND.
#[derive(Debug)]
pub struct DnsHost {
    bind: Bind,
    ns: Netns,
}

impl DnsHost {
    /// The namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The BIND instance (dig, nsupdate, TSIG key file).
    pub fn bind(&self) -> &Bind {
        &self.bind
    }

    /// `192.0.2.53`.
    pub fn ip(&self) -> IpAddr {
        IpAddr::V4(DNS_V4)
    }

    /// IPSECKEY records at `addr`'s reverse name, as dig shows their RDATA
    /// (`10 0 4 . KEY`), asked of BIND directly.
    pub fn ipseckeys(&self, addr: IpAddr) -> Result<Vec<String>> {
        let out = self
            .bind
            .dig(&["+norecurse", "-x", &addr.to_string(), "IPSECKEY"])?;
        Ok(out
            .lines()
            .filter(|l| l.split_whitespace().nth(3) == Some("IPSECKEY"))
            .map(|l| l.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
            .collect())
    }
}

/// Everything that is torn down on drop, in field order.
#[derive(Debug)]
struct Parts {
    hosts: Vec<Host>,
    dns: DnsHost,
    switch: Switch,
    dir: tempfile::TempDir,
}

/// The running testnet. See the [module docs](self).
#[derive(Debug)]
pub struct Testnet {
    parts: Option<Parts>,
    keep: bool,
    label: String,
    binaries: Binaries,
}

impl Testnet {
    /// Builds the namespaces and the switch, starts BIND, makes and publishes
    /// alice's and bob's keys, writes every agent's config and (unless told
    /// otherwise) starts the agents. Fails (never skips) when not root or a
    /// program is missing.
    pub fn up(opts: Options) -> Result<Testnet> {
        require_root();
        require_programs(&["ip", "nft", "dig", "nsupdate", "tcpdump"]);
        let dir = tempfile::Builder::new()
            .prefix("oemesh-testnet-")
            .tempdir()?;
        let label = |s: &str| format!("{}-{s}", opts.label);
        let switch = Switch::new(&label("sw"))?;

        let dns_ns = Netns::new(&label("dns"))?;
        switch.attach(&dns_ns, &format!("{DNS_V4}/24"))?;
        dns_ns.add_addr("eth0", &format!("{DNS_V6}/64"))?;
        let names: Vec<(String, IpAddr)> = HOSTS
            .iter()
            .flat_map(|h| {
                [
                    (h.name.to_owned(), IpAddr::V4(v4_of(h))),
                    (h.name.to_owned(), IpAddr::V6(v6_of(h))),
                ]
            })
            .collect();
        let names_ref: Vec<(&str, IpAddr)> = names.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        let bind = if opts.dnssec {
            Bind::start_in_signed(&dns_ns, IpAddr::V4(DNS_V4), FORWARD_ZONE, &names_ref)?
        } else {
            Bind::start_in(&dns_ns, IpAddr::V4(DNS_V4), FORWARD_ZONE, &names_ref)?
        };
        let dns = DnsHost { bind, ns: dns_ns };
        let mut agent_config = opts.agent.clone();
        if let Some(anchors) = dns.bind.anchor_file() {
            // A copy beside the agents' configs: it outlives nothing they need.
            let copy = dir.path().join(ANCHOR_FILE);
            std::fs::copy(&anchors, &copy)
                .with_context(|| format!("copying {}", anchors.display()))?;
            agent_config.validate_dnssec(&copy);
        }

        let mut hosts = Vec::new();
        for spec in HOSTS {
            let ns = Netns::new(&label(spec.name))?;
            let iface = switch.attach(&ns, &format!("{}/24", v4_of(&spec)))?;
            ns.add_addr(&iface, &format!("{}/64", v6_of(&spec)))?;
            let mut host = Host {
                agent: Mutex::new(None),
                ns,
                name: spec.name.to_owned(),
                v4: v4_of(&spec),
                v6: v6_of(&spec),
                iface,
                key: None,
                public_key: None,
                runs_agent: spec.agent,
                dir: dir.path().to_owned(),
                oemesh: opts.binaries.oemesh.clone(),
                log_level: opts.log_level.clone(),
            };
            if spec.key {
                publish_key(&mut host, &opts.binaries.dnskeys, &dns)?;
            }
            if spec.agent {
                host.set_agent_config(&agent_config)?;
            }
            hosts.push(host);
        }
        let net = Testnet {
            parts: Some(Parts {
                hosts,
                dns,
                switch,
                dir,
            }),
            keep: opts.keep,
            label: opts.label.clone(),
            binaries: opts.binaries.clone(),
        };
        if opts.start_agents {
            for host in net.hosts().iter().filter(|h| h.runs_agent) {
                host.start_agent()?;
            }
        }
        Ok(net)
    }

    fn parts(&self) -> &Parts {
        // Only `drop` takes the parts out.
        self.parts
            .as_ref()
            .expect("testnet parts present until drop")
    }

    /// Every end host: alice, bob, carol, dave.
    pub fn hosts(&self) -> &[Host] {
        &self.parts().hosts
    }

    /// The end host called `name` (`alice`, `bob`, `carol`, `dave`).
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts().iter().find(|h| h.name == name)
    }

    fn fixed(&self, name: &str) -> &Host {
        self.host(name)
            .expect("every testnet has alice, bob, carol and dave")
    }

    /// 192.0.2.10: agent, key published.
    pub fn alice(&self) -> &Host {
        self.fixed("alice")
    }

    /// 192.0.2.20: agent, key published.
    pub fn bob(&self) -> &Host {
        self.fixed("bob")
    }

    /// 192.0.2.30: agent without a key (anonymous).
    pub fn carol(&self) -> &Host {
        self.fixed("carol")
    }

    /// 192.0.2.40: no agent.
    pub fn dave(&self) -> &Host {
        self.fixed("dave")
    }

    /// The DNS server.
    pub fn dns(&self) -> &DnsHost {
        &self.parts().dns
    }

    /// The trust anchors of the signed zones ([`Options::dnssec`]): the
    /// DNSKEY records with flags 257 as `dig +noall +answer DNSKEY zone.`
    /// prints them, what every agent's `[dns] trust_anchors` names. `None`
    /// when the zones are unsigned.
    pub fn anchor_file(&self) -> Option<PathBuf> {
        self.dns()
            .bind
            .signed()
            .then(|| self.dir().join(ANCHOR_FILE))
    }

    /// Starts a second `named` on the `dns` host at `addr` (added to its
    /// interface when missing; [`FORGER_V4`], [`FORGER_V6`]) that serves
    /// `forgery` of the reverse zones as they are now. Point an agent at it
    /// with [`AgentConfig::use_dns_servers`]. Stopped on drop.
    pub fn start_forger(&self, addr: IpAddr, forgery: Forgery) -> Result<Named> {
        self.dns_addr(addr)?;
        start_forger(&self.dns().bind, SocketAddr::new(addr, 53), &forgery)
    }

    /// Starts a validating BIND resolver on the `dns` host at `addr` (added
    /// when missing; [`RESOLVER_V4`], [`RESOLVER_V6`]), anchored at the
    /// zones' keys and asking the testnet's BIND. Needs [`Options::dnssec`].
    /// Stopped on drop.
    pub fn start_validating_resolver(&self, addr: IpAddr) -> Result<Named> {
        self.dns_addr(addr)?;
        start_validating_resolver(&self.dns().bind, SocketAddr::new(addr, 53))
    }

    /// Adds `addr` to the `dns` host's interface unless it has it.
    fn dns_addr(&self, addr: IpAddr) -> Result<()> {
        let ns = &self.dns().ns;
        let have = ns.ip(&["-o", "addr", "show", "dev", "eth0"])?;
        if have.contains(&format!(" {addr}/")) {
            return Ok(());
        }
        let cidr = match addr {
            IpAddr::V4(a) => format!("{a}/24"),
            IpAddr::V6(a) => format!("{a}/64"),
        };
        ns.add_addr("eth0", &cidr)
    }

    /// The switch (its namespace holds `br0`).
    pub fn switch(&self) -> &Switch {
        &self.parts().switch
    }

    /// The testnet's directory (configs, keys, sockets, logs, captures).
    pub fn dir(&self) -> &Path {
        self.parts().dir.path()
    }

    /// Starts tcpdump on the switch (`br0`), writing `<dir>/<name>.pcap`: it
    /// sees every frame between the hosts.
    pub fn capture(&self, name: &str) -> Result<Capture> {
        let pcap = self.dir().join(format!("{name}.pcap"));
        Capture::start(self.switch().netns(), SWITCH_IFACE, "", &pcap)
    }

    /// How to reach each host by hand (`ip netns exec …`).
    pub fn describe(&self) -> String {
        describe(self.parts())
    }

    /// Leaves everything running and returns the record of it, saved in
    /// [`KEPT_DIR`] for `testnet/demo --down` and `--shell`
    /// ([`Kept::instructions`] says what to do with it).
    /// When the record cannot be made, everything is torn down instead.
    pub fn leave_running(mut self) -> Result<Kept> {
        self.keep = false;
        let parts = self.parts.take().expect("testnet parts present until drop");
        // Nothing is leaked without a record that leads back to it.
        let kept = record(&parts, &self.label, &self.binaries).and_then(|k| k.save().map(|()| k));
        if kept.is_ok() {
            leak(parts);
        }
        kept
    }

    /// Stops the agents (SIGTERM), BIND and deletes the namespaces now,
    /// reporting the first error.
    pub fn down(mut self) -> Result<()> {
        self.keep = false;
        let mut first = Ok(());
        for h in self.hosts() {
            if h.agent_pid().is_some()
                && let Err(e) = h.stop_agent()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        drop(self);
        first
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let Some(parts) = self.parts.take() else {
            return;
        };
        if self.keep {
            match record(&parts, &self.label, &self.binaries).and_then(|k| k.save().map(|()| k)) {
                Ok(k) => {
                    leak(parts);
                    eprintln!("testnet left running.\n{}", k.instructions());
                }
                Err(e) => eprintln!("testnet NOT left running: no record of it ({e:#})"),
            }
        }
        // Otherwise `parts` drops here in field order: agents, BIND, switch, dir.
    }
}

/// Leaks everything: no SIGTERM, no namespace deletion, no directory removal.
fn leak(parts: Parts) {
    let Parts {
        hosts,
        dns,
        switch,
        dir,
    } = parts;
    let _ = dir.keep();
    std::mem::forget((hosts, dns, switch));
}

/// The record of `parts` as a kept testnet: every process, namespace and directory.
fn record(parts: &Parts, label: &str, binaries: &Binaries) -> Result<Kept> {
    let mut processes = Vec::new();
    let mut wanted = vec![("named".to_owned(), parts.dns.bind.pid())];
    wanted.extend(
        parts
            .hosts
            .iter()
            .filter_map(|h| Some((format!("oemesh on {}", h.name), h.agent_pid()?))),
    );
    for (name, pid) in wanted {
        processes.push(
            KeptProcess::of(&name, pid)
                .with_context(|| format!("{name} (pid {pid}) is not running"))?,
        );
    }
    let mut bin_dirs: Vec<PathBuf> = Vec::new();
    for bin in [&binaries.oemesh, &binaries.dnskeys] {
        let dir = std::fs::canonicalize(bin)
            .with_context(|| format!("resolving {}", bin.display()))?
            .parent()
            .map(Path::to_path_buf)
            .context("binary without a directory")?;
        if !bin_dirs.contains(&dir) {
            bin_dirs.push(dir);
        }
    }
    let mut hosts = vec![KeptHost {
        name: "dns".into(),
        netns: parts.dns.ns.name().to_owned(),
        ip: IpAddr::V4(DNS_V4),
        socket: None,
        role: format!("BIND 9, files in {}", parts.dns.bind.dir().display()),
    }];
    hosts.extend(parts.hosts.iter().map(|h| KeptHost {
        name: h.name.clone(),
        netns: h.ns.name().to_owned(),
        ip: h.ip(),
        socket: h.runs_agent.then(|| h.socket_path()),
        role: match (h.runs_agent, h.key.is_some()) {
            (true, true) => "agent, key published".into(),
            (true, false) => "agent, no key (anonymous)".into(),
            (false, _) => "no agent".into(),
        },
    }));
    let mut namespaces = vec![parts.switch.netns().name().to_owned()];
    namespaces.extend(hosts.iter().map(|h| h.netns.clone()));
    let dir = parts.dir.path().to_owned();
    Ok(Kept {
        file: Kept::file_for(&dir),
        label: label.to_owned(),
        kept_at: kept::unix_now(),
        dir,
        bind_dir: parts.dns.bind.dir().to_owned(),
        bin_dirs,
        switch_netns: parts.switch.netns().name().to_owned(),
        namespaces,
        processes,
        hosts,
        keeper: None,
    })
}

fn describe(parts: &Parts) -> String {
    let mut s = String::new();
    let d = &parts.dns;
    let _ = writeln!(s, "oemesh testnet in {}", parts.dir.path().display());
    let _ = writeln!(
        s,
        "  dns    {DNS_V4:<12} ip netns exec {} bash    (BIND: {}, TSIG key: {})",
        d.ns.name(),
        d.bind.dir().display(),
        d.bind.tsig_key_file().display()
    );
    if d.bind.signed() {
        let anchors = parts.dir.path().join(ANCHOR_FILE);
        let _ = writeln!(s, "         zones signed; anchors: {}", anchors.display());
    }
    for h in &parts.hosts {
        h.describe_into(&mut s, 6);
    }
    let _ = writeln!(
        s,
        "  switch ip netns exec {} tcpdump -ni {SWITCH_IFACE}",
        parts.switch.netns().name()
    );
    s
}

fn v4_of(h: &HostSpec) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, h.last_octet)
}

fn v6_of(h: &HostSpec) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(h.last_octet))
}

/// `dnskeys keygen` then `dnskeys publish` for the host's IPv4 address, run
/// inside the host's namespace against BIND with the TSIG key.
fn publish_key(host: &mut Host, dnskeys: &Path, dns: &DnsHost) -> Result<()> {
    let key = host.dir.join(format!("{}.key", host.name));
    let dnskeys_s = dnskeys.to_str().context("dnskeys path is not UTF-8")?;
    let key_s = key.to_str().context("key path is not UTF-8")?;
    let out = host
        .ns
        .exec(&[dnskeys_s, "keygen", "--out", key_s], CLI_TIMEOUT)
        .with_context(|| format!("{}: dnskeys keygen", host.name))?;
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let tsig = dns.bind.tsig_key_file();
    let tsig_s = tsig.to_str().context("TSIG path is not UTF-8")?;
    let server = dns.bind.server();
    let ip = host.v4.to_string();
    host.ns
        .exec(
            &[
                dnskeys_s,
                "publish",
                "--key",
                key_s,
                "--ip",
                &ip,
                "--server",
                &server,
                "--tsig-key",
                tsig_s,
            ],
            CLI_TIMEOUT,
        )
        .with_context(|| format!("{}: dnskeys publish", host.name))?;
    host.key = Some(key);
    host.public_key = Some(public);
    Ok(())
}
