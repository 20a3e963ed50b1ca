//! `lookup()`, `query()`/`q()` and the lookup plugins kiln supports.
//!
//! Each plugin returns a list, as Ansible's do; `lookup` then joins a list of strings with commas
//! (or returns a single non-string item) unless `wantlist=True`, and every result is marked unsafe
//! so it is never templated again. Files are searched as Ansible's `find_file_in_search_path`
//! does: in `<dir>/files` (or `templates`) and `<dir>` for each directory of the Templar's search
//! path. `cached` memoizes another lookup for the whole run (Kayobe's plugin).

use super::context::{current, template_str, Ctx};
use super::convert::{from_jinja, text};
use super::filters::{err, A};
use super::TemplateError;
use crate::value::{Map, Value};
use minijinja::value::{Kwargs, Rest, Value as JV};
use minijinja::{Environment, Error, State};
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_function(
        "lookup",
        |state: &State, name: String, rest: Rest<JV>, kw: Kwargs| {
            call(state, &name, rest, kw, false)
        },
    );
    env.add_function(
        "query",
        |state: &State, name: String, rest: Rest<JV>, kw: Kwargs| {
            call(state, &name, rest, kw, true)
        },
    );
    env.add_function(
        "q",
        |state: &State, name: String, rest: Rest<JV>, kw: Kwargs| {
            call(state, &name, rest, kw, true)
        },
    );
    // now(utc=False, fmt=None): kiln returns text ("%Y-%m-%d %H:%M:%S.%f" without fmt), not a datetime
    env.add_function(
        "now",
        |rest: Rest<JV>, kw: Kwargs| -> Result<String, Error> {
            let a = A::new(rest, kw);
            let fmt = a
                .string(1, "fmt")?
                .unwrap_or_else(|| "%Y-%m-%d %H:%M:%S%.6f".into());
            Ok(if a.flag(0, "utc", false) {
                chrono::Utc::now().format(&fmt).to_string()
            } else {
                chrono::Local::now().format(&fmt).to_string()
            })
        },
    );
    // undef(hint=None): an undefined value (for role defaults that must be overridden)
    env.add_function("undef", |_rest: Rest<JV>, _kw: Kwargs| JV::UNDEFINED);
}

fn call(
    state: &State,
    name: &str,
    rest: Rest<JV>,
    kw: Kwargs,
    force_list: bool,
) -> Result<JV, Error> {
    let ctx = current(state)?;
    let a = A::new(rest, kw);
    let wantlist = force_list
        || a.kwargs()
            .iter()
            .any(|(k, v)| k == "wantlist" && v.is_true());
    let errors = a
        .kwargs()
        .iter()
        .find(|(k, _)| k == "errors")
        .map(|(_, v)| text(v))
        .transpose()?
        .unwrap_or_else(|| "strict".into());
    let mut terms = vec![];
    for t in a.positional() {
        terms.push(from_jinja(t)?);
    }
    let kw: Vec<(String, Value)> = a
        .kwargs()
        .iter()
        .filter(|(k, _)| k != "wantlist" && k != "errors" && k != "allow_unsafe")
        .map(|(k, v)| Ok((k.clone(), from_jinja(v)?)))
        .collect::<Result<_, Error>>()?;
    let ran = match run_plugin(&ctx, name, terms, &kw) {
        Ok(r) => r,
        Err(LookupErr::Fatal(e)) => {
            let msg = e.to_string();
            ctx.run.set_pending(e);
            return Err(err(msg));
        }
        Err(LookupErr::Failed(msg)) => match errors.as_str() {
            "warn" => {
                tracing::warn!("Lookup failed but the error is being ignored: {msg}");
                return Ok(if wantlist {
                    JV::from(Vec::<JV>::new())
                } else {
                    JV::from(())
                });
            }
            "ignore" => {
                return Ok(if wantlist {
                    JV::from(Vec::<JV>::new())
                } else {
                    JV::from(())
                })
            }
            _ => {
                let e = TemplateError::Other {
                    origin: format!("lookup('{name}')"),
                    msg,
                };
                let m = e.to_string();
                ctx.run.set_pending(e);
                return Err(err(m));
            }
        },
    };
    // results of lookups are unsafe (ALLOW_UNSAFE_LOOKUPS is off)
    if !ran.is_empty() {
        ctx.run.taint(super::convert::Taint {
            unsafe_: true,
            ..Default::default()
        });
    }
    if wantlist || ran.is_empty() {
        return Ok(super::convert::to_jinja_plain(&Value::List(ran)));
    }
    if ran
        .iter()
        .all(|v| matches!(v, Value::Str(_) | Value::Unsafe(_)))
    {
        let joined: Vec<&str> = ran.iter().filter_map(|v| v.as_str()).collect();
        return Ok(JV::from(joined.join(",")));
    }
    if ran.len() == 1 {
        return Ok(super::convert::to_jinja_plain(&ran[0]));
    }
    Ok(super::convert::to_jinja_plain(&Value::List(ran)))
}

