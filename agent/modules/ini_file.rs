//! `ini_file` (community.general): set, add or remove an option (or a whole section) in an
//! INI-style file, keeping everything else — comments, order, spacing — as it was.
//!
//! Like Ansible's, this is a line editor, not an INI parser (a parser would drop comments and
//! layout): [`edit`] is a pure port of community.general's `do_ini` (option matching that also
//! finds commented-out `#option = x` lines, `exclusive`, `allow_no_value`, `no_extra_spaces`,
//! `ignore_spaces`, `section_has_values`, messages `option added` / `option changed` /
//! `section and option added` / `section removed` / `OK`), unit-tested without a host. Reading,
//! writing, backup and attributes are shared with `lineinfile`.

use super::support::args::{self, with_file_common_args};
use super::support::fileattrs;
use super::support::lineedit::{apply_edit, Plan};
use super::support::pyre;
use super::{Ctx, Module, ModuleError, Outcome, Query};
use crate::value::Value;
use fancy_regex::Regex;
use serde::Deserialize;

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HasValues {
    #[serde(deserialize_with = "args::string")]
    pub option: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "args::string_list")]
    pub values: Vec<String>,
}

with_file_common_args! {
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Args {
    #[serde(alias = "dest", deserialize_with = "args::string")]
    pub path: String,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub section: Option<String>,
    #[serde(default)]
    pub section_has_values: Option<Vec<HasValues>>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub option: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "args::string_list")]
    pub values: Vec<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub backup: bool,
    #[serde(default)]
    pub state: args::PresentAbsent,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    pub exclusive: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub no_extra_spaces: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub ignore_spaces: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub allow_no_value: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    pub modify_inactive_option: bool,
    #[serde(
        default = "crate::modules::support::args::yes",
        deserialize_with = "args::bool"
    )]
    pub create: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub follow: bool,
}
}

/// The options of one edit (the module's arguments minus file handling).
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub section: Option<String>,
    /// (option, values) conditions that pick among same-named sections.
    pub section_has_values: Option<Vec<(String, Vec<String>)>>,
    pub option: Option<String>,
    pub values: Vec<String>,
    pub present: bool,
    pub exclusive: bool,
    pub no_extra_spaces: bool,
    pub ignore_spaces: bool,
    pub allow_no_value: bool,
    pub modify_inactive_option: bool,
}

/// The result of an edit: the new text, whether it changed, and Ansible's message.
#[derive(Debug, Clone, PartialEq)]
pub struct IniEdit {
    pub text: String,
    pub changed: bool,
    pub msg: String,
}

struct Matchers {
    opt: Regex,
    active: Regex,
}

fn matchers(option: &str) -> Result<Matchers, String> {
    let o = regex::escape(option);
    Ok(Matchers {
        opt: pyre::compile(
            &format!("\\A([#;]?)( |\\t)*({o})( |\\t)*(=|$)( |\\t)*(.*)"),
            false,
        )?,
        active: pyre::compile(
            &format!("\\A()( |\\t)*({o})( |\\t)*(=|$)( |\\t)*(.*)"),
            false,
        )?,
    })
}

fn group7(re: &Regex, line: &str) -> Option<(String, String)> {
    let c = re.captures(line).ok().flatten()?;
    Some((
        c.get(1).map(|m| m.as_str().to_string()).unwrap_or_default(),
        c.get(7).map(|m| m.as_str().to_string()).unwrap_or_default(),
    ))
}

