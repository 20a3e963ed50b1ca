//! `lineinfile`: make sure one line is (or, `state: absent`, lines are not) in a text file.
//!
//! The edit is a pure function on the file's text (`support::lineedit`'s [`present`] and
//! [`absent`]) that follows Ansible's `lineinfile.py` step for step, so it is unit-tested
//! against Ansible's documented behaviour without a host. The module reads the file, edits, and
//! writes the result atomically; `mode`/`owner`/`group` are applied after, and their change adds
//! Ansible's "ownership, perms or SE linux context changed" to the message.

use super::support::args::{self, with_file_common_args};
use super::support::lineedit::{absent, apply_edit, finish_query, present, Plan};
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use serde::Deserialize;

with_file_common_args! {
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(
        alias = "dest",
        alias = "destfile",
        alias = "name",
        deserialize_with = "args::string"
    )]
    pub path: String,
    #[serde(default, alias = "regex", deserialize_with = "args::opt_string")]
    pub regexp: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub search_string: Option<String>,
    #[serde(default)]
    pub state: args::PresentAbsent,
    #[serde(default, alias = "value", deserialize_with = "args::opt_string")]
    pub line: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub backrefs: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub insertafter: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub insertbefore: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub create: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub backup: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub firstmatch: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub validate: Option<String>,
    #[serde(default)]
    pub others: Option<serde_json::Value>,
}
}

pub struct LineInFile;

impl Module for LineInFile {
    const NAMES: &'static [&'static str] = &[
        "lineinfile",
        "ansible.builtin.lineinfile",
        "ansible.legacy.lineinfile",
    ];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let _ = (&a.unsafe_writes, &a.attributes, &a.others);
        if a.regexp.is_some() && a.search_string.is_some() {
            return Err(ModuleError::Args(
                "parameters are mutually exclusive: regexp|search_string".into(),
            ));
        }
        if a.insertafter.is_some() && a.insertbefore.is_some() {
            return Err(ModuleError::Args(
                "parameters are mutually exclusive: insertafter|insertbefore".into(),
            ));
        }
        let present_state = a.state.present()?;
        let path = a.path.clone();
        let st = ctx.session.stat(&path, true, false).await?;
        if st.kind == "directory" {
            return Ok(Query::Done(
                Outcome::failed(format!("Path {path} is a directory !"))
                    .with("rc", Value::Int(256)),
            ));
        }
        let attrs = a.file_attrs();
        let before = if st.exists {
            String::from_utf8_lossy(&ctx.session.read_file(&path).await?).into_owned()
        } else {
            String::new()
        };
        let edit = if present_state {
            if a.backrefs && a.search_string.is_some() {
                return Ok(Query::Done(Outcome::failed(
                    "backrefs=true is not supported with search_string",
                )));
            }
            if a.backrefs && a.regexp.is_none() {
                return Ok(Query::Done(Outcome::failed(
                    "regexp is required with backrefs=true",
                )));
            }
            let Some(line) = &a.line else {
                return Ok(Query::Done(Outcome::failed(
                    "line is required with state=present",
                )));
            };
            if !st.exists && !a.create {
                return Ok(Query::Done(
                    Outcome::failed(format!("Destination {path} does not exist !"))
                        .with("rc", Value::Int(257)),
                ));
            }
            let (ia, ib) = match (&a.insertafter, &a.insertbefore) {
                (None, None) => (Some("EOF"), None),
                (x, y) => (x.as_deref(), y.as_deref()),
            };
            present(
                &before,
                a.regexp.as_deref(),
                a.search_string.as_deref(),
                line,
                ia,
                ib,
                a.backrefs,
                a.firstmatch,
            )
            .map_err(ModuleError::Args)?
        } else {
            if a.regexp.is_none() && a.search_string.is_none() && a.line.is_none() {
                return Ok(Query::Done(Outcome::failed(
                    "one of line, search_string, or regexp is required with state=absent",
                )));
            }
            if !st.exists {
                return Ok(Query::Done(Outcome::ok().with_msg("file not present")));
            }
            absent(
                &before,
                a.regexp.as_deref(),
                a.search_string.as_deref(),
                a.line.as_deref(),
            )
            .map_err(ModuleError::Args)?
        };
        finish_query(
            ctx,
            &path,
            &st,
            &before,
            edit,
            attrs,
            a.backup,
            a.validate.clone(),
            (!present_state).then_some(()),
        )
        .await
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        apply_edit(p, ctx).await
    }
}
