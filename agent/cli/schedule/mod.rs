//! `kiln schedule add|list|show|remove|run-now|history` (and the hidden `exec`): scheduled kiln
//! runs (image rebuilds) with systemd timers, not a scheduler of kiln's own.
//!
//! `add` writes a `.timer` and a `.service` (`units`) and, unless `--unit-dir` asks only for the
//! files, installs them into the user or system unit folder and runs `systemctl daemon-reload`
//! and `enable --now`. The service runs `kiln schedule exec NAME -- <verb>`: the wrapper takes the
//! schedule's lock (so an overlapping run waits or is skipped), runs the verb with this same kiln
//! binary, and appends one JSON line to the schedule's history (`history`).

pub mod history;
pub mod units;

use super::{exit, GlobalOpts};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use history::{Run, Running, Status};
use std::os::unix::process::CommandExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;
use units::{OnFailure, Overlap, Schedule, Scope};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
kiln schedule add nightly --on-calendar 'daily' --persistent --randomized-delay 900 -- seed container image build\n  \
kiln schedule add hourly --on-calendar '*-*-* *:00:00' --overlap skip --on-failure 'mail -s kiln-failed ops@example.com' -- playbook run build.yml\n  \
kiln schedule add review --on-calendar 'Mon 02:00' --unit-dir ./units -- seed container image build   (only write the units)\n  \
kiln schedule list\n  kiln schedule show nightly\n  kiln schedule run-now nightly\n  kiln schedule history nightly\n  kiln schedule remove nightly\n\n\
Each run appends a JSON line (start, end, exit, tag, images built/unchanged/failed, record path)\n\
to the schedule's history: ~/.local/state/kiln/schedule/NAME/history.jsonl (system scope:\n\
/var/lib/kiln/schedule/NAME/).")]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Args, Debug, Clone)]
pub struct Where {
    /// user (systemctl --user, ~/.config/systemd/user) or system (/etc/systemd/system).
    #[arg(long, value_enum, default_value = "user")]
    pub scope: Scope,
    /// Folder holding the schedules' state (default ~/.local/state/kiln/schedule, or
    /// /var/lib/kiln/schedule for system scope).
    #[arg(long, env = "KILN_SCHEDULE_DIR")]
    pub state_root: Option<PathBuf>,
}

impl Where {
    fn root(&self) -> PathBuf {
        self.state_root
            .clone()
            .unwrap_or_else(|| units::default_state_root(self.scope, &home()))
    }
    fn state_dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        units::check_name(name).map_err(anyhow::Error::msg)?;
        Ok(self.root().join(name))
    }
    fn load(&self, name: &str) -> anyhow::Result<Schedule> {
        let dir = self.state_dir(name)?;
        let path = history::definition_path(&dir);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no schedule `{name}` ({} unreadable); `kiln schedule list` shows the schedules{}",
                path.display(),
                if self.scope == Scope::User {
                    " (system-scope ones with --scope system)"
                } else {
                    ""
                }
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a schedule", path.display()))
    }
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Write (and install) a timer + service that run `kiln <verb...>` on a calendar.
    Add {
        /// Schedule name (part of the unit names: kiln-schedule-NAME.{timer,service}).
        name: String,
        /// systemd calendar event, e.g. `daily`, `Mon *-*-* 02:00`, `*-*-* 00/6:00` (checked
        /// with `systemd-analyze calendar`).
        #[arg(long)]
        on_calendar: String,
        #[command(flatten)]
        at: Where,
        /// A run that starts while the previous one still runs: wait for it, or skip.
        #[arg(long, value_enum, default_value = "wait")]
        overlap: Overlap,
        /// Timer's RandomizedDelaySec= (spread runs over this many seconds).
        #[arg(long, value_name = "SECS")]
        randomized_delay: Option<u64>,
        /// Timer's Persistent=true: a run missed while the machine was off happens at boot.
        #[arg(long)]
        persistent: bool,
        /// When a run fails: a unit to start (`notify@ops.service`) or a shell command (run by
        /// a unit kiln writes, with systemd's $MONITOR_UNIT / $MONITOR_SERVICE_RESULT set).
        #[arg(long, value_name = "UNIT-or-COMMAND")]
        on_failure: Option<String>,
        /// Only write the units into DIR (for review or tests): no install, no systemctl.
        #[arg(long)]
        unit_dir: Option<PathBuf>,
        /// The kiln binary the service runs (default: this one).
        #[arg(long)]
        kiln: Option<PathBuf>,
        /// The kiln verb and its options, after `--`.
        #[arg(last = true, required = true, num_args = 1..)]
        verb: Vec<String>,
    },
    /// The schedules, their calendar and their last run.
    List {
        #[command(flatten)]
        at: Where,
    },
    /// A schedule's definition and unit files.
    Show {
        name: String,
        #[command(flatten)]
        at: Where,
    },
    /// Disable and remove a schedule's units (and its state, unless --keep-history).
    Remove {
        name: String,
        #[command(flatten)]
        at: Where,
        #[arg(long)]
        keep_history: bool,
    },
    /// Run a schedule now: `systemctl start` its service when installed and systemd runs,
    /// otherwise the same wrapper in the foreground (same lock, same history).
    RunNow {
        name: String,
        #[command(flatten)]
        at: Where,
    },
    /// A schedule's runs, oldest first.
    History {
        name: String,
        #[command(flatten)]
        at: Where,
        /// The JSON lines as stored.
        #[arg(long)]
        json: bool,
        /// Only the last N runs.
        #[arg(short = 'n', long)]
        last: Option<usize>,
    },
    /// The wrapper the service runs: lock, run the verb, append history.
    #[command(hide = true)]
    Exec {
        name: String,
        #[arg(long, value_enum, default_value = "wait")]
        overlap: Overlap,
        /// The schedule's state folder.
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(last = true, required = true, num_args = 1..)]
        verb: Vec<String>,
    },
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

