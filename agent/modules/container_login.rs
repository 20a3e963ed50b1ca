//! `kiln.builtin.container_login`: Kayobe's `kayobe_container_login` as its
//! `container-image-build.yml` uses it before kolla-build: `docker login` / `podman login` into
//! the engine's default auth file, so the builds (and kolla-build's own `--push`) can pull and
//! push with the registry's credentials.
//!
//! The password goes to `login --password-stdin` on the engine's standard input, never on a
//! command line (a process list shows none); an engine error is shown with the password blanked.
//! `reauthorize` is accepted as Kayobe's module accepts it: the engines always log in again. In
//! check mode nothing is run (a login changes the auth file).

use super::support::args;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::build::push::{engine_error, Engine};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Registry host (`registry:port`); the engine's default registry when absent.
    #[serde(default, deserialize_with = "args::opt_string")]
    registry_url: Option<String>,
    #[serde(deserialize_with = "args::string")]
    username: String,
    #[serde(deserialize_with = "args::string")]
    password: String,
    /// `docker` or `podman` (default podman).
    #[serde(default, deserialize_with = "args::opt_string")]
    engine: Option<String>,
    /// Plain-http registry (podman: `--tls-verify=false`).
    #[serde(default, deserialize_with = "args::bool")]
    insecure: bool,
    #[serde(default, deserialize_with = "args::bool")]
    #[allow(dead_code)]
    reauthorize: bool,
}

pub struct ContainerLogin;

pub struct Plan {
    args: Args,
    engine: Engine,
}

impl Module for ContainerLogin {
    const NAMES: &'static [&'static str] = &[
        "container_login",
        "kiln.builtin.container_login",
        "kayobe_container_login",
    ];
    type Args = Args;
    type Plan = Plan;
    async fn query(&self, a: Args, _ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let engine =
            Engine::parse(a.engine.as_deref().unwrap_or("podman")).map_err(ModuleError::Args)?;
        if a.username.is_empty() {
            return Err(ModuleError::Args(
                "container_login: username is empty (kolla_docker_registry_username)".into(),
            ));
        }
        Ok(Query::Opaque(Plan { args: a, engine }))
    }
    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let registry = p.args.registry_url.clone().unwrap_or_default();
        let mut argv = p
            .engine
            .login_argv(&registry, &p.args.username, p.args.insecure);
        if registry.is_empty() {
            argv.pop();
        }
        let r = ctx
            .exec(crate::transport::ExecRequest {
                argv,
                stdin: format!("{}\n", p.args.password).into_bytes(),
                ..Default::default()
            })
            .await?;
        if r.rc != 0 {
            return Ok(Outcome::failed(format!(
                "{} login to {} as {} failed: {}; check kolla_docker_registry_username/_password",
                p.engine.program(),
                if registry.is_empty() {
                    "the default registry"
                } else {
                    &registry
                },
                p.args.username,
                engine_error(&r.stderr_text(), Some(&p.args.password))
            ))
            .with("rc", crate::value::Value::Int(r.rc as i64)));
        }
        Ok(Outcome::changed().with_msg(format!(
            "logged in to {} as {}",
            if registry.is_empty() {
                "the default registry"
            } else {
                &registry
            },
            p.args.username
        )))
    }
}
