//! Turning `-i` sources into inventory, as Ansible's `InventoryManager.parse_sources` does: a
//! `host1,host2,` list, a file (tried with the yaml plugin when its extension allows, then the
//! ini plugin), or a directory (its entries in sorted order, recursively, minus Ansible's ignore
//! list). A source nothing can parse is a warning, not an error — that is Ansible's default
//! (`INVENTORY_ANY_UNPARSED_IS_FAILED=False`); the failures are kept so a caller can be strict.

use super::address::parse_address;
use super::data::InventoryData;
use super::group_host_vars::splitext;
use crate::vault::Keyring;
use regex::Regex;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// Ansible's INVENTORY_IGNORE_EXTS default: REJECT_EXTS plus `.orig`, `.ini`, `.cfg`, `.retry`.
pub const IGNORE_EXTS: [&str; 13] = [
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".ini", ".cfg",
    ".retry",
];

/// The yaml plugin's `yaml_extensions` (a file with no extension is tried too).
const YAML_EXTS: [&str; 3] = [".yaml", ".yml", ".json"];

/// What loading the sources produced.
pub struct Loaded {
    pub data: InventoryData,
    pub warnings: Vec<String>,
    /// One message per source that no plugin could parse.
    pub failures: Vec<String>,
}

fn ignored(name: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        let mut alts = vec![
            r"^\.".to_string(),
            "^host_vars$".into(),
            "^group_vars$".into(),
            "^vars_plugins$".into(),
        ];
        alts.extend(IGNORE_EXTS.iter().map(|e| format!("{}$", regex::escape(e))));
        Regex::new(&alts.join("|")).expect("static regex")
    });
    re.is_match(name)
}

/// Ansible's INVALID_VARIABLE_NAMES test (`^[\d\W]|[^\w]`): such group names work but are warned
/// about (TRANSFORM_INVALID_GROUP_CHARS=never).
fn invalid_group_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() || !(c.is_alphanumeric() || c == '_') => true,
        _ => name.chars().any(|c| !(c.is_alphanumeric() || c == '_')),
    }
}

/// Python's `unfrackpath(p, follow=False)`: `~` and `$VARS` expanded, made absolute, `.`/`..`
/// folded lexically (symlinks are not resolved).
pub fn unfrack(p: &str) -> String {
    let expanded = expand_user_vars(p);
    let base = if Path::new(&expanded).is_absolute() {
        PathBuf::new()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
    };
    let mut out = PathBuf::from("/");
    for c in base.join(&expanded).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out.display().to_string()
}

fn expand_user_vars(p: &str) -> String {
    let mut s = p.to_string();
    if s == "~" || s.starts_with("~/") {
        if let Ok(home) = std::env::var("HOME") {
            s = format!("{home}{}", &s[1..]);
        }
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"\$(\w+)|\$\{([^}]+)\}").expect("static regex"));
    re.replace_all(&s, |c: &regex::Captures| {
        let name = c
            .get(1)
            .or_else(|| c.get(2))
            .map(|m| m.as_str())
            .unwrap_or("");
        std::env::var(name).unwrap_or_else(|_| c[0].to_string())
    })
    .into_owned()
}

pub fn load(sources: &[String], keys: &Keyring) -> Loaded {
    let mut l = Loaded {
        data: InventoryData::default(),
        warnings: vec![],
        failures: vec![],
    };
    let mut parsed = false;
    for source in sources {
        if source.is_empty() {
            continue;
        }
        let source = if source.contains(',') {
            source.clone()
        } else {
            unfrack(source)
        };
        if parse_source(&mut l, &source, keys) {
            parsed = true;
        }
    }
    if l.data.groups.keys().any(|g| invalid_group_name(g)) {
        l.warnings.insert(0, "Invalid characters were found in group names but not replaced, use -vvvv to see details".into());
    }
    if parsed {
        let mut w = Vec::new();
        l.data.reconcile(&mut w);
        l.warnings.extend(w);
    } else {
        l.warnings
            .push("No inventory was parsed, only implicit localhost is available".into());
    }
    l
}

