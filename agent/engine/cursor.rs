//! Where one host is in a play: a stack of frames over blocks, with Ansible's rescue/always rules.
//!
//! A failed task moves the host to the nearest enclosing block's `rescue` (the host is no longer
//! failed: the recap counts it as rescued); failing without a rescue still runs that block's
//! `always`, after which the failure continues outward. Dynamic includes push a frame of their
//! tasks. Tags and `--start-at-task` are applied as tasks come up, so filtered tasks never exist
//! for the strategy.

use crate::playbook::{Block, Item, Task};
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Plain,
    Body,
    Rescue,
    Always,
}

struct Frame {
    items: Arc<Vec<Item>>,
    idx: usize,
    kind: Kind,
    block: Option<Arc<Block>>,
    /// An always section entered because of a failure: the failure continues after it.
    pending_failure: bool,
}

pub struct Cursor {
    stack: Vec<Frame>,
    /// The host failed and the failure was not rescued: it runs nothing more.
    pub failed: bool,
    /// The host's next task, once computed.
    peeked: Option<Arc<Task>>,
}

/// Which tasks run: `--tags` / `--skip-tags` as Ansible evaluates them.
pub trait TaskFilter {
    fn wants(&self, task: &Task) -> bool;
}

impl Cursor {
    pub fn new(items: Vec<Item>) -> Cursor {
        Cursor {
            stack: vec![Frame {
                items: Arc::new(items),
                idx: 0,
                kind: Kind::Plain,
                block: None,
                pending_failure: false,
            }],
            failed: false,
            peeked: None,
        }
    }

    /// The next task to run (without consuming it).
    pub fn peek(&mut self, filter: &dyn TaskFilter) -> Option<Arc<Task>> {
        if self.peeked.is_none() && !self.failed {
            self.peeked = self.advance(filter);
        }
        self.peeked.clone()
    }

    /// Consume the peeked task (it is running now).
    pub fn take(&mut self) {
        self.peeked = None;
    }

    /// Run `items` next (an include's tasks), before the rest.
    pub fn push(&mut self, items: Vec<Item>) {
        if let Some(t) = self.peeked.take() {
            // the peeked task comes after the included ones: put it back
            self.stack.push(Frame {
                items: Arc::new(vec![Item::Task(t)]),
                idx: 0,
                kind: Kind::Plain,
                block: None,
                pending_failure: false,
            });
        }
        self.stack.push(Frame {
            items: Arc::new(items),
            idx: 0,
            kind: Kind::Plain,
            block: None,
            pending_failure: false,
        });
    }

    /// Stop this host for the rest of the play (`meta: end_host`, end_play).
    pub fn end(&mut self) {
        self.stack.clear();
        self.peeked = None;
    }

    fn advance(&mut self, filter: &dyn TaskFilter) -> Option<Arc<Task>> {
        loop {
            let top = self.stack.last_mut()?;
            if top.idx < top.items.len() {
                let item = top.items[top.idx].clone();
                top.idx += 1;
                match item {
                    Item::Task(t) => {
                        if filter.wants(&t) {
                            return Some(t);
                        }
                    }
                    Item::Block(b) => self.stack.push(Frame {
                        items: Arc::new(b.block.clone()),
                        idx: 0,
                        kind: Kind::Body,
                        block: Some(b),
                        pending_failure: false,
                    }),
                }
                continue;
            }
            let done = self.stack.pop()?;
            match done.kind {
                Kind::Body | Kind::Rescue => {
                    if let Some(b) = &done.block {
                        if !b.always.is_empty() {
                            self.stack.push(Frame {
                                items: Arc::new(b.always.clone()),
                                idx: 0,
                                kind: Kind::Always,
                                block: done.block.clone(),
                                pending_failure: false,
                            });
                        }
                    }
                }
                // the block failed and had no rescue: the failure continues outward
                Kind::Always if done.pending_failure && !self.fail() => return None,
                _ => {}
            }
        }
    }

    /// The host's current task failed. Returns true when a rescue or always section takes over
    /// (the host goes on); false when the failure ends the host's play. Returns
    /// `Some(rescued)` semantics through [`Cursor::fail_rescued`].
    pub fn fail(&mut self) -> bool {
        self.fail_rescued().0
    }

