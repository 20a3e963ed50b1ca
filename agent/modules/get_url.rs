//! `get_url`: download a file to the host, idempotently.
//!
//! The download happens ON THE HOST with `curl` (see [`super::support::curl`]): the agent has no HTTP
//! client, a URL may be reachable only from the host, and large files then never cross the SSH
//! channel. Ansible's flow is kept:
//!
//! * `dest` exists, no `force`, and `checksum` matches it: nothing to download ("file already
//!   exists"), only `mode`/`owner`/`group` may change.
//! * otherwise the file is fetched into a private temporary directory, its sha1 is compared with
//!   `dest`'s, and it replaces `dest` only when different (`changed`); the `checksum`
//!   (`sha256:HEX`, or `sha1`/`sha224`/`sha384`/`sha512`/`md5`) is verified after the move.
//! * check mode sends a HEAD request and, as Ansible documents, compares `dest` with an empty file.
//!
//! As Ansible does, an existing `dest` (without `force` or `checksum`) is offered as
//! `If-Modified-Since` (curl's `time-cond` with the file's own mtime); a 304 ends the task unchanged.

use super::support::args::{self, with_file_common_args};
use super::support::curl::{self, HttpRequest};
use super::support::curl::{disposition_filename, url_filename};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;

with_file_common_args! {
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    url: String,
    #[serde(deserialize_with = "args::string")]
    dest: String,
    #[serde(default, deserialize_with = "args::bool")]
    force: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    checksum: Option<String>,
    #[serde(default)]
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, alias = "username", deserialize_with = "args::opt_string")]
    url_username: Option<String>,
    #[serde(default, alias = "password", deserialize_with = "args::opt_string")]
    url_password: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    force_basic_auth: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    validate_certs: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    use_proxy: bool,
    #[serde(default, deserialize_with = "args::opt_int")]
    timeout: Option<i64>,
    #[serde(default, deserialize_with = "args::opt_string")]
    http_agent: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    tmp_dest: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    ca_path: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    client_cert: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    client_key: Option<String>,
}
}

pub struct GetUrl;

/// `algorithm:hexdigest` as Ansible normalises it (non-word characters dropped, lower case).
pub fn parse_checksum(s: &str) -> Result<(String, String), String> {
    let (algo, sum) = s
        .split_once(':')
        .ok_or("The checksum parameter has to be in format <algorithm>:<checksum>")?;
    if sum.starts_with("http://") || sum.starts_with("https://") || sum.starts_with("ftp://") {
        return Err("get_url: a checksum URL is not supported; give the checksum itself".into());
    }
    let sum: String = sum
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_lowercase();
    if sum.is_empty() || !sum.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("The checksum format is invalid".into());
    }
    let algo = algo.to_lowercase();
    if !["md5", "sha1", "sha224", "sha256", "sha384", "sha512"].contains(&algo.as_str()) {
        return Err(format!("Could not hash file with algorithm {algo}"));
    }
    Ok((algo, sum))
}

