//! `kiln.builtin.kolla_inputs_record`: after an `--if-changed` run's publish step, the build
//! record says for every image of the run what its input hash is and why it was built or not:
//! built images get their inputs and reasons; unchanged images are added with status `unchanged`,
//! the digest the run's tag names (`kolla_inputs` tagged them) and the reference they kept. A
//! record is written even when nothing was built, so the next run (and `kiln build show`) sees the
//! complete set under the run's tag.

use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::build::if_changed::RunPlan;
use crate::build::inputs::{Decision, INPUT_HASH_LABEL};
use crate::build::push;
use crate::build::record::{self, BuildRecord, ImageRecord};
use crate::value::Value;
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    plan_file: String,
    #[serde(deserialize_with = "args::string")]
    record: String,
    #[serde(default, deserialize_with = "args::string")]
    registry: String,
    #[serde(default, deserialize_with = "args::string")]
    namespace: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    started: Option<String>,
}

pub struct KollaInputsRecord;

/// The record with the plan's inputs, reasons and unchanged images merged in.
pub fn merge(rec: &mut BuildRecord, plan: &RunPlan, a: &Args) {
    for p in &plan.images {
        let reason = match &p.decision {
            Decision::Unchanged => format!(
                "unchanged: same inputs as {}",
                p.published
                    .as_ref()
                    .map(|x| x.reference.as_str())
                    .unwrap_or("the published image")
            ),
            Decision::Build { reasons } => reasons.join(", "),
        };
        if let Some(i) = rec.images.iter_mut().find(|i| i.name == p.name) {
            i.inputs = Some(p.inputs.clone());
            i.reason = Some(reason);
            continue;
        }
        let reference = push::image_reference(&p.name, &a.registry, &a.namespace, &plan.tag);
        let mut labels = indexmap::IndexMap::new();
        labels.insert(INPUT_HASH_LABEL.to_string(), p.inputs.hash.clone());
        let (status, digest) = match &p.decision {
            Decision::Unchanged => ("unchanged", p.retagged.clone()),
            Decision::Build { .. } => ("failed", None),
        };
        rec.images.push(ImageRecord {
            name: p.name.clone(),
            reference,
            digest,
            status: status.into(),
            labels,
            inputs: Some(p.inputs.clone()),
            reason: Some(if status == "failed" {
                format!("to build ({reason}) but not built or not pushed")
            } else {
                reason
            }),
            ..Default::default()
        });
    }
}

impl Module for KollaInputsRecord {
    const NAMES: &'static [&'static str] =
        &["kolla_inputs_record", "kiln.builtin.kolla_inputs_record"];
    type Args = Args;
    type Plan = Args;
    async fn query(&self, a: Args, _ctx: &Ctx) -> Result<Query<Args>, ModuleError> {
        if !Path::new(&a.plan_file).exists() {
            return Ok(Query::Done(
                Outcome::ok().with_msg(format!("no --if-changed plan at {}", a.plan_file)),
            ));
        }
        Ok(Query::Opaque(a))
    }
    async fn apply(&self, a: Args, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let text = std::fs::read(&a.plan_file)
            .map_err(|e| ModuleError::Failed(format!("{}: {e}", a.plan_file)))?;
        let plan: RunPlan = serde_json::from_slice(&text).map_err(|e| {
            ModuleError::Failed(format!("{}: not an --if-changed plan: {e}", a.plan_file))
        })?;
        let path = Path::new(&a.record);
        let mut rec = match BuildRecord::read(path) {
            Ok(r) if r.tag == plan.tag => r,
            _ => {
                let mut r = BuildRecord::new(&plan.tag);
                if let Some(s) = &a.started {
                    r.started = s.clone();
                }
                r.hosts = vec![ctx.host.clone()];
                r.registry = Some(a.registry.clone());
                r
            }
        };
        merge(&mut rec, &plan, &a);
        rec.ended = record::now();
        rec.write(path)
            .map_err(|e| ModuleError::Failed(e.to_string()))?;
        let unchanged = rec
            .images
            .iter()
            .filter(|i| i.status == "unchanged")
            .count();
        Ok(Outcome::changed()
            .with("record", Value::str(&a.record))
            .with_msg(format!(
                "record {}: {} images, {unchanged} unchanged",
                a.record,
                rec.images.len()
            )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::if_changed::{PlannedImage, Published};
    use crate::build::inputs::ImageInputs;

    #[test]
    fn built_images_get_inputs_and_unchanged_ones_are_added() {
        let inputs = |h: &str| ImageInputs {
            hash: h.into(),
            parent: None,
            parts: Default::default(),
        };
        let plan = RunPlan {
            tag: "t2".into(),
            images: vec![
                PlannedImage {
                    name: "a".into(),
                    decision: Decision::Unchanged,
                    inputs: inputs("ha"),
                    published: Some(Published {
                        hash: "ha".into(),
                        parts: Default::default(),
                        reference: "r:5000/kb/a:t1".into(),
                        digest: Some("sha256:a".into()),
                        from: "record".into(),
                    }),
                    retagged: Some("sha256:a".into()),
                },
                PlannedImage {
                    name: "b".into(),
                    decision: Decision::Build {
                        reasons: vec!["parent a changed".into()],
                    },
                    inputs: inputs("hb"),
                    published: None,
                    retagged: None,
                },
            ],
            ..Default::default()
        };
        let mut rec = BuildRecord::new("t2");
        rec.images.push(ImageRecord {
            name: "b".into(),
            status: "pushed".into(),
            ..Default::default()
        });
        let a = Args {
            plan_file: String::new(),
            record: String::new(),
            registry: "r:5000".into(),
            namespace: "kb".into(),
            started: None,
        };
        merge(&mut rec, &plan, &a);
        assert_eq!(rec.images.len(), 2);
        assert_eq!(rec.images[0].reason.as_deref(), Some("parent a changed"));
        assert_eq!(rec.images[0].inputs.as_ref().unwrap().hash, "hb");
        let u = &rec.images[1];
        assert_eq!(
            (u.status.as_str(), u.reference.as_str(), u.digest.as_deref()),
            ("unchanged", "r:5000/kb/a:t2", Some("sha256:a"))
        );
        assert_eq!(u.labels[INPUT_HASH_LABEL], "ha");
        assert_eq!(
            u.reason.as_deref(),
            Some("unchanged: same inputs as r:5000/kb/a:t1")
        );
    }
}
