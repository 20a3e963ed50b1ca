//! File operations on the host: stat, atomic whole-file writes, mkdir -p, remove, symlink.
//!
//! Writes are atomic: the new content goes to a temp file in the same directory, which gets its
//! mode and owner, is fsynced, and is renamed over the target; then the directory is fsynced. A
//! reader never sees half a file, and a failed write leaves no temp file behind (the temp file
//! removes itself unless it was renamed). Every write reports the sha256 before and after, and
//! does nothing when content, mode and owner already match. `set_attrs` changes only mode and
//! ownership of an existing path (chmod/chown; lchown for a link itself).

use crate::protocol::{AttrsRequest, StatDetail, StatResult, WriteRequest, WriteResult};
use sha2::{Digest, Sha256};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidInput, msg)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    file_digest::<Sha256>(path)
}

/// Hex digest of a file's content, read in a stream.
fn file_digest<D: Digest + std::io::Write>(path: &Path) -> std::io::Result<String> {
    let mut h = D::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn group_name(gid: u32) -> Option<String> {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}

fn resolve_uid(owner: &str) -> std::io::Result<u32> {
    if let Ok(n) = owner.parse::<u32>() {
        return Ok(n);
    }
    nix::unistd::User::from_name(owner)
        .map_err(std::io::Error::from)?
        .map(|u| u.uid.as_raw())
        .ok_or_else(|| bad(format!("no such user on the host: {owner}")))
}

fn resolve_gid(group: &str) -> std::io::Result<u32> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    nix::unistd::Group::from_name(group)
        .map_err(std::io::Error::from)?
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| bad(format!("no such group on the host: {group}")))
}

