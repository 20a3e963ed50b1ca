//! `copy`: put a controller file (`src`, found in the role's/playbook's `files/`), literal
//! `content`, or a file already on the host (`remote_src`) at `dest`, with mode/owner/group.
//!
//! The query step stats `dest` with its sha256 and compares it with the wanted bytes and
//! attributes, so an unchanged file costs one round trip and is never re-sent. The apply step
//! validates (`validate: cmd %s` on a temp copy next to `dest`), backs up, and writes through the
//! agent's atomic write. [`copy_content`] is the same flow for the engine's `template` action,
//! which renders on the controller and hands the bytes here. Results carry Ansible's keys: `dest`,
//! `src`, `checksum` (sha1), `md5sum`, `size`, `mode`, `owner`, `group`, `uid`, `gid`, `state`,
//! `backup_file`.

use super::support::args::{self, with_file_common_args, Mode};
use super::support::fileattrs::{self, Attrs};
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::protocol::STREAM_THRESHOLD;
use crate::transport::WriteRequest;
use crate::value::{Map, Value};
use serde::Deserialize;

with_file_common_args! {
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(default, deserialize_with = "args::opt_string")]
    pub src: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub content: Option<String>,
    #[serde(deserialize_with = "args::string")]
    pub dest: String,
    #[serde(default, deserialize_with = "args::bool")]
    pub backup: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    pub force: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub remote_src: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub validate: Option<String>,
    #[serde(default, deserialize_with = "args::opt_mode")]
    pub directory_mode: Option<Mode>,
    /// Follow a symlink at `dest` (write its target); without it the link is replaced by a file.
    #[serde(default, deserialize_with = "args::bool")]
    pub follow: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub checksum: Option<String>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    pub decrypt: Option<bool>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    pub local_follow: Option<bool>,
}
}

pub struct Copy;

/// The bytes to put at `dest` and where they came from.
struct Source {
    /// The content; empty when `file` is set.
    data: Vec<u8>,
    /// A controller file over [`STREAM_THRESHOLD`]: sent in chunks, never read whole.
    file: Option<LocalFile>,
    /// The source file's mode (for `mode: preserve`).
    mode: Option<u32>,
    /// The source path as given (`src` result key); None for `content`.
    name: Option<String>,
    /// The diff's after-header: the source file found on the controller.
    header: Option<String>,
}

/// A large source file, with the digests `copy` reports: on the controller (computed in one
/// streaming pass; sent in chunks) or, for `remote_src`, on the host (digests computed there;
/// copied there, nothing crosses the channel).
#[derive(Clone)]
pub struct LocalFile {
    path: std::path::PathBuf,
    size: u64,
    sha1: String,
    sha256: String,
    md5: String,
    on_host: bool,
}

impl LocalFile {
    fn read(path: &std::path::Path, size: u64) -> std::io::Result<LocalFile> {
        let d = crate::host::files::digests(
            &path.to_string_lossy(),
            &["sha1".into(), "sha256".into(), "md5".into()],
        )?;
        let [sha1, sha256, md5]: [String; 3] = d
            .try_into()
            .map_err(|_| std::io::Error::other("three digests asked, others returned"))?;
        Ok(LocalFile {
            path: path.to_path_buf(),
            size,
            sha1,
            sha256,
            md5,
            on_host: false,
        })
    }
}

/// A controller file as a copy source: in memory, or (over [`STREAM_THRESHOLD`]) by path.
fn local_source(p: &std::path::Path) -> Result<(Vec<u8>, Option<LocalFile>), ModuleError> {
    let err =
        |e: std::io::Error| ModuleError::Failed(format!("could not read {}: {e}", p.display()));
    let size = std::fs::metadata(p).map_err(err)?.len();
    if size > STREAM_THRESHOLD {
        Ok((Vec::new(), Some(LocalFile::read(p, size).map_err(err)?)))
    } else {
        Ok((std::fs::read(p).map_err(err)?, None))
    }
}

