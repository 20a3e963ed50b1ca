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
        after_help = "Examples:\n  kiln --environment ci-builder seed container image build\n  kiln seed container image build --push '^bifrost'\n  kiln seed container image build --push --multiarch\n  kiln overcloud container image build --nocache 'neutron-\\(server\\|metadata-agent\\)'\n  kiln seed container image build --check --diff -t kolla-build\n  kiln seed container image build --format json"
    )]
    Build(BuildArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub run: RunOpts,
    /// Push the built images after building them: kiln logs in with the vault's registry
    /// credentials, pushes with retries, reads each digest from the registry and writes the build
    /// record (`playbooks/container-image-publish.yml`).
    #[arg(long)]
    pub push: bool,
    /// With `--push`: point `kolla-image-tags.yml` at the pushed images (also on when the
    /// configuration sets `kiln_update_tags: true`).
    #[arg(long, requires = "push")]
    pub update_tags: bool,
    /// With `--push`: a multi-architecture run. Each builder builds for its `kolla_base_arch`
    /// (natively, or emulated with qemu-user-static), tags and pushes `<tag>-<arch>`, and kiln
    /// pushes one manifest list `<tag>` per image (an OCI image index) over the architectures.
    #[arg(long, requires = "push")]
    pub multiarch: bool,
    /// Do not use the engine's build cache.
    #[arg(long)]
    pub nocache: bool,
    /// Regular expressions matching names of images to build (all of the configured image sets
    /// when none). Written as in Kayobe: bash quote removal applies (`neutron-\(a\|b\)`).
    pub regex: Vec<String>,
    /// kiln's own: change nothing on any host (the preparation runs in check mode; facts are
    /// read) and write, for each builder host, `DIR/<host>/kolla-build.conf`,
    /// `template-override.j2`, `repos.yml` (when Kayobe would write one) and `plan.json` (tag,
    /// engine, registry, push, image sets with the regexes and argv kolla-build would receive).
    #[arg(long, value_name = "DIR")]
    pub plan: Option<PathBuf>,
    /// Build only images whose inputs changed since they were last published (and their
    /// descendants); tag the unchanged ones with the run's tag in the registry. Needs `--push`,
    /// or `--plan DIR` to only show what would be built and why.
    #[arg(long)]
    pub if_changed: bool,
    #[command(flatten)]
    pub notify: super::notify::NotifyOpts,
}

fn shipped(name: &str) -> PathBuf {
    let p = resolve_playbook(&PathBuf::from(name));
    std::path::absolute(&p).unwrap_or(p)
}

/// The variables Kayobe's verb passes with `-e`.
pub fn verb_vars(a: &BuildArgs, which: &str) -> Map {
    let mut vars = Map::new();
    vars.insert("nocache".into(), Value::Bool(a.nocache));
    // `--push` is kiln's publish step (retries, digests, record), chained after the build, so
    // kolla-build itself never pushes for the verb.
    vars.insert("push_images".into(), Value::Bool(false));
    if a.push {
        // the record's start is the build's, not the publish step's
        vars.insert(
            "kiln_build_started".into(),
            Value::Str(crate::build::record::now()),
        );
        vars.insert(
            "kiln_publish_images".into(),
            Value::str(
                "{{ (kiln_kolla_build.results | default([]) | selectattr('built', 'defined') \
                 | map(attribute='built') | list) | flatten | unique | list }}",
            ),
        );
    }
    if a.push {
        // a failed build still publishes what built, and its record says what did not
        vars.insert("kiln_push_after_build_failure".into(), Value::Bool(true));
        // the record points at the per-image logs fetched into the run folder
        vars.insert(
            "kiln_build_log_dir".into(),
            Value::str(
                "{{ kiln_build_fetch_dir | default(kayobe_config_path ~ '/kiln/builds/' \
                 ~ kolla_tag ~ '/' ~ inventory_hostname) }}",
            ),
        );
    }
    if a.update_tags {
        vars.insert("kiln_update_tags".into(), Value::Bool(true));
        vars.insert("kiln_update_tags_required".into(), Value::Bool(true));
    }
    if a.multiarch {
        vars.insert("kiln_multiarch".into(), Value::Bool(true));
    }
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
        cmd: ImageCmd::Build(mut b),
    }) = a.cmd;
    super::rebuild::check_args(&b)?;
    if let Some(dir) = b.plan.clone() {
        return plan(which, &mut b, &dir, g);
    }
    let started = crate::build::record::now();
    let words: &'static [&'static str] = if which == "seed" {
        &["seed", "container", "image", "build"]
    } else {
        &["overcloud", "container", "image", "build"]
    };
    let verb = Verb::new(words);
    let mut playbooks = vec![
        shipped("container-image-builders-check.yml"),
        shipped("kolla-build.yml"),
        shipped("container-image-build.yml"),
    ];
    let mut vars = verb_vars(&b, which);
    let inputs_dir = if b.if_changed {
        let d = tempfile::Builder::new().prefix("kiln-inputs-").tempdir()?;
        super::rebuild::vars(&mut vars, d.path(), false);
        playbooks.insert(2, shipped("container-image-inputs.yml"));
        Some(d)
    } else {
        None
    };
    if b.push {
        playbooks.push(shipped("container-image-publish.yml"));
    }
    let extra = vec![ExtraVars {
        origin: format!("{which} container image build"),
        vars,
    }];
    let code = run_playbooks(g, &b.run, &playbooks, &verb, extra.clone(), Mode::Run);
    if let Some(d) = &inputs_dir {
        super::rebuild::print_plans(&super::rebuild::plan_files(d.path()));
    }
    let rc = match &code {
        Ok(c) => *c,
        Err(_) => 1,
    };
    super::rebuild::notify(&b, g, which, extra, rc, &started);
    code
}

