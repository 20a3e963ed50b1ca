//! `kiln lab` against the real thing: network namespaces, bridges, veths, overlay roots and real
//! OpenSSH sshd, reached with the real `ssh` client. Skips (with the reason printed) when this
//! machine cannot run a lab: not root, or sshd/ip/unshare/ssh missing.

mod lab;
mod support;

use kiln::lab::{down_dir, Flavor, HostNet, Lab, LabError, INTERNAL_HOST, JUMP_HOST};
use lab::{ssh, LabGuard};
use std::process::Command;
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run tool");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn proc_gone(pid: u32) -> bool {
    // Gone, or a zombie nobody reaps (this VM's PID 1 does not): either way no longer running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

#[test]
fn three_mixed_hosts_answer_real_ssh_with_their_identity() {
    require_lab!();
    let spec =
        lab::spec("mixed").with_hosts(3, &[Flavor::Rocky9, Flavor::Ubuntu2204, Flavor::Debian12]);
    let lab = LabGuard::up(&spec);
    assert_eq!(lab.hosts.len(), 3);
    for f in [
        "inventory.ini",
        "ssh_config",
        "known_hosts",
        "id_ed25519",
        "id_ed25519.pub",
        "state.json",
    ] {
        assert!(
            lab.dir.join(f).is_file(),
            "{f} missing in {}",
            lab.dir.display()
        );
    }
    let want = [
        ("rocky", "Rocky Linux 9.4"),
        ("ubuntu", "Ubuntu 22.04"),
        ("debian", "Debian GNU/Linux 12"),
    ];
    for (h, (id, pretty)) in lab.hosts.iter().zip(want) {
        let (ok, out, err) = ssh(&lab, &h.name, &["cat", "/etc/os-release"]);
        assert!(ok, "ssh {} failed: {err}", h.name);
        assert!(
            out.contains(&format!("ID={id}")) || out.contains(&format!("ID=\"{id}\"")),
            "{}: {out}",
            h.name
        );
        assert!(out.contains(pretty), "{}: {out}", h.name);
        let (ok, out, err) = ssh(&lab, &h.name, &["hostname"]);
        assert!(ok, "{err}");
        assert_eq!(out.trim(), h.name);

        // The plain form the transport uses: key + known_hosts, no ssh_config.
        let known = format!("UserKnownHostsFile={}", lab.known_hosts.display());
        let target = format!("root@{}", h.addr);
        let key = lab.key.to_string_lossy().into_owned();
        let st = Command::new("ssh")
            .args([
                "-i",
                &key,
                "-o",
                &known,
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
            ])
            .args(["-o", "GlobalKnownHostsFile=/dev/null", &target, "true"])
            .status()
            .expect("run ssh");
        assert!(st.success(), "ssh -i key root@{} true", h.addr);

        // Its own namespaces: sshd is PID 1, eth0 carries its address.
        let out = h.exec(&["cat", "/proc/1/comm"]).expect("exec");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "sshd");
        let out = h
            .exec(&["ip", "-j", "addr", "show", "dev", "eth0"])
            .expect("exec");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&h.addr.to_string()));
    }
    let rocky = &lab.hosts[0];
    let (_, out, _) = ssh(
        &lab,
        &rocky.name,
        &["cat", "/etc/redhat-release", "/etc/rocky-release"],
    );
    assert_eq!(out.matches("Rocky Linux release 9").count(), 2, "{out}");
    assert!(!ssh(&lab, &rocky.name, &["test", "-e", "/etc/debian_version"]).0);
    let (_, out, _) = ssh(&lab, &lab.hosts[1].name, &["cat", "/etc/lsb-release"]);
    assert!(out.contains("DISTRIB_RELEASE=22.04"), "{out}");

    // Writes stay in the host's overlay: not on the real root, not on a sibling.
    let probe = format!("/etc/kiln-lab-probe-{}", lab.name);
    // ssh joins its arguments with spaces for the remote shell: pass one command line.
    let (ok, out, _) = ssh(
        &lab,
        &rocky.name,
        &[&format!("echo hi > {probe} && cat {probe}")],
    );
    assert!(ok && out.trim() == "hi", "{out}");
    assert!(
        !std::path::Path::new(&probe).exists(),
        "write leaked to the real root"
    );
    assert!(
        !ssh(&lab, &lab.hosts[1].name, &["test", "-e", &probe]).0,
        "write leaked to a sibling"
    );

    // Root's shell rc files are empty (this machine's own add ~170 ms per command).
    let (_, out, _) = ssh(
        &lab,
        &rocky.name,
        &["wc", "-c", "/root/.bashrc", "/root/.profile"],
    );
    assert!(
        out.lines().all(|l| l.trim_start().starts_with('0')),
        "{out}"
    );

    // The lab users exist; the key works for them too.
    let (ok, out, err) = ssh(
        &lab,
        &format!("{}@{}", kiln::lab::SUDO_USER, rocky.name),
        &["id", "-un"],
    );
    // ssh_config's `User root` is overridden by user@host.
    assert!(ok, "{err}");
    assert_eq!(out.trim(), kiln::lab::SUDO_USER);
    if lab::which("sudo").is_some() {
        let (ok, out, err) = ssh(
            &lab,
            &format!("{}@{}", kiln::lab::SUDO_USER, rocky.name),
            &["sudo", "-n", "id", "-u"],
        );
        assert!(ok && out.trim() == "0", "passwordless sudo: {out} {err}");
        let cmd = format!("echo {} | sudo -S -p '' id -u", kiln::lab::PASSWORD);
        let (ok, out, err) = ssh(
            &lab,
            &format!("{}@{}", kiln::lab::PASSWORD_USER, rocky.name),
            &[&cmd],
        );
        assert!(ok && out.trim() == "0", "password sudo: {out} {err}");
        let (ok, _, _) = ssh(
            &lab,
            &format!("{}@{}", kiln::lab::PASSWORD_USER, rocky.name),
            &["sudo", "-n", "true"],
        );
        assert!(!ok, "kilnpw must need a password for sudo");
    } else {
        eprintln!("sudo is not installed: sudo checks skipped (apt-get install sudo)");
    }

    // Inventory: groups per flavor and the lab's connection variables.
    let inv = std::fs::read_to_string(&lab.inventory).expect("inventory");
    for g in [
        "[lab]",
        "[rocky9]",
        "[ubuntu2204]",
        "[debian12]",
        "ansible_user=root",
    ] {
        assert!(inv.contains(g), "{g} missing:\n{inv}");
    }
    assert!(
        inv.contains(&format!("{} ansible_host={}", rocky.name, rocky.addr)),
        "{inv}"
    );
    assert!(inv.contains(&format!(
        "ansible_ssh_private_key_file={}",
        lab.key.display()
    )));
    assert!(inv.contains(&format!("UserKnownHostsFile={}", lab.known_hosts.display())));

    assert!(lab.status().iter().all(|s| s.up));
}

