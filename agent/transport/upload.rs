//! Putting the kiln agent on a host and starting it, in one exec.
//!
//! The agent cache on a host (`~/.cache/kiln`, mode 0700, of the user the agent runs as) is
//! content-addressed (`agent-<sha256>`), so a binary already there is used as is and nothing is
//! uploaded again. The one exec on a connection starts the cached agent at once when the cache
//! holds this build for this machine's architecture (the warm case); otherwise it reports the
//! host's OS and architecture (`uname -sm`) and the cache listing, the controller sends the static
//! binary for that architecture over the same channel (to a temp name, its size checked on the
//! host; SSH guarantees the bytes; renamed into place) unless the cache has it, and the same exec
//! then starts it. The agent runs under `sudo -u USER` for become, with the password (if any)
//! written to sudo's stdin after its prompt, never on a command line, and the session exchanges
//! build ids with it. The local binary is hashed once per run, in the background while the first
//! SSH handshake runs, and read into memory only while some host needs it, once for all hosts.

use super::spec::{BecomeSpec, ConnSpec};
use super::ssh::{Connected, Handle};
use super::{Session, TransportError, TransportOptions};
use crate::protocol::BUILD_ID;
use russh::ChannelMsg;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::AsyncWriteExt;

const READY: &str = "KILN-READY";
/// sudo's prompt, recognisable on stderr: the password is sent only after it appears.
const PROMPT: &str = "[kiln-become-password]";

/// Where the agent binary for an architecture is on this machine.
pub fn find_agent_binary(arch: &str, opts: &TransportOptions) -> Option<PathBuf> {
    if let Some(p) = opts.agent_binaries.get(arch) {
        return Some(p.clone());
    }
    if let Some(v) = std::env::var_os("KILN_AGENT_BINARY") {
        let v = v.to_string_lossy().into_owned();
        match v.split_once('=') {
            Some((a, p)) if a == arch => return Some(PathBuf::from(p)),
            Some(_) => {}
            None if arch == "x86_64" => return Some(PathBuf::from(v)),
            None => {}
        }
    }
    // `kiln-agent` (the agent side alone: a sixth of kiln's size) where there is one, else kiln
    let exe = std::env::current_exe().ok()?;
    let triple = format!("{arch}-unknown-linux-musl");
    let static_self = cfg!(target_env = "musl") && std::env::consts::ARCH == arch;
    // next to the running binary (an installed kiln; a static kiln's own build folder)
    if let Some(dir) = exe.parent() {
        let mut beside = vec![
            dir.join(format!("kiln-agent-{triple}")),
            dir.join(format!("kiln-{triple}")),
        ];
        if static_self {
            beside.insert(0, dir.join("kiln-agent"));
        }
        if let Some(p) = beside.into_iter().find(|p| p.is_file()) {
            return Some(p);
        }
    }
    // a static controller is its own agent
    if static_self {
        return Some(exe);
    }
    // the cargo target dir it was built in (target/debug/kiln and target/debug/deps/<test> both
    // find target/<triple>/debug/kiln-agent)
    let profile = if cfg!(debug_assertions) {
        ["debug", "release"]
    } else {
        ["release", "debug"]
    };
    for anc in exe.ancestors().skip(1).take(4) {
        for prof in profile {
            for name in ["kiln-agent", "kiln"] {
                let c = anc.join(&triple).join(prof).join(name);
                if c.is_file() {
                    return Some(c);
                }
            }
        }
    }
    None
}

/// A local agent binary as this process knows it: its sha256 (computed once per path and
/// mtime, streaming, so a warm run never holds the binary in memory) and, while some host's
/// upload is under way, its content (read once and shared by the uploads going on at the same
/// time; freed when the last of them is done, so the connection daemon does not keep 20 MB).
struct AgentFile {
    mtime: std::time::SystemTime,
    sha: String,
    content: std::sync::Weak<Vec<u8>>,
}

type AgentSlot = Arc<Mutex<Option<AgentFile>>>;

