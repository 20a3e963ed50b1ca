//! The parsed playbook: plays, blocks, tasks and handlers, each with the `file:line` it came from.
//!
//! Keywords that Ansible inherits down the tree (play → role → block → task: `when`, `tags`, `vars`,
//! `become`, `environment`, `ignore_errors`, ...) are pushed into every task when the file is loaded
//! ([`Attrs`]), so the engine reads one task and knows everything that applies to it. Values stay
//! raw (untemplated): `become: "{{ x }}"` is templated per host when the task runs.

use crate::value::{Map, Value};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where something was written: `file:line`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A conditional (`when`, `changed_when`, `failed_when`, `until`): an expression or a literal bool.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    pub expr: Value,
    pub pos: Pos,
}

/// A role as it applies to its tasks.
#[derive(Debug)]
pub struct RoleInfo {
    pub name: String,
    pub path: PathBuf,
}

/// Inherited keywords, already merged from the play, roles and enclosing blocks.
#[derive(Clone, Debug, Default)]
pub struct Attrs {
    /// All must hold (the enclosing blocks' and roles' conditions first).
    pub when: Vec<Cond>,
    pub tags: Vec<String>,
    /// Variable layers, lowest precedence first: role vars, role params, block vars, task vars.
    pub vars: Vec<(String, Arc<Map>)>,
    /// Role defaults (below the inventory), nearest role last.
    pub defaults: Vec<Arc<Map>>,
    /// `environment` maps, merged in order (later wins).
    pub environment: Vec<Value>,
    pub become_: Option<Value>,
    pub become_user: Option<Value>,
    pub ignore_errors: Option<Value>,
    pub ignore_unreachable: Option<Value>,
    pub no_log: Option<Value>,
    pub check_mode: Option<Value>,
    pub diff: Option<Value>,
    pub delegate_to: Option<Value>,
    pub delegate_facts: Option<Value>,
    pub run_once: Option<Value>,
    pub any_errors_fatal: Option<Value>,
    /// The role the task belongs to (for `role : name` and file lookups).
    pub role: Option<Arc<RoleInfo>>,
    /// Directories searched for relative files: the role's, then the including file's.
    pub search: Vec<PathBuf>,
    /// How many tasks files (imported or included) enclose the task: a file that includes
    /// itself at run time stops at [`crate::playbook::load::MAX_INCLUDE_DEPTH`].
    pub include_depth: usize,
}

/// How a task loops.
#[derive(Clone, Debug)]
pub enum LoopKind {
    /// `loop:` — the templated list, used as is.
    Loop,
    /// `with_<lookup>:` — `items`, `dict`, `together`, `subelements`, `nested`, `sequence`, any lookup.
    With(String),
}

#[derive(Clone, Debug)]
pub struct Loop {
    pub kind: LoopKind,
    pub value: Value,
}

#[derive(Clone, Debug, Default)]
pub struct LoopControl {
    pub loop_var: Option<String>,
    pub index_var: Option<String>,
    pub label: Option<Value>,
    pub pause: Option<Value>,
    pub extended: Option<Value>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id; ids grow in load order, which the linear strategy uses to order tasks.
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

#[derive(Debug)]
pub struct Task {
    pub id: u64,
    pub name: Option<String>,
    /// The action as written (`copy`, `ansible.builtin.copy`, `include_tasks`, ...).
    pub action: String,
    /// Arguments, raw (free-form text is in `_raw_params`).
    pub args: Map,
    pub pos: Pos,
    pub attrs: Attrs,
    pub looping: Option<Loop>,
    pub loop_control: LoopControl,
    pub register: Option<String>,
    pub changed_when: Vec<Cond>,
    pub failed_when: Vec<Cond>,
    pub until: Vec<Cond>,
    pub retries: Option<Value>,
    pub delay: Option<Value>,
    pub notify: Vec<String>,
    /// Handlers: the topics this handler also answers to.
    pub listen: Vec<String>,
    /// A task the loader made (gathering facts, flushing handlers between sections).
    pub implicit: bool,
    /// How many of `attrs.when` are the task's own (the last ones): a dynamic include's own
    /// condition and tags apply to the include, not to the tasks it brings in.
    pub own_when: usize,
    pub own_tags: Vec<String>,
}

impl Task {
    /// The name Ansible prints: `role : name`, or the action when unnamed.
    pub fn display_name(&self) -> String {
        let base = self.name.clone().unwrap_or_else(|| self.action.clone());
        match &self.attrs.role {
            Some(r) if !self.implicit => format!("{} : {}", r.name, base),
            _ => base,
        }
    }

    /// The action without its collection prefix (`ansible.builtin.copy` → `copy`).
    pub fn short_action(&self) -> &str {
        short_action(&self.action)
    }
}

/// `ansible.builtin.copy` → `copy`; `community.general.ini_file` → `ini_file`.
pub fn short_action(a: &str) -> &str {
    a.rsplit('.').next().unwrap_or(a)
}

#[derive(Debug)]
pub struct Block {
    pub id: u64,
    pub pos: Pos,
    pub block: Vec<Item>,
    pub rescue: Vec<Item>,
    pub always: Vec<Item>,
}

#[derive(Clone, Debug)]
pub enum Item {
    Task(Arc<Task>),
    Block(Arc<Block>),
}

#[derive(Debug, Default)]
pub struct Play {
    pub name: String,
    pub pos: Pos,
    /// Host pattern, raw (may be templated).
    pub hosts: Value,
    pub vars: Arc<Map>,
    /// `vars_files` entries, raw (a list entry may itself be a list: first found wins).
    pub vars_files: Vec<Value>,
    pub gather_facts: Option<Value>,
    pub gather_subset: Option<Value>,
    pub strategy: String,
    pub serial: Vec<Value>,
    pub any_errors_fatal: bool,
    pub max_fail_percentage: Option<f64>,
    pub order: Option<String>,
    /// The whole program, in Ansible's order: pre_tasks, flush, roles, tasks, flush, post_tasks, flush.
    pub items: Vec<Item>,
    pub handlers: Vec<Arc<Task>>,
    pub basedir: PathBuf,
    /// Keywords every task of the play inherits.
    pub attrs: Attrs,
    /// Play-level `force_handlers`.
    pub force_handlers: bool,
}

#[derive(Debug, Default)]
pub struct Playbook {
    pub path: PathBuf,
    pub plays: Vec<Arc<Play>>,
}
