//! Ansible's Jinja tests (`is defined`, `is version('2.0', '>=')`, `is failed`, `is file` ...).
//!
//! Jinja2's type tests are re-registered with Python's rules (`true is number`, `'abc' is
//! sequence`); Ansible's own tests follow `plugins/test/{core,files,mathstuff}.py`.

use super::convert::{from_jinja, text};
use super::filters::{err, py_regex, A};
use super::filters_data::py_eq;
use crate::value::Value;
use minijinja::value::{Kwargs, Rest, Value as JV, ValueKind};
use minijinja::{Environment, Error};
use std::cmp::Ordering;

macro_rules! t {
    ($env:expr, $f:expr, $($name:expr),+) => {{
        $( $env.add_test($name, $f); $env.add_test(concat!("ansible.builtin.", $name), $f); )+
    }};
}

pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_test("number", |v: JV| {
        matches!(v.kind(), ValueKind::Number | ValueKind::Bool)
    });
    env.add_test("integer", |v: JV| {
        v.kind() == ValueKind::Number && v.is_integer()
    });
    env.add_test("float", |v: JV| {
        v.kind() == ValueKind::Number && !v.is_integer()
    });
    env.add_test("boolean", |v: JV| v.kind() == ValueKind::Bool);
    env.add_test("string", |v: JV| v.kind() == ValueKind::String);
    env.add_test("mapping", |v: JV| v.kind() == ValueKind::Map);
    env.add_test("sequence", |v: JV| {
        matches!(
            v.kind(),
            ValueKind::Seq | ValueKind::String | ValueKind::Map | ValueKind::Bytes
        )
    });
    env.add_test("iterable", |v: JV| {
        matches!(
            v.kind(),
            ValueKind::Seq
                | ValueKind::String
                | ValueKind::Map
                | ValueKind::Iterable
                | ValueKind::Bytes
        )
    });
    t!(
        env,
        |v: JV, p: JV, rest: Rest<JV>, kw: Kwargs| re_test(v, p, rest, kw, "match"),
        "match"
    );
    t!(
        env,
        |v: JV, p: JV, rest: Rest<JV>, kw: Kwargs| re_test(v, p, rest, kw, "search"),
        "search"
    );
    t!(
        env,
        |v: JV, p: JV, rest: Rest<JV>, kw: Kwargs| re_test(v, p, rest, kw, ""),
        "regex"
    );
    t!(
        env,
        |seq: JV, v: JV| -> Result<bool, Error> { Ok(seq_contains(&seq, &v)?) },
        "contains"
    );
    t!(
        env,
        |a: JV, b: JV| -> Result<bool, Error> { subset(&a, &b) },
        "subset",
        "issubset"
    );
    t!(
        env,
        |a: JV, b: JV| -> Result<bool, Error> { subset(&b, &a) },
        "superset",
        "issuperset"
    );
    t!(env, version_test, "version", "version_compare");
    t!(
        env,
        |r: JV| -> Result<bool, Error> { Ok(result_get(&r, "failed", "failed")?.is_true()) },
        "failed",
        "failure"
    );
    t!(
        env,
        |r: JV| -> Result<bool, Error> { Ok(!result_get(&r, "failed", "success")?.is_true()) },
        "succeeded",
        "success",
        "successful"
    );
    t!(
        env,
        |r: JV| -> Result<bool, Error> {
            Ok(result_get(&r, "unreachable", "unreachable")?.is_true())
        },
        "unreachable"
    );
    t!(
        env,
        |r: JV| -> Result<bool, Error> {
            Ok(!result_get(&r, "unreachable", "reachable")?.is_true())
        },
        "reachable"
    );
    t!(
        env,
        |r: JV| -> Result<bool, Error> { Ok(result_get(&r, "skipped", "skipped")?.is_true()) },
        "skipped",
        "skip"
    );
    t!(env, changed, "changed", "change");
    t!(
        env,
        |r: JV| -> Result<bool, Error> {
            let f = r.get_attr("finished")?;
            Ok(if f.is_undefined() {
                true
            } else {
                py_eq(&from_jinja(&f)?, &Value::Int(1))
            })
        },
        "finished"
    );
    t!(
        env,
        |r: JV| -> Result<bool, Error> {
            let f = r.get_attr("started")?;
            Ok(!f.is_undefined() && py_eq(&from_jinja(&f)?, &Value::Int(1)))
        },
        "started"
    );
    t!(
        env,
        |v: JV, rest: Rest<JV>, kw: Kwargs| -> bool {
            let a = A::new(rest, kw);
            if a.flag(0, "convert_bool", false) {
                truthy_bool(&v)
            } else {
                v.is_true()
            }
        },
        "truthy"
    );
    t!(
        env,
        |v: JV, rest: Rest<JV>, kw: Kwargs| -> bool {
            let a = A::new(rest, kw);
            !(if a.flag(0, "convert_bool", false) {
                truthy_bool(&v)
            } else {
                v.is_true()
            })
        },
        "falsy"
    );
    t!(
        env,
        |v: JV| -> Result<bool, Error> { Ok(v.try_iter()?.all(|x| x.is_true())) },
        "all"
    );
    t!(
        env,
        |v: JV| -> Result<bool, Error> { Ok(v.try_iter()?.any(|x| x.is_true())) },
        "any"
    );
    t!(
        env,
        |v: JV| -> bool {
            v.kind() == ValueKind::Number && f64::try_from(v).map(f64::is_nan).unwrap_or(false)
        },
        "nan",
        "isnan"
    );
    t!(env, |_v: JV| false, "vault_encrypted");
    t!(
        env,
        |p: JV| path_test(&p, |p| std::fs::metadata(p).is_ok_and(|m| m.is_dir())),
        "directory",
        "is_dir"
    );
    t!(
        env,
        |p: JV| path_test(&p, |p| std::fs::metadata(p).is_ok_and(|m| m.is_file())),
        "file",
        "is_file"
    );
    t!(
        env,
        |p: JV| path_test(&p, |p| std::fs::symlink_metadata(p)
            .is_ok_and(|m| m.file_type().is_symlink())),
        "link",
        "is_link"
    );
    t!(
        env,
        |p: JV| path_test(&p, |p| std::fs::metadata(p).is_ok()),
        "exists"
    );
    t!(
        env,
        |p: JV| path_test(&p, |p| std::fs::symlink_metadata(p).is_ok()),
        "link_exists"
    );
    t!(
        env,
        |p: JV| path_test(&p, |p| p.starts_with('/')),
        "abs",
        "is_abs"
    );
    t!(env, |p: JV| path_test(&p, is_mount), "mount", "is_mount");
    t!(
        env,
        |a: JV, b: JV| -> Result<bool, Error> {
            let (a, b) = (text(&a)?, text(&b)?);
            Ok(match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            })
        },
        "same_file",
        "is_same_file"
    );
}

