//! systemd units for a scheduled kiln run, rendered as text: a `.timer` (`OnCalendar=`,
//! `Persistent=`, `RandomizedDelaySec=`), the `.service` it starts (`Type=oneshot`, running
//! `kiln schedule exec NAME -- <verb>`, the wrapper that takes the lock and writes history), and,
//! when `--on-failure` is a command rather than a unit, an `-onfailure.service` that runs it.
//!
//! Scheduling is systemd's job (timers survive reboots, catch up with `Persistent=`, log to the
//! journal); kiln only writes the units. Pure functions on a `Schedule`, so the tests can run
//! `systemd-analyze verify` on exactly what `kiln schedule add` installs.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What overlapping runs do: wait for the running one to finish, or skip this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    Wait,
    Skip,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Wait => "wait",
            Overlap::Skip => "skip",
        }
    }
}

/// The systemd instance the units belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    User,
    System,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::System => "system",
        }
    }
}

/// `--on-failure`: a unit to start, or a shell command kiln wraps in a unit of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Unit(String),
    Command(String),
}

impl OnFailure {
    /// A word ending in a unit suffix with no whitespace is a unit; anything else a command.
    pub fn parse(s: &str) -> OnFailure {
        const SUFFIXES: [&str; 4] = [".service", ".target", ".socket", ".path"];
        let s = s.trim();
        if !s.contains(char::is_whitespace) && SUFFIXES.iter().any(|x| s.ends_with(x)) {
            OnFailure::Unit(s.to_string())
        } else {
            OnFailure::Command(s.to_string())
        }
    }
}

/// A scheduled run as `kiln schedule add` records it (`schedule.json` in its state folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub on_calendar: String,
    pub scope: Scope,
    pub overlap: Overlap,
    pub randomized_delay_secs: Option<u64>,
    pub persistent: bool,
    pub on_failure: Option<OnFailure>,
    /// The kiln verb and options (without `kiln`).
    pub args: Vec<String>,
    /// The kiln binary the service runs.
    pub kiln: PathBuf,
    /// Working directory of the runs (where `add` was run).
    pub workdir: PathBuf,
    /// The schedule's state folder (history, lock).
    pub state_dir: PathBuf,
    /// Kayobe/kiln settings from the environment at `add` time (paths only, never secrets).
    pub env: Vec<(String, String)>,
    /// Where the units were written.
    pub unit_dir: PathBuf,
    /// Whether `add` installed and enabled them (false with `--unit-dir`).
    pub installed: bool,
}

/// Environment variables a scheduled run carries over from `kiln schedule add` (they name
/// configuration; secrets such as `KILN_AGE_PASSPHRASE` are never written into a unit).
pub const CARRIED_ENV: [&str; 5] = [
    "KAYOBE_CONFIG_PATH",
    "KAYOBE_ENVIRONMENT",
    "KAYOBE_DATA_FILES_PATH",
    "KILN_AGE_IDENTITY",
    "KILN_AGENT_BINARY",
];

/// A schedule name is part of unit names and paths: letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schedule name `{name}`: use 1-64 letters, digits, `-`, `_` or `.` (it becomes part of unit names), not starting with `.` or `-`"
        ))
    }
}

impl Schedule {
    pub fn unit_base(&self) -> String {
        unit_base(&self.name)
    }
    pub fn service_name(&self) -> String {
        format!("{}.service", self.unit_base())
    }
    pub fn timer_name(&self) -> String {
        format!("{}.timer", self.unit_base())
    }
    pub fn on_failure_name(&self) -> String {
        format!("{}-onfailure.service", self.unit_base())
    }
    /// The units to write, by file name.
    pub fn units(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (self.timer_name(), render_timer(self)),
            (self.service_name(), render_service(self)),
        ];
        if let Some(OnFailure::Command(cmd)) = &self.on_failure {
            v.push((self.on_failure_name(), render_on_failure(self, cmd)));
        }
        v
    }
    pub fn unit_paths(&self) -> Vec<PathBuf> {
        self.units()
            .into_iter()
            .map(|(n, _)| self.unit_dir.join(n))
            .collect()
    }
}

pub fn unit_base(name: &str) -> String {
    format!("kiln-schedule-{name}")
}