/// `--plan DIR`: the preparation playbook in check mode with `kiln_plan_dir` (the file-writing
/// actions copy what they would write to `DIR/<host>/`), then `plan.json` per builder host from
/// the host's variables, with the argv kolla-build would receive.
fn plan(
    which: &str,
    b: &mut BuildArgs,
    dir: &std::path::Path,
    g: &GlobalOpts,
) -> anyhow::Result<i32> {
    use crate::template::VarSource;
    use std::sync::Arc;
    std::fs::create_dir_all(dir)?;
    let dir = std::path::absolute(dir)?;
    b.run.check = true;
    let mut vars = verb_vars(b, which);
    vars.insert(
        "kiln_plan_dir".into(),
        Value::Str(dir.display().to_string()),
    );
    if b.if_changed {
        super::rebuild::vars(&mut vars, &dir, true);
    }
    let words: &[&str] = &["container", "image", "build", "plan"];
    let verb = Verb {
        words,
        pre_hooks: false,
        post_hooks: false,
    };
    let extra = vec![ExtraVars {
        origin: format!("{which} container image build --plan"),
        vars: vars.clone(),
    }];
    let code = run_playbooks(
        g,
        &b.run,
        &if b.if_changed {
            vec![
                shipped("container-image-builders-check.yml"),
                shipped("kolla-build.yml"),
                shipped("container-image-inputs.yml"),
            ]
        } else {
            vec![
                shipped("container-image-builders-check.yml"),
                shipped("kolla-build.yml"),
            ]
        },
        &verb,
        extra.clone(),
        Mode::Run,
    )?;
    if code != super::exit::OK {
        return Ok(code);
    }
    let loaded = super::context::load(g, extra, Vec::new())?;
    for host in builder_hosts(&loaded.run.inventory, b.run.limit.as_deref())? {
        let scope: Arc<dyn VarSource> = Arc::new(loaded.run.host_scope(&host)?);
        let get = |expr: &str| -> anyhow::Result<Value> {
            loaded
                .templar
                .template(&scope, &Value::Str(expr.to_string()), "--plan")
                .map_err(|e| anyhow::anyhow!("{host}: {expr}: {e}"))
        };
        let text = |expr: &str| -> anyhow::Result<String> {
            Ok(crate::template::py_str_value(&get(expr)?))
        };
        let sets_text: Vec<String> = if b.regex.is_empty() {
            get(&format!("{{{{ {which}_container_image_sets }}}}"))?
                .as_list()
                .unwrap_or(&[])
                .iter()
                .map(|s| {
                    s.get("regexes")
                        .map(crate::template::py_str_value)
                        .unwrap_or_default()
                })
                .collect()
        } else {
            vec![b.regex.join(" ")]
        };
        let registry = text("{{ kolla_docker_registry or '' }}")?;
        let line = crate::build::kolla::BuildLine {
            kolla_venv: text("{{ kolla_venv }}")?,
            config_dir: text("{{ kolla_build_config_path }}")?,
            engine: text("{{ container_engine }}")?,
            registry: Some(registry.clone()),
            // with --push kiln publishes after the build; kolla-build itself does not push
            push: false,
            nocache: b.nocache,
            platform: None,
        };
        let mut sets = Vec::new();
        for r in crate::build::kolla::image_sets("", &sets_text) {
            sets.push(line.argv(&r).map_err(|e| anyhow::anyhow!("{host}: {e}"))?);
        }
        let tag = text("{{ kolla_tag }}")?;
        let plan = serde_json::json!({
            "tag": tag,
            "engine": line.engine,
            "registry": registry,
            "push": b.push,
            "image_sets": sets,
        });
        let folder = dir.join(&host);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(
            folder.join("plan.json"),
            serde_json::to_string_pretty(&plan)? + "\n",
        )?;
        println!(
            "plan for {host}: tag {tag}, engine {}, {} image set(s) -> {}",
            line.engine,
            sets.len(),
            folder.display()
        );
        for s in &sets {
            println!("  {}", s.argv.join(" "));
        }
    }
    if b.if_changed {
        super::rebuild::print_plans(&super::rebuild::plan_files(&dir));
    }
    Ok(super::exit::OK)
}

/// The hosts of `container-image-builders` that `--limit` (parsed as ansible-playbook parses it)
/// leaves.
pub(super) fn builder_hosts(
    inv: &crate::config::inventory::Inventory,
    limit: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let hosts = inv
        .select("container-image-builders")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match super::inventory::parse_limit(limit)? {
        Some(l) => inv.limit(&hosts, &l).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(hosts),
    }
}
