//! The Vagrant lab's pure half: `vagrant ssh-config` output in, the files kiln reaches the machines
//! with out — an `ssh_config` that checks host keys strictly against the lab's `known_hosts`, the
//! `known_hosts` lines themselves (from `ssh-keyscan`, cross-checked against the keys the machine
//! itself holds), and an inventory plus a `group_vars` file that make the machines the seed hosts
//! of the shipped ci-builder environment.
//!
//! It is shaped as functions on text so the conversion is tested on recorded `vagrant ssh-config`
//! output of both providers (no VM can boot where the tests run); `kiln lab vagrant` (in
//! `agent/cli/`) runs vagrant and ssh-keyscan and writes the files.
//!
//! Vagrant's own ssh-config turns host key checking off (`StrictHostKeyChecking no`,
//! `UserKnownHostsFile /dev/null`); kiln never copies those two lines, it records the keys instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What can be wrong with the text handed to the conversion.
#[derive(Debug, thiserror::Error)]
pub enum VagrantError {
    #[error("vagrant ssh-config output, line {line}: {msg}")]
    SshConfig { line: usize, msg: String },
    #[error("vagrant ssh-config output lists no machine (are the machines up? `vagrant status`)")]
    NoMachines,
    #[error("machine {machine}: {msg}")]
    Machine { machine: String, msg: String },
    #[error("machine {machine}: ssh-keyscan found no host key at {addr}; is sshd up? (`vagrant ssh {machine}`)")]
    NoHostKeys { machine: String, addr: String },
    #[error("machine {machine}: the host key ssh-keyscan got from {addr} ({key_type}) is not among the host keys the machine holds (/etc/ssh/ssh_host_*_key.pub read through `vagrant ssh`); something else answers at that address: not recording it")]
    HostKeyMismatch {
        machine: String,
        addr: String,
        key_type: String,
    },
}

/// The Vagrant providers the Vagrantfile supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Libvirt,
    Virtualbox,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Libvirt => "libvirt",
            Provider::Virtualbox => "virtualbox",
        }
    }

    /// The second (LVM) disk as the guest sees it: virtio on libvirt, SATA on VirtualBox.
    pub fn data_disk(self) -> &'static str {
        match self {
            Provider::Libvirt => "/dev/vdb",
            Provider::Virtualbox => "/dev/sdb",
        }
    }

    /// The provider a machine was created with, from Vagrant's state folder
    /// (`.vagrant/machines/<name>/<provider>/id` exists once the machine was created).
    pub fn detect(vagrant_dir: &Path, machine: &str) -> Option<Provider> {
        let base = vagrant_dir.join(".vagrant").join("machines").join(machine);
        [Provider::Libvirt, Provider::Virtualbox]
            .into_iter()
            .find(|p| base.join(p.as_str()).join("id").is_file())
    }
}

impl std::str::FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "libvirt" => Ok(Provider::Libvirt),
            "virtualbox" => Ok(Provider::Virtualbox),
            other => Err(format!(
                "unknown Vagrant provider `{other}`: the Vagrantfile supports libvirt and virtualbox"
            )),
        }
    }
}

/// One `Host` block of `vagrant ssh-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshEntry {
    /// Vagrant's machine name (the `Host` alias).
    pub name: String,
    pub host_name: String,
    pub port: u16,
    /// The box's login user (`vagrant`): kiln's bootstrap user.
    pub user: String,
    /// Vagrant's per-machine private key(s).
    pub identity_files: Vec<PathBuf>,
    /// A `ProxyCommand` (vagrant-libvirt on a remote libvirt host); kept as it is.
    pub proxy_command: Option<String>,
}

impl SshEntry {
    /// The name known_hosts records the key under for this address and port, as OpenSSH looks
    /// it up (`addr` for port 22, `[addr]:port` otherwise).
    pub fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.host_name.clone()
        } else {
            format!("[{}]:{}", self.host_name, self.port)
        }
    }
}

/// Split an ssh_config line into keyword and value (`Key value`, `Key=value`, quoted values).
fn split_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let idx = line.find(|c: char| c.is_whitespace() || c == '=')?;
    let key = line[..idx].to_ascii_lowercase();
    let rest = line[idx..].trim_start_matches(|c: char| c.is_whitespace() || c == '=');
    let value = rest.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((key, value.to_string()))
}

