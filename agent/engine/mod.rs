//! Runs playbooks over hosts, as ansible-playbook does.
//!
//! [`Engine::run`] goes play by play: it selects the hosts (minus those that failed earlier),
//! splits them into `serial` batches, gathers facts, and hands the play's program to a strategy
//! (`play.rs`: linear — every host finishes a task before any starts the next — or free — with
//! handlers and `meta`). The play's shared data (hosts, cursors, handlers, variables) is in
//! `state.rs`. Each task on each host (`task.rs`) is templated in that host's variables, looped,
//! conditioned, sent to a module, an engine action (`actions.rs`) or an include (`includes.rs`),
//! and its typed result (`result.rs`) judged (`changed_when` / `failed_when` / `until`), then
//! registered and reported to the output sink (`output.rs`) as Ansible's dict.
//! Hosts are reached through one agent session per (host, become user) (`conn.rs`).
//!
//! Imports run one way: play → task → {actions, includes} → state → result.

pub mod actions;
pub mod conn;
pub mod cursor;
pub mod includes;
pub mod loops;
pub mod merge;
pub mod output;
pub mod play;
pub mod result;
pub mod state;
pub mod tags;
pub mod task;

use crate::config::vars::RunVars;
use crate::playbook::{Loader, Playbook};
use crate::template::Templar;
use crate::transport::TransportOptions;
use indexmap::IndexMap;
use output::{HostStats, Redactor, Sink};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// ansible-playbook's exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    pub const HOST_FAILED: i32 = 2;
    /// ansible-core 2.16/2.17 return 4 (not the documented 3), also when some host failed too.
    pub const UNREACHABLE: i32 = 4;
    pub const PARSE_ERROR: i32 = 4;
    pub const BAD_OPTIONS: i32 = 5;
    pub const INTERRUPTED: i32 = 99;

    /// The exit code of a run stopped by `sig`: ansible-playbook's 99 for Ctrl-C, the shell's
    /// 128 + N for SIGTERM and SIGHUP (a schedule's history records the signal beside it).
    pub fn stopped_by(sig: nix::sys::signal::Signal) -> i32 {
        match sig {
            nix::sys::signal::Signal::SIGINT => INTERRUPTED,
            s => 128 + s as i32,
        }
    }

    /// What a run stopped by `sig` says on standard error.
    pub fn stopped_message(sig: nix::sys::signal::Signal) -> String {
        match sig {
            nix::sys::signal::Signal::SIGINT => "[ERROR]: User interrupted execution".into(),
            s => format!(
                "[ERROR]: stopped by {s}: the commands still running on the hosts were stopped"
            ),
        }
    }

    /// Did a run end because a signal stopped it?
    pub fn is_stopped(code: i32) -> bool {
        code == INTERRUPTED || code == 128 + 1 || code == 128 + 15
    }
}

/// Settings of one run (the command line).
#[derive(Clone)]
pub struct Options {
    pub check: bool,
    pub diff: bool,
    pub forks: usize,
    pub tags: tags::TagSelection,
    pub limit: Option<crate::config::inventory::Limit>,
    pub verbosity: u8,
    pub transport: TransportOptions,
    pub start_at_task: Option<String>,
    pub force_handlers: bool,
    /// `--stream`: command/shell output (and long modules' progress) shown live, line by line.
    pub stream: bool,
    /// `-b`: become this user where neither the task nor the host's variables say otherwise.
    pub become_default: Option<String>,
    /// Connection variables used where the inventory sets none (`-u` → `ansible_user`, ...).
    pub conn_defaults: crate::value::Map,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            check: false,
            diff: false,
            forks: 5,
            tags: tags::TagSelection::default(),
            limit: None,
            verbosity: 0,
            transport: TransportOptions::default(),
            start_at_task: None,
            force_handlers: false,
            stream: false,
            become_default: None,
            conn_defaults: crate::value::Map::new(),
        }
    }
}

