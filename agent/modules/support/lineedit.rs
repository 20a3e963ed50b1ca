//! The line-editing core shared by `lineinfile`, `blockinfile`, `replace` and `ini_file`: the
//! pure edits of a file's text ([`present`], [`absent`]) that follow Ansible's `lineinfile.py`
//! step for step (regexp / search_string / exact-line match, `insertafter`/`insertbefore` with
//! `BOF`/`EOF`, `firstmatch`, `backrefs`), unit-tested without a host; and the query/apply steps
//! those modules share ([`finish_query`], [`apply_edit`]): diff, backup, validate, atomic write,
//! then attributes.

use super::fileattrs::{self, Attrs};
use super::pyre;
use crate::modules::{Ctx, Diff, ModuleError, Outcome, Query};
use crate::transport::WriteRequest;
use crate::value::Value;

/// The result of an edit: new text, whether it changed, Ansible's message, lines found (absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub text: String,
    pub changed: bool,
    pub msg: String,
    pub found: usize,
}

/// Python's `readlines()`: split after each `\n`, keeping it.
pub fn split_lines(text: &str) -> Vec<String> {
    text.split_inclusive('\n').map(str::to_string).collect()
}

fn strip_eol(l: &str) -> &str {
    l.trim_end_matches(['\r', '\n'])
}

/// The `state: present` edit, as Ansible's `present()`.
#[allow(clippy::too_many_arguments)]
pub fn present(
    text: &str,
    regexp: Option<&str>,
    search_string: Option<&str>,
    line: &str,
    insertafter: Option<&str>,
    insertbefore: Option<&str>,
    backrefs: bool,
    firstmatch: bool,
) -> Result<Edit, String> {
    let mut lines = split_lines(text);
    let re = regexp.map(|r| pyre::compile(r, false)).transpose()?;
    let ins = match (insertafter, insertbefore) {
        (Some(a), _) if a != "BOF" && a != "EOF" => Some(pyre::compile(a, false)?),
        (None, Some(b)) if b != "BOF" => Some(pyre::compile(b, false)?),
        _ => None,
    };
    let mut index: [i64; 2] = [-1, -1];
    let mut matched: Option<String> = None; // the expanded line, when a regexp matched
    let mut any_match = false;
    if let Some(re) = &re {
        for (n, cur) in lines.iter().enumerate() {
            if let Some(c) = re.captures(cur).map_err(|e| e.to_string())? {
                index[0] = n as i64;
                any_match = true;
                matched = Some(if backrefs {
                    pyre::expand(line, &c)?
                } else {
                    line.to_string()
                });
                if firstmatch {
                    break;
                }
            }
        }
    }
    if let Some(s) = search_string {
        for (n, cur) in lines.iter().enumerate() {
            if cur.contains(s) {
                index[0] = n as i64;
                any_match = true;
                if firstmatch {
                    break;
                }
            }
        }
    }
    if !any_match {
        for (n, cur) in lines.iter().enumerate() {
            if line == strip_eol(cur) {
                index[0] = n as i64;
            } else if let Some(ins) = &ins {
                if ins.is_match(cur).map_err(|e| e.to_string())? {
                    if insertafter.is_some() {
                        index[1] = n as i64 + 1;
                        if firstmatch {
                            break;
                        }
                    }
                    if insertbefore.is_some() {
                        index[1] = n as i64;
                        if firstmatch {
                            break;
                        }
                    }
                }
            }
        }
    }
    let sep = "\n";
    let mut msg = "";
    let mut changed = false;
    let ends_nl = |lines: &Vec<String>| lines.last().is_none_or(|l| l.ends_with(['\n', '\r']));
    if index[0] != -1 {
        let mut new_line = match (&matched, backrefs) {
            (Some(m), true) => m.clone(),
            _ => line.to_string(),
        };
        if !new_line.ends_with(sep) {
            new_line.push_str(sep);
        }
        let i = index[0] as usize;
        if lines[i] != new_line {
            lines[i] = new_line;
            msg = "line replaced";
            changed = true;
        }
    } else if backrefs {
        // backrefs without a match: leave the file alone
    } else if insertbefore == Some("BOF") || insertafter == Some("BOF") {
        lines.insert(0, format!("{line}{sep}"));
        msg = "line added";
        changed = true;
    } else if insertafter == Some("EOF") || index[1] == -1 {
        if !ends_nl(&lines) {
            lines.push(sep.to_string());
        }
        lines.push(format!("{line}{sep}"));
        msg = "line added";
        changed = true;
    } else if insertafter.is_some() && index[1] != -1 {
        let i = index[1] as usize;
        if lines.len() == i {
            if strip_eol(&lines[i - 1]) != line {
                lines.push(format!("{line}{sep}"));
                msg = "line added";
                changed = true;
            }
        } else if line != strip_eol(&lines[i]) {
            lines.insert(i, format!("{line}{sep}"));
            msg = "line added";
            changed = true;
        }
    } else {
        lines.insert(index[1] as usize, format!("{line}{sep}"));
        msg = "line added";
        changed = true;
    }
    Ok(Edit {
        text: lines.concat(),
        changed,
        msg: msg.to_string(),
        found: 0,
    })
}

