//! Booting one lab host. kiln writes, per host, a skeleton tree (identity files, sshd config and
//! host key, empty shell rc files, sudoers) and a small POSIX shell script, `init.sh`, then runs
//!
//! ```text
//! setsid sh -c 'ip netns exec <netns> unshare --mount --uts --pid --fork --kill-child sh init.sh &'
//! ```
//!
//! `init.sh` is PID 1 of the new PID namespace: it makes `/` private, mounts a tmpfs, an overlay
//! (`lowerdir=/`, upper and work on the tmpfs) and proc/sys/dev/run/tmp into it, copies the
//! skeleton over it, sets the hostname, adds the lab users and `exec`s `chroot <root> sshd -D -e`.
//! sshd therefore *is* the host: killing its PID ends the namespace and every process in it.
//! A shell script (rather than a hidden kiln subcommand) keeps the boot readable and debuggable by
//! hand (`sh -x <dir>/hosts/<name>/init.sh` inside `unshare`), and works whatever binary runs `up`.
//!
//! The background `&` detaches the host from the caller (no zombie in the caller, no SIGHUP);
//! `echo $!` reports the PID of `unshare`, whose only child is sshd.

use super::flavor::IdentityFile;
use super::proc::{children, ProcId};
use super::state::HostState;
use super::{cmd, LabError};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The non-root lab user with passwordless sudo (when sudo is installed).
pub const SUDO_USER: &str = "kiln";
/// The non-root lab user whose sudo asks for a password: [`PASSWORD`].
pub const PASSWORD_USER: &str = "kilnpw";
/// Password of [`PASSWORD_USER`] (a lab, not a secret).
pub const PASSWORD: &str = "kiln-lab";
/// SHA-512 crypt of [`PASSWORD`] (`openssl passwd -6 -salt kilnlab0 kiln-lab`).
const PASSWORD_HASH: &str =
    "$6$kilnlab0$pFeleN.9g/3GE.FJdbzUpTfH0GXngMjIfKtqBiCEqG/BGuU8NAmY2b9zi2x2vbmgUpFpuqPsrhq7JuJwuDoKt/";

pub fn host_dir(lab_dir: &Path, host: &str) -> PathBuf {
    lab_dir.join("hosts").join(host)
}

pub fn log_path(lab_dir: &Path, host: &str) -> PathBuf {
    host_dir(lab_dir, host).join("sshd.log")
}

fn write(path: &Path, content: &str, mode: u32) -> Result<(), LabError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| LabError::io(parent, e))?;
    }
    std::fs::write(path, content).map_err(|e| LabError::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| LabError::io(path, e))
}

fn sshd_config() -> String {
    // curve25519 only: OpenSSH clients prefer sntrup761x25519, which costs twice as much here.
    "# Written by kiln lab.\n\
     Port 22\n\
     ListenAddress 0.0.0.0\n\
     HostKey /etc/kiln-lab/ssh_host_ed25519_key\n\
     PidFile none\n\
     PermitRootLogin prohibit-password\n\
     PubkeyAuthentication yes\n\
     AuthorizedKeysFile /etc/kiln-lab/authorized_keys\n\
     PasswordAuthentication yes\n\
     KbdInteractiveAuthentication no\n\
     UsePAM no\n\
     UseDNS no\n\
     KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org\n\
     MaxSessions 128\n\
     MaxStartups 256:30:512\n\
     MaxAuthTries 20\n\
     LoginGraceTime 30\n\
     PrintMotd no\n\
     PrintLastLog no\n\
     X11Forwarding no\n\
     AllowTcpForwarding yes\n\
     AcceptEnv LANG LC_*\n\
     Subsystem sftp internal-sftp\n\
     LogLevel INFO\n"
        .to_string()
}

