//! `kiln.builtin.image_source`: MicroShift's per-architecture source rule for an image that is
//! not Kolla's, applied to a component folder on the host (`build/manifest_list.rs`):
//! `ImageSource.<arch>`, else `Dockerfile.<arch>`, else `ImageSource`, else `Dockerfile`. Returns
//! `kind` (`image`: copy `reference`; `dockerfile`: build `dockerfile`), so a play can branch:
//!
//! ```yaml
//! - kiln.builtin.image_source:
//!     dir: /opt/side-images/components/coredns
//!     arch: "{{ kolla_base_arch }}"
//!   register: src
//! - command: podman build --platform {{ src.platform }} -f {{ src.dockerfile }} -t {{ tag }} {{ src.dir }}
//!   when: src.kind == 'dockerfile'
//! - command: skopeo copy --override-arch {{ src.arch }} docker://{{ src.reference }} docker://{{ tag }}
//!   when: src.kind == 'image'
//! ```
//!
//! Reads only; runs in check mode too. A folder with none of the files, or an `ImageSource` that
//! does not hold exactly one reference, fails with the file (and line) and what to write.

use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::build::manifest_list::{self as ml, ArchSource};
use crate::value::Value;
use serde::Deserialize;
use std::path::Path;

pub struct ImageSource;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "super::support::args::string")]
    dir: String,
    #[serde(deserialize_with = "super::support::args::string")]
    arch: String,
}

impl Module for ImageSource {
    const NAMES: &'static [&'static str] = &["kiln.builtin.image_source", "image_source"];
    type Args = Args;
    type Plan = ();

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<()>, ModuleError> {
        let dir = Path::new(&a.dir);
        let mut found = None;
        for name in ml::source_candidates(&a.arch) {
            let p = dir.join(&name);
            let ps = p.display().to_string();
            let st = ctx.session.stat(&ps, true, false).await?;
            if !st.exists || st.kind != "file" {
                continue;
            }
            let text = if name.starts_with("ImageSource") {
                Some(String::from_utf8_lossy(&ctx.session.read_file(&ps).await?).into_owned())
            } else {
                None
            };
            found = Some(ml::parse_source(&p, &a.arch, text.as_deref()));
            break;
        }
        let src = match found {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Ok(Query::Done(Outcome::failed(e))),
            None => return Ok(Query::Done(Outcome::failed(ml::no_source(dir, &a.arch)))),
        };
        let platform = ml::oci_platform(&a.arch)
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut o = Outcome::ok()
            .with("dir", Value::str(&a.dir))
            .with("arch", Value::str(ml::oci_arch(&a.arch)))
            .with("platform", Value::str(&platform));
        match src {
            ArchSource::Image { reference, file } => {
                o = o
                    .with("kind", Value::str("image"))
                    .with("reference", Value::str(&reference))
                    .with("file", Value::str(file.display().to_string()))
                    .with_msg(format!("{}: copy {reference}", a.arch));
            }
            ArchSource::Dockerfile(p) => {
                o = o
                    .with("kind", Value::str("dockerfile"))
                    .with("dockerfile", Value::str(p.display().to_string()))
                    .with("file", Value::str(p.display().to_string()))
                    .with_msg(format!("{}: build {}", a.arch, p.display()));
            }
        }
        Ok(Query::Done(o))
    }

    async fn apply(&self, _p: (), _ctx: &Ctx) -> Result<Outcome, ModuleError> {
        Ok(Outcome::ok())
    }
}
