//! The end-to-end case: `kiln seed host configure` with the shipped
//! `environments/ci-builder`, pointed at a VM of the lab's VM tier (a real kernel with dummy links
//! and device-mapper), run twice.
//!
//! The VM plays an LVM-based cloud image: a volume group `rootvg` with small `lv_home` and
//! `lv_tmp` (1 GiB, ext4, mounted), a bootstrap user (`kiln`) that accepts the control host's
//! key, as cloud-init arranges on a real image. The first run must allocate nothing new (the
//! environment already allocates 192.168.33.3 to `builder`), create the Kayobe user `stack`, put
//! up `breth1` with the dummy port `dummy1` and its address, persist them (the VM is Debian:
//! systemd-networkd files, the dummy's `.netdev` included), and grow `lv_home` / `lv_tmp` to 4 GiB
//! with their mounted filesystems (the ci-builder procedure's `lvextend -L 4G -r`). The second
//! run reports changed=0.

mod lab;

use std::path::Path;
use std::process::Command;

fn recaps(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "recap")
        .map(|v| v["stats"]["builder"].clone())
        .collect()
}

#[test]
fn ci_builder_seed_host_configure_on_a_vm_twice() {
    require_vm!();
    let vm = lab::vm::boot("cib", &[("rootvg", 12 << 30)]);
    let disk = vm.disks[0].guest_path.clone();
    vm.must(&format!(
        "set -e; pvcreate -q {disk}; vgcreate -q rootvg {disk}; \
         for lv in lv_home lv_tmp; do lvcreate -q -y -L 1G -n $lv rootvg; mkfs.ext4 -q /dev/rootvg/$lv; \
         mkdir -p /srv/$lv; mount /dev/rootvg/$lv /srv/$lv; done"
    ));

    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("kayobe-config");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    lab::copy_tree(
        &repo.join("environments/ci-builder"),
        &cfg.join("environments/ci-builder"),
    );
    let identity = cfg.join("environments/ci-builder/lab-identity.age");
    let kiln = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .env("HOME", &home)
            // the shipped environment's secrets are encrypted to its documented lab identity
            .env("KILN_AGE_PASSPHRASE", "kiln-lab-throwaway")
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .arg("--config-path")
            .arg(&cfg)
            .args(["--environment", "ci-builder", "--age-identity"])
            .arg(&identity)
            .args(args)
            .output()
            .expect("run kiln");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // the control host's key, authorised for the image's bootstrap user (cloud-init's job)
    let (rc, out, err) = kiln(&["control", "host", "bootstrap"]);
    assert_eq!(rc, 0, "{out}\n{err}");
    let pubkey = std::fs::read_to_string(home.join(".ssh/id_ed25519.pub")).unwrap();
    vm.must(&format!(
        "echo '{}' >> /home/{u}/.ssh/authorized_keys",
        pubkey.trim(),
        u = vm.user
    ));

    let known = serde_json::json!({
        "ansible_ssh_common_args": format!(
            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            vm.known_hosts.display()
        )
    })
    .to_string();
    let port = format!("ansible_port={}", vm.ssh_port);
    let boot_user = format!("seed_bootstrap_user={}", vm.user);
    // the debug agent stripped: the emulated VM takes minutes to receive the full one
    let agent = lab::vm::small_agent().map(|p| format!("x86_64={}", p.display()));
    let configure = || {
        let mut args = vec![
            "seed",
            "host",
            "configure",
            "--format",
            "json",
            "-e",
            "ansible_host=127.0.0.1",
            "-e",
            &port,
            "-e",
            &known,
            "-e",
            &boot_user,
        ];
        if let Some(a) = &agent {
            args.extend(["--agent-binary", a.as_str()]);
        }
        kiln(&args)
    };

    let (rc, out, err) = configure();
    assert_eq!(rc, 0, "seed host configure:\n{out}\n{err}");
    // the Kayobe user
    vm.must("id stack");
    assert_eq!(
        vm.must("cat /etc/sudoers.d/kayobe-ansible-user"),
        "stack ALL=(ALL) NOPASSWD: ALL\n"
    );
    // breth1 with its dummy port and the allocated address
    let dummy = vm.ip_json("-d link show dev dummy1");
    assert_eq!(dummy[0]["linkinfo"]["info_kind"], "dummy", "{dummy}");
    assert_eq!(dummy[0]["master"], "breth1", "{dummy}");
    let bridge = vm.ip_json("-d addr show dev breth1");
    assert_eq!(bridge[0]["linkinfo"]["info_kind"], "bridge", "{bridge}");
    assert!(
        bridge[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == "192.168.33.3" && a["prefixlen"] == 24),
        "{bridge}"
    );
    // persisted for systemd-networkd, the dummy's .netdev included
    let netdev = vm.must("cat /etc/systemd/network/10-kiln-dummy1.netdev");
    assert!(netdev.contains("Kind=dummy"), "{netdev}");
    let port_file = vm.must("cat /etc/systemd/network/10-kiln-dummy1.network");
    assert!(port_file.contains("Bridge=breth1"), "{port_file}");
    // lv_home and lv_tmp grown to 4 GiB, with their mounted filesystems
    for lv in ["lv_home", "lv_tmp"] {
        let size = vm.must(&format!(
            "lvs --noheadings --units b --nosuffix -o lv_size rootvg/{lv}"
        ));
        assert_eq!(size.trim(), (4u64 << 30).to_string(), "{lv}");
        let fs = vm.must(&format!("df -B1 --output=size /srv/{lv} | tail -1"));
        let fs: u64 = fs.trim().parse().unwrap();
        assert!(fs > 3 << 30, "{lv}: filesystem not grown: {fs} bytes");
    }

    let (rc, out, err) = configure();
    assert_eq!(rc, 0, "second run:\n{out}\n{err}");
    let r = recaps(&out);
    assert_eq!(r.len(), 2, "{out}");
    for s in r {
        assert_eq!(s["changed"], 0, "second run changed something: {s}\n{out}");
        assert_eq!(s["failed"], 0, "{s}");
    }
}