/// The `state: absent` edit, as Ansible's `absent()`.
pub fn absent(
    text: &str,
    regexp: Option<&str>,
    search_string: Option<&str>,
    line: Option<&str>,
) -> Result<Edit, String> {
    let re = regexp.map(|r| pyre::compile(r, false)).transpose()?;
    let mut kept = vec![];
    let mut found = 0;
    for cur in split_lines(text) {
        let m = if let Some(re) = &re {
            re.is_match(&cur).map_err(|e| e.to_string())?
        } else if let Some(s) = search_string {
            cur.contains(s)
        } else {
            line == Some(strip_eol(&cur))
        };
        if m {
            found += 1;
        } else {
            kept.push(cur);
        }
    }
    Ok(Edit {
        text: kept.concat(),
        changed: found > 0,
        msg: if found > 0 {
            format!("{found} line(s) removed")
        } else {
            String::new()
        },
        found,
    })
}

/// What the line-editing modules (lineinfile, blockinfile, replace, ini_file) write.
pub struct Plan {
    pub(crate) path: String,
    /// The new content; None when only attributes change.
    pub(crate) text: Option<String>,
    pub(crate) exists: bool,
    pub(crate) backup: bool,
    pub(crate) attrs: Attrs,
    pub(crate) validate: Option<String>,
    /// The result to report (apply adds `backup`).
    pub(crate) result: Outcome,
}

/// Shared by the line-editing modules: the preview/plan from an edit of `before`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn finish_query(
    ctx: &Ctx,
    path: &str,
    st: &crate::transport::StatResult,
    before: &str,
    edit: Edit,
    attrs: Attrs,
    backup: bool,
    validate: Option<String>,
    report_found: Option<()>,
) -> Result<Query<Plan>, ModuleError> {
    let attr_change = if st.exists {
        fileattrs::attrs_differ(&attrs, st)?
    } else {
        !attrs.is_empty()
    };
    let mut msg = edit.msg.clone();
    if attr_change && (st.exists || edit.changed) {
        if edit.changed {
            msg.push_str(" and ");
        }
        msg.push_str("ownership, perms or SE linux context changed");
    }
    let changed = edit.changed || (attr_change && st.exists);
    let mut result = Outcome {
        changed,
        msg: Some(msg),
        ..Default::default()
    }
    .with("backup", "");
    if report_found.is_some() {
        result = result.with("found", Value::Int(edit.found as i64));
    }
    if ctx.diff && edit.changed {
        // Ansible's lineinfile returns [content diff, file attributes diff]
        result = result
            .with_diff(fileattrs::content_diff(path, before, &edit.text))
            .with_diff(Diff::headers(
                format!("{path} (file attributes)"),
                format!("{path} (file attributes)"),
            ));
    }
    if !changed {
        return Ok(Query::Done(result));
    }
    Ok(Query::Change {
        plan: Plan {
            path: path.to_string(),
            text: edit.changed.then_some(edit.text),
            exists: st.exists,
            backup,
            attrs,
            validate,
            result: result.clone(),
        },
        preview: result,
    })
}