#[test]
fn up_twice_is_idempotent_and_restarts_a_killed_host() {
    require_lab!();
    let spec = lab::spec("idem").with_hosts(2, &[Flavor::Rocky9]);
    let first = LabGuard::up(&spec);
    let known_before = std::fs::read_to_string(&first.known_hosts).expect("known_hosts");
    let again = Lab::up(&spec).expect("second up");
    let pids = |l: &Lab| l.hosts.iter().map(|h| h.sshd_pid).collect::<Vec<_>>();
    assert_eq!(
        pids(&first),
        pids(&again),
        "a second up must keep running hosts"
    );
    assert_eq!(again.subnet, first.subnet);
    assert_eq!(
        std::fs::read_to_string(&again.known_hosts).expect("known_hosts"),
        known_before
    );

    // Killing a host's sshd (its PID 1) ends the host; status says so.
    let victim = first.hosts[0].clone();
    Command::new("kill")
        .args(["-KILL", &victim.sshd_pid.to_string()])
        .status()
        .expect("kill");
    let end = Instant::now() + Duration::from_secs(5);
    while !proc_gone(victim.sshd_pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = Lab::open(&first.dir).expect("open").status();
    assert!(!st[0].up, "killed host must be down: {st:?}");
    assert!(st[1].up);
    assert!(matches!(victim.exec(&["true"]), Err(LabError::HostDown(_))));

    // up again restarts just that host, with the same key (known_hosts stays valid).
    let third = Lab::up(&spec).expect("third up");
    assert_ne!(third.hosts[0].sshd_pid, victim.sshd_pid);
    assert_eq!(third.hosts[1].sshd_pid, first.hosts[1].sshd_pid);
    assert!(third.status().iter().all(|s| s.up));
    let (ok, out, err) = ssh(&third, &victim.name, &["hostname"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), victim.name);
    assert_eq!(
        std::fs::read_to_string(&third.known_hosts).expect("known_hosts"),
        known_before
    );
}

#[test]
fn two_labs_coexist_and_down_removes_everything() {
    require_lab!();
    let a = LabGuard::up(&lab::spec("coexa").with_hosts(2, &[Flavor::Ubuntu2204]));
    let b = LabGuard::up(
        &lab::spec("coexb")
            .with_hosts(1, &[Flavor::Rocky9])
            .with_jump_pair(Flavor::Rocky9),
    );
    assert_ne!(a.subnet, b.subnet);
    assert_ne!(a.bridge, b.bridge);
    for l in [&*a, &*b] {
        for h in l.hosts.iter() {
            let (ok, out, err) = ssh(l, &h.name, &["hostname"]);
            assert!(ok, "{}/{}: {err}", l.name, h.name);
            assert_eq!(out.trim(), h.name);
        }
    }

    // Everything b made, as the system shows it.
    let netns: Vec<String> = b.hosts.iter().map(|h| h.netns.clone()).collect();
    let pids: Vec<u32> = b.hosts.iter().map(|h| h.sshd_pid).collect();
    let mut links = vec![b.bridge.clone()];
    links.extend(b.internal_bridge.clone());
    let before = run(&["ip", "-o", "link"]);
    for l in &links {
        assert!(
            before.contains(&format!(": {l}:")),
            "{l} not found before down"
        );
    }
    let veths_before = before.matches(&format!(": k{}", b.short_id())).count();
    assert_eq!(
        veths_before, 4,
        "one veth per host, two for the jump host:\n{before}"
    );
    for n in &netns {
        assert!(run(&["ip", "netns", "list"]).contains(n.as_str()));
    }

    b.down().expect("down");
    let after = run(&["ip", "-o", "link"]);
    for l in &links {
        assert!(!after.contains(&format!(": {l}:")), "{l} left after down");
    }
    assert!(
        !after.contains(&format!(": k{}", b.short_id())),
        "veths left after down:\n{after}"
    );
    let ns_after = run(&["ip", "netns", "list"]);
    for n in &netns {
        assert!(
            !ns_after
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str())),
            "{n} left"
        );
    }
    for p in pids {
        assert!(proc_gone(p), "sshd {p} still running after down");
    }
    assert!(!b.dir.exists(), "{} left after down", b.dir.display());
    // down twice is fine.
    assert!(!down_dir(&b.dir).expect("second down"));

    // a is untouched.
    assert!(a.status().iter().all(|s| s.up));
    assert!(ssh(&a, &a.hosts[0].name, &["true"]).0);
}

