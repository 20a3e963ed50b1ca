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
use sha2::Digest as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    pub src: String,
    #[serde(deserialize_with = "args::string")]
    pub dest: String,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    pub fail_on_missing: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
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
        let dest_s = p.dest.to_string_lossy().into_owned();
        // the host's sha1, computed there: an unchanged file is not transferred at all
        let remote = ctx
            .session
            .stat_detail(&p.src, true, Some("sha1".into()), false)
            .await?
            .checksum;
        if let (Some(r), Ok((local_sha, local_md5))) = (&remote, local_digests(&p.dest)) {
            if *r == local_sha {
                return Ok(Outcome::ok()
                    .with("md5sum", local_md5)
                    .with("file", p.src)
                    .with("dest", dest_s)
                    .with("checksum", local_sha));
            }
        }
        // streamed into a temp file beside dest (hashed as it arrives), renamed over dest at the
        // end: dest is the old file or the whole new one, never a part, and memory stays bounded
        let failed = |e: &dyn std::fmt::Display| {
            Ok(Outcome::failed(format!("Failed to fetch the file: {e}")))
        };
        let dir = match p.dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return failed(&format!("cannot create {}: {e}", dir.display()));
        }
        let name = p
            .dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tmp = match tempfile::Builder::new()
            .prefix(&format!(".{name}.kiln-tmp-"))
            .tempfile_in(&dir)
        {
            Ok(t) => t,
            Err(e) => return failed(&format!("cannot write in {}: {e}", dir.display())),
        };
        let (mut s1, mut m5) = (sha1::Sha1::new(), md5::Md5::new());
        let got = ctx
            .session
            .read_file_to(&p.src, |b| {
                tmp.write_all(b)?;
                s1.update(b);
                m5.update(b);
                Ok(())
            })
            .await;
        if let Err(e) = got {
            // the temp file is removed when `tmp` drops
            return match e {
                crate::transport::TransportError::Remote { msg, .. } => failed(&msg),
                other => Err(other.into()),
            };
        }
        let new_sha = hex::encode(s1.finalize());
        let new_md5 = hex::encode(m5.finalize());
        let remote = remote.unwrap_or_else(|| new_sha.clone());
        if p.validate && new_sha != remote {
            // stricter than Ansible, which leaves the mismatching file at dest: dest is untouched
            return Ok(Outcome::failed("checksum mismatch")
                .with("file", p.src)
                .with("dest", dest_s)
                .with("checksum", new_sha)
                .with("remote_checksum", remote));
        }
        // the mode a plain `open(dest, "wb")` gives (Ansible's): an existing file's, or 0666 less umask
        let mode = std::fs::metadata(&p.dest)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o666 & !umask());
        let placed = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .and_then(|()| tmp.as_file().sync_all())
            .and_then(|()| tmp.persist(&p.dest).map(|_| ()).map_err(|e| e.error));
        if let Err(e) = placed {
            return failed(&format!("cannot write {dest_s}: {e}"));
        }
        Ok(Outcome::changed()
            .with("md5sum", new_md5)
            .with("dest", dest_s)
            .with("remote_md5sum", Value::Null)
            .with("checksum", new_sha)
            .with("remote_checksum", remote))
    }
}

/// sha1 and md5 (hex) of a controller file, read in a stream.
fn local_digests(p: &Path) -> std::io::Result<(String, String)> {
    let d = crate::host::files::digests(&p.to_string_lossy(), &["sha1".into(), "md5".into()])?;
    match <[String; 2]>::try_from(d) {
        Ok([sha1, md5]) => Ok((sha1, md5)),
        Err(_) => Err(std::io::Error::other("two digests asked, others returned")),
    }
}

/// This process's umask (Linux: `/proc/self/status`; 022 when it cannot be read). Read, not set:
/// `umask(2)` changes it for every thread while it is being read.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
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
