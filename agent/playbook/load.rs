//! Reading playbooks, task files and roles into the model, with `file:line` on everything.
//!
//! Static things happen here, once, before any host is touched: `import_playbook`,
//! `import_tasks`, `import_role`, a play's `roles:` (with meta dependencies, run once per set of
//! parameters as Ansible does), and the check that every task names an action kiln knows — an
//! unknown module is an error naming the file and line. Dynamic includes (`include_tasks`,
//! `include_role`) are loaded by the engine through the same [`Loader`] when a host reaches them.

use super::kv;
use super::model::*;
use super::PlaybookError;
use crate::config::varsfile::read_vars_file;
use crate::value::{Map, Value};
use crate::vault::Keyring;
use crate::yaml::{self, Node, NodeKind};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Keywords a task may carry besides its action.
const TASK_KEYWORDS: &[&str] = &[
    "name",
    "action",
    "local_action",
    "args",
    "when",
    "loop",
    "loop_control",
    "register",
    "changed_when",
    "failed_when",
    "ignore_errors",
    "ignore_unreachable",
    "until",
    "retries",
    "delay",
    "notify",
    "listen",
    "delegate_to",
    "delegate_facts",
    "run_once",
    "no_log",
    "check_mode",
    "diff",
    "tags",
    "vars",
    "environment",
    "become",
    "become_user",
    "become_method",
    "become_flags",
    "become_exe",
    "remote_user",
    "connection",
    "collections",
    "module_defaults",
    "async",
    "poll",
    "throttle",
    "timeout",
    "debugger",
    "any_errors_fatal",
    "port",
];

/// Keywords a block may carry.
const BLOCK_KEYWORDS: &[&str] = &[
    "block",
    "rescue",
    "always",
    "name",
    "when",
    "tags",
    "vars",
    "environment",
    "become",
    "become_user",
    "become_method",
    "become_flags",
    "ignore_errors",
    "ignore_unreachable",
    "no_log",
    "check_mode",
    "diff",
    "delegate_to",
    "delegate_facts",
    "run_once",
    "any_errors_fatal",
    "remote_user",
    "connection",
    "collections",
    "module_defaults",
    "throttle",
    "timeout",
    "debugger",
    "port",
    "notify",
];

const PLAY_KEYWORDS: &[&str] = &[
    "hosts",
    "name",
    "vars",
    "vars_files",
    "vars_prompt",
    "gather_facts",
    "gather_subset",
    "gather_timeout",
    "fact_path",
    "become",
    "become_user",
    "become_method",
    "become_flags",
    "strategy",
    "serial",
    "any_errors_fatal",
    "max_fail_percentage",
    "order",
    "tags",
    "environment",
    "pre_tasks",
    "roles",
    "tasks",
    "post_tasks",
    "handlers",
    "remote_user",
    "connection",
    "collections",
    "module_defaults",
    "force_handlers",
    "ignore_errors",
    "ignore_unreachable",
    "no_log",
    "check_mode",
    "diff",
    "run_once",
    "throttle",
    "port",
    "timeout",
    "debugger",
];

/// The origin of a role's `vars/main.yml` layer (the engine finds the play's roles' vars by it).
pub const ROLE_VARS_ORIGIN: &str = "role vars of ";

/// Actions the engine runs itself (on the controller), besides the modules.
pub const ENGINE_ACTIONS: &[&str] = &[
    "debug",
    "set_fact",
    "assert",
    "fail",
    "include_vars",
    "pause",
    "meta",
    "template",
    "setup",
    "gather_facts",
    "include_tasks",
    "import_tasks",
    "include_role",
    "import_role",
    "set_stats",
    "wait_for_connection",
    "validate_argument_spec",
    "import_playbook",
    "ip_allocation",
    "merge_configs",
    "merge_yaml",
];

/// Free-form actions, and the `key=value` words each still takes out of its command line.
fn free_form_keys(action: &str) -> Option<&'static [&'static str]> {
    Some(match action {
        "command" | "shell" => &[
            "creates",
            "removes",
            "chdir",
            "executable",
            "warn",
            "stdin",
            "stdin_add_newline",
            "strip_empty_ends",
        ],
        "script" => &["creates", "removes", "chdir", "executable"],
        "raw" => &["executable"],
        "include_tasks" | "import_tasks" | "include_vars" | "import_playbook" | "meta"
        | "include" => &[],
        _ => return None,
    })
}

/// Whether kiln can run this action (a module or an engine action).
pub fn known_action(action: &str) -> bool {
    let short = short_action(action);
    let prefixed_ok = !action.contains('.')
        || action.starts_with("ansible.builtin.")
        || action.starts_with("ansible.legacy.")
        || crate::modules::lookup(action).is_some();
    (ENGINE_ACTIONS.contains(&short) && prefixed_ok)
        || crate::modules::lookup(action).is_some()
        || (action.starts_with("ansible.legacy.")
            && crate::modules::lookup(&format!("ansible.builtin.{short}")).is_some())
}

fn err(pos: &Pos, msg: impl Into<String>) -> PlaybookError {
    PlaybookError::At {
        pos: pos.clone(),
        msg: msg.into(),
    }
}

/// How deep tasks files may nest (import_tasks and include_tasks together).
pub const MAX_INCLUDE_DEPTH: usize = 64;

