//! `authorized_key`: SSH public keys are (or are not) in a user's `authorized_keys` file.
//!
//! The file is edited as text by a pure function ([`edit`]): keys are matched by their base64
//! blob, so a key that is already there with the same options and comment changes nothing, one
//! with other options is rewritten in place, and lines that are not keys (comments) stay. With
//! `exclusive` the file holds exactly the given keys. `~user/.ssh` is created 0700 and the file
//! 0600, both owned by the user (`manage_dir`). Result keys are Ansible's: `user`, `key`, `keyfile`,
//! `path`, `state`, `exclusive`, `manage_dir`, `key_options`, `comment`, `follow`, `validate_certs`.

use super::support::args;
use super::support::sysutil;
use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::transport::WriteRequest;
use crate::value::Value;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    user: String,
    #[serde(deserialize_with = "args::string")]
    key: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    path: Option<String>,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    manage_dir: bool,
    #[serde(default)]
    state: args::PresentAbsent,
    #[serde(default, deserialize_with = "args::opt_string")]
    key_options: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    exclusive: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    validate_certs: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    comment: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    follow: bool,
}

/// One parsed key line.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLine {
    pub options: Option<String>,
    pub kind: String,
    pub blob: String,
    pub comment: Option<String>,
}

impl KeyLine {
    fn render(&self) -> String {
        let mut parts = vec![];
        if let Some(o) = &self.options {
            parts.push(o.clone());
        }
        parts.push(self.kind.clone());
        parts.push(self.blob.clone());
        if let Some(c) = &self.comment {
            parts.push(c.clone());
        }
        parts.join(" ")
    }
}

fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-") || t.starts_with("ecdsa-sha2-") || t.starts_with("sk-")
}