/// A large file on the host as a copy source: its digests, computed on the host in one read.
async fn host_file(ctx: &Ctx, path: &str, size: u64) -> Result<LocalFile, ModuleError> {
    let d = ctx
        .session
        .digests(path, &["sha1", "sha256", "md5"])
        .await
        .map_err(|e| match e {
            crate::transport::TransportError::Remote { msg, .. } => {
                ModuleError::Failed(format!("could not read {path} on the host: {msg}"))
            }
            other => other.into(),
        })?;
    let [sha1, sha256, md5] = <[String; 3]>::try_from(d)
        .map_err(|_| ModuleError::Failed(format!("no digests of {path} from the host")))?;
    Ok(LocalFile {
        path: path.into(),
        size,
        sha1,
        sha256,
        md5,
        on_host: true,
    })
}

impl Source {
    fn sha1(&self) -> String {
        match &self.file {
            Some(f) => f.sha1.clone(),
            None => fileattrs::sha1_hex(&self.data),
        }
    }
    fn sha256(&self) -> String {
        match &self.file {
            Some(f) => f.sha256.clone(),
            None => fileattrs::sha256_hex(&self.data),
        }
    }
    fn md5(&self) -> String {
        match &self.file {
            Some(f) => f.md5.clone(),
            None => fileattrs::md5_hex(&self.data),
        }
    }
    fn size(&self) -> u64 {
        match &self.file {
            Some(f) => f.size,
            None => self.data.len() as u64,
        }
    }
}

/// What apply does: one file, or a controller directory copied recursively.
pub enum Plan {
    File(FilePlan),
    Tree(TreePlan),
}

/// A directory copy: directories to create (outermost first), then files to write.
pub struct TreePlan {
    dirs: Vec<String>,
    dir_attrs: Attrs,
    files: Vec<FilePlan>,
    result: Outcome,
}

/// One file to write.
pub struct FilePlan {
    dest: String,
    data: Vec<u8>,
    /// Sent in chunks instead of `data`.
    file: Option<LocalFile>,
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    content_changes: bool,
    exists: bool,
    backup: bool,
    validate: Option<String>,
    /// Directories to create (outermost first), with `directory_mode`, owner and group.
    mkdir: Vec<String>,
    dir_attrs: Attrs,
    src: Option<String>,
    /// `dest` is a symlink and `follow` is off: remove the link, then write a file.
    replace_link: bool,
}

fn failed<P>(msg: impl Into<String>) -> Result<Query<P>, ModuleError> {
    Ok(Query::Done(Outcome::failed(msg)))
}

async fn query(a: Args, src: Option<Source>, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
    if src.is_none() && a.content.is_none() && !a.remote_src {
        if let Some(s) = &a.src {
            if let Some(p) = ctx.find_local("files", s).filter(|p| p.is_dir()) {
                return query_tree(&a, s, &p, ctx).await;
            }
        }
    }
    Ok(match query_file(a, src, false, ctx).await? {
        Query::Done(o) => Query::Done(o),
        Query::Change { plan, preview } => Query::Change {
            plan: Plan::File(plan),
            preview,
        },
        Query::Opaque(p) => Query::Opaque(Plan::File(p)),
    })
}

/// A controller directory: `src/` copies its contents into `dest`, `src` the directory itself.
async fn query_tree(
    a: &Args,
    src: &str,
    local: &std::path::Path,
    ctx: &Ctx,
) -> Result<Query<Plan>, ModuleError> {
    let base = a.dest.trim_end_matches('/');
    let root = if src.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/{}", fileattrs::split_path(src).1)
    };
    // the local tree, sorted so parents come before children
    let mut entries: Vec<(String, bool)> = vec![];
    let mut stack = vec![(local.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let rd = std::fs::read_dir(&dir)
            .map_err(|e| ModuleError::Failed(format!("could not read {}: {e}", dir.display())))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let is_dir = e.path().is_dir();
            if is_dir {
                stack.push((e.path(), r.clone()));
            }
            entries.push((r, is_dir));
        }
    }
    entries.sort();
    let mut dirs = vec![];
    for d in
        std::iter::once(String::new()).chain(entries.iter().filter(|e| e.1).map(|e| e.0.clone()))
    {
        let path = if d.is_empty() {
            root.clone()
        } else {
            format!("{root}/{d}")
        };
        if !ctx.session.stat(&path, true, false).await?.exists {
            if d.is_empty() {
                // the root and any of its missing parents
                dirs.extend(fileattrs::missing_parents(ctx, &path).await?);
            } else {
                dirs.push(path);
            }
        }
    }
    let mut files = vec![];
    let mut preview = Outcome::ok().with("dest", a.dest.as_str()).with("src", src);
    preview.changed = !dirs.is_empty();
    for (rel, _) in entries.iter().filter(|e| !e.1) {
        let lp = local.join(rel);
        let (data, file) = local_source(&lp)?;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&lp)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777);
        let mut fa = a.clone();
        fa.dest = format!("{root}/{rel}");
        fa.src = Some(rel.clone());
        let source = Source {
            data,
            file,
            mode,
            name: Some(rel.clone()),
            header: Some(lp.to_string_lossy().into_owned()),
        };
        match query_file(fa, Some(source), true, ctx).await? {
            Query::Done(o) if o.failed => return Ok(Query::Done(o)),
            Query::Done(_) => {}
            Query::Change { plan, preview: p } => {
                preview.changed = true;
                preview.diff.extend(p.diff);
                files.push(plan);
            }
            Query::Opaque(plan) => files.push(plan),
        }
    }
    if !preview.changed {
        return Ok(Query::Done(preview));
    }
    Ok(Query::Change {
        plan: Plan::Tree(TreePlan {
            dirs,
            dir_attrs: Attrs {
                mode: a.directory_mode.clone(),
                owner: a.owner.clone(),
                group: a.group.clone(),
            },
            files,
            result: preview.clone(),
        }),
        preview,
    })
}

