//! Kayobe's `merge_configs` and `merge_yaml` action plugins, on the controller.
//!
//! As Kayobe's: each source that exists and is readable on the controller is templated first with
//! the host's variables (a missing source is skipped), then merged — INI by oslo.config's rules
//! ([`crate::build::ini`]), YAML by `update_nested_conf` ([`crate::build::merge_yaml`]) and written
//! as `yaml.dump(default_flow_style=False)` — and the result goes to the host through the `copy`
//! module with the task's other arguments (`dest`, `mode`, owner, backup, ...), so check mode and
//! `--diff` behave as `copy`/`template` do. A file made from a secret is never shown as a diff.

use super::result::TaskResult;
use super::state::PlayRun;
use crate::config::vars::HostScope;
use crate::modules::Ctx;
use crate::template::VarSource;
use crate::value::{Map, Value};
use std::sync::Arc;

fn sources(args: &mut Map) -> Result<Vec<String>, String> {
    match args.shift_remove("sources") {
        Some(Value::List(l)) => Ok(l.iter().map(crate::template::py_str_value).collect()),
        Some(Value::Null) | None => Err("sources is required".into()),
        Some(v) => Ok(vec![crate::template::py_str_value(&v)]),
    }
}

/// `merge_yaml`'s `yaml_width` (Kayobe passes it to `yaml.dump(width=...)`): an integer, or
/// null/absent for PyYAML's 80.
fn yaml_width(v: Option<Value>) -> Result<Option<usize>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Int(i)) if i >= 0 => Ok(Some(i as usize)),
        Some(Value::Int(_)) => Ok(None),
        Some(other) => crate::template::py_str_value(&other)
            .trim()
            .parse::<i64>()
            .map(|i| (i >= 0).then_some(i as usize))
            .map_err(|_| {
                format!(
                    "merge_yaml: yaml_width must be an integer (the column lines fold at), not {:?}",
                    crate::template::py_str_value(&other)
                )
            }),
    }
}

/// Read and template one source as Kayobe's `read_config`: `None` when it is not readable.
fn render(
    play: &Arc<PlayRun>,
    scope: &HostScope,
    path: &str,
) -> Result<Option<(Value, bool)>, String> {
    let p = std::path::Path::new(path);
    if path.is_empty() || std::fs::File::open(p).is_err() || p.is_dir() {
        return Ok(None);
    }
    let src: Arc<dyn VarSource> = Arc::new(scope.clone());
    let v = play
        .engine
        .templar
        .render_file(&src, p)
        .map_err(|e| e.to_string())?;
    let secret = v.contains_secret();
    Ok(Some((v, secret)))
}

pub async fn run(
    play: &Arc<PlayRun>,
    action: &str,
    mut args: Map,
    scope: &HostScope,
    ctx: &Ctx,
) -> Result<TaskResult, String> {
    let srcs = sources(&mut args)?;
    let mut secret = false;
    let content = if action == "merge_configs" {
        let whitespace = args
            .shift_remove("whitespace")
            .map(|v| v.is_keyword_true())
            .unwrap_or(true);
        let mut merged = crate::build::ini::MergedIni::new(whitespace);
        for s in &srcs {
            if let Some((v, sec)) = render(play, scope, s)? {
                secret |= sec;
                let text = crate::template::py_str_value(&v.expose_secrets());
                merged
                    .merge_source(&text)
                    .map_err(|e| format!("{s} (after templating): {e}; fix the file"))?;
            }
        }
        merged.write()
    } else {
        let extend = args
            .shift_remove("extend_lists")
            .is_some_and(|v| v.is_keyword_true());
        let width = yaml_width(args.shift_remove("yaml_width"))?;
        let mut out = Map::new();
        for s in &srcs {
            if let Some((v, sec)) = render(play, scope, s)? {
                secret |= sec;
                let text = crate::template::py_str_value(&v.expose_secrets());
                let doc = crate::yaml::load(&text, s).map_err(|e| e.to_string())?;
                match doc {
                    Value::Map(m) => crate::build::merge_yaml::update_nested(&mut out, &m, extend)
                        .map_err(|e| format!("{s}: {e}"))?,
                    Value::Null => {}
                    other => {
                        return Err(format!(
                            "{s}: merge_yaml needs a mapping at the top, found a {}",
                            other.type_name()
                        ))
                    }
                }
            }
        }
        crate::template::pyyaml::dump(
            &Value::Map(out),
            &crate::template::pyyaml::Style {
                indent: 2,
                flow: Some(false),
                width,
            },
        )
    };
    if let Some(planned) = plan_copy(scope, &ctx.host, &args, &content, secret)? {
        return Ok(planned);
    }
    let mut r = write_with_copy(args, Value::Str(content), secret, ctx).await?;
    r.insert(
        "sources",
        Value::List(srcs.into_iter().map(Value::Str).collect()),
    );
    Ok(r)
}

/// Write text made on the controller (`content`) to the host through the `copy` module with the
/// task's other arguments, as `template`, `merge_configs` and `merge_yaml` do. Made from a secret,
/// it is never shown, not even as a diff.
pub(crate) async fn write_with_copy(
    mut args: Map,
    content: Value,
    secret: bool,
    ctx: &Ctx,
) -> Result<TaskResult, String> {
    let mut ctx = ctx.clone();
    if secret {
        ctx.diff = false;
    }
    args.insert("content".into(), content);
    let copy =
        crate::modules::lookup("copy").ok_or_else(|| "the copy module is missing".to_string())?;
    let mut r = match copy.run(&args, &ctx).await {
        Ok(Some(o)) => TaskResult::from_map(o.to_map()),
        Ok(None) => TaskResult::ok(),
        Err(e) => return Err(e.to_string()),
    };
    if secret {
        r.remove("diff");
    }
    Ok(r)
}

/// kiln's `--plan DIR` (the image build verbs run their preparation in check mode with the
/// variable `kiln_plan_dir`): a file the task would write is also written on the controller as
/// `DIR/<inventory_hostname>/<file name of dest>` (mode 0600 when made from a secret) instead of
/// on the host, and the task reports what it wrote there.
pub(crate) fn plan_copy(
    scope: &HostScope,
    host: &str,
    args: &Map,
    content: &str,
    secret: bool,
) -> Result<Option<TaskResult>, String> {
    let src: Arc<dyn VarSource> = Arc::new(scope.clone());
    let Some(dir) = src
        .raw("kiln_plan_dir")
        .map(|v| crate::template::py_str_value(&v))
    else {
        return Ok(None);
    };
    if dir.is_empty() {
        return Ok(None);
    }
    let dest = args
        .get("dest")
        .map(crate::template::py_str_value)
        .unwrap_or_default();
    let Some(name) = std::path::Path::new(&dest).file_name() else {
        return Ok(None);
    };
    let folder = std::path::Path::new(&dir).join(host);
    std::fs::create_dir_all(&folder)
        .map_err(|e| format!("--plan: cannot create {}: {e}", folder.display()))?;
    let mut f = tempfile::NamedTempFile::new_in(&folder)
        .map_err(|e| format!("--plan: cannot write in {}: {e}", folder.display()))?;
    use std::io::Write;
    f.write_all(content.as_bytes())
        .map_err(|e| format!("--plan: {e}"))?;
    if !secret {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644));
    }
    let to = folder.join(name);
    f.persist(&to).map_err(|e| format!("--plan: {e}"))?;
    Ok(Some(
        TaskResult::ok()
            .with("dest", Value::Str(dest))
            .with("plan", Value::Str(to.display().to_string())),
    ))
}
