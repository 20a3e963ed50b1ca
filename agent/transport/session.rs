//! The controller's end of one agent channel: a [`Session`] multiplexes requests over it.
//!
//! A writer task owns the channel's write half and a reader task owns the read half. Each request
//! gets a fresh id and a slot in the pending table; the reader routes every response frame to the
//! slot with its id (streamed exec output included), so any number of requests can be in flight
//! on one channel. When the channel ends, every waiting request fails with a protocol error
//! naming the host rather than hanging.

use super::TransportError;
use crate::protocol::{
    encode, read_frame, AttrsRequest, ExecRequest, ExecResult, Frame, FrameError, NetReport,
    NetRequest, Request, Response, StatDetail, StatResult, Stream, WriteRequest, WriteResult,
    BUILD_ID,
};
use crate::value::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

type Pending = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Response>>>>;

/// What the connection knows about an agent whose channel closed (its exit status or signal,
/// the tail of its stderr), for the error that says so; `None` when it knows nothing.
pub type Diagnose = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Why a channel ended without an error: said to the operator with what to do about it.
fn closed_text(host: &str, diagnose: Option<&Diagnose>) -> String {
    let mut s = format!(
        "the agent on {host} exited or its SSH session closed (the host rebooted, the agent was \
         killed, or sshd dropped the connection): run again; `-vvvv` shows the SSH side"
    );
    if let Some(d) = diagnose.and_then(|d| d()) {
        s.push_str("; ");
        s.push_str(&d);
    }
    s
}

/// Called on close, after the agent channel is shut: disconnects SSH, reaps a child, ...
pub type Closer = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// One running agent on one host, as one user. Cheap to share (`&self` methods).
pub struct Session {
    host: String,
    /// The user the agent runs as (after become).
    pub user: String,
    /// The agent's process id on the host.
    pub agent_pid: u32,
    next_id: AtomicU64,
    pending: Pending,
    out: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closer: Mutex<Option<Closer>>,
    /// Why the channel ended: (the other end went away, what to say).
    closed_why: Arc<Mutex<Option<(bool, String)>>>,
    /// Carried by the persistent-connection daemon (`mux.rs`) rather than owning its channel.
    muxed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host)
            .field("user", &self.user)
            .finish()
    }
}

