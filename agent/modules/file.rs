//! `file`: make a path a file, directory, symlink, hard link, or absent; touch it; set its
//! mode/owner/group (recursively for directories with `recurse`).
//!
//! The query step reads the host (stat, the agent's `SetAttrs` in check mode, a walk for
//! `recurse`) and writes down a [`Plan`]: the exact [`Step`]s that would change the path, the
//! result check mode reports, and the `{path, state, mode, owner, group}` diff. The apply step
//! carries out those steps and nothing else, then reports the path as it now is. Results follow
//! Ansible's: `path` (`dest` and `src` for links and touch), `state`, `mode`, `owner`, `group`,
//! `uid`, `gid`, `size`, and the diff dicts.

use super::support::args::{self, with_file_common_args};
use super::support::fileattrs::{self, Attrs};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::StatResult;
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

args::choices! {
    /// `state:` of `file`. Any other text is kept, to fail the task when it runs with Ansible's
    /// choices error (not the playbook's load-time argument check).
    pub enum FileState for "state" {
        Absent = "absent",
        Directory = "directory",
        File = "file",
        Hard = "hard",
        Link = "link",
        Touch = "touch",
    }
}

/// One change the apply step makes, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Remove the path (recursively).
    Remove,
    /// Create the directory; then give it and each missing parent (`missing`, outermost first,
    /// the path last) the attributes, as Ansible does.
    Mkdir { missing: Vec<String> },
    /// Create an empty file.
    Create,
    /// Set the access and modification times to now (`touch`, `-h` unless `follow`).
    Touch { follow: bool },
    /// `ln -f SRC PATH`.
    HardLink { src: String },
    /// A symlink to `src` (replacing what is there).
    Symlink { src: String },
    /// Set mode/owner/group on `path`. `diff`: add what changed to the diff (the path did not
    /// exist at query time, so the query could not say).
    Attrs {
        path: String,
        follow: bool,
        diff: bool,
    },
}

/// What the query decided: the steps, and how to report once they are done.
#[derive(Debug, Clone)]
pub struct Plan {
    path: String,
    attrs: Attrs,
    steps: Vec<Step>,
    /// The result's keys that do not come from the path's stat (`path` or `dest`, `src`).
    out: Outcome,
    before: Map,
    after: Map,
    report: Report,
}

/// How the applied result describes the path.
#[derive(Debug, Clone)]
enum Report {
    /// `state: absent`.
    Absent,
    /// The path's stat (through a link with `follow`), `state` replaced when given (`hard`).
    Stat {
        follow: bool,
        state: Option<&'static str>,
    },
}

impl Plan {
    /// Query the attributes of an existing path: what would change goes into the diff, and an
    /// attribute step into the plan when anything would. The answer's `after` is the predicted stat.
    async fn query_attrs(
        &mut self,
        ctx: &Ctx,
        path: &str,
        follow: bool,
        current: Option<&StatResult>,
    ) -> Result<fileattrs::AttrChange, ModuleError> {
        let ch = fileattrs::apply_attrs(ctx, path, &self.attrs, follow, current, true).await?;
        ch.diff_into(&mut self.before, &mut self.after);
        if ch.changed {
            self.steps.push(Step::Attrs {
                path: path.into(),
                follow,
                diff: false,
            });
        }
        Ok(ch)
    }

    /// After a step that creates the path: set its attributes (when any are asked for), their
    /// change shown in the diff.
    fn attrs_after_create(&mut self, path: &str, follow: bool) {
        if !self.attrs.is_empty() {
            self.steps.push(Step::Attrs {
                path: path.into(),
                follow,
                diff: true,
            });
        }
    }
}

pub struct File;

impl Module for File {
    const NAMES: &'static [&'static str] = &["file", "ansible.builtin.file", "ansible.legacy.file"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        plan(&a, ctx).await
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply(p, ctx).await
    }
}

fn st_state(st: &StatResult) -> &'static str {
    fileattrs::state_of(st)
}

