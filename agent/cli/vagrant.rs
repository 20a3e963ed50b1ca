//! `kiln lab vagrant up | provision | inventory | down`: kiln as the provisioner of the Vagrant lab
//! in `vagrant/` (a Rocky Linux 9 and an Ubuntu 22.04 machine shaped like ci-builder hosts).
//!
//! `up` runs `vagrant up` (with the Vagrantfile's own kiln trigger switched off) and then
//! `provision`; `provision` (what the Vagrantfile's trigger runs after a plain `vagrant up`) makes
//! the inventory and runs `control host bootstrap` and `seed host configure` on the machines, as
//! `kiln lab demo` does on namespace hosts; `inventory` only turns `vagrant ssh-config` into the
//! lab's ssh_config, known_hosts and a copy of the ci-builder environment whose seed hosts are the
//! machines; `down` destroys the machines and removes the lab folder.
//!
//! The conversion itself is `crate::lab::vagrant` (pure, tested on recorded output); this file
//! runs the programs: vagrant, and ssh-keyscan for the host keys, which are cross-checked with
//! the keys each machine holds (read through `vagrant ssh`) before they are recorded.

use super::control::{self, BootstrapArgs};
use super::playbook::RunOpts;
use super::seed::{self, ConfigureArgs};
use super::{exit, GlobalOpts};
use crate::config::embedded;
use crate::lab::vagrant::{self as conv, Machine, Provider};
use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment the machines are seed hosts of.
const ENVIRONMENT: &str = "ci-builder";

#[derive(Args, Debug, Clone)]
pub struct VagrantOpts {
    /// The folder with the Vagrantfile (default: $VAGRANT_CWD, else ./vagrant).
    #[arg(long)]
    pub vagrant_dir: Option<PathBuf>,
    /// Lab folder for ssh_config, known_hosts and the configuration copy (default ./.kiln-lab/vagrant).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Vagrant provider (libvirt or virtualbox). Default: Vagrant's choice for `up`; for the
    /// inventory, what each machine was created with (.vagrant/machines/NAME/PROVIDER).
    #[arg(long)]
    pub provider: Option<Provider>,
}

#[derive(Subcommand, Debug)]
pub enum VagrantCommand {
    /// `vagrant up`, then `provision`.
    Up {
        #[command(flatten)]
        opts: VagrantOpts,
        /// Run `seed host configure` in check mode.
        #[arg(long)]
        check: bool,
    },
    /// Inventory + control host bootstrap + seed host configure on running machines (what the
    /// Vagrantfile's trigger runs after `vagrant up`).
    Provision {
        #[command(flatten)]
        opts: VagrantOpts,
        /// Run `seed host configure` in check mode.
        #[arg(long)]
        check: bool,
        /// Wait up to SECS for every machine to be running first.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Turn `vagrant ssh-config` into the lab's ssh_config, known_hosts, inventory and a copy of
    /// the ci-builder environment (prints the inventory). With --ssh-config FILE, convert
    /// recorded output instead (no vagrant; host keys are not recorded).
    Inventory {
        #[command(flatten)]
        opts: VagrantOpts,
        /// Recorded `vagrant ssh-config` output to convert instead of running vagrant.
        #[arg(long)]
        ssh_config: Option<PathBuf>,
    },
    /// `vagrant destroy -f` and remove the lab folder.
    Down {
        #[command(flatten)]
        opts: VagrantOpts,
    },
}

impl VagrantOpts {
    fn vagrant_dir(&self) -> PathBuf {
        self.vagrant_dir
            .clone()
            .or_else(|| std::env::var_os("VAGRANT_CWD").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("vagrant"))
    }
    fn lab_dir(&self) -> anyhow::Result<PathBuf> {
        let d = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".kiln-lab/vagrant"));
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(std::path::absolute(&d)?)
    }
}