/// A file's digest on the host (`<algo>sum`; sha256 from the agent's own stat).
async fn digest(ctx: &Ctx, path: &str, algo: &str) -> Result<Option<String>, ModuleError> {
    if algo == "sha256" {
        return Ok(ctx.session.stat(path, true, true).await?.checksum);
    }
    let r = ctx.run(&[&format!("{algo}sum"), path]).await?;
    Ok((r.rc == 0)
        .then(|| {
            r.stdout_text()
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .flatten())
}

/// What `mode`/`owner`/`group` would change on an existing file: (chmod bits, chown spec).
async fn attr_changes(
    a: &Args,
    exists_as: Option<&crate::transport::StatResult>,
) -> Result<(Option<u32>, Option<String>), ModuleError> {
    let (cur_mode, owner, group) = match exists_as {
        Some(s) => (s.mode & 0o7777, s.owner.clone(), s.group.clone()),
        None => (0o644, None, None),
    };
    let mode = match &a.mode {
        Some(m) => {
            let want = m.resolve(cur_mode, false).map_err(ModuleError::Args)?;
            (want != cur_mode || exists_as.is_none()).then_some(want)
        }
        None => None,
    };
    let differs = |want: &Option<String>, cur: &Option<String>, id: u32| match want {
        Some(w) => cur.as_deref() != Some(w.as_str()) && w != &id.to_string(),
        None => false,
    };
    let (uid, gid) = exists_as
        .map(|s| (s.uid, s.gid))
        .unwrap_or((u32::MAX, u32::MAX));
    let own = differs(&a.owner, &owner, uid) || exists_as.is_none() && a.owner.is_some();
    let grp = differs(&a.group, &group, gid) || exists_as.is_none() && a.group.is_some();
    let chown = match (own, grp) {
        (false, false) => None,
        _ => Some(format!(
            "{}{}",
            if own {
                a.owner.clone().unwrap_or_default()
            } else {
                String::new()
            },
            if grp {
                format!(":{}", a.group.clone().unwrap_or_default())
            } else {
                String::new()
            }
        )),
    };
    Ok((mode, chown))
}

async fn set_attrs(
    ctx: &Ctx,
    path: &str,
    mode: Option<u32>,
    chown: Option<String>,
) -> Result<Option<String>, ModuleError> {
    if let Some(c) = chown {
        let r = ctx.run(&["chown", &c, path]).await?;
        if r.rc != 0 {
            return Ok(Some(format!("chown failed: {}", r.stderr_text().trim())));
        }
    }
    if let Some(m) = mode {
        let r = ctx.run(&["chmod", &format!("{m:04o}"), path]).await?;
        if r.rc != 0 {
            return Ok(Some(format!("chmod failed: {}", r.stderr_text().trim())));
        }
    }
    Ok(None)
}

/// What apply does.
pub enum Plan {
    /// Only file attributes change.
    Attrs {
        /// The result so far (url, dest, msg).
        base: Outcome,
        dest: String,
        mode: Option<u32>,
        chown: Option<String>,
    },
    /// Move the downloaded file (in `tmpdir`) to `dest` (when `replace`), then attributes.
    Download {
        args: Box<Args>,
        dest: String,
        tmpdir: String,
        replace: bool,
        base: Outcome,
        checksum: Option<(String, String)>,
    },
}

async fn file_result(ctx: &Ctx, mut o: Outcome, dest: &str) -> Result<Outcome, ModuleError> {
    let st = ctx.session.stat(dest, true, false).await?;
    if st.exists {
        o = o
            .with("mode", Value::Str(format!("{:04o}", st.mode & 0o7777)))
            .with("uid", Value::Int(st.uid as i64))
            .with("gid", Value::Int(st.gid as i64))
            .with("owner", st.owner.map(Value::Str).unwrap_or(Value::Null))
            .with("group", st.group.map(Value::Str).unwrap_or(Value::Null))
            .with("size", Value::Int(st.size as i64))
            .with("state", Value::Str("file".into()));
    }
    Ok(o)
}

impl Module for GetUrl {
    const NAMES: &'static [&'static str] = &["get_url", "ansible.builtin.get_url"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let checksum = match a
            .checksum
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(parse_checksum)
        {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(m)) => return Ok(Query::Done(Outcome::failed(m))),
        };
        let base = Outcome::ok()
            .with("url", Value::Str(a.url.clone()))
            .with("dest", Value::Str(a.dest.clone()));
        let st = ctx.session.stat(&a.dest, true, false).await?;
        let dest_is_dir = st.exists && st.kind == "directory";
        if st.exists && !dest_is_dir && !a.force {
            if let Some((algo, sum)) = &checksum {
                if digest(ctx, &a.dest, algo).await?.as_deref() == Some(sum.as_str()) {
                    let (mode, chown) = attr_changes(&a, Some(&st)).await?;
                    if mode.is_none() && chown.is_none() {
                        let o =
                            file_result(ctx, base.with_msg("file already exists"), &a.dest).await?;
                        return Ok(Query::Done(o));
                    }
                    let dest = a.dest.clone();
                    let preview = Outcome {
                        changed: true,
                        ..base.with_msg("file already exists but file attributes changed")
                    };
                    return Ok(Query::Change {
                        plan: Plan::Attrs {
                            base: preview.clone(),
                            dest,
                            mode,
                            chown,
                        },
                        preview,
                    });
                }
            }
        }
        let tmpdir = curl::tempdir(ctx, a.tmp_dest.as_deref()).await?;
        let tmp = format!("{tmpdir}/download");
        let headers = a
            .headers
            .iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect();
        let req = HttpRequest {
            url: a.url.clone(),
            method: if ctx.check { "HEAD" } else { "GET" }.into(),
            headers,
            username: a.url_username.clone(),
            password: a.url_password.clone(),
            force_basic_auth: a.force_basic_auth,
            validate_certs: a.validate_certs,
            timeout: a.timeout.unwrap_or(10).max(0) as u64,
            follow_redirects: true,
            use_proxy: a.use_proxy,
            user_agent: a.http_agent.clone(),
            ca_path: a.ca_path.clone(),
            client_cert: a.client_cert.clone(),
            client_key: a.client_key.clone(),
            output: tmp.clone(),
            header_file: format!("{tmpdir}/headers"),
            // as Ansible: an existing dest is sent as If-Modified-Since unless forced (a checksum
            // that did not match forces)
            time_cond: (st.exists && !dest_is_dir && !a.force && checksum.is_none())
                .then(|| a.dest.clone()),
            ..Default::default()
        };
        let resp = match curl::fetch(ctx, &req).await {
            Ok(r) => r,
            Err(e) => {
                curl::cleanup(ctx, &tmpdir).await;
                return Err(e);
            }
        };
        if resp.status == 304 {
            curl::cleanup(ctx, &tmpdir).await;
            let o = base
                .with("status_code", Value::Int(304))
                .with("elapsed", Value::Int(resp.elapsed as i64))
                .with_msg("HTTP Error 304: Not Modified");
            return Ok(Query::Done(file_result(ctx, o, &a.dest).await?));
        }
        let fail = |msg: String| Outcome {
            failed: true,
            msg: Some(msg),
            ..base.clone()
        };
        if resp.status != 200 {
            curl::cleanup(ctx, &tmpdir).await;
            let msg = match &resp.error {
                Some(e) => format!("Request failed: {e}"),
                None => format!(
                    "Request failed: HTTP Error {}: {}",
                    resp.status, resp.reason
                ),
            };
            return Ok(Query::Done(
                fail(msg).with("status_code", Value::Int(resp.status)).with(
                    "response",
                    Value::Str(format!("HTTP Error {}: {}", resp.status, resp.reason)),
                ),
            ));
        }
        let dest = if dest_is_dir {
            let name = resp
                .header("content-disposition")
                .and_then(disposition_filename)
                .unwrap_or_else(|| url_filename(&resp.url));
            format!("{}/{}", a.dest.trim_end_matches('/'), name)
        } else {
            a.dest.clone()
        };
        let base = base
            .with("dest", Value::Str(dest.clone()))
            .with("status_code", Value::Int(resp.status))
            .with("elapsed", Value::Int(resp.elapsed as i64))
            .with_msg(resp.ok_msg());
        let dst = ctx.session.stat(&dest, true, false).await?;
        if !dst.exists {
            let parent = dest
                .rsplit_once('/')
                .map(|(p, _)| if p.is_empty() { "/" } else { p })
                .unwrap_or(".");
            if !ctx.session.stat(parent, true, false).await?.exists {
                curl::cleanup(ctx, &tmpdir).await;
                return Ok(Query::Done(Outcome {
                    failed: true,
                    msg: Some(format!("Destination {parent} does not exist")),
                    ..base
                }));
            }
        }
        if ctx.check {
            curl::cleanup(ctx, &tmpdir).await;
            // Ansible: "the changed status will reflect comparison to an empty source file"
            let changed = !(dst.exists && dst.size == 0);
            let (mode, chown) = attr_changes(&a, dst.exists.then_some(&dst)).await?;
            let preview = Outcome {
                changed: changed || mode.is_some() || chown.is_some(),
                ..base
            };
            if !preview.changed {
                return Ok(Query::Done(preview));
            }
            // check mode only: never applied
            return Ok(Query::Change {
                plan: Plan::Attrs {
                    base: preview.clone(),
                    dest,
                    mode: None,
                    chown: None,
                },
                preview,
            });
        }
        let src_sha1 = digest(ctx, &tmp, "sha1").await?.unwrap_or_default();
        let mut base = base.with("checksum_src", Value::Str(src_sha1.clone()));
        let mut replace = true;
        if dst.exists {
            let dest_sha1 = digest(ctx, &dest, "sha1").await?.unwrap_or_default();
            replace = dest_sha1 != src_sha1;
            base = base.with("checksum_dest", Value::Str(dest_sha1));
        } else {
            // Ansible reports no previous checksum as null
            base = base.with("checksum_dest", Value::Null);
        }
        let (mode, chown) = attr_changes(&a, dst.exists.then_some(&dst)).await?;
        let checksum_ok = match &checksum {
            Some((algo, sum)) => digest(ctx, &tmp, algo).await?.as_deref() == Some(sum.as_str()),
            None => true,
        };
        if !replace && mode.is_none() && chown.is_none() && checksum_ok {
            curl::cleanup(ctx, &tmpdir).await;
            let o = file_result(ctx, base, &dest).await?;
            return Ok(Query::Done(o));
        }
        let preview = Outcome {
            changed: true,
            ..base.clone()
        };
        Ok(Query::Change {
            plan: Plan::Download {
                args: Box::new(a),
                dest,
                tmpdir,
                replace,
                base,
                checksum,
            },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        match p {
            Plan::Attrs {
                base,
                dest,
                mode,
                chown,
            } => {
                if let Some(m) = set_attrs(ctx, &dest, mode, chown).await? {
                    return Ok(Outcome {
                        failed: true,
                        msg: Some(m),
                        ..base
                    });
                }
                file_result(ctx, base, &dest).await
            }
            Plan::Download {
                args,
                dest,
                tmpdir,
                replace,
                base,
                checksum,
            } => {
                let r = download(ctx, &args, &dest, &tmpdir, replace, base, checksum).await;
                curl::cleanup(ctx, &tmpdir).await;
                r
            }
        }
    }
}

async fn download(
    ctx: &Ctx,
    a: &Args,
    dest: &str,
    tmpdir: &str,
    replace: bool,
    base: Outcome,
    checksum: Option<(String, String)>,
) -> Result<Outcome, ModuleError> {
    let tmp = format!("{tmpdir}/download");
    let mut o = Outcome {
        changed: replace,
        ..base
    };
    let existing = ctx.session.stat(dest, true, false).await?;
    if replace {
        let mv = ctx.run(&["mv", "-f", &tmp, dest]).await?;
        if mv.rc != 0 {
            o.failed = true;
            o.msg = Some(format!(
                "failed to copy {tmp} to {dest}: {}",
                mv.stderr_text().trim()
            ));
            return Ok(o);
        }
        if a.mode.is_none() && existing.exists {
            // keep an existing file's mode, as atomic_move does
            let _ = ctx
                .run(&["chmod", &format!("{:04o}", existing.mode & 0o7777), dest])
                .await?;
        } else if a.mode.is_none() {
            // a new file gets 0644 less umask, not mktemp's 0600
            let _ = ctx.run(&["chmod", "0644", dest]).await?;
        }
    }
    if let Some((algo, sum)) = &checksum {
        let got = digest(ctx, dest, algo).await?.unwrap_or_default();
        if &got != sum {
            ctx.session.remove(dest, false).await?;
            o.failed = true;
            o.msg = Some(format!(
                "The checksum for {dest} did not match {sum}; it was {got}."
            ));
            return Ok(o);
        }
    }
    let st = ctx.session.stat(dest, true, false).await?;
    let (mode, chown) = attr_changes(a, st.exists.then_some(&st)).await?;
    if mode.is_some() || chown.is_some() {
        if let Some(m) = set_attrs(ctx, dest, mode, chown).await? {
            o.failed = true;
            o.msg = Some(m);
            return Ok(o);
        }
        o.changed = true;
    }
    file_result(ctx, o, dest).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert_eq!(
            parse_checksum("SHA256:AB\u{200b}CD").unwrap(),
            ("sha256".into(), "abcd".into())
        );
        assert!(parse_checksum("abcd")
            .unwrap_err()
            .contains("<algorithm>:<checksum>"));
        assert_eq!(
            parse_checksum("sha256:xyz").unwrap_err(),
            "The checksum format is invalid"
        );
        assert!(parse_checksum("sha256:https://h/SUMS").is_err());
        assert!(parse_checksum("crc32:ab").is_err());
        let d = |h: &str| disposition_filename(h);
        assert_eq!(
            d("attachment; filename=\"a.tar.gz\"").as_deref(),
            Some("a.tar.gz")
        );
        assert_eq!(
            d("attachment; filename=../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(d("inline"), None);
    }
}
