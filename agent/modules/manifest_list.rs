//! `kiln.builtin.manifest_list`: the last step of a publish over several builders. Each builder's
//! `kiln.builtin.image_push` wrote a partial record (`<record>.parts/<host>.json`); this task
//! (run once, on the controller) merges them into the run's record, records the builders that
//! published nothing as failed, and, for a multi-architecture run, pushes one manifest list (an
//! OCI image index) `<tag>` per image over the per-architecture tags `<tag>-<arch>` through kiln's
//! registry client (`build/manifest_list.rs`), with the list's digest and each platform's digest
//! in the record. The summary (every builder, every list) is streamed and returned.
//!
//! ```yaml
//! - kiln.builtin.manifest_list:
//!     record: "{{ kiln_record }}"
//!     builders: "{{ ansible_play_hosts_all }}"
//!     arches: "{{ ansible_play_hosts_all | map('extract', hostvars, 'kolla_base_arch') | list }}"
//!     multiarch: true
//!     tag: "{{ kolla_tag }}"
//!     insecure: "{{ kolla_docker_registry_insecure }}"
//!   run_once: true
//! ```
//!
//! Fails when a builder failed or a list could not be pushed (incomplete: a
//! platform is missing); the record is written first either way. Skipped in check mode.

use super::progress::LineStream;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::build::manifest_list::{self as ml, ArchSpec, ManifestListRecord};
use crate::build::record::BuildRecord;
use crate::build::registry::{Credentials, ImageRef, RegistryClient};
use crate::value::{Map, Value};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub struct ManifestList;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The run's record; the parts are read from `<record>.parts/`.
    #[serde(deserialize_with = "super::support::args::string")]
    record: String,
    /// Every builder host of the run (failed ones too).
    #[serde(deserialize_with = "super::support::args::string_list")]
    builders: Vec<String>,
    /// Each builder's `kolla_base_arch`, in the order of `builders`.
    #[serde(default, deserialize_with = "super::support::args::string_list")]
    arches: Vec<String>,
    /// Each builder's registered kolla_build result (`{}` when none), in the order of
    /// `builders`: a failed builder's reason comes from it.
    #[serde(default)]
    build_results: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "super::support::args::bool")]
    multiarch: bool,
    #[serde(deserialize_with = "super::support::args::string")]
    tag: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, deserialize_with = "super::support::args::bool")]
    insecure: bool,
    #[serde(default)]
    registry_api: Option<String>,
}

pub struct Plan {
    args: Args,
}

/// `<record>.parts/<host>.json`: where a builder's image_push writes its part.
pub fn part_path(record: &Path, host: &str) -> PathBuf {
    let mut d = record.as_os_str().to_owned();
    d.push(".parts");
    PathBuf::from(d).join(format!("{host}.json"))
}

/// Why a builder's kolla_build task failed, from its registered result (a loop's items).
fn build_failure(r: &serde_json::Value) -> Option<String> {
    let items: Vec<&serde_json::Value> = match r["results"].as_array() {
        Some(l) => l.iter().collect(),
        None => vec![r],
    };
    let msgs: Vec<String> = items
        .iter()
        .filter(|i| i["failed"] == true)
        .filter_map(|i| i["msg"].as_str().map(str::to_string))
        .collect();
    if msgs.is_empty() {
        (r["failed"] == true).then(|| r["msg"].as_str().unwrap_or("failed").to_string())
    } else {
        Some(msgs.join("\n"))
    }
}

