//! A host's variables: Ansible's precedence over everything kiln read, plus the magic variables.
//!
//! [`RunVars`] holds what one kiln run knows for all hosts (the inventory, the merged extra vars,
//! run-wide magic such as `playbook_dir` and `ansible_check_mode`, and per-host facts as they are
//! gathered). [`HostScope`] is one host's view of it, and is what the template layer resolves
//! against (it implements [`VarSource`]). Nothing is templated here: values stay raw until the
//! template layer reads them, so resolution is lazy, as in Ansible.
//!
//! Lookup order, highest first (Ansible's precedence, the layers kiln has):
//! magic variables > extra vars > scope layers pushed by the engine (task vars, block vars, role
//! vars, play vars_files, play vars, registered values and set_fact...) > per-host facts >
//! the inventory part (computed by [`Inventory::host_vars`]: inventory-file group vars, group_vars/,
//! host vars, host_vars/, in ansible-core's order).

use super::inventory::Inventory;
use super::ConfigError;
use crate::template::VarSource;
use crate::value::{Map, Value};
use crate::vault::Keyring;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

/// The version kiln reports as `ansible_version`: the ansible-core whose behaviour it matches.
pub const ANSIBLE_COMPAT_VERSION: (u32, u32, u32) = (2, 17, 7);

/// One extra-vars layer and where it came from (`@file`, `-e`, the verb).
#[derive(Debug, Clone)]
pub struct ExtraVars {
    pub origin: String,
    pub vars: Map,
}

/// What one run knows about variables, shared by every host.
pub struct RunVars {
    pub inventory: Arc<Inventory>,
    pub keyring: Arc<Keyring>,
    extra: Map,
    extra_origin: HashMap<String, String>,
    play_basedirs: Vec<PathBuf>,
    globals: Map,
    groups: Value,
    inventory_cache: Mutex<HashMap<String, Arc<Map>>>,
    facts: RwLock<HashMap<String, Arc<Map>>>,
    /// Per-host values set while a playbook runs (`register`, `set_fact`): Ansible precedence 19,
    /// above every play, role, block and task variable; visible through `hostvars` and kept
    /// across the plays of one run.
    runtime: RwLock<HashMap<String, Arc<Map>>>,
}

impl RunVars {
    /// `extra` layers lowest precedence first (Kayobe's files, then `-e`, then the verb's vars).
    pub fn new(
        inventory: Arc<Inventory>,
        inventory_sources: &[String],
        keyring: Arc<Keyring>,
        extra: Vec<ExtraVars>,
        play_basedirs: Vec<PathBuf>,
    ) -> Arc<RunVars> {
        let mut merged = Map::new();
        let mut origin = HashMap::new();
        for layer in extra {
            for (k, v) in layer.vars {
                origin.insert(k.clone(), layer.origin.clone());
                merged.insert(k, v);
            }
        }
        let (maj, min, rev) = ANSIBLE_COMPAT_VERSION;
        let mut version = Map::new();
        version.insert("full".into(), Value::Str(format!("{maj}.{min}.{rev}")));
        version.insert("major".into(), Value::Int(maj as i64));
        version.insert("minor".into(), Value::Int(min as i64));
        version.insert("revision".into(), Value::Int(rev as i64));
        version.insert("string".into(), Value::Str(format!("{maj}.{min}.{rev}")));
        let mut globals = Map::new();
        globals.insert("ansible_version".into(), Value::Map(version));
        globals.insert("ansible_check_mode".into(), Value::Bool(false));
        globals.insert("ansible_diff_mode".into(), Value::Bool(false));
        globals.insert("ansible_verbosity".into(), Value::Int(0));
        globals.insert("ansible_forks".into(), Value::Int(5));
        globals.insert(
            "omit".into(),
            Value::str(crate::template::omit_placeholder()),
        );
        globals.insert(
            "ansible_inventory_sources".into(),
            Value::List(
                inventory_sources
                    .iter()
                    .map(|s| Value::Str(s.clone()))
                    .collect(),
            ),
        );
        if let Some(dir) = play_basedirs.first() {
            globals.insert("playbook_dir".into(), Value::Str(dir.display().to_string()));
        }
        let groups = Value::Map(inventory.groups_var());
        Arc::new(RunVars {
            inventory,
            keyring,
            extra: merged,
            extra_origin: origin,
            play_basedirs,
            globals,
            groups,
            inventory_cache: Mutex::new(HashMap::new()),
            facts: RwLock::new(HashMap::new()),
            runtime: RwLock::new(HashMap::new()),
        })
    }

    /// The merged extra vars (Kayobe's files, `-e`, the verb's).
    pub fn extra_vars(&self) -> &Map {
        &self.extra
    }

