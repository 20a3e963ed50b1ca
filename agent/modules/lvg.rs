//! `lvg` (community.general.lvg): a volume group on a list of physical volumes.
//!
//! Query reads the VGs and PVs from lvm2's JSON reports (see [`super::support::lvm`]) and plans what
//! community.general would run, in its order: for a new VG `pvcreate -f` on each device then
//! `vgcreate -s PESIZE`; for an existing one `vgchange --activate` (states active/inactive),
//! `vgchange -u` (reset_vg_uuid), `pvresize` of members with room to grow (`pvresize: true`),
//! `pvchange -u` (reset_pv_uuid), `pvcreate -f` + `vgextend` for new devices and
//! `vgreduce --force` for members no longer listed; `vgremove --force` for `state: absent`
//! (refused while the VG has LVs unless `force`). Devices are compared by their real path on the
//! host, as LVM names them. States active/inactive also set the VG's autoactivation flag
//! (`--setautoactivation`, lvm2 2.03.12+), as community.general does. The result, as
//! community.general's, is `changed` only.

use super::support::args;
use super::support::lvm::{self, Report, Row, Step};
use super::support::sysutil::argv;
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use serde::{Deserialize, Deserializer};

args::choices! {
    /// `state:` of `lvg`.
    pub enum State for "state" default Present {
        Absent = "absent",
        Present = "present",
        Active = "active",
        Inactive = "inactive",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    vg: String,
    #[serde(default, deserialize_with = "args::string_list")]
    pvs: Vec<String>,
    #[serde(default = "four", deserialize_with = "args::string")]
    pesize: String,
    #[serde(default, deserialize_with = "opt_words")]
    pv_options: Vec<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pvresize: bool,
    #[serde(default, deserialize_with = "opt_words")]
    vg_options: Vec<String>,
    #[serde(default)]
    state: State,
    #[serde(default, deserialize_with = "args::bool")]
    force: bool,
    #[serde(default, deserialize_with = "args::bool")]
    reset_vg_uuid: bool,
    #[serde(default, deserialize_with = "args::bool")]
    reset_pv_uuid: bool,
}

fn four() -> String {
    "4".into()
}

/// A `str` option split on whitespace, as community.general does (`.split()`).
fn opt_words<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(args::opt_string(d)?
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default())
}

/// A planned step: a command, or a `pvresize` that must be seen to grow the PV.
pub enum Action {
    Run(Step),
    PvResize { dev: String, pv_size: u64 },
}

pub struct Plan {
    actions: Vec<Action>,
}

pub struct Lvg;

const AUTOACTIVATION: &str = "--setautoactivation";

/// `pvs` numbers of one PV: (dev_size, pv_size, pe_start, vg_extent_size).
async fn pv_sizes(ctx: &Ctx, dev: &str) -> Result<(u64, u64, u64, u64), ModuleError> {
    match lvm::report(
        ctx,
        "pvs",
        "pv",
        "dev_size,pv_size,pe_start,vg_extent_size",
        &[dev],
    )
    .await?
    {
        Report::Rows(rows) if !rows.is_empty() => {
            let r = &rows[0];
            Ok((
                lvm::num(r, "dev_size")?,
                lvm::num(r, "pv_size")?,
                lvm::num(r, "pe_start")?,
                lvm::num(r, "vg_extent_size")?,
            ))
        }
        Report::Rows(_) => Err(ModuleError::Failed(format!(
            "pvs reports nothing for {dev}"
        ))),
        Report::Failed(r) => Err(ModuleError::Failed(format!(
            "pvs {dev} failed (rc {}): {}",
            r.rc,
            r.stderr_text().trim()
        ))),
    }
}

fn rows_or_fail(rep: Report, what: &str) -> Result<Vec<Row>, ModuleError> {
    match rep {
        Report::Rows(r) => Ok(r),
        Report::Failed(r) => Err(ModuleError::Failed(format!(
            "Failed executing {what} command: {}",
            r.stderr_text().trim()
        ))),
    }
}