/// The content as the owner of the `Bytes` an upload sends.
struct Shared(Arc<Vec<u8>>);
impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One slot per path. Callers hold the slot's lock while hashing or reading, so when 30 hosts
/// connect at once the binary is hashed once and the others wait for that result (single flight)
/// instead of each reading 20 MB.
fn agent_slot(path: &Path) -> AgentSlot {
    static SLOTS: OnceLock<Mutex<HashMap<PathBuf, AgentSlot>>> = OnceLock::new();
    let slots = SLOTS.get_or_init(Default::default);
    slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(path.to_path_buf())
        .or_default()
        .clone()
}

/// The slot for `path`, hashed for its current mtime; with `want_content`, also its content
/// (read now unless an upload under way holds it already).
fn with_agent_file<T>(
    path: &Path,
    want_content: bool,
    f: impl FnOnce(&AgentFile, Option<Arc<Vec<u8>>>) -> T,
) -> std::io::Result<T> {
    let slot = agent_slot(path);
    let mut g = slot.lock().unwrap_or_else(|e| e.into_inner());
    let mtime = std::fs::metadata(path)?.modified()?;
    if g.as_ref().is_none_or(|a| a.mtime != mtime) {
        let mut h = Sha256::new();
        let mut file = std::fs::File::open(path)?;
        std::io::copy(&mut file, &mut h)?;
        *g = Some(AgentFile {
            mtime,
            sha: hex::encode(h.finalize()),
            content: std::sync::Weak::new(),
        });
    }
    let Some(a) = g.as_mut() else {
        return Err(std::io::Error::other("agent cache slot empty"));
    };
    let mut content = None;
    if want_content {
        content = a.content.upgrade();
        if content.is_none() {
            let data = Arc::new(std::fs::read(path)?);
            // the file changed since it was hashed: hash what is actually sent
            a.sha = hex::encode(Sha256::digest(data.as_slice()));
            a.content = Arc::downgrade(&data);
            content = Some(data);
        }
    }
    Ok(f(a, content))
}

/// The sha256 of an agent binary this process has already hashed.
pub(crate) fn cached_sha(path: &Path) -> Option<String> {
    let slot = agent_slot(path);
    let g = slot.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().map(|a| a.sha.clone())
}

/// sha256 of the agent binary, off the async threads (hashing 20 MB takes tens of ms).
async fn agent_sha(path: &Path) -> std::io::Result<String> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || with_agent_file(&p, false, |a, _| a.sha.clone()))
        .await
        .map_err(std::io::Error::other)?
}

/// The agent binary's content (and its sha256), shared by every upload of the run.
async fn agent_content(path: &Path) -> std::io::Result<(String, bytes::Bytes)> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        with_agent_file(&p, true, |a, content| {
            let bytes =
                content.map_or_else(bytes::Bytes::new, |c| bytes::Bytes::from_owner(Shared(c)));
            (a.sha.clone(), bytes)
        })
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Start hashing the agent binary for this machine's architecture in the background, so that the
/// hash is ready when the SSH handshake (which takes about as long) is done.
pub fn prefetch(opts: &TransportOptions) {
    if let Some(p) = find_agent_binary(std::env::consts::ARCH, opts) {
        let slot = agent_slot(&p);
        let known = slot
            .try_lock()
            .map(|g| g.is_some())
            .unwrap_or(true /* someone is hashing it now */);
        if !known {
            tokio::task::spawn_blocking(move || {
                let _ = with_agent_file(&p, false, |_, _| ());
            });
        }
    }
}

fn quote(s: &str) -> String {
    shell_words::quote(s).into_owned()
}

/// `sudo ... sh -c SCRIPT` (or just `sh -c SCRIPT`), with positional args.
fn wrap(b: Option<&BecomeSpec>, script: &str, args: &[&str]) -> String {
    let mut cmd = String::new();
    if let Some(b) = b {
        cmd.push_str(&quote(&b.exe));
        cmd.push_str(" -H");
        if b.password.is_some() {
            cmd.push_str(&format!(" -S -p {}", quote(PROMPT)));
        } else {
            cmd.push_str(" -n");
        }
        for f in b
            .flags
            .iter()
            .filter(|f| !matches!(f.as_str(), "-H" | "-S" | "-n"))
        {
            cmd.push(' ');
            cmd.push_str(&quote(f));
        }
        cmd.push_str(&format!(" -u {} -- ", quote(&b.user)));
    }
    cmd.push_str("sh -c ");
    cmd.push_str(&quote(script));
    cmd.push_str(" kiln");
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a));
    }
    cmd
}

