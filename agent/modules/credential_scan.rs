//! `kiln.builtin.credential_scan`: fail when credentials appear where a build could copy them into
//! an image: in directory trees (a Kolla build context, the configuration it reads) or in an
//! image's layers and metadata.
//!
//! Each secret is searched in the forms it travels in: plain, base64 (whole, and the part of it
//! that does not depend on where the secret sits inside a longer encoded string, e.g. the
//! `user:password` of a basic-auth header), and URL-encoded (`+` and `%20` spellings). Other
//! strings (`strings`, e.g. the upstream Pulp URL) are searched the same way.
//!
//! The forms and the matcher are `build::scan`'s, shared with the check of pushed layers
//! (`kiln.builtin.image_push`). The search runs on the host as `grep -r -a -F -o -b -f -`: the needles go to grep on its
//! standard input, never on a command line (a process list shows no secret), and the matches come
//! back to kiln only to be mapped to the secret's *name* and form: the failure says "pulp password
//! (base64) in /path/file at byte N", never the value. An image is first written to a temporary
//! archive with `<engine> save` (layers and config JSON, uncompressed) and searched the same way.
//!
//! The module reads only: check mode runs it as well (as Ansible runs read-only modules).

use super::support::args;
use super::support::sysutil;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Files and directories searched (recursively).
    #[serde(default, alias = "path", deserialize_with = "args::string_list")]
    pub paths: Vec<String>,
    /// Images searched (saved with `engine save`).
    #[serde(default, alias = "image", deserialize_with = "args::string_list")]
    pub images: Vec<String>,
    /// `docker` or `podman` (for `images`). Default podman.
    #[serde(default, deserialize_with = "args::opt_string")]
    pub engine: Option<String>,
    /// The secrets, by name (a map), or a list (named `secret 1`, `secret 2`, ...).
    #[serde(default)]
    pub secrets: Option<serde_json::Value>,
    /// Other strings that must not appear (e.g. the upstream URL), by name or as a list.
    #[serde(default)]
    pub strings: Option<serde_json::Value>,
    /// Paths whose matches are expected (the proxy's own configuration file); a directory
    /// excludes everything below it.
    #[serde(default, deserialize_with = "args::string_list")]
    pub exclude: Vec<String>,
    /// Paths that do not exist are skipped instead of failing.
    #[serde(default, deserialize_with = "args::bool")]
    pub missing_ok: bool,
}

pub use crate::build::scan::{forms, Needle};

/// `secrets`/`strings` given as a map (name → value) or a list (named `<prefix> 1`, ...).
pub fn named(v: &Option<serde_json::Value>, prefix: &str) -> Vec<(String, String)> {
    let text = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        o => Some(o.to_string()),
    };
    match v {
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .filter_map(|(k, x)| text(x).map(|t| (k.clone(), t)))
            .collect(),
        Some(serde_json::Value::Array(l)) => l
            .iter()
            .enumerate()
            .filter_map(|(i, x)| text(x).map(|t| (format!("{prefix} {}", i + 1), t)))
            .collect(),
        Some(x) => text(x)
            .map(|t| vec![(format!("{prefix} 1"), t)])
            .unwrap_or_default(),
        None => vec![],
    }
}

/// grep's `-Z -o -b` output (`FILE\0OFFSET:MATCH\n`) → (file, offset, needle), matched back to
/// the needles (pure: unit-tested).
pub fn parse_matches<'a>(out: &[u8], needles: &'a [Needle]) -> Vec<(String, u64, &'a Needle)> {
    let mut hits = Vec::new();
    for rec in out.split(|b| *b == b'\n') {
        let Some(z) = rec.iter().position(|b| *b == 0) else {
            continue;
        };
        let file = String::from_utf8_lossy(&rec[..z]).into_owned();
        let rest = &rec[z + 1..];
        let Some(c) = rest.iter().position(|b| *b == b':') else {
            continue;
        };
        let off = std::str::from_utf8(&rest[..c])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let m = &rest[c + 1..];
        if let Some(n) = needles.iter().find(|n| n.text.as_bytes() == m) {
            hits.push((file, off, n));
        }
    }
    hits
}

