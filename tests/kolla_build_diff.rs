//! kiln's Kolla build preparation against Kayobe's own: for each configuration under
//! `tests/cases/kolla_build/` (see its SOURCES.md), Kayobe 18.6.0's real `kolla-build.yml` (its
//! `kolla-build` role and `merge_configs` / `merge_yaml` plugins, under ansible-core 2.17 from the
//! oracle venv) and `kiln playbook run kolla-build.yml` (kiln's shipped copy) each write
//! `kolla-build.conf`, `template-override.j2` and `repos.yml` on the local host; the files must be
//! identical (after the output folder's name). Then each runs `container-image-build.yml` with a
//! stand-in `kolla-build` in a fake `kolla_venv` that records the argv it receives (Kayobe's
//! through bash, kiln's without a shell): the argv must be identical, for the configured image sets
//! and for regexes given as Kayobe's verb gives them (bash-escaped). The stand-in is the one mock
//! here: it stands for kolla-build only to record its argv (the real kolla-build runs in
//! `kolla_build_real`'s test below).
//!
//! Needs the oracle venv (`tests/setup`; `KILN_ANSIBLE_VENV`, default `.venv`): without it the
//! test prints SKIP. Runs as root (the playbooks touch the log file with `become`).

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use support::image_lab as lab;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    std::env::var_os("KILN_ANSIBLE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"))
}

fn kiln() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// A fake kolla venv: `bin/activate` puts its `bin` first on PATH (as a venv's does) and
/// `bin/kolla-build` appends its arguments, one JSON list a line, to `argv.jsonl` beside `bin`.
fn fake_venv(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("activate"),
        format!("export PATH=\"{}:$PATH\"\n", bin.display()),
    )
    .unwrap();
    let kb = bin.join("kolla-build");
    std::fs::write(
        &kb,
        "#!/usr/bin/env python3\nimport json, os, sys\n\
         out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'argv.jsonl')\n\
         open(out, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\nprint('INFO:kolla.common.utils:fake build')\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kb, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Side<'a> {
    cfg: &'a Path,
    env: &'a str,
    out: PathBuf,
    kvenv: PathBuf,
    log: PathBuf,
}

fn common_vars(s: &Side) -> Vec<String> {
    vec![
        "-e".into(),
        format!("kolla_build_config_path={}", s.out.display()),
        "-e".into(),
        "kolla_tag=kbtag".into(),
        "-e".into(),
        format!("kolla_venv={}", s.kvenv.display()),
        "-e".into(),
        format!("kolla_build_log_path={}", s.log.display()),
    ]
}

