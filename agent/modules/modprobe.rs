//! `modprobe` (community.general.modprobe): a kernel module loaded or unloaded, and optionally
//! loaded at boot.
//!
//! Query reads `/proc/modules` (and `modules.builtin` of the running kernel: a built-in module
//! counts as loaded); apply runs `modprobe NAME PARAMS...` or `modprobe -r NAME`. With
//! `persistent: present` the module is listed in `/etc/modules-load.d/NAME.conf` and its params in
//! `/etc/modprobe.d/NAME.conf`; `persistent: absent` comments those lines out, as Ansible does
//! (kiln only looks at the `NAME.conf` files, not every file of those folders). When modprobe
//! fails (a kernel without loadable modules, an unknown module), the task fails with modprobe's
//! own words and a hint. Result keys: `name`, `params`, `state`.

use super::support::args;
use super::support::sysutil::{self, argv};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::WriteRequest;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    name: String,
    #[serde(default)]
    state: args::PresentAbsent,
    #[serde(default, deserialize_with = "args::string")]
    params: String,
    #[serde(default = "disabled", deserialize_with = "args::string")]
    persistent: String,
}

fn disabled() -> String {
    "disabled".into()
}

/// Whether `name` is in a `/proc/modules` text (dashes and underscores are the same).
pub fn loaded(proc_modules: &str, name: &str) -> bool {
    let n = format!("{} ", name.replace('-', "_"));
    proc_modules.lines().any(|l| l.starts_with(&n))
}

/// Whether `name` is built into the kernel per its `modules.builtin`.
pub fn builtin(modules_builtin: &str, name: &str) -> bool {
    let f = format!("/{name}.ko");
    modules_builtin.lines().any(|l| l.trim_end().ends_with(&f))
}

/// `modprobe NAME PARAMS...` / `modprobe -r NAME` (pure: unit-tested).
pub fn modprobe_argv(name: &str, params: &str, load: bool) -> Result<Vec<String>, ModuleError> {
    if !load {
        return Ok(argv(&["modprobe", "-r", name]));
    }
    let mut c = argv(&["modprobe", name]);
    c.extend(shell_words::split(params).map_err(|e| ModuleError::Args(format!("params: {e}")))?);
    Ok(c)
}

