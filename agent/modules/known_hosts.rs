//! `known_hosts`: a host's public key is (or is not) in an SSH `known_hosts` file.
//!
//! The file is edited as text by a pure function ([`edit`]): a line belongs to a host when its
//! host field (comma-separated names, `[name]:port`) names it; with `state: present` a line with
//! the same key type is replaced when its key differs, and the key is appended when the host has
//! none of that type; `state: absent` removes every line of the host (as `ssh-keygen -R`).
//! Hashed entries (`|1|...`) are left alone, and `hash_host: true` is refused with a message.
//! Result keys are Ansible's: `name`, `key`, `path`, `hash_host`, and the file's attributes
//! (`state: file`, `mode`, `owner`, `group`, `uid`, `gid`, `size`).

use super::support::args;
use super::support::sysutil;
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::transport::WriteRequest;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "host", deserialize_with = "args::string")]
    name: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    key: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    path: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    hash_host: bool,
    #[serde(default)]
    state: args::PresentAbsent,
}

/// Whether a known_hosts host field names `host` (`name`, `name,ip`, `[name]:port`).
fn names_host(field: &str, host: &str) -> bool {
    field.split(',').any(|h| h == host)
}

/// (hosts field, key type, key) of a known_hosts line, skipping `@cert-authority` style markers.
fn split_line(line: &str) -> Option<(&str, &str, &str)> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let mut it = t.split_whitespace();
    let mut hosts = it.next()?;
    if hosts.starts_with('@') {
        hosts = it.next()?;
    }
    Some((hosts, it.next()?, it.next()?))
}

