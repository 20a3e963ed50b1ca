//! `kiln build show|list|tags`: read the build records that a push writes
//! (`<config path>/kiln/builds/<tag>.json`) and point `kolla-image-tags.yml` at a build.

use super::{exit, GlobalOpts};
use crate::build::{image_tags, record};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
kiln build list\n  \
kiln build show                      (the latest record)\n  \
kiln build show 2024.1-rocky-9-20261203T041000 --json\n  \
kiln build tags --distro rocky-9 --known-images-file etc/kayobe/pulp.yml --check --diff\n\n\
Records are written by `kiln.builtin.image_push` (playbooks/container-image-publish.yml).")]
pub struct BuildArgs {
    #[command(subcommand)]
    pub command: BuildCommand,
}

#[derive(Subcommand, Debug)]
pub enum BuildCommand {
    /// Print a build record (the latest by default), ending with the image → digest table.
    Show {
        /// The build tag (default: the newest record).
        tag: Option<String>,
        /// A record file instead of `<config path>/kiln/builds/<tag>.json`.
        #[arg(long)]
        record: Option<PathBuf>,
        /// The record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the build records, oldest first.
    List,
    /// Update kolla-image-tags.yml from a build record: only the pushed images change.
    Tags {
        /// The build tag (default: the newest record).
        tag: Option<String>,
        #[arg(long)]
        record: Option<PathBuf>,
        /// The tags file (default `<config path>/kolla-image-tags.yml`).
        #[arg(long)]
        file: Option<PathBuf>,
        /// `<distro>-<version>` key, e.g. rocky-9 or ubuntu-jammy.
        #[arg(long)]
        distro: String,
        /// Every image the deployment uses (repeatable): lets shared entries move.
        #[arg(long = "known-image")]
        known_images: Vec<String>,
        /// A YAML file with every image: a list, or stackhpc's `pulp.yml`
        /// (`stackhpc_pulp_images_kolla`).
        #[arg(long)]
        known_images_file: Option<PathBuf>,
        /// Check the result against stackhpc's rules for this OpenStack release (e.g. 2024.1).
        #[arg(long)]
        release: Option<String>,
        /// Change nothing; with --diff, show what would change.
        #[arg(long)]
        check: bool,
        #[arg(long)]
        diff: bool,
    },
}

fn config_path(g: &GlobalOpts) -> anyhow::Result<PathBuf> {
    g.config_path.clone().context(
        "no Kayobe configuration path: pass --config-path (or set KAYOBE_CONFIG_PATH), or --record PATH",
    )
}

fn load(
    g: &GlobalOpts,
    tag: Option<&str>,
    rec: Option<&Path>,
) -> anyhow::Result<(PathBuf, record::BuildRecord)> {
    if let Some(p) = rec {
        return Ok((p.to_path_buf(), record::BuildRecord::read(p)?));
    }
    let cp = config_path(g)?;
    match tag {
        Some(t) => {
            let p = record::default_path(&cp, t)?;
            if !p.exists() {
                bail!(
                    "no build record for tag {t} ({}); `kiln build list` shows the recorded builds",
                    p.display()
                );
            }
            let r = record::BuildRecord::read(&p)?;
            Ok((p, r))
        }
        None => {
            let l = record::latest(&record::records_dir(&cp))?;
            Ok((l.path, l.record))
        }
    }
}

pub fn run(a: BuildArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    match a.command {
        BuildCommand::Show { tag, record, json } => {
            let (p, r) = load(g, tag.as_deref(), record.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.render(Some(&p)));
            }
            Ok(exit::OK)
        }
        BuildCommand::List => {
            let dir = record::records_dir(&config_path(g)?);
            let (items, errs) = record::list(&dir);
            for e in &errs {
                eprintln!("WARNING: {e}");
            }
            if items.is_empty() {
                println!("no build records in {}", dir.display());
                return Ok(exit::OK);
            }
            let w = items
                .iter()
                .map(|i| i.record.tag.len())
                .max()
                .unwrap_or(3)
                .max(3);
            println!(
                "{:<w$}  {:<24}  {:>6}  {:>6}  {:>6}",
                "TAG", "ENDED", "IMAGES", "PUSHED", "FAILED"
            );
            for i in &items {
                let r = &i.record;
                println!(
                    "{:<w$}  {:<24}  {:>6}  {:>6}  {:>6}",
                    r.tag,
                    r.ended,
                    r.images.len(),
                    r.pushed().count(),
                    r.failed_pushes.len()
                );
            }
            Ok(exit::OK)
        }
        BuildCommand::Tags {
            tag,
            record,
            file,
            distro,
            mut known_images,
            known_images_file,
            release,
            check,
            diff,
        } => {
            if let Some(f) = &known_images_file {
                known_images.extend(read_known_images(f)?);
            }
            let (rp, r) = load(g, tag.as_deref(), record.as_deref())?;
            let file = match file {
                Some(f) => f,
                None => config_path(g)?.join("kolla-image-tags.yml"),
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read", file.display()))?;
            let pushed: Vec<String> = r.pushed().map(|i| i.name.clone()).collect();
            if pushed.is_empty() {
                println!("{}: no pushed images: nothing to change", rp.display());
                return Ok(exit::OK);
            }
            let u = image_tags::plan_update(&file, &text, &distro, &r.tag, &pushed, &known_images)?;
            if let Some(rel) = &release {
                let errs = image_tags::validate(
                    &image_tags::parse(&file, &u.after)?,
                    rel,
                    image_tags::SUPPORTED_BASE_DISTROS,
                );
                if !errs.is_empty() {
                    bail!(
                        "{}: the updated file would not pass stackhpc's checks:\n{}",
                        file.display(),
                        errs.join("\n")
                    );
                }
            }
            if diff || check {
                print!("{}", u.diff(&file.display().to_string()));
            }
            if !u.changed() {
                println!("{}: already at {}", file.display(), r.tag);
            } else if !check {
                image_tags::write_atomic(&file, u.after.as_bytes())
                    .with_context(|| format!("{}: cannot write", file.display()))?;
                let keys: Vec<&str> = u.changes.iter().map(|(k, _)| k.as_str()).collect();
                println!("{}: {} set to {}", file.display(), keys.join(", "), r.tag);
            }
            Ok(exit::OK)
        }
    }
}

/// Image names from a YAML list, or from `stackhpc_pulp_images_kolla` in a vars file.
fn read_known_images(f: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?;
    let v = crate::yaml::load(&text, &f.display().to_string())
        .with_context(|| format!("{}: not YAML", f.display()))?;
    let list = match v {
        crate::value::Value::List(l) => l,
        crate::value::Value::Map(mut m) => match m.shift_remove("stackhpc_pulp_images_kolla") {
            Some(crate::value::Value::List(l)) => l,
            Some(_) => bail!("{}: the image list must be a list of names", f.display()),
            None => bail!(
                "{}: neither a list of images nor a file with `stackhpc_pulp_images_kolla`",
                f.display()
            ),
        },
        _ => bail!(
            "{}: neither a list of images nor a file with `stackhpc_pulp_images_kolla`",
            f.display()
        ),
    };
    list.iter()
        .map(|i| {
            i.as_str()
                .map(String::from)
                .with_context(|| format!("{}: the image list must be a list of names", f.display()))
        })
        .collect()
}
