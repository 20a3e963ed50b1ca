//! The lab harness integration tests share: start a `kiln::lab` lab under a unique name in its
//! own folder, and bring it down when the guard drops (also when the test fails), so tests stay
//! independent and leave nothing behind. Tests that need a lab call `skip_reason()` first and
//! return early with a printed reason when this machine cannot run one (not root, no sshd, ...).

#![allow(dead_code)]

pub mod vm;

use kiln::lab::{Lab, LabSpec};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why lab tests cannot run here, or None if they can.
pub fn skip_reason() -> Option<String> {
    if let Err(e) = kiln::lab::preflight() {
        return Some(e.to_string());
    }
    if which("ssh").is_none() {
        return Some("the `ssh` client is missing; install openssh-client".into());
    }
    None
}

/// Returns from the test with a printed reason when labs cannot run here.
#[macro_export]
macro_rules! require_lab {
    () => {
        if let Some(reason) = $crate::lab::skip_reason() {
            eprintln!("SKIPPED (lab unavailable): {reason}");
            return;
        }
    };
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| PathBuf::from(d).join(tool))
        .find(|p| p.is_file())
}

/// A lab name no other test (or test process) uses: `<prefix>-<pid>-<n>`, at most 24 characters.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let prefix: String = prefix.chars().take(10).collect();
    format!("{prefix}-{}-{n}", std::process::id() % 1_000_000)
}

/// A folder for a lab, outside the source tree.
pub fn lab_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join("kiln-lab-tests").join(name)
}

/// A spec with a unique name and its own folder; add hosts with `with_hosts`/`with_jump_pair`.
pub fn spec(prefix: &str) -> LabSpec {
    let name = unique_name(prefix);
    let dir = lab_dir(&name);
    LabSpec::new(&name).with_dir(dir)
}

/// A lab that is brought down when dropped.
pub struct LabGuard(pub Lab);

impl LabGuard {
    pub fn up(spec: &LabSpec) -> LabGuard {
        match Lab::up(spec) {
            Ok(lab) => LabGuard(lab),
            Err(e) => {
                // Clean up whatever the failed up made before failing the test.
                let _ = kiln::lab::down_dir(&spec.dir);
                panic!("lab up failed: {e}");
            }
        }
    }
}

impl Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.0
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            eprintln!("lab {} down failed: {e}", self.0.name);
        }
    }
}

/// Runs `ssh -F <lab ssh_config> <host> <args>`; returns (exit ok, stdout, stderr).
pub fn ssh(lab: &Lab, host: &str, args: &[&str]) -> (bool, String, String) {
    let out = lab.ssh(host, args).output();
    match out {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (false, String::new(), format!("could not run ssh: {e}")),
    }
}

/// Copy a folder tree (a shipped environment into a test's own configuration path).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Processes (root-namespace pids) in network namespace `netns` whose argv satisfies `pred`.
/// `kiln ARGS` started in `dir` as the lab tests run it (HOME there, no connection daemon, no
/// Kayobe environment), its standard output and error piped.
pub fn kiln_in(dir: &std::path::Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("KILN_CONTROL_PERSIST", "0")
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kiln")
}

pub fn procs_in(netns: &str, pred: impl Fn(&[String]) -> bool) -> Vec<u32> {
    let Ok(want) = std::fs::metadata(format!("/run/netns/{netns}")) else {
        return vec![];
    };
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(ns) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if ns.ino() != want.ino() || ns.dev() != want.dev() {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        if pred(&argv) {
            out.push(pid);
        }
    }
    out
}

/// A kiln agent (`<cache>/agent-<sha> agent`).
pub fn is_agent(argv: &[String]) -> bool {
    argv.len() == 2 && argv[1] == "agent" && argv[0].contains("agent")
}
