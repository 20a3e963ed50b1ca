//! One task on one host: variables, condition, loop, action, and what the result means.
//!
//! The host's scope is built per task in Ansible's precedence (role defaults < inventory < facts
//! < play vars < vars_files < role vars < block vars < task vars < set_fact/register < extra vars).
//! Then `when` (per item when looping), the action — a module through the host's agent session,
//! or an engine action (`actions.rs`), or an include (`includes.rs`) — `until`/`retries`,
//! `changed_when`/`failed_when` (which see the result under the `register` name), registration,
//! and `no_log` censoring of what is shown. Results are [`TaskResult`]s throughout; they become
//! Ansible's dict only where they are registered or shown.

use super::includes::{self, Included};
use super::loops;
use super::output::{ResultEvent, Status};
use super::result::TaskResult;
use super::state::PlayRun;
use crate::config::vars::HostScope;
use crate::modules::ModuleError;
use crate::playbook::Task;
use crate::value::{Map, Value};
use std::sync::Arc;

/// A task's outcome on one host, as the strategy needs it.
#[derive(Clone, Debug)]
pub struct Exec {
    pub status: Status,
    /// The result said `changed` (an ignored failure that changed something counts as changed).
    pub changed: bool,
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
    /// A result decided by the strategy itself (`meta`, a vars_files error), not by a task run.
    pub fn from_result(r: TaskResult) -> Exec {
        let status = r.status();
        Exec {
            status,
            changed: r.changed,
            ignored: false,
            fatal: matches!(status, Status::Failed | Status::Unreachable),
            changed_any: status == Status::Changed,
            notify: vec![],
            include: None,
            registered: None,
            shown: r.to_map(),
        }
    }

    /// An include that brought in these files: ok, nothing shown yet (the `included:` lines are).
    fn included(all: Vec<Included>) -> Exec {
        let mut e = Exec::from_result(TaskResult::default());
        e.include = Some(all);
        e
    }
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

/// One task on one host.
pub struct TaskRun<'a> {
    play: &'a Arc<PlayRun>,
    host: &'a str,
    task: &'a Arc<Task>,
    /// The task's name as shown (templated by the strategy).
    name: &'a str,
}

impl<'a> TaskRun<'a> {
    pub fn new(play: &'a Arc<PlayRun>, host: &'a str, task: &'a Arc<Task>, name: &'a str) -> Self {
        TaskRun {
            play,
            host,
            task,
            name,
        }
    }

