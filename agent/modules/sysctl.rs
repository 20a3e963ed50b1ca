//! `sysctl` (ansible.posix.sysctl): a kernel parameter's value in a sysctl file and, optionally,
//! in the running kernel.
//!
//! Query reads the file and `/proc/sys/<name>`; the file is rewritten by a pure function
//! ([`fix_lines`]) exactly as ansible.posix does it (every `key = value` line normalised to
//! `key=value`, duplicates dropped, comments kept), and `changed` follows its rules: a file change,
//! or with `reload` a running value that differs, or with `sysctl_set` a running value that
//! differs. Apply runs `sysctl -w` (`sysctl_set`) and `sysctl -p FILE` (`reload`). Like Ansible,
//! the result has only `changed`.

use super::support::args;
use super::support::sysutil::{self, argv};
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::transport::WriteRequest;
use serde::{Deserialize, Deserializer};

args::choices! {
    /// `state:` of `sysctl`, in the order of Ansible's choices error.
    pub enum State for "state" default Present {
        Present = "present",
        Absent = "absent",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "key", deserialize_with = "args::string")]
    name: String,
    #[serde(default, alias = "val", deserialize_with = "value")]
    value: Option<String>,
    #[serde(default)]
    state: State,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    reload: bool,
    #[serde(default, deserialize_with = "args::bool")]
    sysctl_set: bool,
    #[serde(default, deserialize_with = "args::bool")]
    ignoreerrors: bool,
    #[serde(default = "default_file", deserialize_with = "args::string")]
    sysctl_file: String,
}

/// Ansible's `_parse_value`: booleans (and yes/no/on/off strings) become 1/0; text is stripped.
fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(b) => Some(if b { "1" } else { "0" }.into()),
        serde_json::Value::String(s) => Some(match s.to_ascii_lowercase().as_str() {
            "yes" | "on" | "true" | "y" | "t" => "1".into(),
            "no" | "off" | "false" | "n" | "f" => "0".into(),
            _ => s.trim().to_string(),
        }),
        other => Some(other.to_string()),
    })
}

fn default_file() -> String {
    "/etc/sysctl.conf".into()
}

/// The value of `name` in a sysctl file's text (the last assignment wins, as `sysctl -p`).
pub fn file_value(text: &str, name: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == name {
                found = Some(v.trim().to_string());
            }
        }
    }
    found
}