impl Module for Lvg {
    const NAMES: &'static [&'static str] = &["lvg", "community.general.lvg"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let state = a.state.clone().checked()?;
        if a.reset_pv_uuid && a.pvs.is_empty() {
            return Err(ModuleError::Args(
                "reset_pv_uuid is True but all of the following are missing: pvs".into(),
            ));
        }
        let vg = a.vg.clone();
        let present = state != State::Absent;
        let vgs = rows_or_fail(
            lvm::report(ctx, "vgs", "vg", "vg_name,pv_count,lv_count", &[]).await?,
            "vgs",
        )?;
        let this_vg = vgs.iter().find(|r| lvm::field(r, "vg_name") == vg);
        if present && this_vg.is_none() && a.pvs.is_empty() {
            return Ok(Query::Done(Outcome::failed("No physical volumes given.")));
        }
        let devs = lvm::realpaths(ctx, &a.pvs).await?;

        let mut pvs: Vec<(String, String)> = vec![]; // (real path, vg name)
        if present {
            for d in &devs {
                if !ctx.session.stat(d, true, false).await?.exists {
                    return Ok(Query::Done(Outcome::failed(format!(
                        "Device {d} not found."
                    ))));
                }
            }
            let rows = rows_or_fail(
                lvm::report(ctx, "pvs", "pv", "pv_name,vg_name", &[]).await?,
                "pvs",
            )?;
            let names: Vec<String> = rows
                .iter()
                .map(|r| lvm::field(r, "pv_name").to_string())
                .collect();
            let real = lvm::realpaths(ctx, &names).await?;
            pvs = real
                .into_iter()
                .zip(rows.iter().map(|r| lvm::field(r, "vg_name").to_string()))
                .collect();
            if let Some((d, other)) = pvs
                .iter()
                .find(|(d, g)| devs.contains(d) && !g.is_empty() && *g != vg)
            {
                return Ok(Query::Done(Outcome::failed(format!(
                    "Device {d} is already in {other} volume group."
                ))));
            }
        }

        let mut actions = vec![];
        let pvcreate = |d: &str| {
            let mut c = argv(&["pvcreate"]);
            c.extend(a.pv_options.iter().cloned());
            c.extend(["-f".to_string(), d.to_string()]);
            Action::Run(Step::new(
                c,
                format!("Creating physical volume '{d}' failed"),
            ))
        };
        let (before, after);
        match this_vg {
            None if !present => return Ok(Query::Done(Outcome::ok())),
            None => {
                for d in &devs {
                    actions.push(pvcreate(d));
                }
                let mut c = argv(&["vgcreate"]);
                c.extend(a.vg_options.iter().cloned());
                if (state == State::Active || state == State::Inactive)
                    && !a.vg_options.iter().any(|o| o == AUTOACTIVATION)
                    && lvm::run(ctx, &argv(&["vgcreate", "--help"]))
                        .await?
                        .stdout_text()
                        .contains(AUTOACTIVATION)
                {
                    let f = if state == State::Active { "y" } else { "n" };
                    c.extend([AUTOACTIVATION.to_string(), f.to_string()]);
                }
                c.extend(["-s".to_string(), a.pesize.clone(), vg.clone()]);
                c.extend(devs.iter().cloned());
                actions.push(Action::Run(Step::new(
                    c,
                    format!("Creating volume group '{vg}' failed"),
                )));
                before = "state: absent\n".to_string();
                after = format!("state: present\npvs: {}\n", devs.join(","));
            }
            Some(row) if !present => {
                let lv_count = lvm::num(row, "lv_count")?;
                if lv_count > 0 && !a.force && !ctx.check {
                    return Ok(Query::Done(Outcome::failed(format!(
                        "Refuse to remove non-empty volume group {vg} without force=true"
                    ))));
                }
                actions.push(Action::Run(Step::new(
                    argv(&["vgremove", "--force", &vg]),
                    format!("Failed to remove volume group {vg}"),
                )));
                before = format!("state: present\nlogical volumes: {lv_count}\n");
                after = "state: absent\n".to_string();
            }
            Some(_) => {
                let current: Vec<String> = pvs
                    .iter()
                    .filter(|(_, g)| *g == vg)
                    .map(|(d, _)| d.clone())
                    .collect();
                if state == State::Active || state == State::Inactive {
                    let want = state == State::Active;
                    // One row per LV (lv_attr empty when the VG has none), with the VG's
                    // autoactivation flag; lvm2 before 2.03.12 has no such field.
                    let rep =
                        lvm::report(ctx, "vgs", "vg", "lv_attr,vg_autoactivation", &[&vg]).await?;
                    let (rows, auto) = match rep {
                        Report::Rows(rows) => {
                            let on = rows
                                .iter()
                                .any(|r| lvm::field(r, "vg_autoactivation") == "enabled");
                            (rows, Some(on))
                        }
                        Report::Failed(_) => (
                            rows_or_fail(
                                lvm::report(ctx, "vgs", "vg", "lv_attr", &[&vg]).await?,
                                "vgs",
                            )?,
                            None,
                        ),
                    };
                    let active: Vec<bool> = rows
                        .iter()
                        .map(|r| lvm::field(r, "lv_attr"))
                        .filter(|a| !a.is_empty())
                        .map(|a| a.chars().nth(4) == Some('a'))
                        .collect();
                    if auto.is_some_and(|on| on != want) {
                        let f = if want { "y" } else { "n" };
                        actions.push(Action::Run(Step::new(
                            argv(&["vgchange", "--setautoactivation", f, &vg]),
                            format!("Failed to change the autoactivation of volume group {vg}"),
                        )));
                    }
                    let flag = if want && active.iter().any(|x| !x) {
                        Some("y")
                    } else if !want && active.iter().any(|x| *x) {
                        Some("n")
                    } else {
                        None
                    };
                    if let Some(f) = flag {
                        actions.push(Action::Run(Step::new(
                            argv(&["vgchange", "--activate", f, &vg]),
                            format!("Failed to change the activation of volume group {vg}"),
                        )));
                    }
                }
                if a.reset_vg_uuid {
                    actions.push(Action::Run(Step::new(
                        argv(&["vgchange", "-u", &vg]),
                        format!("Failed to reset the UUID of volume group {vg}"),
                    )));
                }
                if !devs.is_empty() {
                    for d in &current {
                        if a.pvresize {
                            let (dev_size, pv_size, pe_start, ext) = pv_sizes(ctx, d).await?;
                            if dev_size.saturating_sub(pe_start + pv_size) > ext {
                                actions.push(Action::PvResize {
                                    dev: d.clone(),
                                    pv_size,
                                });
                            }
                        }
                        if a.reset_pv_uuid {
                            actions.push(Action::Run(Step::new(
                                argv(&["pvchange", "-u", d]),
                                format!("PV ({d}) UUID change failed"),
                            )));
                        }
                    }
                    let add: Vec<String> = devs
                        .iter()
                        .filter(|d| !current.contains(d))
                        .cloned()
                        .collect();
                    let remove: Vec<String> = current
                        .iter()
                        .filter(|d| !devs.contains(d))
                        .cloned()
                        .collect();
                    if !add.is_empty() {
                        for d in &add {
                            actions.push(pvcreate(d));
                        }
                        let mut c = argv(&["vgextend", &vg]);
                        c.extend(add.iter().cloned());
                        actions.push(Action::Run(Step::new(
                            c,
                            format!("Unable to extend {vg} by {}.", add.join(" ")),
                        )));
                    }
                    if !remove.is_empty() {
                        let mut c = argv(&["vgreduce", "--force", &vg]);
                        c.extend(remove.iter().cloned());
                        actions.push(Action::Run(Step::new(
                            c,
                            format!("Unable to reduce {vg} by {}.", remove.join(" ")),
                        )));
                    }
                }
                before = format!("pvs: {}\n", current.join(","));
                after = if devs.is_empty() {
                    before.clone()
                } else {
                    format!("pvs: {}\n", devs.join(","))
                };
            }
        }
        if actions.is_empty() {
            return Ok(Query::Done(Outcome::ok()));
        }
        let preview = Outcome::changed().with_diff(Diff {
            before_header: Some(vg.clone()),
            after_header: Some(vg.clone()),
            before,
            after,
        });
        Ok(Query::Change {
            plan: Plan { actions },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        for act in &p.actions {
            match act {
                Action::Run(s) => {
                    if let Some(o) = lvm::run_steps(ctx, std::slice::from_ref(s)).await? {
                        return Ok(o);
                    }
                }
                Action::PvResize { dev, pv_size } => {
                    let c = argv(&["pvresize", dev]);
                    let r = lvm::run(ctx, &c).await?;
                    let (_, new_size, _, _) = pv_sizes(ctx, dev).await?;
                    if new_size == *pv_size {
                        return Ok(lvm::step_failed("Failed executing pvresize command.", &r)
                            .with("out", r.stdout_text()));
                    }
                }
            }
        }
        Ok(Outcome::changed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_decode() {
        let m = crate::yaml::load(
            "vg: v\npvs: /dev/a, /dev/b\npesize: 32\nvg_options: '--addtag x'\n",
            "t",
        )
        .unwrap();
        let a: Args = args::decode("lvg", m.as_map().unwrap()).unwrap();
        assert_eq!(a.pvs, ["/dev/a", "/dev/b"]);
        assert_eq!(a.pesize, "32");
        assert_eq!(a.vg_options, ["--addtag", "x"]);
        assert_eq!(a.state, State::Present);
        let m = crate::yaml::load("vg: v\nbogus: 1\n", "t").unwrap();
        assert!(args::decode::<Args>("lvg", m.as_map().unwrap()).is_err());
    }
}
