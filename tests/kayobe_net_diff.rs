//! Differential test: kiln's Kayobe `net_*` filters against Kayobe's own `networks.py` plugin
//! running under the real ansible-core.
//!
//! Kayobe's plugin is taken from the `kayobe` wheel (`pip download --no-deps`, done by
//! `tests/cases/fetch_oracles.py`; the plugin only needs ansible-core and netaddr, so the OpenStack
//! dependency tree is not installed). A generated playbook evaluates every expression below on
//! host `builder` of an inventory built from `tests/cases/kayobe_net_hosts.json`; kiln evaluates the
//! same expressions with a context shaped like Ansible's (the host's variables, `hostvars`,
//! `inventory_hostname`, `ansible_facts`). Answers must be equal as JSON; errors must be errors.
//!
//! Needs: an ansible-core venv with netaddr (`KILN_ANSIBLE_VENV`, default `/work/venv-ansible`)
//! and PyPI access for the wheel (cached in `target/oracles`). Skips with a reason otherwise.

mod support;
use std::path::{Path, PathBuf};
use std::process::Command;

use minijinja::value::ValueKind;
use minijinja::{Environment, Value};

/// Expressions evaluated on host `builder`. Filters added after Kayobe 18.x
/// (`net_hosts_by_network`, `net_*_dns_servers`) are only unit-tested.
const EXPRS: &[&str] = &[
    "'aio' | net_attr('cidr')",
    "'aio' | net_attr('interface', 'other')",
    "'aio' | net_attr('interface', inventory_hostname='other')",
    "'aio' | net_attr('nosuch')",
    "'aio' | net_ip",
    "'aio' | net_ip('other')",
    "'aio' | net_ip(inventory_hostname='other')",
    "'stor' | net_ip",
    "'stor' | net_ip('other')",
    "'clean' | net_ip",
    "'aio' | net_ip('nohost')",
    "'aio' | net_fqdn",
    "'aio' | net_vip_address",
    "'aio' | net_interface",
    "'aio' | net_interface('other')",
    "'ext2' | net_parent",
    "'aio' | net_no_ip",
    "'aio' | net_cidr",
    "'aio' | net_mask",
    "'big' | net_mask",
    "'v6' | net_mask",
    "'clean' | net_mask",
    "'aio' | net_prefix",
    "'big' | net_prefix",
    "'v6' | net_prefix",
    "'clean' | net_prefix",
    "'aio' | net_gateway",
    "'aio' | net_allocation_pool_start",
    "'aio' | net_allocation_pool_end",
    "'aio' | net_inspection_allocation_pool_start",
    "'aio' | net_inspection_allocation_pool_end",
    "'aio' | net_inspection_gateway",
    "'aio' | net_neutron_allocation_pool_start",
    "'aio' | net_neutron_allocation_pool_end",
    "'aio' | net_neutron_gateway",
    "'ext' | net_vlan",
    "'aio' | net_vlan",
    "'aio' | net_mtu",
    "'ext' | net_mtu",
    "'clean' | net_mtu",
    "'aio' | net_mtu('other')",
    "'stor' | net_macaddress",
    "'aio' | net_routes",
    "'aio' | net_rules",
    "'aio' | net_physical_network",
    "'stor' | net_bootproto",
    "'aio' | net_defroute",
    "'aio' | net_ethtool_opts",
    "'aio' | net_zone",
    "'aio' | net_bridge_stp",
    "'big' | net_bridge_stp",
    "'stor' | net_bridge_stp",
    "'aio' | net_interface_obj",
    "'stor' | net_interface_obj",
    "'clean' | net_interface_obj",
    "'v6' | net_interface_obj",
    "'ext' | net_interface_obj",
    "'ext' | net_interface_obj(names=['aio', 'ext', 'big'])",
    "'ext2' | net_interface_obj(names=['aio', 'ext2', 'big'])",
    "'vlanonly' | net_interface_obj(names=['aio', 'vlanonly'])",
    "'stor' | net_interface_obj('other')",
    "'stor' | net_interface_obj(names=['aio'])",
    "'noiface' | net_interface_obj",
    "'badrules' | net_interface_obj",
    "'aio' | net_bridge_obj",
    "'big' | net_bridge_obj",
    "'aio' | net_bridge_obj('other')",
    "'bond' | net_bond_obj",
    "'aio' | net_is_ether",
    "'stor' | net_is_ether",
    "'aio' | net_is_bridge",
    "'bond' | net_is_bond",
    "'aio' | net_is_bond",
    "'ext' | net_is_vlan",
    "'aio' | net_is_vlan",
    "'ext' | net_is_vlan('other')",
    "'both' | net_is_ether",
    "'badports' | net_bridge_ports",
    "'badports' | net_is_bridge",
    "['aio', 'ext', 'ext2', 'big', 'stor', 'bond', 'clean'] | net_select_ethers",
    "['aio', 'ext', 'ext2', 'big', 'stor', 'bond', 'clean'] | net_select_bridges",
    "['aio', 'ext', 'ext2', 'big', 'stor', 'bond', 'clean'] | net_select_bonds",
    "['aio', 'ext', 'ext2', 'big', 'stor', 'bond', 'clean'] | net_select_vlans",
    "['aio', 'ext', 'ext2', 'big', 'stor', 'bond', 'clean'] | net_reject_vlans",
    "['aio', 'stor'] | net_select_bridges('other')",
    "'ext' | net_configdrive_network_device",
    "'ext2' | net_configdrive_network_device",
    "'aio' | net_configdrive_network_device",
    "'stor' | net_configdrive_network_device",
    "'aio' | net_libvirt_network_name",
    "'stor' | net_libvirt_network_name",
    "'aio' | net_libvirt_network",
    "'stor' | net_libvirt_network",
    "'aio' | net_libvirt_vm_network",
    "'stor' | net_libvirt_vm_network",
    "['aio', 'ext', 'ext2', 'big', 'stor', 'clean'] | net_ovs_veths",
    "['aio', 'stor'] | net_ovs_veths",
    "['aio', 'wl', 'longbridge'] | net_ovs_veths('other')",
    "'aio' | net_physical_interface",
    "'bond' | net_physical_interface",
    "'stor' | net_physical_interface",
    "'aio' | net_bridge_ports",
    "'stor' | net_bridge_ports",
];