/// The file's new text: every assignment as `key=value` (first occurrence only), `name` set to
/// `value` (or removed when `value` is `None`), appended when missing.
pub fn fix_lines(text: &str, name: &str, value: Option<&str>) -> String {
    let mut out = vec![];
    let mut seen: Vec<String> = vec![];
    for line in text.lines().map(str::trim) {
        let Some((k, v)) = (!line.starts_with(['#', ';']))
            .then(|| line.split_once('='))
            .flatten()
        else {
            out.push(line.to_string());
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if seen.iter().any(|s| s == k) {
            continue;
        }
        seen.push(k.to_string());
        if k == name {
            if let Some(val) = value {
                out.push(format!("{k}={val}"));
            }
        } else {
            out.push(format!("{k}={v}"));
        }
    }
    if let (false, Some(val)) = (seen.iter().any(|s| s == name), value) {
        out.push(format!("{name}={val}"));
    }
    if out.is_empty() {
        return String::new();
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// Whitespace-separated words equal (Ansible's `_values_is_equal`).
fn same_words(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// `/proc/sys` path of a key: dots are separators, slashes stand for dots (sysctl(8)).
pub fn proc_path(name: &str) -> String {
    let p: String = name
        .chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect();
    format!("/proc/sys/{p}")
}

/// `sysctl [-e] -w name=value` (no shell: the value is one argument).
pub fn set_argv(name: &str, value: &str, ignoreerrors: bool) -> Vec<String> {
    let mut v = argv(&["sysctl"]);
    if ignoreerrors {
        v.push("-e".into());
    }
    v.extend(["-w".into(), format!("{name}={value}")]);
    v
}

pub fn reload_argv(file: &str, ignoreerrors: bool) -> Vec<String> {
    let mut v = argv(&["sysctl"]);
    if ignoreerrors {
        v.push("-e".into());
    }
    v.extend(["-p".into(), file.into()]);
    v
}

pub struct Sysctl;

pub struct Plan {
    new_text: Option<String>,
    set_proc: bool,
    reload: bool,
    args: Args,
}

/// sysctl exits 0 for some failures; Ansible looks at stderr too.
fn stderr_failed(err: &str) -> bool {
    err.lines().any(|l| {
        l.starts_with("sysctl: setting key \"")
            && (l.ends_with("Invalid argument") || l.ends_with("Read-only file system"))
    })
}

impl Module for Sysctl {
    const NAMES: &'static [&'static str] =
        &["sysctl", "ansible.posix.sysctl", "ansible.builtin.sysctl"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, mut a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        a.name = a.name.trim().to_string();
        if a.name.is_empty() {
            return Err(ModuleError::Args("name cannot be blank".into()));
        }
        let present = a.state.clone().checked()? == State::Present;
        if present && a.value.as_deref().unwrap_or("").is_empty() {
            return Err(ModuleError::Args(if a.value.is_none() {
                "state is present but all of the following are missing: value".into()
            } else {
                "value cannot be blank".into()
            }));
        }
        let want = a.value.clone().unwrap_or_default();
        let proc_value = sysutil::read_opt(ctx, &proc_path(&a.name))
            .await
            .ok()
            .flatten()
            .map(|s| s.trim().to_string());
        let before = sysutil::read_opt(ctx, &a.sysctl_file)
            .await?
            .unwrap_or_default();
        let in_file = file_value(&before, &a.name);
        let mut changed = false;
        let mut write = false;
        let mut set_proc = false;
        match (&in_file, present) {
            (None, true) => (changed, write) = (true, true),
            (None, false) => {}
            (Some(v), false) if !v.is_empty() => (changed, write) = (true, true),
            (Some(_), false) => {}
            (Some(v), true) if *v != want => (changed, write) = (true, true),
            (Some(_), true) => {
                if a.reload && !proc_value.as_deref().is_some_and(|p| same_words(p, &want)) {
                    changed = true;
                }
            }
        }
        if a.sysctl_set && present {
            match &proc_value {
                None => changed = true,
                Some(p) if !same_words(p, &want) => (changed, set_proc) = (true, true),
                _ => {}
            }
        }
        if !changed {
            return Ok(Query::Done(Outcome::ok()));
        }
        let new_text = write.then(|| fix_lines(&before, &a.name, present.then_some(want.as_str())));
        let mut preview = Outcome::changed();
        if let Some(t) = &new_text {
            preview = preview.with_diff(Diff {
                before_header: Some(a.sysctl_file.clone()),
                after_header: Some(a.sysctl_file.clone()),
                before,
                after: t.clone(),
            });
        }
        let reload = a.reload;
        Ok(Query::Change {
            plan: Plan {
                new_text,
                set_proc,
                reload,
                args: a,
            },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let a = &p.args;
        let env = [("LANG", "C"), ("LC_ALL", "C"), ("LC_MESSAGES", "C")];
        if p.set_proc {
            let cmd = set_argv(&a.name, a.value.as_deref().unwrap_or(""), a.ignoreerrors);
            let r = sysutil::run_env(ctx, &cmd, &env).await?;
            if r.rc != 0 || stderr_failed(&r.stderr_text()) {
                return Ok(Outcome::failed(format!(
                    "setting {} failed: {}{}",
                    a.name,
                    r.stdout_text(),
                    r.stderr_text()
                )));
            }
        }
        if let Some(t) = p.new_text {
            ctx.session
                .write_file(WriteRequest {
                    path: a.sysctl_file.clone(),
                    content: t.into_bytes(),
                    ..Default::default()
                })
                .await?;
        }
        if p.reload {
            let r =
                sysutil::run_env(ctx, &reload_argv(&a.sysctl_file, a.ignoreerrors), &env).await?;
            if r.rc != 0 || stderr_failed(&r.stderr_text()) {
                return Ok(Outcome::failed(format!(
                    "Failed to reload sysctl: {}{}",
                    r.stdout_text(),
                    r.stderr_text()
                )));
            }
        }
        Ok(Outcome::changed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_sysctl_conf() {
        let t = "# comment\nvm.swappiness = 10\n\nnet.ipv4.ip_forward=0\nvm.swappiness=20\n";
        assert_eq!(file_value(t, "vm.swappiness").as_deref(), Some("20"));
        assert_eq!(file_value(t, "kernel.x"), None);
        assert_eq!(
            fix_lines(t, "net.ipv4.ip_forward", Some("1")),
            "# comment\nvm.swappiness=10\n\nnet.ipv4.ip_forward=1\n"
        );
        assert_eq!(
            fix_lines(t, "kernel.pid_max", Some("65536")),
            "# comment\nvm.swappiness=10\n\nnet.ipv4.ip_forward=0\nkernel.pid_max=65536\n"
        );
        assert_eq!(
            fix_lines(t, "vm.swappiness", None),
            "# comment\n\nnet.ipv4.ip_forward=0\n"
        );
        assert_eq!(fix_lines("", "a.b", Some("1")), "a.b=1\n");
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            proc_path("net.ipv4.conf.eth0/1.forwarding"),
            "/proc/sys/net/ipv4/conf/eth0.1/forwarding"
        );
        assert_eq!(
            set_argv("a.b", "1 2", true),
            ["sysctl", "-e", "-w", "a.b=1 2"]
        );
        assert_eq!(
            reload_argv("/etc/sysctl.conf", false),
            ["sysctl", "-p", "/etc/sysctl.conf"]
        );
        assert!(same_words("4096\t16384  4194304\n", "4096 16384 4194304"));
        assert!(stderr_failed(
            "sysctl: setting key \"a.b\": Invalid argument"
        ));
    }
}
