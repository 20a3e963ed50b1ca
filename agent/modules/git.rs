//! `git`: a checkout of a repository at a branch, tag or commit on the host.
//!
//! Everything runs on the host with the `git` command, as Ansible's module does. The query step
//! reads the checkout (`rev-parse HEAD`, the remote URL, local modifications) and asks the remote
//! what `version` is now (`git ls-remote --symref`, one call: branches, tags, the default branch);
//! when the checkout is already there, nothing is fetched and the result is `changed: false`.
//! Otherwise apply clones (`--depth`/`--branch` as Ansible passes them) or fetches, then switches
//! to the version: a branch is checked out and reset to `<remote>/<branch>`, a tag or commit is
//! checked out detached; `HEAD` is the branch the checkout is on (the remote's default branch for a
//! new or detached checkout), as in Ansible. `before`/`after` are the commits, `remote_url_changed` says whether the
//! remote's URL was replaced. Check mode reports what would change from the ls-remote answer.

use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::transport::ExecRequest;
use crate::value::Value;
use serde::Deserialize;

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "name", deserialize_with = "args::string")]
    repo: String,
    #[serde(deserialize_with = "args::string")]
    dest: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    version: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    force: bool,
    #[serde(default, deserialize_with = "args::opt_int")]
    depth: Option<i64>,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    update: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    clone: bool,
    #[serde(default, deserialize_with = "args::bool")]
    bare: bool,
    #[serde(default, deserialize_with = "args::bool")]
    accept_hostkey: bool,
    #[serde(default, deserialize_with = "args::bool")]
    accept_newhostkey: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    remote: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    executable: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    key_file: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    ssh_opts: Option<String>,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    recursive: bool,
    #[serde(default, deserialize_with = "args::bool")]
    single_branch: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    umask: Option<String>,
}

pub struct Git;

/// What `version` names on the remote.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Branch(String, String),
    Tag(String, String),
    /// A commit id (or anything else git can check out), not checked against the remote.
    Commit(String),
}

impl Target {
    pub fn sha(&self) -> &str {
        match self {
            Target::Branch(_, s) | Target::Tag(_, s) | Target::Commit(s) => s,
        }
    }
}

/// Resolve `version` against `git ls-remote --symref` output. `HEAD` is the remote's default
/// branch; a tag's peeled commit (`^{}`) wins over the tag object.
pub fn resolve(listing: &str, version: &str) -> Option<Target> {
    let mut head_branch = None;
    let mut refs: Vec<(&str, &str)> = vec![];
    for line in listing.lines() {
        if let Some(rest) = line.strip_prefix("ref: ") {
            let mut it = rest.split('\t');
            if let (Some(r), Some("HEAD")) = (it.next(), it.next()) {
                head_branch = r.strip_prefix("refs/heads/").map(str::to_string);
            }
            continue;
        }
        if let Some((sha, name)) = line.split_once('\t') {
            refs.push((sha.trim(), name.trim()));
        }
    }
    let find = |n: &str| {
        refs.iter()
            .find(|(_, r)| *r == n)
            .map(|(s, _)| s.to_string())
    };
    if version == "HEAD" {
        let sha = find("HEAD")?;
        return Some(match head_branch {
            Some(b) => Target::Branch(b, sha),
            None => Target::Commit(sha),
        });
    }
    if let Some(sha) = find(&format!("refs/heads/{version}")) {
        return Some(Target::Branch(version.to_string(), sha));
    }
    if let Some(sha) =
        find(&format!("refs/tags/{version}^{{}}")).or_else(|| find(&format!("refs/tags/{version}")))
    {
        return Some(Target::Tag(version.to_string(), sha));
    }
    if !version.is_empty() && version.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(Target::Commit(version.to_string()));
    }
    None
}

struct Runner<'a> {
    ctx: &'a Ctx,
    a: &'a Args,
}

