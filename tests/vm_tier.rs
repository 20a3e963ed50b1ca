//! The VM tier of the lab, for what this machine's kernel lacks (LAB.md: no dummy links, no
//! device-mapper, no partition parsers): each test boots a qemu VM (TCG) with Debian bookworm's
//! cloud kernel (`kiln::lab::vm`, prepared by `tests/lab/vm-prepare.sh`) and drives it only
//! through `target/debug/kiln playbook run` over SSH, as user `kiln` with become, like any lab
//! host. Checks are made inside the VM over SSH (`ip -j`, `pvs`, `df`, sysfs).
//!
//! - growroot: a data disk with a GPT partition holding an LVM PV/VG (activated, with an LV), grown
//!   with QMP `block_resize` while the VM runs; the shipped `playbooks/growroot.yml` reports the
//!   growth in check mode without making it, grows the partition and the PV, and the second run
//!   changes nothing.
//! - network: `kiln.builtin.network` makes bridge breth1 with a missing port dummy1 (created as a
//!   real dummy link) and 192.168.33.3/24; the second run changes nothing.
//! - lvm: `lvg` + `lvol` + `filesystem` + `mount` on a real mounted ext4, then the LV grown with
//!   `resizefs: true` (check mode first: reported, not made); `df` shows the bigger filesystem;
//!   the repeated runs change nothing.
//!
//! Without the prepared tier (or not root) each test prints `SKIPPED (vm tier unavailable): ...`.
//! A VM boots in ~20-40 s under TCG here, so the tests keep to one VM each.

mod lab;
mod playbook_runner;
mod support;

use lab::vm::{boot, VmGuard};
use playbook_runner::{Run, Runner};
use std::path::{Path, PathBuf};

use support::repo;

fn kiln(vm: &VmGuard, playbook: &Path, extra: &[String]) -> Run {
    kiln_with(vm, playbook, extra, &[])
}

/// `kiln playbook run` with more flags (`--check`).
fn kiln_with(vm: &VmGuard, playbook: &Path, extra: &[String], more: &[&str]) -> Run {
    let started = std::time::Instant::now();
    let agent = lab::vm::small_agent().map(|p| format!("x86_64={}", p.display()));
    let mut flags: Vec<&str> = match &agent {
        Some(a) => vec!["--agent-binary", a],
        None => vec![],
    };
    flags.extend_from_slice(more);
    let run = Runner::Kiln.run_with(&vm.inventory(), playbook, extra, &flags);
    eprintln!(
        "kiln run {} ({:.1} s): rc {} tasks {:?}",
        playbook.display(),
        started.elapsed().as_secs_f64(),
        run.rc,
        run.tasks
    );
    run
}

fn write_playbook(vm: &VmGuard, name: &str, text: &str) -> PathBuf {
    let p = vm.dir.join(name);
    std::fs::write(&p, text).expect("write playbook");
    p
}

fn num(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The guest's view of a block device's size in 512-byte sectors (sysfs).
fn sectors(vm: &VmGuard, dev: &str) -> u64 {
    let name = dev.trim_start_matches("/dev/");
    vm.must(&format!("cat /sys/class/block/{name}/size"))
        .trim()
        .parse()
        .expect("sysfs size is a number")
}

/// The device node behind a data disk's by-id link (e.g. /dev/vdb).
fn disk_dev(vm: &VmGuard, name: &str) -> String {
    let p = vm
        .disks
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.guest_path.clone())
        .expect("disk");
    vm.must(&format!("udevadm settle; readlink -f {p}"))
        .trim()
        .to_string()
}

const MIB: u64 = 1 << 20;

