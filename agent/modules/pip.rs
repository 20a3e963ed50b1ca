//! `pip`: Python packages on the host, in the system Python or a virtualenv.
//!
//! The query step asks pip what is installed (`python -m pip list --format=json`) and compares it
//! with each wanted requirement (`name`, `name==1.0`, `name>=1,<2`, extras allowed; PEP 440
//! comparisons by [`pep440_rs`]), so a second run reports `changed: false` without running
//! `pip install`. What cannot be compared — `requirements` files, URLs, paths, `state: latest`,
//! `forcereinstall` — runs pip and, as Ansible does, is `changed` when pip says "Successfully
//! installed" / "Successfully uninstalled" (or, for requirements files, when `pip freeze` differs).
//!
//! A missing `virtualenv` (no `bin/activate`) is created first with `virtualenv_command`. Ansible's
//! default is `virtualenv`, a tool the hosts kiln provisions rarely have; kiln's default is
//! `python3 -m venv` (python3-venv), Ansible's own special case for `-m venv`. Check mode follows
//! Ansible: `changed: true` whenever `extra_args`, `requirements` or `state: latest` are given.

use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::ExecRequest;
use crate::value::Value;
use pep440_rs::{Version, VersionSpecifiers};
use serde::Deserialize;
use std::collections::HashMap;
use std::str::FromStr;

args::choices! {
    /// `state:` of `pip`.
    pub enum State for "state" default Present {
        Absent = "absent",
        Forcereinstall = "forcereinstall",
        Latest = "latest",
        Present = "present",
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default, deserialize_with = "args::string_list")]
    name: Vec<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    version: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    requirements: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    virtualenv: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    virtualenv_site_packages: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    virtualenv_command: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    virtualenv_python: Option<String>,
    #[serde(default)]
    state: State,
    #[serde(default, deserialize_with = "args::opt_string")]
    extra_args: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    editable: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    chdir: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    executable: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    umask: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    break_system_packages: bool,
}

pub struct Pip;

/// One wanted package: `name[extras]<specifiers>`, or something pip must resolve (URL, path).
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    /// As given (what is passed to pip).
    pub text: String,
    /// Normalised name (PEP 503), None for URLs / paths / VCS.
    pub name: Option<String>,
    pub spec: Option<VersionSpecifiers>,
}

/// PEP 503 normalised name: lower case, runs of `-_.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Ansible's `_recover_package_name`: a list argument split `foo>=1,<2` at the comma; put
/// specifier-only pieces back onto the package before them.
pub fn recover_names(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for i in items {
        let t = i.trim();
        let is_spec = t.starts_with(['<', '>', '=', '!', '~']);
        match out.last_mut() {
            Some(prev) if is_spec => {
                prev.push(',');
                prev.push_str(t);
            }
            _ => out.push(t.to_string()),
        }
    }
    out
}

/// Parse one requirement; `version` (Ansible's `version` argument) adds `==version` or itself
/// when it starts with an operator.
pub fn parse_requirement(text: &str, version: Option<&str>) -> Result<Requirement, String> {
    let t = text.trim();
    let opaque = t.contains("://")
        || t.contains('/')
        || t.starts_with('.')
        || t.contains('@')
        || t.ends_with(".whl")
        || t.ends_with(".tar.gz")
        || t.ends_with(".zip");
    if opaque {
        return Ok(Requirement {
            text: t.to_string(),
            name: None,
            spec: None,
        });
    }
    let name_end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(t.len());
    let name = &t[..name_end];
    if name.is_empty() {
        return Err(format!("invalid package name {t:?}"));
    }
    let mut rest = t[name_end..].trim();
    if rest.starts_with('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| format!("unclosed extras in {t:?}"))?;
        rest = rest[close + 1..].trim();
    }
    let rest = rest.split(';').next().unwrap_or("").trim();
    let mut spec_text = rest.to_string();
    let mut text = t.to_string();
    if let Some(v) = version {
        if !spec_text.is_empty() {
            return Err("The 'version' argument conflicts with any version specifier provided along with a package name. Please keep the version specifier, but remove the 'version' argument.".into());
        }
        let v = v.trim();
        spec_text = if v.starts_with(['<', '>', '=', '!', '~']) {
            v.to_string()
        } else {
            format!("=={v}")
        };
        text = format!("{t}{spec_text}");
    }
    let spec = if spec_text.is_empty() {
        None
    } else {
        Some(
            VersionSpecifiers::from_str(&spec_text)
                .map_err(|e| format!("invalid version specifier in {t:?}: {e}"))?,
        )
    };
    Ok(Requirement {
        text,
        name: Some(normalize(name)),
        spec,
    })
}

