//! The one minijinja `Environment`: Ansible's Jinja settings, filters, tests and lookups.
//!
//! Settings follow `AnsibleEnvironment`: `trim_blocks=True`, a finalize that prints `None` as the
//! empty string, undefined values that chain (`foo.bar.baz | default(1)` works) but fail when
//! printed, and Python's `str()` for every printed value (so `{{ [1, 'a'] }}` prints `[1, 'a']`).

use super::pyrepr::py_str;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub(crate) fn build(search_paths: Arc<RwLock<Vec<PathBuf>>>) -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .build()
        .unwrap_or_default();
    env.set_syntax(syntax.clone());
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_formatter(|out, state, value| {
        if value.is_undefined() {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                "an undefined value was printed",
            ));
        }
        let run = super::context::current(state).ok().map(|c| c.run.clone());
        if value.is_none() {
            if let Some(r) = &run {
                r.node(None);
            }
            return Ok(());
        }
        let mut s = String::new();
        py_str(value, &mut s)?;
        if let Some(r) = &run {
            r.node((value.is_safe() && value.as_str().is_some()).then_some(s.len()));
        }
        out.write_str(&s)
            .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string()))
    });
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_recursion_limit(200);
    // `{% include %}` / `{% import %}` in template files search the Templar's search path,
    // each directory and its `templates/` subdirectory (as the template action does).
    env.set_loader(move |name| {
        let paths = search_paths.read().map(|p| p.clone()).unwrap_or_default();
        let direct = std::path::Path::new(name);
        let mut candidates = vec![];
        if direct.is_absolute() {
            candidates.push(direct.to_path_buf());
        }
        for p in &paths {
            candidates.push(p.join("templates").join(name));
            candidates.push(p.join(name));
        }
        for c in candidates {
            if c.is_file() {
                let text = std::fs::read_to_string(&c).map_err(|e| {
                    Error::new(ErrorKind::TemplateNotFound, format!("{}: {e}", c.display()))
                })?;
                // Python's `%` in included templates too
                return Ok(Some(
                    super::percent::rewrite_template(&text, &syntax).into_owned(),
                ));
            }
        }
        Ok(None)
    });

    super::filters::register(&mut env);
    super::filters_data::register(&mut env);
    super::tests_jinja::register(&mut env);
    super::lookups::register(&mut env);
    super::percent::register(&mut env);

    // the ipaddr family and Kayobe's network filters
    super::kayobe_net::register(&mut env);
    super::ipaddr::register(&mut env);

    env
}
