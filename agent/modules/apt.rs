//! `apt`: Debian/Ubuntu packages installed, at their latest version, or removed.
//!
//! Query asks `dpkg-query` which of the named packages are installed (and `apt-cache policy` for
//! the candidate version with `state: latest`), and reads the apt cache's age from the mtime of
//! `/var/lib/apt/periodic/update-success-stamp` (or `/var/lib/apt/lists`) as Ansible does. Apply
//! runs one `apt-get` command line with `DEBIAN_FRONTEND=noninteractive` and Ansible's dpkg
//! options (`--force-confdef`, `--force-confold`). So a second run installs nothing and reports
//! `changed: false`. Result keys: `cache_updated`, `cache_update_time`, and after a change
//! `stdout`, `stderr` (plus `stdout_lines`/`stderr_lines` as Ansible adds).

use super::support::args;
use super::support::sysutil::{self, argv};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;

args::choices! {
    /// `state:` of `apt` (`installed` and `removed` are kiln's aliases of `present` and `absent`).
    pub enum State for "state" default Present {
        Absent = "absent" | "removed",
        BuildDep = "build-dep",
        Latest = "latest",
        Present = "present" | "installed",
        Fixed = "fixed",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(
        default,
        alias = "pkg",
        alias = "package",
        deserialize_with = "args::string_list"
    )]
    name: Vec<String>,
    #[serde(default)]
    state: State,
    #[serde(default, alias = "update-cache", deserialize_with = "args::bool")]
    update_cache: bool,
    #[serde(default, deserialize_with = "args::opt_int")]
    cache_valid_time: Option<i64>,
    #[serde(default, deserialize_with = "args::bool")]
    purge: bool,
    #[serde(default, deserialize_with = "args::bool")]
    autoremove: bool,
    #[serde(
        default,
        alias = "install-recommends",
        deserialize_with = "args::opt_bool"
    )]
    install_recommends: Option<bool>,
    #[serde(default, deserialize_with = "args::bool")]
    force: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    default_release: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    dpkg_options: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    only_upgrade: bool,
    #[serde(default, deserialize_with = "args::bool")]
    allow_unauthenticated: bool,
    #[serde(default, deserialize_with = "args::bool")]
    allow_downgrade: bool,
    #[serde(default, deserialize_with = "args::bool")]
    allow_change_held_packages: bool,
    #[serde(default, deserialize_with = "args::bool")]
    force_apt_get: bool,
    #[serde(default, deserialize_with = "args::opt_int")]
    lock_timeout: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_int")]
    update_cache_retries: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_int")]
    update_cache_retry_max_delay: Option<i64>,
}

/// What `dpkg-query` says about a package.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PkgState {
    pub installed: bool,
    /// Removed but its configuration files remain (`purge` still has work).
    pub config_files: bool,
    pub version: Option<String>,
}

/// `dpkg-query -W -f '${Package}\t${Status}\t${Version}\n' NAMES...` output → state by name.
pub fn parse_dpkg_query(out: &str) -> std::collections::BTreeMap<String, PkgState> {
    let mut m = std::collections::BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() < 3 {
            continue;
        }
        let status = f[1];
        let st = PkgState {
            installed: status.ends_with(" installed") && !status.contains("not-installed"),
            config_files: status.ends_with(" config-files"),
            version: (!f[2].is_empty()).then(|| f[2].to_string()),
        };
        // a multi-arch package can be listed once per architecture: installed wins
        let e: &mut PkgState = m.entry(f[0].to_string()).or_default();
        if st.installed || (!e.installed && st.config_files) {
            *e = st;
        }
    }
    m
}

/// `apt-cache policy` output → (installed, candidate) version by package name.
pub fn parse_policy(
    out: &str,
) -> std::collections::BTreeMap<String, (Option<String>, Option<String>)> {
    let mut m = std::collections::BTreeMap::new();
    let mut cur: Option<String> = None;
    for l in out.lines() {
        if !l.starts_with(' ') && l.ends_with(':') {
            cur = Some(l.trim_end_matches(':').to_string());
            m.insert(cur.clone().unwrap_or_default(), (None, None));
            continue;
        }
        let t = l.trim();
        let Some(name) = &cur else { continue };
        let val = |p: &str| {
            t.strip_prefix(p)
                .map(str::trim)
                .filter(|v| *v != "(none)")
                .map(String::from)
        };
        if let Some(e) = m.get_mut(name) {
            if let Some(v) = val("Installed:") {
                e.0 = Some(v);
            } else if let Some(v) = val("Candidate:") {
                e.1 = Some(v);
            }
        }
    }
    m
}

/// `name=version` → (name, version).
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    }
}

fn dpkg_opts(a: &Args) -> Vec<String> {
    a.dpkg_options
        .as_deref()
        .unwrap_or("force-confdef,force-confold")
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .flat_map(|o| ["-o".to_string(), format!("Dpkg::Options::=--{}", o.trim())])
        .collect()
}

