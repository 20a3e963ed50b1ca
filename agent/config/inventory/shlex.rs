//! Python's `shlex.split(line, comments=True)` (POSIX mode), which Ansible's INI plugin uses to cut
//! a host line into `name k=v k="v w"` tokens. Python's rules differ from a POSIX shell's in ways
//! inventories hit: `#` ends a word *anywhere* (`a=b#c` is `a=b`), and inside double quotes a
//! backslash escapes only `"` and `\`. A shell-words crate follows the shell, so this small state
//! machine follows Python instead.

#[derive(Clone, Copy, PartialEq)]
enum State {
    Space,
    Word,
    Quote(char),
    Escape(EscFrom),
}

#[derive(Clone, Copy, PartialEq)]
enum EscFrom {
    Word,
    Double,
}

/// Split like Python's `shlex.split(s, comments=True)`; errors as Python words them.
pub fn split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut tok = String::new();
    let mut quoted = false;
    let mut state = State::Space;
    let mut chars = s.chars();
    loop {
        let c = chars.next();
        match (state, c) {
            (State::Quote(_), None) => return Err("No closing quotation".into()),
            (State::Escape(_), None) => return Err("No escaped character".into()),
            (_, None) => {
                if state == State::Word || quoted {
                    out.push(std::mem::take(&mut tok));
                }
                return Ok(out);
            }
            (State::Space, Some(c)) => {
                if c.is_whitespace() {
                } else if c == '#' {
                    skip_line(&mut chars);
                } else if c == '"' || c == '\'' {
                    quoted = true;
                    state = State::Quote(c);
                } else if c == '\\' {
                    state = State::Escape(EscFrom::Word);
                } else {
                    tok.push(c);
                    state = State::Word;
                }
            }
            (State::Word, Some(c)) => {
                if c.is_whitespace() || c == '#' {
                    if c == '#' {
                        skip_line(&mut chars);
                    }
                    out.push(std::mem::take(&mut tok));
                    quoted = false;
                    state = State::Space;
                } else if c == '"' || c == '\'' {
                    quoted = true;
                    state = State::Quote(c);
                } else if c == '\\' {
                    state = State::Escape(EscFrom::Word);
                } else {
                    tok.push(c);
                }
            }
            (State::Quote(q), Some(c)) => {
                if c == q {
                    state = State::Word;
                } else if c == '\\' && q == '"' {
                    state = State::Escape(EscFrom::Double);
                } else {
                    tok.push(c);
                }
            }
            (State::Escape(from), Some(c)) => {
                if from == EscFrom::Double && c != '"' && c != '\\' {
                    tok.push('\\');
                }
                tok.push(c);
                state = match from {
                    EscFrom::Word => State::Word,
                    EscFrom::Double => State::Quote('"'),
                };
            }
        }
    }
}

fn skip_line(chars: &mut std::str::Chars<'_>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn python_shlex_rules() {
        assert_eq!(
            split(r#"h1 a=1 c="x y" d='[1, 2]' # tail"#).unwrap(),
            ["h1", "a=1", "c=x y", "d=[1, 2]"]
        );
        assert_eq!(split("a=b#c d").unwrap(), ["a=b"]);
        assert_eq!(split(r#"a="x\ny\"z""#).unwrap(), [r#"a=x\ny"z"#]);
        assert_eq!(split(r"a\ b ''").unwrap(), ["a b", ""]);
        assert!(split("a='x").is_err());
    }
}
