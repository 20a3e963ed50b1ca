//! The progress channel: what a long-running module says while it runs.
//!
//! Ansible's modules report once, at the end; a Kolla build that runs for an hour cannot. A module
//! gets a [`Progress`] in its [`Ctx`](super::Ctx) and emits output lines and progress events as they
//! happen; the engine hands them to the output sink, which prints them live (human output: one line
//! each, prefixed `[host]` or `[host:label]`; a progress bar per host and label on a terminal) or
//! writes them as `progress` events (`--format json`). Every event carries the host and the label
//! the module gave (an architecture, say), so several hosts' and platforms' streams interleave
//! readably. A module that is not asked to stream (the handle is [`Progress::none`]) pays nothing.
//!
//! Lines are text; the sink scrubs secrets from them like every other output. The engine gives a
//! `no_log` task no channel at all, so such a task's output never streams.

use crate::value::Map;
use std::sync::Arc;

/// Which of the command's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStream {
    Stdout,
    Stderr,
    /// Said by the module itself (a step it started, what it found).
    Module,
}

impl LineStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LineStream::Stdout => "stdout",
            LineStream::Stderr => "stderr",
            LineStream::Module => "module",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// One line of output (without its newline). `fields` are what the module read from the
    /// line (e.g. the image a Kolla log line is about); JSON output carries them.
    Line {
        stream: LineStream,
        text: String,
        fields: Map,
    },
    /// `done` of `total` steps (images built of images matched, ...); `what` names the step.
    Step {
        done: u64,
        total: Option<u64>,
        what: String,
    },
}

/// One event, as the sink receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressEvent {
    pub host: String,
    pub label: Option<String>,
    pub kind: EventKind,
}

impl ProgressEvent {
    /// `host` or `host:label`: the prefix human output puts in brackets.
    pub fn prefix(&self) -> String {
        match &self.label {
            Some(l) if !l.is_empty() => format!("{}:{l}", self.host),
            _ => self.host.clone(),
        }
    }
}

type Emit = Arc<dyn Fn(ProgressEvent) + Send + Sync>;

/// A module's handle on the channel: cheap to clone, a no-op when nobody listens.
#[derive(Clone, Default)]
pub struct Progress {
    host: String,
    label: Option<String>,
    emit: Option<Emit>,
}

impl Progress {
    /// No channel: the module runs as Ansible's do and reports only at the end.
    pub fn none() -> Progress {
        Progress::default()
    }

    /// A channel for `host`, delivering each event to `emit` (the engine's sink).
    pub fn new(host: &str, label: Option<String>, emit: Emit) -> Progress {
        Progress {
            host: host.to_string(),
            label,
            emit: Some(emit),
        }
    }

    /// Whether anything listens: a module may choose how to run by it (stream or collect).
    pub fn enabled(&self) -> bool {
        self.emit.is_some()
    }

    /// The same channel with another label (a module that runs one step per architecture).
    pub fn labelled(&self, label: impl Into<String>) -> Progress {
        Progress {
            label: Some(label.into()),
            ..self.clone()
        }
    }

    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    fn send(&self, kind: EventKind) {
        if let Some(emit) = &self.emit {
            emit(ProgressEvent {
                host: self.host.clone(),
                label: self.label.clone(),
                kind,
            });
        }
    }

    /// One line of output.
    pub fn line(&self, stream: LineStream, text: impl Into<String>) {
        self.line_with(stream, text, Map::new());
    }

    /// One line of output with what the module read from it.
    pub fn line_with(&self, stream: LineStream, text: impl Into<String>, fields: Map) {
        if self.emit.is_some() {
            self.send(EventKind::Line {
                stream,
                text: text.into(),
                fields,
            });
        }
    }

    /// A step count: `done` of `total`.
    pub fn step(&self, done: u64, total: Option<u64>, what: impl Into<String>) {
        if self.emit.is_some() {
            self.send(EventKind::Step {
                done,
                total,
                what: what.into(),
            });
        }
    }
}

/// Cuts a byte stream that arrives in arbitrary chunks into whole lines (`\n`, a trailing `\r`
/// dropped); the unfinished tail waits for the next chunk or [`LineSplitter::finish`]. Invalid
/// UTF-8 is replaced, as Ansible's `to_text(errors='surrogate_or_replace')` shows it.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Longest line held back waiting for its newline: a process that prints megabytes with no
    /// newline (a progress bar redrawn with `\r`) is cut here rather than buffered without end.
    const MAX_LINE: usize = 64 * 1024;

    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let rest = self.buf.split_off(i + 1);
            let mut line = std::mem::replace(&mut self.buf, rest);
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        if self.buf.len() > Self::MAX_LINE {
            lines.push(String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned());
        }
        lines
    }

    /// The unfinished last line, if any.
    pub fn finish(&mut self) -> Option<String> {
        (!self.buf.is_empty())
            .then(|| String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn lines_are_cut_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"ab").is_empty());
        assert_eq!(s.push(b"c\r\nde\nf"), vec!["abc", "de"]);
        assert_eq!(s.push(b"\n"), vec!["f"]);
        assert_eq!(s.finish(), None);
        assert!(s.push(b"tail").is_empty());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        // bytes that are not UTF-8 are replaced, not dropped
        assert_eq!(s.push(b"\xff\n"), vec!["\u{fffd}"]);
        // a line with no newline is not held without bound
        let long = vec![b'x'; LineSplitter::MAX_LINE + 1];
        assert_eq!(s.push(&long).len(), 1);
    }

    #[test]
    fn events_carry_host_and_label() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let p = Progress::new(
            "builder",
            None,
            Arc::new(move |e| s2.lock().unwrap().push(e)),
        );
        assert!(p.enabled());
        p.line(LineStream::Stdout, "one");
        p.labelled("aarch64").step(1, Some(3), "images");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].prefix(), "builder");
        assert_eq!(seen[1].prefix(), "builder:aarch64");
        assert!(matches!(
            seen[1].kind,
            EventKind::Step {
                done: 1,
                total: Some(3),
                ..
            }
        ));
        // no channel: nothing is called and nothing fails
        Progress::none().line(LineStream::Stdout, "x");
        assert!(!Progress::none().enabled());
    }
}