fn skip(reason: &str) {
    eprintln!("SKIPPED kayobe_net_diff: {reason}");
}

use support::repo;

/// Python's `json.dumps` of a template value, to compare with Ansible's `to_json`.
fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => J::Null,
        ValueKind::Bool => J::Bool(v.is_true()),
        ValueKind::Number => serde_json::from_str(&v.to_string()).unwrap_or(J::Null),
        ValueKind::String => J::String(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Map => J::Object(
            v.try_iter()
                .into_iter()
                .flatten()
                .map(|k| (k.to_string(), to_json(&v.get_item(&k).unwrap_or_default())))
                .collect(),
        ),
        _ => J::Array(
            v.try_iter()
                .into_iter()
                .flatten()
                .map(|x| to_json(&x))
                .collect(),
        ),
    }
}

fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => n
            .as_i64()
            .map(Value::from)
            .unwrap_or_else(|| Value::from(n.as_f64().unwrap_or_default())),
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(from_json).collect::<Vec<_>>()),
        J::Object(m) => Value::from_pairs(m.iter().map(|(k, v)| (k.as_str(), from_json(v)))),
    }
}

/// kiln's answers: `Ok(json)` or `Err(message)` per expression.
fn kiln_answers(
    hosts: &serde_json::Value,
    os_family: &str,
) -> Vec<Result<serde_json::Value, String>> {
    let mut env = Environment::new();
    kiln::template::ipaddr::register(&mut env);
    kiln::template::kayobe_net::register(&mut env);
    let builder = hosts["builder"].as_object().expect("fixture has builder");
    let mut ctx: Vec<(String, Value)> = builder
        .iter()
        .map(|(k, v)| (k.clone(), from_json(v)))
        .collect();
    ctx.push(("hostvars".into(), from_json(hosts)));
    ctx.push((
        "ansible_facts".into(),
        Value::from_pairs([("os_family", Value::from(os_family))]),
    ));
    let ctx = Value::from_pairs(ctx);
    EXPRS
        .iter()
        .map(|e| {
            env.compile_expression(e)
                .and_then(|x| x.eval(&ctx))
                .map(|v| to_json(&v))
                .map_err(|err| err.to_string())
        })
        .collect()
}

