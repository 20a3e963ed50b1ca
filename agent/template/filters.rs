//! Ansible's scalar filters: defaults and casts, strings, regular expressions, encodings,
//! hashes, paths, dates and sizes. Argument names and defaults follow
//! `ansible/plugins/filter/core.py` and Jinja2, so keyword calls from real playbooks work.
//!
//! Every filter takes `(value, *args, **kwargs)` through [`A`] because Ansible's users pass the same
//! argument either way (`default('x', true)` and `default('x', boolean=true)`).

use super::context::current;
use super::convert::text;
use minijinja::value::{Kwargs, Rest, Value as JV, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

pub(crate) fn err(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Python-style arguments: positional, then keywords.
pub(crate) struct A {
    pos: Vec<JV>,
    kw: Vec<(String, JV)>,
}

impl A {
    pub fn new(rest: Rest<JV>, kwargs: Kwargs) -> A {
        let names: Vec<String> = kwargs.args().map(String::from).collect();
        let kw = names
            .into_iter()
            .map(|k| {
                let v: JV = kwargs.get(&k).unwrap_or_default();
                (k, v)
            })
            .collect();
        A { pos: rest.0, kw }
    }
    pub fn get(&self, idx: usize, name: &str) -> Option<JV> {
        self.kw
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| self.pos.get(idx).cloned())
    }
    pub fn flag(&self, idx: usize, name: &str, default: bool) -> bool {
        self.get(idx, name).map(|v| v.is_true()).unwrap_or(default)
    }
    pub fn string(&self, idx: usize, name: &str) -> Result<Option<String>, Error> {
        match self.get(idx, name) {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => text(&v).map(Some),
        }
    }
    pub fn positional(&self) -> &[JV] {
        &self.pos
    }
    pub fn kwargs(&self) -> &[(String, JV)] {
        &self.kw
    }
}

/// Register `f` as `name` and `ansible.builtin.name`.
macro_rules! reg {
    ($env:expr, $name:expr, $f:expr) => {{
        $env.add_filter($name, $f);
        $env.add_filter(concat!("ansible.builtin.", $name), $f);
    }};
}
pub(crate) use reg;

pub(crate) fn register(env: &mut Environment<'static>) {
    // Jinja2 builtins whose Python behaviour differs from minijinja's
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("int", int);
    env.add_filter("float", float);
    env.add_filter("string", string);
    env.add_filter("join", join);
    env.add_filter("lower", |v: JV| -> Result<String, Error> {
        Ok(text(&v)?.to_lowercase())
    });
    env.add_filter("upper", |v: JV| -> Result<String, Error> {
        Ok(text(&v)?.to_uppercase())
    });
    env.add_filter("replace", replace);
    env.add_filter("round", round);
    env.add_filter("indent", indent);
    env.add_filter(
        "center",
        |v: JV, rest: Rest<JV>, kw: Kwargs| -> Result<String, Error> {
            let a = A::new(rest, kw);
            let width = a
                .get(0, "width")
                .and_then(|w| w.as_i64())
                .unwrap_or(80)
                .max(0) as usize;
            Ok(py_center(&text(&v)?, width))
        },
    );
    env.add_filter("truncate", truncate);
    env.add_filter("wordcount", |v: JV| -> Result<usize, Error> {
        let re = regex::Regex::new(r"\w+").map_err(|e| err(e.to_string()))?;
        Ok(re.find_iter(&text(&v)?).count())
    });
    env.add_filter("filesizeformat", filesizeformat);
    env.add_filter("striptags", striptags);
    reg!(env, "random", random);
    env.add_filter("mandatory", mandatory);
    env.add_filter("ansible.builtin.mandatory", mandatory);
    reg!(env, "bool", to_bool);
    reg!(env, "ternary", ternary);
    reg!(env, "type_debug", type_debug);
    reg!(env, "split", split);
    reg!(env, "quote", quote);
    reg!(env, "regex_replace", regex_replace);
    reg!(env, "regex_search", regex_search);
    reg!(env, "regex_findall", regex_findall);
    reg!(env, "regex_escape", regex_escape);
    reg!(env, "b64encode", b64encode);
    reg!(env, "b64decode", b64decode);
    reg!(env, "hash", hash);
    reg!(env, "md5", |v: JV| -> Result<String, Error> {
        digest("md5", &text(&v)?)
    });
    reg!(env, "sha1", |v: JV| -> Result<String, Error> {
        digest("sha1", &text(&v)?)
    });
    reg!(env, "checksum", |v: JV| -> Result<String, Error> {
        digest("sha1", &text(&v)?)
    });
    reg!(env, "basename", |v: JV| -> Result<String, Error> {
        Ok(basename(&text(&v)?).to_string())
    });
    reg!(env, "dirname", |v: JV| -> Result<String, Error> {
        Ok(dirname(&text(&v)?))
    });
    reg!(env, "expanduser", |v: JV| -> Result<String, Error> {
        Ok(expanduser(&text(&v)?))
    });
    reg!(env, "expandvars", expandvars);
    reg!(env, "realpath", |v: JV| -> Result<String, Error> {
        Ok(realpath(&text(&v)?))
    });
    reg!(env, "normpath", |v: JV| -> Result<String, Error> {
        Ok(normpath(&text(&v)?))
    });
    reg!(env, "splitext", |v: JV| -> Result<JV, Error> {
        let s = text(&v)?;
        let (a, b) = splitext(&s);
        Ok(super::convert::tuple(vec![JV::from(a), JV::from(b)]))
    });
    reg!(env, "path_join", path_join);
    reg!(env, "urlsplit", urlsplit);
    reg!(env, "strftime", strftime);
    reg!(env, "to_datetime", to_datetime);
    reg!(env, "human_readable", human_readable);
    reg!(env, "human_to_bytes", human_to_bytes);
    reg!(env, "comment", comment);
    reg!(env, "fileglob", |v: JV| -> Result<JV, Error> {
        let pat = text(&v)?;
        let mut out = vec![];
        if let Ok(paths) = glob::glob(&pat) {
            for p in paths.flatten() {
                if p.is_file() {
                    out.push(JV::from(p.display().to_string()));
                }
            }
        }
        Ok(JV::from(out))
    });
}

/// Jinja2 `default(value, default_value='', boolean=False)`.
fn default(v: JV, rest: Rest<JV>, kw: Kwargs) -> JV {
    let a = A::new(rest, kw);
    let dv = a.get(0, "default_value").unwrap_or_else(|| JV::from(""));
    if v.is_undefined() || (a.flag(1, "boolean", false) && !v.is_true()) {
        dv
    } else {
        v
    }
}

/// Python `int(s, base)` on text: whitespace, sign, underscores, base prefixes.
pub(crate) fn py_int_str(s: &str, base: u32) -> Option<i64> {
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = t.to_ascii_lowercase();
    let (base, digits) = match (base, lower.get(..2)) {
        (16 | 0, Some("0x")) => (16, &t[2..]),
        (8 | 0, Some("0o")) => (8, &t[2..]),
        (2 | 0, Some("0b")) => (2, &t[2..]),
        (0, _) => (10, t),
        (b, _) => (b, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if !clean.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    let n = i64::from_str_radix(&clean, base).ok()?;
    Some(if neg { -n } else { n })
}

/// Python `float(s)`.
pub(crate) fn py_float_str(s: &str) -> Option<f64> {
    let t = s.trim().replace('_', "");
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" | "+nan" | "-nan" => return Some(f64::NAN),
        _ => {}
    }
    if t.is_empty() || t.chars().any(|c| c.is_alphabetic() && c != 'e' && c != 'E') {
        return None;
    }
    t.parse::<f64>().ok()
}

fn as_f64(v: &JV) -> Option<f64> {
    match v.kind() {
        ValueKind::Number => f64::try_from(v.clone()).ok(),
        ValueKind::Bool => Some(if v.is_true() { 1.0 } else { 0.0 }),
        ValueKind::String => py_float_str(v.as_str().unwrap_or_default()),
        _ => None,
    }
}

/// Jinja2 `int(value, default=0, base=10)`.
fn int(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let default = a.get(0, "default").unwrap_or_else(|| JV::from(0));
    let base = a.get(1, "base").and_then(|b| b.as_i64()).unwrap_or(10) as u32;
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "int of an undefined value",
        ));
    }
    let r = match v.kind() {
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            py_int_str(s, base).or_else(|| {
                py_float_str(s)
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            })
        }
        ValueKind::Bool => Some(v.is_true() as i64),
        ValueKind::Number => {
            if v.is_integer() {
                v.as_i64()
            } else {
                f64::try_from(v.clone())
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i64)
            }
        }
        _ => None,
    };
    Ok(r.map(JV::from).unwrap_or(default))
}

