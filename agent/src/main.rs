//! `oemesh`: the opportunistic-encryption agent (not yet implemented).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("the oemesh agent is not implemented yet; publish keys with `dnskeys` meanwhile")
}
