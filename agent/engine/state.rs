//! The play's shared data: the batch's hosts and where each stands, the handlers, the play's
//! variables (vars_files, roles' defaults and vars), the include cache, and the questions every
//! part of the engine asks of them: a host's variables for a task, whether a condition or keyword
//! holds, the module context (session, become, environment, progress channel) for a task on a host.
//!
//! It knows nothing of strategies (`play.rs`), of running a task (`task.rs`) or of includes
//! (`includes.rs`): they all read and change the play through this file.

use super::conn::Want;
use super::cursor::Cursor;
use super::result::TaskResult;
use super::Engine;
use crate::config::vars::HostScope;
use crate::modules::progress::Progress;
use crate::modules::Ctx;
use crate::playbook::{Cond, Item, Play, Task};
use crate::template::VarSource;
use crate::value::{Map, Value};
use indexmap::IndexSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One host's state in a play batch.
pub struct HostState {
    pub cursor: Cursor,
    /// Handler names / topics notified and not yet run.
    pub notified: IndexSet<String>,
    /// Out of this play (failed, unreachable, ended).
    pub out: bool,
}

/// A play running over one batch of hosts.
pub struct PlayRun {
    pub engine: Arc<Engine>,
    pub play: Arc<Play>,
    /// Every host of the play (`ansible_play_hosts_all`).
    pub hosts_all: Vec<String>,
    /// This batch, in order.
    pub batch: Vec<String>,
    pub state: Mutex<HashMap<String, HostState>>,
    pub handlers: Mutex<Vec<Arc<Task>>>,
    /// Per-host `vars_files` values.
    pub vars_files: HashMap<String, Arc<Map>>,
    /// Role defaults of the play's roles (visible to all its tasks, as Ansible's are).
    pub role_defaults: Vec<Arc<Map>>,
    /// The `vars/` of the play's roles (likewise visible to all its tasks).
    pub role_vars: Vec<Arc<Map>>,
    /// Included files already loaded, by (include task, file, vars): hosts that include the same
    /// thing share the tasks and so run them in the same rounds.
    pub include_cache: tokio::sync::Mutex<HashMap<String, (String, Vec<Item>)>>,
    pub(super) abort: std::sync::atomic::AtomicBool,
    /// Tasks whose header the free strategy has printed (shared by the play's batches).
    pub(super) free_started: Arc<Mutex<IndexSet<u64>>>,
    /// Hosts that failed in this batch (for max_fail_percentage).
    pub(super) failed_in_batch: Mutex<IndexSet<String>>,
}

/// The defaults and `vars/` of every role the play loaded: Ansible makes both visible to all
/// of the play's tasks (roles' variables are not private by default).
fn role_vars_of(items: &[Item], defaults: &mut Vec<Arc<Map>>, vars: &mut Vec<Arc<Map>>) {
    for i in items {
        match i {
            Item::Task(t) => {
                for d in &t.attrs.defaults {
                    if !defaults.iter().any(|x| Arc::ptr_eq(x, d)) {
                        defaults.push(d.clone());
                    }
                }
                for (origin, v) in &t.attrs.vars {
                    if origin.starts_with(crate::playbook::load::ROLE_VARS_ORIGIN)
                        && !vars.iter().any(|x| Arc::ptr_eq(x, v))
                    {
                        vars.push(v.clone());
                    }
                }
            }
            Item::Block(b) => {
                role_vars_of(&b.block, defaults, vars);
                role_vars_of(&b.rescue, defaults, vars);
                role_vars_of(&b.always, defaults, vars);
            }
        }
    }
}

impl PlayRun {
    pub(super) fn new(
        engine: Arc<Engine>,
        play: Arc<Play>,
        hosts_all: Vec<String>,
        batch: Vec<String>,
    ) -> PlayRun {
        let (mut role_defaults, mut role_vars) = (Vec::new(), Vec::new());
        role_vars_of(&play.items, &mut role_defaults, &mut role_vars);
        PlayRun {
            handlers: Mutex::new(play.handlers.clone()),
            engine,
            play,
            hosts_all,
            batch,
            state: Mutex::new(HashMap::new()),
            vars_files: HashMap::new(),
            role_defaults,
            role_vars,
            include_cache: tokio::sync::Mutex::new(HashMap::new()),
            abort: std::sync::atomic::AtomicBool::new(false),
            free_started: Arc::default(),
            failed_in_batch: Mutex::new(IndexSet::new()),
        }
    }

