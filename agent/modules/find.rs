//! `find`: list files under paths on the host that match name patterns (glob, or Python regex with
//! `use_regex`), `excludes`, `file_type`, `contains`, `age`, `size`, `mode`, `hidden`, `recurse`
//! and `depth`, as Ansible's `find.py`. Read-only: never changed.
//!
//! One `find -printf` exec per path lists the tree with every stat field (see
//! [`fileattrs::walk`]); the filters run on the controller. Only `contains` reads file contents,
//! and only of the files that passed the other filters. `examined` counts what Ansible's
//! `os.walk` looks at: every entry of every directory it enters.

use super::support::args::{self, Mode};
use super::support::fileattrs::{self, Entry};
use super::support::pyre;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::{Map, Value};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "name", alias = "path", deserialize_with = "args::string_list")]
    pub paths: Vec<String>,
    #[serde(default, alias = "pattern", deserialize_with = "args::string_list")]
    pub patterns: Vec<String>,
    #[serde(default, alias = "exclude", deserialize_with = "args::string_list")]
    pub excludes: Vec<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub contains: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub read_whole_file: bool,
    #[serde(default = "file_s", deserialize_with = "args::string")]
    pub file_type: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub age: Option<String>,
    #[serde(default = "mtime_s", deserialize_with = "args::string")]
    pub age_stamp: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub size: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub recurse: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub hidden: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub follow: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub get_checksum: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub use_regex: bool,
    #[serde(default, deserialize_with = "args::opt_int")]
    pub depth: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_mode")]
    pub mode: Option<Mode>,
    #[serde(default = "crate::modules::support::args::yes", deserialize_with = "args::bool")]
    pub exact_mode: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub encoding: Option<String>,
}

fn file_s() -> String {
    "file".into()
}
fn mtime_s() -> String {
    "mtime".into()
}

/// Ansible's `age`/`size` with units: `-2d`, `1w`, `10k`; None when it does not parse.
pub fn parse_unit(s: &str, units: &[(char, i64)]) -> Option<i64> {
    let s = s.to_ascii_lowercase();
    let (num, mult) = match s.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = units.iter().find(|(u, _)| *u == c)?.1;
            (&s[..s.len() - 1], m)
        }
        _ => (s.as_str(), 1),
    };
    let digits = num.strip_prefix('-').unwrap_or(num);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    num.parse::<i64>().ok().map(|n| n * mult)
}

const AGE_UNITS: &[(char, i64)] = &[
    ('s', 1),
    ('m', 60),
    ('h', 3600),
    ('d', 86400),
    ('w', 604800),
];
const SIZE_UNITS: &[(char, i64)] = &[
    ('b', 1),
    ('k', 1024),
    ('m', 1024 * 1024),
    ('g', 1024 * 1024 * 1024),
    ('t', 1024 * 1024 * 1024 * 1024),
];

/// Name matching as Ansible's `pfilter` (fnmatch globs, or `re.match` with `use_regex`).
pub struct NameFilter {
    patterns: Vec<Matcher>,
    excludes: Vec<Matcher>,
}

enum Matcher {
    Glob(globset::GlobMatcher),
    Re(fancy_regex::Regex),
}

impl Matcher {
    fn new(p: &str, regex: bool) -> Result<Matcher, String> {
        if regex {
            // re.match: anchored at the start only
            pyre::compile(&format!("\\A(?:{p})"), false).map(Matcher::Re)
        } else {
            globset::GlobBuilder::new(p)
                .literal_separator(false)
                .backslash_escape(false)
                .build()
                .map(|g| Matcher::Glob(g.compile_matcher()))
                .map_err(|e| format!("bad pattern {p:?}: {e}"))
        }
    }
    fn is_match(&self, name: &str) -> bool {
        match self {
            Matcher::Glob(g) => g.is_match(name),
            Matcher::Re(r) => r.is_match(name).unwrap_or(false),
        }
    }
}

impl NameFilter {
    pub fn new(patterns: &[String], excludes: &[String], regex: bool) -> Result<Self, String> {
        let default = if regex { ".*" } else { "*" };
        let pats: Vec<&str> = if patterns.is_empty() {
            vec![default]
        } else {
            patterns.iter().map(String::as_str).collect()
        };
        Ok(NameFilter {
            patterns: pats
                .iter()
                .map(|p| Matcher::new(p, regex))
                .collect::<Result<_, _>>()?,
            excludes: excludes
                .iter()
                .map(|p| Matcher::new(p, regex))
                .collect::<Result<_, _>>()?,
        })
    }
    pub fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| p.is_match(name))
            && !self.excludes.iter().any(|e| e.is_match(name))
    }
}

