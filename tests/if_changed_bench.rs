//! Benchmark of an unchanged `--if-changed` run over 100 images (issue 17's target: decided and
//! finished in ≤ 5 s with no engine build started; hashing ≤ 10 ms per image), through the real
//! verb: `kiln seed container image build --push --if-changed` with kolla 18.8.0 and Debian's
//! docker-registry on 127.0.0.1:18703.
//!
//! `cargo test --test if_changed_bench -- --ignored --nocapture` (root; tests/setup's kolla venv).
//! The 100 images (bench-base → 9 parents → 90 leaves, each with a file in its build context) are
//! published cheaply: a `--plan` run gives their input hashes, the busybox base image is copied
//! into each repository with skopeo, and a build record names them. Then two unchanged runs with
//! new tags: the first renders the Dockerfiles with kolla-build `--template-only`, the second
//! finds kolla's templates, the docker_dir and the conf unchanged and uses the render cache. Both
//! tag all 100 images with their tag in the registry (manifest copies) and write the record.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use support::images as lab;

const REG: &str = "127.0.0.1:18703";

fn kiln() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

fn tree(docker: &Path) {
    let w = |rel: &str, text: &str| {
        let p = docker.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "bench-base/Dockerfile.j2",
        "FROM {{ base_image }}:{{ base_distro_tag }}\nRUN echo base > /base\n{% block footer %}{% endblock %}\n",
    );
    for p in 0..9 {
        w(
            &format!("bench-p{p}/bench-p{p}/Dockerfile.j2"),
            &format!("FROM {{{{ namespace }}}}/{{{{ image_prefix }}}}bench-base:{{{{ tag }}}}\nCOPY start.sh /p{p}.sh\n{{% block footer %}}{{% endblock %}}\n"),
        );
        w(
            &format!("bench-p{p}/bench-p{p}/start.sh"),
            &format!("echo p{p}\n"),
        );
        for l in 0..10 {
            if p * 10 + l >= 90 {
                break;
            }
            let n = p * 10 + l;
            w(
                &format!("bench-p{p}/bench-l{n:02}/Dockerfile.j2"),
                &format!("FROM {{{{ namespace }}}}/{{{{ image_prefix }}}}bench-p{p}:{{{{ tag }}}}\nCOPY extend_start.sh /l{n}.sh\n{{% block footer %}}{{% endblock %}}\n"),
            );
            w(
                &format!("bench-p{p}/bench-l{n:02}/extend_start.sh"),
                &format!("echo l{n}\n"),
            );
        }
    }
}