/// community.general's `do_ini` on the file's text (None: the file does not exist).
pub fn edit(original: Option<&str>, p: &Params) -> Result<IniEdit, String> {
    let text = original
        .unwrap_or("")
        .trim_start_matches('\u{feff}')
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let mut values: Vec<String> = vec![];
    for v in &p.values {
        if !values.contains(v) {
            values.push(v.clone());
        }
    }
    let mut changed = false;
    if lines.is_empty() {
        lines.push("\n".into());
    }
    if let Some(last) = lines.last_mut() {
        if !last.ends_with('\n') {
            last.push('\n');
            changed = true;
        }
    }
    const FAKE: &str = "ad01e11446efb704fcdbdb21f2c43757423d91c5";
    lines.insert(0, format!("[{FAKE}]"));
    lines.push("[".into());
    let section = match p.section.as_deref() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => FAKE.to_string(),
    };
    let mut within = false;
    let (mut start, mut end) = (0usize, 0usize);
    let mut msg = "OK".to_string();
    let fmt = |o: &str, v: &str| {
        if p.no_extra_spaces {
            format!("{o}={v}\n")
        } else {
            format!("{o} = {v}\n")
        }
    };
    let blank_or_comment = pyre::compile("\\A[ \\t]*([#;].*)?$", false)?;
    let section_re = pyre::compile(
        &format!("\\A\\[\\s*{}\\s*]", regex::escape(section.trim())),
        false,
    )?;
    let has_values = |sect: &[String]| -> Result<bool, String> {
        let Some(conds) = &p.section_has_values else {
            return Ok(true);
        };
        for (opt, vals) in conds {
            let m = matchers(opt)?;
            let ok = sect.iter().any(|l| {
                group7(&m.opt, l).is_some_and(|(_, v)| vals.is_empty() || vals.contains(&v))
            });
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    };
    for (i, line) in lines.iter().enumerate() {
        if within && line.starts_with('[') {
            if has_values(&lines[start..i])? {
                end = i;
                break;
            }
            within = false;
            start = 0;
            end = 0;
        }
        if section_re.is_match(line).map_err(|e| e.to_string())? {
            within = true;
            start = i;
        }
    }
    let before: Vec<String> = lines[..start].to_vec();
    let mut sect: Vec<String> = lines[start..end].to_vec();
    let after: Vec<String> = lines[end..].to_vec();
    let mut changed_lines = vec![false; sect.len()];
    let m = p.option.as_deref().map(matchers).transpose()?;
    let matcher = |line: &str| -> Option<(String, String)> {
        let m = m.as_ref()?;
        if p.modify_inactive_option {
            group7(&m.opt, line)
        } else {
            group7(&m.active, line)
        }
    };
    let option = p.option.clone().unwrap_or_default();
    let mut no_value_present = false;
    // update_section_line
    let update = |sect: &mut Vec<String>,
                  changed_lines: &mut Vec<bool>,
                  idx: usize,
                  newline: String,
                  changed: &mut bool,
                  msg: &mut String| {
        let mut option_changed = None;
        if p.ignore_spaces {
            if let (Some((hash, old)), Some(mm)) = (matcher_opt(&m, &sect[idx]), m.as_ref()) {
                if hash.is_empty() {
                    let new = group7(&mm.opt, &newline)
                        .map(|(_, v)| v)
                        .unwrap_or_default();
                    option_changed = Some(old != new);
                }
            }
        }
        let oc = option_changed.unwrap_or(sect[idx] != newline);
        if oc {
            sect[idx] = newline;
            *changed = true;
            *msg = "option changed".into();
        }
        changed_lines[idx] = true;
    };
    if p.present && p.option.is_some() {
        for idx in 0..sect.len() {
            let Some((_, val)) = matcher(&sect[idx]) else {
                continue;
            };
            if !values.is_empty() && values.contains(&val) {
                let newline = if val.is_empty() && p.allow_no_value {
                    no_value_present = true;
                    format!("{option}\n")
                } else {
                    fmt(&option, &val)
                };
                update(
                    &mut sect,
                    &mut changed_lines,
                    idx,
                    newline,
                    &mut changed,
                    &mut msg,
                );
                if let Some(pos) = values.iter().position(|v| *v == val) {
                    values.remove(pos);
                }
            } else if values.is_empty() && p.allow_no_value {
                update(
                    &mut sect,
                    &mut changed_lines,
                    idx,
                    format!("{option}\n"),
                    &mut changed,
                    &mut msg,
                );
                no_value_present = true;
                break;
            }
        }
    }
    if p.present && p.exclusive && !p.allow_no_value {
        if !values.is_empty() {
            for idx in 0..sect.len() {
                if !changed_lines[idx] && matcher(&sect[idx]).is_some() {
                    let v = values.remove(0);
                    update(
                        &mut sect,
                        &mut changed_lines,
                        idx,
                        fmt(&option, &v),
                        &mut changed,
                        &mut msg,
                    );
                    if values.is_empty() {
                        break;
                    }
                }
            }
        }
        let mut idx = sect.len();
        while idx > 1 {
            idx -= 1;
            if !changed_lines[idx] && matcher(&sect[idx]).is_some() {
                sect.remove(idx);
                changed_lines.remove(idx);
                changed = true;
                msg = "option changed".into();
            }
        }
    }
    if p.present {
        let mut idx = sect.len();
        while idx > 0 {
            if !blank_or_comment.is_match(&sect[idx - 1]).unwrap_or(false) {
                if p.option.is_some() && !values.is_empty() {
                    for v in values.iter().rev() {
                        sect.insert(idx, fmt(&option, v));
                        msg = "option added".into();
                        changed = true;
                    }
                } else if p.option.is_some()
                    && values.is_empty()
                    && p.allow_no_value
                    && !no_value_present
                {
                    sect.insert(idx, format!("{option}\n"));
                    msg = "option added".into();
                    changed = true;
                }
                break;
            }
            idx -= 1;
        }
    } else if p.option.is_some() {
        let active = |l: &String| m.as_ref().and_then(|m| group7(&m.active, l));
        let new: Vec<String> = if p.exclusive {
            sect.iter()
                .filter(|l| active(l).is_none())
                .cloned()
                .collect()
        } else if !values.is_empty() {
            sect.iter()
                .filter(|l| !active(l).is_some_and(|(_, v)| values.contains(&v)))
                .cloned()
                .collect()
        } else {
            sect.clone()
        };
        if new != sect {
            changed = true;
            msg = "option changed".into();
            sect = new;
        }
    } else if !sect.is_empty() {
        sect.clear();
        msg = "section removed".into();
        changed = true;
    }
    let mut out: Vec<String> = before;
    out.extend(sect);
    out.extend(after);
    out.remove(0);
    out.pop();
    if !within && p.present {
        out.push(format!("[{section}]\n"));
        msg = "section and option added".into();
        if let Some(conds) = &p.section_has_values {
            for (opt, vals) in conds {
                if Some(opt) != p.option.as_ref() {
                    if !vals.is_empty() {
                        for v in vals {
                            out.push(fmt(opt, v));
                        }
                    } else if p.allow_no_value {
                        out.push(format!("{opt}\n"));
                    }
                } else if !p.exclusive {
                    for v in vals {
                        if !values.contains(v) {
                            values.push(v.clone());
                        }
                    }
                }
            }
        }
        if p.option.is_some() && !values.is_empty() {
            for v in &values {
                out.push(fmt(&option, v));
            }
        } else if p.option.is_some() && values.is_empty() && p.allow_no_value {
            out.push(format!("{option}\n"));
        } else {
            msg = "only section added".into();
        }
        changed = true;
    }
    Ok(IniEdit {
        text: out.concat(),
        changed,
        msg,
    })
}

