//! `kiln seed host configure`: Kayobe's verb that turns the hosts of the `seed` group (the
//! ci-builder host) into configured hosts.
//!
//! As Kayobe does, it is two runs of playbooks: first `ip-allocation.yml` allocates each host's
//! addresses and writes them to the environment's `network-allocation.yml`; then the
//! configuration is read again (so the new addresses are variables like any other) and
//! `seed-host-configure.yml` runs: the Kayobe user through the bootstrap user, package
//! prerequisites, the `command-not-found` purge on Ubuntu, networking, optional disk wiping,
//! LVM. The verb only picks playbooks, a limit and variables; the playbooks are in `playbooks/`.

use super::playbook::{resolve_playbook, run_playbooks, Mode, RunOpts, Verb};
use super::{exit, GlobalOpts};
use crate::config::vars::ExtraVars;
use crate::value::{Map, Value};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SeedArgs {
    #[command(subcommand)]
    pub cmd: SeedCmd,
}

#[derive(Subcommand, Debug)]
pub enum SeedCmd {
    /// The seed host itself.
    Host(SeedHostArgs),
    /// Seed container images (Kayobe's `seed container image build`).
    Container(super::image_build::ContainerArgs),
}

#[derive(Args, Debug)]
pub struct SeedHostArgs {
    #[command(subcommand)]
    pub cmd: SeedHostCmd,
}

#[derive(Subcommand, Debug)]
pub enum SeedHostCmd {
    /// Configure the seed hosts: IP allocation, the Kayobe user, packages, network, LVM.
    #[command(
        after_help = "Examples:\n  kiln seed host configure\n  kiln --environment ci-builder seed host configure --check --diff\n  kiln seed host configure -l builder -t network\n  kiln seed host configure --wipe-disks"
    )]
    Configure(ConfigureArgs),
}

#[derive(Args, Debug)]
pub struct ConfigureArgs {
    #[command(flatten)]
    pub run: RunOpts,
    /// Wipe partition tables and LVM/filesystem signatures from the disks of the host's LVM
    /// groups that are not mounted and not yet in a volume group, before creating the groups.
    #[arg(long)]
    pub wipe_disks: bool,
}

const VERB: &[&str] = &["seed", "host", "configure"];

pub fn run(a: SeedArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    match a.cmd {
        SeedCmd::Host(SeedHostArgs {
            cmd: SeedHostCmd::Configure(c),
        }) => configure(g, &c),
        SeedCmd::Container(c) => super::image_build::run("seed", c, g),
    }
}

fn shipped(name: &str) -> PathBuf {
    let p = resolve_playbook(&PathBuf::from(name));
    std::path::absolute(&p).unwrap_or(p)
}

pub fn configure(g: &GlobalOpts, c: &ConfigureArgs) -> anyhow::Result<i32> {
    let allocate = Verb {
        words: VERB,
        pre_hooks: true,
        post_hooks: false,
    };
    let code = run_playbooks(
        g,
        &c.run,
        &[shipped("ip-allocation.yml")],
        &allocate,
        verb_vars(c, "seed"),
        Mode::Run,
    )?;
    if code != exit::OK {
        return Ok(code);
    }
    let configure = Verb {
        words: VERB,
        pre_hooks: false,
        post_hooks: true,
    };
    run_playbooks(
        g,
        &c.run,
        &[shipped("seed-host-configure.yml")],
        &configure,
        verb_vars(c, "seed"),
        Mode::Run,
    )
}

/// The variables the verb passes to its playbooks (Kayobe passes the same through `-e`).
fn verb_vars(c: &ConfigureArgs, group: &str) -> Vec<ExtraVars> {
    let mut vars = Map::new();
    vars.insert("kayobe_hosts".into(), Value::str(group));
    vars.insert("wipe_disks".into(), Value::Bool(c.wipe_disks));
    vec![ExtraVars {
        origin: "seed host configure".into(),
        vars,
    }]
}
