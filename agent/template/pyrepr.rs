//! Python's `str()`/`repr()` of template values and `ast.literal_eval` of text.
//!
//! Ansible (non-native Jinja) turns every template result into text with Python's `str()`, then
//! parses it back with `ast.literal_eval` when it looks like a list, dict or bool. Matching its
//! output therefore means printing exactly as CPython prints (`['a', 1, True, None]`, `1e+16`) and
//! parsing exactly the literal subset CPython accepts. Both live here so the round trip is one file.

use crate::value::{Map, Value};
use minijinja::value::{Value as JV, ValueKind};
use std::fmt::Write;

/// Python `repr(float)`: shortest round-trip digits, exponent outside 1e-4 <= |x| < 1e16.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let e = format!("{f:e}"); // e.g. "-1.2345e-5", shortest round-trip digits
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// Python `repr(str)`.
pub fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python `str()` of a minijinja value (`repr` for the items of containers).
pub fn py_str(v: &JV, out: &mut String) -> Result<(), minijinja::Error> {
    if let Some(s) = v.as_str() {
        out.push_str(s);
        return Ok(());
    }
    py_repr(v, out)
}

/// Python `repr()` of a minijinja value.
pub fn py_repr(v: &JV, out: &mut String) -> Result<(), minijinja::Error> {
    match v.kind() {
        ValueKind::Undefined => {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::UndefinedError,
                "undefined value inside a container",
            ))
        }
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if v.is_integer() {
                let _ = write!(out, "{v}");
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                out.push_str(&py_float(f));
            }
        }
        ValueKind::String => out.push_str(&py_repr_str(v.as_str().unwrap_or_default())),
        ValueKind::Bytes => {
            out.push_str("b");
            out.push_str(&py_repr_str(&String::from_utf8_lossy(
                v.as_bytes().unwrap_or_default(),
            )));
        }
        ValueKind::Seq if v.downcast_object_ref::<PyTuple>().is_some() => {
            let items: Vec<JV> = v.try_iter()?.collect();
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(item, out)?;
            }
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(&item, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, k) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let item = v.get_item(&k)?;
                py_repr(&k, out)?;
                out.push_str(": ");
                py_repr(&item, out)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{v}");
        }
    }
    Ok(())
}

/// A Python tuple: a sequence that prints as `(a, b)` (so `str()` of it is not literal_eval'd
/// back into a list, as in Ansible).
#[derive(Debug)]
pub struct PyTuple(pub Vec<JV>);

impl minijinja::value::Object for PyTuple {
    fn repr(self: &std::sync::Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Seq
    }
    fn get_value(self: &std::sync::Arc<Self>, key: &JV) -> Option<JV> {
        let i = key.as_i64()?;
        let i = if i < 0 { self.0.len() as i64 + i } else { i };
        self.0.get(usize::try_from(i).ok()?).cloned()
    }
    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Seq(self.0.len())
    }
}


/// `ast.literal_eval` (with Ansible's `true`/`false`/`null` names): `None` when `text` is not a
/// Python literal.
pub fn literal_eval(text: &str) -> Option<Value> {
    parse_literal(text, true)
}

/// Python's strict `ast.literal_eval` (no JSON names), as Ansible's INI inventory plugin applies
/// it to every value.
pub fn py_literal_eval(text: &str) -> Option<Value> {
    parse_literal(text, false)
}

fn parse_literal(text: &str, json_names: bool) -> Option<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        src: text,
        json_names,
    };
    p.ws();
    let v = p.expr()?;
    p.ws();
    if p.i != p.s.len() {
        return None;
    }
    Some(v)
}

