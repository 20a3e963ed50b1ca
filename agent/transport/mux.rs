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

use super::protocol::{encode, Frame, Request, BUILD_ID, MAX_FRAME};
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

/// Why a run could not use the daemon (it then connects directly, as without persistence).
#[derive(Debug)]
pub enum Unavailable {
    /// The daemon opened the connection and it failed: that is the host's answer.
    Failed(TransportError),
    /// The daemon could not be reached or started.
    NoDaemon(String),
    /// As `NoDaemon`, already said for this run.
    Quiet,
}

/// Reach the agent on a host through the daemon, starting the daemon when none runs.
pub async fn connect(
    spec: &ConnSpec,
    opts: &TransportOptions,
    persist: Duration,
) -> Result<Session, Unavailable> {
    // once the daemon could not be started, this run connects directly (and says so once)
    static NO_DAEMON: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if NO_DAEMON.get().is_some() {
        return Err(Unavailable::Quiet);
    }
    let path = socket_path();
    let stream = match UnixStream::connect(&path).await {
        Ok(s) => s,
        Err(_) => {
            let started = match ensure_daemon(&path).await {
                Ok(()) => UnixStream::connect(&path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display())),
                Err(e) => Err(e),
            };
            match started {
                Ok(s) => s,
                Err(e) => {
                    let _ = NO_DAEMON.set(());
                    return Err(Unavailable::NoDaemon(e));
                }
            }
        }
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let ask = Ask::Open(Box::new(OpenWire::new(spec, opts, persist)));
    let no = |e: std::io::Error| Unavailable::NoDaemon(format!("{}: {e}", path.display()));
    write_line(&mut w, &ask).await.map_err(no)?;
    match read_line::<Reply, _>(&mut r).await.map_err(no)? {
        Reply::Ready {
            uploaded,
            agent,
            reused,
        } => {
            tracing::debug!(
                "{}: {} connection of the daemon at {}",
                spec.host,
                if reused { "a held" } else { "a new" },
                path.display()
            );
            if uploaded > 0 {
                opts.stats
                    .agent_bytes_uploaded
                    .fetch_add(uploaded, Ordering::Relaxed);
                opts.stats.agent_uploads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    target: "kiln::transport::upload",
                    "{}: uploaded agent {agent} ({uploaded} bytes)",
                    spec.host
                );
            }
        }
        Reply::Failed(e) => return Err(Unavailable::Failed(e)),
        other => {
            return Err(Unavailable::NoDaemon(format!(
                "unexpected answer {other:?}"
            )))
        }
    }
    Session::start_muxed(&spec.host, r, w)
        .await
        .map_err(|e| Unavailable::NoDaemon(e.to_string()))
}