/// A path's metadata (of the link itself unless `follow`); `None` when it does not exist.
fn metadata(p: &Path, follow: bool) -> std::io::Result<Option<std::fs::Metadata>> {
    let md = if follow {
        std::fs::metadata(p)
    } else {
        std::fs::symlink_metadata(p)
    };
    match md {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn stat(path: &str, follow: bool, checksum: bool) -> std::io::Result<StatResult> {
    let p = Path::new(path);
    match metadata(p, follow)? {
        Some(md) => stat_result(p, &md, checksum),
        None => Ok(StatResult::default()),
    }
}

fn stat_result(p: &Path, md: &std::fs::Metadata, checksum: bool) -> std::io::Result<StatResult> {
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_symlink() {
        "link"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block"
    } else {
        "char"
    };
    Ok(StatResult {
        exists: true,
        kind: kind.to_string(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        owner: user_name(md.uid()),
        group: group_name(md.gid()),
        size: md.size(),
        mtime: md.mtime() as f64 + md.mtime_nsec() as f64 / 1e9,
        link_target: if ft.is_symlink() {
            std::fs::read_link(p)
                .ok()
                .map(|t| t.to_string_lossy().into_owned())
        } else {
            None
        },
        checksum: if checksum && ft.is_file() {
            Some(sha256_file(p)?)
        } else {
            None
        },
    })
}

/// Hex digest of a file with one of the algorithms Ansible's `stat` accepts.
fn digest_file(path: &Path, algorithm: &str) -> std::io::Result<String> {
    match algorithm {
        "md5" => file_digest::<md5::Md5>(path),
        "sha1" => file_digest::<sha1::Sha1>(path),
        "sha224" => file_digest::<sha2::Sha224>(path),
        "sha256" => file_digest::<Sha256>(path),
        "sha384" => file_digest::<sha2::Sha384>(path),
        "sha512" => file_digest::<sha2::Sha512>(path),
        other => Err(bad(format!("unsupported checksum algorithm {other}"))),
    }
}

/// Several digests of a regular file in one read (hex, in the order asked): a large file is read
/// once, not once per digest.
pub fn digests(path: &str, algorithms: &[String]) -> std::io::Result<Vec<String>> {
    use sha2::digest::DynDigest;
    use std::io::Read as _;
    let mut hs = algorithms
        .iter()
        .map(|a| -> std::io::Result<Box<dyn DynDigest>> {
            Ok(match a.as_str() {
                "md5" => Box::new(md5::Md5::default()),
                "sha1" => Box::new(sha1::Sha1::default()),
                "sha224" => Box::new(sha2::Sha224::default()),
                "sha256" => Box::new(Sha256::default()),
                "sha384" => Box::new(sha2::Sha384::default()),
                "sha512" => Box::new(sha2::Sha512::default()),
                other => return Err(bad(format!("unsupported checksum algorithm {other}"))),
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(bad(format!("{path} is not a regular file")));
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for h in hs.iter_mut() {
            h.update(&buf[..n]);
        }
    }
    Ok(hs.into_iter().map(|h| hex::encode(h.finalize())).collect())
}

/// Python's `os.path.realpath`: every link resolved; a dangling last link resolves as far as
/// it can (its target joined to its folder), as realpath does without raising.
fn realpath(p: &Path) -> String {
    if let Ok(r) = std::fs::canonicalize(p) {
        return r.to_string_lossy().into_owned();
    }
    let parent = p.parent().and_then(|d| {
        std::fs::canonicalize(if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        })
        .ok()
    });
    match (std::fs::read_link(p), parent) {
        (Ok(t), Some(d)) => d.join(t).to_string_lossy().into_owned(),
        (_, Some(d)) => d
            .join(p.file_name().unwrap_or_default())
            .to_string_lossy()
            .into_owned(),
        _ => p.to_string_lossy().into_owned(),
    }
}

/// `file --mime` results by file version: (device, inode, follow) -> (size, mtime ns, ctime ns,
/// mime type, charset). The agent lives on between runs (the connection daemon holds it), and a
/// file whose content changed has a new ctime, so a result is reused only for the very same
/// version; a file changed less than 2 s ago is never remembered (its ctime may not have moved
/// yet, as git's "racily clean" index entries).
type MimeCache = std::collections::HashMap<(u64, u64, bool), (u64, i128, i128, String, String)>;

fn mime(p: &Path, md: &std::fs::Metadata, follow: bool) -> Option<(String, String)> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<MimeCache>> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    let version = (
        md.size(),
        ns(md.mtime(), md.mtime_nsec()),
        ns(md.ctime(), md.ctime_nsec()),
    );
    let key = (md.dev(), md.ino(), follow);
    {
        let c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, m, ct, t, cs)) = c.get(&key) {
            if (*s, *m, *ct) == version {
                return Some((t.clone(), cs.clone()));
            }
        }
    }
    let mut cmd = std::process::Command::new("file");
    cmd.arg("-b");
    if follow {
        cmd.arg("-L");
    }
    let out = cmd.arg("--mime").arg("--").arg(p).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    let mimetype = text.split(';').next().unwrap_or("").trim().to_string();
    let charset = text
        .split_once("charset=")
        .map(|(_, c)| c.trim().to_string())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    if now - version.2 > 2_000_000_000 {
        cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
            key,
            (
                version.0,
                version.1,
                version.2,
                mimetype.clone(),
                charset.clone(),
            ),
        );
    }
    Some((mimetype, charset))
}

pub fn stat_detail(
    path: &str,
    follow: bool,
    checksum_algorithm: Option<&str>,
    want_mime: bool,
) -> std::io::Result<StatDetail> {
    let p = Path::new(path);
    let Some(md) = metadata(p, follow)? else {
        return Ok(StatDetail::default());
    };
    let base = stat_result(p, &md, false)?;
    use nix::unistd::{access, AccessFlags};
    let can = |f: AccessFlags| access(p, f).is_ok();
    let readable = can(AccessFlags::R_OK);
    let checksum = match checksum_algorithm {
        Some(a) if md.file_type().is_file() && readable => Some(digest_file(p, a)?),
        _ => None,
    };
    let (mimetype, charset) = match want_mime.then(|| mime(p, &md, follow)).flatten() {
        Some((m, c)) => (Some(m), Some(c)),
        None => (None, None),
    };
    Ok(StatDetail {
        inode: md.ino(),
        dev: md.dev(),
        nlink: md.nlink(),
        atime: md.atime() as f64 + md.atime_nsec() as f64 / 1e9,
        ctime: md.ctime() as f64 + md.ctime_nsec() as f64 / 1e9,
        blocks: md.blocks(),
        block_size: md.blksize(),
        rdev: md.rdev(),
        readable,
        writeable: can(AccessFlags::W_OK),
        executable: can(AccessFlags::X_OK),
        realpath: (base.kind == "link").then(|| realpath(p)),
        checksum,
        mimetype,
        charset,
        base,
    })
}

/// The file a write goes to: through a symlink to the file it names, as Ansible's copy does.
fn write_target(p: &str) -> std::io::Result<std::path::PathBuf> {
    if p.is_empty() {
        return Err(bad("write_file needs a path".into()));
    }
    let mut path = std::path::PathBuf::from(p);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(real) = std::fs::canonicalize(&path) {
            path = real;
        }
    }
    Ok(path)
}

