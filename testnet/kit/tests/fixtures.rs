//! The strongSwan fixtures in `core/tests/data`: a check that the committed files
//! agree with each other, and (ignored, run by hand) their regeneration.
//!
//! ```text
//! OEMESH_FIXTURE_DIR=/tmp/fx cargo test -p oemesh-testkit --test fixtures -- --ignored
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oemesh_testkit::capture::{Capture, IKE_PORT};
use oemesh_testkit::netns::{Netns, veth};
use oemesh_testkit::process;
use oemesh_testkit::strongswan::{self, Charon, CharonConfig, Ed25519Key, log_secret};

/// `keys.txt` names and the level-4 log labels they come from.
const LOG_VALUES: &[(&str, &str)] = &[
    ("dh_shared_secret", "shared Diffie Hellman secret"),
    ("skeyseed", "SKEYSEED"),
    ("sk_d", "Sk_d secret"),
    ("sk_ei", "Sk_ei secret"),
    ("sk_er", "Sk_er secret"),
    ("sk_pi", "Sk_pi secret"),
    ("sk_pr", "Sk_pr secret"),
    ("esp_key_i2r", "encryption initiator key"),
    ("esp_key_r2i", "encryption responder key"),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../core/tests/data")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_keys_txt(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .expect("keys.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The payloads (type, body) of an unencrypted IKE message (RFC 7296 §3.2).
fn payloads(msg: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let (mut next, mut off) = (msg[16], 28);
    while next != 0 {
        let len = usize::from(u16::from_be_bytes([msg[off + 2], msg[off + 3]]));
        out.push((next, &msg[off + 4..off + len]));
        next = msg[off];
        off += len;
    }
    out
}

#[test]
fn committed_fixtures_agree_with_their_logs() {
    for prefix in ["strongswan-", "strongswan-chacha-"] {
        let dir = data_dir();
        let keys = read_keys_txt(&dir.join(format!("{prefix}keys.txt")));
        let log = std::fs::read_to_string(dir.join(format!("{prefix}keys.log"))).expect("log");
        for (name, label) in LOG_VALUES {
            let from_log = log_secret(&log, label)
                .ok_or(label)
                .expect("secret in the log");
            assert_eq!(keys[*name], hex(&from_log), "{prefix}{name}");
        }
        let init = std::fs::read(dir.join(format!("{prefix}ike_sa_init-req.bin"))).expect("bin");
        let resp = std::fs::read(dir.join(format!("{prefix}ike_sa_init-resp.bin"))).expect("bin");
        assert_eq!(&init[..8], &resp[..8], "same initiator SPI");
        assert_eq!((init[18], resp[18]), (34, 34), "IKE_SA_INIT");
        for (msg, nonce, ke) in [(&init, "ni", "ke_i"), (&resp, "nr", "ke_r")] {
            let p = payloads(msg);
            let body = |t: u8| p.iter().find(|(ty, _)| *ty == t).expect("payload").1;
            assert_eq!(keys[nonce], hex(body(40)), "{prefix}{nonce}");
            assert_eq!(keys[ke], hex(&body(34)[4..]), "{prefix}{ke}");
        }
        for name in ["ike_auth-req", "ike_auth-resp"] {
            let auth = std::fs::read(dir.join(format!("{prefix}{name}.bin"))).expect("bin");
            assert_eq!(&auth[..8], &init[..8]);
            assert_eq!((auth[16], auth[18]), (46, 35), "SK payload, IKE_AUTH");
        }
    }
}

/// Regenerates the fixture set for one AEAD into `OEMESH_FIXTURE_DIR` (or a temp
/// dir whose path is printed). Not the committed files: compare, then copy.
#[test]
#[ignore = "run by hand to regenerate core/tests/data/strongswan-*"]
fn regenerate_fixtures() {
    strongswan::require_charon();
    let out = std::env::var_os("OEMESH_FIXTURE_DIR")
        .map_or_else(|| tempfile::tempdir().expect("tmp").keep(), PathBuf::from);
    std::fs::create_dir_all(&out).expect("out dir");
    for (prefix, first) in [("strongswan-", 0), ("strongswan-chacha-", 1)] {
        capture_one(&out, prefix, first);
    }
    eprintln!("fixtures written to {}", out.display());
}

fn capture_one(out: &Path, prefix: &str, first: usize) {
    let (alice, bob) = ("192.0.2.1", "192.0.2.2");
    let (ai, bi) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1));
    let a = Netns::new("fx-alice").expect("netns");
    let b = Netns::new("fx-bob").expect("netns");
    let (a_if, _) = veth(&a, &format!("{alice}/24"), &b, &format!("{bob}/24")).expect("veth");
    a.add_addr("lo", &format!("{ai}/32")).expect("addr");
    b.add_addr("lo", &format!("{bi}/32")).expect("addr");
    let files = tempfile::tempdir().expect("tmp");
    let ka = Ed25519Key::generate(files.path(), "a").expect("pki");
    let kb = Ed25519Key::generate(files.path(), "b").expect("pki");
    let mut ike = vec![
        "aes256gcm16-prfsha256-x25519".to_owned(),
        "chacha20poly1305-prfsha256-x25519".to_owned(),
    ];
    let mut esp = vec![
        "aes256gcm16-x25519".to_owned(),
        "chacha20poly1305-x25519".to_owned(),
    ];
    ike.rotate_left(first);
    esp.rotate_left(first);
    let make = |l: &str, r: &str, k: &Ed25519Key, p: &Ed25519Key, ids: (&str, &str), ts| {
        let mut c = CharonConfig::new(l, r);
        c.local_key = Some(k.clone());
        c.remote_pubkey = Some(p.public_pem.clone());
        c.local_id = Some(ids.0.into());
        c.remote_id = Some(ids.1.into());
        let (lt, rt): (Ipv4Addr, Ipv4Addr) = ts;
        c.local_ts = vec![format!("{lt}/32")];
        c.remote_ts = vec![format!("{rt}/32")];
        c.proposals = ike.clone();
        c.esp_proposals = esp.clone();
        c.log_levels = CharonConfig::levels(CharonConfig::LOG_KEYS);
        // As in the committed capture (the harness default is off).
        c.mobike = true;
        c
    };
    let ids = ("a@oemesh.test", "b@oemesh.test");
    let ca = make(alice, bob, &ka, &kb, ids, (ai, bi));
    let cb = make(bob, alice, &kb, &ka, (ids.1, ids.0), (bi, ai));
    let capture = Capture::start(&a, &a_if, "udp", &files.path().join("fx.pcap")).expect("tcpdump");
    let c_bob = Charon::start(&b, "fx-bob", cb).expect("charon");
    let c_alice = Charon::start(&a, "fx-alice", ca).expect("charon");
    c_alice.initiate().expect("initiate");

    let server = b.bind_udp(SocketAddr::new(bi.into(), 7777)).expect("bind");
    let client = a.bind_udp(SocketAddr::new(ai.into(), 0)).expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    client
        .send_to(b"hello through ipsec0", (bi, 7777))
        .expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).expect("recv");
    server.send_to(&buf[..n], from).expect("echo");
    client.recv(&mut buf).expect("echo back");
    let packets = capture.stop().expect("capture");

    let ike_msgs: Vec<&[u8]> = packets
        .iter()
        .filter_map(|p| p.ike_message())
        .take(4)
        .collect();
    assert!(packets[0].is_udp_port(IKE_PORT) && ike_msgs.len() == 4);
    let names = [
        "ike_sa_init-req",
        "ike_sa_init-resp",
        "ike_auth-req",
        "ike_auth-resp",
    ];
    for (name, msg) in names.iter().zip(&ike_msgs) {
        std::fs::write(out.join(format!("{prefix}{name}.bin")), msg).expect("write");
    }
    for p in packets.iter().filter(|p| p.is_esp_in_udp()) {
        let dir = if p.src.to_string() == alice {
            "i2r"
        } else {
            "r2i"
        };
        std::fs::write(out.join(format!("{prefix}esp-{dir}.bin")), &p.payload).expect("write");
    }
    let log = c_alice.log();
    let mut txt = String::from(
        "# name = hex. Ni/Nr and the KE data (Curve25519 public values) come from the IKE_SA_INIT messages;\n\
         # the rest from the level-4 charon log next to this file (see strongswan-README.md).\n",
    );
    let body = |msg: &[u8], t: u8| {
        let p = payloads(msg);
        hex(p.iter().find(|(ty, _)| *ty == t).expect("payload").1)
    };
    let (ke_i, ke_r) = (body(ike_msgs[0], 34), body(ike_msgs[1], 34));
    // KE payload data starts with the DH group and two reserved bytes.
    txt += &format!(
        "ni = {}\nnr = {}\n",
        body(ike_msgs[0], 40),
        body(ike_msgs[1], 40)
    );
    txt += &format!("ke_i = {}\nke_r = {}\n", &ke_i[8..], &ke_r[8..]);
    for (name, label) in LOG_VALUES {
        let v = log_secret(&log, label)
            .ok_or(label)
            .expect("secret in the log");
        txt += &format!("{name} = {}\n", hex(&v));
    }
    std::fs::write(out.join(format!("{prefix}keys.txt")), txt).expect("write");
    std::fs::write(out.join(format!("{prefix}keys.log")), log).expect("write");
    std::fs::copy(&ka.public_pem, out.join(format!("{prefix}initiator.pub"))).expect("copy");
    std::fs::copy(&kb.public_pem, out.join(format!("{prefix}responder.pub"))).expect("copy");
    process::wait_until("charon bob still up", Duration::from_secs(1), || {
        c_bob.list_sas().is_ok()
    })
    .expect("bob");
}
