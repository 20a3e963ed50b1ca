//! `kiln lab up | down | status`: network-namespace lab hosts with real OpenSSH on this machine
//! (see `agent/lab/`). The verb only turns flags into a `LabSpec` and prints what the lab reports.

use super::GlobalOpts;
use crate::lab::{down_dir, Flavor, Lab, LabSpec};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  kiln lab up --hosts 3 --flavors rocky9,ubuntu2204\n  \
ssh -F .kiln-lab/kiln/ssh_config rocky9-1 cat /etc/os-release\n  \
ansible -i .kiln-lab/kiln/inventory.ini lab -m ping\n  kiln lab status --json\n  kiln lab down\n\n\
Hosts are network namespaces on this machine (needs root, openssh-server, iproute2, util-linux).\n\
Every host accepts the lab key for root, for `kiln` (passwordless sudo) and for `kilnpw`\n\
(sudo password `kiln-lab`)."
)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Args, Debug, Clone)]
pub struct Which {
    /// Lab name; bridge, namespace names and subnets derive from it.
    #[arg(long, default_value = "kiln")]
    pub name: String,
    /// Lab folder (default `./.kiln-lab/NAME`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl Which {
    fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".kiln-lab").join(&self.name))
    }
}

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    /// Start the lab's hosts (idempotent: running hosts are kept, dead ones restarted).
    Up {
        #[command(flatten)]
        which: Which,
        /// Number of hosts on the lab network.
        #[arg(long, default_value_t = 1)]
        hosts: usize,
        /// Flavors, cycled over the hosts: rocky9, ubuntu2204, debian12.
        #[arg(long, value_delimiter = ',', default_value = "rocky9")]
        flavors: Vec<Flavor>,
        /// Also add a jump host (`jump`, on both networks) and a host reachable only through it
        /// (`internal`); ssh_config gets a ProxyJump for `internal`.
        #[arg(long)]
        jump: bool,
        /// Seconds to wait for every sshd to accept connections.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// kiln's main job on its embedded default: start a Rocky 9 and an Ubuntu 22.04 lab host, run
    /// `control host bootstrap` and `seed host configure` with the shipped `lab` environment, then
    /// the image pipeline (a fake Pulp and a registry with basic auth, the Pulp auth proxy, a small
    /// Kolla image set built with kolla-build through the proxy, pushed with the vault's
    /// credentials, checked for leaked credentials, kolla-image-tags.yml updated), show what was
    /// made, and leave the lab up for inspection.
    #[command(
        after_help = "Examples:\n  kiln lab demo\n  kiln lab demo --rebuild\n  kiln lab demo --check\n\nAfterwards:\n  ssh -F .kiln-lab/demo/ssh_config rocky9-1 ip addr show breth1\n  kiln --config-path .kiln-lab/demo/kayobe-config --environment lab seed host configure\n  kiln lab down --name demo"
    )]
    Demo {
        /// Lab folder (default `./.kiln-lab/demo`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Run `seed host configure` in check mode (change nothing on the hosts) and stop there.
        #[arg(long)]
        check: bool,
        /// Build and push the images again although a build record exists (a second run
        /// otherwise only re-checks the hosts and the proxy).
        #[arg(long)]
        rebuild: bool,
    },
    /// The Vagrant lab in `vagrant/` (Rocky Linux 9 + Ubuntu 22.04 VMs), provisioned by kiln:
    /// `up` (vagrant up + provision), `provision`, `inventory`, `down`.
    #[command(
        subcommand,
        after_help = "Examples:\n  kiln lab vagrant up --provider libvirt\n  kiln lab vagrant inventory\n  \
kiln lab vagrant inventory --ssh-config recorded-ssh-config.txt\n  kiln lab vagrant down\n\n\
See vagrant/README.md: providers, plugins, the VirtualBox host-only range, what to expect."
    )]
    Vagrant(super::vagrant::VagrantCommand),
    /// Remove everything `up` made (processes, namespaces, links, files).
    Down {
        #[command(flatten)]
        which: Which,
    },
    /// List the lab's hosts and whether each is up.
    Status {
        #[command(flatten)]
        which: Which,
        /// One JSON object: {"name", "dir", "hosts": [{name, flavor, addr, netns, sshd_pid, up}]}.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: LabArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    match a.command {
        LabCommand::Vagrant(cmd) => super::vagrant::run(cmd, g),
        LabCommand::Demo {
            dir,
            check,
            rebuild,
        } => super::demo::run(
            g,
            dir.unwrap_or_else(|| PathBuf::from(".kiln-lab/demo")),
            check,
            rebuild,
        ),
        LabCommand::Up {
            which,
            hosts,
            flavors,
            jump,
            timeout,
        } => {
            let mut spec = LabSpec::new(&which.name)
                .with_dir(which.dir())
                .with_hosts(hosts, &flavors);
            if jump {
                spec = spec.with_jump_pair(flavors.first().copied().unwrap_or(Flavor::Rocky9));
            }
            spec.timeout = Duration::from_secs(timeout);
            let started = std::time::Instant::now();
            let lab = Lab::up(&spec)?;
            print!("{}", lab.status_table());
            println!(
                "\nlab {} up in {:.2}s; ssh -F {} <host>; inventory {}",
                lab.name,
                started.elapsed().as_secs_f64(),
                lab.ssh_config.display(),
                lab.inventory.display()
            );
            Ok(super::exit::OK)
        }
        LabCommand::Down { which } => {
            let dir = which.dir();
            if down_dir(&dir)? {
                println!("lab {} is down", which.name);
            } else {
                println!("no lab in {}", dir.display());
            }
            Ok(super::exit::OK)
        }
        LabCommand::Status { which, json } => {
            let lab = Lab::open(&which.dir())?;
            if json {
                let v = serde_json::json!({
                    "name": lab.name,
                    "dir": lab.dir,
                    "subnet": lab.subnet.to_string(),
                    "hosts": lab.status(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", lab.status_table());
            }
            let all_up = lab.status().iter().all(|h| h.up);
            Ok(if all_up {
                super::exit::OK
            } else {
                super::exit::HOST_FAILED
            })
        }
    }
}
