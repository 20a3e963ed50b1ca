//! Lazy variable resolution: the context a template sees.
//!
//! Ansible templates a variable's raw value only when a template reads it, in the reading host's
//! context, recursively (`a: "{{ b }}"`). [`Ctx`] is a minijinja object doing the same: its
//! `get_value` fetches the raw value from the [`VarSource`] and templates it on demand. A [`Run`]
//! is one Templar call tree: it keeps the resolution stack (a name already on it is a cycle, reported
//! as `a -> b -> a`), memoizes resolved values per (host, name), records which renders read a secret
//! or unsafe value, and carries errors out of `get_value` (which cannot return one) to the caller.

use super::convert::{to_jinja, Taint};
use super::pyrepr::literal_eval;
use super::{Templar, TemplateError, VarSource};
use crate::value::{Map, Secret, Value};
use minijinja::value::{Enumerator, Object, ObjectRepr, Value as JV};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One Templar call tree.
pub(crate) struct Run {
    pub templar: Templar,
    memo: Mutex<HashMap<(String, String), Value>>,
    /// Resolved variables whose value is "native text" (a whole-template `to_json`, `string`...):
    /// Ansible keeps such a result a string wherever the variable is used again.
    native: Mutex<std::collections::HashSet<(String, String)>>,
    stack: Mutex<Vec<(String, String)>>,
    frames: Mutex<Vec<Taint>>,
    pending: Mutex<Option<TemplateError>>,
    last_undefined: Mutex<Option<(String, Option<String>)>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Run")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Run {
    pub fn new(templar: Templar) -> Arc<Run> {
        Arc::new(Run {
            templar,
            memo: Mutex::default(),
            native: Mutex::default(),
            stack: Mutex::default(),
            frames: Mutex::default(),
            pending: Mutex::default(),
            last_undefined: Mutex::default(),
        })
    }

    pub fn ctx(self: &Arc<Self>, src: Arc<dyn VarSource>) -> Arc<Ctx> {
        self.ctx_with_locals(src, Map::new())
    }

    pub fn ctx_with_locals(self: &Arc<Self>, src: Arc<dyn VarSource>, locals: Map) -> Arc<Ctx> {
        let host = match src.raw("inventory_hostname") {
            Some(Value::Str(h)) | Some(Value::Unsafe(h)) => h,
            _ => format!("{:p}", Arc::as_ptr(&src)),
        };
        Arc::new(Ctx {
            run: self.clone(),
            src,
            host,
            locals,
        })
    }

    pub fn set_pending(&self, e: TemplateError) {
        let mut p = lock(&self.pending);
        if p.is_none() {
            *p = Some(e);
        }
    }

    fn take_pending(&self) -> Option<TemplateError> {
        lock(&self.pending).take()
    }

    pub fn undefined_error(&self, fallback: &str, origin: &str) -> TemplateError {
        match lock(&self.last_undefined).take() {
            Some((name, hint)) => TemplateError::Undefined {
                name,
                origin: origin.to_string(),
                hint,
            },
            None => TemplateError::Undefined {
                name: fallback.to_string(),
                origin: origin.to_string(),
                hint: None,
            },
        }
    }

    /// The name of the last undefined variable read (for `mandatory`'s message).
    pub fn last_undefined_name(&self) -> Option<String> {
        lock(&self.last_undefined).as_ref().map(|(n, _)| n.clone())
    }

    /// Convert a kiln value for use inside the current render, tainting it.
    pub fn to_jinja(&self, v: &Value, name: &str, origin: &str) -> JV {
        let mut taint = Taint::default();
        let keyring = self.templar.shared.keyring.clone();
        let out = to_jinja(v, &mut taint, &mut |vt| {
            keyring.decrypt_inline(vt).map_err(|e| {
                let err = TemplateError::other(
                    origin,
                    format!("cannot decrypt the vaulted variable '{name}': {e}"),
                );
                self.set_pending(err.clone());
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, err.to_string())
            })
        });
        self.taint(taint);
        out
    }

    /// The formatter printed a node (`native`: its text length if it is native text).
    pub fn node(&self, native: Option<usize>) {
        if let Some(top) = lock(&self.frames).last_mut() {
            top.nodes += 1;
            top.native_len = native;
        }
    }

    pub fn taint(&self, t: Taint) {
        if let Some(top) = lock(&self.frames).last_mut() {
            top.secret |= t.secret;
            top.unsafe_ |= t.unsafe_;
        }
    }
}

