//! One task on one host: variables, condition, loop, action, and what the result means.
//!
//! The host's scope is built per task in Ansible's precedence (role defaults < inventory < facts
//! < play vars < vars_files < role vars < block vars < task vars < set_fact/register < extra vars).
//! Then `when` (per item when looping), the action — a module through the host's agent session,
//! or an engine action — `until`/`retries`, `changed_when`/`failed_when` (which see the result
//! under the `register` name), registration, and `no_log` censoring of what is shown.

use super::conn::Want;
use super::loops;
use super::output::{ResultEvent, Status};
use super::play::PlayRun;
use crate::config::vars::HostScope;
use crate::modules::progress::Progress;
use crate::modules::{Ctx, ModuleError};
use crate::playbook::{Cond, Item, Task};
use crate::template::VarSource;
use crate::value::{Map, Value};
use std::sync::Arc;

const CENSORED: &str =
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result";

/// One file an include brought in for a host.
#[derive(Clone, Debug)]
pub struct Included {
    pub file: String,
    pub item: Option<String>,
    pub items: Vec<Item>,
}

/// A task's outcome on one host, as the strategy needs it.
#[derive(Clone, Debug)]
pub struct Exec {
    pub status: Status,
    pub ignored: bool,
    /// Failed or unreachable and not ignored: the host's block fails.
    pub fatal: bool,
    pub changed_any: bool,
    /// Handler names to notify (templated).
    pub notify: Vec<String>,
    /// `include_tasks` / `include_role`: per included file (per loop item), the file shown,
    /// the item label, and the tasks to run next.
    pub include: Option<Vec<Included>>,
    /// What `register` stored.
    pub registered: Option<Map>,
    /// The result as shown (censored under no_log).
    pub shown: Map,
}

impl Exec {
    pub fn from_result(r: Map, status: Status) -> Exec {
        Exec {
            status,
            ignored: false,
            fatal: matches!(status, Status::Failed | Status::Unreachable),
            changed_any: status == Status::Changed,
            notify: vec![],
            include: None,
            registered: None,
            shown: r,
        }
    }
}

fn failed(msg: impl Into<String>) -> Map {
    let mut r = Map::new();
    r.insert("failed".into(), Value::Bool(true));
    r.insert("msg".into(), Value::Str(msg.into()));
    r.insert("changed".into(), Value::Bool(false));
    r
}

fn flag(r: &Map, k: &str) -> bool {
    r.get(k).is_some_and(|v| v.is_truthy())
}

/// Drop arguments equal to `omit`, at any depth (as Ansible's `remove_omit`).
fn remove_omit(v: Value, omit: &str) -> Option<Value> {
    match v {
        Value::Str(s) if s == omit => None,
        Value::Map(m) => Some(Value::Map(
            m.into_iter()
                .filter_map(|(k, v)| remove_omit(v, omit).map(|v| (k, v)))
                .collect(),
        )),
        Value::List(l) => Some(Value::List(
            l.into_iter().filter_map(|v| remove_omit(v, omit)).collect(),
        )),
        v => Some(v),
    }
}

impl PlayRun {
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

    fn src(scope: &HostScope) -> Arc<dyn VarSource> {
        Arc::new(scope.clone())
    }

