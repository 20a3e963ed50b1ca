//! `kiln.builtin.kolla_build`: one kolla-build run of an image set, as Kayobe's
//! `container-image-build.yml` shell task runs it, without the shell.
//!
//! Kayobe runs `. venv/bin/activate && kolla-build ... REGEXES 2>&1 | tee --append LOG` in bash.
//! Here the same argv is built by [`crate::build::kolla::BuildLine`] (bash's word splitting of the
//! regexes, `kolla-build` from `kolla_venv`) and run directly; its stdout and stderr are streamed
//! through the progress channel as they arrive (each line labelled with the task's `label`, an
//! architecture or image set, and carrying the image a `INFO:kolla.common.utils.<image>:` line is
//! about) and appended to `log_path` on the host chunk by chunk as produced (the agent's
//! `append_to`, as `tee --append`).
//!
//! Beside the build, `kolla-build ... --list-dependencies REGEXES` says which images the set
//! matches and their parents: the progress is "images built / matched". kolla writes per-image
//! logs and a JSON summary: to the configuration's `logs_dir` / `summary_json_file` when
//! `kolla-build.conf` sets them, else to a temporary folder given through oslo.config's
//! environment (`OS_DEFAULT__LOGS_DIR`, `OS_DEFAULT__SUMMARY_JSON_FILE`: the argv stays Kayobe's).
//! Both are fetched into `fetch_dir` on the controller. A failed run says, for each failed image,
//! its status (`error`, `parent_error`, `push_error`, ...), its log file and the last lines of it;
//! an image kolla left `matched` is named as not built because of its failed parent. Without a
//! summary, kolla's own reason: its `Failed with status` lines, else its last ERROR lines, else the
//! last lines. Check mode cannot know what kolla-build would build, so the task is skipped there.

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
    /// kolla-build's `--tag` (a multi-architecture run tags each builder's images `<tag>-<arch>`).
    #[serde(default, deserialize_with = "args::opt_string")]
    tag: Option<String>,
    /// Controller folder kolla's summary and per-image logs are fetched into
    /// (`<config path>/kiln/builds/<tag>/<host>`); nothing is fetched when unset.
    #[serde(default, deserialize_with = "args::opt_string")]
    fetch_dir: Option<String>,
    /// The image set's index in the run (0 first): the summary is fetched as `summary.json` for
    /// the first set, `summary-N.json` (N = index + 1) for the others.
    #[serde(default, deserialize_with = "args::opt_int")]
    set_index: Option<i64>,
    /// Ask kolla which images the set matches (`--list-dependencies`, at nice 19) beside the
    /// build, for the progress total (default true). When false it is asked only after a failed
    /// build (to name the failed parent of an unbuilt child).
    #[serde(default, deserialize_with = "args::opt_bool")]
    total: Option<bool>,
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

/// The platform every line event and the result carry: `platform` when given, else the
/// architecture the label names (`x86_64` → `linux/amd64`).
fn event_platform(a: &Args) -> Option<String> {
    a.platform.clone().filter(|p| !p.is_empty()).or_else(|| {
        a.label
            .as_deref()
            .and_then(crate::build::manifest_list::oci_platform)
            .map(|p| p.to_string())
    })
}

/// `kolla-build ... --tag TAG REGEXES`: after `--config-dir`, whose file would otherwise win
/// (oslo.config applies options and config folders in the order given).
fn with_tag(mut argv: Vec<String>, regexes: usize, tag: Option<&str>) -> Vec<String> {
    if let Some(t) = tag.filter(|t| !t.is_empty()) {
        let at = argv.len().saturating_sub(regexes).max(1);
        argv.splice(at..at, ["--tag".to_string(), t.to_string()]);
    }
    argv
}

/// Where kolla writes this run's per-image logs and summary: the configuration's `logs_dir` /
/// `summary_json_file` when `kolla-build.conf` sets them, else a temporary folder on the host given
/// to kolla through oslo.config's environment source (`OS_DEFAULT__LOGS_DIR`,
/// `OS_DEFAULT__SUMMARY_JSON_FILE`), so kolla-build's argv stays exactly Kayobe's.
struct Outputs {
    logs_dir: String,
    summary: String,
    env: Vec<(String, String)>,
    /// The temporary folder kiln made (removed after fetching).
    temp: Option<String>,
}