/// The variables of one host, as a minijinja object resolving lazily.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub run: Arc<Run>,
    pub src: Arc<dyn VarSource>,
    host: String,
    locals: Map,
}

impl std::fmt::Debug for dyn VarSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VarSource")
    }
}

/// The name under which a template's functions find the current [`Ctx`].
pub(crate) const CTX_KEY: &str = "__kiln_ctx__";

/// The current context, from inside a filter/function/test.
pub(crate) fn current(state: &minijinja::State) -> Result<Arc<Ctx>, minijinja::Error> {
    state
        .lookup(CTX_KEY)
        .and_then(|v| v.downcast_object::<Ctx>())
        .ok_or_else(|| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, "no kiln context")
        })
}

impl Object for Ctx {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &JV) -> Option<JV> {
        let name = key.as_str()?;
        match name {
            CTX_KEY => return Some(JV::from_dyn_object(self.clone())),
            "vars" if self.src.raw("vars").is_none() => {
                return Some(JV::from_object(RawVars {
                    run: self.run.clone(),
                    src: self.src.clone(),
                }))
            }
            "hostvars" if self.src.raw("hostvars").is_none() => {
                return Some(JV::from_object(HostVars {
                    run: self.run.clone(),
                    src: self.src.clone(),
                }))
            }
            _ => {}
        }
        if let Some(v) = self.locals.get(name) {
            return Some(self.run.to_jinja(v, name, name));
        }
        match resolve(self, name) {
            Ok(Some(Value::Str(text)))
                if lock(&self.run.native).contains(&(self.host.clone(), name.to_string())) =>
            {
                Some(JV::from_safe_string(text))
            }
            Ok(Some(v)) => {
                let origin = self.src.origin(name).unwrap_or_default();
                Some(self.run.to_jinja(&v, name, &origin))
            }
            Ok(None) => None,
            Err(e) => {
                let msg = e.to_string();
                self.run.set_pending(e);
                Some(JV::from(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                )))
            }
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut names: Vec<JV> = self.locals.keys().map(|k| JV::from(k.as_str())).collect();
        names.extend(
            self.src
                .names()
                .into_iter()
                .filter(|n| !self.locals.contains_key(n))
                .map(JV::from),
        );
        Enumerator::Values(names)
    }
}

/// `vars`: Ansible hands templates the raw (untemplated) variables under this name.
#[derive(Debug)]
struct RawVars {
    run: Arc<Run>,
    src: Arc<dyn VarSource>,
}

impl Object for RawVars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &JV) -> Option<JV> {
        let name = key.as_str()?;
        let v = self.src.raw(name)?;
        let origin = self.src.origin(name).unwrap_or_default();
        Some(self.run.to_jinja(&v, name, &origin))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.src.names().into_iter().map(JV::from).collect())
    }
}

/// `hostvars`: host name → that host's lazily resolved variables.
#[derive(Debug)]
struct HostVars {
    run: Arc<Run>,
    src: Arc<dyn VarSource>,
}

impl Object for HostVars {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn get_value(self: &Arc<Self>, key: &JV) -> Option<JV> {
        let h = self.src.host(key.as_str()?)?;
        Some(JV::from_dyn_object(self.run.ctx(h)))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.src.host_names().into_iter().map(JV::from).collect())
    }
}

