//! Processes and containers a lab's user started on this machine for the lab (`kiln lab demo`'s
//! fake Pulp, its registry, the Pulp proxy container), recorded in `<lab>/services/` so that
//! `kiln lab down` stops them with the hosts: `<name>.pid` holds the process (PID and start time,
//! so a reused PID is never signalled), `<name>.container` a podman container name (and the
//! `CONTAINERS_CONF` it was made with, on a second line).

use super::proc::ProcId;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("services")
}

/// Record a running process as the lab's service `name`.
pub fn record_pid(lab_dir: &Path, name: &str, pid: u32) -> std::io::Result<()> {
    let d = dir(lab_dir);
    std::fs::create_dir_all(&d)?;
    let id = ProcId::of(pid).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("process {pid} is gone"),
        )
    })?;
    std::fs::write(
        d.join(format!("{name}.pid")),
        serde_json::to_string(&id).unwrap_or_default(),
    )
}

/// Record a podman container the lab's user made, removed by `down`.
pub fn record_container(
    lab_dir: &Path,
    name: &str,
    containers_conf: Option<&Path>,
) -> std::io::Result<()> {
    let d = dir(lab_dir);
    std::fs::create_dir_all(&d)?;
    let conf = containers_conf
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    std::fs::write(
        d.join(format!("{name}.container")),
        format!("{name}\n{conf}\n"),
    )
}

fn recorded(lab_dir: &Path, name: &str) -> Option<ProcId> {
    let text = std::fs::read_to_string(dir(lab_dir).join(format!("{name}.pid"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Is the recorded process `name` still running?
pub fn running(lab_dir: &Path, name: &str) -> bool {
    recorded(lab_dir, name).is_some_and(|p| p.alive())
}

/// Stop the recorded process `name` (if it is still the one recorded) and forget it.
pub fn stop(lab_dir: &Path, name: &str) {
    if let Some(p) = recorded(lab_dir, name) {
        p.kill();
        p.wait_gone(Duration::from_secs(5));
    }
    let _ = std::fs::remove_file(dir(lab_dir).join(format!("{name}.pid")));
}

/// Stop every recorded process and remove every recorded container (`kiln lab down`).
pub fn stop_all(lab_dir: &Path) {
    let d = dir(lab_dir);
    let Ok(rd) = std::fs::read_dir(&d) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match p.extension().and_then(|x| x.to_str()) {
            Some("pid") => stop(lab_dir, &name),
            Some("container") => {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let mut lines = text.lines();
                let cname = lines.next().unwrap_or("").trim().to_string();
                let conf = lines.next().unwrap_or("").trim().to_string();
                if !cname.is_empty() {
                    let mut c = std::process::Command::new("podman");
                    c.args(["rm", "-f", "-t", "0", &cname])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null());
                    if !conf.is_empty() {
                        c.env("CONTAINERS_CONF", &conf);
                    }
                    let _ = c.status();
                }
                let _ = std::fs::remove_file(&p);
            }
            _ => {}
        }
    }
}