/// One word of an `ExecStart=` line, quoted the way systemd.service(5) reads it: `%` and `$`
/// doubled (no specifier or variable expansion), double quotes around anything with whitespace,
/// quotes, backslashes or `;` (which would end the command), and an empty word as `""`.
pub fn exec_word(w: &str) -> String {
    let escaped = w.replace('%', "%%").replace('$', "$$");
    let needs_quotes = w.is_empty()
        || w.chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if needs_quotes {
        format!(
            "\"{}\"",
            escaped
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    } else {
        escaped
    }
}

fn exec_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| exec_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value for `Description=`, `WorkingDirectory=`: one line, `%` doubled (specifiers are
/// expanded there; `$` is not special).
fn one_line(s: &str) -> String {
    s.replace('\n', " ").replace('%', "%%")
}

/// One `Environment=` assignment: `%` doubled, quoted when it has whitespace or quotes
/// (systemd.exec(5): no variable expansion there, so `$` stays as it is).
pub fn env_word(s: &str) -> String {
    let v = one_line(s);
    if v.chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        v
    }
}

/// The command line a run executes, as the service's ExecStart.
pub fn exec_start(s: &Schedule) -> Vec<String> {
    let mut w = vec![
        s.kiln.display().to_string(),
        "schedule".into(),
        "exec".into(),
        "--overlap".into(),
        s.overlap.as_str().into(),
        "--state-dir".into(),
        s.state_dir.display().to_string(),
        s.name.clone(),
        "--".into(),
    ];
    w.extend(s.args.iter().cloned());
    w
}

pub fn render_service(s: &Schedule) -> String {
    let mut u = format!(
        "# Written by `kiln schedule add {name}`. kiln schedule show|run-now|history|remove {name}\n\
         [Unit]\nDescription=kiln schedule {name}: kiln {args}\n",
        name = s.name,
        args = one_line(&s.args.join(" "))
    );
    match &s.on_failure {
        Some(OnFailure::Unit(unit)) => u.push_str(&format!("OnFailure={unit}\n")),
        Some(OnFailure::Command(_)) => u.push_str(&format!("OnFailure={}\n", s.on_failure_name())),
        None => {}
    }
    u.push_str("\n[Service]\nType=oneshot\n");
    u.push_str(&format!(
        "WorkingDirectory={}\n",
        one_line(&s.workdir.display().to_string())
    ));
    for (k, v) in &s.env {
        u.push_str(&format!("Environment={}\n", env_word(&format!("{k}={v}"))));
    }
    u.push_str(
        "# The wrapper takes the schedule's lock (flock(2) on its lock file, released by the kernel\n\
         # when the process ends, however it ends), runs the verb and appends a history line.\n",
    );
    u.push_str(&format!("ExecStart={}\n", exec_line(&exec_start(s))));
    u
}

pub fn render_timer(s: &Schedule) -> String {
    let mut u = format!(
        "# Written by `kiln schedule add {name}`.\n[Unit]\nDescription=kiln schedule {name} ({cal})\n\n\
         [Timer]\nOnCalendar={cal}\nUnit={service}\nPersistent={persistent}\n",
        name = s.name,
        cal = one_line(&s.on_calendar),
        service = s.service_name(),
        persistent = s.persistent,
    );
    if let Some(d) = s.randomized_delay_secs {
        u.push_str(&format!("RandomizedDelaySec={d}\n"));
    }
    u.push_str("\n[Install]\nWantedBy=timers.target\n");
    u
}

/// The unit `OnFailure=` starts for a command: it runs the command with `/bin/sh -c`, with the
/// failed unit's name and result in systemd's `$MONITOR_*` variables and the schedule's history
/// file in `$KILN_SCHEDULE_HISTORY`.
pub fn render_on_failure(s: &Schedule, cmd: &str) -> String {
    format!(
        "# Written by `kiln schedule add {name} --on-failure ...`: started when {service} fails.\n\
         [Unit]\nDescription=kiln schedule {name}: on-failure hook\n\n\
         [Service]\nType=oneshot\nWorkingDirectory={wd}\nEnvironment={env}\nExecStart={exec}\n",
        name = s.name,
        service = s.service_name(),
        wd = one_line(&s.workdir.display().to_string()),
        env = env_word(&format!(
            "KILN_SCHEDULE_HISTORY={}",
            super::history::history_path(&s.state_dir).display()
        )),
        exec = exec_line(&["/bin/sh".into(), "-c".into(), cmd.to_string()]),
    )
}

/// Default folders: where units go and where a schedule keeps its state.
pub fn default_unit_dir(scope: Scope, home: &Path) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from("/etc/systemd/system"),
        Scope::User => std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"))
            .join("systemd/user"),
    }
}

pub fn default_state_root(scope: Scope, home: &Path) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from("/var/lib/kiln/schedule"),
        Scope::User => std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".local/state"))
            .join("kiln/schedule"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words_are_quoted_for_systemd() {
        assert_eq!(exec_word("plain"), "plain");
        assert_eq!(exec_word("a b"), "\"a b\"");
        assert_eq!(exec_word("50%"), "50%%");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(exec_word(""), "\"\"");
        assert_eq!(exec_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(exec_word("a;b"), "\"a;b\"");
    }

    #[test]
    fn on_failure_unit_or_command() {
        assert_eq!(
            OnFailure::parse("notify@x.service"),
            OnFailure::Unit("notify@x.service".into())
        );
        assert_eq!(
            OnFailure::parse("mail -s failed ops"),
            OnFailure::Command("mail -s failed ops".into())
        );
    }

    #[test]
    fn names() {
        assert!(check_name("nightly-2024.1").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }
}