#[test]
fn proxyjump_reaches_a_host_on_the_internal_network() {
    require_lab!();
    let lab = LabGuard::up(&lab::spec("jump").with_jump_pair(Flavor::Ubuntu2204));
    let jump = lab.host(JUMP_HOST).expect("jump");
    let inner = lab.host(INTERNAL_HOST).expect("internal");
    assert_eq!(jump.net, HostNet::Both);
    assert!(inner.lab_addr.is_none());
    let internal_subnet = lab.internal_subnet.expect("internal subnet");
    assert!(internal_subnet.contains(&inner.addr));

    // This machine has no address on the internal network and no route into it via the lab.
    let ib = lab.internal_bridge.clone().expect("internal bridge");
    assert!(!run(&["ip", "-4", "-o", "addr", "show", "dev", &ib]).contains("inet "));
    let route = run(&["ip", "-o", "route", "get", &inner.addr.to_string()]);
    assert!(
        !route.contains(&ib) && !route.contains(&lab.bridge),
        "route into internal net: {route}"
    );

    // ssh_config's ProxyJump, and an explicit `ssh -J`.
    let cfg = std::fs::read_to_string(&lab.ssh_config).expect("ssh_config");
    assert!(
        cfg.contains(&format!(
            "Host {INTERNAL_HOST}\n  HostName {}\n  ProxyJump {JUMP_HOST}",
            inner.addr
        )),
        "{cfg}"
    );
    let (ok, out, err) = ssh(&lab, INTERNAL_HOST, &["hostname"]);
    assert!(ok, "via ProxyJump: {err}");
    assert_eq!(out.trim(), INTERNAL_HOST);
    let cfg_path = lab.ssh_config.to_string_lossy().into_owned();
    let out = Command::new("ssh")
        .args([
            "-F",
            &cfg_path,
            "-J",
            JUMP_HOST,
            &format!("root@{}", inner.addr),
            "cat",
            "/etc/hostname",
        ])
        .output()
        .expect("ssh -J");
    assert!(
        out.status.success(),
        "ssh -J: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), INTERNAL_HOST);
    // The jump host sees the internal network on eth1.
    let out = jump
        .exec(&["ip", "-j", "-4", "addr", "show", "dev", "eth1"])
        .expect("exec");
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(&jump.internal_addr.expect("addr").to_string()));
    // The inventory reaches it through the jump host too.
    let inv = std::fs::read_to_string(&lab.inventory).expect("inventory");
    assert!(inv.contains("ProxyCommand=\"ssh -W %h:%p"), "{inv}");
}

