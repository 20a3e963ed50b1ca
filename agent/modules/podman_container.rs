//! `containers.podman.podman_container`: one Podman container matching a spec (the arguments
//! `docker_container` takes, with podman's spellings `network`, `publish`/`published_ports`,
//! `volume`, `executable`, and state `created`). Shared logic: `support/container.rs`.
//!
//! Podman has no daemon to restart containers at boot: a restart policy of `always` is honoured
//! after a reboot by the `podman-restart.service` unit, which the `pulp_auth_proxy` role enables.

use super::support::container::{self, Args, Plan};
use super::{Ctx, Module, ModuleError, Outcome, Query};

pub struct PodmanContainer;

impl Module for PodmanContainer {
    const NAMES: &'static [&'static str] =
        &["containers.podman.podman_container", "podman_container"];
    type Args = Args;
    type Plan = Plan;
    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        container::query(a, ctx, "podman").await
    }
    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        container::apply(p, ctx).await
    }
}