/// A temporary file beside `path`, named `.NAME.kiln-tmp-XXXXXX`.
fn temp_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{name}.kiln-tmp-"))
        .tempfile_in(dir)
}

pub fn write(req: &WriteRequest) -> std::io::Result<WriteResult> {
    let path = write_target(&req.path)?;
    let after_sha = sha256_hex(&req.content);
    place(req, &path, after_sha, || {
        let mut tmp = temp_beside(&path)?;
        tmp.write_all(&req.content).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot write {} (the file there is unchanged): {e}",
                    path.display()
                ),
            )
        })?;
        Ok(tmp)
    })
}

/// Put new content (sha256 `after_sha`, in the temp file `content` makes when it is needed) at
/// `path` with `req`'s mode and owner, atomically; nothing when content and metadata match.
fn place(
    req: &WriteRequest,
    path: &Path,
    after_sha: String,
    content: impl FnOnce() -> std::io::Result<tempfile::NamedTempFile>,
) -> std::io::Result<WriteResult> {
    let existing = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(bad(format!("{} is a directory", path.display()))),
        Ok(m) => Some(m),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let before_sha = match &existing {
        Some(_) => Some(sha256_file(path)?),
        None => None,
    };
    let want_uid = req.owner.as_deref().map(resolve_uid).transpose()?;
    let want_gid = req.group.as_deref().map(resolve_gid).transpose()?;
    let mode = req.mode.map(|m| m & 0o7777);
    let content_same = before_sha.as_deref() == Some(after_sha.as_str());
    let meta_same = existing.as_ref().is_some_and(|m| {
        mode.map_or(true, |w| m.mode() & 0o7777 == w)
            && want_uid.map_or(true, |u| m.uid() == u)
            && want_gid.map_or(true, |g| m.gid() == g)
    });
    if content_same && meta_same {
        return Ok(WriteResult {
            changed: false,
            before_sha,
            after_sha,
        });
    }
    let result = WriteResult {
        changed: true,
        before_sha,
        after_sha,
    };
    if req.check {
        return Ok(result);
    }
    if content_same {
        // only metadata differs: fix it in place
        if let Some(m) = mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))?;
        }
        if want_uid.is_some() || want_gid.is_some() {
            std::os::unix::fs::chown(path, want_uid, want_gid)?;
        }
        return Ok(result);
    }
    let tmp = content()?;
    let final_mode = mode
        .or(existing.as_ref().map(|m| m.mode() & 0o7777))
        .unwrap_or(0o644);
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(final_mode))?;
    // keep an existing file's owner unless asked otherwise (matters when root rewrites a user's file)
    let uid = want_uid.or(existing.as_ref().map(|m| m.uid()));
    let gid = want_gid.or(existing.as_ref().map(|m| m.gid()));
    let (cur_uid, cur_gid) = {
        let m = tmp.as_file().metadata()?;
        (m.uid(), m.gid())
    };
    if uid.is_some_and(|u| u != cur_uid) || gid.is_some_and(|g| g != cur_gid) {
        std::os::unix::fs::fchown(tmp.as_file(), uid, gid)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(result)
}

/// An upload in progress: its temporary file beside the destination, and the running digest.
struct Upload {
    path: std::path::PathBuf,
    tmp: tempfile::NamedTempFile,
    sha: Sha256,
    last: std::time::Instant,
}

/// The uploads in progress on one agent channel. Their temporary files are removed when an
/// upload is aborted, idle for [`UPLOAD_IDLE`], or when the channel ends (`serve` drops its set:
/// the controller went away), so a killed controller leaves no temp file.
#[derive(Default)]
pub struct Uploads(std::sync::Mutex<std::collections::HashMap<u64, Upload>>);

