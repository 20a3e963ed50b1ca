//! `kiln lab`.
use super::GlobalOpts;
use clap::Args;

#[derive(Args, Debug)]
pub struct LabArgs {
    pub rest: Vec<String>,
}

pub fn run(_a: LabArgs, _g: &GlobalOpts) -> anyhow::Result<i32> {
    anyhow::bail!("kiln lab: not built yet")
}
