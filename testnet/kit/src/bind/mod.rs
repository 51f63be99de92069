//! A real BIND 9 (`named -g`) on 127.0.0.1, authoritative for a forward zone
//! and a reverse zone per address family, updatable with a TSIG key that
//! `tsig-keygen` made.
//!
//! ```no_run
//! let bind = oemesh_testkit::bind::Bind::start().expect("BIND 9 starts");
//! let answer = bind.dig(&["10.2.0.192.in-addr.arpa.", "IPSECKEY"]).unwrap();
//! println!("{answer} from {}", bind.server());
//! ```
//!
//! Each instance has its own directory and its own free port, so tests can run
//! in parallel. On drop, `named` is killed by its PID and the directory is
//! removed.
//!
//! **Where the files live (AppArmor).** Debian's `bind9` package confines
//! `named` with the AppArmor profile `/etc/apparmor.d/usr.sbin.named`, which
//! lets it read `/etc/bind` and read and write only `/var/lib/bind` and
//! `/var/cache/bind` (plus a few fixed files); AppArmor is on by default in
//! Debian 12. So each instance's directory is
//! `/var/lib/bind/oemesh-bind-<creator pid>-XXXXXX` ([`BIND_STATE_DIR`]): its
//! config, keys, zones, journals and the `-g` log (named's inherited stderr is
//! checked against the profile too) are all inside what the profile grants.
//! Where `/var/lib/bind` does not exist or is not writable (BIND not from
//! Debian, or not root) the system temporary directory is used, and a `named`
//! that fails there under an enforcing profile is reported with what to do.
//! Directories left by a killed creator whose `named` no longer runs are
//! removed by the next instance started.
//!
//! [`Bind::start_in`] runs the same server inside a network namespace on port 53
//! at the namespace's own address, with a forward zone of the caller's choosing
//! (the testnet's `dns` host, see [`crate::topology`]).
//!
//! **Signed zones.** [`Bind::start_signed`] and [`Bind::start_in_signed`] have
//! BIND sign every zone itself with `dnssec-policy` ([`dnssec`]): one
//! ECDSAP256SHA256 CSK per zone, made and used at load; the zones stay dynamic,
//! so TSIG updates (`dnskeys publish`) work and BIND signs what they add. Startup
//! then waits for DNSKEY and RRSIG and writes the anchor files
//! ([`Bind::anchor_file`], [`Bind::delv_anchor_file`]). [`forge`] runs a second
//! `named` that lies (an unsigned copy, or the real zone with expired
//! signatures), [`resolver`] a validating BIND resolver.

mod dir;
pub mod dnssec;
mod extra;
pub mod forge;
pub mod resolver;

pub use dir::apparmor_mode;
use dir::write_private;
pub(crate) use dir::{apparmor_hint, instance_dir};
pub use extra::Named;

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;

/// The forward zone every instance serves.
pub const FORWARD_ZONE: &str = "example.test.";
/// The IPv4 reverse zone: 192.0.2.0/24 (TEST-NET-1, RFC 5737).
pub const REVERSE_V4_ZONE: &str = "2.0.192.in-addr.arpa.";
/// The IPv6 reverse zone: 2001:db8::/32 (documentation prefix, RFC 3849).
pub const REVERSE_V6_ZONE: &str = "8.b.d.0.1.0.0.2.ip6.arpa.";
/// The reverse zones of the two site LANs (10.1.0.0/24 and 10.2.0.0/24, see
/// [`crate::topology::sites`]), served besides the others by the testnet's
/// server ([`Bind::start_in`]) so that a site's admin can publish a wildcard.
pub const SITE_ZONES: [&str; 2] = ["0.1.10.in-addr.arpa.", "0.2.10.in-addr.arpa."];
/// The name of the TSIG key allowed to update the zones.
pub const TSIG_KEY_NAME: &str = "oemesh-update";
/// The name of a TSIG key the server knows but lets update nothing.
pub const READONLY_KEY_NAME: &str = "oemesh-readonly";

/// How long `named` may take to load its zones and answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The directory under which instances keep their files: Debian's AppArmor
/// profile for `named` lets it write here (see the [module docs](self)).
pub const BIND_STATE_DIR: &str = "/var/lib/bind";
/// Prefix of each instance's directory (then the creator's PID and a dash).
pub const DIR_PREFIX: &str = "oemesh-bind-";

/// A running `named`. See the [module docs](self).
pub struct Bind {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    /// The namespace `named` runs in (by name), `None`: the caller's.
    netns: Option<String>,
    zones: Vec<String>,
    /// Zones signed by `dnssec-policy`, anchors written.
    signed: bool,
}

