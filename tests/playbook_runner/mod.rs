//! Runs a playbook with the real `ansible-playbook` or with `kiln playbook run` and reduces
//! either's output to the same shape (exit code, each task's status), so a test can assert the
//! same things of both. kiln's runner is used only once kiln has the verb.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// ansible-core's venv: `$KILN_ANSIBLE_VENV`, default /work/venv-ansible.
pub fn venv() -> PathBuf {
    std::env::var_os("KILN_ANSIBLE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/venv-ansible"))
}

/// Why ansible-playbook cannot run here, or None.
pub fn ansible_skip_reason() -> Option<String> {
    let p = venv().join("bin/ansible-playbook");
    (!p.is_file()).then(|| {
        format!(
            "{} not found (pip install ansible-core into $KILN_ANSIBLE_VENV)",
            p.display()
        )
    })
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Running a playbook with ansible-playbook or kiln, reduced to the same shape.

/// What one playbook run did: exit code, each task's status on each host, and output.
pub struct Run {
    pub rc: i32,
    /// (task name, status), one per task and host in run order; status is
    /// ok|changed|skipped|failed|unreachable.
    pub tasks: Vec<(String, String)>,
    pub out: String,
}

impl Run {
    pub fn status(&self, task: &str) -> &str {
        self.tasks
            .iter()
            .find(|(t, _)| t == task)
            .map(|(_, s)| s.as_str())
            .unwrap_or_else(|| panic!("task {task:?} did not run:\n{}", self.out))
    }
    pub fn count(&self, status: &str) -> usize {
        self.tasks.iter().filter(|(_, s)| s == status).count()
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Runner {
    Ansible,
    Kiln,
}

impl Runner {
    /// Both runners when kiln has `playbook run`, else only ansible-playbook (saying so).
    pub fn available() -> Vec<Runner> {
        let kiln_has_it = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["playbook", "run", "--help"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if kiln_has_it {
            vec![Runner::Ansible, Runner::Kiln]
        } else {
            eprintln!(
                "NOTE: this kiln has no `playbook run` verb yet; running ansible-playbook only"
            );
            vec![Runner::Ansible]
        }
    }

    pub fn run(self, inventory: &Path, playbook: &Path, extra: &[String]) -> Run {
        self.run_with(inventory, playbook, extra, &[])
    }

    /// As `run`, with more options (`--check`, `--diff`, ...) that both runners take.
    pub fn run_with(
        self,
        inventory: &Path,
        playbook: &Path,
        extra: &[String],
        flags: &[&str],
    ) -> Run {
        let mut cmd = match self {
            Runner::Ansible => {
                let mut c = Command::new(venv().join("bin/ansible-playbook"));
                c.env("ANSIBLE_NOCOLOR", "1")
                    .env("ANSIBLE_FORCE_COLOR", "0")
                    .env("ANSIBLE_STDOUT_CALLBACK", "default")
                    .env("ANSIBLE_RETRY_FILES_ENABLED", "0");
                c
            }
            Runner::Kiln => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
                c.args(["playbook", "run", "--format", "json"]);
                c
            }
        };
        cmd.arg("-i").arg(inventory);
        for e in extra {
            cmd.arg("-e").arg(e);
        }
        cmd.args(flags).arg(playbook);
        let out: Output = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = text(&out.stdout);
        let tasks = match self {
            Runner::Ansible => parse_ansible(&stdout),
            Runner::Kiln => parse_kiln(&stdout),
        };
        Run {
            rc: out.status.code().unwrap_or(-1),
            tasks,
            out: format!("{self:?} stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr)),
        }
    }
}

/// ansible-playbook's default callback: `TASK [name] ***` then `ok: [h]`, `changed: [h]`,
/// `skipping: [h]`, `fatal: [h]: FAILED! => ...` for each host.
fn parse_ansible(stdout: &str) -> Vec<(String, String)> {
    let mut tasks = Vec::new();
    let mut current = None::<String>;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("TASK [") {
            current = rest.rfind(']').map(|i| rest[..i].to_string());
            continue;
        }
        if line.starts_with("PLAY ") || line.starts_with("RUNNING HANDLER [") {
            current = None;
            continue;
        }
        let status = if line.starts_with("ok: [") {
            "ok"
        } else if line.starts_with("changed: [") {
            "changed"
        } else if line.starts_with("skipping: [") {
            "skipped"
        } else if line.starts_with("fatal: [") && line.contains("UNREACHABLE") {
            "unreachable"
        } else if line.starts_with("fatal: [") || line.starts_with("failed: [") {
            "failed"
        } else {
            continue;
        };
        if let Some(t) = &current {
            tasks.push((t.clone(), status.to_string()));
        }
    }
    tasks
}

/// kiln's `--format json`: one event per line; `task_result` carries task and status.
fn parse_kiln(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "task_result")
        .map(|v| {
            (
                v["task"].as_str().unwrap_or_default().to_string(),
                v["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// An inventory with one local host `h` in group `group`.
pub fn local_inventory(dir: &Path, group: &str) -> PathBuf {
    let inv = dir.join("inventory.ini");
    let python = venv().join("bin/python");
    std::fs::write(
        &inv,
        format!(
            "[{group}]\nh ansible_connection=local ansible_python_interpreter={}\n",
            python.display()
        ),
    )
    .expect("write inventory");
    inv
}
