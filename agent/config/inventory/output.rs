//! What `kiln inventory` prints, in ansible-inventory's shapes: `--list` (JSON with sorted keys,
//! groups with `hosts`/`children`, empty groups omitted, `_meta.hostvars`), `--list --yaml`,
//! `--graph [--vars]` (the `@all:` / `  |--@group:` tree, values printed as Python prints them),
//! and `--host`. Ansible's internal variables (`inventory_file`, `group_names`, ...) are left
//! out as ansible-inventory leaves them out. Secrets print as `********`.

use super::data::ALL;
use super::Inventory;
use crate::config::ConfigError;
use crate::value::{Map, Value};
use crate::vault::Keyring;
use serde_json::Value as J;
use std::collections::HashSet;
use std::path::PathBuf;

/// ansible-core's INTERNAL_STATIC_VARS: never shown by ansible-inventory.
pub const INTERNAL_STATIC_VARS: [&str; 36] = [
    "ansible_async_path",
    "ansible_collection_name",
    "ansible_config_file",
    "ansible_dependent_role_names",
    "ansible_diff_mode",
    "ansible_facts",
    "ansible_forks",
    "ansible_inventory_sources",
    "ansible_limit",
    "ansible_play_batch",
    "ansible_play_hosts",
    "ansible_play_hosts_all",
    "ansible_play_role_names",
    "ansible_playbook_python",
    "ansible_role_name",
    "ansible_role_names",
    "ansible_run_tags",
    "ansible_skip_tags",
    "ansible_verbosity",
    "ansible_version",
    "inventory_dir",
    "inventory_file",
    "inventory_hostname",
    "inventory_hostname_short",
    "groups",
    "group_names",
    "omit",
    "hostvars",
    "playbook_dir",
    "play_hosts",
    "role_name",
    "role_names",
    "role_path",
    "role_uuid",
    "ansible_config_file",
    "role_names",
];

/// Options shared by the outputs.
pub struct View<'a> {
    pub inv: &'a Inventory,
    pub keys: &'a Keyring,
    pub play_basedirs: Vec<PathBuf>,
    pub limit: Option<super::pattern::Limit>,
}

impl View<'_> {
    fn hosts(&self) -> Result<Vec<String>, ConfigError> {
        let all = self.inv.hosts();
        match &self.limit {
            Some(l) => self.inv.limit(&all, l),
            None => Ok(all),
        }
    }

    /// A host's variables as ansible-inventory shows them (internal variables removed).
    pub fn host_vars(&self, host: &str) -> Result<Map, ConfigError> {
        let mut v = self.inv.host_vars(host, &self.play_basedirs, self.keys)?;
        v.retain(|k, _| !INTERNAL_STATIC_VARS.contains(&k.as_str()));
        Ok(v)
    }

    /// `ansible-inventory --list`.
    pub fn list_json(&self) -> Result<J, ConfigError> {
        let d = self.inv.data();
        let hosts = self.hosts()?;
        let available: HashSet<&str> = hosts.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let mut out = serde_json::Map::new();
        self.format_group(ALL, &available, &mut seen, &mut out);
        let mut hostvars = serde_json::Map::new();
        for h in &hosts {
            let v = self.host_vars(h)?;
            if !v.is_empty() {
                hostvars.insert(h.clone(), Value::Map(v).to_json(false));
            }
        }
        let mut meta = serde_json::Map::new();
        meta.insert("hostvars".into(), J::Object(hostvars));
        out.insert("_meta".into(), J::Object(meta));
        let _ = d;
        Ok(sorted(J::Object(out)))
    }

    fn format_group(
        &self,
        g: usize,
        available: &HashSet<&str>,
        seen: &mut HashSet<usize>,
        out: &mut serde_json::Map<String, J>,
    ) {
        let d = self.inv.data();
        let grp = d.group(g);
        let mut entry = serde_json::Map::new();
        if g != ALL {
            let hs: Vec<J> = grp
                .hosts
                .iter()
                .map(|h| d.hosts[*h].name.as_str())
                .filter(|h| available.contains(h))
                .map(|h| J::String(h.into()))
                .collect();
            if !hs.is_empty() {
                entry.insert("hosts".into(), J::Array(hs));
            }
        }
        let mut children = Vec::new();
        let mut nested = serde_json::Map::new();
        for c in &grp.children {
            children.push(J::String(d.group(*c).name.clone()));
            if !seen.contains(c) {
                self.format_group(*c, available, seen, &mut nested);
                seen.insert(*c);
            }
        }
        if !children.is_empty() {
            entry.insert("children".into(), J::Array(children));
        }
        if !entry.is_empty() {
            out.insert(grp.name.clone(), J::Object(entry));
        }
        for (k, v) in nested {
            out.insert(k, v);
        }
    }

    /// `ansible-inventory --list --yaml`: nested groups, hosts with their variables once.
    pub fn list_yaml(&self) -> Result<J, ConfigError> {
        let hosts = self.hosts()?;
        let available: HashSet<&str> = hosts.iter().map(String::as_str).collect();
        let mut seen_hosts = HashSet::new();
        let mut seen_groups = HashSet::new();
        let mut out = serde_json::Map::new();
        self.yaml_group(ALL, &available, &mut seen_hosts, &mut seen_groups, &mut out)?;
        Ok(sorted(J::Object(out)))
    }

    fn yaml_group(
        &self,
        g: usize,
        available: &HashSet<&str>,
        seen_hosts: &mut HashSet<String>,
        seen_groups: &mut HashSet<usize>,
        out: &mut serde_json::Map<String, J>,
    ) -> Result<(), ConfigError> {
        let d = self.inv.data();
        let grp = d.group(g);
        let mut children = serde_json::Map::new();
        for c in &grp.children {
            if *c == ALL {
                continue;
            }
            if seen_groups.contains(c) {
                children.insert(d.group(*c).name.clone(), J::Object(Default::default()));
            } else {
                self.yaml_group(*c, available, seen_hosts, seen_groups, &mut children)?;
                seen_groups.insert(*c);
            }
        }
        let mut hosts = serde_json::Map::new();
        if g != ALL {
            for h in &grp.hosts {
                let name = &d.hosts[*h].name;
                if !available.contains(name.as_str()) {
                    continue;
                }
                let vars = if seen_hosts.insert(name.clone()) {
                    Value::Map(self.host_vars(name)?).to_json(false)
                } else {
                    J::Object(Default::default())
                };
                hosts.insert(name.clone(), vars);
            }
        }
        let mut entry = serde_json::Map::new();
        if !children.is_empty() {
            entry.insert("children".into(), J::Object(children));
        }
        if !hosts.is_empty() {
            entry.insert("hosts".into(), J::Object(hosts));
        }
        if !entry.is_empty() {
            out.insert(grp.name.clone(), J::Object(entry));
        }
        Ok(())
    }

    /// `ansible-inventory --host H`.
    pub fn host_json(&self, host: &str) -> Result<J, ConfigError> {
        let hosts = self.inv.select(host)?;
        if hosts.len() != 1 {
            return Err(ConfigError::Other(
                "You must pass a single valid host to --host parameter".into(),
            ));
        }
        Ok(sorted(
            Value::Map(self.host_vars(&hosts[0])?).to_json(false),
        ))
    }

    /// `ansible-inventory --graph [group] [--vars]`.
    pub fn graph(&self, group: &str, show_vars: bool) -> Result<String, ConfigError> {
        let Some(g) = self.inv.data().group_index(group) else {
            return Err(ConfigError::Other(
                "Pattern must be valid group name when using --graph".into(),
            ));
        };
        let mut lines = Vec::new();
        self.graph_group(g, 0, show_vars, &mut lines)?;
        Ok(lines.join("\n"))
    }

    fn graph_group(
        &self,
        g: usize,
        depth: usize,
        show_vars: bool,
        lines: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let d = self.inv.data();
        let grp = d.group(g);
        lines.push(graph_name(&format!("@{}:", grp.name), depth));
        for c in &grp.children {
            self.graph_group(*c, depth + 1, show_vars, lines)?;
        }
        if g != ALL {
            for h in &grp.hosts {
                let name = &d.hosts[*h].name;
                lines.push(graph_name(name, depth + 1));
                if show_vars {
                    show(&self.host_vars(name)?, depth + 2, lines);
                }
            }
        }
        if show_vars {
            let mut gv = self.inv.group_vars(&grp.name, self.keys)?;
            gv.retain(|k, _| !INTERNAL_STATIC_VARS.contains(&k.as_str()));
            show(&gv, depth + 1, lines);
        }
        Ok(())
    }
}

