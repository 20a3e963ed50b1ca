//! The system modules (user, group, authorized_key, sysctl, mount, apt, service/systemd, hostname,
//! known_hosts, modprobe) against real lab hosts, side by side with real Ansible.
//!
//! One lab with two fresh hosts of the same flavor: kiln runs each module on `kiln_host`
//! (connecting as the lab's sudo user with become root), `/work/venv-ansible/bin/ansible` runs
//! the same module with the same arguments on `ansible_host`. For each step the test compares
//! changed/failed, the result keys that matter and the host state, then checks that a second
//! run reports `changed: false` and that check mode changes nothing.
//!
//! What cannot run here, and what the test does instead:
//! * apt has no network here: it queries installed packages (`bash`), and installs/removes a
//!   tiny package from a flat `file:` repository the test builds (dpkg-deb, dpkg-scanpackages)
//!   after pointing both hosts' apt sources at it.
//! * the lab hosts have no systemd: `systemd` must fail with kiln's clear message (Ansible fails
//!   too); `service` falls back to init scripts (`nginx` stopped: ok on both).
//! * the lab kernel has no loadable modules: `modprobe` must fail naming the kernel's refusal
//!   (with the kmod package installed; without it, kiln's "not installed" message is checked).
//! * dnf cannot run (Debian userland): its command lines are unit tests in agent/modules/dnf.rs.
//!
//! ansible.posix (sysctl, mount, authorized_key) and community.general (modprobe) come from the
//! `ansible` 10.x wheel, unpacked into `$KILN_ANSIBLE_COLLECTIONS` (default
//! /work/ansible-collections), or installed in the venv with the full `ansible` package; without
//! them those comparisons are skipped with a message, and
//! the kiln side still runs.

mod lab;
mod support;

use kiln::lab::{Flavor, Lab, SUDO_USER};
use kiln::modules::{self, Ctx};
use kiln::transport::{self, BecomeSpec, ConnSpec, HostKeyChecking, TransportOptions};
use kiln::value::{Map, Value};
use serde_json::Value as J;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

fn ansible_bin() -> PathBuf {
    support::ansible_venv().join("bin/ansible")
}

/// Where ansible.posix / community.general are: `$KILN_ANSIBLE_COLLECTIONS` (default
/// /work/ansible-collections), or inside the venv when the full `ansible` package is installed
/// there (then Ansible finds them itself and `None` is fine too).
fn collections() -> Option<PathBuf> {
    let p = support::ansible_collections();
    p.join("ansible_collections/ansible/posix")
        .is_dir()
        .then_some(p)
}

fn have_collections() -> bool {
    if collections().is_some() {
        return true;
    }
    let lib = ansible_bin()
        .parent()
        .and_then(|b| b.parent())
        .map(|v| v.join("lib"));
    std::fs::read_dir(lib.unwrap_or_default())
        .into_iter()
        .flatten()
        .flatten()
        .any(|py| {
            py.path()
                .join("site-packages/ansible_collections/ansible/posix")
                .is_dir()
        })
}

fn skip_reason() -> Option<String> {
    if let Some(r) = lab::skip_reason() {
        return Some(r);
    }
    support::no_agent().or_else(support::no_ansible)
}

fn opts() -> TransportOptions {
    TransportOptions {
        use_ssh_agent: false,
        read_user_ssh_config: false,
        ..Default::default()
    }
}

fn conn(lab: &Lab, name: &str) -> ConnSpec {
    let h = lab.host(name).expect("lab host");
    ConnSpec {
        host: name.into(),
        addr: h.addr.to_string(),
        user: Some(SUDO_USER.into()),
        key_files: vec![lab.key.clone()],
        known_hosts: vec![lab.known_hosts.clone()],
        host_key_checking: Some(HostKeyChecking::Strict),
        become_: Some(BecomeSpec::sudo("root")),
        ..ConnSpec::new(name)
    }
}

struct T<'a> {
    lab: &'a Lab,
    ctx: Ctx,
    kh: String,
    ah: String,
}

fn yaml_map(y: &str) -> Map {
    kiln::yaml::load(y, "test")
        .unwrap()
        .as_map()
        .cloned()
        .unwrap_or_default()
}

