//! The agent's stdin and stdout as non-blocking pipes driven by the runtime's reactor.
//!
//! `tokio::io::stdin()`/`stdout()` hand every read and write to a blocking thread, which puts a
//! thread hand-off at both ends of every request on the host (measurable on a busy host: the
//! round trip of a no-op is a few hundred microseconds). Over SSH the agent's stdin and stdout are
//! pipes from sshd that only the agent uses, so they can be switched to non-blocking mode and
//! polled with epoll. When they are not pollable (a regular file, say), [`open`] gives `None` and
//! the caller falls back to tokio's blocking-thread stdio.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One end of a pipe, non-blocking, registered with the reactor.
pub struct Pipe(AsyncFd<std::fs::File>);

/// A non-blocking copy of descriptor `fd` (0 or 1), or `None` when it cannot be polled.
/// Call it inside the runtime (it registers with the reactor).
pub fn open(fd: impl AsFd) -> Option<Pipe> {
    let owned: OwnedFd = fd.as_fd().try_clone_to_owned().ok()?;
    let flags = nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_GETFL).ok()?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&owned, nix::fcntl::FcntlArg::F_SETFL(flags)).ok()?;
    // SAFETY: the File owns its descriptor (a dup made above) and is moved into the AsyncFd, so
    // the descriptor stays open and refers to the same pipe for the AsyncFd's whole life.
    unsafe { AsyncFd::register(std::fs::File::from(owned)) }
        .ok()
        .map(Pipe)
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| f.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(data)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
