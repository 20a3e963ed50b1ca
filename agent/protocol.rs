//! The messages the controller and `kiln agent` exchange, and how they are framed on the wire.
//!
//! One SSH channel (or one in-process pipe, for `local`) carries frames in both directions. A frame
//! is a 4-byte big-endian length followed by a MessagePack body (`rmp-serde`, struct fields as maps
//! so both sides tolerate added optional fields). File contents are raw byte strings
//! (`serde_bytes`), never base64. Every request carries an id chosen by the controller; the agent
//! answers with frames carrying the same id, so several requests can be in flight at once. An exec
//! answers with any number of `Output` frames and then one final `ExecDone`; every other request
//! answers with exactly one final frame.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame either side accepts (a file write of up to this much in one request).
pub const MAX_FRAME: usize = 256 * 1024 * 1024;
/// Files larger than this are sent in chunks ([`Request::UploadBegin`]) rather than in one
/// [`Request::WriteFile`] frame.
pub const STREAM_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The size of one upload or download chunk.
pub const CHUNK: usize = 4 * 1024 * 1024;
/// The largest file [`Request::ReadFile`] answers in one frame (room left for the frame's
/// envelope); larger files are read with [`Request::ReadBegin`].
pub const READ_FILE_MAX: u64 = (MAX_FRAME - 64 * 1024) as u64;
/// A frame's buffer starts at most this large and grows as bytes arrive, so a peer that
/// declares a huge length and sends little costs little.
const FRAME_INITIAL: usize = 64 * 1024;

/// The build both sides must share; see `build.rs`.
pub const BUILD_ID: &str = env!("KILN_BUILD_ID");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frame<T> {
    pub id: u64,
    pub body: T,
}