/// Creates the host's key (once: a restarted host keeps its key) and its skeleton and init script.
/// Returns the host's public key line.
pub fn prepare(
    lab_dir: &Path,
    lab_name: &str,
    h: &HostState,
    authorized_key: &str,
) -> Result<String, LabError> {
    let hd = host_dir(lab_dir, &h.name);
    let keydir = hd.join("key");
    std::fs::create_dir_all(&keydir).map_err(|e| LabError::io(&keydir, e))?;
    let key = keydir.join("ssh_host_ed25519_key");
    cmd::ensure_ed25519_key(&key, &format!("root@{}", h.name))?;
    let pub_path = keydir.join("ssh_host_ed25519_key.pub");
    let pubkey = std::fs::read_to_string(&pub_path).map_err(|e| LabError::io(&pub_path, e))?;

    let skel = hd.join("skel");
    if skel.exists() {
        std::fs::remove_dir_all(&skel).map_err(|e| LabError::io(&skel, e))?;
    }
    let private = std::fs::read_to_string(&key).map_err(|e| LabError::io(&key, e))?;
    write(
        &skel.join("etc/kiln-lab/ssh_host_ed25519_key"),
        &private,
        0o600,
    )?;
    write(
        &skel.join("etc/kiln-lab/ssh_host_ed25519_key.pub"),
        &pubkey,
        0o644,
    )?;
    write(
        &skel.join("etc/kiln-lab/authorized_keys"),
        authorized_key,
        0o644,
    )?;
    write(
        &skel.join("etc/kiln-lab/sshd_config"),
        &sshd_config(),
        0o644,
    )?;
    write(&skel.join("etc/kiln-lab/skel/.bashrc"), "", 0o644)?;
    write(&skel.join("etc/kiln-lab/skel/.profile"), "", 0o644)?;
    write(
        &skel.join("etc/kiln-lab/lab"),
        &format!("lab={lab_name}\nhost={}\nflavor={}\n", h.name, h.flavor),
        0o644,
    )?;
    write(&skel.join("etc/hostname"), &format!("{}\n", h.name), 0o644)?;
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{0}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        h.name
    );
    for a in h.lab_addr.iter().chain(h.internal_addr.iter()) {
        hosts.push_str(&format!("{a}\t{}\n", h.name));
    }
    write(&skel.join("etc/hosts"), &hosts, 0o644)?;
    // This machine's own root rc files add ~170 ms to every SSH command; lab hosts get none.
    write(&skel.join("root/.bashrc"), "", 0o644)?;
    write(&skel.join("root/.profile"), "", 0o644)?;
    write(
        &skel.join("etc/sudoers.d/kiln-lab"),
        &format!("{SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n{PASSWORD_USER} ALL=(ALL:ALL) ALL\n"),
        0o440,
    )?;
    for f in h.flavor.identity_files() {
        match f {
            IdentityFile::File { path, content } => write(&skel.join(path), content, 0o644)?,
            IdentityFile::Symlink { path, target } => {
                let p = skel.join(path);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| LabError::io(parent, e))?;
                }
                symlink(target, &p).map_err(|e| LabError::io(&p, e))?;
            }
        }
    }
    std::fs::create_dir_all(hd.join("mnt")).map_err(|e| LabError::io(hd.join("mnt"), e))?;
    write(&hd.join("init.sh"), &init_script(&hd, h), 0o755)?;
    Ok(pubkey.trim().to_string())
}

fn q(s: &str) -> String {
    shell_words::quote(s).into_owned()
}

fn init_script(hd: &Path, h: &HostState) -> String {
    let removed: Vec<String> = h
        .flavor
        .removed_files()
        .iter()
        .map(|f| format!("\"$R\"/{}", q(f)))
        .collect();
    format!(
        r#"#!/bin/sh
# kiln lab host {name}: PID 1 of its own PID namespace, run by
#   ip netns exec {netns} unshare --mount --uts --pid --fork --kill-child sh init.sh
# Builds a copy-on-write root (overlay of / on a tmpfs) and becomes the host's sshd.
set -eu
H={hd}
T="$H/mnt"
R="$T/root"
mount --make-rprivate /
mount -t tmpfs -o mode=0755 kiln-lab "$T"
mkdir "$T/upper" "$T/work" "$R"
mount -t overlay kiln-lab -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work" "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
# container runtimes (runc) need a cgroup mount; best effort: a host works without it
mount -t cgroup2 none "$R/sys/fs/cgroup" 2>/dev/null || true
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777 shm "$R/dev/shm"
mount -t tmpfs -o mode=0755 run "$R/run"
mount -t tmpfs -o mode=1777 tmp "$R/tmp"
mkdir -p "$R/run/sshd" "$R/run/lock"
rm -f {removed}
cp -a --remove-destination "$H/skel/." "$R/"
hostname {name}
chroot "$R" /bin/sh -c '
  id -u {sudo_user} >/dev/null 2>&1 || useradd -m -k /etc/kiln-lab/skel -p "*" -s /bin/bash {sudo_user}
  id -u {pw_user} >/dev/null 2>&1 || useradd -m -k /etc/kiln-lab/skel -p '\''{pw_hash}'\'' -s /bin/bash {pw_user}
'
echo "kiln lab: host {name} booted, exec sshd" >&2
exec chroot "$R" /usr/sbin/sshd -D -e -f /etc/kiln-lab/sshd_config
"#,
        name = h.name,
        netns = h.netns,
        hd = q(&hd.to_string_lossy()),
        removed = removed.join(" "),
        sudo_user = SUDO_USER,
        pw_user = PASSWORD_USER,
        pw_hash = PASSWORD_HASH,
    )
}

