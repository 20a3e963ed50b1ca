//! Moving data between kiln's [`Value`] and minijinja's value model.
//!
//! Going in, three kiln-only variants need a decision: `Unsafe` becomes plain text (it is never
//! templated because nothing here re-templates data), `Secret` becomes its plaintext and taints the
//! render so its result is re-wrapped as a secret, and `Vault` is decrypted on the spot (the caller
//! passes the decryptor so that happens only when a template actually reads the value).

use crate::value::{Map, Value};
use indexmap::IndexMap;
use minijinja::value::{Value as JV, ValueKind};

/// What a conversion touched: the render result must be wrapped accordingly.
#[derive(Default, Clone, Copy, Debug)]
pub struct Taint {
    pub secret: bool,
    pub unsafe_: bool,
    /// How many `{{ }}` results the render printed, and the text length of the last one if it was
    /// "native text" (output of `to_json`, `string`, ...: Ansible's STRING_TYPE_FILTERS), which a
    /// single-node template returns without `literal_eval`.
    pub nodes: usize,
    pub native_len: Option<usize>,
}

/// kiln value to minijinja value. `decrypt` opens inline vault values.
pub fn to_jinja(
    v: &Value,
    taint: &mut Taint,
    decrypt: &mut dyn FnMut(&crate::value::VaultText) -> Result<Value, minijinja::Error>,
) -> JV {
    match v {
        Value::Null => JV::from(()),
        Value::Bool(b) => JV::from(*b),
        Value::Int(i) => JV::from(*i),
        Value::Float(f) => JV::from(*f),
        Value::Str(s) => JV::from(s.as_str()),
        Value::Unsafe(s) => {
            taint.unsafe_ = true;
            JV::from(s.as_str())
        }
        Value::List(l) => JV::from(
            l.iter()
                .map(|x| to_jinja(x, taint, decrypt))
                .collect::<Vec<_>>(),
        ),
        Value::Map(m) => {
            let mut out: IndexMap<JV, JV> = IndexMap::with_capacity(m.len());
            for (k, x) in m {
                out.insert(JV::from(k.as_str()), to_jinja(x, taint, decrypt));
            }
            JV::from_object(out)
        }
        Value::Secret(s) => {
            taint.secret = true;
            to_jinja(s.expose(), taint, decrypt)
        }
        Value::Vault(vt) => {
            taint.secret = true;
            match decrypt(vt) {
                Ok(plain) => to_jinja(&plain, taint, decrypt),
                Err(e) => JV::from(e),
            }
        }
    }
}

/// Conversion without a render: secrets exposed, vault values left as redacted text.
pub fn to_jinja_plain(v: &Value) -> JV {
    let mut t = Taint::default();
    to_jinja(v, &mut t, &mut |_| Ok(Value::str(crate::value::REDACTED)))
}

/// minijinja value to kiln value. Undefined values are an error naming `what`.
pub fn from_jinja(v: &JV) -> Result<Value, minijinja::Error> {
    Ok(match v.kind() {
        ValueKind::Undefined => {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::UndefinedError,
                "value is undefined",
            ))
        }
        ValueKind::None => Value::Null,
        ValueKind::Bool => Value::Bool(v.is_true()),
        ValueKind::Number => {
            if v.is_integer() {
                match v.as_i64() {
                    Some(i) => Value::Int(i),
                    None => Value::Float(f64::try_from(v.clone()).unwrap_or(f64::NAN)),
                }
            } else {
                Value::Float(f64::try_from(v.clone()).unwrap_or(f64::NAN))
            }
        }
        ValueKind::String => Value::Str(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Bytes => {
            Value::Str(String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned())
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let mut out = vec![];
            for item in v.try_iter()? {
                out.push(from_jinja(&item)?);
            }
            Value::List(out)
        }
        ValueKind::Map => {
            let mut m = Map::new();
            for k in v.try_iter()? {
                let item = v.get_item(&k)?;
                let key = match k.as_str() {
                    Some(s) => s.to_string(),
                    None => {
                        let mut s = String::new();
                        super::pyrepr::py_str(&k, &mut s)?;
                        s
                    }
                };
                m.insert(key, from_jinja(&item)?);
            }
            Value::Map(m)
        }
        _ => Value::Str(v.to_string()),
    })
}

/// Python `str()` of a minijinja value, as `to_text` does in Ansible filters.
pub fn text(v: &JV) -> Result<String, minijinja::Error> {
    if v.is_undefined() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            "value is undefined",
        ));
    }
    let mut s = String::new();
    super::pyrepr::py_str(v, &mut s)?;
    Ok(s)
}

/// Build a tuple value.
pub fn tuple(items: Vec<JV>) -> JV {
    JV::from_object(super::pyrepr::PyTuple(items))
}

/// A list of kiln lists as a list of tuples.
pub fn tuples(rows: Vec<Vec<Value>>) -> JV {
    JV::from(
        rows.into_iter()
            .map(|r| tuple(r.iter().map(to_jinja_plain).collect()))
            .collect::<Vec<_>>(),
    )
}

/// Python `str()` of a kiln value (secrets print their plaintext: callers decide what is shown).
pub fn py_str_value(v: &Value) -> String {
    let mut s = String::new();
    let _ = super::pyrepr::py_str(&to_jinja_plain(v), &mut s);
    s
}