/// The `apt-get ... install` command line (pure: unit-tested).
pub fn install_argv(a: &Args, pkgs: &[String]) -> Vec<String> {
    let mut c = argv(&["apt-get", "-y"]);
    c.extend(dpkg_opts(a));
    if a.only_upgrade {
        c.push("--only-upgrade".into());
    }
    if a.force {
        c.push("--force-yes".into());
    }
    if a.autoremove {
        c.push("--auto-remove".into());
    }
    c.push("install".into());
    c.extend(pkgs.iter().cloned());
    if let Some(r) = &a.default_release {
        c.extend(["-t".into(), r.clone()]);
    }
    match a.install_recommends {
        Some(false) => c.extend(["-o".into(), "APT::Install-Recommends=no".into()]),
        Some(true) => c.extend(["-o".into(), "APT::Install-Recommends=yes".into()]),
        None => {}
    }
    if a.allow_unauthenticated {
        c.push("--allow-unauthenticated".into());
    }
    if a.allow_downgrade {
        c.push("--allow-downgrades".into());
    }
    if a.allow_change_held_packages {
        c.push("--allow-change-held-packages".into());
    }
    c
}

/// The `apt-get ... remove` command line (pure: unit-tested).
pub fn remove_argv(a: &Args, pkgs: &[String]) -> Vec<String> {
    let mut c = argv(&["apt-get", "-q", "-y"]);
    c.extend(dpkg_opts(a));
    if a.purge {
        c.push("--purge".into());
    }
    if a.force {
        c.push("--force-yes".into());
    }
    if a.autoremove {
        c.push("--auto-remove".into());
    }
    c.push("remove".into());
    c.extend(pkgs.iter().cloned());
    c
}

const STAMP: &str = "/var/lib/apt/periodic/update-success-stamp";
const LISTS: &str = "/var/lib/apt/lists";

async fn cache_time(ctx: &Ctx) -> Result<i64, ModuleError> {
    for p in [STAMP, LISTS] {
        let st = ctx.session.stat(p, true, false).await?;
        if st.exists {
            return Ok(st.mtime as i64);
        }
    }
    Ok(0)
}

pub struct Apt;

pub struct Plan {
    update: bool,
    cmd: Option<Vec<String>>,
    cache_time: i64,
    /// Only `autoremove` was asked: its own command, changed when it removed something.
    cleanup: bool,
}

fn env() -> [(&'static str, &'static str); 4] {
    [
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
        ("LANG", "C"),
        ("LC_ALL", "C"),
    ]
}

fn lines(s: &str) -> Value {
    Value::List(s.lines().map(|l| Value::Str(l.into())).collect())
}