/// Shared by the line-editing modules: write the planned text, then the attributes.
pub(crate) async fn apply_edit(p: Plan, ctx: &Ctx) -> Result<Outcome, ModuleError> {
    let mut out = p.result;
    if let Some(text) = p.text {
        if let Some(v) = &p.validate {
            if let Some(fail) = fileattrs::validate(ctx, v, text.as_bytes(), &p.path).await? {
                return Ok(fail);
            }
        }
        if p.backup && p.exists {
            let b = fileattrs::backup(ctx, &p.path).await?;
            out = out.with("backup", b);
        }
        let (dir, _) = fileattrs::split_path(&p.path);
        if !p.exists && !dir.is_empty() {
            ctx.session.mkdir(dir, None).await?;
        }
        ctx.session
            .write_file(WriteRequest {
                path: p.path.clone(),
                content: text.into_bytes(),
                ..Default::default()
            })
            .await?;
    }
    if !p.attrs.is_empty() {
        fileattrs::apply_attrs(ctx, &p.path, &p.attrs, true, None, false).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str, re: Option<&str>, line: &str, ia: Option<&str>, ib: Option<&str>) -> Edit {
        let ia = if ia.is_none() && ib.is_none() {
            Some("EOF")
        } else {
            ia
        };
        present(text, re, None, line, ia, ib, false, false).unwrap()
    }

    #[test]
    fn appends_at_eof_once() {
        let e = p("a\nb\n", None, "c", None, None);
        assert_eq!(
            (e.text.as_str(), e.changed, e.msg.as_str()),
            ("a\nb\nc\n", true, "line added")
        );
        let e2 = p(&e.text, None, "c", None, None);
        assert!(!e2.changed);
        assert_eq!(e2.msg, "");
        // no final newline: one is added before the line
        assert_eq!(p("a", None, "c", None, None).text, "a\nc\n");
        assert_eq!(p("", None, "c", None, None).text, "c\n");
    }

    #[test]
    fn regexp_replaces_last_match_or_first_with_firstmatch() {
        let t = "x=1\ny=2\nx=3\n";
        let e = p(t, Some("^x="), "x=9", None, None);
        assert_eq!(e.text, "x=1\ny=2\nx=9\n");
        assert_eq!(e.msg, "line replaced");
        let e = present(t, Some("^x="), None, "x=9", Some("EOF"), None, false, true).unwrap();
        assert_eq!(e.text, "x=9\ny=2\nx=3\n");
        // regexp with no match: the line is added at EOF
        let e = p(t, Some("^z="), "z=0", None, None);
        assert_eq!(e.text, "x=1\ny=2\nx=3\nz=0\n");
        // `$` matches before the newline, as Python's does
        let e = p(
            "SELINUX=enforcing\n",
            Some("^SELINUX=.*$"),
            "SELINUX=disabled",
            None,
            None,
        );
        assert_eq!(e.text, "SELINUX=disabled\n");
    }

    #[test]
    fn search_string_is_literal() {
        let e = present(
            "a.b=1\naxb=2\n",
            None,
            Some("a.b"),
            "a.b=0",
            Some("EOF"),
            None,
            false,
            false,
        )
        .unwrap();
        assert_eq!(e.text, "a.b=0\naxb=2\n");
    }

    #[test]
    fn insertafter_and_insertbefore() {
        let t = "[main]\nx=1\n[other]\n";
        assert_eq!(
            p(t, None, "y=2", Some("^\\[main\\]"), None).text,
            "[main]\ny=2\nx=1\n[other]\n"
        );
        assert_eq!(
            p(t, None, "y=2", None, Some("^\\[other\\]")).text,
            "[main]\nx=1\ny=2\n[other]\n"
        );
        assert_eq!(
            p(t, None, "# top", None, Some("BOF")).text,
            "# top\n[main]\nx=1\n[other]\n"
        );
        assert_eq!(
            p(t, None, "# top", Some("BOF"), None).text,
            "# top\n[main]\nx=1\n[other]\n"
        );
        // pattern not found: insertafter → EOF, insertbefore → EOF too (index stays -1)
        assert_eq!(
            p(t, None, "z", Some("^nomatch"), None).text,
            "[main]\nx=1\n[other]\nz\n"
        );
        assert_eq!(
            p(t, None, "z", None, Some("^nomatch")).text,
            "[main]\nx=1\n[other]\nz\n"
        );
        // insertafter the last matching line (no firstmatch)
        assert_eq!(
            p("a\nb\na\n", None, "X", Some("^a"), None).text,
            "a\nb\na\nX\n"
        );
        // line already right after the anchor: nothing to do
        assert!(!p("a\nX\n", None, "X", Some("^a"), None).changed);
        // BOF when the line already exists: it is found, nothing changes
        assert!(!p("a\nX\n", None, "X", None, Some("BOF")).changed);
    }

    #[test]
    fn backrefs() {
        let t = "listen 80;\n";
        let e = present(
            t,
            Some("^listen (\\d+);"),
            None,
            "listen \\g<1>0;",
            None,
            None,
            true,
            false,
        )
        .unwrap();
        assert_eq!(e.text, "listen 800;\n");
        // no match with backrefs: unchanged, not appended
        let e = present(
            t,
            Some("^nomatch (\\d+)"),
            None,
            "x\\1",
            None,
            None,
            true,
            false,
        )
        .unwrap();
        assert!(!e.changed);
        assert_eq!(e.text, t);
    }

    #[test]
    fn absent_removes_every_match() {
        let e = absent("a\nb\na\n", None, None, Some("a")).unwrap();
        assert_eq!(
            (e.text.as_str(), e.found, e.msg.as_str()),
            ("b\n", 2, "2 line(s) removed")
        );
        let e = absent("ab\ncd\n", Some("^c"), None, None).unwrap();
        assert_eq!(e.text, "ab\n");
        let e = absent("ab\ncd\n", None, Some("b"), None).unwrap();
        assert_eq!(e.text, "cd\n");
        let e = absent("ab\n", None, None, Some("zz")).unwrap();
        assert!(!e.changed);
        assert_eq!(e.msg, "");
    }

    #[test]
    fn crlf_line_is_found_then_rewritten_with_lf_as_ansible_does() {
        let e = p("a\r\nb\r\n", None, "b", None, None);
        assert_eq!(
            (e.text.as_str(), e.msg.as_str()),
            ("a\r\nb\n", "line replaced")
        );
    }
}
