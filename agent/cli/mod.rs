//! The command tree. Verbs are thin: they pick playbooks, a limit and extra vars and hand over to
//! the layers below, exactly as Kayobe wraps ansible-playbook. Each verb lives in its own file with
//! its clap `Args` and a `run` that returns the process exit code.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub mod adhoc;
pub mod agent;
pub mod build;
pub mod connopts;
pub mod context;
pub mod control;
pub mod demo;
pub mod hooks;
pub mod image_build;
pub mod inventory;
pub mod lab;
pub mod mux;
pub mod notify;
pub mod playbook;
pub mod rebuild;
pub mod schedule;
pub mod seed;
pub mod shell;
pub mod vagrant;
pub mod vars;
pub mod vault;

/// Exit codes, as ansible-playbook uses them.
pub use crate::engine::exit;

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "Ansible- and Kayobe-compatible host provisioning, push-mode over SSH",
    long_about = "kiln reads Kayobe configuration and Ansible inventories and playbooks, and turns hosts \
into Kolla ci-builder hosts. It copies itself to each host once and runs there as an agent.",
    after_help = "Examples:\n  kiln inventory --graph\n  kiln vars builder kolla_base_distro\n  kiln --config-path ./etc/kayobe --environment ci-builder vars builder"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every verb understands (Kayobe's and ansible's names).
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOpts {
    /// Inventory source (file, directory or `host1,host2,`); repeatable. Given without a Kayobe
    /// config path, kiln works in plain Ansible mode.
    #[arg(short = 'i', long = "inventory", global = true)]
    pub inventory: Vec<String>,
    /// Extra variables: `k=v ...`, JSON/YAML text, or `@file`; repeatable; highest precedence.
    #[arg(short = 'e', long = "extra-vars", global = true)]
    pub extra_vars: Vec<String>,
    /// Kayobe configuration path (the `etc/kayobe` directory).
    #[arg(long, env = "KAYOBE_CONFIG_PATH", global = true)]
    pub config_path: Option<PathBuf>,
    /// Kayobe environment under `<config path>/environments/`.
    #[arg(long, env = "KAYOBE_ENVIRONMENT", global = true)]
    pub environment: Option<String>,
    /// An existing Kayobe installation's data files (its `ansible/` tree is used as the base).
    #[arg(
        long = "kayobe-data-path",
        env = "KAYOBE_DATA_FILES_PATH",
        global = true
    )]
    pub kayobe_data_path: Option<PathBuf>,
    /// ansible-vault password file.
    #[arg(long, global = true)]
    pub vault_password_file: Option<PathBuf>,
    /// age identity file used to decrypt age-encrypted files.
    #[arg(long, env = "KILN_AGE_IDENTITY", global = true)]
    pub age_identity: Vec<PathBuf>,
    /// More output (-v results, -vvv transport detail).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the inventory as ansible-inventory does.
    Inventory(inventory::InventoryArgs),
    /// Print a host's variables, fully templated, as one JSON object.
    Vars(vars::VarsArgs),
    /// Render a template file for a host.
    Render(vars::RenderArgs),
    /// Encrypt, decrypt, edit and migrate secrets (age, and ansible-vault files).
    Vault(vault::VaultArgs),
    /// Network-namespace lab hosts with real OpenSSH, on this machine.
    Lab(lab::LabArgs),
    /// Run a command on every matched host and print each host's output and exit status.
    Shell(shell::ShellArgs),
    /// Run playbooks (Kayobe's `playbook run`; plain ansible-playbook with `-i`).
    Playbook(playbook::PlaybookArgs),
    /// Run one module on matching hosts, as the `ansible` command does.
    #[command(name = "ad-hoc")]
    AdHoc(adhoc::AdHocArgs),
    /// Kayobe's `control host bootstrap`: this machine's SSH key, age identity and checks.
    Control(control::ControlArgs),
    /// Kayobe's `seed host configure`: configure the seed (ci-builder) hosts.
    Seed(seed::SeedArgs),
    /// Kayobe's `overcloud container image build`: Kolla images for overcloud hosts.
    Overcloud(OvercloudArgs),
    /// The persistent connections kept between runs (Ansible's ControlPersist): status, stop.
    Mux(mux::MuxArgs),
    /// Print a shell completion script: `kiln completions bash > /etc/bash_completion.d/kiln`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print kiln's man page (roff): `kiln man > /usr/local/share/man/man1/kiln.1`.
    Man,
    /// Scheduled kiln runs (image rebuilds) with systemd timers: add, list, show, remove,
    /// run-now, history.
    Schedule(schedule::ScheduleArgs),
    /// Build records and kolla-image-tags.yml: show, list, tags.
    Build(build::BuildArgs),
    /// The agent side of the transport (run on hosts by the controller).
    #[command(hide = true)]
    Agent(agent::AgentArgs),
}

/// The exit code of a CLI whose reader went away (`kiln vars | head -1`): 128 + SIGPIPE, what a
/// shell reports for a tool killed by SIGPIPE, without any message.
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// `println!` panics with "failed printing to stdout: Broken pipe" when the reader of a pipe has
/// gone. kiln keeps Rust's ignored SIGPIPE (the transport writes to sockets whose peer may go
/// away, and must see that as an error, not die), so the CLI turns exactly that panic into a quiet
/// exit; every other panic goes to the default hook.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default(info)
    }));
}