async fn query_file(
    a: Args,
    src: Option<Source>,
    parents_ok: bool,
    ctx: &Ctx,
) -> Result<Query<FilePlan>, ModuleError> {
    let source = match src {
        Some(s) => s,
        None => match (&a.content, &a.src) {
            (Some(_), Some(_)) => {
                return Err(ModuleError::Args(
                    "parameters are mutually exclusive: content|src".into(),
                ))
            }
            (None, None) => return failed("src (or content) is required"),
            (Some(c), None) => Source {
                data: c.clone().into_bytes(),
                file: None,
                mode: None,
                name: None,
                header: None,
            },
            (None, Some(s)) if a.remote_src => {
                let st = fileattrs::stat(ctx, s, true).await?;
                if !st.exists {
                    return failed(format!("Source {s} not found"));
                }
                if st.kind == "directory" {
                    return failed(format!(
                        "copy: a directory remote src ({s}) is not supported by kiln yet"
                    ));
                }
                // a large file is copied on the host itself (streamed to a temp file beside
                // dest, then renamed): never read into memory, never over the channel
                let (data, file) = if st.size > STREAM_THRESHOLD {
                    (Vec::new(), Some(host_file(ctx, s, st.size).await?))
                } else {
                    (ctx.session.read_file(s).await?, None)
                };
                Source {
                    data,
                    file,
                    mode: Some(st.mode),
                    name: Some(s.clone()),
                    header: Some(s.clone()),
                }
            }
            (None, Some(s)) => {
                let Some(p) = ctx.find_local("files", s) else {
                    return failed(format!(
                        "Could not find or access '{s}' on the Ansible Controller."
                    ));
                };
                let (data, file) = local_source(&p)?;
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&p)
                    .ok()
                    .map(|m| m.permissions().mode() & 0o7777);
                Source {
                    data,
                    file,
                    mode,
                    name: Some(s.clone()),
                    header: Some(p.to_string_lossy().into_owned()),
                }
            }
        },
    };
    let _ = (&a.decrypt, &a.local_follow, &a.unsafe_writes, &a.attributes);
    let _ = (&a.seuser, &a.serole, &a.setype, &a.selevel, &a.checksum);

    // where the file goes: `dest/` or an existing directory means dest/basename(src)
    let mut dest = a.dest.clone();
    let mut make_parent = false;
    if dest.ends_with('/') {
        let Some(name) = &source.name else {
            return failed("can not use content with a dir as dest");
        };
        dest = format!("{dest}{}", fileattrs::split_path(name).1);
        make_parent = true;
    }
    let mut st = ctx.session.stat(&dest, a.follow, true).await?;
    if st.exists && st.kind == "directory" {
        let Some(name) = &source.name else {
            return failed("can not use content with a dir as dest");
        };
        dest = format!(
            "{}/{}",
            dest.trim_end_matches('/'),
            fileattrs::split_path(name).1
        );
        st = ctx.session.stat(&dest, a.follow, true).await?;
    }
    let mut mkdir = vec![];
    if !st.exists {
        let (dir, _) = fileattrs::split_path(&dest);
        if !dir.is_empty() {
            let dst = ctx.session.stat(dir, true, false).await?;
            if !dst.exists {
                if parents_ok {
                    // a directory copy creates it first
                } else if !make_parent && !ctx.check {
                    return failed(format!("Destination directory {dir} does not exist"));
                }
                // In check mode a missing directory is usually one an earlier task (`file:
                // state=directory`) would have made: Ansible's copy/template action reports
                // "changed" without asking the module then, so kiln does too.
                mkdir = fileattrs::missing_parents(ctx, dir).await?;
            }
        }
    }
    let mut base = Outcome::ok().with("dest", dest.as_str());
    if st.exists && !a.force {
        return Ok(Query::Done(base.with_msg("file already exists")));
    }
    let sha1 = source.sha1();
    let content_same = st.exists && st.checksum.as_deref() == Some(&source.sha256());
    let mode = match &a.mode {
        None => None,
        Some(Mode::Preserve) => source.mode,
        Some(m) => Some(
            m.resolve(if st.exists { st.mode } else { 0o644 }, false)
                .map_err(ModuleError::Args)?,
        ),
    };
    let attrs = Attrs {
        mode: mode.map(Mode::Bits),
        owner: a.owner.clone(),
        group: a.group.clone(),
    };
    if content_same && !fileattrs::attrs_differ(&attrs, &st)? {
        base = base.with("checksum", sha1).with("path", dest.as_str());
        fileattrs::add_path_info(&mut base.data, &st);
        return Ok(Query::Done(base));
    }
    let mut preview = Outcome::changed()
        .with("dest", dest.as_str())
        .with("checksum", sha1)
        .with("md5sum", source.md5())
        .with("size", Value::Int(source.size() as i64))
        .with("state", "file");
    if let Some(s) = &source.name {
        preview = preview.with("src", s.as_str());
    }
    if let Some(m) = mode {
        preview = preview.with("mode", fileattrs::mode_str(m));
    }
    // a streamed file is too big for a diff (Ansible: "file too large to diff")
    // (and so is a large destination: not read into memory)
    if ctx.diff
        && !content_same
        && source.file.is_none()
        && (!st.exists || st.size <= STREAM_THRESHOLD)
    {
        let before = if st.exists {
            fileattrs::read_opt(ctx, &dest).await?.unwrap_or_default()
        } else {
            vec![]
        };
        if let (Some(b), Some(af)) = (
            fileattrs::diff_text(&before),
            fileattrs::diff_text(&source.data),
        ) {
            preview = preview.with_diff(Diff {
                before_header: Some(dest.clone()),
                after_header: Some(
                    source
                        .header
                        .clone()
                        // Ansible shows the destination for `content`
                        .unwrap_or_else(|| dest.clone()),
                ),
                before: b,
                after: af,
            });
        }
    }
    Ok(Query::Change {
        plan: FilePlan {
            dest,
            data: source.data,
            file: source.file,
            mode,
            owner: a.owner.clone(),
            group: a.group.clone(),
            content_changes: !content_same,
            exists: st.exists,
            backup: a.backup,
            validate: a.validate,
            mkdir,
            dir_attrs: Attrs {
                mode: a.directory_mode.clone(),
                owner: a.owner.clone(),
                group: a.group.clone(),
            },
            src: source.name,
            replace_link: st.kind == "link",
        },
        preview,
    })
}

