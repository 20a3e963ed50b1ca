//! What a run prints: Ansible's human output, or one JSON event per line for CI.
//!
//! Both sinks see the same events. Every string that leaves through them passes the
//! [`Redactor`], which knows the plaintext of every secret the run has handed to a module, so a
//! secret cannot reach the terminal even inside a diff or a command's output; `Secret` values
//! themselves serialise as `********`. Results of `no_log` tasks are replaced before they get here.

use crate::modules::progress::{EventKind, ProgressEvent};
use crate::value::{Map, Value, REDACTED};
use indexmap::IndexMap;
use std::io::Write;
use std::sync::{Arc, Mutex, RwLock};

/// A task's outcome on one host, as the recap counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Changed,
    Skipped,
    Failed,
    Unreachable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Unreachable => "unreachable",
        }
    }

    /// From an Ansible result dict.
    pub fn of(r: &Map) -> Status {
        let flag = |k: &str| r.get(k).is_some_and(|v| v.is_truthy());
        if flag("unreachable") {
            Status::Unreachable
        } else if flag("failed") {
            Status::Failed
        } else if flag("skipped") {
            Status::Skipped
        } else if flag("changed") {
            Status::Changed
        } else {
            Status::Ok
        }
    }
}

/// Per-host counters of the PLAY RECAP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostStats {
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failed: u32,
    pub skipped: u32,
    pub rescued: u32,
    pub ignored: u32,
}

