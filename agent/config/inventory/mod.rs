//! Ansible inventories, read exactly as ansible-core 2.17 reads them: INI, YAML/JSON,
//! directories of those, `host1,host2,` lists, `group_vars/`/`host_vars/` beside each source and
//! each playbook directory, host patterns and `--limit`, and the inventory part of Ansible's
//! variable precedence.
//!
//! One file per job: [`data`] (the model and its consistency rules), [`ini`], [`yaml_src`],
//! [`dir`] (sources, directories, ignore rules), [`address`] (`host:port` and ranges),
//! [`pattern`] (host patterns), [`group_host_vars`] (vars files, cached), [`output`]
//! (`kiln inventory --list/--graph/--host`). Everything here returns raw, untemplated values.

pub mod address;
pub mod data;
pub mod dir;
pub mod group_host_vars;
pub mod ini;
pub mod output;
pub mod pattern;
pub mod shlex;
pub mod yaml_src;

pub use pattern::Limit;

use crate::config::ConfigError;
use crate::value::{Map, Value};
use crate::vault::Keyring;
use data::{InventoryData, ALL, LOCALHOST};
use group_host_vars::{Kind, VarsFiles};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A loaded inventory.
#[derive(Debug)]
pub struct Inventory {
    data: InventoryData,
    /// The sources as given (Ansible looks for group_vars beside these strings).
    sources: Vec<String>,
    warnings: Mutex<Vec<String>>,
    failures: Vec<String>,
    vars_files: VarsFiles,
    implicit_localhost: Mutex<Option<String>>,
}

impl Inventory {
    /// Parse every source in order (files, directories, `a,b,` lists). A source that cannot be
    /// parsed is a warning, as in Ansible; see [`Inventory::failures`] to be strict about it.
    pub fn load(sources: &[String], keys: &Keyring) -> Result<Inventory, ConfigError> {
        let loaded = dir::load(sources, keys);
        Ok(Inventory {
            data: loaded.data,
            sources: sources.to_vec(),
            warnings: Mutex::new(loaded.warnings),
            failures: loaded.failures,
            vars_files: VarsFiles::default(),
            implicit_localhost: Mutex::new(None),
        })
    }

    /// Warnings Ansible would print (unparsable sources, unmatched patterns, skipped keys).
    pub fn warnings(&self) -> Vec<String> {
        lock(&self.warnings).clone()
    }

    pub(crate) fn push_warning(&self, w: String) {
        lock(&self.warnings).push(w);
    }