impl fmt::Debug for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bind")
            .field("pid", &self.child.id())
            .field("server", &self.server())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Bind {
    /// Starts `named` and waits until it answers for its zones.
    ///
    /// Fails (never skips) when BIND is not installed, saying how to get it.
    pub fn start() -> Result<Self> {
        let port = free_port()?;
        Self::launch(Layout {
            netns: None,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            forward_zone: FORWARD_ZONE.to_owned(),
            hosts: vec![("ns".to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST))],
            signed: false,
            site_zones: false,
        })
    }

    /// [`Bind::start`] with every zone signed by BIND (`dnssec-policy`, see
    /// [`dnssec`]); returns once each zone answers with DNSKEY and RRSIG and
    /// the anchor files are written.
    pub fn start_signed() -> Result<Self> {
        let port = free_port()?;
        Self::launch(Layout {
            netns: None,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            forward_zone: FORWARD_ZONE.to_owned(),
            hosts: vec![("ns".to_owned(), IpAddr::V4(Ipv4Addr::LOCALHOST))],
            signed: true,
            site_zones: false,
        })
    }

    /// Starts `named` inside `ns`, listening on `addr` port 53 (an address the
    /// namespace already has), authoritative for `forward_zone` (e.g. `oe.test.`,
    /// with `ns` and an A/AAAA record per `hosts` entry), the two reverse
    /// zones [`REVERSE_V4_ZONE`] and [`REVERSE_V6_ZONE`] and the sites'
    /// [`SITE_ZONES`], updatable with the TSIG key [`TSIG_KEY_NAME`]. Waits
    /// until it answers.
    ///
    /// `named` is killed by PID on drop; it must not outlive `ns` (deleting the
    /// namespace kills it anyway).
    pub fn start_in(
        ns: &Netns,
        addr: IpAddr,
        forward_zone: &str,
        hosts: &[(&str, IpAddr)],
    ) -> Result<Self> {
        Self::start_in_with(ns, addr, forward_zone, hosts, false)
    }

    /// [`Bind::start_in`] with every zone signed, as [`Bind::start_signed`].
    pub fn start_in_signed(
        ns: &Netns,
        addr: IpAddr,
        forward_zone: &str,
        hosts: &[(&str, IpAddr)],
    ) -> Result<Self> {
        Self::start_in_with(ns, addr, forward_zone, hosts, true)
    }

    fn start_in_with(
        ns: &Netns,
        addr: IpAddr,
        forward_zone: &str,
        hosts: &[(&str, IpAddr)],
        signed: bool,
    ) -> Result<Self> {
        let mut records: Vec<(String, IpAddr)> = vec![("ns".to_owned(), addr)];
        records.extend(hosts.iter().map(|(n, a)| ((*n).to_owned(), *a)));
        let forward_zone = if forward_zone.ends_with('.') {
            forward_zone.to_owned()
        } else {
            format!("{forward_zone}.")
        };
        Self::launch(Layout {
            netns: Some(ns.name().to_owned()),
            addr: SocketAddr::new(addr, 53),
            forward_zone,
            hosts: records,
            signed,
            site_zones: true,
        })
    }

    fn launch(layout: Layout) -> Result<Self> {
        for tool in ["named", "tsig-keygen", "dig"] {
            if which(tool).is_none() {
                bail!(
                    "'{tool}' (BIND 9) is not installed; run scripts/test, which installs \
                     the Debian packages bind9 and bind9-dnsutils (or apt-get install them)"
                );
            }
        }
        let dir = instance_dir()?;
        let d = dir.path();

        for (name, file) in [
            (TSIG_KEY_NAME, "tsig.key"),
            (READONLY_KEY_NAME, "readonly.key"),
        ] {
            let keygen = Command::new(which("tsig-keygen").unwrap_or_default())
                .args(["-a", "hmac-sha256", name])
                .output()
                .context("running tsig-keygen")?;
            if !keygen.status.success() {
                bail!(
                    "tsig-keygen failed: {}",
                    String::from_utf8_lossy(&keygen.stderr)
                );
            }
            write_private(&d.join(file), &keygen.stdout)?;
        }

        let mut zones = vec![
            layout.forward_zone.clone(),
            REVERSE_V4_ZONE.to_owned(),
            REVERSE_V6_ZONE.to_owned(),
        ];
        if layout.site_zones {
            zones.extend(SITE_ZONES.map(str::to_owned));
        }
        for zone in &zones {
            fs::write(d.join(zone_file_name(zone)), zone_file(zone, &layout))?;
        }
        let mut conf = named_conf(d, &layout, &zones);
        if layout.signed {
            fs::create_dir(d.join(dnssec::KEY_DIR))?;
            conf = dnssec::sign_zones(&conf, d, &dnssec::signed_of(&zones));
        }
        fs::write(d.join("named.conf"), conf)?;

        let child = spawn_named(layout.netns.as_deref(), d)?;
        let mut bind = Self {
            child,
            dir,
            addr: layout.addr,
            netns: layout.netns,
            zones,
            signed: layout.signed,
        };
        bind.wait_ready()?;
        if bind.signed {
            dnssec::write_anchor_files(&bind)?;
        }
        Ok(bind)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "named exited ({status}) before answering; its log:\n{}{}",
                    self.log(),
                    apparmor_hint(self.dir.path())
                );
            }
            let all_loaded = self.zones.iter().all(|zone| {
                if self.signed && !dnssec::is_site_zone(zone) {
                    // Signed at load: the DNSKEY RRset and its RRSIG are there.
                    self.dig(&["+norecurse", "+dnssec", zone, "DNSKEY"])
                        .is_ok_and(|out| dnssec::has_signed_dnskey(&out))
                } else {
                    self.dig(&["+norecurse", zone, "SOA"])
                        .is_ok_and(|out| out.contains("SOA"))
                }
            });
            if all_loaded {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "named did not answer within {START_TIMEOUT:?}; its log:\n{}{}",
                    self.log(),
                    apparmor_hint(self.dir.path())
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// The UDP/TCP port (on 127.0.0.1 for [`Bind::start`], 53 for [`Bind::start_in`]).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, or the namespace address and port 53.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// [`Bind::addr`] as text, for `--server`.
    pub fn server(&self) -> String {
        self.addr().to_string()
    }

    /// The zones served (forward, IPv4 reverse, IPv6 reverse, then in a
    /// namespace [`SITE_ZONES`]), absolute names.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// `named`'s process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The zones BIND signs: none, or all but the [`SITE_ZONES`] (see `dnssec::is_site_zone`).
    pub fn signed_zones(&self) -> Vec<&String> {
        let signed = |z: &&String| self.signed && !dnssec::is_site_zone(z);
        self.zones.iter().filter(signed).collect()
    }

    /// Whether BIND signs the zones ([`Bind::start_signed`], [`Bind::start_in_signed`]).
    pub fn signed(&self) -> bool {
        self.signed
    }

    /// Where BIND keeps the zones' DNSSEC keys (`K<zone>+013+<tag>.{key,private,state}`).
    pub fn key_dir(&self) -> PathBuf {
        self.dir.path().join(dnssec::KEY_DIR)
    }

    /// The trust anchors of a signed instance: the DNSKEY records with flags
    /// 257 of every zone, as `dig +noall +answer DNSKEY zone.` prints them
    /// (what `[dns] trust_anchors` reads). `None` when unsigned.
    pub fn anchor_file(&self) -> Option<PathBuf> {
        self.signed
            .then(|| self.dir.path().join(dnssec::ANCHOR_FILE))
    }

    /// The same anchors as a `trust-anchors { … static-key … };` block, for
    /// `delv -a` and a resolver's `named.conf`. `None` when unsigned.
    pub fn delv_anchor_file(&self) -> Option<PathBuf> {
        self.signed
            .then(|| self.dir.path().join(dnssec::DELV_ANCHOR_FILE))
    }

    /// The namespace `named` runs in, if any.
    pub(crate) fn netns_name(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// A command that runs `program` where `named` runs (inside its namespace, if any).
    fn command(&self, program: &str) -> Command {
        command_in(self.netns.as_deref(), program)
    }

    /// The `tsig-keygen` output (`key "oemesh-update" { algorithm hmac-sha256; secret "..."; };`).
    pub fn tsig_key_file(&self) -> PathBuf {
        self.dir.path().join("tsig.key")
    }

    /// A key file for [`READONLY_KEY_NAME`]: known to the server, allowed to update nothing.
    pub fn readonly_tsig_key_file(&self) -> PathBuf {
        self.dir.path().join("readonly.key")
    }

    /// The instance's directory (config, zones, journals, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `named` wrote so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Runs `dig @ADDR -p PORT +noall +answer +time=2 +tries=1 ARGS...` (inside
    /// the server's namespace, if any) and returns its standard output; fails
    /// when dig does.
    pub fn dig(&self, args: &[&str]) -> Result<String> {
        dig_at(self.netns.as_deref(), self.addr, args)
    }

    /// Sends `script` (nsupdate commands, without `server` and `send`) with
    /// `nsupdate -k` and the instance's TSIG key.
    pub fn nsupdate(&self, script: &str) -> Result<()> {
        use std::io::Write as _;
        let mut child = self
            .command("nsupdate")
            .arg("-k")
            .arg(self.tsig_key_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nsupdate")?;
        let input = format!(
            "server {} {}\n{script}\nsend\nquit\n",
            self.addr.ip(),
            self.port()
        );
        child
            .stdin
            .take()
            .context("nsupdate stdin")?
            .write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nsupdate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        // Child::kill signals this PID only; then reap it. The TempDir field
        // removes the directory afterwards.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where and what one instance serves.
struct Layout {
    netns: Option<String>,
    addr: SocketAddr,
    forward_zone: String,
    /// Names in the forward zone and their addresses (`ns` first).
    hosts: Vec<(String, IpAddr)>,
    /// Sign every zone with `dnssec-policy`.
    signed: bool,
    /// Serve [`SITE_ZONES`] too.
    site_zones: bool,
}

/// `example.test.` → `example.test.zone`.
pub(crate) fn zone_file_name(zone: &str) -> String {
    format!("{}zone", zone)
}

fn zone_file(zone: &str, layout: &Layout) -> String {
    let fwd = &layout.forward_zone;
    let mut z = format!(
        "$TTL 300\n\
         @ IN SOA ns.{fwd} hostmaster.{fwd} 1 3600 600 86400 300\n\
         @ IN NS ns.{fwd}\n"
    );
    if zone == fwd {
        for (name, addr) in &layout.hosts {
            let rr = if addr.is_ipv4() { "A" } else { "AAAA" };
            z.push_str(&format!("{name} IN {rr} {addr}\n"));
        }
    }
    z
}

fn named_conf(dir: &Path, layout: &Layout, zones: &[String]) -> String {
    let d = dir.display();
    let port = layout.addr.port();
    let (v4, v6) = match layout.addr.ip() {
        IpAddr::V4(a) => (a.to_string(), "none".to_owned()),
        IpAddr::V6(a) => ("none".to_owned(), a.to_string()),
    };
    let mut conf = format!(
        r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ {v4}; }};
    listen-on-v6 port {port} {{ {v6}; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    notify no;
}};
controls {{ }};
logging {{ category default {{ default_stderr; }}; category lame-servers {{ null; }}; }};
include "{d}/tsig.key";
include "{d}/readonly.key";
"#
    );
    for zone in zones {
        let apex = zone.trim_end_matches('.');
        let file = zone_file_name(zone);
        conf.push_str(&format!(
            "zone \"{apex}\" {{\n    type primary;\n    file \"{d}/{file}\";\n    \
             update-policy {{ grant {TSIG_KEY_NAME} zonesub ANY; }};\n}};\n"
        ));
    }
    conf
}

/// A command that runs `program` inside namespace `netns`, or here.
pub(crate) fn command_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// `dig @ADDR -p PORT +noall +answer +time=2 +tries=1 ARGS...` in `netns`;
/// its standard output, or an error when dig fails.
pub(crate) fn dig_at(netns: Option<&str>, addr: SocketAddr, args: &[&str]) -> Result<String> {
    let out = command_in(netns, "dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .args(["+noall", "+answer", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .context("running dig")?;
    if !out.status.success() {
        bail!(
            "dig {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `named -g -c <dir>/named.conf` in `netns` (or here), its output
/// going to `<dir>/named.log`.
pub(crate) fn spawn_named(netns: Option<&str>, dir: &Path) -> Result<Child> {
    let log = fs::File::create(dir.join("named.log"))?;
    let named = which("named").unwrap_or_default();
    let mut cmd = match netns {
        // `ip netns exec` execs named, so the PID is named's.
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(named);
            c
        }
        None => Command::new(named),
    };
    cmd.arg("-g")
        .arg("-c")
        .arg(dir.join("named.conf"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting named")
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub(crate) fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on 127.0.0.1")
}

/// The full path of `tool` in PATH or the sbin directories (named lives in /usr/sbin).
pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_updates() {
        let bind = Bind::start().expect("BIND 9 starts");
        let soa = bind.dig(&[REVERSE_V6_ZONE, "SOA"]).unwrap();
        assert!(soa.contains("SOA"), "{soa}");
        bind.nsupdate("update add 7.2.0.192.in-addr.arpa. 300 IN PTR h7.example.test.")
            .unwrap();
        let ptr = bind.dig(&["7.2.0.192.in-addr.arpa.", "PTR"]).unwrap();
        assert!(ptr.contains("h7.example.test."), "{ptr}");
        let dir = bind.dir().to_path_buf();
        if rustix::process::geteuid().is_root() {
            assert!(
                dir.starts_with(BIND_STATE_DIR),
                "as root, the files go where AppArmor lets named write: {}",
                dir.display()
            );
        }
        drop(bind);
        assert!(!dir.exists());
    }
}