thread_local! {
    /// The tasks files being imported on this thread, outermost first (loading is synchronous,
    /// so one thread's stack is one chain of imports).
    static IMPORTING: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What loading needs to know: where roles live and how to decrypt vars files.
pub struct Loader {
    pub keys: Arc<Keyring>,
    /// Extra role directories (the config path's `ansible/roles`, `ANSIBLE_ROLES_PATH`).
    pub role_paths: Vec<PathBuf>,
    /// Roles already loaded in the current play, with their parameters (run once each).
    seen_roles: Mutex<HashSet<String>>,
    /// Handlers of roles imported with `import_role` in the current play.
    imported_handlers: Mutex<Vec<Arc<Task>>>,
    /// The directory of the playbook being loaded (its `roles/` is searched).
    play_dir: Mutex<Option<PathBuf>>,
}

struct Cursor<'a> {
    file: Arc<str>,
    dir: &'a Path,
}

impl<'a> Cursor<'a> {
    fn pos(&self, n: &Node) -> Pos {
        Pos {
            file: self.file.clone(),
            line: n.mark.line,
        }
    }
}

fn read_yaml(path: &Path, keys: &Keyring) -> Result<Option<Node>, PlaybookError> {
    let bytes = std::fs::read(path).map_err(|e| PlaybookError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let origin = path.display().to_string();
    let bytes = keys
        .decrypt_file_bytes(&bytes, &origin)
        .map_err(|e| PlaybookError::Other(e.to_string()))?
        .unwrap_or(bytes);
    let text = yaml::utf8_text(bytes, &origin).map_err(PlaybookError::Other)?;
    Ok(yaml::load_node(&text, &origin)?)
}

fn as_bool_lit(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Str(s) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => Some(true),
            "no" | "false" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Tags as written: a list, or comma-separated text.
pub fn tag_list(v: &Value) -> Vec<String> {
    str_list(v)
}

fn str_list(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l.iter().flat_map(str_list).collect(),
        Value::Str(s) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        Value::Null => vec![],
        Value::Int(i) => vec![i.to_string()],
        other => vec![crate::template::py_str_value(other)],
    }
}

fn conds(v: &Node, c: &Cursor) -> Vec<Cond> {
    match &v.kind {
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| Cond {
                expr: i.to_value(),
                pos: c.pos(i),
            })
            .collect(),
        _ => vec![Cond {
            expr: v.to_value(),
            pos: c.pos(v),
        }],
    }
}