/// Parse `vagrant ssh-config` output (all machines, in Vagrant's order).
pub fn parse_ssh_config(text: &str) -> Result<Vec<SshEntry>, VagrantError> {
    struct Partial {
        line: usize,
        name: String,
        host_name: Option<String>,
        port: Option<u16>,
        user: Option<String>,
        identity_files: Vec<PathBuf>,
        proxy_command: Option<String>,
    }
    fn finish(p: Partial) -> Result<SshEntry, VagrantError> {
        let missing = |what: &str| VagrantError::SshConfig {
            line: p.line,
            msg: format!("Host {} has no {what}", p.name),
        };
        Ok(SshEntry {
            host_name: p.host_name.clone().ok_or_else(|| missing("HostName"))?,
            port: p.port.unwrap_or(22),
            user: p.user.clone().ok_or_else(|| missing("User"))?,
            identity_files: p.identity_files,
            proxy_command: p.proxy_command,
            name: p.name,
        })
    }
    let mut out = Vec::new();
    let mut cur: Option<Partial> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let Some((key, value)) = split_line(raw) else {
            continue;
        };
        if key == "host" {
            if value.split_whitespace().count() != 1 || value.contains(['*', '?']) {
                return Err(VagrantError::SshConfig {
                    line,
                    msg: format!("`Host {value}`: expected one machine name per Host block"),
                });
            }
            if let Some(p) = cur.take() {
                out.push(finish(p)?);
            }
            cur = Some(Partial {
                line,
                name: value,
                host_name: None,
                port: None,
                user: None,
                identity_files: Vec::new(),
                proxy_command: None,
            });
            continue;
        }
        let Some(p) = cur.as_mut() else {
            return Err(VagrantError::SshConfig {
                line,
                msg: format!("`{}` before any Host line", raw.trim()),
            });
        };
        match key.as_str() {
            "hostname" => p.host_name = Some(value),
            "user" => p.user = Some(value),
            "port" => {
                p.port = Some(value.parse().map_err(|_| VagrantError::SshConfig {
                    line,
                    msg: format!("Port `{value}` is not a port number"),
                })?)
            }
            "identityfile" => p.identity_files.push(PathBuf::from(value)),
            "proxycommand" => p.proxy_command = Some(value),
            // Vagrant's host-key-checking switches (UserKnownHostsFile /dev/null,
            // StrictHostKeyChecking no) are dropped on purpose; the rest is not needed.
            _ => {}
        }
    }
    if let Some(p) = cur.take() {
        out.push(finish(p)?);
    }
    if out.is_empty() {
        return Err(VagrantError::NoMachines);
    }
    let mut seen = BTreeSet::new();
    for e in &out {
        if !seen.insert(e.name.as_str()) {
            return Err(VagrantError::Machine {
                machine: e.name.clone(),
                msg: "listed twice in vagrant ssh-config".into(),
            });
        }
    }
    Ok(out)
}

/// Infer the provider from the ssh-config form when Vagrant's state folder is not at hand:
/// VirtualBox reaches a machine through a port forwarded on the loopback address, libvirt at
/// the machine's address on its management network, port 22.
pub fn guess_provider(e: &SshEntry) -> Provider {
    let loopback = e.host_name == "127.0.0.1" || e.host_name == "localhost" || e.host_name == "::1";
    if loopback && e.port != 22 {
        Provider::Virtualbox
    } else {
        Provider::Libvirt
    }
}

/// A machine: its ssh-config entry and the provider it runs on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub ssh: SshEntry,
    pub provider: Provider,
}

/// Quote a path for ssh_config.
fn cfg_path(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// The lab's ssh_config: each machine's address, port and Vagrant key, host keys checked
/// strictly against `known_hosts` and nothing else.
pub fn render_ssh_config(machines: &[Machine], known_hosts: &Path, origin: &str) -> String {
    let mut s = format!(
        "# Written by `kiln lab vagrant` from `vagrant ssh-config` ({origin}).\n\
         # Host keys are checked against the lab's known_hosts (recorded by ssh-keyscan and\n\
         # cross-checked with the keys each machine holds); Vagrant's own ssh-config turns the\n\
         # check off, this file does not.\n"
    );
    for m in machines {
        let e = &m.ssh;
        s.push_str(&format!(
            "\nHost {}\n  HostName {}\n  Port {}\n  User {}\n",
            e.name, e.host_name, e.port, e.user
        ));
        for f in &e.identity_files {
            s.push_str(&format!("  IdentityFile {}\n", cfg_path(f)));
        }
        if let Some(pc) = &e.proxy_command {
            s.push_str(&format!("  ProxyCommand {pc}\n"));
        }
    }
    s.push_str(&format!(
        "\nHost *\n  UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n  \
         StrictHostKeyChecking yes\n  CheckHostIP no\n  PasswordAuthentication no\n  \
         BatchMode yes\n  ConnectTimeout 15\n  LogLevel ERROR\n",
        cfg_path(known_hosts)
    ));
    s
}

/// Parse `ssh-keyscan` output into (key type, base64 key) pairs, ignoring comments.
pub fn parse_keyscan(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _host = f.next()?;
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// Parse public key files' text (`type base64 [comment]` per line) into (type, base64) pairs.
pub fn parse_pubkeys(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let t = f.next()?;
            let k = f.next()?;
            let is_key_type = ["ssh-", "ecdsa-", "sk-"].iter().any(|p| t.starts_with(p));
            is_key_type.then(|| (t.to_string(), k.to_string()))
        })
        .collect()
}