pub fn run(cmd: VagrantCommand, g: &GlobalOpts) -> anyhow::Result<i32> {
    match cmd {
        VagrantCommand::Up { opts, check } => {
            let vdir = checked_vagrant_dir(&opts)?;
            println!("== vagrant up (in {})\n", vdir.display());
            let mut args = vec!["up".to_string()];
            if let Some(p) = opts.provider {
                args.push(format!("--provider={}", p.as_str()));
            }
            let status = vagrant(&vdir)
                .args(&args)
                .env("KILN_VAGRANT_PROVISION", "0")
                .status()
                .context("running vagrant up")?;
            if !status.success() {
                bail!("`vagrant up` failed ({status}); see its output above");
            }
            provision(g, &opts, check)
        }
        VagrantCommand::Provision { opts, check, wait } => {
            let vdir = checked_vagrant_dir(&opts)?;
            if wait > 0 {
                wait_running(&vdir, Duration::from_secs(wait))?;
            }
            provision(g, &opts, check)
        }
        VagrantCommand::Inventory { opts, ssh_config } => {
            let made = match ssh_config {
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    let made = write_lab(&opts, &text, None, &file.display().to_string())?;
                    println!(
                        "# host keys not recorded: converted from {} without the machines \
                         (known_hosts stays as it was)",
                        file.display()
                    );
                    made
                }
                None => inventory(&opts, &checked_vagrant_dir(&opts)?)?,
            };
            print!("{}", std::fs::read_to_string(&made.inventory)?);
            println!(
                "\nssh_config {}\nknown_hosts {}\nconfiguration {} (environment {ENVIRONMENT})",
                made.ssh_config.display(),
                made.known_hosts.display(),
                made.config.display()
            );
            Ok(exit::OK)
        }
        VagrantCommand::Down { opts } => {
            let vdir = checked_vagrant_dir(&opts)?;
            let status = vagrant(&vdir)
                .args(["destroy", "-f"])
                .status()
                .context("running vagrant destroy")?;
            if !status.success() {
                bail!("`vagrant destroy -f` failed ({status}); see its output above");
            }
            let lab = opts.lab_dir()?;
            let cfg = lab.join("ssh_config");
            let ours = std::fs::read_to_string(&cfg)
                .map(|t| t.contains("kiln lab vagrant"))
                .unwrap_or(false);
            if ours {
                std::fs::remove_dir_all(&lab)
                    .with_context(|| format!("removing {}", lab.display()))?;
                println!("removed {}", lab.display());
            } else {
                println!(
                    "{} holds no kiln vagrant lab (no ssh_config written by kiln): left alone",
                    lab.display()
                );
            }
            Ok(exit::OK)
        }
    }
}

