//! `kiln agent` (hidden): the agent side, run on a host by the controller over SSH. It speaks the
//! framed protocol of `crate::protocol` on stdin/stdout and exits when stdin closes.
use super::GlobalOpts;
use clap::Args;

#[derive(Args, Debug)]
pub struct AgentArgs {}

pub fn run(_a: AgentArgs, _g: &GlobalOpts) -> anyhow::Result<i32> {
    Ok(crate::host::run_stdio())
}