async fn apply(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    match p {
        Plan::File(f) => apply_file(f, ctx).await,
        Plan::Tree(t) => {
            for d in &t.dirs {
                ctx.session.mkdir(d, None).await?;
                fileattrs::apply_attrs(ctx, d, &t.dir_attrs, true, None, false).await?;
            }
            for f in t.files {
                let o = apply_file(f, ctx).await?;
                if o.failed {
                    return Ok(o);
                }
            }
            let mut out = t.result;
            out.diff.clear();
            Ok(out)
        }
    }
}

async fn apply_file(p: FilePlan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    if p.content_changes {
        if let (Some(_), Some(f)) = (&p.validate, &p.file) {
            return Ok(Outcome::failed(format!(
                "validate is not supported for a file over {} MiB ({})",
                STREAM_THRESHOLD >> 20,
                f.path.display()
            )));
        }
        if let Some(v) = &p.validate {
            if let Some(fail) = fileattrs::validate(ctx, v, &p.data, &p.dest).await? {
                return Ok(fail);
            }
        }
    }
    let mut out = Outcome::changed();
    if p.backup && p.exists && p.content_changes {
        let b = fileattrs::backup(ctx, &p.dest).await?;
        out = out.with("backup_file", b);
    }
    if p.replace_link {
        ctx.session.remove(&p.dest, false).await?;
    }
    if let Some(leaf) = p.mkdir.last() {
        ctx.session.mkdir(leaf, None).await?;
        for d in &p.mkdir {
            fileattrs::apply_attrs(ctx, d, &p.dir_attrs, true, None, false).await?;
        }
    }
    let (sha1, md5) = match &p.file {
        Some(f) => (f.sha1.clone(), f.md5.clone()),
        None => (fileattrs::sha1_hex(&p.data), fileattrs::md5_hex(&p.data)),
    };
    let req = WriteRequest {
        path: p.dest.clone(),
        content: p.data,
        mode: p.mode,
        owner: p.owner,
        group: p.group,
        check: false,
    };
    let written = match &p.file {
        Some(f) if f.on_host => {
            ctx.session
                .copy_on_host(&f.path.to_string_lossy(), req)
                .await
        }
        Some(f) => ctx.session.write_file_from(&f.path, req).await,
        None => ctx.session.write_file(req).await,
    };
    let w = written.map_err(|e| match e {
        crate::transport::TransportError::Remote { msg, .. } => ModuleError::Failed(msg),
        other => other.into(),
    })?;
    out.changed = w.changed;
    let st = fileattrs::stat(ctx, &p.dest, true).await?;
    out = out
        .with("dest", p.dest.as_str())
        .with("checksum", sha1)
        .with("md5sum", md5);
    if let Some(s) = p.src {
        out = out.with("src", s);
    }
    fileattrs::add_path_info(&mut out.data, &st);
    Ok(out)
}

