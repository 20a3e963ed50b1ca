//! [`ConnSpec`]: everything the transport needs to reach one host, and its mapping from Ansible's
//! connection variables (`ansible_host`, `ansible_port`, `ansible_user`,
//! `ansible_ssh_private_key_file`, `ansible_connection`, `ansible_ssh_common_args` /
//! `ansible_ssh_extra_args`, `ansible_host_key_checking`, `ansible_become*`).
//!
//! It is a plain struct so the engine can build it from a host's resolved variables without the
//! transport knowing anything about inventories.

use crate::value::{Map, Secret, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Connection {
    #[default]
    Ssh,
    Local,
}

/// OpenSSH's `StrictHostKeyChecking`, and `--host-key-checking`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum HostKeyChecking {
    /// Refuse hosts whose key is not in known_hosts or differs from it.
    #[default]
    Strict,
    /// Record unknown hosts' keys; refuse changed keys.
    AcceptNew,
    /// Accept any key (Ansible's `host_key_checking = False`).
    Off,
}

impl HostKeyChecking {
    /// From an ssh option value (`yes`, `accept-new`, `no`, `off`, `ask`) or an Ansible boolean.
    pub fn parse(s: &str) -> Option<HostKeyChecking> {
        match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "true" | "ask" | "strict" | "1" => Some(HostKeyChecking::Strict),
            "accept-new" => Some(HostKeyChecking::AcceptNew),
            "no" | "off" | "false" | "0" => Some(HostKeyChecking::Off),
            _ => None,
        }
    }
}

/// Privilege escalation for the agent: `sudo -u USER`.
#[derive(Debug, Clone, PartialEq)]
pub struct BecomeSpec {
    pub user: String,
    /// Fed to `sudo -S` on stdin after its prompt, never on a command line.
    pub password: Option<Secret>,
    /// Extra sudo flags (`ansible_become_flags`), beyond the ones kiln always passes.
    pub flags: Vec<String>,
    /// `ansible_become_exe` (default `sudo`).
    pub exe: String,
}

