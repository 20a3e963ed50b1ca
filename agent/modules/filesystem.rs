//! `filesystem` (community.general.filesystem): a filesystem (or swap, or an LVM PV) on a device.
//!
//! Query finds the device's current type with `blkid -c /dev/null -o value -s TYPE`, then
//! follows community.general: the same type (ext4 and ext4dev count as one) is ok unless `force`
//! (make it again), `resizefs` (grow it to the device) or `uuid` (set it) asks for more; another
//! type fails unless `force`; no type gets `mkfs.<type>` with the tool's force flag. Growing
//! compares the device size (`blockdev --getsize64`, or a regular file's size) with the
//! filesystem's (`tune2fs -l` block count × block size; `xfs_info` data blocks × bsize; `pvs`
//! pv_size) and runs `resize2fs DEV`, `xfs_growfs MOUNTPOINT` (XFS grows only mounted) or
//! `pvresize DEV`. `state: absent` wipes signatures with `wipefs --all`. Result and messages are
//! community.general's (`msg` carries the grow tool's output).

use super::support::args;
use super::support::lvm::{self, Report, Step};
use super::support::sysutil::argv;
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default)]
    state: args::PresentAbsent,
    #[serde(default, alias = "type", deserialize_with = "args::opt_string")]
    fstype: Option<String>,
    #[serde(alias = "device", deserialize_with = "args::string")]
    dev: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    opts: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    force: bool,
    #[serde(default, deserialize_with = "args::bool")]
    resizefs: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    uuid: Option<String>,
}

/// How kiln handles one filesystem type (community.general's class of the same name).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kind {
    /// community.general's class name, used in its messages (`Ext4`, `XFS`, `LVM`).
    pub class: &'static str,
    pub mkfs: &'static str,
    pub force_flags: &'static [&'static str],
    /// mkfs option that sets the UUID; else set afterwards with `change_uuid`.
    pub mkfs_uuid: Option<&'static str>,
    /// (tool, option) that changes the UUID of an existing filesystem.
    pub change_uuid: Option<(&'static str, &'static str)>,
    pub grow: Option<&'static str>,
    pub grow_mountpoint_only: bool,
}

const EXT_UUID: Option<(&str, &str)> = Some(("tune2fs", "-U"));

/// The kind for a `fstype` (after the `lvm` alias); `None` for types kiln does not handle.
pub fn kind(fstype: &str) -> Option<Kind> {
    let ext = |class, mkfs| Kind {
        class,
        mkfs,
        force_flags: &["-F"],
        mkfs_uuid: Some("-U"),
        change_uuid: EXT_UUID,
        grow: Some("resize2fs"),
        grow_mountpoint_only: false,
    };
    let plain = |class, mkfs, force_flags| Kind {
        class,
        mkfs,
        force_flags,
        mkfs_uuid: None,
        change_uuid: None,
        grow: None,
        grow_mountpoint_only: false,
    };
    Some(match fstype {
        "ext2" => ext("Ext2", "mkfs.ext2"),
        "ext3" => ext("Ext3", "mkfs.ext3"),
        "ext4" | "ext4dev" => ext("Ext4", "mkfs.ext4"),
        "xfs" => Kind {
            class: "XFS",
            mkfs: "mkfs.xfs",
            force_flags: &["-f"],
            mkfs_uuid: None,
            change_uuid: Some(("xfs_admin", "-U")),
            grow: Some("xfs_growfs"),
            grow_mountpoint_only: true,
        },
        "LVM2_member" => Kind {
            class: "LVM",
            mkfs: "pvcreate",
            force_flags: &["-f"],
            mkfs_uuid: Some("-u"),
            change_uuid: None,
            grow: Some("pvresize"),
            grow_mountpoint_only: false,
        },
        "swap" => plain("Swap", "mkswap", &["-f"]),
        "btrfs" => plain("Btrfs", "mkfs.btrfs", &["-f"]),
        "vfat" => plain("VFAT", "mkfs.vfat", &[]),
        _ => return None,
    })
}

/// community.general's choices for `fstype`.
const CHOICES: &[&str] = &[
    "bcachefs", "btrfs", "ext2", "ext3", "ext4", "ext4dev", "f2fs", "lvm", "ocfs2", "reiserfs",
    "swap", "ufs", "vfat", "xfs",
];

/// `tune2fs -l` output: block count × block size.
pub fn ext_size(out: &str) -> Option<u64> {
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(get("Block count:")? * get("Block size:")?)
}

/// `xfs_info` output: the `data` section's bsize × blocks.
pub fn xfs_size(out: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.trim_start().starts_with("data"))?;
    let val = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.trim_end_matches(',').parse::<u64>().ok())
    };
    Some(val("bsize=")? * val("blocks=")?)
}

pub struct Filesystem;

pub struct Plan {
    steps: Vec<Step>,
    /// The last step's stdout becomes `msg` (grow, change UUID).
    msg_from_last: bool,
}

fn done_fail(msg: impl Into<String>) -> Result<Query<Plan>, ModuleError> {
    Ok(Query::Done(Outcome::failed(msg)))
}

