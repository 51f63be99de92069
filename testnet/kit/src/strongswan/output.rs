//! What charon says: `swanctl --list-sas --raw` parsed into [`IkeSa`] and
//! [`ChildSa`], and the secrets it logs at level 4.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// Reads a secret that charon logs at level 4 from a `filelog` text: the first
/// `<label> => N bytes @ 0x…` line (e.g. `SKEYSEED`, `Sk_ei secret`,
/// `shared Diffie Hellman secret`, `encryption initiator key`) and the hex-dump
/// lines after it. With [`CharonConfig::LOG_KEYS`](super::CharonConfig::LOG_KEYS) an interop test can compare
/// the keys it derived with charon's.
pub fn log_secret(log: &str, label: &str) -> Option<Vec<u8>> {
    let mut lines = log.lines();
    let len = lines.by_ref().find_map(|line| {
        let rest = line.split_once(&format!(" {label} => "))?.1;
        rest.split_once(" bytes")?.0.parse::<usize>().ok()
    })?;
    let mut bytes = Vec::with_capacity(len);
    for line in lines {
        if bytes.len() >= len {
            break;
        }
        // `…> <offset>: XX XX …  ascii`
        let (_, dump) = line.split_once(": ")?;
        let hex = dump.split("  ").next()?;
        for byte in hex.split_whitespace() {
            bytes.push(u8::from_str_radix(byte, 16).ok()?);
        }
    }
    (bytes.len() == len).then_some(bytes)
}

/// One IKE SA from `swanctl --list-sas --raw`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IkeSa {
    /// The connection name.
    pub name: String,
    /// `state` (`CONNECTING`, `ESTABLISHED`, `REKEYING`, `DELETING`, …).
    pub state: String,
    /// Whether this side initiated (`initiator=yes`).
    pub initiator: bool,
    /// `initiator-spi` (hex).
    pub initiator_spi: String,
    /// `responder-spi` (hex).
    pub responder_spi: String,
    /// `encr-alg`, e.g. `AES_GCM_16`, `CHACHA20_POLY1305`.
    pub encr_alg: String,
    /// `dh-group`, e.g. `CURVE_25519`.
    pub dh_group: String,
    /// The CHILD_SAs.
    pub children: Vec<ChildSa>,
    /// `local-vips`: the virtual IPs the peer gave us (a road warrior's).
    pub local_vips: Vec<String>,
    /// `remote-vips`: the virtual IPs we gave the peer (from a pool).
    pub remote_vips: Vec<String>,
    /// Every scalar field as printed (`local-host`, `remote-id`, `prf-alg`, …).
    pub fields: BTreeMap<String, String>,
}

/// One CHILD_SA from `swanctl --list-sas --raw`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildSa {
    /// The child config name.
    pub name: String,
    /// `state` (`INSTALLED`, `REKEYED`, `DELETED`, …).
    pub state: String,
    /// `mode` (`TUNNEL`).
    pub mode: String,
    /// `encap=yes`: ESP in UDP.
    pub encap: bool,
    /// `spi-in` (hex).
    pub spi_in: String,
    /// `spi-out` (hex).
    pub spi_out: String,
    /// `encr-alg`.
    pub encr_alg: String,
    /// `esn=1` present: extended sequence numbers in use.
    pub esn: bool,
    /// `local-ts`.
    pub local_ts: Vec<String>,
    /// `remote-ts`.
    pub remote_ts: Vec<String>,
    /// Every scalar field as printed (`packets-in`, `bytes-out`, `reqid`, …).
    pub fields: BTreeMap<String, String>,
}