/// Ansible's answers through Kayobe's plugin, plus the os_family the facts reported.
fn kayobe_answers(
    venv: &Path,
    kayobe: &Path,
    hosts: &serde_json::Value,
) -> Result<(Vec<Result<serde_json::Value, String>>, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let plugins = dir.path().join("filter_plugins");
    std::fs::create_dir_all(&plugins).map_err(|e| e.to_string())?;
    // The same three lines Kayobe ships in ansible/filter_plugins/networks.py.
    std::fs::write(
        plugins.join("networks.py"),
        "from kayobe.plugins.filter import networks\n\n\nclass FilterModule(object):\n    def filters(self):\n        return networks.get_filters()\n",
    )
    .map_err(|e| e.to_string())?;
    let python = venv.join("bin/python");
    let mut inv_hosts = serde_json::Map::new();
    for (name, vars) in hosts.as_object().into_iter().flatten() {
        let mut vars = vars.as_object().cloned().unwrap_or_default();
        vars.remove("inventory_hostname");
        vars.insert("ansible_connection".into(), "local".into());
        vars.insert(
            "ansible_python_interpreter".into(),
            python.display().to_string().into(),
        );
        inv_hosts.insert(name.clone(), serde_json::Value::Object(vars));
    }
    let inventory = serde_json::json!({ "all": { "hosts": inv_hosts } });
    std::fs::write(dir.path().join("inventory.json"), inventory.to_string())
        .map_err(|e| e.to_string())?;
    let out = dir.path().join("answers.json");
    let mut tasks: Vec<serde_json::Value> = EXPRS
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::json!({
                "ansible.builtin.debug": { "msg": format!("J:{{{{ ({e}) | to_json }}}}") },
                "register": format!("r{i}"),
                "ignore_errors": true,
            })
        })
        .collect();
    let regs: Vec<String> = (0..EXPRS.len()).map(|i| format!("r{i}")).collect();
    tasks.push(serde_json::json!({
        "ansible.builtin.copy": {
            "dest": out.display().to_string(),
            "content": format!("J:{{{{ {{'facts': ansible_facts.os_family, 'results': [{}]}} | to_json }}}}", regs.join(", ")),
        }
    }));
    let play = serde_json::json!([{
        "hosts": "builder",
        "gather_facts": true,
        "gather_subset": ["!all", "!min", "distribution"],
        "tasks": tasks,
    }]);
    std::fs::write(dir.path().join("play.yml"), play.to_string()).map_err(|e| e.to_string())?;
    let run = Command::new(venv.join("bin/ansible-playbook"))
        .current_dir(dir.path())
        .args(["-i", "inventory.json", "play.yml"])
        .env("PYTHONPATH", kayobe)
        .env("ANSIBLE_FILTER_PLUGINS", &plugins)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "0")
        .env("ANSIBLE_LOCALHOST_WARNING", "0")
        .output()
        .map_err(|e| format!("cannot run ansible-playbook: {e}"))?;
    let text = std::fs::read_to_string(&out).map_err(|_| {
        format!(
            "ansible-playbook wrote no answers (exit {:?}):\n{}\n{}",
            run.status.code(),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        )
    })?;
    let all: serde_json::Value = serde_json::from_str(text.trim_start_matches("J:"))
        .map_err(|e| format!("answers are not JSON: {e}"))?;
    let facts = all["facts"].as_str().unwrap_or_default().to_string();
    let answers = all["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let msg = r["msg"].as_str().unwrap_or_default();
            if r["failed"].as_bool() == Some(true) {
                return Err(msg.to_string());
            }
            serde_json::from_str(msg.trim_start_matches("J:"))
                .map_err(|e| format!("bad JSON {msg:?}: {e}"))
        })
        .collect();
    Ok((answers, facts))
}

#[test]
fn kayobe_networks_filters_match_kayobe() {
    let venv = support::ansible_venv();
    if !venv.join("bin/ansible-playbook").exists() {
        return skip(&format!(
            "no ansible-core venv at {} (set KILN_ANSIBLE_VENV)",
            venv.display()
        ));
    }
    let netaddr = Command::new(venv.join("bin/python"))
        .args(["-c", "import netaddr"])
        .status();
    if !matches!(netaddr, Ok(s) if s.success()) {
        return skip("netaddr is not installed in the ansible venv (pip install netaddr)");
    }
    let fetch = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/cases/fetch_oracles.py"))
        .output();
    let kayobe = fetch.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("kayobe=").map(PathBuf::from))
    });
    let Some(kayobe) = kayobe else {
        return skip(
            "the kayobe wheel could not be fetched from PyPI (pip download --no-deps kayobe)",
        );
    };
    let hosts: serde_json::Value =
        serde_json::from_str(include_str!("cases/kayobe_net_hosts.json")).expect("fixture is JSON");
    let (theirs, os_family) = kayobe_answers(&venv, &kayobe, &hosts).expect("ansible-playbook ran");
    assert_eq!(theirs.len(), EXPRS.len(), "one answer per expression");
    let ours = kiln_answers(&hosts, &os_family);
    let mut diffs = Vec::new();
    for ((expr, want), got) in EXPRS.iter().zip(&theirs).zip(&ours) {
        if std::env::var_os("KILN_DUMP_ANSWERS").is_some() {
            // Kayobe's answers, for writing unit-test expectations.
            match want {
                Ok(w) => println!("ANSWER\t{expr}\t{w}"),
                Err(_) => println!("ANSWER\t{expr}\tERROR"),
            }
        }
        match (want, got) {
            (Ok(w), Ok(g)) if w == g => {}
            (Err(_), Err(_)) => {}
            _ => diffs.push(format!("{expr}\n  kayobe: {want:?}\n  kiln:   {got:?}")),
        }
    }
    let errors = theirs.iter().filter(|r| r.is_err()).count();
    eprintln!(
        "compared {} expressions with Kayobe ({errors} expected errors), os_family={os_family}",
        EXPRS.len()
    );
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