fn to_json(m: &Map) -> J {
    Value::Map(m.clone()).to_json(true)
}

impl T<'_> {
    /// kiln: the module's result dict as JSON.
    async fn kiln(&self, module: &str, args: &str, check: bool) -> J {
        let m = modules::lookup(module).unwrap_or_else(|| panic!("module {module} registered"));
        let ctx = Ctx {
            check,
            diff: true,
            ..self.ctx.clone()
        };
        match m.run(&yaml_map(args), &ctx).await {
            Ok(Some(o)) => to_json(&o.to_map()),
            Ok(None) => serde_json::json!({"skipped": true}),
            Err(e) => {
                serde_json::json!({"failed": true, "msg": e.to_string(), "module_error": true})
            }
        }
    }

    /// Ansible: the same module and arguments (given as YAML, passed as JSON) on the other host.
    fn ansible(&self, module: &str, args: &str, check: bool) -> J {
        let a = to_json(&yaml_map(args)).to_string();
        let mut c = Command::new(ansible_bin());
        c.arg(&self.ah)
            .arg("-i")
            .arg(&self.lab.inventory)
            .args(["-m", module, "-a", &a, "--one-line"])
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_NOCOLOR", "1")
            .env(
                "ANSIBLE_LOCAL_TEMP",
                std::env::temp_dir().join("kiln-ansible-tmp"),
            );
        if let Some(p) = collections() {
            c.env("ANSIBLE_COLLECTIONS_PATH", p);
        }
        if check {
            c.arg("--check");
        }
        let out = c.output().expect("run ansible");
        let stdout = String::from_utf8_lossy(&out.stdout);
        // `HOST | CHANGED => {...}`, `HOST | FAILED! => {...}` (the JSON has no `failed` key)
        let (status, json) = stdout
            .lines()
            .find_map(|l| {
                l.split_once(" => ")
                    .map(|(s, j)| (s.to_string(), j.to_string()))
            })
            .unwrap_or_else(|| {
                panic!(
                    "ansible {module} {a}: no result line\nstdout: {stdout}\nstderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let mut j: J =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("ansible output {json}: {e}"));
        if status.contains("FAILED") {
            j["failed"] = J::Bool(true);
        }
        j
    }

    fn sh(&self, host: &str, cmd: &str) -> String {
        let o = self
            .lab
            .host(host)
            .unwrap()
            .exec(&["sh", "-c", cmd])
            .expect("exec in lab host");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run on both; compare changed/failed and `keys`; return (kiln, ansible).
    async fn both(&self, module: &str, args: &str, keys: &[&str]) -> (J, J) {
        let k = self.kiln(module, args, false).await;
        let a = self.ansible(module, args, false);
        let flag = |j: &J, f: &str| j.get(f).and_then(J::as_bool).unwrap_or(false);
        assert_eq!(
            (flag(&k, "changed"), flag(&k, "failed")),
            (flag(&a, "changed"), flag(&a, "failed")),
            "{module} {args}: changed/failed differ\nkiln: {k}\nansible: {a}"
        );
        for key in keys {
            assert_eq!(
                k.get(key),
                a.get(key),
                "{module} {args}: key {key}\nkiln: {k}\nansible: {a}"
            );
        }
        (k, a)
    }

    /// Both hosts give the same output for a shell command (host-state comparison).
    fn same_state(&self, cmd: &str) -> String {
        let (k, a) = (self.sh(&self.kh, cmd), self.sh(&self.ah, cmd));
        assert_eq!(k, a, "host state differs for `{cmd}`");
        k
    }
}

fn changed(j: &J) -> bool {
    j.get("changed").and_then(J::as_bool).unwrap_or(false)
}
fn failed(j: &J) -> bool {
    j.get("failed").and_then(J::as_bool).unwrap_or(false)
}

#[test]
fn system_modules_against_ansible() {
    if let Some(r) = skip_reason() {
        eprintln!("SKIPPED modules_system: {r}");
        return;
    }
    // a local apt repository with one tiny package, made before the lab hosts start (their
    // root is an overlay of this machine's): lets apt install and remove for real, offline
    let repo = tempfile::Builder::new()
        .prefix("kiln-apt-repo-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let repo_ok = make_apt_repo(repo.path());
    let spec = lab::spec("ksys").with_hosts(2, &[Flavor::Debian12]);
    let guard = lab::LabGuard::up(&spec);
    let lab: &Lab = &guard;
    let names: Vec<String> = lab.hosts.iter().map(|h| h.name.clone()).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = transport::connect(&conn(lab, &names[0]), &opts())
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let ctx = Ctx {
            host: names[0].clone(),
            session: Arc::new(session),
            check: false,
            diff: false,
            env: vec![],
            search: vec![],
            facts: Arc::new(Map::new()),
            progress: kiln::modules::progress::Progress::none(),
        };
        let t = T {
            lab,
            ctx,
            kh: names[0].clone(),
            ah: names[1].clone(),
        };
        scenario(&t).await;
        match &repo_ok {
            Ok(()) => apt_install_remove(&t, repo.path()).await,
            Err(why) => eprintln!("NOTE: apt install/remove not tested: {why}"),
        }
    });
}

async fn scenario(t: &T<'_>) {
    let posix = have_collections();
    if !posix {
        eprintln!("NOTE: ansible.posix/community.general not found (KILN_ANSIBLE_COLLECTIONS): sysctl, mount, authorized_key, modprobe run on kiln only");
    }

    // -- group
    let g = "name: kgrp\ngid: 2345";
    let k = t.kiln("group", g, true).await;
    assert!(
        changed(&k) && t.sh(&t.kh, "getent group kgrp").is_empty(),
        "check mode created the group: {k}"
    );
    t.both("group", g, &["gid", "name", "state", "system"])
        .await;
    t.same_state("getent group kgrp");
    let (k, _) = t
        .both("group", g, &["gid", "name", "state", "system"])
        .await;
    assert!(!changed(&k), "second group run: {k}");
    t.both("group", "name: kgrp\ngid: 2346", &["gid"]).await;
    t.same_state("getent group kgrp");

    // -- user
    let u = "name: kuser\nuid: 2345\ngroups: [kgrp]\nshell: /bin/bash\ncomment: Kiln Test";
    let k = t.kiln("user", u, true).await;
    assert!(
        changed(&k) && t.sh(&t.kh, "getent passwd kuser").is_empty(),
        "check mode: {k}"
    );
    let keys = [
        "name",
        "uid",
        "group",
        "home",
        "shell",
        "state",
        "system",
        "create_home",
        "comment",
        "groups",
    ];
    t.both("user", u, &keys).await;
    t.same_state("getent passwd kuser; id kuser; stat -c '%U %a' /home/kuser");
    let (k, _) = t
        .both(
            "user",
            u,
            &[
                "name",
                "uid",
                "group",
                "home",
                "shell",
                "state",
                "append",
                "move_home",
            ],
        )
        .await;
    assert!(!changed(&k), "second user run: {k}");
    let u2 = "name: kuser\nshell: /bin/sh\ngroups: [sudo]\nappend: yes";
    let k = t.kiln("user", u2, true).await;
    assert!(
        changed(&k) && t.sh(&t.kh, "getent passwd kuser").contains("/bin/bash"),
        "check mode changed the user: {k}"
    );
    t.both("user", u2, &["shell", "groups", "append"]).await;
    t.same_state("getent passwd kuser; id kuser");
    let (k, _) = t.both("user", u2, &["shell"]).await;
    assert!(!changed(&k));
    t.both(
        "user",
        "name: kpw\npassword: '$6$salt$abcdefghijklmnop'\ncreate_home: no\nsystem: yes",
        &["password", "system", "create_home", "home"],
    )
    .await;
    t.same_state("getent shadow kpw | cut -d: -f1,2; getent passwd kpw | cut -d: -f1,4-");

    // -- authorized_key (user kuser exists on both)
    let key1 =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkilnkilnkilnkilnkilnkilnkilnkilnkilnkiln one@kiln";
    let key2 =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtwotwotwotwotwotwotwotwotwotwotwotwotwo two@kiln";
    let ak = format!("user: kuser\nkey: '{key1}'");
    let files = "stat -c '%n %a %U %G' /home/kuser/.ssh /home/kuser/.ssh/authorized_keys; cat /home/kuser/.ssh/authorized_keys";
    let k = t.kiln("authorized_key", &ak, true).await;
    assert!(
        changed(&k)
            && t.sh(&t.kh, "ls /home/kuser/.ssh 2>&1")
                .contains("No such file"),
        "check mode: {k}"
    );
    let akeys = ["user", "key", "keyfile", "exclusive", "manage_dir", "state"];
    if posix {
        t.both("authorized_key", &ak, &akeys).await;
        t.same_state(files);
        let (k, _) = t.both("authorized_key", &ak, &akeys).await;
        assert!(!changed(&k));
        let ex = format!("user: kuser\nkey: '{key2}'\nexclusive: yes");
        t.both("authorized_key", &ex, &akeys).await;
        t.same_state(files);
        t.both(
            "authorized_key",
            &format!("user: kuser\nkey: '{key2}'\nstate: absent"),
            &akeys,
        )
        .await;
        t.same_state(files);
    } else {
        assert!(changed(&t.kiln("authorized_key", &ak, false).await));
        assert!(!changed(&t.kiln("authorized_key", &ak, false).await));
        assert_eq!(
            t.sh(&t.kh, files),
            format!("/home/kuser/.ssh 700 kuser kuser\n/home/kuser/.ssh/authorized_keys 600 kuser kuser\n{key1}\n")
        );
    }

    // -- user removal
    let k = t
        .kiln("user", "name: kuser\nstate: absent\nremove: yes", true)
        .await;
    assert!(changed(&k) && !t.sh(&t.kh, "getent passwd kuser").is_empty());
    t.both(
        "user",
        "name: kuser\nstate: absent\nremove: yes",
        &["name", "state", "force", "remove"],
    )
    .await;
    t.same_state("getent passwd kuser; ls -d /home/kuser 2>&1 | sed 's/.*: //'");
    let (k, _) = t
        .both("user", "name: kuser\nstate: absent", &["name", "state"])
        .await;
    assert!(!changed(&k));
    t.both("group", "name: kgrp\nstate: absent", &["name", "state"])
        .await;
    t.same_state("getent group kgrp");

    // -- sysctl: a network-namespace key, in its own file (reload applies only that file)
    let sc = "name: net.ipv4.ip_forward\nvalue: '1'\nsysctl_set: yes\nsysctl_file: /etc/sysctl.d/90-kiln-test.conf";
    let state = "cat /etc/sysctl.d/90-kiln-test.conf 2>&1 | sed 's/.*: //'; cat /proc/sys/net/ipv4/ip_forward";
    let before = t.sh(&t.kh, state);
    let k = t.kiln("sysctl", sc, true).await;
    assert!(
        changed(&k) && t.sh(&t.kh, state) == before,
        "check mode: {k}"
    );
    if posix {
        t.both("sysctl", sc, &[]).await;
        assert_eq!(t.same_state(state), "net.ipv4.ip_forward=1\n1\n");
        let (k, _) = t.both("sysctl", sc, &[]).await;
        assert!(!changed(&k));
        let off = "name: net.ipv4.ip_forward\nstate: absent\nsysctl_file: /etc/sysctl.d/90-kiln-test.conf";
        t.both("sysctl", off, &[]).await;
        t.same_state(state);
    } else {
        assert!(changed(&t.kiln("sysctl", sc, false).await));
        assert_eq!(t.sh(&t.kh, state), "net.ipv4.ip_forward=1\n1\n");
        assert!(!changed(&t.kiln("sysctl", sc, false).await));
    }

    // -- mount: fstab entries only (present/absent); mounting needs devices the lab lacks
    let mp =
        "path: /mnt/kiln data\nsrc: /dev/kiln-none\nfstype: ext4\nopts: noatime\nstate: present";
    let k = t.kiln("mount", mp, true).await;
    assert!(
        changed(&k) && !t.sh(&t.kh, "cat /etc/fstab").contains("kiln-none"),
        "check mode: {k}"
    );
    let mkeys = [
        "name", "src", "fstype", "opts", "dump", "passno", "fstab", "boot",
    ];
    if posix {
        t.both("mount", mp, &mkeys).await;
        let f = t.same_state("cat /etc/fstab");
        assert!(
            f.contains("/dev/kiln-none /mnt/kiln\\040data ext4 noatime 0 0\n"),
            "{f}"
        );
        let (k, _) = t.both("mount", mp, &mkeys).await;
        assert!(!changed(&k));
        let ma = "path: /mnt/kiln data\nstate: absent";
        t.both("mount", ma, &["name", "fstab"]).await;
        t.same_state("cat /etc/fstab");
        let (k, _) = t.both("mount", ma, &["name"]).await;
        assert!(!changed(&k));
    } else {
        assert!(changed(&t.kiln("mount", mp, false).await));
        assert!(!changed(&t.kiln("mount", mp, false).await));
        assert!(changed(
            &t.kiln("mount", "path: /mnt/kiln data\nstate: absent", false)
                .await
        ));
    }

    // -- mount for real: tmpfs (each lab host has its own mount namespace)
    if posix {
        let mstate = "grep ' /mnt/kiln-tmp ' /proc/self/mounts | cut -d' ' -f1-4; grep kiln-tmp /etc/fstab; ls -d /mnt/kiln-tmp 2>&1 | sed 's/.*: //'";
        let mt = "path: /mnt/kiln-tmp\nsrc: tmpfs\nfstype: tmpfs\nopts: size=1m\nstate: mounted";
        let before = t.sh(&t.kh, mstate);
        let k = t.kiln("mount", mt, true).await;
        assert!(
            changed(&k) && t.sh(&t.kh, mstate) == before,
            "check mode mounted: {k}"
        );
        t.both("mount", mt, &mkeys).await;
        let st = t.same_state(mstate);
        assert!(
            st.starts_with("tmpfs /mnt/kiln-tmp tmpfs rw,relatime,size=1024k"),
            "{st}"
        );
        let (k, _) = t.both("mount", mt, &mkeys).await;
        assert!(!changed(&k), "second mount: {k}");
        // new options: fstab rewritten and the mount remounted
        let mt2 = mt.replace("size=1m", "size=2m");
        t.both("mount", &mt2, &mkeys).await;
        let st = t.same_state(mstate);
        assert!(st.contains("size=2048k"), "{st}");
        let um = "path: /mnt/kiln-tmp\nstate: unmounted";
        t.both("mount", um, &["name"]).await;
        t.same_state(mstate);
        let (k, _) = t.both("mount", um, &["name"]).await;
        assert!(!changed(&k));
        let ab = "path: /mnt/kiln-tmp\nstate: absent";
        t.both("mount", ab, &["name"]).await;
        t.same_state(mstate);
    }

    // -- apt: query only (no network here to install or remove anything)
    let (k, _) = t
        .both(
            "apt",
            "name: bash\nstate: present",
            &["cache_updated", "cache_update_time"],
        )
        .await;
    assert!(!changed(&k) && !failed(&k), "bash is installed: {k}");
    let (k, _) = t
        .both("apt", "name: kiln-no-such-package\nstate: absent", &[])
        .await;
    assert!(!changed(&k), "{k}");
    let k = t.kiln("package", "name: bash\nstate: present", false).await;
    assert!(!changed(&k) && !failed(&k), "package → apt: {k}");

    // -- systemd: no systemd in the lab: both fail; kiln says why
    let (k, _) = t.both("systemd", "name: ssh\nstate: started", &[]).await;
    let msg = k.get("msg").and_then(J::as_str).unwrap_or("");
    assert!(msg.contains("systemd is not running on this host"), "{k}");
    // -- service: falls back to init scripts; nginx is installed and not running
    let (k, _) = t
        .both("service", "name: nginx\nstate: stopped", &["name", "state"])
        .await;
    assert!(!changed(&k) && !failed(&k), "{k}");
    // enabled: the S??nginx links in /etc/rc?.d (update-rc.d), on both
    let links = "ls /etc/rc?.d | grep nginx | sort";
    for en in ["no", "yes"] {
        let sv = format!("name: nginx\nenabled: {en}");
        let before = t.sh(&t.kh, links);
        let k = t.kiln("service", &sv, true).await;
        assert_eq!(t.sh(&t.kh, links), before, "check mode changed links: {k}");
        t.both("service", &sv, &["name", "enabled"]).await;
        t.same_state(links);
        let (k, _) = t.both("service", &sv, &["name", "enabled"]).await;
        assert!(!changed(&k), "second run: {k}");
    }
    // package picks dnf from the pkg_mgr fact: dnf is missing on Debian, and kiln says so
    let mut facts = Map::new();
    facts.insert("pkg_mgr".into(), Value::Str("dnf".into()));
    let ctx = Ctx {
        facts: Arc::new(facts),
        progress: kiln::modules::progress::Progress::none(),
        ..t.ctx.clone()
    };
    let o = modules::lookup("package")
        .unwrap()
        .run(&yaml_map("name: bash"), &ctx)
        .await;
    let o = o.expect("package").expect("outcome");
    assert!(
        o.failed
            && o.msg
                .as_deref()
                .unwrap_or("")
                .contains("dnf is not on this host"),
        "{:?}",
        o.msg
    );

    // -- hostname: the lab hosts have their own UTS namespace and no systemd: both kiln and
    // Ansible write /etc/hostname there; kiln also sets the running name (`hostname NAME`),
    // which Ansible's file strategy leaves alone (a deliberate difference).
    let hn = "name: kiln-renamed.lab.test";
    let before = t.sh(&t.kh, "hostname; cat /etc/hostname");
    let k = t.kiln("hostname", hn, true).await;
    assert!(
        changed(&k) && t.sh(&t.kh, "hostname; cat /etc/hostname") == before,
        "check mode: {k}"
    );
    let (k, a) = t.both("hostname", hn, &["name"]).await;
    for f in ["ansible_hostname", "ansible_nodename"] {
        assert_eq!(k["ansible_facts"][f], a["ansible_facts"][f], "{f}");
    }
    assert_eq!(k["ansible_facts"]["ansible_hostname"], "kiln-renamed");
    assert_eq!(k["diff"]["after"], "hostname = kiln-renamed.lab.test\n");
    assert_eq!(t.same_state("cat /etc/hostname"), "kiln-renamed.lab.test\n");
    assert_eq!(t.sh(&t.kh, "hostname"), "kiln-renamed.lab.test\n");
    let (k, _) = t.both("hostname", hn, &["name"]).await;
    assert!(!changed(&k));

    // -- known_hosts
    let kh = "name: git.example.test\nkey: 'git.example.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBkilnkilnkilnkilnkilnkilnkilnkilnkilnkiln'\npath: /root/kiln_known_hosts";
    let k = t.kiln("known_hosts", kh, true).await;
    assert!(
        changed(&k)
            && t.sh(&t.kh, "ls /root/kiln_known_hosts 2>&1")
                .contains("No such file"),
        "check mode: {k}"
    );
    t.both(
        "known_hosts",
        kh,
        &[
            "name",
            "key",
            "path",
            "hash_host",
            "state",
            "mode",
            "owner",
            "size",
        ],
    )
    .await;
    t.same_state("cat /root/kiln_known_hosts");
    let (k, _) = t.both("known_hosts", kh, &["name", "path"]).await;
    assert!(!changed(&k));
    let kh2 = kh.replace("kilnkilnkilnkiln'", "kilnkilnkilnkilX'");
    t.both("known_hosts", &kh2, &["name"]).await;
    t.same_state("cat /root/kiln_known_hosts");
    t.both(
        "known_hosts",
        "name: git.example.test\nstate: absent\npath: /root/kiln_known_hosts",
        &["name", "state"],
    )
    .await;
    t.same_state("cat /root/kiln_known_hosts");

    // -- modprobe: the lab kernel has no loadable modules; kiln must say so clearly
    let k = t
        .kiln("modprobe", "name: dummy\nstate: present", false)
        .await;
    assert!(failed(&k), "{k}");
    let msg = k["msg"].as_str().unwrap_or("");
    if lab::which("modprobe").is_some() {
        assert!(
            msg.contains("Module dummy not found") && msg.contains("no loadable module"),
            "modprobe failure should give the kernel's refusal and say what it means: {msg}"
        );
    } else {
        eprintln!("NOTE: modprobe (package kmod) is not installed: checking the 'not installed' failure only");
        assert!(msg.contains("modprobe is not installed"), "{msg}");
    }
    if posix {
        let a = t.ansible("modprobe", "name: dummy\nstate: present", false);
        assert!(failed(&a), "ansible's modprobe should fail here too: {a}");
    }
    let k = t
        .kiln("modprobe", "name: kiln_not_loaded\nstate: absent", false)
        .await;
    assert!(!changed(&k) && !failed(&k), "absent module: {k}");
}

/// A flat apt repository (`deb [trusted=yes] file:DIR ./`) holding `kiln-test-pkg` 1.0.
fn make_apt_repo(dir: &std::path::Path) -> Result<(), String> {
    for tool in ["dpkg-deb", "dpkg-scanpackages"] {
        if lab::which(tool).is_none() {
            return Err(format!("{tool} is missing (packages dpkg, dpkg-dev)"));
        }
    }
    let pkg = dir.join("build");
    std::fs::create_dir_all(pkg.join("DEBIAN")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(pkg.join("usr/share/kiln-test-pkg")).map_err(|e| e.to_string())?;
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: kiln-test-pkg\nVersion: 1.0\nArchitecture: all\nMaintainer: kiln <kiln@example.test>\nDescription: kiln apt module test package\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(pkg.join("usr/share/kiln-test-pkg/hello"), "hello\n")
        .map_err(|e| e.to_string())?;
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).map_err(|e| e.to_string())?;
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(repo.join("kiln-test-pkg_1.0_all.deb"))
        .output()
        .map_err(|e| e.to_string())?;
    if !st.status.success() {
        return Err(format!("dpkg-deb: {}", String::from_utf8_lossy(&st.stderr)));
    }
    let out = Command::new("dpkg-scanpackages")
        .args([".", "/dev/null"])
        .current_dir(&repo)
        .output()
        .map_err(|e| e.to_string())?;
    std::fs::write(repo.join("Packages"), &out.stdout).map_err(|e| e.to_string())?;
    // the lab hosts' apt (user _apt) must be able to read it
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir).status();
    Ok(())
}

/// apt installs and removes for real from the local repository, on both hosts.
async fn apt_install_remove(t: &T<'_>, dir: &std::path::Path) {
    let repo = dir.join("repo");
    let setup = format!(
        "mkdir -p /etc/apt/kiln-off && mv /etc/apt/sources.list.d/* /etc/apt/kiln-off/ 2>/dev/null; \
         mv /etc/apt/sources.list /etc/apt/kiln-off/ 2>/dev/null; \
         echo 'deb [trusted=yes] file:{} ./' > /etc/apt/sources.list.d/kiln-test.list",
        repo.display()
    );
    for h in [&t.kh, &t.ah] {
        t.sh(h, &setup);
    }
    let state = "dpkg-query -W -f '${Status} ${Version}\\n' kiln-test-pkg 2>&1; cat /usr/share/kiln-test-pkg/hello 2>&1 | sed 's/.*: //'";
    let before = t.sh(&t.kh, state);
    let inst = "name: kiln-test-pkg\nupdate_cache: yes";
    let k = t.kiln("apt", inst, true).await;
    assert!(
        changed(&k) && t.sh(&t.kh, state) == before,
        "check mode installed: {k}"
    );
    let (k, _) = t.both("apt", inst, &[]).await;
    assert!(changed(&k) && !failed(&k), "{k}");
    assert!(
        k["stdout"].as_str().unwrap_or("").contains("kiln-test-pkg"),
        "{k}"
    );
    assert_eq!(t.same_state(state), "install ok installed 1.0\nhello\n");
    let (k, _) = t
        .both("apt", "name: kiln-test-pkg", &["cache_updated"])
        .await;
    assert!(!changed(&k), "second install: {k}");
    let (k, _) = t
        .both(
            "apt",
            "name: kiln-test-pkg\nstate: latest",
            &["cache_updated"],
        )
        .await;
    assert!(!changed(&k), "latest, already at the candidate: {k}");
    let rm = "name: kiln-test-pkg\nstate: absent\npurge: yes";
    let k = t.kiln("apt", rm, true).await;
    assert!(
        changed(&k) && t.sh(&t.kh, state).starts_with("install ok installed"),
        "check mode removed: {k}"
    );
    let (k, _) = t.both("apt", rm, &[]).await;
    assert!(changed(&k), "{k}");
    t.same_state(state);
    let (k, _) = t.both("apt", rm, &[]).await;
    assert!(!changed(&k), "second removal: {k}");
}
