//! `file`: make a path a file, directory, symlink, hard link, or absent; touch it; set its
//! mode/owner/group (recursively for directories with `recurse`).
//!
//! One function, [`run`], does the work with a `dry` switch: the query step runs it dry (stat
//! only, the agent's `SetAttrs` in check mode) to learn whether and what would change, and the
//! apply step runs it for real. Results follow Ansible's: `path` (plus `src` for links),
//! `state`, `mode`, `owner`, `group`, `uid`, `gid`, `size`, and a `diff` of `{path, state, mode,
//! owner, group}` dicts.

use super::support::args::{self, with_file_common_args};
use super::support::fileattrs::{self, Attrs};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::{ExecRequest, StatResult};
use crate::value::{Map, Value};
use serde::Deserialize;

with_file_common_args! {
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "dest", alias = "name", deserialize_with = "args::string")]
    pub path: String,
    #[serde(default)]
    pub state: Option<FileState>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub src: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub recurse: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub force: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    pub follow: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub access_time: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub modification_time: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub access_time_format: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub modification_time_format: Option<String>,
    #[serde(default)]
    pub _diff_peek: Option<serde_json::Value>,
    #[serde(default)]
    pub _original_basename: Option<serde_json::Value>,
}
}

/// `state:` of `file`. Any other text is kept, to fail the task when it runs with Ansible's
/// choices error (not the playbook's load-time argument check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Absent,
    Directory,
    File,
    Hard,
    Link,
    Touch,
    Other(String),
}

impl FileState {
    pub fn as_str(&self) -> &str {
        match self {
            FileState::Absent => "absent",
            FileState::Directory => "directory",
            FileState::File => "file",
            FileState::Hard => "hard",
            FileState::Link => "link",
            FileState::Touch => "touch",
            FileState::Other(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for FileState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match args::string(d)?.as_str() {
            "absent" => FileState::Absent,
            "directory" => FileState::Directory,
            "file" => FileState::File,
            "hard" => FileState::Hard,
            "link" => FileState::Link,
            "touch" => FileState::Touch,
            o => FileState::Other(o.to_string()),
        })
    }
}

pub struct File;

impl Module for File {
    const NAMES: &'static [&'static str] = &["file", "ansible.builtin.file", "ansible.legacy.file"];
    type Args = Args;
    type Plan = Args;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Args>, ModuleError> {
        let preview = run(&a, ctx, true).await?;
        if preview.changed && !preview.failed {
            Ok(Query::Change { plan: a, preview })
        } else {
            Ok(Query::Done(preview))
        }
    }

    async fn apply(&self, a: Args, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        run(&a, ctx, false).await
    }
}

fn st_state(st: &StatResult) -> &'static str {
    fileattrs::state_of(st)
}

