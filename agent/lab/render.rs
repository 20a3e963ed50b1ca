//! The files a lab hands to its users: `ssh_config` (one `Host` entry per lab host, `ProxyJump`
//! for internal hosts), `known_hosts` (every host key under its name and addresses) and an Ansible
//! `inventory.ini` (group `lab`, one group per flavor, connection variables that use the lab key
//! and known_hosts, a `ProxyCommand` for internal hosts).

use super::spec::HostNet;
use super::state::State;
use std::collections::BTreeMap;
use std::path::Path;

/// A host's public key line (`ssh-ed25519 AAAA... comment`), by host name.
pub type HostKeys = BTreeMap<String, String>;

fn quote_cfg(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

fn jump_of(st: &State) -> Option<&super::state::HostState> {
    st.hosts.iter().find(|h| h.net == HostNet::Both)
}

pub fn ssh_config(st: &State, key: &Path, known_hosts: &Path) -> String {
    let mut s = format!(
        "# Written by `kiln lab up` for lab {}. Use: ssh -F {} <host>\n",
        st.name,
        st.dir.join("ssh_config").display()
    );
    for h in &st.hosts {
        let (addr, jump) = match (h.lab_addr, h.internal_addr) {
            (Some(a), _) => (a, None),
            (None, Some(a)) => (a, jump_of(st).map(|j| j.name.clone())),
            (None, None) => continue,
        };
        s.push_str(&format!("\nHost {}\n  HostName {addr}\n", h.name));
        if let Some(j) = jump {
            s.push_str(&format!("  ProxyJump {j}\n"));
        }
    }
    s.push_str(&format!(
        "\nHost *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
         GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  CheckHostIP no\n  \
         BatchMode yes\n  ConnectTimeout 10\n  LogLevel ERROR\n  \
         KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org\n",
        quote_cfg(key),
        quote_cfg(known_hosts)
    ));
    s
}

pub fn known_hosts(st: &State, keys: &HostKeys) -> String {
    let mut s = String::new();
    for h in &st.hosts {
        let Some(k) = keys.get(&h.name) else { continue };
        // key type and base64, without the comment
        let key: Vec<&str> = k.split_whitespace().take(2).collect();
        let mut names = vec![h.name.clone()];
        names.extend(
            h.lab_addr
                .iter()
                .chain(h.internal_addr.iter())
                .map(|a| a.to_string()),
        );
        s.push_str(&format!("{} {}\n", names.join(","), key.join(" ")));
    }
    s
}

pub fn inventory(st: &State, key: &Path, known_hosts: &Path) -> String {
    let mut s = format!("# Written by `kiln lab up` for lab {}.\n[lab]\n", st.name);
    let common = format!("-o UserKnownHostsFile={}", known_hosts.display());
    let jump = jump_of(st);
    for h in &st.hosts {
        match (h.lab_addr, h.internal_addr) {
            (Some(a), _) => s.push_str(&format!("{} ansible_host={a}\n", h.name)),
            (None, Some(a)) => {
                let j = jump
                    .and_then(|j| j.lab_addr)
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let proxy = format!(
                    "ssh -W %h:%p -q -i {} -o IdentitiesOnly=yes {common} -o StrictHostKeyChecking=yes root@{j}",
                    key.display()
                );
                s.push_str(&format!(
                    "{} ansible_host={a} ansible_ssh_common_args='{common} -o ProxyCommand=\"{proxy}\"'\n",
                    h.name
                ));
            }
            (None, None) => {}
        }
    }
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for h in &st.hosts {
        groups.entry(h.flavor.as_str()).or_default().push(&h.name);
    }
    for (g, names) in groups {
        s.push_str(&format!("\n[{g}]\n"));
        for n in names {
            s.push_str(n);
            s.push('\n');
        }
    }
    s.push_str(&format!(
        "\n[lab:vars]\nansible_user=root\nansible_python_interpreter=/usr/bin/python3\n\
         ansible_ssh_private_key_file={}\nansible_ssh_common_args='{common}'\n",
        key.display()
    ));
    s
}
