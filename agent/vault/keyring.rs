//! The keys of one kiln run: age identities, an age passphrase (asked for once, when first needed)
//! and ansible-vault passwords, gathered by Kayobe's rules.
//!
//! Kayobe's rules (kayobe/vault.py), which kiln follows so the same shell setup works:
//! * `--ask-vault-pass` and `--vault-password-file` exclude each other.
//! * When `$KAYOBE_VAULT_PASSWORD` is set it *is* the vault password, and giving
//!   `--ask-vault-pass` or a `--vault-password-file` as well is an error — except the file
//!   `kayobe-vault-password-helper`, the script that just prints that variable.
//! * A password file is read and stripped of surrounding whitespace; an executable one is run and
//!   its standard output is the password (as Ansible does; a `*-client` script gets
//!   `--vault-id default`).
//! * `$ANSIBLE_VAULT_PASSWORD_FILE` adds one more password file, as ansible-playbook does, so it
//!   combines with either of the above.
//!
//! age identities come from `--age-identity` / `$KILN_AGE_IDENTITY`: age identity files (native
//! keys and plugin identities), passphrase-encrypted identity files (as `age -p` makes), and SSH
//! private keys (ed25519, RSA; a passphrase-protected key asks for its passphrase on the TTY).
//! Passphrase-encrypted (scrypt) files and identity files take the passphrase from
//! `$KILN_AGE_PASSPHRASE` or the terminal.
//!
//! The keyring holds key *text*, not parsed `age` identities, because those are neither `Send` nor
//! `Clone`; they are parsed (cheaply) for each decryption.

use super::age_files;
use super::ansible_vault;
use super::VaultError;
use crate::value::{Secret, Value, VaultText};
use age::secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

pub const ENV_KAYOBE_VAULT_PASSWORD: &str = "KAYOBE_VAULT_PASSWORD";
pub const ENV_ANSIBLE_VAULT_PASSWORD_FILE: &str = "ANSIBLE_VAULT_PASSWORD_FILE";
pub const ENV_AGE_PASSPHRASE: &str = "KILN_AGE_PASSPHRASE";
const KAYOBE_HELPER: &str = "kayobe-vault-password-helper";

/// How the ansible-vault password and the age keys are to be found.
#[derive(Debug, Default, Clone)]
pub struct KeyOptions {
    pub vault_password_file: Option<PathBuf>,
    pub ask_vault_pass: bool,
    pub age_identities: Vec<PathBuf>,
    pub config_path: Option<PathBuf>,
}

/// An age identity: where it came from and its text (an age identity file or an SSH key).
struct AgeIdentity {
    origin: String,
    text: Zeroizing<String>,
    ssh: bool,
}

/// One ansible-vault password and where it came from.
struct VaultPassword {
    vault_id: Option<String>,
    bytes: Zeroizing<Vec<u8>>,
}

/// The keys available to this run: age identities and ansible-vault passwords.
#[derive(Default)]
pub struct Keyring {
    identities: Vec<AgeIdentity>,
    passwords: Vec<VaultPassword>,
    passphrase: Mutex<Option<SecretString>>,
    /// Where `.age-recipients` is looked for.
    pub config_path: Option<PathBuf>,
}

fn setup(msg: impl Into<String>) -> VaultError {
    VaultError::Setup(msg.into())
}

impl Keyring {
    pub fn empty() -> Self {
        Keyring::default()
    }

    /// The keyring for the global options, reading the environment by Kayobe's rules.
    pub fn from_opts(
        vault_password_file: Option<&Path>,
        age_identities: &[PathBuf],
        config_path: Option<&Path>,
    ) -> Result<Keyring, VaultError> {
        Keyring::from_options(&KeyOptions {
            vault_password_file: vault_password_file.map(Path::to_path_buf),
            ask_vault_pass: false,
            age_identities: age_identities.to_vec(),
            config_path: config_path.map(Path::to_path_buf),
        })
    }

    /// As [`Keyring::from_opts`], with `--ask-vault-pass`.
    pub fn from_options(o: &KeyOptions) -> Result<Keyring, VaultError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let mut ring = Keyring {
            config_path: o.config_path.clone(),
            ..Keyring::default()
        };

