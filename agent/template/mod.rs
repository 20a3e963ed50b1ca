//! Templating with Ansible's semantics: one minijinja `Environment` carrying Ansible's filters,
//! tests and lookups, and lazy, recursive variable resolution with cycle detection.
//!
//! The shape follows ansible-core 2.17 in non-native mode, because kiln must produce the same data
//! from the same playbooks: a string is templated only if it contains `{{`, `{%` or `{#`; the result
//! is text (Python `str()`), turned back into a list/dict/bool by `ast.literal_eval` when it looks
//! like one; a variable's raw value is templated only when a template reads it (see
//! [`context`]); `!unsafe` data is never templated; anything computed from a secret is a secret.
//!
//! The caller owns variable precedence: it hands us a [`VarSource`] per host and we only ask it for
//! raw values by name.

mod args;
mod context;
mod convert;
mod environment;
mod filters;
mod filters_data;
pub mod ipaddr;
pub mod kayobe_net;
mod lookups;
mod percent;
mod pyrepr;
pub mod pyyaml;
mod tests_jinja;

pub use convert::{from_jinja, py_str_value, to_jinja_plain};
pub use pyrepr::{literal_eval, py_float, py_literal_eval, py_repr_str};

use crate::value::Value;
use context::Run;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// One host's variables, as the template layer sees them.
pub trait VarSource: Send + Sync {
    /// Untemplated value of `name` for this host (after precedence), None if undefined.
    fn raw(&self, name: &str) -> Option<Value>;
    /// Where `name` was defined (e.g. "group_vars/all/kolla.yml"), for error messages.
    fn origin(&self, name: &str) -> Option<String>;
    /// Every variable name visible, ordered.
    fn names(&self) -> Vec<String>;
    /// Another host's variables (for `hostvars[h]`), None if no such host.
    fn host(&self, host: &str) -> Option<Arc<dyn VarSource>>;
    /// All inventory host names.
    fn host_names(&self) -> Vec<String>;
    /// Hosts matching an inventory pattern (for the `inventory_hostnames` lookup).
    fn select_hosts(&self, pattern: &str) -> Result<Vec<String>, String>;
}

/// Why templating failed. Every variant names where (`origin`: a file, `file:line`, or the
/// variable being resolved) so the user can find the template.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemplateError {
    #[error("{origin}: '{name}' is undefined{hint}", hint = fmt_hint(.hint))]
    Undefined {
        name: String,
        origin: String,
        hint: Option<String>,
    },
    /// `origin`: where the variable that closes the loop is defined (its file, when known).
    #[error("{origin}: recursive loop detected in template: {}", .chain.join(" -> "))]
    Cycle { chain: Vec<String>, origin: String },
    #[error("{origin}: no filter named '{name}'")]
    UnknownFilter { name: String, origin: String },
    #[error("{origin}: no test named '{name}'")]
    UnknownTest { name: String, origin: String },
    #[error("{origin}: lookup plugin ({name}) not found")]
    UnknownLookup { name: String, origin: String },
    #[error("{origin}:{line}: template syntax error: {msg}")]
    Syntax {
        origin: String,
        line: usize,
        msg: String,
    },
    #[error("{origin}: {msg}")]
    Other { origin: String, msg: String },
}

fn fmt_hint(h: &Option<String>) -> String {
    match h {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    }
}

impl TemplateError {
    fn other(origin: &str, msg: impl Into<String>) -> Self {
        TemplateError::Other {
            origin: origin.to_string(),
            msg: msg.into(),
        }
    }
}

/// Shared state of a [`Templar`]: the environment is built once and shared by every host and call.
pub(crate) struct Shared {
    pub keyring: Arc<crate::vault::Keyring>,
    pub search_paths: Arc<RwLock<Vec<PathBuf>>>,
    /// The `cached` lookup's memory, for the whole run.
    pub lookup_cache: Mutex<HashMap<String, Value>>,
    /// Lookup plugins registered by the layers that know more than templating (Kayobe's
    /// `kayobe_environments` needs the configuration layout).
    pub plugins: RwLock<HashMap<String, LookupPlugin>>,
}

/// A lookup plugin: its terms and a way to read (templated) variables, to its result list.
pub type LookupPlugin = Arc<
    dyn Fn(&[Value], &dyn Fn(&str) -> Option<Value>) -> Result<Vec<Value>, String> + Send + Sync,
>;

/// The templating engine. Cheap to clone; one per run.
#[derive(Clone)]
pub struct Templar {
    env: Arc<minijinja::Environment<'static>>,
    shared: Arc<Shared>,
}