/// Knows every secret plaintext handed out during the run and scrubs it from text.
#[derive(Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    /// Remember the plaintext of every secret inside `v` (short ones are too common to scrub).
    pub fn learn(&self, v: &Value) {
        fn walk(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Secret(s) => {
                    let plain = crate::template::py_str_value(s.expose());
                    if plain.len() >= 4 {
                        out.push(plain.clone());
                        // secrets also show up JSON-escaped in results
                        if let Ok(j) = serde_json::to_string(&plain) {
                            out.push(j[1..j.len() - 1].to_string());
                        }
                        // and encoded: base64 (also inside a longer encoding, as in a
                        // basic-auth header), URL-encoded
                        for n in crate::modules::credential_scan::forms("", &plain) {
                            out.push(n.text);
                        }
                    }
                }
                Value::List(l) => l.iter().for_each(|x| walk(x, out)),
                Value::Map(m) => m.values().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        if !v.contains_secret() {
            return;
        }
        let mut found = Vec::new();
        walk(v, &mut found);
        if let Ok(mut s) = self.secrets.write() {
            for f in found {
                if !s.contains(&f) {
                    s.push(f);
                }
            }
            // longest first, so a secret containing another is scrubbed whole
            s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// Remember every secret a variable map holds: decrypted secrets, and inline `!vault`
    /// values (decrypted here when the keyring can; a value it cannot open cannot be printed).
    pub fn learn_vars(&self, vars: &Map, keys: &crate::vault::Keyring) {
        fn walk(v: &Value, keys: &crate::vault::Keyring, out: &mut Vec<Value>) {
            match v {
                Value::Secret(_) => out.push(v.clone()),
                Value::Vault(t) => {
                    if let Ok(plain) = keys.decrypt_inline(t) {
                        out.push(plain);
                    }
                }
                Value::List(l) => l.iter().for_each(|x| walk(x, keys, out)),
                Value::Map(m) => m.values().for_each(|x| walk(x, keys, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for v in vars.values() {
            walk(v, keys, &mut found);
        }
        if !found.is_empty() {
            self.learn(&Value::List(found));
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        let Ok(s) = self.secrets.read() else {
            return text.to_string();
        };
        let mut out = text.to_string();
        for secret in s.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// One task result as the sinks see it.
pub struct ResultEvent<'a> {
    pub host: &'a str,
    pub task: &'a str,
    pub action: &'a str,
    pub status: Status,
    pub ignored: bool,
    pub result: &'a Map,
    /// `delegate_to` target, shown as `[host -> other]`.
    pub delegated: Option<&'a str>,
    /// The loop item label, for per-item lines.
    pub item: Option<String>,
}

pub trait Sink: Send + Sync {
    fn play_start(&self, name: &str, hosts: &[String]);
    fn task_start(&self, name: &str, action: &str, pos: &str, handler: bool);
    /// One loop item's result (human output prints a line per item).
    fn item_result(&self, ev: &ResultEvent);
    fn task_result(&self, ev: &ResultEvent);
    /// `included: file for host[, host] [=> (item=x)]` lines.
    fn included(&self, file: &str, item: Option<&str>, hosts: &[String]);
    fn no_more_hosts(&self);
    fn warning(&self, msg: &str);
    fn recap(&self, stats: &IndexMap<String, HostStats>);
    /// A running module's line or step count (the progress channel), as it happens.
    fn progress(&self, ev: &ProgressEvent);
}

/// The width Ansible pads headers to.
const WIDTH: usize = 80;

fn header(text: &str) -> String {
    let stars = WIDTH.saturating_sub(text.chars().count() + 1).max(3);
    format!("{text} {}", "*".repeat(stars))
}

/// Ansible's default callback.
pub struct Human {
    pub verbosity: u8,
    pub diff: bool,
    pub color: bool,
    pub redactor: Arc<Redactor>,
    out: Mutex<Box<dyn Write + Send>>,
    /// Progress bars of the running task, one per host and label (a terminal only).
    bars: Option<Mutex<Bars>>,
}

/// indicatif's bars for step events; lines print above them.
struct Bars {
    multi: indicatif::MultiProgress,
    by_prefix: IndexMap<String, indicatif::ProgressBar>,
}

impl Human {
    pub fn new(verbosity: u8, diff: bool, redactor: Arc<Redactor>) -> Human {
        use std::io::IsTerminal;
        let color = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none()
            && std::env::var("ANSIBLE_NOCOLOR")
                .map(|v| v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
                .unwrap_or(true);
        let bars = std::io::stdout().is_terminal().then(|| {
            Mutex::new(Bars {
                multi: indicatif::MultiProgress::new(),
                by_prefix: IndexMap::new(),
            })
        });
        Human {
            verbosity,
            diff,
            color,
            redactor,
            out: Mutex::new(Box::new(std::io::stdout())),
            bars,
        }
    }

    /// Ends the task's bars (they stay on screen as their last state).
    fn finish_bars(&self) {
        if let Some(b) = &self.bars {
            let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
            for (_, bar) in b.by_prefix.drain(..) {
                bar.finish();
            }
        }
    }

    /// A streamed line: above the bars on a terminal that shows some, else a plain line.
    fn print_streamed(&self, s: &str) {
        if let Some(b) = &self.bars {
            let b = b.lock().unwrap_or_else(|e| e.into_inner());
            if !b.by_prefix.is_empty() {
                let _ = b.multi.println(self.redactor.scrub(s));
                return;
            }
        }
        self.print(s);
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    fn print(&self, s: &str) {
        let s = self.redactor.scrub(s);
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{s}");
            let _ = o.flush();
        }
    }

    /// As Ansible's `_dump_results`: internal keys, `invocation` and `diff` dropped, keys sorted,
    /// Python's separators; indented by 4 for `debug` and -vvv.
    fn result_json(&self, r: &Map, action: &str, status: Status) -> String {
        let pretty = self.verbosity >= 3 || r.contains_key("_ansible_verbose_always");
        let mut shown: Map = r
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("_ansible")
                    && !matches!(k.as_str(), "diff" | "invocation" | "warnings")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if status == Status::Failed {
            shown.shift_remove("failed");
        }
        if crate::playbook::short_action(action) == "debug" {
            // Ansible's _clean_results: a msg stands alone; a var hides the status keys
            if shown.contains_key("msg") {
                shown.retain(|k, _| {
                    matches!(
                        k.as_str(),
                        "msg" | "exception" | "warnings" | "deprecations"
                    )
                });
            } else {
                for k in ["changed", "failed", "skipped", "invocation", "skip_reason"] {
                    shown.shift_remove(k);
                }
            }
        }
        py_json(
            &Value::Map(shown).to_json(false),
            if pretty { Some(4) } else { None },
        )
    }

    fn diffs(&self, r: &Map) {
        if !self.diff {
            return;
        }
        let list = match r.get("diff") {
            Some(Value::List(l)) => l.clone(),
            Some(d @ Value::Map(_)) => vec![d.clone()],
            _ => return,
        };
        for d in list {
            if let Some(text) = render_diff(&d) {
                self.print(&text);
            }
        }
    }

    fn line(&self, ev: &ResultEvent, per_item: bool) {
        // a module's own warnings print as [WARNING] lines before its result, as Ansible's do
        if let Some(Value::List(ws)) = ev.result.get("warnings") {
            for w in ws {
                self.warning(&crate::template::py_str_value(w));
            }
        }
        let who = match ev.delegated {
            Some(d) => format!("[{} -> {d}]", ev.host),
            None => format!("[{}]", ev.host),
        };
        let item = ev
            .item
            .as_ref()
            .map(|i| format!(" => (item={i})"))
            .unwrap_or_default();
        let verbose = self.verbosity > 0 || ev.result.contains_key("_ansible_verbose_always");
        let json = || format!(" => {}", self.result_json(ev.result, ev.action, ev.status));
        let msg = match ev.status {
            Status::Ok => {
                let mut s = format!("ok: {who}{item}");
                if verbose {
                    s.push_str(&json());
                }
                self.paint("32", &s)
            }
            Status::Changed => {
                let mut s = format!("changed: {who}{item}");
                if verbose {
                    s.push_str(&json());
                }
                self.paint("33", &s)
            }
            Status::Skipped => {
                let mut s = format!("skipping: {who}{item}");
                if per_item {
                    s.push(' ');
                }
                if verbose {
                    s.push_str(&json());
                }
                self.paint("36", &s)
            }
            Status::Failed => {
                let s = if per_item {
                    format!("failed: {who}{item}{}", json())
                } else {
                    format!("fatal: {who}: FAILED!{}", json())
                };
                self.paint("31", &s)
            }
            Status::Unreachable => {
                self.paint("31", &format!("fatal: {who}: UNREACHABLE!{}", json()))
            }
        };
        if ev.status != Status::Skipped {
            self.diffs(ev.result);
        }
        self.print(&msg);
        if ev.ignored && !per_item {
            self.print(&self.paint("36", "...ignoring"));
        }
    }
}

/// A unified diff from Ansible's diff dict (`before`/`after` + headers), or a `prepared` text.
pub fn render_diff(d: &Value) -> Option<String> {
    let m = d.as_map()?;
    if let Some(p) = m.get("prepared").and_then(|v| v.as_str()) {
        return Some(p.to_string());
    }
    let text = |k: &str| -> String {
        match m.get(k) {
            Some(Value::Str(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(Value::Secret(_)) => REDACTED.to_string(),
            Some(v) => serde_json::to_string_pretty(&v.to_json(false)).unwrap_or_default() + "\n",
        }
    };
    let (before, after) = (text("before"), text("after"));
    if before == after {
        return None;
    }
    let bh = m
        .get("before_header")
        .and_then(|v| v.as_str())
        .map(|h| format!("before: {h}"))
        .unwrap_or_else(|| "before".into());
    let ah = m
        .get("after_header")
        .and_then(|v| v.as_str())
        .map(|h| format!("after: {h}"))
        .unwrap_or_else(|| "after".into());
    let diff = similar::TextDiff::from_lines(&before, &after);
    let body = diff
        .unified_diff()
        .context_radius(3)
        .header(&bh, &ah)
        .to_string();
    Some(body.trim_end_matches('\n').to_string())
}

impl Sink for Human {
    fn play_start(&self, name: &str, _hosts: &[String]) {
        self.print(&format!("\n{}", header(&format!("PLAY [{name}]"))));
    }
    fn task_start(&self, name: &str, _action: &str, pos: &str, handler: bool) {
        let kind = if handler { "RUNNING HANDLER" } else { "TASK" };
        self.print(&format!("\n{}", header(&format!("{kind} [{name}]"))));
        if self.verbosity >= 2 {
            self.print(&format!("task path: {pos}"));
        }
    }
    fn item_result(&self, ev: &ResultEvent) {
        self.line(ev, true);
    }
    fn task_result(&self, ev: &ResultEvent) {
        self.finish_bars();
        let has_items = ev.result.contains_key("results");
        if has_items {
            // the per-item lines were printed; failures and skips of the whole task still show
            match ev.status {
                Status::Failed => self.print(&self.paint(
                    "31",
                    &format!(
                        "fatal: [{}]: FAILED! => {{\"msg\": \"{}\"}}",
                        ev.host,
                        ev.result
                            .get("msg")
                            .and_then(|m| m.as_str())
                            .unwrap_or("One or more items failed")
                    ),
                )),
                Status::Skipped
                    if ev
                        .result
                        .get("results")
                        .and_then(|r| r.as_list())
                        .is_some_and(|l| l.is_empty()) =>
                {
                    self.print(&self.paint("36", &format!("skipping: [{}]", ev.host)))
                }
                _ => {}
            }
            if ev.ignored {
                self.print(&self.paint("36", "...ignoring"));
            }
            return;
        }
        self.line(ev, false);
    }
    fn included(&self, file: &str, item: Option<&str>, hosts: &[String]) {
        let item = item.map(|i| format!(" => (item={i})")).unwrap_or_default();
        self.print(&format!("included: {file} for {}{item}", hosts.join(", ")));
    }
    fn no_more_hosts(&self) {
        self.print(&format!("\n{}", header("NO MORE HOSTS LEFT")));
    }
    fn warning(&self, msg: &str) {
        let s = self.paint("35", &format!("[WARNING]: {msg}"));
        eprintln!("{}", self.redactor.scrub(&s));
    }
    fn progress(&self, ev: &ProgressEvent) {
        let prefix = ev.prefix();
        match &ev.kind {
            EventKind::Line { text, .. } => self.print_streamed(&format!(
                "{} {text}",
                self.paint("2", &format!("[{prefix}]"))
            )),
            EventKind::Step { done, total, what } => {
                if let Some(b) = &self.bars {
                    let mut b = b.lock().unwrap_or_else(|e| e.into_inner());
                    let Bars { multi, by_prefix } = &mut *b;
                    let bar = by_prefix.entry(prefix.clone()).or_insert_with(|| {
                        let bar = multi.add(indicatif::ProgressBar::new(total.unwrap_or(0)));
                        if let Ok(style) = indicatif::ProgressStyle::with_template(
                            "[{prefix}] {bar:30} {pos}/{len} {msg}",
                        ) {
                            bar.set_style(style);
                        }
                        bar.set_prefix(prefix.clone());
                        bar
                    });
                    if let Some(t) = total {
                        bar.set_length(*t);
                    }
                    bar.set_position(*done);
                    bar.set_message(self.redactor.scrub(what));
                    return;
                }
                let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                self.print(&format!("[{prefix}] {what}: {done}{of}"));
            }
        }
    }
    fn recap(&self, stats: &IndexMap<String, HostStats>) {
        self.print(&format!("\n{}", header("PLAY RECAP")));
        for (h, s) in stats {
            let code = if s.failed > 0 || s.unreachable > 0 {
                "31"
            } else if s.changed > 0 {
                "33"
            } else {
                "32"
            };
            let name = self.paint(code, &format!("{h:<26}"));
            self.print(&format!(
                "{name} : ok={:<4} changed={:<4} unreachable={:<4} failed={:<4} skipped={:<4} rescued={:<4} ignored={:<4}",
                s.ok, s.changed, s.unreachable, s.failed, s.skipped, s.rescued, s.ignored
            ));
        }
        self.print("");
    }
}

/// One JSON object per line (`--format json`).
pub struct Json {
    pub redactor: Arc<Redactor>,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Json {
    pub fn new(redactor: Arc<Redactor>) -> Json {
        Json {
            redactor,
            out: Mutex::new(Box::new(std::io::stdout())),
        }
    }

    fn emit(&self, v: serde_json::Value) {
        let line = self.redactor.scrub(&v.to_string());
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    }

    fn result_event(&self, kind: &str, ev: &ResultEvent) -> serde_json::Value {
        let mut j = serde_json::json!({
            "event": kind,
            "host": ev.host,
            "task": ev.task,
            "action": ev.action,
            "status": ev.status.as_str(),
            "ignored": ev.ignored,
            "result": Value::Map(ev.result.clone()).to_json(false),
        });
        if let Some(d) = ev.delegated {
            j["delegated_to"] = serde_json::Value::String(d.to_string());
        }
        if let Some(i) = &ev.item {
            j["item"] = serde_json::Value::String(i.clone());
        }
        j
    }
}

impl Sink for Json {
    fn play_start(&self, name: &str, hosts: &[String]) {
        self.emit(serde_json::json!({"event": "play_start", "name": name, "hosts": hosts}));
    }
    fn task_start(&self, name: &str, action: &str, pos: &str, handler: bool) {
        self.emit(serde_json::json!({"event": "task_start", "name": name, "action": action, "path": pos, "handler": handler}));
    }
    fn item_result(&self, ev: &ResultEvent) {
        self.emit(self.result_event("item_result", ev));
    }
    fn task_result(&self, ev: &ResultEvent) {
        self.emit(self.result_event("task_result", ev));
    }
    fn included(&self, file: &str, item: Option<&str>, hosts: &[String]) {
        self.emit(
            serde_json::json!({"event": "included", "file": file, "item": item, "hosts": hosts}),
        );
    }
    fn no_more_hosts(&self) {
        self.emit(serde_json::json!({"event": "no_more_hosts"}));
    }
    fn warning(&self, msg: &str) {
        self.emit(serde_json::json!({"event": "warning", "msg": msg}));
    }
    fn recap(&self, stats: &IndexMap<String, HostStats>) {
        self.emit(serde_json::json!({"event": "recap", "stats": stats}));
    }
    fn progress(&self, ev: &ProgressEvent) {
        let mut j = serde_json::json!({
            "event": if matches!(ev.kind, EventKind::Line { .. }) { "line" } else { "progress" },
            "host": ev.host,
        });
        if let Some(l) = &ev.label {
            j["label"] = l.as_str().into();
        }
        match &ev.kind {
            EventKind::Line {
                stream,
                text,
                fields,
            } => {
                j["stream"] = stream.as_str().into();
                j["text"] = text.as_str().into();
                if let serde_json::Value::Object(f) = Value::Map(fields.clone()).to_json(false) {
                    for (k, v) in f {
                        j[k] = v;
                    }
                }
            }
            EventKind::Step { done, total, what } => {
                // a label naming an architecture (a build's `[host:x86_64]`) gives the platform
                if let Some(p) = ev
                    .label
                    .as_deref()
                    .and_then(crate::build::manifest_list::oci_platform)
                {
                    j["platform"] = p.to_string().into();
                }
                j["done"] = (*done).into();
                j["total"] = (*total).into();
                j["what"] = what.as_str().into();
            }
        }
        self.emit(j);
    }
}

/// The `ansible` ad-hoc command's output: `host | CHANGED | rc=0 >>` for commands, and
/// `host | SUCCESS => {...}` for everything else.
pub struct Minimal {
    pub redactor: Arc<Redactor>,
    pub one_line: bool,
}

impl Minimal {
    fn print(&self, s: &str) {
        println!("{}", self.redactor.scrub(s));
    }
}

impl Sink for Minimal {
    fn progress(&self, ev: &ProgressEvent) {
        match &ev.kind {
            EventKind::Line { text, .. } => self.print(&format!("[{}] {text}", ev.prefix())),
            EventKind::Step { done, total, what } => {
                let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                self.print(&format!("[{}] {what}: {done}{of}", ev.prefix()));
            }
        }
    }
    fn play_start(&self, _: &str, _: &[String]) {}
    fn task_start(&self, _: &str, _: &str, _: &str, _: bool) {}
    fn item_result(&self, _: &ResultEvent) {}
    fn task_result(&self, ev: &ResultEvent) {
        let word = match ev.status {
            Status::Ok => "SUCCESS",
            Status::Changed => "CHANGED",
            Status::Skipped => "SKIPPED",
            Status::Failed => "FAILED",
            Status::Unreachable => "UNREACHABLE!",
        };
        let command_like = matches!(
            crate::playbook::short_action(ev.action),
            "command" | "shell" | "raw" | "script"
        ) && ev.result.contains_key("rc")
            && ev.status != Status::Unreachable;
        if command_like {
            let rc = ev.result.get("rc").and_then(|v| v.as_i64()).unwrap_or(0);
            let mut out = ev
                .result
                .get("stdout")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string();
            let err = ev
                .result
                .get("stderr")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            if !err.is_empty() {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(err);
            }
            if self.one_line {
                self.print(&format!(
                    "{} | {word} | rc={rc} | (stdout) {}",
                    ev.host,
                    out.replace('\n', "\\n")
                ));
            } else {
                self.print(&format!("{} | {word} | rc={rc} >>\n{out}", ev.host));
            }
            return;
        }
        let shown: Map = ev
            .result
            .iter()
            .filter(|(k, _)| !k.starts_with("_ansible"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let j = Value::Map(shown).to_json(false);
        let word = if ev.status == Status::Failed {
            "FAILED!"
        } else {
            word
        };
        let indent = if self.one_line { None } else { Some(4) };
        self.print(&format!("{} | {word} => {}", ev.host, py_json(&j, indent)));
    }
    fn included(&self, _: &str, _: Option<&str>, _: &[String]) {}
    fn no_more_hosts(&self) {}
    fn warning(&self, msg: &str) {
        eprintln!("[WARNING]: {}", self.redactor.scrub(msg));
    }
    fn recap(&self, _: &IndexMap<String, HostStats>) {}
}

/// JSON as Python's `json.dumps(sort_keys=True, ensure_ascii=False)` writes it: `", "` and `": "`
/// separators on one line, or `indent` spaces per level.
pub fn py_json(v: &serde_json::Value, indent: Option<usize>) -> String {
    fn go(v: &serde_json::Value, indent: Option<usize>, level: usize, out: &mut String) {
        use serde_json::Value as J;
        let nl = |out: &mut String, level: usize| {
            if let Some(n) = indent {
                out.push('\n');
                out.push_str(&" ".repeat(n * level));
            }
        };
        let item_sep = if indent.is_some() { "," } else { ", " };
        match v {
            J::Array(a) if a.is_empty() => out.push_str("[]"),
            J::Object(o) if o.is_empty() => out.push_str("{}"),
            J::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(item_sep);
                    }
                    nl(out, level + 1);
                    go(x, indent, level + 1, out);
                }
                nl(out, level);
                out.push(']');
            }
            J::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(item_sep);
                    }
                    nl(out, level + 1);
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push_str(": ");
                    go(&o[*k], indent, level + 1, out);
                }
                nl(out, level);
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    go(v, indent, 0, &mut out);
    out
}
