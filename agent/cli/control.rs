//! `kiln control host bootstrap`: prepare the machine kiln runs on (Kayobe's control host).
//!
//! Kayobe's verb installs Ansible and its Galaxy roles; kiln needs neither, so this verb makes
//! what the later verbs rely on and checks the rest, installing nothing silently:
//! - the SSH key pair `seed host configure` authorises for the Kayobe user (`ssh_private_key_path`,
//!   made with `ssh-keygen` when missing);
//! - an age identity for the vault (`~/.config/kiln/key.txt`, mode 0600, made when missing), with
//!   where it is and how to back it up;
//! - with `--add-known-hosts`, each configured host's SSH host keys in `~/.ssh/known_hosts`
//!   (read with `ssh-keyscan`; a host already recorded with another key is reported, never
//!   overwritten);
//! - a list of what is missing (tools, the agent binary for the hosts, secrets that cannot be
//!   opened), each with the command that fixes it.

use super::{context, exit, GlobalOpts};
use crate::transport::known_hosts::{self, Verdict};
use crate::transport::ssh::home;
use crate::value::Value;
use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Args, Debug)]
pub struct ControlArgs {
    #[command(subcommand)]
    pub cmd: ControlCmd,
}

#[derive(Subcommand, Debug)]
pub enum ControlCmd {
    /// This machine, the control host.
    Host(ControlHostArgs),
}

#[derive(Args, Debug)]
pub struct ControlHostArgs {
    #[command(subcommand)]
    pub cmd: ControlHostCmd,
}

#[derive(Subcommand, Debug)]
pub enum ControlHostCmd {
    /// Make the SSH key and age identity if missing, and check what else kiln needs here.
    #[command(
        after_help = "Examples:\n  kiln control host bootstrap\n  kiln --environment ci-builder control host bootstrap --add-known-hosts"
    )]
    Bootstrap(BootstrapArgs),
}

#[derive(Args, Debug)]
pub struct BootstrapArgs {
    /// Record the SSH host keys of the configured hosts in ~/.ssh/known_hosts.
    #[arg(long)]
    pub add_known_hosts: bool,
    /// Where to keep the age identity (default ~/.config/kiln/key.txt).
    #[arg(long)]
    pub identity_path: Option<PathBuf>,
}

pub fn run(a: ControlArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    let ControlCmd::Host(ControlHostArgs {
        cmd: ControlHostCmd::Bootstrap(b),
    }) = a.cmd;
    bootstrap(g, &b)
}

/// One line of the report: what, and whether it is fine.
struct Report {
    missing: Vec<String>,
}

impl Report {
    fn ok(&self, what: &str, detail: impl std::fmt::Display) {
        println!("ok       {what}: {detail}");
    }
    fn made(&self, what: &str, detail: impl std::fmt::Display) {
        println!("created  {what}: {detail}");
    }
    fn missing(&mut self, what: &str, fix: impl std::fmt::Display) {
        println!("MISSING  {what}: {fix}");
        self.missing.push(what.to_string());
    }
}

pub fn bootstrap(g: &GlobalOpts, b: &BootstrapArgs) -> anyhow::Result<i32> {
    let loaded = context::load(g, Vec::new(), Vec::new())?;
    let mut r = Report { missing: vec![] };
    let hosts = loaded.run.inventory.select("all").unwrap_or_default();

    // The SSH key pair, at the path the configuration names (Kayobe's ssh_private_key_path).
    let key = host_var_text(
        &loaded,
        hosts.first().map(String::as_str),
        "ssh_private_key_path",
    )
    .unwrap_or_else(|| home().join(".ssh/id_ed25519").display().to_string());
    let key = PathBuf::from(key);
    ssh_key(&mut r, &key)?;
    age_identity(
        &mut r,
        b.identity_path
            .clone()
            .or_else(context::default_identity_path),
    )?;

    for tool in ["ssh", "ssh-keygen", "ssh-keyscan"] {
        match crate::lab::find_tool(tool) {
            Some(p) => r.ok(tool, p.display()),
            None => r.missing(
                tool,
                "install it: apt-get install openssh-client / dnf install openssh-clients",
            ),
        }
    }
    let opts = crate::transport::TransportOptions::default();
    match crate::transport::upload::find_agent_binary(std::env::consts::ARCH, &opts) {
        Some(p) => r.ok("agent binary for x86_64 hosts", p.display()),
        None => r.missing(
            "agent binary for x86_64 hosts",
            "build it: rustup target add x86_64-unknown-linux-musl && cargo build --release --target x86_64-unknown-linux-musl (or set KILN_AGENT_BINARY)",
        ),
    }
    if hosts.is_empty() {
        r.missing(
            "hosts",
            "the inventory has no hosts: add them to the environment's inventory/hosts",
        );
    } else {
        r.ok("hosts", hosts.join(", "));
    }
    if b.add_known_hosts {
        for h in &hosts {
            known_host(&mut r, &loaded, h);
        }
    }
    if r.missing.is_empty() {
        println!("\nThe control host is ready.");
        Ok(exit::OK)
    } else {
        println!(
            "\nMissing ({}): {}. kiln installs nothing by itself; run the commands above.",
            r.missing.len(),
            r.missing.join(", ")
        );
        Ok(exit::ERROR)
    }
}

