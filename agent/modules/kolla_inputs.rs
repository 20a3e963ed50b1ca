//! `kiln.builtin.kolla_inputs`: the `--if-changed` decision for one builder host.
//!
//! Query (also in check mode, changing nothing anywhere): kolla-build `--template-only` renders
//! the Dockerfiles on the host into a temporary work dir (the kolla venv lives there); the rendered
//! `docker` folder comes back as a tar stream and is hashed here ([`crate::build::inputs`]), with
//! the digests of the external base images read by kiln's registry client, kolla-build.conf and
//! the template override as the build conf, and the platform. Each image's hash is compared with
//! the last published one ([`crate::build::if_changed`]: the newest build record, else the
//! `kiln.input-hash` label of `registry/namespace/name:tag` in the registry).
//!
//! Apply: unchanged images are tagged with the run's tag in the registry (manifest copy, no layer
//! moves); on the host, unchanged ancestors of images to build are pulled under the run's tag and
//! images to build lose a stale run-tag copy, so that kolla-build `--skip-existing` builds exactly
//! the changed images; a template override that labels each built image with its hash is written beside
//! kolla-build.conf (`kiln-input-labels.j2`).
//! Returns `build_sets` (for container-image-build.yml) and `kolla_args` for kolla_build.
//!
//! The registry client runs where kiln runs (the controller), as for `image_push`: `registry_api`
//! names the registry as the controller reaches it when that differs.

use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::build::if_changed::{self, Published, RunPlan};
use crate::build::inputs::{self, RunInputs, INPUT_HASH_LABEL};
use crate::build::kolla::BuildLine;
use crate::build::push::{self, Engine};
use crate::build::registry::{Credentials, ImageRef, RegistryClient, RegistryError};
use crate::transport::ExecRequest;
use crate::value::{Map, Value};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    kolla_venv: String,
    #[serde(deserialize_with = "args::string")]
    config_dir: String,
    #[serde(deserialize_with = "args::string")]
    engine: String,
    #[serde(default, deserialize_with = "args::string")]
    registry: String,
    #[serde(default, deserialize_with = "args::string")]
    namespace: String,
    #[serde(deserialize_with = "args::string")]
    tag: String,
    /// The image sets' regexes, as written (space separated, bash-escaped as in Kayobe's YAML).
    #[serde(default, deserialize_with = "args::string")]
    regexes: String,
    /// `linux/amd64`, `linux/arm64`: hashed; passed to kolla-build only with `platform_flag`.
    #[serde(default, deserialize_with = "args::string")]
    platform: String,
    #[serde(default, deserialize_with = "args::bool")]
    platform_flag: bool,
    #[serde(default, deserialize_with = "args::bool")]
    insecure: bool,
    /// Registries (`host[:port]`) of base images spoken to over plain HTTP.
    #[serde(default, deserialize_with = "args::string_list")]
    insecure_registries: Vec<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    username: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    password: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    registry_api: Option<String>,
    /// Build records folder on the controller.
    #[serde(default, deserialize_with = "args::opt_string")]
    records_dir: Option<String>,
    /// Where the plan is written on the controller (JSON).
    #[serde(default, deserialize_with = "args::opt_string")]
    plan_file: Option<String>,
}

pub struct KollaInputs;

pub struct Plan {
    args: Args,
    plan: RunPlan,
    cache: Option<RenderCache>,
}

fn strings(v: &[String]) -> Value {
    Value::List(v.iter().map(|s| Value::Str(s.clone())).collect())
}

fn fail(msg: impl Into<String>) -> ModuleError {
    ModuleError::Failed(msg.into())
}

impl Args {
    fn creds(&self) -> Option<Credentials> {
        self.username
            .clone()
            .filter(|u| !u.is_empty())
            .map(|u| Credentials::new(u, self.password.clone().unwrap_or_default()))
    }

    /// A client for `registry` as named in a reference: the run's registry through `registry_api`
    /// with the run's login; another registry anonymously.
    fn client(&self, registry: &str) -> Result<RegistryClient, RegistryError> {
        if registry == self.registry {
            let api = self.registry_api.clone().unwrap_or(registry.to_string());
            RegistryClient::new(&api, self.insecure, self.creds())
        } else {
            let insecure = self.insecure_registries.iter().any(|r| r == registry);
            RegistryClient::new(registry, insecure, None)
        }
    }

