//! Host patterns, with the semantics and the *order* of Ansible's `InventoryManager.get_hosts`:
//! `all`/`*`, `a:b` and `a,b` (union in order), `a:&b` (intersection), `a:!b` (exclusion) — applied
//! regular first, then `&`, then `!` — shell globs over group and host names, `~regex`, and
//! subscripts `g[0]`, `g[-1]`, `g[1:3]` (inclusive end), `g[1:]`. `--limit` is the same language
//! plus `@file` (one pattern per line). A pattern that matches nothing is a warning.

use super::data::{InventoryData, LOCALHOST};
use super::Inventory;
use crate::config::ConfigError;
use regex::Regex;
use std::sync::OnceLock;

/// Ansible's `split_host_pattern`: commas split; otherwise a valid address is one pattern, and
/// anything else is split on `:` outside brackets.
pub fn split_host_pattern(pattern: &str) -> Vec<String> {
    let parts: Vec<String> = if pattern.contains(',') {
        pattern.split(',').map(str::to_string).collect()
    } else if super::address::parse_address(pattern, true).is_ok() {
        vec![pattern.to_string()]
    } else {
        static RE: OnceLock<Regex> = OnceLock::new();
        let re =
            RE.get_or_init(|| Regex::new(r"(?:[^\s:\[\]]|\[[^\]]*\])+").expect("static regex"));
        re.find_iter(pattern)
            .map(|m| m.as_str().to_string())
            .collect()
    };
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Regular patterns first, then `&` intersections, then `!` exclusions; `all` if no regular one.
pub fn order_patterns(patterns: &[String]) -> Vec<String> {
    let (mut reg, mut and, mut not) = (vec![], vec![], vec![]);
    for p in patterns.iter().filter(|p| !p.is_empty()) {
        if p.starts_with('!') {
            not.push(p.clone());
        } else if p.starts_with('&') {
            and.push(p.clone());
        } else {
            reg.push(p.clone());
        }
    }
    if reg.is_empty() {
        reg.push("all".into());
    }
    reg.extend(and);
    reg.extend(not);
    reg
}

/// Python's `fnmatch.translate`, as a full-match regex.
pub fn glob_to_regex(pat: &str) -> String {
    let chars: Vec<char> = pat.chars().collect();
    let mut out = String::from("^(?s:");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                while i < chars.len() && chars[i] == '*' {
                    i += 1;
                }
                out.push_str(".*");
            }
            '?' => out.push('.'),
            '[' => {
                let mut j = i;
                if j < chars.len() && chars[j] == '!' {
                    j += 1;
                }
                if j < chars.len() && chars[j] == ']' {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push_str("\\[");
                } else {
                    let body: String = chars[i..j].iter().collect();
                    i = j + 1;
                    let (neg, body) = match body.strip_prefix('!') {
                        Some(b) => (true, b.to_string()),
                        None => (false, body),
                    };
                    let mut class = String::new();
                    for ch in body.chars() {
                        if matches!(ch, '\\' | '[' | ']' | '^' | '&' | '~') {
                            class.push('\\');
                        }
                        class.push(ch);
                    }
                    if class.is_empty() {
                        out.push_str(if neg { "." } else { "[^\\s\\S]" });
                    } else {
                        out.push('[');
                        if neg {
                            out.push('^');
                        }
                        out.push_str(&class);
                        out.push(']');
                    }
                }
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push_str(")$");
    out
}

fn compile(pattern: &str) -> Result<Regex, ConfigError> {
    let re = match pattern.strip_prefix('~') {
        Some(r) => format!("^(?:{r})"),
        None => glob_to_regex(pattern),
    };
    Regex::new(&re).map_err(|_| ConfigError::Other(format!("Invalid host list pattern: {pattern}")))
}

/// `pattern[sub]` → (pattern, Some((start, end))) where `end == None` means a single index.
fn split_subscript(pattern: &str) -> (String, Option<(i64, Option<i64>)>) {
    if pattern.starts_with('~') {
        return (pattern.to_string(), None);
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$").expect("static regex")
    });
    let Some(c) = re.captures(pattern) else {
        return (pattern.to_string(), None);
    };
    let base = c[1].to_string();
    if let Some(idx) = c.get(2) {
        return (base, idx.as_str().parse().ok().map(|i| (i, None)));
    }
    let start: i64 = c[3].parse().unwrap_or(0);
    let end: i64 = if c[5].is_empty() {
        -1
    } else {
        c[5].parse().unwrap_or(-1)
    };
    if &c[4] == "-" {
        tracing::warn!("Use [x:y] inclusive subscripts instead of [x-y] which has been removed");
    }
    (base, Some((start, Some(end))))
}

