//! Ansible's modules, one file each, named as Ansible names them.
//!
//! A module runs on the controller and reaches the host only through the agent operations of a
//! [`Session`] (exec, stat, read/write file, ...): one message on an open channel each, never a
//! Python start-up. Every module has two steps:
//!
//! * **query** compares what the arguments want with what the host has and returns either "nothing
//!   to do" (an [`Outcome`] with `changed: false`) or a *plan*: the exact changes, with the diff to
//!   show. Check mode and `--diff` stop here.
//! * **apply** makes exactly the planned changes and returns the outcome.
//!
//! Arguments are a serde struct with `deny_unknown_fields`, decoded from the task's templated
//! arguments with Ansible's lenient typing (`"yes"` is true, `0644` and `"0644"` are both modes; see
//! [`args`]). A module that cannot tell what would change without doing it (`command` without
//! `creates`) returns [`Query::Opaque`]; in check mode the engine reports it as skipped, as Ansible does.
//!
//! The engine looks modules up by any of their names ([`lookup`]); an unknown name is a load-time
//! error. Controller-side actions (`debug`, `set_fact`, `template`'s rendering, includes, ...) are
//! the engine's, not modules.

pub mod apt;
pub mod authorized_key;
pub mod blockinfile;
pub mod command;
pub mod container_login;
pub mod copy;
pub mod credential_scan;
pub mod dnf;
pub mod docker_container;
pub mod fetch;
pub mod file;
pub mod filesystem;
pub mod find;
pub mod get_url;
pub mod git;
pub mod group;
pub mod hostname;
pub mod image_push;
pub mod image_source;
pub mod ini_file;
pub mod known_hosts;
pub mod kolla_build;
pub mod kolla_image_tags;
pub mod kolla_inputs;
pub mod kolla_inputs_record;
pub mod lineinfile;
pub mod lvg;
pub mod lvol;
pub mod manifest_list;
pub mod modprobe;
pub mod mount;
pub mod network;
pub mod package;
pub mod ping;
pub mod pip;
pub mod podman_container;
pub mod progress;
pub mod raw;
pub mod replace;
pub mod script;
pub mod service;
pub mod slurp;
pub mod stat;
pub mod support;
pub mod sysctl;
pub mod systemd;
pub mod uri;
pub mod user;
pub mod wait_for;

use crate::transport::{Session, TransportError};
use crate::value::{Map, Value};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

/// What a module gets besides its arguments.
#[derive(Clone)]
pub struct Ctx {
    /// The inventory hostname (for messages).
    pub host: String,
    /// The agent on the host, as the task's (become) user.
    pub session: Arc<Session>,
    /// Check mode: query only, change nothing.
    pub check: bool,
    /// Produce diffs.
    pub diff: bool,
    /// The task's `environment`, added to every command it runs.
    pub env: Vec<(String, String)>,
    /// Controller directories searched for a relative `src` (role dir, playbook dir, ...), in order;
    /// see [`Ctx::find_local`].
    pub search: Vec<PathBuf>,
    /// Facts already known for the host (`ansible_facts`, without prefix); empty when not gathered.
    pub facts: Arc<Map>,
    /// Where the module says what it is doing while it runs (`progress.rs`); [`Progress::none`]
    /// unless the task streams.
    pub progress: progress::Progress,
}

impl Ctx {
    /// Find a controller-side file as Ansible does for `src`: absolute as given; otherwise
    /// `<dir>/<kind>/<rel>` then `<dir>/<rel>` for each search dir (`kind` is `files` or `templates`).
    pub fn find_local(&self, kind: &str, rel: &str) -> Option<PathBuf> {
        let p = std::path::Path::new(rel);
        if p.is_absolute() {
            return p.exists().then(|| p.to_path_buf());
        }
        for d in &self.search {
            for c in [d.join(kind).join(rel), d.join(rel)] {
                if c.exists() {
                    return Some(c);
                }
            }
        }
        None
    }

