//! A process the lab started, identified by PID *and* start time, so that a recorded PID that the
//! kernel has since given to an unrelated process is never signalled. Zombies count as gone: on
//! machines whose PID 1 does not reap orphans, a finished `unshare` stays a zombie forever.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcId {
    pub pid: u32,
    /// Field 22 of /proc/<pid>/stat (clock ticks since boot).
    pub start: u64,
}

/// (state, start time) from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); start time is field 22.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl ProcId {
    /// Identify a running process now.
    pub fn of(pid: u32) -> Option<ProcId> {
        stat(pid).map(|(_, start)| ProcId { pid, start })
    }

    /// True if the recorded process still exists, is not a zombie, and is the same process.
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid), Some((state, start)) if start == self.start && state != 'Z' && state != 'X')
    }

    /// SIGKILL the recorded process if it is still the same process.
    pub fn kill(&self) {
        if self.alive() {
            if let Ok(pid) = i32::try_from(self.pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// Wait until the process is gone (or a zombie); false on timeout.
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while self.alive() {
            if Instant::now() > end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// PIDs of the children of `pid` (needs CONFIG_PROC_CHILDREN; falls back to scanning /proc).
pub fn children(pid: u32) -> Vec<u32> {
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(st) = std::fs::read_to_string(format!("/proc/{child}/status")) else {
                continue;
            };
            let ppid = st
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .map(str::trim);
            if ppid == Some(pid.to_string().as_str()) {
                out.push(child);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_itself_and_not_a_stale_pid() {
        let me = ProcId::of(std::process::id());
        assert!(me.is_some_and(|p| p.alive()));
        if let Some(me) = me {
            let stale = ProcId {
                start: me.start + 1,
                ..me
            };
            assert!(!stale.alive());
        }
    }
}
