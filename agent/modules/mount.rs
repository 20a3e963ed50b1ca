//! `mount` (ansible.posix.mount): an fstab entry and the mount it describes.
//!
//! The fstab is edited by pure functions ([`set_mount`], [`unset_mount`]) that follow
//! ansible.posix line for line: an entry is found by its mount point (escaped as fstab escapes
//! spaces), rewritten as `src path fstype opts dump passno` only when a field differs, appended
//! when missing; comments and malformed lines stay. Whether a path is mounted comes from
//! `/proc/self/mounts`. Mounting goes through the fstab entry (`mount [-T FSTAB] PATH`), as
//! Ansible does. The result is Ansible's: `changed` plus `name`, `src`, `fstype`, `opts`, `dump`,
//! `passno`, `fstab`, `boot`, `backup_file`, `warnings`.

use super::support::args;
use super::support::sysutil::{self, argv};
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::transport::WriteRequest;
use crate::value::Value;
use serde::Deserialize;

args::choices! {
    /// `state:` of `mount`.
    pub enum State for "state" {
        Absent = "absent",
        AbsentFromFstab = "absent_from_fstab",
        Mounted = "mounted",
        Present = "present",
        Unmounted = "unmounted",
        Remounted = "remounted",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "name", deserialize_with = "args::string")]
    path: String,
    state: State,
    #[serde(default, deserialize_with = "args::opt_string")]
    src: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    fstype: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    opts: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    dump: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    passno: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    fstab: Option<String>,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    boot: bool,
    #[serde(default, deserialize_with = "args::bool")]
    backup: bool,
    #[serde(default, deserialize_with = "args::bool")]
    opts_no_log: bool,
}

/// One wanted fstab entry (fields already as they go in the file, before escaping).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub src: String,
    pub name: String,
    pub fstype: String,
    pub opts: String,
    pub dump: String,
    pub passno: String,
}

/// fstab's escapes for a field (ansible.posix escapes `\`, space and `&`).
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('&', "\\046")
}

/// The fields of an fstab line that counts as an entry (4 to 6 fields), with dump/passno
/// defaulting to 0; `None` for comments, blank and malformed lines.
fn fields(line: &str) -> Option<[String; 6]> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let f: Vec<&str> = t.split_whitespace().collect();
    if !(4..=6).contains(&f.len()) {
        return None;
    }
    let g = |i: usize| {
        f.get(i)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "0".into())
    };
    Some([g(0), g(1), g(2), g(3), g(4), g(5)])
}

fn is_other(fl: &[String; 6], name: &str, src: Option<&str>) -> bool {
    fl[1] != name || (src.is_some_and(|s| fl[1] == "none" && fl[2] == "swap" && fl[0] != s))
}