/// Ansible's `statinfo`: the per-file dict in `files`.
fn statinfo(e: &Entry) -> Map {
    let mut m = Map::new();
    let b = |bit: u32| Value::Bool(e.mode & bit != 0);
    m.insert("path".into(), Value::Str(e.path.clone()));
    m.insert(
        "mode".into(),
        Value::Str(format!("{:04o}", e.mode & 0o7777)),
    );
    m.insert("isdir".into(), Value::Bool(e.kind == 'd'));
    m.insert("ischr".into(), Value::Bool(e.kind == 'c'));
    m.insert("isblk".into(), Value::Bool(e.kind == 'b'));
    m.insert("isreg".into(), Value::Bool(e.kind == 'f'));
    m.insert("isfifo".into(), Value::Bool(e.kind == 'p'));
    m.insert("islnk".into(), Value::Bool(e.kind == 'l'));
    m.insert("issock".into(), Value::Bool(e.kind == 's'));
    m.insert("uid".into(), Value::Int(e.uid.into()));
    m.insert("gid".into(), Value::Int(e.gid.into()));
    m.insert("size".into(), Value::Int(e.size as i64));
    m.insert("inode".into(), Value::Int(e.inode as i64));
    m.insert("dev".into(), Value::Int(e.dev as i64));
    m.insert("nlink".into(), Value::Int(e.nlink as i64));
    m.insert("atime".into(), Value::Float(e.atime));
    m.insert("mtime".into(), Value::Float(e.mtime));
    m.insert("ctime".into(), Value::Float(e.ctime));
    m.insert("gr_name".into(), Value::Str(e.group.clone()));
    m.insert("pw_name".into(), Value::Str(e.owner.clone()));
    for (name, bit) in [
        ("wusr", 0o200),
        ("rusr", 0o400),
        ("xusr", 0o100),
        ("wgrp", 0o020),
        ("rgrp", 0o040),
        ("xgrp", 0o010),
        ("woth", 0o002),
        ("roth", 0o004),
        ("xoth", 0o001),
        ("isuid", 0o4000),
        ("isgid", 0o2000),
    ] {
        m.insert(name.into(), b(bit));
    }
    m
}

pub struct Find;