/// Resolve `name` in `ctx`: its raw value, templated; `Ok(None)` when undefined (also when its
/// template uses something undefined: as Ansible, that surfaces only if the value is used).
pub(crate) fn resolve(ctx: &Arc<Ctx>, name: &str) -> Result<Option<Value>, TemplateError> {
    let run = &ctx.run;
    let Some(raw) = ctx.src.raw(name) else {
        *lock(&run.last_undefined) = Some((name.to_string(), None));
        return Ok(None);
    };
    let key = (ctx.host.clone(), name.to_string());
    if let Some(v) = lock(&run.memo).get(&key) {
        return Ok(Some(v.clone()));
    }
    {
        let mut stack = lock(&run.stack);
        if let Some(pos) = stack.iter().position(|k| *k == key) {
            let mut chain: Vec<String> = stack[pos..].iter().map(|(_, n)| n.clone()).collect();
            chain.push(name.to_string());
            let origin = ctx
                .src
                .origin(name)
                .unwrap_or_else(|| format!("variable '{name}'"));
            return Err(TemplateError::Cycle { chain, origin });
        }
        stack.push(key.clone());
    }
    let origin = ctx.src.origin(name).unwrap_or_else(|| name.to_string());
    let res = match &raw {
        Value::Str(s) => template_str_native(ctx, s, &origin, true),
        other => template_value(ctx, other, &origin).map(|v| (v, false)),
    };
    lock(&run.stack).pop();
    match res {
        Ok((v, native)) => {
            if native {
                lock(&run.native).insert(key.clone());
            }
            lock(&run.memo).insert(key, v.clone());
            Ok(Some(v))
        }
        Err(TemplateError::Undefined {
            name: inner, hint, ..
        }) => {
            let hint = Some(match hint {
                Some(h) => format!("{h}, needed by '{name}'"),
                None => format!("needed by '{name}'"),
            });
            *lock(&run.last_undefined) = Some((inner, hint));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Template data: strings inside lists and maps too; unsafe data is returned as is.
pub(crate) fn template_value(
    ctx: &Arc<Ctx>,
    v: &Value,
    origin: &str,
) -> Result<Value, TemplateError> {
    Ok(match v {
        Value::Str(s) => template_str(ctx, s, origin, true)?,
        Value::List(l) => Value::List(
            l.iter()
                .map(|x| template_value(ctx, x, origin))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(m) => Value::Map(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), template_value(ctx, x, origin)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        Value::Secret(s) => Value::Secret(Secret::new(template_value(ctx, s.expose(), origin)?)),
        Value::Vault(vt) => {
            let plain = ctx
                .run
                .templar
                .shared
                .keyring
                .decrypt_inline(vt)
                .map_err(|e| {
                    TemplateError::other(origin, format!("cannot decrypt a vaulted value: {e}"))
                })?;
            Value::Secret(Secret::new(template_value(ctx, &plain, origin)?))
        }
        other => other.clone(),
    })
}

/// Does `s` contain a Jinja start marker?
pub(crate) fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// `{{ name }}` with a bare identifier: Ansible returns bools/numbers/None unconverted.
fn single_var(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    if inner.chars().all(|c| c.is_alphanumeric() || c == '_') {
        Some(inner)
    } else {
        None
    }
}

fn count_trailing_newlines(s: &str) -> usize {
    s.len() - s.trim_end_matches('\n').len()
}

/// Ansible's `_escape_backslashes`: inside `{{ }}`, backslashes in string literals are doubled so
/// that YAML's escaping is the only one applied.
pub(crate) fn escape_backslashes(data: &str) -> String {
    if !data.contains('\\') || !data.contains("{{") {
        return data.to_string();
    }
    let b = data.as_bytes();
    let mut out = String::with_capacity(data.len() + 8);
    let mut i = 0;
    let mut last = 0;
    while i + 1 < b.len() {
        if b[i] == b'{' && b[i + 1] == b'#' {
            i = data[i..].find("#}").map(|p| i + p + 2).unwrap_or(b.len());
            continue;
        }
        if b[i] == b'{' && (b[i + 1] == b'{' || b[i + 1] == b'%') {
            let close = if b[i + 1] == b'{' { b'}' } else { b'%' };
            let in_var = b[i + 1] == b'{';
            i += 2;
            while i < b.len() {
                let c = b[i];
                if c == b'\'' || c == b'"' {
                    let q = c;
                    i += 1;
                    while i < b.len() && b[i] != q {
                        if b[i] == b'\\' {
                            if in_var {
                                out.push_str(&data[last..i]);
                                out.push('\\');
                                last = i;
                            }
                            i += 1;
                            if i < b.len() && b[i] == b'\\' {
                                // the escaped character is a backslash too: double it as well
                                continue;
                            }
                        }
                        i += 1;
                    }
                    i += 1;
                    continue;
                }
                if c == close && b.get(i + 1) == Some(&b'}') {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    out.push_str(&data[last.min(data.len())..]);
    out
}

/// Jinja2 prints an inline `x if cond` without `else` as the empty string; minijinja's "silent"
/// undefined for it cannot be told apart from a real undefined value by the formatter (which must
/// fail on the latter), so `{{ }}` expressions get an explicit `else ''` where the `else` is missing.
pub(crate) fn complete_inline_ifs(data: &str) -> String {
    if !data.contains(" if ") {
        return data.to_string();
    }
    let b = data.as_bytes();
    let mut inserts: Vec<usize> = vec![];
    let mut i = 0;
    while i + 1 < b.len() {
        if !(b[i] == b'{' && b[i + 1] == b'{') {
            if b[i] == b'{' && (b[i + 1] == b'%' || b[i + 1] == b'#') {
                // skip statements and comments (a `for ... if` is a loop filter, not an inline if)
                let close = if b[i + 1] == b'%' { "%}" } else { "#}" };
                i = data[i + 2..]
                    .find(close)
                    .map(|p| i + 2 + p + 2)
                    .unwrap_or(b.len());
                continue;
            }
            i += 1;
            continue;
        }
        i += 2;
        // (depth, pending if) stack; depth 0 is the expression itself
        let mut pending: Vec<bool> = vec![false];
        while i < b.len() {
            let c = b[i];
            if c == b'\'' || c == b'"' {
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            if pending.len() == 1
                && (c == b'}' || c == b'-')
                && data[i..].trim_start_matches('-').starts_with("}}")
            {
                if pending[0] {
                    inserts.push(i);
                }
                i += data[i..].find("}}").unwrap_or(0) + 2;
                break;
            }
            match c {
                b'(' | b'[' | b'{' => pending.push(false),
                b')' | b']' | b'}' => {
                    if pending.pop() == Some(true) {
                        inserts.push(i);
                    }
                    if pending.is_empty() {
                        pending.push(false);
                    }
                }
                b',' => {
                    if let Some(top) = pending.last_mut() {
                        if *top {
                            inserts.push(i);
                            *top = false;
                        }
                    }
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let start = i;
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                    let prev_dot = start > 0 && b[start - 1] == b'.';
                    match &data[start..i] {
                        "if" if !prev_dot => {
                            if let Some(top) = pending.last_mut() {
                                *top = true;
                            }
                        }
                        "else" if !prev_dot => {
                            if let Some(top) = pending.last_mut() {
                                *top = false;
                            }
                        }
                        _ => {}
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
    if inserts.is_empty() {
        return data.to_string();
    }
    let mut out = data.to_string();
    for pos in inserts.into_iter().rev() {
        out.insert_str(pos, " else '' ");
    }
    out
}

/// Render a template string in `ctx` as `Templar.template` does (with `convert_data` literal_eval).
pub(crate) fn template_str(
    ctx: &Arc<Ctx>,
    s: &str,
    origin: &str,
    escape: bool,
) -> Result<Value, TemplateError> {
    template_str_native(ctx, s, origin, escape).map(|(v, _)| v)
}

/// As [`template_str`], also saying whether the result is native text (kept a string on reuse).
fn template_str_native(
    ctx: &Arc<Ctx>,
    s: &str,
    origin: &str,
    escape: bool,
) -> Result<(Value, bool), TemplateError> {
    if !is_template(s) {
        return Ok((Value::Str(s.to_string()), false));
    }
    if let Some(name) = single_var(s) {
        if let Some(raw) = ctx.locals.get(name).cloned().or_else(|| ctx.src.raw(name)) {
            match raw {
                Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Null => {
                    return Ok((raw, false))
                }
                _ => {}
            }
        }
    }
    let data = if escape {
        escape_backslashes(s)
    } else {
        s.to_string()
    };
    let (text, taint) = render(ctx, &data, origin)?;
    let single_native = taint.nodes == 1 && taint.native_len == Some(text.len());
    let mut out = Value::Str(text);
    if let Value::Str(t) = &out {
        if single_native {
        } else if t.starts_with('{') || t.starts_with('[') || t == "True" || t == "False" {
            if let Some(v) = literal_eval(t) {
                out = v;
            }
        }
    }
    if let Value::Str(t) = &mut out {
        let want = count_trailing_newlines(s);
        let have = count_trailing_newlines(t);
        for _ in have..want {
            t.push('\n');
        }
    }
    Ok((wrap(out, taint), single_native))
}

/// Render a template file's text (no literal_eval, no backslash escaping).
pub(crate) fn render_file_text(
    ctx: &Arc<Ctx>,
    text: &str,
    origin: &str,
) -> Result<Value, TemplateError> {
    let (mut out, taint) = render(ctx, text, origin)?;
    let want = count_trailing_newlines(text);
    for _ in count_trailing_newlines(&out)..want {
        out.push('\n');
    }
    let v = Value::Str(out);
    Ok(if taint.secret {
        Value::Secret(Secret::new(v))
    } else {
        v
    })
}

fn wrap(v: Value, taint: Taint) -> Value {
    let v = if taint.unsafe_ { wrap_unsafe(v) } else { v };
    if taint.secret {
        Value::Secret(Secret::new(v))
    } else {
        v
    }
}

/// Ansible's `wrap_var`: every string inside becomes unsafe.
pub(crate) fn wrap_unsafe(v: Value) -> Value {
    match v {
        Value::Str(s) => Value::Unsafe(s),
        Value::List(l) => Value::List(l.into_iter().map(wrap_unsafe).collect()),
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, wrap_unsafe(v))).collect()),
        v => v,
    }
}

/// Evaluate a bare expression (a `when:` condition) in `ctx`. Unlike `{% if %}`, a result that
/// is undefined is an error, as it is in Ansible.
pub(crate) fn eval_condition(
    ctx: &Arc<Ctx>,
    expr: &str,
    origin: &str,
) -> Result<bool, TemplateError> {
    let run = &ctx.run;
    let data = escape_backslashes(&format!("{{{{ {expr} }}}}"));
    let inner = data
        .strip_prefix("{{ ")
        .and_then(|d| d.strip_suffix(" }}"))
        .unwrap_or(expr);
    let inner = super::percent::rewrite_expr(inner).into_owned();
    lock(&run.frames).push(Taint::default());
    *lock(&run.last_undefined) = None;
    let res = run
        .templar
        .env
        .compile_expression_owned(inner)
        .and_then(|e| e.eval(JV::from_dyn_object(ctx.clone())));
    let taint = lock(&run.frames).pop().unwrap_or_default();
    run.taint(taint);
    if let Some(e) = run.take_pending() {
        return Err(e);
    }
    match res {
        Ok(v) if v.is_undefined() => Err(run.undefined_error(expr, origin)),
        Ok(v) => Ok(v.is_true()),
        Err(e) => Err(map_error(run, e, expr, origin)),
    }
}

/// Run minijinja over `data` with `ctx` as the root context; text out plus what it touched.
fn render(ctx: &Arc<Ctx>, data: &str, origin: &str) -> Result<(String, Taint), TemplateError> {
    let run = &ctx.run;
    lock(&run.frames).push(Taint::default());
    *lock(&run.last_undefined) = None;
    let data = complete_inline_ifs(data);
    let data = keep_newline_after_raw(&data);
    let compiled = super::percent::rewrite_template(&data, run.templar.env.syntax());
    let res = run
        .templar
        .env
        .render_str(&compiled, JV::from_dyn_object(ctx.clone()));
    let taint = lock(&run.frames).pop().unwrap_or_default();
    // an inner render's taint belongs to the outer one too
    run.taint(taint);
    if let Some(e) = run.take_pending() {
        return Err(e);
    }
    match res {
        Ok(s) => Ok((s, taint)),
        Err(e) => Err(map_error(run, e, &data, origin)),
    }
}

/// Jinja2's `trim_blocks` removes the newline after a block tag but not after `{% raw %}` (its
/// lexer matches the raw opener without the trim suffix; the newline after `{% endraw %}` is
/// trimmed). minijinja trims both, so a newline after `{% raw %}` is doubled here to keep one, as
/// Kayobe's `template-override.j2.j2` relies on.
fn keep_newline_after_raw(data: &str) -> std::borrow::Cow<'_, str> {
    static RAW: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RAW.get_or_init(|| {
        regex::Regex::new(r"\{%[+-]?\s*raw\s*%\}\n").unwrap_or_else(|e| panic!("{e}"))
    });
    if !data.contains("raw") {
        return std::borrow::Cow::Borrowed(data);
    }
    re.replace_all(data, "${0}\n")
}

fn map_error(run: &Run, e: minijinja::Error, data: &str, origin: &str) -> TemplateError {
    use minijinja::ErrorKind as K;
    let detail = e.detail().unwrap_or_default().to_string();
    let quoted = |d: &str| d.split_whitespace().nth(1).unwrap_or_default().to_string();
    // in a template of several lines (a file), every error names its line, and quotes that line
    // rather than the whole file
    let syntax_data = data;
    let syntax_origin = origin;
    let (line_origin, line_data);
    let (origin, data) = match e.line() {
        Some(l) if data.contains('\n') => {
            line_origin = format!("{origin}:{l}");
            line_data = data
                .lines()
                .nth(l.saturating_sub(1))
                .unwrap_or(data)
                .to_string();
            (line_origin.as_str(), line_data.as_str())
        }
        _ => (origin, data),
    };
    match e.kind() {
        K::UndefinedError => match run.undefined_error("(an attribute or item)", origin) {
            TemplateError::Undefined {
                name,
                origin,
                hint: None,
            } if name.starts_with('(') => TemplateError::Undefined {
                name,
                origin,
                hint: Some(format!("a missing attribute or item is used in {data:?}")),
            },
            e => e,
        },
        K::SyntaxError | K::BadEscape => TemplateError::Syntax {
            origin: syntax_origin.to_string(),
            line: e.line().unwrap_or(1),
            msg: format!(
                "{} in {syntax_data:?}",
                if detail.is_empty() {
                    e.to_string()
                } else {
                    detail
                }
            ),
        },
        K::UnknownFilter => TemplateError::UnknownFilter {
            name: quoted(&detail),
            origin: origin.to_string(),
        },
        K::UnknownTest => TemplateError::UnknownTest {
            name: quoted(&detail),
            origin: origin.to_string(),
        },
        _ => {
            let mut msg = if detail.is_empty() {
                e.kind().to_string()
            } else {
                detail
            };
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            TemplateError::Other {
                origin: origin.to_string(),
                msg: format!("{msg} (in {data:?})"),
            }
        }
    }
}

/// The variables the `template` module adds (`generate_ansible_template_vars`).
pub(crate) fn template_file_vars(path: &Path) -> Map {
    let mut m = Map::new();
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .ok()
            .map(|md| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(md.uid()))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_else(|| md.uid().to_string())
            })
            .unwrap_or_default()
    };
    m.insert("template_host".into(), Value::Unsafe(host));
    m.insert(
        "template_path".into(),
        Value::Unsafe(path.display().to_string()),
    );
    m.insert(
        "template_fullpath".into(),
        Value::Unsafe(full.display().to_string()),
    );
    m.insert("template_uid".into(), Value::Unsafe(uid));
    m.insert("template_destpath".into(), Value::Null);
    m.insert("ansible_managed".into(), Value::str("Ansible managed"));
    m
}
