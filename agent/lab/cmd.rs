//! Running the system tools the lab is built from (`ip`, `ssh-keygen`, `nsenter`), with errors
//! that show the command line and its stderr, and the preflight check that they are installed.

use super::LabError;
use std::path::Path;
use std::process::{Command, Stdio};

/// Tools the lab needs, with the Debian package that provides each.
pub const TOOLS: &[(&str, &str)] = &[
    ("/usr/sbin/sshd", "openssh-server"),
    ("ssh-keygen", "openssh-client"),
    ("ip", "iproute2"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("mount", "mount"),
    ("chroot", "coreutils"),
    ("useradd", "passwd"),
];

/// Refuse early, with the package to install, if we are not root or a tool is missing.
pub fn preflight() -> Result<(), LabError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    for (tool, package) in TOOLS {
        if find_tool(tool).is_none() {
            return Err(LabError::MissingTool {
                tool: tool.to_string(),
                package,
            });
        }
    }
    Ok(())
}

/// Looks `tool` up on PATH plus the sbin folders (which a non-login root shell may lack).
pub fn find_tool(tool: &str) -> Option<std::path::PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).is_file().then(|| tool.into());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file());
    found
}

/// Runs a command to completion; Ok(stdout) on exit 0.
pub fn run(args: &[&str]) -> Result<String, LabError> {
    let out = output(args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::Command {
            cmd: args.join(" "),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs a command to completion, whatever its exit status.
pub fn output(args: &[&str]) -> Result<std::process::Output, LabError> {
    let (prog, rest) = args
        .split_first()
        .ok_or_else(|| LabError::Spec("empty command".into()))?;
    let exe = find_tool(prog).unwrap_or_else(|| prog.into());
    tracing::debug!(cmd = %args.join(" "), "lab: run");
    Command::new(&exe)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::io(exe, e))
}

/// `ip -j ...` parsed as JSON (empty output is an empty list).
pub fn ip_json(args: &[&str]) -> Result<serde_json::Value, LabError> {
    let mut full = vec!["ip", "-j"];
    full.extend_from_slice(args);
    let text = run(&full)?;
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).map_err(|e| LabError::Command {
        cmd: full.join(" "),
        status: "ok".into(),
        stderr: format!("output is not JSON: {e}"),
    })
}

/// Make an unencrypted ed25519 key pair at `path` (and `path.pub`) with real `ssh-keygen`,
/// unless it exists: lab keys are made once and kept across `up`s.
pub fn ensure_ed25519_key(path: &Path, comment: &str) -> Result<(), LabError> {
    if path.exists() {
        return Ok(());
    }
    run(&[
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        comment,
        "-f",
        &path.to_string_lossy(),
    ])?;
    Ok(())
}
