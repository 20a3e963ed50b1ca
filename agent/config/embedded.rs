//! kiln's shipped `inventory/`, `playbooks/` and `environments/`, embedded in the binary so one
//! copied binary works anywhere.
//!
//! Code that reads configuration works on paths (Ansible semantics are about directories and
//! files), so the embedded tree is written once to a content-addressed cache directory
//! (`$XDG_CACHE_HOME/kiln/share-<hash>`, else `~/.cache/...`, else the temp dir) and used from
//! there. The directory is created atomically (written beside, then renamed), so concurrent kiln
//! processes never see half of it.

use super::ConfigError;
use include_dir::{include_dir, Dir};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static INVENTORY: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/inventory");
static PLAYBOOKS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/playbooks");
static ENVIRONMENTS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/environments");

fn trees() -> [(&'static str, &'static Dir<'static>); 3] {
    [
        ("inventory", &INVENTORY),
        ("playbooks", &PLAYBOOKS),
        ("environments", &ENVIRONMENTS),
    ]
}

fn hash() -> String {
    fn walk(d: &Dir, h: &mut Sha256) {
        for f in d.files() {
            h.update(f.path().to_string_lossy().as_bytes());
            h.update([0]);
            h.update(f.contents());
        }
        for sub in d.dirs() {
            walk(sub, h);
        }
    }
    let mut h = Sha256::new();
    for (name, d) in trees() {
        h.update(name.as_bytes());
        walk(d, &mut h);
    }
    hex::encode(&h.finalize()[..8])
}

fn cache_root() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("kiln");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/kiln");
    }
    std::env::temp_dir().join("kiln-cache")
}

/// The directory holding kiln's shipped `inventory/`, `playbooks/` and `environments/`.
pub fn share_dir() -> Result<&'static Path, ConfigError> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(d) = DIR.get() {
        return Ok(d);
    }
    let dir = cache_root().join(format!("share-{}", hash()));
    if !dir.is_dir() {
        extract(&dir)?;
    }
    Ok(DIR.get_or_init(|| dir))
}

fn extract(dest: &Path) -> Result<(), ConfigError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ConfigError::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".share-")
        .tempdir_in(parent)
        .map_err(|e| ConfigError::io(parent, e))?;
    for (name, d) in trees() {
        let root = tmp.path().join(name);
        std::fs::create_dir_all(&root).map_err(|e| ConfigError::io(&root, e))?;
        d.extract(&root).map_err(|e| ConfigError::io(&root, e))?;
    }
    let staged = tmp.keep();
    if let Err(e) = std::fs::rename(&staged, dest) {
        // another kiln won the race: use its copy
        let _ = std::fs::remove_dir_all(&staged);
        if !dest.is_dir() {
            return Err(ConfigError::io(dest, e));
        }
    }
    Ok(())
}

/// The throwaway identity the shipped environments' secrets are encrypted to (relative to the
/// shipped config path), and its documented passphrase. Lab and tests only: see
/// `environments/ci-builder/README.md`.
pub const LAB_IDENTITY: &str = "environments/ci-builder/lab-identity.age";
pub const LAB_IDENTITY_PASSPHRASE: &str = "kiln-lab-throwaway";

/// kiln's base inventory (its `group_vars/all` holds the defaults a Kayobe user gets).
pub fn base_inventory() -> Result<PathBuf, ConfigError> {
    Ok(share_dir()?.join("inventory"))
}

/// A shipped playbook by name (`growroot.yml`).
pub fn playbook(name: &str) -> Result<PathBuf, ConfigError> {
    Ok(share_dir()?.join("playbooks").join(name))
}

/// A shipped Kayobe config path whose `environments/` are kiln's own (`ci-builder`, `lab`).
pub fn shipped_config_path() -> Result<PathBuf, ConfigError> {
    share_dir().map(Path::to_path_buf)
}