impl ChildSa {
    /// A numeric field such as `packets-in` (0 when absent).
    pub fn counter(&self, key: &str) -> u64 {
        self.fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A value in swanctl's raw (vici) text output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Value(String),
    List(Vec<String>),
    Section(Vec<(String, Node)>),
}

/// Parses `swanctl --list-sas --raw`: one `list-sa event {…}` line per IKE SA.
pub fn parse_list_sas(text: &str) -> Result<Vec<IkeSa>> {
    let mut sas = Vec::new();
    for line in text.lines() {
        let Some(body) = line.trim().strip_prefix("list-sa event") else {
            continue;
        };
        let mut chars = body.trim_start().chars().peekable();
        if chars.next() != Some('{') {
            bail!("unexpected list-sa line: {line}");
        }
        for (name, node) in parse_section(&mut chars)? {
            if let Node::Section(items) = node {
                sas.push(ike_sa(name, items));
            }
        }
    }
    Ok(sas)
}

fn ike_sa(name: String, items: Vec<(String, Node)>) -> IkeSa {
    let mut sa = IkeSa {
        name,
        ..IkeSa::default()
    };
    for (key, node) in items {
        match node {
            Node::Value(v) => {
                sa.fields.insert(key, v);
            }
            Node::Section(children) if key == "child-sas" => {
                for (_, child) in children {
                    if let Node::Section(c) = child {
                        sa.children.push(child_sa(c));
                    }
                }
            }
            Node::List(l) if key == "local-vips" => sa.local_vips = l,
            Node::List(l) if key == "remote-vips" => sa.remote_vips = l,
            Node::Section(_) | Node::List(_) => {}
        }
    }
    let get = |k: &str| sa.fields.get(k).cloned().unwrap_or_default();
    sa.state = get("state");
    sa.initiator = get("initiator") == "yes";
    sa.initiator_spi = get("initiator-spi");
    sa.responder_spi = get("responder-spi");
    sa.encr_alg = get("encr-alg");
    sa.dh_group = get("dh-group");
    sa
}

fn child_sa(items: Vec<(String, Node)>) -> ChildSa {
    let mut c = ChildSa::default();
    for (key, node) in items {
        match node {
            Node::Value(v) => {
                c.fields.insert(key, v);
            }
            Node::List(l) if key == "local-ts" => c.local_ts = l,
            Node::List(l) if key == "remote-ts" => c.remote_ts = l,
            Node::List(_) | Node::Section(_) => {}
        }
    }
    let get = |k: &str| c.fields.get(k).cloned().unwrap_or_default();
    c.name = get("name");
    c.state = get("state");
    c.mode = get("mode");
    c.encap = get("encap") == "yes";
    c.spi_in = get("spi-in");
    c.spi_out = get("spi-out");
    c.encr_alg = get("encr-alg");
    c.esn = get("esn") == "1";
    c
}

/// Parses section items up to and including the closing `}`.
fn parse_section(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> Result<Vec<(String, Node)>> {
    let mut items = Vec::new();
    loop {
        skip_ws(chars);
        match chars.peek() {
            None => bail!("unterminated section"),
            Some('}') => {
                chars.next();
                return Ok(items);
            }
            Some(_) => {}
        }
        let key = take_while(chars, |c| !c.is_whitespace() && !"={}[]".contains(c));
        skip_ws(chars);
        match chars.next() {
            Some('{') => items.push((key, Node::Section(parse_section(chars)?))),
            Some('=') => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    let list = take_while(chars, |c| c != ']');
                    chars.next();
                    let values = list.split_whitespace().map(str::to_owned).collect();
                    items.push((key, Node::List(values)));
                } else {
                    let v = take_while(chars, |c| !c.is_whitespace() && c != '}');
                    items.push((key, Node::Value(v)));
                }
            }
            other => bail!("unexpected {other:?} after key {key:?}"),
        }
    }
}

fn skip_ws(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
}