/// Run a program (with the task's environment); a non-zero exit fails the task.
async fn sh(ctx: &Ctx, argv: &[&str]) -> Result<(), ModuleError> {
    let r = ctx.run(argv).await?;
    if r.rc != 0 {
        return Err(ModuleError::Failed(format!(
            "{} failed: {}",
            argv.join(" "),
            r.stderr_text().trim()
        )));
    }
    Ok(())
}

/// The result check mode shows: `out` with the path's (predicted) stat and, with `--diff`, the
/// diff; `Done` when nothing would change.
fn answer(
    ctx: &Ctx,
    mut out: Outcome,
    st: Option<&StatResult>,
    plan: Plan,
) -> Result<Query<Plan>, ModuleError> {
    if let Some(st) = st {
        fileattrs::add_path_info(&mut out.data, st);
    }
    if let Report::Stat { state: Some(s), .. } = plan.report {
        out.data.insert("state".into(), Value::str(s));
    }
    if ctx.diff && out.changed {
        out = out.with_diff(fileattrs::dict_diff(&plan.before, &plan.after));
    }
    if out.changed && !out.failed {
        Ok(Query::Change { plan, preview: out })
    } else {
        Ok(Query::Done(out))
    }
}

/// The query step: read the path and decide what would change.
pub async fn plan(a: &Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
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
    let wanted = a.state.clone().map(FileState::checked).transpose()?;
    let lst = ctx.session.stat(path, false, false).await?;
    let prev_state = st_state(&lst);
    let state = match wanted {
        Some(s) => s,
        None if a.recurse => FileState::Directory,
        None if lst.exists => match prev_state {
            "directory" => FileState::Directory,
            "link" => FileState::Link,
            _ => FileState::File,
        },
        None => FileState::File,
    };
    let mut p = Plan {
        path: path.to_string(),
        attrs: attrs.clone(),
        steps: vec![],
        out: Outcome::ok().with("path", path),
        before: Map::new(),
        after: Map::new(),
        report: Report::Stat {
            follow: a.follow,
            state: None,
        },
    };
    p.before.insert("path".into(), Value::str(path));
    p.after.insert("path".into(), Value::str(path));
    if prev_state != state.as_str() && !matches!(state, FileState::Touch | FileState::Hard) {
        p.before.insert("state".into(), Value::str(prev_state));
        p.after.insert("state".into(), Value::str(state.as_str()));
    }
    let mut out = p.out.clone();
    match state {
        FileState::Absent => {
            p.report = Report::Absent;
            if lst.exists {
                out.changed = true;
                p.steps.push(Step::Remove);
            }
            // check mode reports what is there now, as Ansible's does
            let shown = if lst.exists {
                match lst.kind.as_str() {
                    "directory" => "directory",
                    "link" => "link",
                    _ => "file",
                }
            } else {
                "absent"
            };
            out = out.with("state", shown);
            answer(ctx, out, None, p)
        }
        FileState::File => {
            let st = if lst.kind == "link" && a.follow {
                ctx.session.stat(path, true, false).await?
            } else {
                lst.clone()
            };
            if !st.exists {
                return Ok(Query::Done(
                    Outcome::failed(format!("file ({path}) is absent, cannot continue"))
                        .with("path", path),
                ));
            }
            if st.kind != "file" {
                return Ok(Query::Done(
                    Outcome::failed(format!(
                        "file ({path}) is {}, cannot continue",
                        st_state(&st)
                    ))
                    .with("path", path),
                ));
            }
            let ch = p.query_attrs(ctx, path, a.follow, Some(&st)).await?;
            out.changed = ch.changed;
            answer(ctx, out, Some(&ch.after), p)
        }
        FileState::Directory => {
            let st = if lst.kind == "link" && a.follow {
                ctx.session.stat(path, true, false).await?
            } else {
                lst.clone()
            };
            if !st.exists {
                out.changed = true;
                // Ansible creates each missing parent and gives it the same attributes
                let missing = fileattrs::missing_parents(ctx, path).await?;
                p.steps.push(Step::Mkdir { missing });
                let fresh = StatResult {
                    exists: true,
                    kind: "directory".into(),
                    mode: attrs.bits(0o755, true)?.unwrap_or(0o755),
                    owner: a.owner.clone(),
                    group: a.group.clone(),
                    ..Default::default()
                };
                return answer(ctx, out, Some(&fresh), p);
            }
            if st.kind != "directory" {
                return Ok(Query::Done(
                    Outcome::failed(format!("{path} already exists as a {}", st_state(&st)))
                        .with("path", path),
                ));
            }
            let ch = p.query_attrs(ctx, path, a.follow, None).await?;
            out.changed = ch.changed;
            if a.recurse && !attrs.is_empty() {
                for e in fileattrs::walk(ctx, path, None, false).await? {
                    let follow = a.follow && e.kind != 'l';
                    if e.kind == 'l' && attrs.owner.is_none() && attrs.group.is_none() {
                        continue;
                    }
                    let ch =
                        fileattrs::apply_attrs(ctx, &e.path, &attrs, follow, None, true).await?;
                    if ch.changed {
                        out.changed = true;
                        p.steps.push(Step::Attrs {
                            path: e.path,
                            follow,
                            diff: false,
                        });
                    }
                }
            }
            answer(ctx, out, Some(&ch.after), p)
        }
        FileState::Link | FileState::Hard => link(a, ctx, &lst, state, out, p).await,
        FileState::Touch => {
            // touch and links report `dest`, as Ansible's do
            out.data.shift_remove("path");
            out = out.with("dest", path);
            p.out = out.clone();
            let preserve = a.modification_time.as_deref() == Some("preserve")
                && a.access_time.as_deref() == Some("preserve");
            if !lst.exists {
                out.changed = true;
                p.before.insert("state".into(), Value::str("absent"));
                p.after.insert("state".into(), Value::str("touch"));
                p.steps.push(Step::Create);
                p.attrs_after_create(path, a.follow);
                let fresh = StatResult {
                    exists: true,
                    kind: "file".into(),
                    mode: attrs.bits(0o644, false)?.unwrap_or(0o644),
                    ..Default::default()
                };
                return answer(ctx, out, Some(&fresh), p);
            }
            if !preserve {
                out.changed = true;
                p.steps.push(Step::Touch { follow: a.follow });
            }
            let ch = p.query_attrs(ctx, path, a.follow, None).await?;
            out.changed |= ch.changed;
            answer(ctx, out, Some(&ch.after), p)
        }
        FileState::Other(o) => Err(FileState::error(&o)),
    }
}