/// Starts the host; returns (unshare, sshd) process identities.
pub fn start(lab_dir: &Path, h: &HostState) -> Result<(ProcId, ProcId), LabError> {
    let hd = host_dir(lab_dir, &h.name);
    let init = hd.join("init.sh");
    let log = log_path(lab_dir, &h.name);
    let _ = std::fs::remove_file(&log);
    let script = r#"exec </dev/null; ip netns exec "$1" unshare --mount --uts --pid --fork --kill-child /bin/sh "$2" >>"$3" 2>&1 & echo $!"#;
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(script)
        .arg("kiln-lab-boot")
        .arg(&h.netns)
        .arg(&init)
        .arg(&log)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; the closure touches no memory of the parent.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let out = c.output().map_err(|e| LabError::io("/bin/sh", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = text.trim().parse().map_err(|_| LabError::Command {
        cmd: format!("ip netns exec {} unshare ... {}", h.netns, init.display()),
        status: out.status.to_string(),
        stderr: format!(
            "did not report a PID: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr)
        ),
    })?;
    let died = || LabError::SshdDied {
        host: h.name.clone(),
        log_path: log.clone(),
        log: read_log(&log),
    };
    let unshare = ProcId::of(pid).ok_or_else(died)?;
    // unshare forks sshd-to-be (the init script) at once; find that child.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(&child) = children(pid).first() {
            let sshd = ProcId::of(child).ok_or_else(died)?;
            return Ok((unshare, sshd));
        }
        if !unshare.alive() || Instant::now() > end {
            return Err(died());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn read_log(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().is_empty() => "(empty)".into(),
        Ok(t) => {
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// Waits until sshd accepts TCP connections on `addr:22`. For a host the root namespace cannot
/// reach (internal network only), the connection is made from inside the host's network namespace.
pub fn wait_ready(
    lab_dir: &Path,
    h: &HostState,
    sshd: ProcId,
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    let (addr, inside) = match (h.lab_addr, h.internal_addr) {
        (Some(a), _) => (a, false),
        (None, Some(a)) => (a, true),
        (None, None) => (Ipv4Addr::LOCALHOST, true),
    };
    if inside {
        let ns = Path::new("/run/netns").join(&h.netns);
        let f = std::fs::File::open(&ns).map_err(|e| LabError::io(&ns, e))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::io(&ns, std::io::Error::from(e)))?;
    }
    let sock = SocketAddr::from((addr, 22));
    let log = log_path(lab_dir, &h.name);
    loop {
        if TcpStream::connect_timeout(&sock, Duration::from_millis(250)).is_ok() {
            return Ok(());
        }
        if !sshd.alive() {
            return Err(LabError::SshdDied {
                host: h.name.clone(),
                log_path: log.clone(),
                log: read_log(&log),
            });
        }
        if Instant::now() > deadline {
            return Err(LabError::SshdTimeout {
                host: h.name.clone(),
                addr: addr.to_string(),
                secs: timeout.as_secs(),
                log_path: log.clone(),
                log: read_log(&log),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a command inside the host: all its namespaces and its root (`nsenter --all --root --wd`).
pub fn exec(sshd_pid: u32, argv: &[&str]) -> Result<std::process::Output, LabError> {
    let pid = sshd_pid.to_string();
    let mut full = vec!["nsenter", "--target", &pid, "--all", "--root", "--wd", "--"];
    full.extend_from_slice(argv);
    cmd::output(&full)
}