fn vars_map(n: &Node, c: &Cursor) -> Result<Map, PlaybookError> {
    match n.to_value() {
        Value::Map(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        Value::List(items) => {
            let mut m = Map::new();
            for i in items {
                match i {
                    Value::Map(x) => m.extend(x),
                    _ => return Err(err(&c.pos(n), "vars must be a mapping (key: value)")),
                }
            }
            Ok(m)
        }
        _ => Err(err(&c.pos(n), "vars must be a mapping (key: value)")),
    }
}

/// Apply a node's inheritable keywords on top of `parent`.
fn apply_keywords(
    parent: &Attrs,
    n: &Node,
    c: &Cursor,
    origin: &str,
) -> Result<Attrs, PlaybookError> {
    let mut a = parent.clone();
    if let Some(w) = n.get("when") {
        a.when.extend(conds(w, c));
    }
    if let Some(t) = n.get("tags") {
        for t in str_list(&t.to_value()) {
            if !a.tags.contains(&t) {
                a.tags.push(t);
            }
        }
    }
    if let Some(v) = n.get("vars") {
        a.vars.push((origin.to_string(), Arc::new(vars_map(v, c)?)));
    }
    if let Some(e) = n.get("environment") {
        a.environment.push(e.to_value());
    }
    let set = |slot: &mut Option<Value>, key: &str| {
        if let Some(v) = n.get(key) {
            *slot = Some(v.to_value());
        }
    };
    set(&mut a.become_, "become");
    set(&mut a.become_user, "become_user");
    set(&mut a.ignore_errors, "ignore_errors");
    set(&mut a.ignore_unreachable, "ignore_unreachable");
    set(&mut a.no_log, "no_log");
    set(&mut a.check_mode, "check_mode");
    set(&mut a.diff, "diff");
    set(&mut a.delegate_to, "delegate_to");
    set(&mut a.delegate_facts, "delegate_facts");
    set(&mut a.run_once, "run_once");
    set(&mut a.any_errors_fatal, "any_errors_fatal");
    if let Some(m) = n.get("become_method") {
        let v = m.to_value();
        if v.as_str().is_some_and(|s| s != "sudo") {
            return Err(err(
                &c.pos(m),
                format!("become_method {v:?} is not supported (kiln supports sudo)"),
            ));
        }
    }
    Ok(a)
}

fn check_keys(n: &Node, allowed: &[&str], what: &str, c: &Cursor) -> Result<(), PlaybookError> {
    if let Some(entries) = n.as_map() {
        for (k, m, _) in entries {
            if !allowed.contains(&k.as_str()) {
                return Err(PlaybookError::At {
                    pos: Pos {
                        file: c.file.clone(),
                        line: m.line,
                    },
                    msg: format!("'{k}' is not a valid attribute for a {what}"),
                });
            }
        }
    }
    Ok(())
}

impl Loader {
    pub fn new(keys: Arc<Keyring>, role_paths: Vec<PathBuf>) -> Loader {
        let mut role_paths = role_paths;
        if let Ok(p) = std::env::var("ANSIBLE_ROLES_PATH") {
            role_paths.extend(p.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
        }
        Loader {
            keys,
            role_paths,
            seen_roles: Mutex::new(HashSet::new()),
            imported_handlers: Mutex::new(Vec::new()),
            play_dir: Mutex::new(None),
        }
    }

    /// Load a playbook file (and what it imports).
    pub fn playbook(&self, path: &Path) -> Result<Playbook, PlaybookError> {
        let mut plays = Vec::new();
        self.playbook_into(path, &mut plays, 0)?;
        Ok(Playbook {
            path: path.to_path_buf(),
            plays,
        })
    }

    /// A playbook given as text (`kiln ad-hoc` builds one); `origin` names it in errors and
    /// `dir` is its base directory.
    pub fn playbook_from_str(
        &self,
        text: &str,
        origin: &str,
        dir: &Path,
    ) -> Result<Playbook, PlaybookError> {
        let root = yaml::load_node(text, origin)?;
        let c = Cursor {
            file: Arc::from(origin),
            dir,
        };
        let mut plays = Vec::new();
        if let Some(entries) = root.as_ref().and_then(|r| r.as_seq()) {
            for e in entries {
                plays.push(Arc::new(self.play(e, &c)?));
            }
        }
        Ok(Playbook {
            path: PathBuf::from(origin),
            plays,
        })
    }

    fn playbook_into(
        &self,
        path: &Path,
        plays: &mut Vec<Arc<Play>>,
        depth: usize,
    ) -> Result<(), PlaybookError> {
        if depth > 20 {
            return Err(PlaybookError::Other(format!(
                "{}: import_playbook nests more than 20 deep (an import cycle?)",
                path.display()
            )));
        }
        let root = read_yaml(path, &self.keys)?;
        let file: Arc<str> = Arc::from(path.display().to_string());
        let dir = path.parent().unwrap_or(Path::new("."));
        let c = Cursor { file, dir };
        // ansible-playbook: exit 4 for both
        let Some(root) = root else {
            return Err(PlaybookError::Other(format!(
                "Empty playbook, nothing to do: {}",
                path.display()
            )));
        };
        if root.as_seq().is_some_and(|s| s.is_empty()) {
            return Err(PlaybookError::Other(format!(
                "A playbook must contain at least one play: {}",
                path.display()
            )));
        }
        let Some(entries) = root.as_seq() else {
            return Err(err(
                &c.pos(&root),
                "a playbook must be a list of plays (each starting with `- hosts: ...`)",
            ));
        };
        for entry in entries {
            if entry.as_map().is_none() {
                return Err(err(
                    &c.pos(entry),
                    "each play must be a mapping with `hosts:`",
                ));
            }
            let import = [
                "import_playbook",
                "ansible.builtin.import_playbook",
                "include",
            ]
            .iter()
            .find_map(|k| entry.get(k));
            if let Some(target) = import {
                let rel = match target.to_value() {
                    Value::Str(s) => s,
                    _ => return Err(err(&c.pos(target), "import_playbook needs a file name")),
                };
                if rel.contains("{{") {
                    return Err(err(
                        &c.pos(target),
                        "import_playbook is static: its file name cannot use variables",
                    ));
                }
                let p = dir.join(&rel);
                let before = plays.len();
                let r = self.playbook_into(&p, plays, depth + 1);
                // `vars:` on import_playbook apply to every imported play
                if let Some(v) = entry.get("vars") {
                    let extra = vars_map(v, &c)?;
                    for play in plays.iter_mut().skip(before) {
                        if let Some(pl) = Arc::get_mut(play) {
                            let mut m = (*pl.vars).clone();
                            m.extend(extra.clone());
                            pl.vars = Arc::new(m);
                        }
                    }
                }
                r.map_err(|e| match e {
                    PlaybookError::Io { path, source } => PlaybookError::NotFound {
                        pos: c.pos(target),
                        msg: format!("cannot read imported playbook {}: {source}", path.display()),
                    },
                    e => e,
                })?;
                continue;
            }
            plays.push(Arc::new(self.play(entry, &c)?));
        }
        Ok(())
    }

    fn play(&self, n: &Node, c: &Cursor) -> Result<Play, PlaybookError> {
        check_keys(n, PLAY_KEYWORDS, "play", c)?;
        if let Ok(mut pd) = self.play_dir.lock() {
            *pd = Some(c.dir.to_path_buf());
        }
        self.seen_roles.lock().map(|mut s| s.clear()).ok();
        let pos = c.pos(n);
        let hosts = n
            .get("hosts")
            .map(|h| match h.to_value() {
                Value::List(l) => Value::Str(
                    l.iter()
                        .map(crate::template::py_str_value)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                v => v,
            })
            .ok_or_else(|| {
                err(
                    &pos,
                    "the play has no `hosts:` (which hosts should it run on?)",
                )
            })?;
        let name = match n.get("name").map(|x| x.to_value()) {
            Some(Value::Str(s)) => s,
            Some(v) if !v.is_null() => crate::template::py_str_value(&v),
            _ => crate::template::py_str_value(&hosts),
        };
        // the play's own keywords, without its vars (the engine layers play vars itself)
        let mut attrs = apply_keywords(&Attrs::default(), n, c, "play vars")?;
        attrs.vars.clear();
        attrs.search = vec![c.dir.to_path_buf()];
        let vars = match n.get("vars") {
            Some(v) => vars_map(v, c)?,
            None => Map::new(),
        };
        let vars_files = match n.get("vars_files").map(|v| v.to_value()) {
            Some(Value::List(l)) => l,
            Some(Value::Null) | None => vec![],
            Some(v) => vec![v],
        };
        let serial = match n.get("serial").map(|v| v.to_value()) {
            Some(Value::List(l)) => l,
            Some(Value::Null) | None => vec![],
            Some(v) => vec![v],
        };
        let bool_kw = |k: &str| {
            n.get(k)
                .and_then(|v| as_bool_lit(&v.to_value()))
                .unwrap_or(false)
        };
        let max_fail_percentage = match n.get("max_fail_percentage").map(|v| v.to_value()) {
            Some(Value::Int(i)) => Some(i as f64),
            Some(Value::Float(f)) => Some(f),
            Some(Value::Str(s)) => s.trim_end_matches('%').parse().ok(),
            _ => None,
        };
        let strategy = n
            .get("strategy")
            .and_then(|s| s.to_value().as_str().map(str::to_string))
            .unwrap_or_else(|| {
                std::env::var("ANSIBLE_STRATEGY").unwrap_or_else(|_| "linear".into())
            });
        if !["linear", "free", "host_pinned"].contains(&strategy.as_str()) {
            return Err(err(
                &pos,
                format!("strategy {strategy:?} is not supported (use linear or free)"),
            ));
        }
        let section = |key: &str| -> Result<Vec<Item>, PlaybookError> {
            match n.get(key) {
                Some(list) => self.items(list, &attrs, c),
                None => Ok(vec![]),
            }
        };
        let mut handlers = Vec::new();
        let mut items = section("pre_tasks")?;
        items.push(flush_task(&pos, &attrs));
        if let Some(roles) = n.get("roles") {
            let Some(list) = roles.as_seq() else {
                return Err(err(&c.pos(roles), "roles must be a list"));
            };
            for r in list {
                let (spec_name, params, kw) = role_entry(r, c)?;
                let ra = apply_keywords(&attrs, &kw, c, "role vars")?;
                let loaded = self.role(
                    &spec_name,
                    params,
                    &ra,
                    &RoleFrom::default(),
                    &c.pos(r),
                    c.dir,
                )?;
                items.extend(loaded.tasks);
                handlers.extend(loaded.handlers);
            }
        }
        items.extend(section("tasks")?);
        items.push(flush_task(&pos, &attrs));
        items.extend(section("post_tasks")?);
        items.push(flush_task(&pos, &attrs));
        if let Ok(mut imported) = self.imported_handlers.lock() {
            handlers.append(&mut imported);
        }
        if let Some(h) = n.get("handlers") {
            let hs = self.items(h, &attrs, c)?;
            flatten_tasks(&hs, &mut handlers);
        }
        Ok(Play {
            name,
            pos,
            hosts,
            vars: Arc::new(vars),
            vars_files,
            gather_facts: n.get("gather_facts").map(|v| v.to_value()),
            gather_subset: n.get("gather_subset").map(|v| v.to_value()),
            strategy,
            serial,
            any_errors_fatal: bool_kw("any_errors_fatal"),
            max_fail_percentage,
            order: n
                .get("order")
                .and_then(|v| v.to_value().as_str().map(str::to_string)),
            items,
            handlers,
            basedir: c.dir.to_path_buf(),
            attrs,
            force_handlers: bool_kw("force_handlers"),
        })
    }

    /// A list of tasks/blocks.
    fn items(&self, list: &Node, parent: &Attrs, c: &Cursor) -> Result<Vec<Item>, PlaybookError> {
        let entries = match &list.kind {
            NodeKind::Seq(s) => s.as_slice(),
            NodeKind::Scalar(Value::Null) => return Ok(vec![]),
            _ => return Err(err(&c.pos(list), "expected a list of tasks")),
        };
        let mut out = Vec::new();
        for e in entries {
            if e.as_map().is_none() {
                return Err(err(
                    &c.pos(e),
                    "a task must be a mapping (`- name: ...` with a module), not a plain value",
                ));
            }
            if e.get("block").is_some() {
                out.push(Item::Block(Arc::new(self.block(e, parent, c)?)));
            } else {
                out.extend(self.task_or_import(e, parent, c)?);
            }
        }
        Ok(out)
    }

    fn block(&self, n: &Node, parent: &Attrs, c: &Cursor) -> Result<Block, PlaybookError> {
        check_keys(n, BLOCK_KEYWORDS, "block", c)?;
        let attrs = apply_keywords(parent, n, c, "block vars")?;
        let part = |k: &str| -> Result<Vec<Item>, PlaybookError> {
            match n.get(k) {
                Some(l) => self.items(l, &attrs, c),
                None => Ok(vec![]),
            }
        };
        Ok(Block {
            id: next_id(),
            pos: c.pos(n),
            block: part("block")?,
            rescue: part("rescue")?,
            always: part("always")?,
        })
    }

    /// A task, or what a static import expands to.
    fn task_or_import(
        &self,
        n: &Node,
        parent: &Attrs,
        c: &Cursor,
    ) -> Result<Vec<Item>, PlaybookError> {
        let task = self.task(n, parent, c)?;
        match task.short_action() {
            "import_tasks" => {
                let file = static_name(&task, "import_tasks")?;
                let mut attrs = task.attrs.clone();
                push_params(
                    &mut attrs,
                    &task.args,
                    &["_raw_params", "file"],
                    "import_tasks vars",
                );
                let path = self.resolve_tasks_file(&file, &attrs, c.dir);
                self.tasks_file(&path, &attrs)
                    .map_err(|e| at_include(e, &task.pos, &path))
            }
            "import_role" => {
                let name = task
                    .args
                    .get("name")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| err(&task.pos, "import_role needs `name:`"))?
                    .to_string();
                let from = RoleFrom::from_args(&task.args);
                let mut attrs = task.attrs.clone();
                if let Some(Value::Map(v)) = task.args.get("vars") {
                    attrs.vars.push(("role params".into(), Arc::new(v.clone())));
                }
                let loaded = self.role(&name, Map::new(), &attrs, &from, &task.pos, c.dir)?;
                // an imported role's handlers join the play's
                if let Ok(mut h) = self.imported_handlers.lock() {
                    h.extend(loaded.handlers);
                }
                Ok(loaded.tasks)
            }
            _ => Ok(vec![Item::Task(Arc::new(task))]),
        }
    }

    /// One task.
    fn task(&self, n: &Node, parent: &Attrs, c: &Cursor) -> Result<Task, PlaybookError> {
        let pos = c.pos(n);
        let entries = n.as_map().unwrap_or(&[]);
        let mut action: Option<(String, &Node, Pos)> = None;
        let mut looping: Option<Loop> = None;
        for (k, m, v) in entries {
            let kpos = Pos {
                file: c.file.clone(),
                line: m.line,
            };
            if let Some(lookup) = k.strip_prefix("with_") {
                if looping.is_some() {
                    return Err(err(&kpos, "a task can have only one loop (loop or with_*)"));
                }
                looping = Some(Loop {
                    kind: LoopKind::With(lookup.to_string()),
                    value: v.to_value(),
                });
                continue;
            }
            if k == "loop" {
                if looping.is_some() {
                    return Err(err(&kpos, "a task can have only one loop (loop or with_*)"));
                }
                looping = Some(Loop {
                    kind: LoopKind::Loop,
                    value: v.to_value(),
                });
                continue;
            }
            if TASK_KEYWORDS.contains(&k.as_str()) && k != "action" && k != "local_action" {
                continue;
            }
            if k == "block" || k == "rescue" || k == "always" {
                return Err(err(&kpos, format!("'{k}' belongs in a block, not a task")));
            }
            if let Some((prev, _, _)) = &action {
                return Err(err(
                    &kpos,
                    format!("conflicting action statements: {prev}, {k}"),
                ));
            }
            action = Some((k.clone(), v, kpos));
        }
        let Some((key, body, apos)) = action else {
            return Err(err(
                &pos,
                "no module/action detected in task (is the module name misspelled or the indentation wrong?)",
            ));
        };
        let mut attrs = apply_keywords(parent, n, c, "task vars")?;
        for ignored in ["async", "throttle", "module_defaults"] {
            if n.get(ignored).is_some() {
                tracing::warn!(
                    "{pos}: kiln does not implement `{ignored}` yet; the task runs without it"
                );
            }
        }
        let (name, mut args) = match key.as_str() {
            "action" | "local_action" => {
                let (m, a) = match body.to_value() {
                    Value::Str(s) => {
                        let s = s.trim();
                        let (m, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
                        let a = kv::parse_kv(rest, free_form_keys(short_action(m)))
                            .map_err(|e| err(&apos, e))?;
                        (m.to_string(), a)
                    }
                    Value::Map(mut m) => {
                        let module = match m.shift_remove("module") {
                            Some(Value::Str(s)) => s,
                            _ => return Err(err(&apos, format!("{key} needs a module name"))),
                        };
                        (module, m)
                    }
                    _ => {
                        return Err(err(
                            &apos,
                            format!("{key} needs a module and its arguments"),
                        ))
                    }
                };
                if key == "local_action" {
                    attrs.delegate_to = Some(Value::str("localhost"));
                }
                (m, a)
            }
            _ => {
                let a = match body.to_value() {
                    Value::Str(s) => kv::parse_kv(&s, free_form_keys(short_action(&key)))
                        .map_err(|e| err(&apos, e))?,
                    Value::Map(m) => m,
                    Value::Null => Map::new(),
                    v @ (Value::Int(_) | Value::Float(_) | Value::Bool(_)) => {
                        let mut m = Map::new();
                        m.insert(
                            "_raw_params".into(),
                            Value::Str(crate::template::py_str_value(&v)),
                        );
                        m
                    }
                    _ => {
                        return Err(err(
                            &apos,
                            format!("the arguments of {key} must be a mapping or key=value text"),
                        ))
                    }
                };
                (key.clone(), a)
            }
        };
        if let Some(extra) = n.get("args") {
            match extra.to_value() {
                Value::Map(m) => {
                    for (k, v) in m {
                        args.entry(k).or_insert(v);
                    }
                }
                Value::Null => {}
                _ => return Err(err(&c.pos(extra), "args must be a mapping")),
            }
        }
        if !known_action(&name) {
            return Err(err(
                &apos,
                format!(
                    "couldn't resolve module/action '{name}'. kiln does not know this module; \
                     check the spelling, or see `kiln playbook run --help` for the modules kiln runs"
                ),
            ));
        }
        // literal arguments of a module are checked now, before any host is touched
        if let Some(m) = crate::modules::lookup(&name) {
            let literal = !Value::Map(args.clone())
                .to_json(false)
                .to_string()
                .contains("{{")
                && !args.values().any(|v| matches!(v, Value::Vault(_)));
            if literal {
                if let Err(e) = m.check_args(&args) {
                    return Err(err(&apos, e.to_string()));
                }
            }
        }
        let lc = match n.get("loop_control").map(|v| v.to_value()) {
            Some(Value::Map(m)) => LoopControl {
                loop_var: m
                    .get("loop_var")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                index_var: m
                    .get("index_var")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                label: m.get("label").cloned(),
                pause: m.get("pause").cloned(),
                extended: m.get("extended").cloned(),
            },
            _ => LoopControl::default(),
        };
        let get = |k: &str| n.get(k).map(|v| v.to_value());
        let names = |k: &str| get(k).map(|v| str_list_plain(&v)).unwrap_or_default();
        Ok(Task {
            id: next_id(),
            name: match get("name") {
                Some(Value::Null) | None => None,
                Some(Value::Str(s)) => Some(s),
                Some(v) => Some(crate::template::py_str_value(&v)),
            },
            action: name,
            args,
            pos,
            attrs,
            looping,
            loop_control: lc,
            register: get("register").and_then(|v| v.as_str().map(str::to_string)),
            changed_when: n
                .get("changed_when")
                .map(|v| conds(v, c))
                .unwrap_or_default(),
            failed_when: n
                .get("failed_when")
                .map(|v| conds(v, c))
                .unwrap_or_default(),
            until: n.get("until").map(|v| conds(v, c)).unwrap_or_default(),
            retries: get("retries"),
            delay: get("delay"),
            notify: names("notify"),
            listen: names("listen"),
            implicit: false,
            own_when: n.get("when").map(|w| conds(w, c).len()).unwrap_or(0),
            own_tags: n
                .get("tags")
                .map(|t| str_list(&t.to_value()))
                .unwrap_or_default(),
        })
    }

    /// Where a tasks file named in a task lives: beside the including file, in the role's
    /// `tasks/`, or relative to the role.
    pub fn resolve_tasks_file(&self, rel: &str, attrs: &Attrs, dir: &Path) -> PathBuf {
        let p = Path::new(rel);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        let mut candidates = vec![dir.join(rel)];
        if let Some(r) = &attrs.role {
            candidates.push(r.path.join("tasks").join(rel));
            candidates.push(r.path.join(rel));
        }
        for s in &attrs.search {
            candidates.push(s.join(rel));
            candidates.push(s.join("tasks").join(rel));
        }
        candidates
            .iter()
            .find(|c| c.is_file())
            .cloned()
            .unwrap_or_else(|| dir.join(rel))
    }

    /// A tasks file's items (import_tasks at load time, include_tasks at run time). A file that
    /// imports itself (directly or through others) is an error naming the cycle; tasks files
    /// nested deeper than [`MAX_INCLUDE_DEPTH`] (an include_tasks cycle, which runs tasks
    /// between its steps) are an error too. Before, the first overflowed the stack (SIGSEGV) and
    /// the second grew without bound.
    pub fn tasks_file(&self, path: &Path, parent: &Attrs) -> Result<Vec<Item>, PlaybookError> {
        if parent.include_depth >= MAX_INCLUDE_DEPTH {
            return Err(PlaybookError::Other(format!(
                "{}: tasks files include each other more than {MAX_INCLUDE_DEPTH} deep \
                 (does a file include itself?)",
                path.display()
            )));
        }
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let cycle = IMPORTING.with(|s| {
            let s = s.borrow();
            s.iter().position(|p| *p == key).map(|i| {
                let mut chain: Vec<String> =
                    s[i..].iter().map(|p| p.display().to_string()).collect();
                chain.push(key.display().to_string());
                chain.join(" -> ")
            })
        });
        if let Some(chain) = cycle {
            return Err(PlaybookError::Other(format!(
                "recursive import_tasks: {chain}; a tasks file cannot import itself"
            )));
        }
        IMPORTING.with(|s| s.borrow_mut().push(key));
        let r = self.tasks_file_items(path, parent);
        IMPORTING.with(|s| s.borrow_mut().pop());
        r
    }

    fn tasks_file_items(&self, path: &Path, parent: &Attrs) -> Result<Vec<Item>, PlaybookError> {
        let root = read_yaml(path, &self.keys)?;
        let file: Arc<str> = Arc::from(path.display().to_string());
        let dir = path.parent().unwrap_or(Path::new("."));
        let c = Cursor { file, dir };
        let mut attrs = parent.clone();
        attrs.include_depth += 1;
        if !attrs.search.contains(&dir.to_path_buf()) {
            attrs.search.push(dir.to_path_buf());
        }
        match root {
            None => Ok(vec![]),
            Some(r) => self.items(&r, &attrs, &c),
        }
    }

    fn find_role(&self, name: &str, dir: &Path) -> Option<PathBuf> {
        let p = Path::new(name);
        if p.is_absolute() {
            return p.is_dir().then(|| p.to_path_buf());
        }
        // beside the including file, beside the playbook, the role paths, then (for a role's
        // dependencies) the roles next to the depending role
        let mut candidates = vec![dir.join("roles").join(name)];
        if let Ok(pd) = self.play_dir.lock() {
            if let Some(pd) = pd.as_ref() {
                candidates.push(pd.join("roles").join(name));
            }
        }
        candidates.extend(self.role_paths.iter().map(|r| r.join(name)));
        candidates.push(dir.join(name));
        if let Some(parent) = dir.parent() {
            candidates.push(parent.join(name));
        }
        candidates.into_iter().find(|c| c.is_dir())
    }

    /// A role's tasks (after its dependencies') and handlers.
    pub fn role(
        &self,
        name: &str,
        params: Map,
        parent: &Attrs,
        from: &RoleFrom,
        pos: &Pos,
        dir: &Path,
    ) -> Result<LoadedRole, PlaybookError> {
        let path = self.find_role(name, dir).ok_or_else(|| {
            let mut searched = vec![dir.join("roles").display().to_string()];
            searched.extend(self.role_paths.iter().map(|p| p.display().to_string()));
            PlaybookError::NotFound {
                pos: pos.clone(),
                msg: format!(
                    "the role '{name}' was not found in {} (set ANSIBLE_ROLES_PATH or put it in roles/ beside the playbook)",
                    searched.join(":")
                ),
            }
        })?;
        let key = format!(
            "{}|{}|{}",
            path.display(),
            from.tasks,
            Value::Map(params.clone()).to_json(false)
        );
        let first_time = self
            .seen_roles
            .lock()
            .map(|mut s| s.insert(key))
            .unwrap_or(true);
        let meta = path.join("meta").join("main.yml");
        let meta = if meta.is_file() {
            read_yaml(&meta, &self.keys)?
        } else {
            None
        };
        let allow_dup = meta
            .as_ref()
            .and_then(|m| m.get("allow_duplicates"))
            .and_then(|v| as_bool_lit(&v.to_value()))
            .unwrap_or(false);
        if !first_time && !allow_dup && !from.dynamic {
            return Ok(LoadedRole::default());
        }
        let role_name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        let mut out = LoadedRole::default();
        // dependencies first
        if let Some(deps) = meta.as_ref().and_then(|m| m.get("dependencies")) {
            let mfile: Arc<str> = Arc::from(path.join("meta/main.yml").display().to_string());
            let mc = Cursor {
                file: mfile,
                dir: &path,
            };
            for d in deps.as_seq().unwrap_or(&[]) {
                let (dname, dparams, kw) = role_entry(d, &mc)?;
                let mut da = parent.clone();
                da.vars.clear();
                let da = apply_keywords(&da, &kw, &mc, "role vars")?;
                let dep = self.role(
                    &dname,
                    dparams,
                    &da,
                    &RoleFrom::default(),
                    &mc.pos(d),
                    &path,
                )?;
                out.tasks.extend(dep.tasks);
                out.handlers.extend(dep.handlers);
            }
        }
        let role = Arc::new(RoleInfo {
            name: role_name,
            path: path.clone(),
        });
        let mut attrs = parent.clone();
        attrs.role = Some(role.clone());
        attrs.search = vec![path.clone()];
        attrs.search.extend(parent.search.iter().cloned());
        let read_main = |sub: &str, file: &str| -> Result<Option<Map>, PlaybookError> {
            for ext in ["", ".yml", ".yaml"] {
                let p = path.join(sub).join(format!("{file}{ext}"));
                if p.is_file() {
                    return match read_vars_file(&p, &self.keys)? {
                        Value::Map(m) => Ok(Some(m)),
                        Value::Null => Ok(Some(Map::new())),
                        _ => Err(PlaybookError::Other(format!(
                            "{}: role {sub} must be a mapping",
                            p.display()
                        ))),
                    };
                }
            }
            Ok(None)
        };
        if let Some(d) = read_main("defaults", &from.defaults)? {
            attrs.defaults.push(Arc::new(d));
        }
        if let Some(v) = read_main("vars", &from.vars)? {
            attrs
                .vars
                .push((format!("{ROLE_VARS_ORIGIN}{}", role.name), Arc::new(v)));
        }
        if !params.is_empty() {
            attrs.vars.push(("role params".into(), Arc::new(params)));
        }
        let tasks_main = ["", ".yml", ".yaml"]
            .iter()
            .map(|e| path.join("tasks").join(format!("{}{e}", from.tasks)))
            .find(|p| p.is_file());
        match tasks_main {
            Some(t) => out.tasks.extend(self.tasks_file(&t, &attrs)?),
            None if from.tasks != "main" => {
                return Err(err(
                    pos,
                    format!("role {}: no tasks file {:?}", role.name, from.tasks),
                ))
            }
            None => {}
        }
        let handlers_main = ["", ".yml", ".yaml"]
            .iter()
            .map(|e| path.join("handlers").join(format!("{}{e}", from.handlers)))
            .find(|p| p.is_file());
        if let Some(h) = handlers_main {
            let items = self.tasks_file(&h, &attrs)?;
            flatten_tasks(&items, &mut out.handlers);
        }
        Ok(out)
    }
}

/// What a role contributes.
#[derive(Default)]
pub struct LoadedRole {
    pub tasks: Vec<Item>,
    pub handlers: Vec<Arc<Task>>,
}

/// `tasks_from` / `vars_from` / `defaults_from` / `handlers_from`.
pub struct RoleFrom {
    pub tasks: String,
    pub vars: String,
    pub defaults: String,
    pub handlers: String,
    /// include_role: loaded per host at run time (no run-once dedup).
    pub dynamic: bool,
}

impl Default for RoleFrom {
    fn default() -> Self {
        RoleFrom {
            tasks: "main".into(),
            vars: "main".into(),
            defaults: "main".into(),
            handlers: "main".into(),
            dynamic: false,
        }
    }
}

impl RoleFrom {
    pub fn from_args(args: &Map) -> RoleFrom {
        let get = |k: &str| {
            args.get(k).and_then(|v| v.as_str()).map(|s| {
                s.trim_end_matches(".yml")
                    .trim_end_matches(".yaml")
                    .to_string()
            })
        };
        let d = RoleFrom::default();
        RoleFrom {
            tasks: get("tasks_from").unwrap_or(d.tasks),
            vars: get("vars_from").unwrap_or(d.vars),
            defaults: get("defaults_from").unwrap_or(d.defaults),
            handlers: get("handlers_from").unwrap_or(d.handlers),
            dynamic: false,
        }
    }
}

const ROLE_KEYWORDS: &[&str] = &[
    "when",
    "tags",
    "vars",
    "environment",
    "become",
    "become_user",
    "ignore_errors",
    "ignore_unreachable",
    "no_log",
    "check_mode",
    "diff",
    "delegate_to",
    "run_once",
    "any_errors_fatal",
    "become_method",
    "remote_user",
    "connection",
    "collections",
    "module_defaults",
    "debugger",
    "port",
];

/// A `roles:` entry: the name, its parameters and a node holding only its keywords.
fn role_entry(n: &Node, c: &Cursor) -> Result<(String, Map, Node), PlaybookError> {
    match &n.kind {
        NodeKind::Scalar(Value::Str(s)) => Ok((
            s.clone(),
            Map::new(),
            Node {
                mark: n.mark,
                kind: NodeKind::Map(vec![]),
            },
        )),
        NodeKind::Map(entries) => {
            let mut name = None;
            let mut params = Map::new();
            let mut kw = Vec::new();
            for (k, m, v) in entries {
                match k.as_str() {
                    "role" | "name" => name = v.to_value().as_str().map(str::to_string),
                    k2 if ROLE_KEYWORDS.contains(&k2) => kw.push((k.clone(), *m, v.clone())),
                    _ => {
                        params.insert(k.clone(), v.to_value());
                    }
                }
            }
            let name =
                name.ok_or_else(|| err(&c.pos(n), "a role entry needs `role:` (its name)"))?;
            Ok((
                name,
                params,
                Node {
                    mark: n.mark,
                    kind: NodeKind::Map(kw),
                },
            ))
        }
        _ => Err(err(
            &c.pos(n),
            "a role entry must be a name or a mapping with `role:`",
        )),
    }
}

fn static_name(task: &Task, what: &str) -> Result<String, PlaybookError> {
    let v = task
        .args
        .get("_raw_params")
        .or_else(|| task.args.get("file"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| err(&task.pos, format!("{what} needs a file name")))?;
    Ok(v.to_string())
}

/// `import_tasks: x.yml a=b` — extra words are variables for the imported tasks.
pub fn push_params(attrs: &mut Attrs, args: &Map, skip: &[&str], origin: &str) {
    let params: Map = args
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()) && k.as_str() != "apply")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !params.is_empty() {
        attrs.vars.push((origin.to_string(), Arc::new(params)));
    }
}

fn at_include(e: PlaybookError, pos: &Pos, path: &Path) -> PlaybookError {
    match e {
        PlaybookError::Io { source, .. } => PlaybookError::NotFound {
            pos: pos.clone(),
            msg: format!("cannot read the tasks file {}: {source}", path.display()),
        },
        e => e,
    }
}

fn str_list_plain(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l.iter().flat_map(str_list_plain).collect(),
        Value::Null => vec![],
        Value::Str(s) => vec![s.clone()],
        other => vec![crate::template::py_str_value(other)],
    }
}

/// Every task of a list, blocks flattened (handlers run as a flat list).
fn flatten_tasks(items: &[Item], out: &mut Vec<Arc<Task>>) {
    for i in items {
        match i {
            Item::Task(t) => out.push(t.clone()),
            Item::Block(b) => {
                flatten_tasks(&b.block, out);
                flatten_tasks(&b.rescue, out);
                flatten_tasks(&b.always, out);
            }
        }
    }
}

/// The implicit `meta: flush_handlers` between a play's sections.
fn flush_task(pos: &Pos, attrs: &Attrs) -> Item {
    let mut args = Map::new();
    args.insert("_raw_params".into(), Value::str("flush_handlers"));
    let mut a = attrs.clone();
    a.when.clear();
    a.tags = vec!["always".into()];
    Item::Task(Arc::new(Task {
        id: next_id(),
        name: Some("meta: flush_handlers".into()),
        action: "meta".into(),
        args,
        pos: pos.clone(),
        attrs: a,
        looping: None,
        loop_control: LoopControl::default(),
        register: None,
        changed_when: vec![],
        failed_when: vec![],
        until: vec![],
        retries: None,
        delay: None,
        notify: vec![],
        listen: vec![],
        implicit: true,
        own_when: 0,
        own_tags: vec![],
    }))
}
