//! Pushing built images with the builder's container engine: the login, the per-image push with
//! retries, and the failed-push list, as stackhpc-kayobe-config's image build workflow does
//! (`docker push` up to 5 times, 5 s apart; `push-failed-images.txt` lists what never went).
//!
//! This file only shapes the commands and the retry loop; the module `kiln.builtin.image_push`
//! runs them on the builder through the agent.
//!
//! The login: the password goes to the engine's `login --password-stdin` on stdin, never on a
//! command line (no process list shows it) and never in output. The engine writes its auth file
//! into a fresh 0700 folder made for this run (`REGISTRY_AUTH_FILE` for podman, `DOCKER_CONFIG`
//! for docker), which the module removes when the pushes are done, failed or not.
//!
//! Where the registry client runs: on the controller. kiln's modules run there and reach hosts
//! through the agent, and what the digests feed (the build record, `kolla-image-tags.yml`) is the
//! controller's own configuration. In Kayobe's ci-builder layout the registry is a service on a
//! published address that the controller and every deploy host reach, so reading digests from the
//! controller also proves the images are reachable from outside the builder. When the registry
//! answers only on the builder, give the module `registry_api` (an address the controller can use
//! for the same registry, e.g. an SSH-forwarded port) rather than running a second HTTP client on
//! the host; the error for an unreachable registry says so.

use std::future::Future;
use std::time::{Duration, Instant};

/// A container engine kiln can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Podman,
    Docker,
}

impl Engine {
    pub fn parse(s: &str) -> Result<Engine, String> {
        match s {
            "podman" => Ok(Engine::Podman),
            "docker" => Ok(Engine::Docker),
            o => Err(format!(
                "container engine {o:?} is not supported: use podman or docker (kolla_container_engine)"
            )),
        }
    }
    pub fn program(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }
    /// The environment that points the engine at the auth folder `dir`.
    pub fn auth_env(self, dir: &str) -> Vec<(String, String)> {
        match self {
            Engine::Podman => vec![("REGISTRY_AUTH_FILE".into(), format!("{dir}/auth.json"))],
            Engine::Docker => vec![("DOCKER_CONFIG".into(), dir.to_string())],
        }
    }
    /// `login --username U --password-stdin REGISTRY` (the password goes on stdin).
    pub fn login_argv(self, registry: &str, username: &str, insecure: bool) -> Vec<String> {
        let mut v = vec![self.program().to_string(), "login".into()];
        if insecure && self == Engine::Podman {
            v.push("--tls-verify=false".into());
        }
        v.extend([
            "--username".into(),
            username.to_string(),
            "--password-stdin".into(),
            registry.to_string(),
        ]);
        v
    }
    /// `push REFERENCE`.
    pub fn push_argv(self, reference: &str, insecure: bool) -> Vec<String> {
        let mut v = vec![self.program().to_string(), "push".into()];
        if insecure && self == Engine::Podman {
            v.push("--tls-verify=false".into());
        }
        v.push(reference.to_string());
        v
    }
}

/// How one image's push went.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub reference: String,
    pub ok: bool,
    pub attempts: u32,
    /// The engine's (registry's) error from the last attempt.
    pub error: Option<String>,
    pub duration: Duration,
}

/// Push with retries: `attempts` tries in all, `delay` apart; `push` returns the engine's error.
pub async fn push_with_retries<F, Fut>(
    reference: &str,
    attempts: u32,
    delay: Duration,
    mut push: F,
) -> PushOutcome
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let attempts = attempts.max(1);
    let mut last = None;
    for i in 1..=attempts {
        match push(i).await {
            Ok(()) => {
                return PushOutcome {
                    reference: reference.to_string(),
                    ok: true,
                    attempts: i,
                    error: None,
                    duration: start.elapsed(),
                }
            }
            Err(e) => {
                last = Some(e);
                if i < attempts {
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    PushOutcome {
        reference: reference.to_string(),
        ok: false,
        attempts,
        error: last,
        duration: start.elapsed(),
    }
}

/// The useful part of an engine's error output: its last non-empty lines, with `secret` (if any)
/// blanked out in case an engine ever echoes it.
pub fn engine_error(stderr: &str, secret: Option<&str>) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // The engine's own `Error: ...` lines when it printed any (podman/docker), else the last lines.
    let errs: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("Error") || l.starts_with("error"))
        .collect();
    let pick = if errs.is_empty() {
        &lines[..]
    } else {
        &errs[..]
    };
    let tail = pick[pick.len().saturating_sub(3)..].join(" | ");
    let tail = match secret {
        Some(s) if !s.is_empty() => tail.replace(s, "********"),
        _ => tail,
    };
    if tail.is_empty() {
        "no error output".into()
    } else {
        tail
    }
}

/// The failed-push list file: one reference a line (stackhpc's `push-failed-images.txt`; empty
/// when all went).
pub fn failed_list_text(failed: &[String]) -> String {
    failed.iter().map(|f| format!("{f}\n")).collect()
}

/// The full reference of a built image: as given when it already names a registry path,
/// else `registry/namespace/name:tag` (kolla-build's naming with `--registry`).
pub fn image_reference(image: &str, registry: &str, namespace: &str, tag: &str) -> String {
    if image.contains('/') {
        return image.to_string();
    }
    let mut s = String::new();
    if !registry.is_empty() {
        s.push_str(registry.trim_end_matches('/'));
        s.push('/');
    }
    if !namespace.is_empty() {
        s.push_str(namespace.trim_matches('/'));
        s.push('/');
    }
    s.push_str(image);
    s.push(':');
    s.push_str(tag);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_then_reports_last_error() {
        let o = push_with_retries("r/x:1", 3, Duration::from_millis(1), |i| async move {
            Err(format!("attempt {i} refused"))
        })
        .await;
        assert!(!o.ok);
        assert_eq!(o.attempts, 3);
        assert_eq!(o.error.as_deref(), Some("attempt 3 refused"));
        let o = push_with_retries("r/x:1", 3, Duration::from_millis(1), |i| async move {
            if i == 2 {
                Ok(())
            } else {
                Err("no".into())
            }
        })
        .await;
        assert!(o.ok && o.attempts == 2);
    }

    #[test]
    fn commands_never_carry_the_password() {
        let v = Engine::Podman.login_argv("reg:5000", "kolla", true);
        assert!(v.contains(&"--password-stdin".to_string()));
        assert_eq!(
            engine_error("x\nbad pw hunter2\n", Some("hunter2")),
            "x | bad pw ********"
        );
        assert_eq!(
            image_reference("nova-api", "reg:5000", "kolla", "t"),
            "reg:5000/kolla/nova-api:t"
        );
    }
}
