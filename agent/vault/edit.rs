//! The editor round trip of `kiln vault edit` / `create`: the plaintext goes to a private temporary
//! file (mode 0600 in a fresh 0700 directory, on tmpfs — `$XDG_RUNTIME_DIR` or `/dev/shm` — when
//! there is one, so it never reaches a disk), the editor runs, the result is read back, and the
//! plaintext file is overwritten and removed whatever happened (editor failed, kiln errored).
//!
//! The editor is `$VISUAL`, else `$EDITOR`, else `vi`, run through `sh -c` so values such as
//! `code --wait` work, as git and ansible-vault do.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the edit did not produce new content. None of these leave plaintext behind.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot make a private temporary file: {0}")]
    Temp(std::io::Error),
    #[error("cannot run the editor {editor:?}: {source}")]
    Spawn {
        editor: String,
        source: std::io::Error,
    },
    #[error("the editor {editor:?} failed ({status}); nothing was changed")]
    EditorFailed {
        editor: String,
        status: std::process::ExitStatus,
    },
}

/// A private directory that removes itself (and scrubs its files) when dropped.
pub struct PrivateDir {
    dir: tempfile::TempDir,
}

impl PrivateDir {
    /// A fresh 0700 directory, on tmpfs when one is available to this user.
    pub fn new() -> std::io::Result<PrivateDir> {
        let mut bases: Vec<PathBuf> = Vec::new();
        if let Some(r) = std::env::var_os("XDG_RUNTIME_DIR") {
            bases.push(PathBuf::from(r));
        }
        bases.push(PathBuf::from("/dev/shm"));
        for base in bases {
            if is_writable_dir(&base) {
                if let Ok(dir) = tempfile::Builder::new()
                    .prefix("kiln-edit-")
                    .permissions(std::fs::Permissions::from_mode(0o700))
                    .tempdir_in(&base)
                {
                    return Ok(PrivateDir { dir });
                }
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("kiln-edit-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?;
        Ok(PrivateDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // overwrite what the editor left (including its swap/backup files) before removal
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    if m.is_file() {
                        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(e.path()) {
                            let _ = f.write_all(&vec![0u8; m.len() as usize]);
                            let _ = f.sync_all();
                        }
                    }
                }
            }
        }
        // TempDir's own drop removes the tree
    }
}

fn is_writable_dir(p: &Path) -> bool {
    p.is_dir()
        && nix::unistd::access(
            p,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok()
}

/// Ignores SIGINT and SIGQUIT until dropped, then restores what was there.
struct IgnoreInterrupts {
    saved: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigHandler)>,
}

impl IgnoreInterrupts {
    fn new() -> Self {
        use nix::sys::signal::{signal, SigHandler, Signal};
        let mut saved = Vec::new();
        for sig in [Signal::SIGINT, Signal::SIGQUIT] {
            // SAFETY: installing SIG_IGN runs no code in the handler context.
            if let Ok(old) = unsafe { signal(sig, SigHandler::SigIgn) } {
                saved.push((sig, old));
            }
        }
        IgnoreInterrupts { saved }
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        for (sig, old) in self.saved.drain(..) {
            // SAFETY: restores the handler that was installed before.
            let _ = unsafe { nix::sys::signal::signal(sig, old) };
        }
    }
}

/// The editor command line.
pub fn editor() -> String {
    for k in ["VISUAL", "EDITOR"] {
        if let Ok(v) = std::env::var(k) {
            if !v.trim().is_empty() {
                return v;
            }
        }
    }
    "vi".into()
}

/// Let the user edit `plain` in their editor; the edited bytes. `name` is the temporary file's
/// name (kept like the real file's, minus `.age`, so editors pick the right syntax).
pub fn edit_bytes(plain: &[u8], name: &str) -> Result<Vec<u8>, EditError> {
    let dir = PrivateDir::new().map_err(EditError::Temp)?;
    let safe: String = name
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    let path = dir.path().join(if safe.is_empty() {
        "secret".into()
    } else {
        safe
    });
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(EditError::Temp)?;
        f.write_all(plain).map_err(EditError::Temp)?;
        f.sync_all().map_err(EditError::Temp)?;
    }
    let ed = editor();
    tracing::debug!(editor = %ed, dir = %dir.path().display(), "running the editor");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{ed} \"$@\""))
        .arg("kiln-editor")
        .arg(&path)
        .spawn()
        .map_err(|e| EditError::Spawn {
            editor: ed.clone(),
            source: e,
        })?;
    // Ctrl-C in the editor must not kill kiln before it removes the plaintext: ignore SIGINT and
    // SIGQUIT while waiting (as git does), after the spawn so the editor keeps default handlers.
    let waited = {
        let _guard = IgnoreInterrupts::new();
        child.wait()
    };
    let status = waited.map_err(|e| EditError::Spawn {
        editor: ed.clone(),
        source: e,
    })?;
    if !status.success() {
        return Err(EditError::EditorFailed { editor: ed, status });
    }
    std::fs::read(&path).map_err(EditError::Temp)
    // `dir` drops here: the plaintext is scrubbed and removed on every path above too
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_is_0700_and_goes_away() {
        let d = PrivateDir::new().unwrap();
        let p = d.path().to_path_buf();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::write(p.join("x"), b"plain").unwrap();
        drop(d);
        assert!(!p.exists());
    }
}
