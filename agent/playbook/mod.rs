//! Playbooks as data: the model ([`model`]), the loader ([`load`]) and Ansible's `key=value`
//! argument syntax ([`kv`]). Nothing here touches a host or templates a value; the engine does.

pub mod kv;
pub mod load;
pub mod model;

pub use load::Loader;
pub use model::*;

use std::path::PathBuf;

/// Why a playbook could not be loaded. Every variant names the file (and line where known).
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("{pos}: {msg}")]
    At { pos: Pos, msg: String },
    /// A file or role the playbook names does not exist (ansible-playbook: exit 1, not 4).
    #[error("{pos}: {msg}")]
    NotFound { pos: Pos, msg: String },
    #[error(transparent)]
    Yaml(#[from] crate::yaml::YamlError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}