    /// A fact by name (`os_family`, `pkg_mgr`, ...), as text.
    pub fn fact(&self, name: &str) -> Option<&str> {
        self.facts.get(name).and_then(|v| v.as_str())
    }

    /// The request with the task's `environment:` under its own variables (the request's win).
    fn with_env(&self, mut req: crate::transport::ExecRequest) -> crate::transport::ExecRequest {
        let mut env = self.env.clone();
        for (k, v) in std::mem::take(&mut req.env) {
            env.retain(|(x, _)| *x != k);
            env.push((k, v));
        }
        req.env = env;
        req
    }

    /// Run a command on the host with the task's `environment:`: the one way modules run
    /// programs (only `raw` goes around it, as Ansible's raw ignores `environment:`).
    pub async fn exec(
        &self,
        req: crate::transport::ExecRequest,
    ) -> Result<crate::transport::ExecResult, crate::transport::TransportError> {
        self.session.exec(self.with_env(req)).await
    }

    /// Run a command (argv, no shell) with the task's environment.
    pub async fn run(&self, argv: &[&str]) -> Result<crate::transport::ExecResult, ModuleError> {
        Ok(self
            .exec(crate::transport::ExecRequest {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            })
            .await?)
    }

    /// Run a command with the task's environment; when the task streams, each line of its output goes to the progress
    /// channel as it is printed (and is still collected for the result).
    pub async fn exec_progress(
        &self,
        req: crate::transport::ExecRequest,
    ) -> Result<crate::transport::ExecResult, crate::transport::TransportError> {
        let req = self.with_env(req);
        if !self.progress.enabled() {
            return self.session.exec(req).await;
        }
        use progress::{LineSplitter, LineStream};
        let (mut out, mut err) = (LineSplitter::default(), LineSplitter::default());
        let p = &self.progress;
        let r = self
            .session
            .exec_streaming(req, |stream, data| {
                let (split, which) = match stream {
                    crate::transport::Stream::Stdout => (&mut out, LineStream::Stdout),
                    crate::transport::Stream::Stderr => (&mut err, LineStream::Stderr),
                };
                for line in split.push(data) {
                    p.line(which, line);
                }
            })
            .await;
        for (split, which) in [
            (&mut out, LineStream::Stdout),
            (&mut err, LineStream::Stderr),
        ] {
            if let Some(line) = split.finish() {
                p.line(which, line);
            }
        }
        r
    }
}

/// One file's (or one item's) change, as Ansible's `diff` result: shown with `--diff`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    pub before_header: Option<String>,
    pub after_header: Option<String>,
    pub before: String,
    pub after: String,
}

impl Diff {
    /// Headers only: Ansible's "(file attributes)" entry when no attribute changed.
    pub fn headers(before: String, after: String) -> Diff {
        Diff {
            before_header: Some(before),
            after_header: Some(after),
            ..Default::default()
        }
    }

    /// Ansible's diff dict (`before`, `after`, `before_header`, `after_header`); a headers-only
    /// entry has no before/after.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if !(self.before.is_empty() && self.after.is_empty() && self.before_header.is_some()) {
            m.insert("before".into(), Value::Str(self.before.clone()));
            m.insert("after".into(), Value::Str(self.after.clone()));
        }
        if let Some(h) = &self.before_header {
            m.insert("before_header".into(), Value::Str(h.clone()));
        }
        if let Some(h) = &self.after_header {
            m.insert("after_header".into(), Value::Str(h.clone()));
        }
        Value::Map(m)
    }
}

/// What a module reports: Ansible's result dict, split into the parts the engine reads.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub changed: bool,
    /// The module failed (a command's non-zero rc, a missing package, ...); `msg` says why.
    pub failed: bool,
    pub msg: Option<String>,
    pub diff: Vec<Diff>,
    /// Return `diff` as a list even when it has one entry (copy/template, lineinfile do).
    pub diff_list: bool,
    /// Module-specific return values (`rc`, `stdout`, `dest`, `stat`, ...), in Ansible's names.
    pub data: Map,
}