/// Split on whitespace outside double quotes (options may hold `command="a b"`).
fn tokens(line: &str) -> Vec<(usize, usize)> {
    let mut out = vec![];
    let (mut start, mut quoted) = (None, false);
    for (i, c) in line.char_indices() {
        match (c, start) {
            ('"', _) => {
                quoted = !quoted;
                if start.is_none() {
                    start = Some(i);
                }
            }
            (c, Some(s)) if c.is_whitespace() && !quoted => {
                out.push((s, i));
                start = None;
            }
            (c, None) if !c.is_whitespace() => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

/// Parse one `authorized_keys` line; `None` for comments, blank lines and anything unparsable.
pub fn parse_key(line: &str) -> Option<KeyLine> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let toks = tokens(line);
    let at = toks.iter().position(|(s, e)| is_key_type(&line[*s..*e]))?;
    let (ks, ke) = toks[at];
    let (bs, be) = *toks.get(at + 1)?;
    let options = (at > 0).then(|| line[..toks[at - 1].1].trim().to_string());
    let comment = toks.get(at + 2).map(|(s, _)| line[*s..].trim().to_string());
    Some(KeyLine {
        options,
        kind: line[ks..ke].into(),
        blob: line[bs..be].into(),
        comment,
    })
}

/// The file's new text: `keys` added (or replaced) for `present`, removed for `absent`;
/// with `exclusive` only `keys` remain.
pub fn edit(text: &str, keys: &[KeyLine], present: bool, exclusive: bool) -> String {
    let mut lines: Vec<String> = vec![];
    for l in text.lines() {
        match parse_key(l) {
            Some(k) => {
                if let Some(new) = keys.iter().find(|n| n.blob == k.blob) {
                    if present
                        && !lines
                            .iter()
                            .any(|x| parse_key(x).is_some_and(|p| p.blob == k.blob))
                    {
                        lines.push(if *new == k {
                            l.to_string()
                        } else {
                            new.render()
                        });
                    }
                } else if !exclusive {
                    lines.push(l.to_string());
                }
            }
            None if exclusive => {}
            None => lines.push(l.to_string()),
        }
    }
    if present {
        for k in keys {
            if !lines
                .iter()
                .any(|x| parse_key(x).is_some_and(|p| p.blob == k.blob))
            {
                lines.push(k.render());
            }
        }
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

pub struct AuthorizedKey;

pub struct Plan {
    file: String,
    dir: String,
    new_text: String,
    file_exists: bool,
    dir_exists: bool,
    args: Args,
}

fn report(a: &Args, keyfile: &str, changed: bool) -> Outcome {
    let opt = |v: &Option<String>| v.clone().map(Value::Str).unwrap_or(Value::Null);
    let o = if changed {
        Outcome::changed()
    } else {
        Outcome::ok()
    };
    o.with("user", a.user.clone())
        .with("key", a.key.clone())
        .with("keyfile", keyfile.to_string())
        .with("path", opt(&a.path))
        .with("state", a.state.as_str())
        .with("exclusive", a.exclusive)
        .with("manage_dir", a.manage_dir)
        .with("key_options", opt(&a.key_options))
        .with("comment", opt(&a.comment))
        .with("follow", a.follow)
        .with("validate_certs", a.validate_certs)
}

impl Module for AuthorizedKey {
    const NAMES: &'static [&'static str] = &[
        "authorized_key",
        "ansible.posix.authorized_key",
        "ansible.builtin.authorized_key",
    ];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        a.state.present()?;
        if a.key.starts_with("http://") || a.key.starts_with("https://") {
            return Ok(Query::Done(Outcome::failed(
                "authorized_key: fetching keys from a URL is not supported by kiln; use a lookup on the controller",
            )));
        }
        let Some(pw) = sysutil::passwd(ctx, &a.user).await? else {
            return Ok(Query::Done(Outcome::failed(format!(
                "Failed to lookup user {}: user not found",
                a.user
            ))));
        };
        let file = match &a.path {
            Some(p) if p.starts_with("~/") => {
                format!("{}/{}", pw.home.trim_end_matches('/'), &p[2..])
            }
            Some(p) => p.clone(),
            None => format!("{}/.ssh/authorized_keys", pw.home.trim_end_matches('/')),
        };
        let mut keys = vec![];
        for l in a
            .key
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        {
            let Some(mut k) = parse_key(l) else {
                return Ok(Query::Done(Outcome::failed(format!(
                    "invalid key specified: {l}"
                ))));
            };
            if let Some(o) = &a.key_options {
                k.options = Some(o.clone());
            }
            if let Some(c) = &a.comment {
                k.comment = Some(c.clone());
            }
            keys.push(k);
        }
        let before = sysutil::read_opt(ctx, &file).await?;
        let file_exists = before.is_some();
        let before = before.unwrap_or_default();
        let new_text = edit(
            &before,
            &keys,
            a.state == args::PresentAbsent::Present,
            a.exclusive,
        );
        let dir = sysutil::dirname(&file).to_string();
        let dir_exists = ctx.session.stat(&dir, true, false).await?.exists;
        if new_text == before {
            return Ok(Query::Done(report(&a, &file, false)));
        }
        let preview = report(&a, &file, true).with_diff(Diff {
            before_header: Some(file.clone()),
            after_header: Some(file.clone()),
            before,
            after: new_text.clone(),
        });
        Ok(Query::Change {
            plan: Plan {
                file,
                dir,
                new_text,
                file_exists,
                dir_exists,
                args: a,
            },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let a = &p.args;
        if !p.dir_exists {
            if !a.manage_dir {
                return Ok(Outcome::failed(format!(
                    "{} does not exist and manage_dir is false",
                    p.dir
                )));
            }
            ctx.session.mkdir(&p.dir, Some(0o700)).await?;
            sysutil::run_ok(
                ctx,
                &["chown".to_string(), format!("{}:", a.user), p.dir.clone()],
            )
            .await?;
        }
        let new = !p.file_exists;
        ctx.session
            .write_file(WriteRequest {
                path: p.file.clone(),
                content: p.new_text.into_bytes(),
                mode: new.then_some(0o600),
                owner: new.then(|| a.user.clone()),
                group: None,
                check: false,
            })
            .await?;
        if new {
            sysutil::run_ok(
                ctx,
                &["chown".to_string(), format!("{}:", a.user), p.file.clone()],
            )
            .await?;
        }
        Ok(report(a, &p.file, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOne one@x";
    const K2: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQTwo two@y";

    #[test]
    fn parses_keys_with_options() {
        let k = parse_key(r#"command="echo a b",no-pty ssh-ed25519 AAAAx c d"#).unwrap();
        assert_eq!(k.options.as_deref(), Some(r#"command="echo a b",no-pty"#));
        assert_eq!((k.kind.as_str(), k.blob.as_str()), ("ssh-ed25519", "AAAAx"));
        assert_eq!(k.comment.as_deref(), Some("c d"));
        assert!(parse_key("# comment").is_none());
        assert!(parse_key("garbage").is_none());
    }

    #[test]
    fn edits_files() {
        let k1 = parse_key(K1).unwrap();
        let k2 = parse_key(K2).unwrap();
        let t = edit("", std::slice::from_ref(&k1), true, false);
        assert_eq!(t, format!("{K1}\n"));
        assert_eq!(
            edit(&t, std::slice::from_ref(&k1), true, false),
            t,
            "idempotent"
        );
        let t2 = edit(
            &format!("# keep\n{t}"),
            std::slice::from_ref(&k2),
            true,
            false,
        );
        assert_eq!(t2, format!("# keep\n{K1}\n{K2}\n"));
        assert_eq!(
            edit(&t2, std::slice::from_ref(&k2), true, true),
            format!("{K2}\n")
        );
        assert_eq!(
            edit(&t2, std::slice::from_ref(&k1), false, false),
            format!("# keep\n{K2}\n")
        );
        let mut k1o = k1.clone();
        k1o.options = Some("no-pty".into());
        assert_eq!(edit(&t, &[k1o], true, false), format!("no-pty {K1}\n"));
    }
}
