//! Writing vault output to disk: atomically (a temporary file in the target's directory, fsync,
//! rename), so a failure never leaves a half-written or missing file, and with the mode chosen
//! before any byte is written, so plaintext is never readable by others even for a moment.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replace (or create) `path` with `bytes`. `mode` is the file mode; `None` keeps the mode of the
/// file being replaced (0644 for a new file).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mode = match mode {
        Some(m) => m,
        None => std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644),
    };
    // NamedTempFile is created 0600 and removed on drop if anything below fails.
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-vault-")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_keeps_existing_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"a", Some(0o600)).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"b", None).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"b");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