impl Session {
    /// Start multiplexing over a channel to a freshly started agent, and exchange hellos.
    pub(crate) async fn start<R, W>(
        host: &str,
        read: R,
        write: W,
        closer: Option<Closer>,
    ) -> Result<Session, TransportError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Session::start_on(host, read, write, closer, false, None).await
    }

    /// [`Session::start`], with what the connection can tell about the agent when the channel
    /// closes (said in the error every waiting request then gets).
    pub(crate) async fn start_diagnosed<R, W>(
        host: &str,
        read: R,
        write: W,
        closer: Option<Closer>,
        diagnose: Diagnose,
    ) -> Result<Session, TransportError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Session::start_on(host, read, write, closer, false, Some(diagnose)).await
    }

    /// The same over the persistent-connection daemon's socket: the agent there may have served
    /// earlier runs, so request ids start at a random point (an answer still owed to a run that
    /// was killed can never be taken for one of ours; the daemon drops those anyway).
    pub(crate) async fn start_muxed<R, W>(
        host: &str,
        read: R,
        write: W,
    ) -> Result<Session, TransportError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Session::start_on(host, read, write, None, true, None).await
    }

    async fn start_on<R, W>(
        host: &str,
        read: R,
        mut write: W,
        closer: Option<Closer>,
        muxed: bool,
        diagnose: Option<Diagnose>,
    ) -> Result<Session, TransportError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let closed_why = Arc::new(Mutex::new(None));
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer = tokio::spawn(async move {
            if write_queued(&mut rx, &mut write).await.is_ok() {
                let _ = write.shutdown().await;
            }
        });
        let reader = {
            let pending = pending.clone();
            let closed_why = closed_why.clone();
            let host = host.to_string();
            let mut read = read;
            tokio::spawn(async move {
                let why = loop {
                    match read_frame::<_, Response>(&mut read).await {
                        Ok(Frame { id, body }) => {
                            let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                            let fin = body.is_final();
                            if let Some(tx) = p.get(&id) {
                                let _ = tx.send(body);
                            }
                            if fin {
                                p.remove(&id);
                            }
                        }
                        Err(FrameError::Closed) => {
                            break (true, closed_text(&host, diagnose.as_ref()))
                        }
                        // cut off in the middle of a frame: gone as well
                        Err(FrameError::Io(e)) => {
                            break (
                                true,
                                format!("{} ({e})", closed_text(&host, diagnose.as_ref())),
                            )
                        }
                        Err(e) => break (false, e.to_string()),
                    }
                };
                *closed_why.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                // fail everything still waiting
                pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
            })
        };
        let mut s = Session {
            host: host.to_string(),
            user: String::new(),
            agent_pid: 0,
            next_id: AtomicU64::new(if muxed { random_id_base() } else { 1 }),
            pending,
            out: Mutex::new(Some(tx)),
            reader: Mutex::new(Some(reader)),
            writer: Mutex::new(Some(writer)),
            closer: Mutex::new(closer),
            closed_why,
            muxed,
        };
        match s
            .call(Request::Hello {
                build_id: BUILD_ID.to_string(),
                idle_exit_secs: crate::protocol::idle_exit_secs(),
            })
            .await?
        {
            Response::Hello {
                build_id,
                pid,
                user,
                ..
            } => {
                if build_id != BUILD_ID {
                    s.close().await;
                    return Err(TransportError::Agent {
                        host: host.to_string(),
                        msg: format!(
                            "the agent on the host is build {build_id}, this controller is {BUILD_ID}; \
                             rebuild the agent from the same tree (cargo build --target x86_64-unknown-linux-musl) \
                             or pass --agent-binary ARCH=PATH"
                        ),
                    });
                }
                s.agent_pid = pid;
                s.user = user;
                if !muxed {
                    // the connection daemon sends its own heartbeats to the agents it holds
                    s.heartbeat();
                }
            }
            other => return Err(s.protocol(format!("unexpected hello answer {other:?}"))),
        }
        Ok(s)
    }

    /// Ping the agent every quarter of its idle deadline while the session is open (answers are
    /// dropped: the reader knows no such request), so the agent knows its controller is there.
    /// Holds only a weak sender: closing the session still ends the agent's input.
    fn heartbeat(&self) {
        let Some(weak) = self
            .out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|tx| tx.downgrade())
        else {
            return;
        };
        spawn_heartbeat(weak);
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn protocol(&self, msg: String) -> TransportError {
        TransportError::Protocol {
            host: self.host.clone(),
            msg,
        }
    }

    fn closed_error(&self) -> TransportError {
        let why = self
            .closed_why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match why.unwrap_or_else(|| (true, closed_text(&self.host, None))) {
            // nothing wrong with the protocol: the other end went away
            (true, msg) => TransportError::Unreachable {
                host: self.host.clone(),
                msg,
            },
            (false, msg) => self.protocol(msg),
        }
    }

    /// Send a request; the receiver yields its response frames (streamed ones, then the final one).
    fn send(&self, req: Request) -> Result<mpsc::UnboundedReceiver<Response>, TransportError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let buf = encode(&Frame { id, body: req }).map_err(|e| self.protocol(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        if self
            .closed_why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Err(self.closed_error());
        }
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        match out.as_ref() {
            Some(o) if o.send(buf).is_ok() => Ok(rx),
            _ => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                Err(self.closed_error())
            }
        }
    }

    async fn call(&self, req: Request) -> Result<Response, TransportError> {
        let mut rx = self.send(req)?;
        loop {
            match rx.recv().await {
                Some(Response::Output { .. }) => continue,
                Some(Response::Error { kind, message }) => {
                    return Err(TransportError::Remote {
                        host: self.host.clone(),
                        kind,
                        msg: message,
                    })
                }
                Some(r) => return Ok(r),
                None => return Err(self.closed_error()),
            }
        }
    }

    /// Round trip of a no-op.
    pub async fn ping(&self) -> Result<(), TransportError> {
        match self.call(Request::Ping).await? {
            Response::Pong => Ok(()),
            other => Err(self.protocol(format!("unexpected answer to ping: {other:?}"))),
        }
    }

    /// Run a command and wait for it; output is collected.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecResult, TransportError> {
        self.exec_streaming(req, |_, _| {}).await
    }

    /// Run a command, calling `on_output` with each chunk of stdout/stderr as it arrives.
    pub async fn exec_streaming(
        &self,
        req: ExecRequest,
        mut on_output: impl FnMut(Stream, &[u8]) + Send,
    ) -> Result<ExecResult, TransportError> {
        let mut rx = self.send(Request::Exec(req))?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            match rx.recv().await {
                Some(Response::Output { stream, data }) => {
                    on_output(stream, &data);
                    match stream {
                        Stream::Stdout => out.extend_from_slice(&data),
                        Stream::Stderr => err.extend_from_slice(&data),
                    }
                }
                Some(Response::ExecDone(mut r)) => {
                    r.stdout = out;
                    r.stderr = err;
                    return Ok(r);
                }
                Some(Response::Error { kind, message }) => {
                    return Err(TransportError::Remote {
                        host: self.host.clone(),
                        kind,
                        msg: message,
                    })
                }
                Some(other) => {
                    return Err(self.protocol(format!("unexpected answer to exec: {other:?}")))
                }
                None => return Err(self.closed_error()),
            }
        }
    }

    pub async fn stat(
        &self,
        path: &str,
        follow: bool,
        checksum: bool,
    ) -> Result<StatResult, TransportError> {
        match self
            .call(Request::Stat {
                path: path.into(),
                follow,
                checksum,
            })
            .await?
        {
            Response::Stat(s) => Ok(s),
            other => Err(self.protocol(format!("unexpected answer to stat: {other:?}"))),
        }
    }

    /// What Ansible's `stat` reports about a path (`base.exists` false when it is absent).
    pub async fn stat_detail(
        &self,
        path: &str,
        follow: bool,
        checksum_algorithm: Option<String>,
        mime: bool,
    ) -> Result<StatDetail, TransportError> {
        match self
            .call(Request::StatDetail {
                path: path.into(),
                follow,
                checksum_algorithm,
                mime,
            })
            .await?
        {
            Response::StatDetail(s) => Ok(s),
            other => Err(self.protocol(format!("unexpected answer to stat: {other:?}"))),
        }
    }

    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, TransportError> {
        match self.call(Request::ReadFile { path: path.into() }).await? {
            Response::File(b) => Ok(b),
            other => Err(self.protocol(format!("unexpected answer to read_file: {other:?}"))),
        }
    }

    pub async fn write_file(&self, req: WriteRequest) -> Result<WriteResult, TransportError> {
        match self.call(Request::WriteFile(req)).await? {
            Response::Written(w) => Ok(w),
            other => Err(self.protocol(format!("unexpected answer to write_file: {other:?}"))),
        }
    }

    /// Write a controller file of any size to the host in [`crate::protocol::CHUNK`]-sized
    /// pieces, one in flight at a time (constant memory on both sides), then place it as
    /// [`Session::write_file`] does (atomic rename; `req.content` is ignored). The local file must
    /// not change while it is sent: the agent checks nothing but reports the sha256 it received.
    /// On any error the upload is aborted and the host's temp file removed.
    pub async fn write_file_from(
        &self,
        local: &std::path::Path,
        req: WriteRequest,
    ) -> Result<WriteResult, TransportError> {
        use tokio::io::AsyncReadExt;
        // a task failure (as the agent's own errors are), not an unreachable host
        let local_err = |e: std::io::Error| TransportError::Remote {
            host: self.host.clone(),
            kind: crate::protocol::RemoteErrorKind::Io,
            msg: format!("cannot read {} on the controller: {e}", local.display()),
        };
        let mut f = tokio::fs::File::open(local).await.map_err(local_err)?;
        let handle = match self
            .call(Request::UploadBegin {
                path: req.path.clone(),
            })
            .await?
        {
            Response::Upload { handle } => handle,
            other => return Err(self.protocol(format!("unexpected answer to upload: {other:?}"))),
        };
        let sent: Result<(), TransportError> = async {
            let mut buf = vec![0u8; crate::protocol::CHUNK];
            loop {
                let mut n = 0;
                while n < buf.len() {
                    let r = f.read(&mut buf[n..]).await.map_err(local_err)?;
                    if r == 0 {
                        break;
                    }
                    n += r;
                }
                if n == 0 {
                    return Ok(());
                }
                self.done(Request::UploadChunk {
                    handle,
                    data: buf[..n].to_vec(),
                })
                .await?;
                if n < buf.len() {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = sent {
            let _ = self.done(Request::UploadAbort { handle }).await;
            return Err(e);
        }
        match self
            .call(Request::UploadCommit {
                handle,
                write: WriteRequest {
                    content: Vec::new(),
                    ..req
                },
            })
            .await?
        {
            Response::Written(w) => Ok(w),
            other => Err(self.protocol(format!("unexpected answer to upload: {other:?}"))),
        }
    }

    /// Read a host file of any size in [`crate::protocol::CHUNK`]-sized pieces, one in flight at a
    /// time (constant memory on both sides), handing each to `sink` in order. Returns the size
    /// the file had when opened and the number of bytes read. A `sink` error stops the read (the
    /// host closes the file) and is returned as a task failure naming the controller side.
    pub async fn read_file_to(
        &self,
        path: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(u64, u64), TransportError> {
        let (handle, size) = match self.call(Request::ReadBegin { path: path.into() }).await? {
            Response::Reading { handle, size } => (handle, size),
            other => return Err(self.protocol(format!("unexpected answer to read: {other:?}"))),
        };
        let mut read = 0u64;
        loop {
            let chunk = match self.call(Request::ReadChunk { handle }).await? {
                Response::File(b) => b,
                other => return Err(self.protocol(format!("unexpected answer to read: {other:?}"))),
            };
            if chunk.is_empty() {
                return Ok((size, read));
            }
            read += chunk.len() as u64;
            if let Err(e) = sink(&chunk) {
                let _ = self.done(Request::ReadEnd { handle }).await;
                return Err(TransportError::Remote {
                    host: self.host.clone(),
                    kind: crate::protocol::RemoteErrorKind::Io,
                    msg: format!("cannot store {path} from the host on the controller: {e}"),
                });
            }
        }
    }

    /// Digests of a host file (`md5`, `sha1`, `sha256`, ...), hex, in the order asked, computed
    /// on the host in one read of the file.
    pub async fn digests(
        &self,
        path: &str,
        algorithms: &[&str],
    ) -> Result<Vec<String>, TransportError> {
        match self
            .call(Request::Digests {
                path: path.into(),
                algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
            })
            .await?
        {
            Response::Digests(d) if d.len() == algorithms.len() => Ok(d),
            other => Err(self.protocol(format!("unexpected answer to digests: {other:?}"))),
        }
    }

    /// Copy a file to another path on the host itself, streamed there (nothing crosses the
    /// channel), placed as [`Session::write_file`] does (atomic; `req.content` is ignored).
    pub async fn copy_on_host(
        &self,
        src: &str,
        req: WriteRequest,
    ) -> Result<WriteResult, TransportError> {
        match self
            .call(Request::CopyFile {
                src: src.into(),
                write: WriteRequest {
                    content: Vec::new(),
                    ..req
                },
            })
            .await?
        {
            Response::Written(w) => Ok(w),
            other => Err(self.protocol(format!("unexpected answer to copy: {other:?}"))),
        }
    }

    async fn done(&self, req: Request) -> Result<bool, TransportError> {
        match self.call(req).await? {
            Response::Done { changed } => Ok(changed),
            other => Err(self.protocol(format!("unexpected answer: {other:?}"))),
        }
    }

    /// `mkdir -p`; true when something was created.
    pub async fn mkdir(&self, path: &str, mode: Option<u32>) -> Result<bool, TransportError> {
        self.done(Request::Mkdir {
            path: path.into(),
            mode,
        })
        .await
    }

    /// Remove a path; true when something was removed.
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<bool, TransportError> {
        self.done(Request::Remove {
            path: path.into(),
            recursive,
        })
        .await
    }

    /// Make `path` a link to `target`; true when it changed.
    pub async fn symlink(
        &self,
        target: &str,
        path: &str,
        force: bool,
    ) -> Result<bool, TransportError> {
        self.done(Request::Symlink {
            target: target.into(),
            path: path.into(),
            force,
        })
        .await
    }

    /// Set an existing path's mode/owner/group; returns (changed, before, after).
    pub async fn set_attrs(
        &self,
        req: AttrsRequest,
    ) -> Result<(bool, StatResult, StatResult), TransportError> {
        match self.call(Request::SetAttrs(req)).await? {
            Response::AttrsSet {
                changed,
                before,
                after,
            } => Ok((changed, before, after)),
            other => Err(self.protocol(format!("unexpected answer to set_attrs: {other:?}"))),
        }
    }

    /// Bring links, addresses and routes to the wanted state (or, with `check`, say what would change).
    pub async fn net(&self, req: NetRequest) -> Result<NetReport, TransportError> {
        match self.call(Request::Net(req)).await? {
            Response::Net(r) => Ok(r),
            other => Err(self.protocol(format!("unexpected answer to net: {other:?}"))),
        }
    }

    /// Facts under Ansible's names (without the `ansible_` prefix).
    pub async fn facts(&self) -> Result<Value, TransportError> {
        match self.call(Request::Facts).await? {
            Response::Facts(j) => Ok(Value::from_json(j)),
            other => Err(self.protocol(format!("unexpected answer to facts: {other:?}"))),
        }
    }

    /// Close for good (`meta: reset_connection`): a persistent connection is dropped by the daemon
    /// too (the agent exits and the next run starts a fresh one, as `ssh -O stop` does for
    /// Ansible), so group memberships and the like are read afresh.
    pub async fn reset(&self) {
        if self.muxed {
            // an empty frame: the daemon's "forget this connection" (the agent never sees it)
            if let Some(o) = self.out.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = o.send(vec![0, 0, 0, 0]);
            }
        }
        self.close().await;
    }

    /// Close the channel: the agent sees end of input and exits; then the connection closes.
    /// Over the persistent-connection daemon only this run's use of it ends.
    pub async fn close(&self) {
        // dropping the sender ends the writer task, which shuts the write half (EOF to the agent)
        self.out.lock().unwrap_or_else(|e| e.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = writer {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), w).await;
        }
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(r) = reader {
            // the agent closes its end once it has exited
            if tokio::time::timeout(std::time::Duration::from_secs(5), r)
                .await
                .is_err()
            {
                tracing::debug!("{}: agent did not close its channel in 5 s", self.host);
            }
        }
        let closer = self.closer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(c) = closer {
            c().await;
        }
    }
}

/// Write what `rx` yields until every sender is gone: all that is queued at once, then one flush
/// (a burst of requests costs one write to the channel, not one each). Stops at a write error.
pub(crate) async fn write_queued<B: AsRef<[u8]>, W: AsyncWrite + Unpin>(
    rx: &mut mpsc::UnboundedReceiver<B>,
    w: &mut W,
) -> std::io::Result<()> {
    while let Some(buf) = rx.recv().await {
        w.write_all(buf.as_ref()).await?;
        while let Ok(more) = rx.try_recv() {
            w.write_all(more.as_ref()).await?;
        }
        w.flush().await?;
    }
    Ok(())
}

/// A random starting request id below 2^62 (far from the daemon's own id, `u64::MAX`).
fn random_id_base() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    (h.finish() >> 2).max(1)
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(r) = self.reader.get_mut().ok().and_then(|r| r.take()) {
            r.abort();
        }
    }
}

/// Pings the agent behind `weak` every quarter of its idle deadline until the sender is gone (the
/// session closed or the connection dropped), so the agent knows its controller is there
/// (`Request::Hello`'s idle deadline). Used by a session and by the mux daemon holding one.
pub(crate) fn spawn_heartbeat<T>(weak: mpsc::WeakUnboundedSender<T>)
where
    T: From<Vec<u8>> + Clone + Send + 'static,
{
    let Ok(buf) = encode(&Frame {
        id: crate::protocol::HEARTBEAT_ID,
        body: Request::Ping,
    }) else {
        return;
    };
    let buf = T::from(buf);
    let every = std::time::Duration::from_secs(crate::protocol::idle_exit_secs()) / 4;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match weak.upgrade() {
                Some(tx) if tx.send(buf.clone()).is_ok() => {}
                _ => return,
            }
        }
    });
}
