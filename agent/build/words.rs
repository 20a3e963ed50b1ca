//! Bash's splitting of an unquoted command line into words, for the regexes of an image set.
//!
//! Kayobe writes `kolla-build ... {{ item.regexes }}` into a `shell` task run by bash, so the
//! regexes reach kolla-build after bash's quote removal: YAML `neutron-\(server\|metadata-agent\)`
//! becomes `neutron-(server|metadata-agent)`, `'a b'` stays one word. kiln runs kolla-build without
//! a shell and hands it the same words. The `shell-words` crate implements POSIX word splitting and
//! quote removal, which for words bash accepts unquoted (backslash escapes any character outside
//! quotes, nothing inside single quotes, `$ \` " \` and newline inside double quotes) gives bash's
//! result. What bash would do beyond that is refused instead of guessed: parameter and command
//! expansion (`$x`, `` ` ``), and unescaped `( ) | & ; < >`, which bash treats as syntax (Kayobe's
//! build would fail or run something else). Pathname expansion (`*`, `?`, `[`) is not done: bash
//! leaves such a word as it is unless a file in the task's working directory matches it.

/// Split `line` as bash would split the unquoted words of a command line.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    check_unquoted(line)?;
    shell_words::split(line).map_err(|e| format!("cannot split {line:?} as bash would: {e}"))
}

/// Refuse characters that bash would not take as part of a plain word when unquoted and unescaped.
fn check_unquoted(line: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum Q {
        None,
        Single,
        Double,
    }
    let mut q = Q::None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        // a `$` that starts no expansion (end of word, before a blank or a quote) stays literal in bash
        let expands = c != '$'
            || chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphanumeric() || "_{([@*#?$!-".contains(*n));
        match (&q, c) {
            (Q::None, '\\') | (Q::Double, '\\') => {
                chars.next();
            }
            (Q::None, '\'') => q = Q::Single,
            (Q::Single, '\'') => q = Q::None,
            (Q::None, '"') => q = Q::Double,
            (Q::Double, '"') => q = Q::None,
            (Q::None | Q::Double, '$' | '`') if expands => {
                return Err(format!(
                    "{line:?}: `{c}` would be expanded by bash in Kayobe's build command; \
                     escape it (\\{c}) or quote it with single quotes"
                ))
            }
            (Q::None, '(' | ')' | '|' | '&' | ';' | '<' | '>') => {
                return Err(format!(
                    "{line:?}: an unescaped `{c}` is shell syntax in Kayobe's build command; \
                     write \\{c} (as in `neutron-\\(server\\|metadata-agent\\)`)"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn bash_quote_removal() {
        assert_eq!(
            split(r"neutron-\(server\|metadata-agent\) ^nova-  'a b'").unwrap(),
            vec!["neutron-(server|metadata-agent)", "^nova-", "a b"]
        );
        assert_eq!(split("\"x\\$y\" \n z").unwrap(), vec!["x$y", "z"]);
        assert!(split("neutron-(server)").is_err());
        assert!(split("$HOME").is_err());
        assert_eq!(
            split(r"^kb-\(a\|b\)$ x$").unwrap(),
            vec!["^kb-(a|b)$", "x$"]
        );
        assert!(split("'unterminated").is_err());
    }
}
