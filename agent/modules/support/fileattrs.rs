//! What the file modules share: mode/owner/group on a path (with Ansible's result keys), backups
//! named as Ansible names them, text diffs with Ansible's headers, `validate`, checksums, reading a
//! file that may be absent, and listing a tree on the host.
//!
//! Kept in one place so `copy`, `file`, `lineinfile`, ... report attribute changes, backups and
//! diffs identically, as Ansible's `AnsibleModule` helpers make its modules do.

use super::args::Mode;
use crate::modules::{Ctx, Diff, ModuleError, Outcome};
use crate::transport::{AttrsRequest, ExecRequest, RemoteErrorKind, StatResult, TransportError};
use crate::value::{Map, Value};
use sha1::Digest as _;

/// Ansible's largest file shown in a diff (`DEFAULT_MAX_FILE_SIZE_FOR_DIFF`, 104448 bytes).
pub const MAX_DIFF_SIZE: usize = 104_448;

/// Ansible's `'0%03o' % mode`: `0644`, `0755`, `04755`.
pub fn mode_str(bits: u32) -> String {
    format!("0{:03o}", bits & 0o7777)
}

/// Ansible's `checksum`: sha1, hex.
pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(data))
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Ansible's state name for a stat kind.
pub fn state_of(st: &StatResult) -> &'static str {
    if !st.exists {
        return "absent";
    }
    match st.kind.as_str() {
        "directory" => "directory",
        "link" => "link",
        _ => "file",
    }
}

/// Ansible's `add_path_info`: uid, gid, owner, group, mode, state, size.
pub fn add_path_info(data: &mut Map, st: &StatResult) {
    if !st.exists {
        data.insert("state".into(), Value::str("absent"));
        return;
    }
    data.insert("uid".into(), Value::Int(st.uid.into()));
    data.insert("gid".into(), Value::Int(st.gid.into()));
    data.insert(
        "owner".into(),
        Value::Str(st.owner.clone().unwrap_or_else(|| st.uid.to_string())),
    );
    data.insert(
        "group".into(),
        Value::Str(st.group.clone().unwrap_or_else(|| st.gid.to_string())),
    );
    data.insert("mode".into(), Value::Str(mode_str(st.mode)));
    data.insert("state".into(), Value::str(state_of(st)));
    data.insert("size".into(), Value::Int(st.size as i64));
}

/// The common file arguments (`mode`, `owner`, `group`) of one module call.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    pub mode: Option<Mode>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl Attrs {
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.owner.is_none() && self.group.is_none()
    }

    /// The permission bits wanted for a path whose current bits are `current`.
    pub fn bits(&self, current: u32, is_dir: bool) -> Result<Option<u32>, ModuleError> {
        match &self.mode {
            None => Ok(None),
            Some(m) => m
                .resolve(current, is_dir)
                .map(Some)
                .map_err(ModuleError::Args),
        }
    }
}

/// What applying [`Attrs`] to a path did (or would do, in check mode).
#[derive(Debug, Clone)]
pub struct AttrChange {
    pub changed: bool,
    pub before: StatResult,
    pub after: StatResult,
}

impl AttrChange {
    /// Ansible's diff dict entries for mode/owner/group (`mode: '0644'`, `owner: 0`, ...).
    pub fn diff_into(&self, before: &mut Map, after: &mut Map) {
        if self.before.mode != self.after.mode {
            before.insert("mode".into(), Value::Str(mode_str(self.before.mode)));
            after.insert("mode".into(), Value::Str(mode_str(self.after.mode)));
        }
        if self.before.uid != self.after.uid {
            before.insert("owner".into(), Value::Int(self.before.uid.into()));
            after.insert("owner".into(), Value::Int(self.after.uid.into()));
        }
        if self.before.gid != self.after.gid {
            before.insert("group".into(), Value::Int(self.before.gid.into()));
            after.insert("group".into(), Value::Int(self.after.gid.into()));
        }
    }
}