async fn outputs(a: &Args, ctx: &Ctx) -> Result<Outputs, ModuleError> {
    let conf = format!("{}/kolla-build.conf", a.config_dir.trim_end_matches('/'));
    let mut ini = crate::build::ini::MergedIni::new(true);
    if let Ok(text) = ctx.session.read_file(&conf).await {
        let _ = ini.merge_source(&String::from_utf8_lossy(&text));
    }
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            ini.get(Some("DEFAULT"), k)
                .and_then(|v| v.last())
                .and_then(|l| l.first())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
    };
    let (logs, summary) = (
        get(&["logs_dir", "logs-dir"]),
        get(&["summary_json_file", "summary-json-file"]),
    );
    let mut o = Outputs {
        logs_dir: logs.clone().unwrap_or_default(),
        summary: summary.clone().unwrap_or_default(),
        env: Vec::new(),
        temp: None,
    };
    if logs.is_none() || summary.is_none() {
        let r = ctx
            .exec(ExecRequest {
                argv: vec![
                    "mktemp".into(),
                    "-d".into(),
                    "/tmp/kiln-kolla-build.XXXXXX".into(),
                ],
                ..Default::default()
            })
            .await?;
        let dir = r.stdout_text().trim().to_string();
        if r.rc != 0 || dir.is_empty() {
            return Ok(o);
        }
        if logs.is_none() {
            o.logs_dir = dir.clone();
            o.env
                .push(("OS_DEFAULT__LOGS_DIR".into(), o.logs_dir.clone()));
        }
        if summary.is_none() {
            o.summary = format!("{dir}/summary.json");
            o.env
                .push(("OS_DEFAULT__SUMMARY_JSON_FILE".into(), o.summary.clone()));
        }
        o.temp = Some(dir);
    }
    Ok(o)
}

