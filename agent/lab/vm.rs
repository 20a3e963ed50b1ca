//! The VM tier of the lab: a qemu VM (software emulation, TCG: no KVM is needed) booting Debian
//! bookworm's cloud kernel from a minimal root, reached over SSH like any lab host. It exists for
//! what this machine's kernel lacks (dummy links, device-mapper, partition parsers): inside the VM
//! those are real.
//!
//! Two steps, shaped so that the slow one runs once:
//! - **prepare** (`prepare`, or `tests/lab/vm-prepare.sh` which it runs): a private
//!   `qemu-system-x86_64` unpacked from Debian's .debs (the package conflicts with the installed
//!   qemu-utils), and a root filesystem image built by debootstrap + `mke2fs -d`, cached under
//!   `$KILN_VM_CACHE/<VERSION>/` (default `/var/cache/kiln-lab/vm`). A second prepare is a stat.
//! - **boot** (`Image::boot`): a copy-on-write qcow2 overlay of that image as `/dev/vda`, the
//!   kernel and initrd booted directly, user-mode networking with sshd forwarded to a free port on
//!   127.0.0.1, extra virtio data disks (serial = name, so `/dev/disk/by-id/virtio-<name>`), the
//!   console in a log file and a QMP socket (to grow or hot-add disks while it runs). The `Vm`
//!   handle kills qemu when dropped, and qemu dies with the thread that started it.
//!
//! ```no_run
//! use kiln::lab::vm::{self, VmSpec};
//! let image = vm::prepare(&vm::default_cache())?;
//! let vm = image.boot(&VmSpec::new("/tmp/my-vm").with_disk("data1", 1 << 30))?;
//! let out = vm.exec(&["lsblk", "-J"])?;
//! vm.resize_disk("data1", 2 << 30)?;
//! # Ok::<(), kiln::lab::vm::VmError>(())
//! ```

mod error;
mod qmp;

pub use error::VmError;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The preparation script; `prepare` runs exactly this text, and its `VM_VERSION=` names the
/// cache folder.
pub const PREPARE_SCRIPT: &str = include_str!("../../tests/lab/vm-prepare.sh");

/// The cache version the script makes (its `VM_VERSION=` line).
pub fn version() -> &'static str {
    PREPARE_SCRIPT
        .lines()
        .find_map(|l| l.strip_prefix("VM_VERSION="))
        .map(str::trim)
        .unwrap_or("unknown")
}

/// `$KILN_VM_CACHE`, else `/var/cache/kiln-lab/vm`.
pub fn default_cache() -> PathBuf {
    std::env::var_os("KILN_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-lab/vm"))
}

/// A prepared VM image: the private qemu, kernel, initrd, root image and the keys.
#[derive(Debug, Clone)]
pub struct Image {
    /// `<cache>/<version>`.
    pub dir: PathBuf,
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Raw ext4 image of the root; never written (each VM boots an overlay).
    pub root_image: PathBuf,
    /// Private key accepted for `root` and `kiln` (public half at `<key>.pub`).
    pub key: PathBuf,
    /// The VM's ssh host key (public), the same for every VM of this image.
    pub host_key: String,
    /// How long the preparation took when it ran, in seconds.
    pub prepare_seconds: Option<u64>,
}

