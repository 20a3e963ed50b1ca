//! `kiln.builtin.kolla_image_tags`: point `kolla-image-tags.yml` at a newly pushed tag.
//!
//! Only the images that were pushed change (see `build/image_tags.rs` for the rules, which are
//! stackhpc-kayobe-config's `tools/kolla-images.py`); other entries and comments stay, and the
//! file is written atomically. The file is the controller's (it lives in the Kayobe
//! configuration), like `fetch`'s `dest`, so this module reads and writes it here, whatever host
//! the task runs for. `--check --diff` shows the change and writes nothing.
//!
//! ```yaml
//! - kiln.builtin.kolla_image_tags:
//!     path: "{{ kayobe_config_path }}/kolla-image-tags.yml"
//!     distro: "{{ kolla_base_distro }}-{{ kolla_base_distro_version }}"
//!     tag: "{{ kolla_tag }}"
//!     images: "{{ push_result.pushed }}"       # or record: <build record path>
//!     release: "{{ openstack_release }}"       # optional: validate as their tool does
//! ```

use super::{Ctx, Diff, Module, ModuleError, Outcome, Query};
use crate::build::image_tags;
use crate::build::record::BuildRecord;
use crate::value::Value;
use serde::Deserialize;
use std::path::PathBuf;

pub struct KollaImageTags;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    path: String,
    distro: String,
    #[serde(default)]
    tag: Option<String>,
    /// Pushed image names (or references).
    #[serde(default)]
    images: Option<Vec<String>>,
    /// A build record to take the tag and the pushed images from.
    #[serde(default)]
    record: Option<String>,
    /// Every image the deployment uses: lets a shared entry (`nova`, `openstack`) move when all
    /// of its containers were pushed.
    #[serde(default)]
    known_images: Vec<String>,
    /// OpenStack release (`2024.1`): check the result with stackhpc's tag rules.
    #[serde(default)]
    release: Option<String>,
}

pub struct Plan {
    path: PathBuf,
    after: String,
}

impl Module for KollaImageTags {
    const NAMES: &'static [&'static str] = &["kiln.builtin.kolla_image_tags", "kolla_image_tags"];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, args: Args, _ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let (tag, images) = match (&args.record, &args.images) {
            (Some(r), _) => {
                let rec = BuildRecord::read(std::path::Path::new(r))
                    .map_err(|e| ModuleError::Failed(e.to_string()))?;
                let imgs: Vec<String> = rec.pushed().map(|i| i.name.clone()).collect();
                (args.tag.clone().unwrap_or(rec.tag.clone()), imgs)
            }
            (None, Some(i)) => (
                args.tag.clone().ok_or_else(|| {
                    ModuleError::Args("kolla_image_tags: `tag` is required with `images`".into())
                })?,
                i.clone(),
            ),
            (None, None) => {
                return Err(ModuleError::Args(
                    "kolla_image_tags: give `images` (with `tag`) or `record`".into(),
                ))
            }
        };
        let path = PathBuf::from(&args.path);
        if images.is_empty() {
            return Ok(Query::Done(
                Outcome::ok().with_msg("no pushed images: nothing to change"),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ModuleError::Failed(format!(
                "{}: cannot read: {e}; create it with `kolla_image_tags: {{openstack: {{{}: <tag>}}}}`",
                path.display(),
                args.distro
            ))
        })?;
        let u = image_tags::plan_update(
            &path,
            &text,
            &args.distro,
            &tag,
            &images,
            &args.known_images,
        )
        .map_err(|e| ModuleError::Failed(e.to_string()))?;
        if let Some(rel) = &args.release {
            let map = image_tags::parse(&path, &u.after)
                .map_err(|e| ModuleError::Failed(e.to_string()))?;
            let errs = image_tags::validate(&map, rel, image_tags::SUPPORTED_BASE_DISTROS);
            if !errs.is_empty() {
                return Err(ModuleError::Failed(format!(
                    "{}: the updated file would not pass stackhpc's checks:\n{}",
                    path.display(),
                    errs.join("\n")
                )));
            }
        }
        let changes = Value::List(
            u.changes
                .iter()
                .map(|(k, _)| Value::str(k.as_str()))
                .collect(),
        );
        if !u.changed() {
            return Ok(Query::Done(Outcome::ok().with("updated", changes)));
        }
        let diff = Diff {
            before_header: Some(args.path.clone()),
            after_header: Some(args.path.clone()),
            before: u.before.clone(),
            after: u.after.clone(),
        };
        Ok(Query::Change {
            preview: Outcome::changed().with_diff(diff).with("updated", changes),
            plan: Plan {
                path,
                after: u.after,
            },
        })
    }

    async fn apply(&self, plan: Plan, _ctx: &Ctx) -> Result<Outcome, ModuleError> {
        image_tags::write_atomic(&plan.path, plan.after.as_bytes()).map_err(|e| {
            ModuleError::Failed(format!("{}: cannot write: {e}", plan.path.display()))
        })?;
        Ok(Outcome::changed())
    }
}