impl Outcome {
    pub fn ok() -> Self {
        Outcome::default()
    }
    pub fn changed() -> Self {
        Outcome {
            changed: true,
            ..Default::default()
        }
    }
    pub fn failed(msg: impl Into<String>) -> Self {
        Outcome {
            failed: true,
            msg: Some(msg.into()),
            ..Default::default()
        }
    }
    pub fn with(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.data.insert(key.to_string(), v.into());
        self
    }
    pub fn with_msg(mut self, msg: impl Into<String>) -> Self {
        self.msg = Some(msg.into());
        self
    }
    pub fn with_diff(mut self, d: Diff) -> Self {
        self.diff.push(d);
        self
    }

    /// Ansible's result dict: data, then `changed`, `failed` (only when true), `msg`, `diff`.
    pub fn to_map(&self) -> Map {
        let mut m = self.data.clone();
        m.insert("changed".into(), Value::Bool(self.changed));
        if self.failed {
            m.insert("failed".into(), Value::Bool(true));
        }
        if let Some(msg) = &self.msg {
            m.insert("msg".into(), Value::Str(msg.clone()));
        }
        match self.diff.len() {
            0 => {}
            1 if !self.diff_list => {
                m.insert("diff".into(), self.diff[0].to_value());
            }
            _ => {
                m.insert(
                    "diff".into(),
                    Value::List(self.diff.iter().map(Diff::to_value).collect()),
                );
            }
        }
        m
    }
}

/// What the query step found.
pub enum Query<P> {
    /// The host already is as wanted (or the module only reads): report this.
    Done(Outcome),
    /// These changes are needed; `preview` is what check mode reports (`changed: true`, the diff).
    Change { plan: P, preview: Outcome },
    /// The module cannot tell without doing it (`command`): apply runs; check mode skips.
    Opaque(P),
}

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// Bad arguments: the task fails with this message (Ansible's "Unsupported parameters ...").
    #[error("{0}")]
    Args(String),
    /// The host could not be reached or the agent failed; an unreachable host or a failed task.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The module failed with a message.
    #[error("{0}")]
    Failed(String),
}

/// A module, typed. See the module docs above for the query → apply flow.
pub trait Module: Send + Sync + 'static {
    /// The names the module answers to: short, `ansible.builtin.*`, and the usual collection names.
    const NAMES: &'static [&'static str];
    /// Whether the module's `diff` result is always a list (Ansible's copy/template are).
    const DIFF_LIST: bool = false;
    type Args: DeserializeOwned + Send;
    type Plan: Send;
    fn query(
        &self,
        args: Self::Args,
        ctx: &Ctx,
    ) -> impl Future<Output = Result<Query<Self::Plan>, ModuleError>> + Send;
    fn apply(
        &self,
        plan: Self::Plan,
        ctx: &Ctx,
    ) -> impl Future<Output = Result<Outcome, ModuleError>> + Send;
}

/// A module behind a uniform interface, for the registry.
pub trait DynModule: Send + Sync {
    fn names(&self) -> &'static [&'static str];
    /// Decode arguments only (load-time check of literal arguments).
    fn check_args(&self, args: &Map) -> Result<(), ModuleError>;
    /// Query, then apply unless in check mode. `Ok(None)`: check mode and the module cannot tell.
    fn run<'a>(
        &'a self,
        args: &'a Map,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, Result<Option<Outcome>, ModuleError>>;
}

struct Erased<M>(M);

impl<M: Module> DynModule for Erased<M> {
    fn names(&self) -> &'static [&'static str] {
        M::NAMES
    }
    fn check_args(&self, args: &Map) -> Result<(), ModuleError> {
        support::args::decode::<M::Args>(M::NAMES[0], args).map(|_| ())
    }
    fn run<'a>(
        &'a self,
        args: &'a Map,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, Result<Option<Outcome>, ModuleError>> {
        Box::pin(async move {
            let a = support::args::decode::<M::Args>(M::NAMES[0], args)?;
            let r = self.run_typed(a, ctx).await;
            r.map(|o| {
                o.map(|mut o| {
                    o.diff_list |= M::DIFF_LIST;
                    o
                })
            })
        })
    }
}