static NEXT_UPLOAD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

impl Uploads {
    /// Drop every upload (a new controller took this channel over: through the mux daemon, a
    /// killed run's uploads would otherwise wait for the idle limit).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Upload>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn no_upload(handle: u64) -> std::io::Error {
    bad(format!(
        "no upload {handle} in progress (it was aborted or timed out)"
    ))
}

pub fn upload_begin(ups: &Uploads, path: &str) -> std::io::Result<u64> {
    let path = write_target(path)?;
    if path.is_dir() {
        return Err(bad(format!("{} is a directory", path.display())));
    }
    let tmp = temp_beside(&path)?;
    let handle = NEXT_UPLOAD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut map = ups.lock();
    // uploads whose controller stopped sending (a mux daemon keeps the channel open)
    map.retain(|_, u| u.last.elapsed() < UPLOAD_IDLE);
    map.insert(
        handle,
        Upload {
            path,
            tmp,
            sha: Sha256::new(),
            last: std::time::Instant::now(),
        },
    );
    Ok(handle)
}

pub fn upload_chunk(ups: &Uploads, handle: u64, data: &[u8]) -> std::io::Result<()> {
    // take the upload out while writing, so other requests do not wait on this disk write
    let mut u = ups
        .lock()
        .remove(&handle)
        .ok_or_else(|| no_upload(handle))?;
    // on an error (a full disk) the upload is dropped here and its temp file removed
    u.tmp.write_all(data).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot write {} (the file there is unchanged): {e}",
                u.path.display()
            ),
        )
    })?;
    u.sha.update(data);
    u.last = std::time::Instant::now();
    ups.lock().insert(handle, u);
    Ok(())
}

pub fn upload_commit(
    ups: &Uploads,
    handle: u64,
    req: &WriteRequest,
) -> std::io::Result<WriteResult> {
    let u = ups
        .lock()
        .remove(&handle)
        .ok_or_else(|| no_upload(handle))?;
    let Upload { path, tmp, sha, .. } = u;
    let after_sha = hex::encode(sha.finalize());
    let mut tmp = Some(tmp);
    // when nothing changes the temp file is dropped (removed) with `tmp`
    place(req, &path, after_sha, || {
        let mut t = tmp.take().ok_or_else(|| bad("upload used twice".into()))?;
        t.flush()?;
        Ok(t)
    })
}

pub fn upload_abort(ups: &Uploads, handle: u64) {
    ups.lock().remove(&handle);
}

/// A file being read in chunks ([`crate::protocol::Request::ReadBegin`]).
struct Read {
    file: std::fs::File,
    last: std::time::Instant,
}

/// The reads in progress on one agent channel; their files are closed when read to the end,
/// ended, idle for [`UPLOAD_IDLE`], or when the channel ends.
#[derive(Default)]
pub struct Reads(std::sync::Mutex<std::collections::HashMap<u64, Read>>);

