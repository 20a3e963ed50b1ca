//! Connection options shared by every verb that reaches hosts (`shell`, `playbook run`,
//! `ad-hoc`, the Kayobe verbs): ansible-playbook's `-u`, `--private-key`, `-T`, `-b`, plus kiln's
//! `--host-key-checking` and `--agent-binary`.

use crate::transport::{HostKeyChecking, TransportOptions};
use crate::value::{Secret, Value};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ConnOpts {
    /// Become another user (sudo) for every task that does not say otherwise.
    #[arg(short = 'b', long = "become")]
    pub become_: bool,
    /// The user to become.
    #[arg(long, default_value = "root")]
    pub become_user: String,
    /// Check host keys: strict (default), accept-new, or off. Also ANSIBLE_HOST_KEY_CHECKING=False.
    #[arg(long, value_enum)]
    pub host_key_checking: Option<HostKeyChecking>,
    /// Agent binary for an architecture, `ARCH=PATH` (e.g. `aarch64=./kiln-aarch64`); repeatable.
    #[arg(long, value_name = "ARCH=PATH")]
    pub agent_binary: Vec<String>,
    /// Remote user, when the inventory names none.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Private key file, when the inventory names none.
    #[arg(long = "private-key", visible_alias = "key-file")]
    pub private_key: Option<PathBuf>,
    /// Connection timeout in seconds.
    #[arg(short = 'T', long, default_value_t = 10)]
    pub timeout: u64,
    /// Keep each host's SSH connection and agent open this many seconds after the run, for the
    /// next run (Ansible's default `ControlPersist=60s`); 0 connects afresh every run.
    /// `kiln mux status` shows them, `kiln mux stop` closes them.
    #[arg(
        long,
        env = "KILN_CONTROL_PERSIST",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub control_persist: u64,
}

impl ConnOpts {
    /// Connection variables these options supply where the inventory sets none.
    pub fn conn_defaults(&self) -> crate::value::Map {
        let mut m = crate::value::Map::new();
        if let Some(u) = &self.user {
            m.insert("ansible_user".into(), Value::Str(u.clone()));
        }
        if let Some(k) = &self.private_key {
            m.insert(
                "ansible_ssh_private_key_file".into(),
                Value::Str(k.display().to_string()),
            );
        }
        m
    }

    /// `-b`: the user every task becomes unless it says otherwise.
    pub fn become_default(&self) -> Option<String> {
        self.become_.then(|| self.become_user.clone())
    }

    pub fn transport(&self) -> anyhow::Result<TransportOptions> {
        let mut opts = TransportOptions {
            connect_timeout: std::time::Duration::from_secs(self.timeout),
            control_persist: Some(std::time::Duration::from_secs(self.control_persist)),
            ..Default::default()
        };
        opts.host_key_checking = self.host_key_checking.or_else(|| {
            std::env::var("ANSIBLE_HOST_KEY_CHECKING")
                .ok()
                .and_then(|v| HostKeyChecking::parse(&v))
        });
        for ab in &self.agent_binary {
            let (arch, path) = ab
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--agent-binary {ab}: expected ARCH=PATH"))?;
            opts.agent_binaries
                .insert(arch.to_string(), PathBuf::from(path));
        }
        if let Ok(p) = std::env::var("KILN_SSH_KEY_PASSPHRASE") {
            opts.key_passphrase = Some(Secret::new(Value::Str(p)));
        }
        Ok(opts)
    }
}
