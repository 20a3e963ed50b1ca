//! Persistent connections (`transport::mux`, kiln's ControlPersist) through the real CLI against
//! real sshd lab hosts: the second run uses the agent the first one left running (same process,
//! nothing uploaded); `--control-persist 0` bypasses it; `meta: reset_connection` gets a fresh
//! agent; a run killed in the middle of a command leaves the held connection usable (the answer
//! still owed to it is dropped); a held agent that stopped answering is replaced; `kiln mux stop`
//! closes everything and the agents exit. Each step is one scenario over one lab, with a HOME of
//! its own so the daemon is this test's alone.

#[path = "lab/mod.rs"]
mod lab;

use kiln::lab::Flavor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Env {
    home: PathBuf,
    dir: PathBuf,
    inventory: PathBuf,
}

impl Env {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.env("HOME", &self.home)
            .env("KILN_LOG", "warn,kiln::transport::upload=info")
            .env_remove("KILN_CONTROL_PERSIST")
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .current_dir(&self.dir)
            .args(args);
        c
    }

    fn kiln(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).output().expect("run kiln");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run a playbook; it must succeed on every host.
    fn play(&self, book: &str, extra: &[&str]) -> String {
        let inv = self.inventory.display().to_string();
        let mut args = vec!["-i", inv.as_str(), "playbook", "run", "-f", "2"];
        args.extend_from_slice(extra);
        args.push(book);
        let (rc, out, err) = self.kiln(&args);
        assert_eq!(rc, 0, "kiln playbook run {book} {extra:?}:\n{out}\n{err}");
        format!("{out}\n{err}")
    }
}

/// The pid of the agent that ran the last `record` task on `host` (the shell's parent).
fn agent_pid(l: &lab::LabGuard, host: &str, file: &str) -> i32 {
    let (ok, out, err) = lab::ssh(l, host, &["cat", file]);
    assert!(ok, "cat {file} on {host}: {err}");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid in {file} on {host}: {out:?}"))
}

fn alive(l: &lab::LabGuard, host: &str, pid: i32) -> bool {
    lab::ssh(l, host, &["kill", "-0", &pid.to_string()]).0
}

fn wait_gone(l: &lab::LabGuard, host: &str, pid: i32) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if !alive(l, host, pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn held_connections_serve_later_runs() {
    require_lab!();
    let l = lab::LabGuard::up(&lab::spec("mux").with_hosts(2, &[Flavor::Rocky9]));
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let env = Env {
        home: home.clone(),
        dir: t.path().to_path_buf(),
        inventory: l.dir.join("inventory.ini"),
    };
    let hosts: Vec<String> = l.hosts.iter().map(|h| h.name.clone()).collect();
    let h0 = hosts[0].as_str();
    write(
        t.path(),
        "record.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    \
         - shell: echo $PPID > /tmp/kiln-mux-pid; umask > /tmp/kiln-mux-umask\n",
    );
    write(
        t.path(),
        "reset.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - shell: echo $PPID > /tmp/kiln-mux-before\n    \
         - meta: reset_connection\n    - shell: echo $PPID > /tmp/kiln-mux-after\n",
    );
    write(
        t.path(),
        "slow.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - command: sleep 3\n    \
         - shell: echo $PPID > /tmp/kiln-mux-pid\n",
    );

    // 1. cold: the agent is uploaded and stays; the daemon holds both hosts
    let out = env.play("record.yml", &[]);
    assert_eq!(out.matches("uploaded agent").count(), 2, "{out}");
    let first = agent_pid(&l, h0, "/tmp/kiln-mux-pid");
    // the agent that was just uploaded runs with the login's umask, not the upload's 077
    let (_, login_umask, _) = lab::ssh(&l, h0, &["sh", "-c", "umask"]);
    let (_, agent_umask, _) = lab::ssh(&l, h0, &["cat", "/tmp/kiln-mux-umask"]);
    assert_eq!(agent_umask.trim(), login_umask.trim());
    let (rc, status, _) = env.kiln(&["mux", "status"]);
    assert_eq!(rc, 0);
    for h in &hosts {
        assert!(status.contains(&format!("{h} (root@")), "{status}");
    }
    assert!(status.contains("idle"), "{status}");
    assert!(
        alive(&l, h0, first),
        "the held agent {first} must still run"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let cp = home.join(".cache/kiln/cp");
        let mode = std::fs::metadata(&cp).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", cp.display());
    }

    // 2. warm: the same agent process answers, nothing is uploaded
    let out = env.play("record.yml", &[]);
    assert!(!out.contains("uploaded agent"), "{out}");
    assert_eq!(agent_pid(&l, h0, "/tmp/kiln-mux-pid"), first);

    // 3. --control-persist 0: a connection of its own, whose agent exits with the run
    env.play("record.yml", &["--control-persist", "0"]);
    let own = agent_pid(&l, h0, "/tmp/kiln-mux-pid");
    assert_ne!(own, first);
    assert!(
        wait_gone(&l, h0, own),
        "the unpersisted agent {own} must exit with its run"
    );
    assert!(alive(&l, h0, first), "the held agent must be left alone");

    // 4. reset_connection: a fresh agent within the run, and that one is held afterwards
    env.play("reset.yml", &[]);
    let before = agent_pid(&l, h0, "/tmp/kiln-mux-before");
    let after = agent_pid(&l, h0, "/tmp/kiln-mux-after");
    assert_eq!(before, first);
    assert_ne!(after, first, "reset_connection must give a new agent");
    assert!(
        wait_gone(&l, h0, first),
        "the reset agent {first} must exit"
    );
    env.play("record.yml", &[]);
    assert_eq!(agent_pid(&l, h0, "/tmp/kiln-mux-pid"), after);

    // 5. a run killed while its command runs: the next run (running while the killed run's
    //    answer arrives) gets the same held agent and a clean stream
    let mut victim: Child = env
        .cmd(&[
            "-i",
            &env.inventory.display().to_string(),
            "playbook",
            "run",
            "slow.yml",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let (_, ps, _) = lab::ssh(&l, h0, &["pgrep", "-x", "sleep"]);
        if !ps.trim().is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the slow run never started its sleep"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let out = env.play("slow.yml", &[]);
    assert!(out.contains("ok=2"), "{out}");
    assert_eq!(agent_pid(&l, h0, "/tmp/kiln-mux-pid"), after);

    // 6. a held agent that no longer answers (stopped) is replaced by a fresh connection
    assert!(lab::ssh(&l, h0, &["kill", "-STOP", &after.to_string()]).0);
    let t1 = Instant::now();
    env.play("record.yml", &[]);
    let replaced = agent_pid(&l, h0, "/tmp/kiln-mux-pid");
    assert_ne!(replaced, after);
    assert!(t1.elapsed() < Duration::from_secs(30), "{:?}", t1.elapsed());
    let _ = lab::ssh(&l, h0, &["kill", "-CONT", &after.to_string()]);
    assert!(
        wait_gone(&l, h0, after),
        "the replaced agent {after} must exit once it runs again"
    );

    // 7. stop: every held agent exits, the daemon is gone
    let (rc, out, err) = env.kiln(&["mux", "stop"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("closed"), "{out}");
    assert!(
        wait_gone(&l, h0, replaced),
        "held agent {replaced} must exit on stop"
    );
    let (_, status, _) = env.kiln(&["mux", "status"]);
    assert!(status.contains("no connection daemon"), "{status}");
    let (_, out, _) = env.kiln(&["mux", "stop"]);
    assert!(out.contains("no connection daemon"), "{out}");
}