    /// Like [`Cursor::fail`], also saying whether a `rescue` section took the failure.
    pub fn fail_rescued(&mut self) -> (bool, bool) {
        self.peeked = None;
        while let Some(top) = self.stack.last() {
            let block = top.block.clone();
            match (top.kind, block) {
                (Kind::Body, Some(b)) if !b.rescue.is_empty() => {
                    self.stack.pop();
                    self.stack.push(Frame {
                        items: Arc::new(b.rescue.clone()),
                        idx: 0,
                        kind: Kind::Rescue,
                        block: Some(b),
                        pending_failure: false,
                    });
                    return (true, true);
                }
                (Kind::Body | Kind::Rescue, Some(b)) if !b.always.is_empty() => {
                    self.stack.pop();
                    self.stack.push(Frame {
                        items: Arc::new(b.always.clone()),
                        idx: 0,
                        kind: Kind::Always,
                        block: Some(b),
                        pending_failure: true,
                    });
                    return (true, false);
                }
                _ => {
                    self.stack.pop();
                }
            }
        }
        self.failed = true;
        (false, false)
    }

    /// `meta: clear_host_errors` and the like: the host may run again.
    pub fn clear_failure(&mut self) {
        self.failed = false;
    }

    /// Whether the host is inside a rescue section right now.
    pub fn in_rescue(&self) -> bool {
        self.stack.iter().any(|f| f.kind == Kind::Rescue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::{next_id, Attrs, LoopControl, Pos};

    struct All;
    impl TaskFilter for All {
        fn wants(&self, _: &Task) -> bool {
            true
        }
    }

    fn t(name: &str) -> Item {
        Item::Task(Arc::new(Task {
            id: next_id(),
            name: Some(name.into()),
            action: "debug".into(),
            args: Default::default(),
            pos: Pos::default(),
            attrs: Attrs::default(),
            looping: None,
            loop_control: LoopControl::default(),
            register: None,
            changed_when: vec![],
            failed_when: vec![],
            until: vec![],
            retries: None,
            delay: None,
            notify: vec![],
            listen: vec![],
            implicit: false,
            own_when: 0,
            own_tags: vec![],
        }))
    }

    fn block(b: Vec<Item>, r: Vec<Item>, a: Vec<Item>) -> Item {
        Item::Block(Arc::new(Block {
            id: next_id(),
            pos: Pos::default(),
            block: b,
            rescue: r,
            always: a,
        }))
    }

    fn name(c: &mut Cursor) -> Option<String> {
        let t = c.peek(&All)?;
        c.take();
        t.name.clone()
    }

    #[test]
    fn rescue_then_always_then_on() {
        let mut c = Cursor::new(vec![
            block(vec![t("b1"), t("b2")], vec![t("r1")], vec![t("a1")]),
            t("after"),
        ]);
        assert_eq!(name(&mut c).as_deref(), Some("b1"));
        assert!(c.fail());
        assert_eq!(name(&mut c).as_deref(), Some("r1"));
        assert_eq!(name(&mut c).as_deref(), Some("a1"));
        assert_eq!(name(&mut c).as_deref(), Some("after"));
        assert_eq!(name(&mut c), None);
        assert!(!c.failed);
    }

    #[test]
    fn always_without_rescue_keeps_the_failure() {
        let mut c = Cursor::new(vec![
            block(
                vec![block(vec![t("in")], vec![], vec![t("a-in")])],
                vec![],
                vec![t("a-out")],
            ),
            t("after"),
        ]);
        assert_eq!(name(&mut c).as_deref(), Some("in"));
        assert!(c.fail());
        assert_eq!(name(&mut c).as_deref(), Some("a-in"));
        assert_eq!(name(&mut c).as_deref(), Some("a-out"));
        assert_eq!(name(&mut c), None);
        assert!(c.failed);
    }

    #[test]
    fn includes_run_before_the_rest() {
        let mut c = Cursor::new(vec![t("inc"), t("next")]);
        assert_eq!(name(&mut c).as_deref(), Some("inc"));
        c.peek(&All);
        c.push(vec![t("x1"), t("x2")]);
        assert_eq!(name(&mut c).as_deref(), Some("x1"));
        assert_eq!(name(&mut c).as_deref(), Some("x2"));
        assert_eq!(name(&mut c).as_deref(), Some("next"));
    }
}
