//! The agent exits when its controller is gone (issue 19). A host whose network silently drops
//! (no FIN, no RST ever reaches it) used to keep its agent, and the command it ran, for as long
//! as sshd kept the dead TCP session (17 minutes and more). Now the controller sends a heartbeat
//! every quarter of the agent's idle deadline (`KILN_AGENT_IDLE_SECS`, default 60 s) and the
//! agent exits, killing what it runs, when none has come for that long.
//!
//! The test: a real sshd lab host runs `sleep 300` for a kiln controller; the host's network is
//! then cut with an nftables drop rule inside its namespace and the controller is SIGKILLed, so
//! nothing ever tells the host. The agent and its `sleep` must be gone within the deadline.

#[path = "lab/mod.rs"]
mod lab;

use lab::{is_agent, procs_in};

use kiln::lab::Flavor;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn is_sleep(argv: &[String]) -> bool {
    argv.iter().any(|a| a.contains("sleep 300")) || argv == ["sleep", "300"]
}

fn nft(netns: &str, script: &str) {
    let mut c = Command::new("ip")
        .args(["netns", "exec", netns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut c.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "nft {script}");
}

#[test]
fn agent_exits_when_its_controller_vanishes() {
    require_lab!();
    let l = lab::LabGuard::up(&lab::spec("hdorphan").with_hosts(1, &[Flavor::Rocky9]));
    let host = &l.hosts[0];
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(
        d.join("book.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - shell: sleep 300\n",
    )
    .unwrap();
    let inv = l.dir.join("inventory.ini").display().to_string();
    let idle = 8;
    let mut kiln = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["-i", &inv, "playbook", "run", "book.yml"])
        .current_dir(d)
        .env("HOME", d)
        .env("KILN_CONTROL_PERSIST", "0")
        .env("KILN_AGENT_IDLE_SECS", idle.to_string())
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // wait for the agent and its command
    let t0 = Instant::now();
    while procs_in(&host.netns, is_sleep).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the task never started on {}",
            host.name
        );
        assert!(kiln.try_wait().unwrap().is_none(), "kiln ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    let agents = procs_in(&host.netns, is_agent);
    assert!(!agents.is_empty(), "no agent process found");
    // heartbeats keep it alive past its deadline while the controller is there
    std::thread::sleep(Duration::from_secs(idle + 4));
    assert!(
        !procs_in(&host.netns, is_sleep).is_empty(),
        "the agent gave up on a live controller"
    );
    // the network drops silently, then the controller dies: nothing reaches the host
    nft(
        &host.netns,
        "table inet hdcut {\n chain i { type filter hook input priority -300; policy drop; }\n \
         chain o { type filter hook output priority -300; policy drop; }\n}\n",
    );
    let _ = kiln.kill();
    let _ = kiln.wait();
    let cut = Instant::now();
    loop {
        let left_agents = procs_in(&host.netns, |a| is_agent(a));
        let left_sleep = procs_in(&host.netns, is_sleep);
        if left_agents.is_empty() && left_sleep.is_empty() {
            println!(
                "agent and its command gone {:.1} s after the controller vanished (deadline {idle} s)",
                cut.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(idle * 4),
            "still there after {:?}: agents {left_agents:?}, sleep {left_sleep:?}",
            cut.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    nft(&host.netns, "delete table inet hdcut\n");
}
