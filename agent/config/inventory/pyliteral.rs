//! Python's `ast.literal_eval`, as Ansible's INI plugin applies it to every value (`a=1` is an int,
//! `b=True` a bool, `d=[1,2]` a list, `e=01` or `f=foo` stay strings). A value that is not a
//! Python literal is kept as the original text, which is what Ansible does when literal_eval
//! raises. Tuples and sets come back as lists (JSON has nothing else).

use crate::value::{Map, Value};

/// `ast.literal_eval(text)`, or `None` where Python would raise.
pub fn literal_eval(text: &str) -> Option<Value> {
    let mut p = P { s: text.trim_start_matches([' ', '\t']).as_bytes(), i: 0, src: text.trim_start_matches([' ', '\t']) };
    let v = p.expr()?;
    p.ws();
    if p.i == p.s.len() {
        Some(v)
    } else {
        None
    }
}

/// The INI plugin's `_parse_value`: the literal, or the text itself.
pub fn parse_value(text: &str) -> Value {
    literal_eval(text).unwrap_or_else(|| Value::str(text))
}

struct P<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\x0c' => self.i += 1,
                b'#' => self.i = self.s.len(),
                _ => break,
            }
        }
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
            b'-' | b'+' => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                match self.expr()? {
                    Value::Int(i) => Some(Value::Int(if neg { i.checked_neg()? } else { i })),
                    Value::Float(f) => Some(Value::Float(if neg { -f } else { f })),
                    _ => None,
                }
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Option<Value> {
        self.ws();
        let c = self.peek()?;
        match c {
            b'[' => {
                self.i += 1;
                let items = self.items(b']')?;
                Some(Value::List(items))
            }
            b'(' => {
                self.i += 1;
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
                let mut items = vec![first];
                items.extend(self.items(b')')?);
                Some(Value::List(items))
            }
            b'{' => {
                self.i += 1;
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
                // a set
                let mut items = vec![first];
                if !self.eat(b'}') {
                    if !self.eat(b',') {
                        return None;
                    }
                    items.extend(self.items(b'}')?);
                }
                Some(Value::List(items))
            }
            b'"' | b'\'' => self.strings(),
            b'0'..=b'9' | b'.' => self.number(),
            c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                let start = self.i;
                while let Some(c) = self.peek() {
                    if c == b'_' || c.is_ascii_alphanumeric() || c >= 0x80 {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                let word = &self.src[start..self.i];
                if matches!(self.peek(), Some(b'"' | b'\'')) {
                    // a string prefix (r, b, u, rb...); f-strings are not literals
                    let w = word.to_ascii_lowercase();
                    if matches!(w.as_str(), "r" | "u" | "b" | "br" | "rb") {
                        self.i = start;
                        return self.strings();
                    }
                    return None;
                }
                match word {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Comma-separated expressions up to `close` (trailing comma allowed).
    fn items(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.expr()?);
            if self.eat(close) {
                return Some(items);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// One or more adjacent string literals, concatenated as Python does.
    fn strings(&mut self) -> Option<Value> {
        let mut out = String::new();
        loop {
            self.ws();
            let start = self.i;
            let mut raw = false;
            while let Some(c) = self.peek() {
                match c.to_ascii_lowercase() {
                    b'r' => raw = true,
                    b'b' | b'u' => {}
                    _ => break,
                }
                self.i += 1;
            }
            let Some(q @ (b'"' | b'\'')) = self.peek() else {
                self.i = start;
                break;
            };
            let triple = self.s[self.i..].starts_with(&[q, q, q]);
            self.i += if triple { 3 } else { 1 };
            let body_start = self.i;
            loop {
                let c = self.peek()?;
                if c == b'\\' {
                    self.i += 2;
                    continue;
                }
                if c == b'\n' && !triple {
                    return None;
                }
                if c == q && (!triple || self.s[self.i..].starts_with(&[q, q, q])) {
                    break;
                }
                self.i += 1;
            }
            let body = self.src.get(body_start..self.i)?;
            self.i += if triple { 3 } else { 1 };
            out.push_str(&if raw { body.to_string() } else { unescape(body)? });
            self.ws();
            if !matches!(self.peek(), Some(b'"' | b'\'' | b'r' | b'R' | b'b' | b'B' | b'u' | b'U')) {
                break;
            }
        }
        Some(Value::Str(out))
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while let Some(c) = self.peek() {
            let prev = if self.i > start { self.s[self.i - 1] } else { 0 };
            let exp_sign = (c == b'+' || c == b'-') && (prev == b'e' || prev == b'E') && !self.src[start..].starts_with("0x") && !self.src[start..].starts_with("0X");
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exp_sign {
                self.i += 1;
            } else {
                break;
            }
        }
        number_value(&self.src[start..self.i])
    }
}

fn key_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Null => "null".into(),
        Value::Float(f) => f.to_string(),
        _ => return None,
    })
}

fn digits_ok(d: &str, radix: u32) -> bool {
    !d.is_empty() && !d.starts_with('_') && !d.ends_with('_') && !d.contains("__") && d.chars().all(|c| c == '_' || c.is_digit(radix))
}

/// Python 3 number tokens: `0x1F`, `0o17`, `0b1`, `1_000`, `1.5e-3`, `.5`; `01` is invalid.
fn number_value(t: &str) -> Option<Value> {
    let lower = t.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(d) = lower.strip_prefix(prefix) {
            let d = d.strip_prefix('_').unwrap_or(d);
            return if digits_ok(d, radix) { i64::from_str_radix(&d.replace('_', ""), radix).ok().map(Value::Int) } else { None };
        }
    }
    if lower.ends_with('j') {
        return None; // complex numbers have no JSON form
    }
    if !lower.contains(['.', 'e']) {
        if !digits_ok(&lower, 10) {
            return None;
        }
        let d = lower.replace('_', "");
        if d.len() > 1 && d.starts_with('0') && d.chars().any(|c| c != '0') {
            return None;
        }
        return d.parse::<i64>().ok().map(Value::Int);
    }
    let (mant, exp) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    if ip.is_empty() && fp.is_empty() {
        return None;
    }
    if (!ip.is_empty() && !digits_ok(ip, 10)) || (!fp.is_empty() && !digits_ok(fp, 10)) {
        return None;
    }
    if let Some(e) = exp {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if !digits_ok(e, 10) {
            return None;
        }
    }
    lower.replace('_', "").parse::<f64>().ok().map(Value::Float)
}

fn unescape(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it.next()?;
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
                    match it.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            n = n * 8 + d;
                            it.next();
                        }
                        None => break,
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
                let hex: String = (0..len).filter_map(|_| it.next()).collect();
                if hex.len() != len {
                    return None;
                }
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_as_python_reads_them() {
        assert_eq!(parse_value("1"), Value::Int(1));
        assert_eq!(parse_value("-3"), Value::Int(-3));
        assert_eq!(parse_value("0x1F"), Value::Int(31));
        assert_eq!(parse_value("1_000"), Value::Int(1000));
        assert_eq!(parse_value("01"), Value::str("01"));
        assert_eq!(parse_value("1.5"), Value::Float(1.5));
        assert_eq!(parse_value("1e3"), Value::Float(1000.0));
        assert_eq!(parse_value("True"), Value::Bool(true));
        assert_eq!(parse_value("true"), Value::str("true"));
        assert_eq!(parse_value("yes"), Value::str("yes"));
        assert_eq!(parse_value("None"), Value::Null);
        assert_eq!(parse_value("'a b'"), Value::str("a b"));
        assert_eq!(parse_value("'a' \"b\""), Value::str("ab"));
        assert_eq!(parse_value("[1, 'x', [True]]"), Value::List(vec![Value::Int(1), Value::str("x"), Value::List(vec![Value::Bool(true)])]));
        assert_eq!(parse_value("(1,)"), Value::List(vec![Value::Int(1)]));
        assert_eq!(parse_value("{'a': 1, 2: None}").get("2"), Some(&Value::Null));
        assert_eq!(parse_value("1 # c"), Value::Int(1));
        assert_eq!(parse_value("foo bar # c"), Value::str("foo bar # c"));
        assert_eq!(parse_value("1+2"), Value::str("1+2"));
        assert_eq!(parse_value("10.0.0.1"), Value::str("10.0.0.1"));
        assert_eq!(parse_value("/usr/bin/python3"), Value::str("/usr/bin/python3"));
        assert_eq!(parse_value("'a\\nb'"), Value::str("a\nb"));
        assert_eq!(parse_value("f'x'"), Value::str("f'x'"));
    }
}
