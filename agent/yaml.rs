//! The one place kiln reads and writes YAML. Swap the YAML crate here and nowhere else.
//!
//! Ansible reads YAML with PyYAML, which implements **YAML 1.1**: `yes`/`no`/`on`/`off` are booleans,
//! `010` is octal, `1_000` is an int, `1.0e3` (no exponent sign) is a *string*. A YAML 1.2 loader
//! (libyaml behind `serde_yaml`) cannot reproduce that, because resolution needs the scalar's style
//! (a quoted `"yes"` stays a string) and serde hides the style. So reading uses yaml-rust2's event
//! parser, which reports style, tags and positions, and builds a [`Node`] tree here:
//! positions let playbooks and errors name `file:line:column`. Writing (`to_yaml`, files kiln emits)
//! goes through `serde_yaml`.
//!
//! Tags Ansible defines are kept: `!vault` becomes [`Value::Vault`] (decrypted only on use) and
//! `!unsafe` becomes [`Value::Unsafe`]. Merge keys (`<<`) and anchors work as in PyYAML. A duplicate
//! key keeps the last value, with a warning, as Ansible does.

use crate::value::{Map, Value, VaultText};
use regex::Regex;
use std::fmt;
use std::sync::{Arc, OnceLock};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source file, 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Mark {
    fn from(m: Marker) -> Self {
        Mark {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// A YAML syntax or construction error, naming `file:line:column`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}")]
pub struct YamlError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// A parsed YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Scalar(Value),
    Seq(Vec<Node>),
    /// Entries in document order, with each key's position.
    Map(Vec<(String, Mark, Node)>),
}

impl Node {
    /// The plain data, positions dropped.
    pub fn to_value(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar(v) => v.clone(),
            NodeKind::Seq(items) => Value::List(items.iter().map(Node::to_value).collect()),
            NodeKind::Map(entries) => {
                let mut m = Map::with_capacity(entries.len());
                for (k, _, v) in entries {
                    m.insert(k.clone(), v.to_value());
                }
                Value::Map(m)
            }
        }
    }

    /// Look a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _, _)| k == key)
                .map(|(_, _, v)| v),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(String, Mark, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }
}

/// Parse the first document of `text` (empty text is `null`). `file` is used in errors only.
pub fn load(text: &str, file: &str) -> Result<Value, YamlError> {
    Ok(load_node(text, file)?
        .map(|n| n.to_value())
        .unwrap_or(Value::Null))
}

/// Parse the first document with positions; `None` for an empty document.
pub fn load_node(text: &str, file: &str) -> Result<Option<Node>, YamlError> {
    Ok(load_all_nodes(text, file)?.into_iter().next())
}

/// Parse every document in `text`.
pub fn load_all_nodes(text: &str, file: &str) -> Result<Vec<Node>, YamlError> {
    let mut text = std::borrow::Cow::Borrowed(text);
    let events = loop {
        let mut rx = Collector { events: Vec::new() };
        let mut parser = Parser::new_from_str(&text);
        match parser.load(&mut rx, true) {
            Ok(()) => break rx.events,
            Err(e) => {
                let line = e.marker().line();
                // PyYAML (libyaml) ignores indentation inside flow collections, so Kayobe's own
                // files close `{ ... }` at column 0; yaml-rust2 follows the spec and refuses.
                // Indenting a line that starts with a flow closer changes nothing else.
                let in_flow = e.info() == "invalid indentation in flow construct";
                if in_flow || e.info() == "invalid indentation" {
                    if let Some(fixed) = indent_flow_line(&text, line, in_flow) {
                        text = std::borrow::Cow::Owned(fixed);
                        continue;
                    }
                }
                return Err(YamlError {
                    file: file.to_string(),
                    line,
                    col: e.marker().col() + 1,
                    msg: e.info().to_string(),
                });
            }
        }
    };
    let rx = Collector { events };
    let mut b = Builder {
        events: rx.events,
        pos: 0,
        anchors: Default::default(),
        file,
        expanded: 0,
        depth: Default::default(),
    };
    b.documents()
}

/// File contents as text; the error names the line of the first byte that is not UTF-8
/// (`FILE:LINE: not UTF-8 text ...`), so the operator can find it.
pub fn utf8_text(bytes: Vec<u8>, origin: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        let col = at
            - bytes[..at]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        format!(
            "{origin}:{line}:{col}: not UTF-8 text (byte 0x{:02x}); save the file as UTF-8",
            bytes[at]
        )
    })
}

