//! `user`: a local account exists with the wanted uid, primary group, supplementary groups,
//! shell, home, comment and password hash, or does not exist.
//!
//! Query reads `getent passwd/group/shadow` and builds the one `useradd`, `usermod` or `userdel`
//! command line that closes the gap, with the same flags Ansible's module picks (so `-N` when a
//! group named like the user already exists, `-a -G` for `append`); apply runs it. A second run
//! finds nothing to change. Result keys are Ansible's: `name`, `state`, `uid`, `group` (the gid),
//! `comment`, `home`, `shell`, `groups` (when given), `system`/`create_home` after a creation,
//! `append`/`move_home` after a modification, `force`/`remove` after a removal.

use super::support::args;
use super::support::sysutil::{self, argv, Passwd};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "user", deserialize_with = "args::string")]
    name: String,
    #[serde(default)]
    state: args::PresentAbsent,
    #[serde(default, deserialize_with = "args::opt_int")]
    uid: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_string")]
    group: Option<String>,
    #[serde(default, deserialize_with = "opt_list")]
    groups: Option<Vec<String>>,
    #[serde(default, deserialize_with = "args::bool")]
    append: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    shell: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    home: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    comment: Option<String>,
    #[serde(
        default = "crate::modules::support::args::yes",
        alias = "createhome",
        deserialize_with = "args::bool"
    )]
    create_home: bool,
    #[serde(default, deserialize_with = "args::bool")]
    move_home: bool,
    #[serde(default, deserialize_with = "args::bool")]
    system: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    password: Option<String>,
    #[serde(default, deserialize_with = "args::opt_bool")]
    password_lock: Option<bool>,
    #[serde(default = "always", deserialize_with = "args::string")]
    update_password: String,
    #[serde(default, deserialize_with = "args::bool")]
    remove: bool,
    #[serde(default, deserialize_with = "args::bool")]
    force: bool,
    #[serde(default, deserialize_with = "args::bool")]
    non_unique: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    skeleton: Option<String>,
}

fn opt_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    args::string_list(d).map(Some)
}
fn always() -> String {
    "always".into()
}

pub struct User;

pub struct Plan {
    cmd: Vec<String>,
    kind: Kind,
    args: Args,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Add,
    Mod,
    Del,
}

/// What the host has for the user: passwd entry, shadow hash, supplementary groups.
pub struct Current {
    pub pw: Passwd,
    pub hash: String,
    pub member_of: Vec<String>,
}

/// The `useradd` command line, as Ansible builds it. `user_group_exists`: a group named like the
/// user exists already (then `-N`, or useradd fails on USERGROUPS_ENAB).
pub fn useradd_argv(a: &Args, user_group_exists: bool) -> Vec<String> {
    let mut c = argv(&["useradd"]);
    if let Some(u) = a.uid {
        c.extend(["-u".into(), u.to_string()]);
        if a.non_unique {
            c.push("-o".into());
        }
    }
    if let Some(g) = &a.group {
        c.extend(["-g".into(), g.clone()]);
    } else if user_group_exists {
        c.push("-N".into());
    }
    if let Some(gs) = &a.groups {
        if !gs.is_empty() {
            c.extend(["-G".into(), gs.join(",")]);
        }
    }
    if let Some(x) = &a.comment {
        c.extend(["-c".into(), x.clone()]);
    }
    if let Some(h) = &a.home {
        c.extend(["-d".into(), h.clone()]);
    }
    if let Some(s) = &a.shell {
        c.extend(["-s".into(), s.clone()]);
    }
    if let Some(p) = &a.password {
        let p = if a.password_lock == Some(true) {
            format!("!{p}")
        } else {
            p.clone()
        };
        c.extend(["-p".into(), p]);
    }
    if a.create_home {
        c.push("-m".into());
        if let Some(k) = &a.skeleton {
            c.extend(["-k".into(), k.clone()]);
        }
    } else {
        c.push("-M".into());
    }
    if a.system {
        c.push("-r".into());
    }
    c.push(a.name.clone());
    c
}

