//! `kiln seed container image build --if-changed --push` for real (issue 17 item 1), and the run's
//! feedback hooks (item 5): kolla 18.8.0 with `--engine podman` through `podman system service`,
//! Debian's docker-registry on 127.0.0.1:18701, the kb-* image tree of
//! `tests/cases/kolla_build/real` (kb-base → kb-parent → kb-leaf) on the busybox base image pushed
//! to that registry. Five runs, each with a new tag:
//!
//! 1. first run: every image is new, all three are built; the registry's image config carries
//!    `kiln.input-hash`, the record the hash and its parts;
//! 2. nothing changed: nothing is built (no kolla-build started), each image is `unchanged` with
//!    its reason, and all three carry the new tag in the registry (same digests); the webhook (a
//!    listener this test starts on 127.0.0.1:18702) and the command hook receive the summary;
//! 3. the leaf's template changed: only kb-leaf is built (`dockerfile changed`);
//! 4. the parent's template changed: kb-parent and kb-leaf (`parent kb-parent changed`);
//! 5. the base image's digest changed in the registry: all three (`base image digest changed`).
//!
//! Builds run on the machine kiln runs on (local connection), as in `kolla_build_real_podman`.

mod support;

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::Command;
use support::images as lab;

const REG: &str = "127.0.0.1:18701";
const HOOK_PORT: u16 = 18702;

fn kiln() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kiln"))
}

use support::copy_dir;

/// A one-request HTTP listener: the body of the first POST, answered 200.
fn hook_listener() -> std::thread::JoinHandle<String> {
    let l = std::net::TcpListener::bind(("127.0.0.1", HOOK_PORT)).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut len = 0usize;
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        format!("{}\n{}", first.trim_end(), String::from_utf8_lossy(&body))
    })
}

struct Run {
    rc: i32,
    out: String,
    secs: f64,
}