fn kayobe(s: &Side, playbook: &str, extra: &[String]) -> (bool, String) {
    let v = venv();
    let share = v.join("share/kayobe/ansible");
    let mut c = Command::new(v.join("bin/ansible-playbook"));
    c.arg("-i")
        .arg(share.join("inventory"))
        .arg("-i")
        .arg(s.cfg.join("inventory"));
    // Kayobe's vars files: the configuration's *.yml, then the environment's (which win)
    for dir in [s.cfg.to_path_buf(), s.cfg.join("environments").join(s.env)] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.extension().is_some_and(|x| x == "yml")
                && p.is_file()
                && !matches!(read(p).as_deref().map(str::trim), Some("---" | ""))
        });
        files.sort();
        for f in files {
            c.arg("-e").arg(format!("@{}", f.display()));
        }
    }
    c.args(["-e", &format!("kayobe_config_path={}", s.cfg.display())])
        .args(["-e", &format!("kayobe_environment={}", s.env)])
        .args([
            "-e",
            &format!(
                "ansible_python_interpreter={}",
                v.join("bin/python").display()
            ),
        ])
        .args(common_vars(s))
        .args(extra)
        .args(["--skip-tags", "install"])
        .arg(share.join(playbook));
    for (k, d) in [
        ("ANSIBLE_ROLES_PATH", "roles"),
        ("ANSIBLE_ACTION_PLUGINS", "action_plugins"),
        ("ANSIBLE_FILTER_PLUGINS", "filter_plugins"),
        ("ANSIBLE_TEST_PLUGINS", "test_plugins"),
        ("ANSIBLE_LOOKUP_PLUGINS", "lookup_plugins"),
    ] {
        c.env(k, share.join(d));
    }
    c.env("KAYOBE_CONFIG_PATH", s.cfg)
        .env("KAYOBE_ENVIRONMENT", s.env)
        .env("ANSIBLE_NOCOLOR", "1")
        .env(
            "PATH",
            format!(
                "{}:{}",
                v.join("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn kiln_run(s: &Side, playbook: &str, extra: &[String]) -> (bool, String) {
    let o = Command::new(kiln())
        .arg("--config-path")
        .arg(s.cfg)
        .args(["--environment", s.env])
        .args(["playbook", "run", playbook])
        .args(common_vars(s))
        .args(extra)
        .args(["--skip-tags", "install"])
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

#[test]
fn kolla_build_files_and_argv_match_kayobe() {
    if !venv().join("bin/ansible-playbook").exists()
        || !venv().join("share/kayobe/ansible/kolla-build.yml").exists()
    {
        println!(
            "SKIP: no Kayobe oracle venv at {} (tests/setup makes it)",
            venv().display()
        );
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: not root (the playbooks use become on the local host)");
        return;
    }
    // `ci-builder`: kiln's embedded environment (without its age-encrypted files, which Kayobe
    // cannot read and the build preparation does not use) over an empty configuration
    let cases = [
        ("custom", "kbenv"),
        ("stackhpc", "aufn-ceph"),
        ("ci-builder", "ci-builder"),
    ];
    let (mut files_same, mut files_total, mut argv_same, mut argv_total) = (0, 0, 0, 0);
    let mut plan_same = 0;
    let mut failures = Vec::new();
    for (case, env) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("etc/kayobe");
        if case == "ci-builder" {
            copy_dir(
                &root().join("tests/cases/kolla_build/custom/inventory"),
                &cfg.join("inventory"),
            );
            // kiln's defaults name the ci-builder's release (2024.1); Kayobe 18.6.0's are 2025.1
            std::fs::write(
                cfg.join("globals.yml"),
                "---\nopenstack_release: \"2024.1\"\n",
            )
            .unwrap();
            let env = cfg.join("environments/ci-builder");
            copy_dir(&root().join("environments/ci-builder"), &env);
            for e in std::fs::read_dir(&env).unwrap().flatten() {
                if e.path().extension().is_some_and(|x| x == "age") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        } else {
            copy_dir(&root().join("tests/cases/kolla_build").join(case), &cfg);
        }
        let mk = |who: &str| Side {
            cfg: &cfg,
            env,
            out: tmp.path().join(format!("out-{who}")),
            kvenv: tmp.path().join(format!("venv-{who}")),
            log: tmp.path().join(format!("kolla-build-{who}.log")),
        };
        let (ka, ki) = (mk("kayobe"), mk("kiln"));
        fake_venv(&ka.kvenv);
        fake_venv(&ki.kvenv);
        let (ok, log) = kayobe(&ka, "kolla-build.yml", &[]);
        assert!(ok, "{case}: Kayobe's kolla-build.yml failed:\n{log}");
        let (ok, log) = kiln_run(&ki, "kolla-build.yml", &[]);
        assert!(ok, "{case}: kiln's kolla-build.yml failed:\n{log}");
        if case == "custom" {
            // a second run changes nothing; --check --diff shows a change and makes none
            let (ok, log) = kiln_run(&ki, "kolla-build.yml", &[]);
            assert!(ok && log.contains("changed=0"), "second run:\n{log}");
            let before = read(&ki.out.join("kolla-build.conf"));
            let (ok, log) = kiln_run(
                &ki,
                "kolla-build.yml",
                &[
                    "--check".into(),
                    "--diff".into(),
                    "-e".into(),
                    "kolla_tag=kbother".into(),
                ],
            );
            assert!(
                ok && log.contains("+tag = kbother") && log.contains("-tag = kbtag"),
                "check/diff:\n{log}"
            );
            assert_eq!(
                read(&ki.out.join("kolla-build.conf")),
                before,
                "--check wrote the file"
            );
        }
        // --plan writes the same files on the controller, and changes nothing on the host
        let plan = tmp.path().join("plan");
        let stamp = std::fs::metadata(ki.out.join("kolla-build.conf"))
            .and_then(|m| m.modified())
            .ok();
        let o = Command::new(kiln())
            .arg("--config-path")
            .arg(&cfg)
            .args(["--environment", env])
            .args(["seed", "container", "image", "build", "--plan"])
            .arg(&plan)
            .args(common_vars(&ki))
            .args([
                "--skip-tags",
                "install",
                r"neutron-\(server\|metadata-agent\)",
            ])
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{case}: --plan failed:\n{out}");
        let pj: serde_json::Value =
            serde_json::from_str(&read(&plan.join("builder/plan.json")).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{case}: plan.json: {e}\n{out}"));
        assert_eq!(pj["tag"], "kbtag");
        assert_eq!(
            pj["image_sets"][0]["regexes"][0],
            "neutron-(server|metadata-agent)"
        );
        assert_eq!(
            std::fs::metadata(ki.out.join("kolla-build.conf"))
                .and_then(|m| m.modified())
                .ok(),
            stamp,
            "{case}: --plan touched the host's kolla-build.conf"
        );
        for f in ["kolla-build.conf", "template-override.j2", "repos.yml"] {
            files_total += 1;
            let p = read(&plan.join("builder").join(f))
                .map(|t| t.replace(&ki.out.display().to_string(), &ka.out.display().to_string()));
            if p != read(&ka.out.join(f)) {
                failures.push(format!("{case}/{f}: --plan's file differs from Kayobe's"));
            } else {
                plan_same += 1;
            }
        }
        for f in ["kolla-build.conf", "template-override.j2", "repos.yml"] {
            files_total += 1;
            let a = read(&ka.out.join(f));
            let b = read(&ki.out.join(f))
                .map(|t| t.replace(&ki.out.display().to_string(), &ka.out.display().to_string()));
            if a == b {
                files_same += 1;
            } else {
                failures.push(format!(
                    "{case}/{f}:\n--- kayobe\n{}\n--- kiln\n{}",
                    a.unwrap_or_else(|| "(absent)".into()),
                    b.unwrap_or_else(|| "(absent)".into())
                ));
            }
        }
        // the build line: configured sets, then regexes as the verb passes them
        let runs: Vec<Vec<String>> = vec![
            vec![
                "-e".into(),
                r#"{"container_image_sets": [{"regexes": "^kb-base kb-leaf"}, {"regexes": ""}, {"regexes": "neutron-\\(server\\|metadata-agent\\) 'a b'"}]}"#.into(),
            ],
            vec![
                "-e".into(),
                r#"{"container_image_regexes": "^nova-  ironic-\\(api\\|conductor\\)", "push_images": true, "nocache": true}"#.into(),
            ],
            vec![
                "-e".into(),
                r#"{"container_image_sets": [{"regexes": "bifrost"}], "kolla_docker_registry": "127.0.0.1:18500", "kolla_base_arch": "aarch64"}"#.into(),
            ],
        ];
        for extra in &runs {
            let _ = std::fs::remove_file(ka.kvenv.join("argv.jsonl"));
            let _ = std::fs::remove_file(ki.kvenv.join("argv.jsonl"));
            let (ok, log) = kayobe(&ka, "container-image-build.yml", extra);
            assert!(
                ok,
                "{case}: Kayobe's container-image-build.yml failed:\n{log}"
            );
            let (ok, log) = kiln_run(&ki, "container-image-build.yml", extra);
            assert!(
                ok,
                "{case}: kiln's container-image-build.yml failed:\n{log}"
            );
            let a = read(&ka.kvenv.join("argv.jsonl")).unwrap_or_default();
            let b = read(&ki.kvenv.join("argv.jsonl"))
                .unwrap_or_default()
                .replace(&ki.out.display().to_string(), &ka.out.display().to_string());
            for (la, lb) in a.lines().zip(b.lines()) {
                argv_total += 1;
                println!("{case} argv: {lb}");
                if la == lb {
                    argv_same += 1;
                } else {
                    failures.push(format!("{case} argv:\nkayobe {la}\nkiln   {lb}"));
                }
            }
            if a.lines().count() != b.lines().count() || a.is_empty() {
                failures.push(format!(
                    "{case}: kolla-build runs differ: kayobe {} kiln {}",
                    a.lines().count(),
                    b.lines().count()
                ));
            }
            // kiln appended the build's output to the log, as Kayobe's tee does
            let klog = read(&ki.log).unwrap_or_default();
            assert!(
                klog.contains("INFO:kolla.common.utils:fake build"),
                "{case}: kiln's log {} lacks the build output: {klog:?}",
                ki.log.display()
            );
        }
    }
    // the verb refuses an empty container-image-builders group, with Kayobe's message
    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("etc/kayobe/inventory");
    std::fs::create_dir_all(&inv).unwrap();
    std::fs::write(
        inv.join("hosts"),
        "[seed]\n\n[container-image-builders:children]\nseed\n",
    )
    .unwrap();
    let o = Command::new(kiln())
        .arg("--config-path")
        .arg(tmp.path().join("etc/kayobe"))
        .args(["seed", "container", "image", "build"])
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("Ensure that this group is present in"),
        "{out}"
    );
    println!(
        "kolla-build files identical to Kayobe's: {} written on the host + {plan_same} written by --plan, of {files_total}; argv identical: {argv_same}/{argv_total}",
        files_same
    );
    let files_same = files_same + plan_same;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(files_total >= 18 && argv_total >= 12 && files_same == files_total);
}

/// A real kolla-build (kolla 18.8.0 from PyPI, `tests/setup`) with `--engine podman` through
/// `podman system service`, run by `kiln seed container image build` on the local connection:
/// the lab's namespace hosts share this machine's container storage only through their overlay
/// and need a cgroup2 mount before runc can start a container there (LAB.md), so this test builds
/// where the ci-builder procedure itself builds, on the machine kiln runs on. The image tree
/// (`tests/cases/kolla_build/real/docker`: kb-base → kb-parent → kb-leaf, and kb-fail) is built
/// on a base image imported from a busybox-static tree cached in /var/cache/kiln-lab/.
#[test]
fn kolla_build_real_podman() {
    // the lab shared with tests/if_changed.rs: tests/support/image_lab.rs
    if let Some(why) = lab::missing() {
        println!("SKIP: {why}");
        return;
    }
    let kvenv = lab::kolla_venv();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let conf = lab::containers_conf(t);
    let sh = |script: &str| lab::sh(&conf, script);
    // the base image: a busybox-static tree, cached as a tarball, imported once
    lab::base_image(&conf);
    // the local registry is plain http
    let regconf = lab::registries_conf(t, &["127.0.0.1:18500"]);
    let (svc, sock) = lab::podman_service(t, &conf, &regconf);
    let cfg = t.join("etc/kayobe");
    copy_dir(&root().join("tests/cases/kolla_build/real"), &cfg);
    let logs = t.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = t.join("kolla-build.log");
    // one tag for the run, unique so the image check cannot see an earlier run's image
    let tag = format!("kb{}", std::process::id());
    let run = |extra: &[&str]| -> (i32, Vec<(std::time::Instant, String)>, std::time::Instant) {
        use std::io::BufRead;
        let mut c = Command::new(kiln());
        c.arg("--config-path")
            .arg(&cfg)
            .args([
                "seed",
                "container",
                "image",
                "build",
                "--skip-tags",
                "install",
            ])
            .args(["-e", &format!("kolla_venv={}", kvenv.display())])
            .args([
                "-e",
                &format!("kolla_build_config_path={}", t.join("kolla").display()),
            ])
            .args([
                "-e",
                &format!("kb_docker_dir={}", cfg.join("docker").display()),
            ])
            .args(["-e", &format!("kb_podman_url=unix://{}", sock.display())])
            .args(["-e", &format!("kb_logs_dir={}", logs.display())])
            .args(["-e", &format!("kolla_build_log_path={}", log.display())])
            .args(["-e", &format!("kolla_tag={tag}")])
            .args(extra)
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env("CONTAINERS_CONF", &conf)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        let mut lines = Vec::new();
        for l in std::io::BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
        {
            lines.push((std::time::Instant::now(), l));
        }
        let rc = child.wait().unwrap().code().unwrap_or(-1);
        (rc, lines, std::time::Instant::now())
    };
    let started = std::time::Instant::now();
    let (rc, lines, ended) = run(&[]);
    let secs = started.elapsed().as_secs_f64();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(rc, 0, "the build failed:\n{}", text.join("\n"));
    // streamed live, labelled with host and architecture, while kolla-build ran
    let first = lines
        .iter()
        .find(|(_, l)| l.starts_with("[builder:x86_64] INFO:kolla.common.utils.kb-base:"))
        .unwrap_or_else(|| panic!("no streamed kb-base line:\n{}", text.join("\n")));
    let lead = ended.duration_since(first.0).as_secs_f64();
    assert!(
        lead > 2.0,
        "the first build line arrived only {lead:.2}s before the end: not streamed live"
    );
    assert!(text
        .iter()
        .any(|l| l.starts_with("[builder:x86_64] INFO:kolla.common.utils.kb-leaf:")));
    // the images exist with the run's tag; the leaf has the kolla_build_blocks override
    for img in ["kb-base", "kb-parent", "kb-leaf"] {
        sh(&format!("podman image exists localhost/kb/{img}:{tag}"));
    }
    let block = sh(&format!(
        "podman run --rm localhost/kb/kb-leaf:{tag} cat /kb-block /kb-leaf"
    ));
    assert!(block.contains("from kolla_build_blocks") && block.contains("kb-base built for rocky"));
    let logtext = read(&log).unwrap_or_default();
    assert!(
        logtext.contains(&format!("Successfully tagged localhost/kb/kb-leaf:{tag}")),
        "{} lacks the build output",
        log.display()
    );
    println!("real kolla-build of kb-base, kb-parent, kb-leaf through kiln: {secs:.1}s (first line {lead:.1}s before the end)");
    for l in text
        .iter()
        .filter(|l| l.contains("kb-leaf") && !l.contains("DEBUG"))
        .take(8)
    {
        println!("  {l}");
    }
    // a failing image set: the task fails with kolla's reason; JSON events carry host, label, image
    let (rc, lines, _) = run(&["--format", "json", r"^kb-fail$"]);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_ne!(rc, 0, "a failing image must fail the run");
    assert!(
        text.iter()
            .any(|l| l.contains("kb-fail Failed with status: error")),
        "kolla's reason missing:\n{}",
        text.join("\n")
    );
    let ev = text
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["event"] == "line" && j["image"] == "kb-fail")
        .expect("a line event about kb-fail");
    assert_eq!(ev["host"], "builder");
    assert_eq!(ev["label"], "x86_64");
    // --push with kolla_docker_registry: a real registry (docker-registry) on 127.0.0.1:18500
    if let Some(_registry) = lab::registry(t, 18500) {
        // kiln's --push: the build, then kiln's publish step (push with retries, digests from the
        // registry, the build record)
        let record = t.join("record.json");
        let extra = serde_json::json!({
            "kolla_docker_registry": "127.0.0.1:18500",
            "kolla_docker_registry_insecure": true,
            "kiln_build_record": record.display().to_string(),
            "kiln_push_failed_list": t.join("push-failed.txt").display().to_string(),
        })
        .to_string();
        let (rc, lines, _) = run(&["--push", "-e", &extra, r"^kb-\(base\|parent\|leaf\)$"]);
        let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(rc, 0, "the push build failed:\n{}", text.join("\n"));
        let tags = sh("curl -s http://127.0.0.1:18500/v2/kb/kb-leaf/tags/list");
        assert!(tags.contains(&tag), "registry tags: {tags}");
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&record).expect("the build record"))
                .unwrap();
        let mut names: Vec<&str> = rec["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["kb-base", "kb-leaf", "kb-parent"], "{rec}");
        for i in rec["images"].as_array().unwrap() {
            let digest = i["digest"].as_str().unwrap_or("");
            let head = sh(&format!(
                "curl -sI -H 'Accept: application/vnd.oci.image.manifest.v1+json' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://127.0.0.1:18500/v2/kb/{}/manifests/{tag}",
                i["name"].as_str().unwrap()
            ));
            assert!(
                digest.starts_with("sha256:")
                    && head
                        .to_lowercase()
                        .contains(&format!("docker-content-digest: {digest}")),
                "record digest {digest} vs registry:\n{head}"
            );
        }
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "podman rmi -f 127.0.0.1:18500/kb/kb-leaf:{tag} 127.0.0.1:18500/kb/kb-parent:{tag} 127.0.0.1:18500/kb/kb-base:{tag} >/dev/null 2>&1"
            ))
            .env("CONTAINERS_CONF", &conf)
            .status();
    }
    drop(svc);
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "podman rmi -f localhost/kb/kb-leaf:{tag} localhost/kb/kb-parent:{tag} localhost/kb/kb-base:{tag} >/dev/null 2>&1"
        ))
        .env("CONTAINERS_CONF", &conf)
        .status();
}