/// Start the daemon (detached: its own session, stdin closed, log in `dir()/mux.log`) and wait
/// until it listens. One start per process at a time; a daemon that finds another one already
/// listening just says so.
async fn ensure_daemon(path: &Path) -> Result<(), String> {
    static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _g = STARTING.lock().await;
    if UnixStream::connect(path).await.is_ok() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    make_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find kiln's own binary: {e}"))?;
    // the log is appended to, and started afresh once it passes 1 MiB
    let log_path = dir.join("mux.log");
    let big = std::fs::metadata(&log_path).is_ok_and(|m| m.len() > 1 << 20);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(!big)
        .write(true)
        .truncate(big)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", dir.join("mux.log").display()))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["mux", "daemon", "--socket"])
        .arg(path)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        // its log names hosts and what happened to connections, never what a run's output says
        .env("KILN_LOG", "warn,kiln::transport::mux=info")
        .kill_on_drop(false);
    // SAFETY: setsid is async-signal-safe and touches no memory of this process.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the connection daemon: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout from the daemon")?;
    let mut line = String::new();
    let mut out = BufReader::new(out);
    let read = out.read_line(&mut line);
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(_)) if line.trim() == "ready" => Ok(()),
        Ok(_) => Err(format!(
            "the connection daemon did not start (see {})",
            dir.join("mux.log").display()
        )),
        Err(_) => Err("the connection daemon did not answer in 10 s".into()),
    }
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// `kiln mux status`: the daemon's connections, or `None` when no daemon runs.
pub async fn status() -> std::io::Result<Option<(u32, Vec<Held>)>> {
    let Ok(s) = UnixStream::connect(socket_path()).await else {
        return Ok(None);
    };
    let (r, mut w) = s.into_split();
    write_line(&mut w, &Ask::Status).await?;
    match read_line::<Reply, _>(&mut BufReader::new(r)).await? {
        Reply::Status { pid, held } => Ok(Some((pid, held))),
        other => Err(std::io::Error::other(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// `kiln mux stop`: close every held connection and end the daemon; false when none ran.
pub async fn stop() -> std::io::Result<bool> {
    let Ok(s) = UnixStream::connect(socket_path()).await else {
        return Ok(false);
    };
    let (r, mut w) = s.into_split();
    write_line(&mut w, &Ask::Stop).await?;
    let _ = read_line::<Reply, _>(&mut BufReader::new(r)).await?;
    // wait until it is gone, so that the next run really starts afresh
    for _ in 0..100 {
        if UnixStream::connect(socket_path()).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// the daemon

/// One held SSH connection with its running agent.
struct Conn {
    key: String,
    label: String,
    persist: Duration,
    to_agent: mpsc::UnboundedSender<Bytes>,
    /// The run using it now: where the agent's frames go.
    client: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
    ping: Mutex<Option<oneshot::Sender<()>>>,
    dead: AtomicBool,
    last_used: Mutex<Instant>,
    ssh: tokio::sync::Mutex<Option<Connected>>,
}

impl Conn {
    /// Take over a channel on which the agent was just started.
    fn spawn(
        key: String,
        label: String,
        persist: Duration,
        ssh: Connected,
        s: Started,
    ) -> Arc<Conn> {
        let (to_agent, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let conn = Arc::new(Conn {
            key,
            label,
            persist,
            to_agent,
            client: Mutex::new(None),
            ping: Mutex::new(None),
            dead: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
            ssh: tokio::sync::Mutex::new(Some(ssh)),
        });
        let write = s.write;
        tokio::spawn(async move {
            let mut w = write.make_writer();
            if write_queued(&mut rx, &mut w).await.is_ok() {
                // every sender gone: end of input for the agent, which exits
                let _ = w.shutdown().await;
                let _ = write.eof().await;
            }
        });
        let c = conn.clone();
        let mut read = s.read;
        let mut buf = BytesMut::from(&s.stdout[..]);
        tokio::spawn(async move {
            loop {
                while let Some(frame) = split_frame(&mut buf) {
                    c.deliver(frame);
                }
                match read.wait().await {
                    Some(ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        tracing::debug!(
                            "{}: agent stderr: {}",
                            c.label,
                            String::from_utf8_lossy(&data)
                        );
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
                    Some(_) => {}
                }
            }
            c.dead.store(true, Ordering::SeqCst);
            // the run using it sees its socket close
            lock(&c.client).take();
            lock(&c.ping).take();
            tracing::info!("{}: connection closed", c.label);
        });
        conn
    }

    fn deliver(&self, frame: Bytes) {
        {
            let mut ping = lock(&self.ping);
            if ping.is_some() && frame_id(&frame) == Some(PING_ID) {
                if let Some(tx) = ping.take() {
                    let _ = tx.send(());
                }
                return;
            }
        }
        if let Some(c) = lock(&self.client).as_ref() {
            let _ = c.send(frame);
        }
        // no run attached: an answer owed to a run that went away
    }

    /// Whether the agent still answers.
    async fn alive(&self) -> bool {
        if self.dead.load(Ordering::SeqCst) {
            return false;
        }
        let (tx, rx) = oneshot::channel();
        *lock(&self.ping) = Some(tx);
        let Ok(buf) = encode(&Frame {
            id: PING_ID,
            body: Request::Ping,
        }) else {
            return false;
        };
        if self.to_agent.send(Bytes::from(buf)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(PING_TIMEOUT, rx).await, Ok(Ok(())))
    }

    async fn close(&self) {
        self.dead.store(true, Ordering::SeqCst);
        lock(&self.client).take();
        if let Some(ssh) = self.ssh.lock().await.take() {
            ssh.disconnect().await;
        }
    }
}

/// Cut one whole frame (length prefix included) off the front of `buf`.
fn split_frame(buf: &mut BytesMut) -> Option<Bytes> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    if buf.len() < 4 + len {
        return None;
    }
    Some(buf.split_to(4 + len).freeze())
}

/// The request id of a frame (length prefix included), without decoding its body.
fn frame_id(frame: &[u8]) -> Option<u64> {
    rmp_serde::from_slice::<Frame<serde::de::IgnoredAny>>(frame.get(4..)?)
        .ok()
        .map(|f| f.id)
}

#[derive(Default)]
struct Daemon {
    idle: Mutex<HashMap<String, Vec<Arc<Conn>>>>,
    in_use: Mutex<Vec<Arc<Conn>>>,
    clients: AtomicUsize,
    last_activity: Mutex<Option<Instant>>,
    stop: Notify,
}

impl Daemon {
    fn touch(&self) {
        *lock(&self.last_activity) = Some(Instant::now());
    }

    /// A held connection for `key` whose agent answers, if any.
    async fn checkout(&self, key: &str) -> Option<Arc<Conn>> {
        loop {
            let c = lock(&self.idle).get_mut(key).and_then(Vec::pop)?;
            if c.alive().await {
                return Some(c);
            }
            tracing::info!(
                "{}: held connection does not answer; opening a new one",
                c.label
            );
            c.close().await;
        }
    }

    fn checkin(&self, c: Arc<Conn>) {
        *lock(&c.last_used) = Instant::now();
        lock(&self.idle).entry(c.key.clone()).or_default().push(c);
    }

    fn held(&self) -> Vec<Held> {
        let now = Instant::now();
        let mut out = Vec::new();
        for c in lock(&self.idle).values().flatten() {
            out.push(Held {
                label: c.label.clone(),
                in_use: false,
                idle_secs: now.duration_since(*lock(&c.last_used)).as_secs(),
                persist_secs: c.persist.as_secs(),
            });
        }
        for c in lock(&self.in_use).iter() {
            out.push(Held {
                label: c.label.clone(),
                in_use: true,
                idle_secs: 0,
                persist_secs: c.persist.as_secs(),
            });
        }
        out
    }

    /// Close connections unused for their persist time (and dead ones); true when nothing is
    /// held, no run is attached and nothing happened for a moment: time to go.
    async fn reap(&self) -> bool {
        let now = Instant::now();
        let expired: Vec<Arc<Conn>> = {
            let mut idle = lock(&self.idle);
            let mut out = Vec::new();
            for v in idle.values_mut() {
                let (gone, keep): (Vec<_>, Vec<_>) = v.drain(..).partition(|c| {
                    c.dead.load(Ordering::SeqCst)
                        || now.duration_since(*lock(&c.last_used)) >= c.persist
                });
                *v = keep;
                out.extend(gone);
            }
            idle.retain(|_, v| !v.is_empty());
            out
        };
        for c in expired {
            tracing::info!("{}: unused for {:?}, closing", c.label, c.persist);
            c.close().await;
        }
        let empty = lock(&self.idle).is_empty() && self.clients.load(Ordering::SeqCst) == 0;
        let quiet = lock(&self.last_activity)
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(2));
        empty && quiet
    }

    async fn close_all(&self) {
        let all: Vec<Arc<Conn>> = lock(&self.idle).drain().flat_map(|(_, v)| v).collect();
        for c in all {
            c.close().await;
        }
        let in_use: Vec<Arc<Conn>> = lock(&self.in_use).clone();
        for c in in_use {
            c.close().await;
        }
    }

    async fn open(&self, o: &OpenWire) -> Result<(Arc<Conn>, u64, String, bool), TransportError> {
        let key = o.key();
        if let Some(c) = self.checkout(&key).await {
            return Ok((c, 0, String::new(), true));
        }
        let spec = o.spec();
        let opts = o.opts();
        upload::prefetch(&opts);
        let ssh = ssh::open(&spec, &opts).await?;
        let started = match upload::launch(&spec, &ssh, &opts).await {
            Ok(s) => s,
            Err(e) => {
                ssh.disconnect().await;
                return Err(e);
            }
        };
        let uploaded = opts.stats.agent_bytes_uploaded.load(Ordering::Relaxed);
        let agent = upload::find_agent_binary(std::env::consts::ARCH, &opts)
            .and_then(|p| upload::cached_sha(&p))
            .map(|s| s.chars().take(12).collect())
            .unwrap_or_default();
        tracing::info!("{}: connected", o.label());
        Ok((
            Conn::spawn(key, o.label(), o.persist, ssh, started),
            uploaded,
            agent,
            false,
        ))
    }

    async fn serve(self: Arc<Self>, stream: UnixStream) {
        // only this user's runs may use its connections
        match stream.peer_cred() {
            Ok(c) if c.uid() == nix::unistd::getuid().as_raw() => {}
            _ => return,
        }
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let Ok(ask) = read_line::<Ask, _>(&mut r).await else {
            return;
        };
        let o = match ask {
            Ask::Status => {
                let held = self.held();
                let _ = write_line(
                    &mut w,
                    &Reply::Status {
                        pid: std::process::id(),
                        held,
                    },
                )
                .await;
                return;
            }
            Ask::Stop => {
                let _ = write_line(&mut w, &Reply::Stopping).await;
                self.stop.notify_one();
                return;
            }
            Ask::Open(o) => o,
        };
        self.clients.fetch_add(1, Ordering::SeqCst);
        self.touch();
        self.attach(&o, r, w).await;
        self.clients.fetch_sub(1, Ordering::SeqCst);
        self.touch();
    }

    async fn attach(
        &self,
        o: &OpenWire,
        mut r: BufReader<tokio::net::unix::OwnedReadHalf>,
        mut w: tokio::net::unix::OwnedWriteHalf,
    ) {
        let (conn, uploaded, agent, reused) = match self.open(o).await {
            Ok(x) => x,
            Err(e) => {
                let _ = write_line(&mut w, &Reply::Failed(e)).await;
                return;
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        *lock(&conn.client) = Some(tx);
        lock(&self.in_use).push(conn.clone());
        if write_line(
            &mut w,
            &Reply::Ready {
                uploaded,
                agent,
                reused,
            },
        )
        .await
        .is_err()
        {
            lock(&conn.client).take();
            lock(&self.in_use).retain(|c| !Arc::ptr_eq(c, &conn));
            self.checkin(conn);
            return;
        }
        let to_client = async move {
            let _ = write_queued(&mut rx, &mut w).await;
        };
        let agent_in = conn.to_agent.clone();
        let from_client = async move {
            let mut len = [0u8; 4];
            loop {
                if r.read_exact(&mut len).await.is_err() {
                    return false; // the run is done (or gone): keep the connection
                }
                let n = u32::from_be_bytes(len) as usize;
                if n == 0 {
                    return true; // reset_connection: forget it
                }
                if n > MAX_FRAME {
                    return true;
                }
                let mut frame = BytesMut::with_capacity(4 + n);
                frame.extend_from_slice(&len);
                frame.resize(4 + n, 0);
                if r.read_exact(&mut frame[4..]).await.is_err() {
                    return false; // half a frame: never forwarded, the agent is unaffected
                }
                if agent_in.send(frame.freeze()).is_err() {
                    return true;
                }
            }
        };
        let forget = tokio::select! {
            f = from_client => f,
            _ = to_client => true, // the connection died
        };
        lock(&conn.client).take();
        lock(&self.in_use).retain(|c| !Arc::ptr_eq(c, &conn));
        if forget || conn.dead.load(Ordering::SeqCst) {
            conn.close().await;
        } else {
            self.checkin(conn);
        }
    }
}

/// `kiln mux daemon --socket PATH` (started by [`connect`]): listen, serve, exit when idle.
pub fn daemon_main(path: &Path) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln mux daemon: cannot start the runtime: {e}");
            return 1;
        }
    };
    let r = rt.block_on(daemon(path));
    rt.shutdown_background();
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln mux daemon: {e}");
            1
        }
    }
}

fn say_ready() {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(b"ready\n");
    let _ = out.flush();
}

async fn daemon(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    make_private_dir(dir)?;
    // one daemon per socket: the lock is held for the daemon's whole life
    let lockfile = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))?;
    let _lock = match nix::fcntl::Flock::lock(lockfile, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        Ok(l) => l,
        Err(_) => {
            // another daemon holds it: wait until it listens, then leave the clients to it
            for _ in 0..100 {
                if UnixStream::connect(path).await.is_ok() {
                    say_ready();
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return Err(std::io::Error::other(
                "another daemon holds the lock but does not listen",
            ));
        }
    };
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(
        "listening on {} (pid {})",
        path.display(),
        std::process::id()
    );
    say_ready();
    let d = Arc::new(Daemon::default());
    d.touch();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            a = listener.accept() => {
                if let Ok((s, _)) = a {
                    tokio::spawn(d.clone().serve(s));
                }
            }
            _ = tick.tick() => {
                if d.reap().await {
                    break;
                }
            }
            _ = d.stop.notified() => {
                d.close_all().await;
                break;
            }
        }
    }
    let _ = std::fs::remove_file(path);
    tracing::info!("exiting");
    Ok(())
}

#[cfg(test)]
mod tests {
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
