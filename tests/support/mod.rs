//! What the integration tests share besides the lab harness (`tests/lab/`): where the checkout
//! and the ansible-core oracle are, the static agent, and a shell line run inside a lab host.
//! One place, so a test binary never again carries its own copy of these.
#![allow(dead_code)]

pub mod images;

use std::path::PathBuf;

/// The checkout (the folder with Cargo.toml).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv holding ansible-core (the differential tests' oracle): `$KILN_ANSIBLE_VENV`, else
/// `<checkout>/.venv` where `tests/setup` makes it, else `/work/venv-ansible`.
pub fn ansible_venv() -> PathBuf {
    if let Some(v) = std::env::var_os("KILN_ANSIBLE_VENV") {
        return v.into();
    }
    let local = repo().join(".venv");
    if local.join("bin/ansible").exists() {
        return local;
    }
    PathBuf::from("/work/venv-ansible")
}

/// A program of the oracle's venv (`ansible`, `ansible-playbook`, ...), when it is there.
pub fn ansible_tool(name: &str) -> Option<PathBuf> {
    let p = ansible_venv().join("bin").join(name);
    p.is_file().then_some(p)
}

/// The static agent kiln pushes to hosts (`KILN_AGENT_BINARY`, or the musl build of this target
/// folder), found as kiln finds it.
pub fn agent_binary() -> Option<PathBuf> {
    kiln::transport::upload::find_agent_binary(
        "x86_64",
        &kiln::transport::TransportOptions::default(),
    )
    .filter(|p| p.is_file())
}

/// Why a test that pushes the agent cannot run, or None.
pub fn no_agent() -> Option<String> {
    agent_binary().is_none().then(|| {
        "no static agent: run `cargo build --target x86_64-unknown-linux-musl` first".to_string()
    })
}

/// Why a test that needs the oracle cannot run, or None.
pub fn no_ansible() -> Option<String> {
    ansible_tool("ansible").is_none().then(|| {
        format!(
            "ansible-core is not in {} (run tests/setup, or set KILN_ANSIBLE_VENV)",
            ansible_venv().display()
        )
    })
}

/// Run `cmd` with `sh -c` inside a lab host; its stdout.
pub fn host_sh(lab: &kiln::lab::Lab, host: &str, cmd: &str) -> String {
    let out = lab
        .host(host)
        .unwrap_or_else(|e| panic!("no lab host {host}: {e}"))
        .exec(&["sh", "-c", cmd])
        .expect("exec in lab host");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the Ansible collections the oracles need (ansible.posix, community.general) are:
/// `$KILN_ANSIBLE_COLLECTIONS`, else the oracle venv's site-packages (tests/setup installs the
/// `ansible` package there), else `/work/ansible-collections`. The folder holds `ansible_collections/`.
#[allow(dead_code)]
pub fn ansible_collections() -> PathBuf {
    if let Ok(p) = std::env::var("KILN_ANSIBLE_COLLECTIONS") {
        return PathBuf::from(p);
    }
    let lib = ansible_venv().join("lib");
    let in_venv = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|py| py.path().join("site-packages"))
        .find(|sp| sp.join("ansible_collections/community/general").is_dir());
    in_venv.unwrap_or_else(|| PathBuf::from("/work/ansible-collections"))
}

/// Copy the tree `from` into `to` (a test's own copy of a configuration under `tests/cases`).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}
