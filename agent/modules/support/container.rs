//! The shared core of `community.docker.docker_container` and `containers.podman.podman_container`:
//! one container made to match a spec through the engine's own CLI (`docker` or `podman`, whose
//! `inspect`/`run`/`rm`/`start`/`stop`/`restart` take the same words for what these modules use).
//!
//! Query reads `<engine> container inspect NAME` and compares it with the wanted spec through a
//! label, `kiln.config-hash`, that kiln puts on every container it creates (the hash of the
//! spec's canonical JSON, as docker compose's `config-hash`): engines report ports, binds and
//! restart policies in their own spellings and with their own defaults, a hash of what was asked
//! for compares exactly. The image is compared by ID (a re-tagged or re-pulled image recreates
//! the container). A container kiln did not create (no label) is recreated once.
//!
//! Apply runs exactly the planned commands: `rm -f` + `run -d` (or `create`), `start`, `stop`,
//! `restart`, `rm -f`. Everything is passed as argv, never through a shell.

use super::args;
use super::sysutil;
use crate::modules::{Ctx, Diff, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The label holding the hash of the spec a container was made from.
pub const HASH_LABEL: &str = "kiln.config-hash";

args::choices! {
    /// `state:` of `docker_container` and `podman_container` (podman's `created` is `present`).
    pub enum State for "state" default Started {
        Absent = "absent",
        Present = "present" | "created",
        Stopped = "stopped",
        Started = "started",
    }
}

/// The arguments both modules take (Ansible's names; podman's spellings as aliases).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(deserialize_with = "args::string")]
    pub name: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub image: Option<String>,
    /// started (default) | present | stopped | absent (podman's `created` = present).
    #[serde(default)]
    pub state: State,
    #[serde(default, alias = "network", deserialize_with = "args::opt_string")]
    pub network_mode: Option<String>,
    /// `[ip:]host:container[/proto]`, as `-p` takes them.
    #[serde(
        default,
        alias = "published_ports",
        alias = "publish",
        deserialize_with = "args::string_list"
    )]
    pub ports: Vec<String>,
    /// `src:dest[:opts]`, as `-v` takes them.
    #[serde(default, alias = "volume", deserialize_with = "args::string_list")]
    pub volumes: Vec<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub restart_policy: Option<String>,
    /// Restart the container even when nothing else changed (e.g. its config file did).
    #[serde(default, deserialize_with = "args::bool")]
    pub restart: bool,
    /// Remove and create it again even when it matches.
    #[serde(default, deserialize_with = "args::bool")]
    pub recreate: bool,
    #[serde(default)]
    pub command: Option<Value>,
    #[serde(default)]
    pub labels: Option<crate::value::Map>,
    /// Accepted for compatibility: containers always run detached.
    #[serde(default, deserialize_with = "args::opt_bool")]
    pub detach: Option<bool>,
    /// The engine's program (podman_container's `executable`); default `docker` / `podman`.
    #[serde(default, deserialize_with = "args::opt_string")]
    pub executable: Option<String>,
}

/// What to do to the container.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `rm -f` (if it exists) then `run -d` / `create`.
    Create {
        replace: bool,
        start: bool,
    },
    Start,
    Stop,
    Restart,
    Remove,
}

pub struct Plan {
    pub engine: String,
    pub name: String,
    pub step: Step,
    /// The `run`/`create` options and image (+ command), without the verb.
    pub run_args: Vec<String>,
}

/// The spec's canonical form: what the hash covers, and what `--diff` shows.
fn spec_text(a: &Args, policy: &str, net: &str) -> String {
    let mut s = String::new();
    s.push_str(&format!("image: {}\n", a.image.as_deref().unwrap_or("")));
    s.push_str(&format!("network_mode: {net}\n"));
    s.push_str(&format!("restart_policy: {policy}\n"));
    for p in &a.ports {
        s.push_str(&format!("port: {p}\n"));
    }
    for v in &a.volumes {
        s.push_str(&format!("volume: {v}\n"));
    }
    if let Some(c) = &a.command {
        s.push_str(&format!("command: {}\n", command_argv(c).join(" ")));
    }
    if let Some(l) = &a.labels {
        for (k, v) in l {
            s.push_str(&format!("label: {k}={}\n", text(v)));
        }
    }
    s
}

