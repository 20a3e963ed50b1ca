//! Python `re` semantics on top of `fancy-regex`, for the modules whose arguments are Python
//! regular expressions (`lineinfile`, `replace`, `find`, ...).
//!
//! The syntaxes are nearly the same; the differences that matter in playbooks are translated:
//! Python's `$` (without MULTILINE) also matches before a final newline (lines read with
//! `readlines()` keep theirs), `\Z` is Rust's `\z`, and `(?P=name)` is `\k<name>`. Replacement
//! templates are expanded as Python's `match.expand` does: `\1`, `\g<1>`, `\g<name>`, and the
//! escapes `\n`, `\t`, `\r`, `\\`.

use fancy_regex::{Captures, Regex};

/// Compile a Python pattern. `multiline`: Python's `re.MULTILINE` (`^`/`$` at every line).
pub fn compile(pattern: &str, multiline: bool) -> Result<Regex, String> {
    compile_flags(pattern, multiline, false)
}

/// Compile with Python's `re.MULTILINE` and/or `re.DOTALL`. An inline `(?m)` at the start of the
/// pattern turns MULTILINE on, as in Python.
pub fn compile_flags(pattern: &str, multiline: bool, dotall: bool) -> Result<Regex, String> {
    let multiline = multiline || has_multiline_flag(pattern);
    let mut t = translate(pattern, multiline);
    if dotall {
        t.insert_str(0, "(?s)");
    }
    Regex::new(&t).map_err(|e| format!("invalid regular expression {pattern:?}: {e}"))
}

/// Whether the pattern starts with inline flags that include `m`: `(?m)`, `(?im)`.
pub fn has_multiline_flag(pattern: &str) -> bool {
    pattern
        .strip_prefix("(?")
        .and_then(|r| r.split_once(')'))
        .is_some_and(|(flags, _)| {
            !flags.is_empty()
                && flags.chars().all(|c| c.is_ascii_alphabetic())
                && flags.contains('m')
        })
}

fn translate(p: &str, multiline: bool) -> String {
    let mut out = String::with_capacity(p.len() + 8);
    if multiline {
        out.push_str("(?m)");
    }
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() => {
                let n = chars[i + 1];
                if n == 'Z' && !in_class {
                    out.push_str("\\z");
                } else {
                    out.push('\\');
                    out.push(n);
                }
                i += 2;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // a leading `]` or `^]` is literal inside the class
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '$' if !in_class && !multiline => out.push_str("(?:(?=\\n\\z)|\\z)"),
            '(' if !in_class && p[char_offset(&chars, i)..].starts_with("(?P=") => {
                let rest: String = chars[i + 4..].iter().collect();
                if let Some(end) = rest.find(')') {
                    out.push_str(&format!("\\k<{}>", &rest[..end]));
                    i += 4 + rest[..end].chars().count() + 1;
                    continue;
                }
                out.push(c);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

fn char_offset(chars: &[char], i: usize) -> usize {
    chars[..i].iter().map(|c| c.len_utf8()).sum()
}

/// Python's `match.expand(template)`.
pub fn expand(template: &str, caps: &Captures) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    let group = |out: &mut String, name: &str| -> Result<(), String> {
        let m = match name.parse::<usize>() {
            Ok(n) => {
                if n >= caps.len() {
                    return Err(format!("invalid group reference {n}"));
                }
                caps.get(n)
            }
            Err(_) => caps.name(name),
        };
        if let Some(m) = m {
            out.push_str(m.as_str());
        }
        Ok(())
    };
    while i < chars.len() {
        let c = chars[i];
        if c != '\\' || i + 1 >= chars.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let n = chars[i + 1];
        match n {
            'g' if chars.get(i + 2) == Some(&'<') => {
                let rest: String = chars[i + 3..].iter().collect();
                let end = rest
                    .find('>')
                    .ok_or_else(|| "missing >, unterminated name".to_string())?;
                group(&mut out, &rest[..end])?;
                i += 3 + rest[..end].chars().count() + 1;
            }
            '0'..='9' => {
                // up to two digits, as Python reads a group number
                let mut num = n.to_string();
                if let Some(d) = chars.get(i + 2).filter(|d| d.is_ascii_digit()) {
                    num.push(*d);
                }
                group(&mut out, &num)?;
                i += 1 + num.len();
            }
            'n' => {
                out.push('\n');
                i += 2;
            }
            't' => {
                out.push('\t');
                i += 2;
            }
            'r' => {
                out.push('\r');
                i += 2;
            }
            '\\' => {
                out.push('\\');
                i += 2;
            }
            other => {
                out.push('\\');
                out.push(other);
                i += 2;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_matches_before_final_newline_like_python() {
        let r = compile("^foo$", false).unwrap();
        assert!(r.is_match("foo\n").unwrap());
        assert!(r.is_match("foo").unwrap());
        assert!(!r.is_match("foo\nbar").unwrap());
        let m = compile("^b$", true).unwrap();
        assert!(m.is_match("a\nb\nc").unwrap());
        assert!(compile("a\\Z", false).unwrap().is_match("xa").unwrap());
        assert!(!compile("a\\Z", false).unwrap().is_match("a\n").unwrap());
        assert!(compile("[$]", false).unwrap().is_match("$").unwrap());
        assert!(compile("(?P<x>a)(?P=x)", false)
            .unwrap()
            .is_match("aa")
            .unwrap());
    }

    #[test]
    fn expand_python_templates() {
        let r = compile("^(?P<k>\\w+)=(\\w+)", false).unwrap();
        let c = r.captures("key=val").unwrap().unwrap();
        assert_eq!(expand("\\2:\\1", &c).unwrap(), "val:key");
        assert_eq!(expand("\\g<k>-\\g<2>\\n", &c).unwrap(), "key-val\n");
        assert_eq!(expand("a\\\\b", &c).unwrap(), "a\\b");
        assert!(expand("\\5", &c).is_err());
    }
}
