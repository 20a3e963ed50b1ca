//! Persistent connections: kiln's `ControlPersist`.
//!
//! Ansible's default `ssh_args` keep every SSH connection open for 60 s after a run
//! (`ControlMaster=auto ControlPersist=60s`), so a second run skips TCP, key exchange,
//! authentication and sshd's session set-up. kiln does the same one level up: a per-user daemon
//! (`kiln mux daemon`, started by the first run that needs it, detached from it) holds each host's
//! SSH connection *and the agent already running on it*, and a run reaches that agent through the
//! daemon's Unix socket. A warm connection then costs a socket connect and two no-op round trips
//! (the daemon's liveness ping and the session's hello) instead of ~100 ms of SSH set-up.
//!
//! On the socket (`~/.cache/kiln/cp/mux-<build>.sock`, directory 0700, peers must be this user):
//! the client writes one JSON line ([`Ask`]), the daemon answers one JSON line ([`Reply`]), and
//! then the stream carries the agent protocol's frames unchanged. The daemon forwards whole frames
//! only (it reads the 4-byte length), so a run killed mid-frame never leaves half a request in the
//! agent's input; answers owed to a run that went away are dropped. A connection serves one run at
//! a time (a concurrent run to the same host gets a second connection), an empty frame from the
//! client means "drop this connection" (`meta: reset_connection`), and a connection unused for its
//! run's persist time is closed (the agent sees end of input and exits). The daemon exits once it
//! holds nothing. The build id is in the socket's name: a rebuilt kiln never talks to an old daemon.
//!
//! Everything a connection was opened with (address, user, keys, known_hosts, become user and
//! password, ...) is its key: a run with any different setting gets its own connection. Like an
//! OpenSSH master, a persisted connection is not re-authenticated and its host key is not checked
//! again; before handing one out the daemon checks the agent answers a ping (3 s), and opens a
//! fresh connection if not. Secrets travel only over the socket, never on a command line or disk.

use crate::protocol::{encode, Frame, Request, BUILD_ID, MAX_FRAME};
use super::session::write_queued;
use super::spec::{BecomeSpec, ConnSpec, Connection, HostKeyChecking};
use super::ssh::{self, Connected};
use super::upload::{self, Started};
use super::{Session, TransportError, TransportOptions};
use crate::value::{Secret, Value};
use bytes::{Bytes, BytesMut};
use russh::ChannelMsg;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Notify};

/// The daemon's own request id (its liveness ping); sessions over the daemon use ids below 2^62.
const PING_ID: u64 = u64::MAX;
/// How long the daemon waits for a held agent to answer before it opens a fresh connection.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The folder of the daemon's socket, log and lock (like `~/.ansible/cp`).
pub fn dir() -> PathBuf {
    ssh::home().join(".cache/kiln/cp")
}

/// This build's socket.
pub fn socket_path() -> PathBuf {
    let build = BUILD_ID.rsplit('.').next().unwrap_or(BUILD_ID);
    let short: String = build.chars().take(12).collect();
    dir().join(format!("mux-{short}.sock"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// the wire

// No `Debug` on the wire types: they hold secrets in the clear.
#[derive(Clone, Serialize, Deserialize)]
struct BecomeWire {
    user: String,
    /// The become password, in the clear: it goes only over the user's own socket.
    password: Option<String>,
    flags: Vec<String>,
    exe: String,
}

/// [`ConnSpec`] and the run's [`TransportOptions`] as sent to the daemon (secrets exposed: this
/// type never reaches output or disk).
#[derive(Clone, Serialize, Deserialize)]
struct OpenWire {
    host: String,
    addr: String,
    port: Option<u16>,
    user: Option<String>,
    key_files: Vec<PathBuf>,
    known_hosts: Vec<PathBuf>,
    host_key_checking: Option<HostKeyChecking>,
    proxy_jump: Option<String>,
    become_: Option<BecomeWire>,
    ssh_config: Option<PathBuf>,
    connect_timeout: Option<Duration>,
    // the run's options
    opt_host_key_checking: Option<HostKeyChecking>,
    opt_connect_timeout: Duration,
    keepalive: Option<Duration>,
    agent_binaries: BTreeMap<String, PathBuf>,
    key_passphrase: Option<String>,
    use_ssh_agent: bool,
    read_user_ssh_config: bool,
    /// Each known_hosts file with its size and modification time: a file that changed (a key
    /// removed with `ssh-keygen -R`, say) gets a fresh connection whose host key is checked again.
    known_hosts_stamp: Vec<(PathBuf, u64, i64)>,
    /// How long the connection stays open unused.
    persist: Duration,
}

fn stamp(files: &[PathBuf]) -> Vec<(PathBuf, u64, i64)> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).ok();
            let size = m.as_ref().map_or(0, |m| m.len());
            let mtime = m
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(-1, |d| d.as_nanos() as i64);
            (f.clone(), size, mtime)
        })
        .collect()
}