/// Jinja2 `float(value, default=0.0)`.
fn float(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "float of an undefined value",
        ));
    }
    Ok(as_f64(&v)
        .map(JV::from)
        .unwrap_or_else(|| a.get(0, "default").unwrap_or_else(|| JV::from(0.0))))
}

/// Native text (see `Taint::native_len`): Ansible's `string` is a STRING_TYPE_FILTER.
fn string(v: JV) -> Result<JV, Error> {
    Ok(JV::from_safe_string(text(&v)?))
}

/// Jinja2 `join(value, d='', attribute=None)` with Python `str()` of items.
fn join(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let sep = a.string(0, "d")?.unwrap_or_default();
    let attr = a.string(1, "attribute")?;
    if let Some(s) = v.as_str() {
        return Ok(s
            .chars()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(&sep));
    }
    let mut parts = vec![];
    for item in v.try_iter()? {
        let item = match &attr {
            Some(at) => item.get_attr(at)?,
            None => item,
        };
        parts.push(text(&item)?);
    }
    Ok(parts.join(&sep))
}

/// Jinja2 `replace(s, old, new, count=None)`.
fn replace(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let s = text(&v)?;
    let old = a.string(0, "old")?.unwrap_or_default();
    let new = a.string(1, "new")?.unwrap_or_default();
    match a.get(2, "count").and_then(|c| c.as_i64()) {
        Some(n) if n >= 0 => Ok(s.replacen(&old, &new, n as usize)),
        _ => Ok(s.replace(&old, &new)),
    }
}