#[test]
fn same_name_from_another_folder_coexists() {
    // A lab is named by its name *and* folder (issue 13 item 0: a second `kiln lab demo` in another
    // checkout, or a test beside a lab a user left up, must not collide): same name, other folder,
    // other bridge, subnet and namespaces, both up at once.
    require_lab!();
    let spec = lab::spec("coll").with_hosts(1, &[Flavor::Debian12]);
    let first = LabGuard::up(&spec);
    let other_dir = lab::lab_dir(&format!("{}-other", spec.name));
    let other = spec.clone().with_dir(&other_dir);
    let second = Lab::up(&other);
    let result = (|| {
        let second = second.as_ref().map_err(|e| e.to_string())?;
        if second.bridge == first.0.bridge || second.subnet == first.0.subnet {
            return Err(format!(
                "both labs got bridge {} / subnet {}",
                second.bridge, second.subnet
            ));
        }
        if second.hosts[0].netns == first.0.hosts[0].netns {
            return Err(format!("both labs got netns {}", second.hosts[0].netns));
        }
        for h in [&first.0.hosts[0], &second.hosts[0]] {
            let out = h
                .exec(&["cat", "/etc/hostname"])
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("{} does not answer", h.netns));
            }
        }
        Ok(())
    })();
    let _ = down_dir(&other_dir);
    result.unwrap();
}

