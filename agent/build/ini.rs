//! The INI model of oslo.config's parser and Kayobe's `merge_configs` on top of it.
//!
//! Kayobe merges `kolla-build.conf` (and Kolla Ansible's service configs) with an
//! `oslo_config.iniparser.BaseParser` subclass: sections are merged in order of first appearance,
//! a key set again by a *later source* replaces the earlier value, a key repeated *within one
//! source* becomes a multi-valued key (written as `key = a` lines), continuation lines (leading
//! blank) extend a value, comments and blank lines are dropped, one pair of matching quotes around a
//! value is removed, keys before any section land in an orphan section written without a header.
//! No INI crate keeps these rules (rust-ini and configparser fold repeated keys, keep comments'
//! positions or reject continuations), so this file holds them, tested against Kayobe's own plugin
//! in `tests/kolla_build_diff.rs`. `ini_file` stays a line editor (it must keep comments), so it
//! does not use this model.

use indexmap::IndexMap;

/// One value of a key: its lines (first line, then continuation lines); empty for `key =`.
pub type Lines = Vec<String>;

/// A parse error as oslo.config reports it, with the 1-based line number and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
    pub text: String,
}

/// The merged document: section → key → the list of values the key was given (more than one when
/// a single source repeated the key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedIni {
    sections: IndexMap<Option<String>, IndexMap<String, Vec<Lines>>>,
    whitespace: bool,
}

impl MergedIni {
    /// An empty document; `whitespace` puts spaces around `=` when written (Kayobe's default).
    pub fn new(whitespace: bool) -> Self {
        MergedIni {
            sections: IndexMap::new(),
            whitespace,
        }
    }

    /// Parse one source and merge it in: per section, each key this source sets replaces the
    /// earlier one; repeated keys inside this source accumulate.
    pub fn merge_source(&mut self, text: &str) -> Result<(), ParseError> {
        let parsed = parse(text)?;
        for (section, keys) in parsed {
            let into = self.sections.entry(section).or_default();
            for (k, v) in keys {
                into.insert(k, v);
            }
        }
        Ok(())
    }

    /// The value(s) of `key` in `section` (`None` for the orphan section).
    pub fn get(&self, section: Option<&str>, key: &str) -> Option<&Vec<Lines>> {
        self.sections
            .get(&section.map(str::to_string))
            .and_then(|s| s.get(key))
    }

    /// Set `key` in `section` to one single-line value (appending the section if new).
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        self.sections
            .entry(Some(section.to_string()))
            .or_default()
            .insert(key.to_string(), vec![vec![value.to_string()]]);
    }

    /// The section names, in order (the orphan section is skipped).
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().filter_map(|s| s.as_deref())
    }

    /// Write as Kayobe's `OverrideConfigParser.write` does: `[section]`, `key = value` (further
    /// lines of a value indented under the first), a blank line after every section.
    pub fn write(&self) -> String {
        let ws = if self.whitespace { " " } else { "" };
        let mut out = String::new();
        for (section, keys) in &self.sections {
            if let Some(name) = section {
                out.push_str(&format!("[{name}]\n"));
            }
            for (key, values) in keys {
                for v in values {
                    if v.is_empty() {
                        out.push_str(&format!("{key}{ws}=\n"));
                    }
                    for (i, line) in v.iter().enumerate() {
                        if i == 0 {
                            out.push_str(&format!("{key}{ws}={ws}{line}\n"));
                        } else {
                            let indent = " ".repeat(key.len() + ws.len() * 2 + 1);
                            out.push_str(&format!("{indent}{line}\n"));
                        }
                    }
                }
            }
            out.push('\n');
        }
        out
    }
}

type Parsed = IndexMap<Option<String>, IndexMap<String, Vec<Lines>>>;