fn graph_name(name: &str, depth: usize) -> String {
    if depth == 0 {
        name.to_string()
    } else {
        format!("{}--{name}", "  |".repeat(depth))
    }
}

fn show(vars: &Map, depth: usize, lines: &mut Vec<String>) {
    let mut keys: Vec<&String> = vars.keys().collect();
    keys.sort();
    for k in keys {
        lines.push(graph_name(
            &format!("{{{k} = {}}}", py_str(&vars[k])),
            depth,
        ));
    }
}

/// Every object's keys sorted, as `json.dumps(sort_keys=True)` prints them.
pub fn sorted(j: J) -> J {
    match j {
        J::Object(m) => {
            let mut entries: Vec<(String, J)> =
                m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            J::Object(entries.into_iter().collect())
        }
        J::Array(a) => J::Array(a.into_iter().map(sorted).collect()),
        j => j,
    }
}

/// JSON text as Python's `json.dumps(indent=4, ensure_ascii=False)` prints it.
pub fn to_python_json(j: &J) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // serializing an in-memory JSON value cannot fail
    let _ = j.serialize(&mut ser);
    String::from_utf8(buf).unwrap_or_default()
}

/// Python's `str(value)`.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::Str(s) | Value::Unsafe(s) => s.clone(),
        v => py_repr(v),
    }
}

/// Python's `repr(value)` for plain data.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => py_float(*f),
        Value::Str(s) | Value::Unsafe(s) => py_str_repr(s),
        Value::List(l) => format!("[{}]", l.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", py_str_repr(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Vault(_) | Value::Secret(_) => py_str_repr(crate::value::REDACTED),
    }
}

fn py_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        let s = format!("{f:?}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
            None => s,
        }
    }
}

fn py_str_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr() {
        let v = Value::List(vec![
            Value::Int(1),
            Value::str("a'b"),
            Value::Bool(true),
            Value::Null,
            Value::Float(1.0),
        ]);
        assert_eq!(py_str(&v), "[1, \"a'b\", True, None, 1.0]");
        assert_eq!(py_str(&Value::str("x y")), "x y");
        let mut m = Map::new();
        m.insert("k".into(), Value::str("v"));
        assert_eq!(py_str(&Value::Map(m)), "{'k': 'v'}");
    }
}
