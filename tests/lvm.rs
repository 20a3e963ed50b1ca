//! `lvg`, `lvol`, `filesystem` and the `lvm` role, run for real over SSH against two lab hosts,
//! side by side with real Ansible (community.general).
//!
//! Each side is one lab host with its own loop devices, attached on this machine (lab hosts
//! share its /dev) and seen only by that host's LVM: a private `LVM_SYSTEM_DIR` inside the host
//! whose lvm.conf accepts only that side's loop devices and disables activation (these VMs have
//! no device-mapper, see LAB.md). The playbooks pass it with `environment:`. `kiln playbook run`
//! drives host `k`, community.general's modules under `ansible-playbook` drive host `a`, with the
//! same playbook; the test asserts kiln's per-task statuses, then that both sides agree task by
//! task (changed/failed/ok/skipped) and that the resulting `vgs`/`lvs --reportformat json` sizes
//! are identical.
//!
//! What cannot run here, and what the test does instead:
//! * LVs cannot be activated (no device-mapper): every `lvol` task says `active: false` (with
//!   `active: true` community.general runs `lvchange -ay` each time and reports changed, since
//!   the LV never shows active), and the role runs with `lvm_lv_active: false` and
//!   `lvm_filesystems: false` (no /dev/VG/LV to make a filesystem on or mount).
//! * `lvol resizefs` (`lvextend --resizefs`) needs an active LV with a filesystem: that is for
//!   the VM tier; here only the flag's command line is unit-tested. `filesystem` create and
//!   `resizefs` are tested on plain loop devices instead (ext4 unmounted with resize2fs, XFS
//!   mounted inside the lab host with xfs_growfs after growing the loop file).
//!
//! Needs root, a lab (sshd, ip netns), losetup, lvm2, e2fsprogs, xfsprogs, the static agent
//! (`cargo build --target x86_64-unknown-linux-musl`), and ansible-playbook with
//! community.general and ansible.posix (the `ansible` package; `$KILN_ANSIBLE_VENV`, else
//! /work/venv-ansible or /work/main/.venv). Without them the tests print SKIPPED and why.

mod lab;
mod support;