/// Run a command on the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments, run without a shell. Exactly one of `argv` / `shell` is used.
    pub argv: Vec<String>,
    /// A shell command line run with `/bin/sh -c` (Ansible's `shell` module).
    pub shell: Option<String>,
    /// Extra environment variables (added to the agent's environment).
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    #[serde(with = "serde_bytes")]
    pub stdin: Vec<u8>,
    /// Seconds; the process group is killed when it runs longer.
    pub timeout: Option<f64>,
    /// A file on the host that every chunk of stdout and stderr is also appended to as it
    /// arrives (created if absent), as `2>&1 | tee --append FILE` does.
    #[serde(default)]
    pub append_to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Exit status; `-N` when killed by signal N (as Python's subprocess reports it).
    pub rc: i32,
    #[serde(with = "serde_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

impl ExecResult {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Write a whole file atomically (temp file in the same directory, fsync, rename).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WriteRequest {
    pub path: String,
    #[serde(with = "serde_bytes")]
    pub content: Vec<u8>,
    /// Permission bits; `None` keeps an existing file's mode, or 0644 (less umask) for a new one.
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Compute everything and report `changed`, but touch nothing (check mode).
    pub check: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteResult {
    pub changed: bool,
    /// sha256 (hex) of the file before, `None` when it did not exist.
    pub before_sha: Option<String>,
    pub after_sha: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatResult {
    pub exists: bool,
    /// `file`, `directory`, `link`, `fifo`, `socket`, `block`, `char`.
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub size: u64,
    pub mtime: f64,
    pub link_target: Option<String>,
    /// sha256 (hex) of a regular file's content, when asked for.
    pub checksum: Option<String>,
}

/// Everything Ansible's `stat` module reports beyond [`StatResult`]; answers `StatDetail`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatDetail {
    pub base: StatResult,
    pub inode: u64,
    pub dev: u64,
    pub nlink: u64,
    pub atime: f64,
    pub ctime: f64,
    pub blocks: u64,
    /// `st_blksize`.
    pub block_size: u64,
    /// `st_rdev`.
    pub rdev: u64,
    /// access(2) for the agent's user.
    pub readable: bool,
    pub writeable: bool,
    pub executable: bool,
    /// Links: the path with every link resolved (Python's `os.path.realpath`).
    pub realpath: Option<String>,
    /// A regular, readable file's digest with the requested algorithm (hex).
    pub checksum: Option<String>,
    /// From `file --mime`, when asked for and `file` is installed.
    pub mimetype: Option<String>,
    pub charset: Option<String>,
}

/// The request id of the controller's heartbeat pings: their answers are dropped by everyone.
pub const HEARTBEAT_ID: u64 = u64::MAX - 1;

/// How long an agent waits for a word from its controller before it exits, unless
/// `KILN_AGENT_IDLE_SECS` (read by the controller) says otherwise.
pub const DEFAULT_IDLE_EXIT_SECS: u64 = 60;

/// The agent's idle deadline this controller asks for (`KILN_AGENT_IDLE_SECS`, at least 4 s).
pub fn idle_exit_secs() -> u64 {
    std::env::var("KILN_AGENT_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|v| v.max(4))
        .unwrap_or(DEFAULT_IDLE_EXIT_SECS)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Hello {
        build_id: String,
        /// The agent exits when no frame has come from the controller for this many seconds
        /// (0: never). The controller sends a heartbeat ([`HEARTBEAT_ID`]) four times as often,
        /// so an agent whose controller vanished (the network dropped, no FIN ever arrives) does
        /// not stay behind with its ssh session.
        idle_exit_secs: u64,
    },
    Ping,
    Exec(ExecRequest),
    Stat {
        path: String,
        follow: bool,
        checksum: bool,
    },
    /// The `stat` module's whole report, from syscalls and in-process digests (only the MIME
    /// type needs a process: `file`).
    StatDetail {
        path: String,
        follow: bool,
        /// md5, sha1, sha224, sha256, sha384 or sha512; `None`: no checksum.
        checksum_algorithm: Option<String>,
        mime: bool,
    },
    ReadFile {
        path: String,
    },
    WriteFile(WriteRequest),
    /// `mkdir -p`; the mode applies to directories it creates.
    Mkdir {
        path: String,
        mode: Option<u32>,
    },
    /// Remove a file, link or (when `recursive`) a directory tree. Absent is not an error.
    Remove {
        path: String,
        recursive: bool,
    },
    /// Make `path` a symlink to `target` (replacing a different link or file when `force`).
    Symlink {
        target: String,
        path: String,
        force: bool,
    },
    Facts,
    /// Set an existing path's mode and/or owner/group (chmod/chown, or lchown when not `follow`).
    SetAttrs(AttrsRequest),
    /// A large file in chunks (`copy` of a file over [`STREAM_THRESHOLD`]): open a temporary file
    /// beside `path`; the agent answers [`Response::Upload`] with a handle.
    UploadBegin {
        path: String,
    },
    /// Append to an upload. The controller sends the next chunk after this one's answer, so
    /// neither side holds more than a chunk.
    UploadChunk {
        handle: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Finish an upload: as [`Request::WriteFile`] with the uploaded bytes as content (its
    /// `content` is empty); the temporary file is renamed over `path` (atomic) or removed.
    UploadCommit {
        handle: u64,
        write: WriteRequest,
    },
    /// Drop an upload and its temporary file.
    UploadAbort {
        handle: u64,
    },
    /// Bring links, addresses and routes to the wanted state with netlink (`host::netlink`).
    Net(NetRequest),
    /// A file of any size from the host in chunks (`fetch`; [`Request::ReadFile`] carries at most
    /// one frame): open it; the agent answers [`Response::Reading`] with a handle and its size.
    ReadBegin {
        path: String,
    },
    /// The next chunk of a read (at most [`CHUNK`] bytes), as [`Response::File`]; an empty chunk
    /// is the end and closes the handle. The controller asks for the next chunk after this one
    /// arrived, so neither side holds more than a chunk.
    ReadChunk {
        handle: u64,
    },
    /// Close a read before its end.
    ReadEnd {
        handle: u64,
    },
    /// Copy a file on the host to `write.path` on the same host (`copy` with `remote_src`),
    /// streaming it to a temporary file beside the destination which is then placed as
    /// [`Request::WriteFile`] places its content (atomic rename; `write.content` is ignored).
    /// Answers [`Response::Written`].
    CopyFile {
        src: String,
        write: WriteRequest,
    },
    /// Several digests of a regular file in one read (md5, sha1, sha224, sha256, sha384,
    /// sha512); answers [`Response::Digests`], hex, in the order asked.
    Digests {
        path: String,
        algorithms: Vec<String>,
    },
}

/// Wanted link state in the agent's network namespace; answers `Net(NetReport)`.
///
/// Links are listed in no particular order: the agent orders the work itself (dummy links first,
/// so a kernel without the dummy driver fails before anything changed; then bridges and veths,
/// MTUs, ports, bringing links up, addresses, routes). Nothing is ever removed: addresses and
/// routes that are not listed stay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetRequest {
    pub links: Vec<NetLink>,
    /// Report the actions that would be taken and the resulting state; change nothing.
    pub check: bool,
}

/// What kind of link a [`NetLink`] is; all but `Existing` are created when missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetKind {
    Bridge,
    Dummy,
    /// One end of a veth pair (the other end is `NetLink::peer`).
    Veth,
    /// A link that must already exist (a physical NIC, or a veth's peer).
    #[default]
    Existing,
    /// A bridge port: the existing link of that name, or a new dummy link when there is none.
    PortOrDummy,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetLink {
    pub name: String,
    pub kind: NetKind,
    /// Veth: the peer's name (created with it, gets the same MTU and is set up too).
    pub peer: Option<String>,
    /// Bridge: spanning tree on (`true`) or off.
    pub stp: bool,
    /// The bridge this link is a port of.
    pub master: Option<String>,
    pub mtu: Option<u32>,
    /// `address/prefix`, IPv4 or IPv6.
    pub addresses: Vec<String>,
    pub routes: Vec<NetRoute>,
    /// Set the link up.
    pub up: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetRoute {
    /// `network/prefix`; `0.0.0.0/0` or `::/0` for a default route.
    pub destination: String,
    pub gateway: Option<String>,
    /// Routing table id; `None` is the main table (254).
    pub table: Option<u32>,
    /// Route metric (priority); `None` is the kernel's default.
    pub metric: Option<u32>,
}

/// What the `Net` op did (or would do, in check mode) and the links' state afterwards.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetReport {
    pub changed: bool,
    /// One human-readable line per change, in the order made (`create bridge breth1 (stp off)`).
    pub actions: Vec<String>,
    /// The state of every requested link (and veth peer) afterwards.
    pub links: Vec<NetLinkState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetLinkState {
    pub name: String,
    /// The kernel's link kind (`bridge`, `veth`, `dummy`) or empty for a plain device.
    pub kind: String,
    pub mtu: u32,
    pub up: bool,
    pub master: Option<String>,
    /// Bridges: whether STP is on.
    pub stp: Option<bool>,
    /// `address/prefix`, as the kernel lists them.
    pub addresses: Vec<String>,
    /// Routes out of this link: `dest/prefix [via gw] [table N] [metric N]`.
    pub routes: Vec<String>,
}

/// Change an existing path's permission bits and ownership; answers `AttrsSet`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttrsRequest {
    pub path: String,
    /// Permission bits (already resolved from a symbolic mode by the controller).
    pub mode: Option<u32>,
    /// User name or numeric uid.
    pub owner: Option<String>,
    /// Group name or numeric gid.
    pub group: Option<String>,
    /// Act on a symlink's target (`true`) or on the link itself (`false`: mode is not changed).
    pub follow: bool,
    /// Report what would change, change nothing.
    pub check: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Hello {
        build_id: String,
        pid: u32,
        uid: u32,
        user: String,
    },
    Pong,
    Output {
        stream: Stream,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    ExecDone(ExecResult),
    Stat(StatResult),
    StatDetail(StatDetail),
    File(#[serde(with = "serde_bytes")] Vec<u8>),
    Written(WriteResult),
    /// Mkdir/Remove/Symlink: whether anything changed.
    Done {
        changed: bool,
    },
    /// Facts as JSON-model data (Ansible's fact names, without the `ansible_` prefix).
    Facts(serde_json::Value),
    /// SetAttrs: whether anything changed, and the path before and after (as it would be, in check mode).
    AttrsSet {
        changed: bool,
        before: StatResult,
        after: StatResult,
    },
    Net(NetReport),
    /// The handle of a new upload.
    Upload {
        handle: u64,
    },
    /// A file's digests ([`Request::Digests`]), hex, in the order asked.
    Digests(Vec<String>),
    /// The handle of a new read ([`Request::ReadBegin`]) and the file's size when opened.
    Reading {
        handle: u64,
        size: u64,
    },
    Error {
        kind: RemoteErrorKind,
        message: String,
    },
}

impl Response {
    /// Whether this frame ends its request (everything except streamed output).
    pub fn is_final(&self) -> bool {
        !matches!(self, Response::Output { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteErrorKind {
    NotFound,
    PermissionDenied,
    Io,
    BadRequest,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("channel closed")]
    Closed,
    #[error("i/o on the agent channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is larger than the {MAX_FRAME} byte limit")]
    TooLarge(usize),
    #[error("cannot encode a message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("cannot decode a message (is the agent the same kiln build?): {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

/// Encode one frame (length prefix included) into a buffer.
pub fn encode<T: Serialize>(frame: &Frame<T>) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    rmp_serde::encode::write_named(&mut buf, frame)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    frame: &Frame<T>,
) -> Result<(), FrameError> {
    let buf = encode(frame)?;
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Read one frame; `Err(Closed)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Frame<T>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    // grow with what arrives (never more than `len`), not with what the peer declared
    let mut buf: Vec<u8> = Vec::with_capacity(len.min(FRAME_INITIAL));
    while buf.len() < len {
        if buf.len() == buf.capacity() {
            let more = buf.len().max(FRAME_INITIAL).min(len - buf.len());
            buf.reserve_exact(more);
        }
        let room = (buf.capacity() - buf.len()).min(len - buf.len());
        let start = buf.len();
        buf.resize(start + room, 0);
        match r.read(&mut buf[start..]).await {
            Ok(0) => {
                return Err(FrameError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the frame was cut short: {start} of the {len} bytes it declared arrived"
                    ),
                )))
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) => {
                buf.truncate(start);
                return Err(e.into());
            }
        }
    }
    Ok(rmp_serde::from_slice(&buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system allocator, noting the largest single allocation made on a thread while that
    /// thread asks for it (the lib's unit tests run on many threads; only the asking one counts).
    struct Largest;
    thread_local! {
        static TRACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        static LARGEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }
    fn note(size: usize) {
        let _ = TRACK.try_with(|t| {
            if t.get() {
                let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
            }
        });
    }
    unsafe impl std::alloc::GlobalAlloc for Largest {
        unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
            note(l.size());
            std::alloc::System.alloc(l)
        }
        unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
            std::alloc::System.dealloc(p, l)
        }
        unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
            note(l.size());
            std::alloc::System.alloc_zeroed(l)
        }
        unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
            note(new);
            std::alloc::System.realloc(p, l, new)
        }
    }
    #[global_allocator]
    static ALLOC: Largest = Largest;

    /// A peer that declares a frame of MAX_FRAME bytes, sends a few and then closes: an error,
    /// and nothing near the declared size was allocated (the buffer grows with what arrives).
    #[tokio::test(flavor = "current_thread")]
    async fn a_declared_huge_frame_that_never_comes_allocates_little() {
        let mut wire = (MAX_FRAME as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&[0x82; 100]);
        let mut r = &wire[..];
        TRACK.with(|t| t.set(true));
        LARGEST.with(|l| l.set(0));
        let got = read_frame::<_, Request>(&mut r).await;
        TRACK.with(|t| t.set(false));
        let largest = LARGEST.with(|l| l.get());
        assert!(
            largest <= 1 << 20,
            "read_frame allocated {largest} bytes for a frame of which 100 bytes came"
        );
        let e = got.expect_err("a cut-short frame must fail");
        assert!(
            e.to_string().contains("cut short: 100 of the"),
            "unexpected error: {e}"
        );
        // a frame declared over the limit is refused before anything is read
        let mut over = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        over.extend_from_slice(&[0; 8]);
        let mut r = &over[..];
        assert!(matches!(
            read_frame::<_, Request>(&mut r).await,
            Err(FrameError::TooLarge(_))
        ));
        // and a frame that does arrive in full still decodes (in pieces larger than the first
        // buffer: the growth path)
        let big = Frame {
            id: 3,
            body: Request::WriteFile(WriteRequest {
                path: "/x".into(),
                content: vec![7u8; 5 * FRAME_INITIAL + 11],
                ..Default::default()
            }),
        };
        let buf = encode(&big).unwrap();
        let mut r = &buf[..];
        match read_frame::<_, Request>(&mut r).await.unwrap().body {
            Request::WriteFile(w) => assert_eq!(w.content.len(), 5 * FRAME_INITIAL + 11),
            other => panic!("wrong body {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_with_raw_bytes() {
        let req = Frame {
            id: 7,
            body: Request::WriteFile(WriteRequest {
                path: "/tmp/x".into(),
                content: vec![0, 255, 10, 13],
                mode: Some(0o600),
                ..Default::default()
            }),
        };
        let buf = encode(&req).unwrap();
        // raw bytes (msgpack bin 8: 0xc4, length, bytes), not an array of integers or base64
        assert!(
            buf.windows(6).any(|w| w == [0xc4, 4, 0, 255, 10, 13]),
            "{buf:?}"
        );
        let mut r = &buf[..];
        let back: Frame<Request> = read_frame(&mut r).await.unwrap();
        assert_eq!(back.id, 7);
        match back.body {
            Request::WriteFile(w) => assert_eq!(w.content, vec![0, 255, 10, 13]),
            other => panic!("wrong body {other:?}"),
        }
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame::<_, Request>(&mut empty).await,
            Err(FrameError::Closed)
        ));
    }
}