impl Requirement {
    /// Whether an installed version (None: not installed) satisfies this requirement.
    pub fn satisfied_by(&self, installed: Option<&str>) -> bool {
        match (installed, &self.spec) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(v), Some(spec)) => Version::from_str(v)
                .map(|v| spec.contains(&v))
                .unwrap_or(false),
        }
    }
}

pub struct Plan {
    a: Args,
    state: State,
    reqs: Vec<Requirement>,
    env: Option<String>,
    chdir: String,
    create_venv: bool,
}

fn join(dir: &str, p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), p)
    }
}

impl Plan {
    fn pip(&self) -> Vec<String> {
        match (&self.env, &self.a.executable) {
            (Some(e), _) => vec![format!("{e}/bin/pip")],
            (None, Some(x)) => vec![x.clone()],
            (None, None) => vec!["python3".into(), "-m".into(), "pip".into()],
        }
    }

    async fn exec(
        &self,
        ctx: &Ctx,
        argv: Vec<String>,
    ) -> Result<crate::transport::ExecResult, ModuleError> {
        let mut env = ctx.env.clone();
        if self.a.break_system_packages {
            env.push(("PIP_BREAK_SYSTEM_PACKAGES".into(), "1".into()));
        }
        let argv = match &self.a.umask {
            // umask applies to what pip creates: run through sh to set it
            Some(u) => {
                let mut v = vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("umask {u} && exec \"$@\""),
                    "sh".into(),
                ];
                v.extend(argv);
                v
            }
            None => argv,
        };
        Ok(ctx
            .exec(ExecRequest {
                argv,
                env,
                cwd: Some(self.chdir.clone()),
                ..Default::default()
            })
            .await?)
    }

    /// Installed packages: normalised name → version.
    async fn installed(
        &self,
        ctx: &Ctx,
    ) -> Result<Result<HashMap<String, String>, String>, ModuleError> {
        let mut argv = self.pip();
        argv.extend(["list", "--format=json", "--disable-pip-version-check"].map(String::from));
        let r = self.exec(ctx, argv).await?;
        if r.rc != 0 {
            return Ok(Err(format!("pip list failed: {}", r.stderr_text().trim())));
        }
        let list: Vec<serde_json::Value> = serde_json::from_slice(&r.stdout).unwrap_or_default();
        Ok(Ok(list
            .iter()
            .filter_map(|p| {
                Some((
                    normalize(p.get("name")?.as_str()?),
                    p.get("version")?.as_str()?.to_string(),
                ))
            })
            .collect()))
    }

    async fn freeze(&self, ctx: &Ctx) -> Result<String, ModuleError> {
        let mut argv = self.pip();
        argv.extend(["freeze", "--disable-pip-version-check"].map(String::from));
        Ok(self.exec(ctx, argv).await?.stdout_text())
    }
}

fn result(p: &Plan, changed: bool, cmd: Vec<String>, stdout: String, stderr: String) -> Outcome {
    let opt = |v: &Option<String>| v.clone().map(Value::Str).unwrap_or(Value::Null);
    Outcome {
        changed,
        ..Outcome::ok()
    }
    .with(
        "cmd",
        Value::List(cmd.into_iter().map(Value::Str).collect()),
    )
    .with(
        "name",
        if p.a.name.is_empty() {
            Value::Null
        } else {
            Value::List(p.a.name.iter().cloned().map(Value::Str).collect())
        },
    )
    .with("version", opt(&p.a.version))
    .with("state", p.state.as_str())
    .with("requirements", opt(&p.a.requirements))
    .with("virtualenv", opt(&p.env))
    .with("stdout", Value::Str(stdout))
    .with("stderr", Value::Str(stderr))
}