/// A scalar argument as text (strings as they are, numbers and booleans as JSON spells them).
fn text(v: &Value) -> String {
    match v.to_json(true) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn command_argv(c: &Value) -> Vec<String> {
    match c {
        Value::List(l) => l.iter().map(text).collect(),
        other => {
            let s = text(other);
            shell_words::split(&s)
                .unwrap_or_else(|_| s.split_whitespace().map(String::from).collect())
        }
    }
}

/// The options of `run`/`create` for this spec (pure: unit-tested).
pub fn run_args(a: &Args, policy: &str, net: &str, hash: &str) -> Vec<String> {
    let mut v = vec!["--name".to_string(), a.name.clone()];
    v.push("--label".into());
    v.push(format!("{HASH_LABEL}={hash}"));
    if let Some(l) = &a.labels {
        for (k, val) in l {
            v.push("--label".into());
            v.push(format!("{k}={}", text(val)));
        }
    }
    if !net.is_empty() && net != "default" {
        v.push(format!("--network={net}"));
    }
    if !policy.is_empty() {
        v.push(format!("--restart={policy}"));
    }
    // published ports are meaningless with the host's network (docker ignores them, podman
    // refuses them): leave them out there, the service itself must bind the right address
    if net != "host" {
        for p in &a.ports {
            v.push("--publish".into());
            v.push(p.clone());
        }
    }
    for m in &a.volumes {
        v.push("--volume".into());
        v.push(m.clone());
    }
    v.push(a.image.clone().unwrap_or_default());
    if let Some(c) = &a.command {
        v.extend(command_argv(c));
    }
    v
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// `<engine> container inspect NAME`'s first object, or None when there is no such container.
async fn inspect(
    ctx: &Ctx,
    engine: &str,
    name: &str,
) -> Result<Option<serde_json::Value>, ModuleError> {
    let argv = sysutil::argv(&[engine, "container", "inspect", name]);
    let r = sysutil::run(ctx, &argv).await.map_err(|e| {
        ModuleError::Failed(format!(
            "{e} (is {engine} installed on {}? the container engine comes from `container_engine`)",
            ctx.host
        ))
    })?;
    if r.rc != 0 {
        let err = r.stderr_text().to_lowercase();
        if err.contains("no such") || err.contains("not found") || err.contains("no container") {
            return Ok(None);
        }
        sysutil::check_rc(&argv, r)?;
        return Ok(None);
    }
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).map_err(|e| {
        ModuleError::Failed(format!(
            "{engine} container inspect {name}: unreadable JSON: {e}"
        ))
    })?;
    Ok(v.as_array().and_then(|a| a.first()).cloned())
}

/// The ID of a local image, or None when the engine does not have it (it would be pulled).
async fn image_id(ctx: &Ctx, engine: &str, image: &str) -> Result<Option<String>, ModuleError> {
    let argv = sysutil::argv(&[engine, "image", "inspect", "--format", "{{.Id}}", image]);
    let r = sysutil::run(ctx, &argv).await?;
    Ok((r.rc == 0).then(|| r.stdout_text().trim().to_string()))
}

fn norm_id(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

/// The query both modules share; `engine` is the default program (`docker` or `podman`).
pub async fn query(a: Args, ctx: &Ctx, engine: &str) -> Result<Query<Plan>, ModuleError> {
    let engine = a.executable.clone().unwrap_or_else(|| engine.to_string());
    let state = a.state.clone().checked()?;
    if state != State::Absent && a.image.as_deref().unwrap_or("").is_empty() {
        return Err(ModuleError::Args(format!(
            "container {}: `image` is required with state={}",
            a.name,
            state.as_str()
        )));
    }
    let policy = a.restart_policy.clone().unwrap_or_default();
    let net = a.network_mode.clone().unwrap_or_default();
    let spec = spec_text(&a, &policy, &net);
    let hash = sha256_hex(&spec);
    let current = inspect(ctx, &engine, &a.name).await?;
    let plan = |step: Step| Plan {
        engine: engine.clone(),
        name: a.name.clone(),
        step,
        run_args: run_args(&a, &policy, &net, &hash),
    };
    let base = Outcome::ok().with("container_name", a.name.as_str());
    let Some(cur) = current else {
        if state == State::Absent {
            return Ok(Query::Done(base));
        }
        let preview = Outcome::changed().with_diff(Diff {
            before_header: Some(format!("container {}", a.name)),
            after_header: Some(format!("container {}", a.name)),
            before: "state: absent\n".into(),
            after: format!("state: {}\n{spec}", state.as_str()),
        });
        return Ok(Query::Change {
            plan: plan(Step::Create {
                replace: false,
                start: state == State::Started,
            }),
            preview,
        });
    };
    let running = cur["State"]["Running"].as_bool().unwrap_or(false);
    let cur_state = if running { "started" } else { "stopped" };
    let base = base.with("container", crate::value::Value::from_json(cur.clone()));
    if state == State::Absent {
        let preview = Outcome::changed().with_diff(Diff {
            before_header: Some(format!("container {}", a.name)),
            after_header: Some(format!("container {}", a.name)),
            before: format!("state: {cur_state}\n"),
            after: "state: absent\n".into(),
        });
        return Ok(Query::Change {
            plan: plan(Step::Remove),
            preview,
        });
    }
    let cur_hash = cur["Config"]["Labels"][HASH_LABEL].as_str().unwrap_or("");
    let cur_image = cur["Image"].as_str().unwrap_or("");
    let want_image = image_id(ctx, &engine, a.image.as_deref().unwrap_or("")).await?;
    let image_differs = match &want_image {
        Some(id) => norm_id(id) != norm_id(cur_image),
        None => true, // not present locally: the run pulls it
    };
    let step = if a.recreate || cur_hash != hash || image_differs {
        Some(Step::Create {
            replace: true,
            start: state == State::Started,
        })
    } else {
        match (&state, running) {
            (State::Started, false) => Some(Step::Start),
            (State::Started, true) if a.restart => Some(Step::Restart),
            (State::Stopped, true) => Some(Step::Stop),
            _ => None,
        }
    };
    let Some(step) = step else {
        return Ok(Query::Done(base));
    };
    let why = match &step {
        Step::Create { .. } if a.recreate => "recreate requested\n".to_string(),
        Step::Create { .. } if cur_hash != hash => "spec changed\n".to_string(),
        Step::Create { .. } => "image changed\n".to_string(),
        Step::Restart => "restart requested\n".to_string(),
        _ => String::new(),
    };
    let preview = Outcome::changed().with_diff(Diff {
        before_header: Some(format!("container {}", a.name)),
        after_header: Some(format!("container {}", a.name)),
        before: format!("state: {cur_state}\n"),
        after: format!(
            "state: {}\n{why}",
            if state == State::Present {
                cur_state
            } else {
                state.as_str()
            }
        ),
    });
    Ok(Query::Change {
        plan: plan(step),
        preview,
    })
}

/// Run the planned commands.
pub async fn apply(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    let e = p.engine.as_str();
    match &p.step {
        Step::Create { replace, start } => {
            if *replace {
                sysutil::run_ok(ctx, &sysutil::argv(&[e, "rm", "-f", &p.name])).await?;
            }
            let mut argv = sysutil::argv(&[e]);
            if *start {
                argv.extend(["run".to_string(), "--detach".to_string()]);
            } else {
                argv.push("create".into());
            }
            argv.extend(p.run_args.iter().cloned());
            // a pull can take a while: its lines go to the progress channel
            let r = ctx
                .exec_progress(crate::transport::ExecRequest {
                    argv: argv.clone(),
                    env: ctx.env.clone(),
                    ..Default::default()
                })
                .await?;
            sysutil::check_rc(&argv, r)?;
        }
        Step::Start => {
            sysutil::run_ok(ctx, &sysutil::argv(&[e, "start", &p.name])).await?;
        }
        Step::Stop => {
            sysutil::run_ok(ctx, &sysutil::argv(&[e, "stop", &p.name])).await?;
        }
        Step::Restart => {
            sysutil::run_ok(ctx, &sysutil::argv(&[e, "restart", &p.name])).await?;
        }
        Step::Remove => {
            sysutil::run_ok(ctx, &sysutil::argv(&[e, "rm", "-f", &p.name])).await?;
            return Ok(Outcome::changed().with("container_name", p.name.as_str()));
        }
    }
    let mut o = Outcome::changed().with("container_name", p.name.as_str());
    if let Some(cur) = inspect(ctx, e, &p.name).await? {
        o = o.with("container", crate::value::Value::from_json(cur.clone()));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(yaml: &str) -> Args {
        let v = crate::yaml::load(yaml, "t").unwrap();
        args::decode("docker_container", v.as_map().unwrap()).unwrap()
    }

    #[test]
    fn host_network_drops_published_ports() {
        let x = a("{name: p, image: 'nginx:stable-alpine', network_mode: host, ports: ['127.0.0.1:80:80'], volumes: ['/c/p.conf:/etc/nginx/conf.d/default.conf:ro'], restart_policy: always}");
        let v = run_args(&x, "always", "host", "h");
        assert!(!v.contains(&"--publish".to_string()), "{v:?}");
        assert!(v.contains(&"--network=host".to_string()));
        assert!(v.contains(&"--restart=always".to_string()));
        assert_eq!(v.last().unwrap(), "nginx:stable-alpine");
        let v = run_args(&x, "always", "bridge", "h");
        assert!(v
            .windows(2)
            .any(|w| w[0] == "--publish" && w[1] == "127.0.0.1:80:80"));
    }

    #[test]
    fn spec_hash_changes_with_the_spec() {
        let x = a("{name: p, image: i, volumes: ['/a:/b']}");
        let y = a("{name: p, image: i, volumes: ['/a:/c']}");
        assert_ne!(spec_text(&x, "", ""), spec_text(&y, "", ""));
        assert_eq!(
            spec_text(&x, "always", "host"),
            spec_text(&x, "always", "host")
        );
    }

    #[test]
    fn unknown_arguments_are_refused() {
        let v = crate::yaml::load("{name: p, image: i, bogus: 1}", "t").unwrap();
        assert!(args::decode::<Args>("docker_container", v.as_map().unwrap()).is_err());
    }
}