    /// Set a run-wide magic variable (`ansible_check_mode`, `playbook_dir`, ...).
    pub fn set_global(self: &mut Arc<Self>, name: &str, value: Value) {
        if let Some(me) = Arc::get_mut(self) {
            me.globals.insert(name.to_string(), value);
        }
    }

    /// Record a host's facts (and cached `set_fact: cacheable`), visible through `hostvars`.
    pub fn set_facts(&self, host: &str, facts: Map) {
        if let Ok(mut f) = self.facts.write() {
            f.insert(host.to_string(), Arc::new(facts));
        }
    }

    /// Merge gathered facts into a host's facts (later gathers replace earlier keys).
    pub fn add_facts(&self, host: &str, facts: Map) {
        if let Ok(mut f) = self.facts.write() {
            let mut m = f.get(host).map(|m| (**m).clone()).unwrap_or_default();
            m.extend(facts);
            f.insert(host.to_string(), Arc::new(m));
        }
    }

    /// Forget a host's facts (`meta: clear_facts`).
    pub fn clear_facts(&self, host: &str) {
        if let Ok(mut f) = self.facts.write() {
            f.remove(host);
        }
    }

    /// A host's facts, as gathered so far.
    pub fn facts(&self, host: &str) -> Arc<Map> {
        self.facts
            .read()
            .ok()
            .and_then(|f| f.get(host).cloned())
            .unwrap_or_default()
    }

    /// Set run-time variables of a host (`register`, `set_fact`).
    pub fn set_runtime(&self, host: &str, vars: Map) {
        if let Ok(mut r) = self.runtime.write() {
            let mut m = r.get(host).map(|m| (**m).clone()).unwrap_or_default();
            m.extend(vars);
            r.insert(host.to_string(), Arc::new(m));
        }
    }

    /// The inventory part of a host's variables, computed once per host.
    pub fn inventory_vars(&self, host: &str) -> Result<Arc<Map>, ConfigError> {
        if let Ok(cache) = self.inventory_cache.lock() {
            if let Some(m) = cache.get(host) {
                return Ok(m.clone());
            }
        }
        let m = Arc::new(
            self.inventory
                .host_vars(host, &self.play_basedirs, &self.keyring)?,
        );
        if let Ok(mut cache) = self.inventory_cache.lock() {
            cache.insert(host.to_string(), m.clone());
        }
        Ok(m)
    }

    /// One host's view, with no play layers (what `hostvars[host]` shows).
    pub fn host_scope(self: &Arc<Self>, host: &str) -> Result<HostScope, ConfigError> {
        if !self.inventory.has_host(host) {
            return Err(ConfigError::Other(format!(
                "host {host:?} is not in the inventory (see `kiln inventory --graph`)"
            )));
        }
        let inventory_vars = self.inventory_vars(host)?;
        let facts = self.facts.read().ok().and_then(|f| f.get(host).cloned());
        let runtime = self.runtime.read().ok().and_then(|r| r.get(host).cloned());
        let mut magic = Map::new();
        magic.insert("inventory_hostname".into(), Value::str(host));
        magic.insert(
            "inventory_hostname_short".into(),
            Value::str(host.split('.').next().unwrap_or(host)),
        );
        magic.insert(
            "group_names".into(),
            Value::List(
                self.inventory
                    .group_names(host)
                    .into_iter()
                    .map(Value::Str)
                    .collect(),
            ),
        );
        Ok(HostScope {
            run: self.clone(),
            host: host.to_string(),
            inventory_vars,
            facts,
            runtime,
            layers: Vec::new(),
            defaults: Vec::new(),
            magic: Arc::new(magic),
        })
    }
}

/// One host's variables, with the layers the engine pushes on top (play, block, task vars...).
#[derive(Clone)]
pub struct HostScope {
    run: Arc<RunVars>,
    host: String,
    inventory_vars: Arc<Map>,
    facts: Option<Arc<Map>>,
    /// `register` / `set_fact` values.
    runtime: Option<Arc<Map>>,
    /// Lowest precedence first.
    layers: Vec<(String, Arc<Map>)>,
    /// Role defaults, below the inventory; nearest role last.
    defaults: Vec<Arc<Map>>,
    /// Shared until changed: the engine clones a scope several times per task and host (every
    /// template source holds one), and this map carries the play's host lists.
    magic: Arc<Map>,
}

impl HostScope {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A copy with one more layer on top (e.g. task vars, a loop item).
    pub fn with_layer(&self, origin: impl Into<String>, vars: Map) -> HostScope {
        let mut s = self.clone();
        s.layers.push((origin.into(), Arc::new(vars)));
        s
    }

