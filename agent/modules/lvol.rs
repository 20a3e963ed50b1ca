//! `lvol` (community.general.lvol): a logical volume's existence, size and activation.
//!
//! Query reads the VG and its LVs from lvm2's JSON reports (bytes and extent counts, see
//! [`super::support::lvm`]) and decides, with community.general's rules, which one command is needed:
//!
//! * missing LV: `lvcreate --yes -n LV -L SIZE|-l PCT%WHOLE [opts] VG [pvs]`;
//! * `state: absent`: `lvremove --force VG/LV`, only with `force`;
//! * a larger size: `lvextend [--resizefs] -L|-l SIZE VG/LV [pvs]`; `+SIZE` always extends (as
//!   community.general does, so it is not idempotent);
//! * a smaller size: with `shrink` (the default, as in community.general) the task fails unless
//!   `force` is set, then `lvreduce --force`; with `shrink: false` nothing happens (ok);
//! * then `lvchange -ay|-an` when the LV's activation differs from `active`.
//!
//! Sizes are compared in extents, not in rounded display units: an absolute size is rounded up to
//! whole extents as lvm2 does, a percentage of VG/PVS/FREE is rounded down. (community.general
//! compares the number with `lvs` output rounded to two decimals in the size's unit, so a size
//! that is not a whole number of extents, e.g. `10m` with 4 MiB extents, reads as "smaller" on the
//! second run and fails without `force` unless `shrink: false`; kiln reports ok there.) A
//! percentage of PVS is taken of the whole VG, as community.general does. Free space is checked
//! before anything runs, so check mode fails as the real run would, with the numbers. Snapshots
//! and thin pools are not supported (the task fails saying so).

use super::support::args;
use super::support::lvm::{self, Report, Row, Step};
use super::support::sysutil::argv;
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    vg: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    lv: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    size: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    opts: Option<String>,
    #[serde(default)]
    state: args::PresentAbsent,
    #[serde(default, deserialize_with = "args::bool")]
    force: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    shrink: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    active: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    snapshot: Option<String>,
    #[serde(default, deserialize_with = "args::string_list")]
    pvs: Vec<String>,
    #[serde(default, deserialize_with = "args::bool")]
    resizefs: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    thinpool: Option<String>,
}

/// What a percentage is of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Whole {
    Vg,
    Pvs,
    Free,
    Origin,
}

/// A parsed `size` argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Size {
    /// `[+-]NUM[unit]`: `num` in `unit` (default `m`); `text` is what goes after `-L`.
    Abs {
        op: Option<char>,
        num: f64,
        unit: char,
        text: String,
    },
    /// `[+-]PCT%WHOLE`; `text` is what goes after `-l`.
    Pct {
        op: Option<char>,
        pct: u64,
        whole: Whole,
        text: String,
    },
}

impl Size {
    fn op(&self) -> Option<char> {
        match self {
            Size::Abs { op, .. } | Size::Pct { op, .. } => *op,
        }
    }
    /// `-L TEXT` or `-l TEXT`, with the operator when given.
    fn flag(&self) -> [String; 2] {
        let op = self.op().map(String::from).unwrap_or_default();
        match self {
            Size::Abs { text, .. } => ["-L".into(), format!("{op}{text}")],
            Size::Pct { text, .. } => ["-l".into(), format!("{op}{text}")],
        }
    }
    /// The unit community.general reports sizes in: the size's unit, `m` for percentages.
    fn unit(&self) -> char {
        match self {
            Size::Abs { unit, .. } => *unit,
            Size::Pct { .. } => 'm',
        }
    }
}

