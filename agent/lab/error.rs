//! Errors of the lab. Each one says what went wrong and what to do about it: a missing tool names
//! the Debian package that provides it, a host that never came up carries its sshd log.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("kiln lab needs root (network namespaces, bridges and mounts); run it as root, e.g. `sudo kiln lab up`")]
    NotRoot,

    #[error("kiln lab needs `{tool}`, which is not installed; install the Debian package `{package}` (apt-get install -y {package})")]
    MissingTool { tool: String, package: &'static str },

    #[error("invalid lab spec: {0}")]
    Spec(String),

    #[error("{0}")]
    Collision(String),

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

    #[error("{path}: lab state is unreadable: {msg}; remove the lab's namespaces by hand (`ip netns list`) and delete this file")]
    State { path: PathBuf, msg: String },

    #[error("no lab state in {0}; is a lab up there? (`kiln lab up --dir {0}`)")]
    NoLab(PathBuf),

    #[error(
        "lab host {host}: sshd exited before accepting connections; its log ({log_path}):\n{log}"
    )]
    SshdDied {
        host: String,
        log_path: PathBuf,
        log: String,
    },

    #[error("lab host {host}: sshd did not accept TCP connections on {addr}:22 within {secs}s; its log ({log_path}):\n{log}")]
    SshdTimeout {
        host: String,
        addr: String,
        secs: u64,
        log_path: PathBuf,
        log: String,
    },

    #[error("lab host {0} is not running")]
    HostDown(String),

    #[error("no host named {host} in lab {lab}")]
    NoSuchHost { lab: String, host: String },
}

impl LabError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            path: path.into(),
            source,
        }
    }
}