fn checked_vagrant_dir(opts: &VagrantOpts) -> anyhow::Result<PathBuf> {
    let d = opts.vagrant_dir();
    if !d.join("Vagrantfile").is_file() {
        bail!(
            "{} has no Vagrantfile: run from kiln's source tree (its vagrant/ folder) or pass --vagrant-dir",
            d.display()
        );
    }
    if which("vagrant").is_none() {
        bail!("`vagrant` is not installed: install it (Debian/Ubuntu: apt-get install vagrant; libvirt also needs the vagrant-libvirt plugin)");
    }
    Ok(std::path::absolute(&d)?)
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

/// A `vagrant` command in the Vagrantfile's folder, with the experimental `disks` feature the
/// VirtualBox provider's second disk needs added to whatever the user enabled.
fn vagrant(dir: &Path) -> Command {
    let mut c = Command::new("vagrant");
    c.current_dir(dir);
    let exp = std::env::var("VAGRANT_EXPERIMENTAL").unwrap_or_default();
    if !exp.split(',').any(|f| f == "disks" || f == "1") {
        let v = if exp.is_empty() {
            "disks".to_string()
        } else {
            format!("{exp},disks")
        };
        c.env("VAGRANT_EXPERIMENTAL", v);
    }
    c
}

fn capture(mut c: Command, what: &str) -> anyhow::Result<String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Poll `vagrant status --machine-readable` until every machine is running.
fn wait_running(vdir: &Path, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let mut c = vagrant(vdir);
        c.args(["status", "--machine-readable"]);
        let text = capture(c, "vagrant status --machine-readable")?;
        let states: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f.len() >= 4 && f[2] == "state").then(|| (f[1].to_string(), f[3].to_string()))
            })
            .collect();
        if !states.is_empty() && states.iter().all(|(_, s)| s == "running") {
            return Ok(());
        }
        if start.elapsed() >= limit {
            bail!(
                "machines not running after {}s: {}",
                limit.as_secs(),
                states
                    .iter()
                    .map(|(m, s)| format!("{m} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

fn machines(text: &str, opts: &VagrantOpts, vdir: Option<&Path>) -> anyhow::Result<Vec<Machine>> {
    Ok(conv::parse_ssh_config(text)?
        .into_iter()
        .map(|ssh| {
            let provider = opts
                .provider
                .or_else(|| vdir.and_then(|d| Provider::detect(d, &ssh.name)))
                .unwrap_or_else(|| conv::guess_provider(&ssh));
            Machine { ssh, provider }
        })
        .collect())
}

struct Made {
    ssh_config: PathBuf,
    known_hosts: PathBuf,
    inventory: PathBuf,
    config: PathBuf,
}

/// `vagrant ssh-config` of the running machines → the lab's files (host keys recorded).
fn inventory(opts: &VagrantOpts, vdir: &Path) -> anyhow::Result<Made> {
    let mut c = vagrant(vdir);
    c.arg("ssh-config");
    let text = capture(c, "vagrant ssh-config")?;
    write_lab(
        opts,
        &text,
        Some(vdir),
        &format!("vagrant ssh-config in {}", vdir.display()),
    )
}

/// Host keys of one machine: ssh-keyscan of its address, cross-checked against the keys the
/// machine holds (read over Vagrant's own connection).
fn host_keys(vdir: &Path, e: &conv::SshEntry) -> anyhow::Result<String> {
    let mut held = vagrant(vdir);
    held.args([
        "ssh",
        &e.name,
        "-c",
        "cat /etc/ssh/ssh_host_*_key.pub",
        "--",
        "-q",
    ]);
    let held = capture(held, &format!("vagrant ssh {} -c 'cat ...'", e.name))?;
    let scanned = if e.proxy_command.is_some() {
        // reached through a ProxyCommand, which ssh-keyscan cannot follow: record what the
        // machine holds, read over Vagrant's own connection
        held.lines()
            .map(|l| format!("{} {l}\n", e.name))
            .collect::<String>()
    } else {
        let mut ks = Command::new("ssh-keyscan");
        ks.args(["-T", "15", "-t", "ed25519,ecdsa,rsa", "-p"])
            .arg(e.port.to_string())
            .arg(&e.host_name);
        capture(ks, &format!("ssh-keyscan {}", e.known_hosts_name()))?
    };
    Ok(conv::known_hosts_lines(e, &scanned, Some(&held))?)
}

/// ssh_config, known_hosts (when the machines are at hand), the inventory and the configuration
/// copy whose seed hosts are the machines.
fn write_lab(
    opts: &VagrantOpts,
    text: &str,
    vdir: Option<&Path>,
    origin: &str,
) -> anyhow::Result<Made> {
    let machines = machines(text, opts, vdir)?;
    let lab = opts.lab_dir()?;
    let known_hosts = lab.join("known_hosts");
    let ssh_config = lab.join("ssh_config");
    if let Some(vdir) = vdir {
        let mut kh = String::new();
        for m in &machines {
            kh.push_str(&host_keys(vdir, &m.ssh)?);
        }
        write(&known_hosts, &kh)?;
    }
    write(
        &ssh_config,
        &conv::render_ssh_config(&machines, &known_hosts, origin),
    )?;
    let inv = conv::render_inventory(&machines, origin);
    write(&lab.join("inventory"), &inv)?;

    // The ci-builder environment, copied once (so the allocations kiln writes persist), with
    // the machines as its seed hosts.
    let config = lab.join("kayobe-config");
    let env_dir = config.join("environments").join(ENVIRONMENT);
    if !env_dir.exists() {
        let shipped = embedded::shipped_config_path()?
            .join("environments")
            .join(ENVIRONMENT);
        copy_tree(&shipped, &env_dir)?;
        // the shipped allocation names the environment's own host (`builder`); the machines get
        // the pool's addresses in Vagrant's order
        write(
            &env_dir.join("network-allocation.yml"),
            "---\n# IP addresses kiln allocated to the Vagrant machines (seed host configure).\n",
        )?;
    }
    write(&env_dir.join("inventory").join("hosts"), &inv)?;
    write(
        &env_dir
            .join("inventory")
            .join("group_vars")
            .join("seed")
            .join("vagrant"),
        &conv::render_group_vars(&ssh_config),
    )?;
    Ok(Made {
        ssh_config,
        known_hosts,
        inventory: lab.join("inventory"),
        config,
    })
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    run: RunOpts,
}

fn provision(g: &GlobalOpts, opts: &VagrantOpts, check: bool) -> anyhow::Result<i32> {
    let vdir = checked_vagrant_dir(opts)?;
    println!("\n== inventory from vagrant ssh-config\n");
    let made = inventory(opts, &vdir)?;
    print!("{}", std::fs::read_to_string(&made.inventory)?);

    let mut g = g.clone();
    g.config_path = Some(made.config.clone());
    g.environment = Some(ENVIRONMENT.into());
    g.inventory.clear();
    if g.age_identity.is_empty() {
        // the copied environment's secrets are encrypted to the documented throwaway lab
        // identity (environments/ci-builder/README.md), as the embedded one's are
        g.age_identity
            .push(made.config.join(embedded::LAB_IDENTITY));
        if std::env::var_os("KILN_AGE_PASSPHRASE").is_none() {
            std::env::set_var("KILN_AGE_PASSPHRASE", embedded::LAB_IDENTITY_PASSPHRASE);
        }
    }

    println!("\n== kiln control host bootstrap\n");
    let boot = control::bootstrap(
        &g,
        &BootstrapArgs {
            add_known_hosts: false,
            identity_path: None,
        },
    )?;
    if boot != exit::OK {
        println!(
            "(continuing: seed host configure says what it cannot do without the missing items)"
        );
    }
    println!(
        "\n== kiln seed host configure{}\n",
        if check { " --check" } else { "" }
    );
    let mut args = vec!["kiln", "--diff"];
    if check {
        args.push("--check");
    }
    let run = Defaults::try_parse_from(args)?.run;
    let code = seed::configure(
        &g,
        &ConfigureArgs {
            run,
            wipe_disks: false,
        },
    )?;
    // The Pulp proxy and an image build follow here once `kiln lab demo` runs them.
    println!(
        "\nThe machines are left up:\n  ssh -F {cfg} rocky9 ip -br addr show breth1\n  \
         kiln --config-path {conf} --environment {ENVIRONMENT} seed host configure   (again: changed=0)\n\
         Remove them with:\n  kiln lab vagrant down --vagrant-dir {vdir}",
        cfg = made.ssh_config.display(),
        conf = made.config.display(),
        vdir = vdir.display(),
    );
    Ok(code)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            std::fs::copy(e.path(), &dst)
                .with_context(|| format!("copying to {}", dst.display()))?;
        }
    }
    Ok(())
}
