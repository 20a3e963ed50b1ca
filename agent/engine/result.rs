//! A task's result on one host, typed.
//!
//! The engine decides with the flags (`changed`, `failed`, `skipped`, `unreachable`) as fields,
//! never by writing and reading keys of a dict; Ansible's result dict is made by [`TaskResult::to_map`]
//! only where Ansible shows one: at `register` (and what `changed_when` / `failed_when` / `until`
//! see under that name) and at output. The module's or action's own keys travel in `data`, in their
//! order; a result read from a dict keeps the places its flags had there, so the dict written back is
//! the one Ansible's would be, key for key.

use super::output::Status;
use crate::value::{Map, Value};

const CENSORED: &str =
    "the output has been hidden due to the fact that 'no_log: true' was specified for this result";

const FLAGS: [&str; 4] = ["changed", "failed", "skipped", "unreachable"];

/// A task's result on one host: the flags, and the module's data.
#[derive(Clone, Debug, Default)]
pub struct TaskResult {
    pub changed: bool,
    pub failed: bool,
    pub skipped: bool,
    pub unreachable: bool,
    /// The module's (or action's) own keys. May hold a flag's key only as a place holder for
    /// its position; the value written is always the field's.
    data: Map,
}

impl TaskResult {
    /// Nothing changed, nothing to say.
    pub fn ok() -> TaskResult {
        TaskResult {
            data: Map::from_iter([("changed".to_string(), Value::Bool(false))]),
            ..TaskResult::default()
        }
    }

    /// Nothing changed; the action's own keys, then `changed`.
    pub fn ok_with(mut data: Map) -> TaskResult {
        data.insert("changed".into(), Value::Bool(false));
        TaskResult {
            data,
            ..TaskResult::default()
        }
    }

    /// The task failed with this message.
    pub fn failed(msg: impl Into<String>) -> TaskResult {
        let mut data = Map::new();
        data.insert("failed".into(), Value::Bool(true));
        data.insert("msg".into(), Value::Str(msg.into()));
        data.insert("changed".into(), Value::Bool(false));
        TaskResult {
            failed: true,
            data,
            ..TaskResult::default()
        }
    }

    /// Failed, with only a message (what `meta` reports: no `changed` key).
    pub fn failed_bare(msg: impl Into<String>) -> TaskResult {
        let mut r = TaskResult::failed(msg);
        r.data.shift_remove("changed");
        r
    }

    /// Skipped, nothing more said (a conditional `meta` on a host whose condition is false).
    pub fn skipped() -> TaskResult {
        let mut data = Map::new();
        data.insert("changed".into(), Value::Bool(false));
        data.insert("skipped".into(), Value::Bool(true));
        TaskResult {
            skipped: true,
            data,
            ..TaskResult::default()
        }
    }

    /// Set `changed` (as `changed_when` does), giving it a place in the dict.
    pub fn set_changed(&mut self, changed: bool) {
        self.changed = changed;
        self.data.insert("changed".into(), Value::Bool(changed));
    }

    /// The host could not be reached.
    pub fn unreachable(msg: impl Into<String>) -> TaskResult {
        let mut data = Map::new();
        data.insert("unreachable".into(), Value::Bool(true));
        data.insert("changed".into(), Value::Bool(false));
        data.insert("msg".into(), Value::Str(msg.into()));
        TaskResult {
            unreachable: true,
            data,
            ..TaskResult::default()
        }
    }

    /// Skipped because this `when:` condition (its text) was false.
    pub fn skipped_by(false_condition: String) -> TaskResult {
        let mut data = Map::new();
        data.insert("changed".into(), Value::Bool(false));
        data.insert("false_condition".into(), Value::Str(false_condition));
        data.insert(
            "skip_reason".into(),
            Value::str("Conditional result was False"),
        );
        data.insert("skipped".into(), Value::Bool(true));
        TaskResult {
            skipped: true,
            data,
            ..TaskResult::default()
        }
    }

    /// Skipped for a reason given as `key` (`skipped_reason`, `msg`, ...): `changed`, then the
    /// reason, then `skipped`, as Ansible orders them.
    pub fn skipped_with(key: &str, reason: &str) -> TaskResult {
        let mut data = Map::new();
        data.insert("changed".into(), Value::Bool(false));
        data.insert(key.into(), Value::str(reason));
        data.insert("skipped".into(), Value::Bool(true));
        TaskResult {
            skipped: true,
            data,
            ..TaskResult::default()
        }
    }

    /// A loop over nothing (`results` too when `with_results`, as a task's loop has them).
    pub fn no_items(with_results: bool) -> TaskResult {
        let mut data = Map::new();
        data.insert("changed".into(), Value::Bool(false));
        if with_results {
            data.insert("results".into(), Value::List(vec![]));
        }
        data.insert("skipped".into(), Value::Bool(true));
        data.insert("skipped_reason".into(), Value::str("No items in the list"));
        TaskResult {
            skipped: true,
            data,
            ..TaskResult::default()
        }
    }

    /// From an Ansible result dict (a module's outcome): the flags are read by truthiness and
    /// keep their places.
    pub fn from_map(data: Map) -> TaskResult {
        let flag = |k: &str| data.get(k).is_some_and(|v| v.is_truthy());
        TaskResult {
            changed: flag("changed"),
            failed: flag("failed"),
            skipped: flag("skipped"),
            unreachable: flag("unreachable"),
            data,
        }
    }