    fn cond(&self, src: &Arc<dyn VarSource>, c: &Cond) -> Result<bool, String> {
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
    fn first_false(
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

    fn keyword_in(&self, src: &Arc<dyn VarSource>, v: &Value) -> Result<bool, String> {
        let t = self
            .engine
            .templar
            .template(src, v, "keyword")
            .map_err(|e| e.to_string())?;
        Ok(t.is_keyword_true())
    }

    /// Run the task on one host; result events are emitted here.
    pub async fn exec(self: &Arc<Self>, host: &str, task: &Arc<Task>, name: &str) -> Exec {
        let scope = match self.scope(host, task) {
            Ok(s) => s,
            Err(e) => return self.finish(host, task, name, failed(e), false, None),
        };
        let src = Self::src(&scope);
        let no_log = task
            .attrs
            .no_log
            .as_ref()
            .map(|v| self.keyword_in(&src, v).unwrap_or(true))
            .unwrap_or(false);
        let delegated = match &task.attrs.delegate_to {
            Some(d) => match self.engine.templar.template(&src, d, &task.pos.to_string()) {
                Ok(v) => Some(crate::template::py_str_value(&v)),
                Err(e) => {
                    return self.finish(host, task, name, failed(e.to_string()), no_log, None)
                }
            },
            None => None,
        };
        let short = task.short_action();
        if matches!(short, "include_tasks" | "include_role") {
            return self.include(host, task, name, &scope, no_log).await;
        }
        let result = match &task.looping {
            None => {
                self.run_item(host, task, &scope, delegated.as_deref(), None)
                    .await
            }
            Some(lp) => {
                let items =
                    match loops::items(&self.engine.templar, &src, lp, &task.pos.to_string()) {
                        Ok(i) => i,
                        Err(e) => {
                            return self.finish(
                                host,
                                task,
                                name,
                                failed(e),
                                no_log,
                                delegated.as_deref(),
                            )
                        }
                    };
                let mut results = Vec::new();
                let loop_var = task
                    .loop_control
                    .loop_var
                    .clone()
                    .unwrap_or_else(|| "item".into());
                let n = items.len();
                for (i, item) in items.into_iter().enumerate() {
                    let mut layer = Map::new();
                    layer.insert(loop_var.clone(), item.clone());
                    layer.insert("ansible_loop_var".into(), Value::Str(loop_var.clone()));
                    if let Some(iv) = &task.loop_control.index_var {
                        layer.insert(iv.clone(), Value::Int(i as i64));
                        layer.insert("ansible_index_var".into(), Value::Str(iv.clone()));
                    }
                    let extended = task
                        .loop_control
                        .extended
                        .as_ref()
                        .is_some_and(Value::is_keyword_true);
                    if extended {
                        let mut l = Map::new();
                        l.insert("index".into(), Value::Int(i as i64 + 1));
                        l.insert("index0".into(), Value::Int(i as i64));
                        l.insert("revindex".into(), Value::Int((n - i) as i64));
                        l.insert("revindex0".into(), Value::Int((n - i - 1) as i64));
                        l.insert("first".into(), Value::Bool(i == 0));
                        l.insert("last".into(), Value::Bool(i + 1 == n));
                        l.insert("length".into(), Value::Int(n as i64));
                        layer.insert("ansible_loop".into(), Value::Map(l));
                    }
                    let item_scope = scope.with_layer("loop item", layer);
                    let mut r = self
                        .run_item(host, task, &item_scope, delegated.as_deref(), Some(&item))
                        .await;
                    r.insert(loop_var.clone(), item.clone());
                    r.insert("ansible_loop_var".into(), Value::Str(loop_var.clone()));
                    if let Some(iv) = &task.loop_control.index_var {
                        r.insert(iv.clone(), Value::Int(i as i64));
                        r.insert("ansible_index_var".into(), Value::Str(iv.clone()));
                    }
                    let label = match &task.loop_control.label {
                        Some(l) => {
                            let v = self
                                .engine
                                .templar
                                .template(&Self::src(&item_scope), l, "loop_control.label")
                                .unwrap_or_else(|_| l.clone());
                            r.insert("_ansible_item_label".into(), v.clone());
                            crate::template::py_str_value(&v)
                        }
                        None => crate::template::py_str_value(&item),
                    };
                    let shown = if no_log {
                        censor(&r, &self.engine.redactor)
                    } else {
                        r.clone()
                    };
                    let label = if no_log { "None".to_string() } else { label };
                    self.engine.sink.item_result(&ResultEvent {
                        host,
                        task: name,
                        action: &task.action,
                        status: Status::of(&r),
                        ignored: false,
                        result: &shown,
                        delegated: delegated.as_deref(),
                        item: Some(label),
                    });
                    results.push(r);
                    if let Some(p) = &task.loop_control.pause {
                        let secs = match p {
                            Value::Int(i) => *i as f64,
                            Value::Float(f) => *f,
                            Value::Str(s) => s.parse().unwrap_or(0.0),
                            _ => 0.0,
                        };
                        if secs > 0.0 && i + 1 < n {
                            tokio::time::sleep(std::time::Duration::from_secs_f64(secs)).await;
                        }
                    }
                }
                aggregate(results)
            }
        };
        // facts from set_fact / setup / include_vars
        if let Some(Value::Map(f)) = result.get("ansible_facts") {
            self.engine.redactor.learn_vars(f, &self.engine.run.keyring);
        }
        self.apply_facts(host, task, &result);
        self.finish(host, task, name, result, no_log, delegated.as_deref())
    }

    fn apply_facts(&self, host: &str, task: &Task, r: &Map) {
        let each: Vec<&Map> = match r.get("results") {
            Some(Value::List(l)) => l.iter().filter_map(|x| x.as_map()).collect(),
            _ => vec![r],
        };
        let short = task.short_action();
        for one in each {
            let Some(Value::Map(f)) = one.get("ansible_facts") else {
                continue;
            };
            if flag(one, "failed") || flag(one, "skipped") {
                continue;
            }
            match short {
                "set_fact" | "include_vars" => {
                    self.engine.run.set_runtime(host, f.clone());
                    if flag(one, "_ansible_facts_cacheable") {
                        self.engine.run.add_facts(host, f.clone());
                    }
                }
                _ => {
                    // module facts: stored without the ansible_ prefix, as Ansible does
                    let facts: Map = f
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.strip_prefix("ansible_").unwrap_or(k).to_string(),
                                v.clone(),
                            )
                        })
                        .collect();
                    self.engine.run.add_facts(host, facts);
                }
            }
        }
    }

    /// Register, judge, show: the common end of every task on a host.
    fn finish(
        &self,
        host: &str,
        task: &Task,
        name: &str,
        result: Map,
        no_log: bool,
        delegated: Option<&str>,
    ) -> Exec {
        let status = Status::of(&result);
        let mut registered = None;
        if let Some(reg) = &task.register {
            let mut r = result.clone();
            r.shift_remove("_ansible_verbose_always");
            r.shift_remove("_ansible_facts_cacheable");
            self.engine
                .run
                .set_runtime(host, Map::from_iter([(reg.clone(), Value::Map(r.clone()))]));
            registered = Some(r);
        }
        let ignored = match status {
            Status::Failed => {
                self.keyword_bool(host, task, task.attrs.ignore_errors.as_ref(), false)
            }
            Status::Unreachable => {
                self.keyword_bool(host, task, task.attrs.ignore_unreachable.as_ref(), false)
            }
            _ => false,
        };
        let shown = if no_log {
            censor(&result, &self.engine.redactor)
        } else {
            result.clone()
        };
        self.engine.sink.task_result(&ResultEvent {
            host,
            task: name,
            action: &task.action,
            status,
            ignored,
            result: &shown,
            delegated,
            item: None,
        });
        let changed_any = status == Status::Changed
            || matches!(result.get("results"), Some(Value::List(l)) if l.iter().any(|r| r.as_map().is_some_and(|m| flag(m, "changed"))));
        let notify = if changed_any && !task.notify.is_empty() {
            self.notify_names(host, task)
        } else {
            vec![]
        };
        Exec {
            status,
            ignored,
            fatal: matches!(status, Status::Failed | Status::Unreachable) && !ignored,
            changed_any,
            notify,
            include: None,
            registered,
            shown,
        }
    }

    fn notify_names(&self, host: &str, task: &Task) -> Vec<String> {
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

    /// One run of the action (one loop item), with `when`, `until`, `changed_when`, `failed_when`.
    async fn run_item(
        self: &Arc<Self>,
        host: &str,
        task: &Task,
        scope: &HostScope,
        delegated: Option<&str>,
        _item: Option<&Value>,
    ) -> Map {
        let src = Self::src(scope);
        match self.first_false(&src, &task.attrs.when) {
            Ok(None) => {}
            Ok(Some(expr)) => {
                let mut r = Map::new();
                r.insert("changed".into(), Value::Bool(false));
                r.insert("false_condition".into(), Value::Str(expr));
                r.insert(
                    "skip_reason".into(),
                    Value::str("Conditional result was False"),
                );
                r.insert("skipped".into(), Value::Bool(true));
                return r;
            }
            Err(e) => return failed(e),
        }
        let retries = match &task.retries {
            Some(v) => match self.engine.templar.template(&src, v, "retries") {
                Ok(Value::Int(i)) => i.max(0) as u32,
                Ok(Value::Str(s)) => s.trim().parse().unwrap_or(3),
                _ => 3,
            },
            None => 3,
        };
        let delay = match &task.delay {
            Some(v) => match self.engine.templar.template(&src, v, "delay") {
                Ok(Value::Int(i)) => i.max(0) as f64,
                Ok(Value::Float(f)) => f.max(0.0),
                Ok(Value::Str(s)) => s.trim().parse().unwrap_or(5.0),
                _ => 5.0,
            },
            None => 5.0,
        };
        // ansible-core 2.17 makes `retries` attempts in all (at least one)
        let attempts_max = if task.until.is_empty() {
            1
        } else {
            retries.max(1)
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut r = self.dispatch(host, task, scope, delegated).await;
            if flag(&r, "unreachable") {
                return r;
            }
            // changed_when / failed_when / until see the result under the register name
            let judged = match &task.register {
                Some(reg) => scope.with_layer(
                    "registered result",
                    Map::from_iter([(reg.clone(), Value::Map(r.clone()))]),
                ),
                None => scope.clone(),
            };
            let jsrc = Self::src(&judged);
            if !task.changed_when.is_empty() && !flag(&r, "skipped") {
                match self.first_false(&jsrc, &task.changed_when) {
                    Ok(f) => {
                        r.insert("changed".into(), Value::Bool(f.is_none()));
                    }
                    Err(e) => return failed(e),
                }
            }
            if !task.failed_when.is_empty() && !flag(&r, "skipped") {
                match self.first_false(&jsrc, &task.failed_when) {
                    Ok(f) => {
                        let fail = f.is_none();
                        r.insert("failed_when_result".into(), Value::Bool(fail));
                        if fail {
                            r.insert("failed".into(), Value::Bool(true));
                        } else {
                            r.shift_remove("failed");
                        }
                    }
                    Err(e) => return failed(e),
                }
            }
            if task.until.is_empty() {
                return r;
            }
            let done = match self.first_false(&jsrc, &task.until) {
                Ok(f) => f.is_none(),
                Err(e) => return failed(e),
            };
            r.insert("attempts".into(), Value::Int(attempt as i64));
            if done {
                r.shift_remove("failed");
                return r;
            }
            if attempt >= attempts_max {
                r.insert("failed".into(), Value::Bool(true));
                return r;
            }
            self.engine.sink.warning(&format!(
                "{host}: FAILED - RETRYING: [{host}]: {} ({} retries left).",
                task.display_name(),
                attempts_max - attempt
            ));
            tokio::time::sleep(std::time::Duration::from_secs_f64(delay)).await;
        }
    }

    /// Template the arguments and run the action.
    async fn dispatch(
        self: &Arc<Self>,
        host: &str,
        task: &Task,
        scope: &HostScope,
        delegated: Option<&str>,
    ) -> Map {
        let src = Self::src(scope);
        let args = match self.engine.templar.template(
            &src,
            &Value::Map(task.args.clone()),
            &task.pos.to_string(),
        ) {
            Ok(v) => remove_omit(v, crate::template::omit_placeholder()),
            Err(e) => return failed(e.to_string()),
        };
        let args = match args {
            Some(Value::Map(m)) => m,
            _ => Map::new(),
        };
        self.engine.redactor.learn(&Value::Map(args.clone()));
        let check = match &task.attrs.check_mode {
            Some(v) => self.keyword_in(&src, v).unwrap_or(self.engine.opts.check),
            None => self.engine.opts.check,
        };
        let diff = match &task.attrs.diff {
            Some(v) => self.keyword_in(&src, v).unwrap_or(self.engine.opts.diff),
            None => self.engine.opts.diff,
        };
        let short = task.short_action();
        let is_engine_action = crate::playbook::load::ENGINE_ACTIONS.contains(&short)
            && (task.action == short
                || task.action.starts_with("ansible.builtin.")
                || task.action.starts_with("ansible.legacy."));
        if is_engine_action && short != "template" {
            return super::actions::run(self, host, task, short, args, scope, check)
                .await
                .unwrap_or_else(failed);
        }
        let ctx = match self
            .module_ctx(host, task, scope, delegated, check, diff)
            .await
        {
            Ok(c) => c,
            Err(r) => return r,
        };
        if short == "template" && is_engine_action {
            return super::actions::template(self, task, args, scope, &ctx)
                .await
                .unwrap_or_else(failed);
        }
        let Some(module) = crate::modules::lookup(&task.action)
            .or_else(|| crate::modules::lookup(&format!("ansible.builtin.{short}")))
        else {
            return failed(format!("kiln has no module named {}", task.action));
        };
        module_result(module.run(&args, &ctx).await, check)
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
    ) -> Result<Ctx, Map> {
        let src = Self::src(scope);
        let become_ = match &task.attrs.become_ {
            Some(v) => self.keyword_in(&src, v).map_err(failed)?,
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
                    .map_err(|e| failed(e.to_string()))?,
                None => match src.raw("ansible_become_user") {
                    Some(v) => self
                        .engine
                        .templar
                        .template(&src, &v, "ansible_become_user")
                        .map_err(|e| failed(e.to_string()))?,
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
        let vars: Arc<dyn VarSource> = if target == host {
            src.clone()
        } else {
            match self.engine.run.host_scope(target) {
                Ok(s) => Arc::new(s),
                Err(_) => src.clone(),
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
                let mut r = if e.is_unreachable() {
                    let mut r = Map::new();
                    r.insert("unreachable".into(), Value::Bool(true));
                    r.insert("changed".into(), Value::Bool(false));
                    r
                } else {
                    let mut r = Map::new();
                    r.insert("failed".into(), Value::Bool(true));
                    r.insert("changed".into(), Value::Bool(false));
                    r
                };
                r.insert("msg".into(), Value::Str(e.to_string()));
                r
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
                Ok(_) => return Err(failed("environment must be a mapping")),
                Err(e) => return Err(failed(e.to_string())),
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

    /// `include_tasks` / `include_role`: load the tasks (once per distinct file and vars) for
    /// the host's cursor.
    async fn include(
        self: &Arc<Self>,
        host: &str,
        task: &Arc<Task>,
        name: &str,
        scope: &HostScope,
        no_log: bool,
    ) -> Exec {
        let src = Self::src(scope);
        match self.first_false(&src, &task.attrs.when) {
            Ok(None) => {}
            Ok(Some(expr)) => {
                let mut r = Map::new();
                r.insert("changed".into(), Value::Bool(false));
                r.insert("false_condition".into(), Value::Str(expr));
                r.insert(
                    "skip_reason".into(),
                    Value::str("Conditional result was False"),
                );
                r.insert("skipped".into(), Value::Bool(true));
                return self.finish(host, task, name, r, no_log, None);
            }
            Err(e) => return self.finish(host, task, name, failed(e), no_log, None),
        }
        let items: Vec<Option<Value>> = match &task.looping {
            None => vec![None],
            Some(lp) => match loops::items(&self.engine.templar, &src, lp, &task.pos.to_string()) {
                Ok(i) => i.into_iter().map(Some).collect(),
                Err(e) => return self.finish(host, task, name, failed(e), no_log, None),
            },
        };
        let loop_var = task
            .loop_control
            .loop_var
            .clone()
            .unwrap_or_else(|| "item".into());
        let mut all = Vec::new();
        for item in items {
            let iscope = match &item {
                Some(i) => {
                    scope.with_layer("loop item", Map::from_iter([(loop_var.clone(), i.clone())]))
                }
                None => scope.clone(),
            };
            let isrc = Self::src(&iscope);
            let args = match self.engine.templar.template(
                &isrc,
                &Value::Map(task.args.clone()),
                &task.pos.to_string(),
            ) {
                Ok(Value::Map(m)) => m,
                Ok(_) => Map::new(),
                Err(e) => {
                    return self.finish(host, task, name, failed(e.to_string()), no_log, None)
                }
            };
            // the included tasks inherit the include's surroundings, not its own when/tags
            let mut attrs = task.attrs.clone();
            attrs
                .when
                .truncate(attrs.when.len().saturating_sub(task.own_when));
            attrs.tags.retain(|t| !task.own_tags.contains(t));
            if let Some(i) = &item {
                attrs.vars.push((
                    "loop item".into(),
                    Arc::new(Map::from_iter([(loop_var.clone(), i.clone())])),
                ));
            }
            if let Some(Value::Map(apply)) = args.get("apply") {
                if let Some(t) = apply.get("tags") {
                    for t in crate::playbook::load::tag_list(t) {
                        if !attrs.tags.contains(&t) {
                            attrs.tags.push(t);
                        }
                    }
                }
                if let Some(b) = apply.get("become") {
                    attrs.become_ = Some(b.clone());
                }
                if let Some(b) = apply.get("become_user") {
                    attrs.become_user = Some(b.clone());
                }
            }
            let key = format!(
                "{}|{}|{}",
                task.id,
                Value::Map(args.clone()).to_json(false),
                item.as_ref()
                    .map(|i| i.to_json(false).to_string())
                    .unwrap_or_default()
            );
            // hosts including the same thing share one load (same task ids: same rounds)
            let mut cache = self.include_cache.lock().await;
            let loaded = match cache.get(&key) {
                Some(hit) => Ok(hit.clone()),
                None => {
                    let mut shown = String::new();
                    self.load_include(task, &args, &attrs, &mut shown)
                        .await
                        .map(|items| (shown, items))
                }
            };
            match loaded {
                Ok((file, items)) => {
                    cache.insert(key, (file.clone(), items.clone()));
                    let label = item.as_ref().map(|i| {
                        if no_log {
                            "None".to_string()
                        } else {
                            crate::template::py_str_value(i)
                        }
                    });
                    all.push(Included {
                        file,
                        item: label,
                        items,
                    });
                }
                Err(e) => return self.finish(host, task, name, failed(e), no_log, None),
            }
        }
        if all.is_empty() {
            // an include looping over nothing
            let mut r = Map::new();
            r.insert("changed".into(), Value::Bool(false));
            r.insert("skipped".into(), Value::Bool(true));
            r.insert("skipped_reason".into(), Value::str("No items in the list"));
            return self.finish(host, task, name, r, no_log, None);
        }
        let mut e = Exec::from_result(Map::new(), Status::Ok);
        e.include = Some(all);
        e
    }

    async fn load_include(
        &self,
        task: &Arc<Task>,
        args: &Map,
        attrs: &crate::playbook::Attrs,
        shown: &mut String,
    ) -> Result<Vec<Item>, String> {
        let loader = self.engine.loader.clone();
        let dir = std::path::Path::new(&*task.pos.file)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let mut attrs = attrs.clone();
        match task.short_action() {
            "include_tasks" => {
                let file = args
                    .get("_raw_params")
                    .or_else(|| args.get("file"))
                    .map(crate::template::py_str_value)
                    .ok_or_else(|| format!("{}: include_tasks needs a file name", task.pos))?;
                crate::playbook::load::push_params(
                    &mut attrs,
                    args,
                    &["_raw_params", "file"],
                    "include params",
                );
                let path = loader.resolve_tasks_file(&file, &attrs, &dir);
                *shown = path.display().to_string();
                loader
                    .tasks_file(&path, &attrs)
                    .map_err(|e| format!("{}: {e}", task.pos))
            }
            _ => {
                let role = args
                    .get("name")
                    .map(crate::template::py_str_value)
                    .ok_or_else(|| format!("{}: include_role needs `name:`", task.pos))?;
                let mut from = crate::playbook::load::RoleFrom::from_args(args);
                from.dynamic = true;
                if let Some(Value::Map(v)) = args.get("vars") {
                    attrs.vars.push(("role params".into(), Arc::new(v.clone())));
                }
                let loaded = loader
                    .role(&role, Map::new(), &attrs, &from, &task.pos, &dir)
                    .map_err(|e| e.to_string())?;
                self.add_handlers(loaded.handlers);
                *shown = role.clone();
                Ok(loaded.tasks)
            }
        }
    }
}

/// Ansible's loop result: `results`, with changed/failed/skipped summarised.
fn aggregate(results: Vec<Map>) -> Map {
    let mut r = Map::new();
    if results.is_empty() {
        r.insert("changed".into(), Value::Bool(false));
        r.insert("results".into(), Value::List(vec![]));
        r.insert("skipped".into(), Value::Bool(true));
        r.insert("skipped_reason".into(), Value::str("No items in the list"));
        return r;
    }
    let changed = results.iter().any(|x| flag(x, "changed"));
    let failed_any = results.iter().any(|x| flag(x, "failed"));
    let unreachable = results.iter().any(|x| flag(x, "unreachable"));
    let all_skipped = results.iter().all(|x| flag(x, "skipped"));
    r.insert("changed".into(), Value::Bool(changed));
    if unreachable {
        r.insert("unreachable".into(), Value::Bool(true));
    }
    if failed_any {
        r.insert("failed".into(), Value::Bool(true));
        r.insert("msg".into(), Value::str("One or more items failed"));
    } else if all_skipped {
        r.insert("skipped".into(), Value::Bool(true));
        r.insert("msg".into(), Value::str("All items skipped"));
    } else {
        r.insert("msg".into(), Value::str("All items completed"));
    }
    r.insert(
        "results".into(),
        Value::List(results.into_iter().map(Value::Map).collect()),
    );
    r
}

/// A `no_log` result as shown: Ansible's "censored" note and the status flags. A failure keeps
/// its `msg` (what went wrong), scrubbed of every secret the run has seen (plain, JSON-escaped,
/// base64 and URL-encoded forms), so a failed secret-bearing task still says why it failed.
fn censor(r: &Map, redactor: &super::output::Redactor) -> Map {
    let mut m = Map::new();
    m.insert("censored".into(), Value::str(CENSORED));
    for k in ["changed", "failed", "skipped", "unreachable"] {
        if let Some(v) = r.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    if r.get("failed").is_some_and(|v| v.is_truthy()) {
        if let Some(msg) = r.get("msg") {
            let text = crate::template::py_str_value(msg);
            m.insert("msg".into(), Value::Str(redactor.scrub(&text)));
        }
    }
    m
}

/// A module's outcome as Ansible's result dict.
fn module_result(r: Result<Option<crate::modules::Outcome>, ModuleError>, check: bool) -> Map {
    match r {
        Ok(Some(o)) => o.to_map(),
        Ok(None) => {
            let mut m = Map::new();
            m.insert("changed".into(), Value::Bool(false));
            m.insert(
                "msg".into(),
                Value::str(if check {
                    "Command would have run if not in check mode"
                } else {
                    "skipped"
                }),
            );
            m.insert("skipped".into(), Value::Bool(true));
            m
        }
        Err(ModuleError::Transport(e)) if e.is_unreachable() => {
            let mut m = Map::new();
            m.insert("unreachable".into(), Value::Bool(true));
            m.insert("changed".into(), Value::Bool(false));
            m.insert("msg".into(), Value::Str(e.to_string()));
            m
        }
        Err(e) => failed(e.to_string()),
    }
}
