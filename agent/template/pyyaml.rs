//! `to_yaml` / `to_nice_yaml` output as PyYAML's `yaml.dump` (AnsibleDumper) writes it.
//!
//! Users diff and template these into files, so the exact layout matters: sorted keys, leaf
//! collections in flow style when `default_flow_style=None`, indentless sequences under mapping
//! keys, `-   ` item padding for indent 4, and PyYAML's choice between plain, single- and double-
//! quoted scalars. Plain and single-quoted scalars fold past the width (80, or `width`).

use super::pyrepr::py_float;
use crate::value::Value;

pub struct Style {
    pub indent: usize,
    /// `None`: leaf collections in flow style (PyYAML's default); `Some(false)`: block style.
    pub flow: Option<bool>,
    /// `yaml.dump(width=...)`: the column past which plain scalars fold; `None` (or one not
    /// above twice the indent, which PyYAML ignores) is PyYAML's 80.
    pub width: Option<usize>,
}

impl Style {
    /// PyYAML's `best_width`.
    fn best_width(&self) -> usize {
        match self.width {
            Some(w) if w > self.indent * 2 => w,
            _ => 80,
        }
    }
}

pub fn dump(v: &Value, st: &Style) -> String {
    let mut out = String::new();
    match v {
        Value::List(l) if !l.is_empty() && !is_flow(v, st) => write_seq(l, 0, &mut out, false, st),
        Value::Map(m) if !m.is_empty() && !is_flow(v, st) => {
            write_map(v, m, 0, &mut out, false, st)
        }
        _ => {
            out.push_str(&fold(
                scalar_or_flow(v, st.indent, false, st),
                v,
                0,
                st.indent,
                st.best_width(),
            ));
            out.push('\n');
        }
    }
    out
}

fn line_len(out: &str) -> usize {
    out[out.rfind('\n').map(|i| i + 1).unwrap_or(0)..]
        .chars()
        .count()
}

/// PyYAML's line folding of plain and single-quoted scalars at 80 columns: a single space
/// between words becomes a line break (plus indentation) once the line is past the width.
fn fold(rendered: String, v: &Value, start_col: usize, indent: usize, width: usize) -> String {
    let is_str = matches!(v, Value::Str(_) | Value::Unsafe(_));
    if !is_str
        || rendered.contains('\n')
        || rendered.starts_with('"')
        || rendered.starts_with('[')
        || rendered.starts_with('{')
    {
        return rendered;
    }
    let quoted = rendered.starts_with('\'');
    let chars: Vec<char> = rendered.chars().collect();
    let (first, last) = if quoted {
        (1, chars.len().saturating_sub(1))
    } else {
        (0, chars.len())
    };
    let mut out = String::new();
    let mut col = start_col;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' '
            && i > first
            && i + 1 < last
            && chars[i - 1] != ' '
            && chars[i + 1] != ' '
            && col > width
        {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
            continue;
        }
        out.push(c);
        col += 1;
    }
    out
}

fn is_collection(v: &Value) -> bool {
    matches!(v, Value::List(_) | Value::Map(_))
}

fn is_flow(v: &Value, st: &Style) -> bool {
    match v {
        Value::List(l) => {
            l.is_empty()
                || (st.flow != Some(false)
                    && (st.flow == Some(true) || !l.iter().any(is_collection)))
        }
        Value::Map(m) => {
            m.is_empty()
                || (st.flow != Some(false)
                    && (st.flow == Some(true) || !m.values().any(is_collection)))
        }
        _ => true,
    }
}

fn sorted(m: &crate::value::Map) -> Vec<(&String, &Value)> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

fn write_map(
    _v: &Value,
    m: &crate::value::Map,
    indent: usize,
    out: &mut String,
    inline_first: bool,
    st: &Style,
) {
    for (i, (k, v)) in sorted(m).into_iter().enumerate() {
        if i > 0 || !inline_first {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&scalar(
            &Value::Str(k.clone()),
            indent + st.indent,
            true,
            false,
        ));
        out.push(':');
        match v {
            Value::Map(sub) if !is_flow(v, st) => {
                out.push('\n');
                write_map(v, sub, indent + st.indent, out, false, st);
            }
            Value::List(sub) if !is_flow(v, st) => {
                out.push('\n');
                write_seq(sub, indent, out, false, st);
            }
            _ => {
                out.push(' ');
                let col = line_len(out);
                out.push_str(&fold(
                    scalar_or_flow(v, indent + st.indent, false, st),
                    v,
                    col,
                    indent + st.indent,
                    st.best_width(),
                ));
                out.push('\n');
            }
        }
    }
}

