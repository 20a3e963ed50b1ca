//! `replace`: replace every match of a Python regular expression (MULTILINE) in a file, optionally
//! only in the section between `after` and `before` (DOTALL), as Ansible's `replace.py`.
//!
//! [`replace_text`] is the pure edit (unit-tested); reading, writing, backup, validate and
//! attributes are shared with `lineinfile`. Results: `msg` (`N replacements made`), `rc: 0`,
//! `backup_file`, and a diff headed with the path.

use super::support::args::{self, with_file_common_args};
use super::support::fileattrs;
use super::support::lineedit::{apply_edit, finish_query, Edit, Plan};
use super::support::pyre;
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
    #[serde(deserialize_with = "args::string")]
    pub regexp: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub replace: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub after: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub before: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub backup: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub validate: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub encoding: Option<String>,
    #[serde(default)]
    pub others: Option<serde_json::Value>,
}
}

/// Python's `re.subn(pattern, repl, text)` (count 0 = all): the new text and the count.
pub fn subn(re: &fancy_regex::Regex, repl: &str, text: &str) -> Result<(String, usize), String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut n = 0;
    for caps in re.captures_iter(text) {
        let caps = caps.map_err(|e| e.to_string())?;
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&text[last..m.start()]);
        out.push_str(&pyre::expand(repl, &caps)?);
        last = m.end();
        n += 1;
    }
    out.push_str(&text[last..]);
    Ok((out, n))
}

/// The edit: `Err` for a bad pattern; `msg` says when `after`/`before` did not match.
pub fn replace_text(
    contents: &str,
    regexp: &str,
    repl: &str,
    after: Option<&str>,
    before: Option<&str>,
) -> Result<Edit, String> {
    let pattern = match (
        after.filter(|s| !s.is_empty()),
        before.filter(|s| !s.is_empty()),
    ) {
        (Some(a), Some(b)) => Some(format!("{a}(?P<subsection>.*?){b}")),
        (Some(a), None) => Some(format!("{a}(?P<subsection>.*)")),
        (None, Some(b)) => Some(format!("(?P<subsection>.*){b}")),
        (None, None) => None,
    };
    let (section, range) = match &pattern {
        Some(p) => {
            let re = pyre::compile_flags(p, false, true)?;
            match re.captures(contents).map_err(|e| e.to_string())? {
                Some(c) => match c.name("subsection") {
                    Some(m) => (m.as_str(), Some((m.start(), m.end()))),
                    None => (contents, None),
                },
                None => {
                    return Ok(Edit {
                        text: contents.to_string(),
                        changed: false,
                        msg: format!(
                            "Pattern for before/after params did not match the given file: {p}"
                        ),
                        found: 0,
                    })
                }
            }
        }
        None => (contents, None),
    };
    let re = pyre::compile(regexp, true)?;
    let (new, n) = subn(&re, repl, section)?;
    if n > 0 && new != section {
        let text = match range {
            Some((s, e)) => format!("{}{new}{}", &contents[..s], &contents[e..]),
            None => new,
        };
        return Ok(Edit {
            text,
            changed: true,
            msg: format!("{n} replacements made"),
            found: n,
        });
    }
    Ok(Edit {
        text: contents.to_string(),
        changed: false,
        msg: String::new(),
        found: 0,
    })
}

pub struct Replace;

impl Module for Replace {
    const NAMES: &'static [&'static str] = &[
        "replace",
        "ansible.builtin.replace",
        "ansible.legacy.replace",
    ];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let _ = (&a.unsafe_writes, &a.attributes, &a.others, &a.encoding);
        let path = a.path.clone();
        let st = match fileattrs::stat_editable(ctx, &path, false).await? {
            Ok(st) => st,
            Err(failed) => return Ok(Query::Done(failed)),
        };
        let contents = String::from_utf8_lossy(&ctx.session.read_file(&path).await?).into_owned();
        let e = replace_text(
            &contents,
            &a.regexp,
            a.replace.as_deref().unwrap_or(""),
            a.after.as_deref(),
            a.before.as_deref(),
        )
        .map_err(|m| ModuleError::Failed(format!("Unable to process replace due to error: {m}")))?;
        let attrs = a.file_attrs();
        let q = finish_query(
            ctx,
            &path,
            &st,
            &contents,
            e,
            attrs,
            a.backup,
            a.validate.clone(),
            None,
        )
        .await?;
        let fix = |o: &mut Outcome| {
            o.data.shift_remove("backup");
            o.data.insert("rc".into(), Value::Int(0));
            for d in &mut o.diff {
                d.before_header = Some(path.clone());
                d.after_header = Some(path.clone());
            }
        };
        Ok(match q {
            Query::Done(mut o) => {
                fix(&mut o);
                Query::Done(o)
            }
            Query::Change { plan, mut preview } => {
                fix(&mut preview);
                Query::Change { plan, preview }
            }
            other => other,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let mut o = apply_edit(p, ctx).await?;
        fileattrs::backup_as_backup_file(&mut o);
        o.data.insert("rc".into(), Value::Int(0));
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: &str, re: &str, rep: &str) -> Edit {
        replace_text(t, re, rep, None, None).unwrap()
    }

    #[test]
    fn replaces_all_multiline() {
        let e = r("a=1\nb=2\na=3\n", "^a=(\\d)$", "a=\\1\\1");
        assert_eq!(e.text, "a=11\nb=2\na=33\n");
        assert_eq!(e.msg, "2 replacements made");
        // same text after replacement: not changed
        let e = r("a=1\n", "^a=1$", "a=1");
        assert!(!e.changed);
        assert_eq!(e.msg, "");
        let e = r("x\n", "nomatch", "y");
        assert!(!e.changed);
    }

    #[test]
    fn named_groups_and_g_syntax() {
        let e = r(
            "host1 10.0.0.1\n",
            "^(?P<h>\\S+) (?P<ip>\\S+)$",
            "\\g<ip> \\g<h>",
        );
        assert_eq!(e.text, "10.0.0.1 host1\n");
    }

    #[test]
    fn after_and_before_limit_the_section() {
        let t = "x=1\n<s>\nx=1\n</s>\nx=1\n";
        let e = replace_text(t, "^x=1$", "x=2", Some("<s>"), Some("</s>")).unwrap();
        assert_eq!(e.text, "x=1\n<s>\nx=2\n</s>\nx=1\n");
        let e = replace_text(t, "^x=1$", "x=2", Some("<s>"), None).unwrap();
        assert_eq!(e.text, "x=1\n<s>\nx=2\n</s>\nx=2\n");
        let e = replace_text(t, "^x=1$", "x=2", None, Some("</s>")).unwrap();
        assert_eq!(e.text, "x=2\n<s>\nx=2\n</s>\nx=1\n");
        let e = replace_text(t, "x", "y", Some("nomatch"), None).unwrap();
        assert!(!e.changed);
        assert!(
            e.msg
                .starts_with("Pattern for before/after params did not match"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(replace_text("x", "(", "y", None, None).is_err());
    }
}
