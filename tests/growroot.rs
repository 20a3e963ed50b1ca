//! kiln's shipped `playbooks/growroot.yml`, run for real: a sparse disk image on a loop device,
//! partitioned with room to grow, real LVM metadata on the partition (activation disabled: these
//! VMs have no device-mapper, see LAB.md), then the playbook through the real `ansible-playbook`
//! (and through `kiln playbook run` once kiln has that verb) on a local connection. It must grow
//! the partition and the physical volume the first time and change nothing the second time;
//! a `--check` run before them reports the growth and changes nothing.
//!
//! Also: the disk/partition derivation the playbook uses, read out of the playbook itself and
//! rendered by real Ansible for many device names (NVMe, mmcblk and loop `p` partitions,
//! partition numbers with two digits), and the clear failure when the volume group has no PV.
//!
//! Needs root and: losetup, partx (util-linux), sfdisk (fdisk), growpart (cloud-guest-utils),
//! pvcreate/vgcreate/pvs/pvresize (lvm2), sudo (become on a local connection), ansible-core in
//! `$KILN_ANSIBLE_VENV` (default /work/venv-ansible). Without them the tests print SKIP and why.

mod playbook_runner;

mod support;
use playbook_runner::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::repo;

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|d| PathBuf::from(d).join(tool))
        .find(|p| p.is_file())
}

fn lvm_skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (loop devices and LVM need root)".into());
    }
    let needs = [
        ("losetup", "util-linux"),
        ("partx", "util-linux"),
        ("sfdisk", "fdisk"),
        ("growpart", "cloud-guest-utils"),
        ("pvcreate", "lvm2"),
        ("vgcreate", "lvm2"),
        ("pvs", "lvm2"),
        ("pvresize", "lvm2"),
        ("sudo", "sudo"),
    ];
    for (tool, pkg) in needs {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is missing; install the Debian package {pkg}"
            ));
        }
    }
    ansible_skip_reason()
}