/// The file's new text for `host`: with `key` (a whole known_hosts line) present, or all of the
/// host's lines removed when `key` is `None`.
pub fn edit(text: &str, host: &str, key: Option<&str>) -> String {
    let want = key.and_then(split_line);
    let mut out: Vec<String> = vec![];
    let mut have = false;
    for line in text.lines() {
        match split_line(line) {
            Some((h, t, k)) if names_host(h, host) => match want {
                None => {}
                Some((_, wt, _)) if t == wt && have => {}
                Some((_, wt, wk)) if t == wt => {
                    out.push(if k == wk {
                        line.to_string()
                    } else {
                        key.unwrap_or_default().trim().to_string()
                    });
                    have = true;
                }
                Some(_) => out.push(line.to_string()),
            },
            _ => out.push(line.to_string()),
        }
    }
    if let (false, Some(k)) = (have, key) {
        out.push(k.trim().to_string());
    }
    if out.is_empty() {
        return String::new();
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

pub struct KnownHosts;

pub struct Plan {
    path: String,
    text: String,
    report: Outcome,
    mkdir: Option<String>,
}

impl Module for KnownHosts {
    const NAMES: &'static [&'static str] = &["known_hosts", "ansible.builtin.known_hosts"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let name = a.name.to_lowercase();
        if a.hash_host {
            return Ok(Query::Done(Outcome::failed(
                "known_hosts: hash_host is not supported by kiln yet; use hash_host: false",
            )));
        }
        let present = a.state.present()?;
        if present && a.key.is_none() {
            return Err(ModuleError::Args(
                "state is present but all of the following are missing: key".into(),
            ));
        }
        if let Some(k) = &a.key {
            match split_line(k) {
                Some((h, _, _)) if names_host(&h.to_lowercase(), &name) => {}
                Some(_) => {
                    return Ok(Query::Done(Outcome::failed(format!(
                        "Host parameter ({}) does not match the host field in the supplied key",
                        a.name
                    ))))
                }
                None => {
                    return Ok(Query::Done(Outcome::failed(format!(
                        "Invalid key specified: {k}"
                    ))))
                }
            }
        }
        let path = match &a.path {
            Some(p) if !p.starts_with("~") => p.clone(),
            p => {
                let home = sysutil::passwd(ctx, &ctx.session.user)
                    .await?
                    .map(|pw| pw.home)
                    .unwrap_or_else(|| "/root".into());
                let rest = p.as_deref().map(|p| {
                    p.trim_start_matches('~')
                        .trim_start_matches('/')
                        .to_string()
                });
                format!(
                    "{}/{}",
                    home.trim_end_matches('/'),
                    rest.unwrap_or_else(|| ".ssh/known_hosts".into())
                )
            }
        };
        let before = sysutil::read_opt(ctx, &path).await?.unwrap_or_default();
        let key = if present { a.key.as_deref() } else { None };
        let text = edit(&before, &name, key);
        let report = Outcome::ok()
            .with("name", name.clone())
            .with(
                "key",
                a.key
                    .clone()
                    .map(crate::value::Value::Str)
                    .unwrap_or(crate::value::Value::Null),
            )
            .with("path", path.clone())
            .with("hash_host", a.hash_host);
        if text == before {
            return Ok(Query::Done(path_info(ctx, report, &path).await?));
        }
        let mut report = report.with_diff(Diff {
            before_header: Some(path.clone()),
            after_header: Some(path.clone()),
            before,
            after: text.clone(),
        });
        report.changed = true;
        let dir = sysutil::dirname(&path).to_string();
        let mkdir = (!ctx.session.stat(&dir, true, false).await?.exists).then_some(dir);
        Ok(Query::Change {
            plan: Plan {
                path,
                text,
                report: report.clone(),
                mkdir,
            },
            preview: report,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        if let Some(d) = &p.mkdir {
            ctx.session.mkdir(d, Some(0o700)).await?;
        }
        ctx.session
            .write_file(WriteRequest {
                path: p.path.clone(),
                content: p.text.into_bytes(),
                ..Default::default()
            })
            .await?;
        path_info(ctx, p.report, &p.path).await
    }
}

/// Ansible adds the file's attributes to the result (`state` is `file` or `absent`, `mode`,
/// `owner`, `group`, `uid`, `gid`, `size`).
async fn path_info(ctx: &Ctx, o: Outcome, path: &str) -> Result<Outcome, ModuleError> {
    use crate::value::Value;
    let st = ctx.session.stat(path, true, false).await?;
    if !st.exists {
        return Ok(o.with("state", "absent"));
    }
    Ok(o.with(
        "state",
        if st.kind == "directory" {
            "directory"
        } else {
            "file"
        },
    )
    .with("mode", format!("{:04o}", st.mode & 0o7777))
    .with(
        "owner",
        st.owner.clone().map(Value::Str).unwrap_or(Value::Null),
    )
    .with(
        "group",
        st.group.clone().map(Value::Str).unwrap_or(Value::Null),
    )
    .with("uid", Value::Int(st.uid as i64))
    .with("gid", Value::Int(st.gid as i64))
    .with("size", Value::Int(st.size as i64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_known_hosts() {
        let k1 = "git.example ssh-ed25519 AAAAone";
        let k1b = "git.example ssh-ed25519 AAAAother";
        let rsa = "git.example,10.0.0.1 ssh-rsa AAAArsa";
        let t = edit("", "git.example", Some(k1));
        assert_eq!(t, format!("{k1}\n"));
        assert_eq!(edit(&t, "git.example", Some(k1)), t);
        let t2 = edit(
            &format!("other ssh-rsa X\n{rsa}\n{k1}\n"),
            "git.example",
            Some(k1b),
        );
        assert_eq!(t2, format!("other ssh-rsa X\n{rsa}\n{k1b}\n"));
        assert_eq!(edit(&t2, "git.example", None), "other ssh-rsa X\n");
        assert_eq!(edit("[h]:2222 ssh-rsa X\n", "[h]:2222", None), "");
        assert_eq!(
            edit("|1|abc|def ssh-rsa X\n", "h", None),
            "|1|abc|def ssh-rsa X\n"
        );
    }
}
