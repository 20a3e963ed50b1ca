//! Run a command on the host and stream its output back as it comes.
//!
//! The child gets its own process group, and a guard kills that whole group if the request is
//! dropped (the channel closed, the controller gave up) or times out, so a shell's background
//! children do not survive the agent.

use crate::protocol::{ExecRequest, ExecResult, Response, Stream};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `tee --append`: a chunk to the file as it arrives; a write error stops the copying (the
/// command still runs to its end, as tee keeps passing its input on).
async fn append(tee: &mut Option<tokio::fs::File>, data: &[u8]) {
    if let Some(f) = tee {
        // flushed before the chunk is sent on: tokio's File writes in the background otherwise
        if f.write_all(data).await.is_err() || f.flush().await.is_err() {
            *tee = None;
        }
    }
}

pub async fn run(
    req: ExecRequest,
    send: &(dyn Fn(Response) + Sync),
) -> std::io::Result<ExecResult> {
    let mut cmd = match (&req.shell, req.argv.split_first()) {
        (Some(sh), _) => {
            let mut c = tokio::process::Command::new("/bin/sh");
            c.arg("-c").arg(sh);
            c
        }
        (None, Some((prog, args))) => {
            let mut c = tokio::process::Command::new(prog);
            c.args(args);
            c
        }
        (None, None) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "exec needs a command (argv or shell)",
            ))
        }
    };
    cmd.envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(if req.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    let mut tee = match &req.append_to {
        Some(path) => Some(
            tokio::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .await
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot append to {path}: {e}"))
                })?,
        ),
        None => None,
    };
    let mut child = cmd.spawn()?;
    let mut guard = GroupGuard(child.id().map(|p| p as i32));
    if let Some(mut stdin) = child.stdin.take() {
        let data = req.stdin;
        tokio::spawn(async move {
            let _ = stdin.write_all(&data).await;
        });
    }
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(std::io::Error::other("child has no stdout/stderr pipe"));
    };
    let mut result = ExecResult::default();
    let mut obuf = vec![0u8; 32 * 1024];
    let mut ebuf = vec![0u8; 32 * 1024];
    let (mut out_open, mut err_open) = (true, true);
    let deadline = req
        .timeout
        .map(|t| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(t.max(0.0)));
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    while out_open || err_open {
        tokio::select! {
            n = out.read(&mut obuf), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    result.stdout.extend_from_slice(&obuf[..n]);
                    append(&mut tee, &obuf[..n]).await;
                    send(Response::Output { stream: Stream::Stdout, data: obuf[..n].to_vec() });
                }
            },
            n = err.read(&mut ebuf), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    result.stderr.extend_from_slice(&ebuf[..n]);
                    append(&mut tee, &ebuf[..n]).await;
                    send(Response::Output { stream: Stream::Stderr, data: ebuf[..n].to_vec() });
                }
            },
            _ = &mut sleep => {
                result.timed_out = true;
                guard.kill();
                break;
            }
        }
    }
    let status = child.wait().await?;
    // the command finished by itself: what it deliberately left running (a daemon it started)
    // stays, as with Ansible's command module
    guard.0 = None;
    use std::os::unix::process::ExitStatusExt;
    result.rc = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => -s,
        _ => -1,
    };
    // the controller accumulates streamed output itself; do not send it twice
    result.stdout.clear();
    result.stderr.clear();
    Ok(result)
}
