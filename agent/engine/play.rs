//! One play: host selection, `serial` batches, facts, the linear and free strategies, handlers.
//!
//! Linear: each round, every active host's next task is looked at; the earliest task (tasks get
//! ids in load order) runs on every host that is at it, all at once (up to `forks`), and only
//! then does anyone move on — so output and side effects come in Ansible's order. Hosts inside a
//! rescue or an include simply sit at a different task and run in their own round. Free: each host
//! walks its own program as fast as it can. Both share the step that runs one task on a set of
//! hosts and applies the results (failures, includes, meta, notifications).

use super::cursor::Cursor;
use super::includes::Included;
use super::output::Status;
use super::result::TaskResult;
use super::state::{HostState, PlayRun};
use super::task::{Exec, TaskRun};
use super::Engine;
use crate::config::varsfile::read_vars_file;
use crate::playbook::{Item, Play, Task};
use crate::template::VarSource;
use crate::value::{Map, Value};
use indexmap::IndexSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Select the play's hosts and run it, batch by batch.
pub async fn run_play(engine: Arc<Engine>, play: Arc<Play>) {
    let pattern = match template_play_level(&engine, &play, &play.hosts) {
        Ok(v) => crate::template::py_str_value(&v),
        Err(e) => {
            engine.sink.warning(&format!("{}: hosts: {e}", play.pos));
            engine.stop();
            return;
        }
    };
    let mut hosts = match engine.run.inventory.select(&pattern) {
        Ok(h) => h,
        Err(e) => {
            engine.sink.warning(&e.to_string());
            vec![]
        }
    };
    if let Some(limit) = &engine.opts.limit {
        hosts = engine
            .run
            .inventory
            .limit(&hosts, limit)
            .unwrap_or_default();
    }
    match play.order.as_deref() {
        Some("reverse_inventory") => hosts.reverse(),
        Some("sorted") => hosts.sort(),
        Some("reverse_sorted") => {
            hosts.sort();
            hosts.reverse()
        }
        _ => {}
    }
    hosts.retain(|h| !engine.is_dead(h));
    let play_name = match template_play_level(&engine, &play, &Value::Str(play.name.clone())) {
        Ok(v) => crate::template::py_str_value(&v),
        Err(_) => play.name.clone(),
    };
    if hosts.is_empty() {
        engine.sink.play_start(&play_name, &hosts);
        engine.sink.warning("skipping: no hosts matched");
        return;
    }
    // Ansible prints the play header once per serial batch; unreachable hosts are listed but
    // not run on
    let free_started: Arc<Mutex<IndexSet<u64>>> = Arc::default();
    for listed in batches(&engine, &play, &hosts) {
        engine.sink.play_start(&play_name, &listed);
        let batch: Vec<String> = listed
            .into_iter()
            .filter(|h| !engine.is_unreachable(h))
            .collect();
        if batch.is_empty() {
            continue;
        }
        let mut run = PlayRun::new(engine.clone(), play.clone(), hosts.clone(), batch);
        run.free_started = free_started.clone();
        let run = Arc::new(run);
        run.run().await;
        if engine.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
    }
}

/// The play's keywords are templated with extra vars and play vars only (no host is chosen yet).
fn template_play_level(engine: &Engine, play: &Play, v: &Value) -> Result<Value, String> {
    let text = Value::Map(Map::from_iter([("v".to_string(), v.clone())]))
        .to_json(false)
        .to_string();
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(v.clone());
    }
    let scope = engine
        .run
        .host_scope("localhost")
        .map_err(|e| e.to_string())?
        .with_layer("play vars", (*play.vars).clone());
    let src: Arc<dyn VarSource> = Arc::new(scope);
    engine
        .templar
        .template(&src, v, &play.pos.to_string())
        .map_err(|e| e.to_string())
}

