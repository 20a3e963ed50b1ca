//! `slurp`: read a file on the host and return it base64-encoded (`content`, `encoding`,
//! `source`), as Ansible's does. Read-only: never changed. Files over [`SLURP_MAX`] fail early with
//! a clear error (the result is the whole file in memory).

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

/// The largest file slurp reads. Its result is the whole file, base64-encoded, held in memory
/// and carried into variables and output; a larger file fails early with its name and size (fetch
/// streams files of any size).
pub const SLURP_MAX: u64 = 64 * 1024 * 1024;

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
        if st.size > SLURP_MAX {
            return Ok(Query::Done(Outcome::failed(format!(
                "Unable to slurp file: {} is {} bytes ({} MiB), more than the {} MiB kiln's slurp \
                 returns (the whole file, base64-encoded, in memory); use fetch for large files",
                a.src,
                st.size,
                st.size >> 20,
                SLURP_MAX >> 20
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