fn path_test(p: &JV, f: impl Fn(&str) -> bool) -> Result<bool, Error> {
    Ok(f(&super::filters::expanduser_noop(&text(p)?)))
}

fn is_mount(p: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return false;
    };
    if m.file_type().is_symlink() {
        return false;
    }
    let parent = std::path::Path::new(p).join("..");
    match std::fs::metadata(parent) {
        Ok(pm) => pm.dev() != m.dev() || pm.ino() == m.ino(),
        Err(_) => false,
    }
}

fn truthy_bool(v: &JV) -> bool {
    match v.kind() {
        ValueKind::String => matches!(
            v.as_str().unwrap_or_default().to_lowercase().as_str(),
            "y" | "yes" | "on" | "1" | "true" | "t"
        ),
        ValueKind::Number => f64::try_from(v.clone()).map(|f| f == 1.0).unwrap_or(false),
        _ => v.is_true(),
    }
}

fn re_test(v: JV, p: JV, rest: Rest<JV>, kw: Kwargs, kind: &str) -> Result<bool, Error> {
    let a = A::new(rest, kw);
    let s = text(&v)?;
    let pat = text(&p)?;
    let re = py_regex(
        &pat,
        a.flag(0, "ignorecase", false),
        a.flag(1, "multiline", false),
    )?;
    let kind = if kind.is_empty() {
        a.string(2, "match_type")?
            .unwrap_or_else(|| "search".into())
    } else {
        kind.to_string()
    };
    match kind.as_str() {
        "search" => re.is_match(&s).map_err(|e| err(e.to_string())),
        "match" => Ok(re
            .find(&s)
            .map_err(|e| err(e.to_string()))?
            .is_some_and(|m| m.start() == 0)
            || py_regex(
                &format!("\\A(?:{pat})"),
                a.flag(0, "ignorecase", false),
                a.flag(1, "multiline", false),
            )?
            .is_match(&s)
            .unwrap_or(false)),
        "fullmatch" => py_regex(
            &format!("\\A(?:{pat})\\z"),
            a.flag(0, "ignorecase", false),
            a.flag(1, "multiline", false),
        )?
        .is_match(&s)
        .map_err(|e| err(e.to_string())),
        other => Err(err(format!("regex: unknown match_type {other}"))),
    }
}

