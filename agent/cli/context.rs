//! From global options to a loaded configuration: the one place that decides between Kayobe mode
//! and plain Ansible mode, opens the keyring, loads the inventory and the extra vars.
//!
//! Kayobe mode is used when a configuration path is given (`--config-path`/`KAYOBE_CONFIG_PATH`),
//! or `/etc/kayobe` exists and no `-i` was given. With neither, and no `-i`, kiln falls back to its
//! embedded configuration with the `ci-builder` environment (and says so), so a fresh machine has
//! something to show.

use super::GlobalOpts;
use crate::config::embedded;
use crate::config::extra_vars;
use crate::config::inventory::Inventory;
use crate::config::kayobe::{KayobeLayout, DEFAULT_CONFIG_PATH};
use crate::config::vars::{ExtraVars, RunVars};
use crate::template::Templar;
use crate::vault::Keyring;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything a verb needs to resolve variables.
pub struct Loaded {
    pub layout: Option<KayobeLayout>,
    pub inventory_sources: Vec<String>,
    pub run: Arc<RunVars>,
    pub templar: Arc<Templar>,
}

/// Which configuration applies, before anything is read.
pub fn layout(g: &GlobalOpts) -> anyhow::Result<Option<KayobeLayout>> {
    let user_inv: Vec<PathBuf> = g.inventory.iter().map(PathBuf::from).collect();
    let (config_path, environment) = match (&g.config_path, g.inventory.is_empty()) {
        (Some(p), _) => (p.clone(), g.environment.clone()),
        (None, true) if Path::new(DEFAULT_CONFIG_PATH).is_dir() => {
            (PathBuf::from(DEFAULT_CONFIG_PATH), g.environment.clone())
        }
        (None, true) => {
            let shipped = embedded::shipped_config_path()?;
            let env = g
                .environment
                .clone()
                .unwrap_or_else(|| "ci-builder".to_string());
            eprintln!(
                "kiln: no Kayobe configuration (--config-path, KAYOBE_CONFIG_PATH, /etc/kayobe): using the embedded one, environment {env:?}"
            );
            (shipped, Some(env))
        }
        (None, false) => return Ok(None),
    };
    let base = match &g.kayobe_data_path {
        Some(d) => d.join("ansible").join("inventory"),
        None => embedded::base_inventory()?,
    };
    let layout = KayobeLayout::resolve(&config_path, environment.as_deref(), &base, &user_inv)?;
    // Kayobe exports these to the playbooks it runs; lookups such as env('KAYOBE_CONFIG_PATH') see them.
    std::env::set_var("KAYOBE_CONFIG_PATH", &layout.config_path);
    match &environment {
        Some(e) => std::env::set_var("KAYOBE_ENVIRONMENT", e),
        None => std::env::remove_var("KAYOBE_ENVIRONMENT"),
    }
    Ok(Some(layout))
}

/// The configuration's layout, inventory sources and keyring: what every verb reads first.
pub struct Base {
    pub layout: Option<KayobeLayout>,
    pub inventory_sources: Vec<String>,
    pub keyring: Arc<Keyring>,
}

pub fn base(g: &GlobalOpts) -> anyhow::Result<Base> {
    let layout = layout(g)?;
    let mut identities = g.age_identity.clone();
    if let Some(l) = &layout {
        // The embedded configuration's secrets are encrypted to a documented throwaway lab
        // identity (environments/ci-builder/README.md): use it when nothing else was given.
        if identities.is_empty() && l.config_path == embedded::shipped_config_path()? {
            identities.push(l.config_path.join(embedded::LAB_IDENTITY));
            if std::env::var_os("KILN_AGE_PASSPHRASE").is_none() {
                std::env::set_var("KILN_AGE_PASSPHRASE", embedded::LAB_IDENTITY_PASSPHRASE);
            }
        }
    }
    // the identity `control host bootstrap` makes is read by default, as ssh reads ~/.ssh/id_*
    if let Some(default) = default_identity_path().filter(|p| p.is_file()) {
        if !identities.contains(&default) {
            identities.push(default);
        }
    }
    let keyring = Arc::new(Keyring::from_opts(
        g.vault_password_file.as_deref(),
        &identities,
        layout.as_ref().map(|l| l.config_path.as_path()),
    )?);
    let inventory_sources: Vec<String> = match &layout {
        Some(l) => l
            .inventories
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        None => g.inventory.clone(),
    };
    Ok(Base {
        layout,
        inventory_sources,
        keyring,
    })
}

