//! `command` and `shell`: run a program on the host (without / with a shell).
//!
//! Both report `changed: true` whenever they run, as Ansible's do; `creates` / `removes` make them
//! idempotent (the query step stats the path). Without those they cannot know what would change,
//! so check mode skips them. The result carries Ansible's keys: `cmd`, `rc`, `stdout`, `stderr`,
//! their `_lines`, `start`, `end`, `delta`, and `msg: non-zero return code` on failure.

use super::support::args::{self, RAW_PARAMS};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::ExecRequest;
use crate::value::Value;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(rename = "_raw_params", default, deserialize_with = "args::opt_string")]
    raw: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    cmd: Option<String>,
    #[serde(default)]
    argv: Option<Vec<serde_json::Value>>,
    #[serde(default, deserialize_with = "args::opt_string")]
    chdir: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    creates: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    removes: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    stdin: Option<String>,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    stdin_add_newline: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    strip_empty_ends: bool,
    /// shell only: the shell to run the command with.
    #[serde(default, deserialize_with = "args::opt_string")]
    executable: Option<String>,
    /// Accepted and ignored (removed in Ansible 2.14, still common in playbooks).
    #[serde(default)]
    warn: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    expand_argument_vars: Option<bool>,
}

pub struct Command;
pub struct Shell;

/// What will run.
pub struct Plan {
    shell: bool,
    args: Args,
    argv: Vec<String>,
    line: String,
}

fn plan(shell: bool, a: Args) -> Result<Plan, ModuleError> {
    let _ = (&a.warn, &a.expand_argument_vars, RAW_PARAMS);
    let line = a.raw.clone().or_else(|| a.cmd.clone());
    let (argv, line) = if shell {
        let l = line.ok_or_else(|| ModuleError::Args("no command given".into()))?;
        (vec![], l)
    } else if let Some(v) = &a.argv {
        let argv: Vec<String> = v
            .iter()
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                o => o.to_string(),
            })
            .collect();
        if line.is_some() {
            return Err(ModuleError::Args(
                "parameters are mutually exclusive: argv|cmd".into(),
            ));
        }
        let l = shell_words::join(&argv);
        (argv, l)
    } else {
        let l = line.ok_or_else(|| ModuleError::Args("no command given".into()))?;
        let argv = shell_words::split(&l)
            .map_err(|e| ModuleError::Args(format!("cannot split the command line {l:?}: {e}")))?;
        (argv, l)
    };
    if !shell && argv.is_empty() {
        return Err(ModuleError::Args("no command given".into()));
    }
    Ok(Plan {
        shell,
        args: a,
        argv,
        line,
    })
}

async fn query(shell: bool, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
    let p = plan(shell, a)?;
    let cmd_value = |p: &Plan| -> Value {
        if p.shell {
            Value::Str(p.line.clone())
        } else {
            Value::List(p.argv.iter().map(|s| Value::Str(s.clone())).collect())
        }
    };
    let path_in = |rel: &str| -> String {
        match (&p.args.chdir, rel.starts_with('/')) {
            (Some(d), false) => format!("{}/{}", d.trim_end_matches('/'), rel),
            _ => rel.to_string(),
        }
    };
    if let Some(c) = &p.args.creates {
        if exists(ctx, &path_in(c)).await? {
            return Ok(Query::Done(skipped_run(
                cmd_value(&p),
                format!("Did not run command since '{c}' exists"),
                format!("skipped, since {c} exists"),
            )));
        }
    }
    if let Some(r) = &p.args.removes {
        if !exists(ctx, &path_in(r)).await? {
            return Ok(Query::Done(skipped_run(
                cmd_value(&p),
                format!("Did not run command since '{r}' does not exist"),
                format!("skipped, since {r} does not exist"),
            )));
        }
    }
    if p.args.creates.is_some() || p.args.removes.is_some() {
        let preview = Outcome::changed()
            .with("cmd", cmd_value(&p))
            .with("rc", Value::Int(0))
            .with_msg("Command would have run if not in check mode");
        return Ok(Query::Change { plan: p, preview });
    }
    Ok(Query::Opaque(p))
}

async fn exists(ctx: &Ctx, path: &str) -> Result<bool, ModuleError> {
    // Ansible globs `creates`/`removes`; a plain path is the common case
    if path.contains(['*', '?', '[']) {
        let r = ctx
            .exec(ExecRequest {
                shell: Some(format!("ls -d {path} >/dev/null 2>&1")),
                ..Default::default()
            })
            .await?;
        return Ok(r.rc == 0);
    }
    Ok(ctx.session.stat(path, true, false).await?.exists)
}

