//! `blockinfile`: keep a block of lines between two marker lines (`# {mark} ANSIBLE MANAGED
//! BLOCK`, with `{mark}` = `marker_begin`/`marker_end`) in a text file, or remove it.
//!
//! The edit is a pure function ([`edit`]) that follows Ansible's `blockinfile.py` (marker search,
//! `insertafter`/`insertbefore` with `EOF`/`BOF` and MULTILINE patterns, `prepend_newline`,
//! `append_newline`, messages `Block inserted` / `Block removed` / `File created`); reading,
//! writing, backup, validate and attributes are shared with `lineinfile`.

use super::support::args::{self, with_file_common_args};
use super::support::fileattrs;
use super::support::lineedit::{apply_edit, finish_query, Edit, Plan};
use super::support::pyre;
use super::{Ctx, Module, ModuleError, Outcome, Query};
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
    #[serde(default)]
    pub state: args::PresentAbsent,
    #[serde(default = "marker_s", deserialize_with = "args::string")]
    pub marker: String,
    #[serde(default, alias = "content", deserialize_with = "args::opt_string")]
    pub block: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub insertafter: Option<String>,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub insertbefore: Option<String>,
    #[serde(default, deserialize_with = "args::bool")]
    pub create: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub backup: bool,
    #[serde(default, deserialize_with = "args::opt_string")]
    pub validate: Option<String>,
    #[serde(default = "begin_s", deserialize_with = "args::string")]
    pub marker_begin: String,
    #[serde(default = "end_s", deserialize_with = "args::string")]
    pub marker_end: String,
    #[serde(default, deserialize_with = "args::bool")]
    pub append_newline: bool,
    #[serde(default, deserialize_with = "args::bool")]
    pub prepend_newline: bool,
}
}

fn marker_s() -> String {
    "# {mark} ANSIBLE MANAGED BLOCK".into()
}
fn begin_s() -> String {
    "BEGIN".into()
}
fn end_s() -> String {
    "END".into()
}

/// Python's `bytes.splitlines(True)`: lines end at `\n`, `\r\n` or `\r`, endings kept.
pub fn splitlines_keep(s: &str) -> Vec<String> {
    let mut out = vec![];
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' || b[i] == b'\r' {
            let end = if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                i + 2
            } else {
                i + 1
            };
            out.push(s[start..end].to_string());
            start = end;
            i = end;
        } else {
            i += 1;
        }
    }
    if start < b.len() {
        out.push(s[start..].to_string());
    }
    out
}

/// What the block edit needs besides the file's text.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    pub present: bool,
    pub marker: &'a str,
    pub marker_begin: &'a str,
    pub marker_end: &'a str,
    pub block: &'a str,
    pub insertafter: Option<&'a str>,
    pub insertbefore: Option<&'a str>,
    pub append_newline: bool,
    pub prepend_newline: bool,
}

