//! What runs on the target host inside `kiln agent`: the request loop and the operations.
//!
//! The agent reads framed requests (see `crate::protocol`) from its stdin and writes framed
//! responses to its stdout. Each request runs on its own task so a long exec does not hold up a
//! stat; a single writer task owns stdout. When stdin closes (the SSH channel closed, or the
//! controller died) the loop ends, in-flight operations are dropped — which kills their process
//! groups — and the agent exits, so no kiln process outlives its controller. The same `serve`
//! runs in-process for `local` connections, over an in-memory pipe.

pub mod exec;
pub mod facts;
pub mod files;
pub mod netlink;
pub mod stdio;

use crate::protocol::{
    read_frame, Frame, FrameError, RemoteErrorKind, Request, Response, BUILD_ID,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Serve requests until the input closes. Returns an error only for a broken stream.
pub async fn serve<R, W>(mut input: R, mut output: W) -> Result<(), FrameError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame<Response>>();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(frame) = rx.recv().await {
            // an answer too large for a frame becomes an error answer, not a dead channel
            let buf = match crate::protocol::encode(&frame) {
                Ok(b) => b,
                Err(e) => match crate::protocol::encode(&Frame {
                    id: frame.id,
                    body: Response::Error {
                        kind: RemoteErrorKind::Other,
                        message: format!("the agent cannot send its answer: {e}"),
                    },
                }) {
                    Ok(b) => b,
                    Err(_) => continue,
                },
            };
            if let Err(e) = async {
                output.write_all(&buf).await?;
                output.flush().await
            }
            .await
            {
                tracing::debug!("agent: cannot write a response: {e}");
                return;
            }
        }
    });
    let mut tasks = tokio::task::JoinSet::new();
    // frames are read by their own task, so the idle deadline never cuts a frame in half
    let (ftx, mut frames) = mpsc::channel::<Result<Frame<Request>, FrameError>>(16);
    let reader = tokio::spawn(async move {
        loop {
            let f = read_frame(&mut input).await;
            let end = f.is_err();
            if ftx.send(f).await.is_err() || end {
                return;
            }
        }
    });
    let mut idle: Option<std::time::Duration> = None;
    // large files arriving in chunks; dropped (temp files removed) when this channel ends
    let uploads = std::sync::Arc::new(files::Uploads::default());
    // files being read in chunks; closed when this channel ends
    let reads = std::sync::Arc::new(files::Reads::default());
    let result = loop {
        // reap finished tasks so the set does not grow without bound
        while tasks.try_join_next().is_some() {}
        let next = match idle {
            Some(d) => match tokio::time::timeout(d, frames.recv()).await {
                Ok(f) => f,
                Err(_) => {
                    eprintln!(
                        "kiln agent: no word from the controller for {} s (it is gone); exiting",
                        d.as_secs()
                    );
                    break Ok(());
                }
            },
            None => frames.recv().await,
        };
        let frame: Frame<Request> = match next {
            Some(Ok(f)) => f,
            None | Some(Err(FrameError::Closed)) => break Ok(()),
            Some(Err(e)) => break Err(e),
        };
        if let Request::Hello { idle_exit_secs, .. } = &frame.body {
            idle = (*idle_exit_secs > 0).then(|| std::time::Duration::from_secs(*idle_exit_secs));
            // one controller at a time per channel: a new one's Hello orphans the old one's uploads
            uploads.clear();
            reads.clear();
        }
        let tx = tx.clone();
        let ups = uploads.clone();
        let rds = reads.clone();
        tasks.spawn(async move {
            let id = frame.id;
            let send = |body: Response| {
                let _ = tx.send(Frame { id, body });
            };
            let body = handle(frame.body, &send, &ups, &rds).await;
            send(body);
        });
    };
    reader.abort();
    // channel closed: stop everything still running (exec guards kill their process groups)
    tasks.shutdown().await;
    drop(uploads);
    drop(reads);
    drop(tx);
    let _ = writer.await;
    result
}

fn error_response(e: &std::io::Error) -> Response {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => RemoteErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => RemoteErrorKind::PermissionDenied,
        std::io::ErrorKind::InvalidInput => RemoteErrorKind::BadRequest,
        _ => RemoteErrorKind::Io,
    };
    Response::Error {
        kind,
        message: e.to_string(),
    }
}

