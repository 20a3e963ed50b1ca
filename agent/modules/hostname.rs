//! `hostname`: the host's running (kernel) and permanent hostname.
//!
//! On a host booted with systemd (Ansible's strategy for Debian, Ubuntu and Rocky alike) it
//! reads and sets both with `hostnamectl`. Without systemd (containers, the kiln lab) it uses the
//! file strategy: the running name from `/proc/sys/kernel/hostname`, the permanent one from
//! `/etc/hostname`, set with `hostname NAME` and a rewrite of that file. (Ansible's file
//! strategy on such Debian hosts only rewrites the file and leaves the running name; kiln sets
//! both, so the change is visible at once.) Result keys are Ansible's: `name`,
//! `ansible_facts` (`ansible_hostname`, `ansible_nodename`, `ansible_fqdn`, `ansible_domain`) and
//! a `hostname = NAME` diff.

use super::support::args;
use super::systemd;
use super::support::sysutil::{self, argv};
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::transport::WriteRequest;
use crate::value::{Map, Value};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    name: String,
    #[serde(default, rename = "use", deserialize_with = "args::opt_string")]
    use_: Option<String>,
}

pub struct Hostname;

pub struct Plan {
    name: String,
    systemd: bool,
    set_current: bool,
    set_permanent: bool,
    diff: Diff,
}

async fn facts(ctx: &Ctx, name: &str) -> Result<Value, ModuleError> {
    let r = sysutil::run(ctx, &argv(&["hostname", "-f"])).await?;
    let fqdn = if r.rc == 0 && !r.stdout_text().trim().is_empty() {
        r.stdout_text().trim().to_string()
    } else {
        name.to_string()
    };
    let mut m = Map::new();
    m.insert(
        "ansible_hostname".into(),
        Value::Str(name.split('.').next().unwrap_or("").into()),
    );
    m.insert("ansible_nodename".into(), Value::Str(name.into()));
    m.insert(
        "ansible_domain".into(),
        Value::Str(fqdn.split_once('.').map(|x| x.1).unwrap_or("").into()),
    );
    m.insert("ansible_fqdn".into(), Value::Str(fqdn));
    Ok(Value::Map(m))
}

impl Module for Hostname {
    const NAMES: &'static [&'static str] = &["hostname", "ansible.builtin.hostname"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let systemd = match a.use_.as_deref() {
            None | Some("systemd") | Some("debian") | Some("redhat") => {
                systemd::not_booted(ctx).await?.is_none()
            }
            Some("generic") | Some("alpine") | Some("openrc") => false,
            Some(other) => {
                return Err(ModuleError::Args(format!(
                    "hostname: use={other} is not supported by kiln (systemd, debian, redhat, generic, alpine, openrc are)"
                )))
            }
        };
        if systemd && a.name.len() > 64 {
            return Ok(Query::Done(Outcome::failed(
                "name cannot be longer than 64 characters on systemd servers, try a shorter name",
            )));
        }
        let (current, permanent) = if systemd {
            let c = sysutil::run_ok(ctx, &argv(&["hostnamectl", "--transient", "status"])).await?;
            let p = sysutil::run_ok(ctx, &argv(&["hostnamectl", "--static", "status"])).await?;
            (
                c.stdout_text().trim().to_string(),
                p.stdout_text().trim().to_string(),
            )
        } else {
            let c = sysutil::read_opt(ctx, "/proc/sys/kernel/hostname")
                .await?
                .unwrap_or_default();
            let p = sysutil::read_opt(ctx, "/etc/hostname")
                .await?
                .unwrap_or_default();
            (c.trim().to_string(), p.trim().to_string())
        };
        let set_current = current != a.name;
        let set_permanent = permanent != a.name;
        let o = Outcome::ok()
            .with("name", a.name.clone())
            .with("ansible_facts", facts(ctx, &a.name).await?);
        if !set_current && !set_permanent {
            return Ok(Query::Done(o));
        }
        let before = if set_current { current } else { permanent };
        let diff = Diff {
            before: format!("hostname = {before}\n"),
            after: format!("hostname = {}\n", a.name),
            ..Default::default()
        };
        let mut preview = o.with_diff(diff.clone());
        preview.changed = true;
        Ok(Query::Change {
            plan: Plan {
                name: a.name,
                systemd,
                set_current,
                set_permanent,
                diff,
            },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        if p.set_current {
            let cmd = if p.systemd {
                argv(&["hostnamectl", "--transient", "set-hostname", &p.name])
            } else {
                argv(&["hostname", &p.name])
            };
            sysutil::run_ok(ctx, &cmd).await?;
        }
        if p.set_permanent {
            if p.systemd {
                sysutil::run_ok(
                    ctx,
                    &argv(&["hostnamectl", "--static", "set-hostname", &p.name]),
                )
                .await?;
            } else {
                ctx.session
                    .write_file(WriteRequest {
                        path: "/etc/hostname".into(),
                        content: format!("{}\n", p.name).into_bytes(),
                        ..Default::default()
                    })
                    .await?;
            }
        }
        let mut o = Outcome::changed()
            .with("name", p.name.clone())
            .with("ansible_facts", facts(ctx, &p.name).await?);
        o.diff.push(p.diff);
        Ok(o)
    }
}