fn secret_text(s: &Secret) -> String {
    match s.expose() {
        Value::Str(x) | Value::Unsafe(x) => x.clone(),
        other => other.as_str().map(str::to_string).unwrap_or_default(),
    }
}

impl OpenWire {
    fn new(spec: &ConnSpec, opts: &TransportOptions, persist: Duration) -> OpenWire {
        // the daemon finds agent binaries as this run would (its environment may differ)
        let mut agent_binaries: BTreeMap<String, PathBuf> = opts.agent_binaries.clone();
        for arch in ["x86_64", "aarch64"] {
            if let Some(p) = upload::find_agent_binary(arch, opts) {
                agent_binaries.entry(arch.into()).or_insert(p);
            }
        }
        // the daemon runs in `/`: paths relative to this run's folder are made absolute
        let abs = |ps: &[PathBuf]| -> Vec<PathBuf> {
            ps.iter()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                .collect()
        };
        for p in agent_binaries.values_mut() {
            *p = std::path::absolute(&*p).unwrap_or_else(|_| p.clone());
        }
        OpenWire {
            host: spec.host.clone(),
            addr: spec.addr.clone(),
            port: spec.port,
            user: spec.user.clone(),
            key_files: abs(&spec.key_files),
            known_hosts: abs(&spec.known_hosts),
            host_key_checking: spec.host_key_checking,
            proxy_jump: spec.proxy_jump.clone(),
            become_: spec.become_.as_ref().map(|b| BecomeWire {
                user: b.user.clone(),
                password: b.password.as_ref().map(secret_text),
                flags: b.flags.clone(),
                exe: b.exe.clone(),
            }),
            ssh_config: spec
                .ssh_config
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            connect_timeout: spec.connect_timeout,
            opt_host_key_checking: opts.host_key_checking,
            opt_connect_timeout: opts.connect_timeout,
            keepalive: opts.keepalive,
            agent_binaries,
            key_passphrase: opts.key_passphrase.as_ref().map(secret_text),
            use_ssh_agent: opts.use_ssh_agent,
            read_user_ssh_config: opts.read_user_ssh_config,
            known_hosts_stamp: ssh::resolve(spec, opts)
                .map(|(t, _)| stamp(&t.known_hosts))
                .unwrap_or_default(),
            persist,
        }
    }

    fn spec(&self) -> ConnSpec {
        ConnSpec {
            host: self.host.clone(),
            addr: self.addr.clone(),
            port: self.port,
            user: self.user.clone(),
            key_files: self.key_files.clone(),
            known_hosts: self.known_hosts.clone(),
            host_key_checking: self.host_key_checking,
            proxy_jump: self.proxy_jump.clone(),
            become_: self.become_.as_ref().map(|b| BecomeSpec {
                user: b.user.clone(),
                password: b.password.clone().map(|p| Secret::new(Value::Str(p))),
                flags: b.flags.clone(),
                exe: b.exe.clone(),
            }),
            connection: Connection::Ssh,
            ssh_config: self.ssh_config.clone(),
            connect_timeout: self.connect_timeout,
        }
    }

    fn opts(&self) -> TransportOptions {
        TransportOptions {
            host_key_checking: self.opt_host_key_checking,
            connect_timeout: self.opt_connect_timeout,
            keepalive: self.keepalive,
            agent_binaries: self.agent_binaries.clone(),
            key_passphrase: self
                .key_passphrase
                .clone()
                .map(|p| Secret::new(Value::Str(p))),
            use_ssh_agent: self.use_ssh_agent,
            read_user_ssh_config: self.read_user_ssh_config,
            control_persist: None,
            stats: Default::default(),
        }
    }

