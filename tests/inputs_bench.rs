//! Benchmark of `--if-changed`'s input hashing on kolla's real rendered Dockerfiles (issue 17's
//! target: ≤ 10 ms per image, an unchanged 100-image run decided in ≤ 5 s).
//!
//! `cargo test --release --test inputs_bench -- --ignored --nocapture`. Needs kolla in a venv
//! (`KILN_KOLLA_VENV`, default `.venv-kolla`, made by tests/setup); it runs
//! `kolla-build --template-only` once for every image of the ci-builder distro, then times hashing.

use std::path::PathBuf;
use std::time::Instant;

use kiln::build::inputs::{external_bases, hash_docker_dir, plan, Decision, RunInputs};

#[test]
#[ignore]
fn input_hashing_of_every_kolla_image() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = std::env::var("KILN_KOLLA_VENV")
        .map(PathBuf::from)
        .unwrap_or(root.join(".venv-kolla"));
    let kolla_build = venv.join("bin/kolla-build");
    if !kolla_build.exists() {
        println!(
            "SKIP: {} not found (tests/setup installs kolla there)",
            kolla_build.display()
        );
        return;
    }
    let tag = "2024.1-rocky-9-20261203T000000";
    let work = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let out = std::process::Command::new(&kolla_build)
        .args([
            "--template-only",
            "--engine",
            "podman",
            "--base",
            "rocky",
            "--tag",
            tag,
            "--work-dir",
        ])
        .arg(work.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let render = t.elapsed();
    let docker = work.path().join("docker");
    let mut run = RunInputs {
        tag: tag.into(),
        conf: "[DEFAULT]\nbase = rocky\n".into(),
        platform: "linux/amd64".into(),
        ..Default::default()
    };
    for base in external_bases(&docker).unwrap() {
        run.base_digests.insert(base, "sha256:0000".into());
    }
    let t = Instant::now();
    let first = hash_docker_dir(&docker, &run).unwrap();
    let hash = t.elapsed();
    let n = first.images.len();
    assert!(n >= 100, "kolla rendered only {n} images");
    let t = Instant::now();
    let again = hash_docker_dir(&docker, &run).unwrap();
    let p = plan(&again, &first);
    let decide = t.elapsed();
    assert!(p.values().all(|d| *d == Decision::Unchanged));
    println!(
        "kolla-build --template-only, {n} images: {:.1} s",
        render.as_secs_f64()
    );
    println!(
        "hash {n} images: {:.1} ms ({:.3} ms/image; target <= 10 ms/image)",
        hash.as_secs_f64() * 1e3,
        hash.as_secs_f64() * 1e3 / n as f64
    );
    println!(
        "unchanged run decided (hash + plan): {:.1} ms (target <= 5 s for 100 images)",
        decide.as_secs_f64() * 1e3
    );
}
