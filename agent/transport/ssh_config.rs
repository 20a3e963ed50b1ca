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

const RULES: ParseRule = ParseRule::ALLOW_UNKNOWN_FIELDS.union(ParseRule::ALLOW_UNSUPPORTED_FIELDS);

/// The line a parse error is on: `ssh2-config` reports what was wrong but not where, so find
/// the shortest prefix of the file that fails (this runs only after an error).
/// Also the message, where kiln can say it better than the crate (text that is not UTF-8).
fn error_line(path: &Path) -> (Option<usize>, Option<String>) {
    let Ok(bytes) = std::fs::read(path) else {
        return (None, None);
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let upto = e.valid_up_to();
            let line = bytes[..upto].iter().filter(|b| **b == b'\n').count() + 1;
            return (
                Some(line),
                Some(format!(
                    "not UTF-8 text (byte {upto}); save the file as UTF-8"
                )),
            );
        }
    };
    // line ends; a prefix that fails stays failing when longer (the parser stops at the first
    // error), so a binary search finds the first failing line in O(log n) parses
    let ends: Vec<usize> = text
        .split_inclusive('\n')
        .scan(0, |end, l| {
            *end += l.len();
            Some(*end)
        })
        .collect();
    let fails = |k: usize| {
        let mut prefix = text[..ends[k]].as_bytes();
        SshConfig::default().parse(&mut prefix, RULES).is_err()
    };
    if ends.is_empty() || !fails(ends.len() - 1) {
        return (None, None);
    }
    let (mut lo, mut hi) = (0, ends.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (Some(lo + 1), None)
}

/// The first `StrictHostKeyChecking` line whose value kiln does not know, with its line number
/// (`ssh2-config` keeps the value as text; OpenSSH refuses such a file).
fn bad_strict_line(path: &Path) -> Option<(usize, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().enumerate().find_map(|(i, l)| {
        let l = l.trim();
        let (k, v) = l
            .split_once(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or((l, ""));
        let v = v
            .trim_start_matches(|c: char| c == '=' || c.is_whitespace())
            .trim();
        (k.eq_ignore_ascii_case("stricthostkeychecking") && HostKeyChecking::parse(v).is_none())
            .then(|| (i + 1, v.to_string()))
    })
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
    let cfg = SshConfig::default().parse(&mut r, RULES).map_err(|e| {
        let (line, msg) = error_line(&path);
        ConfigFileError {
            path: match line {
                Some(n) => format!("{}:{n}", path.display()),
                None => path.display().to_string(),
            },
            msg: msg.unwrap_or_else(|| e.to_string()),
        }
    })?;
    if let Some((n, v)) = bad_strict_line(&path) {
        return Err(ConfigFileError {
            path: format!("{}:{n}", path.display()),
            msg: format!("StrictHostKeyChecking {v:?} is not one of yes, no, ask, accept-new, off"),
        });
    }
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

    /// Errors name the line (issue 19): the crate says what, kiln finds where.
    #[test]
    fn errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config");
        for (text, line, what) in [
            ("Host *\n  User x\n  Port abc\n", 3, "port"),
            ("# c\n\nHost web\n  HostName\n", 4, "missing argument"),
            ("Host *\n  Compression maybe\n", 2, "boolean"),
            (
                "Host *\n  User \u{7f}ok\n  StrictHostKeyChecking perhaps\n",
                3,
                "perhaps",
            ),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = lookup(Some(&f), false, "web").unwrap_err().to_string();
            assert!(
                e.contains(&format!("config:{line}: ")) && e.contains(what),
                "{e}"
            );
        }
        std::fs::write(&f, b"Host *\n  User \xff\n  Port x\n").unwrap();
        let e = lookup(Some(&f), false, "web").unwrap_err().to_string();
        assert!(e.contains("config:2: not UTF-8"), "{e}");
    }
}
