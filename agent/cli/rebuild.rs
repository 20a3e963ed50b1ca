//! The build verbs' `--if-changed` and feedback hooks (issue 17 items 1 and 5), kept apart from
//! `image_build.rs`: the playbook chain and variables for `--if-changed`, the printed decisions,
//! and the notification after the run.

use super::image_build::BuildArgs;
use super::GlobalOpts;
use crate::build::if_changed::RunPlan;
use crate::build::inputs::Decision;
use crate::config::vars::ExtraVars;
use crate::value::{Map, Value};
use std::path::{Path, PathBuf};

/// The variables `--if-changed` adds: `kiln_if_changed` and where the plans go.
pub fn vars(vars: &mut Map, plan_dir: &Path, plan_mode: bool) {
    vars.insert("kiln_if_changed".into(), Value::Bool(true));
    vars.insert(
        "kiln_inputs_plan_dir".into(),
        Value::Str(plan_dir.display().to_string()),
    );
    if plan_mode {
        vars.insert(
            "kiln_inputs_plan_file".into(),
            Value::Str(format!(
                "{}/{{{{ inventory_hostname }}}}/if-changed.json",
                plan_dir.display()
            )),
        );
    }
}

/// `--if-changed` needs `--push` (the registry is what it compares with and tags), unless it
/// only plans.
pub fn check_args(b: &BuildArgs) -> anyhow::Result<()> {
    if b.if_changed && !b.push && b.plan.is_none() {
        anyhow::bail!(
            "--if-changed compares each image with the published one and tags unchanged images in the registry: add --push (or --plan DIR to only see what would be built)"
        );
    }
    Ok(())
}

/// Print each host's plan: `image  build (reasons)` / `image  unchanged (...)`.
pub fn print_plans(files: &[PathBuf]) {
    for f in files {
        let Ok(text) = std::fs::read(f) else { continue };
        let Ok(p) = serde_json::from_slice::<RunPlan>(&text) else {
            continue;
        };
        let host = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let host = if host == "if-changed" {
            f.parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            host
        };
        println!(
            "if-changed [{host}] tag {}: {} to build, {} unchanged ({} images hashed in {:.1} ms)",
            p.tag,
            p.build.len(),
            p.unchanged.len(),
            p.hashed,
            p.hash_seconds * 1000.0
        );
        if !p.render.is_empty() {
            println!("  Dockerfiles: {}", p.render);
        }
        for i in &p.images {
            let what = match &i.decision {
                Decision::Unchanged => format!(
                    "unchanged: same inputs as {}{}",
                    i.published
                        .as_ref()
                        .map(|x| x.reference.as_str())
                        .unwrap_or("?"),
                    if i.retagged.is_some() && !p.tag.is_empty() {
                        format!(", tagged {}", p.tag)
                    } else {
                        String::new()
                    }
                ),
                Decision::Build { reasons } => format!("build: {}", reasons.join(", ")),
            };
            println!("  {:<24} {what}", i.name);
        }
    }
}

/// The plan files under `dir` (`<host>.json` or `<host>/if-changed.json`).
pub fn plan_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && p.join("if-changed.json").exists() {
                out.push(p.join("if-changed.json"));
            } else if p.extension().and_then(|x| x.to_str()) == Some("json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The record the run wrote (as container-image-publish.yml names it), for the first builder.
pub fn record_path(g: &GlobalOpts, extra: Vec<ExtraVars>, limit: Option<&str>) -> Option<PathBuf> {
    use crate::template::VarSource;
    use std::sync::Arc;
    let loaded = super::context::load(g, extra, Vec::new()).ok()?;
    let host = super::image_build::builder_hosts(&loaded.run.inventory, limit)
        .ok()?
        .into_iter()
        .next()?;
    let scope: Arc<dyn VarSource> = Arc::new(loaded.run.host_scope(&host).ok()?);
    let v = loaded
        .templar
        .template(
            &scope,
            &Value::str(
                "{{ kiln_build_record | default(lookup('env', 'KAYOBE_CONFIG_PATH') ~ '/kiln/builds/' ~ kolla_tag ~ '.json') }}",
            ),
            "--notify",
        )
        .ok()?;
    let s = crate::template::py_str_value(&v);
    (!s.is_empty()).then(|| PathBuf::from(s))
}

/// After the run: the summary for `kiln schedule exec` (`$KILN_RUN_SUMMARY`), to the webhook
/// and/or command.
pub fn notify(
    b: &BuildArgs,
    g: &GlobalOpts,
    which: &str,
    extra: Vec<ExtraVars>,
    code: i32,
    started: &str,
) {
    let summary_file = std::env::var_os("KILN_RUN_SUMMARY");
    if !b.notify.wanted() && summary_file.is_none() {
        return;
    }
    let record = record_path(g, extra, b.run.limit.as_deref());
    if let Some(f) = summary_file {
        // for `kiln schedule exec`'s history (built/unchanged/failed, record)
        let s = super::notify::run_summary(record.as_deref(), started);
        if let Err(e) = std::fs::write(&f, s.to_string()) {
            eprintln!(
                "[WARNING]: cannot write the run summary to {}: {e}",
                std::path::Path::new(&f).display()
            );
        }
    }
    if !b.notify.wanted() {
        return;
    }
    let s = super::notify::summary(
        &format!("{which} container image build"),
        code,
        record.as_deref(),
        started,
    );
    for e in super::notify::send(&b.notify, &s) {
        eprintln!("[WARNING]: notification failed: {e}");
    }
}