/// The `usermod` command line that brings `cur` to `a`, or `None` when nothing differs.
/// `primary_gid`: the gid of `a.group` when given.
pub fn usermod_argv(a: &Args, cur: &Current, primary_gid: Option<i64>) -> Option<Vec<String>> {
    let mut c = argv(&["usermod"]);
    if let Some(u) = a.uid.filter(|u| *u != cur.pw.uid) {
        c.extend(["-u".into(), u.to_string()]);
        if a.non_unique {
            c.push("-o".into());
        }
    }
    if let Some(g) = primary_gid.filter(|g| *g != cur.pw.gid) {
        c.extend(["-g".into(), g.to_string()]);
    }
    if let Some(want) = &a.groups {
        let have: std::collections::BTreeSet<&str> =
            cur.member_of.iter().map(String::as_str).collect();
        let wanted: std::collections::BTreeSet<&str> = want.iter().map(String::as_str).collect();
        let need = if want.is_empty() {
            !have.is_empty() && !a.append
        } else if a.append {
            !wanted.is_subset(&have)
        } else {
            have != wanted
        };
        if need {
            if a.append {
                c.push("-a".into());
            }
            c.extend(["-G".into(), want.join(",")]);
        }
    }
    if let Some(x) = a.comment.as_ref().filter(|x| **x != cur.pw.comment) {
        c.extend(["-c".into(), x.clone()]);
    }
    if let Some(h) = a.home.as_ref().filter(|h| **h != cur.pw.home) {
        c.extend(["-d".into(), h.clone()]);
        if a.move_home {
            c.push("-m".into());
        }
    }
    if let Some(s) = a.shell.as_ref().filter(|s| **s != cur.pw.shell) {
        c.extend(["-s".into(), s.clone()]);
    }
    match a.password_lock {
        Some(true) if !cur.hash.starts_with('!') => c.push("-L".into()),
        Some(false) if cur.hash.starts_with('!') => c.push("-U".into()),
        _ => {}
    }
    if let Some(p) = &a.password {
        if a.update_password == "always"
            && cur.hash.trim_start_matches('!') != p.trim_start_matches('!')
        {
            c.retain(|x| x != "-L" && x != "-U");
            let p = if a.password_lock == Some(true) {
                format!("!{p}")
            } else {
                p.clone()
            };
            c.extend(["-p".into(), p]);
        }
    }
    if c.len() == 1 {
        return None;
    }
    c.push(a.name.clone());
    Some(c)
}

async fn current(ctx: &Ctx, name: &str) -> Result<Option<Current>, ModuleError> {
    let Some(pw) = sysutil::passwd(ctx, name).await? else {
        return Ok(None);
    };
    let sh = sysutil::run(ctx, &argv(&["getent", "shadow", name])).await?;
    let hash = sh
        .stdout_text()
        .lines()
        .next()
        .and_then(|l| l.split(':').nth(1).map(String::from))
        .unwrap_or_default();
    let member_of = sysutil::all_groups(ctx)
        .await?
        .into_iter()
        .filter(|g| g.members.iter().any(|m| m == name))
        .map(|g| g.name)
        .collect();
    Ok(Some(Current {
        pw,
        hash,
        member_of,
    }))
}

async fn report(
    ctx: &Ctx,
    a: &Args,
    kind: Option<Kind>,
    changed: bool,
) -> Result<Outcome, ModuleError> {
    let mut o = if changed {
        Outcome::changed()
    } else {
        Outcome::ok()
    }
    .with("name", a.name.clone())
    .with("state", a.state.as_str());
    match kind {
        Some(Kind::Del) => {
            o = o.with("force", a.force).with("remove", a.remove);
        }
        Some(Kind::Add) => {
            o = o
                .with("system", a.system)
                .with("create_home", a.create_home);
        }
        Some(Kind::Mod) | None if a.state == args::PresentAbsent::Present => {
            o = o.with("append", a.append).with("move_home", a.move_home);
        }
        _ => {}
    }
    if a.password.is_some() && a.state == args::PresentAbsent::Present {
        o = o.with("password", "NOT_LOGGING_PASSWORD");
    }
    if a.state == args::PresentAbsent::Present {
        if let Some(pw) = sysutil::passwd(ctx, &a.name).await? {
            o = o
                .with("uid", Value::Int(pw.uid))
                .with("group", Value::Int(pw.gid))
                .with("comment", pw.comment)
                .with("home", pw.home)
                .with("shell", pw.shell);
            if let Some(g) = &a.groups {
                o = o.with("groups", g.join(","));
            }
        }
    }
    Ok(o)
}