impl<M: Module> Erased<M> {
    async fn run_typed(&self, a: M::Args, ctx: &Ctx) -> Result<Option<Outcome>, ModuleError> {
        {
            match self.0.query(a, ctx).await? {
                Query::Done(o) => Ok(Some(o)),
                Query::Change { preview, .. } if ctx.check => Ok(Some(preview)),
                Query::Change { plan, preview } => {
                    let mut o = self.0.apply(plan, ctx).await?;
                    if o.diff.is_empty() {
                        o.diff = preview.diff;
                    }
                    Ok(Some(o))
                }
                Query::Opaque(_) if ctx.check => Ok(None),
                Query::Opaque(plan) => self.0.apply(plan, ctx).await.map(Some),
            }
        }
    }
}

fn registry() -> &'static [Box<dyn DynModule>] {
    static R: std::sync::OnceLock<Vec<Box<dyn DynModule>>> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        vec![
            Box::new(Erased(ping::Ping)),
            Box::new(Erased(command::Command)),
            Box::new(Erased(command::Shell)),
            Box::new(Erased(copy::Copy)),
            Box::new(Erased(file::File)),
            Box::new(Erased(lineinfile::LineInFile)),
            Box::new(Erased(slurp::Slurp)),
            Box::new(Erased(blockinfile::BlockInFile)),
            Box::new(Erased(replace::Replace)),
            Box::new(Erased(fetch::Fetch)),
            Box::new(Erased(find::Find)),
            Box::new(Erased(ini_file::IniFile)),
            Box::new(Erased(stat::Stat)),
            Box::new(Erased(user::User)),
            Box::new(Erased(group::Group)),
            Box::new(Erased(authorized_key::AuthorizedKey)),
            Box::new(Erased(sysctl::Sysctl)),
            Box::new(Erased(mount::Mount)),
            Box::new(Erased(apt::Apt)),
            Box::new(Erased(dnf::Dnf)),
            Box::new(Erased(package::Package)),
            Box::new(Erased(service::Service)),
            Box::new(Erased(systemd::Systemd)),
            Box::new(Erased(hostname::Hostname)),
            Box::new(Erased(known_hosts::KnownHosts)),
            Box::new(Erased(modprobe::Modprobe)),
            Box::new(Erased(raw::Raw)),
            Box::new(Erased(script::Script)),
            Box::new(Erased(wait_for::WaitFor)),
            Box::new(Erased(uri::Uri)),
            Box::new(Erased(get_url::GetUrl)),
            Box::new(Erased(pip::Pip)),
            Box::new(Erased(git::Git)),
            Box::new(Erased(network::Network)),
            Box::new(Erased(lvg::Lvg)),
            Box::new(Erased(lvol::Lvol)),
            Box::new(Erased(filesystem::Filesystem)),
            Box::new(Erased(kolla_build::KollaBuild)),
            Box::new(Erased(image_push::ImagePush)),
            Box::new(Erased(image_source::ImageSource)),
            Box::new(Erased(kolla_inputs::KollaInputs)),
            Box::new(Erased(kolla_inputs_record::KollaInputsRecord)),
            Box::new(Erased(kolla_image_tags::KollaImageTags)),
            Box::new(Erased(manifest_list::ManifestList)),
            Box::new(Erased(docker_container::DockerContainer)),
            Box::new(Erased(podman_container::PodmanContainer)),
            Box::new(Erased(credential_scan::CredentialScan)),
            Box::new(Erased(container_login::ContainerLogin)),
        ]
    })
}

/// The module with this name (short or fully qualified).
pub fn lookup(name: &str) -> Option<&'static dyn DynModule> {
    registry()
        .iter()
        .find(|m| m.names().contains(&name))
        .map(|b| b.as_ref())
}

/// Every name any module answers to.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    registry().iter().flat_map(|m| m.names().iter().copied())
}
