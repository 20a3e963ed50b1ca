//! One agent session per (host, remote user, become user), opened on first use and shared by every task.
//!
//! Connection settings come from the host's templated `ansible_*` variables, as Ansible reads
//! them, with the task's `become` / `become_user` on top. A host named in `delegate_to` that is
//! not in the inventory is Ansible's implicit host: `localhost` (and `127.0.0.1`, `::1`) by a
//! local connection, any other name by ssh to that name.

use super::Engine;
use crate::template::VarSource;
use crate::transport::{self, ConnSpec, Session, TransportError};
use crate::value::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::OnceCell;

type Slot = Arc<OnceCell<Result<Arc<Session>, Arc<TransportError>>>>;

#[derive(Default)]
pub struct Pool {
    slots: std::sync::Mutex<HashMap<(String, String, String), Slot>>,
}

/// What a task asks of the connection.
pub struct Want<'a> {
    /// The host to reach (the delegate, when delegating).
    pub host: &'a str,
    /// Its variables (the delegate's own, when delegating).
    pub vars: Arc<dyn VarSource>,
    /// `Some(user)` to become that user.
    pub become_user: Option<String>,
}

/// Sessions are shared per (host, remote user, become user): a play that sets `ansible_user`
/// (Kayobe's bootstrap-user plays do) gets its own session, not another play's.
fn key(engine: &Engine, w: &Want) -> (String, String, String) {
    let user = ["ansible_user", "ansible_ssh_user"]
        .iter()
        .find_map(|n| w.vars.raw(n))
        .and_then(|raw| engine.templar.template(&w.vars, &raw, "ansible_user").ok())
        .map(|v| crate::template::py_str_value(&v))
        .unwrap_or_default();
    (
        w.host.to_string(),
        user,
        w.become_user.clone().unwrap_or_default(),
    )
}

impl Pool {
    pub async fn session(
        &self,
        engine: &Engine,
        want: Want<'_>,
    ) -> Result<Arc<Session>, Arc<TransportError>> {
        let slot = {
            let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            s.entry(key(engine, &want)).or_default().clone()
        };
        slot.get_or_init(|| async {
            let spec = spec_for(engine, &want).map_err(Arc::new)?;
            transport::connect(&spec, &engine.opts.transport)
                .await
                .map(Arc::new)
                .map_err(Arc::new)
        })
        .await
        .clone()
    }

    /// Close one host's sessions for good (`meta: reset_connection`) or all of them (end of run).
    pub async fn close(&self, host: Option<&str>) {
        let slots: Vec<Slot> = {
            let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<_> = s
                .keys()
                .filter(|(h, _, _)| host.is_none_or(|x| x == h))
                .cloned()
                .collect();
            keys.into_iter().filter_map(|k| s.remove(&k)).collect()
        };
        for slot in slots {
            if let Some(Ok(sess)) = slot.get() {
                // one host's: `reset_connection` / `wait_for_connection`, which want a fresh
                // connection, not the persisted one; all of them: the end of the run
                if host.is_some() {
                    sess.reset().await;
                } else {
                    sess.close().await;
                }
            }
        }
    }
}

fn spec_for(engine: &Engine, want: &Want) -> Result<ConnSpec, TransportError> {
    let cfg = |msg: String| TransportError::Config {
        host: want.host.to_string(),
        msg,
    };
    let mut vars = Map::new();
    for name in want
        .vars
        .names()
        .into_iter()
        .filter(|n| n.starts_with("ansible_") && !n.starts_with("ansible_facts"))
    {
        let raw = want.vars.raw(&name).unwrap_or_default();
        // only connection settings matter here; a fact or an unrelated broken variable must not
        if !is_connection_var(&name) {
            continue;
        }
        let v = engine
            .templar
            .template(&want.vars, &raw, &format!("{name} of {}", want.host))
            .map_err(|e| cfg(e.to_string()))?;
        vars.insert(name, v);
    }
    for (k, v) in &engine.opts.conn_defaults {
        vars.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !engine.run.inventory.has_host(want.host)
        && !vars.contains_key("ansible_connection")
        && ["localhost", "127.0.0.1", "::1"].contains(&want.host)
    {
        vars.insert("ansible_connection".into(), Value::str("local"));
    }
    match &want.become_user {
        Some(u) => {
            vars.insert("ansible_become".into(), Value::Bool(true));
            vars.insert("ansible_become_user".into(), Value::Str(u.clone()));
        }
        None => {
            vars.insert("ansible_become".into(), Value::Bool(false));
        }
    }
    ConnSpec::from_vars(want.host, &vars).map_err(|e| cfg(e.to_string()))
}

fn is_connection_var(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "ansible_connection",
        "ansible_host",
        "ansible_ssh_host",
        "ansible_port",
        "ansible_ssh_port",
        "ansible_user",
        "ansible_ssh_user",
        "ansible_ssh_private_key_file",
        "ansible_private_key_file",
        "ansible_host_key_checking",
        "ansible_ssh_host_key_checking",
        "ansible_ssh_common_args",
        "ansible_ssh_extra_args",
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_become_flags",
        "ansible_become_exe",
        "ansible_become_method",
        "ansible_password",
        "ansible_ssh_pass",
        "ansible_timeout",
        "ansible_ssh_timeout",
    ];
    NAMES.contains(&name)
}

/// The variables of a host that is not in the inventory (a `delegate_to` target): only its name;
/// `hostvars` and `groups` are still the run's.
pub(crate) struct ImplicitHost {
    name: String,
    run: Arc<dyn VarSource>,
}

impl ImplicitHost {
    pub(crate) fn new(name: &str, run: Arc<dyn VarSource>) -> Self {
        ImplicitHost {
            name: name.to_string(),
            run,
        }
    }
}

impl VarSource for ImplicitHost {
    fn raw(&self, name: &str) -> Option<Value> {
        match name {
            "inventory_hostname" | "ansible_host" => Some(Value::str(&self.name)),
            "inventory_hostname_short" => Some(Value::str(
                self.name.split('.').next().unwrap_or(&self.name),
            )),
            _ => None,
        }
    }
    fn origin(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(|_| format!("the implicit host {}", self.name))
    }
    fn names(&self) -> Vec<String> {
        [
            "inventory_hostname",
            "inventory_hostname_short",
            "ansible_host",
        ]
        .map(String::from)
        .to_vec()
    }
    fn host(&self, host: &str) -> Option<Arc<dyn VarSource>> {
        self.run.host(host)
    }
    fn host_names(&self) -> Vec<String> {
        self.run.host_names()
    }
    fn select_hosts(&self, pattern: &str) -> Result<Vec<String>, String> {
        self.run.select_hosts(pattern)
    }
}
