//! `group_vars/` and `host_vars/` beside inventory sources and playbooks (Ansible's
//! `host_group_vars` vars plugin): for an entity `name` under `<dir>/group_vars/`, the first of
//! `name`, `name.yml`, `name.yaml`, `name.json` that exists is used — a directory is read
//! recursively (sorted; hidden files, `*~` and other extensions skipped), and the later
//! candidates are then *not* read, as in Ansible.
//!
//! kiln's extension, invisible to Ansible: age-encrypted files by age's own naming are read too,
//! `name.yml.age` (`.yaml.age`, `.json.age`) as a candidate after Ansible's four, and
//! `*.yml.age` files inside a directory. A file kiln skips in a vars directory is named at `-v`
//! (tracing target `vars_files`), so an "undefined" variable has a visible reason.
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
/// kiln's age-encrypted candidates, tried after Ansible's.
const AGE_EXTENSIONS: [&str; 3] = [".yml.age", ".yaml.age", ".json.age"];

/// Whether a file name inside a vars directory is read: Ansible's extensions, or one of them
/// followed by `.age`.
fn is_vars_name(name: &str) -> bool {
    let ext = splitext(name);
    EXTENSIONS.contains(&ext) || (ext == ".age" && AGE_EXTENSIONS.iter().any(|e| name.ends_with(e)))
}

/// Say at `-v` that a file in a vars directory is not read, and why.
fn skipped(path: &Path, why: &str) {
    tracing::info!(target: "vars_files", "{}: not read as a vars file: {why}", path.display());
}

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
            let mut chosen: Option<PathBuf> = None;
            for ext in EXTENSIONS.iter().chain(AGE_EXTENSIONS.iter()) {
                let p = dir.join(format!("{entity}{ext}"));
                if !p.exists() {
                    continue;
                }
                if let Some(c) = &chosen {
                    skipped(
                        &p,
                        &format!(
                            "{} is read for {entity:?} (only the first of {entity}, {entity}.yml, .yaml, .json, .yml.age, .yaml.age, .json.age is)",
                            c.display()
                        ),
                    );
                    continue;
                }
                if p.is_dir() {
                    dir_files(&p, &mut found);
                } else {
                    found.push(p.clone());
                }
                chosen = Some(p);
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
        let p = dir.join(&n);
        if n.starts_with('.') || n.ends_with('~') {
            skipped(
                &p,
                "hidden and backup (`~`) files are skipped, as by Ansible",
            );
            continue;
        }
        let ext = splitext(&n);
        if p.is_dir() && ext.is_empty() {
            dir_files(&p, found);
        } else if p.is_file() && is_vars_name(&n) {
            found.push(p);
        } else if p.is_dir() {
            skipped(
                &p,
                "a directory with an extension is not descended into, as by Ansible",
            );
        } else {
            skipped(
                &p,
                "the name must end in .yml, .yaml, .json (or .yml.age, .yaml.age, .json.age) or have no extension",
            );
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
