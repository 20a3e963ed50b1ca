//! Ansible's data filters: list set-algebra, flatten, combine, dict/items conversions, zip,
//! subelements/extract, and JSON/YAML (de)serialization in Python's exact output format.
//!
//! These work on kiln [`Value`]s (converted from minijinja and back): the semantics are Python's
//! list/dict ones, and comparisons follow Python equality (`1 == 1.0 == True`).

use super::convert::{from_jinja, text, to_jinja_plain};
use super::filters::{err, reg, A};
use super::pyrepr::py_float;
use crate::value::{Map, Value};
use minijinja::value::{Kwargs, Rest, Value as JV};
use minijinja::{Environment, Error};

pub(crate) fn register(env: &mut Environment<'static>) {
    reg!(env, "to_json", |v: JV,
                          rest: Rest<JV>,
                          kw: Kwargs|
     -> Result<JV, Error> {
        Ok(JV::from_safe_string(to_json(v, rest, kw)?))
    });
    reg!(env, "to_nice_json", |v: JV,
                               rest: Rest<JV>,
                               kw: Kwargs|
     -> Result<JV, Error> {
        Ok(JV::from_safe_string(to_nice_json(v, rest, kw)?))
    });
    reg!(env, "from_json", from_json);
    reg!(env, "to_yaml", |v: JV,
                          rest: Rest<JV>,
                          kw: Kwargs|
     -> Result<JV, Error> {
        Ok(JV::from_safe_string(to_yaml(v, rest, kw)?))
    });
    reg!(env, "to_nice_yaml", |v: JV,
                               rest: Rest<JV>,
                               kw: Kwargs|
     -> Result<JV, Error> {
        Ok(JV::from_safe_string(to_nice_yaml(v, rest, kw)?))
    });
    reg!(env, "from_yaml", from_yaml);
    reg!(env, "from_yaml_all", from_yaml_all);
    reg!(env, "combine", combine);
    reg!(env, "extract", extract);
    reg!(env, "flatten", flatten);
    reg!(env, "dict2items", dict2items);
    reg!(env, "items2dict", items2dict);
    reg!(env, "subelements", subelements);
    reg!(env, "unique", unique);
    reg!(env, "intersect", intersect);
    reg!(env, "difference", difference);
    reg!(env, "symmetric_difference", symmetric_difference);
    reg!(env, "union", union);
    reg!(env, "zip", zip);
    reg!(env, "zip_longest", zip_longest);
    reg!(env, "product", product);
    // Jinja2's dictsort/items yield (key, value) tuples
    env.add_filter("dictsort", dictsort);
    env.add_filter("items", |v: JV| -> Result<JV, Error> {
        pairs_to_tuples(minijinja::filters::items(&v)?)
    });
}

fn pairs_to_tuples(v: JV) -> Result<JV, Error> {
    let mut out = vec![];
    for pair in v.try_iter()? {
        out.push(super::convert::tuple(pair.try_iter()?.collect()));
    }
    Ok(JV::from(out))
}

fn val(v: &JV) -> Result<Value, Error> {
    from_jinja(v)
}
fn out(v: Value) -> JV {
    to_jinja_plain(&v)
}
fn list_of(v: &JV) -> Result<Vec<Value>, Error> {
    match val(v)? {
        Value::List(l) => Ok(l),
        Value::Map(m) => Ok(m.keys().map(|k| Value::Str(k.clone())).collect()),
        Value::Str(s) => Ok(s.chars().map(|c| Value::Str(c.to_string())).collect()),
        other => Err(err(format!(
            "'{}' object is not iterable",
            other.type_name()
        ))),
    }
}

