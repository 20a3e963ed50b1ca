//! INI inventories, read line by line into the shared [`InventoryData`] as Ansible's `ini` plugin
//! does: `[g]`, `[g:children]`, `[g:vars]`, host lines `name[:port] [k=v ...]` cut by Python's
//! shlex, values typed by Python's `literal_eval`, ranges expanded, `#`/`;` comment lines.
//!
//! A hand-written line parser, not an INI crate: Ansible's format is not INI (host lines have no
//! `=`, `[g:vars]` values are Python literals, sections may be declared after use), and the
//! errors must name `file:line` as Ansible's do.

use super::address::expand_hostpattern;
use super::data::InventoryData;
use super::shlex;
use regex::Regex;
use std::sync::OnceLock;

#[derive(PartialEq, Clone, Copy)]
enum Section {
    Hosts,
    Children,
    Vars,
}

struct Pending {
    line: usize,
    state: Section,
    parents: Vec<String>,
}

fn section_re() -> &'static (Regex, Regex) {
    static RE: OnceLock<(Regex, Regex)> = OnceLock::new();
    RE.get_or_init(|| {
        (
            Regex::new(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$").expect("static regex"),
            Regex::new(r"^([^:\]\s]+)\s*(?:#.*)?$").expect("static regex"),
        )
    })
}

/// Parse INI inventory text into `inv`. The error is Ansible's message, with `file:line:` where
/// Ansible gives one.
pub fn parse(inv: &mut InventoryData, text: &str, file: &str) -> Result<(), String> {
    let (section, groupname_re) = section_re();
    let mut pending: indexmap::IndexMap<String, Pending> = indexmap::IndexMap::new();
    let mut group = "ungrouped".to_string();
    let mut state = Section::Hosts;
    let at = |n: usize, msg: String| format!("{file}:{n}: {msg}");
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(c) = section.captures(line) {
            group = c[1].to_string();
            state = match c.get(2).map(|m| m.as_str()) {
                None | Some("hosts") => Section::Hosts,
                Some("children") => Section::Children,
                Some("vars") => Section::Vars,
                Some(other) => {
                    return Err(at(
                        lineno,
                        format!("Section [{}:{other}] has unknown type: {other}", &c[1]),
                    ))
                }
            };
            if inv.group_index(&group).is_none() {
                if state == Section::Vars && !pending.contains_key(&group) {
                    pending.insert(
                        group.clone(),
                        Pending {
                            line: lineno,
                            state,
                            parents: vec![],
                        },
                    );
                }
                inv.add_group(&group);
            }
            if state != Section::Vars {
                if let Some(p) = pending.get(&group) {
                    match p.state {
                        Section::Children => add_pending_children(inv, &group, &mut pending)?,
                        _ => {
                            pending.shift_remove(&group);
                        }
                    }
                }
            }
            continue;
        } else if line.starts_with('[') && line.ends_with(']') {
            return Err(at(
                lineno,
                format!("Invalid section entry: '{line}'. Please make sure that there are no spaces in the section entry, and that there are no other invalid characters"),
            ));
        }
        match state {
            Section::Hosts => {
                let tokens = shlex::split(line).map_err(|e| {
                    at(
                        lineno,
                        format!("Error parsing host definition '{line}': {e}"),
                    )
                })?;
                let Some(first) = tokens.first() else {
                    continue;
                };
                let (hosts, port) =
                    expand_hostpattern(first).map_err(|e| format!("{file}:{lineno}: {e}"))?;
                if first.trim().ends_with(':') && port.is_none() {
                    return Err(format!(
                        "Invalid host pattern '{first}' supplied, ending in ':' is not allowed, this character is reserved to provide a port."
                    ));
                }
                if hosts.iter().any(|h| h.trim() == "---") {
                    return Err(format!("Invalid host pattern '{first}' supplied, '---' is normally a sign this is a YAML file."));
                }
                let mut vars: Vec<(String, crate::value::Value)> = Vec::new();
                for t in &tokens[1..] {
                    let Some((k, v)) = t.split_once('=') else {
                        return Err(at(
                            lineno,
                            format!("Expected key=value host variable assignment, got: {t}"),
                        ));
                    };
                    match vars.iter_mut().find(|(x, _)| x == k) {
                        Some(slot) => slot.1 = parse_value(v),
                        None => vars.push((k.to_string(), parse_value(v))),
                    }
                }
                for h in hosts {
                    inv.add_host(&h, Some(&group), port)
                        .map_err(|e| at(lineno, e))?;
                    for (k, v) in &vars {
                        inv.set_variable(&h, k, v.clone())
                            .map_err(|e| at(lineno, e))?;
                    }
                }
            }
            Section::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(at(lineno, format!("Expected key=value, got: {line}")));
                };
                inv.set_variable(&group, k.trim(), parse_value(v.trim()))
                    .map_err(|e| at(lineno, e))?;
            }
            Section::Children => {
                let child = match groupname_re.captures(line) {
                    Some(c) => c[1].to_string(),
                    None => return Err(at(lineno, format!("Expected group name, got: {line}"))),
                };
                if inv.group_index(&child).is_none() {
                    match pending.get_mut(&child) {
                        Some(p) => p.parents.push(group.clone()),
                        None => {
                            pending.insert(
                                child,
                                Pending {
                                    line: lineno,
                                    state,
                                    parents: vec![group.clone()],
                                },
                            );
                        }
                    }
                } else {
                    inv.add_child(&group, &child).map_err(|e| at(lineno, e))?;
                }
            }
        }
    }
    if let Some((name, p)) = pending.into_iter().next() {
        return Err(match p.state {
            Section::Vars => format!(
                "{file}:{}: Section [{name}:vars] not valid for undefined group: {name}",
                p.line
            ),
            _ => format!(
                "{file}:{}: Section [{}:children] includes undefined group: {name}",
                p.line,
                p.parents.last().cloned().unwrap_or_default()
            ),
        });
    }
    Ok(())
}

