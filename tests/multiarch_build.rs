//! Multi-architecture builds over several builders, for real: `kiln seed container image build
//! --push --multiarch` with three builders in one run (`tests/cases/kolla_build/multiarch`):
//!
//! * `ma-amd` builds `ma-base` and `ma-leaf` for x86_64;
//! * `ma-arm` builds the same for aarch64 on this x86_64 machine, emulated: kolla-build gets
//!   `--platform linux/arm64`, the base is Debian's busybox-static:arm64 imported as an arm64
//!   image, and the `RUN uname -m` steps execute under qemu-user-static through binfmt_misc;
//! * `ma-bad` builds `ma-fail`, whose `RUN` fails on purpose.
//!
//! Real kolla 18.8.0 (`.venv-kolla`), real podman (through `podman system service`), a real
//! docker-registry on 127.0.0.1:18810. Checked: the builders run in parallel and `ma-bad`'s failure
//! stops neither of the others; every line event carries host and platform; each image is pushed
//! as `<tag>-amd64` and `<tag>-arm64` and one manifest list `<tag>` (an OCI image index) names
//! them, whose raw JSON (`skopeo inspect --raw`) lists the per-arch digests the record holds; the
//! arm64 image really is arm64 (its RUN step wrote `aarch64`); the record covers all three
//! builders (ma-bad as failed) and the run fails.
//!
//! Why the builders use the local connection and not `kiln lab` hosts: a lab host's container
//! storage is an overlay of this machine's and runc needs a cgroup2 mount inside it before any
//! `RUN` step (LAB.md), and kolla-build talks to podman through one API socket; the same reasons
//! `kolla_build_diff.rs` builds on the local connection. Three inventory hosts on one machine is
//! also exactly the emulated layout (one x86_64 machine, one inventory host per architecture);
//! the engine runs them as three hosts (forks, per-host results, per-host failure), which is
//! what "several builders" exercises.

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::images;

const PORT: u16 = 18810;

use support::copy_dir;