#[test]
fn cli_up_status_down() {
    require_lab!();
    let name = lab::unique_name("cli");
    let dir = lab::lab_dir(&name);
    let dir_s = dir.to_string_lossy().into_owned();
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let out = Command::new(kiln)
        .args([
            "lab",
            "up",
            "--name",
            &name,
            "--dir",
            &dir_s,
            "--hosts",
            "2",
            "--flavors",
            "ubuntu2204,rocky9",
        ])
        .output()
        .expect("kiln lab up");
    let guard_dir = dir.clone();
    struct Down(std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = down_dir(&self.0);
        }
    }
    let _down = Down(guard_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(kiln)
        .args(["lab", "status", "--json", "--name", &name, "--dir", &dir_s])
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let hosts = v["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["name"], "ubuntu2204-1");
    assert_eq!(hosts[1]["flavor"], "rocky9");
    assert!(hosts
        .iter()
        .all(|h| h["up"] == true && h["sshd_pid"].as_u64().is_some_and(|p| p > 1)));
    let out = Command::new(kiln)
        .args(["lab", "down", "--name", &name, "--dir", &dir_s])
        .output()
        .expect("down");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.exists());
    let out = Command::new(kiln)
        .args(["lab", "status", "--name", &name, "--dir", &dir_s])
        .output()
        .expect("status");
    assert!(
        !out.status.success(),
        "status of a lab that is down must fail"
    );
}

#[test]
fn not_root_is_a_clear_error() {
    require_lab!();
    let Some(setpriv) = lab::which("setpriv") else {
        eprintln!("SKIPPED: setpriv (util-linux) missing");
        return;
    };
    let out = Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_kiln"),
        ])
        .args([
            "lab",
            "up",
            "--name",
            "nonroot",
            "--dir",
            "/tmp/kiln-lab-nonroot-never-created",
        ])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn up_times_for_1_3_10_hosts() {
    require_lab!();
    for n in [1usize, 3, 10] {
        let spec =
            lab::spec(&format!("time{n}")).with_hosts(n, &[Flavor::Rocky9, Flavor::Ubuntu2204]);
        let t = Instant::now();
        let lab = LabGuard::up(&spec);
        let took = t.elapsed();
        eprintln!(
            "kiln lab up, {n} hosts: {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
        assert!(lab.status().iter().all(|s| s.up));
        assert!(took < Duration::from_secs(30), "{n} hosts took {took:?}");
    }
}

/// ansible-core, if this machine has it: `KILN_ANSIBLE`, the project's venv, or PATH.
fn ansible() -> Option<std::path::PathBuf> {
    std::env::var_os("KILN_ANSIBLE")
        .map(std::path::PathBuf::from)
        .or_else(|| support::ansible_tool("ansible"))
        .or_else(|| lab::which("ansible"))
}

#[test]
fn inventory_works_with_real_ansible_and_shows_the_flavors() {
    require_lab!();
    let Some(ansible) = ansible() else {
        eprintln!("SKIPPED: ansible-core not found (set KILN_ANSIBLE or pip install ansible-core)");
        return;
    };
    let lab = LabGuard::up(
        &lab::spec("ansible")
            .with_hosts(2, &[Flavor::Rocky9, Flavor::Ubuntu2204])
            .with_jump_pair(Flavor::Debian12),
    );
    let out = Command::new(&ansible)
        .arg("-i")
        .arg(&lab.inventory)
        .args([
            "lab",
            "-m",
            "setup",
            "-a",
            "filter=ansible_distribution*",
            "-o",
        ])
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("run ansible");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |host: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{host} |")))
            .unwrap_or_default()
            .to_string()
    };
    let rocky = line("rocky9-1");
    assert!(
        rocky.contains("\"ansible_distribution\": \"Rocky\"")
            && rocky.contains("\"ansible_distribution_major_version\": \"9\""),
        "{rocky}"
    );
    let ubuntu = line("ubuntu2204-2");
    assert!(
        ubuntu.contains("\"ansible_distribution\": \"Ubuntu\"")
            && ubuntu.contains("\"ansible_distribution_version\": \"22.04\""),
        "{ubuntu}"
    );
    let internal = line(INTERNAL_HOST);
    assert!(
        internal.contains("\"ansible_distribution\": \"Debian\""),
        "through the jump host: {internal}"
    );
}
