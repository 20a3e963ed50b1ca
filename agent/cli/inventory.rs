//! `kiln inventory`: the inventory as ansible-inventory shows it (`--list`, `--list --yaml`,
//! `--graph [GROUP] [--vars]`, `--host H`), with `--limit` and `--playbook-dir`.
use super::GlobalOpts;
use crate::config::inventory::output::{to_python_json, View};
use crate::config::inventory::{Inventory, Limit};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kiln -i hosts inventory --list\n  kiln -i inventory/ inventory --graph --vars\n  kiln -i hosts inventory --list --limit 'web:!web01'"
)]
pub struct InventoryArgs {
    /// Print the whole inventory as JSON (ansible-inventory --list).
    #[arg(long)]
    pub list: bool,
    /// Print the group tree, from `all` or the given group.
    #[arg(long)]
    pub graph: bool,
    /// Print one host's variables.
    #[arg(long)]
    pub host: Option<String>,
    /// With --list: YAML instead of JSON.
    #[arg(short = 'y', long)]
    pub yaml: bool,
    /// With --graph: show variables.
    #[arg(long)]
    pub vars: bool,
    /// Only these hosts (a host pattern; `@file` reads one pattern per line).
    #[arg(short = 'l', long)]
    pub limit: Option<String>,
    /// Also read group_vars/ and host_vars/ beside this playbook directory.
    #[arg(long)]
    pub playbook_dir: Option<PathBuf>,
    /// Group for --graph (default `all`).
    pub group: Option<String>,
}

/// Parse a `--limit` given on the command line, once: a missing `@file` or a bad pattern is an
/// error here (exit 1, as ansible-playbook), never "no hosts matched" later.
pub fn parse_limit(limit: Option<&str>) -> anyhow::Result<Option<Limit>> {
    limit
        .map(|l| Limit::parse(l).map_err(|e| anyhow::anyhow!("{e}")))
        .transpose()
}

/// ansible's `get_host_list`: with hosts in the inventory, a pattern and limit that leave none is
/// an error (exit 1); an inventory with no hosts at all is not.
pub fn check_targets(inv: &Inventory, pattern: &str, limit: Option<&Limit>) -> anyhow::Result<()> {
    if inv.hosts().is_empty() {
        return Ok(());
    }
    let mut hosts = inv.select(pattern).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(l) = limit {
        hosts = inv.limit(&hosts, l).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    if hosts.is_empty() {
        for w in inv.warnings() {
            eprintln!("[WARNING]: {w}");
        }
        anyhow::bail!(
            "Specified inventory, host pattern and/or --limit leaves us with no hosts to target."
        );
    }
    Ok(())
}

pub fn run(a: InventoryArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    let used = [a.list, a.graph, a.host.is_some()]
        .iter()
        .filter(|x| **x)
        .count();
    if used == 0 {
        eprintln!("ERROR: No action selected, at least one of --host, --graph or --list needs to be specified.");
        return Ok(super::exit::BAD_OPTIONS);
    }
    if used > 1 {
        eprintln!("ERROR: Conflicting options used, only one of --host, --graph or --list can be used at the same time.");
        return Ok(super::exit::BAD_OPTIONS);
    }
    let base = super::context::base(g)?;
    let keys = &*base.keyring;
    let inv = Inventory::load(&base.inventory_sources, keys)?;
    let view = View {
        inv: &inv,
        keys,
        play_basedirs: a.playbook_dir.iter().cloned().collect(),
        limit: parse_limit(a.limit.as_deref())?,
    };
    let out = if let Some(h) = &a.host {
        to_python_json(&view.host_json(h)?)
    } else if a.graph {
        view.graph(a.group.as_deref().unwrap_or("all"), a.vars)?
    } else if a.yaml {
        crate::yaml::dump(&view.list_yaml()?).map_err(anyhow::Error::msg)?
    } else {
        to_python_json(&view.list_json()?)
    };
    for w in inv.warnings() {
        eprintln!("[WARNING]: {w}");
    }
    // a closed pipe (`| head`) is not an error worth a panic
    let _ = writeln!(std::io::stdout(), "{out}");
    Ok(super::exit::OK)
}
