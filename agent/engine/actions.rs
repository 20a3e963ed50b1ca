//! The actions that run on the controller, as Ansible's action plugins do: `debug`, `set_fact`,
//! `assert`, `fail`, `include_vars`, `pause`, fact gathering (`setup` / `gather_facts`, from the
//! agent's native facts), `wait_for_connection`, and `template` (rendered here, written by the
//! `copy` module on the host), and Kayobe's `ip_allocation` (the allocation file is the controller's).

use super::result::TaskResult;
use super::state::PlayRun;
use crate::config::vars::HostScope;
use crate::modules::Ctx;
use crate::playbook::Task;
use crate::template::VarSource;
use crate::value::{Map, Value};
use std::sync::Arc;

fn text(v: Option<&Value>) -> Option<String> {
    v.map(crate::template::py_str_value)
}

pub async fn run(
    play: &Arc<PlayRun>,
    host: &str,
    task: &Task,
    action: &str,
    args: Map,
    scope: &HostScope,
    check: bool,
) -> Result<TaskResult, String> {
    let src: Arc<dyn VarSource> = Arc::new(scope.clone());
    let templar = &play.engine.templar;
    match action {
        "debug" => {
            let verbosity = args.get("verbosity").and_then(|v| v.as_i64()).unwrap_or(0);
            if verbosity > play.engine.opts.verbosity as i64 {
                return Ok(TaskResult::skipped_with(
                    "skipped_reason",
                    "Verbosity threshold not met.",
                ));
            }
            let mut r = Map::new();
            // `var` names an expression, evaluated raw (not the templated argument)
            if let Some(name) = task.args.get("var").map(crate::template::py_str_value) {
                let expr = if name.contains("{{") {
                    name.clone()
                } else {
                    format!("{{{{ {name} }}}}")
                };
                let v = match templar.template(&src, &Value::Str(expr), &task.pos.to_string()) {
                    Ok(v) => v,
                    Err(crate::template::TemplateError::Undefined { .. }) => {
                        Value::str("VARIABLE IS NOT DEFINED!")
                    }
                    Err(e) => return Err(e.to_string()),
                };
                r.insert(name, v);
            } else {
                r.insert(
                    "msg".into(),
                    args.get("msg")
                        .cloned()
                        .unwrap_or(Value::str("Hello world!")),
                );
            }
            r.insert("_ansible_verbose_always".into(), Value::Bool(true));
            Ok(TaskResult::ok_with(r))
        }
        "set_fact" => {
            let mut facts = args;
            let cacheable = facts
                .shift_remove("cacheable")
                .is_some_and(|v| v.is_keyword_true());
            if facts.is_empty() {
                return Err("No key/value pairs provided, at least one is required for this action to succeed".into());
            }
            // `set_fact: a=yes` (key=value text) gives booleans, as Ansible's does
            let from_kv = task.args.values().all(|v| matches!(v, Value::Str(_)));
            if from_kv {
                for v in facts.values_mut() {
                    if let Value::Str(s) = v {
                        match s.to_ascii_lowercase().as_str() {
                            "true" | "yes" => *v = Value::Bool(true),
                            "false" | "no" => *v = Value::Bool(false),
                            _ => {}
                        }
                    }
                }
            }
            let mut r = Map::new();
            r.insert("ansible_facts".into(), Value::Map(facts));
            if cacheable {
                r.insert("_ansible_facts_cacheable".into(), Value::Bool(true));
            }
            Ok(TaskResult::ok_with(r))
        }
        "assert" => {
            let that: Vec<Value> = match task.args.get("that") {
                Some(Value::List(l)) => l.clone(),
                Some(v) => vec![v.clone()],
                None => return Err("conditional required in \"that\" string".into()),
            };
            let quiet = args.get("quiet").is_some_and(Value::is_keyword_true);
            for c in that {
                let expr = crate::template::py_str_value(&c);
                let holds = match &c {
                    Value::Bool(b) => *b,
                    _ => templar
                        .condition(&src, &expr, &task.pos.to_string())
                        .map_err(|e| e.to_string())?,
                };
                if !holds {
                    let msg = args
                        .get("fail_msg")
                        .or_else(|| args.get("msg"))
                        .cloned()
                        .unwrap_or(Value::str("Assertion failed"));
                    return Ok(TaskResult::failed("")
                        .with("msg", msg)
                        .with("assertion", Value::Str(expr))
                        .with("evaluated_to", Value::Bool(false)));
                }
            }
            let mut r = TaskResult::ok().with(
                "msg",
                args.get("success_msg")
                    .cloned()
                    .unwrap_or(Value::str("All assertions passed")),
            );
            if !quiet {
                r.insert("_ansible_verbose_always", Value::Bool(true));
            }
            Ok(r)
        }
        "fail" => Ok(TaskResult::failed("").with(
            "msg",
            args.get("msg")
                .cloned()
                .unwrap_or(Value::str("Failed as requested from task")),
        )),
        "include_vars" => include_vars(play, task, &args),
        "pause" => {
            if args.contains_key("prompt")
                && !args.contains_key("seconds")
                && !args.contains_key("minutes")
            {
                return Err("pause with a prompt needs a terminal; kiln runs unattended — give `seconds:` or `minutes:`".into());
            }
            let num = |k: &str| -> f64 {
                match args.get(k) {
                    Some(Value::Int(i)) => *i as f64,
                    Some(Value::Float(f)) => *f,
                    Some(Value::Str(s)) => s.trim().parse().unwrap_or(0.0),
                    _ => 0.0,
                }
            };
            let secs = num("seconds") + num("minutes") * 60.0;
            let start = chrono::Local::now();
            tokio::time::sleep(std::time::Duration::from_secs_f64(secs.max(0.0))).await;
            let stop = chrono::Local::now();
            let mut r = TaskResult::ok();
            r.insert("delta", Value::Int(secs as i64));
            r.insert("echo", Value::Bool(true));
            r.insert("rc", Value::Int(0));
            r.insert(
                "start",
                Value::Str(start.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
            );
            r.insert(
                "stop",
                Value::Str(stop.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
            );
            r.insert("stderr", Value::str(""));
            r.insert("stdout", Value::Str(format!("Paused for {} seconds", secs)));
            r.insert("user_input", Value::str(""));
            Ok(r)
        }
        "setup" | "gather_facts" => {
            let ctx = play
                .module_ctx(host, task, scope, None, check, false)
                .await
                .map_err(|r| text(r.get("msg")).unwrap_or_default())?;
            let facts = match ctx.session.facts().await {
                Ok(f) => f,
                Err(e) if e.is_unreachable() => return Ok(TaskResult::unreachable(e.to_string())),
                Err(e) => return Err(e.to_string()),
            };
            let filters: Vec<String> = match args.get("filter") {
                Some(Value::List(l)) => l.iter().map(crate::template::py_str_value).collect(),
                Some(Value::Str(s)) if !s.is_empty() => vec![s.clone()],
                _ => vec![],
            };
            let patterns: Vec<glob::Pattern> = filters
                .iter()
                .filter_map(|f| glob::Pattern::new(f).ok())
                .collect();
            let mut shown = Map::new();
            if let Value::Map(m) = facts {
                for (k, v) in m {
                    let name = format!("ansible_{k}");
                    if patterns.is_empty()
                        || patterns.iter().any(|p| p.matches(&name) || p.matches(&k))
                    {
                        shown.insert(name, v);
                    }
                }
            }
            if patterns.is_empty() {
                let subset = match args.get("gather_subset") {
                    Some(Value::List(l)) => Value::List(l.clone()),
                    Some(v) => Value::List(vec![v.clone()]),
                    None => Value::List(vec![Value::str("all")]),
                };
                shown.insert("ansible_gather_subset".into(), subset);
                shown.insert("module_setup".into(), Value::Bool(true));
            }
            Ok(TaskResult::ok_with(Map::from_iter([(
                "ansible_facts".to_string(),
                Value::Map(shown),
            )])))
        }
        "wait_for_connection" => {
            let num = |k: &str, d: f64| -> f64 {
                match args.get(k) {
                    Some(Value::Int(i)) => *i as f64,
                    Some(Value::Str(s)) => s.trim().parse().unwrap_or(d),
                    _ => d,
                }
            };
            let (timeout, delay, sleep) =
                (num("timeout", 600.0), num("delay", 0.0), num("sleep", 1.0));
            tokio::time::sleep(std::time::Duration::from_secs_f64(delay)).await;
            let start = std::time::Instant::now();
            loop {
                play.engine.pool.close(Some(host)).await;
                if let Ok(ctx) = play.module_ctx(host, task, scope, None, check, false).await {
                    if ctx.session.ping().await.is_ok() {
                        return Ok(TaskResult::ok()
                            .with("elapsed", Value::Int(start.elapsed().as_secs() as i64)));
                    }
                }
                if start.elapsed().as_secs_f64() > timeout {
                    return Err(format!(
                        "timed out waiting for connection after {timeout} seconds"
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_secs_f64(sleep)).await;
            }
        }
        "set_stats" | "validate_argument_spec" => Ok(TaskResult::ok()),
        "ip_allocation" => ip_allocation(&args, check),
        // import_* are expanded at load time; this is reached only for an unexpanded one
        other => Err(format!("{other} cannot run here")),
    }
}

/// Kayobe's `ip_allocation` (its `ip-allocation` role's module): always on the controller, where
/// the allocation file lives.
fn ip_allocation(args: &Map, check: bool) -> Result<TaskResult, String> {
    use crate::config::allocation::{allocate, Request};
    let need = |k: &str| {
        text(args.get(k))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("missing required arguments: {k}"))
    };
    let req = Request {
        net_name: need("net_name")?,
        hostname: need("hostname")?,
        cidr: need("cidr")?,
        allocation_pool_start: text(args.get("allocation_pool_start")),
        allocation_pool_end: text(args.get("allocation_pool_end")),
        allocation_file: need("allocation_file")?.into(),
    };
    for k in args.keys() {
        if !matches!(
            k.as_str(),
            "net_name"
                | "hostname"
                | "cidr"
                | "allocation_pool_start"
                | "allocation_pool_end"
                | "allocation_file"
        ) {
            return Err(format!(
                "Unsupported parameters for (ip_allocation) module: {k}"
            ));
        }
    }
    let a = allocate(&req, check).map_err(|e| format!("Failed to allocate IP address: {e}"))?;
    let mut r = TaskResult::ok();
    r.set_changed(a.changed);
    Ok(r.with("ip", Value::str(a.ip.to_string())))
}

fn include_vars(play: &Arc<PlayRun>, task: &Task, args: &Map) -> Result<TaskResult, String> {
    let name = text(args.get("_raw_params").or_else(|| args.get("file")));
    let dir = text(args.get("dir"));
    let base_dirs: Vec<std::path::PathBuf> = {
        let mut v = Vec::new();
        if let Some(r) = &task.attrs.role {
            v.push(r.path.join("vars"));
            v.push(r.path.clone());
        }
        if let Some(p) = std::path::Path::new(&*task.pos.file).parent() {
            v.push(p.join("vars"));
            v.push(p.to_path_buf());
        }
        v.push(play.play.basedir.join("vars"));
        v.push(play.play.basedir.clone());
        v
    };
    let find = |rel: &str| -> Option<std::path::PathBuf> {
        let p = std::path::Path::new(rel);
        if p.is_absolute() {
            return p.exists().then(|| p.to_path_buf());
        }
        base_dirs.iter().map(|d| d.join(rel)).find(|c| c.exists())
    };
    let mut files = Vec::new();
    if let Some(n) = name {
        files.push(find(&n).ok_or_else(|| {
            format!(
                "Could not find or access '{n}' (searched {})",
                base_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?);
    } else if let Some(d) = dir {
        let d = find(&d).ok_or_else(|| format!("{d} directory does not exist"))?;
        let matching = text(args.get("files_matching"))
            .map(|m| regex::Regex::new(&m).map_err(|e| format!("files_matching: {e}")))
            .transpose()?;
        let exts: Vec<String> = match args.get("extensions") {
            Some(Value::List(l)) => l.iter().map(crate::template::py_str_value).collect(),
            _ => vec!["yaml".into(), "yml".into(), "json".into()],
        };
        let mut found: Vec<_> = walk(&d)
            .into_iter()
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| exts.iter().any(|x| x == &*e.to_string_lossy()))
            })
            .filter(|p| {
                matching.as_ref().is_none_or(|re| {
                    re.is_match(
                        &p.file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                })
            })
            .collect();
        found.sort();
        files = found;
    } else {
        return Err("one of file, dir or a file name is required".into());
    }
    let mut vars = Map::new();
    for f in &files {
        match crate::config::varsfile::read_vars_file(f, &play.engine.run.keyring)
            .map_err(|e| e.to_string())?
        {
            Value::Map(m) => vars.extend(m),
            Value::Null => {}
            _ => {
                return Err(format!(
                    "{} must be stored as a dictionary/hash",
                    f.display()
                ))
            }
        }
    }
    if let Some(n) = text(args.get("name")) {
        vars = Map::from_iter([(n, Value::Map(vars))]);
    }
    let mut r = Map::new();
    r.insert("ansible_facts".into(), Value::Map(vars));
    r.insert(
        "ansible_included_var_files".into(),
        Value::List(
            files
                .iter()
                .map(|f| Value::Str(f.display().to_string()))
                .collect(),
        ),
    );
    Ok(TaskResult::ok_with(r))
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `template`: render `src` on the controller with the host's variables, then let the `copy`
/// module write it (mode, owner, backup, validate, check mode and diff all come from copy).
pub async fn template(
    play: &Arc<PlayRun>,
    mut args: Map,
    scope: &HostScope,
    ctx: &Ctx,
) -> Result<TaskResult, String> {
    let src_name =
        text(args.shift_remove("src").as_ref()).ok_or_else(|| "src is required".to_string())?;
    let path = ctx.find_local("templates", &src_name).ok_or_else(|| {
        format!(
            "Could not find or access '{src_name}' (searched the templates/ folders of {})",
            ctx.search
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    // rendering options Ansible accepts that kiln's renderer fixes (trim_blocks on, as Ansible's default)
    for k in [
        "trim_blocks",
        "lstrip_blocks",
        "newline_sequence",
        "output_encoding",
        "unsafe_writes",
    ] {
        args.shift_remove(k);
    }
    let src: Arc<dyn VarSource> = Arc::new(scope.clone());
    let rendered = play
        .engine
        .templar
        .render_file(&src, &path)
        .map_err(|e| e.to_string())?;
    let secret = rendered.contains_secret();
    if let Some(planned) = super::merge::plan_copy(
        scope,
        &ctx.host,
        &args,
        &crate::template::py_str_value(&rendered.expose_secrets()),
        secret,
    )? {
        return Ok(planned);
    }
    let mut r = super::merge::write_with_copy(args, rendered, secret, ctx).await?;
    r.insert("src", Value::Str(path.display().to_string()));
    Ok(r)
}