/// Comment out lines that are exactly `line` (persistent: absent).
fn comment_out(text: &str, line: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim() == line {
                format!("#{l}")
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect()
}

pub struct Modprobe;

pub struct Plan {
    cmd: Option<Vec<String>>,
    files: Vec<(String, String)>,
    report: Outcome,
}

impl Module for Modprobe {
    const NAMES: &'static [&'static str] = &["modprobe", "community.general.modprobe"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        a.state.present()?;
        if !matches!(a.persistent.as_str(), "disabled" | "present" | "absent") {
            return Err(ModuleError::Args(format!(
                "value of persistent must be one of: disabled, present, absent, got: {}",
                a.persistent
            )));
        }
        if sysutil::has_program(ctx, "modprobe").await?.is_none() {
            return Ok(Query::Done(Outcome::failed(
                "modprobe is not installed on this host (it comes with the kmod package)",
            )));
        }
        let procm = sysutil::read_opt(ctx, "/proc/modules")
            .await?
            .unwrap_or_default();
        let release = sysutil::read_opt(ctx, "/proc/sys/kernel/osrelease")
            .await?
            .unwrap_or_default();
        let builtins = sysutil::read_opt(
            ctx,
            &format!("/lib/modules/{}/modules.builtin", release.trim()),
        )
        .await?
        .unwrap_or_default();
        let is_loaded = loaded(&procm, &a.name) || builtin(&builtins, &a.name);
        let cmd = match (&a.state, is_loaded) {
            (args::PresentAbsent::Present, false) => Some(modprobe_argv(&a.name, &a.params, true)?),
            (args::PresentAbsent::Absent, true) => Some(modprobe_argv(&a.name, &a.params, false)?),
            _ => None,
        };
        let load_file = format!("/etc/modules-load.d/{}.conf", a.name);
        let opt_file = format!("/etc/modprobe.d/{}.conf", a.name);
        let opt_line = format!("options {} {}", a.name, a.params.trim());
        let mut files = vec![];
        let cur_load = sysutil::read_opt(ctx, &load_file)
            .await?
            .unwrap_or_default();
        let cur_opt = sysutil::read_opt(ctx, &opt_file).await?.unwrap_or_default();
        let has_line = |t: &str, l: &str| t.lines().any(|x| x.trim() == l);
        match a.persistent.as_str() {
            "present" => {
                if !has_line(&cur_load, &a.name) {
                    files.push((load_file, format!("{cur_load}{}\n", a.name)));
                }
                if !a.params.trim().is_empty() && !has_line(&cur_opt, &opt_line) {
                    files.push((opt_file, format!("{cur_opt}{opt_line}\n")));
                }
            }
            "absent" => {
                if has_line(&cur_load, &a.name) {
                    files.push((load_file, comment_out(&cur_load, &a.name)));
                }
                if !a.params.trim().is_empty() && has_line(&cur_opt, &opt_line) {
                    files.push((opt_file, comment_out(&cur_opt, &opt_line)));
                }
            }
            _ => {}
        }
        let report = Outcome::ok()
            .with("name", a.name.clone())
            .with("params", a.params.clone())
            .with("state", a.state.as_str());
        if cmd.is_none() && files.is_empty() {
            return Ok(Query::Done(report));
        }
        let mut report = report;
        report.changed = true;
        // check mode: Ansible runs `modprobe -n` to see that loading would work
        if ctx.check {
            if let Some(c) = &cmd {
                let mut dry = c.clone();
                dry.insert(1, "-n".into());
                let r = sysutil::run(ctx, &dry).await?;
                if r.rc != 0 {
                    return Ok(Query::Done(fail(&a.name, &r)));
                }
            }
        }
        Ok(Query::Change {
            plan: Plan {
                cmd,
                files,
                report: report.clone(),
            },
            preview: report,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        if let Some(c) = &p.cmd {
            let r = sysutil::run(ctx, c).await?;
            if r.rc != 0 {
                let name = p
                    .report
                    .data
                    .get("name")
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                return Ok(fail(name, &r));
            }
        }
        for (path, text) in p.files {
            ctx.session
                .write_file(WriteRequest {
                    path,
                    content: text.into_bytes(),
                    ..Default::default()
                })
                .await?;
        }
        Ok(p.report)
    }
}

fn fail(name: &str, r: &crate::transport::ExecResult) -> Outcome {
    let err = r.stderr_text().trim().to_string();
    let hint = if err.contains("not found in directory") || err.contains("could not open moddep") {
        format!(" (the running kernel has no loadable module {name:?}: it may be built without module support, or the module is not installed for this kernel)")
    } else {
        String::new()
    };
    Outcome::failed(format!("{err}{hint}"))
        .with("rc", crate::value::Value::Int(r.rc as i64))
        .with("stderr", err)
        .with("stdout", r.stdout_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_state() {
        let pm = "br_netfilter 32768 0 - Live 0x0\nnf_conntrack 172032 1 br_netfilter, Live 0x0\n";
        assert!(loaded(pm, "br-netfilter") && loaded(pm, "nf_conntrack") && !loaded(pm, "nf"));
        assert!(builtin("kernel/drivers/net/dummy.ko\n", "dummy"));
        assert_eq!(
            modprobe_argv("dummy", "numdummies=2 x='a b'", true).unwrap(),
            ["modprobe", "dummy", "numdummies=2", "x=a b"]
        );
        assert_eq!(
            modprobe_argv("dummy", "", false).unwrap(),
            ["modprobe", "-r", "dummy"]
        );
        assert_eq!(comment_out("dummy\nother\n", "dummy"), "#dummy\nother\n");
    }
}
