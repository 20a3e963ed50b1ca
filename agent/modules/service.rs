//! `service`: the generic service module. On a host booted with systemd it is the `systemd`
//! module (same query and actions); elsewhere it drives SysV init scripts as Ansible's
//! service module does there: the status is `service NAME status` (or `/etc/init.d/NAME status`,
//! or a `pattern` looked up with `pgrep -f`), actions are `service NAME start|stop|...`, and
//! `enabled` is the `S??NAME` links in `/etc/rc?.d`, changed with `update-rc.d` (Debian) or
//! `chkconfig` (Red Hat). Result keys: `name`, `state`, `enabled`, and `status` on systemd.

use super::support::args;
use super::support::sysutil::{self, argv};
use super::systemd;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use serde::Deserialize;

args::choices! {
    /// `state:` of `service`, in the order of Ansible's choices error.
    pub enum State for "state" {
        Started = "started",
        Stopped = "stopped",
        Restarted = "restarted",
        Reloaded = "reloaded",
    }
}

impl State {
    /// The same state for `systemd`'s query.
    fn to_systemd(&self) -> systemd::State {
        match self {
            State::Started => systemd::State::Started,
            State::Stopped => systemd::State::Stopped,
            State::Restarted => systemd::State::Restarted,
            State::Reloaded => systemd::State::Reloaded,
            State::Other(o) => systemd::State::Other(o.clone()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    name: String,
    #[serde(default)]
    state: Option<State>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pattern: Option<String>,
    #[serde(default, alias = "args", deserialize_with = "args::opt_string")]
    arguments: Option<String>,
    #[serde(default, deserialize_with = "args::opt_int")]
    sleep: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_string")]
    runlevel: Option<String>,
    #[serde(default, rename = "use", deserialize_with = "args::opt_string")]
    use_: Option<String>,
}

pub struct Service;

/// The init-script action for `state` given whether the service runs (pure: unit-tested).
pub fn sysv_action(state: &State, running: bool) -> Option<&'static str> {
    match (state, running) {
        (State::Started, false) => Some("start"),
        (State::Stopped, true) => Some("stop"),
        (State::Restarted, _) => Some("restart"),
        (State::Reloaded, true) => Some("reload"),
        (State::Reloaded, false) => Some("start"),
        _ => None,
    }
}

/// `service NAME ACTION [ARGS...]`, or the init script itself when there is no `service`.
pub fn sysv_argv(
    service_cmd: Option<&str>,
    name: &str,
    action: &str,
    extra: &[String],
) -> Vec<String> {
    let mut c = match service_cmd {
        Some(s) => vec![s.to_string(), name.to_string(), action.to_string()],
        None => vec![format!("/etc/init.d/{name}"), action.to_string()],
    };
    c.extend(extra.iter().cloned());
    c
}

/// The init script's start (`S??NAME`) and kill (`K??NAME`) links in `/etc/rc?.d`: (has S, has K).
async fn sysv_links(ctx: &Ctx, name: &str) -> Result<(bool, bool), ModuleError> {
    let mut c = argv(&[
        "find",
        "/etc",
        "-maxdepth",
        "2",
        "-path",
        "/etc/rc?.d/*",
        "-name",
    ]);
    c.push(format!("[SK][0-9][0-9]{name}"));
    let r = sysutil::run(ctx, &c).await?;
    let out = r.stdout_text();
    let base = |l: &str| l.rsplit('/').next().unwrap_or("").to_string();
    Ok((
        out.lines().any(|l| base(l).starts_with('S')),
        out.lines().any(|l| base(l).starts_with('K')),
    ))
}

impl Module for Service {
    const NAMES: &'static [&'static str] = &[
        "service",
        "ansible.builtin.service",
        "ansible.legacy.service",
    ];
    type Args = Args;
    type Plan = systemd::Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<systemd::Plan>, ModuleError> {
        let _ = (&a.sleep, &a.runlevel);
        if let Some(s) = &a.state {
            s.clone().checked()?;
        }
        if a.state.is_none() && a.enabled.is_none() {
            return Ok(Query::Done(Outcome::failed(
                "Neither argument state nor enabled was specified",
            )));
        }
        let want_systemd = match a.use_.as_deref() {
            Some("systemd") => true,
            Some("sysvinit") | Some("service") => false,
            _ => systemd::not_booted(ctx).await?.is_none(),
        };
        if want_systemd {
            let sa = systemd::Args {
                name: Some(a.name.clone()),
                state: a.state.as_ref().map(State::to_systemd),
                enabled: a.enabled,
                masked: None,
                daemon_reload: false,
                daemon_reexec: false,
                scope: "system".into(),
                no_block: false,
                force: None,
            };
            return systemd::query_systemd(&sa, ctx).await;
        }
        let script = format!("/etc/init.d/{}", a.name);
        if !ctx.session.stat(&script, true, false).await?.exists {
            return Ok(Query::Done(Outcome::failed(format!(
                "Could not find the requested service {}: host (no systemd on this host, and no {script})",
                a.name
            ))));
        }
        let service_cmd = sysutil::has_program(ctx, "service").await?;
        let running = match &a.pattern {
            Some(p) => sysutil::run(ctx, &argv(&["pgrep", "-f", p])).await?.rc == 0,
            None => {
                let c = sysv_argv(service_cmd.as_deref(), &a.name, "status", &[]);
                sysutil::run(ctx, &c).await?.rc == 0
            }
        };
        let extra: Vec<String> = match &a.arguments {
            Some(s) => {
                shell_words::split(s).map_err(|e| ModuleError::Args(format!("arguments: {e}")))?
            }
            None => vec![],
        };
        let mut cmds = vec![];
        let mut report = Outcome::ok().with("name", a.name.clone());
        if let Some(e) = a.enabled {
            let (now, klinks) = sysv_links(ctx, &a.name).await?;
            if now != e {
                if sysutil::has_program(ctx, "update-rc.d").await?.is_some() {
                    // as Ansible: a script without links gets its defaults first
                    if e && !klinks {
                        cmds.push(vec![
                            "update-rc.d".into(),
                            a.name.clone(),
                            "defaults".into(),
                        ]);
                    }
                    cmds.push(vec![
                        "update-rc.d".into(),
                        a.name.clone(),
                        if e { "enable" } else { "disable" }.into(),
                    ]);
                } else if sysutil::has_program(ctx, "chkconfig").await?.is_some() {
                    cmds.push(vec![
                        "chkconfig".into(),
                        a.name.clone(),
                        if e { "on" } else { "off" }.into(),
                    ]);
                } else {
                    return Ok(Query::Done(Outcome::failed(
                        "cannot enable or disable init scripts here: neither update-rc.d nor chkconfig is installed",
                    )));
                }
            }
            report = report.with("enabled", e);
        }
        if let Some(s) = &a.state {
            if let Some(act) = sysv_action(s, running) {
                cmds.push(sysv_argv(service_cmd.as_deref(), &a.name, act, &extra));
            }
            report = report.with("state", s.as_str());
        }
        if cmds.is_empty() {
            return Ok(Query::Done(report));
        }
        report.changed = true;
        Ok(Query::Change {
            plan: systemd::Plan {
                cmds,
                report: report.clone(),
            },
            preview: report,
        })
    }

    async fn apply(&self, p: systemd::Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        systemd::apply_cmds(p, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysv_lines() {
        assert_eq!(sysv_action(&State::Started, true), None);
        assert_eq!(sysv_action(&State::Started, false), Some("start"));
        assert_eq!(sysv_action(&State::Stopped, false), None);
        assert_eq!(sysv_action(&State::Restarted, false), Some("restart"));
        assert_eq!(
            sysv_argv(Some("/usr/sbin/service"), "nginx", "start", &["-q".into()]),
            ["/usr/sbin/service", "nginx", "start", "-q"]
        );
        assert_eq!(
            sysv_argv(None, "nginx", "stop", &[]),
            ["/etc/init.d/nginx", "stop"]
        );
    }
}