impl Module for Find {
    const NAMES: &'static [&'static str] = &["find", "ansible.builtin.find", "ansible.legacy.find"];
    type Args = Args;
    type Plan = ();

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<()>, ModuleError> {
        let _ = &a.encoding;
        if !["any", "directory", "file", "link"].contains(&a.file_type.as_str()) {
            return Err(ModuleError::Args(format!(
                "value of file_type must be one of: any, directory, file, link, got: {}",
                a.file_type
            )));
        }
        let age = match &a.age {
            None => None,
            Some(s) => match parse_unit(s, AGE_UNITS) {
                Some(v) => Some(v),
                None => {
                    return Ok(Query::Done(
                        Outcome::failed("failed to process age").with("age", s.as_str()),
                    ))
                }
            },
        };
        let size = match &a.size {
            None => None,
            Some(s) => match parse_unit(s, SIZE_UNITS) {
                Some(v) => Some(v),
                None => {
                    return Ok(Query::Done(
                        Outcome::failed("failed to process size").with("size", s.as_str()),
                    ))
                }
            },
        };
        let names =
            NameFilter::new(&a.patterns, &a.excludes, a.use_regex).map_err(ModuleError::Args)?;
        let contains = a
            .contains
            .as_deref()
            .map(|c| {
                if a.read_whole_file {
                    pyre::compile(c, false)
                } else {
                    pyre::compile(&format!("\\A(?:{c})"), false)
                }
            })
            .transpose()
            .map_err(ModuleError::Args)?;
        let wanted_mode = match &a.mode {
            None => None,
            Some(m) => Some(m.resolve(0, false).map_err(ModuleError::Args)?),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut files = vec![];
        let mut skipped = Map::new();
        let mut looked = 0usize;
        for root in &a.paths {
            let st = ctx.session.stat(root, true, false).await?;
            if st.kind != "directory" {
                skipped.insert(
                    root.clone(),
                    Value::Str(format!("'{root}' is not a directory")),
                );
                continue;
            }
            let depth = match (a.recurse, a.depth) {
                (false, _) => Some(1),
                (true, Some(d)) if d > 0 => Some(d as usize + 1),
                (true, _) => None,
            };
            let limit = match (a.recurse, a.depth) {
                (true, Some(d)) if d > 0 => d as usize,
                (true, _) => usize::MAX,
                (false, _) => 1,
            };
            let entries = fileattrs::walk(ctx, root.trim_end_matches('/'), depth, a.follow).await?;
            looked += entries.len();
            for e in entries {
                if e.depth > limit {
                    continue;
                }
                let name = fileattrs::split_path(&e.path).1.to_string();
                if name.starts_with('.') && !a.hidden {
                    continue;
                }
                let type_ok = match a.file_type.as_str() {
                    "any" => true,
                    "directory" => e.kind == 'd',
                    "file" => e.kind == 'f',
                    _ => e.kind == 'l',
                };
                if !type_ok || !names.matches(&name) {
                    continue;
                }
                if let Some(age) = age {
                    let t = match a.age_stamp.as_str() {
                        "atime" => e.atime,
                        "ctime" => e.ctime,
                        _ => e.mtime,
                    };
                    let ok = if age >= 0 {
                        now - t >= age as f64
                    } else {
                        now - t <= age.unsigned_abs() as f64
                    };
                    if !ok {
                        continue;
                    }
                }
                if let Some(m) = wanted_mode {
                    let ok = if a.exact_mode {
                        e.mode & 0o7777 == m & 0o7777
                    } else {
                        e.mode & m != 0
                    };
                    if !ok {
                        continue;
                    }
                }
                if e.kind == 'f' && (a.file_type == "file" || a.file_type == "any") {
                    if let Some(sz) = size {
                        let ok = if sz >= 0 {
                            e.size as i64 >= sz
                        } else {
                            e.size as i64 <= sz.abs()
                        };
                        if !ok {
                            continue;
                        }
                    }
                }
                let mut data = None;
                if let (Some(re), true) = (&contains, a.file_type == "file") {
                    let bytes = fileattrs::read_opt(ctx, &e.path)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let hit = if a.read_whole_file {
                        re.is_match(&text).unwrap_or(false)
                    } else {
                        text.split_inclusive('\n')
                            .any(|l| re.is_match(l).unwrap_or(false))
                    };
                    if !hit {
                        continue;
                    }
                    data = Some(bytes);
                }
                let mut info = statinfo(&e);
                if a.get_checksum && e.kind == 'f' {
                    let bytes = match data {
                        Some(d) => d,
                        None => fileattrs::read_opt(ctx, &e.path).await?.unwrap_or_default(),
                    };
                    info.insert("checksum".into(), Value::Str(fileattrs::sha1_hex(&bytes)));
                }
                files.push(Value::Map(info));
            }
        }
        let msg = if skipped.is_empty() {
            "All paths examined"
        } else {
            "Not all paths examined, check warnings for details"
        };
        let matched = files.len() as i64;
        Ok(Query::Done(
            Outcome::ok()
                .with("files", Value::List(files))
                .with_msg(msg)
                .with("matched", Value::Int(matched))
                .with("examined", Value::Int(looked as i64))
                .with("skipped_paths", Value::Map(skipped)),
        ))
    }

    async fn apply(&self, _: (), _: &Ctx) -> Result<Outcome, ModuleError> {
        Ok(Outcome::ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_unit("2d", AGE_UNITS), Some(172800));
        assert_eq!(parse_unit("-1W", AGE_UNITS), Some(-604800));
        assert_eq!(parse_unit("30", AGE_UNITS), Some(30));
        assert_eq!(parse_unit("10k", SIZE_UNITS), Some(10240));
        assert_eq!(parse_unit("x", SIZE_UNITS), None);
        assert_eq!(parse_unit("1q", SIZE_UNITS), None);
    }

    #[test]
    fn name_filters() {
        let f = NameFilter::new(&["*.conf".into(), "a?c".into()], &["bad*".into()], false).unwrap();
        assert!(f.matches("x.conf"));
        assert!(f.matches("abc"));
        assert!(!f.matches("bad.conf"));
        assert!(!f.matches("x.cfg"));
        let all = NameFilter::new(&[], &[], false).unwrap();
        assert!(all.matches(".hidden"));
        // re.match: anchored at the start, not at the end
        let r = NameFilter::new(&["ab".into()], &[], true).unwrap();
        assert!(r.matches("abc"));
        assert!(!r.matches("cab"));
        let g = NameFilter::new(&["[!x]*".into()], &[], false).unwrap();
        assert!(g.matches("a"));
        assert!(!g.matches("xa"));
    }
}