        if o.ask_vault_pass && o.vault_password_file.is_some() {
            return Err(setup(
                "--ask-vault-pass and --vault-password-file cannot be used together",
            ));
        }
        if let Some(pw) = std::env::var_os(ENV_KAYOBE_VAULT_PASSWORD) {
            if o.ask_vault_pass {
                return Err(setup(format!("cannot specify --ask-vault-pass when ${ENV_KAYOBE_VAULT_PASSWORD} is specified")));
            }
            if let Some(f) = &o.vault_password_file {
                if f.file_name().and_then(|n| n.to_str()) != Some(KAYOBE_HELPER) {
                    return Err(setup(format!(
                        "cannot specify --vault-password-file when ${ENV_KAYOBE_VAULT_PASSWORD} is specified (unset one of them)"
                    )));
                }
            }
            let pw = pw.into_encoded_bytes();
            let pw = strip_newlines(&pw);
            if pw.is_empty() {
                return Err(setup(format!(
                    "${ENV_KAYOBE_VAULT_PASSWORD} is set but empty"
                )));
            }
            ring.passwords.push(VaultPassword {
                vault_id: None,
                bytes: Zeroizing::new(pw.to_vec()),
            });
        } else if let Some(f) = &o.vault_password_file {
            ring.passwords.push(read_password_file(f)?);
        } else if o.ask_vault_pass {
            let pw = prompt("Vault password: ").map_err(setup)?;
            ring.passwords.push(VaultPassword {
                vault_id: None,
                bytes: Zeroizing::new(pw.expose_secret().as_bytes().to_vec()),
            });
        }
        if let Some(f) = env(ENV_ANSIBLE_VAULT_PASSWORD_FILE) {
            let f = PathBuf::from(f);
            if o.vault_password_file.as_deref() != Some(f.as_path()) {
                ring.passwords.push(read_password_file(&f)?);
            }
        }