impl Module for Apt {
    const NAMES: &'static [&'static str] = &["apt", "ansible.builtin.apt"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let state = match &a.state {
            s @ (State::Present | State::Absent | State::Latest) => s.clone(),
            s => {
                return Err(ModuleError::Args(format!(
                    "value of state must be one of: absent, build-dep, latest, present, fixed (kiln supports absent, present, latest), got: {}",
                    s.as_str()
                )))
            }
        };
        let _ = (
            &a.force_apt_get,
            &a.lock_timeout,
            &a.update_cache_retries,
            &a.update_cache_retry_max_delay,
        );
        if sysutil::has_program(ctx, "apt-get").await?.is_none() {
            return Ok(Query::Done(Outcome::failed(
                "apt-get is not on this host: the apt module needs a Debian/Ubuntu host (use dnf or package on Rocky)",
            )));
        }
        let ctime = cache_time(ctx).await?;
        let now = chrono::Utc::now().timestamp();
        let update = (a.update_cache || a.cache_valid_time.is_some_and(|v| v > 0))
            && ctime + a.cache_valid_time.unwrap_or(0) < now;
        let names: Vec<(String, Option<String>)> = a
            .name
            .iter()
            .map(|s| {
                let (n, v) = split_spec(s);
                (n.to_string(), v.map(String::from))
            })
            .collect();
        let mut pkgs = vec![];
        if !names.is_empty() {
            let mut q = argv(&[
                "dpkg-query",
                "-W",
                "-f",
                "${Package}\\t${Status}\\t${Version}\\n",
            ]);
            q.extend(names.iter().map(|(n, _)| n.clone()));
            let r = sysutil::run_env(ctx, &q, &env()).await?;
            let have = parse_dpkg_query(&r.stdout_text());
            let policy = if state == State::Latest {
                let mut p = argv(&["apt-cache", "policy"]);
                p.extend(names.iter().map(|(n, _)| n.clone()));
                let r = sysutil::run_env(ctx, &p, &env()).await?;
                parse_policy(&r.stdout_text())
            } else {
                Default::default()
            };
            for (spec, (n, v)) in a.name.iter().zip(&names) {
                let st = have.get(n).cloned().unwrap_or_default();
                let need = match state {
                    State::Absent => st.installed || (a.purge && st.config_files),
                    State::Latest => {
                        let cand = policy.get(n).and_then(|p| p.1.clone());
                        if cand.is_none() && !st.installed {
                            return Ok(Query::Done(Outcome::failed(format!(
                                "no available installation candidate for {spec}"
                            ))));
                        }
                        !st.installed || (cand.is_some() && cand != st.version)
                    }
                    _ => match v {
                        Some(v) => st.version.as_deref() != Some(v.as_str()) || !st.installed,
                        None => !st.installed,
                    },
                };
                if need {
                    pkgs.push(if state == State::Absent {
                        n.clone()
                    } else {
                        spec.clone()
                    });
                }
            }
        }
        let cleanup = names.is_empty() && a.autoremove;
        let cmd = if cleanup {
            let mut c = argv(&["apt-get", "-y"]);
            c.extend(dpkg_opts(&a));
            if a.purge {
                c.push("--purge".into());
            }
            c.push("autoremove".into());
            Some(c)
        } else if pkgs.is_empty() {
            None
        } else if state == State::Absent {
            Some(remove_argv(&a, &pkgs))
        } else {
            Some(install_argv(&a, &pkgs))
        };
        let done = Outcome::ok()
            .with("cache_updated", false)
            .with("cache_update_time", Value::Int(ctime));
        if cleanup {
            // whether autoremove would remove anything: ask apt-get to simulate it
            let mut sim = argv(&["apt-get", "-s"]);
            sim.push("autoremove".into());
            let r = sysutil::run_env(ctx, &sim, &env()).await?;
            if !r
                .stdout_text()
                .contains("The following packages will be REMOVED")
                && !update
            {
                return Ok(Query::Done(done));
            }
        } else if cmd.is_none() && !update {
            return Ok(Query::Done(done));
        }
        let preview = Outcome::changed()
            .with("cache_updated", update)
            .with("cache_update_time", Value::Int(ctime));
        Ok(Query::Change {
            plan: Plan {
                update,
                cmd,
                cache_time: ctime,
                cleanup,
            },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let mut updated = false;
        let mut ctime = p.cache_time;
        if p.update {
            let r = sysutil::run_env(ctx, &argv(&["apt-get", "update", "-q"]), &env()).await?;
            if r.rc != 0 {
                return Ok(Outcome::failed(format!(
                    "Failed to update apt cache: {}",
                    r.stderr_text().trim()
                )));
            }
            let after = cache_time(ctx).await?;
            updated = after != ctime;
            ctime = after;
        }
        let Some(cmd) = p.cmd else {
            let mut o = Outcome::ok()
                .with("cache_updated", updated)
                .with("cache_update_time", Value::Int(ctime));
            o.changed = updated;
            return Ok(o);
        };
        let r = sysutil::run_env(ctx, &cmd, &env()).await?;
        let (out, err) = (r.stdout_text(), r.stderr_text());
        let mut o = if r.rc != 0 {
            Outcome::failed(format!(
                "'{}' failed: {}",
                shell_words::join(&cmd),
                err.trim()
            ))
            .with("rc", Value::Int(r.rc as i64))
        } else {
            let mut o = Outcome::changed();
            if p.cleanup {
                o.changed = out.contains("The following packages will be REMOVED");
            }
            o
        };
        o = o
            .with("stdout", out.clone())
            .with("stderr", err.clone())
            .with("stdout_lines", lines(&out))
            .with("stderr_lines", lines(&err))
            .with("cache_updated", updated)
            .with("cache_update_time", Value::Int(ctime));
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(y: &str) -> Args {
        let v = crate::yaml::load(y, "t").unwrap();
        args::decode("apt", v.as_map().unwrap()).unwrap()
    }

    #[test]
    fn parses_dpkg_and_policy() {
        let m = parse_dpkg_query(
            "bash\tinstall ok installed\t5.2.15-2+b7\nvim\tdeinstall ok config-files\t2:9.0\nfoo\tunknown ok not-installed\t\n",
        );
        assert!(m["bash"].installed);
        assert_eq!(m["bash"].version.as_deref(), Some("5.2.15-2+b7"));
        assert!(!m["vim"].installed && m["vim"].config_files);
        assert!(!m["foo"].installed);
        let p = parse_policy("bash:\n  Installed: 5.2\n  Candidate: 5.3\n  Version table:\nfoo:\n  Installed: (none)\n  Candidate: 1.0\n");
        assert_eq!(p["bash"], (Some("5.2".into()), Some("5.3".into())));
        assert_eq!(p["foo"], (None, Some("1.0".into())));
    }

    #[test]
    fn command_lines() {
        let a = args("name: [nginx, curl=7.88]\ninstall_recommends: no\nautoremove: yes");
        assert_eq!(
            install_argv(&a, &["nginx".into(), "curl=7.88".into()]),
            [
                "apt-get",
                "-y",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                "--auto-remove",
                "install",
                "nginx",
                "curl=7.88",
                "-o",
                "APT::Install-Recommends=no"
            ]
        );
        let a = args("name: nginx\nstate: absent\npurge: yes");
        assert_eq!(
            remove_argv(&a, &["nginx".into()]),
            [
                "apt-get",
                "-q",
                "-y",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                "--purge",
                "remove",
                "nginx"
            ]
        );
        assert_eq!(split_spec("curl=7.88"), ("curl", Some("7.88")));
    }
}
