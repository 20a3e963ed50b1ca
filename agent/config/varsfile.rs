//! Reading one variables file (group_vars, host_vars, extra-vars files, `vars_files`,
//! `include_vars`): YAML or JSON, plain or encrypted. Every vars file kiln reads goes through here,
//! so encryption support is in one place.

use super::ConfigError;
use crate::value::{Secret, Value};
use crate::vault::Keyring;
use std::path::Path;

/// Read a vars file. An encrypted file (age or ansible-vault) is decrypted in memory and its scalar
/// values come back as secrets; the structure (keys, lists) stays visible.
pub fn read_vars_file(path: &Path, keys: &Keyring) -> Result<Value, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError::io(path, e))?;
    let origin = path.display().to_string();
    let (text, secret) = match keys.decrypt_file_bytes(&bytes, &origin)? {
        Some(plain) => (plain, true),
        // `*.age` says "encrypted": plaintext under that name is a secret left in the clear
        None if path.extension().is_some_and(|e| e == "age") => {
            return Err(ConfigError::Other(format!(
                "{origin}: named .age but not age-encrypted (its content is in the clear); encrypt it with `kiln vault encrypt -r RECIPIENT {origin}`, or drop the .age suffix"
            )))
        }
        None => (bytes, false),
    };
    let text = crate::yaml::utf8_text(text, &origin).map_err(ConfigError::Other)?;
    let value = crate::yaml::load(&text, &origin)?;
    Ok(if secret { secret_leaves(value) } else { value })
}

/// Wrap every scalar in a secret, keeping maps and lists walkable.
pub fn secret_leaves(v: Value) -> Value {
    match v {
        Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, secret_leaves(v))).collect()),
        Value::List(l) => Value::List(l.into_iter().map(secret_leaves).collect()),
        Value::Null => Value::Null,
        v => Value::Secret(Secret::new(v)),
    }
}
