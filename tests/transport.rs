//! The transport against real OpenSSH: network-namespace lab hosts (`kiln::lab`) running sshd,
//! and the static musl agent. Needs root, sshd, iproute2, sudo, ssh-keygen/ssh-agent and the agent
//! binary (`cargo build --target x86_64-unknown-linux-musl`); skips with the reason otherwise.
//!
//! The lab checks run as one scenario over one lab (a lab takes seconds to boot), in an order
//! where each step leaves the hosts as the next expects; the host-killing step comes last.

mod support;
use kiln::lab::{
    Flavor, Lab, LabSpec, INTERNAL_HOST, JUMP_HOST, PASSWORD, PASSWORD_USER, SUDO_USER,
};
use kiln::transport::{
    self, fanout, BecomeSpec, ConnSpec, Connection, ExecRequest, HostKeyChecking, Stream,
    TransportError, TransportOptions, WriteRequest,
};
use kiln::value::{Secret, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn skip_reason() -> Option<String> {
    if !nix::unistd::getuid().is_root() {
        return Some("not root (lab hosts need network namespaces)".into());
    }
    for t in [
        "/usr/sbin/sshd",
        "ip",
        "unshare",
        "nsenter",
        "ssh-keygen",
        "ssh-agent",
        "ssh-add",
        "sudo",
    ] {
        if !(Path::new(t).exists() || have(t)) {
            return Some(format!("{t} is not installed"));
        }
    }
    if transport::upload::find_agent_binary("x86_64", &TransportOptions::default()).is_none() {
        return Some(
            "no static agent: run `cargo build --target x86_64-unknown-linux-musl` first".into(),
        );
    }
    None
}

struct LabGuard(Lab);
impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            eprintln!("lab down: {e}");
        }
    }
}

fn spec(lab: &Lab, name: &str) -> ConnSpec {
    let h = lab.host(name).expect("lab host");
    ConnSpec {
        host: name.into(),
        addr: h.addr.to_string(),
        user: Some("root".into()),
        key_files: vec![lab.key.clone()],
        known_hosts: vec![lab.known_hosts.clone()],
        host_key_checking: Some(HostKeyChecking::Strict),
        ..ConnSpec::new(name)
    }
}

fn opts() -> TransportOptions {
    TransportOptions {
        use_ssh_agent: false,
        read_user_ssh_config: false,
        ..Default::default()
    }
}

fn sh(cmd: &str) -> ExecRequest {
    ExecRequest {
        shell: Some(cmd.into()),
        ..Default::default()
    }
}

use support::host_sh;

/// Number of running processes on the host whose executable is a cached kiln agent.
fn agent_processes(lab: &Lab, host: &str) -> usize {
    let out = host_sh(lab, host, "for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null | grep -c '/.cache/kiln/agent-' || true");
    out.trim().parse().unwrap_or(0)
}

