//! `raw`: run a command line on the host with `/bin/sh -c` (or `executable -c`), nothing else.
//!
//! Ansible's raw is the module that needs no Python; here every module needs only the agent, so raw
//! is simply a shell exec. It is never idempotent (`changed: true` whenever it runs) and Ansible
//! skips it in check mode, so the query step is always [`Query::Opaque`]. The result carries raw's
//! keys: `rc`, `stdout`, `stdout_lines`, `stderr`, `stderr_lines`, and `msg: non-zero return code`
//! on failure. Unlike Ansible over SSH (`ssh -tt`), the output has no pty `\r\n` line ends and no
//! "Shared connection ... closed." line in stderr: it is what the command printed.

use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::{ExecRequest, ExecResult};
use crate::value::Value;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(rename = "_raw_params", default, deserialize_with = "args::opt_string")]
    raw: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    executable: Option<String>,
}

pub struct Raw;

/// The command line and the shell it runs with.
pub struct Plan {
    line: String,
    shell: String,
}

/// `rc`, `stdout(_lines)`, `stderr(_lines)` of a finished command, as raw and script return them:
/// `changed: true`, failed with `non-zero return code` when rc is not 0.
pub(crate) fn exec_outcome(r: &ExecResult) -> Outcome {
    let stdout = r.stdout_text();
    let stderr = r.stderr_text();
    let lines = |s: &str| Value::List(s.lines().map(|l| Value::Str(l.to_string())).collect());
    let mut o = Outcome::changed()
        .with("rc", Value::Int(r.rc as i64))
        .with("stdout", Value::Str(stdout.clone()))
        .with("stdout_lines", lines(&stdout))
        .with("stderr", Value::Str(stderr.clone()))
        .with("stderr_lines", lines(&stderr));
    if r.timed_out {
        o.failed = true;
        o.msg = Some("the command timed out".into());
    } else if r.rc != 0 {
        o.failed = true;
        o.msg = Some("non-zero return code".into());
    }
    o
}

impl Module for Raw {
    const NAMES: &'static [&'static str] = &["raw", "ansible.builtin.raw"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, _ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let line = a
            .raw
            .filter(|l| !l.trim().is_empty())
            .ok_or_else(|| ModuleError::Args("raw: no command given".into()))?;
        let shell = a.executable.unwrap_or_else(|| "/bin/sh".into());
        Ok(Query::Opaque(Plan { line, shell }))
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        // Ansible's raw ignores the task's environment (it warns); so do we
        let req = ExecRequest {
            argv: vec![p.shell.clone(), "-c".into(), p.line],
            ..Default::default()
        };
        match ctx.session.exec(req).await {
            Ok(r) => Ok(exec_outcome(&r)),
            Err(crate::transport::TransportError::Remote { msg, .. }) => {
                Ok(Outcome::failed(format!("cannot run {}: {msg}", p.shell))
                    .with("rc", Value::Int(127)))
            }
            Err(e) => Err(e.into()),
        }
    }
}
