//! `group`: a local group exists (with a gid) or does not.
//!
//! Query reads the group database with `getent group NAME`; apply runs `groupadd`, `groupmod -g`
//! or `groupdel` with an argv. The result has Ansible's keys: `name`, `state`, and for a group that
//! exists afterwards `gid` and `system`.

use super::support::args;
use super::support::sysutil::{self, argv};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    name: String,
    #[serde(default)]
    state: args::PresentAbsent,
    #[serde(default, deserialize_with = "args::opt_int")]
    gid: Option<i64>,
    #[serde(default, deserialize_with = "args::bool")]
    system: bool,
    #[serde(default, deserialize_with = "args::bool")]
    force: bool,
    #[serde(default, deserialize_with = "args::bool")]
    local: bool,
    #[serde(default, deserialize_with = "args::bool")]
    non_unique: bool,
}

pub struct Group;

pub enum Plan {
    Add(Vec<String>, Args),
    Mod(Vec<String>, Args),
    Del(Vec<String>, Args),
}

/// The `groupadd` command line for new group (pure: unit-tested).
pub fn groupadd_argv(name: &str, gid: Option<i64>, system: bool, non_unique: bool) -> Vec<String> {
    let mut v = argv(&["groupadd"]);
    if let Some(g) = gid {
        v.extend(["-g".into(), g.to_string()]);
        if non_unique {
            v.push("-o".into());
        }
    }
    if system {
        v.push("-r".into());
    }
    v.push(name.into());
    v
}

async fn result(ctx: &Ctx, a: &Args, changed: bool) -> Result<Outcome, ModuleError> {
    let mut o = if changed {
        Outcome::changed()
    } else {
        Outcome::ok()
    }
    .with("name", a.name.clone())
    .with("state", a.state.as_str());
    if let Some(g) = sysutil::group(ctx, &a.name).await? {
        o = o.with("system", a.system).with("gid", Value::Int(g.gid));
    }
    Ok(o)
}

impl Module for Group {
    const NAMES: &'static [&'static str] = &["group", "ansible.builtin.group"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        if a.force && a.local {
            return Err(ModuleError::Args(
                "force is not a valid option for local, force=True and local=True are mutually exclusive".into(),
            ));
        }
        if a.non_unique && a.gid.is_none() {
            return Err(ModuleError::Args(
                "non_unique is True but all of the following are missing: gid".into(),
            ));
        }
        let have = sysutil::group(ctx, &a.name).await?;
        let plan = match (&a.state, have) {
            (args::PresentAbsent::Absent, None) => {
                return Ok(Query::Done(result(ctx, &a, false).await?))
            }
            (args::PresentAbsent::Absent, Some(_)) => {
                let mut v = argv(&["groupdel"]);
                if a.force {
                    v.push("-f".into());
                }
                v.push(a.name.clone());
                Plan::Del(v, a)
            }
            (args::PresentAbsent::Present, None) => {
                Plan::Add(groupadd_argv(&a.name, a.gid, a.system, a.non_unique), a)
            }
            (args::PresentAbsent::Present, Some(g)) => match a.gid {
                Some(gid) if gid != g.gid => {
                    let mut v = argv(&["groupmod", "-g"]);
                    v.push(gid.to_string());
                    if a.non_unique {
                        v.push("-o".into());
                    }
                    v.push(a.name.clone());
                    Plan::Mod(v, a)
                }
                _ => return Ok(Query::Done(result(ctx, &a, false).await?)),
            },
            (args::PresentAbsent::Other(s), _) => return Err(args::PresentAbsent::error(s)),
        };
        // Ansible's check mode reports only `changed` for add/remove
        let preview = match &plan {
            Plan::Mod(_, a) => result(ctx, a, true).await?,
            _ => Outcome::changed(),
        };
        Ok(Query::Change { plan, preview })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let (cmd, a) = match p {
            Plan::Add(c, a) | Plan::Mod(c, a) | Plan::Del(c, a) => (c, a),
        };
        let r = sysutil::run(ctx, &cmd).await?;
        if r.rc != 0 {
            return Ok(Outcome::failed(r.stderr_text().trim().to_string()).with("name", a.name));
        }
        result(ctx, &a, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groupadd_lines() {
        assert_eq!(groupadd_argv("g", None, false, false), ["groupadd", "g"]);
        assert_eq!(
            groupadd_argv("g", Some(1234), true, true),
            ["groupadd", "-g", "1234", "-o", "-r", "g"]
        );
    }
}
