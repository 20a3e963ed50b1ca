//! Ansible's `key=value` argument strings: `copy: src=a dest="/b c" mode=0644`.
//!
//! The string is split on whitespace the way Ansible's `split_args` does: quotes group, and Jinja
//! blocks (`{{ }}`, `{% %}`, `{# #}`) are never split even when they contain spaces. Each piece
//! that starts with `identifier=` is a parameter (its value unquoted); the rest, re-joined, is the
//! free-form `_raw_params` (`command: ls -l /tmp`). For free-form modules only the keys the module
//! documents as such (`creates=`, `chdir=`, ...) are taken out of the command line.

use crate::value::{Map, Value};

/// Split as Ansible's `split_args`, keeping quotes (they are removed by [`unquote`]).
pub fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize; // inside {{ }} / {% %} / {# #}
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if quote.is_none() && c == '{' && matches!(next, Some('{') | Some('%') | Some('#')) {
            depth += 1;
            cur.push(c);
            cur.push(next.unwrap_or('{'));
            i += 2;
            continue;
        }
        if depth > 0 && matches!(c, '}' | '%' | '#') && next == Some('}') {
            depth -= 1;
            cur.push(c);
            cur.push('}');
            i += 2;
            continue;
        }
        match quote {
            Some(q) => {
                cur.push(c);
                if c == '\\' {
                    if let Some(n) = next {
                        cur.push(n);
                        i += 2;
                        continue;
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if depth == 0 && c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                if (c == '"' || c == '\'') && depth == 0 {
                    quote = Some(c);
                }
                cur.push(c);
            }
        }
        i += 1;
    }
    if quote.is_some() {
        return Err(format!("unbalanced quotes in {s:?}"));
    }
    if depth > 0 {
        return Err(format!("unbalanced jinja2 block or quotes in {s:?}"));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Remove one level of matching outer quotes, as Ansible's `unquote`.
pub fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// Where a piece has an unquoted `=` after an identifier, its key and value.
fn key_value(piece: &str) -> Option<(String, String)> {
    let eq = piece.find('=')?;
    let key = &piece[..eq];
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((key.to_string(), unquote(&piece[eq + 1..])))
}

/// Parse `k=v ...`. With `raw_keys` (a free-form module), only those keys are parameters and
/// everything else is `_raw_params`; without, any `k=v` is a parameter.
pub fn parse_kv(s: &str, raw_keys: Option<&[&str]>) -> Result<Map, String> {
    let mut m = Map::new();
    let mut raw: Vec<String> = Vec::new();
    for piece in split_args(s)? {
        match key_value(&piece) {
            Some((k, v)) if raw_keys.is_none_or(|keys| keys.contains(&k.as_str())) => {
                m.insert(k, Value::Str(v));
            }
            _ => raw.push(piece),
        }
    }
    if !raw.is_empty() {
        m.insert("_raw_params".into(), Value::Str(raw.join(" ")));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_ansible() {
        assert_eq!(
            split_args(r#"src=a dest="/b c" msg='{{ x | default("y z") }}'"#).unwrap(),
            vec![
                "src=a",
                r#"dest="/b c""#,
                r#"msg='{{ x | default("y z") }}'"#
            ]
        );
        assert_eq!(
            split_args("echo {{ a + b }} done").unwrap(),
            vec!["echo", "{{ a + b }}", "done"]
        );
        assert!(split_args("a='b").is_err());
    }

    #[test]
    fn key_values_and_raw() {
        let m = parse_kv(r#"dest="/b c" mode=0644"#, None).unwrap();
        assert_eq!(m["dest"], Value::str("/b c"));
        assert_eq!(m["mode"], Value::str("0644"));
        let m = parse_kv(
            "ls -l /tmp creates=/x chdir=/tmp",
            Some(&["creates", "chdir"]),
        )
        .unwrap();
        assert_eq!(m["_raw_params"], Value::str("ls -l /tmp"));
        assert_eq!(m["creates"], Value::str("/x"));
        let m = parse_kv("echo a=b", Some(&["creates"])).unwrap();
        assert_eq!(m["_raw_params"], Value::str("echo a=b"));
    }
}