/// community.general's size parsing, with its messages.
pub fn parse_size(spec: &str) -> Result<Size, String> {
    let (op, rest) = match spec.chars().next() {
        Some(c @ ('+' | '-')) => (Some(c), &spec[1..]),
        _ => (None, spec),
    };
    if let Some((p, whole)) = rest.split_once('%') {
        let pct: u64 = p
            .trim()
            .parse()
            .map_err(|_| format!("Bad size specification of '{spec}'"))?;
        if pct > 100 {
            return Err("Size percentage cannot be larger than 100%".into());
        }
        let whole = match whole {
            "VG" => Whole::Vg,
            "PVS" => Whole::Pvs,
            "FREE" => Whole::Free,
            "ORIGIN" => Whole::Origin,
            _ => return Err("Specify extents as a percentage of VG|PVS|FREE|ORIGIN".into()),
        };
        return Ok(Size::Pct {
            op,
            pct,
            whole,
            text: rest.to_string(),
        });
    }
    let (num_text, unit) = match rest.chars().last() {
        Some(c) if "bskmgtpe".contains(c.to_ascii_lowercase()) => (&rest[..rest.len() - 1], c),
        _ => (rest, 'm'),
    };
    let bad = || format!("Bad size specification of '{num_text}'");
    if !num_text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let num: f64 = num_text.parse().map_err(|_| bad())?;
    Ok(Size::Abs {
        op,
        num,
        unit,
        text: format!("{num_text}{unit}"),
    })
}

/// The VG's numbers from `vgs`.
#[derive(Debug, Clone, Copy)]
pub struct VgInfo {
    pub size: u64,
    pub free: u64,
    pub extent: u64,
    pub extents: u64,
    pub free_extents: u64,
}

impl VgInfo {
    fn from_row(r: &Row) -> Result<VgInfo, ModuleError> {
        let extent = lvm::num(r, "vg_extent_size")?.max(1);
        Ok(VgInfo {
            size: lvm::num(r, "vg_size")?,
            free: lvm::num(r, "vg_free")?,
            extent,
            extents: lvm::num(r, "vg_extent_count")?,
            free_extents: lvm::num(r, "vg_free_count")?,
        })
    }
}

/// One LV from `lvs`.
#[derive(Debug, Clone)]
pub struct LvInfo {
    pub name: String,
    pub size: u64,
    pub active: bool,
}

/// What the size asks of an existing LV of `cur` extents.
#[derive(Debug, PartialEq)]
pub enum Resize {
    None,
    Extend,
    Reduce,
}

/// The target size in extents (absolute; `+`/`-` applied), as lvm2 would compute it.
pub fn target_extents(size: &Size, cur: u64, vg: &VgInfo) -> u64 {
    match size {
        Size::Abs { op, num, unit, .. } => {
            let bytes = num * lvm::unit_bytes(*unit).unwrap_or(1 << 20) as f64;
            let ext = (bytes / vg.extent as f64).ceil() as u64;
            match op {
                Some('+') => cur + ext,
                Some('-') => cur.saturating_sub(ext),
                _ => ext,
            }
        }
        Size::Pct { op, pct, whole, .. } => {
            let base = match whole {
                Whole::Free => vg.free_extents,
                _ => vg.extents,
            };
            let ext = pct * base / 100;
            match op {
                Some('+') => cur + ext,
                Some('-') => cur.saturating_sub(ext),
                _ => ext,
            }
        }
    }
}

/// `lvextend|lvreduce --force [--resizefs] -L|-l SIZE VG/LV [PVS...]`.
pub fn resize_argv(
    tool: &str,
    resizefs: bool,
    size: &Size,
    vg: &str,
    lv: &str,
    pvs: &[String],
) -> Vec<String> {
    let mut cmd = argv(&[tool]);
    if tool == "lvreduce" {
        cmd.push("--force".into());
    }
    if resizefs {
        cmd.push("--resizefs".into());
    }
    cmd.extend(size.flag());
    cmd.push(format!("{vg}/{lv}"));
    cmd.extend(pvs.iter().cloned());
    cmd
}

pub struct Lvol;

pub struct Plan {
    steps: Vec<Step>,
    /// A resize that lvm2 may find unnecessary ("matches existing size"): then ok, not changed.
    resize: bool,
    report: Outcome,
}

fn mib(extents: u64, vg: &VgInfo) -> f64 {
    (extents * vg.extent) as f64 / (1 << 20) as f64
}

