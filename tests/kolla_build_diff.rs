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

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::images;

mod registry_support;

use support::repo as root;

fn venv() -> PathBuf {
    support::ansible_venv()
}

fn kiln() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

use support::copy_dir;

/// A fake kolla venv: `bin/activate` puts its `bin` first on PATH (as a venv's does) and
/// `bin/kolla-build` appends its arguments, one JSON list a line, to `argv.jsonl` beside `bin`
/// (kiln's own `--list-dependencies` query beside the build is answered, not recorded).
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
         if '--list-dependencies' in sys.argv: print('{\"kb-base\": []}'); sys.exit(0)\n\
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
            // the overcloud verb's default image list, derived from the kolla_enable_* flags
            // (Kayobe's group_vars on one side, kiln's on the other): defaults, then flags switched
            vec![
                "-e".into(),
                r#"{"container_image_sets": "{{ overcloud_container_image_sets }}"}"#.into(),
            ],
            vec![
                "-e".into(),
                r#"{"container_image_sets": "{{ overcloud_container_image_sets }}", "kolla_enable_ironic": true, "kolla_enable_ovn": "yes", "kolla_enable_cinder": true, "kolla_enable_cinder_backend_lvm": true, "kolla_enable_central_logging": "yes", "kolla_enable_openstack_core": "no", "kolla_enable_prometheus": true, "kolla_enable_letsencrypt": true}"#.into(),
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
    assert!(files_total >= 18 && argv_total >= 18 && files_same == files_total);
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
    // the lab shared with tests/if_changed.rs: tests/support/images.rs
    if let Some(why) = images::missing() {
        println!("SKIP: {why}");
        return;
    }
    let kvenv = images::kolla_venv();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // podman's configuration, the busybox base image and the podman API: tests/support/images.rs
    let conf = images::podman_conf(t);
    let sh = |script: &str| images::sh(&conf, script);
    images::busybox_base(&conf);
    let (svc, sock) = images::podman_service(t, &conf, "127.0.0.1:19150");
    let cfg = t.join("etc/kayobe");
    copy_dir(&root().join("tests/cases/kolla_build/real"), &cfg);
    let log = t.join("kolla-build.log");
    // kiln_build_fetch_dir's default: <config path>/kiln/builds/<tag>/<host>
    let fetched = |tag: &str| cfg.join("kiln/builds").join(tag).join("builder");
    // whether the host's kolla_build_log_path already held a streamed line when it reached the
    // controller (appended as produced, not at the end)
    let log_first = std::cell::Cell::new(None::<bool>);
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
            if log_first.get().is_none() {
                if let Some(text) =
                    l.strip_prefix("[builder:x86_64] INFO:kolla.common.utils.kb-base:")
                {
                    log_first.set(Some(read(&log).unwrap_or_default().contains(text)));
                }
            }
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
    assert_eq!(
        log_first.get(),
        Some(true),
        "the first kb-base line was not yet in {} when it reached the controller",
        log.display()
    );
    // progress: images built, of images matched when kolla's --list-dependencies (run beside the
    // build at the lowest priority, not waited for after a successful build) answered in time
    assert!(
        text.iter()
            .any(|l| l.starts_with("[builder:x86_64] images built: 3")),
        "no progress:\n{}",
        text.join("\n")
    );
    assert!(
        text.iter()
            .filter(|l| l.starts_with("[builder:x86_64] images built: "))
            .all(|l| !l.contains('/') || l.ends_with("/3")),
        "a wrong total:\n{}",
        text.join("\n")
    );
    // kolla's summary and per-image logs fetched back into the run folder
    let dir = fetched(&tag);
    let summary: serde_json::Value =
        serde_json::from_str(&read(&dir.join("summary.json")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join("summary.json").display()));
    let mut built: Vec<&str> = summary["built"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    built.sort();
    assert_eq!(built, ["kb-base", "kb-leaf", "kb-parent"]);
    for img in ["kb-base", "kb-parent", "kb-leaf"] {
        let l = read(&dir.join(format!("{img}.log"))).unwrap_or_default();
        assert!(l.contains("Built at"), "{img}.log: {l}");
    }
    // kiln's temporary logs folder on the host is gone
    assert!(
        !text.iter().any(|l| l.contains("OS_DEFAULT__")),
        "kolla's environment leaked into the output"
    );
    println!("real kolla-build of kb-base, kb-parent, kb-leaf through kiln: {secs:.1}s (first line {lead:.1}s before the end)");
    for l in text
        .iter()
        .filter(|l| l.contains("kb-leaf") && !l.contains("DEBUG"))
        .take(8)
    {
        println!("  {l}");
    }
    // a failing leaf (kb-fail) and a failing parent (kb-badparent, with its child kb-orphan)
    // beside a good leaf: each failure with status, log path and last log lines, the child named
    // as not built because of its parent, the good leaf still built; JSON events carry host,
    // label, image, and the progress total
    let (rc, lines, _) = run(&["--format", "json", r"^kb-\(fail\|orphan\|leaf\)$"]);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let all = text.join("\n");
    assert_ne!(rc, 0, "a failing image must fail the run");
    assert!(
        text.iter()
            .any(|l| l.contains("kb-fail Failed with status: error")),
        "kolla's reason missing:\n{all}"
    );
    let dir = fetched(&tag);
    for (img, said) in [
        ("kb-fail", "this step fails on purpose"),
        ("kb-badparent", "this parent fails on purpose"),
    ] {
        let logp = dir.join(format!("{img}.log"));
        assert!(
            all.contains(&format!("{img}: failed with status error"))
                && all.contains(&format!("  log: {}", logp.display())),
            "{img}'s failure not reported:\n{all}"
        );
        assert!(
            read(&logp).unwrap_or_default().contains(said),
            "{}",
            logp.display()
        );
        // the tail of its log is in the message
        assert!(
            all.contains(&format!("  | ")) && all.contains(said),
            "{all}"
        );
    }
    assert!(
        all.contains("kb-orphan: not built: its parent kb-badparent failed"),
        "the unbuilt child is not named:\n{all}"
    );
    sh(&format!("podman image exists localhost/kb/kb-leaf:{tag}"));
    let matched = text
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["event"] == "progress" && j["total"].is_u64())
        .unwrap_or_else(|| panic!("no progress event with a total:\n{all}"));
    assert_eq!(matched["total"], 6, "{matched}");
    println!("failure report of the failing run:");
    if let Some(msg) = text
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["event"] == "item_result" && j["result"]["failures"].is_array())
        .and_then(|j| j["result"]["msg"].as_str().map(str::to_string))
    {
        for l in msg.lines() {
            println!("  {l}");
        }
    }
    let ev = text
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["event"] == "line" && j["image"] == "kb-fail")
        .expect("a line event about kb-fail");
    assert_eq!(ev["host"], "builder");
    assert_eq!(ev["label"], "x86_64");
    // --push with kolla_docker_registry: a real registry (docker-registry) with htpasswd auth on
    // 127.0.0.1:19150; the build logs in first as Kayobe's playbook does (password on stdin,
    // never in the output), then kiln's publish step pushes
    if registry_support::have("docker-registry") && registry_support::have("htpasswd") {
        let pw = "kb-registry-pw-19150";
        let _registry = registry_support::Registry::start(19150, Some(pw), None);
        let record = t.join("record.json");
        let extra = serde_json::json!({
            "kolla_docker_registry": "127.0.0.1:19150",
            "kolla_docker_registry_insecure": true,
            "kolla_docker_registry_username": registry_support::USER,
            "kolla_docker_registry_password": pw,
            "kiln_build_record": record.display().to_string(),
            "kiln_push_failed_list": t.join("push-failed.txt").display().to_string(),
        })
        .to_string();
        let (rc, lines, _) = run(&["--push", "-e", &extra, r"^kb-\(base\|parent\|leaf\)$"]);
        let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(rc, 0, "the push build failed:\n{}", text.join("\n"));
        assert!(
            !text.iter().any(|l| l.contains(pw)),
            "the registry password is in the output"
        );
        let login = text
            .iter()
            .skip_while(|l| !l.contains("TASK [Login to container registry]"))
            .nth(1)
            .copied()
            .unwrap_or_default();
        assert!(login.starts_with("changed: [builder]"), "login: {login:?}");
        let who = sh("podman login --get-login 127.0.0.1:19150");
        assert_eq!(who.trim(), registry_support::USER, "podman's login");
        let _ = Command::new("podman")
            .args(["logout", "127.0.0.1:19150"])
            .env("CONTAINERS_CONF", &conf)
            .output();
        let tags = sh(&format!(
            "curl -s -u {}:{pw} http://127.0.0.1:19150/v2/kb/kb-leaf/tags/list",
            registry_support::USER
        ));
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
                "curl -sI -u {}:{pw} -H 'Accept: application/vnd.oci.image.manifest.v1+json' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://127.0.0.1:19150/v2/kb/{}/manifests/{tag}",
                registry_support::USER,
                i["name"].as_str().unwrap()
            ));
            assert!(
                digest.starts_with("sha256:")
                    && head
                        .to_lowercase()
                        .contains(&format!("docker-content-digest: {digest}")),
                "record digest {digest} vs registry:\n{head}"
            );
            // the record points at the per-image log fetched into the run folder
            let log = i["log"].as_str().unwrap_or("");
            assert_eq!(
                log,
                fetched(&tag)
                    .join(format!("{}.log", i["name"].as_str().unwrap()))
                    .display()
                    .to_string()
            );
            assert!(Path::new(log).exists(), "{log}");
        }
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "podman rmi -f 127.0.0.1:19150/kb/kb-leaf:{tag} 127.0.0.1:19150/kb/kb-parent:{tag} 127.0.0.1:19150/kb/kb-base:{tag} >/dev/null 2>&1"
            ))
            .env("CONTAINERS_CONF", &conf)
            .status();
    } else {
        println!(
            "SKIP (push part): docker-registry or htpasswd missing (tests/setup installs them)"
        );
    }
    // the credential check (through-the-proxy builds): a leaky image whose layer holds the
    // mirror password (written by a kolla_build_blocks step, decoded so no build line shows it)
    // fails the run naming image and file; the clean leaf beside it passes
    let secret = "kb-pulp-secret-42";
    let extra = serde_json::json!({
        "stackhpc_repo_mirror_auth_proxy_enabled": true,
        "stackhpc_repo_mirror_username": "kbuser",
        "stackhpc_repo_mirror_password": secret,
        "stackhpc_release_pulp_url": "https://pulp.kb.invalid",
        "kolla_build_blocks": {
            "kb_leaky_footer": "RUN echo YXV0aD1rYi1wdWxwLXNlY3JldC00Mgo= | busybox base64 -d > /etc/kb-mirror.conf",
        },
    })
    .to_string();
    let (rc, lines, _) = run(&["-e", &extra, r"^kb-\(leaf\|leaky\)$"]);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let all = text.join("\n");
    assert_ne!(rc, 0, "a leaky image must fail the run:\n{all}");
    assert!(!all.contains(secret), "the secret is in the output");
    let found = text
        .iter()
        .find(|l| l.contains("in image kb/kb-leaky:") && l.contains("file /etc/kb-mirror.conf"))
        .unwrap_or_else(|| panic!("the leak is not named:\n{all}"));
    assert!(
        !found.contains("kb-leaf"),
        "the clean image was flagged: {found}"
    );
    println!("credential check: {}", found.trim());
    // without the planted credential the same check passes
    let clean = serde_json::json!({
        "stackhpc_repo_mirror_auth_proxy_enabled": true,
        "stackhpc_repo_mirror_username": "kbuser",
        "stackhpc_repo_mirror_password": "kb-other-secret-43",
        "stackhpc_release_pulp_url": "https://pulp.kb.invalid",
    })
    .to_string();
    let (rc, lines, _) = run(&["-e", &clean, r"^kb-leaf$"]);
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        rc,
        0,
        "a clean image failed the check:\n{}",
        text.join("\n")
    );
    assert!(
        text.iter()
            .skip_while(|l| !l.contains("TASK [Ensure the built images hold no Pulp credentials"))
            .nth(1)
            .is_some_and(|l| l.starts_with("ok: [builder]")),
        "the check did not run:\n{}",
        text.join("\n")
    );
    drop(svc);
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "podman rmi -f localhost/kb/kb-leaky:{tag} localhost/kb/kb-leaf:{tag} localhost/kb/kb-parent:{tag} localhost/kb/kb-base:{tag} >/dev/null 2>&1"
        ))
        .env("CONTAINERS_CONF", &conf)
        .status();
}