/// Why [`from_str`] could not decode a text: serde's message, and the line when known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{msg}")]
pub struct DecodeError {
    pub line: Option<usize>,
    pub msg: String,
}

/// Decode YAML text straight into a serde type, for files whose shape kiln itself defines
/// (`kolla-image-tags.yml`, ...): YAML 1.2 typing, no positions, no Ansible tags. Anything a user
/// writes for Ansible goes through [`load`] instead.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    serde_yaml::from_str(text).map_err(|e| DecodeError {
        line: e.location().map(|l| l.line()),
        msg: e.to_string(),
    })
}

/// Serialize data as YAML (secrets redact themselves, see [`Value`]).
pub fn dump<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, String> {
    serde_yaml::to_string(v).map_err(|e| e.to_string())
}

/// Give line `line` (1-based) the indentation of the line before it, if the line is known to be
/// inside a flow collection (`in_flow`) or starts with a flow closer `}`/`]`; `None` if that
/// changes nothing.
fn indent_flow_line(text: &str, line: usize, in_flow: bool) -> Option<String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let idx = line.checked_sub(1)?;
    let target = lines.get(idx)?;
    let trimmed = target.trim_start();
    if !(in_flow || trimmed.starts_with('}') || trimmed.starts_with(']')) {
        return None;
    }
    let prev = lines[..idx].iter().rev().find(|l| !l.trim().is_empty())?;
    let indent = prev.len() - prev.trim_start().len();
    let current = target.len() - trimmed.len();
    if indent <= current {
        return None;
    }
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out[idx] = format!("{}{}", " ".repeat(indent), trimmed);
    Some(out.join("\n"))
}

struct Collector {
    events: Vec<(Event, Marker)>,
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.events.push((ev, mark));
    }
}

/// How deep collections may nest in one YAML document.
pub const MAX_DEPTH: usize = 256;

struct Builder<'a> {
    events: Vec<(Event, Marker)>,
    pos: usize,
    /// Each anchored node with its size in nodes.
    anchors: std::collections::HashMap<usize, (Node, usize)>,
    file: &'a str,
    /// Nodes copied by aliases so far.
    expanded: usize,
    depth: std::rc::Rc<std::cell::Cell<usize>>,
}

/// Leaves one nesting level when dropped.
struct DepthGuard(std::rc::Rc<std::cell::Cell<usize>>);

impl Drop for DepthGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

fn node_count(n: &Node) -> usize {
    1 + match &n.kind {
        NodeKind::Scalar(_) => 0,
        NodeKind::Seq(items) => items.iter().map(node_count).sum(),
        NodeKind::Map(es) => es.iter().map(|(_, _, v)| node_count(v)).sum(),
    }
}