#[test]
#[ignore]
fn if_changed_unchanged_100_images() {
    if let Some(why) = lab::missing() {
        println!("SKIP: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let conf = lab::podman_conf(t);
    lab::busybox_base(&conf);
    let Some(_registry) = lab::registry(&t.join("registry"), 18703) else {
        println!("SKIP: docker-registry is not installed");
        return;
    };
    lab::sh(
        &conf,
        &format!(
            "podman push -q --tls-verify=false localhost/kb-busybox:latest {REG}/kb-busybox:latest"
        ),
    );
    let cfg = t.join("etc/kayobe");
    for f in [
        "kolla.yml",
        "globals.yml",
        "inventory/hosts",
        "kolla/kolla-build.conf",
    ] {
        let to = cfg.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(
            support::repo().join("tests/cases/kolla_build/real").join(f),
            to,
        )
        .unwrap();
    }
    let docker = t.join("docker");
    tree(&docker);
    let builds = t.join("builds");
    let extra = serde_json::json!({
        "kolla_venv": lab::kolla_venv().display().to_string(),
        "kolla_build_config_path": t.join("kolla").display().to_string(),
        "kb_docker_dir": docker.display().to_string(),
        "kb_podman_url": format!("unix://{}/no-engine.sock", t.display()),
        "kb_logs_dir": t.join("logs").display().to_string(),
        "kb_base_image": format!("{REG}/kb-busybox"),
        "kolla_build_log_path": t.join("kolla-build.log").display().to_string(),
        "kolla_docker_registry": REG,
        "kolla_docker_registry_insecure": true,
        "kiln_insecure_registries": [REG],
        "kiln_build_record": format!("{}/{{{{ kolla_tag }}}}.json", builds.display()),
        "seed_container_image_sets": [{"regexes": "^bench-"}],
    })
    .to_string();
    let run = |tag: &str, more: &[&str]| -> (f64, String) {
        let t0 = Instant::now();
        let o = Command::new(kiln())
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
            .args(["--if-changed"])
            .args(["-e", &extra, "-e", &format!("kolla_tag={tag}")])
            .args(more)
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env("CONTAINERS_CONF", &conf)
            .output()
            .unwrap();
        let out = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "{out}");
        (t0.elapsed().as_secs_f64(), out)
    };
    // publish the 100 images: their hashes from a --plan run, the base image in each repository
    let plan_dir = t.join("plan");
    let tag0 = "bench-0";
    // the builder's kolla config is prepared by a run (--plan changes nothing on hosts)
    let (_, out) = run(tag0, &["--push", "^nothing-matches$"]);
    assert!(out.contains("0 to build, 0 unchanged"), "{out}");
    let (_, out) = run(tag0, &["--plan", plan_dir.to_str().unwrap()]);
    assert!(out.contains("100 to build, 0 unchanged"), "{out}");
    let plan: kiln::build::if_changed::RunPlan =
        serde_json::from_slice(&std::fs::read(plan_dir.join("builder/if-changed.json")).unwrap())
            .unwrap();
    let t0 = Instant::now();
    let mut script = String::new();
    for i in &plan.images {
        script.push_str(&format!(
            "skopeo copy -q --src-tls-verify=false --dest-tls-verify=false docker://{REG}/kb-busybox:latest docker://{REG}/kb/{}:{tag0} &\n",
            i.name
        ));
    }
    script.push_str("wait\n");
    lab::sh(&conf, &script);
    let digest = lab::sh(
        &conf,
        &format!("skopeo inspect --tls-verify=false --format '{{{{.Digest}}}}' docker://{REG}/kb/bench-base:{tag0}"),
    )
    .trim()
    .to_string();
    let mut rec = kiln::build::record::BuildRecord::new(tag0);
    rec.ended = kiln::build::record::now();
    for i in &plan.images {
        rec.images.push(kiln::build::record::ImageRecord {
            name: i.name.clone(),
            reference: format!("{REG}/kb/{}:{tag0}", i.name),
            digest: Some(digest.clone()),
            status: "pushed".into(),
            inputs: Some(i.inputs.clone()),
            ..Default::default()
        });
    }
    rec.write(&builds.join(format!("{tag0}.json"))).unwrap();
    println!(
        "setup: 100 images published in {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    let mut rows = Vec::new();
    for (tag, what) in [
        ("bench-1", "rendered by kolla"),
        ("bench-2", "render cache"),
    ] {
        let (secs, out) = run(tag, &["--push"]);
        assert!(out.contains("0 to build, 100 unchanged"), "{out}");
        assert!(
            !out.contains("Built at") && !out.contains("kolla.common.utils.bench-"),
            "an engine build started:\n{out}"
        );
        let line = out
            .lines()
            .find(|l| l.starts_with("if-changed [builder]"))
            .unwrap()
            .to_string();
        let dockerfiles = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Dockerfiles: "))
            .unwrap_or("")
            .to_string();
        let hash_ms: f64 = line
            .split(" images hashed in ")
            .nth(1)
            .and_then(|x| x.split(' ').next())
            .and_then(|x| x.parse().ok())
            .unwrap_or(f64::NAN);
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(builds.join(format!("{tag}.json"))).unwrap())
                .unwrap();
        let unchanged = r["images"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["status"] == "unchanged" && i["digest"] == digest.as_str())
            .count();
        assert_eq!(unchanged, 100);
        let tagged = lab::sh(
            &conf,
            &format!("curl -s http://{REG}/v2/kb/bench-l89/tags/list"),
        );
        assert!(tagged.contains(tag), "{tagged}");
        rows.push((what, secs, dockerfiles, hash_ms));
    }
    println!(
        "unchanged --if-changed --push run, 100 images (debug build, no engine build started):"
    );
    println!(
        "  {:<20} {:>9} {:>16} {:>16}  render",
        "dockerfiles", "total", "hash (100 img)", "hash per image"
    );
    for (what, secs, dockerfiles, hash_ms) in &rows {
        println!(
            "  {:<20} {:>8.2}s {:>14.1}ms {:>14.3}ms  {}",
            what,
            secs,
            hash_ms,
            hash_ms / 100.0,
            dockerfiles
        );
    }
    println!("  targets: total <= 5 s, hashing <= 10 ms per image");
}