/// An error and its causes on one line, as anyhow's `{:#}` prints them, but without repeating a
/// cause whose text the message already holds: kiln's errors mostly say their cause themselves
/// (`cannot read F: No such file or directory`), and a chain printed in full said it twice.
/// The runtime a run's engine works in: tokio's multi-threaded one, with threads whose stack
/// holds the deepest template minijinja accepts ([`crate::template::STACK_SIZE`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(crate::template::STACK_SIZE)
        .build()
}

pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.contains(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out
}

/// An error that carries its exit code (ansible-playbook's for the same input); other errors
/// exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct Exit {
    pub code: i32,
    pub msg: String,
}

/// Whether an error is (caused by) writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[derive(Args, Debug)]
pub struct OvercloudArgs {
    #[command(subcommand)]
    pub cmd: OvercloudCmd,
}

#[derive(Subcommand, Debug)]
pub enum OvercloudCmd {
    /// Overcloud container images.
    Container(image_build::ContainerArgs),
}

/// `-e` and `-i` may be given before the verb and after it, and every one counts, as with
/// ansible-playbook. clap's global arguments do not add up across levels: the values given after
/// the verb replace those given before it. So every occurrence (up to a `--`, after which the
/// words belong to another command, e.g. `kiln schedule add ... -- <verb>`) is moved, in order,
/// to the front before clap parses the line.
fn hoist_repeated_globals(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const TAKES_VALUE: [&str; 4] = ["-e", "--extra-vars", "-i", "--inventory"];
    let mut hoisted = Vec::new();
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    rest.extend(it.next());
    while let Some(a) = it.next() {
        let text = a.to_string_lossy();
        if text == "--" {
            rest.push(a);
            rest.extend(it.by_ref());
            break;
        }
        if TAKES_VALUE.contains(&text.as_ref()) {
            match it.next() {
                Some(v) => hoisted.extend([a, v]),
                None => rest.push(a),
            }
        } else if ["-e", "-i", "--extra-vars=", "--inventory="]
            .iter()
            .any(|p| text.starts_with(p) && text.len() > p.len())
        {
            hoisted.push(a);
        } else {
            rest.push(a);
        }
    }
    let mut out = Vec::with_capacity(rest.len() + hoisted.len());
    let mut rest = rest.into_iter();
    out.extend(rest.next());
    out.extend(hoisted);
    out.extend(rest);
    out
}

pub fn main() -> i32 {
    quiet_on_broken_pipe();
    let cli = match Cli::try_parse_from(hoist_repeated_globals(std::env::args_os().collect())) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::OK,
                _ => exit::BAD_OPTIONS,
            };
        }
    };
    init_logging(cli.global.verbose);
    let result = match cli.command {
        Command::Inventory(a) => inventory::run(a, &cli.global),
        Command::Vars(a) => vars::run(a, &cli.global),
        Command::Render(a) => vars::render(a, &cli.global),
        Command::Vault(a) => vault::run(a, &cli.global),
        Command::Lab(a) => lab::run(a, &cli.global),
        Command::Shell(a) => shell::run(a, &cli.global),
        Command::Playbook(a) => playbook::run(a, &cli.global),
        Command::AdHoc(a) => adhoc::run(a, &cli.global),
        Command::Control(a) => control::run(a, &cli.global),
        Command::Seed(a) => seed::run(a, &cli.global),
        Command::Overcloud(OvercloudArgs {
            cmd: OvercloudCmd::Container(a),
        }) => image_build::run("overcloud", a, &cli.global),
        Command::Mux(a) => mux::run(a, &cli.global),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "kiln", &mut std::io::stdout());
            Ok(exit::OK)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map(|_| exit::OK)
                .map_err(anyhow::Error::from)
        }
        Command::Schedule(a) => schedule::run(a, &cli.global),
        Command::Build(a) => build::run(a, &cli.global),
        Command::Agent(a) => agent::run(a, &cli.global),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => EXIT_BROKEN_PIPE,
        Err(e) => {
            eprintln!("ERROR: {}", error_text(&e));
            e.downcast_ref::<Exit>().map_or(exit::ERROR, |x| x.code)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        // -v: also the files kiln does not read in a vars directory (config/inventory/group_host_vars.rs)
        1..=2 => "warn,vars_files=info",
        3 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Cli {
        let args = line.split(' ').map(std::ffi::OsString::from).collect();
        Cli::try_parse_from(hoist_repeated_globals(args)).expect(line)
    }

    #[test]
    fn extra_vars_and_inventories_add_up_before_and_after_the_verb() {
        let cli = parse("kiln -e a=1 -i one vars host -e b=2 -ec=3 --extra-vars=d=4 -i two");
        assert_eq!(cli.global.extra_vars, ["a=1", "b=2", "c=3", "d=4"]);
        assert_eq!(cli.global.inventory.len(), 2);
        // after `--` the words are another command's
        let args: Vec<std::ffi::OsString> = "kiln schedule add n -e a=1 -- vars h -e b=2"
            .split(' ')
            .map(Into::into)
            .collect();
        let out = hoist_repeated_globals(args);
        let words: Vec<_> = out
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            words.join(" "),
            "kiln -e a=1 schedule add n -- vars h -e b=2"
        );
    }
}