pub fn run(a: ScheduleArgs, _g: &GlobalOpts) -> anyhow::Result<i32> {
    match a.command {
        ScheduleCommand::Add {
            name,
            on_calendar,
            at,
            overlap,
            randomized_delay,
            persistent,
            on_failure,
            unit_dir,
            kiln,
            verb,
        } => add(
            &at,
            AddOpts {
                name,
                on_calendar,
                overlap,
                randomized_delay,
                persistent,
                on_failure,
                unit_dir,
                kiln,
                verb,
            },
        ),
        ScheduleCommand::List { at } => list(&at),
        ScheduleCommand::Show { name, at } => show(&at, &name),
        ScheduleCommand::Remove {
            name,
            at,
            keep_history,
        } => remove(&at, &name, keep_history),
        ScheduleCommand::RunNow { name, at } => run_now(&at, &name),
        ScheduleCommand::History {
            name,
            at,
            json,
            last,
        } => show_history(&at, &name, json, last),
        ScheduleCommand::Exec {
            name,
            overlap,
            state_dir,
            verb,
        } => exec(&name, overlap, &state_dir, &verb),
    }
}

struct AddOpts {
    name: String,
    on_calendar: String,
    overlap: Overlap,
    randomized_delay: Option<u64>,
    persistent: bool,
    on_failure: Option<String>,
    unit_dir: Option<PathBuf>,
    kiln: Option<PathBuf>,
    verb: Vec<String>,
}