impl Builder<'_> {
    fn err(&self, mark: Mark, msg: impl Into<String>) -> YamlError {
        YamlError {
            file: self.file.to_string(),
            line: mark.line,
            col: mark.col,
            msg: msg.into(),
        }
    }

    fn next(&mut self) -> Option<(Event, Mark)> {
        let (ev, m) = self.events.get_mut(self.pos)?;
        self.pos += 1;
        Some((std::mem::replace(ev, Event::Nothing), Mark::from(*m)))
    }

    fn documents(&mut self) -> Result<Vec<Node>, YamlError> {
        let mut docs = Vec::new();
        while let Some((ev, mark)) = self.next() {
            match ev {
                Event::DocumentStart => {
                    // a document holds exactly one node (possibly an empty scalar)
                    match self.node()? {
                        Some(n) => docs.push(n),
                        None => docs.push(Node {
                            mark,
                            kind: NodeKind::Scalar(Value::Null),
                        }),
                    }
                }
                Event::StreamEnd => break,
                _ => {}
            }
        }
        // an empty stream, or a document with only a null scalar, is "no data"
        if docs.len() == 1 && docs[0].kind == NodeKind::Scalar(Value::Null) {
            docs.clear();
        }
        Ok(docs)
    }

    /// Build the next node; `None` when the next event closes a collection or document.
    fn node(&mut self) -> Result<Option<Node>, YamlError> {
        let Some((ev, mark)) = self.next() else {
            return Ok(None);
        };
        let node = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let value = self.scalar(text, style, tag.as_ref(), mark)?;
                let n = Node {
                    mark,
                    kind: NodeKind::Scalar(value),
                };
                self.remember(anchor, &n);
                n
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_ref(), mark, &["seq", "omap", "pairs", "set"])?;
                let _deeper = self.enter(mark)?;
                let mut items = Vec::new();
                while let Some(item) = self.node()? {
                    items.push(item);
                }
                let mut n = Node {
                    mark,
                    kind: NodeKind::Seq(items),
                };
                if is_tag(tag.as_ref(), "!", "unsafe") {
                    n = mark_unsafe(n);
                }
                self.remember(anchor, &n);
                n
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_ref(), mark, &["map", "set", "omap"])?;
                let _deeper = self.enter(mark)?;
                let n = self.mapping(mark)?;
                let n = if is_tag(tag.as_ref(), "!", "unsafe") {
                    mark_unsafe(n)
                } else {
                    n
                };
                self.remember(anchor, &n);
                n
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((n, size)) => {
                    // an alias is expanded into a copy: bound the copies (a "billion laughs"
                    // file would otherwise take gigabytes within seconds)
                    self.expanded += size;
                    if self.expanded > self.expansion_limit() {
                        return Err(self.err(
                            mark,
                            format!(
                                "aliases expand to more than {} nodes (a YAML alias bomb?); \
                                 use fewer nested aliases",
                                self.expansion_limit()
                            ),
                        ));
                    }
                    n.clone()
                }
                None => return Err(self.err(mark, "found undefined alias")),
            },
            Event::SequenceEnd | Event::MappingEnd | Event::DocumentEnd | Event::StreamEnd => {
                return Ok(None)
            }
            _ => return Ok(None),
        };
        Ok(Some(node))
    }

    fn mapping(&mut self, mark: Mark) -> Result<Node, YamlError> {
        let mut entries: Vec<(String, Mark, Node)> = Vec::new();
        let mut merged: Vec<(String, Mark, Node)> = Vec::new();
        loop {
            let Some(key) = self.node()? else { break };
            let Some(value) = self.node()? else {
                return Err(self.err(key.mark, "mapping key without a value"));
            };
            let key_text = match &key.kind {
                NodeKind::Scalar(v) => scalar_key(v),
                _ => return Err(self.err(key.mark, "a mapping key must be a scalar")),
            };
            if key_text == "<<" && matches!(&key.kind, NodeKind::Scalar(Value::Str(_))) {
                // merge key: a map or a list of maps; earlier maps in a list win
                let sources: Vec<&Node> = match &value.kind {
                    NodeKind::Map(_) => vec![&value],
                    NodeKind::Seq(items) => items.iter().collect(),
                    _ => {
                        return Err(self.err(
                            value.mark,
                            "a merge key (<<) needs a mapping or a list of mappings",
                        ))
                    }
                };
                for src in sources {
                    let Some(es) = src.as_map() else {
                        return Err(self.err(
                            src.mark,
                            "a merge key (<<) needs a mapping or a list of mappings",
                        ));
                    };
                    for e in es {
                        if !merged.iter().any(|(k, _, _)| *k == e.0) {
                            merged.push(e.clone());
                        }
                    }
                }
                continue;
            }
            if let Some(pos) = entries.iter().position(|(k, _, _)| *k == key_text) {
                tracing::warn!(
                    "{}:{}:{}: duplicate key {:?}: the last value is used",
                    self.file,
                    key.mark.line,
                    key.mark.col,
                    key_text
                );
                entries.remove(pos);
            }
            entries.push((key_text, key.mark, value));
        }
        // explicit keys win over merged ones; merged keys come first, as PyYAML puts them
        let mut out: Vec<(String, Mark, Node)> = merged
            .into_iter()
            .filter(|(k, _, _)| !entries.iter().any(|(e, _, _)| e == k))
            .collect();
        out.extend(entries);
        Ok(Node {
            mark,
            kind: NodeKind::Map(out),
        })
    }

    fn remember(&mut self, anchor: usize, n: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, (n.clone(), node_count(n)));
        }
    }

    /// Alias copies allowed in one file: 100 times its own events (as serde_yaml's repetition
    /// limit), at least 100 000 nodes.
    fn expansion_limit(&self) -> usize {
        (self.events.len() * 100).max(100_000)
    }

    /// One level deeper into nested collections; an error past [`MAX_DEPTH`] (the builder
    /// recurses, and a deeply nested file must not overflow the stack).
    fn enter(&mut self, mark: Mark) -> Result<DepthGuard, YamlError> {
        let d = self.depth.get() + 1;
        if d > MAX_DEPTH {
            return Err(self.err(mark, format!("collections nest more than {MAX_DEPTH} deep")));
        }
        self.depth.set(d);
        Ok(DepthGuard(self.depth.clone()))
    }

    /// PyYAML's safe loader knows only the core tags (and Ansible's `!unsafe`, `!vault`):
    /// `!!python/object...` and other unknown tags on a collection are an error, never dropped.
    fn check_collection_tag(
        &self,
        tag: Option<&Tag>,
        mark: Mark,
        core_ok: &[&str],
    ) -> Result<(), YamlError> {
        let Some(tag) = tag else { return Ok(()) };
        let core = tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!";
        if (core && core_ok.contains(&tag.suffix.as_str()))
            || (tag.handle == "!" && tag.suffix == "unsafe")
        {
            return Ok(());
        }
        Err(self.err(
            mark,
            format!(
                "could not determine a constructor for the tag '{}{}'",
                tag.handle, tag.suffix
            ),
        ))
    }

    fn scalar(
        &self,
        text: String,
        style: TScalarStyle,
        tag: Option<&Tag>,
        mark: Mark,
    ) -> Result<Value, YamlError> {
        if let Some(tag) = tag {
            let core = tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!";
            return match (core, tag.handle.as_str(), tag.suffix.as_str()) {
                (false, "!", "vault") => Ok(Value::Vault(Arc::new(VaultText {
                    ciphertext: text,
                    origin: format!("{}:{}", self.file, mark.line),
                }))),
                (false, "!", "unsafe") => Ok(Value::Unsafe(text)),
                (true, _, "str") => Ok(Value::Str(text)),
                (true, _, "int") => resolve_int(&text)
                    .ok_or_else(|| self.err(mark, format!("{text:?} is not an int"))),
                (true, _, "float") => resolve_float(&text)
                    .or_else(|| {
                        resolve_int(&text).map(|v| Value::Float(v.as_i64().unwrap_or(0) as f64))
                    })
                    .ok_or_else(|| self.err(mark, format!("{text:?} is not a float"))),
                (true, _, "bool") => resolve_bool(&text)
                    .ok_or_else(|| self.err(mark, format!("{text:?} is not a bool"))),
                (true, _, "null") => Ok(Value::Null),
                (true, _, "binary" | "timestamp") => Ok(Value::Str(text)),
                _ => Err(self.err(
                    mark,
                    format!(
                        "could not determine a constructor for the tag '{}{}'",
                        tag.handle, tag.suffix
                    ),
                )),
            };
        }
        if style != TScalarStyle::Plain {
            return Ok(Value::Str(text));
        }
        Ok(resolve_plain(&text))
    }
}

