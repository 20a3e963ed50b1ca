//! The inventory's data model and the rules that keep it consistent, as ansible-core's
//! `InventoryData`, `Group` and `Host` keep them: insertion order everywhere (output order depends
//! on it), group depth maintained on every `add_child`, recursive parent/child loops refused, hosts
//! with no group put in `ungrouped` by [`InventoryData::reconcile`].
//!
//! Groups and hosts live in insertion-ordered maps and refer to each other by index, so the
//! parsers (INI, YAML, host lists) can all write into one shared structure the way Ansible's
//! plugins do — including the partial updates a source leaves behind when it fails half-way.

use crate::value::{Map, Value};
use indexmap::IndexMap;

/// Ansible's names for the implicit local host.
pub const LOCALHOST: [&str; 3] = ["127.0.0.1", "localhost", "::1"];

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// Variables set by inventory sources (INI `[g:vars]`, YAML `vars:`), not group_vars files.
    pub vars: Map,
    /// Hosts directly in this group (indices into the host map), in insertion order.
    pub hosts: Vec<usize>,
    pub children: Vec<usize>,
    pub parents: Vec<usize>,
    pub depth: i64,
    pub priority: i64,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Variables set by inventory sources (inline INI vars, YAML host maps, `ansible_port` from
    /// `host:port`, `inventory_file`/`inventory_dir`).
    pub vars: Map,
    /// True only for the implicit localhost.
    pub implicit: bool,
}

#[derive(Debug, Clone)]
pub struct InventoryData {
    pub groups: IndexMap<String, Group>,
    pub hosts: IndexMap<String, Host>,
    /// The source being parsed (for `inventory_file`), absolute as Ansible makes it.
    pub current_source: Option<String>,
}

pub const ALL: usize = 0;
pub const UNGROUPED: usize = 1;

impl Default for InventoryData {
    fn default() -> Self {
        let mut d = InventoryData {
            groups: IndexMap::new(),
            hosts: IndexMap::new(),
            current_source: None,
        };
        d.add_group("all");
        d.add_group("ungrouped");
        // cannot fail: two fresh groups
        let _ = d.add_child_group(ALL, UNGROUPED);
        d
    }
}