    fn reference(&self, name: &str) -> String {
        push::image_reference(name, &self.registry, &self.namespace, &self.tag)
    }
}

/// kolla-build --template-only on the host, its docker folder unpacked into `local`.
async fn render(a: &Args, ctx: &Ctx, local: &std::path::Path) -> Result<Vec<String>, ModuleError> {
    let line = BuildLine {
        kolla_venv: a.kolla_venv.clone(),
        config_dir: a.config_dir.clone(),
        engine: a.engine.clone(),
        registry: Some(a.registry.clone()),
        push: false,
        nocache: false,
        platform: a.platform_flag.then(|| a.platform.clone()),
    };
    let set = line.argv(&a.regexes).map_err(ModuleError::Args)?;
    let r = ctx
        .run(&["mktemp", "-d", "/tmp/kiln-inputs.XXXXXXXX"])
        .await?;
    if r.rc != 0 {
        return Err(fail(format!(
            "cannot make a work dir on {}: {}",
            ctx.host,
            r.stderr_text().trim()
        )));
    }
    let work = r.stdout_text().trim().to_string();
    let mut argv = set.argv.clone();
    argv.extend(["--template-only".into(), "--work-dir".into(), work.clone()]);
    let result = async {
        let r = ctx
            .session
            .exec(ExecRequest {
                argv: argv.clone(),
                env: ctx.env.clone(),
                ..Default::default()
            })
            .await?;
        if r.rc != 0 {
            let text = format!("{}{}", r.stdout_text(), r.stderr_text());
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            return Err(fail(format!(
                "kolla-build --template-only failed (rc {}) on {}: {}",
                r.rc,
                ctx.host,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        let t = ctx
            .run(&["tar", "-C", &format!("{work}/docker"), "-cf", "-", "."])
            .await?;
        if t.rc != 0 {
            return Err(fail(format!(
                "cannot read the rendered Dockerfiles in {work}/docker on {}: {}",
                ctx.host,
                t.stderr_text().trim()
            )));
        }
        Ok(t.stdout)
    }
    .await;
    let _ = ctx.session.remove(&work, true).await;
    let tar = result?;
    unpack(&tar, local)?;
    Ok(set.regexes)
}

/// What decides kolla's rendering, apart from the run's tag: kolla's own templates and version,
/// the docker_dir trees kolla-build.conf names, the build conf, the argv's options and regexes
/// (kolla keeps only the matched images and their ancestors), the platform.
/// `None` when it cannot be read (then kolla renders as usual).
async fn render_key(a: &Args, ctx: &Ctx, conf: &str) -> Option<String> {
    use sha2::{Digest, Sha256};
    let venv = a.kolla_venv.trim_end_matches('/');
    let mut dirs = vec![format!("{venv}/share/kolla")];
    let mut in_default = true;
    for line in conf.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_default = l == "[DEFAULT]";
        } else if in_default {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim() == "docker_dir" {
                    dirs.extend(
                        v.split(',')
                            .map(|d| d.trim().to_string())
                            .filter(|d| !d.is_empty()),
                    );
                }
            }
        }
    }
    if dirs.iter().any(|d| !d.starts_with('/')) {
        return None;
    }
    let mut argv: Vec<String> = [
        "tar",
        "--sort=name",
        "--mtime=@0",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "-cf",
        "-",
        "-C",
        "/",
    ]
    .map(String::from)
    .to_vec();
    argv.extend(dirs.iter().map(|d| d.trim_start_matches('/').to_string()));
    let t = ctx
        .session
        .exec(ExecRequest {
            argv,
            ..Default::default()
        })
        .await
        .ok()?;
    if t.rc != 0 {
        return None;
    }
    let v = ctx
        .run(&[
            "find",
            &format!("{venv}/lib"),
            "-maxdepth",
            "3",
            "-name",
            "kolla-*.dist-info",
        ])
        .await
        .ok()?;
    let mut h = Sha256::new();
    h.update(b"kiln-render-v1\n");
    h.update(Sha256::digest(&t.stdout));
    h.update(v.stdout);
    h.update(inputs::normalise(conf, &a.tag).as_bytes());
    // kolla --template-only keeps only the matched images and their ancestors
    h.update(
        format!(
            "\n{}\n{}\n{}\n{}\n",
            a.engine, a.registry, a.platform, a.regexes
        )
        .as_bytes(),
    );
    Some(hex::encode(h.finalize()))
}

/// The render cache on the controller: `<records_dir>/.if-changed/<host>.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct RenderCache {
    key: String,
    scanned: inputs::Scanned,
}