/// Python `==`.
pub(crate) fn py_eq(a: &Value, b: &Value) -> bool {
    let num = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    };
    match (a, b) {
        (Value::Str(x) | Value::Unsafe(x), Value::Str(y) | Value::Unsafe(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        (Value::Null, Value::Null) => true,
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn contains(l: &[Value], x: &Value) -> bool {
    l.iter().any(|y| py_eq(x, y))
}

/// Jinja2 `unique` with `case_sensitive`: strings compare lowercased unless case-sensitive.
fn unique_list(l: Vec<Value>, case_sensitive: bool) -> Vec<Value> {
    let norm = |v: &Value| match v {
        Value::Str(s) | Value::Unsafe(s) if !case_sensitive => Value::Str(s.to_lowercase()),
        v => v.clone(),
    };
    let mut seen: Vec<Value> = vec![];
    let mut res = vec![];
    for x in l {
        let n = norm(&x);
        if !contains(&seen, &n) {
            seen.push(n);
            res.push(x);
        }
    }
    res
}

fn unique(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let cs = a.flag(0, "case_sensitive", false);
    let l = list_of(&v)?;
    let l = match a.string(1, "attribute")? {
        Some(attr) => {
            let mut seen: Vec<Value> = vec![];
            let mut res = vec![];
            for x in l {
                let key = x.get(&attr).cloned().unwrap_or(Value::Null);
                if !contains(&seen, &key) {
                    seen.push(key);
                    res.push(x);
                }
            }
            res
        }
        None => unique_list(l, cs),
    };
    Ok(out(Value::List(l)))
}

fn union(v: JV, b: JV) -> Result<JV, Error> {
    let mut l = list_of(&v)?;
    l.extend(list_of(&b)?);
    Ok(out(Value::List(unique_list(l, false))))
}

fn intersect(v: JV, b: JV) -> Result<JV, Error> {
    let (a, b) = (list_of(&v)?, list_of(&b)?);
    Ok(out(Value::List(unique_list(
        a.into_iter().filter(|x| contains(&b, x)).collect(),
        true,
    ))))
}

fn difference(v: JV, b: JV) -> Result<JV, Error> {
    let (a, b) = (list_of(&v)?, list_of(&b)?);
    Ok(out(Value::List(unique_list(
        a.into_iter().filter(|x| !contains(&b, x)).collect(),
        true,
    ))))
}

fn symmetric_difference(v: JV, b: JV) -> Result<JV, Error> {
    let (a, b) = (list_of(&v)?, list_of(&b)?);
    let isect: Vec<Value> = unique_list(
        a.iter().filter(|x| contains(&b, x)).cloned().collect(),
        true,
    );
    let mut u = a;
    u.extend(b);
    let u = unique_list(u, false);
    Ok(out(Value::List(
        u.into_iter().filter(|x| !contains(&isect, x)).collect(),
    )))
}

fn flatten_into(l: Vec<Value>, levels: Option<i64>, skip_nulls: bool, res: &mut Vec<Value>) {
    for e in l {
        if skip_nulls && matches!(&e, Value::Null)
            || matches!(&e, Value::Str(s) if skip_nulls && (s == "None" || s == "null"))
        {
            continue;
        }
        match e {
            Value::List(inner) => match levels {
                None => flatten_into(inner, None, skip_nulls, res),
                Some(n) if n >= 1 => flatten_into(inner, Some(n - 1), skip_nulls, res),
                Some(_) => res.push(Value::List(inner)),
            },
            e => res.push(e),
        }
    }
}

fn flatten(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let levels = a
        .get(0, "levels")
        .filter(|l| !l.is_none())
        .and_then(|l| l.as_i64());
    let skip = a.flag(1, "skip_nulls", true);
    let mut res = vec![];
    flatten_into(list_of(&v)?, levels, skip, &mut res);
    Ok(out(Value::List(res)))
}

/// Ansible's `merge_hash(x, y, recursive, list_merge)`.
fn merge_hash(x: &Map, y: &Map, recursive: bool, list_merge: &str) -> Map {
    let mut x = x.clone();
    for (k, yv) in y {
        let Some(xv) = x.get(k).cloned() else {
            x.insert(k.clone(), yv.clone());
            continue;
        };
        let merged = match (&xv, yv) {
            (Value::Map(xm), Value::Map(ym)) if recursive => {
                Value::Map(merge_hash(xm, ym, recursive, list_merge))
            }
            (Value::List(xl), Value::List(yl)) => match list_merge {
                "keep" => Value::List(xl.clone()),
                "append" => Value::List(xl.iter().chain(yl).cloned().collect()),
                "prepend" => Value::List(yl.iter().chain(xl).cloned().collect()),
                "append_rp" => {
                    let mut l: Vec<Value> =
                        xl.iter().filter(|e| !contains(yl, e)).cloned().collect();
                    l.extend(yl.iter().cloned());
                    Value::List(l)
                }
                "prepend_rp" => {
                    let mut l = yl.clone();
                    l.extend(xl.iter().filter(|e| !contains(yl, e)).cloned());
                    Value::List(l)
                }
                _ => yv.clone(),
            },
            _ => yv.clone(),
        };
        x.insert(k.clone(), merged);
    }
    x
}

fn combine(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    for (k, _) in a.kwargs() {
        if k != "recursive" && k != "list_merge" {
            return Err(err(format!(
                "'{k}' is an invalid keyword argument for combine()"
            )));
        }
    }
    let recursive = a
        .kwargs()
        .iter()
        .any(|(k, v)| k == "recursive" && v.is_true());
    let list_merge = a
        .kwargs()
        .iter()
        .find(|(k, _)| k == "list_merge")
        .map(|(_, v)| text(v))
        .transpose()?
        .unwrap_or_else(|| "replace".into());
    if ![
        "replace",
        "keep",
        "append",
        "prepend",
        "append_rp",
        "prepend_rp",
    ]
    .contains(&list_merge.as_str())
    {
        return Err(err(format!(
            "merge_hash: 'list_merge' is invalid: {list_merge}"
        )));
    }
    let mut dicts = vec![];
    let mut push = |x: Value| -> Result<(), Error> {
        match x {
            Value::Map(m) => dicts.push(m),
            Value::List(l) => {
                let mut flat = vec![];
                flatten_into(l, None, true, &mut flat);
                for f in flat {
                    match f {
                        Value::Map(m) => dicts.push(m),
                        o => {
                            return Err(err(format!(
                                "combine: expected dicts, got {}",
                                o.type_name()
                            )))
                        }
                    }
                }
            }
            o => {
                return Err(err(format!(
                    "combine: expected dicts, got {}",
                    o.type_name()
                )))
            }
        }
        Ok(())
    };
    push(val(&v)?)?;
    for p in a.positional() {
        push(val(p)?)?;
    }
    let mut res = Map::new();
    for d in dicts {
        res = merge_hash(&res, &d, recursive, &list_merge);
    }
    Ok(out(Value::Map(res)))
}

fn extract(item: JV, container: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let mut value = container.get_item(&item)?;
    if let Some(more) = a.get(0, "morekeys").filter(|m| !m.is_none()) {
        let keys: Vec<JV> = if more.as_str().is_some() || more.is_number() {
            vec![more]
        } else {
            more.try_iter()?.collect()
        };
        for k in keys {
            value = value.get_item(&k)?;
        }
    }
    Ok(value)
}

fn dict2items(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let kn = a.string(0, "key_name")?.unwrap_or_else(|| "key".into());
    let vn = a.string(1, "value_name")?.unwrap_or_else(|| "value".into());
    let Value::Map(m) = val(&v)? else {
        return Err(err(format!(
            "dict2items requires a dictionary, got {} instead.",
            val(&v)?.type_name()
        )));
    };
    let l = m
        .into_iter()
        .map(|(k, x)| {
            let mut e = Map::new();
            e.insert(kn.clone(), Value::Str(k));
            e.insert(vn.clone(), x);
            Value::Map(e)
        })
        .collect();
    Ok(out(Value::List(l)))
}

fn items2dict(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let kn = a.string(0, "key_name")?.unwrap_or_else(|| "key".into());
    let vn = a.string(1, "value_name")?.unwrap_or_else(|| "value".into());
    let Value::List(l) = val(&v)? else {
        return Err(err("items2dict requires a list"));
    };
    let mut m = Map::new();
    for e in l {
        let Value::Map(e) = e else {
            return Err(err("items2dict requires a list of dictionaries"));
        };
        let k = e.get(&kn).ok_or_else(|| {
            err(format!(
                "items2dict requires each dictionary to have a '{kn}' key"
            ))
        })?;
        let x = e.get(&vn).ok_or_else(|| {
            err(format!(
                "items2dict requires each dictionary to have a '{vn}' key"
            ))
        })?;
        let key = match k {
            Value::Str(s) | Value::Unsafe(s) => s.clone(),
            other => super::convert::py_str_value(other),
        };
        m.insert(key, x.clone());
    }
    Ok(out(Value::Map(m)))
}

fn subelements(v: JV, sub: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let skip_missing = a.flag(0, "skip_missing", false);
    let elements: Vec<Value> = match val(&v)? {
        Value::List(l) => l,
        Value::Map(m) => m.into_values().collect(),
        _ => return Err(err("obj must be a list of dicts or a nested dict")),
    };
    let path: Vec<String> = match val(&sub)? {
        Value::Str(s) => s.split('.').map(String::from).collect(),
        Value::List(l) => l.iter().map(super::convert::py_str_value).collect(),
        _ => return Err(err("subelements must be a list or a string")),
    };
    let mut res = vec![];
    for e in elements {
        let mut values = &e;
        let mut missing = false;
        for p in &path {
            match values.get(p) {
                Some(x) => values = x,
                None if skip_missing => {
                    missing = true;
                    break;
                }
                None => {
                    return Err(err(format!(
                        "could not find '{p}' key in iterated item '{}'",
                        super::convert::py_str_value(values)
                    )))
                }
            }
        }
        if missing {
            continue;
        }
        let Value::List(items) = values else {
            return Err(err(format!(
                "the key {} should point to a list, got '{}'",
                path.join("."),
                super::convert::py_str_value(values)
            )));
        };
        for item in items {
            res.push(vec![e.clone(), item.clone()]);
        }
    }
    Ok(super::convert::tuples(res))
}

fn zip(v: JV, rest: Rest<JV>, _kw: Kwargs) -> Result<JV, Error> {
    let mut lists = vec![list_of(&v)?];
    for r in rest.iter() {
        lists.push(list_of(r)?);
    }
    let n = lists.iter().map(Vec::len).min().unwrap_or(0);
    Ok(super::convert::tuples(
        (0..n)
            .map(|i| lists.iter().map(|l| l[i].clone()).collect())
            .collect(),
    ))
}

fn zip_longest(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let fill = a
        .kwargs()
        .iter()
        .find(|(k, _)| k == "fillvalue")
        .map(|(_, v)| val(v))
        .transpose()?
        .unwrap_or(Value::Null);
    let mut lists = vec![list_of(&v)?];
    for r in a.positional() {
        lists.push(list_of(r)?);
    }
    let n = lists.iter().map(Vec::len).max().unwrap_or(0);
    Ok(super::convert::tuples(
        (0..n)
            .map(|i| {
                lists
                    .iter()
                    .map(|l| l.get(i).cloned().unwrap_or(fill.clone()))
                    .collect()
            })
            .collect(),
    ))
}

fn product(v: JV, rest: Rest<JV>, _kw: Kwargs) -> Result<JV, Error> {
    let mut res: Vec<Vec<Value>> = vec![vec![]];
    let mut lists = vec![list_of(&v)?];
    for r in rest.iter() {
        lists.push(list_of(r)?);
    }
    for l in lists {
        res = res
            .into_iter()
            .flat_map(|p| {
                l.iter().map(move |x| {
                    let mut q = p.clone();
                    q.push(x.clone());
                    q
                })
            })
            .collect();
    }
    Ok(super::convert::tuples(res))
}

/// Python `json.dumps` options.
pub(crate) struct JsonStyle {
    pub indent: Option<String>,
    pub sort_keys: bool,
    pub item_sep: String,
    pub key_sep: String,
    pub ensure_ascii: bool,
}

fn json_str(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(crate) fn py_json(v: &Value, st: &JsonStyle, level: usize, out: &mut String) {
    let nl = |out: &mut String, level: usize| {
        if let Some(ind) = &st.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&if f.is_nan() {
            "NaN".to_string()
        } else if f.is_infinite() {
            if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
        } else {
            py_float(*f)
        }),
        Value::Str(s) | Value::Unsafe(s) => json_str(s, st.ensure_ascii, out),
        Value::Secret(s) => py_json(s.expose(), st, level, out),
        Value::Vault(_) => json_str(crate::value::REDACTED, st.ensure_ascii, out),
        Value::List(l) => {
            if l.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item_sep);
                }
                nl(out, level + 1);
                py_json(x, st, level + 1, out);
            }
            nl(out, level);
            out.push(']');
        }
        Value::Map(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut items: Vec<_> = m.iter().collect();
            if st.sort_keys {
                items.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, x)) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item_sep);
                }
                nl(out, level + 1);
                json_str(k, st.ensure_ascii, out);
                out.push_str(&st.key_sep);
                py_json(x, st, level + 1, out);
            }
            nl(out, level);
            out.push('}');
        }
    }
}