/// The edit Ansible's blockinfile makes; `original` None means the file does not exist.
pub fn edit(original: Option<&str>, p: &Params) -> Result<Edit, String> {
    let sep = "\n";
    let text = original.unwrap_or("");
    let mut lines = splitlines_keep(text);
    let (mut ia, ib) = (p.insertafter, p.insertbefore);
    if ia.is_none() && ib.is_none() {
        ia = Some("EOF");
    }
    let insert_pat = match (ia, ib) {
        (Some(a), _) if a != "EOF" => Some(a),
        (None, Some(b)) if b != "BOF" => Some(b),
        _ => None,
    };
    let marker0 = format!("{}{sep}", p.marker.replace("{mark}", p.marker_begin));
    let marker1 = format!("{}{sep}", p.marker.replace("{mark}", p.marker_end));
    let blocklines: Vec<String> = if p.present && !p.block.is_empty() {
        let mut b = p.block.to_string();
        if !b.ends_with(sep) {
            b.push_str(sep);
        }
        let mut v = vec![marker0.clone()];
        v.extend(splitlines_keep(&b));
        v.push(marker1.clone());
        v
    } else {
        vec![]
    };
    let (mut n0, mut n1) = (None, None);
    for (i, l) in lines.iter().enumerate() {
        if *l == marker0 {
            n0 = Some(i);
        }
        if *l == marker1 {
            n1 = Some(i);
        }
    }
    let mut n0: usize = match (n0, n1) {
        (Some(a), Some(b)) if a < b => {
            lines.drain(a..=b);
            a
        }
        (Some(a), Some(b)) => {
            lines.drain(b..=a);
            b
        }
        _ => {
            if let Some(pat) = insert_pat {
                let mut found: Option<usize> = None;
                if pyre::has_multiline_flag(pat) {
                    let re = pyre::compile(pat, false)?;
                    if let Some(m) = re.find(text).map_err(|e| e.to_string())? {
                        found = Some(if ia.is_some() {
                            text[..m.end()].matches('\n').count()
                        } else {
                            text[..m.start()].matches('\n').count()
                        });
                    }
                } else {
                    let re = pyre::compile(pat, false)?;
                    for (i, l) in lines.iter().enumerate() {
                        if re.is_match(l).map_err(|e| e.to_string())? {
                            found = Some(i);
                        }
                    }
                }
                match found {
                    None => lines.len(),
                    Some(n) if ia.is_some() => n + 1,
                    Some(n) => n,
                }
            } else if ib.is_some() {
                0
            } else {
                lines.len()
            }
        }
    };
    if n0 > 0 && n0 <= lines.len() && !lines[n0 - 1].ends_with(sep) {
        lines[n0 - 1].push_str(sep);
    }
    if p.prepend_newline
        && p.present
        && n0 != 0
        && lines.get(n0 - 1).map(String::as_str) != Some(sep)
    {
        lines.insert(n0, sep.to_string());
        n0 += 1;
    }
    let n0 = n0.min(lines.len());
    let count = blocklines.len();
    lines.splice(n0..n0, blocklines);
    if p.append_newline && p.present {
        let after = n0 + count;
        if after < lines.len() && lines[after] != sep {
            lines.insert(after, sep.to_string());
        }
    }
    let result = lines.concat();
    let (changed, msg) = match original {
        Some(o) if o == result => (false, ""),
        None => (true, "File created"),
        _ if count == 0 => (true, "Block removed"),
        _ => (true, "Block inserted"),
    };
    Ok(Edit {
        text: result,
        changed,
        msg: msg.into(),
        found: 0,
    })
}

pub struct BlockInFile;