impl InventoryData {
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.get_index_of(name)
    }

    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.get_index_of(name)
    }

    pub fn group(&self, i: usize) -> &Group {
        &self.groups[i]
    }

    /// Add a group if it is new; its index either way.
    pub fn add_group(&mut self, name: &str) -> usize {
        if let Some(i) = self.groups.get_index_of(name) {
            return i;
        }
        let (i, _) = self.groups.insert_full(
            name.to_string(),
            Group {
                name: name.to_string(),
                vars: Map::new(),
                hosts: vec![],
                children: vec![],
                parents: vec![],
                depth: 0,
                priority: 1,
            },
        );
        i
    }

    /// Add a host (and put it in `group`). A port applies only when the host is new, as in Ansible.
    pub fn add_host(
        &mut self,
        name: &str,
        group: Option<&str>,
        port: Option<i64>,
    ) -> Result<usize, String> {
        if name.is_empty() {
            return Err("Invalid empty host name provided".into());
        }
        let g = match group {
            Some(g) => Some(
                self.group_index(g)
                    .ok_or_else(|| format!("Could not find group {g} in inventory"))?,
            ),
            None => None,
        };
        let h = match self.hosts.get_index_of(name) {
            Some(h) => h,
            None => {
                let mut vars = Map::new();
                if let Some(p) = port {
                    vars.insert("ansible_port".into(), Value::Int(p));
                }
                match &self.current_source {
                    Some(src) => {
                        vars.insert("inventory_file".into(), Value::str(src.clone()));
                        vars.insert(
                            "inventory_dir".into(),
                            path_basedir(src).map(Value::Str).unwrap_or(Value::Null),
                        );
                    }
                    None => {
                        vars.insert("inventory_file".into(), Value::Null);
                        vars.insert("inventory_dir".into(), Value::Null);
                    }
                }
                let (h, _) = self.hosts.insert_full(
                    name.to_string(),
                    Host {
                        name: name.to_string(),
                        vars,
                        implicit: false,
                    },
                );
                h
            }
        };
        if let Some(g) = g {
            let grp = &mut self.groups[g];
            if !grp.hosts.contains(&h) {
                grp.hosts.push(h);
            }
        }
        Ok(h)
    }

    /// `set_variable` on a group or host (groups first, as Ansible looks them up).
    /// `ansible_group_priority` sets the group's priority instead of a variable.
    pub fn set_variable(&mut self, entity: &str, key: &str, value: Value) -> Result<(), String> {
        if let Some(g) = self.groups.get_mut(entity) {
            if key == "ansible_group_priority" {
                g.priority = python_int(&value)
                    .ok_or_else(|| format!("invalid literal for int(): {value:?}"))?;
            } else {
                g.vars.insert(key.to_string(), value);
            }
            Ok(())
        } else if let Some(h) = self.hosts.get_mut(entity) {
            h.vars.insert(key.to_string(), value);
            Ok(())
        } else {
            Err(format!("Could not identify group or host named {entity}"))
        }
    }

    /// `add_child(group, child)`: a group or a host named `child` into `group`.
    pub fn add_child(&mut self, group: &str, child: &str) -> Result<(), String> {
        let g = self
            .group_index(group)
            .ok_or_else(|| format!("{group} is not a known group"))?;
        if let Some(c) = self.group_index(child) {
            self.add_child_group(g, c)
        } else if let Some(h) = self.host_index(child) {
            if !self.groups[g].hosts.contains(&h) {
                self.groups[g].hosts.push(h);
            }
            Ok(())
        } else {
            Err(format!("{child} is not a known host nor group"))
        }
    }

    pub fn add_child_group(&mut self, parent: usize, child: usize) -> Result<(), String> {
        if parent == child {
            return Err("can't add group to itself".into());
        }
        if self.groups[parent].children.contains(&child) {
            return Ok(());
        }
        if self.ancestors(parent).contains(&child) {
            return Err(format!(
                "Adding group '{}' as child to '{}' creates a recursive dependency loop.",
                self.groups[child].name, self.groups[parent].name
            ));
        }
        self.groups[parent].children.push(child);
        let d = (self.groups[parent].depth + 1).max(self.groups[child].depth);
        self.groups[child].depth = d;
        self.check_children_depth(child)?;
        if !self.groups[child].parents.contains(&parent) {
            self.groups[child].parents.push(parent);
        }
        Ok(())
    }

    /// Push depth increases down to descendants (Ansible's `_check_children_depth`).
    fn check_children_depth(&mut self, g: usize) -> Result<(), String> {
        let start = self.groups[g].depth;
        let mut depth = start;
        let mut seen: Vec<usize> = Vec::new();
        let mut unprocessed: Vec<usize> = self.groups[g].children.clone();
        while !unprocessed.is_empty() {
            for u in &unprocessed {
                if !seen.contains(u) {
                    seen.push(*u);
                }
            }
            depth += 1;
            let to_process = std::mem::take(&mut unprocessed);
            for c in to_process {
                if self.groups[c].depth < depth {
                    self.groups[c].depth = depth;
                    for k in self.groups[c].children.clone() {
                        if !unprocessed.contains(&k) {
                            unprocessed.push(k);
                        }
                    }
                }
            }
            if (depth - start) as usize > seen.len() {
                return Err(format!(
                    "The group named '{}' has a recursive dependency loop.",
                    self.groups[g].name
                ));
            }
        }
        Ok(())
    }

    /// Every ancestor of a group (not the group itself).
    pub fn ancestors(&self, g: usize) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        let mut stack: Vec<usize> = self.groups[g].parents.clone();
        while let Some(p) = stack.pop() {
            if !out.contains(&p) {
                out.push(p);
                stack.extend(self.groups[p].parents.iter().copied());
            }
        }
        out
    }

    /// The group and its descendants, in Ansible's order: itself, its children in order, then
    /// each further level (Ansible walks later levels through a `set`, whose order is that of
    /// object addresses; kiln uses breadth-first list order, the same in every common case).
    pub fn descendants_ordered(&self, g: usize) -> Vec<usize> {
        let mut ordered = vec![g];
        let mut seen = vec![g];
        let mut level: Vec<usize> = Vec::new();
        for c in &self.groups[g].children {
            ordered.push(*c);
            if !seen.contains(c) {
                seen.push(*c);
                level.push(*c);
            }
        }
        while !level.is_empty() {
            let mut next = Vec::new();
            for p in &level {
                for c in &self.groups[*p].children {
                    if !seen.contains(c) {
                        seen.push(*c);
                        ordered.push(*c);
                        next.push(*c);
                    }
                }
            }
            level = next;
        }
        ordered
    }

    /// All hosts of a group and its descendants (Ansible's `Group.get_hosts`).
    pub fn group_hosts(&self, g: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for k in self.descendants_ordered(g) {
            for h in &self.groups[k].hosts {
                if seen.insert(*h) {
                    if g == ALL && self.hosts[*h].implicit {
                        continue;
                    }
                    out.push(*h);
                }
            }
        }
        out
    }

    /// The groups a host belongs to, with every ancestor (Ansible's `Host.get_groups`), in
    /// group-creation order.
    pub fn host_groups(&self, h: usize) -> Vec<usize> {
        let mut mark = vec![false; self.groups.len()];
        for (i, g) in self.groups.values().enumerate() {
            if g.hosts.contains(&h) && !mark[i] {
                mark[i] = true;
                for a in self.ancestors(i) {
                    mark[a] = true;
                }
            }
        }
        mark.iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(i, _)| i)
            .collect()
    }

    /// Ansible's `reconcile_inventory`: top-level groups become children of `all`, hosts in no
    /// group go to `ungrouped`, hosts in another group leave it.
    pub fn reconcile(&mut self, warnings: &mut Vec<String>) {
        for g in 0..self.groups.len() {
            if g != ALL && self.groups[g].parents.is_empty() {
                // cannot loop: g has no ancestors
                let _ = self.add_child_group(ALL, g);
            }
        }
        for h in 0..self.hosts.len() {
            let mine = self.host_groups(h);
            if mine.contains(&UNGROUPED) {
                if mine.iter().any(|g| *g != ALL && *g != UNGROUPED) {
                    self.groups[UNGROUPED].hosts.retain(|x| *x != h);
                }
            } else if !self.hosts[h].implicit && (mine.is_empty() || mine == [ALL]) {
                self.groups[UNGROUPED].hosts.push(h);
            }
        }
        for name in self.groups.keys() {
            if self.hosts.contains_key(name) {
                warnings.push(format!("Found both group and host with same name: {name}"));
            }
        }
    }
}

/// Python's `int(value)` for the values `ansible_group_priority` takes.
fn python_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(*b as i64),
        Value::Float(f) => Some(f.trunc() as i64),
        Value::Str(s) | Value::Unsafe(s) => s.trim().replace('_', "").parse().ok(),
        Value::Secret(s) => python_int(s.expose()),
        _ => None,
    }
}

/// Ansible's `basedir()`: the directory of a file, the path itself if it is a directory, `None`
/// for something that is neither (a host list).
pub fn path_basedir(src: &str) -> Option<String> {
    let p = std::path::Path::new(src);
    if p.is_dir() {
        Some(src.to_string())
    } else if p.is_file() {
        p.parent().map(|d| d.display().to_string())
    } else {
        None
    }
}