impl Module for Copy {
    const NAMES: &'static [&'static str] = &["copy", "ansible.builtin.copy", "ansible.legacy.copy"];
    const DIFF_LIST: bool = true;
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        query(a, None, ctx).await
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply(p, ctx).await
    }
}

/// Arguments of `template` that only the engine's rendering reads; [`copy_content`] ignores them.
const TEMPLATE_ONLY: &[&str] = &[
    "src",
    "newline_sequence",
    "trim_blocks",
    "lstrip_blocks",
    "block_start_string",
    "block_end_string",
    "variable_start_string",
    "variable_end_string",
    "comment_start_string",
    "comment_end_string",
    "output_encoding",
];

/// `template`'s write step: put already-rendered `content` at `args.dest` exactly as `copy` with
/// `content` would (same change detection, `mode`/`owner`/`group`/`backup`/`force`/`validate`,
/// check mode, diff and result keys). `args` are the template task's arguments; rendering-only
/// ones (`src`, `trim_blocks`, `newline_sequence`, ...) are ignored, and `src` (the template's
/// path) is reported as `src` and used as the diff's after-header. Returns `Ok(None)` never;
/// the `Option` mirrors [`super::DynModule::run`] so the engine handles both alike.
pub async fn copy_content(
    args: &Map,
    content: Vec<u8>,
    ctx: &Ctx,
) -> Result<Option<Outcome>, ModuleError> {
    let mut rest = args.clone();
    for k in TEMPLATE_ONLY {
        rest.shift_remove(*k);
    }
    let a: Args = args::decode("template", &rest)?;
    let name = args
        .get("src")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string());
    let found = name.as_deref().and_then(|n| ctx.find_local("templates", n));
    let source = Source {
        data: content,
        file: None,
        mode: found
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.permissions().mode() & 0o7777
            }),
        header: found
            .map(|p| p.to_string_lossy().into_owned())
            .or_else(|| name.clone()),
        name,
    };
    match query(a, Some(source), ctx).await? {
        Query::Done(o) => Ok(Some(o)),
        Query::Change { preview, .. } if ctx.check => Ok(Some(preview)),
        Query::Change { plan, preview } => {
            let mut o = apply(plan, ctx).await?;
            if o.diff.is_empty() {
                o.diff = preview.diff;
            }
            Ok(Some(o))
        }
        Query::Opaque(_) => Ok(None),
    }
}