/// The known_hosts lines for one machine: every key `ssh-keyscan` got from its address, each
/// of which must also be one the machine holds (`held`, the text of its
/// `/etc/ssh/ssh_host_*_key.pub`, read through `vagrant ssh`). The lines name the machine and
/// its address as kiln and OpenSSH look them up.
pub fn known_hosts_lines(
    e: &SshEntry,
    scanned: &str,
    held: Option<&str>,
) -> Result<String, VagrantError> {
    let keys = parse_keyscan(scanned);
    let addr = e.known_hosts_name();
    if keys.is_empty() {
        return Err(VagrantError::NoHostKeys {
            machine: e.name.clone(),
            addr,
        });
    }
    if let Some(held) = held {
        let held = parse_pubkeys(held);
        for (t, k) in &keys {
            if !held.contains(&(t.clone(), k.clone())) {
                return Err(VagrantError::HostKeyMismatch {
                    machine: e.name.clone(),
                    addr,
                    key_type: t.clone(),
                });
            }
        }
    }
    let names = format!("{},{}", e.name, addr);
    let mut seen = BTreeSet::new();
    Ok(keys
        .into_iter()
        .filter(|k| seen.insert(k.clone()))
        .map(|(t, k)| format!("{names} {t} {k}\n"))
        .collect())
}

/// The inventory `hosts` file: the machines are the environment's seed hosts, in Vagrant's
/// order (so kiln's address allocator gives them the pool's addresses in that order), each
/// with its bootstrap user (the box's login user) and its LVM data disk.
pub fn render_inventory(machines: &[Machine], origin: &str) -> String {
    let mut s = format!(
        "# Written by `kiln lab vagrant` from `vagrant ssh-config` ({origin}).\n\
         # The Vagrant machines are the seed (ci-builder) hosts; kiln reaches them through the\n\
         # lab's ssh_config (group_vars/seed/vagrant).\n[seed]\n"
    );
    for m in machines {
        s.push_str(&format!(
            "{} seed_bootstrap_user={} kiln_vagrant_provider={} kiln_vagrant_data_disk={}\n",
            m.ssh.name,
            m.ssh.user,
            m.provider.as_str(),
            m.provider.data_disk()
        ));
    }
    s
}

/// `group_vars/seed/vagrant`: how kiln reaches the machines and what differs from the shipped
/// ci-builder environment on Vagrant boxes. It sorts after the environment's own group_vars
/// files, so its values win.
pub fn render_group_vars(ssh_config: &Path) -> String {
    const TEMPLATE: &str = r#"---
# Written by `kiln lab vagrant`: the Vagrant machines as ci-builder seed hosts.

# The lab's ssh_config names each machine, its address, port, Vagrant key and the lab's
# known_hosts (checked strictly).
ansible_ssh_common_args: "-F @SSH_CONFIG@"
# Once the Kayobe user exists kiln logs in with the control host's key; the bootstrap user
# (`vagrant`, per host in the inventory) with Vagrant's key from ssh_config.
ansible_ssh_private_key_file: "{{ ssh_private_key_path }}"

# breth1's ports: the dummy link of the ci-builder procedure and the Vagrant private network's
# NIC (pinned to the name aio0 by the Vagrantfile), so the machines and the host (.1) share
# 192.168.33.0/24.
aio_bridge_ports:
  - dummy1
  - aio0

# Vagrant boxes have no `rootvg` (the ci-builder environment grows lv_home/lv_tmp in it on LVM
# cloud images): LVM goes on the machines' second disk instead.
seed_lvm_groups_extra:
  - vgname: data
    disks:
      - "{{ kiln_vagrant_data_disk }}"
    create: true
    lvnames:
      - lvname: docker
        size: 75%VG
        filesystem: ext4
        mntp: /var/lib/docker
"#;
    TEMPLATE.replace("@SSH_CONFIG@", &ssh_config.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBVIRT: &str = "Host rocky9\n  HostName 192.168.121.93\n  User vagrant\n  Port 22\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  PasswordAuthentication no\n\n  IdentityFile /home/op/kiln/vagrant/.vagrant/machines/rocky9/libvirt/private_key\n  IdentitiesOnly yes\n  LogLevel FATAL\n\n";

    #[test]
    fn parses_one_block() {
        let e = parse_ssh_config(LIBVIRT).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].host_name, "192.168.121.93");
        assert_eq!(e[0].port, 22);
        assert_eq!(guess_provider(&e[0]), Provider::Libvirt);
        assert_eq!(e[0].known_hosts_name(), "192.168.121.93");
    }

    #[test]
    fn bad_port_names_line() {
        let err = parse_ssh_config("Host a\n  HostName x\n  User u\n  Port 99999\n").unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
    }

    #[test]
    fn missing_hostname_is_an_error() {
        let err = parse_ssh_config("Host a\n  User u\n").unwrap_err();
        assert!(err.to_string().contains("no HostName"), "{err}");
    }

    #[test]
    fn empty_is_no_machines() {
        assert!(matches!(
            parse_ssh_config("\n\n"),
            Err(VagrantError::NoMachines)
        ));
    }
}