/// `merge_yaml`'s `yaml_width` (Kayobe's kolla-bifrost role passes 131072): the merged file equals
/// what Kayobe's own action plugin writes with ansible-core, for no width, a wide one, a narrow
/// one and one PyYAML ignores (not above twice the indent).
#[test]
fn merge_yaml_width_matches_kayobe() {
    let v = venv();
    if !v.join("bin/ansible-playbook").exists() {
        println!("SKIP: no Kayobe oracle venv at {}", v.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let long = (0..40)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    std::fs::write(
        t.join("a.yml"),
        format!("top:\n  text: \"{long}\"\n  list:\n    - \"{long}\"\nplain: \"{long}\"\n"),
    )
    .unwrap();
    std::fs::write(t.join("b.yml"), "top:\n  extra: 'one two'\n").unwrap();
    let widths = ["", "131072", "40", "3"];
    let mut tasks = String::new();
    for (i, w) in widths.iter().enumerate() {
        let width = if w.is_empty() {
            String::new()
        } else {
            format!("\n        yaml_width: {w}")
        };
        tasks.push_str(&format!(
            "    - merge_yaml:\n        sources: [\"{0}/a.yml\", \"{0}/b.yml\"]\n        dest: \"{{{{ out }}}}/m{i}.yml\"{width}\n",
            t.display()
        ));
    }
    let pb = t.join("pb.yml");
    std::fs::write(
        &pb,
        format!("- hosts: localhost\n  gather_facts: false\n  tasks:\n{tasks}"),
    )
    .unwrap();
    let (ka, ki) = (t.join("kayobe"), t.join("kiln"));
    std::fs::create_dir_all(&ka).unwrap();
    std::fs::create_dir_all(&ki).unwrap();
    let share = v.join("share/kayobe/ansible");
    let o = Command::new(v.join("bin/ansible-playbook"))
        .args(["-i", "localhost,", "-c", "local"])
        .args(["-e", &format!("out={}", ka.display())])
        .args([
            "-e",
            &format!(
                "ansible_python_interpreter={}",
                v.join("bin/python").display()
            ),
        ])
        .arg(&pb)
        .env("ANSIBLE_ACTION_PLUGINS", share.join("action_plugins"))
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "Kayobe's merge_yaml failed:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = Command::new(kiln())
        .args(["playbook", "run"])
        .arg(&pb)
        .args(["-e", &format!("out={}", ki.display())])
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kiln's merge_yaml failed:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut same = 0;
    for i in 0..widths.len() {
        let a = read(&ka.join(format!("m{i}.yml"))).unwrap();
        let b = read(&ki.join(format!("m{i}.yml"))).unwrap();
        assert_eq!(
            b, a,
            "yaml_width {:?}: kiln's file differs from Kayobe's",
            widths[i]
        );
        same += 1;
    }
    // the wide width keeps the long line whole, the default folds it
    assert!(read(&ka.join("m1.yml")).unwrap().contains(&long));
    assert!(!read(&ka.join("m0.yml")).unwrap().contains(&long));
    println!(
        "merge_yaml yaml_width: {same}/{} files identical to Kayobe's",
        widths.len()
    );
}

/// Benchmark (not a timed test; `cargo test --test kolla_build_diff -- --ignored --nocapture
/// kolla_build_bench`, as root, with kolla in KILN_KOLLA_VENV): kiln's overhead over the same
/// kolla-build run by hand, side by side in one run, on the tiny tree (kb-base → kb-parent →
/// kb-leaf, `--nocache` so each run builds). Alternates kiln and bare runs; prints each, the
/// means, the overhead, where kiln's time goes (its build task's own `elapsed` vs the whole
/// verb), the preparation with nothing changed, and the first streamed line's delay (kolla's own
/// `Building started at` timestamp → arrival on the controller).
#[test]
#[ignore]
fn kolla_build_bench() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: not root");
        return;
    }
    let kvenv = std::env::var_os("KILN_KOLLA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-kolla"));
    if !kvenv.join("bin/kolla-build").exists() || !Path::new("/bin/busybox").exists() {
        println!("SKIP: kolla (KILN_KOLLA_VENV) or busybox-static missing");
        return;
    }
    let rounds: usize = std::env::var("KILN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // podman's configuration, the busybox base image and the podman API: tests/support/images.rs
    let conf = images::podman_conf(t);
    images::busybox_base(&conf);
    let (_svc, sock) = images::podman_service(t, &conf, "127.0.0.1:19150");
    let cfg = t.join("etc/kayobe");
    copy_dir(&root().join("tests/cases/kolla_build/real"), &cfg);
    let kconf = t.join("kolla");
    let log = t.join("kolla-build.log");
    let tag = format!("kbb{}", std::process::id());
    let regex = r"^kb-\(base\|parent\|leaf\)$";
    let kiln_cmd = |extra: &[&str]| {
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
                &format!("kolla_build_config_path={}", kconf.display()),
            ])
            .args([
                "-e",
                &format!("kb_docker_dir={}", cfg.join("docker").display()),
            ])
            .args(["-e", &format!("kb_podman_url=unix://{}", sock.display())])
            .args(["-e", &format!("kolla_build_log_path={}", log.display())])
            .args(["-e", &format!("kolla_tag={tag}")])
            .args(extra)
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env("CONTAINERS_CONF", &conf)
            .stderr(std::process::Stdio::null());
        c
    };
    // warm-up: writes the configuration, fills the base image cache
    let o = kiln_cmd(&[regex]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let mut nototal_walls = Vec::new();
    let mut kiln_walls = Vec::new();
    let mut kiln_task = Vec::new();
    let mut bare_walls = Vec::new();
    let mut first_line = Vec::new();
    for round in 0..rounds {
        // kiln: the verb, --format json, --nocache
        let start = std::time::Instant::now();
        let mut child = kiln_cmd(&["--format", "json", "--nocache", regex])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = Vec::new();
        {
            use std::io::BufRead;
            for l in std::io::BufReader::new(child.stdout.take().unwrap())
                .lines()
                .map_while(Result::ok)
            {
                lines.push((chrono::Utc::now(), l));
            }
        }
        assert!(child.wait().unwrap().success());
        let wall = start.elapsed().as_secs_f64();
        let mut elapsed = 0.0;
        for (at, l) in &lines {
            let Ok(j) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            if j["event"] == "item_result" {
                elapsed += j["result"]["elapsed"].as_f64().unwrap_or(0.0);
            }
            let text = j["text"].as_str().unwrap_or("");
            if let Some(ts) = text.split("Building started at ").nth(1) {
                if let Ok(ts) =
                    chrono::NaiveDateTime::parse_from_str(ts.trim(), "%Y-%m-%d %H:%M:%S%.f")
                {
                    let d = (*at - ts.and_utc()).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                    first_line.push(d);
                }
            }
        }
        kiln_walls.push(wall);
        kiln_task.push(elapsed);
        // kiln without the progress total (no --list-dependencies beside the build)
        let start = std::time::Instant::now();
        let o = kiln_cmd(&["-e", "kiln_kolla_build_total=false", "--nocache", regex])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let nototal = start.elapsed().as_secs_f64();
        nototal_walls.push(nototal);
        // by hand: the same kolla-build line on the configuration kiln wrote
        let start = std::time::Instant::now();
        let o = Command::new(kvenv.join("bin/kolla-build"))
            .args(["--config-dir"])
            .arg(&kconf)
            .args(["--engine", "podman", "--nocache", "^kb-(base|parent|leaf)$"])
            .env("CONTAINERS_CONF", &conf)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bare = start.elapsed().as_secs_f64();
        bare_walls.push(bare);
        println!(
            "round {}: kiln {wall:6.2} s (its kolla-build task {elapsed:6.2} s) | kiln without the total {nototal:6.2} s | kolla-build by hand {bare:6.2} s",
            round + 1
        );
    }
    // preparation with nothing changed (kolla-build.yml: kolla installed, files in place)
    let start = std::time::Instant::now();
    let o = kiln_cmd(&["-t", "kolla-build", regex]).output().unwrap();
    let prep = start.elapsed().as_secs_f64();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("changed=0"), "{out}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (k, b, task) = (mean(&kiln_walls), mean(&bare_walls), mean(&kiln_task));
    let nt = mean(&nototal_walls);
    println!("| | kiln (seed container image build) | kolla-build by hand |");
    println!("|---|---|---|");
    println!("| wall, mean of {rounds} | {k:.2} s | {b:.2} s |");
    println!(
        "| kiln without the progress total (kiln_kolla_build_total=false) | {nt:.2} s ({:+.1}%) | |",
        (nt - b) / b * 100.0
    );
    println!(
        "| overhead | {:+.2} s ({:+.1}%; target <= 2%) | |",
        k - b,
        (k - b) / b * 100.0
    );
    println!(
        "| of which outside the build task (startup, config, facts, preparation, fetch) | {:.2} s | |",
        k - task
    );
    println!("| build task vs bare kolla-build | {:+.2} s | |", task - b);
    println!("| preparation, nothing changed (-t kolla-build) | {prep:.2} s (target <= 1 s) | |");
    if !first_line.is_empty() {
        println!(
            "| first streamed line, kolla's timestamp -> controller | {:.1} ms mean, {:.1} ms max (target <= 100 ms) | |",
            mean(&first_line),
            first_line.iter().cloned().fold(0.0, f64::max)
        );
    }
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("podman rmi -f localhost/kb/kb-leaf:{tag} localhost/kb/kb-parent:{tag} localhost/kb/kb-base:{tag} >/dev/null 2>&1"))
        .env("CONTAINERS_CONF", &conf)
        .status();
}