fn json_with(
    v: &JV,
    a: &A,
    indent_default: Option<i64>,
    sort_default: bool,
) -> Result<String, Error> {
    let indent = match a.get(usize::MAX, "indent") {
        Some(i) if i.is_none() => None,
        Some(i) => match i.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => Some(text(&i)?),
        },
        None => indent_default.map(|n| " ".repeat(n as usize)),
    };
    let (item_sep, key_sep) = match a.get(usize::MAX, "separators") {
        Some(s) if !s.is_none() => {
            let parts: Vec<JV> = s.try_iter()?.collect();
            (
                text(parts.first().unwrap_or(&JV::from(", ")))?,
                text(parts.get(1).unwrap_or(&JV::from(": ")))?,
            )
        }
        _ => (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        ),
    };
    let st = JsonStyle {
        indent,
        sort_keys: a
            .get(usize::MAX, "sort_keys")
            .map(|s| s.is_true())
            .unwrap_or(sort_default),
        item_sep,
        key_sep,
        ensure_ascii: a
            .get(usize::MAX, "ensure_ascii")
            .map(|s| s.is_true())
            .unwrap_or(true),
    };
    let mut s = String::new();
    py_json(&val(v)?, &st, 0, &mut s);
    Ok(s)
}

fn to_json(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    json_with(&v, &A::new(rest, kw), None, false)
}