/// `systemd-analyze calendar SPEC`: the normalized form and next elapse, or systemd's refusal.
fn check_calendar(spec: &str) -> anyhow::Result<String> {
    let out = match Command::new("systemd-analyze")
        .args(["calendar", spec])
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "cannot check --on-calendar: systemd-analyze is not installed (Debian: apt-get install systemd)"
        ),
        Err(e) => return Err(e).context("running systemd-analyze calendar"),
    };
    if !out.status.success() {
        bail!(
            "--on-calendar {spec:?} is not a systemd calendar event: {}\n\
             Examples: daily, weekly, 'Mon *-*-* 02:00', '*-*-* 00/6:00:00' (see systemd.time(7); \
             check one with `systemd-analyze calendar SPEC`)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Is systemd the init system here (sd_booted(3): /run/systemd/system exists)?
fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(scope: Scope, args: &[&str]) -> anyhow::Result<()> {
    let mut c = Command::new("systemctl");
    if scope == Scope::User {
        c.arg("--user");
    }
    c.args(args);
    let out = c
        .output()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`systemctl{} {}` failed: {}",
            if scope == Scope::User { " --user" } else { "" },
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn add(at: &Where, o: AddOpts) -> anyhow::Result<i32> {
    let state_dir = at.state_dir(&o.name)?;
    if o.verb.first().map(String::as_str) == Some("schedule") {
        bail!("a schedule runs a kiln verb; `kiln schedule ...` cannot be scheduled");
    }
    let calendar = check_calendar(&o.on_calendar)?;
    let kiln = match o.kiln {
        Some(k) => k,
        None => std::env::current_exe().context("finding this kiln binary")?,
    };
    let kiln = kiln
        .canonicalize()
        .with_context(|| format!("{}: the kiln binary the service runs", kiln.display()))?;
    let workdir = std::env::current_dir()?;
    let env = units::CARRIED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let install = o.unit_dir.is_none();
    let unit_dir = match o.unit_dir {
        Some(d) => std::path::absolute(d)?,
        None => units::default_unit_dir(at.scope, &home()),
    };
    let s = Schedule {
        name: o.name.clone(),
        on_calendar: o.on_calendar.clone(),
        scope: at.scope,
        overlap: o.overlap,
        randomized_delay_secs: o.randomized_delay,
        persistent: o.persistent,
        on_failure: o.on_failure.as_deref().map(OnFailure::parse),
        args: o.verb.clone(),
        kiln,
        workdir,
        state_dir: std::path::absolute(&state_dir)?,
        env,
        unit_dir: unit_dir.clone(),
        installed: false,
    };
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    for (file, text) in s.units() {
        let p = unit_dir.join(&file);
        write_file(&p, &text)?;
        println!("wrote {}", p.display());
    }
    print!("{}", indent(&calendar));
    let mut s = s;
    let mut code = exit::OK;
    if install {
        if !systemd_running() {
            eprintln!(
                "systemd is not running on this machine (no /run/systemd/system: it is not PID 1), \
                 so the timer is not enabled. The units are in {}; on a machine booted with systemd: \
                 systemctl{} daemon-reload && systemctl{} enable --now {}",
                unit_dir.display(),
                if at.scope == Scope::User { " --user" } else { "" },
                if at.scope == Scope::User { " --user" } else { "" },
                s.timer_name()
            );
            code = exit::ERROR;
        } else {
            systemctl(at.scope, &["daemon-reload"])?;
            systemctl(at.scope, &["enable", "--now", &s.timer_name()])?;
            s.installed = true;
            println!("enabled {} ({} scope)", s.timer_name(), at.scope.as_str());
        }
    } else {
        println!(
            "not installed (--unit-dir): review them, e.g. systemd-analyze verify {}",
            s.unit_paths()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    write_file(
        &history::definition_path(&state_dir),
        &serde_json::to_string_pretty(&s)?,
    )?;
    println!("history: {}", history::history_path(&state_dir).display());
    Ok(code)
}

fn indent(t: &str) -> String {
    t.lines().map(|l| format!("  {l}\n")).collect()
}

fn last_run(state_dir: &Path) -> String {
    match history::read(state_dir) {
        Ok(runs) => match runs.last() {
            Some(r) => format!(
                "{} {}",
                serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                r.end.as_deref().or(r.start.as_deref()).unwrap_or(&r.queued)
            ),
            None => "never run".into(),
        },
        Err(e) => format!("history unreadable: {e}"),
    }
}

fn list(at: &Where) -> anyhow::Result<i32> {
    let root = at.root();
    let mut rows = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(s) = at.load(&name) {
                rows.push(s);
            }
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if rows.is_empty() {
        println!(
            "no schedules in {} ({} scope)",
            root.display(),
            at.scope.as_str()
        );
        return Ok(exit::OK);
    }
    println!(
        "{:<20} {:<24} {:<9} {:<30} VERB",
        "NAME", "CALENDAR", "INSTALLED", "LAST RUN"
    );
    for s in rows {
        println!(
            "{:<20} {:<24} {:<9} {:<30} kiln {}",
            s.name,
            s.on_calendar,
            if s.installed { "yes" } else { "no" },
            last_run(&s.state_dir),
            s.args.join(" ")
        );
    }
    Ok(exit::OK)
}

fn show(at: &Where, name: &str) -> anyhow::Result<i32> {
    let s = at.load(name)?;
    println!("{}", serde_json::to_string_pretty(&s)?);
    for p in s.unit_paths() {
        match std::fs::read_to_string(&p) {
            Ok(t) => println!("\n# {}\n{t}", p.display()),
            Err(e) => println!("\n# {}: {e}", p.display()),
        }
    }
    println!("last run: {}", last_run(&s.state_dir));
    Ok(exit::OK)
}

fn remove(at: &Where, name: &str, keep_history: bool) -> anyhow::Result<i32> {
    let s = at.load(name)?;
    if s.installed {
        if systemd_running() {
            systemctl(s.scope, &["disable", "--now", &s.timer_name()])?;
        } else {
            eprintln!(
                "systemd is not running here: {} was not disabled by systemctl",
                s.timer_name()
            );
        }
    }
    for p in s.unit_paths() {
        match std::fs::remove_file(&p) {
            Ok(()) => println!("removed {}", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    if s.installed && systemd_running() {
        systemctl(s.scope, &["daemon-reload"])?;
    }
    if keep_history {
        std::fs::remove_file(history::definition_path(&s.state_dir))?;
        println!("kept {}", history::history_path(&s.state_dir).display());
    } else {
        std::fs::remove_dir_all(&s.state_dir)
            .with_context(|| format!("removing {}", s.state_dir.display()))?;
        println!("removed {}", s.state_dir.display());
    }
    Ok(exit::OK)
}

fn run_now(at: &Where, name: &str) -> anyhow::Result<i32> {
    let s = at.load(name)?;
    if s.installed && systemd_running() {
        systemctl(s.scope, &["start", &s.service_name()])?;
        println!(
            "ran {} (journalctl{} -u {} shows its output)",
            s.service_name(),
            if s.scope == Scope::User {
                " --user"
            } else {
                ""
            },
            s.service_name()
        );
        return Ok(exit::OK);
    }
    println!(
        "{}: running the wrapper in the foreground (same lock and history as the timer's runs)",
        if s.installed {
            "systemd is not running here"
        } else {
            "the units are not installed"
        }
    );
    exec(&s.name, s.overlap, &s.state_dir, &s.args)
}

fn show_history(at: &Where, name: &str, json: bool, last: Option<usize>) -> anyhow::Result<i32> {
    let dir = at.state_dir(name)?;
    if !dir.is_dir() {
        bail!("no schedule `{name}` in {}", at.root().display());
    }
    // a wrapper that died without its line: record it, unless a run is going on now
    if let Some(_l) = history::lock(&dir, false)? {
        history::recover_interrupted(&dir, name)?;
    }
    let runs = history::read(&dir)?;
    let skip = last.map(|n| runs.len().saturating_sub(n)).unwrap_or(0);
    if json {
        for r in &runs[skip..] {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(exit::OK);
    }
    println!(
        "{:<25} {:<12} {:>9} {:>5} {:<24} {:<18} RECORD",
        "START", "STATUS", "SECONDS", "EXIT", "TAG", "BUILT/SAME/FAILED"
    );
    for r in &runs[skip..] {
        let status = serde_json::to_value(r.status)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let exit = match (r.exit, r.signal) {
            (Some(c), _) => c.to_string(),
            (None, Some(s)) => format!("sig{s}"),
            _ => "-".into(),
        };
        println!(
            "{:<25} {:<12} {:>9} {:>5} {:<24} {:<18} {}",
            r.start.as_deref().unwrap_or(&r.queued),
            status,
            r.duration_secs
                .map(|d| format!("{d:.1}"))
                .unwrap_or_else(|| "-".into()),
            exit,
            r.tag.as_deref().unwrap_or("-"),
            r.images
                .as_ref()
                .map(|i| format!("{}/{}/{}", i.built.len(), i.unchanged.len(), i.failed.len()))
                .unwrap_or_else(|| "-".into()),
            r.record.as_deref().unwrap_or("-")
        );
    }
    Ok(exit::OK)
}

/// The child the wrapper runs, for the signal handler to pass SIGTERM/SIGINT/SIGHUP on to.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The signal the wrapper received and passed on (0: none).
static FORWARDED: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: nix::libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    FORWARDED.store(sig, Ordering::SeqCst);
    if pid > 0 {
        // async-signal-safe
        unsafe {
            nix::libc::kill(pid, sig);
        }
    }
}

/// The wrapper: lock, run `kiln <verb>`, append history. Exit code: the verb's (128+signal when
/// it was killed; 0 for a skipped run, which is no failure).
fn exec(name: &str, overlap: Overlap, state_dir: &Path, verb: &[String]) -> anyhow::Result<i32> {
    units::check_name(name).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let queued = history::now();
    let queued_at = Instant::now();
    let pid = std::process::id();
    let lock = match history::lock(state_dir, overlap == Overlap::Wait)? {
        Some(l) => l,
        None => {
            let holder = history::read_running(state_dir)
                .map(|r| format!(" (pid {}, started {})", r.pid, r.start))
                .unwrap_or_default();
            println!(
                "kiln schedule {name}: skipped: the previous run still holds the lock{holder}"
            );
            history::append(
                state_dir,
                &Run {
                    name: name.into(),
                    status: Status::Skipped,
                    queued: queued.clone(),
                    start: None,
                    end: Some(history::now()),
                    duration_secs: None,
                    waited_secs: None,
                    exit: None,
                    signal: None,
                    tag: None,
                    images: None,
                    record: None,
                    args: verb.to_vec(),
                    pid,
                },
            )?;
            return Ok(exit::OK);
        }
    };
    let waited = queued_at.elapsed().as_secs_f64();
    if let Some(r) = history::recover_interrupted(state_dir, name)? {
        eprintln!(
            "kiln schedule {name}: the run of pid {} (started {}) ended without a history line: recorded as interrupted",
            r.pid,
            r.start.as_deref().unwrap_or("?")
        );
    }
    let start = history::now();
    history::write_running(
        state_dir,
        &Running {
            queued: queued.clone(),
            start: start.clone(),
            pid,
            args: verb.to_vec(),
        },
    )?;
    let summary = history::summary_path(state_dir);
    let _ = std::fs::remove_file(&summary);
    let kiln = std::env::current_exe().context("finding this kiln binary")?;
    let mut cmd = Command::new(&kiln);
    cmd.args(verb)
        .env("KILN_RUN_SUMMARY", &summary)
        .env("KILN_SCHEDULE_NAME", name);
    // a wrapper killed outright takes its verb with it (the lock is released by the kernel)
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} {}", kiln.display(), verb.join(" ")))?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let handler = nix::sys::signal::SigHandler::Handler(forward);
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        // SAFETY: the handler only reads/writes atomics and calls kill(2)
        unsafe {
            nix::sys::signal::signal(sig, handler).context("installing signal handler")?;
        }
    }
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("waiting for the verb"),
        }
    };
    let duration = started.elapsed().as_secs_f64();
    let forwarded = FORWARDED.load(Ordering::SeqCst);
    let (run_status, exit_code, signal) = match (status.code(), status.signal()) {
        (Some(0), _) if forwarded == 0 => (Status::Ok, Some(0), None),
        (Some(c), _) if forwarded != 0 => (Status::Killed, Some(c), Some(forwarded)),
        (Some(c), _) => (Status::Failed, Some(c), None),
        (None, s) => (Status::Killed, None, s.or(Some(forwarded))),
    };
    let sum = match history::read_summary(&summary) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            eprintln!("kiln schedule {name}: {e}");
            Default::default()
        }
    };
    history::append(
        state_dir,
        &Run {
            name: name.into(),
            status: run_status,
            queued,
            start: Some(start),
            end: Some(history::now()),
            duration_secs: Some((duration * 1000.0).round() / 1000.0),
            waited_secs: Some((waited * 1000.0).round() / 1000.0),
            exit: exit_code,
            signal,
            tag: sum.tag,
            images: sum.images,
            record: sum.record,
            args: verb.to_vec(),
            pid,
        },
    )?;
    history::clear_running(state_dir);
    drop(lock);
    Ok(match (exit_code, signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => exit::ERROR,
    })
}
