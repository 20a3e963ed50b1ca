//! Secrets: age-encrypted files (kiln's own vault format) and ansible-vault files and inline
//! `!vault` values (read for compatibility, and migrated to age).
//!
//! The [`Keyring`] holds what can open them: age identities and ansible-vault passwords. Everything
//! decrypted comes back wrapped in [`crate::value::Secret`] so it redacts itself in every output.

use crate::value::{Value, VaultText};

/// Why something could not be decrypted. Messages name the file and say what to do; they never
/// contain plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{origin}: {msg}")]
    Decrypt { origin: String, msg: String },
}

/// The keys available to this run: age identities and ansible-vault passwords.
#[derive(Default)]
pub struct Keyring {}

impl Keyring {
    pub fn empty() -> Self {
        Keyring::default()
    }

    /// If `bytes` is an encrypted file (age, armored or binary, or `$ANSIBLE_VAULT`), its
    /// plaintext; `Ok(None)` if it is not encrypted.
    pub fn decrypt_file_bytes(&self, bytes: &[u8], origin: &str) -> Result<Option<Vec<u8>>, VaultError> {
        if bytes.starts_with(b"$ANSIBLE_VAULT;") || bytes.starts_with(b"age-encryption.org/") || bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----") {
            return Err(VaultError::Decrypt { origin: origin.to_string(), msg: "encrypted file, and no key was given to open it".into() });
        }
        Ok(None)
    }

    /// Decrypt an inline `!vault` value (on use, as Ansible does).
    pub fn decrypt_inline(&self, v: &VaultText) -> Result<Value, VaultError> {
        Err(VaultError::Decrypt { origin: v.origin.clone(), msg: "a vaulted value is used, and no vault password was given".into() })
    }
}
