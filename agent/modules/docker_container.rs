//! `community.docker.docker_container`: one Docker container matching a spec (name, image,
//! state, network_mode, ports, volumes, restart_policy, restart, recreate, command, labels).
//! The logic is shared with `podman_container` in `support/container.rs`: both drive the
//! engine's CLI with the same words; only the program differs.

use super::support::container::{self, Args, Plan};
use super::{Ctx, Module, ModuleError, Outcome, Query};

pub struct DockerContainer;

impl Module for DockerContainer {
    const NAMES: &'static [&'static str] =
        &["community.docker.docker_container", "docker_container"];
    type Args = Args;
    type Plan = Plan;
    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        container::query(a, ctx, "docker").await
    }
    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        container::apply(p, ctx).await
    }
}
