//! `systemd` / `systemd_service`: a unit started, stopped, restarted or reloaded; enabled or
//! disabled; masked or not; with an optional `daemon-reload` first.
//!
//! Query reads `systemctl show UNIT` (Ansible's `status` dict) and `systemctl is-enabled UNIT`;
//! apply runs exactly the `systemctl` actions Ansible's module would (`start` only when not
//! active, `restarted` always restarts, ...). A host not booted with systemd (no
//! `/run/systemd/system`, as in containers and the kiln lab) fails with a message saying so,
//! rather than systemctl's bus errors. `service` uses this module's logic on systemd hosts.

use super::support::args;
use super::support::sysutil::{self, argv};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::{Map, Value};
use serde::Deserialize;

args::choices! {
    /// `state:` of `systemd` (and of `service`, which runs systemd's query on a systemd host).
    pub enum State for "state" {
        Reloaded = "reloaded",
        Restarted = "restarted",
        Started = "started",
        Stopped = "stopped",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(
        default,
        alias = "service",
        alias = "unit",
        deserialize_with = "args::opt_string"
    )]
    pub name: Option<String>,
    #[serde(default)]
    pub state: Option<State>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    pub masked: Option<bool>,
    #[serde(default, alias = "daemon-reload", deserialize_with = "args::bool")]
    pub daemon_reload: bool,
    #[serde(default, alias = "daemon-reexec", deserialize_with = "args::bool")]
    pub daemon_reexec: bool,
    #[serde(default = "system", deserialize_with = "args::string")]
    pub scope: String,
    #[serde(default, deserialize_with = "args::bool")]
    pub no_block: bool,
    #[serde(default, deserialize_with = "args::opt_bool")]
    pub force: Option<bool>,
}

fn system() -> String {
    "system".into()
}

/// `systemctl [--user|--global] [--no-block] [--force]` (pure: unit-tested).
pub fn systemctl_base(a: &Args) -> Vec<String> {
    let mut c = argv(&["systemctl"]);
    if a.scope != "system" {
        c.push(format!("--{}", a.scope));
    }
    if a.no_block {
        c.push("--no-block".into());
    }
    if a.force == Some(true) {
        c.push("--force".into());
    }
    c
}

pub fn systemctl_argv(a: &Args, action: &str, unit: Option<&str>) -> Vec<String> {
    let mut c = systemctl_base(a);
    c.push(action.into());
    c.extend(unit.map(String::from));
    c
}

/// `systemctl show` output → properties (multi-line values such as `ExecStart={ ... }` are
/// kept as their first line, enough for the state checks).
pub fn parse_show(out: &str) -> Map {
    let mut m = Map::new();
    for l in out.lines() {
        if let Some((k, v)) = l.split_once('=') {
            if !k.is_empty() && !k.contains(' ') {
                m.insert(k.to_string(), Value::Str(v.to_string()));
            }
        }
    }
    m
}

/// Why systemd cannot be used here, or `None` when the host runs it.
pub async fn not_booted(ctx: &Ctx) -> Result<Option<String>, ModuleError> {
    if ctx
        .session
        .stat("/run/systemd/system", true, false)
        .await?
        .exists
    {
        return Ok(None);
    }
    let init = sysutil::read_opt(ctx, "/proc/1/comm")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    Ok(Some(format!(
        "systemd is not running on this host (no /run/systemd/system; PID 1 is {:?}): \
         the systemd module needs a host booted with systemd. Use `service` (init scripts) \
         or run this against a real machine or VM.",
        init.trim()
    )))
}

/// What `state` asks for, given whether the unit is active: the systemctl action (if any) and
/// the state to report (pure: unit-tested).
pub fn state_action(state: &State, active_state: &str) -> (Option<&'static str>, &'static str) {
    let running = matches!(active_state, "active" | "activating");
    match state {
        State::Started => ((!running).then_some("start"), "started"),
        State::Stopped => (
            (running || active_state == "deactivating").then_some("stop"),
            "stopped",
        ),
        State::Restarted => (Some(if running { "restart" } else { "start" }), "started"),
        State::Reloaded | State::Other(_) => {
            (Some(if running { "reload" } else { "start" }), "started")
        }
    }
}

pub struct Systemd;

pub struct Plan {
    pub cmds: Vec<Vec<String>>,
    pub report: Outcome,
}

