//! `kiln.builtin.image_push`: push built images from the builder to the registry, read their
//! digests back from the registry, and write the build record and the failed-push list.
//!
//! Runs against the builder host (its container engine does the pushes, through the agent);
//! the registry client runs here on the controller (see `build/push.rs` for why). A push is
//! retried (`retries` attempts, `retry_delay` apart), then reported with the engine's (registry's)
//! error while the other images still go. The login password goes to `login --password-stdin` in a
//! per-run 0700 auth folder on the builder that is removed afterwards; it never appears in a
//! command line, the result or the record.
//!
//! ```yaml
//! - kiln.builtin.image_push:
//!     images: "{{ kiln_publish_images }}"      # names (nova-api) or full references
//!     registry: "{{ kolla_docker_registry }}"
//!     namespace: "{{ kolla_docker_namespace }}"
//!     tag: "{{ kolla_tag }}"
//!     username: "{{ kolla_docker_registry_username }}"
//!     password: "{{ kolla_docker_registry_password }}"
//!     insecure: "{{ kolla_docker_registry_insecure }}"
//!     record: "{{ kayobe_config_path }}/kiln/builds/{{ kolla_tag }}.json"
//!     failed_list: /opt/kayobe/images/push-failed-images.txt
//! ```
//!
//! Check mode cannot know whether a push would change the registry: it is skipped.

use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::build::push::{self, Engine};
use crate::build::record::{self, BuildRecord, CredentialCheck, ImageRecord};
use crate::build::registry::{Credentials, ImageRef, RegistryClient};
use crate::build::scan;
use crate::value::{Map, Value};
use serde::Deserialize;
use std::time::{Duration, Instant};

pub struct ImagePush;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "super::support::args::string_list")]
    images: Vec<String>,
    #[serde(default, deserialize_with = "super::support::args::string")]
    registry: String,
    #[serde(default, deserialize_with = "super::support::args::string")]
    namespace: String,
    #[serde(default, deserialize_with = "super::support::args::string")]
    tag: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default = "podman")]
    engine: String,
    #[serde(default, deserialize_with = "super::support::args::bool")]
    insecure: bool,
    /// Where the controller reaches the same registry, when not at `registry`.
    #[serde(default)]
    registry_api: Option<String>,
    #[serde(default = "five", deserialize_with = "num")]
    retries: f64,
    #[serde(default = "five", deserialize_with = "num")]
    retry_delay: f64,
    /// Failed-push list on the builder (written even when empty, as stackhpc's workflow does).
    #[serde(default)]
    failed_list: Option<String>,
    /// Build record on the controller.
    #[serde(default)]
    record: Option<String>,
    /// Hosts for the record (default: this host).
    #[serde(default)]
    hosts: Option<Vec<String>>,
    /// When the build started (RFC 3339), for the record.
    #[serde(default)]
    started: Option<String>,
    /// Folder of the per-image build logs (`<log_dir>/<image>.log` in the record).
    #[serde(default)]
    log_dir: Option<String>,
    /// Secrets that must not be in any pushed layer (name → value, or a list), e.g. the Pulp
    /// credentials: each pushed image's layers and config are read back from the registry and
    /// searched (plain, base64, URL-encoded; `build::scan`). A hit fails the run.
    #[serde(default)]
    scan_secrets: Option<serde_json::Value>,
    /// Other strings searched the same way (the upstream mirror URL).
    #[serde(default)]
    scan_strings: Option<serde_json::Value>,
    /// The images kolla-build failed (its `failures`: name, status, because_of, log): recorded as
    /// `build-failed` (or `not-built` when a parent failed) beside the pushed ones, so the record
    /// of a failed build says which image failed and where its log is.
    #[serde(default)]
    build_failures: Vec<BuildFailure>,
}

/// One image kolla-build did not build, as `kolla_build` reports it (`build::kolla::Failure`;
/// its log tail is left out: the log is named).
#[derive(Deserialize)]
struct BuildFailure {
    name: String,
    status: String,
    #[serde(default)]
    because_of: Option<String>,
    #[serde(default)]
    log: Option<String>,
}

impl BuildFailure {
    fn record(&self, reference: String) -> ImageRecord {
        let (status, error) = match (self.status.as_str(), &self.because_of) {
            ("matched" | "parent_error", Some(p)) => {
                ("not-built", format!("not built: its parent {p} failed"))
            }
            (st, Some(p)) => (
                "build-failed",
                format!("kolla-build: failed with status {st} (its parent {p} failed)"),
            ),
            (st, None) => (
                "build-failed",
                format!("kolla-build: failed with status {st}"),
            ),
        };
        ImageRecord {
            name: self.name.clone(),
            reference,
            status: status.into(),
            log: self.log.clone(),
            error: Some(error),
            ..Default::default()
        }
    }
}