/// Jinja2 `round(value, precision=0, method='common')`: always a float.
fn round(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let prec = a.get(0, "precision").and_then(|p| p.as_i64()).unwrap_or(0) as i32;
    let method = a.string(1, "method")?.unwrap_or_else(|| "common".into());
    if v.is_integer() && method == "common" {
        return Ok(v);
    }
    let x = as_f64(&v).ok_or_else(|| err("round: not a number"))?;
    let m = 10f64.powi(prec);
    let r = match method.as_str() {
        "common" => (x * m).round() / m,
        "ceil" => (x * m).ceil() / m,
        "floor" => (x * m).floor() / m,
        _ => return Err(err("method must be common, ceil or floor")),
    };
    Ok(JV::from(r))
}

/// Ansible `mandatory(a, msg=None)`.
fn mandatory(state: &State, v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    if !v.is_undefined() {
        return Ok(v);
    }
    let a = A::new(rest, kw);
    let msg = match a.string(0, "msg")? {
        Some(m) => m,
        None => {
            let name = current(state)
                .ok()
                .and_then(|c| c.run.last_undefined_name());
            match name {
                Some(n) => format!("Mandatory variable '{n}' not defined."),
                None => "Mandatory variable not defined.".to_string(),
            }
        }
    };
    Err(err(msg))
}

/// Ansible `bool`: True for yes/on/1/true (any case) and 1; None stays None.
fn to_bool(v: JV) -> JV {
    match v.kind() {
        ValueKind::None => JV::from(()),
        ValueKind::Bool => v,
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default().to_lowercase();
            JV::from(matches!(s.as_str(), "yes" | "on" | "1" | "true"))
        }
        ValueKind::Number => JV::from(as_f64(&v) == Some(1.0)),
        _ => JV::from(false),
    }
}

fn ternary(v: JV, rest: Rest<JV>, kw: Kwargs) -> JV {
    let a = A::new(rest, kw);
    let none_val = a.get(2, "none_val").filter(|n| !n.is_none());
    if v.is_none() {
        if let Some(n) = none_val {
            return n;
        }
    }
    if v.is_true() {
        a.get(0, "true_val").unwrap_or_default()
    } else {
        a.get(1, "false_val").unwrap_or_default()
    }
}

pub(super) fn type_debug(v: JV) -> &'static str {
    match v.kind() {
        ValueKind::Undefined => "AnsibleUndefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq | ValueKind::Iterable => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

/// Python `str.split(sep=None, maxsplit=-1)`.
fn split(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let s = text(&v)?;
    let sep = a.string(0, "sep")?;
    let max = a.get(1, "maxsplit").and_then(|m| m.as_i64()).unwrap_or(-1);
    let parts: Vec<String> = match sep {
        None => {
            let mut out: Vec<String> = vec![];
            let mut rest = s.trim_start();
            while !rest.is_empty() {
                if max >= 0 && out.len() as i64 == max {
                    out.push(rest.trim_end().to_string());
                    break;
                }
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                rest = rest[end..].trim_start();
            }
            out
        }
        Some(sep) if sep.is_empty() => return Err(err("empty separator")),
        Some(sep) => {
            if max < 0 {
                s.split(sep.as_str()).map(String::from).collect()
            } else {
                s.splitn(max as usize + 1, sep.as_str())
                    .map(String::from)
                    .collect()
            }
        }
    };
    Ok(JV::from(
        parts.into_iter().map(JV::from).collect::<Vec<_>>(),
    ))
}

/// Python `shlex.quote`.
pub(crate) fn shell_quote(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

fn quote(v: JV) -> Result<String, Error> {
    if v.is_none() {
        return Ok(shell_quote(""));
    }
    Ok(shell_quote(&text(&v)?))
}

/// Compile a Python `re` pattern.
pub(crate) fn py_regex(
    pattern: &str,
    ignorecase: bool,
    multiline: bool,
) -> Result<fancy_regex::Regex, Error> {
    let mut p = String::new();
    if ignorecase || multiline {
        p.push_str("(?");
        if ignorecase {
            p.push('i');
        }
        if multiline {
            p.push('m');
        }
        p.push(')');
    }
    // Python's \Z is the end of text (\z here)
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('Z') => p.push_str("\\z"),
                Some(n) => {
                    p.push('\\');
                    p.push(n);
                }
                None => p.push('\\'),
            }
        } else {
            p.push(c);
        }
    }
    fancy_regex::Regex::new(&p).map_err(|e| err(format!("bad regular expression {pattern:?}: {e}")))
}