fn matcher_opt(m: &Option<Matchers>, line: &str) -> Option<(String, String)> {
    group7(&m.as_ref()?.opt, line)
}

pub struct IniFile;

impl Module for IniFile {
    const NAMES: &'static [&'static str] = &[
        "ini_file",
        "community.general.ini_file",
        "community.general.files.ini_file",
    ];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let _ = (&a.unsafe_writes, &a.attributes);
        if a.value.is_some() && !a.values.is_empty() {
            return Err(ModuleError::Args(
                "parameters are mutually exclusive: value|values".into(),
            ));
        }
        let present = a.state.present()?;
        if present && !a.allow_no_value && a.value.is_none() && a.values.is_empty() {
            return Ok(Query::Done(Outcome::failed(
                "Parameter 'value(s)' must be defined if state=present and allow_no_value=False.",
            )));
        }
        let lst = ctx.session.stat(&a.path, false, false).await?;
        let target = if a.follow && lst.kind == "link" {
            let r = ctx
                .run(&["readlink", "-f", "--", &a.path])
                .await?
                .stdout_text();
            r.trim().to_string()
        } else {
            a.path.clone()
        };
        let st = ctx.session.stat(&target, true, false).await?;
        if !st.exists && !a.create {
            return Ok(Query::Done(
                Outcome::failed(format!("Destination {target} does not exist!"))
                    .with("rc", Value::Int(257)),
            ));
        }
        let original = if st.exists {
            Some(String::from_utf8_lossy(&ctx.session.read_file(&target).await?).into_owned())
        } else {
            None
        };
        let values = match &a.value {
            Some(v) => vec![v.clone()],
            None => a.values.clone(),
        };
        let params = Params {
            section: a.section.clone(),
            section_has_values: a.section_has_values.as_ref().map(|v| {
                v.iter()
                    .map(|c| {
                        let vals = match &c.value {
                            Some(x) => vec![x.clone()],
                            None => c.values.clone(),
                        };
                        (c.option.clone(), vals)
                    })
                    .collect()
            }),
            option: a.option.clone(),
            values,
            present,
            exclusive: a.exclusive,
            no_extra_spaces: a.no_extra_spaces,
            ignore_spaces: a.ignore_spaces,
            allow_no_value: a.allow_no_value,
            modify_inactive_option: a.modify_inactive_option,
        };
        let e = edit(original.as_deref(), &params).map_err(ModuleError::Args)?;
        let attrs = a.file_attrs();
        // attributes count only in a real run, as in community.general's module
        let attr_change = if st.exists {
            fileattrs::attrs_differ(&attrs, &st)?
        } else {
            e.changed && !attrs.is_empty()
        };
        let mut result = Outcome {
            changed: e.changed,
            msg: Some(e.msg.clone()),
            ..Default::default()
        }
        .with("path", a.path.as_str());
        if ctx.diff {
            result = result.with_diff(fileattrs::content_diff(
                &a.path,
                original.as_deref().unwrap_or(""),
                &e.text,
            ));
        }
        if !e.changed && !attr_change {
            return Ok(Query::Done(result));
        }
        let preview = result.clone();
        result.changed = true;
        Ok(Query::Change {
            plan: Plan {
                path: target,
                text: e.changed.then_some(e.text),
                exists: st.exists,
                backup: a.backup,
                attrs,
                validate: None,
                result,
            },
            preview,
        })
    }

    async fn apply(&self, p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
        let mut o = apply_edit(p, ctx).await?;
        fileattrs::backup_as_backup_file(&mut o);
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(section: &str, option: &str, value: &str) -> Params {
        Params {
            section: Some(section.into()),
            option: Some(option.into()),
            values: vec![value.into()],
            present: true,
            exclusive: true,
            modify_inactive_option: true,
            ..Default::default()
        }
    }

    #[test]
    fn adds_option_to_existing_section_after_its_last_line() {
        let t = "[a]\nx = 1\n\n[b]\ny = 2\n";
        let e = edit(Some(t), &p("a", "z", "3")).unwrap();
        assert_eq!(e.text, "[a]\nx = 1\nz = 3\n\n[b]\ny = 2\n");
        assert_eq!(e.msg, "option added");
        let e2 = edit(Some(&e.text), &p("a", "z", "3")).unwrap();
        assert!(!e2.changed);
        assert_eq!(e2.msg, "OK");
    }

    #[test]
    fn changes_a_value_and_uncomments() {
        let e = edit(Some("[a]\nx = 1\n"), &p("a", "x", "2")).unwrap();
        assert_eq!(
            (e.text.as_str(), e.msg.as_str()),
            ("[a]\nx = 2\n", "option changed")
        );
        // a commented-out option is replaced (modify_inactive_option)
        let e = edit(Some("[a]\n#x = 1\n"), &p("a", "x", "1")).unwrap();
        assert_eq!(e.text, "[a]\nx = 1\n");
        let mut q = p("a", "x", "1");
        q.modify_inactive_option = false;
        let e = edit(Some("[a]\n#x = 1\n"), &q).unwrap();
        // added after the last non-comment line of the section, as community.general does
        assert_eq!(e.text, "[a]\nx = 1\n#x = 1\n");
    }

    #[test]
    fn new_section_and_new_file() {
        let e = edit(Some("[a]\nx = 1\n"), &p("b", "y", "2")).unwrap();
        assert_eq!(
            (e.text.as_str(), e.msg.as_str()),
            ("[a]\nx = 1\n[b]\ny = 2\n", "section and option added")
        );
        let e = edit(None, &p("b", "y", "2")).unwrap();
        assert_eq!(e.text, "\n[b]\ny = 2\n");
        // options before any section (section: null)
        let mut q = p("", "top", "1");
        q.section = None;
        let e = edit(Some("[a]\nx = 1\n"), &q).unwrap();
        assert_eq!(e.text, "top = 1\n[a]\nx = 1\n");
    }

    #[test]
    fn spacing_options() {
        let mut q = p("a", "x", "2");
        q.no_extra_spaces = true;
        assert_eq!(edit(Some("[a]\nx = 1\n"), &q).unwrap().text, "[a]\nx=2\n");
        let mut q = p("a", "x", "1");
        q.ignore_spaces = true;
        let e = edit(Some("[a]\nx=1\n"), &q).unwrap();
        assert!(!e.changed);
        assert_eq!(e.text, "[a]\nx=1\n");
    }

    #[test]
    fn absent_option_and_section() {
        let mut q = p("a", "x", "1");
        q.present = false;
        let e = edit(Some("[a]\nx = 1\ny = 2\n"), &q).unwrap();
        assert_eq!(
            (e.text.as_str(), e.msg.as_str()),
            ("[a]\ny = 2\n", "option changed")
        );
        let mut q = p("a", "", "");
        q.option = None;
        q.present = false;
        let e = edit(Some("[a]\nx = 1\n[b]\ny = 2\n"), &q).unwrap();
        assert_eq!(
            (e.text.as_str(), e.msg.as_str()),
            ("[b]\ny = 2\n", "section removed")
        );
    }

    #[test]
    fn multiple_values_and_exclusive() {
        let mut q = p("a", "x", "1");
        q.values = vec!["1".into(), "2".into()];
        let e = edit(Some("[a]\nx = 1\nx = 9\nx = 8\n"), &q).unwrap();
        assert_eq!(e.text, "[a]\nx = 1\nx = 2\n");
        q.exclusive = false;
        let e = edit(Some("[a]\nx = 1\nx = 9\n"), &q).unwrap();
        assert_eq!(e.text, "[a]\nx = 1\nx = 9\nx = 2\n");
    }

    #[test]
    fn allow_no_value() {
        let mut q = p("mysqld", "skip-name-resolve", "");
        q.values = vec![];
        q.allow_no_value = true;
        let e = edit(Some("[mysqld]\nport = 1\n"), &q).unwrap();
        assert_eq!(e.text, "[mysqld]\nport = 1\nskip-name-resolve\n");
        assert!(!edit(Some(&e.text), &q).unwrap().changed);
    }

    #[test]
    fn adds_a_final_newline() {
        let e = edit(Some("[a]\nx = 1"), &p("a", "x", "1")).unwrap();
        assert!(e.changed);
        assert_eq!(e.text, "[a]\nx = 1\n");
    }
}