async fn handle(
    req: Request,
    send: &(dyn Fn(Response) + Sync),
    ups: &std::sync::Arc<files::Uploads>,
    reads: &std::sync::Arc<files::Reads>,
) -> Response {
    let r: std::io::Result<Response> = match req {
        Request::Hello { .. } => Ok(Response::Hello {
            build_id: BUILD_ID.to_string(),
            pid: std::process::id(),
            uid: nix::unistd::getuid().as_raw(),
            user: nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default(),
        }),
        Request::Ping => Ok(Response::Pong),
        Request::Exec(r) => exec::run(r, send).await.map(Response::ExecDone),
        Request::Stat {
            path,
            follow,
            checksum,
        } => blocking(move || files::stat(&path, follow, checksum))
            .await
            .map(Response::Stat),
        Request::StatDetail {
            path,
            follow,
            checksum_algorithm,
            mime,
        } => {
            blocking(move || files::stat_detail(&path, follow, checksum_algorithm.as_deref(), mime))
                .await
                .map(Response::StatDetail)
        }
        Request::ReadFile { path } => blocking(move || files::read_whole(&path))
            .await
            .map(Response::File),
        Request::ReadBegin { path } => {
            let reads = reads.clone();
            blocking(move || files::read_begin(&reads, &path))
                .await
                .map(|(handle, size)| Response::Reading { handle, size })
        }
        Request::ReadChunk { handle } => {
            let reads = reads.clone();
            blocking(move || files::read_chunk(&reads, handle, crate::protocol::CHUNK))
                .await
                .map(Response::File)
        }
        Request::ReadEnd { handle } => {
            files::read_end(reads, handle);
            Ok(Response::Done { changed: false })
        }
        Request::Digests { path, algorithms } => {
            blocking(move || files::digests(&path, &algorithms))
                .await
                .map(Response::Digests)
        }
        Request::CopyFile { src, write } => blocking(move || files::copy_file(&src, &write))
            .await
            .map(Response::Written),
        Request::WriteFile(w) => blocking(move || files::write(&w))
            .await
            .map(Response::Written),
        Request::UploadBegin { path } => {
            let ups = ups.clone();
            blocking(move || files::upload_begin(&ups, &path))
                .await
                .map(|handle| Response::Upload { handle })
        }
        Request::UploadChunk { handle, data } => {
            let ups = ups.clone();
            blocking(move || files::upload_chunk(&ups, handle, &data))
                .await
                .map(|()| Response::Done { changed: true })
        }
        Request::UploadCommit { handle, write } => {
            let ups = ups.clone();
            blocking(move || files::upload_commit(&ups, handle, &write))
                .await
                .map(Response::Written)
        }
        Request::UploadAbort { handle } => {
            files::upload_abort(&ups, handle);
            Ok(Response::Done { changed: false })
        }
        Request::Mkdir { path, mode } => blocking(move || files::mkdir(&path, mode))
            .await
            .map(|changed| Response::Done { changed }),
        Request::Remove { path, recursive } => blocking(move || files::remove(&path, recursive))
            .await
            .map(|changed| Response::Done { changed }),
        Request::Symlink {
            target,
            path,
            force,
        } => blocking(move || files::symlink(&target, &path, force))
            .await
            .map(|changed| Response::Done { changed }),
        Request::Facts => Ok(Response::Facts(facts::gather().await)),
        Request::Net(n) => netlink::apply(n).await.map(Response::Net),
        Request::SetAttrs(a) => {
            blocking(move || files::set_attrs(&a))
                .await
                .map(|(changed, before, after)| Response::AttrsSet {
                    changed,
                    before,
                    after,
                })
        }
    };
    r.unwrap_or_else(|e| error_response(&e))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(format!("operation panicked: {e}"))))
}

/// Entry point of `kiln agent`: serve on stdin/stdout.
pub fn run_stdio() -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln agent: cannot start the runtime: {e}");
            return 1;
        }
    };
    let r = rt.block_on(async {
        // pipes from sshd: polled directly; anything else: tokio's blocking-thread stdio
        match (
            stdio::open(std::io::stdin()),
            stdio::open(std::io::stdout()),
        ) {
            (Some(i), Some(o)) => serve(tokio::io::BufReader::new(i), o).await,
            _ => serve(tokio::io::stdin(), tokio::io::stdout()).await,
        }
    });
    // do not wait for blocking reads of stdin that tokio may still hold
    rt.shutdown_background();
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kiln agent: {e}");
            1
        }
    }
}
