//! Binding a filter's arguments (after the piped value) to named Python-style parameters, for the
//! filters that mirror Python plugins (ansible.utils' ipaddr family, Kayobe's network filters).
//! Callers decide what surplus positional arguments mean (ansible.utils drops them, Kayobe raises);
//! this does the rest: positional slots, keywords, duplicates and unknown keywords, with Python's
//! wording in the errors.

use minijinja::value::{Kwargs, Value};
use minijinja::{Error, ErrorKind};

/// Fill `params` from `pos` (already trimmed by the caller) and `kwargs`; a parameter given both
/// ways, or a keyword no parameter takes, is an error naming `name`.
pub(crate) fn bind_named(
    name: &str,
    pos: &[Value],
    kwargs: &Kwargs,
    params: &[&str],
) -> Result<Vec<Option<Value>>, Error> {
    let fail = |msg: String| Error::new(ErrorKind::InvalidOperation, msg);
    let mut out: Vec<Option<Value>> = params.iter().map(|_| None).collect();
    for (slot, v) in out.iter_mut().zip(pos) {
        *slot = Some(v.clone());
    }
    for (i, p) in params.iter().enumerate() {
        if kwargs.has(p) {
            if out[i].is_some() {
                return Err(fail(format!(
                    "{name}() got multiple values for argument '{p}'"
                )));
            }
            out[i] = Some(kwargs.get::<Value>(p)?);
        }
    }
    kwargs
        .assert_all_used()
        .map_err(|e| fail(format!("{name}(): {e}")))?;
    Ok(out)
}