enum LookupErr {
    /// Aborts the template regardless of `errors=`.
    Fatal(TemplateError),
    /// An AnsibleLookupError: honours `errors=`.
    Failed(String),
}

fn failed(msg: impl Into<String>) -> LookupErr {
    LookupErr::Failed(msg.into())
}

fn kwarg<'a>(kw: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    kw.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn term_text(v: &Value) -> String {
    match v {
        Value::Str(s) | Value::Unsafe(s) => s.clone(),
        other => super::convert::py_str_value(other),
    }
}

fn run_plugin(
    ctx: &Arc<Ctx>,
    name: &str,
    terms: Vec<Value>,
    kw: &[(String, Value)],
) -> Result<Vec<Value>, LookupErr> {
    let name = name.strip_prefix("ansible.builtin.").unwrap_or(name);
    match name {
        "env" => {
            let default = kwarg(kw, "default").cloned().unwrap_or(Value::str(""));
            Ok(terms
                .iter()
                .map(|t| {
                    std::env::var(term_text(t))
                        .map(Value::Str)
                        .unwrap_or_else(|_| default.clone())
                })
                .collect())
        }
        "file" => {
            let rstrip = kwarg(kw, "rstrip").map(Value::is_truthy).unwrap_or(true);
            let lstrip = kwarg(kw, "lstrip").map(Value::is_truthy).unwrap_or(false);
            let mut out = vec![];
            for t in &terms {
                let t = term_text(t);
                let path = find_file(ctx, "files", &t).ok_or_else(|| failed(format!("The 'file' lookup had an issue accessing the file '{t}'. file not found, use -vvvvv to see paths searched")))?;
                let (mut content, secret) = read_file(ctx, &path)?;
                if rstrip {
                    content = content.trim_end().to_string();
                }
                if lstrip {
                    content = content.trim_start().to_string();
                }
                out.push(if secret {
                    Value::Secret(crate::value::Secret::new(Value::Str(content)))
                } else {
                    Value::Str(content)
                });
            }
            Ok(out)
        }
        "pipe" => terms
            .iter()
            .map(|t| pipe(ctx, &term_text(t)).map(|s| Value::Str(s.trim_end().to_string())))
            .collect(),
        "lines" => {
            let mut out = vec![];
            for t in &terms {
                out.extend(pipe(ctx, &term_text(t))?.lines().map(|l| Value::str(l)));
            }
            Ok(out)
        }
        "vars" => {
            let default = kwarg(kw, "default").cloned();
            let mut out = vec![];
            for t in &terms {
                let n = term_text(t);
                match super::context::resolve(ctx, &n).map_err(LookupErr::Fatal)? {
                    Some(v) => out.push(v),
                    None => match &default {
                        Some(d) => out.push(d.clone()),
                        None => {
                            return Err(LookupErr::Fatal(TemplateError::Undefined {
                                name: n.clone(),
                                origin: "lookup('vars')".into(),
                                hint: Some(format!("No variable found with this name: {n}")),
                            }))
                        }
                    },
                }
            }
            Ok(out)
        }
        "template" => {
            let mut out = vec![];
            for t in &terms {
                let t = term_text(t);
                let path = find_file(ctx, "templates", &t).ok_or_else(|| {
                    failed(format!(
                        "the template file {t} could not be found for the lookup"
                    ))
                })?;
                let (content, _) = read_file(ctx, &path)?;
                let origin = path.display().to_string();
                let v = template_str(ctx, &content, &origin, false).map_err(LookupErr::Fatal)?;
                out.push(v);
            }
            Ok(out)
        }
        "first_found" => first_found(ctx, terms, kw),
        "fileglob" => {
            let mut out = vec![];
            for t in &terms {
                let t = term_text(t);
                let (dir, file) = match t.rfind('/') {
                    Some(i) => (&t[..i], &t[i + 1..]),
                    None => ("", t.as_str()),
                };
                let dirs: Vec<PathBuf> = if dir.starts_with('/') {
                    vec![PathBuf::from(dir)]
                } else {
                    find_file(ctx, "files", dir).into_iter().collect()
                };
                for d in dirs {
                    let pat = d.join(file).display().to_string();
                    if let Ok(paths) = glob::glob(&pat) {
                        for p in paths.flatten() {
                            if p.is_file() {
                                out.push(Value::Str(p.display().to_string()));
                            }
                        }
                    }
                }
            }
            Ok(out)
        }
        "inventory_hostnames" => {
            let pattern = terms.iter().map(term_text).collect::<Vec<_>>().join(",");
            ctx.src
                .select_hosts(&pattern)
                .map(|h| h.into_iter().map(Value::Str).collect())
                .map_err(failed)
        }
        "items" => {
            let mut out = vec![];
            for t in terms {
                match t {
                    Value::List(l) => out.extend(l),
                    o => out.push(o),
                }
            }
            Ok(out)
        }
        "list" => Ok(terms),
        "indexed_items" => {
            let mut flat = vec![];
            for t in terms {
                match t {
                    Value::List(l) => flat.extend(l),
                    o => flat.push(o),
                }
            }
            Ok(flat
                .into_iter()
                .enumerate()
                .map(|(i, v)| Value::List(vec![Value::Int(i as i64), v]))
                .collect())
        }
        "dict" => {
            let mut out = vec![];
            for t in terms {
                let Value::Map(m) = t else {
                    return Err(failed("with_dict expects a dict"));
                };
                for (k, v) in m {
                    let mut e = Map::new();
                    e.insert("key".into(), Value::Str(k));
                    e.insert("value".into(), v);
                    out.push(Value::Map(e));
                }
            }
            Ok(out)
        }
        "sequence" => {
            let mut out = vec![];
            for t in &terms {
                out.extend(sequence(&term_text(t), kw)?.into_iter().map(Value::Str));
            }
            if terms.is_empty() {
                out.extend(sequence("", kw)?.into_iter().map(Value::Str));
            }
            Ok(out)
        }
        "cached" => {
            let mut it = terms.into_iter();
            let inner = it
                .next()
                .map(|t| term_text(&t))
                .ok_or_else(|| failed("cached: which lookup to cache?"))?;
            let rest: Vec<Value> = it.collect();
            let key = format!("{inner}\u{0}{:?}\u{0}{:?}", Value::List(rest.clone()), kw);
            if let Some(Value::List(l)) = ctx
                .run
                .templar
                .shared
                .lookup_cache
                .lock()
                .ok()
                .and_then(|c| c.get(&key).cloned())
            {
                return Ok(l);
            }
            let r = run_plugin(ctx, &inner, rest, kw)?;
            if let Ok(mut c) = ctx.run.templar.shared.lookup_cache.lock() {
                c.insert(key, Value::List(r.clone()));
            }
            Ok(r)
        }
        other => {
            let plugin = ctx
                .run
                .templar
                .shared
                .plugins
                .read()
                .ok()
                .and_then(|p| p.get(other).cloned());
            let Some(plugin) = plugin else {
                return Err(LookupErr::Fatal(TemplateError::UnknownLookup {
                    name: other.to_string(),
                    origin: "lookup".into(),
                }));
            };
            let var = |n: &str| super::context::resolve(ctx, n).ok().flatten();
            plugin(&terms, &var).map_err(|msg| {
                LookupErr::Fatal(TemplateError::other(&format!("lookup('{other}')"), msg))
            })
        }
    }
}