impl Module for BlockInFile {
    const NAMES: &'static [&'static str] = &[
        "blockinfile",
        "ansible.builtin.blockinfile",
        "ansible.legacy.blockinfile",
    ];
    type Args = Args;
    type Plan = Plan;

    async fn query(&self, a: Args, ctx: &Ctx) -> Result<Query<Plan>, ModuleError> {
        let _ = (&a.unsafe_writes, &a.attributes);
        if a.insertafter.is_some() && a.insertbefore.is_some() {
            return Err(ModuleError::Args(
                "parameters are mutually exclusive: insertbefore|insertafter".into(),
            ));
        }
        let present = a.state.present()?;
        let path = a.path.clone();
        let st = match fileattrs::stat_editable(ctx, &path, a.create).await? {
            Ok(st) => st,
            Err(failed) => return Ok(Query::Done(failed)),
        };
        if !present && !st.exists {
            return Ok(Query::Done(
                Outcome::ok().with_msg(format!("File {path} not present")),
            ));
        }
        let original = if st.exists {
            Some(String::from_utf8_lossy(&ctx.session.read_file(&path).await?).into_owned())
        } else {
            None
        };
        let block = a.block.clone().unwrap_or_default();
        let e = edit(
            original.as_deref(),
            &Params {
                present,
                marker: &a.marker,
                marker_begin: &a.marker_begin,
                marker_end: &a.marker_end,
                block: &block,
                insertafter: a.insertafter.as_deref(),
                insertbefore: a.insertbefore.as_deref(),
                append_newline: a.append_newline,
                prepend_newline: a.prepend_newline,
            },
        )
        .map_err(ModuleError::Args)?;
        let attrs = a.file_attrs();
        let q = finish_query(
            ctx,
            &path,
            &st,
            original.as_deref().unwrap_or(""),
            e,
            attrs,
            a.backup,
            a.validate.clone(),
            None,
        )
        .await?;
        // blockinfile reports `backup_file` only when it made one, not lineinfile's `backup: ""`
        Ok(match q {
            Query::Done(mut o) => {
                o.data.shift_remove("backup");
                Query::Done(o)
            }
            Query::Change { plan, mut preview } => {
                preview.data.shift_remove("backup");
                Query::Change { plan, preview }
            }
            other => other,
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

    fn params<'a>(block: &'a str) -> Params<'a> {
        Params {
            present: true,
            marker: "# {mark} ANSIBLE MANAGED BLOCK",
            marker_begin: "BEGIN",
            marker_end: "END",
            block,
            insertafter: None,
            insertbefore: None,
            append_newline: false,
            prepend_newline: false,
        }
    }

    const B: &str = "# BEGIN ANSIBLE MANAGED BLOCK\n";
    const E: &str = "# END ANSIBLE MANAGED BLOCK\n";

    #[test]
    fn inserts_at_eof_then_is_idempotent() {
        let e = edit(Some("a\nb"), &params("x=1\ny=2")).unwrap();
        assert_eq!(e.text, format!("a\nb\n{B}x=1\ny=2\n{E}"));
        assert_eq!(e.msg, "Block inserted");
        let e2 = edit(Some(&e.text), &params("x=1\ny=2")).unwrap();
        assert!(!e2.changed);
        assert_eq!(e2.text, e.text);
    }

    #[test]
    fn replaces_the_block_in_place() {
        let t = format!("a\n{B}old\n{E}z\n");
        let e = edit(Some(&t), &params("new")).unwrap();
        assert_eq!(e.text, format!("a\n{B}new\n{E}z\n"));
        assert_eq!(e.msg, "Block inserted");
    }

    #[test]
    fn removes_with_absent_or_empty_block() {
        let t = format!("a\n{B}old\n{E}z\n");
        let mut p = params("ignored");
        p.present = false;
        let e = edit(Some(&t), &p).unwrap();
        assert_eq!(
            (e.text.as_str(), e.msg.as_str()),
            ("a\nz\n", "Block removed")
        );
        let e = edit(Some(&t), &params("")).unwrap();
        assert_eq!(e.text, "a\nz\n");
    }

    #[test]
    fn insert_positions() {
        let mut p = params("x");
        p.insertbefore = Some("BOF");
        assert_eq!(edit(Some("a\n"), &p).unwrap().text, format!("{B}x\n{E}a\n"));
        let mut p = params("x");
        p.insertafter = Some("^a");
        assert_eq!(
            edit(Some("a\nb\n"), &p).unwrap().text,
            format!("a\n{B}x\n{E}b\n")
        );
        let mut p = params("x");
        p.insertbefore = Some("^b");
        assert_eq!(
            edit(Some("a\nb\n"), &p).unwrap().text,
            format!("a\n{B}x\n{E}b\n")
        );
        // no match: EOF
        let mut p = params("x");
        p.insertbefore = Some("^zz");
        assert_eq!(edit(Some("a\n"), &p).unwrap().text, format!("a\n{B}x\n{E}"));
        // MULTILINE pattern over the whole text
        let mut p = params("x");
        p.insertafter = Some("(?m)^b\\nc$");
        assert_eq!(
            edit(Some("a\nb\nc\nd\n"), &p).unwrap().text,
            format!("a\nb\nc\n{B}x\n{E}d\n")
        );
    }

    #[test]
    fn custom_markers_and_newlines() {
        let mut p = params("x");
        p.marker = "<!-- {mark} -->";
        p.marker_begin = "start";
        p.marker_end = "stop";
        p.prepend_newline = true;
        p.append_newline = true;
        p.insertafter = Some("^a");
        let e = edit(Some("a\nb\n"), &p).unwrap();
        assert_eq!(e.text, "a\n\n<!-- start -->\nx\n<!-- stop -->\n\nb\n");
    }

    #[test]
    fn new_file() {
        let e = edit(None, &params("x")).unwrap();
        assert_eq!(
            (e.text.as_str(), e.msg.as_str()),
            (format!("{B}x\n{E}").as_str(), "File created")
        );
    }

    #[test]
    fn python_splitlines() {
        assert_eq!(
            splitlines_keep("a\r\nb\rc\nd"),
            vec!["a\r\n", "b\r", "c\n", "d"]
        );
        assert!(splitlines_keep("").is_empty());
    }
}
