//! `kiln vars` and `kiln render`.
use super::GlobalOpts;
use clap::Args;

#[derive(Args, Debug)]
pub struct VarsArgs {
    pub host: String,
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    pub host: String,
    pub file: std::path::PathBuf,
}

pub fn run(_a: VarsArgs, _g: &GlobalOpts) -> anyhow::Result<i32> {
    anyhow::bail!("kiln vars: not built yet")
}

pub fn render(_a: RenderArgs, _g: &GlobalOpts) -> anyhow::Result<i32> {
    anyhow::bail!("kiln render: not built yet")
}