/// A variable of a host (or of `localhost` when there are no hosts), templated, as text.
fn host_var_text(loaded: &context::Loaded, host: Option<&str>, name: &str) -> Option<String> {
    use crate::template::VarSource;
    let host = host.unwrap_or("localhost");
    let scope: std::sync::Arc<dyn VarSource> =
        std::sync::Arc::new(loaded.run.host_scope(host).ok()?);
    let raw = scope.raw(name)?;
    let v = loaded.templar.template(&scope, &raw, name).ok()?;
    match v {
        Value::Null => None,
        v => Some(crate::template::py_str_value(&v)),
    }
}

fn ssh_key(r: &mut Report, key: &Path) -> anyhow::Result<()> {
    let public = PathBuf::from(format!("{}.pub", key.display()));
    if key.is_file() && public.is_file() {
        r.ok("SSH key", key.display());
        return Ok(());
    }
    if key.is_file() {
        // the public half can always be derived from the private key
        let out = Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(key)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                std::fs::write(&public, &o.stdout)
                    .with_context(|| format!("writing {}", public.display()))?;
                r.made("SSH public key", public.display());
            }
            _ => r.missing(
                "SSH public key",
                format!("ssh-keygen -y -f {} > {}", key.display(), public.display()),
            ),
        }
        return Ok(());
    }
    if let Some(dir) = key.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let kind = if key
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("rsa"))
    {
        "rsa"
    } else {
        "ed25519"
    };
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "kiln control host", "-f"])
        .arg(key)
        .status();
    match status {
        Ok(s) if s.success() => r.made(
            "SSH key",
            format!(
                "{} ({kind}; public half {})",
                key.display(),
                public.display()
            ),
        ),
        _ => r.missing(
            "SSH key",
            format!(
                "ssh-keygen -t {kind} -N '' -f {} (ssh-keygen failed or is missing)",
                key.display()
            ),
        ),
    }
    Ok(())
}

fn age_identity(r: &mut Report, path: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(path) = path else {
        r.missing("age identity", "HOME is not set: pass --identity-path");
        return Ok(());
    };
    if path.is_file() {
        r.ok("age identity", path.display());
        return Ok(());
    }
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# created by `kiln control host bootstrap` on {}\n# public key: {public}\n{}\n",
        chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%z"),
        id.to_string().expose_secret()
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    // create it 0600 from the start: the secret never sits in a world-readable file
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    r.made("age identity", path.display());
    println!(
        "         public key (give it to `kiln vault encrypt --recipient`): {public}\n         \
         Back this file up now, somewhere other than this machine (a password manager or an\n         \
         offline copy): without it nothing encrypted to that public key can be opened again.\n         \
         kiln reads it by default; elsewhere pass --age-identity {}",
        path.display()
    );
    Ok(())
}

/// Record a host's SSH host keys in ~/.ssh/known_hosts (ssh-keyscan), never replacing a
/// different recorded key.
fn known_host(r: &mut Report, loaded: &context::Loaded, host: &str) {
    let what = format!("known_hosts entry for {host}");
    let vars = match context::connection_vars(loaded, host) {
        Ok(v) => v,
        Err(e) => {
            return r.missing(
                &what,
                format!(
                    "cannot read its connection variables: {}",
                    super::error_text(&e)
                ),
            )
        }
    };
    // a host reached without SSH (ansible_connection=local, like the lab's builder) has no key
    let connection = vars
        .get("ansible_connection")
        .map(crate::template::py_str_value)
        .unwrap_or_default();
    if connection == "local" {
        return r.ok(&what, "not needed (ansible_connection=local)");
    }
    // the address and port the transport would use (inventory, then the ssh_config it names)
    let target = crate::transport::ConnSpec::from_vars(host, &vars)
        .map_err(|e| e.to_string())
        .and_then(|spec| {
            crate::transport::ssh::resolve(&spec, &crate::transport::TransportOptions::default())
                .map_err(|e| e.to_string())
        });
    let (addr, port) = match target {
        Ok((t, _)) => (t.addr, t.port),
        Err(e) => return r.missing(&what, format!("cannot work out its address: {e}")),
    };
    let out = Command::new("ssh-keyscan")
        .args(["-T", "5", "-p", &port.to_string(), &addr])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return r.missing(&what, format!("cannot run ssh-keyscan: {e}")),
    };
    let file = home().join(".ssh/known_hosts");
    let mut added = 0;
    let mut known = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((_, key_text)) = line.split_once(' ') else {
            continue;
        };
        let Ok(key) = russh::keys::PublicKey::from_openssh(key_text.trim()) else {
            continue;
        };
        match known_hosts::check(std::slice::from_ref(&file), &addr, port, &key) {
            Verdict::Known => known += 1,
            Verdict::Unknown | Verdict::OtherTypes { .. } => {
                if let Err(e) = known_hosts::learn(&file, &addr, port, &key) {
                    return r.missing(&what, format!("cannot write {}: {e}", file.display()));
                }
                added += 1;
            }
            Verdict::Changed { file, line } | Verdict::Revoked { file, line } => {
                return r.missing(
                    &what,
                    format!(
                        "{}:{line} records a different key for {addr}: if the host was rebuilt, remove that line (ssh-keygen -R '{}') and run this again",
                        file.display(),
                        known_hosts::host_entry(&addr, port)
                    ),
                );
            }
        }
    }
    match (added, known) {
        (0, 0) => r.missing(
            &what,
            format!("ssh-keyscan got no key from {addr}:{port}: is the host up?"),
        ),
        (0, _) => r.ok(
            &what,
            format!("{} already recorded", known_hosts::host_entry(&addr, port)),
        ),
        _ => r.made(
            &what,
            format!(
                "{} key(s) for {} in {}",
                added,
                known_hosts::host_entry(&addr, port),
                file.display()
            ),
        ),
    }
}