    /// Sources that no inventory plugin could parse, with the first reason.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    pub fn data(&self) -> &InventoryData {
        &self.data
    }

    /// Every host, in inventory order (Ansible's order for the pattern `all`).
    pub fn hosts(&self) -> Vec<String> {
        self.data
            .group_hosts(ALL)
            .into_iter()
            .map(|h| self.data.hosts[h].name.clone())
            .collect()
    }

    /// True for an inventory host, or a name the implicit localhost answers to.
    pub fn has_host(&self, host: &str) -> bool {
        self.data.hosts.contains_key(host) || LOCALHOST.contains(&host)
    }

    /// Every group name, in creation order (`all` and `ungrouped` first).
    pub fn group_list(&self) -> Vec<String> {
        self.data.groups.keys().cloned().collect()
    }

    /// The host's groups except `all`, in variable-precedence order: depth, then
    /// `ansible_group_priority`, then name.
    pub fn host_groups_sorted(&self, host: &str) -> Vec<String> {
        let Some(h) = self.data.host_index(host) else {
            return vec![];
        };
        let mut gs: Vec<&data::Group> = self
            .data
            .host_groups(h)
            .into_iter()
            .filter(|g| *g != ALL)
            .map(|g| self.data.group(g))
            .collect();
        gs.sort_by(|a, b| (a.depth, a.priority, &a.name).cmp(&(b.depth, b.priority, &b.name)));
        gs.into_iter().map(|g| g.name.clone()).collect()
    }

    /// The `group_names` magic variable: sorted names of the host's groups (with ancestors),
    /// except `all` (`ungrouped` is included when the host is in it).
    pub fn group_names(&self, host: &str) -> Vec<String> {
        let Some(h) = self.data.host_index(host) else {
            return vec![];
        };
        let mut names: Vec<String> = self
            .data
            .host_groups(h)
            .into_iter()
            .filter(|g| *g != ALL)
            .map(|g| self.data.group(g).name.clone())
            .collect();
        names.sort();
        names
    }

    /// The `groups` magic variable: every group (with `all` and `ungrouped`) → its hosts.
    pub fn groups_var(&self) -> Map {
        self.data
            .groups
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let hosts = self
                    .data
                    .group_hosts(i)
                    .into_iter()
                    .map(|h| Value::str(self.data.hosts[h].name.clone()))
                    .collect();
                (name.clone(), Value::List(hosts))
            })
            .collect()
    }

    /// The directories whose `group_vars/`/`host_vars/` belong to the inventory: each source
    /// (a directory) or its parent directory (a file), host lists skipped, in source order.
    pub fn vars_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for s in &self.sources {
            if s.is_empty() || (s.contains(',') && !Path::new(s).exists()) {
                continue;
            }
            let p = Path::new(s);
            let d = if p.is_dir() {
                p.to_path_buf()
            } else {
                p.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            out.push(realpath(&d));
        }
        out
    }

    /// A group's variables as `ansible-inventory --graph --vars` shows them: its inventory
    /// variables, then its group_vars files from the inventory sources, then the priority.
    pub fn group_vars(&self, group: &str, keys: &Keyring) -> Result<Map, ConfigError> {
        let Some(g) = self.data.groups.get(group) else {
            return Ok(Map::new());
        };
        let mut out = g.vars.clone();
        for d in self.vars_dirs() {
            merge(
                &mut out,
                self.vars_files.entity_vars(&d, Kind::Group, group, keys)?,
            );
        }
        if g.priority != 1 {
            out.insert("ansible_group_priority".into(), Value::Int(g.priority));
        }
        Ok(out)
    }

    /// The inventory part of a host's variables, merged in ansible-core's VARIABLE_PRECEDENCE
    /// order (top-level keys replace): `all` group inventory vars; the host's other groups'
    /// inventory vars (sorted by depth, priority, name); `group_vars/all` beside each inventory
    /// source, then beside each play basedir; each sorted group's `group_vars` beside each
    /// source, then each basedir; the host's inventory vars with the magic `inventory_hostname`,
    /// `inventory_hostname_short`, `group_names`; `host_vars` beside each source, then each
    /// basedir. Raw values: nothing is templated.
    pub fn host_vars(
        &self,
        host: &str,
        play_basedirs: &[PathBuf],
        keys: &Keyring,
    ) -> Result<Map, ConfigError> {
        let d = &self.data;
        let hidx = d.host_index(host);
        let implicit = hidx.is_none() && LOCALHOST.contains(&host);
        if hidx.is_none() && !implicit {
            return Err(ConfigError::Other(format!(
                "host {host:?} is not in the inventory"
            )));
        }
        let groups = self.host_groups_sorted(host);
        let src_dirs = self.vars_dirs();
        let play_dirs: Vec<PathBuf> = play_basedirs.iter().map(|p| realpath(p)).collect();
        let mut out = d.groups[ALL].vars.clone();
        for g in &groups {
            merge(&mut out, d.groups[g.as_str()].vars.clone());
        }
        for dirs in [&src_dirs, &play_dirs] {
            for dir in dirs {
                merge(
                    &mut out,
                    self.vars_files.entity_vars(dir, Kind::Group, "all", keys)?,
                );
            }
        }
        for dirs in [&src_dirs, &play_dirs] {
            for dir in dirs {
                for g in &groups {
                    merge(
                        &mut out,
                        self.vars_files.entity_vars(dir, Kind::Group, g, keys)?,
                    );
                }
            }
        }
        let name = match hidx {
            Some(h) => {
                merge(&mut out, d.hosts[h].vars.clone());
                d.hosts[h].name.clone()
            }
            None => {
                let name = self.implicit_localhost_name(host);
                merge(&mut out, implicit_localhost_vars());
                name
            }
        };
        out.insert("inventory_hostname".into(), Value::str(name.clone()));
        let short = if address::is_ip(&name) {
            name.clone()
        } else {
            name.split('.').next().unwrap_or("").to_string()
        };
        out.insert("inventory_hostname_short".into(), Value::str(short));
        out.insert(
            "group_names".into(),
            Value::List(
                self.group_names(&name)
                    .into_iter()
                    .map(Value::Str)
                    .collect(),
            ),
        );
        for dirs in [&src_dirs, &play_dirs] {
            for dir in dirs {
                merge(
                    &mut out,
                    self.vars_files.entity_vars(dir, Kind::Host, &name, keys)?,
                );
            }
        }
        Ok(out)
    }

    /// The group_vars/host_vars file whose value of `name` a host sees (the last in precedence
    /// order), `None` if no such file defines it (e.g. it is set in the inventory file itself).
    /// For error messages: "group_vars/all.yml: recursive loop ...".
    pub fn var_file(
        &self,
        host: &str,
        name: &str,
        play_basedirs: &[PathBuf],
        keys: &Keyring,
    ) -> Option<PathBuf> {
        let src_dirs = self.vars_dirs();
        let play_dirs: Vec<PathBuf> = play_basedirs.iter().map(|p| realpath(p)).collect();
        let mut entities: Vec<(Kind, String)> = vec![(Kind::Group, "all".into())];
        for g in self.host_groups_sorted(host) {
            entities.push((Kind::Group, g.to_string()));
        }
        entities.push((Kind::Host, host.to_string()));
        let mut found = None;
        for (kind, entity) in &entities {
            for dir in src_dirs.iter().chain(&play_dirs) {
                if let Some(f) = self
                    .vars_files
                    .file_defining(dir, *kind, entity, name, keys)
                {
                    found = Some(f);
                }
            }
        }
        found
    }

    /// The host the implicit localhost resolves to: an inventory host named like localhost if
    /// there is one, otherwise the first localhost name asked for.
    pub(crate) fn implicit_localhost_name(&self, asked: &str) -> String {
        if let Some(h) = self
            .data
            .hosts
            .keys()
            .find(|h| LOCALHOST.contains(&h.as_str()))
        {
            return h.clone();
        }
        lock(&self.implicit_localhost)
            .get_or_insert_with(|| asked.to_string())
            .clone()
    }
}

/// The variables Ansible gives the implicit localhost: a local connection and the controller's
/// Python (for kiln: the first `python3` on `PATH`).
pub fn implicit_localhost_vars() -> Map {
    let py = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("python3"))
                .find(|p| p.is_file())
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/usr/bin/python3".into());
    let mut m = Map::new();
    m.insert("ansible_python_interpreter".into(), Value::str(py));
    m.insert("ansible_connection".into(), Value::str("local"));
    m
}

fn merge(into: &mut Map, from: Map) {
    for (k, v) in from {
        into.insert(k, v);
    }
}

fn realpath(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
