//! YAML (and JSON) inventories: `group: {hosts: {h: {vars}}, children: {...}, vars: {...}}` at
//! the top level, read into the shared [`InventoryData`] as Ansible's `yaml` plugin reads them:
//! a string where a section map is expected means `{string: null}`, unknown keys and non-map
//! groups are skipped with a warning, host keys may carry ranges and `:port`.

use super::address::expand_hostpattern;
use super::data::InventoryData;
use crate::value::Value;
use crate::yaml::{Node, NodeKind};

/// Parse YAML inventory text into `inv`; warnings Ansible would print are pushed to `warnings`.
pub fn parse(
    inv: &mut InventoryData,
    text: &str,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let root = crate::yaml::load_node(text, file).map_err(|e| e.to_string())?;
    let Some(root) = root else {
        return Err("Parsed empty YAML file".into());
    };
    let Some(entries) = root.as_map() else {
        return Err(format!(
            "YAML inventory has invalid structure, it should be a dictionary, got: {}",
            type_name(&root)
        ));
    };
    if entries.is_empty() {
        return Err("Parsed empty YAML file".into());
    }
    if root.get("plugin").is_some_and(|p| p.to_value().is_truthy()) {
        return Err("Plugin configuration YAML file, not YAML inventory".into());
    }
    for (name, _, data) in entries {
        parse_group(inv, name, data, file, warnings)?;
    }
    Ok(())
}

fn type_name(n: &Node) -> &'static str {
    match &n.kind {
        NodeKind::Map(_) => "<class 'dict'>",
        NodeKind::Seq(_) => "<class 'list'>",
        NodeKind::Scalar(v) => match v {
            Value::Str(_) | Value::Unsafe(_) => "<class 'str'>",
            Value::Int(_) => "<class 'int'>",
            Value::Bool(_) => "<class 'bool'>",
            Value::Float(_) => "<class 'float'>",
            _ => "<class 'NoneType'>",
        },
    }
}

fn is_null(n: &Node) -> bool {
    matches!(n.kind, NodeKind::Scalar(Value::Null))
}

/// A section value as a list of (key, node-or-null), converting a bare string to `{s: null}`.
fn section_entries(n: &Node) -> Option<Vec<(String, Option<&Node>)>> {
    match &n.kind {
        NodeKind::Map(es) => Some(
            es.iter()
                .map(|(k, _, v)| (k.clone(), if is_null(v) { None } else { Some(v) }))
                .collect(),
        ),
        NodeKind::Scalar(Value::Str(s) | Value::Unsafe(s)) => Some(vec![(s.clone(), None)]),
        NodeKind::Scalar(Value::Null) => Some(vec![]),
        _ => None,
    }
}

fn parse_group(
    inv: &mut InventoryData,
    group: &str,
    data: &Node,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let entries = match &data.kind {
        NodeKind::Map(es) => es,
        NodeKind::Scalar(Value::Null) => {
            inv.add_group(group);
            return Ok(group.to_string());
        }
        _ => {
            warnings.push(format!(
                "Skipping '{group}' as this is not a valid group definition"
            ));
            return Ok(group.to_string());
        }
    };
    if group.is_empty() {
        return Err(format!(
            "Unable to add group {group}: Invalid empty/false group name provided"
        ));
    }
    inv.add_group(group);
    for section in ["vars", "children", "hosts"] {
        if let Some(n) = data.get(section) {
            if section_entries(n).is_none() {
                return Err(format!(
                    "{file}:{}:{}: Invalid \"{section}\" entry for \"{group}\" group, requires a dictionary, found \"{}\" instead.",
                    n.mark.line,
                    n.mark.col,
                    type_name(n)
                ));
            }
        }
    }
    for (key, _, value) in entries {
        let is_section = matches!(key.as_str(), "vars" | "children" | "hosts");
        let items = if is_section {
            section_entries(value)
        } else {
            None
        };
        match (&value.kind, items) {
            (NodeKind::Scalar(Value::Null), _) => continue,
            (NodeKind::Map(_), _) | (_, Some(_)) => {}
            _ => {
                warnings.push(format!(
                    "Skipping key ({key}) in group ({group}) as it is not a mapping, it is a {}",
                    type_name(value)
                ));
                continue;
            }
        }
        let items = section_entries(value).unwrap_or_default();
        match key.as_str() {
            "vars" => {
                for (var, v) in items {
                    let v = v.map(Node::to_value).unwrap_or(Value::Null);
                    inv.set_variable(group, &var, v).map_err(|e| format!("{file}:{}: {e}", value.mark.line))?;
                }
            }
            "children" => {
                for (sub, v) in items {
                    let null = Node { mark: value.mark, kind: NodeKind::Scalar(Value::Null) };
                    let sub = parse_group(inv, &sub, v.unwrap_or(&null), file, warnings)?;
                    inv.add_child(group, &sub).map_err(|e| format!("{file}:{}: {e}", value.mark.line))?;
                }
            }
            "hosts" => {
                for (pattern, v) in items {
                    let (hosts, port) = expand_hostpattern(&pattern).map_err(|e| format!("{file}:{}: {e}", value.mark.line))?;
                    let vars = match v.map(Node::to_value) {
                        None => crate::value::Map::new(),
                        Some(Value::Map(m)) => m,
                        Some(other) if !other.is_truthy() => crate::value::Map::new(),
                        Some(other) => {
                            let line = v.map(|n| n.mark.line).unwrap_or(0);
                            return Err(format!("{file}:{line}: Invalid data from file, expected dictionary and got:\n\n{other:?}"));
                        }
                    };
                    for h in hosts {
                        inv.add_host(&h, Some(group), port)?;
                        for (k, val) in &vars {
                            inv.set_variable(&h, k, val.clone())?;
                        }
                    }
                }
            }
            _ => warnings.push(format!("Skipping unexpected key ({key}) in group ({group}), only \"vars\", \"children\" and \"hosts\" are valid")),
        }
    }
    Ok(group.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_groups_hosts_children() {
        let mut d = InventoryData::default();
        let mut w = vec![];
        let text = "all:\n  hosts:\n    a:\n    b:22: {x: 1}\n  children:\n    web:\n      hosts: w[1:2]\n      vars: {v: yes}\n      bogus: 1\n";
        parse(&mut d, text, "inv.yml", &mut w).unwrap();
        assert_eq!(d.hosts.keys().collect::<Vec<_>>(), ["a", "b", "w1", "w2"]);
        assert_eq!(d.hosts["b"].vars.get("ansible_port"), Some(&Value::Int(22)));
        assert_eq!(d.groups["web"].vars.get("v"), Some(&Value::Bool(true)));
        assert_eq!(w.len(), 1, "{w:?}");
        let e = parse(
            &mut InventoryData::default(),
            "all:\n  hosts: [a\n",
            "bad.yml",
            &mut w,
        )
        .unwrap_err();
        assert!(e.starts_with("bad.yml:"), "{e}");
        let e = parse(
            &mut InventoryData::default(),
            "g:\n  hosts: [a]\n",
            "bad.yml",
            &mut w,
        )
        .unwrap_err();
        assert!(e.contains("requires a dictionary"), "{e}");
    }
}
