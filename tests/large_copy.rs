//! `copy` of a file larger than the protocol's 256 MiB frame limit (issue 19), against a real sshd
//! lab host: the file streams in 4 MiB chunks with constant memory on the controller and the
//! agent (peak RSS measured: the controller's by `/usr/bin/time`, the agent's from its
//! `/proc/PID/status` VmHWM while it runs), arrives intact (sha256 on the host), and a second run
//! changes nothing. Then the faults of issue 19 item 5 on the same host:
//! - the controller is SIGKILLed in the middle of a large copy: the destination is still the old
//!   file and no temp file is left beside it;
//! - the disk fills (an 8 MiB tmpfs mounted in the lab host): the task fails with a clear error
//!   naming the file, the old file is intact and no temp file is left.
//!
//! The download direction is the second test: `fetch` and `copy` with `remote_src` of a host file
//! over 256 MiB, and `slurp`'s early refusal.

#[path = "lab/mod.rs"]
mod lab;

use lab::{is_agent, procs_in};

use kiln::lab::Flavor;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE_MIB: usize = 300;

/// VmHWM (peak RSS) of a process, in KiB.
fn hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// A file of `mib` MiB that is not all zeros (a 1 MiB pseudo-random block, varied per MiB).
fn make_file(p: &Path, mib: usize, salt: u8) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(p).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut x: u32 = 0x9e37_79b9 ^ salt as u32;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    for i in 0..mib {
        block[0] = i as u8;
        block[1] = salt;
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

fn sha256_local(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn remote(l: &lab::LabGuard, host: &str, cmd: &str) -> String {
    let (ok, out, err) = lab::ssh(l, host, &[cmd]);
    assert!(ok, "{cmd}: {err}");
    out.trim().to_string()
}

fn kiln_cmd(d: &Path, inv: &str, book: &str) -> Command {
    let mut c = Command::new("/usr/bin/time");
    c.args(["-f", "maxrss_kib=%M"])
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .args(["-i", inv, "playbook", "run", book])
        .current_dir(d)
        .env("HOME", d)
        .env("KILN_CONTROL_PERSIST", "0")
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn book(d: &Path, name: &str, src: &Path, dest: &str) -> String {
    std::fs::write(
        d.join(name),
        format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - copy:\n        src: {}\n        dest: {dest}\n        mode: '0640'\n",
            src.display()
        ),
    )
    .unwrap();
    name.to_string()
}

#[test]
fn copy_of_a_file_over_256_mib_streams_with_constant_memory() {
    require_lab!();
    if !Path::new("/usr/bin/time").exists() {
        println!("SKIP: /usr/bin/time (Debian package time) is not installed");
        return;
    }
    let l = lab::LabGuard::up(&lab::spec("hdcopy").with_hosts(1, &[Flavor::Rocky9]));
    let host = &l.hosts[0];
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let inv = l.dir.join("inventory.ini").display().to_string();
    let big = d.join("big.bin");
    make_file(&big, SIZE_MIB, 1);
    let want = sha256_local(&big);
    remote(&l, &host.name, "echo old > /root/big.bin");

    // 1. the copy, with the agent's peak RSS sampled while it runs
    let b = book(d, "big.yml", &big, "/root/big.bin");
    let (code, out, ctl_peak, agent_peak, secs) = run_measured(&l, d, &inv, &b);
    assert_eq!(code, Some(0), "{out}");
    println!(
        "copy of {SIZE_MIB} MiB: {secs:.1} s; peak RSS controller {} MiB, agent {} MiB",
        ctl_peak / 1024,
        agent_peak / 1024
    );
    assert!(out.contains("changed=1"), "{out}");
    assert_eq!(
        remote(&l, &host.name, "sha256sum /root/big.bin | cut -d' ' -f1"),
        want
    );
    assert_eq!(remote(&l, &host.name, "stat -c %a /root/big.bin"), "640");
    assert_eq!(
        remote(&l, &host.name, "ls -a /root | grep -c kiln-tmp || true"),
        "0"
    );
    // constant memory: far below the file's size (chunks are 4 MiB)
    assert!(ctl_peak < 120 * 1024, "controller peak {ctl_peak} KiB");
    assert!(agent_peak > 0, "no agent seen while the copy ran");
    assert!(agent_peak < 80 * 1024, "agent peak {agent_peak} KiB");

    // 2. again: nothing to do
    let o = kiln_cmd(d, &inv, &b).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success() && out.contains("changed=0"), "{out}");

    // 3. the controller killed mid-copy: old file intact, no temp file
    let big2 = d.join("big2.bin");
    make_file(&big2, SIZE_MIB, 2);
    let b2 = book(d, "big2.yml", &big2, "/root/big.bin");
    let mut child = kiln_cmd(d, &inv, &b2).spawn().unwrap();
    let t0 = Instant::now();
    loop {
        // kill once a good part of the file is on the host
        let size: u64 = remote(
            &l,
            &host.name,
            "stat -c %s /root/.big.bin.kiln-tmp-* 2>/dev/null || echo 0",
        )
        .parse()
        .unwrap_or(0);
        if size > 32 << 20 {
            println!("temp file at {} MiB: killing the controller", size >> 20);
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no upload started");
        assert!(child.try_wait().unwrap().is_none(), "kiln ended first");
        std::thread::sleep(Duration::from_millis(200));
    }
    // /usr/bin/time's child is kiln: kill kiln itself
    let kiln_pid = Command::new("pgrep")
        .args(["-P", &child.id().to_string()])
        .output()
        .unwrap();
    let kiln_pid = String::from_utf8_lossy(&kiln_pid.stdout).trim().to_string();
    assert!(!kiln_pid.is_empty(), "kiln's pid");
    Command::new("kill")
        .args(["-KILL", &kiln_pid])
        .status()
        .unwrap();
    let _ = child.wait();
    let t0 = Instant::now();
    while !procs_in(&host.netns, is_agent).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(30), "agent still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "agent gone {:.1} s after the controller was killed",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        remote(&l, &host.name, "sha256sum /root/big.bin | cut -d' ' -f1"),
        want,
        "the destination must be the old file"
    );
    assert_eq!(
        remote(&l, &host.name, "ls -a /root | grep -c kiln-tmp || true"),
        "0",
        "temp file left after the controller was killed"
    );

    // 4. a full disk: clear error, old file intact, no temp file
    remote(
        &l,
        &host.name,
        "mkdir -p /mnt/small && mount -t tmpfs -o size=8m tmpfs /mnt/small && echo old > /mnt/small/big.bin",
    );
    let b3 = book(d, "full.yml", &big, "/mnt/small/big.bin");
    let o = kiln_cmd(d, &inv, &b3).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    println!("full disk:\n{out}");
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("/mnt/small/big.bin") && out.contains("No space left on device"),
        "{out}"
    );
    assert_eq!(remote(&l, &host.name, "cat /mnt/small/big.bin"), "old");
    assert_eq!(
        remote(
            &l,
            &host.name,
            "ls -a /mnt/small | grep -c kiln-tmp || true"
        ),
        "0"
    );
    // small files take the one-frame path: the same promise
    let small = d.join("small.bin");
    make_file(&small, 12, 3);
    let b4 = book(d, "full-small.yml", &small, "/mnt/small/big.bin");
    let o = kiln_cmd(d, &inv, &b4).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    assert_eq!(remote(&l, &host.name, "cat /mnt/small/big.bin"), "old");
    assert_eq!(
        remote(
            &l,
            &host.name,
            "ls -a /mnt/small | grep -c kiln-tmp || true"
        ),
        "0"
    );
    remote(&l, &host.name, "umount /mnt/small");
}