fn take_while(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    keep: impl Fn(char) -> bool,
) -> String {
    let mut s = String::new();
    while let Some(&c) = chars.peek() {
        if !keep(c) {
            break;
        }
        s.push(c);
        chars.next();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output of strongSwan 5.9.8 (initiator side).
    const LIST_SAS: &str = "list-sa event {oe {uniqueid=1 version=2 state=ESTABLISHED local-host=192.0.2.1 local-port=4500 local-id=a@oemesh.test remote-host=192.0.2.2 remote-port=4500 remote-id=b@oemesh.test initiator=yes initiator-spi=430acc4309c4c06e responder-spi=1337161ae66a30e8 nat-remote=yes nat-any=yes encr-alg=AES_GCM_16 encr-keysize=256 prf-alg=PRF_HMAC_SHA2_256 dh-group=CURVE_25519 established=0 rekey-time=13415 child-sas {oe-1 {name=oe uniqueid=1 reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=5c667c68 spi-out=f47e9c25 encr-alg=AES_GCM_16 encr-keysize=256 bytes-in=0 packets-in=0 bytes-out=0 packets-out=3 rekey-time=3286 life-time=3960 install-time=0 local-ts=[10.1.0.1/32] remote-ts=[10.2.0.1/32]}}}}\nlist-sas reply {}\n";

    #[test]
    fn parses_list_sas() {
        let sas = parse_list_sas(LIST_SAS).expect("parses");
        assert_eq!(sas.len(), 1);
        let sa = &sas[0];
        assert_eq!(sa.name, "oe");
        assert_eq!(sa.state, "ESTABLISHED");
        assert!(sa.initiator);
        assert_eq!(sa.initiator_spi, "430acc4309c4c06e");
        assert_eq!(sa.encr_alg, "AES_GCM_16");
        assert_eq!(sa.dh_group, "CURVE_25519");
        assert_eq!(sa.fields["remote-id"], "b@oemesh.test");
        let c = &sa.children[0];
        assert_eq!((c.name.as_str(), c.state.as_str()), ("oe", "INSTALLED"));
        assert!(c.encap && !c.esn);
        assert_eq!(c.spi_out, "f47e9c25");
        assert_eq!(c.counter("packets-out"), 3);
        assert_eq!(c.local_ts, ["10.1.0.1/32"]);
        assert_eq!(c.remote_ts, ["10.2.0.1/32"]);
    }

    #[test]
    fn reads_secrets_from_the_log() {
        let log = "20:39:55 15[IKE] <oe|1> SKEYSEED => 32 bytes @ 0x7f391c022140
20:39:55 15[IKE] <oe|1>    0: E9 18 06 52 FD BA 3A F8 34 F6 E4 EA B1 DA 13 E9  ...R..:.4.......
20:39:55 15[IKE] <oe|1>   16: F3 17 7E 21 D5 32 72 47 9C CA 62 73 C1 04 F7 DB  ..~!.2rG..bs....
20:39:55 15[IKE] <oe|1> Sk_ei secret => 36 bytes @ 0x7f391c0220b0
20:39:55 15[IKE] <oe|1>    0: C3 3C 7A A3 70 C5 8D 55 84 EA 8A E8 EF C0 92 B2  .<z.p..U........
20:39:55 15[IKE] <oe|1>   16: 48 E9 CA CD 4B DB F4 CF 20 7F 12 81 93 AF B8 CC  H...K... .......
20:39:55 15[IKE] <oe|1>   32: 1D 3D C1 FD                                      .=..
";
        let seed = log_secret(log, "SKEYSEED").expect("found");
        assert_eq!(seed.len(), 32);
        assert_eq!((seed[0], seed[31]), (0xe9, 0xdb));
        let ei = log_secret(log, "Sk_ei secret").expect("found");
        assert_eq!(ei.len(), 36);
        assert_eq!(&ei[32..], &[0x1d, 0x3d, 0xc1, 0xfd]);
        assert_eq!(log_secret(log, "Sk_er secret"), None);
    }

    #[test]
    fn empty_list() {
        assert!(
            parse_list_sas("list-sas reply {}\n")
                .expect("parses")
                .is_empty()
        );
    }
}
