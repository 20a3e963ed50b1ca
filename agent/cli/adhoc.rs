//! `kiln ad-hoc PATTERN -m MODULE -a ARGS` — the `ansible` command: one module on every matching
//! host, with its one-result-per-host output. It is a one-task play run by the same engine, so a
//! module behaves exactly as it does in a playbook.

use super::connopts::ConnOpts;
use super::{context, exit, GlobalOpts};
use crate::engine::output::{Minimal, Redactor, Sink};
use crate::engine::{Engine, Options};
use crate::playbook::Loader;
use crate::value::{Map, Value};
use clap::Args;
use std::sync::Arc;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kiln ad-hoc all -i lab/inventory.ini -m ping\n  kiln ad-hoc builder -m command -a 'uptime'\n  kiln ad-hoc seed -b -m copy -a 'content=hello dest=/etc/motd mode=0644' --check --diff"
)]
pub struct AdHocArgs {
    /// Host pattern: `all`, a host or group name, a glob, or a comma list.
    pub pattern: String,
    /// The module to run.
    #[arg(short = 'm', long = "module-name", default_value = "command")]
    pub module: String,
    /// The module's arguments: `key=value ...`, free-form text, or a JSON/YAML mapping.
    #[arg(short = 'a', long = "args", default_value = "")]
    pub args: String,
    /// Limit to hosts matching this pattern.
    #[arg(short = 'l', long = "limit")]
    pub limit: Option<String>,
    #[arg(short = 'C', long)]
    pub check: bool,
    #[arg(short = 'D', long)]
    pub diff: bool,
    #[arg(short = 'f', long, default_value_t = 5)]
    pub forks: usize,
    /// One line per host.
    #[arg(short = 'o', long)]
    pub one_line: bool,
    /// Show the command's output live, each line prefixed with its host.
    #[arg(long)]
    pub stream: bool,
    #[command(flatten)]
    pub conn: ConnOpts,
}

pub fn run(a: AdHocArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    let limit = super::inventory::parse_limit(a.limit.as_deref())?;
    let loaded = context::load(g, Vec::new(), Vec::new())?;
    // ansible: an unmatched pattern is "No hosts matched, nothing to do" (exit 0), unless a
    // --limit was given (then exit 1); a bad pattern is an error
    let inv = &loaded.run.inventory;
    if let Err(e) = super::inventory::check_targets(inv, &a.pattern, limit.as_ref()) {
        if limit.is_some() || inv.select(&a.pattern).is_err() {
            return Err(e);
        }
        for w in inv.warnings() {
            eprintln!("[WARNING]: {w}");
        }
        eprintln!("[WARNING]: No hosts matched, nothing to do");
        return Ok(exit::OK);
    }
    let args_value = {
        let t = a.args.trim();
        if t.starts_with('{') {
            crate::yaml::load(t, "-a").map_err(|e| anyhow::anyhow!("-a: {e}"))?
        } else {
            Value::Str(a.args.clone())
        }
    };
    let hosts = super::playbook::run_hosts(inv, std::slice::from_ref(&a.pattern), limit.as_ref());
    if let Err(e) = context::check_host_vars(&loaded, &hosts) {
        eprintln!("ERROR! {e}");
        return Ok(exit::PARSE_ERROR);
    }
    let mut task = Map::new();
    task.insert(a.module.clone(), args_value);
    let mut play = Map::new();
    play.insert("name".into(), Value::str("Ansible Ad-Hoc"));
    play.insert("hosts".into(), Value::Str(a.pattern.clone()));
    play.insert("gather_facts".into(), Value::Bool(false));
    play.insert("tasks".into(), Value::List(vec![Value::Map(task)]));
    let text = crate::yaml::dump(&Value::List(vec![Value::Map(play)]).to_json(true))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let loader = Arc::new(Loader::new(loaded.run.keyring.clone(), vec![]));
    let cwd = std::env::current_dir()?;
    let book = match loader.playbook_from_str(&text, "ad-hoc", &cwd) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ERROR! {e}");
            return Ok(exit::PARSE_ERROR);
        }
    };
    let redactor = Arc::new(Redactor::default());
    let sink: Arc<dyn Sink> = Arc::new(Minimal {
        redactor: redactor.clone(),
        one_line: a.one_line,
    });
    let opts = Options {
        check: a.check,
        diff: a.diff,
        forks: a.forks.max(1),
        limit,
        verbosity: g.verbose,
        transport: a.conn.transport()?,
        become_default: a.conn.become_default(),
        conn_defaults: a.conn.conn_defaults(),
        stream: a.stream,
        ..Options::default()
    };
    let engine = Engine::new(
        loaded.run.clone(),
        loaded.templar.clone(),
        loader,
        opts,
        sink,
        redactor,
    );
    let rt = super::runtime()?;
    let code = rt.block_on(async { engine.run(&[book]).await.exit_code });
    Ok(code)
}