struct Parser<'a> {
    json_names: bool,
    s: &'a [u8],
    i: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() {
            match self.s[self.i] {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.i += 1,
                b'\\' if self.s.get(self.i + 1) == Some(&b'\n') => self.i += 2,
                b'#' => {
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Value> {
        self.ws();
        match self.peek()? {
            b'[' => {
                self.i += 1;
                Some(Value::List(self.items(b']')?))
            }
            b'(' => {
                self.i += 1;
                // a parenthesised expression or a tuple
                self.ws();
                if self.eat(b')') {
                    return Some(Value::List(vec![]));
                }
                let first = self.expr()?;
                if self.eat(b')') {
                    return Some(first);
                }
                if !self.eat(b',') {
                    return None;
                }
                let mut rest = self.items(b')')?;
                rest.insert(0, first);
                Some(Value::List(rest))
            }
            b'{' => {
                self.i += 1;
                self.dict_or_set()
            }
            b'\'' | b'"' => {
                let mut s = self.string()?;
                // adjacent literals concatenate
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'\'') | Some(b'"') => s.push_str(&self.string()?),
                        _ => break,
                    }
                }
                Some(Value::Str(s))
            }
            b'-' | b'+' => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                match self.expr()? {
                    Value::Int(i) => Some(Value::Int(if neg { i.checked_neg()? } else { i })),
                    Value::Float(f) => Some(Value::Float(if neg { -f } else { f })),
                    Value::Bool(b) => Some(Value::Int(if neg { -(b as i64) } else { b as i64 })),
                    _ => None,
                }
            }
            b'0'..=b'9' | b'.' => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.i += 1;
                }
                match &self.src[start..self.i] {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    // Ansible's template conversion also knows JSON's names; ast.literal_eval not
                    "true" if self.json_names => Some(Value::Bool(true)),
                    "false" if self.json_names => Some(Value::Bool(false)),
                    "null" if self.json_names => Some(Value::Null),
                    // string prefixes
                    "u" | "U" if matches!(self.peek(), Some(b'\'') | Some(b'"')) => self.expr(),
                    "r" | "R" if matches!(self.peek(), Some(b'\'') | Some(b'"')) => {
                        self.raw_string().map(Value::Str)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn items(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut out = vec![];
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.expr()?);
            if self.eat(close) {
                return Some(out);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn dict_or_set(&mut self) -> Option<Value> {
        if self.eat(b'}') {
            return Some(Value::Map(Map::new()));
        }
        let first = self.expr()?;
        if self.eat(b':') {
            let mut m = Map::new();
            let v = self.expr()?;
            m.insert(key_text(&first)?, v);
            loop {
                if self.eat(b'}') {
                    return Some(Value::Map(m));
                }
                if !self.eat(b',') {
                    return None;
                }
                if self.eat(b'}') {
                    return Some(Value::Map(m));
                }
                let k = self.expr()?;
                if !self.eat(b':') {
                    return None;
                }
                let v = self.expr()?;
                m.insert(key_text(&k)?, v);
            }
        }
        // a set: kept as a list, in order, without duplicates
        let mut out = vec![first];
        loop {
            if self.eat(b'}') {
                break;
            }
            if !self.eat(b',') {
                return None;
            }
            if self.eat(b'}') {
                break;
            }
            let v = self.expr()?;
            if !out.contains(&v) {
                out.push(v);
            }
        }
        Some(Value::List(out))
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        let s = self.s;
        if s[self.i] == b'0'
            && matches!(
                s.get(self.i + 1),
                Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
            )
        {
            let radix = match s[self.i + 1] {
                b'x' | b'X' => 16,
                b'o' | b'O' => 8,
                _ => 2,
            };
            self.i += 2;
            let ds = self.i;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                self.i += 1;
            }
            let digits: String = self.src[ds..self.i].chars().filter(|c| *c != '_').collect();
            return i64::from_str_radix(&digits, radix).ok().map(Value::Int);
        }
        let mut is_float = false;
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' | b'_' => self.i += 1,
                b'.' => {
                    is_float = true;
                    self.i += 1
                }
                b'e' | b'E' => {
                    is_float = true;
                    self.i += 1;
                    if matches!(self.peek(), Some(b'+' | b'-')) {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
        if self
            .peek()
            .is_some_and(|c| c == b'j' || c == b'J' || c.is_ascii_alphabetic())
        {
            return None;
        }
        let text: String = self.src[start..self.i]
            .chars()
            .filter(|c| *c != '_')
            .collect();
        if is_float {
            text.parse::<f64>().ok().map(Value::Float)
        } else {
            // Python forbids leading zeros on non-zero decimals
            if text.len() > 1 && text.starts_with('0') && text.bytes().any(|b| b != b'0') {
                return None;
            }
            match text.parse::<i64>() {
                Ok(i) => Some(Value::Int(i)),
                Err(_) => text.parse::<f64>().ok().map(Value::Float),
            }
        }
    }

    fn raw_string(&mut self) -> Option<String> {
        let q = self.peek()?;
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b'\\' {
                self.i += 2;
                continue;
            }
            if c == q {
                let s = self.src.get(start..self.i)?.to_string();
                self.i += 1;
                return Some(s);
            }
            if c == b'\n' {
                return None;
            }
            self.i += 1;
        }
        None
    }

    fn string(&mut self) -> Option<String> {
        let q = self.peek()?;
        // triple-quoted strings
        let triple = self.s.get(self.i..self.i + 3) == Some(&[q, q, q][..]);
        self.i += if triple { 3 } else { 1 };
        let mut out = String::new();
        let rest = &self.src[self.i..];
        let mut chars = rest.char_indices().peekable();
        while let Some((off, c)) = chars.next() {
            if c as u32 == q as u32 {
                if !triple {
                    self.i += off + 1;
                    return Some(out);
                }
                if rest[off..].as_bytes().starts_with(&[q, q, q]) {
                    self.i += off + 3;
                    return Some(out);
                }
                out.push(c);
                continue;
            }
            if c == '\n' && !triple {
                return None;
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let (_, e) = chars.next()?;
            match e {
                '\n' => {}
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                '0'..='7' => {
                    let mut n = e.to_digit(8)?;
                    for _ in 0..2 {
                        match chars.peek() {
                            Some((_, d)) if d.is_digit(8) => {
                                n = n * 8 + d.to_digit(8)?;
                                chars.next();
                            }
                            _ => break,
                        }
                    }
                    out.push(char::from_u32(n)?);
                }
                'x' | 'u' | 'U' => {
                    let len = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut n = 0u32;
                    for _ in 0..len {
                        let (_, d) = chars.next()?;
                        n = n * 16 + d.to_digit(16)?;
                    }
                    out.push(char::from_u32(n)?);
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
        None
    }
}

/// Python dict keys may be any literal; kiln maps are keyed by text, so non-strings use `str()`.
fn key_text(k: &Value) -> Option<String> {
    Some(match k {
        Value::Str(s) => s.clone(),
        Value::List(_) | Value::Map(_) => return None,
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => py_float(*f),
        // a literal never parses into these
        Value::Unsafe(s) => s.clone(),
        Value::Vault(_) | Value::Secret(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.1), "0.1");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1.5e-5), "1.5e-05");
        assert_eq!(py_float(123456.789), "123456.789");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(-2.5), "-2.5");
    }

    #[test]
    fn repr_of_strings() {
        assert_eq!(py_repr_str("a"), "'a'");
        assert_eq!(py_repr_str("it's"), "\"it's\"");
        assert_eq!(py_repr_str("a'\"b"), "'a\\'\"b'");
        assert_eq!(py_repr_str("a\nb\\"), "'a\\nb\\\\'");
    }

    #[test]
    fn literal_eval_parses_python_literals() {
        let v = literal_eval("['a', 1, True, None, {'k': 2.5}, (1, 2), \"q'\"]").unwrap();
        assert_eq!(
            format!("{v:?}"),
            "[\"a\", 1, true, null, {\"k\": 2.5}, [1, 2], \"q'\"]"
        );
        assert_eq!(
            literal_eval("[true, null]"),
            Some(Value::List(vec![Value::Bool(true), Value::Null]))
        );
        assert_eq!(literal_eval("{"), None);
        assert_eq!(literal_eval("[a]"), None);
        assert_eq!(
            literal_eval("[-1, 0x10, 1e3]"),
            Some(Value::List(vec![
                Value::Int(-1),
                Value::Int(16),
                Value::Float(1000.0)
            ]))
        );
        assert_eq!(
            literal_eval("['\\x41\\n']"),
            Some(Value::List(vec![Value::str("A\n")]))
        );
    }
}