macro_rules! skip_unless {
    ($reason:expr) => {
        if let Some(reason) = $reason {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs a setup command and fails the test (with its output) if it fails.
fn must(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

// ---------------------------------------------------------------------------------------------
// A partitioned loop device with an LVM volume group, removed again on drop.

struct LoopVg {
    dir: tempfile::TempDir,
    image: PathBuf,
    loopdev: Option<String>,
    /// The PV partition's device, e.g. /dev/loop3p12.
    pv: String,
    vg: Option<String>,
    /// LVM_SYSTEM_DIR: lvm.conf with activation off, seeing only this test's partition.
    lvm_dir: PathBuf,
}

impl LoopVg {
    /// `table` is an sfdisk script; partition `pv_part` becomes the PV of a new VG `vg`.
    fn new(table: &str, image_mib: u64, pv_part: u32, vg: &str) -> LoopVg {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("disk.img");
        let lvm_dir = dir.path().join("lvm");
        std::fs::create_dir(&lvm_dir).expect("mkdir lvm");
        let f = std::fs::File::create(&image).expect("create image");
        f.set_len(image_mib << 20).expect("size image");
        drop(f);
        let mut sfdisk = Command::new("sfdisk");
        sfdisk
            .arg("-q")
            .arg(&image)
            .stdin(std::process::Stdio::piped());
        let mut child = sfdisk.spawn().expect("run sfdisk");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("sfdisk stdin");
            stdin
                .write_all(table.as_bytes())
                .expect("write sfdisk script");
        }
        assert!(
            child.wait().expect("sfdisk").success(),
            "sfdisk failed on {table}"
        );

        let mut me = LoopVg {
            dir,
            image: image.clone(),
            loopdev: None,
            pv: String::new(),
            vg: None,
            lvm_dir,
        };
        let dev = must(Command::new("losetup").args(["-f", "--show"]).arg(&image));
        let dev = dev.trim().to_string();
        me.loopdev = Some(dev.clone());
        must(Command::new("partx").args(["-a", &dev]));
        me.pv = format!("{dev}p{pv_part}");
        assert!(Path::new(&me.pv).exists(), "partx -a made no {}", me.pv);
        std::fs::write(
            me.lvm_dir.join("lvm.conf"),
            format!(
                "global {{ activation = 0 }}\n\
                 backup {{ backup = 0 archive = 0 }}\n\
                 devices {{ use_devicesfile = 0 filter = [ \"a|^{}$|\", \"r|.*|\" ] }}\n",
                me.pv
            ),
        )
        .expect("write lvm.conf");
        must(me.lvm("pvcreate").arg(&me.pv));
        must(me.lvm("vgcreate").arg(vg).arg(&me.pv));
        me.vg = Some(vg.to_string());
        me
    }

    fn lvm(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("LVM_SYSTEM_DIR", &self.lvm_dir)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1");
        c
    }

    /// The `growroot_lvm_env` extra var pointing the playbook at this LVM configuration.
    fn lvm_env_extra_var(&self) -> String {
        serde_json::json!({"growroot_lvm_env": {
            "LVM_SYSTEM_DIR": self.lvm_dir.to_string_lossy(),
            "LVM_SUPPRESS_FD_WARNINGS": "1",
        }})
        .to_string()
    }

    /// The partition's size in sectors, as the kernel sees it.
    fn kernel_part_sectors(&self) -> u64 {
        let name = self.pv.trim_start_matches("/dev/");
        let s = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
            .expect("read partition size");
        s.trim().parse().expect("sysfs size is a number")
    }

    /// The partition's first sector, as the kernel sees it.
    fn kernel_part_start(&self) -> u64 {
        let name = self.pv.trim_start_matches("/dev/");
        let s = std::fs::read_to_string(format!("/sys/class/block/{name}/start"))
            .expect("read partition start");
        s.trim().parse().expect("sysfs start is a number")
    }

    /// The partition's size in sectors, as the partition table in the image says.
    fn table_part_sectors(&self) -> u64 {
        let json = must(Command::new("sfdisk").arg("-J").arg(&self.image));
        let v: serde_json::Value = serde_json::from_str(&json).expect("sfdisk -J is JSON");
        let want = self
            .pv
            .rsplit_once('p')
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        v["partitiontable"]["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .find(|p| {
                p["node"]
                    .as_str()
                    .is_some_and(|n| n.strip_prefix(&*self.image.to_string_lossy()) == Some(&want))
            })
            .and_then(|p| p["size"].as_u64())
            .unwrap_or_else(|| panic!("partition {want} not in {json}"))
    }

    /// The PV's size in bytes, from `pvs`.
    fn pv_bytes(&self) -> u64 {
        let json = must(self.lvm("pvs").args([
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "pv_name,pv_size",
        ]));
        let v: serde_json::Value = serde_json::from_str(&json).expect("pvs JSON");
        let pv = v["report"][0]["pv"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["pv_name"] == self.pv.as_str()))
            .unwrap_or_else(|| panic!("{} not in {json}", self.pv));
        pv["pv_size"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("pv_size")
    }
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        if let Some(vg) = self.vg.take() {
            let _ = self.lvm("vgremove").args(["-f", &vg]).output();
            let _ = self.lvm("pvremove").args(["-ff", "-y", &self.pv]).output();
        }
        if let Some(dev) = self.loopdev.take() {
            let _ = Command::new("partx").args(["-d", &dev]).output();
            let _ = Command::new("losetup").args(["-d", &dev]).output();
        }
        // self.dir (the image and lvm.conf) goes with the TempDir.
        let _ = &self.dir;
    }
}

/// Grows the PV on `table`'s partition `pv_part` with each runner: changed the first time
/// (partition and PV larger), nothing changed the second time.
fn grow_and_regrow(table: &str, image_mib: u64, pv_part: u32) {
    let playbook = repo().join("playbooks/growroot.yml");
    for runner in Runner::available() {
        let vg = unique("growroot_test_vg");
        let disk = LoopVg::new(table, image_mib, pv_part, &vg);
        let inv = local_inventory(disk.dir.path(), "growroot_test");
        let extra = [
            "growroot_group=growroot_test".to_string(),
            format!("growroot_vg={vg}"),
            disk.lvm_env_extra_var(),
        ];
        let (part0, table0, pv0) = (
            disk.kernel_part_sectors(),
            disk.table_part_sectors(),
            disk.pv_bytes(),
        );

        // Check mode: growpart --dry-run says the partition would grow; nothing changes.
        let check = runner.run_with(&inv, &playbook, &extra, &["--check"]);
        assert_eq!(check.rc, 0, "check run failed:\n{}", check.out);
        assert_eq!(
            check.status("Grow the partition of the root physical volume"),
            "changed",
            "{}",
            check.out
        );
        assert_eq!(
            (
                disk.kernel_part_sectors(),
                disk.table_part_sectors(),
                disk.pv_bytes()
            ),
            (part0, table0, pv0),
            "{runner:?}: check mode changed the disk"
        );

        let first = runner.run(&inv, &playbook, &extra);
        assert_eq!(first.rc, 0, "first run failed:\n{}", first.out);
        assert_eq!(
            first.status("Ensure growpart is installed"),
            "skipped",
            "{}",
            first.out
        );
        assert_eq!(
            first.status("Grow the partition of the root physical volume"),
            "changed",
            "{}",
            first.out
        );
        assert_eq!(
            first.status("Grow the root physical volume to fill its partition"),
            "changed",
            "{}",
            first.out
        );
        let (part1, table1, pv1) = (
            disk.kernel_part_sectors(),
            disk.table_part_sectors(),
            disk.pv_bytes(),
        );
        assert!(
            table1 > table0,
            "{runner:?}: partition table size {table0} -> {table1}"
        );
        assert!(
            part1 > part0,
            "{runner:?}: kernel partition size {part0} -> {part1}"
        );
        assert_eq!(table1, part1, "table and kernel disagree");
        // The partition now ends within 1 MiB of the image's end (GPT keeps a backup header
        // there), and the PV fills it but for LVM's metadata area and extent rounding (4 MiB
        // extents).
        let end = (disk.kernel_part_start() + part1) * 512;
        assert!(
            end > (image_mib - 1) << 20,
            "{runner:?}: partition ends at byte {end}"
        );
        assert!(pv1 > pv0, "{runner:?}: pv_size {pv0} -> {pv1}");
        assert!(
            pv1 + (6 << 20) > part1 * 512,
            "{runner:?}: pv {pv1} B in {part1} sectors"
        );

        let second = runner.run(&inv, &playbook, &extra);
        assert_eq!(second.rc, 0, "second run failed:\n{}", second.out);
        assert_eq!(
            second.status("Grow the partition of the root physical volume"),
            "ok",
            "growpart should say NOCHANGE:\n{}",
            second.out
        );
        assert_eq!(
            second.status("Grow the root physical volume to fill its partition"),
            "skipped",
            "{}",
            second.out
        );
        assert_eq!(
            second.count("changed"),
            0,
            "second run changed something:\n{}",
            second.out
        );
        assert_eq!(second.count("failed"), 0, "{}", second.out);
        assert_eq!(disk.pv_bytes(), pv1, "second run resized the PV");
        assert_eq!(
            disk.kernel_part_sectors(),
            part1,
            "second run resized the partition"
        );
    }
}

#[test]
fn grows_a_pv_on_partition_3_of_an_msdos_disk() {
    skip_unless!(lvm_skip_reason());
    // p3 ends at 48 MiB of a 160 MiB disk.
    grow_and_regrow("label: dos\nsize=8MiB\nsize=8MiB\nsize=24MiB\n", 160, 3);
}

#[test]
fn grows_a_pv_on_partition_12_of_a_gpt_disk() {
    skip_unless!(lvm_skip_reason());
    // Eleven 1 MiB partitions, then the PV as partition 12 (two digits: /dev/loopNp12).
    let mut table = String::from("label: gpt\n");
    for _ in 0..11 {
        table.push_str("size=1MiB\n");
    }
    table.push_str("size=20MiB\n");
    grow_and_regrow(&table, 160, 12);
}

#[test]
fn fails_clearly_when_the_volume_group_has_no_pv() {
    skip_unless!(lvm_skip_reason());
    let dir = tempfile::tempdir().expect("tempdir");
    let lvm_dir = dir.path().join("lvm");
    std::fs::create_dir(&lvm_dir).expect("mkdir");
    // An LVM configuration that sees no device at all.
    std::fs::write(
        lvm_dir.join("lvm.conf"),
        "global { activation = 0 }\ndevices { use_devicesfile = 0 filter = [ \"r|.*|\" ] }\n",
    )
    .expect("write lvm.conf");
    let inv = local_inventory(dir.path(), "growroot_none");
    let vg = unique("growroot_absent_vg");
    let extra = [
        "growroot_group=growroot_none".to_string(),
        format!("growroot_vg={vg}"),
        serde_json::json!({"growroot_lvm_env": {"LVM_SYSTEM_DIR": lvm_dir.to_string_lossy()}})
            .to_string(),
    ];
    for runner in Runner::available() {
        let run = runner.run(&inv, &repo().join("playbooks/growroot.yml"), &extra);
        assert_eq!(run.rc, 2, "{}", run.out);
        assert_eq!(
            run.status("Fail when the root volume group has no physical volume"),
            "failed",
            "{}",
            run.out
        );
        assert!(
            run.out.contains(&format!(
                "No LVM physical volume belongs to volume group '{vg}'"
            )),
            "{}",
            run.out
        );
        assert!(
            !run.tasks.iter().any(|(t, _)| t.starts_with("Grow")),
            "grew after failing:\n{}",
            run.out
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The derivation expressions, rendered by real Ansible.

const DERIVE_TASK: &str = "Derive the disk and partition number of the root physical volume";

/// The `set_fact` mapping of the playbook's derivation task, exactly as shipped.
fn derivation_from_playbook() -> serde_yaml::Mapping {
    let src = std::fs::read_to_string(repo().join("playbooks/growroot.yml")).expect("read");
    let plays: serde_yaml::Value = serde_yaml::from_str(&src).expect("growroot.yml is YAML");
    let task = plays[0]["tasks"]
        .as_sequence()
        .expect("tasks")
        .iter()
        .find(|t| t["name"].as_str() == Some(DERIVE_TASK))
        .expect("derivation task present");
    task["ansible.builtin.set_fact"]
        .as_mapping()
        .expect("set_fact mapping")
        .clone()
}

#[test]
fn derives_disk_and_partition_from_pv_names() {
    skip_unless!(ansible_skip_reason());
    let cases: &[(&str, &str, &str)] = &[
        ("/dev/sda3", "/dev/sda", "3"),
        ("/dev/sda12", "/dev/sda", "12"),
        ("/dev/vda1", "/dev/vda", "1"),
        ("/dev/xvda2", "/dev/xvda", "2"),
        ("/dev/sdp1", "/dev/sdp", "1"),
        ("/dev/sdp12", "/dev/sdp", "12"),
        ("/dev/nvme0n1p3", "/dev/nvme0n1", "3"),
        ("/dev/nvme0n1p12", "/dev/nvme0n1", "12"),
        ("/dev/nvme10n2p15", "/dev/nvme10n2", "15"),
        ("/dev/mmcblk0p2", "/dev/mmcblk0", "2"),
        ("/dev/mmcblk1p10", "/dev/mmcblk1", "10"),
        ("/dev/loop0p12", "/dev/loop0", "12"),
        ("/dev/loop12p1", "/dev/loop12", "1"),
        ("/dev/md0p1", "/dev/md0", "1"),
        // A whole disk: no partition number; the playbook then fails before growpart.
        ("/dev/sdb", "/dev/sdb", ""),
    ];
    let derive = derivation_from_playbook();
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("derived.json");
    let mut tasks = Vec::new();
    for (pv, _, _) in cases {
        let mut t = serde_yaml::Mapping::new();
        t.insert("ansible.builtin.set_fact".into(), derive.clone().into());
        t.insert(
            "vars".into(),
            serde_yaml::Value::Mapping(
                [("growroot_pv_name".into(), (*pv).into())]
                    .into_iter()
                    .collect(),
            ),
        );
        tasks.push(serde_yaml::Value::Mapping(t));
        tasks.push(
            serde_yaml::from_str(&format!(
                "ansible.builtin.set_fact:\n  derived: \"{{{{ derived | default([]) + [['{pv}', growroot_disk, growroot_partition]] }}}}\"\n"
            ))
            .expect("collect task"),
        );
    }
    tasks.push(
        serde_yaml::from_str(&format!(
            "ansible.builtin.copy:\n  content: \"{{{{ derived | to_json }}}}\"\n  dest: {}\n",
            out_file.display()
        ))
        .expect("copy task"),
    );
    let play: serde_yaml::Value = serde_yaml::from_str(
        "- name: derive\n  hosts: derive_test\n  gather_facts: false\n  tasks: []\n",
    )
    .expect("play");
    let mut play = play;
    play[0]["tasks"] = serde_yaml::Value::Sequence(tasks);
    let pb = dir.path().join("derive.yml");
    std::fs::write(&pb, serde_yaml::to_string(&play).expect("yaml")).expect("write playbook");
    let inv = local_inventory(dir.path(), "derive_test");

    for runner in Runner::available() {
        let _ = std::fs::remove_file(&out_file);
        let run = runner.run(&inv, &pb, &[]);
        assert_eq!(run.rc, 0, "{}", run.out);
        let got: Vec<(String, String, String)> =
            serde_json::from_str(&std::fs::read_to_string(&out_file).expect("derived.json"))
                .expect("derived.json is JSON");
        let want: Vec<(String, String, String)> = cases
            .iter()
            .map(|(p, d, n)| (p.to_string(), d.to_string(), n.to_string()))
            .collect();
        let diff: BTreeMap<_, _> = got
            .iter()
            .zip(&want)
            .filter(|(g, w)| g != w)
            .map(|(g, w)| {
                (
                    w.0.clone(),
                    (g.1.clone(), g.2.clone(), w.1.clone(), w.2.clone()),
                )
            })
            .collect();
        assert!(
            diff.is_empty(),
            "{runner:?}: (got disk, part, want disk, part): {diff:#?}"
        );
        assert_eq!(got.len(), want.len());
    }
}
