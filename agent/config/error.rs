//! Errors of the configuration layer. Each names the file (and line where there is one) and, where
//! the fix is not obvious, what to do.

use crate::vault::VaultError;
use crate::yaml::YamlError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Yaml(#[from] YamlError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A semantic problem at a known place (`file:line: message`).
    #[error("{file}:{line}: {msg}")]
    At {
        file: String,
        line: usize,
        msg: String,
    },
    /// A problem with no single line to point at.
    #[error("{0}")]
    Other(String),
}

impl ConfigError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ConfigError::Io {
            path: path.into(),
            source,
        }
    }
    pub fn at(file: impl Into<String>, line: usize, msg: impl Into<String>) -> Self {
        ConfigError::At {
            file: file.into(),
            line,
            msg: msg.into(),
        }
    }
}