impl Reads {
    pub fn clear(&self) {
        self.lock().clear();
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Read>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn no_read(handle: u64) -> std::io::Error {
    bad(format!(
        "no read {handle} in progress (it ended or timed out)"
    ))
}

/// Open a regular file for a chunked read: its handle and size.
pub fn read_begin(reads: &Reads, path: &str) -> std::io::Result<(u64, u64)> {
    let file = std::fs::File::open(path)?;
    let md = file.metadata()?;
    if md.is_dir() {
        return Err(bad(format!("{path} is a directory")));
    }
    let handle = NEXT_UPLOAD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut map = reads.lock();
    map.retain(|_, r| r.last.elapsed() < UPLOAD_IDLE);
    map.insert(
        handle,
        Read {
            file,
            last: std::time::Instant::now(),
        },
    );
    Ok((handle, md.len()))
}

/// The next chunk of a read, at most `max` bytes; empty at the end (the handle is then closed).
pub fn read_chunk(reads: &Reads, handle: u64, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut r = reads
        .lock()
        .remove(&handle)
        .ok_or_else(|| no_read(handle))?;
    let mut buf = Vec::with_capacity(max);
    (&mut r.file).take(max as u64).read_to_end(&mut buf)?;
    if !buf.is_empty() {
        r.last = std::time::Instant::now();
        reads.lock().insert(handle, r);
    }
    Ok(buf)
}

pub fn read_end(reads: &Reads, handle: u64) {
    reads.lock().remove(&handle);
}

/// `ReadFile`: a whole file in one answer, refused with a clear error when it cannot fit one.
pub fn read_whole(path: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    if size > crate::protocol::READ_FILE_MAX {
        return Err(bad(format!(
            "{path} is {size} bytes ({} MiB), more than one read can carry ({} MiB); \
             this module reads whole files: use fetch, or copy with remote_src, for large files",
            size >> 20,
            crate::protocol::READ_FILE_MAX >> 20
        )));
    }
    let mut buf = Vec::with_capacity(size as usize);
    // a file that grew since the stat is cut at the limit (and then refused), never sent whole
    f.take(crate::protocol::READ_FILE_MAX + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > crate::protocol::READ_FILE_MAX {
        return Err(bad(format!(
            "{path} grew past {} MiB while it was read",
            crate::protocol::READ_FILE_MAX >> 20
        )));
    }
    Ok(buf)
}

/// Copy a file on the host to `req.path`, in one streaming pass (hashed as it goes) into a temp
/// file beside the destination, then placed as [`write`] places content: the destination is the
/// old file or the new one, never a part; nothing is written when content and attributes match
/// (the temp file is then removed), or in check mode.
pub fn copy_file(src: &str, req: &WriteRequest) -> std::io::Result<WriteResult> {
    use std::io::Read as _;
    let path = write_target(&req.path)?;
    let mut from = std::fs::File::open(src)?;
    if from.metadata()?.is_dir() {
        return Err(bad(format!("{src} is a directory")));
    }
    if req.check {
        let after_sha = file_digest::<Sha256>(Path::new(src))?;
        return place(req, &path, after_sha, || Err(bad("check mode".into())));
    }
    let mut tmp = temp_beside(&path)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let full = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot write {} (the file there is unchanged): {e}",
                path.display()
            ),
        )
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot read {src}: {e}"),
                ))
            }
        };
        sha.update(&buf[..n]);
        tmp.write_all(&buf[..n]).map_err(full)?;
    }
    tmp.flush().map_err(full)?;
    let after_sha = hex::encode(sha.finalize());
    let mut tmp = Some(tmp);
    place(req, &path, after_sha, || {
        tmp.take().ok_or_else(|| bad("copy used twice".into()))
    })
}

pub fn mkdir(path: &str, mode: Option<u32>) -> std::io::Result<bool> {
    let p = Path::new(path);
    if p.is_dir() {
        return Ok(false);
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    if let Some(m) = mode {
        std::os::unix::fs::DirBuilderExt::mode(&mut b, m & 0o7777);
    }
    b.create(p)?;
    Ok(true)
}

pub fn remove(path: &str, recursive: bool) -> std::io::Result<bool> {
    let p = Path::new(path);
    let md = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if md.is_dir() {
        if recursive {
            std::fs::remove_dir_all(p)?;
        } else {
            std::fs::remove_dir(p)?;
        }
    } else {
        std::fs::remove_file(p)?;
    }
    Ok(true)
}

pub fn symlink(target: &str, path: &str, force: bool) -> std::io::Result<bool> {
    let p = Path::new(path);
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::read_link(p)?.as_os_str() == std::ffi::OsStr::new(target) {
                return Ok(false);
            }
        }
        Ok(m) if m.is_dir() => return Err(bad(format!("{path} exists and is a directory"))),
        Ok(_) if !force => {
            return Err(std::io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{path} exists and is not a link (use force to replace it)"),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::os::unix::fs::symlink(target, p)?;
            return Ok(true);
        }
        Err(e) => return Err(e),
    }
    // replace atomically: make the link under a temp name, rename it over the old one
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".kiln-link-{}-{}",
        std::process::id(),
        sha256_hex(path.as_bytes()).get(..8).unwrap_or("0")
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = std::fs::rename(&tmp, p) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(true)
}

