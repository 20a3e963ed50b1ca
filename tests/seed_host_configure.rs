//! Kayobe's verbs end to end on lab hosts: `kiln control host bootstrap` and
//! `kiln seed host configure` with the shipped `environments/lab`, against a Rocky Linux 9 and an
//! Ubuntu 22.04 lab host (real sshd in network namespaces), checked inside the hosts.
//!
//! - control host bootstrap makes the SSH key and the age identity (mode 0600) once, records
//!   the hosts' keys with --add-known-hosts, and reports "ok" the second time;
//! - `--check` changes nothing: no user, no bridge, no allocation written;
//! - the real run allocates addresses in inventory order into `network-allocation.yml`, creates
//!   the Kayobe user through the bootstrap user (passwordless sudo), and puts breth1 up with its
//!   address, MTU and route, persisted as a NetworkManager keyfile (Rocky) or systemd-networkd
//!   files (Ubuntu);
//! - a second run reports changed=0 everywhere.

mod lab;

use kiln::lab::Flavor;
use lab::{spec, LabGuard};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Env {
    cfg: PathBuf,
    home: PathBuf,
    lab_dir: PathBuf,
}

impl Env {
    fn kiln(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .env("HOME", &self.home)
            .env("KILN_LAB_DIR", &self.lab_dir)
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env_remove("KILN_AGE_IDENTITY")
            .arg("--config-path")
            .arg(&self.cfg)
            .args(["--environment", "lab"])
            .args(args)
            .output()
            .expect("run kiln");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Every recap in a `--format json` output: host -> changed count, plus failures.
fn recaps(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "recap")
        .map(|v| v["stats"].clone())
        .collect()
}

fn sh(h: &kiln::lab::Host, script: &str) -> (bool, String) {
    let o = h.exec(&["sh", "-c", script]).expect("exec in lab host");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn mode(h: &kiln::lab::Host, path: &str) -> String {
    sh(h, &format!("stat -c %a {path}")).1.trim().to_string()
}

#[test]
fn control_host_bootstrap_and_seed_host_configure_on_the_lab_environment() {
    require_lab!();
    let lab = LabGuard::up(&spec("shc").with_hosts(2, &[Flavor::Rocky9, Flavor::Ubuntu2204]));
    let tmp = tempfile::tempdir().unwrap();
    let env = Env {
        cfg: tmp.path().join("kayobe-config"),
        home: tmp.path().join("home"),
        lab_dir: lab.dir.clone(),
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    lab::copy_tree(
        &repo.join("environments/lab"),
        &env.cfg.join("environments/lab"),
    );
    std::fs::create_dir_all(&env.home).unwrap();
    let alloc = env.cfg.join("environments/lab/network-allocation.yml");
    let alloc_before = std::fs::read_to_string(&alloc).unwrap();

    // control host bootstrap: makes what is missing, then finds it
    let (rc, out, err) = env.kiln(&["control", "host", "bootstrap", "--add-known-hosts"]);
    assert_eq!(rc, 0, "control host bootstrap:\n{out}\n{err}");
    let key = env.home.join(".ssh/id_ed25519");
    let identity = env.home.join(".config/kiln/key.txt");
    assert!(out.contains("created  SSH key"), "{out}");
    assert!(out.contains("created  age identity"), "{out}");
    assert!(out.contains("Back this file up"), "{out}");
    for p in [&key, &identity] {
        let m = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600, "{} has mode {m:o}", p.display());
    }
    // the identity made at run time parses, and its public half is the one the file records
    let text = std::fs::read_to_string(&identity).unwrap();
    let secret = text
        .lines()
        .find(|l| !l.starts_with('#'))
        .expect("an identity line");
    let id: age::x25519::Identity = secret.trim().parse().expect("a valid age identity");
    let recorded = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("a public key comment");
    assert_eq!(id.to_public().to_string(), recorded.trim());
    assert!(
        out.contains(recorded.trim()),
        "the public key is shown:\n{out}"
    );
    let known = std::fs::read_to_string(env.home.join(".ssh/known_hosts")).unwrap();
    for h in &lab.hosts {
        assert!(known.contains(&h.addr.to_string()), "{known}");
    }
    let (rc, again, _) = env.kiln(&["control", "host", "bootstrap", "--add-known-hosts"]);
    assert_eq!(rc, 0, "{again}");
    assert!(
        again.contains("ok       SSH key") && again.contains("ok       age identity"),
        "{again}"
    );
    assert!(again.contains("already recorded"), "{again}");
    assert!(
        !again.contains("created"),
        "second bootstrap created something:\n{again}"
    );

    // --check: nothing changes anywhere
    let (rc, out, err) = env.kiln(&["seed", "host", "configure", "--check", "--format", "json"]);
    assert_eq!(rc, 0, "check run:\n{out}\n{err}");
    assert_eq!(std::fs::read_to_string(&alloc).unwrap(), alloc_before);
    for h in &lab.hosts {
        assert!(
            !sh(h, "id stack").0,
            "{}: stack exists after --check",
            h.name
        );
        assert!(
            !sh(h, "ip link show breth1").0,
            "{}: breth1 exists after --check",
            h.name
        );
    }

    // the real run
    let (rc, out, err) = env.kiln(&["seed", "host", "configure", "--format", "json"]);
    assert_eq!(rc, 0, "seed host configure:\n{out}\n{err}");
    let text = std::fs::read_to_string(&alloc).unwrap();
    assert!(
        text.starts_with("---\n# IP addresses"),
        "comment header kept:\n{text}"
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let ips = &doc["aio_ips"];
    assert_eq!(ips["rocky9-1"].as_str(), Some("192.168.33.3"), "{text}");
    assert_eq!(ips["ubuntu2204-2"].as_str(), Some("192.168.33.4"), "{text}");

    for h in &lab.hosts {
        let ip = ips[h.name.as_str()].as_str().unwrap();
        // the Kayobe user, with passwordless sudo
        assert!(sh(h, "id stack").0, "{}: no stack user", h.name);
        let (_, sudoers) = sh(h, "cat /etc/sudoers.d/kayobe-ansible-user");
        assert_eq!(sudoers, "stack ALL=(ALL) NOPASSWD: ALL\n");
        assert_eq!(mode(h, "/etc/sudoers.d/kayobe-ansible-user"), "440");
        let (_, auth) = sh(h, "cat /home/stack/.ssh/authorized_keys");
        let pubkey = std::fs::read_to_string(env.home.join(".ssh/id_ed25519.pub")).unwrap();
        assert!(
            auth.contains(pubkey.split_whitespace().nth(1).unwrap()),
            "{auth}"
        );

        // breth1, live: address, MTU, up, route
        let (ok, j) = sh(h, "ip -j addr show dev breth1");
        assert!(ok, "{}: {j}", h.name);
        let links: serde_json::Value = serde_json::from_str(&j).unwrap();
        let link = &links[0];
        assert_eq!(link["mtu"], 1500, "{j}");
        assert!(
            link["addr_info"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["local"] == ip && a["prefixlen"] == 24),
            "{}: {ip}/24 not on breth1: {j}",
            h.name
        );
        let (_, d) = sh(h, "ip -j -d link show dev breth1");
        assert!(d.contains("\"info_kind\":\"bridge\""), "{d}");
        let (_, r) = sh(h, "ip -j route show 10.233.0.0/16");
        assert!(
            r.contains("192.168.33.254") && r.contains("breth1"),
            "{}: route: {r}",
            h.name
        );

        // persisted for the host's distribution
        match h.flavor {
            Flavor::Rocky9 => {
                let (ok, f) = sh(h, "grep -l 'interface-name=breth1' /etc/NetworkManager/system-connections/*.nmconnection");
                assert!(ok, "no keyfile for breth1: {f}");
                let path = f.lines().next().unwrap().trim().to_string();
                assert_eq!(mode(h, &path), "600", "{path}");
                let (_, k) = sh(h, &format!("cat {path}"));
                assert!(k.contains("type=bridge") && k.contains("stp=false"), "{k}");
                assert!(k.contains(&format!("address1={ip}/24")), "{k}");
            }
            _ => {
                let (ok, f) = sh(h, "grep -l 'Name=breth1' /etc/systemd/network/*.netdev");
                assert!(ok, "no .netdev for breth1: {f}");
                let (_, nd) = sh(h, &format!("cat {}", f.lines().next().unwrap().trim()));
                assert!(nd.contains("Kind=bridge"), "{nd}");
                let (ok, f) = sh(h, "grep -l 'Name=breth1' /etc/systemd/network/*.network");
                assert!(ok, "no .network for breth1: {f}");
                let (_, n) = sh(h, &format!("cat {}", f.lines().next().unwrap().trim()));
                assert!(n.contains(&format!("Address={ip}/24")), "{n}");
            }
        }
    }

    // second run: nothing changes
    let (rc, out, err) = env.kiln(&["seed", "host", "configure", "--format", "json"]);
    assert_eq!(rc, 0, "second run:\n{out}\n{err}");
    let recaps = recaps(&out);
    assert_eq!(
        recaps.len(),
        2,
        "one recap for ip-allocation, one for configure:\n{out}"
    );
    for stats in &recaps {
        for h in &lab.hosts {
            let s = &stats[h.name.as_str()];
            assert_eq!(
                s["changed"], 0,
                "{}: second run changed something: {s}\n{out}",
                h.name
            );
            assert_eq!(s["failed"], 0, "{s}");
        }
    }
}

/// Brings the demo's lab down however the test ends.
struct DemoDown(PathBuf);

impl Drop for DemoDown {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .current_dir(&self.0)
            .args(["lab", "down", "--name", "demo"])
            .output();
    }
}

/// README's first command, minus the build: `kiln lab demo` in a fresh folder and HOME, twice.
#[test]
fn lab_demo_configures_both_hosts_and_a_second_run_changes_nothing() {
    require_lab!();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let _down = DemoDown(tmp.path().to_path_buf());
    let demo = || {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .current_dir(tmp.path())
            .env("HOME", &home)
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .args(["lab", "demo"])
            .output()
            .expect("run kiln lab demo");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (rc, out) = demo();
    assert_eq!(rc, 0, "{out}");
    for want in [
        "created  SSH key",
        "PLAY RECAP",
        "== what it made",
        "rocky9-1: 192.168.33.3",
        "ubuntu2204-2: 192.168.33.4",
        "breth1.nmconnection",
        "10-kiln-breth1.netdev",
        "uid=",
        "kiln lab down --name demo",
    ] {
        assert!(out.contains(want), "demo output lacks {want:?}:\n{out}");
    }
    let (rc, out) = demo();
    assert_eq!(rc, 0, "{out}");
    let recap_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("unreachable=") && l.contains("changed="))
        .collect();
    assert_eq!(recap_lines.len(), 4, "two recaps of two hosts:\n{out}");
    for l in recap_lines {
        assert!(
            l.contains("changed=0") && l.contains("failed=0"),
            "second demo run: {l}\n{out}"
        );
    }
}