fn sha256(b: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

#[test]
fn multiarch_build_over_three_builders() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: not root (podman builds and binfmt_misc need root)");
        return;
    }
    let kvenv = std::env::var_os("KILN_KOLLA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo().join(".venv-kolla"));
    if !kvenv.join("bin/kolla-build").exists() {
        println!(
            "SKIP: kolla is not installed in {} (tests/setup installs it)",
            kvenv.display()
        );
        return;
    }
    if Command::new("podman").arg("--version").output().is_err()
        || !Path::new("/bin/busybox").exists()
        || Command::new("skopeo").arg("--version").output().is_err()
    {
        println!("SKIP: podman, skopeo or busybox-static missing (tests/setup installs them)");
        return;
    }
    if let Err(e) = images::binfmt_arm64() {
        println!("SKIP: {e}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let conf = images::podman_conf(t);
    images::busybox_base(&conf);
    if let Err(e) = images::busybox_base_arm64(&conf) {
        println!("SKIP: {e}");
        return;
    }
    let Some(_registry) = images::registry(&t.join("registry"), PORT) else {
        println!("SKIP: docker-registry is not installed (tests/setup installs it)");
        return;
    };
    let reg = format!("127.0.0.1:{PORT}");
    let (svc, sock) = images::podman_service(t, &conf, &reg);

    let cfg = t.join("etc/kayobe");
    copy_dir(
        &support::repo().join("tests/cases/kolla_build/multiarch"),
        &cfg,
    );
    for h in ["ma-amd", "ma-arm", "ma-bad"] {
        std::fs::create_dir_all(t.join(h).join("logs")).unwrap();
    }
    let tag = format!("ma{}", std::process::id());
    let record = t.join("record.json");
    let extra = serde_json::json!({
        "kolla_venv": kvenv.display().to_string(),
        "ma_dir": t.display().to_string(),
        "ma_docker_dir": cfg.join("docker").display().to_string(),
        "ma_podman_url": format!("unix://{}", sock.display()),
        "kolla_tag": tag,
        "kolla_docker_registry": reg,
        "kolla_docker_registry_insecure": true,
        "kiln_build_record": record.display().to_string(),
    })
    .to_string();
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--config-path")
        .arg(&cfg)
        .args([
            "seed",
            "container",
            "image",
            "build",
            "--skip-tags",
            "install",
        ])
        .args(["--push", "--multiarch", "--format", "json", "-e", &extra])
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .env("CONTAINERS_CONF", &conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events: Vec<(f64, serde_json::Value)> = Vec::new();
    let mut raw = Vec::new();
    for l in std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(&l) {
            events.push((started.elapsed().as_secs_f64(), j));
        }
        raw.push(l);
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let rc = child.wait().unwrap().code().unwrap_or(-1);
    let secs = started.elapsed().as_secs_f64();
    let all = format!("{}\n{stderr}", raw.join("\n"));

    // ma-bad's failure fails the run, after the others built and pushed
    assert_ne!(rc, 0, "ma-bad's failing image must fail the run:\n{all}");
    // every line event carries host and platform; all three builders streamed
    let lines: Vec<&(f64, serde_json::Value)> = events
        .iter()
        .filter(|(_, j)| j["event"] == "line")
        .collect();
    // progress events (images built so far) too
    let steps: Vec<&serde_json::Value> = events
        .iter()
        .map(|(_, j)| j)
        .filter(|j| j["event"] == "progress")
        .collect();
    assert!(
        steps
            .iter()
            .any(|j| j["host"] == "ma-arm" && j["platform"] == "linux/arm64"),
        "no arm64 progress event:\n{all}"
    );
    for j in &steps {
        assert!(j["host"].is_string() && j["platform"].is_string(), "{j}");
    }
    for (_, j) in &lines {
        assert!(
            j["host"].is_string() && j["platform"].is_string(),
            "a line event without host or platform: {j}"
        );
    }
    let span = |host: &str, platform: &str| -> (f64, f64) {
        let ts: Vec<f64> = lines
            .iter()
            .filter(|(_, j)| j["host"] == host && j["label"].is_string())
            .map(|(t, j)| {
                assert_eq!(j["platform"], platform, "{j}");
                *t
            })
            .collect();
        assert!(!ts.is_empty(), "no build line from {host}:\n{all}");
        (ts[0], ts[ts.len() - 1])
    };
    let amd = span("ma-amd", "linux/amd64");
    let arm = span("ma-arm", "linux/arm64");
    let bad = span("ma-bad", "linux/amd64");
    // in parallel: each builder's lines began before the others' ended
    assert!(
        amd.0 < arm.1 && arm.0 < amd.1 && bad.0 < arm.1,
        "builders did not overlap: amd {amd:?} arm {arm:?} bad {bad:?}\n{}",
        lines
            .iter()
            .map(|(t, j)| format!("{t:.2} {} {}", j["host"], j["text"]))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        lines.iter().any(|(_, j)| j["host"] == "ma-bad"
            && j["text"]
                .as_str()
                .is_some_and(|t| t.contains("ma-fail Failed with status"))),
        "kolla's reason for ma-fail missing:\n{all}"
    );
    // the summary covers every builder
    let summary: Vec<&str> = lines
        .iter()
        .filter_map(|(_, j)| j["text"].as_str())
        .filter(|t| t.starts_with("builder ") || t.starts_with("manifest list "))
        .collect();
    for want in [
        "builder ma-amd (linux/amd64): 2 pushed, 0 push failed",
        "builder ma-arm (linux/arm64): 2 pushed, 0 push failed",
        "builder ma-bad (linux/amd64): FAILED",
    ] {
        assert!(
            summary.iter().any(|s| s.starts_with(want)),
            "summary lacks {want:?}: {summary:#?}\n{all}"
        );
    }

    // the record: all three builders, four per-arch images, two lists
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).expect("the build record")).unwrap();
    assert_eq!(
        rec["hosts"],
        serde_json::json!(["ma-amd", "ma-arm", "ma-bad"]),
        "{rec:#}"
    );
    assert_eq!(rec["failed_builders"][0]["host"], "ma-bad", "{rec:#}");
    assert_eq!(rec["failed_builders"][0]["platform"], "linux/amd64");
    assert!(
        rec["failed_builders"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ma-fail: failed with status error")),
        "{rec:#}"
    );
    // ma-bad's failed image is recorded with its log, beside the four pushed ones
    let (imgs, failed): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) = rec["images"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|i| i["status"] != "build-failed");
    assert_eq!(failed.len(), 1, "{rec:#}");
    assert_eq!(failed[0]["name"], "ma-fail", "{rec:#}");
    assert_eq!(failed[0]["host"], "ma-bad", "{rec:#}");
    assert!(failed[0]["digest"].is_null());
    assert!(
        failed[0]["log"]
            .as_str()
            .is_some_and(|l| l.ends_with("ma-fail.log") && Path::new(l).is_file()),
        "{rec:#}"
    );
    assert_eq!(imgs.len(), 4, "{rec:#}");
    for i in imgs {
        let host = i["host"].as_str().unwrap();
        let arch = if host == "ma-arm" { "arm64" } else { "amd64" };
        assert_eq!(i["status"], "pushed", "{i}");
        assert!(
            i["reference"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{tag}-{arch}")),
            "{i}"
        );
        assert_eq!(i["platform"], serde_json::json!([format!("linux/{arch}")]));
    }
    let lists = rec["manifest_lists"].as_array().unwrap();
    assert_eq!(lists.len(), 2, "{rec:#}");
    let skopeo = |args: &[&str]| -> Vec<u8> {
        let o = Command::new("skopeo")
            .args(args)
            .env("CONTAINERS_CONF", &conf)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    };
    let mut shown = String::new();
    for l in lists {
        let name = l["name"].as_str().unwrap();
        assert_eq!(l["status"], "pushed", "{l}");
        let list_ref = format!("docker://{reg}/kb/{name}:{tag}");
        let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &list_ref]);
        // the digest kiln recorded is the registry's for these bytes
        assert_eq!(l["digest"].as_str().unwrap(), sha256(&raw), "{name}");
        let idx: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(idx["mediaType"], "application/vnd.oci.image.index.v1+json");
        let ms = idx["manifests"].as_array().unwrap();
        assert_eq!(ms.len(), 2);
        for (m, arch) in ms.iter().zip(["amd64", "arm64"]) {
            assert_eq!(m["platform"]["architecture"], arch, "{idx:#}");
            assert_eq!(m["platform"]["os"], "linux");
            let p = l["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["platform"] == format!("linux/{arch}"))
                .unwrap_or_else(|| panic!("{arch} missing from the record's list {l}"));
            assert_eq!(m["digest"], p["digest"], "{name} {arch}");
            // the per-arch tag holds the manifest the list names
            let per = skopeo(&[
                "inspect",
                "--tls-verify=false",
                "--raw",
                &format!("docker://{reg}/kb/{name}:{tag}-{arch}"),
            ]);
            assert_eq!(m["digest"].as_str().unwrap(), sha256(&per));
            assert_eq!(m["size"].as_u64().unwrap() as usize, per.len());
        }
        // skopeo resolves the list per platform to the same digests
        for arch in ["amd64", "arm64"] {
            let j: serde_json::Value = serde_json::from_slice(&skopeo(&[
                "inspect",
                "--tls-verify=false",
                "--override-arch",
                arch,
                &list_ref,
            ]))
            .unwrap();
            assert_eq!(j["Architecture"], arch, "{name}");
        }
        if name == "ma-leaf" {
            shown = serde_json::to_string_pretty(&idx).unwrap();
        }
    }
    // the arm64 image's RUN step ran as arm64 (under qemu-user-static), the amd64 one natively
    for (arch, want) in [("arm64", "aarch64"), ("amd64", "x86_64")] {
        let out = images::sh(
            &conf,
            &format!("podman run --rm --platform linux/{arch} {reg}/kb/ma-leaf:{tag}-{arch} cat /ma-leaf"),
        );
        assert_eq!(out.trim(), want, "{arch}");
    }
    // `kiln build show` shows the lists and the failed builder
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "show", "--record"])
        .arg(&record)
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&o.stdout);
    assert!(
        show.contains("MANIFEST LIST") && show.contains("BUILDER FAILED: ma-bad"),
        "{show}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    println!(
        "multi-arch build over 3 builders (x86_64, emulated aarch64, one failing): {secs:.1}s"
    );
    println!("{show}");
    println!("manifest list {reg}/kb/ma-leaf:{tag} (skopeo inspect --raw):\n{shown}");

    drop(svc);
    let mut rm = String::from("podman rmi -f");
    for n in ["ma-base", "ma-leaf"] {
        for a in ["amd64", "arm64"] {
            rm.push_str(&format!(" {reg}/kb/{n}:{tag}-{a}"));
        }
    }
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("{rm} >/dev/null 2>&1"))
        .env("CONTAINERS_CONF", &conf)
        .status();
}

