#![allow(clippy::unwrap_used, clippy::panic)] // test helpers: failing loudly is the point
use super::*;
use std::net::IpAddr;

const EXAMPLE: &str = include_str!("../../../docs/oemesh.example.toml");

fn errors(text: &str) -> Vec<KeyError> {
    match Config::parse(text) {
        Err(ParseError::Invalid(errors)) => errors,
        other => panic!("expected validation errors for {text:?}, got {other:?}"),
    }
}

fn one_error(text: &str) -> KeyError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn example_parses_with_every_key() {
    let cfg = Config::parse(EXAMPLE).unwrap();
    assert_eq!(cfg.key.as_deref(), Some(Path::new("/etc/oemesh/host.key")));
    let dual = Addresses {
        v4: Some("192.0.2.10".parse().unwrap()),
        v6: Some("2001:db8::10".parse().unwrap()),
    };
    assert_eq!(cfg.address, Some(dual));
    assert_eq!(cfg.dns.servers, vec!["192.0.2.53:53".parse().unwrap()]);
    assert_eq!(cfg.control_group.as_deref(), Some("adm"));
    assert_eq!(cfg.metrics_listen, Some("127.0.0.1:9618".parse().unwrap()));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(cfg.policy.lookup(ip("192.0.2.53")).group, Group::Clear);
    assert_eq!(
        cfg.policy.lookup(ip("192.0.2.20")).group,
        Group::PrivateOrClear
    );
    assert_eq!(cfg.policy.lookup(ip("198.51.100.3")).group, Group::Private);
    assert!(!cfg.policy.accepts_anonymous(Group::Private));
    // The values the example marks as defaults are the defaults.
    let d = Config::default();
    assert_eq!(cfg.ike, d.ike);
    assert_eq!(cfg.hold, d.hold);
    assert_eq!(cfg.outcome, d.outcome);
    assert_eq!(cfg.tun, d.tun);
    assert_eq!(cfg.routing, d.routing);
    assert_eq!(cfg.dns.timeout, d.dns.timeout);
    assert_eq!(cfg.control_socket, d.control_socket);
}

#[test]
fn example_documents_every_key() {
    // Each key the parser knows appears in the example, so the example is the
    // reference: a new key without documentation fails here.
    for key in [
        "key",
        "address",
        "control_socket",
        "control_group",
        "servers",
        "timeout",
        "port",
        "natt_port",
        "ike_lifetime",
        "child_lifetime",
        "anonymous_timeout",
        "icmp_grace",
        "cookie_rate",
        "udp_workers",
        "rekey_margin",
        "idle_timeout",
        "packets",
        "bytes",
        "total_bytes",
        "clear_lifetime",
        "downgrade_guard",
        "private-or-clear",
        "private",
        "clear-or-private",
        "clear",
        "protects",
        "block",
        "require-authenticated",
        "listen",
        "name",
        "mtu",
        "offload",
        "multi_queue",
        "table",
        "fwmark",
        "rule_priority",
        "suppress_main",
        "pool",
        "max_addresses",
        "request_address",
        "anonymous",
    ] {
        let needle = format!("\n{key} = ");
        assert!(
            EXAMPLE.contains(&needle),
            "the example does not set {key:?}"
        );
    }
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(Config::parse("").unwrap(), Config::default());
    let d = Config::default();
    assert_eq!(d.dns.timeout, Duration::from_secs(1));
    assert_eq!(d.ike.timeout, Duration::from_secs(2));
    assert_eq!(d.outcome.clear_lifetime, Duration::from_secs(900));
    assert_eq!(d.tun.name, "oemesh0");
    assert!(d.metrics_listen.is_none());
}