/// oslo.config's `BaseParser.parse` with Kayobe's `assignment`/`new_section` callbacks.
fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut out: Parsed = IndexMap::new();
    let mut cur: Option<Option<String>> = None;
    let mut pending: Option<(String, Lines)> = None;
    let err = |n: usize, msg: &str, line: &str| ParseError {
        line: n,
        msg: msg.to_string(),
        text: line.to_string(),
    };
    fn assign(out: &mut Parsed, cur: &mut Option<Option<String>>, key: String, mut value: Lines) {
        let section = cur.get_or_insert(None).clone();
        if value.len() == 1 && value[0].is_empty() {
            value = vec![];
        }
        out.entry(section)
            .or_default()
            .entry(key)
            .or_default()
            .push(value);
    }
    // Python's str.splitlines-like iteration over file lines (`\n`, keeping `\r` for rstrip)
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            if let Some((k, v)) = pending.take() {
                assign(&mut out, &mut cur, k, v);
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match pending.as_mut() {
                Some((_, v)) => v.push(line.trim_start().to_string()),
                None => return Err(err(n, "Unexpected continuation line", line)),
            }
            continue;
        }
        if let Some((k, v)) = pending.take() {
            assign(&mut out, &mut cur, k, v);
        }
        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Err(err(n, "Invalid section (must end with ])", line));
            }
            if line.len() <= 2 {
                return Err(err(n, "Empty section name", line));
            }
            let name = line[1..line.len() - 1].to_string();
            out.entry(Some(name.clone())).or_default();
            cur = Some(Some(name));
        } else if line.starts_with(['#', ';']) {
            // comment
        } else {
            let colon = line.find(':');
            let equal = line.find('=');
            let at = match (colon, equal) {
                (None, None) => return Err(err(n, "No ':' or '=' found in assignment", line)),
                (None, Some(e)) => e,
                (Some(c), Some(e)) if e < c => e,
                (Some(c), _) => c,
            };
            let key = line[..at].trim().to_string();
            let mut value = line[at + 1..].trim().to_string();
            if value.len() >= 2
                && (value.starts_with('"') || value.starts_with('\''))
                && value.as_bytes()[0] == value.as_bytes()[value.len() - 1]
            {
                value = value[1..value.len() - 1].to_string();
            } else if value.len() == 1 && (value == "\"" || value == "'") {
                // Python: value[0] == value[-1] and startswith quote → value[1:-1] == ''
                value.clear();
            }
            if key.is_empty() {
                return Err(err(n, "Key cannot be empty", line));
            }
            pending = Some((key, vec![value]));
        }
    }
    if let Some((k, v)) = pending.take() {
        assign(&mut out, &mut cur, k, v);
    }
    Ok(out)
}

/// Merge sources in order (each already templated) as Kayobe's `merge_configs` does.
pub fn merge_configs<'a>(
    sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    whitespace: bool,
) -> Result<String, String> {
    let mut m = MergedIni::new(whitespace);
    for (name, text) in sources {
        m.merge_source(text).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(m.write())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_sources_win_per_key_and_sections_merge() {
        let a = "[DEFAULT]\n# c\nbase=rocky\ntag = a\n\n[x]\ntype = url\n";
        let b = "[DEFAULT]\ntag = b\n[y]\nk: 'v'\n";
        let out = merge_configs([("a", a), ("b", b)], true).unwrap();
        assert_eq!(
            out,
            "[DEFAULT]\nbase = rocky\ntag = b\n\n[x]\ntype = url\n\n[y]\nk = v\n\n"
        );
    }

    #[test]
    fn repeated_keys_and_continuations() {
        let a = "top = 1\n[s]\nk = a\nk = b\nm = one\n  two\nempty =\n";
        let out = merge_configs([("a", a)], true).unwrap();
        assert_eq!(
            out,
            "top = 1\n\n[s]\nk = a\nk = b\nm = one\n    two\nempty =\n\n"
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = merge_configs([("f.conf", "[s]\nnovalue\n")], true).unwrap_err();
        assert!(e.contains("f.conf: line 2"), "{e}");
        let e = merge_configs([("f.conf", "  x\n")], true).unwrap_err();
        assert!(e.contains("continuation"), "{e}");
    }
}