/// All matches as Python's `re.finditer` finds them (3.7+): an empty match is allowed right after
/// a non-empty one, but never twice at the same position.
pub(crate) fn py_matches<'t>(
    re: &fancy_regex::Regex,
    text: &'t str,
) -> Result<Vec<fancy_regex::Captures<'t>>, Error> {
    let mut out = vec![];
    let mut pos = 0;
    let mut empty_at: Option<usize> = None;
    while pos <= text.len() {
        let Some(caps) = re
            .captures_from_pos(text, pos)
            .map_err(|e| err(e.to_string()))?
        else {
            break;
        };
        let Some(m) = caps.get(0) else { break };
        let (start, end) = (m.start(), m.end());
        if start == end && empty_at == Some(start) {
            // step over one character and search again
            match text[pos..].chars().next() {
                Some(c) => pos += c.len_utf8(),
                None => break,
            }
            continue;
        }
        out.push(caps);
        if start == end {
            empty_at = Some(start);
            pos = end;
        } else {
            empty_at = None;
            pos = end;
        }
    }
    Ok(out)
}

/// Expand a Python `re.sub` replacement (`\1`, `\g<name>`, `\n`) for one match.
fn expand_py(repl: &str, caps: &fancy_regex::Captures) -> Result<String, Error> {
    let mut out = String::new();
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(d) if d.is_ascii_digit() => {
                let mut num = d.to_string();
                if let Some(d2) = chars.peek().filter(|d2| d2.is_ascii_digit()) {
                    num.push(*d2);
                    chars.next();
                }
                let n: usize = num.parse().unwrap_or(0);
                if n >= caps.len() {
                    return Err(err(format!("invalid group reference {n}")));
                }
                out.push_str(caps.get(n).map(|m| m.as_str()).unwrap_or(""));
            }
            Some('g') => {
                if chars.next() != Some('<') {
                    return Err(err("missing < in \\g"));
                }
                let mut name = String::new();
                for c in chars.by_ref() {
                    if c == '>' {
                        break;
                    }
                    name.push(c);
                }
                let m = match name.parse::<usize>() {
                    Ok(n) => caps.get(n),
                    Err(_) => caps.name(&name),
                };
                out.push_str(m.map(|m| m.as_str()).unwrap_or(""));
            }
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => return Err(err("bad escape (end of pattern)")),
        }
    }
    Ok(out)
}

fn regex_replace(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let value = if v.is_undefined() {
        String::new()
    } else {
        text(&v)?
    };
    let pattern = a.string(0, "pattern")?.unwrap_or_default();
    let repl = a.string(1, "replacement")?.unwrap_or_default();
    let re = py_regex(
        &pattern,
        a.flag(2, "ignorecase", false),
        a.flag(3, "multiline", false),
    )?;
    let count = a.get(4, "count").and_then(|c| c.as_i64()).unwrap_or(0);
    let mandatory = a
        .get(5, "mandatory_count")
        .and_then(|c| c.as_i64())
        .unwrap_or(0);
    let mut out = String::new();
    let mut last = 0;
    let mut n = 0i64;
    for caps in py_matches(&re, &value)? {
        let Some(m) = caps.get(0) else { continue };
        if count > 0 && n >= count {
            break;
        }
        out.push_str(&value[last..m.start()]);
        out.push_str(&expand_py(&repl, &caps)?);
        last = m.end();
        n += 1;
    }
    out.push_str(&value[last..]);
    if mandatory != 0 && mandatory != n {
        return Err(err(format!(
            "'{pattern}' should match {mandatory} times, but matches {n} times in '{value}'"
        )));
    }
    Ok(out)
}

fn regex_search(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let value = text(&v)?;
    let pattern = a.string(0, "regex")?.unwrap_or_default();
    let ignorecase = a
        .kwargs()
        .iter()
        .any(|(k, v)| k == "ignorecase" && v.is_true());
    let multiline = a
        .kwargs()
        .iter()
        .any(|(k, v)| k == "multiline" && v.is_true());
    let re = py_regex(&pattern, ignorecase, multiline)?;
    let mut groups = vec![];
    for g in a.positional().iter().skip(1) {
        let g = text(g)?;
        if let Some(name) = g.strip_prefix("\\g<").and_then(|r| r.strip_suffix('>')) {
            groups.push(name.to_string());
        } else if let Some(num) = g.strip_prefix('\\') {
            groups.push(num.to_string());
        } else {
            return Err(err("Unknown argument"));
        }
    }
    let Some(caps) = re.captures(&value).map_err(|e| err(e.to_string()))? else {
        return Ok(JV::from(()));
    };
    if groups.is_empty() {
        return Ok(caps
            .get(0)
            .map(|m| JV::from(m.as_str()))
            .unwrap_or_default());
    }
    let mut out = vec![];
    for g in groups {
        let m = match g.parse::<usize>() {
            Ok(n) => caps.get(n),
            Err(_) => caps.name(&g),
        };
        out.push(m.map(|m| JV::from(m.as_str())).unwrap_or(JV::from(())));
    }
    Ok(JV::from(out))
}

