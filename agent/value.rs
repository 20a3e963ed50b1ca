//! The data kiln moves between layers: what a vars file, an inventory or a task result holds.
//!
//! It is JSON's model (null, bool, int, float, string, list, ordered map) plus the three things
//! Ansible data carries that JSON cannot say:
//!
//! * [`Value::Unsafe`] — a string tagged `!unsafe`: never templated.
//! * [`Value::Vault`] — an inline `!vault` ciphertext, decrypted only when used (as Ansible does, so a
//!   file full of vaulted values loads without a password).
//! * [`Value::Secret`] — a decrypted value. It redacts itself in `Debug`, `Display` and `Serialize`,
//!   so every output path (human, JSON events, logs, errors) prints `********` unless a caller asks
//!   for the plaintext with [`Secret::expose`].
//!
//! Maps keep insertion order, as Python dicts do, so output order matches Ansible's.

use indexmap::IndexMap;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// An ordered string-keyed map, Ansible's `dict`.
pub type Map = IndexMap<String, Value>;

/// What every secret prints as.
pub const REDACTED: &str = "********";

#[derive(Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(Map),
    /// `!unsafe` text: kept verbatim, never templated.
    Unsafe(String),
    /// Inline `!vault` ciphertext, decrypted on use.
    Vault(Arc<VaultText>),
    /// A decrypted secret (or a value computed from one).
    Secret(Secret),
}

/// An inline ansible-vault (or age) ciphertext and where it was read from, for error messages.
#[derive(Clone, PartialEq)]
pub struct VaultText {
    pub ciphertext: String,
    /// `file:line` of the value, for "cannot decrypt X (file:line)".
    pub origin: String,
}

impl fmt::Debug for VaultText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "!vault <{} bytes from {}>",
            self.ciphertext.len(),
            self.origin
        )
    }
}

/// A value that must never be printed. `Debug`, `Display` and `Serialize` all give `********`.
#[derive(Clone, PartialEq)]
pub struct Secret(Arc<Value>);

impl Secret {
    pub fn new(v: Value) -> Self {
        match v {
            // never nest secrets
            Value::Secret(s) => s,
            v => Secret(Arc::new(v)),
        }
    }
    /// The plaintext. Call only where the value is used, never where it is shown.
    pub fn expose(&self) -> &Value {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Unsafe(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// `m.get(key)` for maps, `None` otherwise.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// The Python type name Ansible would report (`str`, `int`, `dict`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Map(_) => "dict",
            Value::Unsafe(_) => "AnsibleUnsafeText",
            Value::Vault(_) => "AnsibleVaultEncryptedUnicode",
            Value::Secret(_) => "secret",
        }
    }

    /// True when this value or anything inside it is a secret or an undecrypted vault value.
    pub fn contains_secret(&self) -> bool {
        match self {
            Value::Secret(_) | Value::Vault(_) => true,
            Value::List(l) => l.iter().any(Value::contains_secret),
            Value::Map(m) => m.values().any(Value::contains_secret),
            _ => false,
        }
    }

    /// The value with every secret replaced by its plaintext. For the places that must use the
    /// plaintext (a file written to a host, a command run); never for output.
    pub fn expose_secrets(&self) -> Value {
        match self {
            Value::Secret(s) => s.expose().expose_secrets(),
            Value::List(l) => Value::List(l.iter().map(Value::expose_secrets).collect()),
            Value::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.expose_secrets()))
                    .collect(),
            ),
            v => v.clone(),
        }
    }

    /// Convert to JSON, with secrets redacted (unless `expose`).
    pub fn to_json(&self, expose: bool) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(f.to_string())),
            Value::Str(s) | Value::Unsafe(s) => J::String(s.clone()),
            Value::List(l) => J::Array(l.iter().map(|v| v.to_json(expose)).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), v.to_json(expose)))
                    .collect(),
            ),
            Value::Vault(_) => J::String(REDACTED.into()),
            Value::Secret(s) if expose => s.expose().to_json(true),
            Value::Secret(_) => J::String(REDACTED.into()),
        }
    }

    pub fn from_json(j: serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s),
            J::Array(a) => Value::List(a.into_iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(
                o.into_iter()
                    .map(|(k, v)| (k, Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// A keyword or setting as Ansible reads a boolean (`become: yes`, `ansible_become: "true"`):
    /// text counts only when it says yes/true/on/1/y; other values by their truthiness.
    pub fn is_keyword_true(&self) -> bool {
        match self {
            Value::Str(s) => matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "yes" | "true" | "on" | "1" | "y"
            ),
            other => other.is_truthy(),
        }
    }

    /// Ansible's truthiness for plain data (`bool` filter semantics are in the template layer).
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Unsafe(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Vault(_) => true,
            Value::Secret(s) => s.expose().is_truthy(),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Unsafe(s) => write!(f, "!unsafe {s:?}"),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Map(m) => f.debug_map().entries(m).finish(),
            Value::Vault(v) => write!(f, "{v:?}"),
            Value::Secret(_) => f.write_str(REDACTED),
        }
    }
}

/// Serializing redacts secrets: this is the path every output takes.
impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(x) | Value::Unsafe(x) => s.serialize_str(x),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Value::Vault(_) | Value::Secret(_) => s.serialize_str(REDACTED),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Value::from_json)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Value::List(l)
    }
}
impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Map(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_redact_in_every_format() {
        let mut m = Map::new();
        m.insert(
            "pw".into(),
            Value::Secret(Secret::new(Value::str("hunter2"))),
        );
        let v = Value::Map(m);
        assert!(!format!("{v:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&v).unwrap().contains("hunter2"));
        assert!(!crate::yaml::dump(&v).unwrap().contains("hunter2"));
        assert!(!v.to_json(false).to_string().contains("hunter2"));
        assert!(v.to_json(true).to_string().contains("hunter2"));
        assert_eq!(v.expose_secrets().get("pw"), Some(&Value::str("hunter2")));
    }
}
