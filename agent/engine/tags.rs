//! `--tags` / `--skip-tags`, as Ansible evaluates them.
//!
//! A task runs when its tags meet the selection (`all` matches every task not tagged `never`;
//! `tagged` / `untagged` match by whether it has tags) or when it is tagged `always` (unless
//! `always` is skipped); a task tagged `never` runs only when one of its tags is asked for.
//! `--skip-tags` removes any task that shares a tag with it.

use super::cursor::TaskFilter;
use crate::playbook::Task;

#[derive(Clone, Debug)]
pub struct TagSelection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
}

impl Default for TagSelection {
    fn default() -> Self {
        TagSelection {
            only: vec!["all".into()],
            skip: vec![],
        }
    }
}

impl TagSelection {
    pub fn new(only: &[String], skip: &[String]) -> TagSelection {
        let split = |v: &[String]| -> Vec<String> {
            v.iter()
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut only = split(only);
        if only.is_empty() {
            only.push("all".into());
        }
        TagSelection {
            only,
            skip: split(skip),
        }
    }

    /// Ansible's `Taggable.evaluate_tags`.
    pub fn matches(&self, tags: &[String]) -> bool {
        let has = |t: &str| tags.iter().any(|x| x == t);
        let mut run = false;
        if has("always") {
            run = true;
        } else if has("never") {
            run = self.only.iter().any(|o| o != "all" && has(o));
        } else {
            for o in &self.only {
                let hit = match o.as_str() {
                    "all" => true,
                    "tagged" => !tags.is_empty(),
                    "untagged" => tags.is_empty(),
                    other => has(other),
                };
                if hit {
                    run = true;
                    break;
                }
            }
        }
        if run && !self.skip.is_empty() {
            for s in &self.skip {
                let hit = match s.as_str() {
                    "all" => !has("always"),
                    "tagged" => !tags.is_empty() && !has("always"),
                    "untagged" => tags.is_empty(),
                    other => has(other),
                };
                if hit {
                    return false;
                }
            }
        }
        run
    }
}

impl TaskFilter for TagSelection {
    fn wants(&self, task: &Task) -> bool {
        task.implicit || self.matches(&task.attrs.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ansible_rules() {
        let all = TagSelection::default();
        assert!(all.matches(&v(&[])));
        assert!(all.matches(&v(&["a"])));
        assert!(!all.matches(&v(&["never"])));
        assert!(all.matches(&v(&["always"])));
        let a = TagSelection::new(&v(&["a"]), &[]);
        assert!(a.matches(&v(&["a", "b"])));
        assert!(!a.matches(&v(&["b"])));
        assert!(a.matches(&v(&["always"])));
        assert!(!a.matches(&v(&[])));
        let n = TagSelection::new(&v(&["debug"]), &[]);
        assert!(n.matches(&v(&["never", "debug"])));
        let skip = TagSelection::new(&[], &v(&["b"]));
        assert!(!skip.matches(&v(&["b"])));
        assert!(skip.matches(&v(&["a"])));
        let skip_always = TagSelection::new(&[], &v(&["always"]));
        assert!(!skip_always.matches(&v(&["always"])));
        let tagged = TagSelection::new(&v(&["untagged"]), &[]);
        assert!(tagged.matches(&v(&[])));
        assert!(!tagged.matches(&v(&["x"])));
    }
}