impl Module for User {
    const NAMES: &'static [&'static str] = &["user", "ansible.builtin.user"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        a.state.present()?;
        if !matches!(a.update_password.as_str(), "always" | "on_create") {
            return Err(ModuleError::Args(format!(
                "value of update_password must be one of: always, on_create, got: {}",
                a.update_password
            )));
        }
        let cur = current(ctx, &a.name).await?;
        if a.state == args::PresentAbsent::Absent {
            if cur.is_none() {
                return Ok(Query::Done(report(ctx, &a, None, false).await?));
            }
            let mut c = argv(&["userdel"]);
            if a.force {
                c.push("-f".into());
            }
            if a.remove {
                c.push("-r".into());
            }
            c.push(a.name.clone());
            return Ok(Query::Change {
                plan: Plan {
                    cmd: c,
                    kind: Kind::Del,
                    args: a,
                },
                preview: Outcome::changed(),
            });
        }
        // groups named in arguments must exist (Ansible fails before changing anything)
        let mut primary_gid = None;
        if let Some(g) = &a.group {
            match sysutil::group(ctx, g).await? {
                Some(e) => primary_gid = Some(e.gid),
                None => {
                    return Ok(Query::Done(Outcome::failed(format!(
                        "Group {g} does not exist"
                    ))))
                }
            }
        }
        for g in a.groups.iter().flatten() {
            if sysutil::group(ctx, g).await?.is_none() {
                return Ok(Query::Done(Outcome::failed(format!(
                    "Group {g} does not exist"
                ))));
            }
        }
        match cur {
            None => {
                let user_group = a.group.is_none() && sysutil::group(ctx, &a.name).await?.is_some();
                let cmd = useradd_argv(&a, user_group);
                Ok(Query::Change {
                    plan: Plan {
                        cmd,
                        kind: Kind::Add,
                        args: a,
                    },
                    preview: Outcome::changed(),
                })
            }
            Some(cur) => match usermod_argv(&a, &cur, primary_gid) {
                None => Ok(Query::Done(report(ctx, &a, None, false).await?)),
                Some(cmd) => {
                    let preview = report(ctx, &a, Some(Kind::Mod), true).await?;
                    Ok(Query::Change {
                        plan: Plan {
                            cmd,
                            kind: Kind::Mod,
                            args: a,
                        },
                        preview,
                    })
                }
            },
        }
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        // useradd cannot create missing parents of the home directory
        if p.kind == Kind::Add && p.args.create_home {
            if let Some(h) = &p.args.home {
                let parent = sysutil::dirname(h);
                if !parent.is_empty() {
                    ctx.session.mkdir(parent, Some(0o755)).await?;
                }
            }
        }
        let r = sysutil::run(ctx, &p.cmd).await?;
        if r.rc != 0 {
            return Ok(Outcome::failed(r.stderr_text().trim().to_string())
                .with("name", p.args.name.clone())
                .with("rc", Value::Int(r.rc as i64)));
        }
        let mut o = report(ctx, &p.args, Some(p.kind), true).await?;
        let (out, err) = (r.stdout_text(), r.stderr_text());
        if !out.is_empty() {
            o = o.with("stdout", out);
        }
        if !err.is_empty() {
            o = o.with("stderr", err);
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(y: &str) -> Args {
        let v = crate::yaml::load(y, "t").unwrap();
        args::decode("user", v.as_map().unwrap()).unwrap()
    }

    #[test]
    fn useradd_line() {
        let a = args("name: bob\nuid: 1500\ngroups: [sudo, adm]\nshell: /bin/bash\nsystem: yes");
        assert_eq!(
            useradd_argv(&a, true),
            [
                "useradd",
                "-u",
                "1500",
                "-N",
                "-G",
                "sudo,adm",
                "-s",
                "/bin/bash",
                "-m",
                "-r",
                "bob"
            ]
        );
        let a = args("name: bob\ncreate_home: no\ngroup: users");
        assert_eq!(
            useradd_argv(&a, true),
            ["useradd", "-g", "users", "-M", "bob"]
        );
    }

    #[test]
    fn usermod_line() {
        let cur = Current {
            pw: Passwd::parse("bob:x:1500:1500::/home/bob:/bin/sh").unwrap(),
            hash: "!".into(),
            member_of: vec!["adm".into()],
        };
        let a = args("name: bob\nuid: 1500\nshell: /bin/sh");
        assert_eq!(usermod_argv(&a, &cur, None), None);
        let a = args("name: bob\ngroups: [adm, sudo]\nappend: yes\nshell: /bin/bash");
        assert_eq!(
            usermod_argv(&a, &cur, None).unwrap(),
            ["usermod", "-a", "-G", "adm,sudo", "-s", "/bin/bash", "bob"]
        );
        let a = args("name: bob\ngroups: [adm]\nappend: yes");
        assert_eq!(usermod_argv(&a, &cur, None), None);
        let a = args("name: bob\ngroups: []");
        assert_eq!(
            usermod_argv(&a, &cur, None).unwrap(),
            ["usermod", "-G", "", "bob"]
        );
        let a = args("name: bob\npassword: '$6$x'\nupdate_password: on_create");
        assert_eq!(usermod_argv(&a, &cur, None), None);
        let a = args("name: bob\npassword: '$6$x'");
        assert_eq!(
            usermod_argv(&a, &cur, None).unwrap(),
            ["usermod", "-p", "$6$x", "bob"]
        );
    }
}
