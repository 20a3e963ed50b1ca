//! End to end, for real: a tiny image made here (`podman import` of a busybox-static tree) is
//! pushed by `playbooks/container-image-publish.yml` (kiln.builtin.image_push with real podman
//! and runc, `kiln.builtin.kolla_image_tags`) to a real `docker-registry` with htpasswd auth,
//! the login password coming from an age-encrypted vars file. One more image points at a
//! registry that is down: its push is retried, then reported, and the others are still recorded.
//! Checked: digests equal `skopeo inspect`, the record, the failed-push list, the tags file (by
//! stackhpc's own tool when python3-yaml is there), `kiln build show|list`, and that the
//! password is in no output, record, tags file or left-over auth file.

mod registry_support;

use registry_support::*;
use std::path::Path;
use std::process::Command;

const PW: &str = "pb-E2E-pw-5520-secret";
const TAG: &str = "2024.1-rocky-9-20261203T050000";

fn kiln() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
}

fn auth_dirs() -> Vec<String> {
    std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kiln-auth."))
        .collect()
}

#[test]
fn publish_pushes_records_and_updates_tags() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("SKIP: not root (podman with runc and a private storage)");
        return;
    }
    for b in [
        "podman",
        "runc",
        "skopeo",
        "docker-registry",
        "htpasswd",
        "age",
        "age-keygen",
    ] {
        if !have(b) {
            println!("SKIP: {b} is not installed (tests/setup installs it)");
            return;
        }
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(busybox) = busybox else {
        println!("SKIP: busybox-static is not installed");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let tp = t.path();
    // podman with runc and a private storage, as LAB.md says.
    std::fs::write(
        tp.join("containers.conf"),
        "[engine]\nruntime = \"runc\"\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n",
    )
    .unwrap();
    std::fs::write(
        tp.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/run\"\n",
            tp.display()
        ),
    )
    .unwrap();
    let env = [
        ("CONTAINERS_CONF", tp.join("containers.conf")),
        ("CONTAINERS_STORAGE_CONF", tp.join("storage.conf")),
    ];
    let podman = |args: &[&str]| {
        let o = Command::new("podman")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let reg = Registry::start(18610, Some(PW), None);
    // The image: a busybox-static tree, imported.
    let root = tp.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(tp.join("rootfs.tar"))
        .arg(".")
        .status()
        .unwrap()
        .success());
    let nova = format!("{}/kolla/nova-api:{TAG}", reg.addr);
    let glance = format!("{}/kolla/glance-api:{TAG}", reg.addr);
    let down = format!("127.0.0.1:18611/kolla/heat-api:{TAG}");
    podman(&[
        "import",
        "--change",
        "LABEL kolla_version=18.1.0",
        tp.join("rootfs.tar").to_str().unwrap(),
        &nova,
    ]);
    podman(&["tag", &nova, &glance]);
    podman(&["tag", &nova, &down]);

    // The password, in an age-encrypted vars file (the vault).
    assert!(Command::new("age-keygen")
        .arg("-o")
        .arg(tp.join("id.txt"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success());
    let id = std::fs::read_to_string(tp.join("id.txt")).unwrap();
    let public = id
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let mut age = Command::new("age")
        .args(["-r", &public, "-o"])
        .arg(tp.join("secrets.yml.age"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    age.stdin
        .take()
        .unwrap()
        .write_all(format!("kolla_docker_registry_password: {PW}\n").as_bytes())
        .unwrap();
    assert!(age.wait().unwrap().success());

    let cfg = tp.join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let tags_file = cfg.join("kolla-image-tags.yml");
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/stackhpc-kayobe-config");
    let tags_before =
        std::fs::read_to_string(cases.join("etc/kayobe/kolla-image-tags.yml")).unwrap();
    std::fs::write(&tags_file, &tags_before).unwrap();
    let record = cfg.join(format!("kiln/builds/{TAG}.json"));
    let failed_list = tp.join("push-failed-images.txt");
    // The deployment's image list, as stackhpc's pulp.yml has it.
    let pulp: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(cases.join("etc/kayobe/pulp.yml")).unwrap())
            .unwrap();
    let known = pulp["stackhpc_pulp_images_kolla"].clone();
    let vars = serde_json::json!({
        "kiln_known_images": known,
        "kiln_publish_hosts": "all",
        "kiln_publish_images": ["nova-api", "glance-api", down],
        "kolla_docker_registry": reg.addr,
        "kolla_docker_namespace": "kolla",
        "kolla_tag": TAG,
        "kolla_container_engine": "podman",
        "kolla_docker_registry_username": USER,
        "kolla_docker_registry_insecure": true,
        "kiln_push_retries": 3,
        "kiln_push_retry_delay": 1,
        "kiln_build_record": record,
        "kiln_push_failed_list": failed_list,
        "kiln_update_tags": true,
        "kiln_image_tags_file": tags_file,
        "kiln_image_tags_distro": "rocky-9",
    });
    std::fs::write(tp.join("vars.json"), vars.to_string()).unwrap();
    let auth_before = auth_dirs();
    let playbook =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/container-image-publish.yml");
    let t0 = std::time::Instant::now();
    let out = kiln()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--age-identity")
        .arg(tp.join("id.txt"))
        .args(["-i", "localhost,", "-e", "ansible_connection=local", "-e"])
        .arg(format!("@{}", tp.join("vars.json").display()))
        .arg("-e")
        .arg(format!("@{}", tp.join("secrets.yml.age").display()))
        .args(["playbook", "run"])
        .arg(&playbook)
        .output()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("publish run: {secs:.1} s\n{stdout}\n{stderr}");
    // The failed push fails the run, after the others went.
    assert!(!out.status.success());
    assert!(
        stdout.contains("heat-api") && stdout.contains("18611"),
        "{stdout}"
    );
    for text in [&*stdout, &*stderr] {
        assert!(!text.contains(PW), "password in output");
    }
    assert_eq!(auth_dirs(), auth_before, "the auth folder was left behind");

    // The record.
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let rec_text = std::fs::read_to_string(&record).unwrap();
    assert!(!rec_text.contains(PW));
    assert_eq!(rec["tag"], TAG);
    assert_eq!(rec["hosts"], serde_json::json!(["localhost"]));
    assert_eq!(rec["failed_pushes"], serde_json::json!([down]));
    let imgs = rec["images"].as_array().unwrap();
    assert_eq!(imgs.len(), 3);
    for (i, repo) in [(0, "kolla/nova-api"), (1, "kolla/glance-api")] {
        let d = skopeo_digest(&reg, repo, TAG, false);
        assert_eq!(imgs[i]["digest"], d, "{repo}");
        assert_eq!(imgs[i]["status"], "pushed");
        assert_eq!(imgs[i]["platform"], serde_json::json!(["linux/amd64"]));
        assert_eq!(imgs[i]["labels"]["kolla_version"], "18.1.0");
    }
    assert_eq!(imgs[2]["status"], "push-failed");
    assert!(imgs[2]["digest"].is_null());
    let err = imgs[2]["error"].as_str().unwrap();
    assert!(err.contains("18611"), "{err}");
    // Retried: three attempts one second apart.
    assert!(imgs[2]["duration"].as_f64().unwrap() >= 2.0, "{}", imgs[2]);
    assert_eq!(
        std::fs::read_to_string(&failed_list).unwrap(),
        format!("{down}\n")
    );

    // The tags file: only nova-api and glance-api point at the new tag; comments kept.
    let tags_after = std::fs::read_to_string(&tags_file).unwrap();
    assert!(!tags_after.contains(PW));
    let comments = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(comments(&tags_after), comments(&tags_before));
    let m = kiln::build::image_tags::parse(&tags_file, &tags_after).unwrap();
    let b = kiln::build::image_tags::parse(&tags_file, &tags_before).unwrap();
    for c in ["nova_api", "glance_api"] {
        assert_eq!(
            kiln::build::image_tags::tag_of(&m, "rocky-9", c).as_deref(),
            Some(TAG)
        );
    }
    for c in ["nova_compute", "heat_api", "glance_tls_proxy", "keystone"] {
        assert_eq!(
            kiln::build::image_tags::tag_of(&m, "rocky-9", c),
            kiln::build::image_tags::tag_of(&b, "rocky-9", c),
            "{c}"
        );
    }
    // Their tool accepts the file (validate + list-tags), when PyYAML is there.
    if Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        let d = tempfile::tempdir().unwrap();
        for f in ["tools/kolla-images.py", "etc/kayobe/pulp.yml", ".gitreview"] {
            std::fs::create_dir_all(d.path().join(f).parent().unwrap()).unwrap();
            std::fs::copy(cases.join(f), d.path().join(f)).unwrap();
        }
        std::fs::write(
            d.path().join("etc/kayobe/kolla-image-tags.yml"),
            &tags_after,
        )
        .unwrap();
        let o = Command::new("python3")
            .arg(d.path().join("tools/kolla-images.py"))
            .args(["--base-distros", "rocky-9", "list-tags"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let lt: serde_yaml::Mapping = serde_yaml::from_slice(&o.stdout).unwrap();
        assert_eq!(lt["nova-api"], serde_yaml::to_value([TAG]).unwrap());
        assert_eq!(lt["glance-api"], serde_yaml::to_value([TAG]).unwrap());
        assert_ne!(lt["heat-api"], serde_yaml::to_value([TAG]).unwrap());
    }

    // kiln build show / list.
    let o = kiln()
        .arg("--config-path")
        .arg(&cfg)
        .args(["build", "show"])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{show}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    println!("{show}");
    let last = show
        .lines()
        .filter(|l| !l.trim().is_empty())
        .last()
        .unwrap();
    assert!(
        last.starts_with("heat-api") && last.contains("push-failed"),
        "{show}"
    );
    assert!(show.contains(imgs[0]["digest"].as_str().unwrap()));
    assert!(show.contains("IMAGE") && show.contains("DIGEST"));
    let o = kiln()
        .arg("--config-path")
        .arg(&cfg)
        .args(["build", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&o.stdout);
    assert!(list.contains(TAG), "{list}");
    let o = kiln()
        .arg("--config-path")
        .arg(&cfg)
        .args(["build", "show", "nope"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("kiln build list"));
    // `kiln build tags` again: already there, nothing changes.
    let o = kiln()
        .arg("--config-path")
        .arg(&cfg)
        .args([
            "build",
            "tags",
            "--distro",
            "rocky-9",
            "--release",
            "2024.1",
            "--check",
            "--diff",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("already at"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(std::fs::read_to_string(&tags_file).unwrap(), tags_after);
}

/// The ci-builder environment updates kolla-image-tags.yml by default (issue 16), at
/// `kolla_image_tags_path`; where the configuration has no such file the publish step says so and
/// goes on (`--update-tags` requires the file instead).
#[test]
fn ci_builder_updates_tags_by_default_and_skips_a_missing_file() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // the embedded configuration, ci-builder environment
    let o = kiln()
        .env("HOME", &home)
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .args(["--environment", "ci-builder", "vars", "builder"])
        .args([
            "kiln_update_tags",
            "kiln_image_tags_file",
            "kayobe_config_path",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("kiln vars prints JSON");
    assert_eq!(v["kiln_update_tags"], true, "{v}");
    assert_eq!(
        v["kiln_image_tags_file"].as_str().unwrap(),
        format!(
            "{}/kolla-image-tags.yml",
            v["kayobe_config_path"].as_str().unwrap()
        ),
        "{v}"
    );
    // the publish step with the default on and no file: a message, no failure
    let cfg = t.path().join("etc/kayobe");
    std::fs::create_dir_all(cfg.join("inventory")).unwrap();
    std::fs::write(
        cfg.join("inventory/hosts"),
        "[container-image-builders]\nbuilder ansible_connection=local\n",
    )
    .unwrap();
    std::fs::write(cfg.join("globals.yml"), "---\nkiln_update_tags: true\n").unwrap();
    let run = |extra: &str| {
        let o = kiln()
            .env("HOME", &home)
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .arg("--config-path")
            .arg(&cfg)
            .args([
                "playbook",
                "run",
                "container-image-publish.yml",
                "-e",
                extra,
            ])
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let (rc, out) = run(r#"{"kiln_publish_images": [], "kolla_tag": "x"}"#);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("to update (create it, or give --update-tags to require it)"),
        "{out}"
    );
    assert!(!cfg.join("kolla-image-tags.yml").exists());
    // with the file, the update task runs (nothing pushed here: nothing to change)
    std::fs::write(
        cfg.join("kolla-image-tags.yml"),
        "---\nkolla_image_tags:\n  openstack:\n    rocky-9: 2024.1-rocky-9-20240101T000000\n",
    )
    .unwrap();
    let (rc, out) = run(r#"{"kiln_publish_images": [], "kolla_tag": "x"}"#);
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("to update (create it"), "{out}");
    let after = out
        .split("TASK [Point kolla-image-tags.yml at the pushed images]")
        .nth(1)
        .unwrap_or_else(|| panic!("no update task:\n{out}"));
    let status = after
        .lines()
        .find(|l| l.contains("[builder]"))
        .unwrap_or("");
    assert!(
        status.starts_with("ok: [builder]"),
        "the update task ran: {status}\n{out}"
    );
}