fn apply_subscript(
    hosts: Vec<String>,
    sub: Option<(i64, Option<i64>)>,
    pattern: &str,
) -> Result<Vec<String>, ConfigError> {
    let Some((start, end)) = sub else {
        return Ok(hosts);
    };
    if hosts.is_empty() {
        return Ok(hosts);
    }
    let len = hosts.len() as i64;
    let norm = |i: i64| if i < 0 { (i + len).max(0) } else { i.min(len) };
    match end {
        // Python: `if end:` — an end of 0 means a single index
        Some(e) if e != 0 => {
            let e = if e == -1 { len - 1 } else { e };
            let (s, e) = (norm(start), norm(e + 1));
            Ok(if s < e {
                hosts[s as usize..e as usize].to_vec()
            } else {
                vec![]
            })
        }
        _ => {
            let i = if start < 0 { start + len } else { start };
            if i < 0 || i >= len {
                return Err(ConfigError::Other(format!(
                    "No hosts matched the subscripted pattern '{pattern}'"
                )));
            }
            Ok(vec![hosts[i as usize].clone()])
        }
    }
}

impl Inventory {
    /// The hosts a pattern (or `a:b,&c` list) names, in Ansible's order, without duplicates.
    /// Unmatched patterns add a warning to [`Inventory::warnings`], as Ansible prints one.
    pub fn select(&self, pattern: &str) -> Result<Vec<String>, ConfigError> {
        let hosts = self.evaluate(&split_host_pattern(pattern))?;
        Ok(dedup(hosts))
    }

    /// `--limit`: keep those of `hosts` that the (parsed) limit selects.
    pub fn limit(&self, hosts: &[String], limit: &Limit) -> Result<Vec<String>, ConfigError> {
        let allowed: std::collections::HashSet<String> =
            self.evaluate(&limit.patterns)?.into_iter().collect();
        Ok(hosts
            .iter()
            .filter(|h| allowed.contains(*h))
            .cloned()
            .collect())
    }

    fn evaluate(&self, patterns: &[String]) -> Result<Vec<String>, ConfigError> {
        let mut hosts: Vec<String> = Vec::new();
        for p in order_patterns(patterns) {
            if self.data.hosts.contains_key(&p) {
                hosts.push(p.clone());
                continue;
            }
            let that = self.match_one(&p)?;
            if p.starts_with('!') {
                let that: std::collections::HashSet<&String> = that.iter().collect();
                hosts.retain(|h| !that.contains(h));
            } else if p.starts_with('&') {
                let that: std::collections::HashSet<&String> = that.iter().collect();
                hosts.retain(|h| that.contains(h));
            } else {
                let existing: std::collections::HashSet<String> = hosts.iter().cloned().collect();
                hosts.extend(that.into_iter().filter(|h| !existing.contains(h)));
            }
        }
        Ok(hosts)
    }

    fn match_one(&self, pattern: &str) -> Result<Vec<String>, ConfigError> {
        let pattern = pattern.strip_prefix(['&', '!']).unwrap_or(pattern);
        if pattern.is_empty() {
            return Ok(vec![]);
        }
        let (expr, sub) = split_subscript(pattern);
        let hosts = self.enumerate(&expr)?;
        apply_subscript(hosts, sub, pattern)
    }