fn excluded(file: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|e| {
        let e = e.trim_end_matches('/');
        file == e || file.starts_with(&format!("{e}/"))
    })
}

pub struct CredentialScan;

pub struct Plan;

async fn grep(ctx: &Ctx, targets: &[String], needles: &[Needle]) -> Result<Vec<u8>, ModuleError> {
    // -H: the file name even for one file (an image archive); without it no match was parsed
    let mut argv = sysutil::argv(&[
        "grep", "-r", "-H", "-a", "-F", "-o", "-b", "-Z", "-f", "-", "--",
    ]);
    argv.extend(targets.iter().cloned());
    let mut stdin = Vec::new();
    for n in needles {
        stdin.extend_from_slice(n.text.as_bytes());
        stdin.push(b'\n');
    }
    let r = ctx
        .session
        .exec(crate::transport::ExecRequest {
            argv,
            env: ctx.env.clone(),
            stdin,
            ..Default::default()
        })
        .await?;
    match r.rc {
        0 | 1 => Ok(r.stdout),
        _ => Err(ModuleError::Failed(format!(
            "grep could not search {}: {}",
            targets.join(", "),
            r.stderr_text().trim()
        ))),
    }
}

/// Where in a saved image (`engine save` archive in `dir`) the needles are: the archive is
/// unpacked, each layer archive in it unpacked in turn and searched, so a finding names the file
/// (`file /etc/pip.conf (layer 3f2a....tar)`), or the image metadata file (config JSON: its
/// history, environment, labels). A file deleted by a later layer is still found in the layer
/// that added it. Empty when the archive cannot be unpacked.
async fn locate_in_image<'a>(
    ctx: &Ctx,
    archive: &str,
    dir: &str,
    needles: &'a [Needle],
) -> Vec<(String, &'a Needle)> {
    let mut found = Vec::new();
    let top = format!("{dir}/x");
    let untar = |from: &str, to: &str| {
        sysutil::argv(&[
            "tar",
            "--no-same-owner",
            "--no-same-permissions",
            "-xf",
            from,
            "-C",
            to,
        ])
    };
    if sysutil::run_ok(ctx, &sysutil::argv(&["mkdir", "-p", &top]))
        .await
        .is_err()
        || sysutil::run_ok(ctx, &untar(archive, &top)).await.is_err()
    {
        return found;
    }
    let Ok(out) = grep(ctx, std::slice::from_ref(&top), needles).await else {
        return found;
    };
    let mut files: Vec<(String, &Needle)> = Vec::new();
    for (file, _, n) in parse_matches(&out, needles) {
        if !files.iter().any(|(f, x)| *f == file && x.text == n.text) {
            files.push((file, n));
        }
    }
    for (i, (file, n)) in files.into_iter().enumerate() {
        let rel = file
            .strip_prefix(&format!("{top}/"))
            .unwrap_or(&file)
            .to_string();
        let layer = format!("{dir}/l{i}");
        let is_layer = sysutil::run_ok(ctx, &sysutil::argv(&["mkdir", "-p", &layer]))
            .await
            .is_ok()
            && sysutil::run_ok(ctx, &untar(&file, &layer)).await.is_ok();
        let inner = if is_layer {
            grep(ctx, std::slice::from_ref(&layer), needles)
                .await
                .map(|o| {
                    parse_matches(&o, needles)
                        .into_iter()
                        .map(|(f, _, m)| (f, m))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let _ = sysutil::run(ctx, &sysutil::argv(&["rm", "-rf", &layer])).await;
        if inner.is_empty() {
            let what = if is_layer { "layer" } else { "metadata" };
            found.push((format!("{what} {rel}"), n));
        }
        for (f, m) in inner {
            let path = f.strip_prefix(&layer).unwrap_or(&f).to_string();
            let place = format!("file {path} (layer {rel})");
            if !found.iter().any(|(p, x)| *p == place && x.text == m.text) {
                found.push((place, m));
            }
        }
    }
    found
}

impl Module for CredentialScan {
    const NAMES: &'static [&'static str] = &["kiln.builtin.credential_scan", "credential_scan"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let mut needles = Vec::new();
        for (name, v) in named(&a.secrets, "secret")
            .into_iter()
            .chain(named(&a.strings, "string"))
        {
            needles.extend(forms(&name, &v));
        }
        if needles.is_empty() {
            return Err(ModuleError::Args(
                "credential_scan: nothing to search for: give `secrets` (and/or `strings`) with values of at least 4 characters".into(),
            ));
        }
        if a.paths.is_empty() && a.images.is_empty() {
            return Err(ModuleError::Args(
                "credential_scan: give `paths` (directories or files) and/or `images` to search"
                    .into(),
            ));
        }
        let mut findings: Vec<String> = Vec::new();
        let mut searched: Vec<Value> = Vec::new();
        let mut targets = Vec::new();
        for p in &a.paths {
            if !ctx.session.stat(p, true, false).await?.exists {
                if a.missing_ok {
                    continue;
                }
                return Err(ModuleError::Failed(format!(
                    "credential_scan: {p} does not exist on {} (set missing_ok: true to skip missing paths)",
                    ctx.host
                )));
            }
            targets.push(p.clone());
            searched.push(Value::str(p));
        }
        if !targets.is_empty() {
            let out = grep(ctx, &targets, &needles).await?;
            for (file, off, n) in parse_matches(&out, &needles) {
                if !excluded(&file, &a.exclude) {
                    findings.push(format!("{} ({}) in {file} at byte {off}", n.name, n.form));
                }
            }
        }
        let engine = a.engine.clone().unwrap_or_else(|| "podman".into());
        for image in &a.images {
            let dir = sysutil::run_ok(ctx, &sysutil::argv(&["mktemp", "-d"]))
                .await?
                .stdout_text()
                .trim()
                .to_string();
            let archive = format!("{dir}/image.tar");
            let saved = sysutil::run_ok(
                ctx,
                &sysutil::argv(&[&engine, "save", "--output", &archive, image]),
            )
            .await;
            let out = match saved {
                Ok(_) => grep(ctx, std::slice::from_ref(&archive), &needles).await,
                Err(e) => Err(e),
            };
            let hits = match &out {
                Ok(o) => parse_matches(o, &needles),
                Err(_) => Vec::new(),
            };
            // found: name the file (layer and path inside it, or the image's metadata)
            let located = if hits.is_empty() {
                Vec::new()
            } else {
                locate_in_image(ctx, &archive, &dir, &needles).await
            };
            let _ = sysutil::run(ctx, &sysutil::argv(&["rm", "-rf", &dir])).await;
            out?;
            if located.is_empty() {
                for (_, off, n) in hits {
                    findings.push(format!(
                        "{} ({}) in image {image} (its saved layers/metadata at byte {off})",
                        n.name, n.form
                    ));
                }
            }
            for (place, n) in located {
                findings.push(format!("{} ({}) in image {image}: {place}", n.name, n.form));
            }
            searched.push(Value::str(format!("image {image}")));
        }
        findings.dedup();
        let base = Outcome::ok()
            .with("searched", Value::List(searched))
            .with("needles", Value::Int(needles.len() as i64))
            .with(
                "findings",
                Value::List(findings.iter().map(Value::str).collect()),
            );
        if findings.is_empty() {
            return Ok(Query::Done(base.with_msg("no credentials found")));
        }
        let mut o = base;
        o.failed = true;
        o.msg = Some(format!(
            "credentials found where a build could copy them into an image: {}",
            findings.join("; ")
        ));
        Ok(Query::Done(o))
    }

    async fn apply(&self, _p: Plan, _ctx: &Ctx) -> Result<Outcome, ModuleError> {
        Ok(Outcome::ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grep_output_maps_to_names() {
        let n = forms("pulp password", "s3cret-value");
        let out = b"/a/b\x0012:s3cret-value\n/a/c\x003:nomatch\n";
        let hits = parse_matches(out, &n);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, "/a/b");
        assert_eq!(hits[0].1, 12);
        assert_eq!(hits[0].2.name, "pulp password");
        assert!(excluded("/x/y/z", &["/x/y/".into()]));
        assert!(!excluded("/x/yz", &["/x/y".into()]));
    }
}