use kiln::lab::{Flavor, Host, Lab};
use serde_json::{json, Value as J};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::repo;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An ansible-playbook whose Python has community.general (the oracle).
fn oracle() -> Option<PathBuf> {
    // support::ansible_venv() is $KILN_ANSIBLE_VENV, else the checkout's .venv, else the default
    [support::ansible_venv()].into_iter().find_map(|v| {
        let ok = Command::new(v.join("bin/python"))
            .args([
                "-c",
                "import ansible_collections.community.general, ansible_collections.ansible.posix",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        ok.then(|| v.join("bin/ansible-playbook"))
    })
}

use support::agent_binary;

fn skip_reason() -> Option<String> {
    if let Some(r) = lab::skip_reason() {
        return Some(r);
    }
    for (tool, pkg) in [
        ("losetup", "util-linux"),
        ("pvcreate", "lvm2"),
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.xfs", "xfsprogs"),
        ("xfs_growfs", "xfsprogs"),
    ] {
        if lab::which(tool).is_none() {
            return Some(format!(
                "`{tool}` is missing; install the Debian package {pkg}"
            ));
        }
    }
    if agent_binary().is_none() {
        return Some(
            "no static agent: run `cargo build --target x86_64-unknown-linux-musl` first".into(),
        );
    }
    if oracle().is_none() {
        return Some(
            "no ansible-playbook with community.general and ansible.posix (pip install ansible==10.7.0 into $KILN_ANSIBLE_VENV)".into(),
        );
    }
    None
}

macro_rules! skip_unless_ready {
    () => {
        if let Some(reason) = skip_reason() {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Loop devices on this machine, detached on drop.

struct Disks {
    dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    devs: Vec<String>,
}

impl Disks {
    fn new(sizes_mib: &[u64]) -> Disks {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut me = Disks {
            dir,
            files: vec![],
            devs: vec![],
        };
        for (i, mib) in sizes_mib.iter().enumerate() {
            let f = me.dir.path().join(format!("disk{i}.img"));
            std::fs::File::create(&f)
                .and_then(|h| h.set_len(mib << 20))
                .expect("create sparse image");
            let out = Command::new("losetup")
                .args(["-f", "--show"])
                .arg(&f)
                .output()
                .expect("run losetup");
            assert!(out.status.success(), "losetup: {}", text(&out.stderr));
            me.devs.push(text(&out.stdout).trim().to_string());
            me.files.push(f);
        }
        me
    }

    /// Grow disk `i`'s image to `mib` and tell the kernel (`losetup -c`).
    fn grow(&self, i: usize, mib: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.files[i])
            .and_then(|h| h.set_len(mib << 20))
            .expect("grow image");
        let out = Command::new("losetup")
            .args(["-c", &self.devs[i]])
            .output()
            .expect("losetup -c");
        assert!(out.status.success(), "losetup -c: {}", text(&out.stderr));
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for d in self.devs.drain(..) {
            let _ = Command::new("losetup").args(["-d", &d]).output();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One side of the comparison: a lab host, its loop devices and its private LVM configuration.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Kiln,
    Ansible,
}

const LVM_DIR: &str = "/etc/kiln-test-lvm";

struct Side<'a> {
    who: Who,
    host: &'a Host,
    disks: &'a Disks,
}

/// `(task, status)` per task, exit code and output of one playbook run.
struct Res {
    rc: i32,
    tasks: Vec<(String, String)>,
    out: String,
}

impl Res {
    fn status(&self, task: &str) -> &str {
        self.tasks
            .iter()
            .find(|(t, _)| t == task)
            .map(|(_, s)| s.as_str())
            .unwrap_or_else(|| panic!("task {task:?} did not run:\n{}", self.out))
    }
    fn count(&self, status: &str) -> usize {
        self.tasks.iter().filter(|(_, s)| s == status).count()
    }
}

/// Task names without a role prefix (`lvm : Ensure ...`), as both runners may name them.
fn bare(name: &str) -> String {
    name.split_once(" : ")
        .map(|(_, n)| n)
        .unwrap_or(name)
        .to_string()
}

fn sh(host: &Host, script: &str, args: &[&str]) -> std::process::Output {
    let mut argv = vec!["sh", "-c", script, "sh"];
    argv.extend_from_slice(args);
    host.exec(&argv).expect("exec in lab host")
}

fn sh_ok(host: &Host, script: &str, args: &[&str]) -> String {
    let o = sh(host, script, args);
    assert!(
        o.status.success(),
        "{script} {args:?} failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

impl Side<'_> {
    /// Writes this side's lvm.conf into its host: activation off, only its loop devices.
    fn configure_lvm(&self) {
        let accept: Vec<String> = self
            .disks
            .devs
            .iter()
            .map(|d| format!("\"a|^{d}$|\""))
            .collect();
        let conf = format!(
            "global {{ activation = 0 }}\n\
             backup {{ backup = 0 archive = 0 }}\n\
             devices {{ use_devicesfile = 0 obtain_device_list_from_udev = 0 filter = [ {}, \"r|.*|\" ] }}\n",
            accept.join(", ")
        );
        sh_ok(
            self.host,
            "mkdir -p \"$1\" && printf '%s' \"$2\" > \"$1/lvm.conf\"",
            &[LVM_DIR, &conf],
        );
    }

    fn vars(&self, extra: J) -> J {
        let mut v = json!({
            "target": self.host.name,
            "disks": self.disks.devs,
            "lvm_env": {"LVM_SYSTEM_DIR": LVM_DIR, "LVM_SUPPRESS_FD_WARNINGS": "1"},
        });
        if let (Some(m), J::Object(e)) = (v.as_object_mut(), extra) {
            m.extend(e);
        }
        v
    }

    /// An lvm2 command in the host with this side's configuration.
    fn lvm(&self, args: &[&str]) -> String {
        let mut argv = vec![
            "env",
            "LVM_SYSTEM_DIR=/etc/kiln-test-lvm",
            "LVM_SUPPRESS_FD_WARNINGS=1",
        ];
        argv.extend_from_slice(args);
        let o = self.host.exec(&argv).expect("exec lvm");
        assert!(
            o.status.success(),
            "{args:?}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// VGs and LVs with their sizes: `vg -> (vg_size, vg_free, pv_count)`, `vg/lv -> lv_size`.
    fn lvm_state(&self) -> BTreeMap<String, String> {
        let mut s = BTreeMap::new();
        let rows = |out: &str, kind: &str| -> Vec<J> {
            let v: J = serde_json::from_str(out).expect("lvm JSON report");
            v["report"][0][kind].as_array().cloned().unwrap_or_default()
        };
        let vgs = self.lvm(&[
            "vgs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_name,vg_size,vg_free,pv_count",
        ]);
        for r in rows(&vgs, "vg") {
            s.insert(
                r["vg_name"].as_str().unwrap_or("").to_string(),
                format!("{} {} {}", r["vg_size"], r["vg_free"], r["pv_count"]),
            );
        }
        let lvs = self.lvm(&[
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_name,lv_name,lv_size",
        ]);
        for r in rows(&lvs, "lv") {
            s.insert(
                format!(
                    "{}/{}",
                    r["vg_name"].as_str().unwrap_or(""),
                    r["lv_name"].as_str().unwrap_or("")
                ),
                r["lv_size"].as_str().unwrap_or("").to_string(),
            );
        }
        s
    }

    fn run(&self, lab: &Lab, playbook: &Path, extra: J, flags: &[&str]) -> Res {
        let vars = self.vars(extra).to_string();
        let mut cmd = match self.who {
            Who::Kiln => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
                c.args(["playbook", "run", "--format", "json"]);
                if let Some(a) = agent_binary() {
                    c.env("KILN_AGENT_BINARY", a);
                }
                c
            }
            Who::Ansible => {
                let mut c = Command::new(oracle().expect("oracle"));
                c.env("ANSIBLE_STDOUT_CALLBACK", "ansible.posix.json")
                    .env("ANSIBLE_HOST_KEY_CHECKING", "True")
                    .env("ANSIBLE_NOCOLOR", "1")
                    .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
                    .env(
                        "ANSIBLE_LOCAL_TEMP",
                        std::env::temp_dir().join("kiln-ansible-tmp"),
                    );
                c
            }
        };
        cmd.arg("-i")
            .arg(&lab.inventory)
            .args(["-l", &self.host.name, "-e", &vars])
            .args(flags)
            .arg(playbook);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = text(&out.stdout);
        let tasks = match self.who {
            Who::Kiln => stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<J>(l).ok())
                .filter(|v| v["event"] == "task_result")
                .map(|v| {
                    (
                        bare(v["task"].as_str().unwrap_or_default()),
                        v["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            Who::Ansible => parse_ansible_json(&stdout),
        };
        Res {
            rc: out.status.code().unwrap_or(-1),
            tasks,
            out: format!(
                "{:?} on {}:\nstdout:\n{stdout}\nstderr:\n{}",
                self.who,
                self.host.name,
                text(&out.stderr)
            ),
        }
    }
}

/// ansible.posix.json's document: per task, each host's result reduced to a status.
fn parse_ansible_json(stdout: &str) -> Vec<(String, String)> {
    let start = stdout.find('{').unwrap_or(0);
    let Ok(v) = serde_json::from_str::<J>(&stdout[start..]) else {
        return vec![];
    };
    let mut tasks = vec![];
    for play in v["plays"].as_array().into_iter().flatten() {
        for t in play["tasks"].as_array().into_iter().flatten() {
            let name = bare(t["task"]["name"].as_str().unwrap_or_default());
            for (_, r) in t["hosts"].as_object().into_iter().flatten() {
                // include_role/include_tasks: Ansible reports the include itself as ok; kiln
                // reports only the included tasks.
                if r.get("include").is_some() || r.get("include_args").is_some() {
                    continue;
                }
                let yes = |k: &str| r[k].as_bool() == Some(true);
                let status = if yes("unreachable") {
                    "unreachable"
                } else if yes("failed") {
                    "failed"
                } else if yes("skipped") {
                    "skipped"
                } else if yes("changed") {
                    "changed"
                } else {
                    "ok"
                };
                tasks.push((name.clone(), status.to_string()));
            }
        }
    }
    tasks
}

/// Both sides did the same, task by task.
fn same_statuses(k: &Res, a: &Res) {
    assert_eq!(
        k.tasks, a.tasks,
        "kiln and ansible disagree (left kiln, right ansible)\n{}\n{}",
        k.out, a.out
    );
    assert_eq!(k.rc, a.rc, "exit codes differ\n{}\n{}", k.out, a.out);
}

/// A lab with the kiln host `k`'s side and the ansible host `a`'s side, each with loop devices
/// of `sizes_mib`. The lab is dropped before the disks (declared after them by the caller).
fn lab_up() -> lab::LabGuard {
    lab::LabGuard::up(&lab::spec("lvm").with_hosts(2, &[Flavor::Ubuntu2204, Flavor::Ubuntu2204]))
}

fn write_playbook(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, yaml).expect("write playbook");
    p
}

const HEAD: &str = "- hosts: \"{{ target }}\"\n  gather_facts: false\n  environment: \"{{ lvm_env }}\"\n  tasks:\n";

// ---------------------------------------------------------------------------------------------

/// Every lvg/lvol rule in one playbook: create, each size form, grow, never shrink with
/// `shrink: false`, community.general's refusals, extending the VG, clear failures, removal.
const STEPS: &str = r#"
    - name: vg create
      community.general.lvg: {vg: kvg, pvs: "{{ disks[0] }}"}
    - name: vg again
      community.general.lvg: {vg: kvg, pvs: "{{ disks[0] }}"}
    - name: vg on a missing device
      community.general.lvg: {vg: kvg2, pvs: /dev/kiln-no-such-disk}
      ignore_errors: true
    - name: vg without pvs
      community.general.lvg: {vg: kvg3}
      ignore_errors: true
    - name: lv absolute create
      community.general.lvol: {vg: kvg, lv: a, size: 32m, active: false}
    - name: lv absolute same
      community.general.lvol: {vg: kvg, lv: a, size: 32m, active: false}
    - name: lv plus
      community.general.lvol: {vg: kvg, lv: a, size: +8m, active: false}
    - name: lv absolute grow
      community.general.lvol: {vg: kvg, lv: a, size: 64M, active: false}
    - name: lv smaller with shrink false
      community.general.lvol: {vg: kvg, lv: a, size: 16m, shrink: false, active: false}
    - name: lv smaller with default shrink
      community.general.lvol: {vg: kvg, lv: a, size: 16m, active: false}
      ignore_errors: true
    - name: lv percent of VG create
      community.general.lvol: {vg: kvg, lv: b, size: 10%VG, active: false}
    - name: lv percent of VG same
      community.general.lvol: {vg: kvg, lv: b, size: 10%VG, active: false}
    - name: lv percent of PVS create
      community.general.lvol: {vg: kvg, lv: c, size: 10%PVS, active: false, opts: "--addtag kiln_test"}
    - name: lv percent of FREE create
      community.general.lvol: {vg: kvg, lv: d, size: 50%FREE, active: false}
    - name: lv percent of FREE again with shrink false
      community.general.lvol: {vg: kvg, lv: d, size: 50%FREE, shrink: false, active: false}
    - name: lv percent of FREE again with default shrink
      community.general.lvol: {vg: kvg, lv: d, size: 50%FREE, active: false}
      ignore_errors: true
    - name: lv plus percent of FREE
      community.general.lvol: {vg: kvg, lv: d, size: +50%FREE, active: false}
    - name: lv percent of VG grow
      community.general.lvol: {vg: kvg, lv: b, size: 20%VG, active: false}
    - name: vg extend
      community.general.lvg: {vg: kvg, pvs: "{{ disks[0] }},{{ disks[1] }}"}
    - name: vg extend again
      community.general.lvg: {vg: kvg, pvs: ["{{ disks[0] }}", "{{ disks[1] }}"]}
    - name: vg reduce
      community.general.lvg: {vg: kvg, pvs: ["{{ disks[0] }}"]}
    - name: vg extend back
      community.general.lvg: {vg: kvg, pvs: ["{{ disks[0] }}", "{{ disks[1] }}"]}
    - name: lv too big to create
      community.general.lvol: {vg: kvg, lv: e, size: 10g, active: false}
      ignore_errors: true
    - name: lv too big to grow
      community.general.lvol: {vg: kvg, lv: a, size: 10g, active: false}
      ignore_errors: true
    - name: lv create with plus
      community.general.lvol: {vg: kvg, lv: f, size: +8m, active: false}
      ignore_errors: true
    - name: lv in a missing vg
      community.general.lvol: {vg: nosuchvg, lv: x, size: 8m, active: false}
      ignore_errors: true
    - name: lv with active default (cannot activate here, so changed every time)
      community.general.lvol: {vg: kvg, lv: b}
    - name: lv fill the vg
      community.general.lvol: {vg: kvg, lv: e, size: 100%FREE, active: false}
    - name: vg inactive
      community.general.lvg: {vg: kvg, state: inactive}
    - name: vg inactive again
      community.general.lvg: {vg: kvg, state: inactive}
"#;

const REMOVAL: &str = r#"
    - name: lv remove without force
      community.general.lvol: {vg: kvg, lv: e, state: absent}
      ignore_errors: true
    - name: lv remove
      community.general.lvol: {vg: kvg, lv: e, state: absent, force: true}
    - name: lv remove again
      community.general.lvol: {vg: kvg, lv: e, state: absent, force: true}
    - name: lv remove in a missing vg
      community.general.lvol: {vg: nosuchvg, lv: e, state: absent}
    - name: vg remove while it has lvs
      community.general.lvg: {vg: kvg, state: absent}
      ignore_errors: true
    - name: vg remove
      community.general.lvg: {vg: kvg, state: absent, force: true}
    - name: vg remove again
      community.general.lvg: {vg: kvg, state: absent}
"#;

#[test]
fn lvg_and_lvol_side_by_side_with_community_general() {
    skip_unless_ready!();
    let (dk, da) = (Disks::new(&[256, 128]), Disks::new(&[256, 128]));
    let lab = lab_up();
    let dir = tempfile::tempdir().expect("tempdir");
    let steps = write_playbook(dir.path(), "steps.yml", &format!("{HEAD}{STEPS}"));
    let removal = write_playbook(dir.path(), "removal.yml", &format!("{HEAD}{REMOVAL}"));
    let k = Side {
        who: Who::Kiln,
        host: &lab.hosts[0],
        disks: &dk,
    };
    let a = Side {
        who: Who::Ansible,
        host: &lab.hosts[1],
        disks: &da,
    };
    k.configure_lvm();
    a.configure_lvm();

    let rk = k.run(&lab, &steps, json!({}), &[]);
    assert_eq!(rk.rc, 0, "{}", rk.out);
    let want = [
        ("vg create", "changed"),
        ("vg again", "ok"),
        ("vg on a missing device", "failed"),
        ("vg without pvs", "failed"),
        ("lv absolute create", "changed"),
        ("lv absolute same", "ok"),
        ("lv plus", "changed"),
        ("lv absolute grow", "changed"),
        ("lv smaller with shrink false", "ok"),
        ("lv smaller with default shrink", "failed"),
        ("lv percent of VG create", "changed"),
        ("lv percent of VG same", "ok"),
        ("lv percent of PVS create", "changed"),
        ("lv percent of FREE create", "changed"),
        ("lv percent of FREE again with shrink false", "ok"),
        ("lv percent of FREE again with default shrink", "failed"),
        ("lv plus percent of FREE", "changed"),
        ("lv percent of VG grow", "changed"),
        ("vg extend", "changed"),
        ("vg extend again", "ok"),
        ("vg reduce", "changed"),
        ("vg extend back", "changed"),
        ("lv too big to create", "failed"),
        ("lv too big to grow", "failed"),
        ("lv create with plus", "failed"),
        ("lv in a missing vg", "failed"),
        (
            "lv with active default (cannot activate here, so changed every time)",
            "changed",
        ),
        ("lv fill the vg", "changed"),
        // autoactivation off; the LVs are inactive already
        ("vg inactive", "changed"),
        ("vg inactive again", "ok"),
    ];
    for (task, status) in want {
        assert_eq!(rk.status(task), status, "{task}\n{}", rk.out);
    }
    // The messages name the problem and the numbers.
    for needle in [
        "Device /dev/kiln-no-such-disk not found.",
        "No physical volumes given.",
        "Sorry, no shrinking of a without force=true.",
        "Volume group nosuchvg does not exist.",
        "not enough free space",
        "Not enough free space left (",
    ] {
        assert!(rk.out.contains(needle), "no {needle:?} in\n{}", rk.out);
    }
    if std::env::var_os("KILN_TEST_SHOW").is_some() {
        eprintln!("{}", rk.out);
    }
    let sk = k.lvm_state();
    assert_eq!(
        sk.get("kvg/a").map(String::as_str),
        Some("67108864"),
        "{sk:?}"
    );
    assert!(
        sk.contains_key("kvg/e") && !sk.contains_key("kvg/f"),
        "{sk:?}"
    );
    assert!(
        sk["kvg"].ends_with(" \"0\" \"2\""),
        "VG not full or not 2 PVs: {sk:?}"
    );

    let tags = k.lvm(&["lvs", "--reportformat", "json", "-o", "lv_tags", "kvg/c"]);
    assert!(
        tags.contains("kiln_test"),
        "opts not passed to lvcreate: {tags}"
    );

    let ra = a.run(&lab, &steps, json!({}), &[]);
    same_statuses(&rk, &ra);
    assert_eq!(
        sk,
        a.lvm_state(),
        "LVM state differs (left kiln, right ansible)"
    );

    let rk = k.run(&lab, &removal, json!({}), &[]);
    assert_eq!(rk.rc, 0, "{}", rk.out);
    for (task, status) in [
        ("lv remove without force", "failed"),
        ("lv remove", "changed"),
        ("lv remove again", "ok"),
        ("lv remove in a missing vg", "ok"),
        ("vg remove while it has lvs", "failed"),
        ("vg remove", "changed"),
        ("vg remove again", "ok"),
    ] {
        assert_eq!(rk.status(task), status, "{task}\n{}", rk.out);
    }
    let ra = a.run(&lab, &removal, json!({}), &[]);
    same_statuses(&rk, &ra);
    assert!(k.lvm_state().is_empty(), "{:?}", k.lvm_state());
    assert_eq!(k.lvm_state(), a.lvm_state());
}

const CONVERGE: &str = r#"
    - name: vg
      community.general.lvg: {vg: cvg, pvs: "{{ disks[0] }}", pesize: 8}
    - name: lv absolute
      community.general.lvol: {vg: cvg, lv: a, size: "{{ a_size }}", shrink: false, active: false}
    - name: lv percent of VG
      community.general.lvol: {vg: cvg, lv: b, size: 25%VG, shrink: false, active: false}
    - name: lv percent of FREE
      community.general.lvol: {vg: cvg, lv: c, size: 50%FREE, shrink: false, active: false}
"#;

#[test]
fn converge_twice_and_check_mode_change_nothing() {
    skip_unless_ready!();
    let (dk, da) = (Disks::new(&[128]), Disks::new(&[128]));
    let lab = lab_up();
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = write_playbook(dir.path(), "converge.yml", &format!("{HEAD}{CONVERGE}"));
    let only_vg = write_playbook(
        dir.path(),
        "vg.yml",
        &format!(
            "{HEAD}{}",
            CONVERGE
                .split("    - name: lv absolute")
                .next()
                .unwrap_or("")
        ),
    );
    let pvresize = write_playbook(
        dir.path(),
        "pvresize.yml",
        &format!(
            "{HEAD}    - name: vg pvresize\n      community.general.lvg: {{vg: cvg, pvs: \"{{{{ disks[0] }}}}\", pvresize: true}}\n"
        ),
    );
    let mut runs = vec![];
    for (who, host, disks) in [
        (Who::Kiln, &lab.hosts[0], &dk),
        (Who::Ansible, &lab.hosts[1], &da),
    ] {
        let s = Side { who, host, disks };
        s.configure_lvm();
        // Check mode on a fresh disk: the VG would be created; nothing is.
        let check = s.run(&lab, &only_vg, json!({}), &["--check"]);
        assert_eq!(check.rc, 0, "{}", check.out);
        assert_eq!(check.status("vg"), "changed", "{}", check.out);
        assert!(
            s.lvm_state().is_empty(),
            "{who:?}: check mode created {:?}",
            s.lvm_state()
        );

        let first = s.run(&lab, &pb, json!({"a_size": "16m"}), &[]);
        assert_eq!(first.rc, 0, "{}", first.out);
        assert_eq!(first.count("changed"), 4, "{}", first.out);
        let state = s.lvm_state();
        assert_eq!(state.get("cvg/a").map(String::as_str), Some("16777216"));

        let second = s.run(&lab, &pb, json!({"a_size": "16m"}), &[]);
        assert_eq!(second.rc, 0, "{}", second.out);
        assert_eq!(
            second.count("changed"),
            0,
            "{who:?}: second run changed\n{}",
            second.out
        );
        assert_eq!(second.count("ok"), 4, "{}", second.out);

        // Check mode with a bigger size: reported, not done; with --diff too.
        let check = s.run(&lab, &pb, json!({"a_size": "32m"}), &["--check", "--diff"]);
        assert_eq!(check.rc, 0, "{}", check.out);
        assert_eq!(check.status("lv absolute"), "changed", "{}", check.out);
        assert_eq!(check.count("changed"), 1, "{}", check.out);
        assert_eq!(s.lvm_state(), state, "{who:?}: check mode changed LVM");
        if who == Who::Kiln {
            assert!(
                check
                    .out
                    .contains("\"before\":\"size: 16777216 bytes (2 extents)"),
                "no diff:\n{}",
                check.out
            );
        }

        // The disk grows: `pvresize: true` grows the PV (check mode first: reported, not done).
        disks.grow(0, 192);
        let pv_check = s.run(&lab, &pvresize, json!({}), &["--check"]);
        assert_eq!(
            pv_check.status("vg pvresize"),
            "changed",
            "{}",
            pv_check.out
        );
        assert_eq!(s.lvm_state(), state, "{who:?}: check mode resized the PV");
        let pv1 = s.run(&lab, &pvresize, json!({}), &[]);
        assert_eq!(pv1.status("vg pvresize"), "changed", "{}", pv1.out);
        let grown = s.lvm_state();
        assert_ne!(grown["cvg"], state["cvg"], "{who:?}: PV not grown");
        let pv2 = s.run(&lab, &pvresize, json!({}), &[]);
        assert_eq!(pv2.status("vg pvresize"), "ok", "{}", pv2.out);
        runs.push((first, second, check, pv_check, pv1, pv2));
    }
    let (k, a) = (
        Side {
            who: Who::Kiln,
            host: &lab.hosts[0],
            disks: &dk,
        },
        Side {
            who: Who::Ansible,
            host: &lab.hosts[1],
            disks: &da,
        },
    );
    assert_eq!(k.lvm_state(), a.lvm_state(), "left kiln, right ansible");
    for (rk, ra) in [
        (&runs[0].0, &runs[1].0),
        (&runs[0].1, &runs[1].1),
        (&runs[0].2, &runs[1].2),
        (&runs[0].3, &runs[1].3),
        (&runs[0].4, &runs[1].4),
        (&runs[0].5, &runs[1].5),
    ] {
        same_statuses(rk, ra);
    }
}

#[test]
fn lvm_role_over_kayobe_lvm_groups() {
    skip_unless_ready!();
    let (dk, da) = (Disks::new(&[128, 64]), Disks::new(&[128, 64]));
    let lab = lab_up();
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(repo().join("playbooks/roles"), dir.path().join("roles"))
        .expect("symlink roles");
    let pb = write_playbook(
        dir.path(),
        "role.yml",
        &format!(
            "{HEAD}{}",
            r#"
    - name: LVM from lvm_groups
      ansible.builtin.include_role:
        name: lvm
      vars:
        lvm_lv_active: false
        lvm_filesystems: false
        lvm_groups:
          - vgname: data
            disks: ["{{ disks[0] }}"]
            create: true
            lvnames:
              - {lvname: docker, size: 40%VG, create: true, filesystem: ext4, mount: false}
              - {lvname: srv, size: 16m, filesystem: xfs, mount: false, mntp: /srv, resizefs: false}
              - {lvname: notme, size: 8m, create: false}
          - vgname: rootvg
            disks: ["{{ disks[1] }}"]
            create: false
            lvnames:
              - {lvname: root, size: "{{ root_size }}", mount: false}
              - {lvname: tmp, size: 8m, mount: false}
"#
        ),
    );
    let k = Side {
        who: Who::Kiln,
        host: &lab.hosts[0],
        disks: &dk,
    };
    let a = Side {
        who: Who::Ansible,
        host: &lab.hosts[1],
        disks: &da,
    };
    let mut results = vec![];
    for s in [&k, &a] {
        s.configure_lvm();
        // The image's existing root VG (create: false): made here with a small root LV.
        s.lvm(&["pvcreate", "-f", &s.disks.devs[1]]);
        s.lvm(&["vgcreate", "rootvg", &s.disks.devs[1]]);
        s.lvm(&["lvcreate", "--yes", "-n", "root", "-L", "8m", "rootvg"]);

        let first = s.run(&lab, &pb, json!({"root_size": "24m"}), &[]);
        assert_eq!(first.rc, 0, "{}", first.out);
        assert_eq!(
            first.status("Ensure LVM volume groups exist"),
            "changed",
            "{}",
            first.out
        );
        assert_eq!(
            first.status("Ensure LVM logical volumes exist (never shrunk)"),
            "changed",
            "{}",
            first.out
        );
        assert_eq!(
            first.status("Ensure filesystems exist on the LVM logical volumes"),
            "skipped",
            "{}",
            first.out
        );
        let st = s.lvm_state();
        assert_eq!(
            st.get("rootvg/root").map(String::as_str),
            Some("25165824"),
            "{st:?}"
        );
        assert!(
            st.contains_key("data/docker") && st.contains_key("data/srv"),
            "{st:?}"
        );
        assert!(
            st.contains_key("rootvg/tmp") && !st.contains_key("data/notme"),
            "{st:?}"
        );

        let second = s.run(&lab, &pb, json!({"root_size": "24m"}), &[]);
        assert_eq!(second.rc, 0, "{}", second.out);
        assert_eq!(second.count("changed"), 0, "{:?}: {}", s.who, second.out);
        // A smaller size never shrinks.
        let smaller = s.run(&lab, &pb, json!({"root_size": "12m"}), &[]);
        assert_eq!(smaller.rc, 0, "{}", smaller.out);
        assert_eq!(smaller.count("changed"), 0, "{}", smaller.out);
        assert_eq!(s.lvm_state(), st, "{:?}: shrunk", s.who);
        results.push((first, second, smaller, st));
    }
    let (ka, aa) = (&results[0], &results[1]);
    same_statuses(&ka.0, &aa.0);
    same_statuses(&ka.1, &aa.1);
    same_statuses(&ka.2, &aa.2);
    assert_eq!(ka.3, aa.3, "left kiln, right ansible");
}

const FS: &str = r#"
    - name: ext4 create
      community.general.filesystem: {fstype: ext4, dev: "{{ disks[0] }}"}
    - name: ext4 again
      community.general.filesystem: {fstype: ext4, dev: "{{ disks[0] }}"}
    - name: ext4 resizefs with nothing to grow
      community.general.filesystem: {fstype: ext4, dev: "{{ disks[0] }}", resizefs: true}
    - name: xfs over ext4 without force
      community.general.filesystem: {fstype: xfs, dev: "{{ disks[0] }}"}
      ignore_errors: true
    - name: missing device
      community.general.filesystem: {fstype: ext4, dev: /dev/kiln-no-such-disk}
      ignore_errors: true
    - name: xfs create
      community.general.filesystem: {fstype: xfs, dev: "{{ disks[1] }}"}
    - name: xfs again
      community.general.filesystem: {fstype: xfs, dev: "{{ disks[1] }}"}
    - name: ext3 create with opts
      community.general.filesystem: {fstype: ext3, dev: "{{ disks[2] }}", opts: "-L kilnlabel"}
    - name: ext3 forced again
      community.general.filesystem: {fstype: ext3, dev: "{{ disks[2] }}", force: true}
    - name: wipe
      community.general.filesystem: {dev: "{{ disks[2] }}", state: absent}
    - name: wipe again
      community.general.filesystem: {dev: "{{ disks[2] }}", state: absent}
    - name: lvm pv create
      community.general.filesystem: {fstype: lvm, dev: "{{ disks[2] }}"}
    - name: lvm pv again
      community.general.filesystem: {fstype: lvm, dev: "{{ disks[2] }}"}
    - name: swap over the pv forced
      community.general.filesystem: {fstype: swap, dev: "{{ disks[2] }}", force: true}
    - name: swap again
      community.general.filesystem: {fstype: swap, dev: "{{ disks[2] }}"}
"#;

const FS_GROW: &str = r#"
    - name: ext4 grow
      community.general.filesystem: {fstype: ext4, dev: "{{ disks[0] }}", resizefs: true}
    - name: xfs grow
      community.general.filesystem: {fstype: xfs, dev: "{{ disks[1] }}", resizefs: true}
"#;

/// A filesystem's size in bytes on the host: ext via tune2fs, XFS via xfs_info on its mount.
fn ext_bytes(h: &Host, dev: &str) -> u64 {
    let out = sh_ok(h, "tune2fs -l \"$1\"", &[dev]);
    kiln::modules::filesystem::ext_size(&out).expect("tune2fs output")
}
fn xfs_bytes(h: &Host, mnt: &str) -> u64 {
    let out = sh_ok(h, "xfs_info \"$1\"", &[mnt]);
    kiln::modules::filesystem::xfs_size(&out).expect("xfs_info output")
}

#[test]
fn filesystem_create_and_grow_on_plain_loop_devices() {
    skip_unless_ready!();
    // XFS needs at least 300 MiB.
    let (dk, da) = (Disks::new(&[64, 320, 32]), Disks::new(&[64, 320, 32]));
    let lab = lab_up();
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = write_playbook(dir.path(), "fs.yml", &format!("{HEAD}{FS}"));
    let grow = write_playbook(dir.path(), "grow.yml", &format!("{HEAD}{FS_GROW}"));
    let mut runs = vec![];
    for (who, host, disks) in [
        (Who::Kiln, &lab.hosts[0], &dk),
        (Who::Ansible, &lab.hosts[1], &da),
    ] {
        let s = Side { who, host, disks };
        s.configure_lvm();
        let check = s.run(&lab, &fs, json!({}), &["--check"]);
        let first = s.run(&lab, &fs, json!({}), &[]);
        assert_eq!(first.rc, 0, "{}", first.out);
        for (task, status) in [
            ("ext4 create", "changed"),
            ("ext4 again", "ok"),
            ("ext4 resizefs with nothing to grow", "ok"),
            ("xfs over ext4 without force", "failed"),
            ("missing device", "failed"),
            ("xfs create", "changed"),
            ("xfs again", "ok"),
            ("ext3 create with opts", "changed"),
            ("ext3 forced again", "changed"),
            ("wipe", "changed"),
            ("wipe again", "ok"),
            ("lvm pv create", "changed"),
            ("lvm pv again", "ok"),
            ("swap over the pv forced", "changed"),
            ("swap again", "ok"),
        ] {
            assert_eq!(first.status(task), status, "{who:?} {task}\n{}", first.out);
        }
        assert!(
            first
                .out
                .contains("is already used as ext4, use force=true to overwrite"),
            "{}",
            first.out
        );
        let blkid = |d: &str| {
            text(&sh(host, "blkid -c /dev/null -o value -s TYPE \"$1\"", &[d]).stdout)
                .trim()
                .to_string()
        };
        assert_eq!(blkid(&disks.devs[0]), "ext4");
        assert_eq!(blkid(&disks.devs[1]), "xfs");
        assert_eq!(blkid(&disks.devs[2]), "swap");

        // Grow: ext4 unmounted (resize2fs DEV); XFS only mounted (xfs_growfs MOUNTPOINT).
        let before = ext_bytes(host, &disks.devs[0]);
        disks.grow(0, 96);
        sh_ok(
            host,
            "mkdir -p /mnt/kx && mount -t xfs \"$1\" /mnt/kx",
            &[&disks.devs[1]],
        );
        let xfs_before = xfs_bytes(host, "/mnt/kx");
        disks.grow(1, 400);
        let g_check = s.run(&lab, &grow, json!({}), &["--check"]);
        assert_eq!(
            ext_bytes(host, &disks.devs[0]),
            before,
            "{who:?}: check mode grew ext4"
        );
        let g1 = s.run(&lab, &grow, json!({}), &[]);
        assert_eq!(g1.rc, 0, "{}", g1.out);
        assert_eq!(g1.status("ext4 grow"), "changed", "{}", g1.out);
        assert_eq!(g1.status("xfs grow"), "changed", "{}", g1.out);
        assert_eq!(
            ext_bytes(host, &disks.devs[0]),
            96 << 20,
            "{who:?}: ext4 not grown"
        );
        let xfs_after = xfs_bytes(host, "/mnt/kx");
        assert!(
            xfs_after > xfs_before + (64 << 20),
            "{who:?}: xfs {xfs_before} -> {xfs_after}"
        );
        let g2 = s.run(&lab, &grow, json!({}), &[]);
        assert_eq!(g2.count("changed"), 0, "{}", g2.out);
        assert!(
            g2.out.contains("filesystem is using the whole device"),
            "{}",
            g2.out
        );
        sh_ok(host, "umount /mnt/kx", &[]);
        runs.push((check, first, g_check, g1, g2));
    }
    let (k, a) = (&runs[0], &runs[1]);
    same_statuses(&k.0, &a.0);
    same_statuses(&k.1, &a.1);
    same_statuses(&k.2, &a.2);
    same_statuses(&k.3, &a.3);
    same_statuses(&k.4, &a.4);
}
