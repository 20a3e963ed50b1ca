//! The real image-build lab the build tests share: a containers.conf for this machine (runc,
//! ulimits; LAB.md), the busybox base image (a busybox-static tree cached in /var/cache/kiln-lab,
//! imported once as `localhost/kb-busybox:latest`), `podman system service` for kolla-build, and
//! Debian's docker-registry on a port of the test's own. Every process started here is stopped
//! (by its pid) when its guard is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A process stopped by its pid when dropped.
pub struct Service(pub Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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

/// kolla's venv: `$KILN_KOLLA_VENV`, else `<checkout>/.venv-kolla`.
pub fn kolla_venv() -> PathBuf {
    std::env::var_os("KILN_KOLLA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo().join(".venv-kolla"))
}

/// `dir/containers.conf` for this machine (runc; ulimits podman can set here).
pub fn containers_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[engine]\nruntime = \"runc\"\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n",
    )
    .unwrap();
    conf
}

/// `sh -ec script` with `CONTAINERS_CONF`; panics with stderr on failure; stdout.
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

/// The base image `localhost/kb-busybox:latest`, from the cached busybox tree.
pub fn base_image(conf: &Path) {
    sh(
        conf,
        "mkdir -p /var/cache/kiln-lab
        if [ ! -f /var/cache/kiln-lab/kb-busybox-rootfs.tar ]; then
          d=$(mktemp -d); mkdir -p $d/bin $d/etc $d/tmp; cp /bin/busybox $d/bin/busybox
          for a in sh echo cat true false ls mkdir touch sleep; do ln -sf busybox $d/bin/$a; done
          echo 'root:x:0:0:root:/root:/bin/sh' > $d/etc/passwd; echo 'root:x:0:' > $d/etc/group
          tar -C $d -cf /var/cache/kiln-lab/kb-busybox-rootfs.tar.tmp . && rm -rf $d
          mv /var/cache/kiln-lab/kb-busybox-rootfs.tar.tmp /var/cache/kiln-lab/kb-busybox-rootfs.tar
        fi
        podman image exists localhost/kb-busybox:latest \\
          || podman import -q /var/cache/kiln-lab/kb-busybox-rootfs.tar localhost/kb-busybox:latest >/dev/null",
    );
}

/// `dir/registries.conf` marking `registries` insecure (plain http).
pub fn registries_conf(dir: &Path, registries: &[&str]) -> PathBuf {
    let p = dir.join("registries.conf");
    let text: String = registries
        .iter()
        .map(|r| format!("[[registry]]\nlocation = \"{r}\"\ninsecure = true\n"))
        .collect();
    std::fs::write(&p, text).unwrap();
    p
}

/// `podman system service` on `dir/podman.sock`.
pub fn podman_service(dir: &Path, conf: &Path, regconf: &Path) -> (Service, PathBuf) {
    let sock = dir.join("podman.sock");
    let svc = Service(
        Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .env("CONTAINERS_CONF", conf)
            .env("CONTAINERS_REGISTRIES_CONF", regconf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sock.exists(), "podman system service did not start");
    (svc, sock)
}

/// docker-registry on `127.0.0.1:port` storing under `dir/registry`, ready when returned; `None`
/// when docker-registry is not installed.
pub fn registry(dir: &Path, port: u16) -> Option<Service> {
    if !Path::new("/usr/bin/docker-registry").exists() {
        return None;
    }
    let reg = dir.join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(
        reg.join("config.yml"),
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            reg.join("data").display()
        ),
    )
    .unwrap();
    let svc = Service(
        Command::new("docker-registry")
            .arg("serve")
            .arg(reg.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(svc);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("docker-registry did not listen on 127.0.0.1:{port}");
}