fn cache_path(a: &Args, host: &str) -> Option<std::path::PathBuf> {
    a.records_dir.as_deref().map(|d| {
        std::path::Path::new(d)
            .join(".if-changed")
            .join(format!("{host}.json"))
    })
}

fn unpack(tar: &[u8], dir: &std::path::Path) -> Result<(), ModuleError> {
    use std::io::Write;
    let mut c = std::process::Command::new("tar")
        .args(["-x", "--no-same-owner", "-f", "-", "-C"])
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run tar here to unpack the rendered tree: {e}"
            ))
        })?;
    let mut stdin = c.stdin.take().ok_or_else(|| fail("tar: no stdin"))?;
    let data = tar.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data));
    let o = c.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let _ = w.join();
    if !o.status.success() {
        return Err(fail(format!(
            "tar could not unpack the rendered tree: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

/// Each source kolla-build.conf declares for one of `images`, resolved on the builder as kolla
/// would fetch it there: a
/// git reference to its commit (`git ls-remote`), a URL to what its server says of it (ETag,
/// Last-Modified, Content-Length: the version is in the URL), a local path to a hash of its
/// files. A source that cannot be resolved fails the decision: a rebuild decided without it could
/// keep a stale image.
async fn resolve_sources<V>(
    conf: &str,
    images: &BTreeMap<String, V>,
    ctx: &Ctx,
) -> Result<BTreeMap<String, String>, ModuleError> {
    // only the images this run hashes: Kayobe's defaults declare sources (bifrost's, from
    // opendev.org) that most runs never build
    let specs: Vec<_> = if_changed::source_specs(conf)
        .map_err(fail)?
        .into_iter()
        .filter(|s| images.contains_key(&s.image))
        .collect();
    let mut resolved = Vec::with_capacity(specs.len());
    for s in specs {
        let what = format!("source [{}] ({} {})", s.section, s.kind, s.location);
        let r = match s.kind.as_str() {
            "git" => {
                let reference = s.reference.clone().unwrap_or_else(|| "HEAD".into());
                if if_changed::is_commit(&reference) {
                    reference
                } else {
                    let o = ctx
                        .run(&["git", "ls-remote", "--", &s.location, &reference])
                        .await?;
                    if o.rc != 0 {
                        return Err(fail(format!(
                            "{what}: git ls-remote failed: {}",
                            o.stderr_text().trim()
                        )));
                    }
                    if_changed::commit_from_ls_remote(&o.stdout_text(), &reference).ok_or_else(
                        || fail(format!("{what}: no branch or tag {reference:?} there")),
                    )?
                }
            }
            "url" => {
                let o = ctx
                    .run(&["curl", "-sSfIL", "--max-time", "30", "--", &s.location])
                    .await?;
                if o.rc != 0 {
                    return Err(fail(format!("{what}: {}", o.stderr_text().trim())));
                }
                // the last response's headers (after redirects) that name the content
                let text = o.stdout_text();
                let last = text
                    .rsplit("\r\n\r\n")
                    .find(|b| !b.trim().is_empty())
                    .unwrap_or(&text);
                let mut keep: Vec<String> = last
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .filter(|(k, _)| {
                        ["etag", "last-modified", "content-length"].contains(&k.as_str())
                    })
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                keep.sort();
                keep.join(" ")
            }
            "local" => {
                let o = ctx
                    .run(&[
                        "sh",
                        "-c",
                        "if [ -d \"$1\" ]; then cd \"$1\" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum; else sha256sum < \"$1\"; fi",
                        "kiln-source",
                        &s.location,
                    ])
                    .await?;
                if o.rc != 0 {
                    return Err(fail(format!("{what}: {}", o.stderr_text().trim())));
                }
                o.stdout_text()
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }
            other => return Err(fail(format!("{what}: unknown source type {other:?}"))),
        };
        resolved.push((s, r));
    }
    Ok(if_changed::sources_by_image(&resolved))
}

async fn decide(a: &Args, ctx: &Ctx) -> Result<(RunPlan, Option<RenderCache>), ModuleError> {
    if a.registry.is_empty() {
        return Err(ModuleError::Args(
            "--if-changed compares with the images published in a registry: set kolla_docker_registry".into(),
        ));
    }
    // the build conf: kolla-build.conf and the template override as prepared, the argv's options
    let mut conf = String::new();
    let mut build_conf = String::new();
    for f in ["kolla-build.conf", "template-override.j2"] {
        let path = format!("{}/{f}", a.config_dir.trim_end_matches('/'));
        let r = ctx.run(&["cat", &path]).await?;
        if r.rc == 0 {
            conf.push_str(&format!("== {f}\n{}\n", r.stdout_text()));
            if f == "kolla-build.conf" {
                build_conf = r.stdout_text().to_string();
            }
        }
    }

    conf.push_str(&format!("== engine {}\n", a.engine));
    let t0 = std::time::Instant::now();
    // reading and hashing the rendered files (only when kolla rendered them)
    let mut scan_secs = 0.0;
    let key = render_key(a, ctx, &conf).await;
    let cached = match (&key, cache_path(a, &ctx.host)) {
        (Some(k), Some(p)) => std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<RenderCache>(&b).ok())
            .filter(|c| &c.key == k)
            .map(|c| c.scanned),
        _ => None,
    };
    let (scanned, regexes, how) = match cached {
        Some(s) => (
            s,
            crate::build::words::split(&a.regexes).map_err(ModuleError::Args)?,
            "cached: kolla's templates, docker_dir, conf and kolla unchanged".to_string(),
        ),
        None => {
            let tmp = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
            let regexes = render(a, ctx, tmp.path()).await?;
            let t = std::time::Instant::now();
            let s = inputs::scan(tmp.path(), &a.tag).map_err(|e| fail(e.to_string()))?;
            scan_secs = t.elapsed().as_secs_f64();
            (s, regexes, "kolla-build --template-only".to_string())
        }
    };
    let render_secs = t0.elapsed().as_secs_f64();
    let all = scanned;
    let scanned = all.matching(&regexes).map_err(ModuleError::Args)?;
    // the sources of the images hashed, resolved now on the builder (not part of the render
    // cache: a branch moves)
    let sources = resolve_sources(&build_conf, &scanned.images, ctx).await?;
    let bases = inputs::scanned_bases(&scanned);
    let mut base_digests = BTreeMap::new();
    for b in bases {
        let r = ImageRef::parse(&b).map_err(|e| {
            fail(format!(
                "base image {b}: {e}; --if-changed reads base image digests from their registry, so FROM must name one"
            ))
        })?;
        let d = if r.registry == "localhost"
            && matches!(Engine::parse(&a.engine), Ok(Engine::Podman))
        {
            // podman's `localhost/` names an image of the builder's own storage, never a
            // registry: its image ID stands for its content
            local_image_id(ctx, &b).await?
        } else {
            let c = a.client(&r.registry).map_err(|e| fail(e.to_string()))?;
            c.manifest_digest(&r.repository, &r.reference)
                .await
                .map_err(|e| fail(format!("base image {b}: {e}")))?
        };
        base_digests.insert(b, d);
    }
    let run = RunInputs {
        tag: a.tag.clone(),
        conf,
        platform: a.platform.clone(),
        base_digests,
        sources,
    };
    let t0 = std::time::Instant::now();
    let set = inputs::hash_scanned(&scanned, &run).map_err(|e| fail(e.to_string()))?;
    let hash_secs = t0.elapsed().as_secs_f64() + scan_secs;
    let matched = if_changed::matched(&set, &regexes).map_err(ModuleError::Args)?;
    let mut published = a
        .records_dir
        .as_deref()
        .map(|d| if_changed::published_from_records(std::path::Path::new(d)))
        .unwrap_or_default();
    // no record: the label of the image under the run's tag
    let client = a.client(&a.registry).map_err(|e| fail(e.to_string()))?;
    for name in &matched {
        if published.contains_key(name) {
            continue;
        }
        let reference = a.reference(name);
        let r = ImageRef::parse(&reference).map_err(|e| fail(e.to_string()))?;
        match client.inspect(&r.repository, &r.reference).await {
            Ok(info) => {
                if let Some(h) = info.labels.get(INPUT_HASH_LABEL) {
                    published.insert(
                        name.clone(),
                        Published {
                            hash: h.clone(),
                            parts: BTreeMap::new(),
                            reference,
                            digest: Some(info.digest),
                            from: "registry label".into(),
                        },
                    );
                }
            }
            Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    let mut plan = if_changed::decide(&a.tag, &set, &matched, &published);
    plan.hash_seconds = hash_secs;
    plan.hashed = set.images.len();
    plan.render = format!("{how} ({render_secs:.2} s)");
    Ok((plan, key.map(|key| RenderCache { key, scanned: all })))
}

fn outcome(p: &RunPlan, a: &Args) -> Outcome {
    let mut decisions = Map::new();
    for i in &p.images {
        let mut m = Map::new();
        let (status, reasons) = match &i.decision {
            inputs::Decision::Unchanged => ("unchanged", Vec::new()),
            inputs::Decision::Build { reasons } => ("build", reasons.clone()),
        };
        m.insert("status".into(), Value::str(status));
        m.insert("reasons".into(), strings(&reasons));
        m.insert("hash".into(), Value::str(&i.inputs.hash));
        decisions.insert(i.name.clone(), Value::Map(m));
    }
    let regexes = p.regexes();
    let sets = if regexes.is_empty() {
        Vec::new()
    } else {
        let mut m = Map::new();
        m.insert("regexes".into(), Value::Str(regexes.join(" ")));
        vec![Value::Map(m)]
    };
    let mut o = Outcome {
        changed: !p.build.is_empty(),
        ..Default::default()
    }
    .with("build", strings(&p.build))
    .with("unchanged", strings(&p.unchanged))
    .with("build_sets", Value::List(sets))
    .with("decisions", Value::Map(decisions))
    .with("tag", Value::str(&a.tag))
    .with_msg(format!(
        "{} to build, {} unchanged\n{}",
        p.build.len(),
        p.unchanged.len(),
        p.render().trim_end()
    ));
    if let Some(f) = &a.plan_file {
        o = o.with("plan_file", Value::str(f));
    }
    o
}

fn write_plan(p: &RunPlan, a: &Args) -> Result<(), ModuleError> {
    if let Some(f) = &a.plan_file {
        let text = serde_json::to_vec_pretty(p).map_err(|e| fail(e.to_string()))?;
        crate::build::image_tags::write_atomic(std::path::Path::new(f), &text)
            .map_err(|e| fail(format!("{f}: cannot write the plan: {e}")))?;
    }
    Ok(())
}

async fn apply(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    let Plan {
        args: a,
        mut plan,
        cache,
    } = p;
    if let (Some(c), Some(path)) = (&cache, cache_path(&a, &ctx.host)) {
        if let Ok(text) = serde_json::to_vec(c) {
            // a cache that cannot be written only costs the next run a render
            let _ = crate::build::image_tags::write_atomic(&path, &text);
        }
    }
    let engine = Engine::parse(&a.engine).map_err(ModuleError::Args)?;
    // 1. unchanged images: the run's tag in the registry names them too
    let client = a.client(&a.registry).map_err(|e| fail(e.to_string()))?;
    let mut errors = Vec::new();
    for img in plan.images.iter_mut() {
        if !matches!(img.decision, inputs::Decision::Unchanged) {
            continue;
        }
        let Some(pubd) = &img.published else { continue };
        let new = a.reference(&img.name);
        if pubd.reference == new {
            img.retagged = pubd.digest.clone();
            continue;
        }
        let (Ok(old), Ok(newr)) = (ImageRef::parse(&pubd.reference), ImageRef::parse(&new)) else {
            errors.push(format!(
                "{}: cannot parse {} or {new}",
                img.name, pubd.reference
            ));
            continue;
        };
        if old.registry != newr.registry || old.repository != newr.repository {
            errors.push(format!(
                "{}: published as {} but this run names it {new}; build it anew (without --if-changed)",
                img.name, pubd.reference
            ));
            continue;
        }
        let from = pubd.digest.clone().unwrap_or(old.reference.clone());
        match client.retag(&newr.repository, &from, &newr.reference).await {
            Ok(d) => img.retagged = Some(d),
            Err(e) => errors.push(format!("{}: tagging {new}: {e}", img.name)),
        }
    }
    if !errors.is_empty() {
        write_plan(&plan, &a)?;
        return Ok(Outcome::failed(errors.join("\n")));
    }
    // 2. on the host: exactly the changed images are built
    let program = engine.program();
    for name in &plan.build {
        let r = a.reference(name);
        let argv: Vec<&str> = match engine {
            Engine::Podman => vec![program, "untag", &r],
            _ => vec![program, "image", "rm", &r],
        };
        let _ = ctx.run(&argv).await?;
    }
    for name in &plan.ancestors {
        let r = a.reference(name);
        let mut argv = vec![program.to_string(), "pull".into()];
        if a.insecure && matches!(engine, Engine::Podman) {
            argv.push("--tls-verify=false".into());
        }
        argv.push(r.clone());
        let o = ctx
            .session
            .exec(ExecRequest {
                argv,
                env: ctx.env.clone(),
                ..Default::default()
            })
            .await?;
        if o.rc != 0 {
            return Ok(Outcome::failed(format!(
                "{name} is unchanged and needed as a parent: pulling {r} on {} failed: {}",
                ctx.host,
                push::engine_error(&o.stderr_text(), a.password.as_deref())
            )));
        }
    }
    // 3. the label override
    let mut out = outcome(&plan, &a);
    if !plan.build.is_empty() {
        // beside kolla-build.conf, replaced by each run (no leftovers in /tmp)
        let path = format!(
            "{}/kiln-input-labels.j2",
            a.config_dir.trim_end_matches('/')
        );
        ctx.session
            .write_file(crate::transport::WriteRequest {
                path: path.clone(),
                content: plan.label_override().into_bytes(),
                mode: Some(0o644),
                ..Default::default()
            })
            .await?;
        out = out.with(
            "kolla_args",
            strings(&["--skip-existing".into(), "--template-override".into(), path]),
        );
    } else {
        out = out.with("kolla_args", Value::List(Vec::new()));
    }
    write_plan(&plan, &a)?;
    Ok(out)
}

/// The image ID (`sha256:...`) of an image in the builder's podman storage.
async fn local_image_id(ctx: &Ctx, image: &str) -> Result<String, ModuleError> {
    let r = ctx
        .run(&["podman", "image", "inspect", "--format", "{{.Id}}", image])
        .await?;
    let id = r.stdout_text().trim().to_string();
    if r.rc != 0 || id.is_empty() {
        return Err(ModuleError::Failed(format!(
            "base image {image}: not in podman's storage on {} ({}): build or pull it first",
            ctx.host,
            r.stderr_text().trim()
        )));
    }
    Ok(if id.starts_with("sha256:") {
        id
    } else {
        format!("sha256:{id}")
    })
}

impl Module for KollaInputs {
    const NAMES: &'static [&'static str] = &["kolla_inputs", "kiln.builtin.kolla_inputs"];
    type Args = Args;
    type Plan = Plan;
    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let (plan, cache) = decide(&a, ctx).await?;
        let preview = outcome(&plan, &a);
        if ctx.check {
            write_plan(&plan, &a)?;
        }
        Ok(Query::Change {
            plan: Plan {
                args: a,
                plan,
                cache,
            },
            preview,
        })
    }
    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply(p, ctx).await
    }
}
