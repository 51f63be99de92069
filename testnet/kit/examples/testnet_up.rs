//! Brings the namespace testnet up and leaves it running (the demo's start):
//!
//! ```text
//! cargo build -p oemesh-agent -p dnskeys
//! sudo target/debug/examples/testnet_up [--down]
//! ```
//!
//! Prints how to enter each host (`ip netns exec …`). With `--down` it tears
//! everything down again after printing (a smoke test of the builder).
//! `$OEMESH_BIN` / `$OEMESH_DNSKEYS` name the binaries; otherwise they are
//! looked up (or built) in the target directory next to this example.

use oemesh_testkit::topology::{Binaries, Options, Testnet};

fn main() -> anyhow::Result<()> {
    let down = std::env::args().any(|a| a == "--down");
    let mut opts = Options::new("demo", Binaries::from_test_target_dir()?);
    opts.keep = !down;
    let net = Testnet::up(opts)?;
    // Kept: dropping `net` prints how to enter each host and leaves it all up.
    if down {
        println!("{}", net.describe());
        net.down()?;
        println!("torn down");
    }
    Ok(())
}
