//! Inventory-level tests on real files in a temp dir: the public API (patterns, limits with
//! `@file`, magic variables, precedence with play basedirs). Agreement with ansible-core itself
//! is checked by `tests/ansible_inventory_diff.rs`.

use super::*;
use std::fs;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn load(root: &Path, rel: &[&str]) -> Inventory {
    let sources: Vec<String> = rel
        .iter()
        .map(|r| root.join(r).display().to_string())
        .collect();
    Inventory::load(&sources, &Keyring::empty()).unwrap()
}

const HOSTS: &str = "solo\n[web]\nw1\nw2\nw3\nw4\n[db]\nd1\nw2\n[prod:children]\nweb\n[prod]\nd1\n[staging]\nw4\nd1\n";

#[test]
fn patterns_in_ansible_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hosts", HOSTS);
    let inv = load(dir.path(), &["hosts"]);
    let sel = |p: &str| inv.select(p).unwrap();
    // orders as `ansible PATTERN --list-hosts` prints them for this inventory
    assert_eq!(inv.hosts(), ["solo", "d1", "w2", "w4", "w1", "w3"]);
    assert_eq!(sel("all"), inv.hosts());
    assert_eq!(sel("*"), inv.hosts());
    assert_eq!(sel("db:web"), ["d1", "w2", "w1", "w3", "w4"]);
    assert_eq!(sel("db,web"), sel("db:web"));
    assert_eq!(sel("web:&staging"), ["w4"]);
    assert_eq!(sel("web:!w1"), ["w2", "w3", "w4"]);
    assert_eq!(sel("!web"), ["solo", "d1"]);
    assert_eq!(sel("w*"), ["w1", "w2", "w3", "w4"]);
    assert_eq!(sel("~w[13]"), ["w1", "w3"]);
    assert_eq!(sel("web[0]"), ["w1"]);
    assert_eq!(sel("web[-1]"), ["w4"]);
    assert_eq!(sel("web[1:3]"), ["w2", "w3", "w4"]);
    assert_eq!(sel("web[1:]"), ["w2", "w3", "w4"]);
    assert!(sel("nosuch").is_empty());
    assert!(inv
        .warnings()
        .iter()
        .any(|w| w.contains("Could not match supplied host pattern, ignoring: nosuch")));
    assert!(inv.select("web[9]").is_err());
    assert_eq!(sel("localhost"), ["localhost"]);
}

#[test]
fn limits_with_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hosts", HOSTS);
    write(dir.path(), "limit.txt", "d1\n\nweb[1:2]\n");
    let inv = load(dir.path(), &["hosts"]);
    let all = inv.hosts();
    let lim = |s: &str| Limit::parse(s).unwrap();
    assert_eq!(
        inv.limit(&all, &lim("web:!w1")).unwrap(),
        ["w2", "w4", "w3"]
    );
    let at = format!("@{}", dir.path().join("limit.txt").display());
    assert_eq!(inv.limit(&all, &lim(&at)).unwrap(), ["d1", "w2", "w3"]);
    assert!(Limit::parse("@/nonexistent/limit").is_err());
    assert!(Limit::parse("~(").is_err());
}

#[test]
fn magic_vars_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hosts", HOSTS);
    let inv = load(dir.path(), &["hosts"]);
    assert_eq!(inv.group_names("w1"), ["prod", "web"]);
    assert_eq!(inv.group_names("solo"), ["ungrouped"]);
    assert_eq!(inv.host_groups_sorted("d1"), ["db", "prod", "staging"]);
    let groups = inv.groups_var();
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        ["all", "ungrouped", "web", "db", "prod", "staging"]
    );
    assert_eq!(
        groups["prod"],
        Value::List(
            ["d1", "w1", "w2", "w3", "w4"]
                .iter()
                .map(|s| Value::str(*s))
                .collect()
        )
    );
    let v = inv.host_vars("w1", &[], &Keyring::empty()).unwrap();
    assert_eq!(v.get("inventory_hostname"), Some(&Value::str("w1")));
    assert!(v
        .get("inventory_file")
        .and_then(Value::as_str)
        .is_some_and(|f| f.ends_with("/hosts")));
}

#[test]
fn precedence_with_play_basedirs() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "inv/hosts",
        "[web]\nw1 h=inline\n[web:vars]\ng=ini-web\n[all:vars]\na=ini-all\ng=ini-all\n",
    );
    write(
        r,
        "inv/group_vars/all.yml",
        "a: inv-all\nb: inv-all\nc: inv-all\n",
    );
    write(r, "inv/group_vars/web", "b: inv-web\n");
    write(r, "play/group_vars/all/x.yml", "a: play-all\nc: play-all\n");
    write(r, "play/group_vars/web.yml", "c: play-web\n");
    write(r, "inv/host_vars/w1.yml", "h: inv-host\n");
    write(r, "play/host_vars/w1.yml", "h: play-host\n");
    let inv = load(r, &["inv"]);
    let v = inv
        .host_vars("w1", &[r.join("play")], &Keyring::empty())
        .unwrap();
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    // all_plugins_play beats all_plugins_inventory; groups_plugins_* beat both
    assert_eq!(s("a"), "play-all");
    assert_eq!(s("b"), "inv-web");
    assert_eq!(s("c"), "play-web");
    assert_eq!(s("g"), "ini-web");
    assert_eq!(s("h"), "play-host");
}

#[test]
fn a_cycle_fails_its_source_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hosts", "[a:children]\nb\n[b:children]\na\n");
    let inv = load(dir.path(), &["hosts"]);
    assert_eq!(inv.failures().len(), 1);
    assert!(
        inv.failures()[0].contains("recursive dependency loop"),
        "{:?}",
        inv.failures()
    );
    assert!(inv.warnings().iter().any(|w| w.contains("Unable to parse")));
}