fn regex_findall(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let value = text(&v)?;
    let pattern = a.string(0, "regex")?.unwrap_or_default();
    let re = py_regex(
        &pattern,
        a.flag(2, "ignorecase", false),
        a.flag(1, "multiline", false),
    )?;
    let mut out = vec![];
    for caps in py_matches(&re, &value)? {
        let g = |i: usize| JV::from(caps.get(i).map(|m| m.as_str()).unwrap_or(""));
        match caps.len() {
            1 => out.push(g(0)),
            2 => out.push(g(1)),
            n => out.push(super::convert::tuple((1..n).map(g).collect::<Vec<_>>())),
        }
    }
    Ok(JV::from(out))
}

/// Python `re.escape` (3.7+: only regex metacharacters and whitespace).
fn regex_escape(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let s = text(&v)?;
    match a.string(0, "re_type")?.as_deref().unwrap_or("python") {
        "python" => Ok(s
            .chars()
            .map(|c| {
                if "()[]{}?*+-|^$\\.&~# \t\n\r\x0b\x0c".contains(c) {
                    format!("\\{c}")
                } else {
                    c.to_string()
                }
            })
            .collect()),
        "posix_basic" => Ok(s
            .chars()
            .map(|c| {
                if "].[^$*\\".contains(c) {
                    format!("\\{c}")
                } else {
                    c.to_string()
                }
            })
            .collect()),
        other => Err(err(format!("Invalid regex type ({other})"))),
    }
}

fn b64encode(v: JV) -> Result<String, Error> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::STANDARD.encode(text(&v)?.as_bytes()))
}