fn is_tag(tag: Option<&Tag>, handle: &str, suffix: &str) -> bool {
    tag.is_some_and(|t| t.handle == handle && t.suffix == suffix)
}

fn mark_unsafe(mut n: Node) -> Node {
    n.kind = match n.kind {
        NodeKind::Scalar(Value::Str(s)) => NodeKind::Scalar(Value::Unsafe(s)),
        NodeKind::Seq(items) => NodeKind::Seq(items.into_iter().map(mark_unsafe).collect()),
        NodeKind::Map(es) => NodeKind::Map(
            es.into_iter()
                .map(|(k, m, v)| (k, m, mark_unsafe(v)))
                .collect(),
        ),
        k => k,
    };
    n
}

/// A scalar used as a mapping key becomes its string form, as JSON output would show it.
fn scalar_key(v: &Value) -> String {
    match v {
        Value::Str(s) | Value::Unsafe(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Vault(v) => v.ciphertext.clone(),
        other => format!("{other:?}"),
    }
}

/// PyYAML's YAML 1.1 implicit resolution of a plain scalar.
pub fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        _ => {}
    }
    if let Some(b) = resolve_bool(text) {
        return b;
    }
    if let Some(i) = resolve_int(text) {
        return i;
    }
    if let Some(f) = resolve_float(text) {
        return f;
    }
    Value::Str(text.to_string())
}

fn resolve_bool(t: &str) -> Option<Value> {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(Value::Bool(true))
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(Value::Bool(false))
        }
        _ => None,
    }
}

fn regexes() -> &'static (Regex, Regex) {
    static RE: OnceLock<(Regex, Regex)> = OnceLock::new();
    RE.get_or_init(|| {
        let int = Regex::new(
            r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
        )
        .expect("static regex");
        let float = Regex::new(
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        )
        .expect("static regex");
        (int, float)
    })
}

