//! Small helpers the system modules (user, group, apt, sysctl, mount, ...) share: run a program
//! and turn a non-zero exit into the task's failure with its stderr, read an optional file, look
//! up passwd/group entries, and find which of several programs a host has.
//!
//! Everything goes through `ctx.session` with an argv (never a shell line built from arguments),
//! so a user name or a package name can never be read as shell syntax.

use crate::modules::{Ctx, ModuleError};
use crate::transport::{ExecRequest, ExecResult, RemoteErrorKind, TransportError};

/// Run `argv` with the task's environment plus `env`; a program that cannot be started is a
/// module failure naming it, not a transport error.
pub async fn run_env(
    ctx: &Ctx,
    argv: &[String],
    env: &[(&str, &str)],
) -> Result<ExecResult, ModuleError> {
    let mut e = ctx.env.clone();
    e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    match ctx
        .exec(ExecRequest {
            argv: argv.to_vec(),
            env: e,
            ..Default::default()
        })
        .await
    {
        Ok(r) => Ok(r),
        Err(TransportError::Remote { msg, .. }) => Err(ModuleError::Failed(format!(
            "cannot run {}: {msg}",
            argv.first().map(String::as_str).unwrap_or("")
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Run `argv`; return its result whatever the exit status.
pub async fn run(ctx: &Ctx, argv: &[String]) -> Result<ExecResult, ModuleError> {
    run_env(ctx, argv, &[]).await
}

/// Run `argv` and fail the task with its stderr (or stdout) when it exits non-zero.
pub async fn run_ok(ctx: &Ctx, argv: &[String]) -> Result<ExecResult, ModuleError> {
    let r = run(ctx, argv).await?;
    check_rc(argv, r)
}

/// Turn a non-zero exit into [`ModuleError::Failed`] with the program's own words.
pub fn check_rc(argv: &[String], r: ExecResult) -> Result<ExecResult, ModuleError> {
    if r.rc == 0 {
        return Ok(r);
    }
    let err = r.stderr_text();
    let err = if err.trim().is_empty() {
        r.stdout_text()
    } else {
        err
    };
    Err(ModuleError::Failed(format!(
        "{} failed (rc {}): {}",
        shell_words::join(argv),
        r.rc,
        err.trim()
    )))
}

/// `argv` from string slices.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A file's text, or `None` when it does not exist.
pub async fn read_opt(ctx: &Ctx, path: &str) -> Result<Option<String>, ModuleError> {
    match ctx.session.read_file(path).await {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(TransportError::Remote {
            kind: RemoteErrorKind::NotFound,
            ..
        }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a program is on the host's PATH (or in the sbin directories root's PATH has).
pub async fn has_program(ctx: &Ctx, name: &str) -> Result<Option<String>, ModuleError> {
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let p = format!("{dir}/{name}");
        let st = ctx.session.stat(&p, true, false).await?;
        if st.exists && st.kind == "file" && st.mode & 0o111 != 0 {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// One `/etc/passwd` entry (as `getent passwd` prints it).
#[derive(Debug, Clone, PartialEq)]
pub struct Passwd {
    pub name: String,
    pub uid: i64,
    pub gid: i64,
    pub comment: String,
    pub home: String,
    pub shell: String,
}

impl Passwd {
    pub fn parse(line: &str) -> Option<Passwd> {
        let f: Vec<&str> = line.trim_end_matches('\n').split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(Passwd {
            name: f[0].into(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            comment: f[4].into(),
            home: f[5].into(),
            shell: f[6].into(),
        })
    }
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEnt {
    pub name: String,
    pub gid: i64,
    pub members: Vec<String>,
}

impl GroupEnt {
    pub fn parse(line: &str) -> Option<GroupEnt> {
        let f: Vec<&str> = line.trim_end_matches('\n').split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(GroupEnt {
            name: f[0].into(),
            gid: f[2].parse().ok()?,
            members: f[3]
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        })
    }
}

/// `getent DB KEY` → the first line, or `None` when there is no such entry (rc 2).
async fn getent(ctx: &Ctx, db: &str, key: &str) -> Result<Option<String>, ModuleError> {
    let r = run(ctx, &argv(&["getent", db, key])).await?;
    match r.rc {
        0 => Ok(r.stdout_text().lines().next().map(String::from)),
        2 => Ok(None),
        _ => Err(check_rc(&argv(&["getent", db, key]), r)
            .err()
            .unwrap_or_else(|| ModuleError::Failed(format!("getent {db} {key} failed")))),
    }
}

pub async fn passwd(ctx: &Ctx, name: &str) -> Result<Option<Passwd>, ModuleError> {
    Ok(getent(ctx, "passwd", name)
        .await?
        .and_then(|l| Passwd::parse(&l)))
}

pub async fn group(ctx: &Ctx, name: &str) -> Result<Option<GroupEnt>, ModuleError> {
    Ok(getent(ctx, "group", name)
        .await?
        .and_then(|l| GroupEnt::parse(&l)))
}

/// Every group in the host's group database (for supplementary-group membership).
pub async fn all_groups(ctx: &Ctx) -> Result<Vec<GroupEnt>, ModuleError> {
    let r = run_ok(ctx, &argv(&["getent", "group"])).await?;
    Ok(r.stdout_text()
        .lines()
        .filter_map(GroupEnt::parse)
        .collect())
}

/// The parent of a path, as Python's `os.path.dirname` gives it (`/` for `/x`).
pub fn dirname(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries() {
        let p = Passwd::parse("kiln:x:1000:1000:Kiln,,,:/home/kiln:/bin/bash\n").unwrap();
        assert_eq!((p.uid, p.gid, p.home.as_str()), (1000, 1000, "/home/kiln"));
        assert_eq!(p.comment, "Kiln,,,");
        assert!(Passwd::parse("bad:line").is_none());
        let g = GroupEnt::parse("sudo:x:27:kiln,bob").unwrap();
        assert_eq!(g.members, vec!["kiln", "bob"]);
        assert!(GroupEnt::parse("users:x:100:").unwrap().members.is_empty());
        assert_eq!(dirname("/home/x/.ssh"), "/home/x");
        assert_eq!(dirname("/x"), "/");
    }
}