impl Runner<'_> {
    async fn git(
        &self,
        cwd: Option<&str>,
        args: &[&str],
    ) -> Result<crate::transport::ExecResult, ModuleError> {
        let exe = self.a.executable.clone().unwrap_or_else(|| "git".into());
        let mut argv = vec![exe];
        argv.extend(args.iter().map(|s| s.to_string()));
        if let Some(u) = &self.a.umask {
            let mut v = vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("umask {u} && exec \"$@\""),
                "sh".into(),
            ];
            v.extend(argv);
            argv = v;
        }
        let mut env = self.ctx.env.clone();
        let mut ssh = vec!["ssh".to_string()];
        if self.a.accept_hostkey {
            ssh.push("-o StrictHostKeyChecking=no".into());
        } else if self.a.accept_newhostkey {
            ssh.push("-o StrictHostKeyChecking=accept-new".into());
        }
        if let Some(k) = &self.a.key_file {
            ssh.push(format!("-i {}", shell_words::quote(k)));
            ssh.push("-o IdentitiesOnly=yes".into());
        }
        if let Some(o) = &self.a.ssh_opts {
            ssh.push(o.clone());
        }
        if ssh.len() > 1 {
            env.push(("GIT_SSH_COMMAND".into(), ssh.join(" ")));
        }
        env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
        let r = self
            .ctx
            .exec(ExecRequest {
                argv,
                env,
                cwd: cwd.map(str::to_string),
                ..Default::default()
            })
            .await;
        match r {
            Ok(r) => Ok(r),
            Err(crate::transport::TransportError::Remote { msg, .. }) => Err(ModuleError::Failed(
                format!("cannot run git on the host (install git): {msg}"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Run git; a non-zero exit is a failure with git's message.
    async fn ok(&self, cwd: Option<&str>, args: &[&str]) -> Result<String, ModuleError> {
        let r = self.git(cwd, args).await?;
        if r.rc != 0 {
            return Err(ModuleError::Failed(format!(
                "Failed to run git {}: rc={} stdout={} stderr={}",
                args.join(" "),
                r.rc,
                r.stdout_text().trim(),
                r.stderr_text().trim()
            )));
        }
        Ok(r.stdout_text().trim().to_string())
    }

    async fn remote_target(
        &self,
        url_or_remote: &str,
        cwd: Option<&str>,
        version: &str,
    ) -> Result<Target, ModuleError> {
        let listing = self
            .ok(cwd, &["ls-remote", "--symref", url_or_remote])
            .await?;
        resolve(&listing, version).ok_or_else(|| {
            ModuleError::Failed(format!("Cannot find version {version} in {url_or_remote}"))
        })
    }
}

pub enum Plan {
    Clone {
        a: Args,
        target: Target,
    },
    Update {
        a: Args,
        before: String,
        target: Target,
        local_mods: bool,
        set_url: bool,
    },
}

fn outcome(changed: bool, before: Option<String>, after: Option<String>) -> Outcome {
    let v = |s: Option<String>| s.map(Value::Str).unwrap_or(Value::Null);
    Outcome {
        changed,
        ..Outcome::ok()
    }
    .with("before", v(before))
    .with("after", v(after))
}

fn strip_url(u: &str) -> &str {
    u.trim_end_matches('/').trim_end_matches(".git")
}

impl Module for Git {
    const NAMES: &'static [&'static str] = &["git", "ansible.builtin.git"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let g = Runner { ctx, a: &a };
        let version = a.version.clone().unwrap_or_else(|| "HEAD".into());
        let remote = a.remote.clone().unwrap_or_else(|| "origin".into());
        let gitconfig = if a.bare {
            format!("{}/config", a.dest)
        } else {
            format!("{}/.git/config", a.dest)
        };
        if !ctx.session.stat(&gitconfig, true, false).await?.exists {
            let target = match g.remote_target(&a.repo, None, &version).await {
                Ok(t) => t,
                Err(ModuleError::Failed(m)) => return Ok(Query::Done(Outcome::failed(m))),
                Err(e) => return Err(e),
            };
            let preview = outcome(true, None, Some(target.sha().to_string()));
            if !a.clone {
                return Ok(Query::Done(preview));
            }
            return Ok(Query::Change {
                plan: Plan::Clone { a, target },
                preview,
            });
        }
        let dest = a.dest.as_str();
        let before = g.ok(Some(dest), &["rev-parse", "HEAD"]).await.ok();
        if !a.update {
            return Ok(Query::Done(outcome(false, before.clone(), before)));
        }
        let local_mods = if a.bare {
            false
        } else {
            let st = g.git(Some(dest), &["status", "--porcelain"]).await?;
            st.stdout_text()
                .lines()
                .any(|l| !l.starts_with("??") && !l.trim().is_empty())
        };
        if local_mods && !a.force {
            let mut o = outcome(false, before.clone(), None);
            o.failed = true;
            o.msg = Some(format!(
                "Local modifications exist in the destination: {dest} (force=no)."
            ));
            return Ok(Query::Done(o));
        }
        let url = g
            .git(
                Some(dest),
                &["config", "--get", &format!("remote.{remote}.url")],
            )
            .await?;
        let url = url.stdout_text().trim().to_string();
        let set_url = url.is_empty() || strip_url(&url) != strip_url(&a.repo);
        // Ansible's `HEAD` on a checkout that is on a branch means that branch, not the remote's default
        let current = if a.bare {
            String::new()
        } else {
            g.git(Some(dest), &["symbolic-ref", "-q", "--short", "HEAD"])
                .await?
                .stdout_text()
                .trim()
                .to_string()
        };
        let version = if version == "HEAD" && !current.is_empty() {
            current.clone()
        } else {
            version
        };
        let target = match g.remote_target(&a.repo, Some(dest), &version).await {
            Ok(t) => t,
            Err(ModuleError::Failed(m)) => return Ok(Query::Done(Outcome::failed(m))),
            Err(e) => return Err(e),
        };
        let at = before
            .as_deref()
            .is_some_and(|b| b.starts_with(target.sha()) || target.sha() == b);
        // a branch must also be what is checked out, not only the same commit
        let on_branch = match &target {
            Target::Branch(b, _) if !a.bare => &current == b,
            _ => true,
        };
        let o = outcome(
            !at || set_url || local_mods,
            before.clone(),
            Some(target.sha().to_string()),
        )
        .with("remote_url_changed", Value::Bool(set_url));
        if !o.changed && on_branch {
            return Ok(Query::Done(o));
        }
        let before = before.unwrap_or_default();
        Ok(Query::Change {
            plan: Plan::Update {
                a,
                before,
                target,
                local_mods,
                set_url,
            },
            preview: o,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        match p {
            Plan::Clone { a, target } => {
                let g = Runner { ctx, a: &a };
                let remote = a.remote.clone().unwrap_or_else(|| "origin".into());
                let mut cmd: Vec<String> = vec!["clone".into()];
                if a.bare {
                    cmd.push("--bare".into());
                } else {
                    cmd.extend(["--origin".into(), remote.clone()]);
                }
                if let Some(d) = a.depth {
                    match &target {
                        Target::Branch(b, _) | Target::Tag(b, _) => cmd.extend([
                            "--depth".into(),
                            d.to_string(),
                            "--branch".into(),
                            b.clone(),
                        ]),
                        Target::Commit(_) if a.version.as_deref().unwrap_or("HEAD") == "HEAD" => {
                            cmd.extend(["--depth".into(), d.to_string()])
                        }
                        Target::Commit(_) => {
                            tracing::warn!("git: depth is ignored when version is a commit")
                        }
                    }
                }
                if a.single_branch {
                    cmd.push("--single-branch".into());
                }
                cmd.extend([a.repo.clone(), a.dest.clone()]);
                let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
                if let Err(ModuleError::Failed(m)) = g.ok(None, &argv).await {
                    return Ok(Outcome::failed(m).with("before", Value::Null));
                }
                if !a.bare {
                    if let Err(ModuleError::Failed(m)) = switch(&g, &a, &remote, &target).await {
                        return Ok(Outcome::failed(m));
                    }
                }
                let after = g.ok(Some(&a.dest), &["rev-parse", "HEAD"]).await.ok();
                Ok(outcome(true, None, after))
            }
            Plan::Update {
                a,
                before,
                target,
                local_mods,
                set_url,
            } => {
                let g = Runner { ctx, a: &a };
                let remote = a.remote.clone().unwrap_or_else(|| "origin".into());
                let dest = a.dest.as_str();
                let r = async {
                    if local_mods {
                        g.ok(Some(dest), &["reset", "--hard", "HEAD"]).await?;
                    }
                    if set_url {
                        let add = g
                            .git(Some(dest), &["remote", "set-url", &remote, &a.repo])
                            .await?;
                        if add.rc != 0 {
                            g.ok(Some(dest), &["remote", "add", &remote, &a.repo])
                                .await?;
                        }
                    }
                    let spec = if a.bare {
                        "+refs/heads/*:refs/heads/*".to_string()
                    } else {
                        format!("+refs/heads/*:refs/remotes/{remote}/*")
                    };
                    let mut fetch: Vec<String> =
                        vec!["fetch".into(), "--tags".into(), "--force".into()];
                    if let Some(d) = a.depth {
                        fetch.extend(["--depth".into(), d.to_string()]);
                    }
                    fetch.extend([remote.clone(), spec]);
                    let argv: Vec<&str> = fetch.iter().map(String::as_str).collect();
                    g.ok(Some(dest), &argv).await?;
                    if !a.bare {
                        switch(&g, &a, &remote, &target).await?;
                    }
                    g.ok(Some(dest), &["rev-parse", "HEAD"]).await
                }
                .await;
                match r {
                    Ok(after) => {
                        let changed = after != before || local_mods || set_url;
                        let mut o = outcome(changed, Some(before), Some(after))
                            .with("remote_url_changed", Value::Bool(set_url));
                        if local_mods {
                            o.msg = Some(format!(
                                "Local modifications exist in the destination: {dest}"
                            ));
                        }
                        Ok(o)
                    }
                    Err(ModuleError::Failed(m)) => {
                        Ok(Outcome::failed(m).with("before", Value::Str(before)))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// Check out the version as Ansible's `switch_version` does.
async fn switch(
    g: &Runner<'_>,
    a: &Args,
    remote: &str,
    target: &Target,
) -> Result<(), ModuleError> {
    let dest = a.dest.as_str();
    match target {
        Target::Branch(b, _) => {
            let has_local =
                g.git(
                    Some(dest),
                    &[
                        "show-ref",
                        "--verify",
                        "--quiet",
                        &format!("refs/heads/{b}"),
                    ],
                )
                .await?
                .rc == 0;
            if has_local {
                g.ok(Some(dest), &["checkout", "--force", b]).await?;
            } else {
                g.ok(
                    Some(dest),
                    &["checkout", "--force", "-B", b, &format!("{remote}/{b}")],
                )
                .await?;
            }
            g.ok(
                Some(dest),
                &["reset", "--hard", &format!("{remote}/{b}"), "--"],
            )
            .await?;
        }
        Target::Tag(t, _) => {
            g.ok(Some(dest), &["checkout", "--force", t]).await?;
        }
        Target::Commit(c) => {
            g.ok(Some(dest), &["checkout", "--force", c]).await?;
        }
    }
    if a.recursive
        && g.ctx
            .session
            .stat(&format!("{dest}/.gitmodules"), true, false)
            .await?
            .exists
    {
        g.ok(
            Some(dest),
            &["submodule", "update", "--init", "--recursive"],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_resolve_against_ls_remote() {
        let l = "ref: refs/heads/main\tHEAD\n\
                 aaaa\tHEAD\n\
                 aaaa\trefs/heads/main\n\
                 bbbb\trefs/heads/dev\n\
                 cccc\trefs/tags/v1\n\
                 dddd\trefs/tags/v1^{}\n\
                 eeee\trefs/tags/light\n";
        assert_eq!(
            resolve(l, "HEAD"),
            Some(Target::Branch("main".into(), "aaaa".into()))
        );
        assert_eq!(
            resolve(l, "dev"),
            Some(Target::Branch("dev".into(), "bbbb".into()))
        );
        assert_eq!(
            resolve(l, "v1"),
            Some(Target::Tag("v1".into(), "dddd".into()))
        );
        assert_eq!(
            resolve(l, "light"),
            Some(Target::Tag("light".into(), "eeee".into()))
        );
        assert_eq!(resolve(l, "abc123"), Some(Target::Commit("abc123".into())));
        assert_eq!(resolve(l, "nope"), None);
        assert_eq!(strip_url("file:///r/x.git/"), "file:///r/x");
    }
}