fn seq_contains(seq: &JV, v: &JV) -> Result<bool, Error> {
    let needle = from_jinja(v)?;
    Ok(match from_jinja(seq)? {
        Value::List(l) => l.iter().any(|x| py_eq(x, &needle)),
        Value::Map(m) => matches!(&needle, Value::Str(k) if m.contains_key(k)),
        Value::Str(s) => matches!(&needle, Value::Str(n) if s.contains(n.as_str())),
        _ => false,
    })
}

fn subset(a: &JV, b: &JV) -> Result<bool, Error> {
    let b = from_jinja(b)?;
    let bl = match &b {
        Value::List(l) => l.clone(),
        Value::Map(m) => m.keys().map(|k| Value::Str(k.clone())).collect(),
        _ => return Err(err("subset requires lists")),
    };
    Ok(match from_jinja(a)? {
        Value::List(l) => l.iter().all(|x| bl.iter().any(|y| py_eq(x, y))),
        Value::Map(m) => m
            .keys()
            .all(|k| bl.iter().any(|y| py_eq(&Value::Str(k.clone()), y))),
        _ => return Err(err("subset requires lists")),
    })
}

fn result_get(r: &JV, key: &str, test: &str) -> Result<JV, Error> {
    if r.kind() != ValueKind::Map {
        return Err(err(format!("The '{test}' test expects a dictionary")));
    }
    let v = r.get_attr(key)?;
    Ok(if v.is_undefined() { JV::from(false) } else { v })
}

fn changed(r: JV) -> Result<bool, Error> {
    if r.kind() != ValueKind::Map {
        return Err(err("The 'changed' test expects a dictionary"));
    }
    let c = r.get_attr("changed")?;
    if !c.is_undefined() {
        return Ok(c.is_true());
    }
    let results = r.get_attr("results")?;
    if results.kind() == ValueKind::Seq {
        for res in results.try_iter()? {
            if res.kind() == ValueKind::Map && res.get_attr("changed")?.is_true() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Num(u64),
    Str(String),
}

/// distutils LooseVersion components.
fn loose(v: &str) -> Vec<Part> {
    let re = regex::Regex::new(r"(?x)(\d+|[a-z]+|\.)").ok();
    let mut out = vec![];
    let mut last = 0;
    let mut pieces: Vec<&str> = vec![];
    if let Some(re) = re {
        for m in re.find_iter(v) {
            if m.start() > last {
                pieces.push(&v[last..m.start()]);
            }
            pieces.push(m.as_str());
            last = m.end();
        }
    }
    if last < v.len() {
        pieces.push(&v[last..]);
    }
    for p in pieces {
        if p.is_empty() || p == "." {
            continue;
        }
        match p.parse::<u64>() {
            Ok(n) => out.push(Part::Num(n)),
            Err(_) => out.push(Part::Str(p.to_string())),
        }
    }
    out
}

fn cmp_loose(a: &[Part], b: &[Part]) -> Result<Ordering, Error> {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Part::Num(p), Part::Num(q)) => p.cmp(q),
            (Part::Str(p), Part::Str(q)) => p.cmp(q),
            _ => return Err(err(
                "Version comparison failed: '<' not supported between instances of 'str' and 'int'",
            )),
        };
        if o != Ordering::Equal {
            return Ok(o);
        }
    }
    Ok(a.len().cmp(&b.len()))
}

