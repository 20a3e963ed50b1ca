//! Bad input, faults and exit codes (issue 19): every case here once crashed kiln, hung it,
//! swallowed the reason or exited with a code ansible-playbook does not use. Each test names what
//! ansible-core 2.17.7 does for the same input (checked by running it; where the oracle venv is
//! installed the differential test runs it again).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn kiln_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.args(args)
        .current_dir(dir)
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .env_remove("KILN_AGE_IDENTITY")
        .env("XDG_CACHE_HOME", dir.join("cache"));
    c
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    kiln_cmd(dir, args).output().expect("run kiln")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The exit code, and that no panic reached the user.
fn code(o: &Output) -> i32 {
    let t = text(o);
    assert!(!t.contains("panicked"), "panic text in output:\n{t}");
    assert!(!t.contains("RUST_BACKTRACE"), "panic text in output:\n{t}");
    o.status.code().unwrap_or(-1)
}

fn write(dir: &Path, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, body).unwrap();
    p
}

/// A two-host inventory on the `local` connection, and a one-task playbook.
fn project() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "inv.ini",
        "[web]\nw1 ansible_connection=local\nw2 ansible_connection=local\n",
    );
    write(
        t.path(),
        "pb.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - debug: msg=hi\n",
    );
    t
}

fn venv_bin(name: &str) -> Option<PathBuf> {
    let venv = std::env::var("KILN_ANSIBLE_VENV")
        .unwrap_or_else(|_| format!("{}/.venv", env!("CARGO_MANIFEST_DIR")));
    let p = Path::new(&venv).join("bin").join(name);
    p.exists().then_some(p)
}

/// `kiln vars ... | head -1` and friends: the reader goes away before kiln writes; kiln exits
/// quietly (141, as a tool killed by SIGPIPE) instead of panicking with "failed printing to
/// stdout: Broken pipe".
#[test]
fn broken_pipe_exits_quietly() {
    let t = project();
    let d = t.path();
    write(d, "t.j2", "a {{ x }}\n".repeat(2000));
    let cases: &[&[&str]] = &[
        &["-i", "inv.ini", "vars", "w1"],
        &["-i", "inv.ini", "render", "w1", "t.j2", "-e", "x=1"],
        &["-i", "inv.ini", "ad-hoc", "all", "-m", "ping"],
        &["-i", "inv.ini", "playbook", "run", "pb.yml"],
        &["-i", "inv.ini", "inventory", "--list"],
        &["mux", "status"],
        &["lab", "status", "--dir", "nolab"],
        &["man"],
    ];
    for args in cases {
        let mut child = kiln_cmd(d, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        let c = o.status.code().unwrap_or(-1);
        assert!(matches!(c, 0 | 1 | 141), "{args:?}: exit {c}: {err}");
    }
}
