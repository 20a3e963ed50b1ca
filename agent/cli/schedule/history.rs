//! A schedule's state folder: its definition (`schedule.json`), its lock (`lock`), the marker of
//! the run in progress (`running.json`) and its history (`history.jsonl`, one JSON object per run).
//!
//! The lock is `flock(2)` on `lock`, held by the wrapper (`kiln schedule exec`) on a close-on-exec
//! descriptor: the kernel releases it when the wrapper ends, however it ends (a `kill -9`
//! included), and the verb it runs never inherits it. A wrapper killed before it could write its
//! history line leaves `running.json` behind; the next wrapper to get the lock (or `kiln schedule
//! history`) turns it into an `interrupted` line, so every run that started shows up.

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a history line ({msg}); fix or delete that line")]
    BadLine {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("{path}: cannot lock: {msg}")]
    Lock { path: PathBuf, msg: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn history_path(state_dir: &Path) -> PathBuf {
    state_dir.join("history.jsonl")
}
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}
pub fn running_path(state_dir: &Path) -> PathBuf {
    state_dir.join("running.json")
}
pub fn definition_path(state_dir: &Path) -> PathBuf {
    state_dir.join("schedule.json")
}
/// Where the verb may write its summary (`$KILN_RUN_SUMMARY`).
pub fn summary_path(state_dir: &Path) -> PathBuf {
    state_dir.join("summary.json")
}

/// Images of a build run by outcome, when the verb reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Images {
    #[serde(default)]
    pub built: Vec<String>,
    #[serde(default)]
    pub unchanged: Vec<String>,
    #[serde(default)]
    pub failed: Vec<String>,
}

/// What a verb that knows (an image build) writes to `$KILN_RUN_SUMMARY`:
/// `{"tag": "...", "images": {"built": [...], "unchanged": [...], "failed": [...]}, "record": "path"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub images: Option<Images>,
    #[serde(default)]
    pub record: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The verb exited 0.
    Ok,
    /// The verb exited non-zero.
    Failed,
    /// The verb (or the wrapper, which passed it on) was ended by a signal.
    Killed,
    /// Another run held the lock and the schedule skips overlapping runs.
    Skipped,
    /// The wrapper itself died without writing its line (found afterwards).
    Interrupted,
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub name: String,
    pub status: Status,
    /// When the wrapper started (RFC 3339, UTC).
    pub queued: String,
    /// When the verb started, after the lock (None when skipped).
    pub start: Option<String>,
    /// When it ended (None when interrupted: nobody saw the end).
    pub end: Option<String>,
    pub duration_secs: Option<f64>,
    /// Seconds spent waiting for the previous run's lock.
    pub waited_secs: Option<f64>,
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    pub tag: Option<String>,
    pub images: Option<Images>,
    pub record: Option<String>,
    pub args: Vec<String>,
    /// The wrapper's process id.
    pub pid: u32,
}

/// The marker a run leaves while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Running {
    pub queued: String,
    pub start: String,
    pub pid: u32,
    pub args: Vec<String>,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Append one run as one line (one `write` on an `O_APPEND` file, so concurrent writers never
/// interleave within a line).
pub fn append(state_dir: &Path, run: &Run) -> Result<(), HistoryError> {
    let path = history_path(state_dir);
    let mut line = serde_json::to_string(run).map_err(|e| HistoryError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    line.push('\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    f.write_all(line.as_bytes()).map_err(io(&path))
}

/// Every run recorded, oldest first. A missing file is an empty history.
pub fn read(state_dir: &Path) -> Result<Vec<Run>, HistoryError> {
    let path = history_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| HistoryError::BadLine {
                path: path.clone(),
                line: i + 1,
                msg: e.to_string(),
            })
        })
        .collect()
}

/// The schedule's lock, held while the value lives.
pub struct Lock(#[allow(dead_code)] Flock<File>);

/// Take the lock: wait for it (`block`), or return None when another run holds it.
pub fn lock(state_dir: &Path, block: bool) -> Result<Option<Lock>, HistoryError> {
    let path = lock_path(state_dir);
    // std opens with O_CLOEXEC: the verb the wrapper starts does not inherit the lock
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let arg = if block {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    match Flock::lock(f, arg) {
        Ok(l) => Ok(Some(Lock(l))),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) if !block => Ok(None),
        Err((_, e)) => Err(HistoryError::Lock {
            path,
            msg: e.to_string(),
        }),
    }
}

pub fn read_running(state_dir: &Path) -> Option<Running> {
    let text = std::fs::read_to_string(running_path(state_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_running(state_dir: &Path, r: &Running) -> Result<(), HistoryError> {
    let path = running_path(state_dir);
    let text = serde_json::to_string(r).map_err(|e| HistoryError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, text).map_err(io(&path))
}

pub fn clear_running(state_dir: &Path) {
    let _ = std::fs::remove_file(running_path(state_dir));
}

/// With the lock held: a `running.json` left behind is a run whose wrapper died; record it as
/// interrupted. Returns the line written, if any.
pub fn recover_interrupted(state_dir: &Path, name: &str) -> Result<Option<Run>, HistoryError> {
    let path = running_path(state_dir);
    if !path.exists() {
        return Ok(None);
    }
    let run = read_running(state_dir).map(|r| Run {
        name: name.to_string(),
        status: Status::Interrupted,
        queued: r.queued,
        start: Some(r.start),
        end: None,
        duration_secs: None,
        waited_secs: None,
        exit: None,
        signal: None,
        tag: None,
        images: None,
        record: None,
        args: r.args,
        pid: r.pid,
    });
    if let Some(run) = &run {
        append(state_dir, run)?;
    }
    clear_running(state_dir);
    Ok(run)
}

/// Read the verb's summary, if it wrote one that parses (a broken one is reported, not fatal).
pub fn read_summary(path: &Path) -> Result<Option<Summary>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{}: not a run summary: {e}", path.display())),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_and_read_back() {
        let d = std::env::temp_dir().join(format!("vg-hist-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let run = Run {
            name: "n".into(),
            status: Status::Ok,
            queued: now(),
            start: Some(now()),
            end: Some(now()),
            duration_secs: Some(1.5),
            waited_secs: Some(0.0),
            exit: Some(0),
            signal: None,
            tag: Some("t".into()),
            images: Some(Images::default()),
            record: None,
            args: vec!["inventory".into()],
            pid: 1,
        };
        append(&d, &run).unwrap();
        append(&d, &run).unwrap();
        assert_eq!(read(&d).unwrap(), vec![run.clone(), run]);
        std::fs::write(history_path(&d), "{\"name\":1}\n").unwrap();
        let e = read(&d).unwrap_err().to_string();
        assert!(e.contains("history.jsonl:1"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
