//! `kiln seed container image build` and `kiln overcloud container image build`: Kayobe's verbs
//! that build Kolla container images on the `container-image-builders` hosts.
//!
//! As Kayobe's `SeedContainerImageBuild` / `OvercloudContainerImageBuild`: the playbooks
//! `container-image-builders-check.yml` (fails when the group is empty), `kolla-build.yml` (kolla
//! installed, `kolla-build.conf`, `template-override.j2`, `repos.yml` written) and
//! `container-image-build.yml` (one kolla-build run per image set), with `nocache` and
//! `push_images`, and either `container_image_regexes` (the positional regexes, joined by spaces)
//! or `container_image_sets: "{{ seed_container_image_sets }}"` (resp. overcloud). The build's
//! lines stream live, `[host:arch] ...`. `playbook run`'s options (`-l`, `-e`, `-t`, `--check`,
//! `--diff`, `--format json`, hooks) apply.

use super::playbook::{resolve_playbook, run_playbooks, Mode, RunOpts, Verb};
use super::GlobalOpts;
use crate::config::vars::ExtraVars;
use crate::value::{Map, Value};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub cmd: ContainerCmd,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Container images.
    Image(ImageArgs),
}

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub cmd: ImageCmd,
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Build Kolla container images on the container-image-builders hosts (kolla-build).
    #[command(
        after_help = "Examples:\n  kiln --environment ci-builder seed container image build\n  kiln seed container image build --push '^bifrost'\n  kiln overcloud container image build --nocache 'neutron-\\(server\\|metadata-agent\\)'\n  kiln seed container image build --check --diff -t kolla-build\n  kiln seed container image build --format json"
    )]
    Build(BuildArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub run: RunOpts,
    /// Push images to the registry after building them.
    #[arg(long)]
    pub push: bool,
    /// Do not use the engine's build cache.
    #[arg(long)]
    pub nocache: bool,
    /// Regular expressions matching names of images to build (all of the configured image sets
    /// when none). Written as in Kayobe: bash quote removal applies (`neutron-\(a\|b\)`).
    pub regex: Vec<String>,
}

fn shipped(name: &str) -> PathBuf {
    let p = resolve_playbook(&PathBuf::from(name));
    std::path::absolute(&p).unwrap_or(p)
}

/// The variables Kayobe's verb passes with `-e`.
pub fn verb_vars(a: &BuildArgs, which: &str) -> Map {
    let mut vars = Map::new();
    vars.insert("nocache".into(), Value::Bool(a.nocache));
    vars.insert("push_images".into(), Value::Bool(a.push));
    if a.regex.is_empty() {
        vars.insert(
            "container_image_sets".into(),
            Value::Str(format!("{{{{ {which}_container_image_sets }}}}")),
        );
    } else {
        vars.insert(
            "container_image_regexes".into(),
            Value::Str(a.regex.join(" ")),
        );
    }
    vars
}

/// Run the verb for `which` (`seed` or `overcloud`).
pub fn run(which: &'static str, a: ContainerArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    let ContainerCmd::Image(ImageArgs {
        cmd: ImageCmd::Build(b),
    }) = a.cmd;
    let words: &'static [&'static str] = if which == "seed" {
        &["seed", "container", "image", "build"]
    } else {
        &["overcloud", "container", "image", "build"]
    };
    let verb = Verb::new(words);
    run_playbooks(
        g,
        &b.run,
        &[
            shipped("container-image-builders-check.yml"),
            shipped("kolla-build.yml"),
            shipped("container-image-build.yml"),
        ],
        &verb,
        vec![ExtraVars {
            origin: format!("{which} container image build"),
            vars: verb_vars(&b, which),
        }],
        Mode::Run,
    )
}