    /// Add a layer without copying it.
    pub fn push_layer(&mut self, origin: impl Into<String>, vars: Arc<Map>) {
        self.layers.push((origin.into(), vars));
    }

    /// Role defaults (lowest precedence of all), nearest role last.
    pub fn set_defaults(&mut self, defaults: Vec<Arc<Map>>) {
        self.defaults = defaults;
    }

    /// Set a magic variable for this scope (`role_path`, `ansible_loop`...).
    pub fn set_magic(&mut self, name: &str, value: Value) {
        Arc::make_mut(&mut self.magic).insert(name.to_string(), value);
    }

    fn facts_layer(&self) -> Option<Value> {
        let facts = self.facts.as_ref()?;
        Some(Value::Map((**facts).clone()))
    }
}

impl VarSource for HostScope {
    fn raw(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.magic.get(name) {
            return Some(v.clone());
        }
        if name == "groups" {
            return Some(self.run.groups.clone());
        }
        if let Some(v) = self.run.globals.get(name) {
            return Some(v.clone());
        }
        if let Some(v) = self.run.extra.get(name) {
            return Some(v.clone());
        }
        if let Some(v) = self.runtime.as_ref().and_then(|r| r.get(name)) {
            return Some(v.clone());
        }
        for (_, layer) in self.layers.iter().rev() {
            if let Some(v) = layer.get(name) {
                return Some(v.clone());
            }
        }
        if let Some(facts) = &self.facts {
            if name == "ansible_facts" {
                return self.facts_layer();
            }
            // facts are also injected as ansible_* variables (INJECT_FACTS_AS_VARS)
            if let Some(short) = name.strip_prefix("ansible_") {
                if let Some(v) = facts.get(short) {
                    return Some(v.clone());
                }
            }
        }
        if let Some(v) = self.inventory_vars.get(name) {
            return Some(v.clone());
        }
        self.defaults
            .iter()
            .rev()
            .find_map(|d| d.get(name).cloned())
    }

    fn origin(&self, name: &str) -> Option<String> {
        if self.magic.contains_key(name) || self.run.globals.contains_key(name) {
            return Some("magic variable".into());
        }
        if let Some(o) = self.run.extra_origin.get(name) {
            return Some(o.clone());
        }
        if self.runtime.as_ref().is_some_and(|r| r.contains_key(name)) {
            return Some("set_fact/register".into());
        }
        for (origin, layer) in self.layers.iter().rev() {
            if layer.contains_key(name) {
                return Some(origin.clone());
            }
        }
        if self.inventory_vars.contains_key(name) {
            if let Some(f) = self.run.inventory.var_file(
                &self.host,
                name,
                &self.run.play_basedirs,
                &self.run.keyring,
            ) {
                return Some(f.display().to_string());
            }
            return Some(format!("inventory variables of {}", self.host));
        }
        if self.defaults.iter().any(|d| d.contains_key(name)) {
            return Some("role defaults".into());
        }
        None
    }

    fn names(&self) -> Vec<String> {
        let mut seen = indexmap::IndexSet::new();
        for d in &self.defaults {
            seen.extend(d.keys().cloned());
        }
        if let Some(r) = &self.runtime {
            seen.extend(r.keys().cloned());
        }
        for k in self.inventory_vars.keys() {
            seen.insert(k.clone());
        }
        if let Some(f) = &self.facts {
            seen.insert("ansible_facts".to_string());
            for k in f.keys() {
                seen.insert(format!("ansible_{k}"));
            }
        }
        for (_, layer) in &self.layers {
            for k in layer.keys() {
                seen.insert(k.clone());
            }
        }
        for k in self.run.extra.keys() {
            seen.insert(k.clone());
        }
        for k in self.run.globals.keys().chain(self.magic.keys()) {
            seen.insert(k.clone());
        }
        seen.insert("groups".to_string());
        seen.into_iter().collect()
    }

    fn host(&self, host: &str) -> Option<Arc<dyn VarSource>> {
        if host == self.host {
            // hostvars[me] has no play layers, like Ansible's
            let mut me = self.clone();
            me.layers.clear();
            me.defaults.clear();
            return Some(Arc::new(me));
        }
        self.run
            .host_scope(host)
            .ok()
            .map(|s| Arc::new(s) as Arc<dyn VarSource>)
    }

    fn host_names(&self) -> Vec<String> {
        self.run.inventory.hosts()
    }

    fn select_hosts(&self, pattern: &str) -> Result<Vec<String>, String> {
        self.run
            .inventory
            .select(pattern)
            .map_err(|e| e.to_string())
    }
}