#[test]
fn if_changed_real_podman() {
    if let Some(why) = lab::missing() {
        println!("SKIP: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let conf = lab::podman_conf(t);
    lab::busybox_base(&conf);
    let Some(_registry) = lab::registry(&t.join("registry"), 18701) else {
        println!("SKIP: docker-registry is not installed (tests/setup installs it)");
        return;
    };
    let regconf = lab::registries_conf(t, &[REG]);
    let push_base = |src: &str| {
        lab::sh(
            &conf,
            &format!("podman push -q --tls-verify=false {src} {REG}/kb-busybox:latest"),
        );
    };
    push_base("localhost/kb-busybox:latest");
    let (svc, sock) = lab::podman_service_with(t, &conf, &regconf);
    let cfg = t.join("etc/kayobe");
    copy_dir(&support::repo().join("tests/cases/kolla_build/real"), &cfg);
    let logs = t.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let builds = t.join("builds");
    let kvenv = lab::kolla_venv();
    let base = format!("rb{}", std::process::id());
    // a git source for kb-leaf: a local repository whose branch `main` moves in run 6
    let src = t.join("kb-leaf-src");
    let in_src = |script: &str| {
        lab::sh(
            &conf,
            &format!(
                "cd {} && export GIT_AUTHOR_NAME=kiln GIT_AUTHOR_EMAIL=kiln@localhost GIT_COMMITTER_NAME=kiln GIT_COMMITTER_EMAIL=kiln@localhost && {script}",
                src.display()
            ),
        )
    };
    std::fs::create_dir_all(&src).unwrap();
    in_src("git init -q -b main . && echo one > f && git add f && git commit -qm one");
    let extra = serde_json::json!({
        "kb_leaf_source": src.display().to_string(),
        "kolla_venv": kvenv.display().to_string(),
        "kolla_build_config_path": t.join("kolla").display().to_string(),
        "kb_docker_dir": cfg.join("docker").display().to_string(),
        "kb_podman_url": format!("unix://{}", sock.display()),
        "kb_logs_dir": logs.display().to_string(),
        "kb_base_image": format!("{REG}/kb-busybox"),
        "kolla_build_log_path": t.join("kolla-build.log").display().to_string(),
        "kolla_docker_registry": REG,
        "kolla_docker_registry_insecure": true,
        "kiln_insecure_registries": [REG],
        "kiln_build_record": format!("{}/{{{{ kolla_tag }}}}.json", builds.display()),
        "kiln_push_failed_list": t.join("push-failed.txt").display().to_string(),
    })
    .to_string();
    let run = |tag: &str, more: &[&str]| -> Run {
        let t0 = std::time::Instant::now();
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
            .args(["--push", "--if-changed"])
            .args(["-e", &extra, "-e", &format!("kolla_tag={tag}")])
            .args(more)
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env("CONTAINERS_CONF", &conf)
            .env("CONTAINERS_REGISTRIES_CONF", &regconf)
            .output()
            .unwrap();
        let out = format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Run {
            rc: o.status.code().unwrap_or(-1),
            out,
            secs: t0.elapsed().as_secs_f64(),
        }
    };
    let record = |tag: &str| -> serde_json::Value {
        let p = builds.join(format!("{tag}.json"));
        serde_json::from_str(
            &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    };
    let img = |rec: &serde_json::Value, name: &str| -> serde_json::Value {
        rec["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in the record: {rec}"))
    };
    // the plan's line for an image: `  kb-leaf   build: dockerfile changed`
    let line = |r: &Run, name: &str| -> String {
        r.out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| panic!("no plan line for {name}:\n{}", r.out))
    };
    let names = ["kb-base", "kb-parent", "kb-leaf"];
    let digest_of = |name: &str, tag: &str| -> String {
        lab::sh(
            &conf,
            &format!("curl -sI -H 'Accept: application/vnd.oci.image.manifest.v1+json' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://{REG}/v2/kb/{name}/manifests/{tag} | tr -d '\\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p'"),
        )
        .trim()
        .to_string()
    };

    // 1. first run: everything is new
    let t1 = format!("{base}-1");
    let r1 = run(&t1, &[]);
    assert_eq!(r1.rc, 0, "first run:\n{}", r1.out);
    let rec1 = record(&t1);
    for n in names {
        assert!(line(&r1, n).contains("build: new image"), "{}", r1.out);
        let i = img(&rec1, n);
        assert_eq!(i["status"], "pushed", "{i}");
        let hash = i["inputs"]["hash"].as_str().unwrap();
        assert!(hash.starts_with("sha256:"));
        assert_eq!(
            i["labels"]["kiln.input-hash"], hash,
            "the image label read back from the registry is the recorded hash: {i}"
        );
    }
    println!("run 1 (all new): {:.1}s", r1.secs);

    // 2. nothing changed: nothing built, every image tagged with the new tag; feedback hooks
    let hook = hook_listener();
    let hook_file = t.join("hook.txt");
    let t2 = format!("{base}-2");
    let cmd = format!(
        "echo \"$KILN_BUILD_STATUS $1\" > {0}; cat >> {0}",
        hook_file.display()
    );
    let r2 = run(
        &t2,
        &[
            "--notify-url",
            &format!("http://127.0.0.1:{HOOK_PORT}/hook?token=s3cr3t"),
            "--notify-command",
            &cmd,
        ],
    );
    assert_eq!(r2.rc, 0, "second run:\n{}", r2.out);
    assert!(
        !r2.out.contains("Built at")
            && !r2
                .out
                .contains("Ensure Kolla container images are built\n  changed"),
        "{}",
        r2.out
    );
    assert!(r2.out.contains("0 to build, 3 unchanged"), "{}", r2.out);
    let rec2 = record(&t2);
    for n in names {
        let l = line(&r2, n);
        assert!(
            l.contains("unchanged: same inputs as")
                && l.contains(&t1)
                && l.contains(&format!("tagged {t2}")),
            "{l}"
        );
        let i = img(&rec2, n);
        assert_eq!(i["status"], "unchanged", "{i}");
        assert_eq!(i["inputs"], img(&rec1, n)["inputs"]);
        // the new tag names the same manifest in the registry
        let d1 = digest_of(n, &t1);
        assert!(d1.starts_with("sha256:"), "{n}:{t1}: {d1}");
        assert_eq!(digest_of(n, &t2), d1, "{n}:{t2} must name the {t1} image");
        assert_eq!(i["digest"], d1.as_str());
    }
    let posted = hook.join().unwrap();
    assert!(posted.starts_with("POST /hook?token=s3cr3t"), "{posted}");
    let body: serde_json::Value = serde_json::from_str(posted.split_once('\n').unwrap().1).unwrap();
    assert_eq!(body["status"], "success");
    assert_eq!(body["tag"], t2.as_str());
    assert_eq!(body["images"]["unchanged"], 3);
    assert_eq!(
        body["record"],
        builds.join(format!("{t2}.json")).display().to_string()
    );
    let hooked = std::fs::read_to_string(&hook_file).unwrap();
    assert!(
        hooked.starts_with(&format!(
            "success {}",
            builds.join(format!("{t2}.json")).display()
        )) && hooked.contains("\"unchanged\":3"),
        "{hooked}"
    );
    assert!(
        !r2.out.contains("s3cr3t"),
        "the webhook token leaked:\n{}",
        r2.out
    );
    println!("run 2 (unchanged): {:.1}s, nothing built", r2.secs);
    for l in r2
        .out
        .lines()
        .filter(|l| l.contains("if-changed") || l.starts_with("  kb-"))
    {
        println!("  {l}");
    }

    // 3. the leaf's template changed: only the leaf
    let leaf = cfg.join("docker/kb-leaf/Dockerfile.j2");
    let text = std::fs::read_to_string(&leaf).unwrap();
    std::fs::write(&leaf, format!("{text}RUN echo leaf-v2 > /kb-leaf-v2\n")).unwrap();
    let t3 = format!("{base}-3");
    let r3 = run(&t3, &[]);
    assert_eq!(r3.rc, 0, "third run:\n{}", r3.out);
    assert!(r3.out.contains("1 to build, 2 unchanged"), "{}", r3.out);
    assert_eq!(
        line(&r3, "kb-leaf"),
        "kb-leaf                  build: dockerfile changed"
    );
    let rec3 = record(&t3);
    assert_eq!(img(&rec3, "kb-leaf")["status"], "pushed");
    assert_eq!(img(&rec3, "kb-parent")["status"], "unchanged");
    assert_eq!(img(&rec3, "kb-base")["status"], "unchanged");
    assert_eq!(digest_of("kb-parent", &t3), digest_of("kb-parent", &t1));
    assert_ne!(digest_of("kb-leaf", &t3), digest_of("kb-leaf", &t1));
    println!("run 3 (leaf changed): {:.1}s", r3.secs);
    for l in r3
        .out
        .lines()
        .filter(|l| l.contains("if-changed") || l.starts_with("  kb-"))
    {
        println!("  {l}");
    }

    // 4. the parent's template changed: the parent and its child
    let parent = cfg.join("docker/kb-parent/Dockerfile.j2");
    let text = std::fs::read_to_string(&parent).unwrap();
    std::fs::write(
        &parent,
        text.replace(
            "RUN echo parent > /kb-parent",
            "RUN echo parent-v2 > /kb-parent",
        ),
    )
    .unwrap();
    let t4 = format!("{base}-4");
    let r4 = run(&t4, &[]);
    assert_eq!(r4.rc, 0, "fourth run:\n{}", r4.out);
    assert!(r4.out.contains("2 to build, 1 unchanged"), "{}", r4.out);
    assert!(line(&r4, "kb-parent").ends_with("build: dockerfile changed"));
    assert!(line(&r4, "kb-leaf").ends_with("build: parent kb-parent changed"));
    assert!(line(&r4, "kb-base").contains("unchanged"));
    let rec4 = record(&t4);
    assert_eq!(img(&rec4, "kb-parent")["status"], "pushed");
    assert_eq!(img(&rec4, "kb-leaf")["status"], "pushed");
    let out = lab::sh(
        &conf,
        &format!("podman run --rm {REG}/kb/kb-leaf:{t4} cat /kb-parent /kb-leaf-v2"),
    );
    assert!(
        out.contains("parent-v2") && out.contains("leaf-v2"),
        "{out}"
    );
    println!("run 4 (parent changed): {:.1}s", r4.secs);
    for l in r4
        .out
        .lines()
        .filter(|l| l.contains("if-changed") || l.starts_with("  kb-"))
    {
        println!("  {l}");
    }

    // 5. a new base image under the same tag: everything
    lab::sh(
        &conf,
        "podman import -q --message v2 /var/cache/kiln-lab/kb-busybox-rootfs.tar localhost/kb-busybox:rb-v2 >/dev/null",
    );
    push_base("localhost/kb-busybox:rb-v2");
    let t5 = format!("{base}-5");
    let r5 = run(&t5, &[]);
    assert_eq!(r5.rc, 0, "fifth run:\n{}", r5.out);
    assert!(r5.out.contains("3 to build, 0 unchanged"), "{}", r5.out);
    assert!(line(&r5, "kb-base").ends_with("build: base image digest changed"));
    assert!(line(&r5, "kb-parent").ends_with("build: parent kb-base changed"));
    assert!(line(&r5, "kb-leaf").ends_with("build: parent kb-parent changed"));
    println!("run 5 (base digest changed): {:.1}s", r5.secs);

    // 6. a new commit on kb-leaf's source branch: only kb-leaf, because its sources changed
    // (the branch is resolved to its commit on the builder; the conf itself did not change)
    in_src("echo two > f && git commit -qam two");
    let t6 = format!("{base}-6");
    let r6 = run(&t6, &[]);
    assert_eq!(r6.rc, 0, "sixth run:\n{}", r6.out);
    assert!(r6.out.contains("1 to build, 2 unchanged"), "{}", r6.out);
    assert!(
        line(&r6, "kb-leaf").ends_with("build: sources changed"),
        "{}",
        r6.out
    );
    assert!(line(&r6, "kb-parent").contains("unchanged"), "{}", r6.out);
    // the record's `sources` part of kb-leaf's hash moved with the branch; kb-parent's did not
    let part = |tag: &str, n: &str| img(&record(tag), n)["inputs"]["parts"]["sources"].clone();
    assert!(part(&t6, "kb-leaf").is_string(), "{}", record(&t6));
    assert_ne!(part(&t5, "kb-leaf"), part(&t6, "kb-leaf"));
    assert_eq!(part(&t5, "kb-parent"), part(&t6, "kb-parent"));
    println!("run 6 (source branch moved): {:.1}s", r6.secs);

    drop(svc);
    let tags: Vec<String> = (1..=6).map(|i| format!("{base}-{i}")).collect();
    let mut refs = Vec::new();
    for n in names {
        for t in &tags {
            refs.push(format!("{REG}/kb/{n}:{t}"));
        }
    }
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "podman rmi -f {} localhost/kb-busybox:rb-v2 {REG}/kb-busybox:latest >/dev/null 2>&1",
            refs.join(" ")
        ))
        .env("CONTAINERS_CONF", &conf)
        .status();
}

