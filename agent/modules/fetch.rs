//! `fetch`: copy a file from the host to the controller, at `dest/<inventory_hostname>/<src path>`
//! (or exactly `dest` with `flat: yes`), as Ansible's fetch action does.
//!
//! Ansible skips fetch in check mode, so the query step returns an opaque plan (the engine skips
//! it in check mode) after checking what it can. The file is read over the agent channel, compared
//! by sha1 with the controller's copy, and written only when it differs; results carry `dest`,
//! `checksum`, `md5sum`, `remote_checksum`, `remote_md5sum: null`, or `file` when nothing changed.
//! A relative `dest` is taken relative to the last controller search directory (the playbook's).

use super::support::args;
use super::support::fileattrs;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;
use std::path::{Component, Path, PathBuf};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    pub src: String,
    #[serde(deserialize_with = "args::string")]
    pub dest: String,
    #[serde(default = "crate::modules::support::args::yes", deserialize_with = "args::bool")]
    pub fail_on_missing: bool,
    #[serde(default = "crate::modules::support::args::yes", deserialize_with = "args::bool")]
    pub validate_checksum: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub flat: bool,
}

pub struct Fetch;

/// `os.path.normpath` for the local destination.
fn normpath(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Where the fetched file goes on the controller.
pub fn local_dest(
    dest: &str,
    src: &str,
    host: &str,
    flat: bool,
    base: &Path,
) -> Result<PathBuf, String> {
    let abs = |p: &str| {
        if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            base.join(p)
        }
    };
    if flat {
        if dest.ends_with('/') {
            let name = fileattrs::split_path(src).1;
            let d = abs(dest).join(name);
            if d.is_dir() {
                return Err(format!(
                    "calculated dest '{}' is an existing directory, use another path that does not point to an existing directory",
                    d.display()
                ));
            }
            return Ok(normpath(&d));
        }
        if abs(dest).is_dir() {
            return Err("dest is an existing directory, use a trailing slash if you want to fetch src into that directory".into());
        }
        return Ok(normpath(&abs(dest)));
    }
    let d = format!("{}/{host}/{src}", abs(dest).display());
    let d = normpath(Path::new(&d));
    if !d.starts_with(normpath(&abs(dest))) {
        return Err(format!(
            "Detected directory traversal, expected to be contained in '{dest}' but got '{}'",
            d.display()
        ));
    }
    Ok(d)
}

/// What apply fetches; None only in check mode, where the engine skips fetch as Ansible does.
pub type Plan = Option<Fetching>;

pub struct Fetching {
    src: String,
    dest: PathBuf,
    validate: bool,
}

impl Module for Fetch {
    const NAMES: &'static [&'static str] =
        &["fetch", "ansible.builtin.fetch", "ansible.legacy.fetch"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        if ctx.check {
            return Ok(Query::Opaque(None));
        }
        let st = ctx.session.stat(&a.src, true, false).await?;
        let missing = |msg: &str| -> Outcome {
            if a.fail_on_missing {
                Outcome::failed(msg).with("file", a.src.as_str())
            } else {
                Outcome::ok()
                    .with_msg(format!("{msg}, not transferring, ignored"))
                    .with("file", a.src.as_str())
            }
        };
        if !st.exists {
            return Ok(Query::Done(missing("the remote file does not exist")));
        }
        if st.kind == "directory" {
            return Ok(Query::Done(missing(
                "remote file is a directory, fetch cannot work on directories",
            )));
        }
        let base = ctx
            .search
            .last()
            .cloned()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        let dest = match local_dest(&a.dest, &a.src, &ctx.host, a.flat, &base) {
            Ok(d) => d,
            Err(m) => return Ok(Query::Done(Outcome::failed(m))),
        };
        Ok(Query::Opaque(Some(Fetching {
            src: a.src,
            dest,
            validate: a.validate_checksum,
        })))
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let Some(p) = p else {
            return Ok(Outcome::ok().with_msg("check mode not (yet) supported for this module"));
        };
        let data = ctx.session.read_file(&p.src).await?;
        let remote = fileattrs::sha1_hex(&data);
        let dest_s = p.dest.to_string_lossy().into_owned();
        let local = std::fs::read(&p.dest).ok();
        if let Some(l) = &local {
            if fileattrs::sha1_hex(l) == remote {
                return Ok(Outcome::ok()
                    .with("md5sum", fileattrs::md5_hex(l))
                    .with("file", p.src)
                    .with("dest", dest_s)
                    .with("checksum", remote));
            }
        }
        let write = || -> std::io::Result<()> {
            if let Some(dir) = p.dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&p.dest, &data)
        };
        if let Err(e) = write() {
            return Ok(Outcome::failed(format!("Failed to fetch the file: {e}")));
        }
        let new = std::fs::read(&p.dest).unwrap_or_default();
        let new_sha = fileattrs::sha1_hex(&new);
        if p.validate && new_sha != remote {
            return Ok(Outcome::failed("checksum mismatch")
                .with("file", p.src)
                .with("dest", dest_s)
                .with("checksum", new_sha)
                .with("remote_checksum", remote));
        }
        Ok(Outcome::changed()
            .with("md5sum", fileattrs::md5_hex(&new))
            .with("dest", dest_s)
            .with("remote_md5sum", Value::Null)
            .with("checksum", new_sha)
            .with("remote_checksum", remote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_layout() {
        let base = Path::new("/pb");
        assert_eq!(
            local_dest("out", "/etc/hosts", "h1", false, base).unwrap(),
            PathBuf::from("/pb/out/h1/etc/hosts")
        );
        assert_eq!(
            local_dest("/o/", "/etc/hosts", "h1", true, base).unwrap(),
            PathBuf::from("/o/hosts")
        );
        assert_eq!(
            local_dest("/o/x.txt", "/etc/hosts", "h1", true, base).unwrap(),
            PathBuf::from("/o/x.txt")
        );
        assert!(local_dest("/o", "../../etc/x", "h", false, base).is_err());
    }
}