        for path in &o.age_identities {
            ring.add_identity_file(path)?;
        }
        Ok(ring)
    }

    /// Add an age identity file, SSH private key, or passphrase-encrypted identity file.
    pub fn add_identity_file(&mut self, path: &Path) -> Result<(), VaultError> {
        let origin = path.display().to_string();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| VaultError::Io {
            path: path.to_path_buf(),
            source: e,
        })?);
        let plain = if age_files::is_age(&bytes) {
            // an identity file encrypted with a passphrase (`age-keygen | age -p`)
            Zeroizing::new(
                age_files::decrypt(&bytes, &[], &|| self.passphrase(&origin)).map_err(|msg| {
                    VaultError::Decrypt {
                        origin: origin.clone(),
                        msg,
                    }
                })?,
            )
        } else {
            bytes
        };
        let text =
            Zeroizing::new(
                String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Decrypt {
                    origin: origin.clone(),
                    msg: "identity file is not UTF-8 text".into(),
                })?,
            );
        let ssh = text.trim_start().starts_with("-----BEGIN");
        let id = AgeIdentity {
            origin: origin.clone(),
            text,
            ssh,
        };
        // parse now, so a bad file is reported up front and not at first use
        id.parse()
            .map_err(|msg| VaultError::Decrypt { origin, msg })?;
        self.identities.push(id);
        Ok(())
    }

    /// Add an ansible-vault password (for tests and callers with their own source).
    pub fn add_vault_password(&mut self, vault_id: Option<String>, password: &[u8]) {
        self.passwords.push(VaultPassword {
            vault_id,
            bytes: Zeroizing::new(password.to_vec()),
        });
    }

    /// Use this age passphrase for passphrase-encrypted files instead of asking.
    pub fn set_passphrase(&self, p: SecretString) {
        if let Ok(mut g) = self.passphrase.lock() {
            *g = Some(p);
        }
    }

    pub fn has_age_identities(&self) -> bool {
        !self.identities.is_empty()
    }

    pub fn has_vault_passwords(&self) -> bool {
        !self.passwords.is_empty()
    }

    /// The age passphrase: given before, `$KILN_AGE_PASSPHRASE`, or asked for on the terminal.
    pub fn passphrase(&self, origin: &str) -> Result<SecretString, String> {
        let mut guard = self
            .passphrase
            .lock()
            .map_err(|_| "passphrase lock poisoned".to_string())?;
        if let Some(p) = guard.as_ref() {
            return Ok(p.clone());
        }
        let p = match std::env::var(ENV_AGE_PASSPHRASE) {
            Ok(p) if !p.is_empty() => SecretString::from(p),
            _ => prompt(&format!("age passphrase for {origin}: "))?,
        };
        *guard = Some(p.clone());
        Ok(p)
    }

    /// Parsed age identities, for one decryption.
    pub fn age_identities(&self) -> Result<Vec<Box<dyn age::Identity>>, VaultError> {
        let mut out = Vec::new();
        for id in &self.identities {
            out.extend(id.parse().map_err(|msg| VaultError::Decrypt {
                origin: id.origin.clone(),
                msg,
            })?);
        }
        Ok(out)
    }

    /// Decrypt an age file held in memory.
    pub fn decrypt_age(&self, bytes: &[u8], origin: &str) -> Result<Vec<u8>, VaultError> {
        let ids = self.age_identities()?;
        if ids.is_empty()
            && !age_files::header_stanzas(bytes).is_some_and(|s| age_files::is_scrypt_header(&s))
        {
            return Err(VaultError::Decrypt {
                origin: origin.into(),
                msg: "this is an age file and no age identity was given (use --age-identity FILE or KILN_AGE_IDENTITY)".into(),
            });
        }
        age_files::decrypt(bytes, &ids, &|| self.passphrase(origin)).map_err(|msg| {
            VaultError::Decrypt {
                origin: origin.into(),
                msg,
            }
        })
    }

    /// Decrypt ansible-vault data held in memory.
    pub fn decrypt_ansible(&self, bytes: &[u8], origin: &str) -> Result<Vec<u8>, VaultError> {
        let pws: Vec<(Option<String>, &[u8])> = self
            .passwords
            .iter()
            .map(|p| (p.vault_id.clone(), p.bytes.as_slice()))
            .collect();
        ansible_vault::decrypt(bytes, &pws).map_err(|f| VaultError::Decrypt {
            origin: origin.into(),
            msg: f.to_string(),
        })
    }

    /// If `bytes` is an encrypted file (age, armored or binary, or `$ANSIBLE_VAULT`), its
    /// plaintext; `Ok(None)` if it is not encrypted.
    pub fn decrypt_file_bytes(
        &self,
        bytes: &[u8],
        origin: &str,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        if age_files::is_age(bytes) {
            return self.decrypt_age(bytes, origin).map(Some);
        }
        if ansible_vault::is_ansible_vault(bytes) {
            return self.decrypt_ansible(bytes, origin).map(Some);
        }
        Ok(None)
    }

    /// Decrypt an inline `!vault` value (on use, as Ansible does). The value may be ansible-vault
    /// text or, after `kiln vault migrate`, an armored age file.
    pub fn decrypt_inline(&self, v: &VaultText) -> Result<Value, VaultError> {
        let text = v.ciphertext.trim();
        let plain = if age_files::is_armored(text.as_bytes()) {
            self.decrypt_age(text.as_bytes(), &v.origin)?
        } else if ansible_vault::is_ansible_vault(text.as_bytes()) {
            if self.passwords.is_empty() {
                return Err(VaultError::Decrypt {
                    origin: v.origin.clone(),
                    msg: "a vaulted value is used, and no vault password was given (use --vault-password-file, KAYOBE_VAULT_PASSWORD or ANSIBLE_VAULT_PASSWORD_FILE)".into(),
                });
            }
            self.decrypt_ansible(text.as_bytes(), &v.origin)?
        } else {
            return Err(VaultError::Decrypt {
                origin: v.origin.clone(),
                msg: "a !vault value that is neither ansible-vault ($ANSIBLE_VAULT;...) nor armored age text".into(),
            });
        };
        let s = String::from_utf8(plain).map_err(|_| VaultError::Decrypt {
            origin: v.origin.clone(),
            msg: "the decrypted value is not UTF-8 text".into(),
        })?;
        Ok(Value::Secret(Secret::new(Value::Str(s))))
    }

    /// `v` with every inline vault value decrypted (to secrets).
    pub fn reveal(&self, v: &Value) -> Result<Value, VaultError> {
        Ok(match v {
            Value::Vault(t) => self.decrypt_inline(t)?,
            Value::List(l) => {
                Value::List(l.iter().map(|x| self.reveal(x)).collect::<Result<_, _>>()?)
            }
            Value::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, x)| Ok((k.clone(), self.reveal(x)?)))
                    .collect::<Result<_, VaultError>>()?,
            ),
            v => v.clone(),
        })
    }
}

