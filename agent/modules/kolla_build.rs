//! `kiln.builtin.kolla_build`: one kolla-build run of an image set, as Kayobe's
//! `container-image-build.yml` shell task runs it, without the shell.
//!
//! Kayobe runs `. venv/bin/activate && kolla-build ... REGEXES 2>&1 | tee --append LOG` in bash.
//! Here the same argv is built by [`crate::build::kolla::BuildLine`] (bash's word splitting of the
//! regexes, `kolla-build` from `kolla_venv`) and run directly; its stdout and stderr are streamed
//! through the progress channel as they arrive (each line labelled with the task's `label`, an
//! architecture or image set, and carrying the image a `INFO:kolla.common.utils.<image>:` line is
//! about), and the whole output, in arrival order, is appended to `log_path` on the host afterwards
//! (one `dd oflag=append` with the text on stdin, no shell). A non-zero exit fails the task with
//! kolla's own reason: its `Failed with status` lines, else its last ERROR lines, else the last
//! lines. Check mode cannot know what kolla-build would build, so the task is skipped there.

use super::progress::LineStream;
use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::build::kolla::{image_of_line, BuildLine};
use crate::transport::{ExecRequest, Stream};
use crate::value::{Map, Value};
use serde::Deserialize;
use std::sync::Mutex;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    kolla_venv: String,
    #[serde(deserialize_with = "args::string")]
    config_dir: String,
    #[serde(deserialize_with = "args::string")]
    engine: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    registry: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    push: bool,
    #[serde(default, deserialize_with = "args::bool")]
    nocache: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    platform: Option<String>,
    /// The image set's regexes as written (space separated, bash-escaped as in Kayobe's YAML).
    #[serde(deserialize_with = "args::string")]
    regexes: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    log_path: Option<String>,
    /// What the streamed lines are labelled with after the host (`[host:label]`).
    #[serde(default, deserialize_with = "args::opt_string")]
    label: Option<String>,
    /// More kolla-build options, put before the regexes (`--if-changed` passes
    /// `--skip-existing --template-override FILE`, see `kolla_inputs`).
    #[serde(default, deserialize_with = "args::string_list")]
    extra_args: Vec<String>,
    /// `--if-changed`: kolla-build's `--skip-existing` made exact for podman
    /// ([`crate::build::if_changed::KOLLA_EXACT_SKIP`]).
    #[serde(default, deserialize_with = "args::bool")]
    exact_skip: bool,
}

pub struct KollaBuild;

pub struct Plan {
    argv: Vec<String>,
    regexes: Vec<String>,
    args: Args,
}

fn strings(v: &[String]) -> Value {
    Value::List(v.iter().map(|s| Value::Str(s.clone())).collect())
}

/// kolla's reason for a failed run, from its output lines.
fn reason(lines: &[String]) -> String {
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("Failed with status"))
        .collect();
    if !failed.is_empty() {
        return failed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n");
    }
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("ERROR:")).collect();
    let pick: Vec<&String> = if errors.is_empty() {
        lines.iter().rev().take(5).rev().collect()
    } else {
        errors.iter().rev().take(8).rev().copied().collect()
    };
    pick.iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn apply(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    let progress = match &p.args.label {
        Some(l) if !l.is_empty() => ctx.progress.labelled(l.clone()),
        _ => ctx.progress.clone(),
    };
    let all = Mutex::new(Vec::<String>::new());
    let (mut out, mut err) = (
        super::progress::LineSplitter::default(),
        super::progress::LineSplitter::default(),
    );
    let built = Mutex::new(Vec::<String>::new());
    let emit = |which: LineStream, line: String| {
        let mut fields = Map::new();
        if let Some(img) = image_of_line(&line) {
            fields.insert("image".into(), Value::str(img));
            if line.contains(":Built at ") {
                let mut b = built.lock().unwrap_or_else(|e| e.into_inner());
                if !b.iter().any(|x| x == img) {
                    b.push(img.to_string());
                }
                progress.step(b.len() as u64, None, "images built");
            }
        }
        progress.line_with(which, line.clone(), fields);
        all.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    };
    let req = ExecRequest {
        argv: p.argv.clone(),
        env: ctx.env.clone(),
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let r = ctx
        .session
        .exec_streaming(req, |stream, data| {
            let (split, which) = match stream {
                Stream::Stdout => (&mut out, LineStream::Stdout),
                Stream::Stderr => (&mut err, LineStream::Stderr),
            };
            for line in split.push(data) {
                emit(which, line);
            }
        })
        .await;
    for (split, which) in [
        (&mut out, LineStream::Stdout),
        (&mut err, LineStream::Stderr),
    ] {
        if let Some(line) = split.finish() {
            emit(which, line);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let lines = all.into_inner().unwrap_or_else(|e| e.into_inner());
    let r = match r {
        Ok(r) => r,
        Err(crate::transport::TransportError::Remote { msg, .. }) => {
            return Ok(Outcome::failed(format!(
                "cannot run {}: {msg} (is kolla installed in kolla_venv?)",
                p.argv[0]
            ))
            .with("cmd", strings(&p.argv))
            .with("rc", Value::Int(2)));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(log) = p.args.log_path.as_deref().filter(|l| !l.is_empty()) {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        let a = ctx
            .session
            .exec(ExecRequest {
                argv: vec![
                    "dd".into(),
                    format!("of={log}"),
                    "oflag=append".into(),
                    "conv=notrunc".into(),
                    "status=none".into(),
                ],
                stdin: text.into_bytes(),
                ..Default::default()
            })
            .await?;
        if a.rc != 0 {
            return Ok(Outcome::failed(format!(
                "kolla-build ran (rc {}) but its output could not be appended to {log}: {}",
                r.rc,
                a.stderr_text().trim()
            )));
        }
    }
    let built = built.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut o = Outcome::changed()
        .with("cmd", strings(&p.argv))
        .with("regexes", strings(&p.regexes))
        .with("rc", Value::Int(r.rc as i64))
        .with("elapsed", Value::Float(elapsed))
        .with("images_built", Value::Int(built.len() as i64))
        // the names kolla-build reported built: what `--push` publishes
        .with("built", strings(&built));
    if r.rc != 0 || r.timed_out {
        o.failed = true;
        o.msg = Some(format!(
            "kolla-build failed (rc {}) for image set '{}':\n{}",
            r.rc,
            p.args.regexes.trim(),
            reason(&lines)
        ));
    }
    Ok(o)
}

impl Module for KollaBuild {
    const NAMES: &'static [&'static str] = &["kolla_build", "kiln.builtin.kolla_build"];
    type Args = Args;
    type Plan = Plan;
    async fn query(&self, a: Args, _ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let line = BuildLine {
            kolla_venv: a.kolla_venv.clone(),
            config_dir: a.config_dir.clone(),
            engine: a.engine.clone(),
            registry: a.registry.clone(),
            push: a.push,
            nocache: a.nocache,
            platform: a.platform.clone().filter(|p| !p.is_empty()),
        };
        let mut set = line.argv(&a.regexes).map_err(ModuleError::Args)?;
        let at = set.argv.len() - set.regexes.len();
        set.argv.splice(at..at, a.extra_args.iter().cloned());
        if a.exact_skip {
            let first = crate::build::if_changed::exact_skip_argv0(&set.argv[0]);
            set.argv.splice(0..1, first);
        }
        Ok(Query::Opaque(Plan {
            argv: set.argv,
            regexes: set.regexes,
            args: a,
        }))
    }
    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply(p, ctx).await
    }
}