/// The last lines of a log text.
fn tail(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// What came back from the host after the run: kolla's summary, and each image's log text
/// (fetched into `fetch_dir` on the controller when given).
struct Fetched {
    summary: Option<crate::build::kolla::Summary>,
    logs: std::collections::BTreeMap<String, (String, String)>,
    summary_path: Option<String>,
}

async fn fetch_results(a: &Args, outs: &Outputs, ctx: &Ctx) -> Fetched {
    let mut f = Fetched {
        summary: None,
        logs: Default::default(),
        summary_path: None,
    };
    let dir = a
        .fetch_dir
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from);
    if let Some(d) = &dir {
        let _ = std::fs::create_dir_all(d);
    }
    if outs.summary.is_empty() {
        return f;
    }
    let Ok(text) = ctx.session.read_file(&outs.summary).await else {
        return f;
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    f.summary = crate::build::kolla::Summary::parse(&text).ok();
    f.summary_path = Some(outs.summary.clone());
    if let Some(d) = &dir {
        let name = match a.set_index.unwrap_or(0) {
            0 => "summary.json".to_string(),
            n => format!("summary-{}.json", n + 1),
        };
        if std::fs::write(d.join(&name), &text).is_ok() {
            f.summary_path = Some(d.join(name).display().to_string());
        }
    }
    let Some(s) = &f.summary else {
        return f;
    };
    let names: Vec<String> = s
        .built
        .iter()
        .chain(
            s.failed
                .iter()
                .filter(|i| i.status.as_deref() != Some("matched")),
        )
        .map(|i| i.name.clone())
        .collect();
    for name in names {
        if outs.logs_dir.is_empty() || name.contains('/') {
            continue;
        }
        let host_path = format!("{}/{name}.log", outs.logs_dir.trim_end_matches('/'));
        let Ok(bytes) = ctx.session.read_file(&host_path).await else {
            continue;
        };
        let mut path = host_path;
        if let Some(d) = &dir {
            let p = d.join(format!("{name}.log"));
            if std::fs::write(&p, &bytes).is_ok() {
                path = p.display().to_string();
            }
        }
        f.logs
            .insert(name, (path, String::from_utf8_lossy(&bytes).into_owned()));
    }
    f
}

/// `kolla-build ... --list-dependencies REGEXES`: the images this set matches and their parents
/// (the progress total, and which failed parent left a child unbuilt). Runs beside the build.
fn deps_argv_of(p: &Plan) -> Vec<String> {
    let n = p.argv.len() - p.regexes.len();
    let mut v = p.argv[..n].to_vec();
    v.push("--list-dependencies".into());
    v.extend(p.regexes.iter().cloned());
    v
}

async fn apply(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    let progress = match &p.args.label {
        Some(l) if !l.is_empty() => ctx.progress.labelled(l.clone()),
        _ => ctx.progress.clone(),
    };
    let outs = outputs(&p.args, ctx).await?;
    let all = Mutex::new(Vec::<String>::new());
    let (mut out, mut err) = (
        super::progress::LineSplitter::default(),
        super::progress::LineSplitter::default(),
    );
    let built = Mutex::new(Vec::<String>::new());
    let platform = event_platform(&p.args);
    let total = Mutex::new(None::<u64>);
    let emit = |which: LineStream, line: String| {
        let mut fields = Map::new();
        if let Some(p) = &platform {
            fields.insert("platform".into(), Value::str(p));
        }
        if let Some(img) = image_of_line(&line) {
            fields.insert("image".into(), Value::str(img));
            if line.contains(":Built at ") {
                let mut b = built.lock().unwrap_or_else(|e| e.into_inner());
                if !b.iter().any(|x| x == img) {
                    b.push(img.to_string());
                }
                let t = *total.lock().unwrap_or_else(|e| e.into_inner());
                progress.step(b.len() as u64, t, "images built");
            }
        }
        progress.line_with(which, line.clone(), fields);
        all.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    };
    let mut env = ctx.env.clone();
    env.extend(outs.env.iter().cloned());
    let req = ExecRequest {
        argv: p.argv.clone(),
        env: env.clone(),
        append_to: p.args.log_path.clone().filter(|l| !l.is_empty()),
        ..Default::default()
    };
    // at the lowest CPU priority: kolla renders every Dockerfile of its tree first (seconds of
    // CPU), which must not slow the build beside it
    let mut deps_argv = vec!["nice".to_string(), "-n".into(), "19".into()];
    deps_argv.extend(deps_argv_of(&p));
    let deps_req = ExecRequest {
        argv: deps_argv,
        env,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let (r, deps) = {
        let build = ctx.session.exec_streaming(req, |stream, data| {
            let (split, which) = match stream {
                Stream::Stdout => (&mut out, LineStream::Stdout),
                Stream::Stderr => (&mut err, LineStream::Stderr),
            };
            for line in split.push(data) {
                emit(which, line);
            }
        });
        let deps = async {
            let r = ctx.session.exec(deps_req).await.ok()?;
            let d = crate::build::kolla::Dependencies::parse(&r.stdout_text())?;
            *total.lock().unwrap_or_else(|e| e.into_inner()) = Some(d.images.len() as u64);
            let done = built.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
            progress.step(done, Some(d.images.len() as u64), "images built");
            Some(d)
        };
        // the build decides: when it ends first and succeeded, the query is not waited for (its
        // process ends with the session, or by itself); a failed build waits for it (the parents)
        // (an async block starts nothing until polled: without `total` the query runs only
        // after a failed build)
        let want_total = p.args.total.unwrap_or(true);
        tokio::pin!(build);
        tokio::pin!(deps);
        let mut deps_done: Option<Option<crate::build::kolla::Dependencies>> = None;
        let r = loop {
            tokio::select! {
                r = &mut build => break r,
                d = &mut deps, if deps_done.is_none() && want_total => deps_done = Some(d),
            }
        };
        let failed = r.as_ref().map(|r| r.rc != 0 || r.timed_out).unwrap_or(true);
        if deps_done.is_none() && failed {
            deps_done = Some(deps.await);
        }
        (r, deps_done.flatten())
    };
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
            if let Some(t) = &outs.temp {
                let _ = ctx.session.remove(t, true).await;
            }
            let hint = if msg.contains("cannot append to") {
                ""
            } else {
                " (is kolla installed in kolla_venv?)"
            };
            return Ok(
                Outcome::failed(format!("cannot run {}: {msg}{hint}", p.argv[0]))
                    .with("cmd", strings(&p.argv))
                    .with("rc", Value::Int(2)),
            );
        }
        Err(e) => return Err(e.into()),
    };
    let fetched = fetch_results(&p.args, &outs, ctx).await;
    if let Some(t) = &outs.temp {
        let _ = ctx.session.remove(t, true).await;
    }
    let mut built = built.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = &fetched.summary {
        built = s.built.iter().map(|i| i.name.clone()).collect();
    }
    let deps = deps.unwrap_or_default();
    let failures = fetched
        .summary
        .as_ref()
        .map(|s| {
            crate::build::kolla::failures(
                s,
                &deps,
                |n| fetched.logs.get(n).map(|(p, _)| p.clone()),
                |n| {
                    fetched
                        .logs
                        .get(n)
                        .map(|(_, t)| tail(t, 10))
                        .unwrap_or_default()
                },
            )
        })
        .unwrap_or_default();
    let mut o = Outcome::changed()
        .with("cmd", strings(&p.argv))
        .with("regexes", strings(&p.regexes))
        .with("rc", Value::Int(r.rc as i64))
        .with("elapsed", Value::Float(elapsed))
        .with("images_built", Value::Int(built.len() as i64))
        .with("images_matched", Value::Int(deps.images.len() as i64))
        // the names kolla-build reported built: what `--push` publishes
        .with("built", strings(&built))
        .with(
            "failures",
            Value::from_json(serde_json::to_value(&failures).unwrap_or_default()),
        )
        .with(
            "logs",
            Value::Map(
                fetched
                    .logs
                    .iter()
                    .map(|(k, (p, _))| (k.clone(), Value::Str(p.clone())))
                    .collect(),
            ),
        );
    if let Some(pl) = &platform {
        o = o.with("platform", Value::str(pl));
    }
    if let Some(sp) = &fetched.summary_path {
        o = o.with("summary_path", Value::Str(sp.clone()));
    }
    if let Some(s) = &fetched.summary {
        o = o.with(
            "summary",
            Value::from_json(serde_json::to_value(s).unwrap_or_default()),
        );
    }
    if r.rc != 0 || r.timed_out || !failures.is_empty() {
        o.failed = true;
        let why = if failures.is_empty() {
            reason(&lines)
        } else {
            crate::build::kolla::render_failures(&failures)
        };
        o.msg = Some(format!(
            "kolla-build failed (rc {}) for image set '{}':\n{}",
            r.rc,
            p.args.regexes.trim(),
            why.trim_end()
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
            argv: with_tag(set.argv, set.regexes.len(), a.tag.as_deref()),
            regexes: set.regexes,
            args: a,
        }))
    }
    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply(p, ctx).await
    }
}