/// Set mode/owner/group on an existing path (`follow`: through a link). `current` is the path's
/// stat when the caller has it (saves a round trip for symbolic modes).
pub async fn apply_attrs(
    ctx: &Ctx,
    path: &str,
    attrs: &Attrs,
    follow: bool,
    current: Option<&StatResult>,
    check: bool,
) -> Result<AttrChange, ModuleError> {
    let mode = match &attrs.mode {
        None => None,
        Some(Mode::Bits(b)) => Some(*b),
        Some(_) => {
            let st = match current {
                Some(s) => s.clone(),
                None => ctx.session.stat(path, follow, false).await?,
            };
            attrs.bits(st.mode, st.kind == "directory")?
        }
    };
    let (changed, before, after) = ctx
        .session
        .set_attrs(AttrsRequest {
            path: path.to_string(),
            mode,
            owner: attrs.owner.clone(),
            group: attrs.group.clone(),
            follow,
            check,
        })
        .await
        .map_err(|e| match e {
            TransportError::Remote { msg, .. } => ModuleError::Failed(msg),
            other => other.into(),
        })?;
    Ok(AttrChange {
        changed,
        before,
        after,
    })
}

/// Whether `attrs` would change `st` (mode bits, or owner/group as names or numbers).
pub fn attrs_differ(attrs: &Attrs, st: &StatResult) -> Result<bool, ModuleError> {
    if let Some(b) = attrs.bits(st.mode, st.kind == "directory")? {
        if st.kind != "link" && b & 0o7777 != st.mode {
            return Ok(true);
        }
    }
    let differs = |want: &Option<String>, name: &Option<String>, id: u32| {
        want.as_ref()
            .is_some_and(|w| Some(w) != name.as_ref() && *w != id.to_string())
    };
    Ok(differs(&attrs.owner, &st.owner, st.uid) || differs(&attrs.group, &st.group, st.gid))
}

/// Copy `path` to Ansible's backup name `path.PID.YYYY-MM-DD@HH:MM:SS~` on the host (keeping mode,
/// owner and times) and return that name.
pub async fn backup(ctx: &Ctx, path: &str) -> Result<String, ModuleError> {
    let r = ctx
        .exec(ExecRequest {
            argv: vec![
                "sh".into(),
                "-c".into(),
                r#"b="$1.$2.$(date +%Y-%m-%d@%H:%M:%S)~"; cp -p -- "$1" "$b" && printf %s "$b""#
                    .into(),
                "sh".into(),
                path.into(),
                ctx.session.agent_pid.to_string(),
            ],
            ..Default::default()
        })
        .await?;
    if r.rc != 0 {
        return Err(ModuleError::Failed(format!(
            "Could not make backup of {path}: {}",
            r.stderr_text().trim()
        )));
    }
    Ok(r.stdout_text())
}

/// A file's bytes, or None when it does not exist.
pub async fn read_opt(ctx: &Ctx, path: &str) -> Result<Option<Vec<u8>>, ModuleError> {
    match ctx.session.read_file(path).await {
        Ok(b) => Ok(Some(b)),
        Err(TransportError::Remote {
            kind: RemoteErrorKind::NotFound,
            ..
        }) => Ok(None),
        Err(TransportError::Remote { msg, .. }) => Err(ModuleError::Failed(msg)),
        Err(e) => Err(e.into()),
    }
}

/// The diff of a line-editing module: headers `PATH (content)`, as lineinfile/replace/... show.
pub fn content_diff(path: &str, before: &str, after: &str) -> Diff {
    Diff {
        before_header: Some(format!("{path} (content)")),
        after_header: Some(format!("{path} (content)")),
        before: before.to_string(),
        after: after.to_string(),
    }
}

/// A dict diff (`file`'s `{path, state, mode}`), rendered as Ansible's callback renders one:
/// JSON with sorted keys, indent 4, and a final newline.
pub fn dict_diff(before: &Map, after: &Map) -> Diff {
    fn render(m: &Map) -> String {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        let mut sorted = serde_json::Map::new();
        for k in keys {
            sorted.insert(k.clone(), m[k].to_json(false));
        }
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        let _ = serde::Serialize::serialize(&serde_json::Value::Object(sorted), &mut ser);
        let mut s = String::from_utf8_lossy(&buf).into_owned();
        s.push('\n');
        s
    }
    Diff {
        before_header: None,
        after_header: None,
        before: render(before),
        after: render(after),
    }
}