fn parse_source(l: &mut Loaded, source: &str, keys: &Keyring) -> bool {
    let path = Path::new(source);
    let mut parsed = false;
    let mut failures: Vec<(String, String)> = Vec::new();
    if path.is_dir() {
        let mut names: Vec<String> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => {
                l.warnings
                    .push(format!("cannot list inventory directory {source}: {e}"));
                vec![]
            }
        };
        names.sort();
        for n in names {
            if ignored(&n) {
                continue;
            }
            let full = path.join(&n).display().to_string();
            if parse_source(l, &full, keys) {
                parsed = true;
            }
        }
    } else {
        l.data.current_source = Some(source.to_string());
        if !path.exists() && source.contains(',') {
            parse_host_list(&mut l.data, source);
            parsed = true;
        } else if path.is_file() {
            match read_text(path, keys) {
                Err(e) => failures.push(("ini".into(), e)),
                Ok(text) => {
                    let ext = splitext(
                        path.file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default()
                            .as_str(),
                    )
                    .to_string();
                    if is_script(path, &text) {
                        failures.push(("script".into(), "inventory scripts are not supported by kiln; run the script and save its output as a YAML or JSON inventory".into()));
                    } else {
                        if ext.is_empty() || YAML_EXTS.contains(&ext.as_str()) {
                            let mut w = Vec::new();
                            match super::yaml_src::parse(&mut l.data, &text, source, &mut w) {
                                Ok(()) => parsed = true,
                                Err(e) => failures.push(("yaml".into(), e)),
                            }
                            l.warnings.extend(w);
                        }
                        if !parsed {
                            match super::ini::parse(&mut l.data, &text, source) {
                                Ok(()) => parsed = true,
                                Err(e) => failures.push(("ini".into(), e)),
                            }
                        }
                        if !parsed && ext == ".toml" {
                            failures.push((
                                "toml".into(),
                                "TOML inventories are not supported by kiln".into(),
                            ));
                        }
                    }
                }
            }
        }
    }
    if !parsed && (source != "/etc/ansible/hosts" || path.exists()) {
        for (plugin, e) in &failures {
            l.warnings.push(format!(
                " * Failed to parse {source} with {plugin} plugin: {e}"
            ));
        }
        l.failures.push(if failures.is_empty() {
            format!("{source}: not an inventory source (no such file or directory)")
        } else {
            let why: Vec<String> = failures
                .iter()
                .map(|(p, e)| format!("as {p}: {e}"))
                .collect();
            format!("{source}: cannot be parsed {}", why.join("; "))
        });
        l.warnings
            .push(format!("Unable to parse {source} as an inventory source"));
    }
    l.data.current_source = None;
    parsed
}

/// The script plugin's test: executable and starting with `#!`.
fn is_script(path: &Path, text: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    text.starts_with("#!")
        && std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
}

fn read_text(path: &Path, keys: &Keyring) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let origin = path.display().to_string();
    let bytes = match keys
        .decrypt_file_bytes(&bytes, &origin)
        .map_err(|e| e.to_string())?
    {
        Some(plain) => plain,
        None => bytes,
    };
    crate::yaml::utf8_text(bytes, &origin)
}

/// The host_list plugin: `a,b:22,` adds hosts to `ungrouped` (no ranges).
fn parse_host_list(d: &mut InventoryData, list: &str) {
    for h in list.split(',') {
        let h = h.trim();
        if h.is_empty() {
            continue;
        }
        let (host, port) = parse_address(h, false).unwrap_or_else(|_| (h.to_string(), None));
        if d.host_index(&host).is_none() {
            // "ungrouped" always exists
            let _ = d.add_host(&host, Some("ungrouped"), port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansible_ignore_rules() {
        for n in [
            ".hidden",
            "group_vars",
            "host_vars",
            "x.ini",
            "x.cfg",
            "x.retry",
            "x.md",
            "x.txt",
            "x~",
            "x.orig",
            "x.bak",
            "x.swp",
            "x.rst",
            "x.pyc",
        ] {
            assert!(ignored(n), "{n}");
        }
        for n in [
            "hosts",
            "x.yml",
            "x.yaml",
            "x.json",
            "x.example",
            "x.toml",
            "inventory",
            "x.conf",
        ] {
            assert!(!ignored(n), "{n}");
        }
    }

    #[test]
    fn unfrack_folds_dots() {
        assert_eq!(unfrack("/a/b/../c/./d"), "/a/c/d");
    }
}
