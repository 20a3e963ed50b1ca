//! `kiln vars` and `kiln render`: a host's variables, templated as Ansible would template them.
//!
//! `kiln vars HOST NAME` prints what `ansible HOST -m debug -a var=NAME` shows (the value of the
//! template `{{ NAME }}`), for each name, as one JSON object. Secrets print as `********` unless
//! `--show-secrets`.

use super::context;
use super::GlobalOpts;
use crate::template::VarSource;
use crate::value::Value;
use clap::Args;
use std::sync::Arc;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kiln vars builder\n  kiln vars builder kolla_tag aio_interface\n  kiln --config-path etc/kayobe --environment ci-builder vars builder seed_lvm_groups\n  kiln -i hosts -e release=2024.1 vars web1 \"hostvars['db1'].ansible_host\""
)]
pub struct VarsArgs {
    /// Inventory host name.
    pub host: String,
    /// Variable names (or expressions); all of the host's variables when none is given.
    pub names: Vec<String>,
    /// Print secrets in plain text instead of `********`.
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kiln render builder kolla-build.conf.j2\n  kiln -i hosts render web1 templates/motd.j2"
)]
pub struct RenderArgs {
    /// Inventory host name.
    pub host: String,
    /// Template file (Jinja, as the `template` module renders it).
    pub file: std::path::PathBuf,
    /// Print the result even when it was computed from secrets.
    #[arg(long)]
    pub show_secrets: bool,
}

/// Variables that are the machinery, not configuration: left out of "all variables".
const MAGIC: &[&str] = &[
    "groups",
    "omit",
    "ansible_version",
    "ansible_check_mode",
    "ansible_diff_mode",
    "ansible_verbosity",
    "ansible_forks",
    "ansible_inventory_sources",
    "playbook_dir",
];

pub fn run(a: VarsArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    let loaded = context::load(g, Vec::new(), Vec::new())?;
    let scope: Arc<dyn VarSource> = Arc::new(loaded.run.host_scope(&a.host)?);
    let explicit = !a.names.is_empty();
    let names: Vec<String> = if explicit {
        a.names.clone()
    } else {
        scope
            .names()
            .into_iter()
            .filter(|n| !MAGIC.contains(&n.as_str()))
            .collect()
    };
    let mut out = serde_json::Map::new();
    let mut failed = 0;
    for name in names {
        let expr = Value::Str(format!("{{{{ {name} }}}}"));
        match loaded
            .templar
            .template(&scope, &expr, &format!("kiln vars {}", a.host))
        {
            Ok(v) => {
                out.insert(name, v.to_json(a.show_secrets));
            }
            Err(e) if explicit => anyhow::bail!("{name}: {e}"),
            Err(e) => {
                failed += 1;
                eprintln!("kiln vars: {name}: {e}");
            }
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(out))?
    );
    Ok(if failed > 0 {
        super::exit::ERROR
    } else {
        super::exit::OK
    })
}

pub fn render(a: RenderArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    let file = std::fs::canonicalize(&a.file)
        .map_err(|e| anyhow::anyhow!("cannot read template {}: {e}", a.file.display()))?;
    let basedir = file.parent().map(|p| p.to_path_buf()).into_iter().collect();
    let loaded = context::load(g, Vec::new(), basedir)?;
    let scope: Arc<dyn VarSource> = Arc::new(loaded.run.host_scope(&a.host)?);
    match loaded.templar.render_file(&scope, &file)? {
        Value::Secret(s) if a.show_secrets => print!("{}", s.expose().as_str().unwrap_or_default()),
        Value::Secret(_) => anyhow::bail!(
            "{} renders with secrets in it: not printed (pass --show-secrets to print it)",
            a.file.display()
        ),
        Value::Str(s) => print!("{s}"),
        other => print!("{}", other.to_json(false)),
    }
    Ok(super::exit::OK)
}