impl Module for Pip {
    const NAMES: &'static [&'static str] = &["pip", "ansible.builtin.pip"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let state = a.state.clone().checked()?;
        if a.name.is_empty() && a.requirements.is_none() {
            return Err(ModuleError::Args(
                "one of the following is required: name, requirements".into(),
            ));
        }
        if !a.name.is_empty() && a.requirements.is_some() {
            return Err(ModuleError::Args(
                "parameters are mutually exclusive: name|requirements".into(),
            ));
        }
        if a.executable.is_some() && a.virtualenv.is_some() {
            return Err(ModuleError::Args(
                "parameters are mutually exclusive: executable|virtualenv".into(),
            ));
        }
        if state == State::Latest && a.version.is_some() {
            return Ok(Query::Done(Outcome::failed(
                "version is incompatible with state=latest",
            )));
        }
        let names = recover_names(&a.name);
        if a.version.is_some() && names.len() > 1 {
            return Ok(Query::Done(Outcome::failed("'version' argument is ambiguous when installing multiple package distributions. Please specify version restrictions next to each package in 'name' argument.")));
        }
        let mut reqs = vec![];
        for n in &names {
            match parse_requirement(n, a.version.as_deref()) {
                Ok(r) => reqs.push(r),
                Err(m) => return Ok(Query::Done(Outcome::failed(m))),
            }
        }
        let chdir = a.chdir.clone().unwrap_or_else(|| "/tmp".into());
        let env = a.virtualenv.as_deref().map(|e| match &a.chdir {
            Some(d) => join(d, e),
            None => e.to_string(),
        });
        let create_venv = match &env {
            Some(e) => {
                !ctx.session
                    .stat(&format!("{e}/bin/activate"), true, false)
                    .await?
                    .exists
            }
            None => false,
        };
        let p = Plan {
            a,
            state,
            reqs,
            env,
            chdir,
            create_venv,
        };
        let preview = |p: &Plan| result(p, true, vec![], String::new(), String::new());
        let comparable = !p.reqs.is_empty()
            && p.reqs.iter().all(|r| r.name.is_some())
            && (p.state == State::Present || p.state == State::Absent)
            && !p.a.editable;
        if ctx.check
            && (p.a.extra_args.is_some()
                || p.a.requirements.is_some()
                || p.state == State::Latest
                || p.a.name.is_empty())
        {
            let o = preview(&p);
            return Ok(Query::Change {
                plan: p,
                preview: o,
            });
        }
        if p.create_venv || !comparable {
            let o = preview(&p);
            return Ok(Query::Change {
                plan: p,
                preview: o,
            });
        }
        let installed = match p.installed(ctx).await? {
            Ok(i) => i,
            Err(m) => return Ok(Query::Done(Outcome::failed(m))),
        };
        let want_present = p.state == State::Present;
        let needed = p.reqs.iter().any(|r| {
            let have = r
                .name
                .as_ref()
                .and_then(|n| installed.get(n))
                .map(String::as_str);
            if want_present {
                !r.satisfied_by(have)
            } else {
                have.is_some()
            }
        });
        if !needed {
            let mut argv = p.pip();
            argv.extend(["list", "--format=json"].map(String::from));
            return Ok(Query::Done(result(
                &p,
                false,
                argv,
                String::new(),
                String::new(),
            )));
        }
        let o = preview(&p);
        Ok(Query::Change {
            plan: p,
            preview: o,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(env) = &p.env {
            if p.create_venv {
                let command =
                    p.a.virtualenv_command
                        .clone()
                        .unwrap_or_else(|| "python3 -m venv".into());
                let mut cmd = shell_words::split(&command).map_err(|e| {
                    ModuleError::Args(format!("virtualenv_command {command:?}: {e}"))
                })?;
                let is_venv = command.contains("-m venv");
                if let (true, Some(py)) = (is_venv, &p.a.virtualenv_python) {
                    cmd = vec![py.clone(), "-m".into(), "venv".into()];
                }
                if p.a.virtualenv_site_packages {
                    cmd.push("--system-site-packages".into());
                }
                if let (false, Some(py)) = (is_venv, &p.a.virtualenv_python) {
                    cmd.push(format!("-p{py}"));
                }
                cmd.push(env.clone());
                let r = p.exec(ctx, cmd.clone()).await?;
                out.push_str(&r.stdout_text());
                err.push_str(&r.stderr_text());
                if r.rc != 0 {
                    return Ok(Outcome::failed(format!(
                        "Failed to create the virtualenv {env}: {}",
                        r.stderr_text().trim()
                    ))
                    .with(
                        "cmd",
                        Value::List(cmd.into_iter().map(Value::Str).collect()),
                    ));
                }
            }
        }
        let mut cmd = p.pip();
        cmd.extend(
            match p.state {
                State::Absent => vec!["uninstall", "-y"],
                State::Latest => vec!["install", "-U"],
                State::Forcereinstall => vec!["install", "-U", "--force-reinstall"],
                State::Present | State::Other(_) => vec!["install"],
            }
            .into_iter()
            .map(String::from),
        );
        let mut extra = p.a.extra_args.clone().unwrap_or_default();
        if p.a.editable && !extra.split(' ').any(|w| w == "-e") {
            extra = format!("{extra} -e").trim().to_string();
        }
        if !extra.is_empty() {
            cmd.extend(
                shell_words::split(&extra)
                    .map_err(|e| ModuleError::Args(format!("extra_args: {e}")))?,
            );
        }
        if p.reqs.is_empty() {
            if let Some(r) = &p.a.requirements {
                cmd.extend(["-r".to_string(), r.clone()]);
            }
        } else {
            cmd.extend(p.reqs.iter().map(|r| r.text.clone()));
        }
        let freeze_before = if p.a.requirements.is_some() {
            Some(p.freeze(ctx).await?)
        } else {
            None
        };
        let r = p.exec(ctx, cmd.clone()).await?;
        let (o, e) = (r.stdout_text(), r.stderr_text());
        out.push_str(&o);
        err.push_str(&e);
        let not_installed = p.state == State::Absent
            && r.rc == 1
            && (o.contains("not installed") || e.contains("not installed"));
        if r.rc != 0 && !not_installed {
            let mut msg = String::new();
            if !out.is_empty() {
                msg.push_str(&format!("stdout: {out}"));
            }
            if !err.is_empty() {
                msg.push_str(&format!("\n:stderr: {err}"));
            }
            return Ok(Outcome::failed(msg).with(
                "cmd",
                Value::List(cmd.into_iter().map(Value::Str).collect()),
            ));
        }
        let changed = if p.state == State::Absent {
            o.contains("Successfully uninstalled")
        } else if let Some(before) = freeze_before {
            before != p.freeze(ctx).await?
        } else {
            o.contains("Successfully installed")
        };
        Ok(result(&p, changed || p.create_venv, cmd, out, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_parsing_and_comparison() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            recover_names(&s(&["foo>=1.0", "<2", "Bar_baz"])),
            s(&["foo>=1.0,<2", "Bar_baz"])
        );
        let r = parse_requirement("foo>=1.0,<2", None).unwrap();
        assert_eq!(r.name.as_deref(), Some("foo"));
        assert!(r.satisfied_by(Some("1.5")));
        assert!(!r.satisfied_by(Some("2.0")));
        assert!(!r.satisfied_by(Some("0.9")));
        assert!(!r.satisfied_by(None));
        let r = parse_requirement("Foo.Bar_baz[extra1]==1.0", None).unwrap();
        assert_eq!(r.name.as_deref(), Some("foo-bar-baz"));
        assert!(r.satisfied_by(Some("1.0.0")));
        assert!(!r.satisfied_by(Some("1.0.1")));
        let r = parse_requirement("x", Some("2.1")).unwrap();
        assert_eq!(r.text, "x==2.1");
        assert!(r.satisfied_by(Some("2.1")));
        let r = parse_requirement("x", Some(">=2")).unwrap();
        assert!(r.satisfied_by(Some("10.0")) && !r.satisfied_by(Some("1.9rc1")));
        assert!(parse_requirement("x>1", Some("2")).is_err());
        assert!(parse_requirement("x~=1.4", None)
            .unwrap()
            .satisfied_by(Some("1.9")));
        assert!(parse_requirement("/tmp/x-1.0.whl", None)
            .unwrap()
            .name
            .is_none());
        assert!(parse_requirement("git+https://h/r.git", None)
            .unwrap()
            .name
            .is_none());
        assert!(parse_requirement("x>>1", None).is_err());
        assert!(parse_requirement("x", None)
            .unwrap()
            .satisfied_by(Some("anything")));
    }
}