fn add_pending_children(
    inv: &mut InventoryData,
    group: &str,
    pending: &mut indexmap::IndexMap<String, Pending>,
) -> Result<(), String> {
    let parents = pending
        .get(group)
        .map(|p| p.parents.clone())
        .unwrap_or_default();
    for parent in parents {
        inv.add_child(&parent, group)?;
        if pending
            .get(&parent)
            .is_some_and(|p| p.state == Section::Children)
        {
            add_pending_children(inv, &parent, pending)?;
        }
    }
    pending.shift_remove(group);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn load(text: &str) -> Result<InventoryData, String> {
        let mut d = InventoryData::default();
        parse(&mut d, text, "hosts")?;
        Ok(d)
    }

    #[test]
    fn hosts_groups_children_vars() {
        let d = load("top1\n[web]\nweb[1:2] a=1 b=True c=\"x y\" d=[1,2]\ndb:2222\n[all:children]\nweb\n[web:vars]\nx = 1\ny = foo bar # c\n").unwrap();
        let h = &d.hosts["web1"].vars;
        assert_eq!(h.get("a"), Some(&Value::Int(1)));
        assert_eq!(h.get("b"), Some(&Value::Bool(true)));
        assert_eq!(h.get("c"), Some(&Value::str("x y")));
        assert_eq!(
            d.hosts["db"].vars.get("ansible_port"),
            Some(&Value::Int(2222))
        );
        let web = &d.groups["web"];
        assert_eq!(web.vars.get("x"), Some(&Value::Int(1)));
        assert_eq!(web.vars.get("y"), Some(&Value::str("foo bar # c")));
        assert_eq!(web.depth, 1);
        assert!(d.groups["ungrouped"]
            .hosts
            .contains(&d.host_index("top1").unwrap()));
    }

    #[test]
    fn children_declared_later_and_errors_name_lines() {
        let d = load("[a:children]\nb\n[b]\nh1\n").unwrap();
        assert_eq!(d.groups["b"].parents.len(), 1);
        let e = load("[a:children]\nnope\n").unwrap_err();
        assert_eq!(
            e,
            "hosts:2: Section [a:children] includes undefined group: nope"
        );
        let e = load("[x:vars]\nk=v\n").unwrap_err();
        assert!(e.starts_with("hosts:1: Section [x:vars] not valid"), "{e}");
        let e = load("[a]\nh k\n").unwrap_err();
        assert!(e.starts_with("hosts:2: Expected key=value"), "{e}");
        let e = load("[a:children]\nb\n[b:children]\na\n").unwrap_err();
        assert!(e.contains("recursive dependency loop"), "{e}");
        let e = load("[bad section]\n").unwrap_err();
        assert!(e.starts_with("hosts:1: Invalid section entry"), "{e}");
        assert!(load("all:\n  hosts:\n")
            .unwrap_err()
            .contains("ending in ':'"));
    }
}

/// The INI plugin's `_parse_value`: `ast.literal_eval` of the text, or the text itself where
/// Python would raise (`a=1` is an int, `b=True` a bool, `e=01` or `f=foo` stay strings).
fn parse_value(text: &str) -> crate::value::Value {
    crate::template::py_literal_eval(text.trim_start_matches([' ', '\t']))
        .unwrap_or_else(|| crate::value::Value::str(text))
}