/// Run `validate` (a command with `%s`) against `content` written to a temp file next to `dest`.
/// Returns a failed outcome (Ansible's `failed to validate`) or None when it passed.
pub async fn validate(
    ctx: &Ctx,
    cmd: &str,
    content: &[u8],
    dest: &str,
) -> Result<Option<Outcome>, ModuleError> {
    if !cmd.contains("%s") {
        return Ok(Some(Outcome::failed(format!(
            "validate must contain %s: {cmd}"
        ))));
    }
    let (dir, base) = split_path(dest);
    let tmp = format!(
        "{}/.{}.kiln-validate-{}",
        if dir.is_empty() { "." } else { dir },
        base,
        ctx.session.agent_pid
    );
    ctx.session
        .write_file(crate::transport::WriteRequest {
            path: tmp.clone(),
            content: content.to_vec(),
            mode: Some(0o600),
            ..Default::default()
        })
        .await?;
    let line = cmd.replace("%s", &shell_words::quote(&tmp));
    let argv = match shell_words::split(&line) {
        Ok(a) if !a.is_empty() => a,
        _ => {
            let _ = ctx.session.remove(&tmp, false).await;
            return Ok(Some(Outcome::failed(format!(
                "cannot split the validate command {cmd:?}"
            ))));
        }
    };
    let r = ctx
        .exec(ExecRequest {
            argv,
            env: ctx.env.clone(),
            ..Default::default()
        })
        .await;
    let _ = ctx.session.remove(&tmp, false).await;
    let r = r?;
    if r.rc != 0 {
        return Ok(Some(
            Outcome::failed("failed to validate")
                .with("exit_status", Value::Int(r.rc.into()))
                .with("stdout", r.stdout_text())
                .with("stderr", r.stderr_text()),
        ));
    }
    Ok(None)
}

/// (`/a/b`, `c`) for `/a/b/c`; ("", "c") for `c`.
pub fn split_path(p: &str) -> (&str, &str) {
    let t = p.trim_end_matches('/');
    match t.rfind('/') {
        Some(0) => ("/", &t[1..]),
        Some(i) => (&t[..i], &t[i + 1..]),
        None => ("", t),
    }
}

/// One entry of a tree listed on the host (GNU find's `-printf`).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub path: String,
    /// `f`, `d`, `l`, `p`, `s`, `b`, `c`.
    pub kind: char,
    pub mode: u32,
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    pub owner: String,
    pub group: String,
    pub mtime: f64,
    pub atime: f64,
    pub ctime: f64,
    pub inode: u64,
    pub nlink: u64,
    pub dev: u64,
    pub link_target: String,
    /// Depth below the root (1 = a direct child).
    pub depth: usize,
}

const FIELDS: usize = 16;

/// Everything under `root` (not `root` itself), depth-first; `max_depth` None = unlimited.
pub async fn walk(
    ctx: &Ctx,
    root: &str,
    max_depth: Option<usize>,
    follow: bool,
) -> Result<Vec<Entry>, ModuleError> {
    let mut argv: Vec<String> = vec!["find".into()];
    if follow {
        argv.push("-L".into());
    }
    argv.push(root.into());
    argv.extend(["-mindepth".into(), "1".into()]);
    if let Some(d) = max_depth {
        argv.extend(["-maxdepth".into(), d.to_string()]);
    }
    argv.extend([
        "-printf".into(),
        "%p\\0%y\\0%m\\0%s\\0%U\\0%G\\0%u\\0%g\\0%T@\\0%A@\\0%C@\\0%i\\0%n\\0%D\\0%l\\0%d\\0"
            .into(),
    ]);
    let r = ctx
        .exec(ExecRequest {
            argv,
            ..Default::default()
        })
        .await?;
    if r.rc != 0 && r.stdout.is_empty() {
        return Err(ModuleError::Failed(format!(
            "cannot list {root}: {}",
            r.stderr_text().trim()
        )));
    }
    Ok(parse_walk(&r.stdout))
}

fn parse_walk(out: &[u8]) -> Vec<Entry> {
    let parts: Vec<String> = out
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let n = FIELDS;
    parts
        .chunks(n)
        .filter(|c| c.len() == n)
        .map(|c| Entry {
            path: c[0].clone(),
            kind: c[1].chars().next().unwrap_or('f'),
            mode: u32::from_str_radix(&c[2], 8).unwrap_or(0),
            size: c[3].parse().unwrap_or(0),
            uid: c[4].parse().unwrap_or(0),
            gid: c[5].parse().unwrap_or(0),
            owner: c[6].clone(),
            group: c[7].clone(),
            mtime: c[8].parse().unwrap_or(0.0),
            atime: c[9].parse().unwrap_or(0.0),
            ctime: c[10].parse().unwrap_or(0.0),
            inode: c[11].parse().unwrap_or(0),
            nlink: c[12].parse().unwrap_or(0),
            dev: c[13].parse().unwrap_or(0),
            link_target: c[14].clone(),
            depth: c[15].parse().unwrap_or(1),
        })
        .collect()
}