/// The systemd query, shared with `service`.
pub async fn query_systemd(a: &Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
    if let Some(s) = &a.state {
        s.clone().checked()?;
    }
    if let Some(why) = not_booted(ctx).await? {
        return Ok(Query::Done(Outcome::failed(why)));
    }
    let mut cmds = vec![];
    let mut changed = false;
    if a.daemon_reload {
        // Ansible runs it (not in check mode) without counting it as a change
        cmds.push(systemctl_argv(a, "daemon-reload", None));
    }
    if a.daemon_reexec {
        cmds.push(systemctl_argv(a, "daemon-reexec", None));
    }
    let Some(unit) = a.name.clone() else {
        if a.state.is_some() || a.enabled.is_some() || a.masked.is_some() {
            return Err(ModuleError::Args(
                "state, enabled and masked need name".into(),
            ));
        }
        let report = Outcome::ok();
        return Ok(if cmds.is_empty() {
            Query::Done(report)
        } else {
            Query::Opaque(Plan {
                cmds,
                report: Outcome::ok(),
            })
        });
    };
    let show = sysutil::run(ctx, &systemctl_argv(a, "show", Some(&unit))).await?;
    let status = parse_show(&show.stdout_text());
    let load = status
        .get("LoadState")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let found = !load.is_empty() && load != "not-found";
    let mut report = Outcome::ok().with("name", unit.clone());
    let is_enabled = sysutil::run(ctx, &systemctl_argv(a, "is-enabled", Some(&unit))).await?;
    let enabled_text = is_enabled.stdout_text().trim().to_string();
    if let Some(m) = a.masked {
        if (enabled_text == "masked") != m {
            changed = true;
            cmds.push(systemctl_argv(
                a,
                if m { "mask" } else { "unmask" },
                Some(&unit),
            ));
        }
    }
    if let Some(e) = a.enabled {
        if !found {
            return Ok(Query::Done(Outcome::failed(format!(
                "Could not find the requested service {unit}: host"
            ))));
        }
        let now = is_enabled.rc == 0 && enabled_text != "indirect" && enabled_text != "alias";
        if now != e {
            changed = true;
            cmds.push(systemctl_argv(
                a,
                if e { "enable" } else { "disable" },
                Some(&unit),
            ));
        }
        report = report.with("enabled", e);
    }
    if let Some(s) = &a.state {
        if !found {
            return Ok(Query::Done(Outcome::failed(format!(
                "Could not find the requested service {unit}: host"
            ))));
        }
        let active = status
            .get("ActiveState")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let (action, shown) = state_action(s, active);
        if let Some(act) = action {
            changed = true;
            cmds.push(systemctl_argv(a, act, Some(&unit)));
        }
        report = report.with("state", shown);
    }
    report = report.with("status", Value::Map(status));
    if !changed {
        if cmds.is_empty() {
            return Ok(Query::Done(report));
        }
        // only daemon-reload/reexec: run them, report no change
        return Ok(Query::Opaque(Plan { cmds, report }));
    }
    report.changed = true;
    Ok(Query::Change {
        plan: Plan {
            cmds,
            report: report.clone(),
        },
        preview: report,
    })
}

/// Run the planned commands; the first failure fails the task with systemctl's words.
pub async fn apply_cmds(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    for c in &p.cmds {
        let r = sysutil::run(ctx, c).await?;
        if r.rc != 0 {
            let action = c.iter().rev().nth(1).cloned().unwrap_or_default();
            return Ok(Outcome::failed(format!(
                "Unable to {} service {}: {}{}",
                action,
                c.last().cloned().unwrap_or_default(),
                r.stdout_text(),
                r.stderr_text().trim()
            )));
        }
    }
    Ok(p.report)
}

impl Module for Systemd {
    const NAMES: &'static [&'static str] = &[
        "systemd",
        "systemd_service",
        "ansible.builtin.systemd",
        "ansible.builtin.systemd_service",
    ];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        query_systemd(&a, ctx).await
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply_cmds(p, ctx).await
    }
}

#[cfg(test)]
mod tests {
    //! The lab hosts have no systemd: these check the systemctl command lines and state logic;
    //! tests/modules_system.rs checks the "no systemd" failure on a lab host.
    use super::*;

    fn args(y: &str) -> Args {
        let v = crate::yaml::load(y, "t").unwrap();
        args::decode("systemd", v.as_map().unwrap()).unwrap()
    }

    #[test]
    fn command_lines_and_states() {
        let a = args("name: nginx\nscope: user\nno_block: yes");
        assert_eq!(
            systemctl_argv(&a, "start", Some("nginx")),
            ["systemctl", "--user", "--no-block", "start", "nginx"]
        );
        let a = args("unit: nginx\ndaemon-reload: yes");
        assert_eq!(
            systemctl_argv(&a, "daemon-reload", None),
            ["systemctl", "daemon-reload"]
        );
        assert_eq!(state_action(&State::Started, "active"), (None, "started"));
        assert_eq!(
            state_action(&State::Started, "inactive"),
            (Some("start"), "started")
        );
        assert_eq!(
            state_action(&State::Stopped, "deactivating"),
            (Some("stop"), "stopped")
        );
        assert_eq!(
            state_action(&State::Restarted, "active"),
            (Some("restart"), "started")
        );
        assert_eq!(
            state_action(&State::Reloaded, "failed"),
            (Some("start"), "started")
        );
        let m =
            parse_show("Id=nginx.service\nActiveState=active\nExecStart={ path=/x ; argv[]=/x }\n");
        assert_eq!(
            m.get("ActiveState").and_then(|v| v.as_str()),
            Some("active")
        );
    }
}