fn podman() -> String {
    "podman".into()
}
fn five() -> f64 {
    5.0
}

/// A number given as a number or as text (a templated `"{{ n }}"`).
fn num<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| D::Error::custom("not a number")),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{s:?} is not a number"))),
        v => Err(D::Error::custom(format!("{v} is not a number"))),
    }
}

pub struct Plan {
    args: Args,
    engine: Engine,
}

impl Module for ImagePush {
    const NAMES: &'static [&'static str] = &["kiln.builtin.image_push", "image_push"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, args: Args, _ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let engine = Engine::parse(&args.engine).map_err(ModuleError::Args)?;
        if args.images.is_empty() && args.build_failures.is_empty() {
            return Ok(Query::Done(Outcome::ok().with_msg("no images to push")));
        }
        if args.username.as_deref().is_some_and(|u| !u.is_empty())
            && args.password.as_deref().unwrap_or("").is_empty()
        {
            return Err(ModuleError::Args(
                "image_push: a username without a password: set kolla_docker_registry_password in the vault".into(),
            ));
        }
        for i in &args.images {
            let r = push::image_reference(i, &args.registry, &args.namespace, &args.tag);
            ImageRef::parse(&r).map_err(|e| ModuleError::Args(format!("image_push: {e}")))?;
        }
        Ok(Query::Opaque(Plan { args, engine }))
    }

    async fn apply(&self, plan: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let Plan { args, engine } = plan;
        let started = args.started.clone().unwrap_or_else(record::now);
        let password = args.password.clone().unwrap_or_default();
        let login = args
            .username
            .clone()
            .filter(|u| !u.is_empty())
            .map(|u| Credentials::new(u, password.clone()));
        let refs: Vec<(String, String)> = args
            .images
            .iter()
            .map(|i| {
                let r = push::image_reference(i, &args.registry, &args.namespace, &args.tag);
                (crate::build::image_tags::image_short_name(i).to_string(), r)
            })
            .collect();
        let registry_host = match refs.first() {
            Some((_, r)) => ImageRef::parse(r).map(|r| r.registry).unwrap_or_default(),
            None => args.registry.clone(),
        };

        // Login into a private auth folder (when there is anything to push).
        let mut env = ctx.env.clone();
        let mut auth_dir = None;
        let mut login_error = None;
        if let Some(c) = login.as_ref().filter(|_| !refs.is_empty()) {
            let r = ctx
                .run(&["mktemp", "-d", "/tmp/kiln-auth.XXXXXXXX"])
                .await?;
            if r.rc != 0 {
                return Ok(Outcome::failed(format!(
                    "cannot make a private auth folder on {}: {}",
                    ctx.host,
                    push::engine_error(&r.stderr_text(), None)
                )));
            }
            let dir = r.stdout_text().trim().to_string();
            env.extend(engine.auth_env(&dir));
            auth_dir = Some(dir);
            let r = ctx
                .session
                .exec(crate::transport::ExecRequest {
                    argv: engine.login_argv(&registry_host, &c.username, args.insecure),
                    env: env.clone(),
                    stdin: format!("{}\n", c.password()).into_bytes(),
                    ..Default::default()
                })
                .await;
            let failed = match r {
                Ok(r) if r.rc == 0 => None,
                Ok(r) => Some(push::engine_error(&r.stderr_text(), Some(c.password()))),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = failed {
                // no push can go: every image is recorded as failed with the login's error
                login_error = Some(format!(
                    "{} login to {registry_host} as {} failed: {e}; check that the registry is up and kolla_docker_registry_username/_password in the vault",
                    engine.program(),
                    c.username
                ));
            }
        }

        // Push each image; failures are collected, the others still go.
        let mut outcomes = Vec::new();
        for (_, reference) in &refs {
            if let Some(e) = &login_error {
                outcomes.push(push::PushOutcome {
                    reference: reference.clone(),
                    ok: false,
                    attempts: 0,
                    error: Some(e.clone()),
                    duration: Duration::ZERO,
                });
                continue;
            }
            let argv = engine.push_argv(reference, args.insecure);
            let env = env.clone();
            let pw = password.clone();
            let o = push::push_with_retries(
                reference,
                args.retries.max(1.0) as u32,
                Duration::from_secs_f64(args.retry_delay.max(0.0)),
                |attempt| {
                    let argv = argv.clone();
                    let env = env.clone();
                    let pw = pw.clone();
                    async move {
                        if attempt > 1 {
                            ctx.progress.line(
                                super::progress::LineStream::Stderr,
                                format!(
                                    "retrying push of {} (attempt {attempt})",
                                    argv[argv.len() - 1]
                                ),
                            );
                        }
                        let r = ctx
                            .exec_progress(crate::transport::ExecRequest {
                                argv,
                                env,
                                ..Default::default()
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                        if r.rc == 0 {
                            Ok(())
                        } else {
                            Err(push::engine_error(&r.stderr_text(), Some(&pw)))
                        }
                    }
                },
            )
            .await;
            outcomes.push(o);
        }
        remove_auth(ctx, auth_dir.as_deref()).await;

        // Digests, platforms and labels from the registry.
        let api = args.registry_api.clone().unwrap_or(registry_host.clone());
        let client = if refs.is_empty() {
            None
        } else {
            Some(
                RegistryClient::new(&api, args.insecure, login.clone())
                    .map_err(|e| ModuleError::Failed(e.to_string()))?,
            )
        };
        let mut rec = BuildRecord::new(&args.tag);
        rec.started = started;
        rec.hosts = args.hosts.clone().unwrap_or_else(|| vec![ctx.host.clone()]);
        rec.registry = Some(registry_host.clone());
        let mut errors = Vec::new();
        let named: Vec<(String, String)> =
            super::credential_scan::named(&args.scan_secrets, "secret")
                .into_iter()
                .chain(super::credential_scan::named(&args.scan_strings, "string"))
                .filter(|(_, v)| v.len() >= 4)
                .collect();
        let matcher = scan::Matcher::new(scan::needles(
            named.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        ));
        let mut check = (!matcher.is_empty()).then(|| CredentialCheck {
            status: "clean".into(),
            searched_for: named.iter().map(|(n, _)| n.clone()).collect(),
            ..Default::default()
        });
        for ((name, reference), o) in refs.iter().zip(&outcomes) {
            let t0 = Instant::now();
            let mut ir = ImageRecord {
                name: name.clone(),
                reference: reference.clone(),
                status: if o.ok { "pushed" } else { "push-failed" }.into(),
                log: args.log_dir.as_ref().map(|d| format!("{d}/{name}.log")),
                error: o.error.clone(),
                ..Default::default()
            };
            if let (true, Some(client)) = (o.ok, &client) {
                let r =
                    ImageRef::parse(reference).map_err(|e| ModuleError::Failed(e.to_string()))?;
                match client.inspect(&r.repository, &r.reference).await {
                    Ok(info) => {
                        if let Some(c) = check.as_mut() {
                            let (found, failed) =
                                scan_pushed(client, &r.repository, &info, &matcher, c).await;
                            for f in &found {
                                errors.push(format!(
                                    "credential found in pushed image {reference}: {f}"
                                ));
                            }
                            for e in &failed {
                                errors.push(format!("{reference}: {e}"));
                            }
                            if !found.is_empty() {
                                ir.status = "credential-found".into();
                            }
                            ir.credential_findings = found;
                        }
                        ir.digest = Some(info.digest);
                        ir.platform = info.platforms.iter().map(|p| p.to_string()).collect();
                        ir.labels = info.labels;
                    }
                    Err(e) => {
                        ir.status = "digest-failed".into();
                        ir.error = Some(e.to_string());
                        errors.push(format!("{reference}: {e}"));
                    }
                }
            } else {
                rec.failed_pushes.push(reference.clone());
                if login_error.is_none() {
                    errors.push(format!(
                        "{reference}: push failed after {} attempts: {}",
                        o.attempts,
                        o.error.clone().unwrap_or_default()
                    ));
                }
            }
            ir.duration = ((o.duration + t0.elapsed()).as_secs_f64() * 1000.0).round() / 1000.0;
            rec.images.push(ir);
        }
        for f in &args.build_failures {
            let reference =
                push::image_reference(&f.name, &args.registry, &args.namespace, &args.tag);
            let mut ir = f.record(reference);
            if ir.log.is_none() {
                ir.log = args.log_dir.as_ref().map(|d| format!("{d}/{}.log", f.name));
            }
            rec.images.push(ir);
        }
        rec.credential_check = check;
        rec.ended = record::now();

        if let Some(path) = &args.failed_list {
            ctx.session
                .write_file(crate::transport::WriteRequest {
                    path: path.clone(),
                    content: push::failed_list_text(&rec.failed_pushes).into_bytes(),
                    ..Default::default()
                })
                .await?;
        }
        if let Some(path) = &args.record {
            rec.write(std::path::Path::new(path))
                .map_err(|e| ModuleError::Failed(e.to_string()))?;
        }

        let images: Vec<Value> = rec
            .images
            .iter()
            .map(|i| {
                let mut m = Map::new();
                m.insert("name".into(), Value::str(&i.name));
                m.insert("reference".into(), Value::str(&i.reference));
                m.insert(
                    "digest".into(),
                    i.digest.as_deref().map(Value::str).unwrap_or(Value::Null),
                );
                m.insert("status".into(), Value::str(&i.status));
                Value::Map(m)
            })
            .collect();
        let pushed: Vec<Value> = rec.pushed().map(|i| Value::str(&i.name)).collect();
        let mut out = Outcome {
            changed: outcomes.iter().any(|o| o.ok),
            ..Default::default()
        }
        .with("images", Value::List(images))
        .with("pushed", Value::List(pushed))
        .with(
            "failed_pushes",
            Value::List(rec.failed_pushes.iter().map(Value::str).collect()),
        )
        .with("tag", Value::str(&rec.tag));
        if let Some(p) = &args.record {
            out = out.with("record", Value::str(p));
        }
        if let Some(e) = login_error {
            errors.insert(
                0,
                format!("{e}: not pushed: {}", rec.failed_pushes.join(", ")),
            );
        }
        if errors.is_empty() {
            let unbuilt = rec.images.iter().filter(|i| i.not_built()).count();
            Ok(out.with_msg(match unbuilt {
                0 => format!("pushed {} images", rec.pushed().count()),
                n => format!(
                    "pushed {} images; {n} not built (kolla-build failed them: the build task says why)",
                    rec.pushed().count()
                ),
            }))
        } else {
            out.failed = true;
            Ok(out.with_msg(errors.join("\n")))
        }
    }
}

/// Read the pushed image's config and layers back from the registry and search them; findings
/// (`<secret name> (<form>) in layer <digest> <file> at byte N`) and read errors are returned and
/// added to the run's check.
async fn scan_pushed(
    client: &RegistryClient,
    repository: &str,
    info: &crate::build::registry::ImageInfo,
    matcher: &scan::Matcher,
    check: &mut CredentialCheck,
) -> (Vec<String>, Vec<String>) {
    let (mut found, mut failed) = (Vec::new(), Vec::new());
    let short = |d: &str| d.chars().take(19).collect::<String>();
    match client.blob(repository, &info.config).await {
        Ok(b) => {
            check.blobs += 1;
            for (off, n) in matcher.find(&b) {
                found.push(format!(
                    "{} ({}) in the image config {} (labels, history) at byte {off}",
                    n.name,
                    n.form,
                    short(&info.config)
                ));
            }
        }
        Err(e) => failed.push(format!(
            "cannot read the config back for the credential check: {e}"
        )),
    }
    for layer in &info.layers {
        match client.blob(repository, layer).await {
            Ok(b) => {
                check.blobs += 1;
                match scan::scan_layer(&b, matcher) {
                    Ok(f) => {
                        found.extend(f.iter().map(|f| format!("{f} of layer {}", short(layer))))
                    }
                    Err(e) => failed.push(format!("layer {}: {e}", short(layer))),
                }
            }
            Err(e) => failed.push(format!(
                "cannot read layer {} back for the credential check: {e}",
                short(layer)
            )),
        }
    }
    check
        .findings
        .extend(found.iter().map(|f| format!("{repository}: {f}")));
    if !found.is_empty() {
        check.status = "found".into();
    } else if !failed.is_empty() && check.status == "clean" {
        check.status = "error".into();
    }
    (found, failed)
}

async fn remove_auth(ctx: &Ctx, dir: Option<&str>) {
    if let Some(d) = dir {
        let _ = ctx.session.remove(d, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_failures_are_recorded_as_failed_or_not_built() {
        let f = |status: &str, parent: Option<&str>| BuildFailure {
            name: "nova-api".into(),
            status: status.into(),
            because_of: parent.map(str::to_string),
            log: Some("/logs/nova-api.log".into()),
        };
        let r = f("error", None).record("r/kolla/nova-api:t".into());
        assert_eq!(
            (r.status.as_str(), r.error.as_deref()),
            (
                "build-failed",
                Some("kolla-build: failed with status error")
            )
        );
        assert_eq!(r.log.as_deref(), Some("/logs/nova-api.log"));
        assert!(r.digest.is_none() && r.not_built());
        for st in ["matched", "parent_error"] {
            let r = f(st, Some("nova-base")).record("x".into());
            assert_eq!(r.status, "not-built", "{st}");
            assert_eq!(
                r.error.as_deref(),
                Some("not built: its parent nova-base failed")
            );
        }
    }
}