fn to_nice_json(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let indent = a.get(0, "indent").and_then(|i| i.as_i64()).unwrap_or(4);
    let sort = a.flag(1, "sort_keys", true);
    json_with(&v, &a, Some(indent), sort)
}

fn from_json(v: JV) -> Result<JV, Error> {
    let s = text(&v)?;
    let j: serde_json::Value =
        serde_json::from_str(&s).map_err(|e| err(format!("from_json: {e}")))?;
    Ok(out(Value::from_json(j)))
}

fn to_yaml(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let flow = a.get(usize::MAX, "default_flow_style").and_then(|f| {
        if f.is_none() {
            None
        } else {
            Some(f.is_true())
        }
    });
    let indent = a
        .get(usize::MAX, "indent")
        .and_then(|i| i.as_i64())
        .unwrap_or(2) as usize;
    Ok(super::pyyaml::dump(
        &val(&v)?,
        &super::pyyaml::Style {
            indent,
            flow,
            width: None,
        },
    ))
}

fn to_nice_yaml(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<String, Error> {
    let a = A::new(rest, kw);
    let indent = a.get(0, "indent").and_then(|i| i.as_i64()).unwrap_or(4) as usize;
    Ok(super::pyyaml::dump(
        &val(&v)?,
        &super::pyyaml::Style {
            indent,
            flow: Some(false),
            width: None,
        },
    ))
}

fn from_yaml(v: JV) -> Result<JV, Error> {
    let Some(s) = v.as_str() else { return Ok(v) };
    let parsed = crate::yaml::load(s, "from_yaml").map_err(|e| err(format!("from_yaml: {e}")))?;
    Ok(out(parsed))
}

fn from_yaml_all(v: JV) -> Result<JV, Error> {
    let Some(s) = v.as_str() else { return Ok(v) };
    let docs = crate::yaml::load_all_nodes(s, "from_yaml_all")
        .map_err(|e| err(format!("from_yaml_all: {e}")))?;
    Ok(out(Value::List(
        docs.iter().map(|d| d.to_value()).collect(),
    )))
}

/// Jinja2 `dictsort(value, case_sensitive=False, by='key', reverse=False)`: (key, value) tuples.
fn dictsort(v: JV, rest: Rest<JV>, kw: Kwargs) -> Result<JV, Error> {
    let a = A::new(rest, kw);
    let cs = a.flag(0, "case_sensitive", false);
    let by = a.string(1, "by")?.unwrap_or_else(|| "key".into());
    let reverse = a.flag(2, "reverse", false);
    let Value::Map(m) = val(&v)? else {
        return Err(err("dictsort: you can only sort dictionaries"));
    };
    let idx = match by.as_str() {
        "key" => 0,
        "value" => 1,
        _ => return Err(err("You can only sort by either 'key' or 'value'")),
    };
    let mut rows: Vec<Vec<Value>> = m.into_iter().map(|(k, x)| vec![Value::Str(k), x]).collect();
    rows.sort_by(|p, q| py_cmp(&p[idx], &q[idx], cs));
    if reverse {
        rows.reverse();
    }
    Ok(super::convert::tuples(rows))
}

/// An ordering close to Python's for sortable values (numbers, then text).
fn py_cmp(a: &Value, b: &Value, case_sensitive: bool) -> std::cmp::Ordering {
    let num = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => {
            let t = |v: &Value| {
                let s = super::convert::py_str_value(v);
                if case_sensitive {
                    s
                } else {
                    s.to_lowercase()
                }
            };
            t(a).cmp(&t(b))
        }
    }
}