/// `serial`: a number, a percentage, or a list of them (the last repeats).
fn batches(engine: &Engine, play: &Play, hosts: &[String]) -> Vec<Vec<String>> {
    if play.serial.is_empty() {
        return vec![hosts.to_vec()];
    }
    let sizes: Vec<usize> = play
        .serial
        .iter()
        .map(|s| {
            let s = template_play_level(engine, play, s).unwrap_or(s.clone());
            let n = match &s {
                Value::Int(i) => *i as f64,
                Value::Str(t) if t.trim().ends_with('%') => {
                    let pct: f64 = t.trim().trim_end_matches('%').parse().unwrap_or(100.0);
                    (hosts.len() as f64 * pct / 100.0).floor()
                }
                Value::Str(t) => t.trim().parse().unwrap_or(0.0),
                _ => 0.0,
            };
            if n <= 0.0 {
                hosts.len()
            } else {
                (n as usize).max(1)
            }
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < hosts.len() {
        let size = sizes[k.min(sizes.len() - 1)];
        out.push(hosts[i..(i + size).min(hosts.len())].to_vec());
        i += size;
        k += 1;
    }
    out
}

impl PlayRun {
    async fn run(self: Arc<Self>) {
        // vars_files are read per host (their names may use host variables)
        let mut vf = HashMap::new();
        let mut bad = Vec::new();
        for h in &self.batch {
            match self.load_vars_files(h) {
                Ok(m) => {
                    self.engine
                        .redactor
                        .learn_vars(&m, &self.engine.run.keyring);
                    vf.insert(h.clone(), Arc::new(m));
                }
                Err(e) => bad.push((h.clone(), e)),
            }
        }
        // safe: nothing else holds the Arc yet
        let me = match Arc::try_unwrap(self) {
            Ok(mut me) => {
                me.vars_files = vf;
                Arc::new(me)
            }
            Err(me) => me,
        };
        {
            // one gather task for all hosts, so the linear strategy runs it as one round
            let gather = me.gather_task();
            let mut st = me.state.lock().unwrap_or_else(|e| e.into_inner());
            for h in &me.batch {
                let mut items = Vec::new();
                if let Some(g) = &gather {
                    items.push(Item::Task(g.clone()));
                }
                items.extend(me.play.items.iter().cloned());
                st.insert(
                    h.clone(),
                    HostState {
                        cursor: Cursor::new(items),
                        notified: IndexSet::new(),
                        out: false,
                    },
                );
            }
        }
        for (h, e) in bad {
            let r = TaskResult::failed_bare(e).to_map();
            me.engine.sink.task_result(&super::output::ResultEvent {
                host: &h,
                task: "vars_files",
                action: "include_vars",
                status: Status::Failed,
                ignored: false,
                result: &r,
                delegated: None,
                item: None,
            });
            me.engine.count(&h, |s| s.failed += 1);
            me.host_out(&h, true);
        }
        if me.play.strategy == "free" {
            me.clone().free().await;
        } else {
            me.clone().linear().await;
        }
    }

    fn load_vars_files(&self, host: &str) -> Result<Map, String> {
        let mut out = Map::new();
        if self.play.vars_files.is_empty() {
            return Ok(out);
        }
        let scope = self
            .engine
            .run
            .host_scope(host)
            .map_err(|e| e.to_string())?
            .with_layer("play vars", (*self.play.vars).clone());
        let src: Arc<dyn VarSource> = Arc::new(scope);
        for entry in &self.play.vars_files {
            let candidates = match entry {
                Value::List(l) => l.clone(),
                v => vec![v.clone()],
            };
            let mut found = false;
            let mut tried = Vec::new();
            for c in &candidates {
                let name = self
                    .engine
                    .templar
                    .template(&src, c, &format!("{}: vars_files", self.play.pos))
                    .map_err(|e| e.to_string())?;
                let name = crate::template::py_str_value(&name);
                let path = self.play.basedir.join(&name);
                if path.is_file() {
                    match read_vars_file(&path, &self.engine.run.keyring)
                        .map_err(|e| e.to_string())?
                    {
                        Value::Map(m) => out.extend(m),
                        Value::Null => {}
                        _ => {
                            return Err(format!("{}: vars file must be a mapping", path.display()))
                        }
                    }
                    found = true;
                    break;
                }
                tried.push(path.display().to_string());
            }
            if !found {
                return Err(format!(
                    "{}: vars file not found: {}",
                    self.play.pos,
                    tried.join(", ")
                ));
            }
        }
        Ok(out)
    }

    /// The implicit "Gathering Facts" task, unless the play turned it off.
    fn gather_task(&self) -> Option<Arc<Task>> {
        let gather = match &self.play.gather_facts {
            None => std::env::var("ANSIBLE_GATHERING")
                .map(|g| g != "explicit")
                .unwrap_or(true),
            Some(Value::Bool(b)) => *b,
            Some(Value::Str(s)) => matches!(s.to_ascii_lowercase().as_str(), "yes" | "true" | "on"),
            Some(v) => v.is_truthy(),
        };
        if !gather {
            return None;
        }
        let mut args = Map::new();
        if let Some(s) = &self.play.gather_subset {
            args.insert("gather_subset".into(), s.clone());
        }
        let mut attrs = self.play.attrs.clone();
        attrs.tags = vec!["always".into()];
        attrs.when.clear();
        Some(Arc::new(Task {
            id: 0,
            name: Some("Gathering Facts".into()),
            action: "gather_facts".into(),
            args,
            pos: self.play.pos.clone(),
            attrs,
            looping: None,
            loop_control: Default::default(),
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

    async fn linear(self: Arc<Self>) {
        loop {
            if self.aborted() {
                break;
            }
            let mut next: Vec<(String, Arc<Task>)> = Vec::new();
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                for h in &self.batch {
                    if let Some(s) = st.get_mut(h) {
                        if s.out {
                            continue;
                        }
                        match s.cursor.peek(&*self.engine) {
                            Some(t) => next.push((h.clone(), t)),
                            None => {
                                if s.cursor.failed {
                                    s.out = true;
                                }
                            }
                        }
                    }
                }
            }
            let Some(task) = next.iter().map(|(_, t)| t).min_by_key(|t| t.id).cloned() else {
                break;
            };
            let hosts: Vec<String> = next
                .iter()
                .filter(|(_, t)| Arc::ptr_eq(t, &task))
                .map(|(h, _)| h.clone())
                .collect();
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                for h in &hosts {
                    if let Some(s) = st.get_mut(h) {
                        s.cursor.take();
                    }
                }
            }
            self.clone().step(&hosts, &task, false).await;
            if self.active().is_empty() && !self.aborted() {
                self.finish_no_hosts();
                return;
            }
        }
    }

    /// Every host of the batch failed: Ansible stops the whole run.
    fn finish_no_hosts(&self) {
        let any_ok = {
            let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.values().any(|s| !s.out || !s.cursor.failed)
        };
        let failed_all = self.batch.iter().all(|h| self.engine.is_dead(h));
        if failed_all || !any_ok {
            self.engine.sink.no_more_hosts();
            self.engine.stop();
        }
    }

    async fn free(self: Arc<Self>) {
        let started = self.free_started.clone();
        let sem = Arc::new(tokio::sync::Semaphore::new(self.engine.opts.forks.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for h in self.batch.clone() {
            let me = self.clone();
            let started = started.clone();
            let sem = sem.clone();
            set.spawn(async move {
                loop {
                    if me.aborted() {
                        return;
                    }
                    let task = {
                        let mut st = me.state.lock().unwrap_or_else(|e| e.into_inner());
                        let Some(s) = st.get_mut(&h) else { return };
                        if s.out {
                            return;
                        }
                        match s.cursor.peek(&*me.engine) {
                            Some(t) => {
                                s.cursor.take();
                                t
                            }
                            None => return,
                        }
                    };
                    let first = started
                        .lock()
                        .map(|mut s| s.insert(task.id))
                        .unwrap_or(true);
                    let _permit = sem.acquire().await;
                    me.clone().step_free(&h, &task, first).await;
                }
            });
        }
        while set.join_next().await.is_some() {}
        if self.active().is_empty() {
            self.finish_no_hosts();
        }
    }

    async fn step_free(self: Arc<Self>, host: &str, task: &Arc<Task>, print_header: bool) {
        self.step_inner(&[host.to_string()], task, false, print_header)
            .await;
    }

    /// Run one task on `hosts` (all at it) and apply the results.
    pub fn step<'a>(
        self: Arc<Self>,
        hosts: &'a [String],
        task: &'a Arc<Task>,
        handler: bool,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(self.step_inner(hosts, task, handler, true))
    }

    async fn step_inner(
        self: Arc<Self>,
        hosts: &[String],
        task: &Arc<Task>,
        handler: bool,
        print_header: bool,
    ) {
        let short = task.short_action();
        // meta tasks act on the play, not on hosts
        if short == "meta" {
            self.meta(hosts, task).await;
            return;
        }
        let name = self.task_name(task, hosts);
        if print_header {
            self.engine
                .sink
                .task_start(&name, &task.action, &task.pos.to_string(), handler);
        }
        let run_once = {
            let first = hosts.first().cloned().unwrap_or_default();
            self.keyword_bool(&first, task, task.attrs.run_once.as_ref(), false)
        };
        let targets: Vec<String> = if run_once {
            hosts.iter().take(1).cloned().collect()
        } else {
            hosts.to_vec()
        };
        let sem = Arc::new(tokio::sync::Semaphore::new(self.engine.opts.forks.max(1)));
        let mut futs = futures::stream::FuturesOrdered::new();
        for h in targets.iter().cloned() {
            let me = self.clone();
            let task = task.clone();
            let sem = sem.clone();
            let name = name.clone();
            futs.push_back(tokio::spawn(async move {
                let _p = sem.acquire().await;
                let e = TaskRun::new(&me, &h, &task, &name).exec().await;
                (h, e)
            }));
        }
        use futures::StreamExt;
        let mut results: Vec<(String, Exec)> = Vec::new();
        while let Some(r) = futs.next().await {
            match r {
                Ok(x) => results.push(x),
                Err(e) => self.engine.sink.warning(&format!("a task panicked: {e}")),
            }
        }
        if run_once {
            // the one result applies to every host of the round (registered for all, too)
            if let Some((_, e)) = results.first() {
                let e = e.clone();
                for h in hosts.iter().skip(1) {
                    if let (Some(reg), Some(r)) = (&task.register, &e.registered) {
                        self.engine
                            .run
                            .set_runtime(h, Map::from_iter([(reg.clone(), Value::Map(r.clone()))]));
                    }
                    let _ = &e;
                }
            }
        }
        let mut includes: Vec<(String, Included)> = Vec::new();
        for (h, e) in &results {
            self.apply_result(h, task, e, handler);
            for inc in e.include.iter().flatten() {
                includes.push((h.clone(), inc.clone()));
            }
        }
        // one `included:` line per file and item, naming every host that included it
        let mut lines: IndexSet<(String, Option<String>)> = IndexSet::new();
        for (_, inc) in &includes {
            lines.insert((inc.file.clone(), inc.item.clone()));
        }
        for (file, item) in lines {
            let hs: Vec<String> = includes
                .iter()
                .filter(|(_, i)| i.file == file && i.item == item)
                .map(|(h, _)| h.clone())
                .collect();
            self.engine.sink.included(&file, item.as_deref(), &hs);
        }
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for h in hosts {
                let mine: Vec<Item> = includes
                    .iter()
                    .filter(|(x, _)| x == h)
                    .flat_map(|(_, i)| i.items.iter().cloned())
                    .collect();
                if !mine.is_empty() {
                    if let Some(s) = st.get_mut(h) {
                        s.cursor.push(mine);
                    }
                }
            }
        }
        // any_errors_fatal / max_fail_percentage
        let fatal = self.play.any_errors_fatal
            || task
                .attrs
                .any_errors_fatal
                .as_ref()
                .is_some_and(Value::is_keyword_true);
        let failed_now = results.iter().any(|(_, e)| e.fatal);
        if fatal && failed_now {
            self.abort_play();
        }
        if let Some(pct) = self.play.max_fail_percentage {
            let failed = self.failed_in_batch.lock().map(|f| f.len()).unwrap_or(0);
            if self.batch.is_empty() {
                return;
            }
            if (failed as f64) * 100.0 / (self.batch.len() as f64) > pct {
                self.abort_play();
            }
        }
    }

    fn abort_play(&self) {
        self.abort.store(true, std::sync::atomic::Ordering::SeqCst);
        self.engine.sink.no_more_hosts();
        self.engine.stop();
    }

    /// Task name with its templated parts (Ansible templates names with play-level vars).
    fn task_name(&self, task: &Task, hosts: &[String]) -> String {
        let raw = task.display_name();
        if !raw.contains("{{") {
            return raw;
        }
        let Some(h) = hosts.first() else { return raw };
        match self.scope(h, task) {
            Ok(s) => {
                let src: Arc<dyn VarSource> = Arc::new(s);
                self.engine
                    .templar
                    .template(&src, &Value::Str(raw.clone()), "task name")
                    .map(|v| crate::template::py_str_value(&v))
                    .unwrap_or(raw)
            }
            Err(_) => raw,
        }
    }

    /// Count the result, move the host's cursor, remember notifications.
    fn apply_result(&self, host: &str, task: &Arc<Task>, e: &Exec, handler: bool) {
        let status = e.status;
        // an include counts once per file it included (per loop item)
        let oks = e.include.as_ref().map(|i| i.len() as u32).unwrap_or(1);
        self.engine.count(host, |s| match status {
            Status::Ok => s.ok += oks,
            Status::Changed => {
                s.ok += 1;
                s.changed += 1
            }
            Status::Skipped => s.skipped += 1,
            Status::Failed if e.ignored => {
                s.ok += 1;
                s.ignored += 1;
                // Ansible counts an ignored failure that changed something as changed too
                if e.changed {
                    s.changed += 1;
                }
            }
            Status::Failed => s.failed += 1,
            Status::Unreachable if e.ignored => {
                s.ok += 1;
                s.ignored += 1
            }
            Status::Unreachable => s.unreachable += 1,
        });
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = st.get_mut(host) else { return };
        if e.changed_any && !task.notify.is_empty() {
            for n in &e.notify {
                s.notified.insert(n.clone());
            }
        }
        if status == Status::Unreachable && !e.ignored {
            // out of this play; later plays list it but run nothing on it, as Ansible does
            s.out = true;
            s.cursor.end();
            self.engine.mark_unreachable(host);
            if let Ok(mut f) = self.failed_in_batch.lock() {
                f.insert(host.to_string());
            }
            return;
        }
        if e.fatal {
            if handler {
                s.out = true;
                s.cursor.end();
                self.engine.mark_dead(host);
                return;
            }
            let (goes_on, rescued) = s.cursor.fail_rescued();
            if goes_on {
                // what the rescue and always sections can read about the failure
                let mut t = Map::new();
                t.insert(
                    "name".into(),
                    Value::Str(task.name.clone().unwrap_or_default()),
                );
                t.insert("action".into(), Value::Str(task.action.clone()));
                t.insert("args".into(), Value::Map(task.args.clone()));
                let mut r =
                    TaskResult::from_map(e.registered.clone().unwrap_or_else(|| e.shown.clone()));
                r.failed = true;
                let r = r.to_map();
                self.engine.run.set_runtime(
                    host,
                    Map::from_iter([
                        ("ansible_failed_task".to_string(), Value::Map(t)),
                        ("ansible_failed_result".to_string(), Value::Map(r)),
                    ]),
                );
            }
            if rescued {
                drop(st);
                self.engine.count(host, |s| {
                    s.failed -= 1;
                    s.rescued += 1
                });
                return;
            }
            if !goes_on {
                s.out = true;
                self.engine.mark_dead(host);
                if let Ok(mut f) = self.failed_in_batch.lock() {
                    f.insert(host.to_string());
                }
            } else {
                // failure continues after an always section: the host is failed when it ends
                self.engine.mark_dead(host);
                if let Ok(mut f) = self.failed_in_batch.lock() {
                    f.insert(host.to_string());
                }
            }
        }
    }

    /// `meta:` — flush_handlers, end_play, end_host, end_batch, noop, clear_facts, ...
    async fn meta(self: &Arc<Self>, hosts: &[String], task: &Arc<Task>) {
        let what = task
            .args
            .get("_raw_params")
            .and_then(|v| v.as_str())
            .unwrap_or("noop")
            .trim()
            .to_string();
        // a conditional meta applies to the hosts whose condition holds; Ansible shows the
        // others as skipping (without counting them)
        let mut chosen = Vec::new();
        let name = self.task_name(task, hosts);
        if !task.attrs.when.is_empty() {
            self.engine
                .sink
                .task_start(&name, "meta", &task.pos.to_string(), false);
        }
        for h in hosts {
            match self.when_holds(h, task) {
                Ok(true) => chosen.push(h.clone()),
                Ok(false) => {
                    let r = TaskResult::skipped().to_map();
                    self.engine.sink.task_result(&super::output::ResultEvent {
                        host: h,
                        task: &name,
                        action: "meta",
                        status: Status::Skipped,
                        ignored: false,
                        result: &r,
                        delegated: None,
                        item: None,
                    });
                }
                Err(msg) => {
                    let e = Exec::from_result(TaskResult::failed_bare(msg));
                    self.apply_result(h, task, &e, false);
                }
            }
        }
        match what.as_str() {
            "flush_handlers" => self.clone().flush_handlers(&chosen).await,
            "end_play" => {
                if !chosen.is_empty() {
                    let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    drop(st);
                    for h in self.batch.clone() {
                        self.host_out(&h, false);
                    }
                    self.abort.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            "end_batch" => {
                for h in self.batch.clone() {
                    self.host_out(&h, false);
                }
            }
            "end_host" => {
                for h in &chosen {
                    self.host_out(h, false);
                }
            }
            "clear_host_errors" => {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                for s in st.values_mut() {
                    s.cursor.clear_failure();
                }
            }
            "clear_facts" => {
                for h in &chosen {
                    self.engine.run.clear_facts(h);
                }
            }
            "reset_connection" => {
                for h in &chosen {
                    self.engine.pool.close(Some(h)).await;
                }
            }
            "noop" | "refresh_inventory" => {}
            other => {
                for h in &chosen {
                    let e = Exec::from_result(TaskResult::failed_bare(format!(
                        "invalid meta action requested: {other}"
                    )));
                    self.engine.sink.task_result(&super::output::ResultEvent {
                        host: h,
                        task: "meta",
                        action: "meta",
                        status: Status::Failed,
                        ignored: false,
                        result: &e.shown,
                        delegated: None,
                        item: None,
                    });
                    self.apply_result(h, task, &e, false);
                }
            }
        }
    }

    /// Run the handlers notified on `hosts`, in the order the play lists them. A handler runs
    /// once per flush on a host where any of its names or topics was notified (one topic can
    /// start several handlers); handlers may notify later ones within the same flush.
    pub async fn flush_handlers(self: Arc<Self>, hosts: &[String]) {
        let mut i = 0;
        let mut consumed: Vec<(String, Vec<String>)> = Vec::new();
        loop {
            let handler = {
                let hs = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
                match hs.get(i) {
                    Some(h) => h.clone(),
                    None => break,
                }
            };
            i += 1;
            let names = self.handler_names(&handler);
            let mut run_on = Vec::new();
            {
                let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                for h in hosts {
                    if let Some(s) = st.get(h) {
                        if names.iter().any(|n| s.notified.contains(n)) {
                            consumed.push((h.clone(), names.clone()));
                            if !s.out || self.play.force_handlers || self.engine.opts.force_handlers
                            {
                                run_on.push(h.clone());
                            }
                        }
                    }
                }
            }
            if !run_on.is_empty() {
                self.clone().step(&run_on, &handler, true).await;
            }
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (h, names) in consumed {
            if let Some(s) = st.get_mut(&h) {
                for n in names {
                    s.notified.shift_remove(&n);
                }
            }
        }
    }

    /// The names a handler answers to: its name (plain and `role : name`) and its `listen` topics.
    fn handler_names(&self, h: &Task) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(n) = &h.name {
            v.push(n.clone());
            if let Some(r) = &h.attrs.role {
                v.push(format!("{} : {n}", r.name));
            }
        }
        v.extend(h.listen.iter().cloned());
        v
    }
}
