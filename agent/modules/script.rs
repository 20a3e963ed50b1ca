//! `script`: copy a controller-side script to the host, run it there, remove it.
//!
//! The first word of the free-form line is the script (found like Ansible's `files` lookup:
//! [`Ctx::find_local`]); the rest are its arguments, kept as written so the shell sees the same
//! quoting Ansible's does. The script goes into a fresh private directory (`mktemp -d`, 0700)
//! through the agent's atomic write with mode 0700, runs with `/bin/sh -c '[executable] SCRIPT
//! ARGS'` in `chdir`, and the directory is removed whatever happened.
//!
//! Like Ansible: `creates`/`removes` are checked on the host first and skip the task
//! (`skipped: true`, "X exists, matching creates option"); check mode reports `changed: true` when
//! they are given and would not skip, and skips the task otherwise (the script's effect is unknown).

use super::raw::exec_outcome;
use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::{ExecRequest, WriteRequest};
use crate::value::Value;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(rename = "_raw_params", default, deserialize_with = "args::opt_string")]
    raw: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    cmd: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    creates: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    removes: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    chdir: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    executable: Option<String>,
    /// Ansible decrypts vaulted scripts; kiln's scripts are plain files. Accepted, ignored.
    #[serde(default, deserialize_with = "args::opt_bool")]
    decrypt: Option<bool>,
}

pub struct Script;

pub struct Plan {
    local: PathBuf,
    /// The first word as written (replaced by the host path in `line`).
    word: String,
    line: String,
    executable: Option<String>,
    chdir: Option<String>,
}

fn skipped(msg: String) -> Outcome {
    Outcome::ok()
        .with("skipped", Value::Bool(true))
        .with_msg(msg)
}

impl Module for Script {
    const NAMES: &'static [&'static str] = &["script", "ansible.builtin.script"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let _ = a.decrypt;
        let line = a
            .raw
            .or(a.cmd)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                ModuleError::Args("one of the following is required: _raw_params, cmd".into())
            })?;
        if let Some(c) = &a.creates {
            if ctx.session.stat(c, true, false).await?.exists {
                return Ok(Query::Done(skipped(format!(
                    "{c} exists, matching creates option"
                ))));
            }
        }
        if let Some(r) = &a.removes {
            if !ctx.session.stat(r, true, false).await?.exists {
                return Ok(Query::Done(skipped(format!(
                    "{r} does not exist, matching removes option"
                ))));
            }
        }
        if let Some(d) = &a.chdir {
            if !d.starts_with('/') {
                return Ok(Query::Done(Outcome::failed(format!(
                    "chdir {d} must be an absolute path for a Unix-aware remote node"
                ))));
            }
        }
        let words = shell_words::split(&line)
            .map_err(|e| ModuleError::Args(format!("script: cannot split {line:?}: {e}")))?;
        let word = words.first().cloned().unwrap_or_default();
        let Some(local) = ctx.find_local("files", &word) else {
            return Ok(Query::Done(Outcome::failed(format!(
                "Could not find or access '{word}' on the Ansible Controller."
            ))));
        };
        let decided = a.creates.is_some() || a.removes.is_some();
        let plan = Plan {
            local,
            word,
            line,
            executable: a.executable,
            chdir: a.chdir,
        };
        if decided {
            return Ok(Query::Change {
                plan,
                preview: Outcome::changed(),
            });
        }
        Ok(Query::Opaque(plan))
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let content = std::fs::read(&p.local).map_err(|e| {
            ModuleError::Failed(format!("cannot read the script {}: {e}", p.local.display()))
        })?;
        let mk = ctx
            .run(&["mktemp", "-d", "/tmp/kiln-script.XXXXXXXX"])
            .await?;
        let dir = mk.stdout_text().trim().to_string();
        if mk.rc != 0 || dir.is_empty() {
            return Ok(Outcome::failed(format!(
                "cannot make a temporary directory on the host: {}",
                mk.stderr_text().trim()
            )));
        }
        let name = p
            .local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "script".into());
        let remote = format!("{dir}/{name}");
        let result = run_script(&p, ctx, &remote, content).await;
        if let Err(e) = ctx.session.remove(&dir, true).await {
            tracing::warn!("{}: cannot remove {dir}: {e}", ctx.host);
        }
        result
    }
}

async fn run_script(
    p: &Plan,
    ctx: &Ctx,
    remote: &str,
    content: Vec<u8>,
) -> Result<Outcome, ModuleError> {
    ctx.session
        .write_file(WriteRequest {
            path: remote.to_string(),
            content,
            mode: Some(0o700),
            ..Default::default()
        })
        .await?;
    // keep the arguments exactly as written: only the script word is replaced
    let rest = p
        .line
        .strip_prefix(&p.word)
        .map(str::to_string)
        .unwrap_or_else(|| {
            // the word was quoted in the line: drop the first shell word
            let mut w = shell_words::split(&p.line).unwrap_or_default();
            if !w.is_empty() {
                w.remove(0);
            }
            format!(" {}", shell_words::join(w))
        });
    let target = format!("{}{rest}", shell_words::quote(remote));
    let line = match &p.executable {
        Some(e) => format!("{e} {target}"),
        None => target,
    };
    let r = ctx
        .exec(ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), line],
            env: ctx.env.clone(),
            cwd: p.chdir.clone(),
            ..Default::default()
        })
        .await?;
    Ok(exec_outcome(&r))
}