async fn sh(ctx: &Ctx, argv: &[&str]) -> Result<(), ModuleError> {
    let r = ctx
        .exec(ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await?;
    if r.rc != 0 {
        return Err(ModuleError::Failed(format!(
            "{} failed: {}",
            argv.join(" "),
            r.stderr_text().trim()
        )));
    }
    Ok(())
}

/// Do (or, `dry`, only work out) what the arguments ask; the outcome says what changed.
pub async fn run(a: &Args, ctx: &Ctx, dry: bool) -> Result<Outcome, ModuleError> {
    let path = a.path.as_str();
    let attrs = a.file_attrs();
    let _ = (
        &a.unsafe_writes,
        &a.attributes,
        &a.seuser,
        &a.serole,
        &a.setype,
        &a.selevel,
    );
    let _ = (
        &a._diff_peek,
        &a._original_basename,
        &a.access_time_format,
        &a.modification_time_format,
    );
    let lst = ctx.session.stat(path, false, false).await?;
    let prev_state = st_state(&lst);
    let state = match a.state.as_ref().map(FileState::as_str) {
        Some(s) => s.to_string(),
        None if a.recurse => "directory".into(),
        None if lst.exists => prev_state.to_string(),
        None => "file".into(),
    };
    let mut before = Map::new();
    let mut after = Map::new();
    before.insert("path".into(), Value::str(path));
    after.insert("path".into(), Value::str(path));
    if prev_state != state && state != "touch" && state != "hard" {
        before.insert("state".into(), Value::str(prev_state));
        after.insert("state".into(), Value::str(state.as_str()));
    }
    let mut out = Outcome::ok().with("path", path);
    let finish = |mut out: Outcome, st: Option<&StatResult>, before: &Map, after: &Map| {
        if let Some(st) = st {
            fileattrs::add_path_info(&mut out.data, st);
        }
        if ctx.diff && out.changed {
            out = out.with_diff(fileattrs::dict_diff(before, after));
        }
        out
    };
    match state.as_str() {
        "absent" => {
            if lst.exists {
                out.changed = true;
                if !dry {
                    ctx.session.remove(path, true).await?;
                }
            }
            // check mode reports what is there now, as Ansible's does
            let shown = if dry && lst.exists {
                match lst.kind.as_str() {
                    "directory" => "directory",
                    "link" => "link",
                    _ => "file",
                }
            } else {
                "absent"
            };
            out = out.with("state", shown);
            Ok(finish(out, None, &before, &after))
        }
        "file" => {
            let st = if lst.kind == "link" && a.follow {
                ctx.session.stat(path, true, false).await?
            } else {
                lst.clone()
            };
            if !st.exists {
                return Ok(Outcome::failed(format!(
                    "file ({path}) is absent, cannot continue"
                ))
                .with("path", path));
            }
            if st.kind != "file" {
                return Ok(Outcome::failed(format!(
                    "file ({path}) is {}, cannot continue",
                    st_state(&st)
                ))
                .with("path", path));
            }
            let ch = fileattrs::apply_attrs(ctx, path, &attrs, a.follow, Some(&st), dry).await?;
            ch.diff_into(&mut before, &mut after);
            out.changed = ch.changed;
            Ok(finish(out, Some(&ch.after), &before, &after))
        }
        "directory" => {
            let st = if lst.kind == "link" && a.follow {
                ctx.session.stat(path, true, false).await?
            } else {
                lst.clone()
            };
            let mut fresh = None;
            if !st.exists {
                out.changed = true;
                // Ansible creates each missing parent and gives it the same attributes
                let missing = fileattrs::missing_parents(ctx, path).await?;
                if dry {
                    let mut s = StatResult {
                        exists: true,
                        kind: "directory".into(),
                        mode: attrs.bits(0o755, true)?.unwrap_or(0o755),
                        ..Default::default()
                    };
                    s.owner = a.owner.clone();
                    s.group = a.group.clone();
                    fresh = Some(s);
                } else {
                    ctx.session.mkdir(path, None).await?;
                    for d in &missing {
                        fileattrs::apply_attrs(ctx, d, &attrs, true, None, false).await?;
                    }
                }
            } else if st.kind != "directory" {
                return Ok(Outcome::failed(format!(
                    "{path} already exists as a {}",
                    st_state(&st)
                ))
                .with("path", path));
            }
            let final_st = match fresh {
                Some(s) => s,
                None => {
                    let ch =
                        fileattrs::apply_attrs(ctx, path, &attrs, a.follow, None, dry).await?;
                    if st.exists {
                        ch.diff_into(&mut before, &mut after);
                    }
                    out.changed |= ch.changed;
                    ch.after
                }
            };
            if a.recurse && !attrs.is_empty() && st.exists {
                for e in fileattrs::walk(ctx, path, None, false).await? {
                    let follow = a.follow && e.kind != 'l';
                    if e.kind == 'l' && attrs.owner.is_none() && attrs.group.is_none() {
                        continue;
                    }
                    let ch = fileattrs::apply_attrs(ctx, &e.path, &attrs, follow, None, dry).await?;
                    out.changed |= ch.changed;
                }
            }
            Ok(finish(out, Some(&final_st), &before, &after))
        }
        "link" | "hard" => link(a, ctx, dry, &lst, &state, out, &attrs, before, after).await,
        "touch" => {
            // touch and links report `dest`, as Ansible's do
            out.data.shift_remove("path");
            out = out.with("dest", path);
            let preserve = a.modification_time.as_deref() == Some("preserve")
                && a.access_time.as_deref() == Some("preserve");
            if !lst.exists {
                out.changed = true;
                before.insert("state".into(), Value::str("absent"));
                after.insert("state".into(), Value::str("touch"));
                if !dry {
                    ctx.session
                        .write_file(crate::transport::WriteRequest {
                            path: path.into(),
                            ..Default::default()
                        })
                        .await?;
                }
            } else if !preserve {
                out.changed = true;
                if !dry {
                    let mut argv = vec!["touch"];
                    if !a.follow {
                        argv.push("-h");
                    }
                    argv.extend(["--", path]);
                    sh(ctx, &argv).await?;
                }
            }
            let st = if dry && !lst.exists {
                Some(StatResult {
                    exists: true,
                    kind: "file".into(),
                    mode: attrs.bits(0o644, false)?.unwrap_or(0o644),
                    ..Default::default()
                })
            } else {
                let ch = fileattrs::apply_attrs(ctx, path, &attrs, a.follow, None, dry).await?;
                ch.diff_into(&mut before, &mut after);
                out.changed |= ch.changed;
                Some(ch.after)
            };
            Ok(finish(out, st.as_ref(), &before, &after))
        }
        other => Err(ModuleError::Args(format!(
            "value of state must be one of: absent, directory, file, hard, link, touch, got: {other}"
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn link(
    a: &Args,
    ctx: &Ctx,
    dry: bool,
    lst: &StatResult,
    state: &str,
    mut out: Outcome,
    attrs: &Attrs,
    mut before: Map,
    mut after: Map,
) -> Result<Outcome, ModuleError> {
    let path = a.path.as_str();
    out.data.shift_remove("path");
    out = out.with("dest", path);
    let Some(src) = a.src.clone() else {
        return Ok(Outcome::failed(format!(
            "src is required for creating new {}s",
            if state == "hard" {
                "hard link"
            } else {
                "symlink"
            }
        )));
    };
    // a relative symlink source is relative to the link's directory
    let src_abs = if src.starts_with('/') {
        src.clone()
    } else {
        let (dir, _) = fileattrs::split_path(path);
        format!("{}/{src}", if dir.is_empty() { "." } else { dir })
    };
    let sst = ctx.session.stat(&src_abs, true, false).await?;
    out = out.with("src", src.as_str());
    if state == "hard" {
        if !sst.exists {
            return Ok(Outcome::failed(format!("src does not exist: {src}")).with("path", path));
        }
        let same = lst.exists && same_inode(ctx, &src_abs, path).await?;
        if !same {
            if lst.exists && !a.force && lst.kind != "file" {
                return Ok(Outcome::failed(format!(
                    "Cannot link, {} exists at destination",
                    st_state(lst)
                )));
            }
            out.changed = true;
            before.insert("state".into(), Value::str(st_state(lst)));
            after.insert("state".into(), Value::str("hard"));
            if !dry {
                sh(ctx, &["ln", "-f", "--", &src_abs, path]).await?;
            }
        }
        let st = if dry && !same {
            sst.clone()
        } else {
            let ch = fileattrs::apply_attrs(ctx, path, attrs, true, None, dry).await?;
            ch.diff_into(&mut before, &mut after);
            out.changed |= ch.changed;
            ch.after
        };
        fileattrs::add_path_info(&mut out.data, &st);
        out.data.insert("state".into(), Value::str("hard"));
        if ctx.diff && out.changed {
            out = out.with_diff(fileattrs::dict_diff(&before, &after));
        }
        return Ok(out);
    }
    if !sst.exists && !a.force {
        return Ok(Outcome::failed(format!(
            "src file does not exist, use \"force=yes\" if you really want to create the link: {src_abs}"
        ))
        .with("path", path)
        .with("src", src.as_str()));
    }
    let same = lst.kind == "link" && lst.link_target.as_deref() == Some(src.as_str());
    if !same {
        if lst.exists && lst.kind == "directory" {
            return Ok(Outcome::failed(format!(
                "the directory {path} is not empty, refusing to convert it"
            ))
            .with("path", path));
        }
        if lst.exists && lst.kind != "link" && !a.force {
            return Ok(Outcome::failed(format!(
                "refusing to convert from {} to symlink for {path}",
                st_state(lst)
            ))
            .with("path", path));
        }
        out.changed = true;
        if !dry {
            ctx.session
                .symlink(&src, path, true)
                .await
                .map_err(|e| ModuleError::Failed(e.to_string()))?;
        }
    }
    let st = if dry && !same {
        StatResult {
            exists: true,
            kind: "link".into(),
            mode: 0o777,
            owner: lst.owner.clone(),
            group: lst.group.clone(),
            ..Default::default()
        }
    } else {
        let ch = fileattrs::apply_attrs(ctx, path, attrs, false, None, dry).await?;
        ch.diff_into(&mut before, &mut after);
        out.changed |= ch.changed;
        ch.after
    };
    fileattrs::add_path_info(&mut out.data, &st);
    if ctx.diff && out.changed {
        out = out.with_diff(fileattrs::dict_diff(&before, &after));
    }
    Ok(out)
}

async fn same_inode(ctx: &Ctx, a: &str, b: &str) -> Result<bool, ModuleError> {
    let r = ctx
        .exec(ExecRequest {
            argv: vec![
                "stat".into(),
                "-c".into(),
                "%d:%i".into(),
                a.into(),
                b.into(),
            ],
            ..Default::default()
        })
        .await?;
    let out = r.stdout_text();
    let l: Vec<&str> = out.lines().collect();
    Ok(r.rc == 0 && l.len() == 2 && l[0] == l[1])
}
