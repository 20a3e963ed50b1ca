//! Test helpers for the VM tier (`kiln::lab::vm`): skip with a clear reason when the tier is not
//! prepared here, boot a VM in its own folder, and keep that folder (console log, qemu stderr)
//! only when the test fails.

use kiln::lab::vm::{self, Vm, VmSpec};
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;

/// Why VM tests cannot run here, or None if they can.
pub fn vm_skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (the prepared image lives in a root-only cache)".into());
    }
    if super::which("ssh").is_none() {
        return Some("the `ssh` client is missing; install openssh-client".into());
    }
    if super::which("qemu-img").is_none() {
        return Some("`qemu-img` is missing; install qemu-utils".into());
    }
    vm::find(&vm::default_cache()).err().map(|e| e.to_string())
}

/// Returns from the test with a printed reason when the VM tier is unavailable.
#[macro_export]
macro_rules! require_vm {
    () => {
        if let Some(reason) = $crate::lab::vm::vm_skip_reason() {
            eprintln!("SKIPPED (vm tier unavailable): {reason}");
            return;
        }
    };
}

/// A booted VM whose folder is removed on drop unless the test is failing.
pub struct VmGuard {
    pub vm: Vm,
    dir: PathBuf,
}

/// Boots a VM with the given data disks (name, bytes) in a fresh folder; panics with qemu's and
/// the console's output if it does not come up.
pub fn boot(prefix: &str, disks: &[(&str, u64)]) -> VmGuard {
    let image = vm::find(&vm::default_cache()).unwrap_or_else(|e| panic!("{e}"));
    let name = super::unique_name(prefix);
    let dir = std::env::temp_dir().join("kiln-vm-tests").join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut spec = VmSpec::new(&dir);
    for (d, bytes) in disks {
        spec = spec.with_disk(d, *bytes);
    }
    let vm = image
        .boot(&spec)
        .unwrap_or_else(|e| panic!("VM boot failed: {e}"));
    eprintln!(
        "vm {name}: sshd answered {:.1} s after qemu started (port {}, image prepared in {} s)",
        vm.boot_time.map(|d| d.as_secs_f64()).unwrap_or(0.0),
        vm.ssh_port,
        image
            .prepare_seconds
            .map(|s| s.to_string())
            .unwrap_or_else(|| "?".into())
    );
    VmGuard { vm, dir }
}

impl VmGuard {
    /// A shell command line run as root in the VM; panics (with its stderr) if it fails.
    pub fn must(&self, line: &str) -> String {
        self.vm
            .sh(line)
            .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", self.vm.console_tail(20)))
    }

    /// `ip -j <args>` in the VM, parsed.
    pub fn ip_json(&self, args: &str) -> serde_json::Value {
        let out = self.must(&format!("ip -j {args}"));
        if out.trim().is_empty() {
            return serde_json::Value::Array(Vec::new());
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args}: {e}: {out}"))
    }
}

impl Deref for VmGuard {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

impl DerefMut for VmGuard {
    fn deref_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }
}

impl Drop for VmGuard {
    fn drop(&mut self) {
        self.vm.kill();
        if std::thread::panicking() {
            eprintln!(
                "vm folder kept for inspection: {} (console.log, qemu.stderr)",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The musl agent without symbols and debug info (257 MB -> 48 MB), for `--agent-binary x86_64=...`:
/// the first upload of the debug agent into a VM took ~45 s (SSH ciphers run emulated in the
/// guest). The build id is a compiled-in constant, so the stripped copy is the same agent.
/// Made once per test process; None (kiln then finds its agent itself) if there is no musl agent
/// or no objcopy.
pub fn small_agent() -> Option<PathBuf> {
    static AGENT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    AGENT
        .get_or_init(|| {
            let src = kiln::transport::upload::find_agent_binary(
                "x86_64",
                &kiln::transport::TransportOptions::default(),
            )?;
            if !src.is_file() {
                return None;
            }
            let dir = std::env::temp_dir().join("kiln-vm-tests");
            std::fs::create_dir_all(&dir).ok()?;
            // Named after the source's size and mtime: reruns of one build reuse it.
            let meta = std::fs::metadata(&src).ok()?;
            let mtime = meta
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            let dst = dir.join(format!("agent-{}-{mtime}", meta.len()));
            if dst.is_file() {
                return Some(dst);
            }
            // Copies for older builds (an hour old or more) go.
            for e in std::fs::read_dir(&dir).ok()?.flatten() {
                let old = e.file_name().to_string_lossy().starts_with("agent-")
                    && e.metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age.as_secs() > 3600);
                if old {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let tmp = dir.join(format!(".agent-{}", std::process::id()));
            let ok = std::process::Command::new(super::which("objcopy")?)
                .arg("--strip-all")
                .arg(&src)
                .arg(&tmp)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            (ok && std::fs::rename(&tmp, &dst).is_ok()).then_some(dst)
        })
        .clone()
}