/// One run: what every play of every playbook shares.
pub struct Engine {
    pub run: Arc<RunVars>,
    pub templar: Arc<Templar>,
    pub loader: Arc<Loader>,
    pub opts: Options,
    pub sink: Arc<dyn Sink>,
    pub redactor: Arc<Redactor>,
    pub(crate) pool: conn::Pool,
    stats: Mutex<IndexMap<String, HostStats>>,
    /// Hosts that failed: later plays leave them out.
    dead: Mutex<HashSet<String>>,
    /// Hosts found unreachable: later plays list them but run nothing on them (as Ansible).
    unreachable: Mutex<HashSet<String>>,
    /// A play ended with no hosts left: the run stops.
    stopped: std::sync::atomic::AtomicBool,
    /// `--start-at-task` not reached yet.
    start_pending: Mutex<Option<String>>,
    /// Tasks skipped before `--start-at-task` was reached (every host skips them).
    skipped_before_start: Mutex<HashSet<u64>>,
}

/// Which tasks come up: the tag selection, and nothing before `--start-at-task`.
impl cursor::TaskFilter for Engine {
    fn wants(&self, task: &crate::playbook::Task) -> bool {
        if !self.opts.tags.wants(task) {
            return false;
        }
        if task.implicit {
            return true;
        }
        let mut skipped = self
            .skipped_before_start
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if skipped.contains(&task.id) {
            return false;
        }
        let mut pending = self.start_pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.as_deref() {
            None => true,
            Some(want) => {
                let name = task.display_name();
                let hit = glob::Pattern::new(want)
                    .map(|p| p.matches(&name) || task.name.as_deref().is_some_and(|n| p.matches(n)))
                    .unwrap_or(false)
                    || name == want
                    || task.name.as_deref() == Some(want);
                if hit {
                    *pending = None;
                } else {
                    skipped.insert(task.id);
                }
                hit
            }
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunResult {
    pub stats: IndexMap<String, HostStats>,
    pub exit_code: i32,
}

impl Engine {
    pub fn new(
        run: Arc<RunVars>,
        templar: Arc<Templar>,
        loader: Arc<Loader>,
        opts: Options,
        sink: Arc<dyn Sink>,
        redactor: Arc<Redactor>,
    ) -> Arc<Engine> {
        let opts_start = opts.start_at_task.clone();
        Arc::new(Engine {
            run,
            templar,
            loader,
            opts,
            sink,
            redactor,
            pool: conn::Pool::default(),
            stats: Mutex::new(IndexMap::new()),
            dead: Mutex::new(HashSet::new()),
            unreachable: Mutex::new(HashSet::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            start_pending: Mutex::new(opts_start),
            skipped_before_start: Mutex::new(HashSet::new()),
        })
    }

    /// Run the playbooks in order; the recap is printed at the end.
    pub async fn run(self: &Arc<Self>, books: &[Playbook]) -> RunResult {
        self.learn_secrets();
        'books: for book in books {
            for p in &book.plays {
                if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    break 'books;
                }
                play::run_play(self.clone(), p.clone()).await;
            }
        }
        self.pool.close(None).await;
        let stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        self.sink.recap(&stats);
        let exit_code = if stats.values().any(|s| s.unreachable > 0) {
            exit::UNREACHABLE
        } else if stats.values().any(|s| s.failed > 0) {
            exit::HOST_FAILED
        } else {
            exit::OK
        };
        RunResult { stats, exit_code }
    }

    /// Teach the redactor every secret the configuration holds, before anything is printed.
    fn learn_secrets(&self) {
        let keys = &self.run.keyring;
        self.redactor.learn_vars(self.run.extra_vars(), keys);
        for h in self.run.inventory.hosts() {
            if let Ok(v) = self.run.inventory_vars(&h) {
                self.redactor.learn_vars(&v, keys);
            }
        }
    }

    pub(crate) fn count(&self, host: &str, f: impl FnOnce(&mut HostStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(s.entry(host.to_string()).or_default());
        }
    }

    pub(crate) fn mark_dead(&self, host: &str) {
        if let Ok(mut d) = self.dead.lock() {
            d.insert(host.to_string());
        }
    }

    pub(crate) fn is_dead(&self, host: &str) -> bool {
        self.dead.lock().map(|d| d.contains(host)).unwrap_or(false)
    }

    pub(crate) fn mark_unreachable(&self, host: &str) {
        if let Ok(mut d) = self.unreachable.lock() {
            d.insert(host.to_string());
        }
    }

    pub(crate) fn is_unreachable(&self, host: &str) -> bool {
        self.unreachable
            .lock()
            .map(|d| d.contains(host))
            .unwrap_or(false)
    }

    pub(crate) fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