fn b64decode(v: JV) -> Result<String, Error> {
    use base64::Engine;
    let s = text(&v)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim().as_bytes())
        .map_err(|e| err(format!("b64decode: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub(crate) fn digest(algo: &str, data: &str) -> Result<String, Error> {
    use sha2::Digest;
    let b = data.as_bytes();
    Ok(match algo {
        "md5" => hex::encode(md5::Md5::digest(b)),
        "sha1" => hex::encode(sha1::Sha1::digest(b)),
        "sha224" => hex::encode(sha2::Sha224::digest(b)),
        "sha256" => hex::encode(sha2::Sha256::digest(b)),
        "sha384" => hex::encode(sha2::Sha384::digest(b)),
        "sha512" => hex::encode(sha2::Sha512::digest(b)),
        other => return Err(err(format!("unsupported hash type {other}"))),
    })
}

fn hash(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let algo = a.string(0, "hashtype")?.unwrap_or_else(|| "sha1".into());
    digest(&algo, &text(&v)?)
}

/// Python `os.path.basename`.
pub(crate) fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Python `os.path.dirname`.
pub(crate) fn dirname(p: &str) -> String {
    let i = p.rfind('/').map(|i| i + 1).unwrap_or(0);
    let head = &p[..i];
    if !head.is_empty() && !head.chars().all(|c| c == '/') {
        head.trim_end_matches('/').to_string()
    } else {
        head.to_string()
    }
}

pub(crate) fn expanduser(p: &str) -> String {
    if p == "~" || p.starts_with("~/") {
        if let Ok(home) = std::env::var("HOME") {
            let home = if home == "/" {
                ""
            } else {
                home.trim_end_matches('/')
            };
            let out = format!("{home}{}", &p[1..]);
            return if out.is_empty() { "/".into() } else { out };
        }
    }
    p.to_string()
}

fn expandvars(v: JV) -> Result<String, Error> {
    let s = text(&v)?;
    let re = regex::Regex::new(r"\$(\w+|\{[^}]*\})").map_err(|e| err(e.to_string()))?;
    Ok(re
        .replace_all(&s, |c: &regex::Captures| {
            let name = c[1].trim_start_matches('{').trim_end_matches('}');
            std::env::var(name).unwrap_or_else(|_| c[0].to_string())
        })
        .into_owned())
}

/// Python `os.path.normpath` (POSIX).
pub(crate) fn normpath(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let initial = if p.starts_with("//") && !p.starts_with("///") {
        2
    } else if p.starts_with('/') {
        1
    } else {
        0
    };
    let mut comps: Vec<&str> = vec![];
    for c in p.split('/') {
        if c.is_empty() || c == "." {
            continue;
        }
        if c != ".." || (initial == 0 && comps.is_empty()) || comps.last() == Some(&"..") {
            comps.push(c);
        } else if !comps.is_empty() {
            comps.pop();
        }
    }
    let out = format!("{}{}", "/".repeat(initial), comps.join("/"));
    if out.is_empty() {
        ".".into()
    } else {
        out
    }
}

fn realpath(p: &str) -> String {
    match std::fs::canonicalize(p) {
        Ok(c) => c.display().to_string(),
        Err(_) => {
            let abs = if p.starts_with('/') {
                p.to_string()
            } else {
                let cwd = std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                format!("{cwd}/{p}")
            };
            normpath(&abs)
        }
    }
}

fn splitext(p: &str) -> (String, String) {
    let base_start = p.rfind('/').map(|i| i + 1).unwrap_or(0);
    let base = &p[base_start..];
    let lead = base.len() - base.trim_start_matches('.').len();
    match base[lead..].rfind('.') {
        Some(i) => {
            let at = base_start + lead + i;
            (p[..at].to_string(), p[at..].to_string())
        }
        None => (p.to_string(), String::new()),
    }
}

fn path_join(v: JV) -> Result<String, Error> {
    let parts: Vec<String> = match v.as_str() {
        Some(s) => vec![s.to_string()],
        None => v.try_iter()?.map(|x| text(&x)).collect::<Result<_, _>>()?,
    };
    let mut out = String::new();
    for p in parts {
        if p.starts_with('/') {
            out = p;
        } else if out.is_empty() || out.ends_with('/') {
            out.push_str(&p);
        } else {
            out.push('/');
            out.push_str(&p);
        }
    }
    Ok(out)
}

/// Python `urllib.parse.urlsplit`, as Ansible's `urlsplit(value, query='')`.
fn urlsplit(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let s = text(&v)?;
    let re = regex::Regex::new(
        r"^(?:([A-Za-z][A-Za-z0-9+.-]*):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$",
    )
    .map_err(|e| err(e.to_string()))?;
    let c = re
        .captures(&s)
        .ok_or_else(|| err("urlsplit: cannot parse URL"))?;
    let g = |i: usize| c.get(i).map(|m| m.as_str().to_string()).unwrap_or_default();
    let netloc = g(2);
    let (userinfo, hostport) = match netloc.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, netloc.clone()),
    };
    let (username, password) = match &userinfo {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (JV::from(a), JV::from(b)),
            None => (JV::from(u.as_str()), JV::from(())),
        },
        None => (JV::from(()), JV::from(())),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').unwrap_or((rest, ""));
        (h.to_string(), after.strip_prefix(':').map(String::from))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (hostport.clone(), None),
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => JV::from(
            p.parse::<i64>()
                .map_err(|_| err(format!("Port could not be cast to integer value as {p:?}")))?,
        ),
        None => JV::from(()),
    };
    let hostname = if host.is_empty() {
        JV::from(())
    } else {
        JV::from(host.to_lowercase())
    };
    let fields: Vec<(&str, JV)> = vec![
        ("fragment", JV::from(g(5))),
        ("hostname", hostname),
        ("netloc", JV::from(netloc)),
        ("password", password),
        ("path", JV::from(g(3))),
        ("port", port),
        ("query", JV::from(g(4))),
        ("scheme", JV::from(g(1).to_lowercase())),
        ("username", username),
    ];
    match a.string(0, "query")?.filter(|q| !q.is_empty()) {
        Some(q) => fields
            .into_iter()
            .find(|(k, _)| *k == q)
            .map(|(_, v)| v)
            .ok_or_else(|| err(format!("urlsplit: unknown URL component: {q}"))),
        None => Ok(JV::from_object(
            fields
                .into_iter()
                .map(|(k, v)| (JV::from(k), v))
                .collect::<indexmap::IndexMap<JV, JV>>(),
        )),
    }
}

/// `strftime(format, second=None, utc=False)` (filter input is the format).
fn strftime(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    use chrono::TimeZone;
    let a = A::new(rest, kw);
    let fmt = text(&v)?;
    let utc = a.flag(1, "utc", false);
    let secs = match a.get(0, "second").filter(|s| !s.is_none()) {
        Some(s) => {
            Some(as_f64(&s).ok_or_else(|| err(format!("Invalid value for epoch value ({s})")))?)
        }
        None => None,
    };
    let out = match (secs, utc) {
        (Some(s), true) => chrono::Utc
            .timestamp_opt(s as i64, 0)
            .single()
            .map(|t| t.format(&fmt).to_string()),
        (Some(s), false) => chrono::Local
            .timestamp_opt(s as i64, 0)
            .single()
            .map(|t| t.format(&fmt).to_string()),
        (None, true) => Some(chrono::Utc::now().format(&fmt).to_string()),
        (None, false) => Some(chrono::Local::now().format(&fmt).to_string()),
    };
    out.ok_or_else(|| err("strftime: time out of range"))
}

