//! `package`: the generic package module. It picks the host's package manager (`use`, else the
//! `pkg_mgr` fact, else whichever of `dnf` / `apt-get` the host has) and runs that module with the
//! remaining arguments, as Ansible's action plugin does.
//!
//! The query step picks the backend and runs the backend's own query (arguments passed on
//! unchanged: the backend rejects any it does not know); the plan is the backend's plan, and the
//! apply step hands it to the backend's apply. So `package` keeps the module contract: check mode
//! and `--diff` stop after the query, and nothing changes before the apply step.

use super::support::{args, sysutil};
use super::{apt, dnf, Ctx, Module, ModuleError, Outcome, Query};
use crate::value::{Map, Value};

pub struct Package;

/// The backend's plan.
pub enum Plan {
    Apt(<apt::Apt as Module>::Plan),
    Dnf(<dnf::Dnf as Module>::Plan),
}

/// The backend's query answer, its plan wrapped.
fn wrap<P>(q: Query<P>, f: impl FnOnce(P) -> Plan) -> Query<Plan> {
    match q {
        Query::Done(o) => Query::Done(o),
        Query::Change { plan, preview } => Query::Change {
            plan: f(plan),
            preview,
        },
        Query::Opaque(p) => Query::Opaque(f(p)),
    }
}

/// Which module a `pkg_mgr` fact (or `use`) means; `None` for one kiln has no module for.
pub fn backend_for(pkg_mgr: &str) -> Option<&'static str> {
    match pkg_mgr {
        "apt" | "apt-get" => Some("apt"),
        "dnf" | "dnf5" | "yum" => Some("dnf"),
        _ => None,
    }
}

impl Module for Package {
    const NAMES: &'static [&'static str] = &["package", "ansible.builtin.package"];
    type Args = serde_json::Map<String, serde_json::Value>;
    type Plan = Plan;

    async fn query(
        &self,
        mut a: serde_json::Map<String, serde_json::Value>,
        ctx: &Ctx,
    ) -> Result<Query<Plan>, ModuleError> {
        let wanted = match a.remove("use") {
            Some(serde_json::Value::String(s)) if s != "auto" => Some(s),
            _ => None,
        };
        let mgr = match wanted.or_else(|| ctx.fact("pkg_mgr").map(String::from)) {
            Some(m) => m,
            None if sysutil::has_program(ctx, "dnf").await?.is_some() => "dnf".into(),
            None if sysutil::has_program(ctx, "apt-get").await?.is_some() => "apt".into(),
            None => {
                return Ok(Query::Done(Outcome::failed(
                    "Could not detect which package manager to use: neither dnf nor apt-get is on this host. Set `use:` or gather facts (pkg_mgr).",
                )))
            }
        };
        let args: Map = match Value::from_json(serde_json::Value::Object(a)) {
            Value::Map(m) => m,
            _ => Map::new(),
        };
        match backend_for(&mgr) {
            Some("apt") => {
                let a = args::decode(apt::Apt::NAMES[0], &args)?;
                Ok(wrap(apt::Apt.query(a, ctx).await?, Plan::Apt))
            }
            Some(_) => {
                let a = args::decode(dnf::Dnf::NAMES[0], &args)?;
                Ok(wrap(dnf::Dnf.query(a, ctx).await?, Plan::Dnf))
            }
            None => Ok(Query::Done(Outcome::failed(format!(
                "package: the package manager {mgr:?} is not supported by kiln (apt and dnf are)"
            )))),
        }
    }

    async fn apply(&self, plan: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        match plan {
            Plan::Apt(p) => apt::Apt.apply(p, ctx).await,
            Plan::Dnf(p) => dnf::Dnf.apply(p, ctx).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends() {
        assert_eq!(backend_for("apt"), Some("apt"));
        assert_eq!(backend_for("yum"), Some("dnf"));
        assert_eq!(backend_for("zypper"), None);
        // the modules package delegates to are registered
        assert!(super::super::lookup("apt").is_some() && super::super::lookup("dnf").is_some());
    }
}
