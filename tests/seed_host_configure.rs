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

/// Brings the demo's lab down however the test ends (hosts, and the lab services the demo
/// recorded: fake Pulp, registry, the proxy container), and removes the images the demo built
/// from this machine's podman storage.
struct DemoDown(PathBuf);

impl Drop for DemoDown {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .current_dir(&self.0)
            .args(["lab", "down", "--name", "demo"])
            .output();
        let _ = Command::new("sh")
            .arg("-c")
            .arg("podman images --format '{{.Repository}}:{{.Tag}}' | grep '/kiln-lab/' | xargs -r podman rmi -f >/dev/null 2>&1")
            .status();
    }
}

fn kolla_venv() -> PathBuf {
    std::env::var_os("KILN_KOLLA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-kolla"))
}

/// Every form a secret travels in that a leak would show (plain, base64 of `user:password`,
/// URL-encoded).
fn leak_forms(user: &str, password: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        password.to_string(),
        b64.encode(format!("{user}:{password}")),
        b64.encode(password),
        form_urlencoded::byte_serialize(password.as_bytes()).collect(),
    ]
}

/// README's first command: `kiln lab demo` in a fresh folder and HOME, twice, and the image
/// pipeline it runs (issue 16 items 5 and 6):
///
/// - the hosts are configured, a second run changes nothing on them (changed=0) and does not build;
/// - the Pulp auth proxy was used: the fake Pulp's access log shows each image's file fetched with
///   the vault's Pulp user (the proxy added the credentials);
/// - each digest of the build record equals what the registry serves for the reference;
/// - kolla-image-tags.yml (the lab's copy) points the pushed images at the new tag;
/// - no secret in any output, in the record, or in any blob the registry stores (searched
///   independently here, on the registry's disk);
/// - the credential check of pushed layers: an image with a planted credential, pushed through
///   the same publish playbook, fails the run naming the image, the layer and the file, and its
///   record says so (the demo's own images are the clean case: their record says clean).
///
/// It reuses the demo's lab, registry and base image cache; kolla from `tests/setup`
/// (`.venv-kolla`, or KILN_KOLLA_VENV).
#[test]
fn lab_demo_runs_the_mission_and_a_second_run_changes_nothing() {
    require_lab!();
    if !kolla_venv().join("bin/kolla-build").exists() {
        eprintln!(
            "SKIP: kolla is not installed in {} (tests/setup installs it)",
            kolla_venv().display()
        );
        return;
    }
    for tool in [
        "podman",
        "runc",
        "nginx",
        "htpasswd",
        "docker-registry",
        "curl",
    ] {
        if lab::which(tool).is_none() {
            eprintln!("SKIP: {tool} missing (tests/setup installs it)");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let _down = DemoDown(tmp.path().to_path_buf());
    let kiln = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .current_dir(tmp.path())
            .env("HOME", &home)
            .env("KILN_KOLLA_VENV", kolla_venv())
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env_remove("KILN_AGE_IDENTITY")
            .args(args)
            .output()
            .expect("run kiln");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let t = std::time::Instant::now();
    let (rc, out) = kiln(&["lab", "demo"]);
    let first = t.elapsed().as_secs_f64();
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
        "vault: created",
        "Deploy Pulp auth proxy",
        "INFO:kolla.common.utils",
        "credentials in pushed layers: clean",
        "IMAGE      DIGEST",
        "kolla-image-tags.yml (after)",
        "`--rebuild` builds and pushes again",
        "kiln lab down --name demo",
    ] {
        assert!(out.contains(want), "demo output lacks {want:?}:\n{out}");
    }
    let lab_dir = tmp.path().join(".kiln-lab/demo");
    let cfg = lab_dir.join("kayobe-config");
    let env_dir = cfg.join("environments/lab");

    // the vault's credentials, read back with kiln itself (with the identity `control host
    // bootstrap` made, read by default)
    let (rc, secrets) = kiln(&[
        "--config-path",
        cfg.to_str().unwrap(),
        "--environment",
        "lab",
        "vault",
        "view",
        env_dir.join("secrets.yml.age").to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{secrets}");
    let secrets: serde_yaml::Value = serde_yaml::from_str(&secrets).expect("the vault's YAML");
    let field = |k: &str| {
        secrets[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} in the vault"))
            .to_string()
    };
    let (pulp_user, pulp_pw) = (
        field("stackhpc_repo_mirror_username"),
        field("stackhpc_repo_mirror_password"),
    );
    let (reg_user, reg_pw) = (
        field("kolla_docker_registry_username"),
        field("kolla_docker_registry_password"),
    );
    let mut needles = leak_forms(&pulp_user, &pulp_pw);
    needles.extend(leak_forms(&reg_user, &reg_pw));
    let gateway = std::fs::read_to_string(env_dir.join("lab-gateway.yml")).unwrap();
    let gateway = gateway
        .lines()
        .find_map(|l| l.strip_prefix("kiln_lab_gateway: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let pulp_url = format!("http://{gateway}:18610");

    // the proxy was used: the fake Pulp saw each image's file fetched as the vault's user
    let access = std::fs::read_to_string(lab_dir.join("services/pulp/access.log")).unwrap();
    for f in ["release.txt", "crontab", "memcached.conf"] {
        assert!(
            access.contains(&format!("{pulp_user} /pulp/content/lab/{f} 200")),
            "the fake Pulp did not serve {f} through the proxy:\n{access}"
        );
    }

    // the record's digests are the registry's
    // (beside each record, `<tag>/<host>/` holds kolla's fetched summary and logs)
    let records: Vec<PathBuf> = std::fs::read_dir(cfg.join("kiln/builds"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let tag_dir = records[0].with_extension("");
    assert!(
        tag_dir.join("lab-builder/summary.json").is_file(),
        "kolla's summary was not fetched into {}",
        tag_dir.display()
    );
    let rec_text = std::fs::read_to_string(&records[0]).unwrap();
    let rec: serde_json::Value = serde_json::from_str(&rec_text).unwrap();
    let tag = rec["tag"].as_str().unwrap().to_string();
    assert!(out.contains(&format!("tag:    {tag}")), "{out}");
    assert_eq!(rec["credential_check"]["status"], "clean", "{rec}");
    let netrc = tmp.path().join("netrc");
    std::fs::write(
        &netrc,
        format!("machine {gateway} login {reg_user} password {reg_pw}\n"),
    )
    .unwrap();
    let images = rec["images"].as_array().unwrap();
    let mut names: Vec<&str> = images.iter().map(|i| i["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["base", "cron", "memcached"], "{rec}");
    for i in images {
        let name = i["name"].as_str().unwrap();
        let digest = i["digest"].as_str().unwrap();
        let o = Command::new("curl")
            .args(["-sfI", "--netrc-file"])
            .arg(&netrc)
            .args([
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
            ])
            .arg(format!(
                "http://{gateway}:18620/v2/kiln-lab/{name}/manifests/{tag}"
            ))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&o.stdout).to_lowercase();
        assert!(
            head.contains(&format!("docker-content-digest: {digest}")),
            "{name}: record {digest} vs registry:\n{head}"
        );
        assert!(out.contains(digest), "the table shows {digest}:\n{out}");
    }

    // kolla-image-tags.yml: the pushed images point at the new tag, the rest kept
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("environments/lab/kolla-image-tags.yml"),
    )
    .unwrap();
    let tags = std::fs::read_to_string(env_dir.join("kolla-image-tags.yml")).unwrap();
    assert_ne!(tags, shipped);
    let doc: serde_yaml::Value = serde_yaml::from_str(&tags).unwrap();
    assert_eq!(
        doc["kolla_image_tags"]["openstack"]["rocky-9"].as_str(),
        Some(tag.as_str())
    );
    assert_eq!(
        doc["kolla_image_tags"]["memcached"]["rocky-9"].as_str(),
        Some(tag.as_str())
    );
    assert_eq!(
        doc["kolla_image_tags"]["openstack"]["ubuntu-jammy"].as_str(),
        Some("2024.1-ubuntu-jammy-20240101T000000")
    );
    assert!(
        tags.contains("# the default for every container"),
        "comments kept:\n{tags}"
    );

    // no secret in the output, the record, or any blob the registry stores
    for n in &needles {
        assert!(
            !out.contains(n.as_str()),
            "a secret form is in the demo's output"
        );
        assert!(
            !rec_text.contains(n.as_str()),
            "a secret form is in the record"
        );
    }
    let pats = tmp.path().join("patterns");
    std::fs::write(&pats, format!("{}\n{pulp_url}\n", needles.join("\n"))).unwrap();
    let o = Command::new("sh")
        .arg("-c")
        .arg(
            "n=0; for f in $(find \"$1\" -type f -name data -path '*/blobs/*'); do n=$((n+1)); \
             if (zcat -f \"$f\" 2>/dev/null || cat \"$f\") | grep -a -F -q -f \"$2\"; then echo \"LEAK $f\"; fi; done; echo \"blobs $n\"",
        )
        .arg("sh")
        .arg(lab_dir.join("services/registry/data"))
        .arg(&pats)
        .output()
        .unwrap();
    let scan = String::from_utf8_lossy(&o.stdout);
    assert!(!scan.contains("LEAK"), "{scan}");
    let blobs: usize = scan
        .lines()
        .find_map(|l| l.strip_prefix("blobs "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(blobs >= 7, "the registry's blobs were searched: {scan}");

    // a credential planted in an image is caught in the pushed layers: an image holding the
    // Pulp password and a basic-auth header, pushed through the same publish playbook
    {
        use base64::Engine as _;
        let root = tmp.path().join("leak-root/etc");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join("pip.conf"),
            format!("[global]\nindex-url = {pulp_url}/pypi\n"),
        )
        .unwrap();
        std::fs::write(
            root.join("apt-auth"),
            format!(
                "Authorization: Basic {}\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{pulp_user}:{pulp_pw}"))
            ),
        )
        .unwrap();
        let o = Command::new("sh")
            .arg("-ec")
            .arg("tar -C \"$1\" -cf \"$1.tar\" . && podman import -q \"$1.tar\" \"$2\" >/dev/null")
            .arg("sh")
            .arg(tmp.path().join("leak-root"))
            .arg(format!("{gateway}:18620/kiln-lab/dm-leak:dmleak"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let leak_record = tmp.path().join("leak-record.json");
        let (rc, lout) = kiln(&[
            "--config-path",
            cfg.to_str().unwrap(),
            "--environment",
            "lab",
            "playbook",
            "run",
            "container-image-publish.yml",
            "-l",
            "lab-builder",
            "-e",
            &serde_json::json!({
                "kiln_publish_images": ["dm-leak"],
                "kolla_tag": "dmleak",
                "kiln_update_tags": false,
                "kiln_build_record": leak_record.display().to_string(),
                "kiln_push_failed_list": tmp.path().join("leak-failed.txt").display().to_string(),
            })
            .to_string(),
        ]);
        assert_ne!(rc, 0, "a planted credential must fail the run:\n{lout}");
        for want in [
            "credential found in pushed image",
            "kiln-lab/dm-leak:dmleak",
            "stackhpc_repo_mirror_username:stackhpc_repo_mirror_password (base64) in /etc/apt-auth",
            "stackhpc_release_pulp_url (plain) in /etc/pip.conf",
            "of layer sha256:",
        ] {
            assert!(lout.contains(want), "the failure lacks {want:?}:\n{lout}");
        }
        let lrec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&leak_record).unwrap()).unwrap();
        assert_eq!(lrec["credential_check"]["status"], "found", "{lrec}");
        assert_eq!(lrec["images"][0]["status"], "credential-found", "{lrec}");
        let lrec_text = lrec.to_string();
        for n in &needles {
            assert!(
                !lout.contains(n.as_str()),
                "a secret form is in the failure's output"
            );
            assert!(
                !lrec_text.contains(n.as_str()),
                "a secret form is in the leak record"
            );
        }
        // the tags file was not touched by the failed run
        assert_eq!(
            std::fs::read_to_string(env_dir.join("kolla-image-tags.yml")).unwrap(),
            tags
        );
    }

    // second run: nothing changes on any host, nothing is built
    let t = std::time::Instant::now();
    let (rc, out) = kiln(&["lab", "demo"]);
    let second = t.elapsed().as_secs_f64();
    assert_eq!(rc, 0, "{out}");
    let recap_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("unreachable=") && l.contains("changed="))
        .collect();
    assert_eq!(
        recap_lines.len(),
        5,
        "two recaps of two hosts and the proxy deploy's:\n{out}"
    );
    for l in recap_lines {
        assert!(
            l.contains("changed=0") && l.contains("failed=0"),
            "second demo run: {l}\n{out}"
        );
    }
    assert!(out.contains("== not building"), "{out}");
    assert!(
        !out.contains("INFO:kolla.common.utils"),
        "the second run built:\n{out}"
    );
    assert!(out.contains("(unchanged by this run)"), "{out}");
    assert_eq!(
        std::fs::read_dir(cfg.join("kiln/builds"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count(),
        1,
        "the second run recorded a build"
    );
    for n in &needles {
        assert!(
            !out.contains(n.as_str()),
            "a secret form is in the second run's output"
        );
    }
    eprintln!("kiln lab demo: first run {first:.1} s, second run {second:.1} s");

    // faults on the same lab (issue 19): the Pulp upstream and the registry going away
    // mid-build, and a scheduled build killed mid-way
    demo_faults(&Demo {
        dir: tmp.path().to_path_buf(),
        home,
        lab_dir,
        cfg,
        gateway,
        pulp_user,
        pulp_pw,
        netrc,
        needles,
    });
}

/// What the fault runs share with the demo test.
struct Demo {
    dir: PathBuf,
    home: PathBuf,
    lab_dir: PathBuf,
    cfg: PathBuf,
    gateway: String,
    pulp_user: String,
    pulp_pw: String,
    netrc: PathBuf,
    needles: Vec<String>,
}

impl Demo {
    /// `kiln ARGS` with its standard output read line by line as it comes (`on_line` sees each),
    /// standard error collected beside it: (exit code, all the output).
    fn run(&self, args: &[&str], mut on_line: impl FnMut(&str)) -> (i32, String) {
        use std::io::{BufRead, Read};
        let mut child = self
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kiln");
        let mut err = child.stderr.take().unwrap();
        let errs = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut out = String::new();
        for l in std::io::BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
        {
            on_line(&l);
            out.push_str(&l);
            out.push('\n');
        }
        let rc = child.wait().unwrap().code().unwrap_or(-1);
        (rc, out + &errs.join().unwrap())
    }

    /// `kiln ARGS` as the demo test runs it (its folder, HOME and kolla venv; no Kayobe
    /// environment or age identity from the caller's).
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.current_dir(&self.dir)
            .env("HOME", &self.home)
            .env("KILN_KOLLA_VENV", kolla_venv())
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env_remove("KILN_AGE_IDENTITY")
            .args(args);
        c
    }

    /// The build records (`kiln/builds/*.json`), oldest first.
    fn records(&self) -> Vec<PathBuf> {
        let mut r: Vec<PathBuf> = std::fs::read_dir(self.cfg.join("kiln/builds"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        r.sort();
        r
    }

    /// The one record written since `before` (the records then).
    fn new_record(&self, before: &[PathBuf], what: &str) -> PathBuf {
        let after = self.records();
        let new: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(new.len(), 1, "one record for {what}: {after:?}");
        new[0].clone()
    }

    fn tags_file(&self) -> String {
        std::fs::read_to_string(self.cfg.join("environments/lab/kolla-image-tags.yml")).unwrap()
    }

    fn assert_says(&self, what: &str, out: &str, wants: &[&str]) {
        for want in wants {
            assert!(out.contains(want), "{what}'s output lacks {want:?}:\n{out}");
        }
    }

    fn assert_no_secret(&self, what: &str, text: &str) {
        for n in &self.needles {
            assert!(!text.contains(n.as_str()), "a secret form is in {what}");
        }
    }

    /// The digest the lab registry serves for `kiln-lab/NAME:TAG`.
    fn registry_digest(&self, name: &str, tag: &str) -> String {
        let o = Command::new("curl")
            .args(["-sfI", "--netrc-file"])
            .arg(&self.netrc)
            .args([
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
            ])
            .arg(format!(
                "http://{}:18620/v2/kiln-lab/{name}/manifests/{tag}",
                self.gateway
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| {
                l.to_lowercase()
                    .strip_prefix("docker-content-digest: ")
                    .map(|d| d.trim().to_string())
            })
            .unwrap_or_default()
    }
}

/// A stand-in Pulp upstream that goes away after serving its first content file: it answers
/// Pulp's status URL (the proxy's health check) with the vault's credentials, then the first
/// `/pulp/content/` request, then closes its listening socket (the proxy gets "connection
/// refused" from then on). Returns the requests it saw (`path status`).
fn pulp_that_goes_away(
    addr: &str,
    user: &str,
    password: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let want = format!(
        "authorization: basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{password}"))
            .to_lowercase()
    );
    let listener = std::net::TcpListener::bind(addr).expect("bind the stand-in Pulp");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&req).to_lowercase();
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let authed = head.lines().any(|l| l.trim() == want);
            let (status, body) = if !authed {
                ("401 Unauthorized", "auth required\n")
            } else if path.starts_with("/pulp/api/v3/status") {
                ("200 OK", "{\"versions\": [], \"online_workers\": []}\n")
            } else if path.starts_with("/pulp/content/") {
                ("200 OK", "served once, then gone\n")
            } else {
                ("404 Not Found", "not found\n")
            };
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            log.lock().unwrap().push(format!("{path} {}", &status[..3]));
            if authed && path.starts_with("/pulp/content/") {
                // gone: the listener is dropped with this thread
                return;
            }
        }
    });
    seen
}

fn demo_faults(d: &Demo) {
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let tmp_files = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.contains(".tmp") || n.ends_with(".parts")
            })
            .collect()
    };
    let builds = d.cfg.join("kiln/builds");

    // 1. The Pulp upstream goes away mid-build: the proxy is pointed at an upstream that serves
    // base's file and then closes its socket; cron and memcached (built after base) fail, base is
    // still pushed, the record says which image failed and where its log is, and the run says
    // the mirror does not answer.
    let upstream = format!("{}:18612", d.gateway);
    let seen = pulp_that_goes_away(&upstream, &d.pulp_user, &d.pulp_pw);
    let tags_before = d.tags_file();
    let before = d.records();
    let t = std::time::Instant::now();
    let (rc, out) = d.run(
        &[
            "-e",
            &format!("stackhpc_release_pulp_url=http://{upstream}"),
            "-e",
            "kiln_push_retries=2",
            "-e",
            "kiln_push_retry_delay=1",
            "lab",
            "demo",
            "--rebuild",
        ],
        |_| {},
    );
    let secs = t.elapsed().as_secs_f64();
    assert_ne!(rc, 0, "a build whose mirror went away must fail:\n{out}");
    let served = seen.lock().unwrap().clone();
    assert_eq!(
        served
            .iter()
            .filter(|r| r.starts_with("/pulp/content/"))
            .collect::<Vec<_>>(),
        ["/pulp/content/lab/release.txt 200"],
        "the stand-in served base's file, through the proxy, as the vault's user: {served:?}"
    );
    d.assert_says(
        "the failed build",
        &out,
        &[
            "cron: failed with status error",
            "memcached: failed with status error",
            "502 Bad Gateway",
            "The Pulp upstream behind the auth proxy does not answer (HTTP 502",
            "1 pushed, 0 push failed, 2 not built: FAILED",
            "record: ",
        ],
    );
    let path = d.new_record(&before, "the failed build");
    let rec_text = std::fs::read_to_string(&path).unwrap();
    let rec = json(&path);
    let tag = rec["tag"].as_str().unwrap().to_string();
    assert_eq!(rec["failed_builders"][0]["host"], "lab-builder", "{rec:#}");
    let reason = rec["failed_builders"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("cron: failed with status error"),
        "{reason}"
    );
    let by_name = |n: &str| -> serde_json::Value {
        rec["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} not in the record: {rec:#}"))
    };
    let base = by_name("base");
    assert_eq!(base["status"], "pushed", "{rec:#}");
    assert_eq!(
        base["digest"].as_str().unwrap(),
        d.registry_digest("base", &tag)
    );
    for n in ["cron", "memcached"] {
        let i = by_name(n);
        assert_eq!(i["status"], "build-failed", "{rec:#}");
        assert!(i["digest"].is_null());
        let log = i["log"].as_str().unwrap_or_default();
        let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{n}'s log {log}: {e}"));
        assert!(text.contains("502"), "{log} does not say why:\n{text}");
        d.assert_no_secret(log, &text);
    }
    d.assert_no_secret("the failed build's output", &out);
    d.assert_no_secret("the failed build's record", &rec_text);
    // memcached failed: its kolla-image-tags.yml entry keeps its earlier tag
    let tags: serde_yaml::Value = serde_yaml::from_str(&d.tags_file()).unwrap();
    let old: serde_yaml::Value = serde_yaml::from_str(&tags_before).unwrap();
    assert_eq!(
        tags["kolla_image_tags"]["memcached"], old["kolla_image_tags"]["memcached"],
        "a failed image's tag moved"
    );
    assert!(tmp_files(&builds).is_empty(), "{:?}", tmp_files(&builds));
    eprintln!("fault: Pulp upstream gone mid-build: failed in {secs:.1} s, base pushed, cron and memcached recorded build-failed");

    // 2. The registry goes away mid-build: killed as soon as kolla-build's first line arrives
    // (the login before the build went through); the push cannot log in, every image is
    // recorded push-failed with the reason, kolla-image-tags.yml is left alone.
    let tags_before = d.tags_file();
    let before = d.records();
    let lab_dir = d.lab_dir.clone();
    let mut killed = false;
    let (rc, out) = d.run(
        &[
            "-e",
            "kiln_push_retries=2",
            "-e",
            "kiln_push_retry_delay=1",
            "lab",
            "demo",
            "--rebuild",
        ],
        |l| {
            if !killed && l.contains("INFO:kolla.common.utils") {
                kiln::lab::services::stop(&lab_dir, "registry");
                killed = true;
            }
        },
    );
    assert!(killed, "no kolla-build line came:\n{out}");
    assert_ne!(
        rc, 0,
        "a push to a registry that went away must fail:\n{out}"
    );
    d.assert_says(
        "the failed push",
        &out,
        &["login to ", "check that the registry is up", "record: "],
    );
    let path = d.new_record(&before, "the failed push");
    let rec = json(&path);
    let images = rec["images"].as_array().unwrap();
    assert_eq!(images.len(), 3, "{rec:#}");
    for i in images {
        assert_eq!(i["status"], "push-failed", "{rec:#}");
        assert!(
            i["error"].as_str().is_some_and(|e| e.contains("login to ")),
            "{rec:#}"
        );
    }
    assert_eq!(rec["failed_pushes"].as_array().unwrap().len(), 3, "{rec:#}");
    assert_eq!(
        d.tags_file(),
        tags_before,
        "a failed push moved kolla-image-tags.yml"
    );
    d.assert_no_secret("the failed push's output", &out);
    d.assert_no_secret(
        "the failed push's record",
        &std::fs::read_to_string(&path).unwrap(),
    );
    assert!(tmp_files(&builds).is_empty(), "{:?}", tmp_files(&builds));
    eprintln!(
        "fault: registry gone mid-build: every image recorded push-failed, tags file untouched"
    );

    // 3. A scheduled rebuild killed mid-way (SIGTERM, as `systemctl stop` sends): the history says
    // killed, the lock is released (the next run of the schedule runs), no kolla-build is left
    // running, no record or tags change is written.
    let sched_root = d.dir.join("sched");
    let state = sched_root.join("demo-rebuild");
    let sched = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "schedule",
            "exec",
            "demo-rebuild",
            "--overlap",
            "skip",
            "--state-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(state.display().to_string());
        a.push("--".into());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let tags_before = d.tags_file();
    let before = d.records();
    let args = sched(&["lab", "demo", "--rebuild"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = d
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = String::new();
        loop {
            let l = lines
                .next()
                .unwrap_or_else(|| panic!("the scheduled build ended before building:\n{seen}"))
                .unwrap();
            seen.push_str(&l);
            seen.push('\n');
            if l.contains("INFO:kolla.common.utils") {
                break;
            }
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        // drain, so the wrapper never blocks on a full pipe
        for _ in lines {}
    }
    let t = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        t.elapsed().as_secs() < 60,
        "the killed run took {:?} to end",
        t.elapsed()
    );
    let history = || -> Vec<serde_json::Value> {
        let hist = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["schedule", "history", "demo-rebuild", "--state-root"])
            .arg(&sched_root)
            .arg("--json")
            .output()
            .unwrap();
        String::from_utf8_lossy(&hist.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let h = history();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["status"], "killed", "{h:?}");
    assert_eq!(h[0]["signal"], 15, "{h:?}");
    // no kolla-build or podman build left running once the run is gone
    // (this lab's: their command lines name its folder, so other builds on the machine do not count)
    let mut left = String::new();
    for _ in 0..50 {
        let o = Command::new("pgrep")
            .args(["-af", "kolla-build|podman build|podman system service"])
            .output()
            .unwrap();
        left = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(&*d.lab_dir.to_string_lossy()))
            .map(|l| format!("{l}\n"))
            .collect();
        if left.trim().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        left.trim().is_empty(),
        "the killed build left processes:\n{left}"
    );
    assert_eq!(d.records(), before, "a killed build wrote a record");
    assert_eq!(
        d.tags_file(),
        tags_before,
        "a killed build moved kolla-image-tags.yml"
    );
    assert!(tmp_files(&builds).is_empty(), "{:?}", tmp_files(&builds));
    // the lock was released: the next run of the schedule runs (no rebuild: it builds nothing)
    let (rc, out) = d.run(
        &sched(&["lab", "demo"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        |_| {},
    );
    assert_eq!(rc, 0, "{out}");
    let h = history();
    assert_eq!(
        h.len(),
        2,
        "the next run was skipped (the lock was kept): {h:?}"
    );
    assert_eq!(h[1]["status"], "ok", "{h:?}");
    eprintln!("fault: scheduled build killed mid-way: history 'killed', lock released, nothing left running");

    // 4. No secret in any file the pipeline wrote (issue 19 item 6): a `--plan` of an
    // `--if-changed` build, then every file of the lab (records, fetched kolla logs and summaries,
    // kolla-image-tags.yml, the schedule's history and state, the builder's kolla configuration,
    // the services' logs, every registry blob, decompressed), the plan and the host's kolla build
    // log. Allowed: the proxy's own nginx conf (it must hold the header it adds; mode 0600) and
    // the layers of the image the test planted on purpose.
    let plan = d.dir.join("plan");
    let (rc, out) = d.run(
        &[
            "--config-path",
            d.cfg.to_str().unwrap(),
            "--environment",
            "lab",
            "seed",
            "container",
            "image",
            "build",
            "--if-changed",
            "--plan",
            plan.to_str().unwrap(),
            "-l",
            "lab-builder",
            "--skip-tags",
            "install",
        ],
        |_| {},
    );
    assert_eq!(rc, 0, "{out}");
    d.assert_no_secret("the plan's output", &out);
    let proxy_conf = d
        .lab_dir
        .join("builder/containers/pulp_proxy/pulp_proxy.conf");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(&proxy_conf).unwrap().mode() & 0o077,
        0,
        "{} is readable by others",
        proxy_conf.display()
    );
    // the search finds the credentials where they must be (so it would find them elsewhere)
    let conf_text = std::fs::read_to_string(&proxy_conf).unwrap();
    assert!(
        d.needles.iter().any(|n| conf_text.contains(n.as_str())),
        "the proxy's conf holds no form of the credentials it must add"
    );
    let planted: Vec<String> = std::fs::read_dir(d.lab_dir.join(
        "services/registry/data/docker/registry/v2/repositories/kiln-lab/dm-leak/_layers/sha256",
    ))
    .map(|r| {
        r.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    })
    .unwrap_or_default();
    assert!(!planted.is_empty(), "the planted image's layers are known");
    let mut files = Vec::new();
    let mut stack = vec![d.lab_dir.clone(), plan.clone(), sched_root.clone()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if m.is_file() && p != proxy_conf {
            let is_planted = p.file_name().is_some_and(|n| n == "data")
                && p.parent()
                    .and_then(|q| q.file_name())
                    .is_some_and(|n| planted.iter().any(|l| l == &*n.to_string_lossy()));
            if !is_planted {
                files.push(p);
            }
        }
    }
    files.push(PathBuf::from("/var/log/kolla-build.log"));
    let mut searched = 0usize;
    let mut bytes = 0usize;
    for f in &files {
        let Ok(raw) = std::fs::read(f) else { continue };
        let mut data = raw.clone();
        if raw.starts_with(&[0x1f, 0x8b]) {
            use std::io::Read as _;
            let mut out = Vec::new();
            if flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .is_ok()
            {
                data = out;
            }
        }
        let text = String::from_utf8_lossy(&data);
        d.assert_no_secret(&f.display().to_string(), &text);
        searched += 1;
        bytes += data.len();
    }
    for want in ["lab-builder/plan.json", "lab-builder/kolla-build.conf"] {
        assert!(
            files.iter().any(|f| f.ends_with(want)),
            "the plan wrote no {want}"
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("/kiln/builds/"))
            && files.iter().any(|f| f.ends_with("kolla-image-tags.yml"))
            && files.iter().any(|f| f.starts_with(&sched_root)),
        "records, the tags file and the schedule state were searched"
    );
    eprintln!(
        "secrets: {} forms searched for in {searched} files ({} MB decompressed) the pipeline wrote: none found",
        d.needles.len(),
        bytes / 1_000_000
    );
}