impl Module for Lvol {
    const NAMES: &'static [&'static str] = &["lvol", "community.general.lvol"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let present = a.state.present()?;
        if a.thinpool.is_some() || a.snapshot.is_some() {
            return Err(ModuleError::Failed(
                "kiln's lvol does not support snapshot or thinpool volumes yet; create them with lvcreate in a command task".into(),
            ));
        }
        let Some(lv) = a.lv.clone() else {
            return Err(ModuleError::Args(
                "one of the following is required: lv, thinpool".into(),
            ));
        };
        let size = match a.size.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_size(s).map_err(ModuleError::Failed)?),
            None => None,
        };
        if let Some(Size::Pct {
            whole: Whole::Origin,
            ..
        }) = size
        {
            return Err(ModuleError::Failed(
                "Percentage of ORIGIN supported only for snapshot volumes".into(),
            ));
        }
        let opts = shell_words::split(a.opts.as_deref().unwrap_or(""))
            .map_err(|e| ModuleError::Args(format!("lvol: cannot split opts: {e}")))?;
        let vg = a.vg.clone();

        let vgr = lvm::report(
            ctx,
            "vgs",
            "vg",
            "vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count",
            &[&vg],
        )
        .await?;
        let vg_row = match vgr {
            Report::Rows(rows) if !rows.is_empty() => rows[0].clone(),
            other => {
                if !present {
                    return Ok(Query::Done(
                        Outcome::ok().with("stdout", format!("Volume group {vg} does not exist.")),
                    ));
                }
                let mut o = Outcome::failed(format!("Volume group {vg} does not exist."));
                if let Report::Failed(r) = other {
                    o = o.with("rc", r.rc as i64).with("err", r.stderr_text());
                }
                return Ok(Query::Done(o));
            }
        };
        let info = VgInfo::from_row(&vg_row)?;
        let lvs =
            match lvm::report(ctx, "lvs", "lv", "lv_name,lv_size,lv_attr", &["-a", &vg]).await? {
                Report::Rows(rows) => rows,
                Report::Failed(r) => {
                    return Ok(Query::Done(
                        Outcome::failed(format!("Volume group {vg} does not exist."))
                            .with("rc", r.rc as i64)
                            .with("err", r.stderr_text()),
                    ))
                }
            };
        let short = lv.rsplit('/').next().unwrap_or(&lv).to_string();
        let this = lvs
            .iter()
            .map(|r| -> Result<LvInfo, ModuleError> {
                Ok(LvInfo {
                    name: lvm::field(r, "lv_name").replace(['[', ']'], ""),
                    size: lvm::num(r, "lv_size")?,
                    active: lvm::field(r, "lv_attr").chars().nth(4) == Some('a'),
                })
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|l| l.name == lv || l.name == short);
        let unit = size.as_ref().map(Size::unit).unwrap_or('m');

        let Some(this) = this else {
            if !present {
                return Ok(Query::Done(Outcome::ok().with("msg", "")));
            }
            let Some(size) = size else {
                return Ok(Query::Done(Outcome::failed("No size given.")));
            };
            if let (Some(op), Size::Abs { text, .. }) = (size.op(), &size) {
                return Ok(Query::Done(Outcome::failed(format!(
                    "Bad size specification of '{op}{text}' for creating LV"
                ))));
            }
            if size.op() == Some('-') {
                return Ok(Query::Done(Outcome::failed(format!(
                    "Bad size specification of '{}' for creating LV",
                    size.flag()[1]
                ))));
            }
            let want = target_extents(&size, 0, &info);
            if want > info.free_extents {
                return Ok(Query::Done(Outcome::failed(format!(
                    "Logical volume {lv} cannot be created with size {}: not enough free space in volume group {vg} ({} extents = {:?}m required / {} extents = {:?}m available)",
                    size.flag()[1],
                    want,
                    mib(want, &info),
                    info.free_extents,
                    mib(info.free_extents, &info)
                ))));
            }
            let mut cmd = argv(&["lvcreate", "--yes", "-n", &lv]);
            cmd.extend(size.flag());
            cmd.extend(opts);
            cmd.push(vg.clone());
            cmd.extend(a.pvs.iter().cloned());
            let report = Outcome::changed().with("msg", "");
            let preview = report.clone().with_diff(Diff {
                before_header: Some(format!("{vg}/{lv}")),
                after_header: Some(format!("{vg}/{lv}")),
                before: "state: absent\n".into(),
                after: format!("state: present\nsize: {}\n", size.flag()[1]),
            });
            return Ok(Query::Change {
                plan: Plan {
                    steps: vec![Step::new(
                        cmd,
                        format!("Creating logical volume '{lv}' failed"),
                    )],
                    resize: false,
                    report,
                },
                preview,
            });
        };

        let name = this.name.clone();
        if !present {
            if !a.force {
                return Ok(Query::Done(Outcome::failed(format!(
                    "Sorry, no removal of logical volume {name} without force=true."
                ))));
            }
            let report = Outcome::changed();
            let preview = report.clone().with_diff(Diff {
                before_header: Some(format!("{vg}/{name}")),
                after_header: Some(format!("{vg}/{name}")),
                before: "state: present\n".into(),
                after: "state: absent\n".into(),
            });
            return Ok(Query::Change {
                plan: Plan {
                    steps: vec![Step::new(
                        argv(&["lvremove", "--force", &format!("{vg}/{name}")]),
                        format!("Failed to remove logical volume {lv}"),
                    )],
                    resize: false,
                    report,
                },
                preview,
            });
        }

        let cur = this.size / info.extent;
        let mut steps = vec![];
        let mut msg = None;
        let mut resize = false;
        let mut after_size = this.size;
        if let Some(size) = &size {
            let want = target_extents(size, cur, &info);
            let is_pct = matches!(size, Size::Pct { .. });
            let tool = if want > cur || size.op() == Some('+') {
                let need = want.saturating_sub(cur);
                if need > info.free_extents {
                    let m = if is_pct {
                        format!(
                            "Logical Volume {name} could not be extended. Not enough free space left ({:?}m required / {:?}m available)",
                            mib(need, &info),
                            mib(info.free_extents, &info)
                        )
                    } else {
                        format!(
                            "Logical Volume {name} could not be extended to {}. Not enough free space left ({:?}m required / {:?}m available)",
                            size.flag()[1],
                            mib(need, &info),
                            mib(info.free_extents, &info)
                        )
                    };
                    return Ok(Query::Done(Outcome::failed(m)));
                }
                Some("lvextend")
            } else if a.shrink && ((is_pct && cur > want + 1) || (!is_pct && cur > want))
                || size.op() == Some('-')
            {
                if want == 0 {
                    return Ok(Query::Done(Outcome::failed(format!(
                        "Sorry, no shrinking of {name} to 0 permitted."
                    ))));
                }
                if !a.force {
                    // community.general's wording: a period only for absolute sizes.
                    let dot = if is_pct { "" } else { "." };
                    return Ok(Query::Done(Outcome::failed(format!(
                        "Sorry, no shrinking of {name} without force=true{dot}"
                    ))));
                }
                Some("lvreduce")
            } else {
                None
            };
            if let Some(tool) = tool {
                let cmd = resize_argv(tool, a.resizefs, size, &vg, &name, &a.pvs);
                steps.push(Step::new(
                    cmd,
                    format!("Unable to resize {lv} to {}", size.flag()[1]),
                ));
                resize = true;
                after_size = want * info.extent;
                if is_pct {
                    msg = Some(format!(
                        "Volume {name} resized to {:?}{unit}",
                        lvm::in_unit(after_size, unit)
                    ));
                }
            }
        }
        if a.active != this.active {
            let flag = if a.active { "-ay" } else { "-an" };
            let what = if a.active { "activate" } else { "deactivate" };
            steps.push(Step::new(
                argv(&["lvchange", flag, &format!("{vg}/{name}")]),
                format!("Failed to {what} logical volume {lv}"),
            ));
        }
        let mut report = Outcome::ok()
            .with("vg", vg.clone())
            .with("lv", name.clone())
            .with("size", Value::Float(lvm::in_unit(this.size, unit)));
        if let Some(m) = msg {
            report = report.with_msg(m);
        }
        if steps.is_empty() {
            return Ok(Query::Done(report));
        }
        report.changed = true;
        let show = |bytes: u64, active: bool| {
            format!(
                "size: {} bytes ({} extents)\nactive: {active}\n",
                bytes,
                bytes / info.extent
            )
        };
        let preview = report.clone().with_diff(Diff {
            before_header: Some(format!("{vg}/{name}")),
            after_header: Some(format!("{vg}/{name}")),
            before: show(this.size, this.active),
            after: show(after_size, a.active),
        });
        Ok(Query::Change {
            plan: Plan {
                steps,
                resize,
                report,
            },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let mut report = p.report.clone();
        let mut changed = false;
        for (i, s) in p.steps.iter().enumerate() {
            let r = lvm::run(ctx, &s.argv).await?;
            if r.rc == 0 {
                changed = true;
                continue;
            }
            let said = format!("{}{}", r.stdout_text(), r.stderr_text());
            if i == 0 && p.resize && said.contains("matches existing size") {
                // lvm2 found nothing to do: community.general reports ok.
                report.msg = None;
                continue;
            }
            if i == 0 && p.resize && said.contains("not larger than existing size") {
                report.changed = false;
                return Ok(report
                    .with_msg("Original size is larger than requested size")
                    .with("err", r.stderr_text()));
            }
            return Ok(lvm::step_failed(&s.fail, &r).with("cmd", shell_words::join(&s.argv)));
        }
        report.changed = changed;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vg() -> VgInfo {
        VgInfo {
            size: (49 * 4) << 20,
            free: (44 * 4) << 20,
            extent: 4 << 20,
            extents: 49,
            free_extents: 44,
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(
            parse_size("4G").unwrap(),
            Size::Abs {
                op: None,
                num: 4.0,
                unit: 'G',
                text: "4G".into()
            }
        );
        assert_eq!(parse_size("+1g").unwrap().flag(), ["-L", "+1g"]);
        assert_eq!(parse_size("512").unwrap().flag(), ["-L", "512m"]);
        assert_eq!(parse_size("95%FREE").unwrap().flag(), ["-l", "95%FREE"]);
        assert_eq!(parse_size("+10%VG").unwrap().flag(), ["-l", "+10%VG"]);
        assert_eq!(
            parse_size("101%VG").unwrap_err(),
            "Size percentage cannot be larger than 100%"
        );
        assert_eq!(
            parse_size("10%DISK").unwrap_err(),
            "Specify extents as a percentage of VG|PVS|FREE|ORIGIN"
        );
        assert_eq!(
            parse_size("big").unwrap_err(),
            "Bad size specification of 'bi'"
        );
        assert!(parse_size(".5G").is_err());
    }

    #[test]
    fn resize_commands() {
        // resizefs cannot run in the namespace lab (no active LV): its command line is checked here.
        let s = parse_size("+1G").unwrap();
        assert_eq!(
            resize_argv("lvextend", true, &s, "vg", "lv", &[]),
            ["lvextend", "--resizefs", "-L", "+1G", "vg/lv"]
        );
        let s = parse_size("95%FREE").unwrap();
        assert_eq!(
            resize_argv("lvreduce", false, &s, "vg", "lv", &["/dev/sdb".into()]),
            ["lvreduce", "--force", "-l", "95%FREE", "vg/lv", "/dev/sdb"]
        );
    }

    #[test]
    fn targets() {
        let v = vg();
        // 10m rounds up to 3 extents of 4 MiB
        assert_eq!(target_extents(&parse_size("10m").unwrap(), 0, &v), 3);
        assert_eq!(target_extents(&parse_size("+8M").unwrap(), 5, &v), 7);
        assert_eq!(target_extents(&parse_size("50%FREE").unwrap(), 5, &v), 22);
        assert_eq!(target_extents(&parse_size("+50%FREE").unwrap(), 5, &v), 27);
        assert_eq!(target_extents(&parse_size("100%VG").unwrap(), 5, &v), 49);
        assert_eq!(target_extents(&parse_size("50%PVS").unwrap(), 5, &v), 24);
        assert_eq!(target_extents(&parse_size("1G").unwrap(), 0, &v), 256);
    }
}
