//! `slurp`: read a file on the host and return it base64-encoded (`content`, `encoding`,
//! `source`), as Ansible's does. Read-only: never changed.

use super::support::args;
use super::support::fileattrs;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use base64::Engine as _;
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "path", deserialize_with = "args::string")]
    pub src: String,
}

pub struct Slurp;

impl Module for Slurp {
    const NAMES: &'static [&'static str] =
        &["slurp", "ansible.builtin.slurp", "ansible.legacy.slurp"];
    type Args = Args;
    type Plan = ();

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<()>, ModuleError> {
        let st = ctx.session.stat(&a.src, true, false).await?;
        if !st.exists {
            return Ok(Query::Done(Outcome::failed(format!(
                "file not found: {}",
                a.src
            ))));
        }
        if st.kind == "directory" {
            return Ok(Query::Done(Outcome::failed(format!(
                "source is a directory and must be a file: {}",
                a.src
            ))));
        }
        let data = match fileattrs::read_opt(ctx, &a.src).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Ok(Query::Done(Outcome::failed(format!(
                    "file not found: {}",
                    a.src
                ))))
            }
            Err(ModuleError::Failed(m)) => {
                return Ok(Query::Done(Outcome::failed(format!(
                    "Unable to slurp file: {m}"
                ))))
            }
            Err(e) => return Err(e),
        };
        Ok(Query::Done(
            Outcome::ok()
                .with(
                    "content",
                    base64::engine::general_purpose::STANDARD.encode(data),
                )
                .with("encoding", "base64")
                .with("source", a.src),
        ))
    }

    async fn apply(&self, _: (), _: &Ctx) -> Result<Outcome, ModuleError> {
        Ok(Outcome::ok())
    }
}
