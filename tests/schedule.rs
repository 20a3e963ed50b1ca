//! `kiln schedule`: the units it writes checked by systemd itself (`systemd-analyze verify`, and
//! `systemd-analyze calendar` behind `--on-calendar`), and the run wrapper (`kiln schedule exec`)
//! as real processes: two overlapping runs against the lock in wait and skip modes, history lines
//! for a success (with a verb's summary), a failure, a run killed with SIGTERM and a wrapper
//! killed with SIGKILL.
//!
//! A real timer cannot fire here: systemd is installed (252) but is not PID 1 on these machines
//! (nor in lab hosts), so `systemctl enable --now` has no manager to talk to; the test checks that
//! `kiln schedule add` says so. The verbs the wrapper runs are real kiln runs (`kiln playbook run`
//! on localhost with the local connection).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vg-sched-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(KILN)
        .current_dir(dir)
        .args(args)
        .env("HOME", dir)
        // carried into the service as Environment= (quoting checked by systemd-analyze)
        .env("KAYOBE_ENVIRONMENT", "ci builder 50%")
        .env_remove("KILN_SCHEDULE_DIR")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn verify(files: &[PathBuf]) -> Output {
    Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        println!(
            "SKIPPED (systemd-analyze not installed: apt-get install systemd; tests/setup does)"
        );
        return;
    }
    let d = tmp("verify");
    let units = d.join("units");
    let state = d.join("state");
    let units_s = units.to_str().unwrap();
    let state_s = state.to_str().unwrap();
    // a command hook, and a verb whose words need systemd quoting (space, %, $)
    let o = kiln(
        &d,
        &[
            "schedule",
            "add",
            "nightly",
            "--on-calendar",
            "Mon *-*-* 02:00",
            "--persistent",
            "--randomized-delay",
            "900",
            "--overlap",
            "skip",
            "--on-failure",
            "echo \"kiln schedule failed: $MONITOR_UNIT\" | logger -t kiln",
            "--unit-dir",
            units_s,
            "--state-root",
            state_s,
            "--",
            "playbook",
            "run",
            "my build.yml",
            "-e",
            "budget=50% home=$HOME",
        ],
    );
    println!("{}", text(&o));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Next elapse:"),
        "the calendar check's output is shown"
    );
    let timer = units.join("kiln-schedule-nightly.timer");
    let service = units.join("kiln-schedule-nightly.service");
    let hook = units.join("kiln-schedule-nightly-onfailure.service");
    for f in [&timer, &service, &hook] {
        println!("# {}\n{}", f.display(), std::fs::read_to_string(f).unwrap());
    }
    let t = std::fs::read_to_string(&timer).unwrap();
    assert!(t.contains("OnCalendar=Mon *-*-* 02:00\n"));
    assert!(t.contains("Persistent=true\n"));
    assert!(t.contains("RandomizedDelaySec=900\n"));
    assert!(t.contains("WantedBy=timers.target"));
    let s = std::fs::read_to_string(&service).unwrap();
    assert!(s.contains("OnFailure=kiln-schedule-nightly-onfailure.service\n"));
    assert!(s.contains("Type=oneshot\n"));
    assert!(
        s.contains("Environment=\"KAYOBE_ENVIRONMENT=ci builder 50%%\"\n"),
        "{s}"
    );
    let kiln_path = std::fs::canonicalize(KILN).unwrap();
    assert!(s.contains(&format!(
        "ExecStart={} schedule exec --overlap skip --state-dir {}/nightly nightly -- playbook run \"my build.yml\" -e \"budget=50%% home=$$HOME\"\n",
        kiln_path.display(),
        state_s
    )), "{s}");

    let v = verify(&[timer.clone(), service.clone(), hook.clone()]);
    println!(
        "systemd-analyze verify: rc={:?} {}",
        v.status.code(),
        text(&v)
    );
    assert!(v.status.success(), "systemd-analyze verify: {}", text(&v));
    // and as user units (the default scope); the user manager wants a runtime folder
    let xdg = d.join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let v = Command::new("systemd-analyze")
        .args(["--user", "verify", "--man=no"])
        .args([&timer, &service, &hook])
        .env("XDG_RUNTIME_DIR", &xdg)
        .output()
        .unwrap();
    println!(
        "systemd-analyze --user verify: rc={:?} {}",
        v.status.code(),
        text(&v)
    );
    assert!(
        v.status.success(),
        "systemd-analyze --user verify: {}",
        text(&v)
    );

    // OnFailure= naming a unit (a template instance the operator provides)
    let o = kiln(
        &d,
        &[
            "schedule",
            "add",
            "weekly",
            "--on-calendar",
            "weekly",
            "--on-failure",
            "notify@ops.service",
            "--unit-dir",
            units_s,
            "--state-root",
            state_s,
            "--",
            "inventory",
            "--graph",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = std::fs::read_to_string(units.join("kiln-schedule-weekly.service")).unwrap();
    assert!(s.contains("OnFailure=notify@ops.service\n"), "{s}");
    assert!(!units
        .join("kiln-schedule-weekly-onfailure.service")
        .exists());
    std::fs::write(
        units.join("notify@.service"),
        "[Unit]\nDescription=notify %i\n[Service]\nType=oneshot\nExecStart=/bin/true %i\n",
    )
    .unwrap();
    let v = verify(&[
        units.join("kiln-schedule-weekly.timer"),
        units.join("kiln-schedule-weekly.service"),
    ]);
    assert!(v.status.success(), "systemd-analyze verify: {}", text(&v));

    // the check can fail: the same service pointing at a binary that does not exist
    let broken = units.join("broken.service");
    std::fs::write(
        &broken,
        s.replace(&kiln_path.display().to_string(), "/nonexistent/kiln"),
    )
    .unwrap();
    let v = verify(&[broken]);
    assert!(
        !v.status.success(),
        "verify accepted a missing ExecStart binary"
    );
    assert!(text(&v).contains("/nonexistent/kiln"), "{}", text(&v));

    // list and show read the definitions back
    let o = kiln(&d, &["schedule", "list", "--state-root", state_s]);
    let out = text(&o);
    println!("{out}");
    assert!(out.contains("nightly") && out.contains("weekly") && out.contains("never run"));
    let o = kiln(
        &d,
        &["schedule", "show", "nightly", "--state-root", state_s],
    );
    assert!(
        text(&o).contains("OnCalendar=Mon *-*-* 02:00"),
        "{}",
        text(&o)
    );
    // remove deletes the units and the state
    let o = kiln(
        &d,
        &["schedule", "remove", "weekly", "--state-root", state_s],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!units.join("kiln-schedule-weekly.timer").exists());
    assert!(!state.join("weekly").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_bad_calendar_spec_is_refused_at_add() {
    if !have("systemd-analyze") {
        println!("SKIPPED (systemd-analyze not installed: apt-get install systemd)");
        return;
    }
    let d = tmp("calendar");
    let units = d.join("units");
    let o = kiln(
        &d,
        &[
            "schedule",
            "add",
            "bad",
            "--on-calendar",
            "every tuesday-ish",
            "--unit-dir",
            units.to_str().unwrap(),
            "--state-root",
            d.join("state").to_str().unwrap(),
            "--",
            "inventory",
        ],
    );
    let out = text(&o);
    println!("{out}");
    assert!(!o.status.success());
    assert!(out.contains("is not a systemd calendar event"), "{out}");
    assert!(
        out.contains("Failed to parse calendar specification"),
        "systemd's reason: {out}"
    );
    assert!(!units.exists(), "nothing written for a refused spec");
    let _ = std::fs::remove_dir_all(&d);
}

/// Without `--unit-dir`, `add` installs into ~/.config/systemd/user and asks systemctl to enable
/// the timer; with systemd not PID 1 (these machines), it says so and exits non-zero.
#[test]
fn add_reports_that_systemd_is_not_running() {
    if Path::new("/run/systemd/system").is_dir() {
        println!("SKIPPED (systemd runs here: this test is about machines where it does not)");
        return;
    }
    if !have("systemd-analyze") {
        println!("SKIPPED (systemd-analyze not installed)");
        return;
    }
    let d = tmp("nosystemd");
    let o = Command::new(KILN)
        .current_dir(&d)
        .args([
            "schedule",
            "add",
            "n",
            "--on-calendar",
            "daily",
            "--",
            "inventory",
        ])
        .env("HOME", &d)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("KILN_SCHEDULE_DIR")
        .output()
        .unwrap();
    let out = text(&o);
    println!("{out}");
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("systemd is not running on this machine"),
        "{out}"
    );
    assert!(d
        .join(".config/systemd/user/kiln-schedule-n.timer")
        .is_file());
    assert!(d
        .join(".local/state/kiln/schedule/n/schedule.json")
        .is_file());
    let _ = std::fs::remove_dir_all(&d);
}

/// A schedule folder with playbooks the runs use: `sleep.yml` (SECS from -e), `ok.yml` (writes
/// a run summary to $KILN_RUN_SUMMARY, as a build verb does), `fail.yml`.
struct Runs {
    dir: PathBuf,
    state_root: PathBuf,
}

impl Runs {
    fn new(tag: &str) -> Runs {
        let dir = tmp(tag);
        std::fs::write(
            dir.join("sleep.yml"),
            "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - command: sleep {{ secs }}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("ok.yml"),
            "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - copy:\n        dest: \"{{ lookup('env', 'KILN_RUN_SUMMARY') }}\"\n        content: '{\"tag\": \"2024.1-rocky-9-20261202T170000\", \"images\": {\"built\": [\"base\", \"keystone\"], \"unchanged\": [\"nova-api\"], \"failed\": []}, \"record\": \"/var/lib/kiln/builds/r1.json\"}'\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("fail.yml"),
            "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - fail:\n        msg: the build broke\n",
        )
        .unwrap();
        let state_root = dir.join("state");
        Runs { dir, state_root }
    }

    fn state(&self, name: &str) -> PathBuf {
        self.state_root.join(name)
    }

    fn exec_cmd(&self, name: &str, overlap: &str, verb: &[&str]) -> Command {
        let mut c = Command::new(KILN);
        c.current_dir(&self.dir)
            .env("HOME", &self.dir)
            .args([
                "schedule",
                "exec",
                name,
                "--overlap",
                overlap,
                "--state-dir",
            ])
            .arg(self.state(name))
            .arg("--")
            .args(verb)
            .args(["-i", "localhost,", "-e", "ansible_connection=local"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn spawn(&self, name: &str, overlap: &str, verb: &[&str]) -> Child {
        self.exec_cmd(name, overlap, verb).spawn().unwrap()
    }

    fn run(&self, name: &str, overlap: &str, verb: &[&str]) -> Output {
        self.exec_cmd(name, overlap, verb).output().unwrap()
    }

    /// Wait until the run in progress has the lock (its running marker exists).
    fn wait_running(&self, name: &str) {
        let marker = self.state(name).join("running.json");
        let t = Instant::now();
        while !marker.exists() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the first run never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn history(&self, name: &str) -> Vec<serde_json::Value> {
        let o = Command::new(KILN)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .args(["schedule", "history", name, "--json", "--state-root"])
            .arg(&self.state_root)
            .output()
            .unwrap();
        assert!(o.status.success(), "history: {}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn table(&self, name: &str) -> String {
        let o = Command::new(KILN)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .args(["schedule", "history", name, "--state-root"])
            .arg(&self.state_root)
            .output()
            .unwrap();
        text(&o)
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ts(v: &serde_json::Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a timestamp")).unwrap()
}

#[test]
fn overlapping_runs_wait_for_the_lock() {
    let r = Runs::new("wait");
    let a = r.spawn(
        "w",
        "wait",
        &["playbook", "run", "sleep.yml", "-e", "secs=3"],
    );
    r.wait_running("w");
    let t = Instant::now();
    let b = r.run(
        "w",
        "wait",
        &["playbook", "run", "sleep.yml", "-e", "secs=0"],
    );
    let a = a.wait_with_output().unwrap();
    assert!(a.status.success(), "first run: {}", text(&a));
    assert!(b.status.success(), "second run: {}", text(&b));
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "the second run waited"
    );
    let h = r.history("w");
    println!("{}", r.table("w"));
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(
        h.iter().all(|l| l["status"] == "ok" && l["exit"] == 0),
        "{h:?}"
    );
    // the second run's verb started only after the first one ended
    assert!(ts(&h[1]["start"]) >= ts(&h[0]["end"]), "{h:?}");
    assert!(h[1]["waited_secs"].as_f64().unwrap() > 1.0, "{h:?}");
}

#[test]
fn an_overlapping_run_is_skipped_in_skip_mode() {
    let r = Runs::new("skip");
    let a = r.spawn(
        "s",
        "skip",
        &["playbook", "run", "sleep.yml", "-e", "secs=3"],
    );
    r.wait_running("s");
    let t = Instant::now();
    let b = r.run(
        "s",
        "skip",
        &["playbook", "run", "sleep.yml", "-e", "secs=0"],
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a skipped run returns at once"
    );
    assert!(b.status.success(), "a skip is no failure: {}", text(&b));
    assert!(text(&b).contains("skipped"), "{}", text(&b));
    let a = a.wait_with_output().unwrap();
    assert!(a.status.success(), "{}", text(&a));
    let h = r.history("s");
    println!("{}", r.table("s"));
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0]["status"], "skipped");
    assert!(h[0]["start"].is_null() && h[0]["exit"].is_null());
    assert_eq!(h[1]["status"], "ok");
    // with the lock free again, a skip-mode run runs
    let c = r.run(
        "s",
        "skip",
        &["playbook", "run", "sleep.yml", "-e", "secs=0"],
    );
    assert!(c.status.success());
    assert_eq!(r.history("s")[2]["status"], "ok");
}

#[test]
fn history_records_success_with_summary_and_failure() {
    let r = Runs::new("hist");
    let ok = r.run("h", "wait", &["playbook", "run", "ok.yml"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let bad = r.run("h", "wait", &["playbook", "run", "fail.yml"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "the verb's exit code: {}",
        text(&bad)
    );
    let h = r.history("h");
    println!("{}", r.table("h"));
    for l in &h {
        println!("{l}");
    }
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["status"], "ok");
    assert_eq!(h[0]["exit"], 0);
    assert_eq!(h[0]["tag"], "2024.1-rocky-9-20261202T170000");
    assert_eq!(
        h[0]["images"],
        serde_json::json!({"built": ["base", "keystone"], "unchanged": ["nova-api"], "failed": []})
    );
    assert_eq!(h[0]["record"], "/var/lib/kiln/builds/r1.json");
    assert!(ts(&h[0]["end"]) >= ts(&h[0]["start"]));
    assert_eq!(h[1]["status"], "failed");
    assert_eq!(h[1]["exit"], 2);
    assert!(
        h[1]["tag"].is_null(),
        "no summary from a run that wrote none: {}",
        h[1]
    );
    assert_eq!(
        h[1]["args"],
        serde_json::json!([
            "playbook",
            "run",
            "fail.yml",
            "-i",
            "localhost,",
            "-e",
            "ansible_connection=local"
        ])
    );
}

#[test]
fn killed_runs_are_recorded_and_release_the_lock() {
    let r = Runs::new("kill");
    // SIGTERM to the wrapper (what `systemctl stop` sends): passed on to the verb, recorded
    let a = r.spawn(
        "k",
        "skip",
        &["playbook", "run", "sleep.yml", "-e", "secs=30"],
    );
    r.wait_running("k");
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let a = a.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "the run ended on SIGTERM"
    );
    assert!(!a.status.success());
    let h = r.history("k");
    println!("{}", r.table("k"));
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["status"], "killed", "{h:?}");
    assert_eq!(h[0]["signal"], 15, "{h:?}");
    assert!(!h[0]["end"].is_null());

    // SIGKILL to the wrapper: no line of its own, but the kernel releases the lock, so the next
    // skip-mode run runs (not skipped) and records the dead one as interrupted
    let a = r.spawn(
        "k",
        "skip",
        &["playbook", "run", "sleep.yml", "-e", "secs=30"],
    );
    r.wait_running("k");
    let mut a = a;
    a.kill().unwrap();
    a.wait().unwrap();
    let c = r.run(
        "k",
        "skip",
        &["playbook", "run", "sleep.yml", "-e", "secs=0"],
    );
    assert!(c.status.success(), "{}", text(&c));
    assert!(text(&c).contains("recorded as interrupted"), "{}", text(&c));
    let h = r.history("k");
    println!("{}", r.table("k"));
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[1]["status"], "interrupted");
    assert!(h[1]["end"].is_null());
    assert_eq!(h[2]["status"], "ok", "the next run got the lock: {h:?}");
}
