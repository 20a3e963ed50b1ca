//! `kiln vault`.
use super::GlobalOpts;
use clap::Args;

#[derive(Args, Debug)]
pub struct VaultArgs {
    pub rest: Vec<String>,
}

pub fn run(_a: VaultArgs, _g: &GlobalOpts) -> anyhow::Result<i32> {
    anyhow::bail!("kiln vault: not built yet")
}
