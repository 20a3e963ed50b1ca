//! `kiln inventory`: the inventory as ansible-inventory shows it.
use super::GlobalOpts;
use clap::Args;

#[derive(Args, Debug)]
pub struct InventoryArgs {
    #[arg(long)]
    pub list: bool,
    #[arg(long)]
    pub graph: bool,
    #[arg(long)]
    pub host: Option<String>,
}

pub fn run(_a: InventoryArgs, _g: &GlobalOpts) -> anyhow::Result<i32> {
    anyhow::bail!("kiln inventory: not built yet")
}