fn wait_no_agents(lab: &Lab, host: &str) -> usize {
    for _ in 0..50 {
        if agent_processes(lab, host) == 0 {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    agent_processes(lab, host)
}

fn keygen(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let p = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-f"])
        .arg(&p)
        .args(args)
        .arg("-C")
        .arg(name)
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen {name}");
    p
}

#[test]
fn transport_against_lab_hosts() {
    if let Some(r) = skip_reason() {
        eprintln!("SKIP transport_against_lab_hosts: {r}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("ktr{}", std::process::id() % 100000);
    let lab = Lab::up(
        &LabSpec::new(&name)
            .with_dir(tmp.path().join("lab"))
            .with_hosts(3, &[Flavor::Rocky9, Flavor::Ubuntu2204])
            .with_jump_pair(Flavor::Ubuntu2204),
    )
    .expect("lab up");
    let lab = LabGuard(lab);
    let lab = &lab.0;
    let hosts: Vec<String> = lab
        .hosts
        .iter()
        .filter(|h| h.jump.is_none() && h.name != JUMP_HOST)
        .map(|h| h.name.clone())
        .collect();
    assert_eq!(hosts.len(), 3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(scenario(lab, &hosts, tmp.path()));
}

async fn scenario(lab: &Lab, hosts: &[String], tmp: &Path) {
    let h0 = hosts[0].as_str();

    // -- first run: the agent is uploaded once per host, and runs commands
    // (lab roots overlay this machine's `/`: start from an empty agent cache)
    for h in hosts {
        host_sh(lab, h, "rm -rf /root/.cache/kiln /home/*/.cache/kiln");
    }
    let o = opts();
    for h in hosts {
        let s = transport::connect(&spec(lab, h), &o)
            .await
            .unwrap_or_else(|e| panic!("connect {h}: {e}"));
        let r = s.exec(sh("echo hi; hostname")).await.unwrap();
        assert_eq!(r.rc, 0);
        assert_eq!(r.stdout_text(), format!("hi\n{h}\n"));
        assert!(
            agent_processes(lab, h) >= 1,
            "{h}: the agent runs while the session is open"
        );
        s.close().await;
    }
    assert_eq!(
        o.stats.agent_uploads.load(Ordering::Relaxed),
        3,
        "one upload per host"
    );
    let first_bytes = o.stats.agent_bytes_uploaded.load(Ordering::Relaxed);
    assert!(first_bytes > 1_000_000, "uploaded {first_bytes} bytes");
    let mtime_before = host_sh(
        lab,
        h0,
        "stat -c %Y.%i ~/.cache/kiln/agent-*; stat -c %a ~/.cache/kiln",
    );
    assert!(
        mtime_before.ends_with("700\n"),
        "cache dir is private: {mtime_before}"
    );
    for h in hosts {
        assert_eq!(
            wait_no_agents(lab, h),
            0,
            "{h}: no agent process left after close"
        );
    }

    // -- second run: nothing is uploaded
    let o2 = opts();
    let s = transport::connect(&spec(lab, h0), &o2).await.unwrap();
    assert_eq!(
        o2.stats.agent_bytes_uploaded.load(Ordering::Relaxed),
        0,
        "second run uploads nothing"
    );
    assert_eq!(
        host_sh(
            lab,
            h0,
            "stat -c %Y.%i ~/.cache/kiln/agent-*; stat -c %a ~/.cache/kiln"
        ),
        mtime_before
    );
    s.ping().await.unwrap();

    // -- exec streams output as it comes
    let t0 = Instant::now();
    let mut arrivals: Vec<(Duration, Vec<u8>)> = Vec::new();
    let r = s
        .exec_streaming(
            sh("for i in 1 2 3; do echo $i; sleep 0.4; done; echo err >&2"),
            |st, d| {
                if st == Stream::Stdout {
                    arrivals.push((t0.elapsed(), d.to_vec()));
                }
            },
        )
        .await
        .unwrap();
    let total = t0.elapsed();
    assert_eq!(r.stdout_text(), "1\n2\n3\n");
    assert_eq!(r.stderr_text(), "err\n");
    assert!(arrivals.len() >= 3, "output came in pieces: {arrivals:?}");
    assert!(
        arrivals[0].0 + Duration::from_millis(700) < total,
        "first line arrived at {:?} of {total:?}",
        arrivals[0].0
    );
    // exec details: argv, env, cwd, stdin, exit code, timeout
    let r = s
        .exec(ExecRequest {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "pwd; echo $FOO; cat; exit 3".into(),
            ],
            env: vec![("FOO".into(), "bar".into())],
            cwd: Some("/tmp".into()),
            stdin: b"from stdin".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (r.rc, r.stdout_text().as_str()),
        (3, "/tmp\nbar\nfrom stdin")
    );
    let r = s
        .exec(ExecRequest {
            timeout: Some(0.3),
            ..sh("sleep 5")
        })
        .await
        .unwrap();
    assert!(r.timed_out && r.rc == -9, "{r:?}");

    // -- atomic writes with checksums
    let path = "/root/kiln-test/f.txt";
    assert!(s.mkdir("/root/kiln-test", Some(0o755)).await.unwrap());
    assert!(!s.mkdir("/root/kiln-test", Some(0o755)).await.unwrap());
    let w = |c: &str| WriteRequest {
        path: path.into(),
        content: c.as_bytes().to_vec(),
        mode: Some(0o640),
        ..Default::default()
    };
    let a = s.write_file(w("one\n")).await.unwrap();
    assert!(a.changed && a.before_sha.is_none());
    assert_eq!(
        a.after_sha,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"one\n"))
    );
    let again = s.write_file(w("one\n")).await.unwrap();
    assert!(!again.changed);
    let b = s.write_file(w("two\n")).await.unwrap();
    assert!(b.changed);
    assert_eq!(b.before_sha.as_deref(), Some(a.after_sha.as_str()));
    let check = s
        .write_file(WriteRequest {
            check: true,
            ..w("three\n")
        })
        .await
        .unwrap();
    assert!(check.changed);
    assert_eq!(
        s.read_file(path).await.unwrap(),
        b"two\n",
        "check mode wrote nothing"
    );
    assert_eq!(
        host_sh(lab, h0, "ls -A /root/kiln-test"),
        "f.txt\n",
        "no temp file left"
    );
    let st = s.stat(path, true, true).await.unwrap();
    assert_eq!(
        (st.exists, st.kind.as_str(), st.mode, st.checksum.as_deref()),
        (true, "file", 0o640, Some(b.after_sha.as_str()))
    );
    assert!(s
        .symlink("f.txt", "/root/kiln-test/link", false)
        .await
        .unwrap());
    assert!(!s
        .symlink("f.txt", "/root/kiln-test/link", false)
        .await
        .unwrap());
    assert_eq!(
        s.stat("/root/kiln-test/link", false, false)
            .await
            .unwrap()
            .link_target
            .as_deref(),
        Some("f.txt")
    );
    assert!(s.remove("/root/kiln-test", true).await.unwrap());
    assert!(
        !s.stat("/root/kiln-test", false, false)
            .await
            .unwrap()
            .exists
    );
    let e = s.read_file("/nonexistent").await.unwrap_err();
    assert!(
        matches!(
            e,
            TransportError::Remote {
                kind: transport::RemoteErrorKind::NotFound,
                ..
            }
        ),
        "{e}"
    );

    // -- several requests in flight on one channel
    let t = Instant::now();
    let (x, y, z) = tokio::join!(
        s.exec(sh("sleep 1; echo x")),
        s.exec(sh("sleep 1; echo y")),
        s.ping()
    );
    assert!(x.unwrap().stdout == b"x\n" && y.unwrap().stdout == b"y\n" && z.is_ok());
    assert!(
        t.elapsed() < Duration::from_millis(1800),
        "pipelined: {:?}",
        t.elapsed()
    );

    // -- facts
    let f = s.facts().await.unwrap();
    let flavor = lab.host(h0).unwrap().flavor;
    let dist = f
        .get("distribution")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    assert_eq!(
        dist,
        if flavor == Flavor::Rocky9 {
            "Rocky"
        } else {
            "Ubuntu"
        },
        "{flavor:?}"
    );
    assert_eq!(f.get("hostname").and_then(Value::as_str), Some(h0));
    assert_eq!(
        f.get("architecture").and_then(Value::as_str),
        Some("x86_64")
    );
    let addr = lab.host(h0).unwrap().addr.to_string();
    let all4: Vec<&str> = f
        .get("all_ipv4_addresses")
        .and_then(Value::as_list)
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(all4.contains(&addr.as_str()), "{all4:?} has {addr}");
    assert!(f.get("eth0").is_some(), "interface facts from netlink");
    assert!(f.get("memtotal_mb").and_then(Value::as_i64).unwrap_or(0) > 0);
    assert!(f
        .get("mounts")
        .and_then(Value::as_list)
        .is_some_and(|m| !m.is_empty()));
    s.close().await;

    // -- key types: ecdsa, rsa (rsa-sha2), passphrase-protected ed25519
    let kd = tmp.join("keys");
    std::fs::create_dir_all(&kd).unwrap();
    let ecdsa = keygen(&kd, "id_ecdsa", &["-t", "ecdsa", "-N", ""]);
    let rsa = keygen(&kd, "id_rsa", &["-t", "rsa", "-b", "2048", "-N", ""]);
    let locked = keygen(&kd, "id_locked", &["-t", "ed25519", "-N", "sesame"]);
    for k in [&ecdsa, &rsa, &locked] {
        let pubkey = std::fs::read_to_string(k.with_extension("pub")).unwrap();
        host_sh(
            lab,
            h0,
            &format!("echo '{}' >> /etc/kiln-lab/authorized_keys", pubkey.trim()),
        );
    }
    for k in [&ecdsa, &rsa] {
        let sp = ConnSpec {
            key_files: vec![k.clone()],
            ..spec(lab, h0)
        };
        let s = transport::connect(&sp, &opts())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", k.display()));
        assert_eq!(s.exec(sh("echo ok")).await.unwrap().stdout, b"ok\n");
        s.close().await;
    }
    let sp = ConnSpec {
        key_files: vec![locked.clone()],
        ..spec(lab, h0)
    };
    let e = transport::connect(&sp, &opts()).await.unwrap_err();
    assert!(
        matches!(e, TransportError::AuthFailed { .. }) && e.to_string().contains("encrypted"),
        "{e}"
    );
    let po = TransportOptions {
        key_passphrase: Some(Secret::new(Value::Str("sesame".into()))),
        ..opts()
    };
    let s = transport::connect(&sp, &po).await.unwrap();
    s.close().await;
    // a key the host does not accept
    let stranger = keygen(&kd, "id_stranger", &["-t", "ed25519", "-N", ""]);
    let e = transport::connect(
        &ConnSpec {
            key_files: vec![stranger.clone()],
            ..spec(lab, h0)
        },
        &opts(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, TransportError::AuthFailed { .. }) && e.is_unreachable(),
        "{e}"
    );

    // -- ssh-agent
    let sock = tmp.join("agent.sock");
    let out = Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .arg("-s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let agent_pid: i32 = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.parse().ok())
        .expect("ssh-agent pid");
    let added = Command::new("ssh-add")
        .arg(&ecdsa)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    std::env::set_var("SSH_AUTH_SOCK", &sock);
    let ao = TransportOptions {
        use_ssh_agent: true,
        ..opts()
    };
    // the only file key offered is one the host refuses; the agent's key gets in
    let r = transport::connect(
        &ConnSpec {
            key_files: vec![stranger.clone()],
            ..spec(lab, h0)
        },
        &ao,
    )
    .await;
    std::env::remove_var("SSH_AUTH_SOCK");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let s = r.unwrap_or_else(|e| panic!("ssh-agent auth: {e}"));
    s.close().await;

    // -- changed host key: refused before anything runs
    let other = keygen(&kd, "fake_host", &["-t", "ed25519", "-N", ""]);
    let fake = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let fake: Vec<&str> = fake.split_whitespace().take(2).collect();
    let bad_kh = tmp.join("known_hosts.bad");
    std::fs::write(
        &bad_kh,
        format!(
            "{} {}\n",
            lab.host(hosts[1].as_str()).unwrap().addr,
            fake.join(" ")
        ),
    )
    .unwrap();
    let marker = "/tmp/kiln-hostkey-marker";
    let ob = opts();
    let r = async {
        let s = transport::connect(
            &ConnSpec {
                known_hosts: vec![bad_kh.clone()],
                ..spec(lab, &hosts[1])
            },
            &ob,
        )
        .await?;
        s.exec(sh(&format!("touch {marker}"))).await
    }
    .await;
    let e = r.unwrap_err();
    assert!(matches!(e, TransportError::HostKeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("differs"), "{e}");
    assert_eq!(
        host_sh(
            lab,
            &hosts[1],
            &format!("test -e {marker} && echo exists || echo absent")
        ),
        "absent\n"
    );
    assert_eq!(ob.stats.agent_bytes_uploaded.load(Ordering::Relaxed), 0);
    // an unknown host is refused in strict mode and recorded with accept-new
    let new_kh = tmp.join("known_hosts.new");
    let e = transport::connect(
        &ConnSpec {
            known_hosts: vec![new_kh.clone()],
            ..spec(lab, &hosts[1])
        },
        &opts(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, TransportError::HostKeyMismatch { .. }) && e.to_string().contains("accept-new"),
        "{e}"
    );
    let an = ConnSpec {
        known_hosts: vec![new_kh.clone()],
        host_key_checking: Some(HostKeyChecking::AcceptNew),
        ..spec(lab, &hosts[1])
    };
    transport::connect(&an, &opts())
        .await
        .unwrap()
        .close()
        .await;
    let recorded = std::fs::read_to_string(&new_kh).unwrap();
    assert!(
        recorded.starts_with(&format!(
            "{} ssh-ed25519 ",
            lab.host(&hosts[1]).unwrap().addr
        )),
        "{recorded}"
    );
    transport::connect(
        &ConnSpec {
            known_hosts: vec![new_kh.clone()],
            ..spec(lab, &hosts[1])
        },
        &opts(),
    )
    .await
    .unwrap()
    .close()
    .await;
    // --host-key-checking off accepts the wrong key
    let off = TransportOptions {
        host_key_checking: Some(HostKeyChecking::Off),
        ..opts()
    };
    transport::connect(
        &ConnSpec {
            known_hosts: vec![bad_kh.clone()],
            ..spec(lab, &hosts[1])
        },
        &off,
    )
    .await
    .unwrap()
    .close()
    .await;

    // -- ProxyJump through the jump host to a host only it can reach
    let jump = lab.host(JUMP_HOST).unwrap();
    let mut ip = spec(lab, INTERNAL_HOST);
    ip.proxy_jump = Some(format!("root@{}", jump.addr));
    let s = transport::connect(&ip, &opts())
        .await
        .unwrap_or_else(|e| panic!("proxyjump: {e}"));
    assert_eq!(
        s.exec(sh("hostname")).await.unwrap().stdout_text(),
        format!("{INTERNAL_HOST}\n")
    );
    s.close().await;
    // and the same through the lab's ssh_config (Host internal → ProxyJump jump)
    let via_cfg = ConnSpec {
        addr: INTERNAL_HOST.into(),
        ssh_config: Some(lab.ssh_config.clone()),
        key_files: vec![],
        known_hosts: vec![],
        user: None,
        host_key_checking: None,
        ..ConnSpec::new(INTERNAL_HOST)
    };
    let s = transport::connect(&via_cfg, &opts())
        .await
        .unwrap_or_else(|e| panic!("ssh_config ProxyJump: {e}"));
    assert_eq!(
        s.exec(sh("hostname")).await.unwrap().stdout_text(),
        format!("{INTERNAL_HOST}\n")
    );
    s.close().await;

    // -- become: sudo -n to root, to another user, and with a password on stdin
    let b = ConnSpec {
        user: Some(SUDO_USER.into()),
        become_: Some(BecomeSpec::sudo("root")),
        ..spec(lab, h0)
    };
    let s = transport::connect(&b, &opts())
        .await
        .unwrap_or_else(|e| panic!("become root: {e}"));
    assert_eq!(
        (
            s.user.as_str(),
            s.exec(sh("id -u")).await.unwrap().stdout_text().as_str()
        ),
        ("root", "0\n")
    );
    s.close().await;
    let b = ConnSpec {
        become_: Some(BecomeSpec::sudo(SUDO_USER)),
        ..spec(lab, h0)
    };
    let s = transport::connect(&b, &opts())
        .await
        .unwrap_or_else(|e| panic!("become {SUDO_USER}: {e}"));
    assert_eq!(
        s.exec(sh("id -un; echo $HOME"))
            .await
            .unwrap()
            .stdout_text(),
        format!("{SUDO_USER}\n/home/{SUDO_USER}\n")
    );
    s.close().await;
    let mut pb = BecomeSpec::sudo("root");
    pb.password = Some(Secret::new(Value::Str(PASSWORD.into())));
    let b = ConnSpec {
        user: Some(PASSWORD_USER.into()),
        become_: Some(pb.clone()),
        ..spec(lab, h0)
    };
    let s = transport::connect(&b, &opts())
        .await
        .unwrap_or_else(|e| panic!("become with password: {e}"));
    assert_eq!(s.exec(sh("id -u")).await.unwrap().stdout_text(), "0\n");
    // while sudo and the agent run: no command line carries the password (the lab's password is
    // also part of the lab's config paths, /etc/kiln-lab/..., which do not count)
    let ps = host_sh(
        lab,
        h0,
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null",
    );
    assert!(ps.contains("sudo -H -S -p"), "sudo is running: {ps}");
    assert!(
        !ps.replace("/etc/kiln-lab/", "").contains(PASSWORD),
        "the password shows on a command line: {ps}"
    );
    s.close().await;
    pb.password = Some(Secret::new(Value::Str("wrong".into())));
    let e = transport::connect(
        &ConnSpec {
            become_: Some(pb),
            ..b.clone()
        },
        &opts(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TransportError::Become { .. }), "{e}");
    let e = transport::connect(
        &ConnSpec {
            become_: Some(BecomeSpec::sudo("root")),
            ..b.clone()
        },
        &opts(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, TransportError::Become { .. }) && e.to_string().contains("password"),
        "{e}"
    );

    // -- kiln shell over the lab's own inventory (ProxyCommand host included), with a HOME of
    //    its own: the connection daemon it starts (persisting for 60 s) is this step's alone
    let home = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("HOME", home.path())
        .env_remove("KILN_CONTROL_PERSIST")
        .args(["shell", "all", "-i"])
        .arg(&lab.inventory)
        .args(["--", "hostname"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in lab.hosts.iter() {
        assert!(
            text.contains(&format!("{} | CHANGED | rc=0 >>\n{}\n", h.name, h.name)),
            "{text}"
        );
    }

    // -- the run's agents are held for the next run until `kiln mux stop`; then none is left
    let held = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("HOME", home.path())
        .args(["mux", "status"])
        .output()
        .await
        .unwrap();
    let held = String::from_utf8_lossy(&held.stdout);
    for h in lab.hosts.iter() {
        assert!(held.contains(&format!("{} (", h.name)), "{held}");
    }
    let stop = tokio::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env("HOME", home.path())
        .args(["mux", "stop"])
        .status()
        .await
        .unwrap();
    assert!(stop.success());
    for h in lab.hosts.iter() {
        assert_eq!(
            wait_no_agents(lab, &h.name),
            0,
            "{}: no agent process left",
            h.name
        );
    }

    // -- one host dies mid-run: it is UNREACHABLE, the others finish
    let victim = hosts[2].clone();
    let victim_pid = lab.host(&victim).unwrap().sshd_pid;
    let specs: Arc<Vec<ConnSpec>> = Arc::new(hosts.iter().map(|h| spec(lab, h)).collect());
    let o = Arc::new(opts());
    let run = fanout::run(
        hosts.to_vec(),
        50,
        |h| {
            let (specs, o) = (specs.clone(), o.clone());
            async move {
                let sp = specs.iter().find(|s| s.host == h).unwrap().clone();
                let s = transport::connect(&sp, &o).await?;
                let r = s.exec(sh("sleep 2; echo done")).await;
                s.close().await;
                r
            }
        },
        async {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            // kill the victim's sshd: PID 1 of its namespace, so the whole host goes
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(victim_pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            std::future::pending::<()>().await
        },
    )
    .await;
    for (h, r) in &run.results {
        let r = r.as_ref().expect("finished");
        if *h == victim {
            let e = r.as_ref().unwrap_err();
            assert!(e.is_unreachable(), "{h}: {e}");
        } else {
            assert_eq!(r.as_ref().unwrap().stdout, b"done\n", "{h}");
        }
    }
}

/// A session over `ansible_connection: local` (the agent in-process).
async fn local_session() -> transport::Session {
    transport::connect(
        &ConnSpec {
            connection: Connection::Local,
            ..ConnSpec::new("localhost")
        },
        &opts(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn local_connection_runs_the_same_agent_code() {
    let s = local_session().await;
    let r = s.exec(sh("echo local")).await.unwrap();
    assert_eq!(r.stdout, b"local\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x").to_string_lossy().into_owned();
    let w = s
        .write_file(WriteRequest {
            path: p.clone(),
            content: b"data".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(w.changed);
    assert_eq!(std::fs::read(&p).unwrap(), b"data");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
    let f = s.facts().await.unwrap();
    assert!(f.get("architecture").is_some());
    s.close().await;
}

/// The download direction over a real session (issue 19): a file read in chunks of at most 4 MiB
/// arrives whole, its digests come from one read on the host, and a host-side copy places the
/// file atomically without it crossing the channel.
#[tokio::test]
async fn local_sessions_read_in_chunks_digest_and_copy_on_the_host() {
    use sha2::Digest;
    let s = local_session().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    // 9 MiB and a bit: three chunks, the last a short one
    let data: Vec<u8> = (0..(9 << 20) + 123u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let src_s = src.to_string_lossy().into_owned();
    let mut got = Vec::new();
    let mut chunks = 0;
    let (size, read) = s
        .read_file_to(&src_s, |b| {
            assert!(b.len() <= kiln::protocol::CHUNK);
            chunks += 1;
            got.extend_from_slice(b);
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(
        (size, read, chunks),
        (data.len() as u64, data.len() as u64, 3)
    );
    assert!(got == data, "the bytes read differ");
    // a sink that fails: a task failure naming the file, and the host's handle is closed
    let e = s
        .read_file_to(&src_s, |_| Err(std::io::Error::other("disk full")))
        .await
        .unwrap_err();
    assert!(!e.is_unreachable(), "{e}");
    assert!(
        e.to_string().contains("src.bin") && e.to_string().contains("disk full"),
        "{e}"
    );
    let d = s.digests(&src_s, &["sha256", "md5"]).await.unwrap();
    assert_eq!(d[0], hex::encode(sha2::Sha256::digest(&data)));
    let dest = dir.path().join("dest.bin");
    let w = s
        .copy_on_host(
            &src_s,
            WriteRequest {
                path: dest.to_string_lossy().into_owned(),
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(w.changed && w.after_sha == d[0]);
    assert!(std::fs::read(&dest).unwrap() == data);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no temp file left: {names:?}");
    s.close().await;
}
