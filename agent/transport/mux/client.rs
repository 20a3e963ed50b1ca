//! The run's side of the connection daemon: ask it for a host's agent (starting the daemon when
//! none runs), and `kiln mux status|stop`.

use super::*;

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

pub(super) fn make_private_dir(dir: &Path) -> std::io::Result<()> {
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