#[test]
fn unknown_keys_are_rejected() {
    for text in [
        "kee = \"/x\"",
        "[dns]\nserver = []",
        "[policy]\nprivate_or_clear = []",
        "[nope]\n",
    ] {
        match Config::parse(text) {
            Err(ParseError::Syntax(m)) => assert!(m.contains("unknown field"), "{text:?}: {m}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn wrong_types_are_rejected_with_the_line() {
    let Err(ParseError::Syntax(m)) = Config::parse("[ike]\nport = \"500\"") else {
        panic!()
    };
    assert!(m.contains("port"), "{m}");
}

#[test]
fn cidr_errors_name_the_key_and_the_fix() {
    let e = one_error("[policy]\nprivate = [\"10.0.0.0/8\", \"10.0.0.0/33\"]");
    assert_eq!(e.key, "policy.private[1]");
    assert_eq!(
        e.to_string(),
        "policy.private[1]: not a CIDR: `10.0.0.0/33`: prefix length 33 is longer than 32"
    );
    let e = one_error("[policy]\nclear = [\"10.1.2.3/16\"]");
    assert!(e.message.contains("the network is 10.1.0.0/16"), "{e}");
    let e = one_error("[policy]\nclear = [\"10.0.0.0/8\"]\nblock = [\"10.0.0.0/8\"]");
    assert_eq!(e.key, "policy.block[0]");
    assert!(e.message.contains("already listed in policy.clear"), "{e}");
    let e = one_error("[policy]\nrequire-authenticated = [\"privat\"]");
    assert_eq!(e.key, "policy.require-authenticated[0]");
    assert!(e.message.contains("private-or-clear"), "{e}");
}

#[test]
fn passthrough_is_refused_in_private_and_named() {
    let e = one_error("[policy.negotiation]\nprivate = \"passthrough\"");
    assert_eq!(e.key, "policy.negotiation.private");
    assert!(e.message.contains("never sends in clear"), "{e}");
    let e = one_error("[policy.negotiation]\nblock = \"passthrough\"");
    assert_eq!(e.key, "policy.negotiation.block");
    let e = one_error("[policy.negotiation]\nprivate-or-clear = \"pass\"");
    assert_eq!(e.key, "policy.negotiation.private-or-clear");
    assert!(e.message.contains("hold or passthrough"), "{e}");
    let e = one_error("[policy.negotiation]\nprivat = \"hold\"");
    assert_eq!(e.key, "policy.negotiation.privat");
    let e = one_error("[ike]\ntimeout = \"1s\"\nanonymous_timeout = \"2s\"");
    assert_eq!(e.key, "ike.anonymous_timeout");
}

#[test]
fn passthrough_in_private_or_clear_reaches_the_core_policy() {
    use oemesh_core::oe::Negotiation;
    let cfg = Config::parse(
        "[policy]\nprivate-or-clear = [\"10.0.0.0/8\"]\n[policy.negotiation]\nprivate-or-clear = \"passthrough\"\n",
    )
    .unwrap();
    let m = cfg.policy.lookup("10.1.2.3".parse().unwrap());
    assert_eq!(m.options.negotiation, Negotiation::Passthrough);
    let m = cfg.policy.lookup("192.0.2.1".parse().unwrap());
    assert_eq!(m.options.negotiation, Negotiation::Hold);
    assert_eq!(
        cfg.ike.anonymous_timeout,
        std::time::Duration::from_millis(250)
    );
}

#[test]
fn every_validation_error_names_its_key() {
    let cases: &[(&str, &str)] = &[
        ("key = \"\"", "key"),
        ("address = \"192.0.2\"", "address"),
        ("address = \"0.0.0.0\"", "address"),
        ("address = [\"192.0.2.1\", \"ff02::1\"]", "address[1]"),
        ("address = [\"192.0.2.1\", \"::\"]", "address[1]"),
        ("address = [\"x\"]", "address[0]"),
        ("address = []", "address"),
        ("control_socket = \"run/x.sock\"", "control_socket"),
        ("control_group = \"a b\"", "control_group"),
        ("[dns]\nservers = [\"ns1\"]", "dns.servers[0]"),
        ("[dns]\ntimeout = \"1 fortnight\"", "dns.timeout"),
        ("[dns]\ntimeout = \"0s\"", "dns.timeout"),
        ("[ike]\ntimeout = \"2\"", "ike.timeout"),
        ("[ike]\nport = 0", "ike.port"),
        ("[ike]\nnatt_port = 0", "ike.natt_port"),
        ("[ike]\nnatt_port = 500", "ike.natt_port"),
        ("[ike]\nike_lifetime = \"x\"", "ike.ike_lifetime"),
        ("[ike]\nchild_lifetime = \"x\"", "ike.child_lifetime"),
        ("[ike]\nrekey_margin = \"40m\"", "ike.rekey_margin"),
        ("[ike]\nidle_timeout = \"x\"", "ike.idle_timeout"),
        ("[hold]\npackets = 0", "hold.packets"),
        ("[hold]\nbytes = 0", "hold.bytes"),
        ("[hold]\ntotal_bytes = 1000", "hold.total_bytes"),
        (
            "[outcome]\nclear_lifetime = \"15\"",
            "outcome.clear_lifetime",
        ),
        (
            "[outcome]\ndowngrade_guard = \"-1h\"",
            "outcome.downgrade_guard",
        ),
        (
            "[policy]\nprivate-or-clear = [\"x\"]",
            "policy.private-or-clear[0]",
        ),
        (
            "[policy]\nclear-or-private = [\"x\"]",
            "policy.clear-or-private[0]",
        ),
        ("[policy]\nblock = [\"x\"]", "policy.block[0]"),
        ("[metrics]\nlisten = \"localhost\"", "metrics.listen"),
        ("[tun]\nname = \"a-very-long-interface-name\"", "tun.name"),
        ("[tun]\nmtu = 576", "tun.mtu"),
        ("[routing]\ntable = 254", "routing.table"),
        ("[routing]\nfwmark = 0", "routing.fwmark"),
        ("[routing]\nrule_priority = 32766", "routing.rule_priority"),
    ];
    for (text, key) in cases {
        let e = one_error(text);
        assert_eq!(&e.key, key, "{text:?} gave {e}");
        assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let errs = errors("[dns]\ntimeout = \"x\"\n[tun]\nmtu = 1\n");
    assert_eq!(errs.len(), 2);
    let msg = ParseError::Invalid(errs).to_string();
    assert!(msg.starts_with("2 invalid values:"), "{msg}");
}

#[test]
fn dns_servers_take_optional_ports() {
    let cfg = Config::parse(
        "[dns]\nservers = [\"192.0.2.53\", \"[2001:db8::53]:5353\", \"2001:db8::1\"]",
    )
    .unwrap();
    assert_eq!(
        cfg.dns.servers,
        vec![
            "192.0.2.53:53".parse().unwrap(),
            "[2001:db8::53]:5353".parse().unwrap(),
            "[2001:db8::1]:53".parse().unwrap()
        ]
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[tun]\nmtu = 1\n").unwrap();
    let msg = Config::load(&path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}: tun.mtu: ", path.display())),
        "{msg}"
    );
    let missing = dir.path().join("missing.toml");
    let msg = Config::load(&missing).unwrap_err().to_string();
    assert!(
        msg.contains("cannot read") && msg.contains("missing.toml"),
        "{msg}"
    );
}

#[test]
fn esp_aead_orders_the_proposal() {
    use oemesh_core::crypto::AeadAlg;
    let cfg = Config::parse("[ike]\nesp_aead = \"chacha20-poly1305\"\n").unwrap();
    assert_eq!(cfg.ike.esp_aead, EspAead::ChaCha20Poly1305);
    assert_eq!(
        cfg.ike.esp_aead.proposal_order(),
        vec![AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm]
    );
    assert_eq!(
        Config::default().ike.esp_aead.proposal_order(),
        vec![AeadAlg::Aes256Gcm, AeadAlg::ChaCha20Poly1305]
    );
    let e = one_error("[ike]\nesp_aead = \"aes-128-gcm\"\n");
    assert_eq!(e.key, "ike.esp_aead");
    assert!(e.message.contains("chacha20-poly1305"), "{e:?}");
}

#[test]
fn dnssec_modes_and_require_dnssec() {
    assert_eq!(Config::default().dns.dnssec, DnssecMode::Validate);
    for (text, mode) in [
        ("validate", DnssecMode::Validate),
        ("resolver", DnssecMode::Resolver),
        ("off", DnssecMode::Off),
    ] {
        let cfg = Config::parse(&format!("[dns]\ndnssec = \"{text}\"")).unwrap();
        assert_eq!(cfg.dns.dnssec, mode);
    }
    let e = one_error("[dns]\ndnssec = \"yes\"");
    assert_eq!(e.key, "dns.dnssec");
    assert!(
        e.message.contains("validate") && e.message.contains("resolver"),
        "{e}"
    );
    let cfg = Config::parse("[policy]\nrequire-dnssec = [\"private\"]").unwrap();
    assert!(cfg.policy.require_dnssec().eq([Group::Private]));
    let ip = "198.51.100.1".parse::<IpAddr>().unwrap();
    assert!(
        !cfg.policy.lookup(ip).options.require_dnssec,
        "unlisted: clear"
    );
    let e = one_error("[policy]\nrequire-dnssec = [\"secure\"]");
    assert_eq!(e.key, "policy.require-dnssec[0]");
}

#[test]
fn trust_anchor_files_are_checked_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.txt");
    // A DNSKEY as `dig +noall +answer DNSKEY zone.` prints it (public key only).
    std::fs::write(
        &good,
        "2.0.192.in-addr.arpa.\t3600\tIN\tDNSKEY\t257 3 13 \
         mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+ KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\n",
    )
    .unwrap();
    let cfg = Config::parse(&format!("[dns]\ntrust_anchors = [{:?}]", good.display())).unwrap();
    assert_eq!(cfg.dns.trust_anchors, vec![good.clone()]);

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "; anchors\nexample. 3600 IN TXT \"hello\"\n").unwrap();
    let e = one_error(&format!("[dns]\ntrust_anchors = [{:?}]", bad.display()));
    assert_eq!(e.key, "dns.trust_anchors[0]");
    assert!(
        e.message
            .starts_with(&format!("{}: line 2:", bad.display())),
        "the error names the file and the line: {e}"
    );
    let e = one_error("[dns]\ntrust_anchors = [\"/nonexistent/anchors.txt\"]");
    assert!(e.message.contains("/nonexistent/anchors.txt"), "{e}");
    let e = one_error("[dns]\ntrust_anchors = [\"anchors.txt\"]");
    assert!(e.message.contains("absolute"), "{e}");
    let e = one_error(&format!(
        "[dns]\ndnssec = \"off\"\ntrust_anchors = [{:?}]",
        good.display()
    ));
    assert_eq!(e.key, "dns.trust_anchors");
}

#[test]
fn nat_pool_defaults_and_errors_name_the_key() {
    let d = Config::default();
    let pool: Vec<String> = d.nat.pool.iter().map(ToString::to_string).collect();
    assert_eq!(pool, ["100.64.0.0/16", "fd00:6f65::/112"]);
    assert!(d.nat.request_address);
    // The pool is routed as `private`, after the policy's prefixes.
    let routed = d.routed_entries();
    assert!(routed.contains(&("100.64.0.0/16".parse().unwrap(), Group::Private)));
    let off = Config::parse("[nat]\npool = []\n").unwrap();
    assert!(off.nat.pool.is_empty());
    let e = one_error("[nat]\npool = [\"100.64.0.0/16\", \"10.9.0.0/24\"]\n");
    assert_eq!(e.key, "nat.pool[1]");
    assert!(e.message.contains("one prefix per family"), "{e}");
    let e = one_error("[nat]\npool = [\"100.64.0.0/31\"]\n");
    assert!(e.message.contains("no address to give"), "{e}");
    let e = one_error("[nat]\npool = [\"nope\"]\n");
    assert_eq!(e.key, "nat.pool[0]");
    let e = one_error("address = \"100.64.0.9\"\n[nat]\npool = [\"100.64.0.0/16\"]\n");
    assert!(e.message.contains("own address"), "{e}");
    let e = one_error("[nat]\nmax_addresses = 0\n");
    assert_eq!(e.key, "nat.max_addresses");
}

#[test]
fn address_is_a_string_or_a_list_with_one_per_family() {
    let parse = |text: &str| Config::parse(text).unwrap().address;
    let v4: IpAddr = "192.0.2.10".parse().unwrap();
    let v6: IpAddr = "2001:db8::10".parse().unwrap();
    assert_eq!(parse(""), None, "no key: discovered at start");
    assert_eq!(parse("address = \"192.0.2.10\""), Some(Addresses::one(v4)));
    assert_eq!(
        parse("address = \"2001:db8::10\""),
        Some(Addresses::one(v6))
    );
    assert_eq!(
        parse("address = [\"2001:db8::10\"]"),
        Some(Addresses::one(v6))
    );
    let both = parse("address = [\"2001:db8::10\", \"192.0.2.10\"]").unwrap();
    assert_eq!(both.iter().collect::<Vec<_>>(), [v4, v6], "IPv4 first");

    // Two of one family: the second is named, with the first.
    let e = one_error("address = [\"192.0.2.10\", \"192.0.2.11\"]");
    assert_eq!(e.key, "address[1]");
    assert!(
        e.message.contains("second IPv4 address (after 192.0.2.10)"),
        "{e}"
    );
    let e = one_error("address = [\"2001:db8::10\", \"192.0.2.1\", \"2001:db8::11\"]");
    assert_eq!(e.key, "address[2]");
    assert!(e.message.contains("one address per family"), "{e}");
    // Each bad element is reported, by index.
    let errs = errors("address = [\"0.0.0.0\", \"224.0.0.1\", \"nope\"]");
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["address[0]", "address[1]", "address[2]"]);
    let e = one_error("address = [\"::ffff:192.0.2.10\"]");
    assert!(e.message.contains("IPv4-mapped"), "{e}");
    let e = one_error("address = []");
    assert!(e.message.contains("empty list"), "{e}");
    // Neither a string nor a list of strings: a syntax error that says what fits.
    match Config::parse("address = 3") {
        Err(ParseError::Syntax(m)) => assert!(m.contains("one per family"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The pool must not hold either address.
    let e =
        one_error("address = [\"192.0.2.1\", \"fd00::1:9\"]\n[nat]\npool = [\"fd00::1:0/112\"]\n");
    assert!(e.message.contains("own address"), "{e}");
}