    /// Hosts still running in this batch, in batch order.
    pub fn active(&self) -> Vec<String> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.batch
            .iter()
            .filter(|h| st.get(*h).is_some_and(|s| !s.out))
            .cloned()
            .collect()
    }

    pub(super) fn aborted(&self) -> bool {
        self.abort.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn host_out(&self, host: &str, dead: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = st.get_mut(host) {
            s.out = true;
            s.cursor.end();
        }
        if dead {
            self.engine.mark_dead(host);
        }
    }

    /// Add handlers that an include_role brought in.
    pub fn add_handlers(&self, hs: Vec<Arc<Task>>) {
        let mut mine = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        for h in hs {
            if !mine.iter().any(|x| x.id == h.id) {
                mine.push(h);
            }
        }
    }

    /// The host's variables for this task.
    pub fn scope(&self, host: &str, task: &Task) -> Result<HostScope, String> {
        let mut s = self
            .engine
            .run
            .host_scope(host)
            .map_err(|e| e.to_string())?;
        let mut defaults = self.role_defaults.clone();
        for d in &task.attrs.defaults {
            if !defaults.iter().any(|x| Arc::ptr_eq(x, d)) {
                defaults.push(d.clone());
            } else {
                // nearest role last: move it to the top
                defaults.retain(|x| !Arc::ptr_eq(x, d));
                defaults.push(d.clone());
            }
        }
        s.set_defaults(defaults);
        s.push_layer("play vars", self.play.vars.clone());
        if let Some(vf) = self.vars_files.get(host) {
            s.push_layer("vars_files", vf.clone());
        }
        for rv in &self.role_vars {
            s.push_layer("role vars", rv.clone());
        }
        for (o, m) in &task.attrs.vars {
            s.push_layer(o.clone(), m.clone());
        }
        let list = |v: &[String]| Value::List(v.iter().map(Value::str).collect());
        let active = self.active();
        s.set_magic("ansible_play_hosts", list(&active));
        s.set_magic("play_hosts", list(&active));
        s.set_magic("ansible_play_batch", list(&active));
        s.set_magic("ansible_play_hosts_all", list(&self.hosts_all));
        s.set_magic("ansible_play_name", Value::str(&self.play.name));
        s.set_magic("ansible_check_mode", Value::Bool(self.engine.opts.check));
        s.set_magic("ansible_diff_mode", Value::Bool(self.engine.opts.diff));
        s.set_magic("ansible_run_tags", list(&self.engine.opts.tags.only));
        s.set_magic("ansible_skip_tags", list(&self.engine.opts.tags.skip));
        if let Some(r) = &task.attrs.role {
            s.set_magic("role_name", Value::str(&r.name));
            s.set_magic("ansible_role_name", Value::str(&r.name));
            s.set_magic("role_path", Value::str(r.path.display().to_string()));
        }
        Ok(s)
    }

    pub(super) fn src(scope: &HostScope) -> Arc<dyn VarSource> {
        Arc::new(scope.clone())
    }

    pub(super) fn cond(&self, src: &Arc<dyn VarSource>, c: &Cond) -> Result<bool, String> {
        match &c.expr {
            Value::Bool(b) => Ok(*b),
            Value::Str(s) => self
                .engine
                .templar
                .condition(src, s, &c.pos.to_string())
                .map_err(|e| e.to_string()),
            Value::Null => Ok(true),
            other => Ok(other.is_truthy()),
        }
    }

    /// The first false condition's text, or None when all hold.
    pub(super) fn first_false(
        &self,
        src: &Arc<dyn VarSource>,
        conds: &[Cond],
    ) -> Result<Option<String>, String> {
        for c in conds {
            if !self.cond(src, c)? {
                return Ok(Some(crate::template::py_str_value(&c.expr)));
            }
        }
        Ok(None)
    }

    pub(crate) fn when_holds(&self, host: &str, task: &Task) -> Result<bool, String> {
        let scope = self.scope(host, task)?;
        Ok(self
            .first_false(&Self::src(&scope), &task.attrs.when)?
            .is_none())
    }

    /// A templated boolean keyword (`become`, `no_log`, `ignore_errors`, ...).
    pub(crate) fn keyword_bool(
        &self,
        host: &str,
        task: &Task,
        v: Option<&Value>,
        default: bool,
    ) -> bool {
        let Some(v) = v else { return default };
        if let Value::Bool(b) = v {
            return *b;
        }
        let Ok(scope) = self.scope(host, task) else {
            return default;
        };
        self.keyword_in(&Self::src(&scope), v).unwrap_or(default)
    }

    pub(super) fn keyword_in(&self, src: &Arc<dyn VarSource>, v: &Value) -> Result<bool, String> {
        let t = self
            .engine
            .templar
            .template(src, v, "keyword")
            .map_err(|e| e.to_string())?;
        Ok(t.is_keyword_true())
    }

    pub(super) fn notify_names(&self, host: &str, task: &Task) -> Vec<String> {
        let Ok(scope) = self.scope(host, task) else {
            return task.notify.clone();
        };
        let src = Self::src(&scope);
        task.notify
            .iter()
            .map(|n| {
                self.engine
                    .templar
                    .template(&src, &Value::Str(n.clone()), "notify")
                    .map(|v| crate::template::py_str_value(&v))
                    .unwrap_or_else(|_| n.clone())
            })
            .collect()
    }

    /// The module context: the session (delegate and become applied), check/diff, environment.
    pub(crate) async fn module_ctx(
        self: &Arc<Self>,
        host: &str,
        task: &Task,
        scope: &HostScope,
        delegated: Option<&str>,
        check: bool,
        diff: bool,
    ) -> Result<Ctx, TaskResult> {
        let src = Self::src(scope);
        let become_ = match &task.attrs.become_ {
            Some(v) => self.keyword_in(&src, v).map_err(TaskResult::failed)?,
            None => match src.raw("ansible_become") {
                Some(v) => v.is_keyword_true(),
                None => self.engine.opts.become_default.is_some(),
            },
        };
        let become_user = if become_ {
            let u = match &task.attrs.become_user {
                Some(v) => self
                    .engine
                    .templar
                    .template(&src, v, "become_user")
                    .map_err(|e| TaskResult::failed(e.to_string()))?,
                None => match src.raw("ansible_become_user") {
                    Some(v) => self
                        .engine
                        .templar
                        .template(&src, &v, "ansible_become_user")
                        .map_err(|e| TaskResult::failed(e.to_string()))?,
                    None => {
                        Value::str(self.engine.opts.become_default.as_deref().unwrap_or("root"))
                    }
                },
            };
            Some(crate::template::py_str_value(&u))
        } else {
            None
        };
        let target = delegated.unwrap_or(host);
        // a delegate is reached with its own connection variables, never this host's (its
        // `ansible_host` would send the task back here); one that is not in the inventory is
        // Ansible's implicit host, with none
        let vars: Arc<dyn VarSource> = if target == host {
            src.clone()
        } else if !self.engine.run.inventory.has_host(target) {
            Arc::new(super::conn::ImplicitHost::new(target, src.clone()))
        } else {
            match self.engine.run.host_scope(target) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    return Err(TaskResult::failed(format!(
                        "cannot load the variables of {target} (delegate_to): {e}"
                    )))
                }
            }
        };
        let session = self
            .engine
            .pool
            .session(
                &self.engine,
                Want {
                    host: target,
                    vars,
                    become_user,
                },
            )
            .await
            .map_err(|e| {
                if e.is_unreachable() {
                    TaskResult::unreachable(e.to_string())
                } else {
                    TaskResult::failed(e.to_string())
                }
            })?;
        let mut env = Vec::new();
        for e in &task.attrs.environment {
            match self.engine.templar.template(&src, e, "environment") {
                Ok(Value::Map(m)) => {
                    for (k, v) in m {
                        let v = match v {
                            Value::Secret(s) => crate::template::py_str_value(s.expose()),
                            v => crate::template::py_str_value(&v),
                        };
                        env.retain(|(x, _): &(String, String)| *x != k);
                        env.push((k, v));
                    }
                }
                Ok(Value::Null) => {}
                Ok(_) => return Err(TaskResult::failed("environment must be a mapping")),
                Err(e) => return Err(TaskResult::failed(e.to_string())),
            }
        }
        let mut search = task.attrs.search.clone();
        search.push(self.play.basedir.clone());
        Ok(Ctx {
            host: host.to_string(),
            session,
            check,
            diff,
            env,
            search,
            facts: self.engine.run.facts(target),
            progress: self.progress_for(host, task, &src),
        })
    }

    /// The task's progress channel: on with `--stream` or the variable `kiln_stream` (kiln's
    /// own, so a playbook stays valid for ansible-playbook), labelled by `kiln_stream_label`;
    /// never for a `no_log` task, whose output must not be shown.
    fn progress_for(&self, host: &str, task: &Task, src: &Arc<dyn VarSource>) -> Progress {
        let no_log = task
            .attrs
            .no_log
            .as_ref()
            .map(|v| self.keyword_in(src, v).unwrap_or(true))
            .unwrap_or(false);
        if no_log {
            return Progress::none();
        }
        let wanted = match src.raw("kiln_stream") {
            Some(v) => self.keyword_in(src, &v).unwrap_or(false),
            None => self.engine.opts.stream,
        };
        if !wanted {
            return Progress::none();
        }
        let label = src
            .raw("kiln_stream_label")
            .and_then(|v| {
                self.engine
                    .templar
                    .template(src, &v, "kiln_stream_label")
                    .ok()
            })
            .map(|v| crate::template::py_str_value(&v))
            .filter(|l| !l.is_empty());
        let sink = self.engine.sink.clone();
        Progress::new(host, label, Arc::new(move |ev| sink.progress(&ev)))
    }
}
