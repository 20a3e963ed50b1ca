//! `~/.ssh/config` (or `-F file`) for a host, read with the `ssh2-config` crate.
//!
//! Honoured: Host, HostName, User, Port, IdentityFile, ProxyJump, UserKnownHostsFile,
//! StrictHostKeyChecking, ConnectTimeout. Settings from the inventory win over the config file,
//! as with OpenSSH where command-line options win over the file.

use super::spec::{expand_tilde, HostKeyChecking};
use ssh2_config::{ParseRule, SshConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the config file says about one host (all optional).
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub proxy_jump: Option<String>,
    pub known_hosts: Vec<PathBuf>,
    pub strict: Option<HostKeyChecking>,
    pub connect_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {msg} (fix the ssh config file, or point the host at another with -F)")]
pub struct ConfigFileError {
    pub path: String,
    pub msg: String,
}

/// Look a host alias up in a config file. A missing default file is no error; a missing `-F`
/// file is.
pub fn lookup(
    file: Option<&Path>,
    default_file: bool,
    alias: &str,
) -> Result<HostConfig, ConfigFileError> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None if default_file => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".ssh/config"),
            None => return Ok(HostConfig::default()),
        },
        None => return Ok(HostConfig::default()),
    };
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if file.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(HostConfig::default())
        }
        Err(e) => {
            return Err(ConfigFileError {
                path: path.display().to_string(),
                msg: e.to_string(),
            })
        }
    };
    let mut r = std::io::BufReader::new(f);
    let cfg = SshConfig::default()
        .parse(
            &mut r,
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|e| ConfigFileError {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
    let p = cfg.query(alias);
    let field = |k: &str| {
        p.unsupported_fields
            .get(k)
            .or_else(|| p.ignored_fields.get(k))
            .cloned()
            .unwrap_or_default()
    };
    Ok(HostConfig {
        host_name: p.host_name.clone(),
        user: p.user.clone(),
        port: p.port,
        identity_files: p.identity_file.clone().unwrap_or_default(),
        proxy_jump: p
            .proxy_jump
            .clone()
            .map(|j| j.join(","))
            .filter(|j| j != "none"),
        known_hosts: field("userknownhostsfile")
            .iter()
            .map(|s| expand_tilde(s))
            .collect(),
        strict: field("stricthostkeychecking")
            .first()
            .and_then(|s| HostKeyChecking::parse(s)),
        connect_timeout: p.connect_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_kiln_uses() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config");
        std::fs::write(
            &f,
            "Host web*\n  HostName 10.1.2.3\n  User deploy\n  Port 2200\n  IdentityFile /k/id_ed25519\n  ProxyJump jump@bastion:2222\n  UserKnownHostsFile /k/known\n  StrictHostKeyChecking accept-new\n\nHost *\n  User fallback\n",
        )
        .unwrap();
        let h = lookup(Some(&f), false, "web1").unwrap();
        assert_eq!(h.host_name.as_deref(), Some("10.1.2.3"));
        assert_eq!(h.user.as_deref(), Some("deploy"));
        assert_eq!(h.port, Some(2200));
        assert_eq!(h.identity_files, vec![PathBuf::from("/k/id_ed25519")]);
        assert_eq!(h.proxy_jump.as_deref(), Some("jump@bastion:2222"));
        assert_eq!(h.known_hosts, vec![PathBuf::from("/k/known")]);
        assert_eq!(h.strict, Some(HostKeyChecking::AcceptNew));
        let o = lookup(Some(&f), false, "db").unwrap();
        assert_eq!(o.user.as_deref(), Some("fallback"));
        assert!(lookup(Some(&dir.path().join("nope")), false, "x").is_err());
    }
}