    /// Ansible's result dict: the data; `changed` where it has a place (every module's and
    /// action's result has one) or when true; the other flags when true.
    pub fn to_map(&self) -> Map {
        let mut m = self.data.clone();
        if self.changed || m.contains_key("changed") {
            m.insert("changed".into(), Value::Bool(self.changed));
        }
        for (k, on) in [
            ("failed", self.failed),
            ("skipped", self.skipped),
            ("unreachable", self.unreachable),
        ] {
            if on {
                m.insert(k.into(), Value::Bool(true));
            } else {
                m.shift_remove(k);
            }
        }
        m
    }

    /// As the recap counts it.
    pub fn status(&self) -> Status {
        if self.unreachable {
            Status::Unreachable
        } else if self.failed {
            Status::Failed
        } else if self.skipped {
            Status::Skipped
        } else if self.changed {
            Status::Changed
        } else {
            Status::Ok
        }
    }

    /// One of the module's keys.
    pub fn get(&self, k: &str) -> Option<&Value> {
        if FLAGS.contains(&k) {
            return None;
        }
        self.data.get(k)
    }

    /// Set one of the module's keys (a flag's name sets the flag).
    pub fn insert(&mut self, k: impl Into<String>, v: Value) {
        let k = k.into();
        match k.as_str() {
            "changed" => self.changed = v.is_truthy(),
            "failed" => self.failed = v.is_truthy(),
            "skipped" => self.skipped = v.is_truthy(),
            "unreachable" => self.unreachable = v.is_truthy(),
            _ => {}
        }
        self.data.insert(k, v);
    }

    /// Builder form of [`insert`](Self::insert).
    pub fn with(mut self, k: &str, v: Value) -> TaskResult {
        self.insert(k, v);
        self
    }

    /// Drop one of the module's keys.
    pub fn remove(&mut self, k: &str) -> Option<Value> {
        if FLAGS.contains(&k) {
            return None;
        }
        self.data.shift_remove(k)
    }

    /// What is shown of a `no_log` task's result: the flags only.
    /// What a `no_log` task shows: its flags only, as Ansible (`23-no-log` in the playbook corpus
    /// checks it). A failure's message can carry any variable's value, vault or not, so it is not
    /// shown either; a role that wants the reason registers the result and fails in a task of its
    /// own with a message it knows to be free of secrets (see `roles/pulp_auth_proxy`).
    pub fn censored(&self) -> Map {
        let mut m = Map::new();
        m.insert("censored".into(), Value::str(CENSORED));
        for (k, v) in self.to_map() {
            if FLAGS.contains(&k.as_str()) {
                m.insert(k, v);
            }
        }
        m
    }

    /// Ansible's loop result: `results` (each item's dict), with the flags summarised.
    pub fn aggregate(items: Vec<TaskResult>) -> TaskResult {
        if items.is_empty() {
            return TaskResult::no_items(true);
        }
        let mut r = TaskResult {
            changed: items.iter().any(|x| x.changed),
            unreachable: items.iter().any(|x| x.unreachable),
            failed: items.iter().any(|x| x.failed),
            ..TaskResult::default()
        };
        r.skipped = !r.failed && items.iter().all(|x| x.skipped);
        r.data.insert("changed".into(), Value::Bool(r.changed));
        if r.unreachable {
            r.data.insert("unreachable".into(), Value::Bool(true));
        }
        let msg = if r.failed {
            r.data.insert("failed".into(), Value::Bool(true));
            "One or more items failed"
        } else if r.skipped {
            r.data.insert("skipped".into(), Value::Bool(true));
            "All items skipped"
        } else {
            "All items completed"
        };
        r.data.insert("msg".into(), Value::str(msg));
        r.data.insert(
            "results".into(),
            Value::List(items.iter().map(|x| Value::Map(x.to_map())).collect()),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(m: &Map) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn dicts_keep_ansibles_key_order() {
        assert_eq!(
            keys(&TaskResult::skipped_by("x".into()).to_map()),
            ["changed", "false_condition", "skip_reason", "skipped"]
        );
        assert_eq!(
            keys(&TaskResult::failed("m").to_map()),
            ["failed", "msg", "changed"]
        );
        assert_eq!(
            keys(&TaskResult::aggregate(vec![]).to_map()),
            ["changed", "results", "skipped", "skipped_reason"]
        );
    }

    #[test]
    fn flags_are_fields_and_round_trip() {
        let mut m = Map::new();
        m.insert("rc".into(), Value::Int(1));
        m.insert("changed".into(), Value::Bool(true));
        m.insert("failed".into(), Value::Bool(true));
        let mut r = TaskResult::from_map(m.clone());
        assert_eq!(r.status(), Status::Failed);
        assert_eq!(r.to_map(), m);
        r.failed = false;
        assert_eq!(keys(&r.to_map()), ["rc", "changed"]);
        assert_eq!(r.status(), Status::Changed);
        assert_eq!(keys(&r.censored()), ["censored", "changed"]);
        assert_eq!(
            keys(&TaskResult::failed_bare("m").to_map()),
            ["failed", "msg"]
        );
        assert!(TaskResult::default().to_map().is_empty());
    }
}
