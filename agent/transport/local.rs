//! `ansible_connection: local`: the same agent code, on this machine.
//!
//! Without become, the agent's request loop (`host::serve`) runs in-process on an in-memory pipe,
//! so a local session exercises exactly the code an SSH session does, minus SSH. With become, this
//! binary is started as `sudo -u USER kiln agent` with pipes (the password, if any, goes to sudo's
//! stdin after its prompt), since another user's rights need another process.

use super::spec::ConnSpec;
use super::{Session, TransportError, TransportOptions};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READY: &[u8] = b"KILN-READY\n";
const PROMPT: &str = "[kiln-become-password]";

pub async fn connect(spec: &ConnSpec, _opts: &TransportOptions) -> Result<Session, TransportError> {
    let current = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    match &spec.become_ {
        Some(b) if Some(&b.user) != current.as_ref() => become_agent(spec, b).await,
        _ => {
            let (ours, theirs) = tokio::io::duplex(1 << 20);
            let (tr, tw) = tokio::io::split(theirs);
            let agent = tokio::spawn(crate::host::serve(tr, tw));
            let (or, ow) = tokio::io::split(ours);
            let closer: super::session::Closer = Box::new(move || {
                Box::pin(async move {
                    let _ = agent.await;
                })
            });
            Session::start(&spec.host, or, ow, Some(closer)).await
        }
    }
}

async fn become_agent(
    spec: &ConnSpec,
    b: &super::spec::BecomeSpec,
) -> Result<Session, TransportError> {
    let host = spec.host.clone();
    let berr = |msg: String| TransportError::Become {
        host: host.clone(),
        msg,
    };
    let exe =
        std::env::current_exe().map_err(|e| berr(format!("cannot find this kiln binary: {e}")))?;
    let mut cmd = tokio::process::Command::new(&b.exe);
    cmd.arg("-H");
    if b.password.is_some() {
        cmd.args(["-S", "-p", PROMPT]);
    } else {
        cmd.arg("-n");
    }
    cmd.args(
        b.flags
            .iter()
            .filter(|f| !matches!(f.as_str(), "-H" | "-S" | "-n")),
    );
    cmd.args([
        "-u",
        &b.user,
        "--",
        "sh",
        "-c",
        "echo KILN-READY; exec \"$0\" agent",
    ])
    .arg(&exe)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| berr(format!("cannot run {}: {e}", b.exe)))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(berr("no pipes to the become process".into()));
    };
    // wait for the ready line, answering sudo's prompt once
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut answered = false;
    let mut ob = [0u8; 4096];
    let mut eb = [0u8; 4096];
    loop {
        tokio::select! {
            n = stdout.read(&mut ob) => match n {
                Ok(0) | Err(_) => {
                    let _ = stderr.read_to_end(&mut err).await;
                    return Err(berr(format!("sudo failed: {}", String::from_utf8_lossy(&err).trim())));
                }
                Ok(n) => {
                    out.extend_from_slice(&ob[..n]);
                    if out.starts_with(READY) {
                        break;
                    }
                }
            },
            n = stderr.read(&mut eb) => if let Ok(n) = n {
                err.extend_from_slice(&eb[..n]);
                if String::from_utf8_lossy(&err).contains(PROMPT) {
                    if answered {
                        return Err(berr("sudo refused the become password".into()));
                    }
                    answered = true;
                    err.clear();
                    let pw = b.password.as_ref().and_then(|p| p.expose().as_str().map(str::to_string)).unwrap_or_default();
                    stdin.write_all(format!("{pw}\n").as_bytes()).await.map_err(|e| berr(e.to_string()))?;
                }
            },
        }
    }
    let rest = out.split_off(READY.len());
    let reader = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(rest), stdout);
    // the agent's stderr from here on: drained (a full pipe would stop it) and kept, the end of
    // it, for the error that says why the agent went away
    let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    {
        let tail = tail.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.extend_from_slice(&buf[..n]);
                let over = t.len().saturating_sub(4096);
                t.drain(..over);
            }
        });
    }
    let child = std::sync::Arc::new(tokio::sync::Mutex::new(child));
    let diagnose: super::session::Diagnose = {
        let child = child.clone();
        std::sync::Arc::new(move || {
            let status = child
                .try_lock()
                .ok()
                .and_then(|mut c| c.try_wait().ok().flatten())
                .map(|s| format!("the agent ended: {s}"));
            let text = super::upload::stderr_tail(&tail.lock().unwrap_or_else(|e| e.into_inner()))
                .map(|t| format!("its last stderr: {t}"));
            match (status, text) {
                (None, None) => None,
                (a, b) => Some(a.into_iter().chain(b).collect::<Vec<_>>().join("; ")),
            }
        })
    };
    let closer: super::session::Closer = Box::new(move || {
        Box::pin(async move {
            let mut c = child.lock().await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c.wait()).await;
        })
    });
    Session::start_diagnosed(&spec.host, reader, stdin, Some(closer), diagnose).await
}
