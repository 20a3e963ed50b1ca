//! `package`: the generic package module. It picks the host's package manager (`use`, else the
//! `pkg_mgr` fact, else whichever of `dnf` / `apt-get` the host has) and runs that module with the
//! remaining arguments, as Ansible's action plugin does.
//!
//! The backend module does its own query and apply (and honours check mode), so `package`'s query
//! step returns the backend's finished outcome; its arguments are passed on unchanged and the
//! backend rejects any it does not know.

use super::support::sysutil;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::{Map, Value};

pub struct Package;

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
    type Plan = ();

    async fn query(
        &self,
        mut a: serde_json::Map<String, serde_json::Value>,
        ctx: &Ctx,
    ) -> Result<Query<()>, ModuleError> {
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
        let Some(name) = backend_for(&mgr) else {
            return Ok(Query::Done(Outcome::failed(format!(
                "package: the package manager {mgr:?} is not supported by kiln (apt and dnf are)"
            ))));
        };
        let m = super::lookup(name)
            .ok_or_else(|| ModuleError::Failed(format!("module {name} is not registered")))?;
        let args: Map = match Value::from_json(serde_json::Value::Object(a)) {
            Value::Map(m) => m,
            _ => Map::new(),
        };
        match m.run(&args, ctx).await? {
            Some(o) => Ok(Query::Done(o)),
            None => Ok(Query::Done(Outcome::ok())),
        }
    }

    async fn apply(&self, _: (), _: &Ctx) -> Result<Outcome, ModuleError> {
        Ok(Outcome::ok())
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