impl Module for ManifestList {
    const NAMES: &'static [&'static str] = &["kiln.builtin.manifest_list", "manifest_list"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, args: Args, _ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        if !args.arches.is_empty() && args.arches.len() != args.builders.len() {
            return Err(ModuleError::Args(format!(
                "manifest_list: {} builders but {} arches: give one kolla_base_arch per builder",
                args.builders.len(),
                args.arches.len()
            )));
        }
        if args.multiarch && args.arches.is_empty() {
            return Err(ModuleError::Args(
                "manifest_list: multiarch needs `arches` (each builder's kolla_base_arch)".into(),
            ));
        }
        Ok(Query::Opaque(Plan { args }))
    }

    async fn apply(&self, plan: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let a = plan.args;
        let record = PathBuf::from(&a.record);
        let arch_of = |i: usize| a.arches.get(i).cloned().unwrap_or_default();
        let mut parts = Vec::new();
        for (i, h) in a.builders.iter().enumerate() {
            let p = part_path(&record, h);
            let part = if p.is_file() {
                Some(BuildRecord::read(&p).map_err(|e| ModuleError::Failed(e.to_string()))?)
            } else {
                None
            };
            parts.push((h.clone(), arch_of(i), part));
        }
        let mut reasons = std::collections::HashMap::new();
        for (h, r) in a.builders.iter().zip(&a.build_results) {
            if let Some(why) = build_failure(r) {
                reasons.insert(h.clone(), why);
            }
        }
        let (mut rec, failed) = ml::merge_parts(&a.tag, parts, &reasons);
        rec.failed_builders = failed;
        let mut errors: Vec<String> = rec
            .failed_builders
            .iter()
            .map(|f| format!("builder {} ({}): {}", f.host, f.platform, f.reason))
            .collect();
        // failed pushes are the push task's to report (it fails after the tags file is updated)

        if a.multiarch {
            // the platforms every image must have: one per distinct builder architecture
            let mut want: Vec<String> = Vec::new();
            for x in &a.arches {
                let o = ml::oci_arch(x);
                if !want.iter().any(|w| ml::oci_arch(w) == o) {
                    want.push(x.clone());
                }
            }
            let host_arch: std::collections::HashMap<&str, String> = a
                .builders
                .iter()
                .zip(&a.arches)
                .map(|(h, x)| (h.as_str(), ml::oci_arch(x)))
                .collect();
            let password = a.password.clone().unwrap_or_default();
            let login = a
                .username
                .clone()
                .filter(|u| !u.is_empty())
                .map(|u| Credentials::new(u, password));
            let by_name = ml::pushed_by_name(&rec);
            let mut lists: Vec<ManifestListRecord> = Vec::new();
            let mut client: Option<RegistryClient> = None;
            for (name, imgs) in &by_name {
                let first = ImageRef::parse(&imgs[0].reference)
                    .map_err(|e| ModuleError::Failed(e.to_string()))?;
                let mut specs = Vec::new();
                let mut missing = Vec::new();
                for w in &want {
                    let o = ml::oci_arch(w);
                    let from = imgs.iter().find(|i| {
                        i.host
                            .as_deref()
                            .and_then(|h| host_arch.get(h))
                            .is_some_and(|x| *x == o)
                    });
                    match from {
                        Some(i) => specs.push(ArchSpec {
                            host: i.host.clone(),
                            arch: w.clone(),
                        }),
                        None => missing.push(
                            ml::oci_platform(w)
                                .map(|p| p.to_string())
                                .unwrap_or(w.clone()),
                        ),
                    }
                }
                let reference = format!("{}/{}:{}", first.registry, first.repository, a.tag);
                if !missing.is_empty() {
                    let l = ManifestListRecord {
                        name: name.clone(),
                        reference: reference.clone(),
                        status: "incomplete".into(),
                        missing: missing.clone(),
                        error: Some(format!(
                            "not pushed: no {} image (its builder failed); the per-architecture tags that built stay pushed",
                            missing.join(", ")
                        )),
                        ..Default::default()
                    };
                    errors.push(format!(
                        "{reference}: {}",
                        l.error.clone().unwrap_or_default()
                    ));
                    lists.push(l);
                    continue;
                }
                if client.is_none() {
                    let api = a.registry_api.clone().unwrap_or(first.registry.clone());
                    client = Some(
                        RegistryClient::new(&api, a.insecure, login.clone())
                            .map_err(|e| ModuleError::Failed(e.to_string()))?,
                    );
                }
                let Some(c) = client.as_ref() else {
                    continue;
                };
                let mut l = ml::publish(c, name, &first.repository, &a.tag, &specs).await;
                // name the registry as the images do, even when the controller used registry_api
                l.reference = reference.clone();
                for p in &mut l.platforms {
                    if let Some(i) = imgs.iter().find(|i| i.host == p.host) {
                        p.reference = i.reference.clone();
                    }
                }
                if let Some(e) = &l.error {
                    errors.push(format!("{reference}: {e}"));
                }
                lists.push(l);
            }
            rec.manifest_lists = lists;
        }
        rec.write(&record)
            .map_err(|e| ModuleError::Failed(e.to_string()))?;
        if let Some(dir) = part_path(&record, "x").parent() {
            let _ = std::fs::remove_dir_all(dir);
        }

        // the summary: every builder and every list
        let mut summary: Vec<(String, String)> = Vec::new();
        for (i, h) in a.builders.iter().enumerate() {
            let plat = ml::oci_platform(&arch_of(i))
                .map(|p| p.to_string())
                .unwrap_or(arch_of(i));
            let who = if plat.is_empty() {
                format!("builder {h}")
            } else {
                format!("builder {h} ({plat})")
            };
            let mine = || rec.images.iter().filter(|x| x.host.as_deref() == Some(h));
            let mut counts = format!(
                "{} pushed, {} push failed",
                mine().filter(|x| x.status == "pushed").count(),
                mine()
                    .filter(|x| x.status != "pushed" && !x.not_built())
                    .count()
            );
            match mine().filter(|x| x.not_built()).count() {
                0 => {}
                n => counts.push_str(&format!(", {n} not built")),
            }
            let line = match rec.failed_builders.iter().find(|f| &f.host == h) {
                Some(f) if mine().all(|x| x.not_built()) => {
                    format!("{who}: FAILED: {}", ml::one_line(&f.reason))
                }
                Some(f) => format!("{who}: {counts}: FAILED: {}", ml::one_line(&f.reason)),
                None => format!("{who}: {counts}"),
            };
            summary.push((line, plat));
        }
        for l in &rec.manifest_lists {
            let plats: Vec<&str> = l.platforms.iter().map(|p| p.platform.as_str()).collect();
            summary.push((
                format!(
                    "manifest list {} {} [{}]{}",
                    l.reference,
                    l.digest.as_deref().unwrap_or(&l.status),
                    l.platforms
                        .iter()
                        .map(|p| format!("{} {}", p.platform, p.digest))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if l.missing.is_empty() {
                        String::new()
                    } else {
                        format!(" missing {}", l.missing.join(", "))
                    }
                ),
                plats.join(","),
            ));
        }
        for (s, plat) in &summary {
            let mut f = Map::new();
            f.insert("platform".into(), Value::str(plat));
            ctx.progress.line_with(LineStream::Module, s.clone(), f);
        }
        let summary: Vec<String> = summary.into_iter().map(|(s, _)| s).collect();
        let lists: Vec<Value> = rec
            .manifest_lists
            .iter()
            .map(|l| {
                let mut m = Map::new();
                m.insert("name".into(), Value::str(&l.name));
                m.insert("reference".into(), Value::str(&l.reference));
                m.insert(
                    "digest".into(),
                    l.digest.as_deref().map(Value::str).unwrap_or(Value::Null),
                );
                m.insert("status".into(), Value::str(&l.status));
                m.insert(
                    "platforms".into(),
                    Value::List(
                        l.platforms
                            .iter()
                            .map(|p| {
                                let mut pm = Map::new();
                                pm.insert("platform".into(), Value::str(&p.platform));
                                pm.insert("digest".into(), Value::str(&p.digest));
                                pm.insert("reference".into(), Value::str(&p.reference));
                                Value::Map(pm)
                            })
                            .collect(),
                    ),
                );
                Value::Map(m)
            })
            .collect();
        let mut out = Outcome {
            changed: rec.manifest_lists.iter().any(|l| l.status == "pushed"),
            ..Default::default()
        }
        .with("record", Value::str(&a.record))
        .with("pushed", Value::List(complete_names(&rec)))
        .with("manifest_lists", Value::List(lists))
        .with(
            "failed_builders",
            Value::List(
                rec.failed_builders
                    .iter()
                    .map(|f| Value::str(&f.host))
                    .collect(),
            ),
        )
        .with(
            "summary",
            Value::List(summary.iter().map(Value::str).collect()),
        );
        if errors.is_empty() {
            Ok(out.with_msg(summary.join("\n")))
        } else {
            out.failed = true;
            Ok(out.with_msg(format!("{}\n{}", errors.join("\n"), summary.join("\n"))))
        }
    }
}

/// The images the whole run published under its tag, from every builder: each pushed image, and
/// in a multi-architecture run only those whose manifest list was pushed (`kolla-image-tags.yml`
/// may point only at a tag that names a complete set).
fn complete_names(rec: &crate::build::record::BuildRecord) -> Vec<Value> {
    let mut names: Vec<&str> = Vec::new();
    if rec.manifest_lists.is_empty() {
        for i in rec.pushed() {
            if !names.contains(&i.name.as_str()) {
                names.push(&i.name);
            }
        }
    } else {
        for l in rec.manifest_lists.iter().filter(|l| l.status == "pushed") {
            if !names.contains(&l.name.as_str()) {
                names.push(&l.name);
            }
        }
    }
    names.into_iter().map(Value::str).collect()
}