fn skipped_run(cmd: Value, msg: String, stdout: String) -> Outcome {
    Outcome::ok()
        .with("cmd", cmd)
        .with("rc", Value::Int(0))
        .with("stdout", Value::Str(stdout.clone()))
        .with("stderr", Value::Str(String::new()))
        .with("stdout_lines", Value::List(vec![Value::Str(stdout)]))
        .with("stderr_lines", Value::List(vec![]))
        .with_msg(msg)
}

fn strip_ends(s: &str, strip: bool) -> String {
    if strip {
        s.trim_end_matches(['\r', '\n']).to_string()
    } else {
        s.to_string()
    }
}

fn lines(s: &str) -> Value {
    Value::List(s.lines().map(|l| Value::Str(l.to_string())).collect())
}

fn timestamp(t: chrono::DateTime<chrono::Local>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

async fn apply(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    let mut stdin = p.args.stdin.clone().unwrap_or_default().into_bytes();
    if p.args.stdin.is_some() && p.args.stdin_add_newline {
        stdin.push(b'\n');
    }
    let req = if p.shell {
        let exe = p
            .args
            .executable
            .clone()
            .unwrap_or_else(|| "/bin/sh".into());
        ExecRequest {
            argv: vec![exe, "-c".into(), p.line.clone()],
            ..Default::default()
        }
    } else {
        ExecRequest {
            argv: p.argv.clone(),
            ..Default::default()
        }
    };
    let req = ExecRequest {
        env: ctx.env.clone(),
        cwd: p.args.chdir.clone(),
        stdin,
        ..req
    };
    let start = chrono::Local::now();
    let r = match ctx.exec_progress(req).await {
        Ok(r) => r,
        // a missing program is a failed task with Ansible's message, not a broken host
        Err(crate::transport::TransportError::Remote { msg, .. }) => {
            return Ok(Outcome::failed(format!("[Errno 2] {msg}"))
                .with("cmd", Value::Str(p.line.clone()))
                .with("rc", Value::Int(2)));
        }
        Err(e) => return Err(e.into()),
    };
    let end = chrono::Local::now();
    let stdout = strip_ends(&r.stdout_text(), p.args.strip_empty_ends);
    let stderr = strip_ends(&r.stderr_text(), p.args.strip_empty_ends);
    let delta = end - start;
    let cmd = if p.shell {
        Value::Str(p.line.clone())
    } else {
        Value::List(p.argv.iter().map(|s| Value::Str(s.clone())).collect())
    };
    let mut o = Outcome::changed()
        .with("cmd", cmd)
        .with("start", Value::Str(timestamp(start)))
        .with("end", Value::Str(timestamp(end)))
        .with(
            "delta",
            Value::Str(format!(
                "{}:{:02}:{:02}.{:06}",
                delta.num_hours(),
                delta.num_minutes() % 60,
                delta.num_seconds() % 60,
                delta.num_microseconds().unwrap_or(0) % 1_000_000
            )),
        )
        .with("rc", Value::Int(r.rc as i64))
        .with("stdout", Value::Str(stdout.clone()))
        .with("stderr", Value::Str(stderr.clone()))
        .with("stdout_lines", lines(&stdout))
        .with("stderr_lines", lines(&stderr));
    if r.timed_out {
        o.failed = true;
        o.msg = Some("the command timed out".into());
    } else if r.rc != 0 {
        o.failed = true;
        o.msg = Some("non-zero return code".into());
    } else {
        o.msg = Some(String::new());
    }
    Ok(o)
}

impl Module for Command {
    const NAMES: &'static [&'static str] = &["command", "ansible.builtin.command"];
    type Args = Args;
    type Plan = Plan;
    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        if a.executable.is_some() {
            return Err(ModuleError::Args(
                "Unsupported parameters for (command) module: executable".into(),
            ));
        }
        query(false, a, ctx).await
    }
    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply(p, ctx).await
    }
}

impl Module for Shell {
    const NAMES: &'static [&'static str] = &["shell", "ansible.builtin.shell"];
    type Args = Args;
    type Plan = Plan;
    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        query(true, a, ctx).await
    }
    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply(p, ctx).await
    }
}
