//! A host that dies in the middle of a run (issue 19 item 5): three real sshd lab hosts run a slow
//! task; one host is killed while the task runs (its sshd, PID 1 of the host's PID namespace, is
//! SIGKILLed, which ends every process in it, the agent too). As ansible-core does: the others
//! finish every task, the dead host is UNREACHABLE in the recap, and the exit code is 4.

#[path = "lab/mod.rs"]
mod lab;

use kiln::lab::Flavor;
use std::time::{Duration, Instant};

const BOOK: &str = "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: slow\n      shell: sleep 8; echo slow-done\n    - name: after\n      shell: echo after-$(hostname)\n";

/// Whether a process in network namespace `netns` has `needle` in its command line.
fn running_in(netns: &str, needle: &str) -> bool {
    !lab::procs_in(netns, |argv| argv.join(" ").contains(needle)).is_empty()
}

#[test]
fn a_host_that_dies_mid_run_is_unreachable_and_the_others_finish() {
    require_lab!();
    let l =
        lab::LabGuard::up(&lab::spec("hddie").with_hosts(3, &[Flavor::Rocky9, Flavor::Ubuntu2204]));
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("book.yml"), BOOK).unwrap();
    let inv = l.dir.join("inventory.ini").display().to_string();
    let child = lab::kiln_in(t.path(), &["-i", &inv, "playbook", "run", "book.yml"]);
    let victim = &l.hosts[1];
    let t0 = Instant::now();
    while !l.hosts.iter().all(|h| running_in(&h.netns, "sleep 8")) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the slow task never started everywhere"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // the host dies: its PID 1 (sshd, started by this test's lab) and so everything in it
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.sshd_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    println!(
        "{out}\nrun ended {:.1} s after the host died",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(
        o.status.code(),
        Some(4),
        "exit code as ansible-core's for an unreachable host\n{out}\n{err}"
    );
    let recap = out.split("PLAY RECAP").nth(1).expect("a recap");
    for h in &l.hosts {
        let line = recap
            .lines()
            .find(|l| l.starts_with(&h.name))
            .unwrap_or_else(|| panic!("{} missing from the recap:\n{recap}", h.name));
        if h.name == victim.name {
            assert!(line.contains("unreachable=1"), "{line}");
            assert!(line.contains("ok=0"), "{line}");
        } else {
            assert!(
                line.contains("ok=2")
                    && line.contains("unreachable=0")
                    && line.contains("failed=0"),
                "{line}"
            );
        }
    }
    assert!(
        out.contains(&format!("fatal: [{}]: UNREACHABLE!", victim.name)),
        "{out}"
    );
    assert!(!out.contains(&format!("after-{}", victim.name)));
    assert!(
        killed.elapsed() < Duration::from_secs(60),
        "the run hung on the dead host"
    );
}