impl BecomeSpec {
    pub fn sudo(user: &str) -> BecomeSpec {
        BecomeSpec {
            user: user.to_string(),
            password: None,
            flags: Vec::new(),
            exe: "sudo".into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnSpec {
    /// The inventory hostname (what output and errors call the host).
    pub host: String,
    /// Where to connect (`ansible_host`); defaults to `host`.
    pub addr: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key_files: Vec<PathBuf>,
    /// `UserKnownHostsFile`s; empty means `~/.ssh/known_hosts`.
    pub known_hosts: Vec<PathBuf>,
    pub host_key_checking: Option<HostKeyChecking>,
    /// `[user@]host[:port]`, comma-separated for a chain.
    pub proxy_jump: Option<String>,
    pub become_: Option<BecomeSpec>,
    pub connection: Connection,
    /// `-F file`; `None` reads `~/.ssh/config` (unless the run turns that off).
    pub ssh_config: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("{host}: {var}: {msg}")]
pub struct SpecError {
    pub host: String,
    pub var: String,
    pub msg: String,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) | Value::Unsafe(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Secret(s) => text(s.expose()),
        _ => None,
    }
}

impl ConnSpec {
    /// A spec with defaults for a host name.
    pub fn new(host: &str) -> ConnSpec {
        ConnSpec {
            host: host.to_string(),
            addr: host.to_string(),
            ..Default::default()
        }
    }

    /// Build from a host's resolved variables, as Ansible's ssh and local connections read them.
    pub fn from_vars(inventory_hostname: &str, vars: &Map) -> Result<ConnSpec, SpecError> {
        let err = |var: &str, msg: String| SpecError {
            host: inventory_hostname.into(),
            var: var.into(),
            msg,
        };
        let get = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| vars.get(*n))
                .filter(|v| !v.is_null())
        };
        let mut s = ConnSpec::new(inventory_hostname);
        if let Some(v) = get(&["ansible_connection"]) {
            s.connection = match text(v).unwrap_or_default().as_str() {
                "ssh" | "smart" | "paramiko" | "paramiko_ssh" => Connection::Ssh,
                "local" => Connection::Local,
                other => {
                    return Err(err(
                        "ansible_connection",
                        format!("connection type {other:?} is not supported (use ssh or local)"),
                    ))
                }
            };
        }
        if let Some(v) = get(&["ansible_host", "ansible_ssh_host"]).and_then(text) {
            s.addr = v;
        }
        if let Some(v) = get(&["ansible_port", "ansible_ssh_port"]) {
            let t = text(v).unwrap_or_default();
            s.port = Some(
                t.parse()
                    .map_err(|_| err("ansible_port", format!("{t:?} is not a port number")))?,
            );
        }
        s.user = get(&["ansible_user", "ansible_ssh_user"]).and_then(text);
        if let Some(k) =
            get(&["ansible_ssh_private_key_file", "ansible_private_key_file"]).and_then(text)
        {
            s.key_files.push(expand_tilde(&k));
        }
        if let Some(v) = get(&["ansible_host_key_checking", "ansible_ssh_host_key_checking"]) {
            s.host_key_checking = Some(if v.is_keyword_true() {
                HostKeyChecking::Strict
            } else {
                HostKeyChecking::Off
            });
        }
        for var in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
            if let Some(a) = vars.get(var).and_then(text) {
                s.apply_ssh_args(&a).map_err(|m| err(var, m))?;
            }
        }
        if let Some(t) = get(&["ansible_timeout", "ansible_ssh_timeout"]).and_then(text) {
            if let Ok(n) = t.parse::<f64>() {
                s.connect_timeout = Some(Duration::from_secs_f64(n.max(0.0)));
            }
        }
        if get(&["ansible_become"]).is_some_and(Value::is_keyword_true) {
            let method = get(&["ansible_become_method"])
                .and_then(text)
                .unwrap_or_else(|| "sudo".into());
            if method != "sudo" {
                return Err(err(
                    "ansible_become_method",
                    format!("become method {method:?} is not supported (kiln supports sudo)"),
                ));
            }
            let mut b = BecomeSpec::sudo(
                &get(&["ansible_become_user"])
                    .and_then(text)
                    .unwrap_or_else(|| "root".into()),
            );
            if let Some(p) = get(&[
                "ansible_become_password",
                "ansible_become_pass",
                "ansible_sudo_pass",
            ]) {
                b.password = Some(Secret::new(Value::Str(text(p).unwrap_or_default())));
            }
            if let Some(f) = get(&["ansible_become_flags"]).and_then(text) {
                b.flags = shell_words::split(&f)
                    .map_err(|e| err("ansible_become_flags", e.to_string()))?;
            }
            if let Some(e) = get(&["ansible_become_exe"]).and_then(text) {
                b.exe = e;
            }
            s.become_ = Some(b);
        }
        Ok(s)
    }

    /// Apply ssh command-line options (`-o K=V`, `-F file`, `-i key`, `-p port`, `-l user`,
    /// `-J jump`). Options kiln cannot honour are an error naming them, not silently ignored.
    pub fn apply_ssh_args(&mut self, args: &str) -> Result<(), String> {
        let words = shell_words::split(args).map_err(|e| format!("cannot split {args:?}: {e}"))?;
        let mut it = words.into_iter();
        while let Some(w) = it.next() {
            let (flag, inline) = if w.starts_with('-') && w.len() > 2 {
                (w[..2].to_string(), Some(w[2..].to_string()))
            } else {
                (w.clone(), None)
            };
            let mut val = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "-o" => {
                    let o = val()?;
                    let (k, v) = o
                        .split_once('=')
                        .or_else(|| o.split_once(char::is_whitespace))
                        .ok_or_else(|| format!("-o {o}: expected Key=Value"))?;
                    self.apply_option(k.trim(), v.trim())?;
                }
                "-F" => self.ssh_config = Some(expand_tilde(&val()?)),
                "-i" => self.key_files.push(expand_tilde(&val()?)),
                "-p" => {
                    let p = val()?;
                    self.port = Some(p.parse().map_err(|_| format!("-p {p}: not a port"))?)
                }
                "-l" => self.user = Some(val()?),
                "-J" => self.proxy_jump = Some(val()?),
                // flags that change nothing kiln does
                "-q" | "-v" | "-4" | "-6" | "-A" | "-a" | "-C" | "-T" | "-t" | "-x" | "-X"
                | "-n" | "-N" => {}
                other => {
                    return Err(format!(
                        "ssh option {other} is not supported by kiln's transport"
                    ))
                }
            }
        }
        Ok(())
    }

    fn apply_option(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim_matches('"');
        match key.to_ascii_lowercase().as_str() {
            "stricthostkeychecking" => {
                self.host_key_checking = Some(
                    HostKeyChecking::parse(value)
                        .ok_or_else(|| format!("StrictHostKeyChecking={value}: unknown value"))?,
                )
            }
            "userknownhostsfile" => {
                self.known_hosts = value.split_whitespace().map(expand_tilde).collect();
            }
            "proxyjump" => self.proxy_jump = (value != "none").then(|| value.to_string()),
            "proxycommand" => {
                // the common `ssh -W %h:%p [opts] [user@]jump` form is a ProxyJump
                self.proxy_jump = Some(proxy_command_as_jump(value).ok_or_else(|| {
                    format!("ProxyCommand {value:?}: only `ssh -W %h:%p [-p PORT] [-l USER] [user@]jumphost` is supported; use ProxyJump")
                })?);
            }
            "port" => {
                self.port = Some(
                    value
                        .parse()
                        .map_err(|_| format!("Port={value}: not a port"))?,
                )
            }
            "user" => self.user = Some(value.to_string()),
            "identityfile" => self.key_files.push(expand_tilde(value)),
            "hostname" => self.addr = value.to_string(),
            "connecttimeout" => {
                self.connect_timeout = value.parse::<u64>().ok().map(Duration::from_secs)
            }
            // options with no effect on kiln's transport
            "controlmaster"
            | "controlpersist"
            | "controlpath"
            | "serveraliveinterval"
            | "serveralivecountmax"
            | "forwardagent"
            | "compression"
            | "loglevel"
            | "identitiesonly"
            | "pubkeyauthentication"
            | "passwordauthentication"
            | "kbdinteractiveauthentication"
            | "preferredauthentications"
            | "gssapiauthentication"
            | "batchmode"
            | "addressfamily"
            | "tcpkeepalive"
            | "checkhostip"
            | "hashknownhosts"
            | "updatehostkeys"
            | "globalknownhostsfile" => {}
            other => {
                return Err(format!(
                    "ssh option {other} is not supported by kiln's transport"
                ))
            }
        }
        Ok(())
    }
}