    /// Run the task on one host; result events are emitted here.
    pub async fn exec(&self) -> Exec {
        let (play, host, task, name) = (self.play, self.host, self.task, self.name);
        let scope = match play.scope(host, task) {
            Ok(s) => s,
            Err(e) => return self.finish(TaskResult::failed(e), false, None),
        };
        let src = PlayRun::src(&scope);
        let no_log = task
            .attrs
            .no_log
            .as_ref()
            .map(|v| play.keyword_in(&src, v).unwrap_or(true))
            .unwrap_or(false);
        let delegated = match &task.attrs.delegate_to {
            Some(d) => match play.engine.templar.template(&src, d, &task.pos.to_string()) {
                Ok(v) => Some(crate::template::py_str_value(&v)),
                Err(e) => return self.finish(TaskResult::failed(e.to_string()), no_log, None),
            },
            None => None,
        };
        let short = task.short_action();
        if matches!(short, "include_tasks" | "include_role") {
            return match includes::include(play, task, &scope, no_log).await {
                Ok(all) => Exec::included(all),
                Err(r) => self.finish(r, no_log, None),
            };
        }
        let result = match &task.looping {
            None => self.run_item(&scope, delegated.as_deref()).await,
            Some(lp) => {
                let items =
                    match loops::items(&play.engine.templar, &src, lp, &task.pos.to_string()) {
                        Ok(i) => i,
                        Err(e) => {
                            return self.finish(TaskResult::failed(e), no_log, delegated.as_deref())
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
                    let mut r = self.run_item(&item_scope, delegated.as_deref()).await;
                    r.insert(loop_var.clone(), item.clone());
                    r.insert("ansible_loop_var", Value::Str(loop_var.clone()));
                    if let Some(iv) = &task.loop_control.index_var {
                        r.insert(iv.clone(), Value::Int(i as i64));
                        r.insert("ansible_index_var", Value::Str(iv.clone()));
                    }
                    let label = match &task.loop_control.label {
                        Some(l) => {
                            let v = play
                                .engine
                                .templar
                                .template(&PlayRun::src(&item_scope), l, "loop_control.label")
                                .unwrap_or_else(|_| l.clone());
                            r.insert("_ansible_item_label", v.clone());
                            crate::template::py_str_value(&v)
                        }
                        None => crate::template::py_str_value(&item),
                    };
                    let shown = if no_log { r.censored() } else { r.to_map() };
                    let label = if no_log { "None".to_string() } else { label };
                    play.engine.sink.item_result(&ResultEvent {
                        host,
                        task: name,
                        action: &task.action,
                        status: r.status(),
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
                TaskResult::aggregate(results)
            }
        };
        // facts from set_fact / setup / include_vars
        if let Some(Value::Map(f)) = result.get("ansible_facts") {
            play.engine.redactor.learn_vars(f, &play.engine.run.keyring);
        }
        self.apply_facts(&result.to_map());
        self.finish(result, no_log, delegated.as_deref())
    }

    fn apply_facts(&self, r: &Map) {
        let (play, host, task) = (self.play, self.host, self.task);
        let flag = |r: &Map, k: &str| r.get(k).is_some_and(|v| v.is_truthy());
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
                    play.engine.run.set_runtime(host, f.clone());
                    if flag(one, "_ansible_facts_cacheable") {
                        play.engine.run.add_facts(host, f.clone());
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
                    play.engine.run.add_facts(host, facts);
                }
            }
        }
    }

    /// Register, judge, show: the common end of every task on a host.
    fn finish(&self, result: TaskResult, no_log: bool, delegated: Option<&str>) -> Exec {
        let (play, host, task, name) = (self.play, self.host, self.task, self.name);
        let status = result.status();
        let dict = result.to_map();
        let mut registered = None;
        if let Some(reg) = &task.register {
            let mut r = dict.clone();
            r.shift_remove("_ansible_verbose_always");
            r.shift_remove("_ansible_facts_cacheable");
            play.engine
                .run
                .set_runtime(host, Map::from_iter([(reg.clone(), Value::Map(r.clone()))]));
            registered = Some(r);
        }
        let ignored = match status {
            Status::Failed => {
                play.keyword_bool(host, task, task.attrs.ignore_errors.as_ref(), false)
            }
            Status::Unreachable => {
                play.keyword_bool(host, task, task.attrs.ignore_unreachable.as_ref(), false)
            }
            _ => false,
        };
        let shown = if no_log { result.censored() } else { dict };
        play.engine.sink.task_result(&ResultEvent {
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
            || matches!(result.get("results"), Some(Value::List(l)) if l.iter().any(|r| r.as_map().is_some_and(|m| m.get("changed").is_some_and(|v| v.is_truthy()))));
        let notify = if changed_any && !task.notify.is_empty() {
            play.notify_names(host, task)
        } else {
            vec![]
        };
        Exec {
            status,
            changed: result.changed,
            ignored,
            fatal: matches!(status, Status::Failed | Status::Unreachable) && !ignored,
            changed_any,
            notify,
            include: None,
            registered,
            shown,
        }
    }

    /// One run of the action (one loop item), with `when`, `until`, `changed_when`, `failed_when`.
    async fn run_item(&self, scope: &HostScope, delegated: Option<&str>) -> TaskResult {
        let (play, host, task) = (self.play, self.host, self.task);
        let src = PlayRun::src(scope);
        match play.first_false(&src, &task.attrs.when) {
            Ok(None) => {}
            Ok(Some(expr)) => return TaskResult::skipped_by(expr),
            Err(e) => return TaskResult::failed(e),
        }
        let retries = match &task.retries {
            Some(v) => match play.engine.templar.template(&src, v, "retries") {
                Ok(Value::Int(i)) => i.max(0) as u32,
                Ok(Value::Str(s)) => s.trim().parse().unwrap_or(3),
                _ => 3,
            },
            None => 3,
        };
        let delay = match &task.delay {
            Some(v) => match play.engine.templar.template(&src, v, "delay") {
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
            let mut r = self.dispatch(scope, delegated).await;
            if r.unreachable {
                return r;
            }
            // changed_when / failed_when / until see the result under the register name
            let judged = match &task.register {
                Some(reg) => scope.with_layer(
                    "registered result",
                    Map::from_iter([(reg.clone(), Value::Map(r.to_map()))]),
                ),
                None => scope.clone(),
            };
            let jsrc = PlayRun::src(&judged);
            if !task.changed_when.is_empty() && !r.skipped {
                match play.first_false(&jsrc, &task.changed_when) {
                    Ok(f) => r.set_changed(f.is_none()),
                    Err(e) => return TaskResult::failed(e),
                }
            }
            if !task.failed_when.is_empty() && !r.skipped {
                match play.first_false(&jsrc, &task.failed_when) {
                    Ok(f) => {
                        let fail = f.is_none();
                        r.insert("failed_when_result", Value::Bool(fail));
                        r.failed = fail;
                    }
                    Err(e) => return TaskResult::failed(e),
                }
            }
            if task.until.is_empty() {
                return r;
            }
            let done = match play.first_false(&jsrc, &task.until) {
                Ok(f) => f.is_none(),
                Err(e) => return TaskResult::failed(e),
            };
            r.insert("attempts", Value::Int(attempt as i64));
            if done {
                r.failed = false;
                return r;
            }
            if attempt >= attempts_max {
                r.failed = true;
                return r;
            }
            play.engine.sink.warning(&format!(
                "{host}: FAILED - RETRYING: [{host}]: {} ({} retries left).",
                task.display_name(),
                attempts_max - attempt
            ));
            tokio::time::sleep(std::time::Duration::from_secs_f64(delay)).await;
        }
    }

    /// Template the arguments and run the action.
    async fn dispatch(&self, scope: &HostScope, delegated: Option<&str>) -> TaskResult {
        let (play, host, task) = (self.play, self.host, self.task);
        let src = PlayRun::src(scope);
        let args = match play.engine.templar.template(
            &src,
            &Value::Map(task.args.clone()),
            &task.pos.to_string(),
        ) {
            Ok(v) => remove_omit(v, crate::template::omit_placeholder()),
            Err(e) => return TaskResult::failed(e.to_string()),
        };
        let args = match args {
            Some(Value::Map(m)) => m,
            _ => Map::new(),
        };
        play.engine.redactor.learn(&Value::Map(args.clone()));
        let check = match &task.attrs.check_mode {
            Some(v) => play.keyword_in(&src, v).unwrap_or(play.engine.opts.check),
            None => play.engine.opts.check,
        };
        let diff = match &task.attrs.diff {
            Some(v) => play.keyword_in(&src, v).unwrap_or(play.engine.opts.diff),
            None => play.engine.opts.diff,
        };
        let short = task.short_action();
        let is_engine_action = crate::playbook::load::ENGINE_ACTIONS.contains(&short)
            && (task.action == short
                || task.action.starts_with("ansible.builtin.")
                || task.action.starts_with("ansible.legacy."));
        let writes = matches!(short, "template" | "merge_configs" | "merge_yaml");
        if is_engine_action && !writes {
            return super::actions::run(play, host, task, short, args, scope, check)
                .await
                .unwrap_or_else(TaskResult::failed);
        }
        let ctx = match play
            .module_ctx(host, task, scope, delegated, check, diff)
            .await
        {
            Ok(c) => c,
            Err(r) => return r,
        };
        if short == "template" && is_engine_action {
            return super::actions::template(play, args, scope, &ctx)
                .await
                .unwrap_or_else(TaskResult::failed);
        }
        if is_engine_action && writes {
            return super::merge::run(play, short, args, scope, &ctx)
                .await
                .unwrap_or_else(TaskResult::failed);
        }
        let Some(module) = crate::modules::lookup(&task.action)
            .or_else(|| crate::modules::lookup(&format!("ansible.builtin.{short}")))
        else {
            return TaskResult::failed(format!("kiln has no module named {}", task.action));
        };
        module_result(module.run(&args, &ctx).await, check)
    }
}

/// A module's outcome as a task result.
fn module_result(
    r: Result<Option<crate::modules::Outcome>, ModuleError>,
    check: bool,
) -> TaskResult {
    match r {
        Ok(Some(o)) => TaskResult::from_map(o.to_map()),
        Ok(None) => TaskResult::skipped_with(
            "msg",
            if check {
                "Command would have run if not in check mode"
            } else {
                "skipped"
            },
        ),
        Err(ModuleError::Transport(e)) if e.is_unreachable() => {
            TaskResult::unreachable(e.to_string())
        }
        Err(e) => TaskResult::failed(e.to_string()),
    }
}