/// Load inventory, keyring, extra vars and a templar. `verb_vars` are the verb's own vars (highest).
pub fn load(
    g: &GlobalOpts,
    verb_vars: Vec<ExtraVars>,
    play_basedirs: Vec<PathBuf>,
) -> anyhow::Result<Loaded> {
    let Base {
        layout,
        inventory_sources,
        keyring,
    } = base(g)?;
    let inventory = Inventory::load(&inventory_sources, &keyring)?;
    for w in inventory.warnings() {
        eprintln!("[WARNING]: {w}");
    }
    let inventory = Arc::new(inventory);
    let mut extra = Vec::new();
    if let Some(l) = &layout {
        for f in &l.vars_files {
            let vars = extra_vars::parse(&format!("@{}", f.display()), &keyring)?;
            extra.push(ExtraVars {
                origin: f.display().to_string(),
                vars,
            });
        }
    }
    for e in &g.extra_vars {
        let vars = extra_vars::parse(e, &keyring).map_err(|err| extra_vars_exit(e, err))?;
        extra.push(ExtraVars {
            origin: "--extra-vars".into(),
            vars,
        });
    }
    extra.extend(verb_vars);
    let search = play_basedirs
        .first()
        .cloned()
        .or_else(|| std::env::current_dir().ok())
        .into_iter()
        .collect();
    let templar = Arc::new(
        Templar::new(keyring.clone())
            .with_search_paths(search)
            .with_lookup(
                "kayobe_environments",
                crate::config::kayobe::kayobe_environments_lookup(),
            ),
    );
    let run = RunVars::new(inventory, &inventory_sources, keyring, extra, play_basedirs);
    Ok(Loaded {
        layout,
        inventory_sources,
        run,
        templar,
    })
}

/// A host's connection variables (`ansible_host`, `ansible_user`, `ansible_become*`, ...),
/// templated, as the transport needs them.
pub fn connection_vars(loaded: &Loaded, host: &str) -> anyhow::Result<crate::value::Map> {
    use crate::template::VarSource;
    let scope: Arc<dyn VarSource> = Arc::new(loaded.run.host_scope(host)?);
    let mut out = crate::value::Map::new();
    for name in scope
        .names()
        .into_iter()
        .filter(|n| n.starts_with("ansible_"))
    {
        let raw = scope.raw(&name).unwrap_or_default();
        let v = loaded
            .templar
            .template(&scope, &raw, &format!("{name} of {host}"))
            .with_context(|| format!("{host}: {name}"))?;
        out.insert(name, v);
    }
    Ok(out)
}

/// The age identity kiln makes and reads when no `--age-identity` is given.
pub fn default_identity_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("kiln").join("key.txt"))
}

/// Every host a run may touch has readable variables: a broken group_vars/host_vars file (bad
/// YAML, not UTF-8, an age file for another key, a wrong vault password) stops the run before a
/// host is touched, with the file and line; ansible-playbook stops too (exit 4). Without this the
/// engine failed each host with no reason shown.
pub fn check_host_vars(loaded: &Loaded, hosts: &[String]) -> Result<(), String> {
    for h in hosts {
        if let Err(e) = loaded.run.host_scope(h) {
            return Err(e.to_string());
        }
    }
    Ok(())
}

/// A bad `-e` with ansible-playbook's exit code: a file that cannot be read 1, text that is not
/// YAML 4, data that is not a mapping (or not `key=value`) 5.
fn extra_vars_exit(arg: &str, err: crate::config::ConfigError) -> super::Exit {
    use crate::config::ConfigError as E;
    let msg = err.to_string();
    let code = match &err {
        E::Io { .. } => super::exit::ERROR,
        E::Other(m) if m.contains("must be a mapping") || m.contains("key=value") => {
            super::exit::BAD_OPTIONS
        }
        E::Other(_) if !arg.trim().starts_with('@') => super::exit::BAD_OPTIONS,
        _ => super::exit::PARSE_ERROR,
    };
    super::Exit {
        code,
        msg: format!("-e {arg}: {msg}"),
    }
}