async fn run_ok(ctx: &Ctx, c: &[String]) -> Result<String, ModuleError> {
    let r = lvm::run(ctx, c).await?;
    if r.rc != 0 {
        return Err(ModuleError::Failed(format!(
            "{} failed (rc {}): {}",
            shell_words::join(c),
            r.rc,
            r.stderr_text().trim()
        )));
    }
    Ok(r.stdout_text())
}

/// The first mount point of `dev`, from `findmnt`.
async fn mountpoint(ctx: &Ctx, dev: &str) -> Result<Option<String>, ModuleError> {
    let r = lvm::run(
        ctx,
        &argv(&[
            "findmnt",
            "--mtab",
            "--noheadings",
            "--output",
            "TARGET",
            "--source",
            dev,
        ]),
    )
    .await?;
    Ok((r.rc == 0)
        .then(|| r.stdout_text().lines().next().map(str::to_string))
        .flatten()
        .filter(|s| !s.is_empty()))
}

impl Module for Filesystem {
    const NAMES: &'static [&'static str] = &["filesystem", "community.general.filesystem"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let present = a.state.present()?;
        let fstype = match (&a.fstype, present) {
            (None, true) => {
                return Err(ModuleError::Args(
                    "state is present but all of the following are missing: fstype".into(),
                ))
            }
            (Some(t), _) if !CHOICES.contains(&t.as_str()) => {
                return Err(ModuleError::Args(format!(
                    "value of fstype must be one of: {}, got: {t}",
                    CHOICES.join(", ")
                )))
            }
            (t, _) => t.clone().unwrap_or_default(),
        };
        if a.resizefs && a.uuid.is_some() {
            return Err(ModuleError::Args(
                "parameters are mutually exclusive: resizefs|uuid".into(),
            ));
        }
        let dev = a.dev.clone();
        let st = ctx.session.stat(&dev, true, false).await?;
        if !st.exists {
            let msg = format!("Device {dev} not found.");
            return Ok(Query::Done(if present {
                Outcome::failed(msg)
            } else {
                Outcome::ok().with_msg(msg)
            }));
        }
        let blkid = lvm::run(
            ctx,
            &argv(&[
                "blkid",
                "-c",
                "/dev/null",
                "-o",
                "value",
                "-s",
                "TYPE",
                &dev,
            ]),
        )
        .await?;
        let fs = blkid.stdout_text().trim().to_string();
        let diff = |before: &str, after: &str| Diff {
            before_header: Some(dev.clone()),
            after_header: Some(dev.clone()),
            before: format!("{before}\n"),
            after: format!("{after}\n"),
        };
        let shown = |t: &str| {
            if t.is_empty() {
                "fstype: none".to_string()
            } else {
                format!("fstype: {t}")
            }
        };

        if !present {
            if fs.is_empty() {
                return Ok(Query::Done(Outcome::ok()));
            }
            return Ok(Query::Change {
                plan: Plan {
                    steps: vec![Step::new(
                        argv(&["wipefs", "--all", &dev]),
                        format!("wipefs on {dev} failed"),
                    )],
                    msg_from_last: false,
                },
                preview: Outcome::changed().with_diff(diff(&shown(&fs), &shown(""))),
            });
        }

        let want_type = if fstype == "lvm" {
            "LVM2_member"
        } else {
            fstype.as_str()
        };
        let Some(k) = kind(want_type) else {
            return done_fail(format!(
                "module does not support this filesystem ({want_type}) yet."
            ));
        };
        if a.uuid.is_some() && k.mkfs_uuid.is_none() && k.change_uuid.is_none() {
            return done_fail(format!(
                "module does not support UUID option for this filesystem ({want_type}) yet."
            ));
        }
        let same = !fs.is_empty() && kind(&fs).is_some_and(|c| c.class == k.class);
        if same && !a.resizefs && a.uuid.is_none() && !a.force {
            return Ok(Query::Done(Outcome::ok()));
        }
        if same && a.resizefs {
            let Some(grow) = k.grow else {
                return done_fail(format!(
                    "module does not support resizing {want_type} filesystem yet."
                ));
            };
            let dev_size = if st.kind == "block" {
                run_ok(ctx, &argv(&["blockdev", "--getsize64", &dev]))
                    .await?
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| ModuleError::Failed(format!("blockdev gave no size for {dev}")))?
            } else if st.kind == "file" {
                st.size
            } else {
                return done_fail(format!("Target device not supported: {dev}"));
            };
            let mp = if k.grow_mountpoint_only || k.class == "XFS" {
                mountpoint(ctx, &dev).await?
            } else {
                None
            };
            let (info, fs_size) = match k.class {
                "XFS" => {
                    let out =
                        run_ok(ctx, &argv(&["xfs_info", mp.as_deref().unwrap_or(&dev)])).await?;
                    ("xfs_info", xfs_size(&out))
                }
                "LVM" => match lvm::report(ctx, "pvs", "pv", "pv_size", &[&dev]).await? {
                    Report::Rows(r) if !r.is_empty() => ("pvs", Some(lvm::num(&r[0], "pv_size")?)),
                    _ => ("pvs", None),
                },
                _ => {
                    let out = run_ok(ctx, &argv(&["tune2fs", "-l", &dev])).await?;
                    ("tune2fs", ext_size(&out))
                }
            };
            let Some(fs_size) = fs_size else {
                return done_fail(format!("unable to process {info} output for {dev}"));
            };
            if fs_size >= dev_size {
                return Ok(Query::Done(Outcome::ok().with_msg(format!(
                    "{} filesystem is using the whole device {dev}",
                    k.class
                ))));
            }
            let target = if k.grow_mountpoint_only {
                match mp {
                    Some(m) => m,
                    // community.general's check mode reports the growth before it looks for
                    // the mount point; a real run fails.
                    None if !ctx.check => {
                        return done_fail(format!(
                            "{dev} needs to be mounted for {} operations",
                            k.class
                        ))
                    }
                    None => dev.clone(),
                }
            } else {
                dev.clone()
            };
            return Ok(Query::Change {
                plan: Plan {
                    steps: vec![Step::new(
                        argv(&[grow, &target]),
                        format!("Growing the {} filesystem on {dev} failed", k.class),
                    )],
                    msg_from_last: true,
                },
                preview: Outcome::changed()
                    .with_msg(format!("resizing filesystem {} on device {dev}", k.class))
                    .with_diff(diff(
                        &format!("size: {fs_size} bytes"),
                        &format!("size: {dev_size} bytes"),
                    )),
            });
        }
        if same {
            if let (Some(u), false) = (&a.uuid, a.force) {
                let Some((tool, opt)) = k.change_uuid else {
                    return done_fail(format!(
                        "module does not support UUID option for this filesystem ({want_type}) yet."
                    ));
                };
                return Ok(Query::Change {
                    plan: Plan {
                        steps: vec![Step::new(
                            argv(&[tool, opt, u, &dev]),
                            format!("Changing the UUID of {dev} failed"),
                        )],
                        msg_from_last: true,
                    },
                    preview: Outcome::changed().with_msg(format!(
                        "Changing {} filesystem UUID on device {dev}",
                        k.class
                    )),
                });
            }
        } else if !fs.is_empty() && !a.force {
            return done_fail(format!(
                "'{dev}' is already used as {fs}, use force=true to overwrite"
            ));
        }
        let mut opts: Vec<String> = a
            .opts
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut steps = vec![];
        let mut mkfs = argv(&[k.mkfs]);
        mkfs.extend(k.force_flags.iter().map(|s| s.to_string()));
        if let (Some(u), Some(o)) = (&a.uuid, k.mkfs_uuid) {
            if !opts.iter().any(|x| x == o) {
                opts.extend([o.to_string(), u.clone()]);
                if k.class == "LVM" {
                    opts.push("--norestorefile".into());
                }
            }
        }
        mkfs.extend(opts);
        mkfs.push(dev.clone());
        steps.push(Step::new(
            mkfs,
            format!("Creating a {want_type} filesystem on {dev} failed"),
        ));
        if let (Some(u), None, Some((tool, opt))) = (&a.uuid, k.mkfs_uuid, k.change_uuid) {
            steps.push(Step::new(
                argv(&[tool, opt, u, &dev]),
                format!("Changing the UUID of {dev} failed"),
            ));
        }
        Ok(Query::Change {
            plan: Plan {
                steps,
                msg_from_last: false,
            },
            preview: Outcome::changed().with_diff(diff(&shown(&fs), &shown(want_type))),
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let mut last = String::new();
        for s in &p.steps {
            let r = lvm::run(ctx, &s.argv).await?;
            if r.rc != 0 {
                return Ok(lvm::step_failed(&s.fail, &r).with("cmd", shell_words::join(&s.argv)));
            }
            last = r.stdout_text();
        }
        let o = Outcome::changed();
        Ok(if p.msg_from_last { o.with_msg(last) } else { o })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_tool_output() {
        let t = "tune2fs 1.47.0 (5-Feb-2023)\nFilesystem volume name:   <none>\nBlock count:              25600\nReserved block count:     1280\nBlock size:               4096\n";
        assert_eq!(ext_size(t), Some(25600 * 4096));
        assert_eq!(ext_size("nothing"), None);
        let x = "meta-data=/dev/loop1             isize=512    agcount=4, agsize=4096 blks\n         =                       sectsz=512   attr=2, projid32bit=1\ndata     =                       bsize=4096   blocks=16384, imaxpct=25\n         =                       sunit=0      swidth=0 blks\nnaming   =version 2              bsize=4096   ascii-ci=0, ftype=1\n";
        assert_eq!(xfs_size(x), Some(4096 * 16384));
    }

    #[test]
    fn kinds() {
        assert_eq!(kind("ext4dev").unwrap().class, kind("ext4").unwrap().class);
        assert_ne!(kind("ext3").unwrap().class, kind("ext4").unwrap().class);
        assert_eq!(kind("LVM2_member").unwrap().grow, Some("pvresize"));
        assert!(kind("reiserfs").is_none());
    }
}
