//! `dnf`: Rocky/RHEL packages installed, at their latest version, or removed.
//!
//! Query asks `rpm -q SPEC` per package (so `name`, `name-1.2` and `name-1.2-3.el9` all work as
//! rpm matches them) and, with `state: latest`, `dnf check-update` (exit 100: an update exists).
//! Apply runs one `dnf -y ... install|upgrade|remove` command line built by pure functions, with
//! the repository options (`--enablerepo`, `--disablerepo`, `--nogpgcheck`, ...) in Ansible's
//! order. Result keys are Ansible's: `msg`, `rc`, `results` (`Installed: NAME` / `Removed: NAME`).
//!
//! Group (`@name`), file and URL specs cannot be answered by `rpm -q`: dnf itself decides for
//! them and its "Nothing to do." means no change.

use super::support::args;
use super::support::sysutil::{self, argv};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;

args::choices! {
    /// `state:` of `dnf` (`installed` and `removed` mean `present` and `absent`).
    pub enum State for "state" default Present {
        Absent = "absent",
        Installed = "installed",
        Latest = "latest",
        Present = "present",
        Removed = "removed",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default, alias = "pkg", deserialize_with = "args::string_list")]
    pub name: Vec<String>,
    #[serde(default)]
    pub state: State,
    #[serde(default, alias = "expire-cache", deserialize_with = "args::bool")]
    pub update_cache: bool,
    #[serde(default, deserialize_with = "args::string_list")]
    pub enablerepo: Vec<String>,
    #[serde(default, deserialize_with = "args::string_list")]
    pub disablerepo: Vec<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub disable_gpg_check: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    pub install_weak_deps: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub autoremove: bool,
    #[serde(default, deserialize_with = "args::string_list")]
    pub exclude: Vec<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub allowerasing: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub nobest: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub skip_broken: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub conf_file: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub releasever: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub installroot: Option<String>,
    #[serde(default, deserialize_with = "args::opt_int")]
    pub lock_timeout: Option<i64>,
    #[serde(default, deserialize_with = "args::bool")]
    pub update_only: bool,
    #[serde(default, deserialize_with = "args::opt_bool")]
    pub validate_certs: Option<bool>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    pub sslverify: Option<bool>,
}

/// Options every dnf command line of this task carries (pure: unit-tested).
pub fn common_opts(a: &Args) -> Vec<String> {
    let mut c = vec![];
    if let Some(f) = &a.conf_file {
        c.extend(["-c".into(), f.clone()]);
    }
    if let Some(r) = &a.installroot {
        c.push(format!("--installroot={r}"));
    }
    if let Some(r) = &a.releasever {
        c.push(format!("--releasever={r}"));
    }
    for r in &a.disablerepo {
        c.push(format!("--disablerepo={r}"));
    }
    for r in &a.enablerepo {
        c.push(format!("--enablerepo={r}"));
    }
    if a.disable_gpg_check {
        c.push("--nogpgcheck".into());
    }
    if !a.install_weak_deps {
        c.push("--setopt=install_weak_deps=False".into());
    }
    for e in &a.exclude {
        c.push(format!("--exclude={e}"));
    }
    if a.update_cache {
        c.push("--refresh".into());
    }
    c
}

/// `dnf -y OPTS VERB [verb options] SPECS...` (pure: unit-tested).
pub fn dnf_argv(a: &Args, verb: &str, specs: &[String]) -> Vec<String> {
    let mut c = argv(&["dnf", "-y"]);
    c.extend(common_opts(a));
    c.push(verb.into());
    if verb != "remove" {
        if a.allowerasing {
            c.push("--allowerasing".into());
        }
        if a.nobest {
            c.push("--nobest".into());
        }
        if a.skip_broken {
            c.push("--skip-broken".into());
        }
    }
    c.extend(specs.iter().cloned());
    c
}

/// `rpm -q` cannot answer for groups, files and URLs: dnf decides.
fn opaque_spec(s: &str) -> bool {
    s.starts_with('@') || s.contains('/') || s.ends_with(".rpm")
}

pub struct Dnf;

pub struct Plan {
    cmds: Vec<(String, Vec<String>, Vec<String>)>,
}

/// Installed: `rpm -q SPEC` (name or NEVRA), else `rpm -q --whatprovides SPEC` (a capability).
async fn installed(ctx: &Ctx, spec: &str) -> Result<bool, ModuleError> {
    if sysutil::run(ctx, &argv(&["rpm", "-q", spec])).await?.rc == 0 {
        return Ok(true);
    }
    Ok(
        sysutil::run(ctx, &argv(&["rpm", "-q", "--whatprovides", spec]))
            .await?
            .rc
            == 0,
    )
}

