//! An agent that goes away under a running task (issue 19): its host is UNREACHABLE (exit 4, as
//! ansible-core reports a connection lost mid-task) with a message that says what happened and
//! what to do, and what sshd reported about the agent's end (killed by signal KILL), instead of
//! the old "protocol error: the agent channel closed". A real sshd lab host; the agent is
//! SIGKILLed while a task runs.

#[path = "lab/mod.rs"]
mod lab;

use kiln::lab::Flavor;
use std::time::{Duration, Instant};

#[test]
fn a_killed_agent_is_unreachable_with_a_message_that_says_what_to_do() {
    require_lab!();
    let l = lab::LabGuard::up(&lab::spec("stgone").with_hosts(1, &[Flavor::Rocky9]));
    let host = &l.hosts[0];
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("book.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - shell: sleep 37; echo slept\n    - shell: echo after\n",
    )
    .unwrap();
    let inv = l.dir.join("inventory.ini").display().to_string();
    let child = lab::kiln_in(t.path(), &["-i", &inv, "playbook", "run", "book.yml"]);
    let t0 = Instant::now();
    while lab::procs_in(&host.netns, |a| a.join(" ").contains("sleep 37")).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the task never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let agents = lab::procs_in(&host.netns, lab::is_agent);
    assert_eq!(agents.len(), 1, "one agent: {agents:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agents[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    println!(
        "{out}\n{err}\nrun ended {:.1} s after the agent was killed",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(o.status.code(), Some(4), "{out}\n{err}");
    assert!(
        out.contains(&format!("fatal: [{}]: UNREACHABLE!", host.name)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "the agent on {} exited or its SSH session closed",
            host.name
        )) && out.contains("run again"),
        "{out}"
    );
    assert!(out.contains("killed by signal"), "sshd's word: {out}");
    assert!(!out.contains("agent channel closed"), "{out}");
    assert!(!out.contains("after"), "{out}");
    assert!(killed.elapsed() < Duration::from_secs(30));
}