/// The feedback options are the verb's own, so a schedule carries them into its unit as given;
/// `@FILE` keeps a webhook token out of the unit file.
#[test]
fn feedback_options_in_a_scheduled_run() {
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    let o = Command::new(kiln())
        .args([
            "schedule",
            "add",
            "rbnightly",
            "--on-calendar",
            "daily",
            "--unit-dir",
        ])
        .arg(&units)
        .args([
            "--",
            "seed",
            "container",
            "image",
            "build",
            "--push",
            "--if-changed",
        ])
        .args([
            "--notify-url",
            "@/etc/kiln/webhook-url",
            "--notify-command",
            "logger -t kiln",
        ])
        .env("HOME", tmp.path())
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let unit = std::fs::read_to_string(units.join("kiln-schedule-rbnightly.service")).unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec.contains("-- seed container image build --push --if-changed --notify-url @/etc/kiln/webhook-url --notify-command"),
        "{exec}"
    );
    // the verb accepts them (a bad option would fail here, before any host is touched)
    let o = Command::new(kiln())
        .args(["seed", "container", "image", "build", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("--if-changed")
            && help.contains("--notify-url")
            && help.contains("--notify-command"),
        "{help}"
    );
    // --if-changed without --push or --plan is refused with what to do
    let o = Command::new(kiln())
        .args(["seed", "container", "image", "build", "--if-changed"])
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("add --push (or --plan DIR"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
