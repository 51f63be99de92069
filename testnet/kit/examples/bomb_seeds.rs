//! Writes the allocation bombs of `oemesh_testkit::attacker::bombs` as fuzz
//! seeds (`fuzz/make-seeds` runs it):
//!
//! ```text
//! cargo run -p oemesh-testkit --example bomb_seeds -- fuzz/seeds
//! ```
//!
//! - `ike_message/bomb-<name>`: the bomb as an IKE_SA_INIT request;
//!   `…-4500` behind the non-ESP marker; `…-sk-clear` inside an SK payload
//!   sealed by `bombs::ClearCipher` (8-byte IV, no ICV), which lets
//!   the fuzzer reach the parser of the payloads inside SK.
//! - `ike_responder/bomb-<name>`: records `len | flags | bytes` as the target
//!   reads them: the bomb as IKE_SA_INIT on 500 and on 4500 (flag bit 1; the
//!   target takes messages without the non-ESP marker), then a real
//!   IKE_SA_INIT and an IKE_AUTH whose SK payload (sealed with the keys the
//!   target's responder derives for it) holds the bomb. The responder here
//!   is configured and seeded as the target's (`fuzz/fuzz_targets/ike_responder.rs`,
//!   `endpoint(1)`), so the keys match; keep the two in step.
//!
//! The output is deterministic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use oemesh_core::crypto::ed25519::Ed25519SigningKey;
use oemesh_core::ike::endpoint::{Config, Endpoint, LocalAuth};
use oemesh_core::ike::message::{ExchangeType, Flags, Header, Identity};
use oemesh_testkit::attacker::bombs::{self, Bomb, ClearCipher, SkBomber};

/// The ike_responder target's responder, `endpoint(1)`.
fn fuzz_responder() -> Endpoint {
    let mut config = Config::new(
        LocalAuth::Ed25519(Ed25519SigningKey::from_seed(&[1; 32])),
        Identity::fqdn("fuzz.test"),
    );
    config.cookie_threshold = 4;
    config.half_open_limit = 16;
    Endpoint::new(config, [1; 32])
}

/// One record of the ike_responder target: `len(u16 BE) | flags | bytes`.
fn record(flags: u8, bytes: &[u8]) -> Result<Vec<u8>> {
    let len = u16::try_from(bytes.len()).context("record over 64 KiB")?;
    let mut out = len.to_be_bytes().to_vec();
    out.push(flags);
    out.extend_from_slice(bytes);
    Ok(out)
}

/// A real IKE_SA_INIT to the target's responder (on 500, from the target's
/// initiator address), then the bomb sealed as IKE_AUTH with the keys of the
/// half-open SA it made.
fn sk_records(bomb: Bomb) -> Result<Vec<u8>> {
    let mut responder = fuzz_responder();
    let (initiator, local) = ("192.0.2.1", "192.0.2.2");
    let remote = SocketAddr::new(initiator.parse()?, 500);
    let local = SocketAddr::new(local.parse()?, 500);
    let mut b = SkBomber::new(0x5eed);
    let init = b.init_request(None);
    responder.handle(Instant::now(), local, remote, &init);
    let Some(answer) = responder.poll_transmit() else {
        bail!("the fuzz responder did not answer IKE_SA_INIT");
    };
    if b.on_init_response(&answer.payload)?.is_some() {
        bail!("the fuzz responder asked for a cookie");
    }
    let mut out = record(0, &init)?;
    out.extend(record(0, &b.auth_bomb(bomb)?)?);
    Ok(out)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("{}", path.display()))
}

fn main() -> Result<()> {
    let seeds = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: bomb_seeds <fuzz/seeds directory>")?,
    );
    let (message, responder) = (seeds.join("ike_message"), seeds.join("ike_responder"));
    let mut n = 0;
    for (i, bomb) in Bomb::ALL.into_iter().enumerate() {
        let name = format!("bomb-{}", bomb.name());
        let spi = 0xb0b0_0000 + i as u64;
        let init = bombs::ike_sa_init(spi, bomb);
        let marked = bombs::with_non_esp_marker(&init);
        let header = Header::new(spi, 1, ExchangeType::IKE_AUTH, Flags::INITIATOR, 1);
        let clear = bombs::sealed(&header, bomb, &ClearCipher, &[0; 8])?;
        write(&message, &name, &init)?;
        write(&message, &format!("{name}-4500"), &marked)?;
        write(&message, &format!("{name}-sk-clear"), &clear)?;
        // The target hands records to `Endpoint::handle` as they are: on 4500
        // too, the message comes without the non-ESP marker.
        let mut records = record(0, &init)?;
        records.extend(record(2, &bombs::ike_sa_init(spi + 0x100, bomb))?);
        records.extend(sk_records(bomb)?);
        write(&responder, &name, &records)?;
        n += 4;
    }
    println!("wrote {n} bomb seeds under {}", seeds.display());
    Ok(())
}
