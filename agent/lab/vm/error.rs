//! Errors of the VM tier. Each says what to do: prepare the cache, install a package, or read the
//! VM's console log (carried in the error when the VM never answered).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("the VM tier is not prepared in {0}; run `tests/lab/vm-prepare.sh` as root (or kiln::lab::vm::prepare)")]
    NotPrepared(PathBuf),

    #[error("preparing the VM tier failed ({status}); its output:\n{output}")]
    Prepare { status: String, output: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },

    #[error("qemu exited ({status}) before the VM was up; its stderr:\n{stderr}\nconsole ({console}):\n{console_tail}")]
    QemuExited {
        status: String,
        stderr: String,
        console: PathBuf,
        console_tail: String,
    },

    #[error("the VM's sshd did not answer on 127.0.0.1:{port} within {secs}s; console ({console}):\n{console_tail}")]
    SshTimeout {
        port: u16,
        secs: u64,
        console: PathBuf,
        console_tail: String,
    },

    #[error("QMP ({socket}): {msg}")]
    Qmp { socket: PathBuf, msg: String },

    #[error("no disk named {0} on this VM")]
    NoSuchDisk(String),

    #[error("invalid VM spec: {0}")]
    Spec(String),
}

impl VmError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VmError::Io {
            path: path.into(),
            source,
        }
    }
}