fn lines_of(text: &str) -> Vec<String> {
    text.split_inclusive('\n')
        .map(|l| {
            if l.ends_with('\n') {
                l.to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// The fstab with `e` present: (new text, changed).
pub fn set_mount(text: &str, e: &Entry) -> (String, bool) {
    let esc = Entry {
        src: escape(&e.src),
        name: escape(&e.name),
        fstype: escape(&e.fstype),
        opts: escape(&e.opts),
        dump: escape(&e.dump),
        passno: escape(&e.passno),
    };
    let render = |x: &Entry| {
        format!(
            "{} {} {} {} {} {}\n",
            x.src, x.name, x.fstype, x.opts, x.dump, x.passno
        )
    };
    let (mut out, mut exists, mut changed) = (String::new(), false, false);
    for line in lines_of(text) {
        let Some(fl) = fields(&line) else {
            out.push_str(&line);
            continue;
        };
        if is_other(&fl, &esc.name, Some(&e.src)) {
            out.push_str(&line);
            continue;
        }
        exists = true;
        let cur = [&fl[0], &fl[2], &fl[3], &fl[4], &fl[5]];
        let want = [&esc.src, &esc.fstype, &esc.opts, &esc.dump, &esc.passno];
        if cur != want {
            changed = true;
            out.push_str(&render(&esc));
        } else {
            out.push_str(&line);
        }
    }
    if !exists {
        out.push_str(&render(&esc));
        changed = true;
    }
    (out, changed)
}

/// The fstab without the entry for `name`: (new text, changed).
pub fn unset_mount(text: &str, name: &str, src: Option<&str>) -> (String, bool) {
    let name = escape(name);
    let (mut out, mut changed) = (String::new(), false);
    for line in lines_of(text) {
        match fields(&line) {
            Some(fl) if !is_other(&fl, &name, src) => changed = true,
            _ => out.push_str(&line),
        }
    }
    (out, changed)
}

/// Whether `path` is a mount point in a `/proc/self/mounts` text (octal escapes decoded).
pub fn is_mounted(mounts: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    mounts.lines().any(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|mp| unescape_octal(mp) == path)
    })
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `-T FSTAB` when not the default fstab.
fn fstab_args(fstab: &str) -> Vec<String> {
    if fstab != "/etc/fstab" {
        vec!["-T".into(), fstab.into()]
    } else {
        vec![]
    }
}

pub fn mount_argv(fstab: &str, name: &str) -> Vec<String> {
    let mut v = argv(&["mount"]);
    v.extend(fstab_args(fstab));
    v.push(name.into());
    v
}

pub fn remount_argv(fstab: &str, name: &str, opts: Option<&str>) -> Vec<String> {
    let mut v = argv(&["mount", "-o"]);
    v.push(match opts {
        Some(o) if o != "defaults" => format!("remount,{o}"),
        _ => "remount".into(),
    });
    v.extend(fstab_args(fstab));
    v.push(name.into());
    v
}

pub struct Mount;

#[derive(Default)]
pub struct Plan {
    new_fstab: Option<String>,
    /// The old fstab text, when `backup` asks for a copy.
    backup: Option<String>,
    mkdir: bool,
    mount: bool,
    remount: bool,
    umount: bool,
    rmdir: bool,
    fstab: String,
    name: String,
    /// `state: remounted`: remount with the options.
    remounted: bool,
    opts: String,
    report: Outcome,
}

impl Module for Mount {
    const NAMES: &'static [&'static str] =
        &["mount", "ansible.posix.mount", "ansible.builtin.mount"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let state = a.state.clone().checked()?;
        if matches!(state, State::Mounted | State::Present) {
            let missing: Vec<&str> = [("src", a.src.is_none()), ("fstype", a.fstype.is_none())]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(n, _)| *n)
                .collect();
            if !missing.is_empty() {
                return Err(ModuleError::Args(format!(
                    "state is {} but all of the following are missing: {}",
                    state.as_str(),
                    missing.join(", ")
                )));
            }
        }
        let name = a.path.clone();
        let fstab = a.fstab.clone().unwrap_or_else(|| "/etc/fstab".into());
        let mut warnings = vec![];
        let mut opts = a.opts.clone().unwrap_or_else(|| "defaults".into());
        let mut boot = "yes";
        let optv: Vec<&str> = opts.split(',').collect();
        if a.boot && optv.contains(&"noauto") {
            warnings.push(Value::Str(
                "Ignore the 'boot' due to 'opts' contains 'noauto'.".into(),
            ));
        } else if !a.boot {
            boot = "no";
            opts = format!("{opts},noauto");
        }
        let entry = Entry {
            src: a.src.clone().unwrap_or_default(),
            name: name.clone(),
            fstype: a.fstype.clone().unwrap_or_default(),
            opts: opts.clone(),
            dump: a.dump.clone().unwrap_or_else(|| "0".into()),
            passno: a.passno.clone().unwrap_or_else(|| "0".into()),
        };
        let mut report = Outcome::ok()
            .with("name", name.clone())
            .with(
                "opts",
                if a.opts_no_log {
                    "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER".to_string()
                } else {
                    opts.clone()
                },
            )
            .with("dump", entry.dump.clone())
            .with("passno", entry.passno.clone())
            .with("fstab", fstab.clone())
            .with("boot", boot)
            .with("warnings", Value::List(warnings))
            .with("backup_file", "");
        if let Some(s) = &a.src {
            report = report.with("src", s.clone());
        }
        if let Some(f) = &a.fstype {
            report = report.with("fstype", f.clone());
        }
        let before = sysutil::read_opt(ctx, &fstab).await?.unwrap_or_default();
        let mounts = sysutil::read_opt(ctx, "/proc/self/mounts")
            .await?
            .unwrap_or_default();
        let mounted = is_mounted(&mounts, &name);
        let mut p = Plan {
            fstab: fstab.clone(),
            name: name.clone(),
            remounted: state == State::Remounted,
            opts: opts.clone(),
            ..Default::default()
        };
        let mut changed = false;
        match state {
            State::Absent | State::AbsentFromFstab => {
                let (t, c) = unset_mount(&before, &name, a.src.as_deref());
                if c {
                    changed = true;
                    p.new_fstab = Some(t);
                    if state == State::Absent {
                        p.umount = mounted;
                        p.rmdir = ctx.session.stat(&name, false, false).await?.exists;
                    }
                }
            }
            State::Unmounted => {
                if mounted {
                    changed = true;
                    p.umount = true;
                }
            }
            State::Present => {
                let (t, c) = set_mount(&before, &entry);
                if c {
                    changed = true;
                    p.new_fstab = Some(t);
                }
            }
            State::Mounted => {
                p.mkdir = !ctx.session.stat(&name, true, false).await?.exists;
                let (t, c) = set_mount(&before, &entry);
                if c {
                    p.new_fstab = Some(t);
                }
                if mounted {
                    if c {
                        changed = true;
                        p.remount = true;
                    }
                } else {
                    changed = true;
                    p.mount = true;
                }
                changed |= c;
            }
            State::Remounted | State::Other(_) => {
                // remounted: always changes
                changed = true;
                p.remount = true;
            }
        }
        if !changed {
            return Ok(Query::Done(report));
        }
        report.changed = true;
        let mut preview = report.clone();
        if let Some(t) = &p.new_fstab {
            preview = preview.with_diff(Diff {
                before_header: Some(fstab.clone()),
                after_header: Some(fstab.clone()),
                before: before.clone(),
                after: t.clone(),
            });
        }
        if a.backup && p.new_fstab.is_some() {
            p.backup = Some(before);
        }
        p.report = report;
        Ok(Query::Change { plan: p, preview })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        if p.mkdir {
            ctx.session.mkdir(&p.name, None).await?;
        }
        let mut report = p.report.clone();
        if let Some(old) = &p.backup {
            // Ansible's backup name: FILE.PID.YYYY-MM-DD@HH:MM:SS~
            let dest = format!(
                "{}.{}.{}~",
                p.fstab,
                std::process::id(),
                chrono::Local::now().format("%Y-%m-%d@%H:%M:%S")
            );
            ctx.session
                .write_file(WriteRequest {
                    path: dest.clone(),
                    content: old.clone().into_bytes(),
                    ..Default::default()
                })
                .await?;
            report = report.with("backup_file", dest);
        }
        if let Some(t) = &p.new_fstab {
            ctx.session
                .write_file(WriteRequest {
                    path: p.fstab.clone(),
                    content: t.clone().into_bytes(),
                    ..Default::default()
                })
                .await?;
        }
        let fail = |what: &str, r: &crate::transport::ExecResult| {
            Outcome::failed(format!(
                "Error {what} {}: {}{}",
                p.name,
                r.stdout_text(),
                r.stderr_text()
            ))
        };
        if p.umount {
            let r = sysutil::run(ctx, &argv(&["umount", &p.name])).await?;
            if r.rc != 0 {
                return Ok(fail("unmounting", &r));
            }
        }
        if p.rmdir {
            let r = sysutil::run(ctx, &argv(&["rmdir", &p.name])).await?;
            if r.rc != 0 {
                return Ok(Outcome::failed(format!(
                    "Error rmdir {}: {}",
                    p.name,
                    r.stderr_text().trim()
                )));
            }
        }
        if p.mount {
            let r = sysutil::run(ctx, &mount_argv(&p.fstab, &p.name)).await?;
            if r.rc != 0 {
                return Ok(fail("mounting", &r));
            }
        }
        if p.remount {
            let opts = p.remounted.then_some(p.opts.as_str());
            let r = sysutil::run(ctx, &remount_argv(&p.fstab, &p.name, opts)).await?;
            if r.rc != 0 {
                if opts.is_some_and(|o| o != "defaults") {
                    return Ok(Outcome::failed("Options were specified with remounted, but the remount command failed. Failing in order to prevent an unexpected mount result. Try replacing this command with a \"state: unmounted\" followed by a \"state: mounted\" using the full desired mount options instead."));
                }
                let u = sysutil::run(ctx, &argv(&["umount", &p.name])).await?;
                let m = if u.rc == 0 {
                    sysutil::run(ctx, &mount_argv(&p.fstab, &p.name)).await?
                } else {
                    u
                };
                if m.rc != 0 {
                    return Ok(fail("mounting", &m));
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(src: &str, name: &str) -> Entry {
        Entry {
            src: src.into(),
            name: name.into(),
            fstype: "ext4".into(),
            opts: "defaults".into(),
            dump: "0".into(),
            passno: "0".into(),
        }
    }

    const FSTAB: &str = "# /etc/fstab\nUUID=1 / ext4 errors=remount-ro 0 1\n/dev/sdb1 /data ext4 defaults\nbroken line\n";

    #[test]
    fn set_and_unset() {
        // /data has 4 fields (dump/passno default 0): already as wanted
        let (t, c) = set_mount(FSTAB, &e("/dev/sdb1", "/data"));
        assert!(!c);
        assert_eq!(t, FSTAB);
        let (t, c) = set_mount(FSTAB, &e("/dev/sdc1", "/data"));
        assert!(c);
        assert!(t.contains("/dev/sdc1 /data ext4 defaults 0 0\n"), "{t}");
        assert!(t.contains("broken line\n") && t.starts_with("# /etc/fstab\n"));
        let (t, c) = set_mount(FSTAB, &e("/dev/sdd1", "/my data"));
        assert!(c);
        assert!(
            t.ends_with("/dev/sdd1 /my\\040data ext4 defaults 0 0\n"),
            "{t}"
        );
        let (t2, c) = set_mount(&t, &e("/dev/sdd1", "/my data"));
        assert!(!c);
        assert_eq!(t2, t);
        let (t3, c) = unset_mount(&t, "/my data", None);
        assert!(c);
        assert_eq!(t3, FSTAB);
        assert!(!unset_mount(FSTAB, "/nope", None).1);
        // no trailing newline on the last line
        let (t, _) = set_mount("a /b ext4 defaults 0 0", &e("x", "/c"));
        assert_eq!(t, "a /b ext4 defaults 0 0\nx /c ext4 defaults 0 0\n");
    }

    #[test]
    fn mounts_and_commands() {
        let m = "proc /proc proc rw 0 0\n/dev/x /my\\040data ext4 rw 0 0\n";
        assert!(is_mounted(m, "/my data"));
        assert!(is_mounted(m, "/proc/"));
        assert!(!is_mounted(m, "/data"));
        assert_eq!(mount_argv("/etc/fstab", "/d"), ["mount", "/d"]);
        assert_eq!(mount_argv("/tmp/f", "/d"), ["mount", "-T", "/tmp/f", "/d"]);
        assert_eq!(
            remount_argv("/etc/fstab", "/d", Some("ro")),
            ["mount", "-o", "remount,ro", "/d"]
        );
        assert_eq!(
            remount_argv("/etc/fstab", "/d", None),
            ["mount", "-o", "remount", "/d"]
        );
    }
}