/// `find_file_in_search_path`: `<dir>/<subdir>/<name>` then `<dir>/<name>`; absolute names as is.
fn find_file(ctx: &Arc<Ctx>, subdir: &str, name: &str) -> Option<PathBuf> {
    let p = std::path::Path::new(name);
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    let mut dirs = ctx.run.templar.search_paths();
    if dirs.is_empty() {
        dirs.push(std::env::current_dir().ok()?);
    }
    for d in dirs {
        for c in [d.join(subdir).join(name), d.join(name)] {
            if c.exists() {
                return Some(if name.is_empty() {
                    c.components().collect()
                } else {
                    c
                });
            }
        }
    }
    None
}

fn read_file(ctx: &Arc<Ctx>, path: &std::path::Path) -> Result<(String, bool), LookupErr> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| failed(format!("could not read {origin}: {e}")))?;
    let (bytes, secret) = match ctx
        .run
        .templar
        .shared
        .keyring
        .decrypt_file_bytes(&bytes, &origin)
    {
        Ok(Some(plain)) => (plain, true),
        Ok(None) => (bytes, false),
        Err(e) => {
            return Err(LookupErr::Fatal(TemplateError::Other {
                origin,
                msg: e.to_string(),
            }))
        }
    };
    if secret {
        ctx.run.taint(super::convert::Taint {
            secret: true,
            ..Default::default()
        });
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), secret))
}

