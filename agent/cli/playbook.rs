//! `kiln playbook run PLAYBOOK...` — Kayobe's `playbook run`, or plain ansible-playbook with `-i`.
//!
//! Everything is loaded and checked before a host is touched: the configuration, every playbook
//! (an unknown module or a YAML error is exit code 4 with file:line). Then the engine runs the
//! plays, with Kayobe's pre/post hooks around them. [`run_playbooks`] is what the Kayobe verbs
//! (`seed host configure`, ...) call with their own playbooks.

use super::connopts::ConnOpts;
use super::{context, exit, hooks, GlobalOpts};
use crate::engine::output::{Human, Json, Redactor, Sink};
use crate::engine::{tags::TagSelection, Engine, Options};
use crate::playbook::{Item, Loader, Playbook};
use crate::value::Value;
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct PlaybookArgs {
    #[command(subcommand)]
    pub cmd: PlaybookCmd,
}

#[derive(Subcommand, Debug)]
pub enum PlaybookCmd {
    /// Run playbooks, as ansible-playbook does.
    #[command(
        after_help = "Examples:\n  kiln playbook run -i lab/inventory.ini site.yml\n  kiln playbook run growroot.yml -e growroot_group=seed\n  kiln playbook run site.yml --check --diff -l builder -t network\n  kiln playbook run site.yml --format json > events.jsonl"
    )]
    Run(RunArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Ansible's PLAY / TASK / PLAY RECAP output.
    #[default]
    Human,
    /// One JSON event per line.
    Json,
}

/// Options of a playbook run (shared by `playbook run` and the Kayobe verbs).
#[derive(Args, Debug, Clone)]
pub struct RunOpts {
    /// Limit to hosts matching this pattern (or `@file`).
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    /// Only run tasks with these tags (comma-separated; repeatable).
    #[arg(short = 't', long = "tags")]
    pub tags: Vec<String>,
    /// Skip tasks with these tags.
    #[arg(long = "skip-tags")]
    pub skip_tags: Vec<String>,
    /// Change nothing; report what would change.
    #[arg(short = 'C', long)]
    pub check: bool,
    /// Show the changes to files and other content.
    #[arg(short = 'D', long)]
    pub diff: bool,
    /// How many hosts at once.
    #[arg(short = 'f', long, default_value_t = 5)]
    pub forks: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Start at the task with this name.
    #[arg(long)]
    pub start_at_task: Option<String>,
    /// Run notified handlers even on hosts that failed.
    #[arg(long)]
    pub force_handlers: bool,
    /// Show command/shell output (and long tasks' progress) live, each line prefixed with its
    /// host, as it is printed; per task with the variable `kiln_stream` (label: `kiln_stream_label`).
    #[arg(long)]
    pub stream: bool,
    /// Do not run Kayobe's pre/post hook playbooks.
    #[arg(long)]
    pub skip_hooks: bool,
    #[command(flatten)]
    pub conn: ConnOpts,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Playbook files (a name kiln ships, like `growroot.yml`, works too).
    #[arg(required = true)]
    pub playbooks: Vec<PathBuf>,
    #[command(flatten)]
    pub run: RunOpts,
    /// List the hosts each play would run on, and stop.
    #[arg(long)]
    pub list_hosts: bool,
    /// List the tasks each play would run, and stop.
    #[arg(long)]
    pub list_tasks: bool,
    /// Check the playbooks' syntax (and that every module is known), and stop.
    #[arg(long)]
    pub syntax_check: bool,
}

pub fn run(a: PlaybookArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    match a.cmd {
        PlaybookCmd::Run(r) => {
            let mode = if r.syntax_check {
                Mode::SyntaxCheck
            } else if r.list_hosts {
                Mode::ListHosts
            } else if r.list_tasks {
                Mode::ListTasks
            } else {
                Mode::Run
            };
            let books: Vec<PathBuf> = r
                .playbooks
                .iter()
                .map(|p| resolve_playbook(p))
                .map(|p| std::path::absolute(&p).unwrap_or(p))
                .collect();
            let verb = Verb::new(&["playbook", "run"]);
            run_playbooks(g, &r.run, &books, &verb, Vec::new(), mode)
        }
    }
}

/// A playbook path as given, or one of kiln's shipped playbooks by name.
pub fn resolve_playbook(p: &Path) -> PathBuf {
    if p.exists() {
        return p.to_path_buf();
    }
    if p.components().count() == 1 {
        if let Ok(shipped) = crate::config::embedded::playbook(&p.display().to_string()) {
            if shipped.exists() {
                return shipped;
            }
        }
    }
    p.to_path_buf()
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    SyntaxCheck,
    ListHosts,
    ListTasks,
}