fn proxy_command_as_jump(cmd: &str) -> Option<String> {
    let words = shell_words::split(cmd).ok()?;
    let mut it = words.into_iter();
    if !it.next()?.ends_with("ssh") {
        return None;
    }
    let (mut port, mut user, mut host, mut has_w) = (None, None, None, false);
    while let Some(w) = it.next() {
        match w.as_str() {
            "-W" => has_w = it.next()? == "%h:%p",
            "-p" => port = Some(it.next()?),
            "-l" => user = Some(it.next()?),
            "-q" | "-4" | "-6" | "-C" => {}
            // options for the jump connection itself: kiln applies the host's own settings
            // (key files, known_hosts, checking) to its jump hosts
            "-o" | "-i" | "-F" => {
                it.next()?;
            }
            x if !x.starts_with('-') && host.is_none() => host = Some(x.to_string()),
            _ => return None,
        }
    }
    if !has_w {
        return None;
    }
    let mut j = host?;
    if let Some(u) = user {
        if !j.contains('@') {
            j = format!("{u}@{j}");
        }
    }
    if let Some(p) = port {
        j = format!("{j}:{p}");
    }
    Some(j)
}

/// `~/x` → `$HOME/x`.
pub fn expand_tilde(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, Value)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn maps_ansible_connection_variables() {
        let v = vars(&[
            ("ansible_host", "10.0.0.5".into()),
            ("ansible_port", Value::Int(2222)),
            ("ansible_user", "stack".into()),
            ("ansible_ssh_private_key_file", "/keys/id".into()),
            ("ansible_ssh_common_args", "-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/kh -o ProxyCommand=\"ssh -W %h:%p -q jumper@bastion\"".into()),
            ("ansible_become", Value::Bool(true)),
            ("ansible_become_password", Value::Secret(Secret::new("pw".into()))),
        ]);
        let s = ConnSpec::from_vars("h1", &v).unwrap();
        assert_eq!(s.addr, "10.0.0.5");
        assert_eq!(s.port, Some(2222));
        assert_eq!(s.user.as_deref(), Some("stack"));
        assert_eq!(s.key_files, vec![PathBuf::from("/keys/id")]);
        assert_eq!(s.host_key_checking, Some(HostKeyChecking::AcceptNew));
        assert_eq!(s.known_hosts, vec![PathBuf::from("/kh")]);
        assert_eq!(s.proxy_jump.as_deref(), Some("jumper@bastion"));
        let b = s.become_.unwrap();
        assert_eq!(b.user, "root");
        assert_eq!(b.password.unwrap().expose(), &Value::Str("pw".into()));
    }

    #[test]
    fn host_key_checking_false_is_off_and_unknown_options_are_refused() {
        let v = vars(&[
            ("ansible_host_key_checking", Value::Bool(false)),
            ("ansible_connection", "local".into()),
        ]);
        let s = ConnSpec::from_vars("h", &v).unwrap();
        assert_eq!(s.host_key_checking, Some(HostKeyChecking::Off));
        assert_eq!(s.connection, Connection::Local);
        let bad = vars(&[("ansible_ssh_common_args", "-o RemoteCommand=x".into())]);
        let e = ConnSpec::from_vars("h", &bad).unwrap_err();
        assert!(e.to_string().contains("remotecommand"), "{e}");
        let bad = vars(&[("ansible_connection", "winrm".into())]);
        assert!(ConnSpec::from_vars("h", &bad).is_err());
    }
}
