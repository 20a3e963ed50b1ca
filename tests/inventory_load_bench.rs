//! Benchmark (not a timed assertion): 1,000 hosts in 100 groups, 100 group_vars files and 50
//! host_vars files, loaded with `Inventory::load` and merged with `host_vars` for every host.
//! Run with `cargo test --test inventory_load_bench -- --ignored --nocapture`; it prints the
//! figures, and ansible-inventory's time for the same `--list` when ansible-core is installed.

mod support;
use kiln::config::inventory::Inventory;
use kiln::vault::Keyring;
use std::fmt::Write as _;
use std::time::Instant;

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn load_1000_hosts_100_group_vars() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let mut ini = String::new();
    for g in 0..100 {
        writeln!(ini, "[g{g:03}]").unwrap();
        for h in 0..10 {
            writeln!(ini, "host{:04} idx={}", g * 10 + h, g * 10 + h).unwrap();
        }
    }
    writeln!(ini, "[tier:children]").unwrap();
    for g in (0..100).step_by(10) {
        writeln!(ini, "g{g:03}").unwrap();
    }
    std::fs::write(root.join("hosts"), ini).unwrap();
    std::fs::create_dir_all(root.join("group_vars")).unwrap();
    std::fs::create_dir_all(root.join("host_vars")).unwrap();
    let mut all = String::new();
    for k in 0..200 {
        writeln!(
            all,
            "all_var_{k}: {{name: v{k}, list: [1, 2, 3], nested: {{a: {k}}}}}"
        )
        .unwrap();
    }
    std::fs::write(root.join("group_vars/all.yml"), all).unwrap();
    for g in 0..99 {
        let mut t = String::new();
        for k in 0..20 {
            writeln!(t, "g{g}_var_{k}: value-{k}\nshared_{k}: from-g{g}").unwrap();
        }
        // templated values, resolved lazily per host
        for k in 0..5 {
            writeln!(t, "g{g}_tmpl_{k}: \"{{{{ g{g}_var_{k} }}}}-{{{{ inventory_hostname }}}}-{{{{ all_var_{k}.nested.a + idx | int }}}}\"").unwrap();
        }
        std::fs::write(root.join(format!("group_vars/g{g:03}.yml")), t).unwrap();
    }
    for h in (0..1000).step_by(20) {
        std::fs::write(
            root.join(format!("host_vars/host{h:04}")),
            format!("own: {h}\n"),
        )
        .unwrap();
    }
    let keys = Keyring::empty();
    let sources = vec![root.display().to_string()];
    let t0 = Instant::now();
    let inv = Inventory::load(&sources, &keys).expect("load");
    let t_load = t0.elapsed();
    let hosts = inv.hosts();
    assert_eq!(hosts.len(), 1000);
    let t1 = Instant::now();
    let mut total = 0;
    for h in &hosts {
        let v = inv.host_vars(h, &[], &keys).expect("host_vars");
        total += v.len();
    }
    let t_vars = t1.elapsed();
    assert!(total > 1000 * 200);
    println!(
        "inventory bench: load {:.1} ms, host_vars for {} hosts {:.1} ms (total {:.1} ms, {} vars)",
        t_load.as_secs_f64() * 1e3,
        hosts.len(),
        t_vars.as_secs_f64() * 1e3,
        (t_load + t_vars).as_secs_f64() * 1e3,
        total
    );

    // Resolve (template) every variable of every host, as `kiln vars HOST` does.
    use kiln::template::{Templar, VarSource};
    use std::sync::Arc;
    let keys = Arc::new(Keyring::empty());
    let run = kiln::config::vars::RunVars::new(
        Arc::new(inv),
        &sources,
        keys.clone(),
        Vec::new(),
        Vec::new(),
    );
    let templar = Templar::new(keys);
    let t2 = Instant::now();
    let mut resolved = 0usize;
    for h in &hosts {
        let scope: Arc<dyn VarSource> = Arc::new(run.host_scope(h).expect("scope"));
        for name in scope.names() {
            let expr = kiln::value::Value::Str(format!("{{{{ {name} }}}}"));
            templar.template(&scope, &expr, "bench").expect("template");
            resolved += 1;
        }
    }
    let t_resolve = t2.elapsed();
    println!(
        "resolve: every variable of every host templated: {resolved} values in {:.1} ms ({:.2} us each)",
        t_resolve.as_secs_f64() * 1e3,
        t_resolve.as_secs_f64() * 1e6 / resolved as f64
    );

    let ai = support::ansible_venv().join("bin/ansible-inventory");
    if ai.is_file() {
        let t = Instant::now();
        let out = std::process::Command::new(&ai)
            .args(["-i", &sources[0], "--list"])
            .output()
            .expect("run ansible-inventory");
        assert!(out.status.success());
        println!(
            "ansible-inventory --list on the same tree: {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["inventory", "-i", &sources[0], "--list"])
            .output()
            .expect("run kiln");
        assert!(out.status.success());
        println!(
            "kiln inventory --list (debug build) on the same tree: {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
