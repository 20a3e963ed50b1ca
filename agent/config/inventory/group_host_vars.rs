//! `group_vars/` and `host_vars/` beside inventory sources and playbooks (Ansible's
//! `host_group_vars` vars plugin): for an entity `name` under `<dir>/group_vars/`, the first of
//! `name`, `name.yml`, `name.yaml`, `name.json` that exists is used — a directory is read
//! recursively (sorted; hidden files, `*~` and other extensions skipped), and the later
//! candidates are then *not* read, as in Ansible.
//!
//! Parsed files and directory lookups are cached for the life of the [`VarsFiles`]: a host's
//! variables touch the same `group_vars/all` for every host.

use crate::config::varsfile::read_vars_file;
use crate::config::ConfigError;
use crate::value::{Map, Value};
use crate::vault::Keyring;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const EXTENSIONS: [&str; 4] = ["", ".yml", ".yaml", ".json"];

/// The vars files found for one (directory, entity), in load order.
type FoundFiles = Arc<Vec<PathBuf>>;

#[derive(Default, Debug)]
pub struct VarsFiles {
    parsed: Mutex<HashMap<PathBuf, Arc<Value>>>,
    found: Mutex<HashMap<(PathBuf, String), FoundFiles>>,
    warned: Mutex<Vec<PathBuf>>,
}

/// Which directory under a base dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Group,
    Host,
}

impl Kind {
    fn subdir(self) -> &'static str {
        match self {
            Kind::Group => "group_vars",
            Kind::Host => "host_vars",
        }
    }
}

impl VarsFiles {
    /// The merged variables of `entity` from `<base>/group_vars` or `<base>/host_vars` (top-level
    /// keys of later files replace earlier ones). Empty if there is no such directory.
    pub fn entity_vars(
        &self,
        base: &Path,
        kind: Kind,
        entity: &str,
        keys: &Keyring,
    ) -> Result<Map, ConfigError> {
        let mut out = Map::new();
        if entity.is_empty() || entity.starts_with('/') {
            return Ok(out);
        }
        for f in self.files_for(base, kind, entity).iter() {
            let v = self.parsed(f, keys)?;
            match &*v {
                Value::Map(m) => {
                    for (k, v) in m {
                        out.insert(k.clone(), v.clone());
                    }
                }
                v if !v.is_truthy() => {}
                v => {
                    return Err(ConfigError::Other(format!(
                        "{}: a vars file must hold a mapping of variable names to values, not a {}",
                        f.display(),
                        v.type_name()
                    )))
                }
            }
        }
        Ok(out)
    }

    /// The last of `entity`'s vars files under `base` that defines `name` (for error messages).
    pub fn file_defining(
        &self,
        base: &Path,
        kind: Kind,
        entity: &str,
        name: &str,
        keys: &Keyring,
    ) -> Option<PathBuf> {
        if entity.is_empty() || entity.starts_with('/') {
            return None;
        }
        self.files_for(base, kind, entity)
            .iter()
            .rev()
            .find(|f| {
                self.parsed(f, keys)
                    .is_ok_and(|v| matches!(&*v, Value::Map(m) if m.contains_key(name)))
            })
            .cloned()
    }

    fn parsed(&self, f: &Path, keys: &Keyring) -> Result<Arc<Value>, ConfigError> {
        if let Some(v) = lock(&self.parsed).get(f) {
            return Ok(v.clone());
        }
        let v = Arc::new(read_vars_file(f, keys)?);
        lock(&self.parsed).insert(f.to_path_buf(), v.clone());
        Ok(v)
    }

    fn files_for(&self, base: &Path, kind: Kind, entity: &str) -> Arc<Vec<PathBuf>> {
        let dir = base.join(kind.subdir());
        let key = (dir.clone(), entity.to_string());
        if let Some(f) = lock(&self.found).get(&key) {
            return f.clone();
        }
        let mut found = Vec::new();
        if dir.is_dir() {
            for ext in EXTENSIONS {
                let p = dir.join(format!("{entity}{ext}"));
                if p.exists() {
                    if p.is_dir() {
                        dir_files(&p, &mut found);
                    } else {
                        found.push(p);
                    }
                    break;
                }
            }
        } else if dir.exists() {
            let mut w = lock(&self.warned);
            if !w.contains(&dir) {
                tracing::warn!(
                    "Found {} that is not a directory, skipping: {}",
                    kind.subdir(),
                    dir.display()
                );
                w.push(dir.clone());
            }
        }
        let found = Arc::new(found);
        lock(&self.found).insert(key, found.clone());
        found
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ansible's `_get_dir_vars_files`: sorted, recursive into extension-less directories.
fn dir_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        if n.starts_with('.') || n.ends_with('~') {
            continue;
        }
        let ext = splitext(&n);
        let p = dir.join(&n);
        if p.is_dir() && ext.is_empty() {
            dir_files(&p, found);
        } else if p.is_file() && (ext.is_empty() || EXTENSIONS.contains(&ext)) {
            found.push(p);
        }
    }
}

/// Python's `os.path.splitext(name)[1]` for a file name (leading dots do not start an extension).
pub fn splitext(name: &str) -> &str {
    let stripped = name.trim_start_matches('.');
    match stripped.rfind('.') {
        Some(i) => &stripped[i..],
        None => "",
    }
}
