//! Shared helpers for the vault tests: run kiln and the real tools, find tools or skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn kiln() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    for k in [
        "KAYOBE_VAULT_PASSWORD",
        "ANSIBLE_VAULT_PASSWORD_FILE",
        "KILN_AGE_IDENTITY",
        "KILN_AGE_PASSPHRASE",
        "KAYOBE_CONFIG_PATH",
        "KAYOBE_ENVIRONMENT",
        "EDITOR",
        "VISUAL",
    ] {
        c.env_remove(k);
    }
    // no controlling terminal: a prompt must fail, never hang
    c.stdin(Stdio::null());
    c
}

/// The path of a tool on PATH, or `None` (and a printed reason) when missing.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIP: `{name}` is not installed (Debian package for age/age-keygen: age; ssh-keygen: openssh-client; script: bsdutils)");
    }
    found
}

pub fn run(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

pub fn ok(c: &mut Command) -> Output {
    let o = run(c);
    assert!(
        o.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The sorted names in a directory (to show nothing was added or left behind).
pub fn listing(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A failed kiln run that named `file`, leaked none of `secrets`, and changed nothing in `dir`.
pub fn assert_clean_failure(
    o: &Output,
    file: &str,
    secrets: &[&str],
    dir: &Path,
    before: &[String],
) {
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(
        !o.status.success(),
        "expected failure, got success: {out} {err}"
    );
    assert!(err.contains(file), "error does not name {file}: {err}");
    for s in secrets {
        assert!(
            !out.contains(s) && !err.contains(s),
            "plaintext {s:?} leaked: {out} {err}"
        );
    }
    assert_eq!(
        listing(dir),
        before,
        "files were added or removed in {}",
        dir.display()
    );
}

/// age-keygen: (identity file, public key).
pub fn age_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    ok(Command::new("age-keygen").arg("-o").arg(&p));
    let o = ok(Command::new("age-keygen").arg("-y").arg(&p));
    (p, text(&o.stdout).trim().to_string())
}

/// ssh-keygen: (private key, public key line).
pub fn ssh_keygen(dir: &Path, name: &str, kind: &str) -> (PathBuf, String) {
    let p = dir.join(name);
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-t", kind, "-N", "", "-C", "test", "-f"])
        .arg(&p);
    if kind == "rsa" {
        c.args(["-b", "2048"]);
    }
    ok(&mut c);
    let pubkey = std::fs::read_to_string(p.with_extension("pub")).unwrap();
    (p, pubkey.trim().to_string())
}

/// Run a command on a pseudo-terminal (util-linux `script`), typing `input` lines after a pause
/// each: for the age CLI, which reads passphrases only from a terminal.
pub fn on_tty(cmdline: &str, input: &[&str]) -> Output {
    let mut feed = String::new();
    for i in input {
        feed.push_str(&format!("sleep 1; printf '%s\\n' '{i}'; "));
    }
    feed.push_str("sleep 2");
    let sh = format!("( {feed} ) | script -qec \"{cmdline}\" /dev/null");
    run(Command::new("sh").arg("-c").arg(sh))
}
