//! `ping`: prove the agent on the host answers (Ansible's ping checks that Python runs).

use super::{Ctx, Module, ModuleError, Outcome, Query};
use serde::Deserialize;

pub struct Ping;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default = "pong")]
    data: String,
}

fn pong() -> String {
    "pong".into()
}

impl Module for Ping {
    const NAMES: &'static [&'static str] = &["ping", "ansible.builtin.ping"];
    type Args = Args;
    type Plan = ();

    async fn query(&self, args: Args, ctx: &Ctx) -> Result<Query<()>, ModuleError> {
        if args.data == "crash" {
            return Err(ModuleError::Failed("boom".into()));
        }
        ctx.session.ping().await?;
        Ok(Query::Done(Outcome::ok().with("ping", args.data)))
    }

    async fn apply(&self, _: (), _: &Ctx) -> Result<Outcome, ModuleError> {
        Ok(Outcome::ok())
    }
}