/// chmod/chown an existing path; returns (changed, before, after). A link itself (`follow: false`)
/// gets only its ownership changed: Linux has no mode on symlinks.
pub fn set_attrs(req: &AttrsRequest) -> std::io::Result<(bool, StatResult, StatResult)> {
    let before = stat(&req.path, req.follow, false)?;
    if !before.exists {
        return Err(std::io::Error::new(
            ErrorKind::NotFound,
            format!("{}: no such file or directory", req.path),
        ));
    }
    let is_link = before.kind == "link";
    let want_uid = req.owner.as_deref().map(resolve_uid).transpose()?;
    let want_gid = req.group.as_deref().map(resolve_gid).transpose()?;
    let mode = req.mode.map(|m| m & 0o7777).filter(|_| !is_link);
    let mode_change = mode.filter(|m| *m != before.mode);
    let uid_change = want_uid.filter(|u| *u != before.uid);
    let gid_change = want_gid.filter(|g| *g != before.gid);
    let changed = mode_change.is_some() || uid_change.is_some() || gid_change.is_some();
    if !changed {
        return Ok((false, before.clone(), before));
    }
    if req.check {
        let mut after = before.clone();
        if let Some(m) = mode_change {
            after.mode = m;
        }
        if let Some(u) = uid_change {
            after.uid = u;
            after.owner = user_name(u);
        }
        if let Some(g) = gid_change {
            after.gid = g;
            after.group = group_name(g);
        }
        return Ok((true, before, after));
    }
    let p = Path::new(&req.path);
    if uid_change.is_some() || gid_change.is_some() {
        if is_link {
            std::os::unix::fs::lchown(p, uid_change, gid_change)?;
        } else {
            std::os::unix::fs::chown(p, uid_change, gid_change)?;
        }
    }
    // after chown: chown clears setuid/setgid bits, so the mode goes last
    if let Some(m) = mode.filter(|m| {
        *m != stat(&req.path, req.follow, false)
            .map(|s| s.mode)
            .unwrap_or(!0)
    }) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m))?;
    }
    let after = stat(&req.path, req.follow, false)?;
    Ok((true, before, after))
}

#[cfg(test)]
mod attrs_tests {
    use super::*;