impl Templar {
    pub fn new(keyring: Arc<crate::vault::Keyring>) -> Self {
        let search_paths = Arc::new(RwLock::new(Vec::new()));
        let env = environment::build(search_paths.clone());
        Templar {
            env: Arc::new(env),
            shared: Arc::new(Shared {
                keyring,
                search_paths,
                lookup_cache: Mutex::new(HashMap::new()),
                plugins: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Directories searched by the `file`, `template`, `first_found` and `fileglob` lookups and by
    /// `{% include %}` in template files (as Ansible's search path: role/files, playbook dir ...).
    /// Add a lookup plugin (by its short name).
    pub fn with_lookup(self, name: &str, plugin: LookupPlugin) -> Self {
        if let Ok(mut p) = self.shared.plugins.write() {
            p.insert(name.to_string(), plugin);
        }
        self
    }

    pub fn with_search_paths(self, paths: Vec<PathBuf>) -> Self {
        if let Ok(mut p) = self.shared.search_paths.write() {
            *p = paths;
        }
        self
    }

    pub(crate) fn search_paths(&self) -> Vec<PathBuf> {
        self.shared
            .search_paths
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// One variable, templated lazily and recursively in the host's context.
    pub fn var(&self, src: &Arc<dyn VarSource>, name: &str) -> Result<Value, TemplateError> {
        let run = Run::new(self.clone());
        let ctx = run.ctx(src.clone());
        match context::resolve(&ctx, name)? {
            Some(v) => Ok(v),
            None => {
                Err(run
                    .undefined_error(name, &src.origin(name).unwrap_or_else(|| name.to_string())))
            }
        }
    }

    /// Template data (strings inside lists/maps too) with Ansible semantics.
    pub fn template(
        &self,
        src: &Arc<dyn VarSource>,
        data: &Value,
        origin: &str,
    ) -> Result<Value, TemplateError> {
        let run = Run::new(self.clone());
        let ctx = run.ctx(src.clone());
        context::template_value(&ctx, data, origin)
    }

    /// A bare conditional expression (`when:`), with Ansible 2.17's rules.
    pub fn condition(
        &self,
        src: &Arc<dyn VarSource>,
        expr: &str,
        origin: &str,
    ) -> Result<bool, TemplateError> {
        let run = Run::new(self.clone());
        let ctx = run.ctx(src.clone());
        let mut expr = expr.to_string();
        if context::is_template(&expr) {
            tracing::warn!("{origin}: conditional statements should not include jinja2 templating delimiters such as {{{{ }}}} or {{% %}}. Found: {expr}");
            match context::template_str(&ctx, &expr, origin, true)? {
                Value::Bool(b) => return Ok(b),
                Value::Str(s) if s.is_empty() => return Ok(false),
                Value::Unsafe(_) => {
                    return Err(TemplateError::other(
                        origin,
                        "Conditional is marked as unsafe, and cannot be evaluated.",
                    ))
                }
                v => expr = py_str_value(&v),
            }
        }
        context::eval_condition(&ctx, &expr, origin).map_err(|e| match e {
            TemplateError::Undefined { name, origin, hint } => TemplateError::Undefined {
                name,
                origin,
                hint: Some(format!(
                    "error while evaluating conditional ({expr}){}",
                    fmt_hint(&hint)
                )),
            },
            e => e,
        })
    }

    /// Render a template file as the `template` module does: trim_blocks, trailing newlines kept,
    /// no backslash escaping, no literal_eval, `ansible_managed` and `template_*` variables.
    pub fn render_file(
        &self,
        src: &Arc<dyn VarSource>,
        path: &Path,
    ) -> Result<Value, TemplateError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| TemplateError::other(&origin, format!("cannot read template: {e}")))?;
        let bytes = match self.shared.keyring.decrypt_file_bytes(&bytes, &origin) {
            Ok(Some(plain)) => plain,
            Ok(None) => bytes,
            Err(e) => return Err(TemplateError::other(&origin, e.to_string())),
        };
        let text = crate::yaml::utf8_text(bytes, &origin).map_err(|m| {
            let at = m
                .strip_prefix(&origin)
                .unwrap_or(&m)
                .trim_start_matches(':');
            TemplateError::other(&origin, format!("line {at}"))
        })?;
        let run = Run::new(self.clone());
        let extra = context::template_file_vars(path);
        let ctx = run.ctx_with_locals(src.clone(), extra);
        context::render_file_text(&ctx, &text, &origin)
    }
}

#[cfg(test)]
mod unit_tests;

/// Ansible's `omit` placeholder for this process: `__omit_place_holder__<sha1 hex>`. A VarSource
/// should expose it as the `omit` variable; module arguments equal to it are dropped.
/// The stack a thread that renders templates needs: minijinja's parser stops at 150 nested
/// expressions, but one nesting level costs it a dozen or so stack frames, and a template nested
/// to that limit overflowed tokio's default 2 MiB worker stack (a debug build needed about 4 MiB;
/// found by tests/fuzz.rs: `tests/fuzz/regressions/template/deep-nesting-*`). A stack overflow
/// aborts the whole process, so kiln's runtimes give their threads this much (virtual memory:
/// only what is used is touched).
pub const STACK_SIZE: usize = 16 << 20;

pub fn omit_placeholder() -> &'static str {
    static OMIT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OMIT.get_or_init(|| {
        use sha2::Digest;
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        format!(
            "__omit_place_holder__{}",
            hex::encode(sha1::Sha1::digest(seed.as_bytes()))
        )
    })
}
