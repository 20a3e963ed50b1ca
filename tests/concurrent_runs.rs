//! 50 kiln runs at once against the same two lab hosts (issue 19 item 5): every run succeeds with
//! every host's output, they share one connection daemon (the runs' common HOME, as one operator's
//! shell), and afterwards `kiln mux stop` leaves no agent on either host and no daemon behind.

#[path = "lab/mod.rs"]
mod lab;

use kiln::lab::Flavor;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 50;

/// kiln processes on this machine whose environment has `HOME=home` and whose command line has
/// `needle`.
fn kiln_with_home(home: &Path, needle: &str) -> usize {
    let env_home = format!("HOME={}", home.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let pid = e.file_name().to_string_lossy().to_string();
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == env_home.as_bytes()))
        })
        .count()
}

#[test]
fn fifty_concurrent_runs_all_succeed_and_leave_nothing_behind() {
    require_lab!();
    let l =
        lab::LabGuard::up(&lab::spec("hdcc").with_hosts(2, &[Flavor::Rocky9, Flavor::Ubuntu2204]));
    let home = tempfile::tempdir().unwrap();
    let inv = l.dir.join("inventory.ini").display().to_string();
    let kiln = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(["-i", &inv])
            .args(args)
            .env("HOME", home.path())
            .env_remove("KAYOBE_CONFIG_PATH")
            .env_remove("KAYOBE_ENVIRONMENT")
            .env_remove("KILN_CONTROL_PERSIST")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let t0 = Instant::now();
    let children: Vec<_> = (0..RUNS)
        .map(|i| {
            kiln(&[
                "ad-hoc",
                "all",
                "-m",
                "command",
                "-a",
                &format!("echo run-{i}"),
            ])
            .spawn()
            .unwrap()
        })
        .collect();
    let mut failures = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let every_host = l.hosts.iter().all(|h| {
            out.lines()
                .any(|x| x.starts_with(&h.name) && x.contains("CHANGED"))
        });
        if o.status.code() != Some(0) || !every_host || !out.contains(&format!("run-{i}")) {
            failures.push(format!("run {i}: exit {:?}\n{out}\n{err}", o.status.code()));
        }
    }
    println!(
        "{RUNS} concurrent runs on 2 hosts: {:.1} s, {} failed",
        t0.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n---\n"));

    // one daemon held the connections for all of them
    let daemons = kiln_with_home(home.path(), "daemon");
    assert!(daemons <= 1, "{daemons} connection daemons for one HOME");

    // `kiln mux stop`: the held connections close, their agents exit, the daemon ends
    let o = kiln(&["mux", "stop"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t1 = Instant::now();
    loop {
        let agents: usize = l
            .hosts
            .iter()
            .map(|h| lab::procs_in(&h.netns, lab::is_agent).len())
            .sum();
        let daemons = kiln_with_home(home.path(), "daemon");
        if agents == 0 && daemons == 0 {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "30 s after `kiln mux stop`: {agents} agents on the hosts, {daemons} daemons left"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