fn pipe(ctx: &Arc<Ctx>, cmd: &str) -> Result<String, LookupErr> {
    let mut c = std::process::Command::new("sh");
    c.arg("-c").arg(cmd);
    if let Some(d) = ctx.run.templar.search_paths().into_iter().next() {
        c.current_dir(d);
    }
    let out = c
        .output()
        .map_err(|e| failed(format!("lookup_plugin.pipe({cmd}) could not run: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "lookup_plugin.pipe({cmd}) returned {}",
            out.status.code().unwrap_or(-1)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn first_found(
    ctx: &Arc<Ctx>,
    terms: Vec<Value>,
    kw: &[(String, Value)],
) -> Result<Vec<Value>, LookupErr> {
    let split = |v: &Value| -> Vec<String> {
        match v {
            Value::List(l) => l.iter().flat_map(|x| split_on(&term_text(x))).collect(),
            Value::Null => vec![],
            other => split_on(&term_text(other)),
        }
    };
    let mut files: Vec<String> = kwarg(kw, "files").map(split).unwrap_or_default();
    let mut paths: Vec<String> = kwarg(kw, "paths")
        .map(|p| match p {
            Value::List(l) => l.iter().flat_map(|x| split_paths(&term_text(x))).collect(),
            other => split_paths(&term_text(other)),
        })
        .unwrap_or_default();
    let mut skip = kwarg(kw, "skip").map(Value::is_truthy).unwrap_or(false);
    let mut total: Vec<String> = vec![];
    for t in terms.iter().flat_map(|t| match t {
        Value::List(l) => l.clone(),
        o => vec![o.clone()],
    }) {
        match t {
            Value::Map(m) => {
                let f: Vec<String> = m.get("files").map(split).unwrap_or_default();
                let p: Vec<String> = m
                    .get("paths")
                    .map(|p| match p {
                        Value::List(l) => {
                            l.iter().flat_map(|x| split_paths(&term_text(x))).collect()
                        }
                        other => split_paths(&term_text(other)),
                    })
                    .unwrap_or_default();
                if m.get("skip").is_some_and(Value::is_truthy) {
                    skip = true;
                }
                total.extend(combos(&f, &p));
            }
            other => files.push(term_text(&other)),
        }
    }
    if !files.is_empty() || total.is_empty() {
        let mut t = combos(&files, &paths);
        t.append(&mut total);
        total = t;
    }
    paths.clear();
    for fname in total {
        if let Some(p) = find_file(ctx, "files", &fname) {
            return Ok(vec![Value::Str(p.display().to_string())]);
        }
    }
    if skip {
        return Ok(vec![]);
    }
    Err(failed("No file was found when using first_found."))
}

fn split_on(s: &str) -> Vec<String> {
    s.split([',', ';'])
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

fn split_paths(s: &str) -> Vec<String> {
    s.split([',', ':', ';'])
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

fn combos(files: &[String], paths: &[String]) -> Vec<String> {
    if paths.is_empty() {
        return files.to_vec();
    }
    let mut out = vec![];
    for p in paths {
        for f in files {
            out.push(format!("{}/{}", p.trim_end_matches('/'), f));
        }
    }
    out
}

/// The `sequence` lookup: `start=1 end=10 stride=1 format=%d` or `[start-]end[/stride][:format]`.
fn sequence(term: &str, kw: &[(String, Value)]) -> Result<Vec<String>, LookupErr> {
    let mut start = 1i64;
    let mut end: Option<i64> = None;
    let mut count: Option<i64> = None;
    let mut stride = 1i64;
    let mut format = "%d".to_string();
    let num = |s: &str| -> Result<i64, LookupErr> {
        let s = s.trim();
        super::filters::py_int_str(s, 0)
            .ok_or_else(|| failed(format!("can't parse arg={s} as integer")))
    };
    let mut set = |k: &str, v: &str| -> Result<(), LookupErr> {
        match k {
            "start" => start = num(v)?,
            "end" => end = Some(num(v)?),
            "count" => count = Some(num(v)?),
            "stride" => stride = num(v)?,
            "format" => format = v.to_string(),
            o => {
                return Err(failed(format!(
                    "unrecognized arguments to with_sequence: {o}"
                )))
            }
        }
        Ok(())
    };
    for (k, v) in kw {
        set(k, &term_text(v))?;
    }
    let term = term.trim();
    if term.contains('=') {
        for part in term.split_whitespace() {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| failed(format!("can't parse arg={part}")))?;
            set(k, v)?;
        }
    } else if !term.is_empty() {
        let re = regex::Regex::new(r"^(?:(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|-?\d+)-)?(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|\d+)(?:/(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|\d+))?(?::(.+))?$")
            .map_err(|e| failed(e.to_string()))?;
        let c = re
            .captures(term)
            .ok_or_else(|| failed(format!("unknown argument format: {term}")))?;
        if let Some(s) = c.get(1) {
            set("start", s.as_str())?;
        }
        set("end", &c[2])?;
        if let Some(s) = c.get(3) {
            set("stride", s.as_str())?;
        }
        if let Some(f) = c.get(4) {
            set("format", f.as_str())?;
        }
    }
    if let Some(c) = count {
        if end.is_some() {
            return Err(failed("can't specify both count and end in with_sequence"));
        }
        if c == 0 {
            return Ok(vec![]);
        }
        end = Some(start + (c - 1) * stride);
    }
    let end = end.ok_or_else(|| failed("must specify count or end in with_sequence"))?;
    if stride == 0 {
        return Ok(vec![]);
    }
    if (stride > 0 && end < start) || (stride < 0 && end > start) {
        return Err(failed("to count backwards make stride negative"));
    }
    let mut out = vec![];
    let mut i = start;
    while (stride > 0 && i <= end) || (stride < 0 && i >= end) {
        out.push(py_format_int(&format, i));
        i += stride;
    }
    Ok(out)
}

/// Python `"%..." % i` for the common integer conversions.
fn py_format_int(fmt: &str, i: i64) -> String {
    let re = regex::Regex::new(r"%([-0 +#]*)(\d*)([dixXo])").ok();
    let Some(re) = re else { return fmt.to_string() };
    re.replace(fmt, |c: &regex::Captures| {
        let flags = &c[1];
        let width: usize = c[2].parse().unwrap_or(0);
        let body = match &c[3] {
            "x" => format!("{i:x}"),
            "X" => format!("{i:X}"),
            "o" => format!("{i:o}"),
            _ => i.to_string(),
        };
        if flags.contains('-') {
            format!("{body:<width$}")
        } else if flags.contains('0') {
            format!("{body:0>width$}")
        } else {
            format!("{body:>width$}")
        }
    })
    .into_owned()
}