#[test]
fn vm_boots_with_what_this_kernel_lacks() {
    require_vm!();
    let mut vm = boot("vmboot", &[]);
    // dummy links and device-mapper are real in the VM.
    vm.must("ip link add kilnd0 type dummy && ip link del kilnd0");
    vm.must("modprobe dm_mod && test -e /dev/mapper/control");
    // A disk hot-plugged over QMP shows up under its serial, with its size.
    let path = vm
        .add_disk("hot1", 64 * MIB)
        .expect("hot-plug")
        .guest_path
        .clone();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = vm.must(&format!(
            "udevadm settle; blockdev --getsize64 {path} 2>/dev/null || true"
        ));
        if !seen.trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(seen.trim(), (64 * MIB).to_string(), "{path} after hot-plug");
    // The inventory's user has passwordless sudo.
    let out = vm
        .ssh("kiln", &["sudo", "-n", "id", "-u"])
        .output()
        .expect("ssh");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

#[test]
fn growroot_grows_a_partition_and_pv_after_the_disk_grew() {
    require_vm!();
    let vm = boot("vmgrow", &[("grow1", 1024 * MIB)]);
    let dev = disk_dev(&vm, "grow1");
    let part = format!("{dev}2");
    // GPT: a small first partition, the PV as partition 2, room after it; an activated LV on it
    // (device-mapper works here).
    vm.must(&format!(
        "printf 'label: gpt\\nsize=8MiB\\nsize=200MiB\\n' | sfdisk -q {dev} && udevadm settle && \
         pvcreate -q {part} && vgcreate -q growvg {part} && lvcreate -q -y -L 64M -n lv0 growvg && \
         test -b /dev/growvg/lv0"
    ));
    let pv_bytes = || -> u64 {
        let out = vm.must(&format!(
            "pvs --reportformat json --units b --nosuffix -o pv_name,pv_size {part}"
        ));
        let v: serde_json::Value = serde_json::from_str(&out).expect("pvs JSON");
        num(&v["report"][0]["pv"][0]["pv_size"])
    };
    let (part0, pv0) = (sectors(&vm, &part), pv_bytes());

    // Grow the disk under the running VM; the guest kernel sees the new capacity.
    vm.resize_disk("grow1", 2048 * MIB).expect("block_resize");
    let mut grown = false;
    for _ in 0..50 {
        if sectors(&vm, &dev) == 2048 * MIB / 512 {
            grown = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        grown,
        "the guest did not see the disk grow: {} sectors",
        sectors(&vm, &dev)
    );

    let playbook = repo().join("playbooks/growroot.yml");
    let extra = [
        "growroot_group=vm".to_string(),
        "growroot_vg=growvg".to_string(),
    ];
    // Check mode reports the growth (growpart --dry-run) and changes nothing.
    let check = kiln_with(&vm, &playbook, &extra, &["--check"]);
    assert_eq!(check.rc, 0, "check run failed:\n{}", check.out);
    assert_eq!(
        check.status("Grow the partition of the root physical volume"),
        "changed",
        "{}",
        check.out
    );
    assert_eq!(
        (sectors(&vm, &part), pv_bytes()),
        (part0, pv0),
        "check mode changed the disk"
    );

    let first = kiln(&vm, &playbook, &extra);
    assert_eq!(first.rc, 0, "first run failed:\n{}", first.out);
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
    let (part1, pv1) = (sectors(&vm, &part), pv_bytes());
    assert!(
        part1 > part0 + 1500 * MIB / 512,
        "partition {part0} -> {part1} sectors"
    );
    assert!(pv1 > pv0 + 1500 * MIB, "pv {pv0} -> {pv1} bytes");
    assert!(
        pv1 + 8 * MIB > part1 * 512,
        "pv {pv1} B fills {part1} sectors"
    );
    // The VG got the space; the LV is still active.
    vm.must("test -b /dev/growvg/lv0");

    let second = kiln(&vm, &playbook, &extra);
    assert_eq!(second.rc, 0, "second run failed:\n{}", second.out);
    assert_eq!(
        second.count("changed"),
        0,
        "second run changed:\n{}",
        second.out
    );
    assert_eq!((sectors(&vm, &part), pv_bytes()), (part1, pv1));
}

const NETWORK_PLAY: &str = r#"
- name: A bridge with a dummy port
  hosts: vm
  gather_facts: true
  become: true
  tasks:
    - name: Configure breth1
      kiln.builtin.network:
        bridge_interfaces:
          - device: breth1
            address: 192.168.33.3
            netmask: 255.255.255.0
            gateway: null
            mtu: 1500
            ports: [dummy1]
            route:
              - {network: 10.0.0.0, netmask: 255.0.0.0, gateway: 192.168.33.254}
            stp: false
            bootproto: static
            onboot: yes
            vlan: null
            rules: null
            defroute: null
            ethtool_opts: null
            zone: null
            allowed_addresses: null
        persist: auto
"#;

#[test]
fn network_module_makes_a_bridge_with_a_dummy_port() {
    require_vm!();
    let vm = boot("vmnet", &[]);
    let pb = write_playbook(&vm, "network.yml", NETWORK_PLAY);
    let first = kiln(&vm, &pb, &[]);
    assert_eq!(first.rc, 0, "first run failed:\n{}", first.out);
    assert_eq!(first.status("Configure breth1"), "changed", "{}", first.out);

    let br = vm.ip_json("-d link show dev breth1");
    assert_eq!(br[0]["linkinfo"]["info_kind"], "bridge", "{br}");
    assert_eq!(num(&br[0]["mtu"]), 1500, "{br}");
    let port = vm.ip_json("-d link show dev dummy1");
    assert_eq!(port[0]["linkinfo"]["info_kind"], "dummy", "{port}");
    assert_eq!(port[0]["master"], "breth1", "{port}");
    let addrs = vm.ip_json("addr show dev breth1");
    let has_addr = addrs[0]["addr_info"].as_array().is_some_and(|a| {
        a.iter()
            .any(|i| i["local"] == "192.168.33.3" && i["prefixlen"] == 24)
    });
    assert!(has_addr, "{addrs}");
    let up = vm.ip_json("link show dev breth1");
    assert!(
        up[0]["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
        "{up}"
    );
    let routes = vm.ip_json("route show 10.0.0.0/8");
    assert_eq!(routes[0]["gateway"], "192.168.33.254", "{routes}");
    assert_eq!(routes[0]["dev"], "breth1", "{routes}");

    let second = kiln(&vm, &pb, &[]);
    assert_eq!(second.rc, 0, "second run failed:\n{}", second.out);
    assert_eq!(
        second.count("changed"),
        0,
        "second run changed:\n{}",
        second.out
    );
}

const LVM_PLAY: &str = r#"
- name: A logical volume with a mounted filesystem
  hosts: vm
  gather_facts: false
  become: true
  tasks:
    - name: Volume group
      lvg:
        vg: datavg
        pvs: ["{{ data_disk }}"]
    - name: Logical volume
      lvol:
        vg: datavg
        lv: data
        size: "{{ lv_size }}"
        resizefs: true
    - name: Filesystem
      filesystem:
        fstype: ext4
        dev: /dev/datavg/data
    - name: Mount
      mount:
        path: /mnt/data
        src: /dev/datavg/data
        fstype: ext4
        state: mounted
"#;

/// `df` of /mnt/data in the VM: (filesystem size in bytes, device).
fn df(vm: &VmGuard) -> (u64, String) {
    let out = vm.must("df -B1 --output=size,source /mnt/data | tail -1");
    let mut it = out.split_whitespace();
    let size = it.next().and_then(|s| s.parse().ok()).expect("df size");
    (size, it.next().unwrap_or_default().to_string())
}

#[test]
fn lvol_grows_a_mounted_filesystem_with_resizefs() {
    require_vm!();
    let vm = boot("vmlvm", &[("lvm1", 2048 * MIB)]);
    let dev = disk_dev(&vm, "lvm1");
    let pb = write_playbook(&vm, "lvm.yml", LVM_PLAY);
    let vars = |size: &str| vec![format!("data_disk={dev}"), format!("lv_size={size}")];

    let first = kiln(&vm, &pb, &vars("512M"));
    assert_eq!(first.rc, 0, "first run failed:\n{}", first.out);
    for t in ["Volume group", "Logical volume", "Filesystem", "Mount"] {
        assert_eq!(first.status(t), "changed", "{t}:\n{}", first.out);
    }
    let (size0, source) = df(&vm);
    assert!(source.contains("datavg"), "mounted from {source}");
    assert!(
        (400 * MIB..=512 * MIB).contains(&size0),
        "a 512M LV holds a {size0} B filesystem"
    );
    let again = kiln(&vm, &pb, &vars("512M"));
    assert_eq!(again.rc, 0, "{}", again.out);
    assert_eq!(
        again.count("changed"),
        0,
        "repeat run changed:\n{}",
        again.out
    );

    // Check mode foresees the LV growth and leaves the filesystem as it is.
    let check = kiln_with(&vm, &pb, &vars("1G"), &["--check"]);
    assert_eq!(check.rc, 0, "check run failed:\n{}", check.out);
    assert_eq!(check.status("Logical volume"), "changed", "{}", check.out);
    assert_eq!(df(&vm).0, size0, "check mode resized the filesystem");

    let grow = kiln(&vm, &pb, &vars("1G"));
    assert_eq!(grow.rc, 0, "grow run failed:\n{}", grow.out);
    assert_eq!(grow.status("Logical volume"), "changed", "{}", grow.out);
    let (size1, _) = df(&vm);
    assert!(
        size1 > size0 + 400 * MIB && size1 <= 1024 * MIB,
        "after growing to 1G with resizefs, df says {size1} B (was {size0})"
    );
    let lv = vm.must("lvs --reportformat json --units b --nosuffix -o lv_size datavg/data");
    let v: serde_json::Value = serde_json::from_str(&lv).expect("lvs JSON");
    assert_eq!(num(&v["report"][0]["lv"][0]["lv_size"]), 1024 * MIB, "{lv}");

    let last = kiln(&vm, &pb, &vars("1G"));
    assert_eq!(last.rc, 0, "{}", last.out);
    assert_eq!(
        last.count("changed"),
        0,
        "repeat run changed:\n{}",
        last.out
    );
}