    #[test]
    fn set_attrs_changes_mode_once_and_check_touches_nothing() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = f.to_string_lossy().into_owned();
        let req = |mode, check| AttrsRequest {
            path: path.clone(),
            mode: Some(mode),
            follow: true,
            check,
            ..Default::default()
        };
        let (c, b, a) = set_attrs(&req(0o600, true)).unwrap();
        assert!(c);
        assert_eq!((b.mode, a.mode), (0o644, 0o600));
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o644);
        let (c, _, a) = set_attrs(&req(0o600, false)).unwrap();
        assert!(c);
        assert_eq!(a.mode, 0o600);
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o600);
        let (c, _, _) = set_attrs(&req(0o600, false)).unwrap();
        assert!(!c);
        // same owner by number: no change
        let uid = std::fs::metadata(&f).unwrap().uid();
        let (c, _, _) = set_attrs(&AttrsRequest {
            path: path.clone(),
            owner: Some(uid.to_string()),
            follow: true,
            ..Default::default()
        })
        .unwrap();
        assert!(!c);
        assert!(set_attrs(&AttrsRequest {
            path: d.path().join("nope").to_string_lossy().into_owned(),
            mode: Some(0o600),
            ..Default::default()
        })
        .is_err());
    }

    fn temps(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("kiln-tmp"))
            .collect()
    }

    #[test]
    fn uploads_place_atomically_and_leave_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("big.bin");
        std::fs::write(&dest, b"old").unwrap();
        let path = dest.display().to_string();
        let req = WriteRequest {
            path: path.clone(),
            mode: Some(0o640),
            ..Default::default()
        };
        let ups = Uploads::default();
        let h = upload_begin(&ups, &path).unwrap();
        upload_chunk(&ups, h, b"new ").unwrap();
        // the old file until the commit
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        upload_chunk(&ups, h, b"content").unwrap();
        let w = upload_commit(&ups, h, &req).unwrap();
        assert!(w.changed);
        assert_eq!(w.after_sha, sha256_hex(b"new content"));
        assert_eq!(std::fs::read(&dest).unwrap(), b"new content");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(temps(d.path()).is_empty());
        // the same content again: unchanged, temp file gone
        let h = upload_begin(&ups, &path).unwrap();
        upload_chunk(&ups, h, b"new content").unwrap();
        assert!(!upload_commit(&ups, h, &req).unwrap().changed);
        assert!(temps(d.path()).is_empty());
        // aborted, or the channel ends (the set dropped), or a new controller's Hello: no temp file
        let h = upload_begin(&ups, &path).unwrap();
        upload_chunk(&ups, h, b"partial").unwrap();
        assert_eq!(temps(d.path()).len(), 1);
        upload_abort(&ups, h);
        assert!(temps(d.path()).is_empty());
        let h2 = upload_begin(&ups, &path).unwrap();
        upload_chunk(&ups, h2, b"partial").unwrap();
        ups.clear();
        assert!(temps(d.path()).is_empty());
        assert!(upload_chunk(&ups, h2, b"more").is_err());
        let ups2 = Uploads::default();
        let h3 = upload_begin(&ups2, &path).unwrap();
        upload_chunk(&ups2, h3, b"partial").unwrap();
        drop(ups2);
        assert!(temps(d.path()).is_empty());
        assert_eq!(std::fs::read(&dest).unwrap(), b"new content");
        // a directory is refused up front
        assert!(upload_begin(&ups, &d.path().display().to_string()).is_err());
    }

    #[test]
    fn reads_come_in_bounded_chunks_and_end_with_an_empty_one() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.bin");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let reads = Reads::default();
        let (h, size) = read_begin(&reads, &src.display().to_string()).unwrap();
        assert_eq!(size, 10_000);
        let mut got = Vec::new();
        loop {
            let c = read_chunk(&reads, h, 4096).unwrap();
            assert!(c.len() <= 4096);
            if c.is_empty() {
                break;
            }
            got.extend_from_slice(&c);
        }
        assert_eq!(got, data);
        // the handle is closed at the end, and by read_end / clear
        assert!(read_chunk(&reads, h, 4096).is_err());
        let (h, _) = read_begin(&reads, &src.display().to_string()).unwrap();
        read_end(&reads, h);
        assert!(read_chunk(&reads, h, 4096).is_err());
        assert!(read_begin(&reads, &d.path().display().to_string()).is_err());
        // whole-file reads refuse what cannot fit one frame, and say what to use
        assert_eq!(read_whole(&src.display().to_string()).unwrap(), data);
        let big = d.path().join("sparse.bin");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(crate::protocol::READ_FILE_MAX + 1).unwrap();
        let e = read_whole(&big.display().to_string()).unwrap_err();
        assert!(e.to_string().contains("use fetch"), "{e}");
        // several digests in one read
        let ds = digests(
            &src.display().to_string(),
            &["sha256".into(), "md5".into(), "sha1".into()],
        )
        .unwrap();
        assert_eq!(ds[0], sha256_hex(&data));
        assert_eq!(ds[1], file_digest::<md5::Md5>(&src).unwrap());
        assert_eq!(ds[2], file_digest::<sha1::Sha1>(&src).unwrap());
    }

    #[test]
    fn a_host_side_copy_places_atomically_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.bin");
        std::fs::write(&src, b"new content").unwrap();
        let dest = d.path().join("dest.bin");
        std::fs::write(&dest, b"old").unwrap();
        let src_s = src.display().to_string();
        let req = WriteRequest {
            path: dest.display().to_string(),
            mode: Some(0o600),
            ..Default::default()
        };
        // check mode: reported, nothing written
        let w = copy_file(
            &src_s,
            &WriteRequest {
                check: true,
                ..req.clone()
            },
        )
        .unwrap();
        assert!(w.changed);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        let w = copy_file(&src_s, &req).unwrap();
        assert!(w.changed);
        assert_eq!(w.after_sha, sha256_hex(b"new content"));
        assert_eq!(std::fs::read(&dest).unwrap(), b"new content");
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!copy_file(&src_s, &req).unwrap().changed);
        assert!(temps(d.path()).is_empty());
        // a missing source: an error, the destination untouched
        assert!(copy_file(&d.path().join("nope").display().to_string(), &req).is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"new content");
        assert!(temps(d.path()).is_empty());
    }
}