/// `to_datetime(string, format="%Y-%m-%d %H:%M:%S")`: kiln returns the normalized text
/// (`YYYY-MM-DD HH:MM:SS`), not a Python datetime object.
fn to_datetime(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let s = text(&v)?;
    let fmt = a
        .string(0, "format")?
        .unwrap_or_else(|| "%Y-%m-%d %H:%M:%S".into());
    let t = chrono::NaiveDateTime::parse_from_str(&s, &fmt)
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(&s, &fmt)
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .map_err(|e| {
            err(format!(
                "time data {s:?} does not match format {fmt:?}: {e}"
            ))
        })?;
    Ok(t.format("%Y-%m-%d %H:%M:%S").to_string())
}

const SIZE_SUFFIXES: [&str; 9] = ["", "K", "M", "G", "T", "P", "E", "Z", "Y"];

/// ansible.module_utils.common.text.formatters.bytes_to_human.
fn human_readable(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let isbits = a.flag(0, "isbits", false);
    let unit = a.string(1, "unit")?;
    let size = as_f64(&v).ok_or_else(|| {
        err(format!(
            "human_readable() can't interpret following string: {v}"
        ))
    })?;
    let (base, unit_name) = if isbits {
        ("bits", "b")
    } else {
        ("Bytes", "B")
    };
    let mut suffix = "";
    let mut limit = 1f64;
    for (i, s) in SIZE_SUFFIXES.iter().enumerate().rev() {
        limit = 1u128.checked_shl(i as u32 * 10).unwrap_or(0) as f64;
        let matches = match &unit {
            Some(u) => {
                u.chars()
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string())
                    .as_deref()
                    == Some(*s)
            }
            None => size >= limit,
        };
        if matches {
            suffix = s;
            break;
        }
    }
    if suffix.is_empty() {
        limit = 1.0;
    }
    let u = if limit != 1.0 {
        format!("{suffix}{unit_name}")
    } else {
        base.to_string()
    };
    Ok(format!("{:.2} {u}", size / limit))
}

/// ansible.module_utils.common.text.formatters.human_to_bytes.
fn human_to_bytes(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let default_unit = a.string(0, "default_unit")?;
    let isbits = a.flag(1, "isbits", false);
    let s = text(&v)?;
    let re =
        regex::Regex::new(r"^\s*(\d*\.?\d*)\s*([A-Za-z]+)?\s*$").map_err(|e| err(e.to_string()))?;
    let c = re.captures(&s).ok_or_else(|| {
        err(format!(
            "human_to_bytes() can't interpret following string: {s}"
        ))
    })?;
    let num: f64 = c[1].parse().map_err(|_| {
        err(format!(
            "human_to_bytes() can't interpret following number: {}",
            &c[1]
        ))
    })?;
    let unit = c.get(2).map(|m| m.as_str().to_string()).or(default_unit);
    let Some(unit) = unit else {
        return Ok(JV::from(num.round() as i64));
    };
    let first = unit
        .chars()
        .next()
        .map(|c| c.to_ascii_uppercase())
        .unwrap_or('B');
    let idx = if first == 'B' {
        0
    } else {
        SIZE_SUFFIXES
            .iter()
            .position(|s| s.starts_with(first) && !s.is_empty())
            .ok_or_else(|| {
                err(format!(
                    "human_to_bytes() failed to convert {s}. Value is not a valid string"
                ))
            })?
    };
    let unit_class = if isbits { 'b' } else { 'B' };
    if unit.len() > 1
        && !unit.ends_with(unit_class)
        && unit.to_lowercase() != "bytes"
        && unit.to_lowercase() != "bits"
    {
        let expected = if isbits { "bit" } else { "byte" };
        return Err(err(format!("human_to_bytes() failed to convert {s}. Value is not a valid string (expect {expected} units)")));
    }
    Ok(JV::from((num * (1u128 << (idx * 10)) as f64).round() as i64))
}

/// `comment(text, style='plain', ...)`: the common `plain` style only.
fn comment(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let style = a.string(0, "style")?.unwrap_or_else(|| "plain".into());
    let (beg, pre, end) = match style.as_str() {
        "plain" => ("", "# ", ""),
        "erlang" => ("", "% ", ""),
        "c" => ("", "// ", ""),
        "cblock" => ("/*", " * ", " */"),
        "xml" => ("<!--", "   - ", "-->"),
        other => return Err(err(format!("comment: unknown style {other}"))),
    };
    let s = text(&v)?;
    let mut out = String::new();
    if !beg.is_empty() {
        out.push_str(beg);
        out.push('\n');
    }
    out.push_str(pre.trim_end());
    out.push('\n');
    for line in s.split('\n') {
        out.push_str(if line.is_empty() { pre.trim_end() } else { pre });
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(pre.trim_end());
    out.push('\n');
    if !end.is_empty() {
        out.push_str(end);
        out.push('\n');
    }
    Ok(out)
}

/// Path tests take the path as given (Ansible does not expand `~` in them).
pub(crate) fn expanduser_noop(p: &str) -> String {
    p.to_string()
}

/// Jinja2 `indent(s, width=4, first=False, blank=False)`.
fn indent(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let ind = match a.get(0, "width") {
        Some(w) if w.as_str().is_some() => text(&w)?,
        Some(w) => " ".repeat(w.as_i64().unwrap_or(4).max(0) as usize),
        None => "    ".to_string(),
    };
    let first = a.flag(1, "first", false);
    let blank = a.flag(2, "blank", false);
    let s = format!("{}\n", text(&v)?);
    let lines: Vec<&str> = py_splitlines(&s);
    let mut rv = if blank {
        lines.join(&format!("\n{ind}"))
    } else {
        let mut it = lines.into_iter();
        let mut rv = it.next().unwrap_or_default().to_string();
        let rest: Vec<String> = it
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{ind}{l}")
                }
            })
            .collect();
        if !rest.is_empty() {
            rv.push('\n');
            rv.push_str(&rest.join("\n"));
        }
        rv
    };
    if first {
        rv = format!("{ind}{rv}");
    }
    Ok(rv)
}