fn resolve_int(t: &str) -> Option<Value> {
    if !regexes().0.is_match(t) {
        return None;
    }
    let clean = t.replace('_', "");
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, &clean[..]),
    };
    let n: i64 = if let Some(b) = body.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if body.contains(':') {
        body.split(':')
            .try_fold(0i64, |acc, part| Some(acc * 60 + part.parse::<i64>().ok()?))?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse().ok()?
    };
    Some(Value::Int(if neg { -n } else { n }))
}

fn resolve_float(t: &str) -> Option<Value> {
    if !regexes().1.is_match(t) {
        return None;
    }
    let clean = t.replace('_', "").to_lowercase();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, &clean[..]),
    };
    let f = if body == ".inf" {
        f64::INFINITY
    } else if body == ".nan" {
        f64::NAN
    } else if body.contains(':') {
        let mut parts: Vec<&str> = body.split(':').collect();
        let last: f64 = parts.pop()?.parse().ok()?;
        parts
            .iter()
            .try_fold(0f64, |acc, p| Some(acc * 60.0 + p.parse::<f64>().ok()?))?
            * 60.0
            + last
    } else {
        body.parse().ok()?
    };
    Some(Value::Float(if neg { -f } else { f }))
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Value {
        load(text, "t.yml").unwrap()
    }

    #[test]
    fn yaml11_scalars_as_pyyaml_reads_them() {
        let m = v("a: yes\nb: 'yes'\nc: off\nd: 010\ne: 0x1F\nf: 1_000\ng: 1.0e3\nh: 1.0e+3\ni: ~\nj:\nk: 190:20:30\nl: 08\nm: .inf\n");
        assert_eq!(m.get("a"), Some(&Value::Bool(true)));
        assert_eq!(m.get("b"), Some(&Value::str("yes")));
        assert_eq!(m.get("c"), Some(&Value::Bool(false)));
        assert_eq!(m.get("d"), Some(&Value::Int(8)));
        assert_eq!(m.get("e"), Some(&Value::Int(31)));
        assert_eq!(m.get("f"), Some(&Value::Int(1000)));
        assert_eq!(m.get("g"), Some(&Value::str("1.0e3")));
        assert_eq!(m.get("h"), Some(&Value::Float(1000.0)));
        assert_eq!(m.get("i"), Some(&Value::Null));
        assert_eq!(m.get("j"), Some(&Value::Null));
        assert_eq!(m.get("k"), Some(&Value::Int(190 * 3600 + 20 * 60 + 30)));
        assert_eq!(m.get("l"), Some(&Value::str("08")));
        assert_eq!(m.get("m"), Some(&Value::Float(f64::INFINITY)));
    }

    #[test]
    fn tags_merge_keys_and_anchors() {
        let m = v("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\ns: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\nu: !unsafe '{{ x }}'\n");
        let d = m.get("d").unwrap();
        assert_eq!(d.get("x"), Some(&Value::Int(1)));
        assert_eq!(d.get("y"), Some(&Value::Int(3)));
        assert!(matches!(m.get("s"), Some(Value::Vault(_))));
        assert_eq!(m.get("u"), Some(&Value::Unsafe("{{ x }}".into())));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = load("a: 1\nb: [1, 2\n", "group_vars/all").unwrap_err();
        assert_eq!(e.file, "group_vars/all");
        assert!(e.line >= 2, "{e}");
        assert!(e.to_string().starts_with("group_vars/all:"), "{e}");
        let e = load("a: !bogus 1\n", "f.yml").unwrap_err();
        assert!(e.msg.contains("!bogus"), "{e}");
    }

    #[test]
    fn flow_mapping_closed_at_column_zero_as_pyyaml_allows() {
        // shape of Kayobe's own group_vars/all/kolla
        let m = v("a: {\n  \"x\": 1,\n  \"y\": [1,\n2\n],\n}\nb: 2\n");
        assert_eq!(m.get("a").and_then(|a| a.get("x")), Some(&Value::Int(1)));
        assert_eq!(m.get("b"), Some(&Value::Int(2)));
    }

    #[test]
    fn positions_and_empty_documents() {
        let n = load_node("- name: one\n  debug: {}\n- name: two\n", "p.yml")
            .unwrap()
            .unwrap();
        let items = n.as_seq().unwrap();
        assert_eq!(items[1].mark.line, 3);
        assert_eq!(load("", "e.yml").unwrap(), Value::Null);
        assert_eq!(load("---\n", "e.yml").unwrap(), Value::Null);
        assert_eq!(load("# only a comment\n", "e.yml").unwrap(), Value::Null);
    }
}