    /// What a held connection is found by: every setting it was opened with.
    fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut w = self.clone();
        w.persist = Duration::ZERO;
        hex::encode(Sha256::digest(
            serde_json::to_vec(&w).unwrap_or_default().as_slice(),
        ))
    }

    fn label(&self) -> String {
        let user = self.user.as_deref().unwrap_or("-");
        let port = self.port.unwrap_or(22);
        match &self.become_ {
            Some(b) => format!(
                "{} ({user}@{}:{port}, become {})",
                self.host, self.addr, b.user
            ),
            None => format!("{} ({user}@{}:{port})", self.host, self.addr),
        }
    }
}

/// A client's first line.
#[derive(Serialize, Deserialize)]
enum Ask {
    Open(Box<OpenWire>),
    Status,
    Stop,
}

/// One held connection, for `kiln mux status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Held {
    pub label: String,
    pub in_use: bool,
    pub idle_secs: u64,
    pub persist_secs: u64,
}

/// The daemon's line.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The agent is there; frames follow. `uploaded`: agent bytes this open sent to the host.
    Ready {
        uploaded: u64,
        agent: String,
        reused: bool,
    },
    Failed(TransportError),
    Status {
        pid: u32,
        held: Vec<Held>,
    },
    Stopping,
}

async fn write_line<T: Serialize, W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    v: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

async fn read_line<T: for<'de> Deserialize<'de>, R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<T> {
    let mut line = Vec::new();
    (&mut *r).take(1 << 20).read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    serde_json::from_slice(&line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

// ---------------------------------------------------------------------------------------------
// the client side

mod client;
mod daemon;

pub use client::{connect, status, stop, Unavailable};
pub use daemon::daemon_main;

#[cfg(test)]
mod tests {
    use super::daemon::{frame_id, split_frame};
    use super::*;

    #[test]
    fn frames_are_cut_whole() {
        let a = encode(&Frame {
            id: 5,
            body: Request::Ping,
        })
        .unwrap();
        let b = encode(&Frame {
            id: PING_ID,
            body: Request::Ping,
        })
        .unwrap();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b[..3]);
        let first = split_frame(&mut buf).unwrap();
        assert_eq!(&first[..], &a[..]);
        assert_eq!(frame_id(&first), Some(5));
        assert!(
            split_frame(&mut buf).is_none(),
            "half a length prefix is not a frame"
        );
        buf.extend_from_slice(&b[3..b.len() - 1]);
        assert!(
            split_frame(&mut buf).is_none(),
            "a frame missing its last byte is not a frame"
        );
        buf.extend_from_slice(&b[b.len() - 1..]);
        let second = split_frame(&mut buf).unwrap();
        assert_eq!(frame_id(&second), Some(PING_ID));
        assert!(buf.is_empty());
    }

    #[test]
    fn every_setting_is_part_of_the_key_but_the_persist_time() {
        let opts = TransportOptions::default();
        let mut spec = ConnSpec::new("h1");
        let a = OpenWire::new(&spec, &opts, Duration::from_secs(60));
        let b = OpenWire::new(&spec, &opts, Duration::from_secs(5));
        assert_eq!(a.key(), b.key());
        let mut bs = BecomeSpec::sudo("root");
        bs.password = Some(Secret::new(Value::str("pw1")));
        spec.become_ = Some(bs.clone());
        let c = OpenWire::new(&spec, &opts, Duration::from_secs(60));
        bs.password = Some(Secret::new(Value::str("pw2")));
        spec.become_ = Some(bs);
        let d = OpenWire::new(&spec, &opts, Duration::from_secs(60));
        assert_ne!(a.key(), c.key());
        assert_ne!(c.key(), d.key());
        // the round trip keeps the password for the daemon's sudo
        let back = d.spec();
        let pw = back.become_.unwrap().password.unwrap();
        assert_eq!(pw.expose(), &Value::str("pw2"));
    }
}
