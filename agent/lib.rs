//! kiln: an Ansible- and Kayobe-compatible host provisioning agent.
//!
//! One crate is both the controller (on the operator's machine) and the agent (pushed to each host
//! and run there as `kiln agent`). The folders follow the data flow of `ARCHITECTURE.md`:
//! `cli → config → template → playbook → engine → modules → transport → host`; each knows only what
//! is to its right. `value` and `yaml` are the shared data model underneath all of them.

pub mod build;
pub mod cli;
pub mod config;
pub mod engine;
pub mod host;
pub mod lab;
pub mod modules;
pub mod playbook;
pub mod protocol;
pub mod template;
pub mod transport;
pub mod value;
pub mod vault;
pub mod yaml;