    fn enumerate(&self, pattern: &str) -> Result<Vec<String>, ConfigError> {
        let d: &InventoryData = &self.data;
        let re = compile(pattern)?;
        let mut results: Vec<String> = Vec::new();
        let groups: Vec<usize> = d
            .groups
            .keys()
            .enumerate()
            .filter(|(_, n)| re.is_match(n))
            .map(|(i, _)| i)
            .collect();
        for g in &groups {
            results.extend(
                d.group_hosts(*g)
                    .into_iter()
                    .map(|h| d.hosts[h].name.clone()),
            );
        }
        if groups.is_empty() || pattern.starts_with('~') || pattern.contains(['.', '?', '*', '[']) {
            results.extend(d.hosts.keys().filter(|h| re.is_match(h)).cloned());
        }
        if results.is_empty() && LOCALHOST.contains(&pattern) {
            results.push(self.implicit_localhost_name(pattern));
        }
        if results.is_empty() && groups.is_empty() && pattern != "all" {
            self.push_warning(format!(
                "Could not match supplied host pattern, ignoring: {pattern}"
            ));
        }
        Ok(results)
    }
}

/// A `--limit`, parsed once where the user gave it (the CLI): its `@file`s read, every pattern
/// checked (a bad `~regex` is an error here, not "no hosts matched" later).
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    text: String,
    patterns: Vec<String>,
}

impl Limit {
    /// Parse a `--limit` value. Errors are ansible-playbook's: "Unable to find limit file X",
    /// "Limit starting with "@" must be a file, not a directory: X", "Invalid host list pattern: X".
    pub fn parse(text: &str) -> Result<Limit, ConfigError> {
        let patterns = subset_patterns(text)?;
        for p in &patterns {
            let body = p.strip_prefix(['&', '!']).unwrap_or(p);
            if !body.is_empty() {
                compile(&split_subscript(body).0)?;
            }
        }
        Ok(Limit {
            text: text.to_string(),
            patterns,
        })
    }

    /// The limit as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The limit's patterns, `@file`s read (one pattern per line).
fn subset_patterns(limit: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for x in split_host_pattern(limit) {
        if let Some(file) = x.strip_prefix('@') {
            let p = std::path::Path::new(file);
            if !p.exists() {
                return Err(ConfigError::Other(format!(
                    "Unable to find limit file {file}"
                )));
            }
            if !p.is_file() {
                return Err(ConfigError::Other(format!(
                    "Limit starting with \"@\" must be a file, not a directory: {file}"
                )));
            }
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError::io(p, e))?;
            out.extend(text.split('\n').map(|l| l.trim().to_string()));
        } else {
            out.push(x);
        }
    }
    Ok(out)
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|h| seen.insert(h.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_and_ordering() {
        assert_eq!(split_host_pattern("a:&b:!c"), ["a", "&b", "!c"]);
        assert_eq!(
            split_host_pattern("a, b[1], c[2:3] , d"),
            ["a", "b[1]", "c[2:3]", "d"]
        );
        assert_eq!(split_host_pattern("web[1:3]"), ["web[1:3]"]);
        assert_eq!(split_host_pattern("g[-1]:x"), ["g[-1]", "x"]);
        assert_eq!(split_host_pattern("fe80::1"), ["fe80::1"]);
        assert_eq!(
            order_patterns(&["!c".into(), "&b".into()]),
            ["all", "&b", "!c"]
        );
    }

    #[test]
    fn globs_like_fnmatch() {
        let m = |p: &str, s: &str| Regex::new(&glob_to_regex(p)).unwrap().is_match(s);
        assert!(m("web*", "web01"));
        assert!(m("*.example.com", "a.example.com"));
        assert!(!m("*.example.com", "example.com"));
        assert!(m("db[12]", "db1"));
        assert!(m("db[!12]", "db3"));
        assert!(!m("web", "web1"));
        assert!(m("a[", "a["));
    }

    #[test]
    fn subscripts_as_ansible() {
        let h: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let sub = |p: &str| {
            let (_, s) = split_subscript(p);
            apply_subscript(h.clone(), s, p)
        };
        assert_eq!(sub("g[0]").unwrap(), ["a"]);
        assert_eq!(sub("g[-1]").unwrap(), ["d"]);
        assert_eq!(sub("g[1:3]").unwrap(), ["b", "c", "d"]);
        assert_eq!(sub("g[1:]").unwrap(), ["b", "c", "d"]);
        assert_eq!(sub("g[2:0]").unwrap(), ["c"]);
        assert_eq!(sub("g[3:9]").unwrap(), ["d"]);
        assert!(sub("g[7]").is_err());
        assert_eq!(split_subscript("~web[0]").1, None);
    }
}
