//! The items a task loops over: `loop:` as given, and the `with_*` forms Ansible builds from
//! lookups (`with_items` flattens one level, `with_dict` gives key/value pairs, `with_together`
//! zips, `with_subelements` pairs each element with each of its sub-list's entries, `with_nested`
//! multiplies; any other `with_X` is `lookup('X', ...)`).

use crate::playbook::{Loop, LoopKind};
use crate::template::{Templar, VarSource};
use crate::value::{Map, Value};
use std::sync::Arc;

fn as_list(v: Value) -> Vec<Value> {
    match v {
        Value::List(l) => l,
        Value::Null => vec![],
        other => vec![other],
    }
}

fn pair(k: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::str(k));
    m.insert("value".into(), v);
    Value::Map(m)
}

pub fn items(
    templar: &Templar,
    src: &Arc<dyn VarSource>,
    lp: &Loop,
    origin: &str,
) -> Result<Vec<Value>, String> {
    let value = templar
        .template(src, &lp.value, origin)
        .map_err(|e| e.to_string())?;
    match &lp.kind {
        LoopKind::Loop => match value {
            Value::List(l) => Ok(l),
            other => Err(format!(
                "{origin}: Invalid data passed to 'loop', it requires a list, got this instead: {}. \
                 Hint: If you passed a list/dict of just one element, try adding wantlist=True \
                 to your lookup invocation or use q/query instead of lookup.",
                crate::template::py_str_value(&other)
            )),
        },
        LoopKind::With(name) => match name.as_str() {
            "items" => Ok(as_list(value)
                .into_iter()
                .flat_map(|i| match i {
                    Value::List(l) => l,
                    other => vec![other],
                })
                .collect()),
            "list" => Ok(as_list(value)),
            "dict" => match value {
                Value::Map(m) => Ok(m.into_iter().map(|(k, v)| pair(&k, v)).collect()),
                other => Err(format!(
                    "with_dict expects a dict, got {}",
                    crate::template::py_str_value(&other)
                )),
            },
            "indexed_items" => Ok(as_list(value)
                .into_iter()
                .enumerate()
                .map(|(i, v)| Value::List(vec![Value::Int(i as i64), v]))
                .collect()),
            "together" => {
                let lists: Vec<Vec<Value>> = as_list(value).into_iter().map(as_list).collect();
                let n = lists.iter().map(|l| l.len()).max().unwrap_or(0);
                Ok((0..n)
                    .map(|i| {
                        Value::List(
                            lists
                                .iter()
                                .map(|l| l.get(i).cloned().unwrap_or(Value::Null))
                                .collect(),
                        )
                    })
                    .collect())
            }
            "nested" | "cartesian" => {
                let lists: Vec<Vec<Value>> = as_list(value).into_iter().map(as_list).collect();
                let mut acc: Vec<Vec<Value>> = vec![vec![]];
                for l in lists {
                    let mut next = Vec::new();
                    for a in &acc {
                        for x in &l {
                            let mut b = a.clone();
                            b.push(x.clone());
                            next.push(b);
                        }
                    }
                    acc = next;
                }
                Ok(acc.into_iter().map(Value::List).collect())
            }
            "subelements" => subelements(value),
            other => {
                // any lookup: with_fileglob, with_first_found, with_lines, with_sequence, ...
                let terms = as_list(value);
                let mut layer = Map::new();
                let mut call = format!("{{{{ lookup('{other}'");
                for (i, t) in terms.into_iter().enumerate() {
                    layer.insert(format!("__kiln_term{i}"), t);
                    call.push_str(&format!(", __kiln_term{i}"));
                }
                call.push_str(", wantlist=True) }}");
                let scope = WithLayer {
                    inner: src.clone(),
                    layer,
                };
                let src2: Arc<dyn VarSource> = Arc::new(scope);
                match templar
                    .template(&src2, &Value::Str(call), origin)
                    .map_err(|e| e.to_string())?
                {
                    Value::List(l) => Ok(l),
                    v => Ok(as_list(v)),
                }
            }
        },
    }
}

fn subelements(value: Value) -> Result<Vec<Value>, String> {
    let parts = as_list(value);
    let bad = || {
        "subelements lookup expects a list of two or three items: a list of dicts, a key, and optionally {skip_missing: true}".to_string()
    };
    let (elems, key) = match (parts.first(), parts.get(1)) {
        (Some(e), Some(Value::Str(k))) => (e.clone(), k.clone()),
        _ => return Err(bad()),
    };
    let skip_missing = parts
        .get(2)
        .and_then(|f| f.get("skip_missing"))
        .is_some_and(|v| v.is_truthy());
    let elems = match elems {
        Value::Map(m) => m.into_values().collect(),
        other => as_list(other),
    };
    let mut out = Vec::new();
    for e in elems {
        let mut cur = Some(&e);
        for part in key.split('.') {
            cur = cur.and_then(|c| c.get(part));
        }
        // the parent is given without its sub-list, as Ansible's subelements lookup does
        let mut parent = e.clone();
        if !key.contains('.') {
            if let Value::Map(m) = &mut parent {
                m.shift_remove(&key);
            }
        }
        match cur {
            Some(Value::List(subs)) => {
                for s in subs {
                    out.push(Value::List(vec![parent.clone(), s.clone()]));
                }
            }
            None if skip_missing => {}
            None => {
                return Err(format!(
                    "could not find '{key}' key in iterated item {}",
                    crate::template::py_str_value(&e)
                ))
            }
            Some(other) => {
                return Err(format!(
                    "the key {key} should point to a list, got {}",
                    crate::template::py_str_value(other)
                ))
            }
        }
    }
    Ok(out)
}

/// A variable source with a few extra names on top (lookup terms).
pub struct WithLayer {
    pub inner: Arc<dyn VarSource>,
    pub layer: Map,
}

impl VarSource for WithLayer {
    fn raw(&self, name: &str) -> Option<Value> {
        self.layer
            .get(name)
            .cloned()
            .or_else(|| self.inner.raw(name))
    }
    fn origin(&self, name: &str) -> Option<String> {
        if self.layer.contains_key(name) {
            return Some("loop terms".into());
        }
        self.inner.origin(name)
    }
    fn names(&self) -> Vec<String> {
        let mut n = self.inner.names();
        n.extend(self.layer.keys().cloned());
        n
    }
    fn host(&self, host: &str) -> Option<Arc<dyn VarSource>> {
        self.inner.host(host)
    }
    fn host_names(&self) -> Vec<String> {
        self.inner.host_names()
    }
    fn select_hosts(&self, pattern: &str) -> Result<Vec<String>, String> {
        self.inner.select_hosts(pattern)
    }
}
