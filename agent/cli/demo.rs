//! `kiln lab demo`: kiln's main job on its embedded default, on this machine.
//!
//! It starts two lab hosts (a Rocky Linux 9 and an Ubuntu 22.04 identity), copies the shipped
//! `lab` environment into the lab folder (so the allocations it writes can be read, and a second
//! run keeps them), runs `control host bootstrap` and `seed host configure` exactly as an operator
//! would, shows what was made on each host, then runs the image pipeline (`pipeline` below: fake
//! Pulp and registry, Pulp auth proxy, kolla-build through the proxy, push with the vault's
//! credentials, credential check of the pushed layers, kolla-image-tags.yml), and leaves the lab
//! up with the commands to look at it and to remove it. Running it again re-runs the
//! configuration and the proxy deploy, which then change nothing, and builds again only with
//! `--rebuild`.

mod pipeline;

use super::control::{self, BootstrapArgs};
use super::playbook::RunOpts;
use super::seed::{self, ConfigureArgs};
use super::{exit, GlobalOpts};
use crate::config::embedded;
use crate::lab::{Flavor, Lab, LabSpec};
use anyhow::Context as _;
use clap::Parser;
use std::path::{Path, PathBuf};

/// The lab's name; `environments/lab/inventory/hosts` names its hosts.
const NAME: &str = "demo";

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    run: RunOpts,
}

pub fn run(g: &GlobalOpts, dir: PathBuf, check: bool, rebuild: bool) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    println!(
        "== kiln lab demo: a Rocky Linux 9 and an Ubuntu 22.04 lab host in {}\n",
        dir.display()
    );
    let spec = LabSpec::new(NAME)
        .with_dir(&dir)
        .with_hosts(2, &[Flavor::Rocky9, Flavor::Ubuntu2204]);
    let lab = Lab::up(&spec)?;
    print!("{}", lab.status_table());

    let config = lab.dir.join("kayobe-config");
    let env_dir = config.join("environments").join("lab");
    // the shipped environment, refreshed on every run so a lab folder from an older kiln gets
    // today's files; what the demo itself writes there (allocations, the vault, the tag file)
    // is kept
    let shipped = embedded::shipped_config_path()?
        .join("environments")
        .join("lab");
    copy_tree(&shipped, &env_dir)?;
    // where this machine's lab services listen (environments/lab/globals.yml)
    std::fs::write(
        env_dir.join("lab-gateway.yml"),
        format!(
            "---\n# Written by `kiln lab demo`: this machine's address on the lab bridge, where the\n# fake Pulp and the registry listen.\nkiln_lab_gateway: \"{}\"\n",
            lab.gateway
        ),
    )
    .with_context(|| format!("writing {}", env_dir.join("lab-gateway.yml").display()))?;
    // environments/lab reaches the hosts through the lab's ssh_config
    std::env::set_var("KILN_LAB_DIR", &lab.dir);
    let mut g = g.clone();
    g.config_path = Some(config.clone());
    g.environment = Some("lab".into());
    g.inventory.clear();
    println!(
        "\nconfiguration: {} (environment lab, copied from kiln's shipped environments/lab)",
        config.display()
    );

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

    println!("\n== what it made\n");
    show(&lab, &env_dir);

    let mut code = code;
    if check {
        println!("\n(--check: the image pipeline is not run)");
    } else if code == exit::OK {
        code = pipeline::run(&g, &lab, &config, rebuild)?;
    } else {
        println!("\n(seed host configure failed: the image pipeline is not run)");
    }
    println!(
        "\nkiln lab demo took {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    println!(
        "\nThe lab is left up for inspection:\n  \
         ssh -F {cfg} rocky9-1 ip -d addr show breth1\n  \
         ssh -F {cfg} ubuntu2204-2 cat /etc/systemd/network/10-kiln-breth1.network\n  \
         kiln --config-path {conf} --environment lab seed host configure   (again: changed=0)\n  \
         kiln --config-path {conf} --environment lab build show\n  \
         kiln lab demo{dir_flag_demo}   (again: changes nothing; `--rebuild` builds and pushes again)\n\
         Remove it (hosts, fake Pulp, registry, proxy container) with:\n  kiln lab down --name {NAME}{dir_flag}",
        cfg = lab.ssh_config.display(),
        conf = config.display(),
        dir_flag = if dir == Path::new(".kiln-lab/demo") {
            String::new()
        } else {
            format!(" --dir {}", dir.display())
        },
        dir_flag_demo = if dir == Path::new(".kiln-lab/demo") {
            String::new()
        } else {
            format!(" --dir {}", dir.display())
        },
    );
    Ok(code)
}

/// Each host's bridge, routes, persisted files and Kayobe user, read inside the host, and the
/// allocation file.
fn show(lab: &Lab, env_dir: &Path) {
    let alloc = env_dir.join("network-allocation.yml");
    if let Ok(text) = std::fs::read_to_string(&alloc) {
        println!("{}:\n{}", alloc.display(), indent(&text));
    }
    for h in &lab.hosts {
        println!("{} ({}):", h.name, h.flavor.pretty_name());
        let probes: &[(&str, &[&str])] = &[
            ("bridge", &["ip", "-br", "addr", "show", "dev", "breth1"]),
            ("routes", &["ip", "route", "show", "dev", "breth1"]),
            (
                "persisted",
                &[
                    "sh",
                    "-c",
                    "ls -l /etc/NetworkManager/system-connections/ /etc/systemd/network/ 2>/dev/null | grep -E 'breth1|dummy1|nmconnection|netdev|network$' || true",
                ],
            ),
            ("kayobe user", &["id", "stack"]),
            ("sudoers", &["cat", "/etc/sudoers.d/kayobe-ansible-user"]),
        ];
        for (what, argv) in probes {
            match h.exec(argv) {
                Ok(o) => {
                    let text = String::from_utf8_lossy(if o.status.success() {
                        &o.stdout
                    } else {
                        &o.stderr
                    });
                    println!("  {what}:\n{}", indent(&indent(text.trim_end())));
                }
                Err(e) => println!("  {what}: {e}"),
            }
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// Files of the copied environment that the demo writes and a later run must keep.
const KEPT: [&str; 3] = [
    "network-allocation.yml",
    "secrets.yml.age",
    "kolla-image-tags.yml",
];

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else if KEPT.iter().any(|k| e.file_name() == *k) && dst.exists() {
            continue;
        } else {
            std::fs::copy(e.path(), &dst)
                .with_context(|| format!("copying to {}", dst.display()))?;
        }
    }
    Ok(())
}