/// Finds a prepared image of the current version in `cache`, doing no work.
pub fn find(cache: &Path) -> Result<Image, VmError> {
    let dir = cache.join(version());
    if !dir.join("ready").is_file() {
        return Err(VmError::NotPrepared(dir));
    }
    let host_key_path = dir.join("host_key.pub");
    let host_key = std::fs::read_to_string(&host_key_path)
        .map_err(|e| VmError::io(&host_key_path, e))?
        .trim()
        .to_string();
    let prepare_seconds = std::fs::read_to_string(dir.join("prepare-seconds"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Ok(Image {
        qemu: dir.join("qemu/usr/bin/qemu-system-x86_64"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        root_image: dir.join("root.img"),
        key: dir.join("id_ed25519"),
        host_key,
        prepare_seconds,
        dir,
    })
}

/// Prepares the image in `cache` unless it is there (needs root and the Debian mirror; minutes
/// the first time), then returns it.
pub fn prepare(cache: &Path) -> Result<Image, VmError> {
    if let Ok(img) = find(cache) {
        return Ok(img);
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(PREPARE_SCRIPT)
        .arg("vm-prepare.sh")
        .env("KILN_VM_CACHE", cache)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VmError::io("bash", e))?;
    if !out.status.success() {
        return Err(VmError::Prepare {
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    find(cache)
}

/// What to boot: a run folder (overlay, data disks, console log, QMP socket, inventory), memory,
/// CPUs and data disks.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub dir: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    /// (name, size in bytes): virtio disks after the root, in this order (vdb, vdc, ...).
    pub disks: Vec<(String, u64)>,
    /// How long to wait for sshd.
    pub timeout: Duration,
}

impl VmSpec {
    pub fn new(dir: impl Into<PathBuf>) -> VmSpec {
        VmSpec {
            dir: dir.into(),
            memory_mib: 1024,
            cpus: 2,
            disks: Vec::new(),
            timeout: Duration::from_secs(180),
        }
    }

    /// Adds an empty data disk; `name` (at most 20 characters: it is the virtio serial) shows in
    /// the VM as `/dev/disk/by-id/virtio-<name>`.
    pub fn with_disk(mut self, name: &str, bytes: u64) -> VmSpec {
        self.disks.push((name.to_string(), bytes));
        self
    }
}

/// One data disk of a running VM.
#[derive(Debug, Clone)]
pub struct Disk {
    pub name: String,
    /// The qcow2 file on this machine.
    pub file: PathBuf,
    /// Its device inside the VM (by serial).
    pub guest_path: String,
}

/// A running VM. Dropping it kills qemu (the run folder stays, for its console log).
#[derive(Debug)]
pub struct Vm {
    pub dir: PathBuf,
    /// 127.0.0.1:<ssh_port> reaches the VM's sshd.
    pub ssh_port: u16,
    /// The user with passwordless sudo (`root` accepts the same key).
    pub user: String,
    pub key: PathBuf,
    /// A known_hosts file with the VM's host key under `[127.0.0.1]:<port>`.
    pub known_hosts: PathBuf,
    pub console: PathBuf,
    pub qmp: PathBuf,
    pub disks: Vec<Disk>,
    /// From qemu's start until sshd answered (`wait_ssh`).
    pub boot_time: Option<Duration>,
    started: Instant,
    child: Option<Child>,
    stderr: PathBuf,
}

fn run(cmd: &mut Command) -> Result<Output, VmError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VmError::io(format!("{cmd:?}"), e))?;
    if !out.status.success() {
        return Err(VmError::Command {
            cmd: format!("{cmd:?}"),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

fn free_port() -> Result<u16, VmError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| VmError::io("127.0.0.1:0", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| VmError::io("127.0.0.1:0", e))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Image {
    /// `LD_LIBRARY_PATH` for the private qemu.
    fn lib_path(&self) -> String {
        let q = self.dir.join("qemu");
        format!(
            "{}:{}",
            q.join("usr/lib/x86_64-linux-gnu").display(),
            q.join("lib/x86_64-linux-gnu").display()
        )
    }

    /// `qemu-img`: the machine's own (qemu-utils).
    fn qemu_img(&self, args: &[&str]) -> Result<Output, VmError> {
        run(Command::new("qemu-img").args(args))
    }

    /// Boots a VM and returns when its sshd answers (with the VM's host key).
    pub fn boot(&self, spec: &VmSpec) -> Result<Vm, VmError> {
        for (name, _) in &spec.disks {
            if name.is_empty()
                || name.len() > 20
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(VmError::Spec(format!(
                    "disk name {name:?}: 1-20 letters, digits, - or _ (it is the virtio serial)"
                )));
            }
        }
        std::fs::create_dir_all(&spec.dir).map_err(|e| VmError::io(&spec.dir, e))?;
        let dir = std::fs::canonicalize(&spec.dir).map_err(|e| VmError::io(&spec.dir, e))?;
        let overlay = dir.join("root.qcow2");
        let mut disks = Vec::new();
        for (name, bytes) in &spec.disks {
            let file = dir.join(format!("{name}.qcow2"));
            let _ = std::fs::remove_file(&file);
            self.qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                &file.to_string_lossy(),
                &bytes.to_string(),
            ])?;
            disks.push(Disk {
                name: name.clone(),
                file,
                guest_path: format!("/dev/disk/by-id/virtio-{name}"),
            });
        }
        let known_hosts = dir.join("known_hosts");
        let console = dir.join("console.log");
        let qmp = dir.join("qmp.sock");
        let stderr = dir.join("qemu.stderr");

        // Up to three tries: see the retried errors below.
        let mut last_err = None;
        for _ in 0..3 {
            // A fresh overlay each try: a boot that failed may have written to its root.
            let _ = std::fs::remove_file(&overlay);
            self.qemu_img(&[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                &self.root_image.to_string_lossy(),
                &overlay.to_string_lossy(),
            ])?;
            let port = free_port()?;
            let _ = std::fs::remove_file(&console);
            let _ = std::fs::remove_file(&qmp);
            let child = self.spawn(spec, &dir, &overlay, &disks, port, &console, &qmp, &stderr)?;
            let mut vm = Vm {
                dir: dir.clone(),
                ssh_port: port,
                user: "kiln".into(),
                key: self.key.clone(),
                known_hosts: known_hosts.clone(),
                console: console.clone(),
                qmp: qmp.clone(),
                disks: disks.clone(),
                boot_time: None,
                started: Instant::now(),
                child: Some(child),
                stderr: stderr.clone(),
            };
            let host_key: Vec<&str> = self.host_key.split_whitespace().take(2).collect();
            std::fs::write(
                &known_hosts,
                format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")),
            )
            .map_err(|e| VmError::io(&known_hosts, e))?;
            match vm.wait_ssh(spec.timeout) {
                Ok(()) => {
                    vm.write_inventory()?;
                    tracing::info!(port, ms = vm.boot_time.map(|d| d.as_millis() as u64), dir = %dir.display(), "lab vm up");
                    return Ok(vm);
                }
                // The port was taken between the probe and qemu's bind: another port.
                Err(VmError::QemuExited { stderr, .. })
                    if stderr.contains("hostfwd")
                        || stderr.contains("Could not set up host forwarding") =>
                {
                    last_err = Some(stderr);
                    continue;
                }
                // Emulation on a loaded host can trip an early-boot check; the next boot
                // usually passes. (The console is kept in the error if all tries fail.)
                Err(VmError::QemuExited { console_tail, .. })
                    if console_tail.contains("Kernel panic") =>
                {
                    tracing::warn!(dir = %dir.display(), "lab vm: kernel panicked during boot; booting again");
                    last_err = Some(console_tail);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(VmError::Spec(format!(
            "the VM did not come up in 3 tries (port taken or kernel panic); the last:\n{}",
            last_err.unwrap_or_default()
        )))
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        spec: &VmSpec,
        dir: &Path,
        overlay: &Path,
        disks: &[Disk],
        port: u16,
        console: &Path,
        qmp: &Path,
        stderr: &Path,
    ) -> Result<Child, VmError> {
        let q = self.dir.join("qemu");
        let mut c = Command::new(&self.qemu);
        c.env("LD_LIBRARY_PATH", self.lib_path())
            .current_dir(dir)
            .arg("-nodefaults")
            .arg("-no-user-config")
            .args(["-display", "none", "-no-reboot"])
            .arg("-L")
            .arg(q.join("usr/share/qemu"))
            .arg("-L")
            .arg(q.join("usr/share/seabios"))
            .arg("-L")
            .arg(q.join("usr/lib/ipxe/qemu"))
            .args(["-machine", "pc", "-accel", &accel()])
            .args(["-m", &spec.memory_mib.to_string()])
            .args(["-smp", &spec.cpus.to_string()])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            // no_timer_check: on a busy host the emulated timer can miss the kernel's IO-APIC
            // check ("IO-APIC + timer doesn't work!" panic, seen here under load).
            .args([
                "-append",
                "console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 no_timer_check quiet \
                 mitigations=off systemd.show_status=1",
            ])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .args([
                "-netdev",
                &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
                "-device",
                "virtio-net-pci,netdev=n0,romfile=",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
                overlay.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=root,serial=root"]);
        for d in disks {
            c.arg("-drive")
                .arg(format!(
                    "file={},if=none,id={},format=qcow2,cache=unsafe",
                    d.file.display(),
                    d.name
                ))
                .arg("-device")
                .arg(format!(
                    "virtio-blk-pci,drive={0},serial={0},id=dev-{0}",
                    d.name
                ));
        }
        let err = std::fs::File::create(stderr).map_err(|e| VmError::io(stderr, e))?;
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err);
        // qemu must not outlive whoever started it, even if that process is killed.
        unsafe {
            c.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        tracing::debug!(cmd = ?c, "lab vm: qemu");
        c.spawn().map_err(|e| VmError::io(&self.qemu, e))
    }
}

/// `$KILN_VM_ACCEL`, else `tcg` (software emulation: these machines have no usable KVM).
fn accel() -> String {
    std::env::var("KILN_VM_ACCEL").unwrap_or_else(|_| "tcg".into())
}

impl Vm {
    /// Waits until sshd sends its banner through the forwarded port. (slirp accepts connections
    /// on the port before the guest listens, and closes them: only the banner means "up".)
    pub fn wait_ssh(&mut self, timeout: Duration) -> Result<(), VmError> {
        let end = Instant::now() + timeout;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.ssh_port));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(VmError::QemuExited {
                        status: status.to_string(),
                        stderr: tail(&self.stderr, 40),
                        console: self.console.clone(),
                        console_tail: tail(&self.console, 40),
                    });
                }
            }
            if banner(addr) {
                self.boot_time.get_or_insert(self.started.elapsed());
                return Ok(());
            }
            if Instant::now() > end {
                return Err(VmError::SshTimeout {
                    port: self.ssh_port,
                    secs: timeout.as_secs(),
                    console: self.console.clone(),
                    console_tail: tail(&self.console, 40),
                });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `ssh` to the VM as `user` with the VM key and known_hosts, ready to run `args`.
    pub fn ssh(&self, user: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(&self.key)
            .args(["-p", &self.ssh_port.to_string()])
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .arg("--")
            .args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `argv` as root in the VM (arguments are shell-quoted); Ok whatever its exit status.
    pub fn exec(&self, argv: &[&str]) -> Result<Output, VmError> {
        let line = shell_words::join(argv);
        self.ssh("root", &[&line])
            .output()
            .map_err(|e| VmError::io("ssh", e))
    }

    /// Runs a shell command line as root in the VM and returns its stdout; fails on a non-zero
    /// exit with its stderr.
    pub fn sh(&self, line: &str) -> Result<String, VmError> {
        let out = self
            .ssh("root", &[line])
            .output()
            .map_err(|e| VmError::io("ssh", e))?;
        if !out.status.success() {
            return Err(VmError::Command {
                cmd: format!("(in the VM) {line}"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn disk(&self, name: &str) -> Result<&Disk, VmError> {
        self.disks
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| VmError::NoSuchDisk(name.to_string()))
    }

    /// Grows (or shrinks) a data disk while the VM runs (QMP `block_resize`); the guest kernel
    /// sees the new capacity at once.
    pub fn resize_disk(&self, name: &str, bytes: u64) -> Result<(), VmError> {
        let d = self.disk(name)?;
        qmp::execute(
            &self.qmp,
            "block_resize",
            serde_json::json!({"device": d.name, "size": bytes}),
        )?;
        Ok(())
    }

    /// Hot-plugs a new empty data disk (PCI hotplug of a virtio-blk device).
    pub fn add_disk(&mut self, name: &str, bytes: u64) -> Result<&Disk, VmError> {
        if self.disks.iter().any(|d| d.name == name) {
            return Err(VmError::Spec(format!("disk {name} exists")));
        }
        let file = self.dir.join(format!("{name}.qcow2"));
        let _ = std::fs::remove_file(&file);
        run(Command::new("qemu-img").args([
            "create",
            "-q",
            "-f",
            "qcow2",
            &file.to_string_lossy(),
            &bytes.to_string(),
        ]))?;
        qmp::execute(
            &self.qmp,
            "blockdev-add",
            serde_json::json!({"driver": "qcow2", "node-name": name,
                "file": {"driver": "file", "filename": file.to_string_lossy()}}),
        )?;
        qmp::execute(
            &self.qmp,
            "device_add",
            serde_json::json!({"driver": "virtio-blk-pci", "drive": name, "serial": name,
                "id": format!("dev-{name}")}),
        )?;
        self.disks.push(Disk {
            name: name.to_string(),
            file,
            guest_path: format!("/dev/disk/by-id/virtio-{name}"),
        });
        Ok(&self.disks[self.disks.len() - 1])
    }

    /// The inventory `boot` wrote: `<dir>/inventory.ini`, host `kiln-vm` in group `vm`.
    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.ini")
    }

    fn write_inventory(&self) -> Result<(), VmError> {
        let p = self.inventory();
        let text = format!(
            "# Written by kiln::lab::vm for the VM in {dir}.\n[vm]\n\
             kiln-vm ansible_host=127.0.0.1 ansible_port={port} ansible_user={user} \
             ansible_ssh_private_key_file={key} \
             ansible_ssh_common_args='-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes'\n",
            dir = self.dir.display(),
            port = self.ssh_port,
            user = self.user,
            key = self.key.display(),
            kh = self.known_hosts.display(),
        );
        std::fs::write(&p, text).map_err(|e| VmError::io(&p, e))
    }

    /// The last `lines` lines of the serial console.
    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.console, lines)
    }

    /// Kills qemu now (also done on drop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when something at `addr` sends an SSH banner.
fn banner(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut buf = [0u8; 4];
    let ok = s.read_exact(&mut buf).is_ok() && &buf == b"SSH-";
    let _ = s.write_all(b"SSH-2.0-kiln-probe\r\n");
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_comes_from_the_script() {
        assert!(version().starts_with("bookworm-"), "{}", version());
    }

    #[test]
    fn find_says_how_to_prepare() {
        let dir = tempfile::tempdir().unwrap();
        let e = find(dir.path()).unwrap_err();
        assert!(e.to_string().contains("vm-prepare.sh"), "{e}");
    }
}