/// The ancestors of `path` (and `path`) that do not exist, outermost first.
pub async fn missing_parents(ctx: &Ctx, path: &str) -> Result<Vec<String>, ModuleError> {
    let mut missing = vec![];
    let mut cur = path.trim_end_matches('/').to_string();
    while !cur.is_empty() && cur != "/" {
        if ctx.session.stat(&cur, true, false).await?.exists {
            break;
        }
        missing.push(cur.clone());
        let (dir, _) = split_path(&cur);
        cur = dir.to_string();
    }
    missing.reverse();
    Ok(missing)
}

/// A stat of a path that must succeed, as a module failure otherwise.
pub async fn stat(ctx: &Ctx, path: &str, follow: bool) -> Result<StatResult, ModuleError> {
    ctx.session
        .stat(path, follow, false)
        .await
        .map_err(|e| match e {
            TransportError::Remote { msg, .. } => ModuleError::Failed(msg),
            other => other.into(),
        })
}

/// Text of file content for a diff; None when binary or too large to show.
pub fn diff_text(b: &[u8]) -> Option<String> {
    if b.len() > MAX_DIFF_SIZE || b.contains(&0) {
        return None;
    }
    Some(String::from_utf8_lossy(b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_modes() {
        assert_eq!(mode_str(0o644), "0644");
        assert_eq!(mode_str(0o4755), "04755");
        assert_eq!(mode_str(0o7), "0007");
        assert_eq!(split_path("/a/b/c"), ("/a/b", "c"));
        assert_eq!(split_path("/c"), ("/", "c"));
        assert_eq!(split_path("c"), ("", "c"));
        assert_eq!(split_path("/a/b/"), ("/a", "b"));
        assert_eq!(
            sha1_hex(b"hello\n"),
            "f572d396fae9206628714fb2ce00f72e94f2258f"
        );
        assert_eq!(md5_hex(b"hello\n"), "b1946ac92492d2347c6235b4d2611184");
    }

    #[test]
    fn dict_diff_renders_like_ansible() {
        let mut b = Map::new();
        b.insert("state".into(), Value::str("absent"));
        b.insert("path".into(), Value::str("/x"));
        let d = dict_diff(&b, &b);
        assert_eq!(
            d.before,
            "{\n    \"path\": \"/x\",\n    \"state\": \"absent\"\n}\n"
        );
    }

    #[test]
    fn walk_output_parses() {
        let rec = |f: &[&str]| f.iter().map(|x| format!("{x}\0")).collect::<String>();
        let out = rec(&[
            "/r/a", "f", "644", "3", "0", "0", "root", "root", "1.5", "1.0", "1.0", "12", "1",
            "2049", "", "1",
        ]) + &rec(&[
            "/r/l", "l", "777", "1", "0", "0", "root", "root", "1", "1", "1", "13", "1", "2049",
            "a", "1",
        ]);
        let out = out.as_bytes();
        let e = parse_walk(out);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].path, "/r/a");
        assert_eq!(e[0].mode, 0o644);
        assert_eq!(e[0].mtime, 1.5);
        assert_eq!(e[1].kind, 'l');
        assert_eq!(e[1].link_target, "a");
    }
}

/// The first step of the whole-file editors (blockinfile, replace): stat the file and refuse a
/// directory, or a missing file unless `create`, with Ansible's messages and rc.
pub async fn stat_editable(
    ctx: &Ctx,
    path: &str,
    create: bool,
) -> Result<Result<StatResult, Outcome>, ModuleError> {
    let st = ctx.session.stat(path, true, false).await?;
    if st.kind == "directory" {
        return Ok(Err(Outcome::failed(format!(
            "Path {path} is a directory !"
        ))
        .with("rc", Value::Int(256))));
    }
    if !st.exists && !create {
        return Ok(Err(Outcome::failed(format!(
            "Path {path} does not exist !"
        ))
        .with("rc", Value::Int(257))));
    }
    Ok(Ok(st))
}

/// The editors report the backup they made as `backup_file` (and nothing when none was made).
pub fn backup_as_backup_file(o: &mut Outcome) {
    if let Some(Value::Str(b)) = o.data.shift_remove("backup") {
        if !b.is_empty() {
            o.data.insert("backup_file".into(), Value::Str(b));
        }
    }
}