impl AgeIdentity {
    fn parse(&self) -> Result<Vec<Box<dyn age::Identity>>, String> {
        if self.ssh {
            let id =
                age::ssh::Identity::from_buffer(self.text.as_bytes(), Some(self.origin.clone()))
                    .map_err(|e| format!("not a usable SSH private key ({e})"))?;
            if let age::ssh::Identity::Unsupported(_) = id {
                return Err(
                    "this SSH key type is not supported by age (use ed25519 or RSA)".into(),
                );
            }
            return Ok(vec![Box::new(id.with_callbacks(TtyCallbacks))]);
        }
        let file = age::IdentityFile::from_buffer(self.text.as_bytes())
            .map_err(|e| format!("not an age identity file ({e})"))?;
        let ids = file
            .with_callbacks(TtyCallbacks)
            .into_identities()
            .map_err(|e| e.to_string())?;
        if ids.is_empty() {
            return Err("no identities in this file".into());
        }
        Ok(ids)
    }
}

fn strip_newlines(b: &[u8]) -> &[u8] {
    let mut s = b;
    while let [rest @ .., b'\r' | b'\n'] = s {
        s = rest;
    }
    while let [b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    s
}

/// Read a vault password file as Ansible does: run it if executable, else read it stripped.
fn read_password_file(path: &Path) -> Result<VaultPassword, VaultError> {
    use std::os::unix::fs::PermissionsExt;
    let origin = path.display();
    let meta = std::fs::metadata(path).map_err(|e| VaultError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let bytes = if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
        let mut cmd = std::process::Command::new(path);
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with("-client") {
            cmd.args(["--vault-id", "default"]);
        }
        let out = cmd
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| setup(format!("cannot run vault password script {origin}: {e}")))?;
        if !out.status.success() {
            return Err(setup(format!(
                "vault password script {origin} failed ({})",
                out.status
            )));
        }
        Zeroizing::new(strip_newlines(&out.stdout).to_vec())
    } else {
        let raw = Zeroizing::new(std::fs::read(path).map_err(|e| VaultError::Io {
            path: path.to_path_buf(),
            source: e,
        })?);
        Zeroizing::new(raw.trim_ascii().to_vec())
    };
    if bytes.is_empty() {
        return Err(setup(format!(
            "invalid vault password was provided from {origin}: it is empty"
        )));
    }
    Ok(VaultPassword {
        vault_id: None,
        bytes,
    })
}

/// Ask for a secret on the controlling terminal; a clear error when there is none.
pub fn prompt(what: &str) -> Result<SecretString, String> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_err()
    {
        let what = what.trim_end_matches([':', ' ']);
        let hint = if what.to_ascii_lowercase().contains("vault password") {
            "use --vault-password-file or KAYOBE_VAULT_PASSWORD instead".to_string()
        } else {
            format!("set {ENV_AGE_PASSPHRASE} instead")
        };
        return Err(format!(
            "cannot ask for the {what}: there is no terminal; {hint}"
        ));
    }
    rpassword::prompt_password(what)
        .map(SecretString::from)
        .map_err(|e| format!("cannot read from the terminal: {e}"))
}

/// age callbacks that ask on the terminal (SSH key passphrases, plugin prompts).
#[derive(Clone)]
struct TtyCallbacks;

impl age::Callbacks for TtyCallbacks {
    fn display_message(&self, message: &str) {
        eprintln!("{message}");
    }
    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }
    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }
    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        prompt(&format!("{description}: ")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Keyring>();
    }

    #[test]
    fn inline_without_password_names_the_place() {
        let k = Keyring::empty();
        let v = VaultText {
            ciphertext: "$ANSIBLE_VAULT;1.1;AES256\n6162\n".into(),
            origin: "group_vars/all:3".into(),
        };
        let e = k.decrypt_inline(&v).unwrap_err().to_string();
        assert!(e.starts_with("group_vars/all:3:"), "{e}");
    }

    #[test]
    fn age_identity_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let p = dir.path().join("id.txt");
        std::fs::write(&p, format!("# test\n{}\n", id.to_string().expose_secret())).unwrap();
        let mut k = Keyring::empty();
        k.add_identity_file(&p).unwrap();
        let ct = age_files::encrypt(
            b"a: 1\n",
            &age_files::Recipients::Keys(vec![age_files::Recipient::X25519(id.to_public())]),
            true,
        )
        .unwrap();
        assert_eq!(k.decrypt_file_bytes(&ct, "f").unwrap().unwrap(), b"a: 1\n");
        let inline = VaultText {
            ciphertext: String::from_utf8(ct).unwrap(),
            origin: "f:1".into(),
        };
        let v = k.decrypt_inline(&inline).unwrap();
        assert_eq!(v.expose_secrets(), Value::str("a: 1\n"));
        assert_eq!(format!("{v:?}"), crate::value::REDACTED);
    }
}
