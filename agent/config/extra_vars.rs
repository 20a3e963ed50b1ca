//! Extra vars, as `ansible-playbook -e` takes them: `@file`, a JSON or YAML mapping, or
//! `key=value ...` pairs (shell-split; values stay strings, as Ansible's `parse_kv` leaves them).

use super::ConfigError;
use crate::value::{Map, Value};
use crate::vault::Keyring;
use std::path::Path;

/// Parse one `-e` argument into a map of variables.
pub fn parse(arg: &str, keys: &Keyring) -> Result<Map, ConfigError> {
    let arg = arg.trim();
    if let Some(file) = arg.strip_prefix('@') {
        let v = super::varsfile::read_vars_file(Path::new(file), keys)?;
        return as_map(v, file);
    }
    if arg.starts_with('{') || arg.starts_with('[') {
        let v = crate::yaml::load(arg, "--extra-vars")?;
        return as_map(v, "--extra-vars");
    }
    let words = shell_words::split(arg)
        .map_err(|e| ConfigError::Other(format!("--extra-vars {arg:?}: {e}")))?;
    let mut m = Map::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                m.insert(k.to_string(), Value::Str(v.to_string()));
            }
            _ => {
                return Err(ConfigError::Other(format!(
                    "--extra-vars: {w:?} is not key=value; use key=value pairs, a JSON/YAML mapping, or @file"
                )))
            }
        }
    }
    Ok(m)
}

fn as_map(v: Value, origin: &str) -> Result<Map, ConfigError> {
    match v {
        Value::Map(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(ConfigError::Other(format!(
            "{origin}: extra vars must be a mapping, got a {}",
            other.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_forms() {
        let k = Keyring::empty();
        let m = parse("a=1 b='two words'", &k).unwrap();
        assert_eq!(m["a"], Value::str("1"));
        assert_eq!(m["b"], Value::str("two words"));
        let m = parse(r#"{"n": 1, "l": [true]}"#, &k).unwrap();
        assert_eq!(m["n"], Value::Int(1));
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), "x: yes\n").unwrap();
        let m = parse(&format!("@{}", t.path().display()), &k).unwrap();
        assert_eq!(m["x"], Value::Bool(true));
        assert!(parse("novalue", &k)
            .unwrap_err()
            .to_string()
            .contains("key=value"));
    }
}