/// The verb a run belongs to (its words name Kayobe's hook folders) and which of its hooks this run
/// of playbooks includes: a verb made of several runs (`seed host configure` reloads the
/// configuration after allocating addresses) runs its pre hooks with the first and its post hooks
/// with the last.
pub struct Verb<'a> {
    pub words: &'a [&'a str],
    pub pre_hooks: bool,
    pub post_hooks: bool,
}

impl<'a> Verb<'a> {
    pub fn new(words: &'a [&'a str]) -> Self {
        Verb {
            words,
            pre_hooks: true,
            post_hooks: true,
        }
    }
}

/// Load the configuration and the playbooks, run the hooks and the playbooks; the exit code.
pub fn run_playbooks(
    g: &GlobalOpts,
    o: &RunOpts,
    books: &[PathBuf],
    verb: &Verb,
    verb_vars: Vec<crate::config::vars::ExtraVars>,
    mode: Mode,
) -> anyhow::Result<i32> {
    for b in books {
        if !b.is_file() {
            eprintln!("ERROR! the playbook: {} could not be found", b.display());
            return Ok(exit::ERROR);
        }
    }
    let basedirs: Vec<PathBuf> = books
        .iter()
        .filter_map(|b| b.canonicalize().ok()?.parent().map(Path::to_path_buf))
        .collect();
    let limit = super::inventory::parse_limit(o.limit.as_deref())?;
    let loaded = context::load(g, verb_vars, basedirs)?;
    if limit.is_some() {
        super::inventory::check_targets(&loaded.run.inventory, "all", limit.as_ref())?;
    }
    let mut role_paths = Vec::new();
    if let Some(l) = &loaded.layout {
        role_paths.push(l.config_path.join("ansible").join("roles"));
    }
    if let Ok(p) = crate::config::embedded::playbook("roles") {
        role_paths.push(p);
    }
    let loader = Arc::new(Loader::new(loaded.run.keyring.clone(), role_paths));
    let (pre, post) = match (&loaded.layout, o.skip_hooks) {
        (Some(l), false) => (
            if verb.pre_hooks {
                hooks::hooks(l, verb.words, "pre")
            } else {
                vec![]
            },
            if verb.post_hooks {
                hooks::hooks(l, verb.words, "post")
            } else {
                vec![]
            },
        ),
        _ => (vec![], vec![]),
    };
    let load = |paths: &[PathBuf]| -> Result<Vec<Playbook>, crate::playbook::PlaybookError> {
        paths.iter().map(|p| loader.playbook(p)).collect()
    };
    let (pre, main, post) = match (load(&pre), load(books), load(&post)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            report_error(o.format, &e);
            // ansible-playbook: a missing file or role is 1, anything unparsable 4
            return Ok(match e {
                crate::playbook::PlaybookError::NotFound { .. } => exit::ERROR,
                _ => exit::PARSE_ERROR,
            });
        }
    };
    if mode == Mode::Run || mode == Mode::ListHosts {
        let plays = pre.iter().chain(&main).chain(&post).flat_map(|b| &b.plays);
        let patterns: Vec<String> = plays
            .map(|p| crate::template::py_str_value(&p.hosts))
            .collect();
        let hosts = run_hosts(&loaded.run.inventory, &patterns, limit.as_ref());
        if let Err(e) = context::check_host_vars(&loaded, &hosts) {
            report_error(o.format, &e);
            return Ok(exit::PARSE_ERROR);
        }
    }
    match mode {
        Mode::SyntaxCheck => {
            for b in books {
                println!("\nplaybook: {}", b.display());
            }
            return Ok(exit::OK);
        }
        Mode::ListHosts | Mode::ListTasks => {
            for b in &main {
                list(b, &loaded, o, limit.as_ref(), mode);
            }
            return Ok(exit::OK);
        }
        Mode::Run => {}
    }
    let redactor = Arc::new(Redactor::default());
    let sink: Arc<dyn Sink> = match o.format {
        Format::Human => Arc::new(Human::new(g.verbose, o.diff, redactor.clone())),
        Format::Json => Arc::new(Json::new(redactor.clone())),
    };
    let mut run = loaded.run.clone();
    run.set_global("ansible_check_mode", Value::Bool(o.check));
    run.set_global("ansible_diff_mode", Value::Bool(o.diff));
    run.set_global("ansible_verbosity", Value::Int(g.verbose as i64));
    run.set_global("ansible_forks", Value::Int(o.forks as i64));
    let opts = Options {
        check: o.check,
        diff: o.diff,
        forks: o.forks.max(1),
        tags: TagSelection::new(&o.tags, &o.skip_tags),
        limit: limit.clone(),
        verbosity: g.verbose,
        transport: o.conn.transport()?,
        start_at_task: o.start_at_task.clone(),
        force_handlers: o.force_handlers,
        stream: o.stream,
        become_default: o.conn.become_default(),
        conn_defaults: o.conn.conn_defaults(),
    };
    let engine = Engine::new(run, loaded.templar.clone(), loader, opts, sink, redactor);
    let rt = super::runtime()?;
    let code = rt.block_on(async {
        let all: Vec<Playbook> = pre.into_iter().chain(main).collect();
        let run = engine.run(&all);
        tokio::select! {
            outcome = run => {
                if outcome.exit_code == exit::OK && !post.is_empty() {
                    engine.run(&post).await.exit_code
                } else {
                    outcome.exit_code
                }
            }
            sig = crate::transport::fanout::stop_signal() => {
                eprintln!("\n{}", exit::stopped_message(sig));
                exit::stopped_by(sig)
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(code)
}

/// An error that stops a run before it starts: `ERROR! ...` on stderr (ansible-playbook's words),
/// and with `--format json` also an `error` event on stdout, so a reader of the events sees why.
pub fn report_error(format: Format, msg: &dyn std::fmt::Display) {
    let msg = msg.to_string();
    eprintln!("ERROR! {msg}");
    if format == Format::Json {
        println!("{}", serde_json::json!({"event": "error", "msg": msg}));
    }
}

/// The hosts the plays (their patterns, when not templated; all hosts otherwise) and the limit
/// select: the hosts a run may read variables for.
pub fn run_hosts(
    inv: &crate::config::inventory::Inventory,
    patterns: &[String],
    limit: Option<&crate::config::inventory::Limit>,
) -> Vec<String> {
    let mut hosts: indexmap::IndexSet<String> = Default::default();
    for p in patterns {
        match inv.select(p) {
            Ok(hs) if !p.contains("{{") => hosts.extend(hs),
            _ => hosts.extend(inv.hosts()),
        }
    }
    let hosts: Vec<String> = hosts.into_iter().collect();
    match limit {
        Some(l) => inv.limit(&hosts, l).unwrap_or(hosts),
        None => hosts,
    }
}

/// `--list-hosts` / `--list-tasks`, in ansible-playbook's layout.
fn list(
    book: &Playbook,
    loaded: &context::Loaded,
    o: &RunOpts,
    limit: Option<&crate::config::inventory::Limit>,
    mode: Mode,
) {
    println!("\nplaybook: {}", book.path.display());
    let tags = TagSelection::new(&o.tags, &o.skip_tags);
    for (i, play) in book.plays.iter().enumerate() {
        let pattern = crate::template::py_str_value(&play.hosts);
        let mut hosts = loaded.run.inventory.select(&pattern).unwrap_or_default();
        if let Some(l) = limit {
            hosts = loaded.run.inventory.limit(&hosts, l).unwrap_or_default();
        }
        let ptags = if play.attrs.tags.is_empty() {
            String::new()
        } else {
            play.attrs.tags.join(", ")
        };
        println!(
            "\n  play #{} ({pattern}): {}\tTAGS: [{ptags}]",
            i + 1,
            play.name
        );
        if mode == Mode::ListHosts {
            println!("    pattern: ['{pattern}']");
            println!("    hosts ({}):", hosts.len());
            for h in hosts {
                println!("      {h}");
            }
        } else {
            println!("    tasks:");
            fn walk(items: &[Item], tags: &TagSelection) {
                use crate::engine::cursor::TaskFilter;
                for it in items {
                    match it {
                        Item::Task(t) => {
                            if !t.implicit && tags.wants(t) {
                                println!(
                                    "      {}\tTAGS: [{}]",
                                    t.display_name(),
                                    t.attrs.tags.join(", ")
                                );
                            }
                        }
                        Item::Block(b) => {
                            walk(&b.block, tags);
                            walk(&b.rescue, tags);
                            walk(&b.always, tags);
                        }
                    }
                }
            }
            walk(&play.items, &tags);
        }
    }
}