/// The manifest-list step on its own, with two real per-architecture images and no emulation
/// (so it runs where binfmt cannot be registered, and in seconds): Debian's busybox-static for
/// amd64 and for arm64, imported with their architectures, are pushed by
/// `container-image-publish.yml` from two local-connection builders (`h-amd`, `h-arm`) with
/// `kiln_multiarch`. Checked: `bb` gets a list whose raw JSON names both platform digests;
/// `bb2`, built only on amd64, gets no list (`incomplete`, linux/arm64 missing); `bad`, whose
/// arm64 tag holds the amd64 image, is refused; the run fails and the record says all of it.
#[test]
fn manifest_list_from_two_real_images() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: not root (podman needs root here)");
        return;
    }
    if Command::new("podman").arg("--version").output().is_err()
        || Command::new("skopeo").arg("--version").output().is_err()
        || !Path::new("/bin/busybox").exists()
    {
        println!("SKIP: podman, skopeo or busybox-static missing (tests/setup installs them)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let conf = images::podman_conf(t);
    images::busybox_base(&conf);
    if let Err(e) = images::busybox_base_arm64(&conf) {
        println!("SKIP: {e}");
        return;
    }
    let port = PORT + 1;
    let Some(_registry) = images::registry(&t.join("registry"), port) else {
        println!("SKIP: docker-registry is not installed (tests/setup installs it)");
        return;
    };
    let reg = format!("127.0.0.1:{port}");
    let tag = format!("ml{}", std::process::id());
    let amd = "localhost/kb-busybox:latest";
    let arm = "localhost/kb-busybox-aarch64:latest";
    let local: Vec<(String, &str)> = vec![
        (format!("{reg}/kb/bb:{tag}-amd64"), amd),
        (format!("{reg}/kb/bb:{tag}-arm64"), arm),
        (format!("{reg}/kb/bb2:{tag}-amd64"), amd),
        (format!("{reg}/kb/bad:{tag}-amd64"), amd),
        // the wrong architecture under the arm64 tag
        (format!("{reg}/kb/bad:{tag}-arm64"), amd),
    ];
    for (name, src) in &local {
        images::sh(&conf, &format!("podman tag {src} {name}"));
    }
    std::fs::write(
        t.join("inventory.yml"),
        "all:\n  children:\n    container-image-builders:\n      hosts:\n        h-amd:\n          ansible_connection: local\n          kolla_base_arch: x86_64\n          kiln_publish_images: [bb, bb2, bad]\n        h-arm:\n          ansible_connection: local\n          kolla_base_arch: aarch64\n          kiln_publish_images: [bb, bad]\n",
    )
    .unwrap();
    let record = t.join("builds").join(format!("{tag}.json"));
    let vars = serde_json::json!({
        "kolla_docker_registry": reg,
        "kolla_docker_namespace": "kb",
        "kolla_tag": tag,
        "kolla_container_engine": "podman",
        "kolla_docker_registry_insecure": true,
        "kiln_multiarch": true,
        "kiln_push_retries": 1,
        "kiln_build_record": record.display().to_string(),
        "kiln_push_failed_list": format!("{}/{{{{ inventory_hostname }}}}-failed.txt", t.display()),
    });
    std::fs::write(t.join("vars.json"), vars.to_string()).unwrap();
    let t0 = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("-i")
        .arg(t.join("inventory.yml"))
        .arg("-e")
        .arg(format!("@{}", t.join("vars.json").display()))
        .args(["playbook", "run"])
        .arg(support::repo().join("playbooks/container-image-publish.yml"))
        .env_remove("KAYOBE_CONFIG_PATH")
        .env("CONTAINERS_CONF", &conf)
        .output()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !out.status.success(),
        "an incomplete list must fail the run:\n{all}"
    );
    for want in [
        "[h-amd] builder h-amd (linux/amd64): 3 pushed, 0 push failed",
        "[h-amd] builder h-arm (linux/arm64): 2 pushed, 0 push failed",
        "incomplete",
        "is a linux/amd64 image, not linux/arm64",
    ] {
        assert!(all.contains(want), "output lacks {want:?}:\n{all}");
    }
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).expect("the record")).unwrap();
    assert!(
        !t.join("builds").join(format!("{tag}.json.parts")).exists(),
        "the builders' parts were left behind"
    );
    assert_eq!(rec["hosts"], serde_json::json!(["h-amd", "h-arm"]));
    assert_eq!(rec["images"].as_array().unwrap().len(), 5, "{rec:#}");
    let lists: std::collections::HashMap<&str, &serde_json::Value> = rec["manifest_lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l))
        .collect();
    assert_eq!(lists["bb"]["status"], "pushed", "{rec:#}");
    assert_eq!(lists["bb2"]["status"], "incomplete");
    assert_eq!(lists["bb2"]["missing"], serde_json::json!(["linux/arm64"]));
    assert!(lists["bb2"]["digest"].is_null());
    assert_eq!(lists["bad"]["status"], "failed");
    assert!(lists["bad"]["digest"].is_null());
    // no tag was written for the refused lists
    let tags = images::sh(
        &conf,
        &format!(
            "curl -s http://{reg}/v2/kb/bb2/tags/list; curl -s http://{reg}/v2/kb/bad/tags/list"
        ),
    );
    assert!(!tags.contains(&format!("\"{tag}\"")), "{tags}");
    // bb's list: what the registry serves is what the record says
    let raw = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--raw"])
        .arg(format!("docker://{reg}/kb/bb:{tag}"))
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(lists["bb"]["digest"].as_str().unwrap(), sha256(&raw.stdout));
    let idx: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let ms = idx["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    for (m, p) in ms.iter().zip(lists["bb"]["platforms"].as_array().unwrap()) {
        assert_eq!(m["digest"], p["digest"]);
        assert_eq!(
            format!("linux/{}", m["platform"]["architecture"].as_str().unwrap()),
            p["platform"].as_str().unwrap()
        );
    }
    println!("manifest lists from two real per-arch images: {secs:.1}s");
    let names: Vec<&str> = local.iter().map(|(n, _)| n.as_str()).collect();
    let _ = Command::new("podman")
        .arg("rmi")
        .args(&names)
        .env("CONTAINERS_CONF", &conf)
        .output();
}

