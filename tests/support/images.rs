//! What the real image-build tests share (`kolla_build_diff`, `multiarch_build`, `if_changed`): podman's
//! configuration for this machine (runc, ulimits: LAB.md), the busybox base images (amd64 from
//! this machine's busybox-static, arm64 from Debian's busybox-static:arm64; rootfs tarballs cached
//! in /var/cache/kiln-lab, imported once), qemu-user-static's binfmt registration, and the
//! services a build talks to (`podman system service`, a docker-registry), each stopped by its
//! pid when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const CACHE: &str = "/var/cache/kiln-lab";

/// `containers.conf` for this machine: runc (crun fails on this cgroup setup) and ulimits within
/// the hard limits.
pub fn podman_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[engine]\nruntime = \"runc\"\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n",
    )
    .unwrap();
    conf
}

/// Run a `sh -ec` script with `CONTAINERS_CONF=conf`; its stdout (panics with stderr on failure).
pub fn sh(conf: &Path, script: &str) -> String {
    let o = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .env("CONTAINERS_CONF", conf)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn rootfs_script(busybox: &str, tar: &str) -> String {
    format!(
        "mkdir -p {CACHE}
        if [ ! -f {tar} ]; then
          d=$(mktemp -d); mkdir -p $d/bin $d/etc $d/tmp; cp {busybox} $d/bin/busybox
          for a in sh echo cat true false ls mkdir touch sleep uname; do ln -sf busybox $d/bin/$a; done
          echo 'root:x:0:0:root:/root:/bin/sh' > $d/etc/passwd; echo 'root:x:0:' > $d/etc/group
          tar -C $d -cf {tar}.tmp . && rm -rf $d
          mv {tar}.tmp {tar}
        fi"
    )
}

/// `localhost/kb-busybox:latest`: this machine's busybox-static as an amd64 base image.
pub fn busybox_base(conf: &Path) {
    let tar = format!("{CACHE}/kb-busybox-rootfs.tar");
    sh(
        conf,
        &format!(
            "{}
            podman image exists localhost/kb-busybox:latest \\
              || podman import -q {tar} localhost/kb-busybox:latest >/dev/null",
            rootfs_script("/bin/busybox", &tar)
        ),
    );
}

/// `localhost/kb-busybox-aarch64:latest`: Debian's busybox-static:arm64 (the .deb `tests/setup`
/// keeps in the cache) imported with architecture arm64. Err says why not.
pub fn busybox_base_arm64(conf: &Path) -> Result<(), String> {
    let deb = std::fs::read_dir(CACHE)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("busybox-static_") && n.ends_with("_arm64.deb")
        })
        .ok_or_else(|| {
            format!("no busybox-static arm64 .deb in {CACHE} (tests/setup fetches it with `apt-get download busybox-static:arm64`)")
        })?;
    let tar = format!("{CACHE}/kb-busybox-arm64-rootfs.tar");
    sh(
        conf,
        &format!(
            "x=$(mktemp -d); dpkg-deb -x '{}' $x
            {}
            rm -rf $x
            podman image exists localhost/kb-busybox-aarch64:latest \\
              || podman import -q --arch arm64 {tar} localhost/kb-busybox-aarch64:latest >/dev/null",
            deb.display(),
            rootfs_script("$x/bin/busybox", &tar)
        ),
    );
    Ok(())
}

/// qemu-user-static registered for aarch64 in binfmt_misc (mounted and enabled if need be, as
/// LAB.md says); Err says why not.
pub fn binfmt_arm64() -> Result<(), String> {
    let entry = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let enabled = || {
        std::fs::read_to_string(entry)
            .map(|s| s.lines().next() == Some("enabled"))
            .unwrap_or(false)
    };
    if enabled() {
        return Ok(());
    }
    if !Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P").exists()
        && !Path::new("/usr/bin/qemu-aarch64-static").exists()
    {
        return Err("qemu-user-static is not installed (tests/setup installs it)".into());
    }
    if !Path::new("/proc/sys/fs/binfmt_misc/register").exists() {
        let _ = Command::new("mount")
            .args([
                "-t",
                "binfmt_misc",
                "binfmt_misc",
                "/proc/sys/fs/binfmt_misc",
            ])
            .status();
    }
    let _ = Command::new("update-binfmts")
        .args(["--enable", "qemu-aarch64"])
        .stderr(Stdio::null())
        .status();
    if enabled() {
        Ok(())
    } else {
        Err("binfmt_misc cannot be mounted or qemu-aarch64 cannot be registered on this kernel: arm64 RUN steps cannot run".into())
    }
}

/// A child process killed (by its pid) and reaped when dropped.
pub struct Service {
    pub child: std::process::Child,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why the real build lab cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (podman builds need root)".into());
    }
    let kvenv = kolla_venv();
    if !kvenv.join("bin/kolla-build").exists() {
        return Some(format!(
            "kolla is not installed in {} (tests/setup installs it)",
            kvenv.display()
        ));
    }
    if Command::new("podman").arg("--version").output().is_err()
        || !Path::new("/bin/busybox").exists()
    {
        return Some("podman or busybox-static missing (tests/setup installs them)".into());
    }
    None
}

/// kolla's venv: `KILN_KOLLA_VENV`, else the checkout's `.venv-kolla` (tests/setup).
pub fn kolla_venv() -> PathBuf {
    std::env::var_os("KILN_KOLLA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo().join(".venv-kolla"))
}

/// `dir/registries.conf` marking each of `registries` (host:port) insecure (plain HTTP).
pub fn registries_conf(dir: &Path, registries: &[&str]) -> PathBuf {
    let p = dir.join("registries.conf");
    let text: String = registries
        .iter()
        .map(|r| format!("[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"))
        .collect();
    std::fs::write(&p, text).unwrap();
    p
}

/// `podman system service` on `dir/podman.sock`, with `registry` (host:port) marked insecure.
pub fn podman_service(dir: &Path, conf: &Path, registry: &str) -> (Service, PathBuf) {
    let regconf = registries_conf(dir, &[registry]);
    podman_service_with(dir, conf, &regconf)
}

/// `podman system service` on `dir/podman.sock` with the given registries.conf.
pub fn podman_service_with(dir: &Path, conf: &Path, regconf: &Path) -> (Service, PathBuf) {
    let sock = dir.join("podman.sock");
    let svc = Service {
        child: Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .env("CONTAINERS_CONF", conf)
            .env("CONTAINERS_REGISTRIES_CONF", regconf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(sock.exists(), "podman system service did not start");
    (svc, sock)
}

/// Debian's docker-registry on `127.0.0.1:port`, storing under `dir`; None when not installed.
/// Returns once `/v2/` answers.
pub fn registry(dir: &Path, port: u16) -> Option<Service> {
    if !Path::new("/usr/bin/docker-registry").exists() {
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.yml"),
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let svc = Service {
        child: Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Some(svc)
}