/// StrictVersion: (major, minor, patch, prerelease).
fn strict(v: &str) -> Result<((u64, u64, u64), Option<(String, u64)>), Error> {
    let re = regex::Regex::new(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:([ab])(\d+))?$")
        .map_err(|e| err(e.to_string()))?;
    let c = re.captures(v).ok_or_else(|| {
        err(format!(
            "Version comparison failed: invalid version number '{v}'"
        ))
    })?;
    let n = |i: usize| {
        c.get(i)
            .and_then(|m| m.as_str().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let pre = c.get(4).map(|m| (m.as_str().to_string(), n(5)));
    Ok(((n(1), n(2), n(3)), pre))
}

fn cmp_strict(a: &str, b: &str) -> Result<Ordering, Error> {
    let (x, px) = strict(a)?;
    let (y, py) = strict(b)?;
    Ok(x.cmp(&y).then_with(|| match (px, py) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(p), Some(q)) => p.cmp(&q),
    }))
}

/// Semantic version (semver.org) ordering.
fn cmp_semver(a: &str, b: &str) -> Result<Ordering, Error> {
    let p = |s: &str| {
        semver::Version::parse(s).map_err(|e| err(format!("Version comparison failed: {s}: {e}")))
    };
    Ok(p(a)?.cmp_precedence(&p(b)?))
}

fn version_test(v: JV, other: JV, rest: Rest<JV>, kw: Kwargs) -> Result<bool, Error> {
    let a = A::new(rest, kw);
    let op = a.string(0, "operator")?.unwrap_or_else(|| "eq".into());
    let strict_flag = a.get(1, "strict").filter(|s| !s.is_none());
    let vtype = a.string(2, "version_type")?;
    if strict_flag.is_some() && vtype.is_some() {
        return Err(err("Cannot specify both 'strict' and 'version_type'"));
    }
    let value = text(&v)?;
    let version = text(&other)?;
    if value.is_empty() {
        return Err(err("Input version value cannot be empty"));
    }
    if version.is_empty() {
        return Err(err("Version parameter to compare against cannot be empty"));
    }
    let ord = if strict_flag.is_some_and(|s| s.is_true()) {
        cmp_strict(&value, &version)?
    } else {
        match vtype.as_deref() {
            None | Some("loose") => cmp_loose(&loose(&value), &loose(&version))?,
            Some("strict") => cmp_strict(&value, &version)?,
            Some("semver") | Some("semantic") => cmp_semver(&value, &version)?,
            Some("pep440") => cmp_loose(&loose(&value), &loose(&version))?,
            Some(o) => return Err(err(format!("Invalid version type ({o}). Must be one of loose, pep440, semantic, semver, strict"))),
        }
    };
    Ok(match op.as_str() {
        "==" | "=" | "eq" => ord == Ordering::Equal,
        "<" | "lt" => ord == Ordering::Less,
        "<=" | "le" => ord != Ordering::Greater,
        ">" | "gt" => ord == Ordering::Greater,
        ">=" | "ge" => ord != Ordering::Less,
        "!=" | "<>" | "ne" => ord != Ordering::Equal,
        o => return Err(err(format!("Invalid operator type ({o})"))),
    })
}