/// MicroShift's per-architecture source rule for images that are not Kolla's, through kiln
/// (`kiln.builtin.image_source` on a local-connection host): per-arch `ImageSource.<arch>` wins,
/// then `Dockerfile.<arch>`, then the generic files; an empty folder and a two-reference
/// `ImageSource` fail naming the file (and line).
#[test]
fn image_source_rule_through_kiln() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ask = |arch: &str| -> (bool, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["-i", "localhost,", "-e", "ansible_connection=local"])
            .args([
                "ad-hoc",
                "localhost",
                "-m",
                "kiln.builtin.image_source",
                "-a",
            ])
            .arg(format!("dir={} arch={arch}", d.display()))
            .env_remove("KAYOBE_CONFIG_PATH")
            .output()
            .unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (ok, out) = ask("aarch64");
    assert!(
        !ok && out.contains("no ImageSource.arm64, Dockerfile.arm64"),
        "{out}"
    );
    std::fs::write(d.join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(d.join("Dockerfile.arm64"), "FROM scratch\n").unwrap();
    std::fs::write(
        d.join("ImageSource"),
        "# published multi-arch\nquay.io/kubevirt/hostpath-provisioner:v0.10.0\n",
    )
    .unwrap();
    let (ok, out) = ask("x86_64");
    assert!(
        ok && out.contains("\"kind\": \"image\"") && out.contains("hostpath-provisioner:v0.10.0"),
        "{out}"
    );
    let (ok, out) = ask("aarch64");
    assert!(
        ok && out.contains("\"kind\": \"dockerfile\"") && out.contains("Dockerfile.arm64\""),
        "{out}"
    );
    assert!(out.contains("\"platform\": \"linux/arm64\""), "{out}");
    std::fs::write(d.join("ImageSource.aarch64"), "a:1\nb:2\n").unwrap();
    let (ok, out) = ask("arm64");
    assert!(
        !ok && out.contains("ImageSource.aarch64:2: a second reference"),
        "{out}"
    );
}
