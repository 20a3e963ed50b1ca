//! Who a new or re-encrypted age file is for: recipients given on the command line
//! (`--recipient`, `--recipients-file`), a passphrase (`--passphrase`), or the `.age-recipients`
//! file of the configuration — `<config>/environments/<env>/.age-recipients` first, then
//! `<config>/.age-recipients` — one recipient per line, `#` comments allowed.
//!
//! The recipients of a configuration live in a file next to it (as sops keeps `.sops.yaml`) so
//! that `edit` and `encrypt` need no flags and everyone on a team encrypts to the same people.

use super::age_files::{parse_recipients_file, Recipient, Recipients};
use super::keyring::{prompt, ENV_AGE_PASSPHRASE};
use age::secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};

pub const RECIPIENTS_FILE: &str = ".age-recipients";

/// The recipient choices a command was given.
#[derive(Debug, Default, Clone)]
pub struct RecipientChoice {
    pub recipients: Vec<String>,
    pub recipients_files: Vec<PathBuf>,
    pub passphrase: bool,
    /// scrypt work factor (log2 N) for `--passphrase`; age's default targets ~1 s.
    pub work_factor: Option<u8>,
}

/// Where the recipients came from, for messages.
pub struct Resolved {
    pub recipients: Recipients,
    pub source: String,
}

/// The `.age-recipients` files that apply, most specific first.
pub fn default_files(config_path: Option<&Path>, environment: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(c) = config_path {
        if let Some(e) = environment {
            out.push(c.join("environments").join(e).join(RECIPIENTS_FILE));
        }
        out.push(c.join(RECIPIENTS_FILE));
    }
    out
}

/// A new passphrase: `$KILN_AGE_PASSPHRASE`, or asked twice on the terminal.
pub fn new_passphrase() -> Result<SecretString, String> {
    if let Ok(p) = std::env::var(ENV_AGE_PASSPHRASE) {
        if !p.is_empty() {
            return Ok(SecretString::from(p));
        }
    }
    let a = prompt("New age passphrase: ")?;
    let b = prompt("Confirm age passphrase: ")?;
    if a.expose_secret() != b.expose_secret() {
        return Err("the passphrases do not match".into());
    }
    if a.expose_secret().is_empty() {
        return Err("an empty passphrase is not allowed".into());
    }
    Ok(a)
}

/// Resolve the choice. `Ok(None)` when nothing was given and no `.age-recipients` exists.
pub fn resolve(
    c: &RecipientChoice,
    config_path: Option<&Path>,
    environment: Option<&str>,
) -> Result<Option<Resolved>, String> {
    let explicit = !c.recipients.is_empty() || !c.recipients_files.is_empty();
    if c.passphrase {
        if explicit {
            return Err(
                "--passphrase cannot be combined with recipients (age does not mix them)".into(),
            );
        }
        return Ok(Some(Resolved {
            recipients: Recipients::Passphrase {
                passphrase: new_passphrase()?,
                work_factor: c.work_factor,
            },
            source: "a passphrase".into(),
        }));
    }
    let mut keys: Vec<Recipient> = Vec::new();
    let mut sources = Vec::new();
    for (i, r) in c.recipients.iter().enumerate() {
        keys.push(Recipient::parse(r).map_err(|e| format!("--recipient #{}: {e}", i + 1))?);
    }
    if !c.recipients.is_empty() {
        sources.push("--recipient".to_string());
    }
    let mut files = c.recipients_files.clone();
    if !explicit {
        files = default_files(config_path, environment)
            .into_iter()
            .filter(|p| p.is_file())
            .take(1)
            .collect();
    }
    for f in &files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read recipients file {}: {e}", f.display()))?;
        keys.extend(parse_recipients_file(&text, &f.display().to_string())?);
        sources.push(f.display().to_string());
    }
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(Resolved {
        recipients: Recipients::Keys(keys),
        source: sources.join(", "),
    }))
}

/// The error for "no recipients anywhere".
pub fn none_message(config_path: Option<&Path>, environment: Option<&str>) -> String {
    let looked: Vec<String> = default_files(config_path, environment)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut m = "no age recipients: give --recipient KEY, --recipients-file FILE or --passphrase"
        .to_string();
    if looked.is_empty() {
        m.push_str(
            ", or set --config-path / KAYOBE_CONFIG_PATH and list them in <config>/.age-recipients",
        );
    } else {
        m.push_str(&format!(", or list them in {}", looked.join(" or ")));
    }
    m
}