/// The query step for `state: link` and `state: hard`.
async fn link(
    a: &Args,
    ctx: &Ctx,
    lst: &StatResult,
    state: FileState,
    mut out: Outcome,
    mut p: Plan,
) -> Result<Query<Plan>, ModuleError> {
    let path = a.path.as_str();
    let hard = state == FileState::Hard;
    out.data.shift_remove("path");
    out = out.with("dest", path);
    let Some(src) = a.src.clone() else {
        return Ok(Query::Done(Outcome::failed(format!(
            "src is required for creating new {}s",
            if hard { "hard link" } else { "symlink" }
        ))));
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
    p.out = out.clone();
    if hard {
        p.report = Report::Stat {
            follow: true,
            state: Some("hard"),
        };
        if !sst.exists {
            return Ok(Query::Done(
                Outcome::failed(format!("src does not exist: {src}")).with("path", path),
            ));
        }
        let same = lst.exists && same_inode(ctx, &src_abs, path).await?;
        if !same {
            if lst.exists && !a.force && lst.kind != "file" {
                return Ok(Query::Done(Outcome::failed(format!(
                    "Cannot link, {} exists at destination",
                    st_state(lst)
                ))));
            }
            out.changed = true;
            p.before.insert("state".into(), Value::str(st_state(lst)));
            p.after.insert("state".into(), Value::str("hard"));
            p.steps.push(Step::HardLink { src: src_abs });
            p.attrs_after_create(path, true);
            return answer(ctx, out, Some(&sst), p);
        }
        let ch = p.query_attrs(ctx, path, true, None).await?;
        out.changed |= ch.changed;
        return answer(ctx, out, Some(&ch.after), p);
    }
    p.report = Report::Stat {
        follow: false,
        state: None,
    };
    if !sst.exists && !a.force {
        return Ok(Query::Done(
            Outcome::failed(format!(
                "src file does not exist, use \"force=yes\" if you really want to create the link: {src_abs}"
            ))
            .with("path", path)
            .with("src", src.as_str()),
        ));
    }
    let same = lst.kind == "link" && lst.link_target.as_deref() == Some(src.as_str());
    if !same {
        if lst.exists && lst.kind == "directory" {
            return Ok(Query::Done(
                Outcome::failed(format!(
                    "the directory {path} is not empty, refusing to convert it"
                ))
                .with("path", path),
            ));
        }
        if lst.exists && lst.kind != "link" && !a.force {
            return Ok(Query::Done(
                Outcome::failed(format!(
                    "refusing to convert from {} to symlink for {path}",
                    st_state(lst)
                ))
                .with("path", path),
            ));
        }
        out.changed = true;
        p.steps.push(Step::Symlink { src });
        p.attrs_after_create(path, false);
        let fresh = StatResult {
            exists: true,
            kind: "link".into(),
            mode: 0o777,
            owner: lst.owner.clone(),
            group: lst.group.clone(),
            ..Default::default()
        };
        return answer(ctx, out, Some(&fresh), p);
    }
    let ch = p.query_attrs(ctx, path, false, None).await?;
    out.changed |= ch.changed;
    answer(ctx, out, Some(&ch.after), p)
}

/// The apply step: carry out the plan's steps, in order, then report the path as it is now.
pub async fn apply(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    let Plan {
        path,
        attrs,
        steps,
        mut out,
        mut before,
        mut after,
        report,
    } = p;
    let path = path.as_str();
    // the path's stat from the last attribute step on it, when it is the one to report
    let mut last: Option<(bool, StatResult)> = None;
    for step in steps {
        match step {
            Step::Remove => {
                ctx.session.remove(path, true).await?;
            }
            Step::Mkdir { missing } => {
                ctx.session.mkdir(path, None).await?;
                for d in &missing {
                    fileattrs::apply_attrs(ctx, d, &attrs, true, None, false).await?;
                }
            }
            Step::Create => {
                ctx.session
                    .write_file(crate::transport::WriteRequest {
                        path: path.into(),
                        ..Default::default()
                    })
                    .await?;
            }
            Step::Touch { follow } => {
                let mut argv = vec!["touch"];
                if !follow {
                    argv.push("-h");
                }
                argv.extend(["--", path]);
                sh(ctx, &argv).await?;
            }
            Step::HardLink { src } => sh(ctx, &["ln", "-f", "--", &src, path]).await?,
            Step::Symlink { src } => {
                ctx.session
                    .symlink(&src, path, true)
                    .await
                    .map_err(|e| ModuleError::Failed(e.to_string()))?;
            }
            Step::Attrs {
                path: p,
                follow,
                diff,
            } => {
                let ch = fileattrs::apply_attrs(ctx, &p, &attrs, follow, None, false).await?;
                if diff {
                    ch.diff_into(&mut before, &mut after);
                }
                if p == path {
                    last = Some((follow, ch.after));
                }
            }
        }
    }
    out.changed = true;
    match report {
        Report::Absent => out = out.with("state", "absent"),
        Report::Stat { follow, state } => {
            let st = match last {
                Some((f, st)) if f == follow => st,
                _ => ctx.session.stat(path, follow, false).await?,
            };
            fileattrs::add_path_info(&mut out.data, &st);
            if let Some(s) = state {
                out.data.insert("state".into(), Value::str(s));
            }
        }
    }
    if ctx.diff {
        out = out.with_diff(fileattrs::dict_diff(&before, &after));
    }
    Ok(out)
}

async fn same_inode(ctx: &Ctx, a: &str, b: &str) -> Result<bool, ModuleError> {
    let r = ctx.run(&["stat", "-c", "%d:%i", a, b]).await?;
    let out = r.stdout_text();
    let l: Vec<&str> = out.lines().collect();
    Ok(r.rc == 0 && l.len() == 2 && l[0] == l[1])
}
