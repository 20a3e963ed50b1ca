//! How the controller reaches a host and talks to the kiln agent there.
//!
//! [`connect`] takes a host's connection settings ([`ConnSpec`], built from Ansible's connection
//! variables) and gives a [`Session`]: one running `kiln agent` on that host, as one (become) user,
//! with every operation the engine needs (exec, stat, read/write file, mkdir, remove, symlink,
//! facts). `ssh` connections use russh (`ssh.rs`), check the host key before anything runs
//! (`known_hosts.rs`), read `~/.ssh/config` (`ssh_config.rs`), push the agent binary once into a
//! content-addressed cache on the host (`upload.rs`) and carry framed messages over one channel
//! (`protocol.rs`, `session.rs`). `local` connections run the same agent code in-process
//! (`local.rs`). `fanout.rs` runs work over many hosts at once.

pub mod fanout;
pub mod known_hosts;
pub mod local;
pub mod mux;
pub mod session;
pub mod spec;
pub mod ssh;
pub mod ssh_config;
pub mod upload;

pub use crate::protocol::{
    AttrsRequest, ExecRequest, ExecResult, RemoteErrorKind, StatResult, Stream, WriteRequest,
    WriteResult,
};
pub use session::Session;
pub use spec::{BecomeSpec, ConnSpec, Connection, HostKeyChecking};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Settings that apply to every host of a run (command-line flags, ansible.cfg-like defaults).
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// `--host-key-checking`; overrides the host's variables and ssh_config when set.
    pub host_key_checking: Option<HostKeyChecking>,
    /// TCP connect + SSH handshake limit (Ansible's `timeout`, default 10 s).
    pub connect_timeout: Duration,
    /// SSH keepalive interval (like `ServerAliveInterval`); 3 unanswered ones drop the host.
    pub keepalive: Option<Duration>,
    /// Agent binaries by architecture (`uname -m`), from `--agent-binary ARCH=PATH`.
    pub agent_binaries: BTreeMap<String, PathBuf>,
    /// Passphrase for encrypted private key files.
    pub key_passphrase: Option<crate::value::Secret>,
    /// Try keys held by ssh-agent (`SSH_AUTH_SOCK`).
    pub use_ssh_agent: bool,
    /// Read `~/.ssh/config` when the host names no config file.
    pub read_user_ssh_config: bool,
    /// Keep SSH connections (and their agents) open this long after the run, in the connection
    /// daemon (`mux.rs`), for the next run to use: Ansible's default `ControlPersist=60s`.
    /// `None` or zero: every run connects afresh and its agents exit when it ends.
    pub control_persist: Option<Duration>,
    /// Counters (bytes uploaded, ...), shared by every connection of a run.
    pub stats: Arc<TransportStats>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            host_key_checking: None,
            connect_timeout: Duration::from_secs(10),
            keepalive: Some(Duration::from_secs(15)),
            agent_binaries: BTreeMap::new(),
            key_passphrase: None,
            use_ssh_agent: true,
            read_user_ssh_config: true,
            control_persist: None,
            stats: Arc::new(TransportStats::default()),
        }
    }
}

#[derive(Debug, Default)]
pub struct TransportStats {
    /// Agent binary bytes sent to hosts.
    pub agent_bytes_uploaded: AtomicU64,
    /// Agent uploads done (a cache hit does not count).
    pub agent_uploads: AtomicU64,
}

#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TransportError {
    #[error("{host}: UNREACHABLE: {msg}")]
    Unreachable { host: String, msg: String },
    #[error("{host}: host key verification failed: {msg}")]
    HostKeyMismatch { host: String, msg: String },
    #[error("{host}: authentication failed: {msg}")]
    AuthFailed { host: String, msg: String },
    #[error("{host}: become failed: {msg}")]
    Become { host: String, msg: String },
    #[error("{host}: agent: {msg}")]
    Agent { host: String, msg: String },
    #[error("{host}: connection settings: {msg}")]
    Config { host: String, msg: String },
    #[error("{host}: protocol error: {msg}")]
    Protocol { host: String, msg: String },
    #[error("{host}: {msg}")]
    Remote {
        host: String,
        kind: RemoteErrorKind,
        msg: String,
    },
}

impl TransportError {
    /// Whether Ansible would call this host UNREACHABLE (rather than FAILED).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            TransportError::Unreachable { .. }
                | TransportError::HostKeyMismatch { .. }
                | TransportError::AuthFailed { .. }
                | TransportError::Protocol { .. }
        )
    }
}

/// Connect to one host and start its agent (as the become user, when the spec asks for one).
///
/// SSH connections go through the connection daemon (`mux`) when the run persists connections,
/// and directly when it does not or the daemon cannot run (said once, then direct).
pub async fn connect(spec: &ConnSpec, opts: &TransportOptions) -> Result<Session, TransportError> {
    match spec.connection {
        Connection::Local => local::connect(spec, opts).await,
        Connection::Ssh => {
            if let Some(persist) = opts.control_persist.filter(|d| !d.is_zero()) {
                match mux::connect(spec, opts, persist).await {
                    Ok(s) => return Ok(s),
                    Err(mux::Unavailable::Failed(e)) => return Err(e),
                    Err(mux::Unavailable::NoDaemon(why)) => tracing::warn!(
                        "{}: persistent connections unavailable ({why}); connecting directly",
                        spec.host
                    ),
                    Err(mux::Unavailable::Quiet) => {}
                }
            }
            ssh::connect(spec, opts).await
        }
    }
}