impl Module for Dnf {
    const NAMES: &'static [&'static str] = &[
        "dnf",
        "ansible.builtin.dnf",
        "ansible.builtin.yum",
        "yum",
        "dnf5",
        "ansible.builtin.dnf5",
    ];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let _ = (&a.lock_timeout, &a.validate_certs, &a.sslverify);
        let state = match a.state.clone().checked()? {
            State::Installed => State::Present,
            State::Removed => State::Absent,
            s => s,
        };
        if sysutil::has_program(ctx, "dnf").await?.is_none() {
            return Ok(Query::Done(Outcome::failed(
                "dnf is not on this host: the dnf module needs a Rocky/RHEL/Fedora host (use apt or package on Debian/Ubuntu)",
            )));
        }
        if a.name.is_empty() {
            if a.update_cache {
                return Ok(Query::Done(
                    Outcome::ok()
                        .with_msg("Cache updated")
                        .with("results", Value::List(vec![]))
                        .with("rc", Value::Int(0)),
                ));
            }
            return Err(ModuleError::Args(
                "name is required (or update_cache)".into(),
            ));
        }
        let (mut install, mut upgrade, mut remove, mut opaque) = (vec![], vec![], vec![], vec![]);
        for s in &a.name {
            if opaque_spec(s) {
                opaque.push(s.clone());
                continue;
            }
            let have = installed(ctx, s).await?;
            match state {
                State::Absent if have => remove.push(s.clone()),
                State::Present if !have => install.push(s.clone()),
                State::Latest if !have => install.push(s.clone()),
                State::Latest => {
                    let mut c = argv(&["dnf", "-q"]);
                    c.extend(common_opts(&a));
                    c.extend(["check-update".into(), s.clone()]);
                    if sysutil::run(ctx, &c).await?.rc == 100 {
                        upgrade.push(s.clone());
                    }
                }
                _ => {}
            }
        }
        let mut cmds = vec![];
        let verb_for = |v: &str| v.to_string();
        if !install.is_empty() || (!opaque.is_empty() && state != State::Absent) {
            let specs: Vec<String> = install.iter().chain(opaque.iter()).cloned().collect();
            cmds.push((
                verb_for("Installed"),
                dnf_argv(
                    &a,
                    if state == State::Latest && install.is_empty() {
                        "upgrade"
                    } else {
                        "install"
                    },
                    &specs,
                ),
                specs,
            ));
        }
        if !upgrade.is_empty() {
            cmds.push((
                verb_for("Installed"),
                dnf_argv(&a, "upgrade", &upgrade),
                upgrade,
            ));
        }
        if !remove.is_empty() || (!opaque.is_empty() && state == State::Absent) {
            let specs: Vec<String> = remove.iter().chain(opaque.iter()).cloned().collect();
            cmds.push((verb_for("Removed"), dnf_argv(&a, "remove", &specs), specs));
        }
        if a.autoremove && state == State::Absent {
            let c = dnf_argv(&a, "autoremove", &[]);
            cmds.push(("Removed".into(), c, vec![]));
        }
        if cmds.is_empty() {
            return Ok(Query::Done(
                Outcome::ok()
                    .with_msg("Nothing to do")
                    .with("results", Value::List(vec![]))
                    .with("rc", Value::Int(0)),
            ));
        }
        let results: Vec<Value> = cmds
            .iter()
            .flat_map(|(v, _, specs)| specs.iter().map(move |s| Value::Str(format!("{v}: {s}"))))
            .collect();
        let preview = Outcome::changed()
            .with_msg("Check mode: No changes made, but would have if not in check mode")
            .with("results", Value::List(results))
            .with("rc", Value::Int(0));
        Ok(Query::Change {
            plan: Plan { cmds },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let mut results = vec![];
        let mut changed = false;
        for (verb, cmd, specs) in p.cmds {
            let r = sysutil::run_env(ctx, &cmd, &[("LANG", "C"), ("LC_ALL", "C")]).await?;
            let out = r.stdout_text();
            if r.rc != 0 {
                return Ok(Outcome::failed(format!(
                    "Failed to run {}: {}",
                    shell_words::join(&cmd),
                    r.stderr_text().trim()
                ))
                .with("rc", Value::Int(r.rc as i64))
                .with("results", Value::List(results)));
            }
            if !out.contains("Nothing to do.") {
                changed = true;
                results.extend(specs.iter().map(|s| Value::Str(format!("{verb}: {s}"))));
            }
        }
        let mut o = Outcome::ok()
            .with("results", Value::List(results))
            .with("rc", Value::Int(0))
            .with_msg(if changed { "" } else { "Nothing to do" });
        o.changed = changed;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    //! dnf cannot run on the lab hosts (Debian userland): these check the command lines kiln
    //! would run on a Rocky host.
    use super::*;

    fn args(y: &str) -> Args {
        let v = crate::yaml::load(y, "t").unwrap();
        args::decode("dnf", v.as_map().unwrap()).unwrap()
    }

    #[test]
    fn command_lines() {
        let a = args("name: [git, '@Development Tools']\nenablerepo: crb,epel\ndisablerepo: '*'\ndisable_gpg_check: yes\nupdate_cache: yes");
        assert_eq!(
            dnf_argv(&a, "install", &a.name),
            [
                "dnf",
                "-y",
                "--disablerepo=*",
                "--enablerepo=crb",
                "--enablerepo=epel",
                "--nogpgcheck",
                "--refresh",
                "install",
                "git",
                "@Development Tools"
            ]
        );
        let a = args("name: vim\nstate: absent\ninstall_weak_deps: no\nallowerasing: yes");
        assert_eq!(
            dnf_argv(&a, "remove", &a.name),
            [
                "dnf",
                "-y",
                "--setopt=install_weak_deps=False",
                "remove",
                "vim"
            ]
        );
        assert_eq!(
            dnf_argv(&a, "install", &a.name),
            [
                "dnf",
                "-y",
                "--setopt=install_weak_deps=False",
                "install",
                "--allowerasing",
                "vim"
            ]
        );
        assert!(opaque_spec("@core") && opaque_spec("/tmp/x.rpm") && !opaque_spec("bash-5.1"));
    }
}
