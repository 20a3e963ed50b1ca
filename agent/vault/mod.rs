//! Secrets: age-encrypted files (kiln's own vault format) and ansible-vault files and inline
//! `!vault` values (read for compatibility, and migrated to age).
//!
//! The [`Keyring`] holds what can open them: age identities and ansible-vault passwords. Everything
//! decrypted comes back wrapped in [`crate::value::Secret`] so it redacts itself in every output.
//!
//! One file per job: [`age_files`] (the age format: recipients, encrypt, decrypt, header),
//! [`ansible_vault`] (reading `$ANSIBLE_VAULT` 1.1/1.2), [`keyring`] (which keys a run has, by
//! Kayobe's rules), [`recipients`] (where `.age-recipients` is found), [`write`] (atomic private
//! writes), [`edit`] (the editor round trip) and [`migrate`] (ansible-vault → age, text-preserving).
//!
//! **Inline age values.** After `kiln vault migrate`, an inline secret stays under Ansible's
//! `!vault |` tag, with an armored age file as its text:
//!
//! ```yaml
//! kolla_docker_registry_password: !vault |
//!   -----BEGIN AGE ENCRYPTED FILE-----
//!   YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSB...
//!   -----END AGE ENCRYPTED FILE-----
//! ```
//!
//! kiln tells the two apart by the text's first line (`$ANSIBLE_VAULT;` or the age armor line).
//! Keeping the tag means every YAML reader that knows Ansible's tags still loads the file, and the
//! value stays lazily decrypted, exactly like an ansible-vault value.

pub mod age_files;
pub mod ansible_vault;
pub mod edit;
pub mod keyring;
pub mod migrate;
pub mod recipients;
pub mod write;

pub use keyring::{KeyOptions, Keyring};

use std::path::PathBuf;

/// Why something could not be decrypted or set up. Messages name the file and say what to do;
/// they never contain plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{origin}: {msg}")]
    Decrypt { origin: String, msg: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Options or environment that do not fit together, or a key that cannot be had.
    #[error("{0}")]
    Setup(String),
}