/// Runs kiln on `book` while sampling the peak RSS of every agent on the host; returns
/// (exit code, stdout, controller peak KiB, agent peak KiB, seconds).
fn run_measured(
    l: &lab::LabGuard,
    d: &Path,
    inv: &str,
    book: &str,
) -> (Option<i32>, String, u64, u64, f64) {
    let host = &l.hosts[0];
    let t0 = Instant::now();
    let mut child = kiln_cmd(d, inv, book).spawn().unwrap();
    let mut agent_peak = 0u64;
    while child.try_wait().unwrap().is_none() {
        for pid in procs_in(&host.netns, is_agent) {
            agent_peak = agent_peak.max(hwm_kib(pid).unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    let ctl_peak: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss from /usr/bin/time:\n{out}\n{err}"));
    (
        o.status.code(),
        format!("{out}\n{err}"),
        ctl_peak,
        agent_peak,
        secs,
    )
}

/// The download direction (issue 19): `fetch` of a host file over the 256 MiB frame limit
/// streams in 4 MiB chunks into a temp file beside the controller's destination (renamed at the
/// end), `copy` with `remote_src` copies on the host itself (nothing crosses the channel), and
/// `slurp` (the whole file base64-encoded in memory, by definition) fails early with the file's
/// name and size. Before: each read the file in one frame, and the host was reported UNREACHABLE.
/// Memory is bounded: the controller's peak RSS by `/usr/bin/time`, the agent's from VmHWM.
#[test]
fn fetch_and_remote_src_copy_of_a_file_over_256_mib_stream_with_bounded_memory() {
    require_lab!();
    if !Path::new("/usr/bin/time").exists() {
        println!("SKIP: /usr/bin/time (Debian package time) is not installed");
        return;
    }
    let l = lab::LabGuard::up(&lab::spec("stfetch").with_hosts(1, &[Flavor::Rocky9]));
    let host = &l.hosts[0];
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let inv = l.dir.join("inventory.ini").display().to_string();
    // real data (not a sparse file): every byte is covered by the checksums
    remote(
        &l,
        &host.name,
        &format!("head -c {}M /dev/urandom > /root/src.bin", SIZE_MIB),
    );
    let want = remote(&l, &host.name, "sha256sum /root/src.bin | cut -d' ' -f1");
    let size: u64 = remote(&l, &host.name, "stat -c %s /root/src.bin")
        .parse()
        .unwrap();
    assert!(size > kiln::protocol::MAX_FRAME as u64);

    // 1. fetch: the controller's copy is whole and equal; no temp file beside it
    let out_dir = d.join("fetched");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("src.bin"), "old\n").unwrap();
    std::fs::write(
        d.join("fetch.yml"),
        format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - fetch:\n        src: /root/src.bin\n        dest: {}/\n        flat: true\n",
            out_dir.display()
        ),
    )
    .unwrap();
    let (code, out, ctl, agent, secs) = run_measured(&l, d, &inv, "fetch.yml");
    println!(
        "fetch of {SIZE_MIB} MiB: {secs:.1} s; peak RSS controller {} MiB, agent {} MiB",
        ctl / 1024,
        agent / 1024
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("changed=1"), "{out}");
    let fetched = out_dir.join("src.bin");
    assert_eq!(sha256_local(&fetched), want);
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("kiln-tmp"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
    assert!(ctl < 120 * 1024, "controller peak {ctl} KiB");
    assert!(agent > 0, "no agent seen while the fetch ran");
    assert!(agent < 80 * 1024, "agent peak {agent} KiB");
    // again: the host's checksum equals the controller's, nothing is transferred
    let (code, out, _, _, secs) = run_measured(&l, d, &inv, "fetch.yml");
    println!("fetch again (unchanged): {secs:.1} s");
    assert!(code == Some(0) && out.contains("changed=0"), "{out}");

    // 2. copy with remote_src: on the host, whole and equal, mode set, no temp file
    remote(&l, &host.name, "echo old > /root/copy.bin");
    std::fs::write(
        d.join("rcopy.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - copy:\n        src: /root/src.bin\n        dest: /root/copy.bin\n        remote_src: true\n        mode: '0600'\n",
    )
    .unwrap();
    let (code, out, ctl, agent, secs) = run_measured(&l, d, &inv, "rcopy.yml");
    println!(
        "copy remote_src of {SIZE_MIB} MiB: {secs:.1} s; peak RSS controller {} MiB, agent {} MiB",
        ctl / 1024,
        agent / 1024
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("changed=1"), "{out}");
    assert_eq!(
        remote(&l, &host.name, "sha256sum /root/copy.bin | cut -d' ' -f1"),
        want
    );
    assert_eq!(remote(&l, &host.name, "stat -c %a /root/copy.bin"), "600");
    assert_eq!(
        remote(&l, &host.name, "ls -a /root | grep -c kiln-tmp || true"),
        "0"
    );
    assert!(ctl < 120 * 1024, "controller peak {ctl} KiB");
    assert!(agent < 80 * 1024, "agent peak {agent} KiB");
    let (code, out, _, _, _) = run_measured(&l, d, &inv, "rcopy.yml");
    assert!(code == Some(0) && out.contains("changed=0"), "{out}");

    // 3. slurp: a task failure naming the file and its size (exit 2), not an unreachable host
    std::fs::write(
        d.join("slurp.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - slurp:\n        src: /root/src.bin\n",
    )
    .unwrap();
    let (code, out, _, _, _) = run_measured(&l, d, &inv, "slurp.yml");
    println!("slurp:\n{out}");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("/root/src.bin") && out.contains(&format!("{size} bytes")),
        "{out}"
    );
    assert!(!out.contains("unreachable=1"), "{out}");
    // a module that reads whole files (lineinfile) on it: a clear task failure too
    std::fs::write(
        d.join("lif.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - lineinfile:\n        path: /root/src.bin\n        line: x\n",
    )
    .unwrap();
    let (code, out, _, _, _) = run_measured(&l, d, &inv, "lif.yml");
    println!("lineinfile:\n{out}");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("/root/src.bin") && out.contains("use fetch"),
        "{out}"
    );
    remote(&l, &host.name, "rm -f /root/src.bin /root/copy.bin");
}
