//! The house stays as drawn: every `crate::<folder>` path in `agent/<folder>/` must point to a
//! folder after it in `../shared/ARCHITECTURE.md`'s order
//!
//! `cli → engine → playbook → config → template → modules → build → vault → transport → host →
//! protocol → lab → value, yaml`
//!
//! (a folder may import only folders after it, never one before it). The check reads the source
//! text (every `crate::name` outside comments, `use` lines and inline paths alike), so it needs no
//! build of its own; `checker_reports_a_wrong_way_import` proves it fails on a violation.

use std::path::{Path, PathBuf};

/// The layers, top to bottom; names on one line are one layer.
const ORDER: &[&[&str]] = &[
    &["cli"],
    &["engine"],
    &["playbook"],
    &["config"],
    &["template"],
    &["modules"],
    &["build"],
    &["schedule"],
    &["vault"],
    &["transport"],
    &["host"],
    &["protocol"],
    &["lab"],
    &["value", "yaml"],
];

fn rank(name: &str) -> Option<usize> {
    ORDER.iter().position(|l| l.contains(&name))
}

/// The layer a source file belongs to: its first folder under `agent/`, or its stem for a
/// top-level file (`agent/protocol.rs`, `agent/value.rs`); `None` for the crate roots.
fn layer_of(rel: &Path) -> Option<String> {
    let mut parts = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next()?;
    if rel.components().count() == 1 {
        let stem = first.trim_end_matches(".rs").to_string();
        return rank(&stem).map(|_| stem);
    }
    Some(first)
}

/// Wrong-way imports in one file's text: `(line, from, to)` for each `crate::to` that `from` may
/// not use.
fn violations(from: &str, text: &str) -> Vec<(usize, String)> {
    let Some(from_rank) = rank(from) else {
        return vec![(
            0,
            format!("folder `{from}` is not in the layer order: add it"),
        )];
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `kiln_crate::`-like identifiers are not paths
            let boundary_ok = i == 0 || {
                let prev = rest[..i].chars().last().unwrap_or(' ');
                !(prev.is_ascii_alphanumeric() || prev == '_')
            };
            if boundary_ok {
                match rank(&name) {
                    Some(r) if r < from_rank => out.push((
                        n + 1,
                        format!(
                            "`{from}` imports `crate::{name}`, a layer above it \
                             (allowed: only layers after `{from}`)"
                        ),
                    )),
                    // `crate::kiln`-style names are not folders; a folder missing from ORDER is
                    Some(_) => {}
                    None if name.is_empty() || name.chars().next().unwrap().is_uppercase() => {}
                    None => out.push((
                        n + 1,
                        format!("`crate::{name}` is not in the layer order: add it"),
                    )),
                }
            }
            rest = &after[name.len()..];
        }
    }
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_folder_imports_only_layers_below_it() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent");
    let mut files = Vec::new();
    rs_files(&agent, &mut files);
    files.sort();
    let mut bad = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&agent).unwrap();
        let Some(from) = layer_of(rel) else {
            continue; // lib.rs, main.rs, agent_main.rs: the crate roots
        };
        checked += 1;
        let text = std::fs::read_to_string(f).unwrap();
        for (line, why) in violations(&from, &text) {
            bad.push(format!("agent/{}:{line}: {why}", rel.display()));
        }
    }
    assert!(checked > 100, "only {checked} files checked: wrong folder?");
    assert!(
        bad.is_empty(),
        "{} wrong-way import(s) (see ../shared/ARCHITECTURE.md for the order):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn checker_reports_a_wrong_way_import() {
    // a transport file that reaches up into the engine: must be reported with its line
    let text = "use crate::protocol::Frame;\n// crate::engine in a comment is fine\nuse crate::engine::Options;\n";
    let v = violations("transport", text);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, 3);
    assert!(v[0].1.contains("crate::engine"));
    // the same import the right way round is fine
    assert!(violations("cli", text).is_empty());
    // an unknown folder is reported rather than silently allowed
    assert_eq!(violations("cli", "use crate::newthing::X;").len(), 1);
}

/// `serde_yaml` (archived upstream) stays behind `agent/yaml.rs`, so that it can be swapped in one
/// place (issue 13 item 7): any other file naming it in code fails.
#[test]
fn serde_yaml_only_in_yaml_rs() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent");
    let mut files = Vec::new();
    rs_files(&agent, &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&agent).unwrap();
        if rel == Path::new("yaml.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("serde_yaml::") || code.contains("use serde_yaml") {
                bad.push(format!("agent/{}:{}", rel.display(), n + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "serde_yaml used outside agent/yaml.rs (use crate::yaml's load/from_str/dump):\n{}",
        bad.join("\n")
    );
}
