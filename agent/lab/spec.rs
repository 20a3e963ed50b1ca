//! What a lab should look like: its name, its folder and its hosts. The CLI and the tests build
//! the same `LabSpec`; `Lab::up` makes the machine match it.

use super::{Flavor, LabError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Which lab networks a host is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostNet {
    /// The lab bridge, which this machine (the controller) has an address on.
    Lab,
    /// Only the internal network, which this machine has NO address on: reachable through a jump
    /// host only (`ProxyJump`).
    Internal,
    /// Both networks: a jump host (eth0 on the lab bridge, eth1 on the internal network).
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub name: String,
    pub flavor: Flavor,
    pub net: HostNet,
}

#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Lab name: `[a-z0-9][a-z0-9-]*`, at most 24 characters. Bridge, namespace and veth names and
    /// the subnets are derived from it, so two labs with different names can be up side by side.
    pub name: String,
    /// Where inventory.ini, ssh_config, known_hosts, the key pair and the state file go.
    pub dir: PathBuf,
    pub hosts: Vec<HostSpec>,
    /// How long `up` waits for every sshd to accept TCP connections.
    pub timeout: Duration,
}

/// Host name of the jump host added by [`LabSpec::with_jump_pair`].
pub const JUMP_HOST: &str = "jump";
/// Host name of the internal-only host added by [`LabSpec::with_jump_pair`].
pub const INTERNAL_HOST: &str = "internal";

impl LabSpec {
    /// A lab with no hosts yet, in `./.kiln-lab/<name>`.
    pub fn new(name: &str) -> Self {
        LabSpec {
            name: name.to_string(),
            dir: PathBuf::from(".kiln-lab").join(name),
            hosts: Vec::new(),
            timeout: Duration::from_secs(20),
        }
    }

    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// Adds `n` hosts on the lab network, cycling through `flavors` (rocky9 when empty), named
    /// `<flavor>-<i>` where i counts all hosts of the lab from 1.
    pub fn with_hosts(mut self, n: usize, flavors: &[Flavor]) -> Self {
        for k in 0..n {
            let flavor = if flavors.is_empty() {
                Flavor::Rocky9
            } else {
                flavors[k % flavors.len()]
            };
            let i = self.hosts.len() + 1;
            self.hosts.push(HostSpec {
                name: format!("{flavor}-{i}"),
                flavor,
                net: HostNet::Lab,
            });
        }
        self
    }

    pub fn with_host(mut self, name: &str, flavor: Flavor, net: HostNet) -> Self {
        self.hosts.push(HostSpec {
            name: name.to_string(),
            flavor,
            net,
        });
        self
    }

    /// Adds a jump host (`jump`, on both networks) and a host only on the internal network
    /// (`internal`), for ProxyJump tests.
    pub fn with_jump_pair(self, flavor: Flavor) -> Self {
        self.with_host(JUMP_HOST, flavor, HostNet::Both).with_host(
            INTERNAL_HOST,
            flavor,
            HostNet::Internal,
        )
    }

    pub fn validate(&self) -> Result<(), LabError> {
        if !valid_name(&self.name, 24) {
            return Err(LabError::Spec(format!(
                "lab name `{}`: use 1-24 characters a-z, 0-9 and `-`, starting with a letter or digit",
                self.name
            )));
        }
        if self.hosts.len() > 200 {
            return Err(LabError::Spec(format!(
                "{} hosts: a lab holds at most 200",
                self.hosts.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for h in &self.hosts {
            if !valid_name(&h.name, 32) {
                return Err(LabError::Spec(format!(
                    "host name `{}`: use 1-32 characters a-z, 0-9 and `-`, starting with a letter or digit",
                    h.name
                )));
            }
            if !seen.insert(h.name.as_str()) {
                return Err(LabError::Spec(format!(
                    "host name `{}` is used twice",
                    h.name
                )));
            }
        }
        let internal = self.hosts.iter().any(|h| h.net == HostNet::Internal);
        let jump = self.hosts.iter().any(|h| h.net == HostNet::Both);
        if internal && !jump {
            return Err(LabError::Spec(
                "a host on the internal network needs a jump host on both networks (HostNet::Both)"
                    .into(),
            ));
        }
        Ok(())
    }
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_cycle_flavors_and_number_from_one() {
        let s = LabSpec::new("t").with_hosts(3, &[Flavor::Rocky9, Flavor::Ubuntu2204]);
        let names: Vec<_> = s.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["rocky9-1", "ubuntu2204-2", "rocky9-3"]);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(LabSpec::new("Bad_Name").validate().is_err());
        assert!(LabSpec::new("-x").validate().is_err());
        let dup = LabSpec::new("ok")
            .with_host("a", Flavor::Rocky9, HostNet::Lab)
            .with_host("a", Flavor::Rocky9, HostNet::Lab);
        assert!(dup
            .validate()
            .unwrap_err()
            .to_string()
            .contains("used twice"));
        let lonely = LabSpec::new("ok").with_host("a", Flavor::Rocky9, HostNet::Internal);
        assert!(lonely
            .validate()
            .unwrap_err()
            .to_string()
            .contains("jump host"));
    }
}