fn become_password(b: Option<&BecomeSpec>) -> Option<String> {
    b.and_then(|b| b.password.as_ref())
        .map(|p| match p.expose() {
            crate::value::Value::Str(s) => s.clone(),
            other => other.as_str().map(str::to_string).unwrap_or_default(),
        })
}

/// A command started on its own channel (the agent, once `launch` is done).
pub(crate) struct Started {
    pub(crate) read: russh::ChannelReadHalf,
    pub(crate) write: russh::ChannelWriteHalf<russh::client::Msg>,
    /// stdout that came after the ready line
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    exit: Option<u32>,
}

/// Start a command; with `wait_ready`, answer sudo's prompt and wait for the script's ready line.
async fn start(
    host: &str,
    h: &Handle,
    cmd: &str,
    pw: Option<&str>,
    wait_ready: bool,
) -> Result<Started, TransportError> {
    let lost = |e: russh::Error| TransportError::Unreachable {
        host: host.into(),
        msg: format!("cannot run a command: {e}"),
    };
    let ch = h.channel_open_session().await.map_err(lost)?;
    ch.exec(true, cmd).await.map_err(lost)?;
    let (mut read, write) = ch.split();
    let mut s = Parts {
        write,
        stdout: Vec::new(),
        stderr: Vec::new(),
        exit: None,
    };
    let mut prompts = 0;
    if wait_ready {
        loop {
            match read.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    s.stdout.extend_from_slice(&data);
                    if let Some(pos) = find(&s.stdout, READY.as_bytes()) {
                        let rest = pos + READY.len() + 1;
                        s.stdout = s.stdout.get(rest..).map(<[u8]>::to_vec).unwrap_or_default();
                        break;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    s.stderr.extend_from_slice(&data);
                    let seen = count(&s.stderr, PROMPT.as_bytes());
                    if seen > prompts {
                        prompts = seen;
                        if prompts > 1 {
                            return Err(TransportError::Become {
                                host: host.into(),
                                msg: "sudo refused the become password".into(),
                            });
                        }
                        let Some(pw) = pw else {
                            return Err(TransportError::Become {
                                host: host.into(),
                                msg: "sudo asks for a password; set ansible_become_password".into(),
                            });
                        };
                        s.write
                            .make_writer()
                            .write_all(format!("{pw}\n").as_bytes())
                            .await
                            .map_err(|e| TransportError::Unreachable {
                                host: host.into(),
                                msg: format!("cannot send the become password: {e}"),
                            })?;
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => s.exit = Some(exit_status),
                Some(_) => {}
                None => break,
            }
        }
    }
    Ok(Started {
        read,
        write: s.write,
        stdout: s.stdout,
        stderr: s.stderr,
        exit: s.exit,
    })
}

struct Parts {
    write: russh::ChannelWriteHalf<russh::client::Msg>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<u32>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn become_error(host: &str, b: Option<&BecomeSpec>, stderr: &[u8]) -> Option<TransportError> {
    let b = b?;
    let e = String::from_utf8_lossy(stderr);
    if e.contains("sudo:") {
        let line = e
            .lines()
            .find(|l| l.contains("sudo:"))
            .unwrap_or("")
            .trim()
            .to_string();
        return Some(TransportError::Become {
            host: host.into(),
            msg: format!("cannot become {}: {line}", b.user),
        });
    }
    None
}

/// Marks, on the exec's stdout, that the agent is starting on this very channel.
const STARTING: &str = "KILN-AGENT";
/// Marks the end of the cache listing: the script now waits for `SHA SIZE` and the upload.
const LISTED: &str = "KILN-LISTED";

/// The one exec that starts the agent on a connection. When the cache already holds the agent
/// built for the guessed architecture (`$2`) with hash `$1`, it starts it at once (warm: nothing
/// else is exchanged). Otherwise it reports the OS and architecture and the cache listing, reads
/// `SHA SIZE` from the controller (`- 0`: give up), receives SIZE bytes into the cache when SIZE
/// is not 0 (exactly SIZE: `head -c`; nothing else is sent before the agent says it started) and
/// starts that agent, still on this channel: a cold connection costs one exec too. The upload's
/// `umask 077` stays in its subshell: the agent runs with the login's umask, as a warm start does
/// (files that modules create get the modes Ansible gives them).
const SCRIPT: &str = r#"echo KILN-READY; u=$(uname -sm); echo "$u"; d="$HOME/.cache/kiln"
if [ "$u" = "Linux $2" ] && [ -x "$d/agent-$1" ]; then echo KILN-AGENT; exec "$d/agent-$1" agent; fi
ls "$d" 2>/dev/null; echo KILN-LISTED
read -r sha size || exit 1
[ "$sha" = - ] && exit 0
if [ "$size" != 0 ]; then (
  umask 077; mkdir -p "$d" && chmod 700 "$d" || exit 1
  t="$d/.upload-$$"
  head -c "$size" > "$t" || { rm -f "$t"; exit 1; }
  n=$(wc -c < "$t")
  if [ "$n" -ne "$size" ]; then rm -f "$t"; echo "kiln: agent upload truncated: $n of $size bytes arrived" >&2; exit 1; fi
  chmod 700 "$t" && mv -f "$t" "$d/agent-$sha"
) || exit 1; fi
echo KILN-AGENT; exec "$d/agent-$sha" agent
"#;

/// Tell the waiting script that nothing will come (`- 0`): it exits.
async fn give_up(s: &Started) {
    let mut w = s.write.make_writer();
    let _ = w.write_all(b"- 0\n").await;
    let _ = w.shutdown().await;
}

/// Make sure the agent is on the host (uploading it if needed), start it and talk to it.
pub async fn start_agent(
    spec: &ConnSpec,
    conn: Connected,
    opts: &TransportOptions,
) -> Result<Session, TransportError> {
    let started = launch(spec, &conn, opts).await?;
    attach(&spec.host, conn, started).await
}

/// Read the channel until a whole stdout line equal to one of `markers` has arrived. Returns
/// that marker and the lines before it; `s.stdout` keeps what came after (the agent's first
/// bytes, if any). `None` when the channel ended first (exit status and stderr are in `s`).
async fn until_line(s: &mut Started, markers: &[&str]) -> Option<(String, Vec<String>)> {
    loop {
        let mut offset = 0;
        let mut lines = Vec::new();
        while let Some(n) = find(&s.stdout[offset..], b"\n") {
            let line = String::from_utf8_lossy(&s.stdout[offset..offset + n]).into_owned();
            offset += n + 1;
            if let Some(m) = markers.iter().find(|m| **m == line) {
                s.stdout.drain(..offset);
                return Some((m.to_string(), lines));
            }
            lines.push(line);
        }
        match s.read.wait().await {
            Some(ChannelMsg::Data { data }) => s.stdout.extend_from_slice(&data),
            Some(ChannelMsg::ExtendedData { data, .. }) => s.stderr.extend_from_slice(&data),
            Some(ChannelMsg::ExitStatus { exit_status }) => s.exit = Some(exit_status),
            Some(_) => {}
            None => return None,
        }
    }
}

/// Make sure the agent is on the host (uploading it if needed) and start it, in one exec; the
/// channel it runs on is returned as is (the persistent-connection daemon splices it to its
/// clients).
///
/// Warm (the cache holds this build for this machine's architecture): the exec starts it at once.
/// Otherwise the exec reports OS, architecture and cache; the binary for that architecture is
/// sent over the same channel if the cache lacks it, and the same exec then starts it.
pub(crate) async fn launch(
    spec: &ConnSpec,
    conn: &Connected,
    opts: &TransportOptions,
) -> Result<Started, TransportError> {
    let host = spec.host.as_str();
    let b = spec.become_.as_ref();
    let pw = become_password(b);
    let agent_err = |msg: String| TransportError::Agent {
        host: host.into(),
        msg,
    };
    let read_err = |p: &Path, e: std::io::Error| {
        agent_err(format!("cannot read the agent binary {}: {e}", p.display()))
    };
    let lost = |e: russh::Error| TransportError::Unreachable {
        host: host.into(),
        msg: format!("upload failed: {e}"),
    };
    // what went wrong once the script has ended
    let failed = |s: &Started, what: &str| {
        become_error(host, b, &s.stderr).unwrap_or_else(|| {
            agent_err(format!(
                "{what} (exit {}): {}",
                s.exit.map_or("unknown".to_string(), |c| c.to_string()),
                String::from_utf8_lossy(&s.stderr).trim()
            ))
        })
    };
    // the agent for this machine's architecture is the likely one
    let local_arch = std::env::consts::ARCH;
    let guess = match find_agent_binary(local_arch, opts) {
        Some(p) => agent_sha(&p).await.map_err(|e| read_err(&p, e))?,
        None => "-".into(),
    };
    let cmd = wrap(b, SCRIPT, &[&guess, local_arch]);
    let mut s = start(host, &conn.handle, &cmd, pw.as_deref(), true).await?;
    let Some((marker, listing)) = until_line(&mut s, &[STARTING, LISTED]).await else {
        return Err(failed(&s, "probing the host failed"));
    };
    if marker == STARTING {
        // warm: the cached agent runs now
        return Ok(s);
    }
    let uname = listing.first().cloned().unwrap_or_default();
    let (os, arch) = uname.split_once(' ').unwrap_or((&uname, ""));
    if os != "Linux" {
        give_up(&s).await;
        return Err(agent_err(format!(
            "the host runs {os:?}; the kiln agent runs on Linux only"
        )));
    }
    let arch = match arch {
        "arm64" => "aarch64",
        a => a,
    };
    let Some(local) = find_agent_binary(arch, opts) else {
        give_up(&s).await;
        return Err(agent_err(format!(
            "no kiln agent binary for architecture {arch}: build one with \
             `cargo build --target {arch}-unknown-linux-musl` or pass --agent-binary {arch}=PATH (or KILN_AGENT_BINARY)"
        )));
    };
    let sha = match agent_sha(&local).await {
        Ok(sha) => sha,
        Err(e) => {
            give_up(&s).await;
            return Err(read_err(&local, e));
        }
    };
    let cached = listing
        .iter()
        .skip(1)
        .any(|c| c.trim() == format!("agent-{sha}"));
    if cached {
        s.write
            .make_writer()
            .write_all(format!("{sha} 0\n").as_bytes())
            .await
            .map_err(|e| agent_err(format!("cannot start the agent: {e}")))?;
    } else {
        let (sha_sent, bytes) = match agent_content(&local).await {
            Ok(x) => x,
            Err(e) => {
                give_up(&s).await;
                return Err(read_err(&local, e));
            }
        };
        // SSH's MAC already guarantees that every byte that arrives is the byte sent; what can
        // still go wrong is a short file (a dropped connection ends `head` early), which the
        // size check catches without hashing the binary on every host.
        let header = format!("{sha_sent} {}\n", bytes.len());
        s.write
            .make_writer()
            .write_all(header.as_bytes())
            .await
            .map_err(|e| agent_err(format!("cannot upload the agent: {e}")))?;
        // owned bytes go out in packets of the channel's maximum size (`data(&[u8])` would copy
        // through an 8 KiB buffer: four times as many SSH packets)
        s.write.data_bytes(bytes.clone()).await.map_err(lost)?;
        opts.stats
            .agent_bytes_uploaded
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        opts.stats.agent_uploads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "{host}: uploaded agent {} ({} bytes)",
            &sha_sent[..12.min(sha_sent.len())],
            bytes.len()
        );
    }
    if until_line(&mut s, &[STARTING]).await.is_none() {
        return Err(failed(
            &s,
            if cached {
                "the agent did not start"
            } else {
                "uploading the agent failed"
            },
        ));
    }
    Ok(s)
}

/// Carry the session over a channel on which `kiln agent` has just been started.
async fn attach(host: &str, conn: Connected, s: Started) -> Result<Session, TransportError> {
    let (mut pipe_w, pipe_r) = tokio::io::duplex(1 << 20);
    let stderr = Arc::new(Mutex::new(s.stderr));
    // how the agent ended, when sshd says so (exit status or signal)
    let ended: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(s.exit.map(exit_text)));
    let early = s.stdout;
    let mut read = s.read;
    let pump_err = stderr.clone();
    let pump_end = ended.clone();
    tokio::spawn(async move {
        if !early.is_empty() && pipe_w.write_all(&early).await.is_err() {
            return;
        }
        let mut eof = false;
        loop {
            // after the agent's output ended, wait briefly for sshd's word on how it ended
            // (exit status or signal, sent around the EOF) before the session learns of the end
            let m = if eof {
                match tokio::time::timeout(std::time::Duration::from_secs(1), read.wait()).await {
                    Ok(m) => m,
                    Err(_) => break,
                }
            } else {
                read.wait().await
            };
            let Some(m) = m else { break };
            match m {
                ChannelMsg::Data { data } => {
                    if pipe_w.write_all(&data).await.is_err() {
                        return;
                    }
                }
                ChannelMsg::ExtendedData { data, .. } => {
                    pump_err
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&data);
                }
                ChannelMsg::ExitStatus { exit_status } => {
                    *pump_end.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(exit_text(exit_status));
                }
                ChannelMsg::ExitSignal {
                    signal_name,
                    error_message,
                    ..
                } => {
                    let mut t = format!("the agent was killed by signal {signal_name:?}");
                    if !error_message.is_empty() {
                        t.push_str(&format!(" ({error_message})"));
                    }
                    *pump_end.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
                }
                ChannelMsg::Eof => {
                    if pump_end.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                        break;
                    }
                    eof = true;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    });
    let writer = s.write.make_writer();
    let closer: super::session::Closer = Box::new(move || Box::pin(conn.disconnect()));
    let diagnose: super::session::Diagnose = {
        let stderr = stderr.clone();
        Arc::new(move || {
            let ended = ended.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let tail = stderr_tail(&stderr.lock().unwrap_or_else(|e| e.into_inner()));
            match (ended, tail) {
                (None, None) => None,
                (Some(e), None) => Some(e),
                (None, Some(t)) => Some(format!("the agent's last stderr: {t}")),
                (Some(e), Some(t)) => Some(format!("{e}; its last stderr: {t}")),
            }
        })
    };
    match Session::start_diagnosed(host, pipe_r, writer, Some(closer), diagnose).await {
        Ok(sess) => Ok(sess),
        Err(TransportError::Protocol { host, msg }) => {
            let e = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner()))
                .trim()
                .to_string();
            Err(TransportError::Agent {
                host,
                msg: format!("{msg} (build {BUILD_ID}); agent stderr: {e}"),
            })
        }
        // the agent ended before it answered (its exit and stderr are in the message)
        Err(TransportError::Unreachable { host, msg }) => Err(TransportError::Agent {
            host,
            msg: format!("{msg} (build {BUILD_ID})"),
        }),
        Err(e) => Err(e),
    }
}

fn exit_text(status: u32) -> String {
    format!("the agent exited with status {status}")
}

/// The last lines of an agent's stderr (at most 5 lines, 600 bytes), or None when it said nothing.
pub(crate) fn stderr_tail(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(PROMPT))
        .collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        return None;
    }
    let start = tail.len().saturating_sub(600);
    let start = (start..=tail.len())
        .find(|&i| tail.is_char_boundary(i))
        .unwrap_or(tail.len());
    Some(tail[start..].to_string())
}