fn write_seq(l: &[Value], indent: usize, out: &mut String, inline_first: bool, st: &Style) {
    for (i, item) in l.iter().enumerate() {
        if i > 0 || !inline_first {
            out.push_str(&" ".repeat(indent));
        }
        out.push('-');
        match item {
            Value::Map(sub) if !is_flow(item, st) => {
                out.push_str(&" ".repeat(st.indent.saturating_sub(1).max(1)));
                write_map(item, sub, indent + st.indent.max(2), out, true, st);
            }
            Value::List(sub) if !is_flow(item, st) => {
                out.push_str(&" ".repeat(st.indent.saturating_sub(1).max(1)));
                write_seq(sub, indent + st.indent.max(2), out, true, st);
            }
            _ => {
                out.push(' ');
                let col = line_len(out);
                out.push_str(&fold(
                    scalar_or_flow(item, indent + st.indent, false, st),
                    item,
                    col,
                    indent + st.indent,
                    st.best_width(),
                ));
                out.push('\n');
            }
        }
    }
}

fn scalar_or_flow(v: &Value, indent: usize, in_flow: bool, st: &Style) -> String {
    match v {
        Value::List(l) => {
            let items: Vec<String> = l
                .iter()
                .map(|x| scalar_or_flow(x, indent, true, st))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(m) => {
            let items: Vec<String> = sorted(m)
                .into_iter()
                .map(|(k, x)| {
                    format!(
                        "{}: {}",
                        scalar(&Value::Str(k.clone()), indent, true, true),
                        scalar_or_flow(x, indent, true, st)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        _ => scalar(v, indent, false, in_flow),
    }
}

fn scalar(v: &Value, indent: usize, simple_key: bool, in_flow: bool) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            if f.is_nan() {
                ".nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 { ".inf" } else { "-.inf" }.into()
            } else {
                let r = py_float(*f).to_lowercase();
                if !r.contains('.') && r.contains('e') {
                    r.replacen('e', ".0e", 1)
                } else {
                    r
                }
            }
        }
        Value::Str(s) | Value::Unsafe(s) => string(s, indent, simple_key, in_flow),
        Value::Secret(s) => scalar(s.expose(), indent, simple_key, in_flow),
        Value::Vault(_) => string(crate::value::REDACTED, indent, simple_key, in_flow),
        Value::List(_) | Value::Map(_) => String::new(),
    }
}

fn string(s: &str, indent: usize, simple_key: bool, in_flow: bool) -> String {
    let special = s.chars().any(|c| {
        let u = c as u32;
        !(c == '\n'
            || c == '\t'
            || (0x20..0x7f).contains(&u)
            || (u >= 0xa0 && u != 0xfeff && !(0xd800..0xe000).contains(&u))
            || c == '\u{85}')
    });
    let multiline = s.contains('\n');
    if special || (simple_key && multiline) {
        return double_quoted(s);
    }
    if plain_ok(s, in_flow) {
        return s.to_string();
    }
    if s.starts_with(' ') && multiline {
        return double_quoted(s);
    }
    single_quoted(s, indent)
}

fn plain_ok(s: &str, in_flow: bool) -> bool {
    if s.is_empty()
        || s.contains('\n')
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s.contains('\t')
    {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    let second = s.chars().nth(1);
    if "?:-".contains(first) && (second.is_none() || second == Some(' ')) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if in_flow && (s.contains(|c| ",[]{}".contains(c)) || s.contains('?') || s.contains(':')) {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    // would read back as something other than this string
    matches!(crate::yaml::resolve_plain(s), Value::Str(_)) && !looks_like_timestamp(s)
}

fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && regex::Regex::new(r"^\d{4}-\d{1,2}-\d{1,2}(?:[Tt ]|$)")
            .map(|r| r.is_match(s))
            .unwrap_or(false)
}

fn single_quoted(s: &str, indent: usize) -> String {
    let mut out = String::from("'");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.push_str("''"),
            '\n' => {
                let mut n = 1;
                while chars.peek() == Some(&'\n') {
                    chars.next();
                    n += 1;
                }
                for _ in 0..=n {
                    out.push('\n');
                }
                if chars.peek().is_some() {
                    out.push_str(&" ".repeat(indent));
                }
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