/// Python `str.splitlines()` for `\n`, `\r\n` and `\r`.
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut start = 0;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' || b[i] == b'\r' {
            out.push(&s[start..i]);
            if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Python `str.center(width)`.
fn py_center(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if width <= len {
        return s.to_string();
    }
    let marg = width - len;
    let left = marg / 2 + (marg & width & 1);
    format!("{}{s}{}", " ".repeat(left), " ".repeat(marg - left))
}

/// Jinja2 `truncate(s, length=255, killwords=False, end='...', leeway=5)`.
fn truncate(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let s = text(&v)?;
    let length = a
        .get(0, "length")
        .and_then(|l| l.as_i64())
        .unwrap_or(255)
        .max(0) as usize;
    let killwords = a.flag(1, "killwords", false);
    let end = a.string(2, "end")?.unwrap_or_else(|| "...".into());
    let leeway = a
        .get(3, "leeway")
        .and_then(|l| l.as_i64())
        .unwrap_or(5)
        .max(0) as usize;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= length + leeway {
        return Ok(s);
    }
    let keep: String = chars[..length.saturating_sub(end.chars().count())]
        .iter()
        .collect();
    if killwords {
        return Ok(keep + &end);
    }
    let cut = match keep.rfind(' ') {
        Some(i) => keep[..i].to_string(),
        None => keep,
    };
    Ok(cut + &end)
}

/// Jinja2 `filesizeformat(value, binary=False)`.
fn filesizeformat(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let binary = a.flag(0, "binary", false);
    let bytes = as_f64(&v).ok_or_else(|| err("filesizeformat: not a number"))?;
    let base = if binary { 1024f64 } else { 1000f64 };
    let prefixes = if binary {
        ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    } else {
        ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    };
    if bytes == 1.0 {
        return Ok("1 Byte".into());
    }
    if bytes < base {
        return Ok(format!("{} Bytes", bytes as i64));
    }
    let mut unit = base;
    for (i, p) in prefixes.iter().enumerate() {
        unit = base.powi(i as i32 + 2);
        if bytes < unit {
            return Ok(format!("{:.1} {p}", base * bytes / unit));
        }
    }
    Ok(format!("{:.1} {}", base * bytes / unit, prefixes[7]))
}

/// Jinja2 `striptags`: drop comments and tags, collapse whitespace, unescape entities.
fn striptags(v: JV) -> Result<String, Error> {
    let s = text(&v)?;
    let re = regex::Regex::new(r"(?s)<!--.*?-->|<[^>]*>").map_err(|e| err(e.to_string()))?;
    let stripped = re.replace_all(&s, "");
    let joined = stripped.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(joined
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&"))
}

/// Ansible `random(end, start=None, step=None, seed=None)`: an int below `end`, or an item of a
/// sequence. Not Python's Mersenne Twister: seeded results differ from Ansible's.
fn random(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    use std::hash::{Hash, Hasher};
    let a = A::new(rest, kw);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match a.get(2, "seed").filter(|s| !s.is_none()) {
        Some(seed) => text(&seed)?.hash(&mut h),
        None => (std::time::SystemTime::now(), std::process::id()).hash(&mut h),
    }
    let r = h.finish();
    if v.is_integer() {
        let end = v.as_i64().unwrap_or(0);
        let start = a.get(0, "start").and_then(|s| s.as_i64()).unwrap_or(0);
        let step = a
            .get(1, "step")
            .and_then(|s| s.as_i64())
            .unwrap_or(1)
            .max(1);
        let n = ((end - start) + step - 1) / step;
        if n <= 0 {
            return Err(err("random: empty range"));
        }
        return Ok(JV::from(start + (r % n as u64) as i64 * step));
    }
    let items: Vec<JV> = v.try_iter()?.collect();
    if items.is_empty() {
        return Err(err("random: empty sequence"));
    }
    Ok(items[(r % items.len() as u64) as usize].clone())
}
