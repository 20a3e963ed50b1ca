//! `kiln vault`: create, encrypt, decrypt, view, edit and rekey age files, and migrate
//! ansible-vault content to age. The work is in `crate::vault`; this file maps flags to it and
//! decides what is written where: plaintext reaches disk only through `decrypt` (atomic, 0600),
//! and every command decrypts everything it was given before writing anything.

use super::GlobalOpts;
use crate::vault::age_files::{self, Recipients};
use crate::vault::recipients::{self, RecipientChoice};
use crate::vault::{ansible_vault, edit, migrate, write, KeyOptions, Keyring};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};

const EXAMPLES: &str = "Examples:
  # encrypt to the recipients in $KAYOBE_CONFIG_PATH/.age-recipients
  kiln vault encrypt etc/kayobe/secrets.yml
  # encrypt to an age key and an SSH key, armored
  kiln vault encrypt -a -r age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p \\
      -r \"$(cat ~/.ssh/id_ed25519.pub)\" secrets.yml
  # read, change, re-encrypt to the same recipients
  kiln --age-identity ~/.config/kiln/key.txt vault edit etc/kayobe/secrets.yml
  kiln --age-identity ~/.ssh/id_ed25519 vault view etc/kayobe/secrets.yml
  # ansible-vault content (whole files and inline !vault values) to age
  kiln --vault-password-file ~/vault.pass vault migrate etc/kayobe/*.yml
  # the lab environment's secrets (passphrase-protected identity, see environments/ci-builder/README.md)
  KILN_AGE_PASSPHRASE=kiln-lab-throwaway kiln --age-identity environments/ci-builder/lab-identity.age \\
      vault view environments/ci-builder/secrets.yml.age

Keys: --age-identity FILE / KILN_AGE_IDENTITY (age identity file, passphrase-protected identity
file, or SSH private key); KILN_AGE_PASSPHRASE for passphrase-encrypted files (else a prompt);
--vault-password-file, KAYOBE_VAULT_PASSWORD or ANSIBLE_VAULT_PASSWORD_FILE for ansible-vault.";

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct VaultArgs {
    #[command(subcommand)]
    pub command: VaultCommand,
    /// Ask for the ansible-vault password on the terminal.
    #[arg(long, global = true)]
    pub ask_vault_pass: bool,
}

#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// Create a new encrypted file in your editor.
    #[command(after_help = "Example:\n  kiln vault create -r age1... etc/kayobe/secrets.yml.age")]
    Create(CreateArgs),
    /// Encrypt plaintext files in place (or to --output).
    #[command(after_help = "Example:\n  kiln vault encrypt etc/kayobe/secrets.yml")]
    Encrypt(EncryptArgs),
    /// Decrypt files in place (mode 0600), or to --output (`-` for standard output).
    #[command(
        after_help = "Example:\n  kiln --age-identity key.txt vault decrypt -o - secrets.yml.age"
    )]
    Decrypt(DecryptArgs),
    /// Print decrypted files to standard output.
    View(ViewArgs),
    /// Edit an encrypted file and re-encrypt it to the same recipients.
    #[command(
        after_help = "The plaintext lives only in a 0600 file in a private 0700 directory on tmpfs \
(when available) while the editor ($VISUAL, $EDITOR, vi) runs, and is removed even if the editor fails.\n\n\
Example:\n  EDITOR=nano kiln --age-identity key.txt vault edit secrets.yml.age"
    )]
    Edit(EditArgs),
    /// Re-encrypt files to new recipients (or a new passphrase).
    #[command(
        after_help = "Example:\n  kiln --age-identity old.txt vault rekey -R new-recipients.txt secrets.yml.age"
    )]
    Rekey(RekeyArgs),
    /// Rewrite ansible-vault content (whole files and inline `!vault |` values) as age, keeping
    /// the YAML's structure and comments.
    #[command(
        after_help = "Inline values stay under the `!vault |` tag with armored age text; kiln \
recognises them by their first line.\n\nExample:\n  KAYOBE_VAULT_PASSWORD=... kiln vault migrate etc/kayobe/secrets.yml etc/kayobe/inventory/group_vars/all/vault.yml"
    )]
    Migrate(MigrateArgs),
}

/// Who files are encrypted to.
#[derive(Args, Debug, Clone, Default)]
pub struct RecipientArgs {
    /// Recipient: an age public key (age1...) or an SSH public key (ssh-ed25519/ssh-rsa); repeatable.
    #[arg(short = 'r', long = "recipient")]
    pub recipient: Vec<String>,
    /// A file of recipients, one per line; repeatable. Default: `.age-recipients` at the config path.
    #[arg(short = 'R', long = "recipients-file")]
    pub recipients_file: Vec<PathBuf>,
    /// Encrypt with a passphrase (age scrypt) from KILN_AGE_PASSPHRASE or a prompt.
    #[arg(short = 'p', long)]
    pub passphrase: bool,
    /// scrypt work factor (log2 N) for --passphrase; default targets about a second.
    #[arg(long, requires = "passphrase", value_parser = clap::value_parser!(u8).range(1..=30))]
    pub scrypt_work_factor: Option<u8>,
}

impl RecipientArgs {
    fn choice(&self) -> RecipientChoice {
        RecipientChoice {
            recipients: self.recipient.clone(),
            recipients_files: self.recipients_file.clone(),
            passphrase: self.passphrase,
            work_factor: self.scrypt_work_factor,
        }
    }
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub to: RecipientArgs,
    /// ASCII-armored output.
    #[arg(short = 'a', long)]
    pub armor: bool,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub to: RecipientArgs,
    /// ASCII-armored output.
    #[arg(short = 'a', long)]
    pub armor: bool,
    /// Write here instead of in place (one input file only).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write here instead of in place (one input file only); `-` is standard output.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ViewArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub to: RecipientArgs,
}

#[derive(Args, Debug)]
pub struct RekeyArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub to: RecipientArgs,
    /// ASCII-armored output (default: keep each file's format).
    #[arg(short = 'a', long)]
    pub armor: bool,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub to: RecipientArgs,
}

pub fn run(a: VaultArgs, g: &GlobalOpts) -> anyhow::Result<i32> {
    // the identity `control host bootstrap` makes is read by default, as every other verb does
    let mut identities = g.age_identity.clone();
    if let Some(default) = super::context::default_identity_path().filter(|p| p.is_file()) {
        if !identities.contains(&default) {
            identities.push(default);
        }
    }
    let keys = || {
        Keyring::from_options(&KeyOptions {
            vault_password_file: g.vault_password_file.clone(),
            ask_vault_pass: a.ask_vault_pass,
            age_identities: identities.clone(),
            config_path: g.config_path.clone(),
        })
    };
    let to = |r: &RecipientArgs| -> anyhow::Result<Option<recipients::Resolved>> {
        recipients::resolve(
            &r.choice(),
            g.config_path.as_deref(),
            g.environment.as_deref(),
        )
        .map_err(anyhow::Error::msg)
    };
    let need = |r: Option<recipients::Resolved>| -> anyhow::Result<Recipients> {
        match r {
            Some(r) => {
                tracing::info!(source = %r.source, "recipients");
                Ok(r.recipients)
            }
            None => bail!(recipients::none_message(
                g.config_path.as_deref(),
                g.environment.as_deref()
            )),
        }
    };
    match &a.command {
        VaultCommand::Create(c) => {
            if c.file.exists() {
                bail!(
                    "{}: already exists (use `kiln vault edit`)",
                    c.file.display()
                );
            }
            let to = need(to(&c.to)?)?;
            let plain = zeroize::Zeroizing::new(edit::edit_bytes(b"", &temp_name(&c.file))?);
            let ct = age_files::encrypt(&plain, &to, c.armor)
                .map_err(|e| anyhow::anyhow!("{}: {e}", c.file.display()))?;
            write::write_atomic(&c.file, &ct, Some(0o644))
                .with_context(|| format!("cannot write {}", c.file.display()))?;
            eprintln!("Created {}", c.file.display());
        }
        VaultCommand::Encrypt(e) => {
            one_output(&e.files, &e.output)?;
            let to = need(to(&e.to)?)?;
            let mut out = Vec::new();
            for f in &e.files {
                let plain = zeroize::Zeroizing::new(read(f)?);
                if age_files::is_age(&plain) || ansible_vault::is_ansible_vault(&plain) {
                    bail!("{}: already encrypted (use `kiln vault rekey`, or `kiln vault migrate` for ansible-vault)", f.display());
                }
                let ct = age_files::encrypt(&plain, &to, e.armor)
                    .map_err(|m| anyhow::anyhow!("{}: {m}", f.display()))?;
                out.push((e.output.clone().unwrap_or_else(|| f.clone()), ct));
            }
            for (dest, ct) in out {
                write::write_atomic(&dest, &ct, None)
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                eprintln!("Encrypted {}", dest.display());
            }
        }
        VaultCommand::Decrypt(d) => {
            one_output(&d.files, &d.output)?;
            let keys = keys()?;
            let mut out = Vec::new();
            for f in &d.files {
                out.push((f, zeroize::Zeroizing::new(open(&keys, f)?)));
            }
            for (f, plain) in out {
                match d.output.as_deref() {
                    Some(p) if p == Path::new("-") => std::io::stdout().write_all(&plain)?,
                    dest => {
                        let dest = dest.unwrap_or(f);
                        write::write_atomic(dest, &plain, Some(0o600))
                            .with_context(|| format!("cannot write {}", dest.display()))?;
                        eprintln!("Decrypted {} (mode 0600)", dest.display());
                    }
                }
            }
        }
        VaultCommand::View(v) => {
            let keys = keys()?;
            let mut out = Vec::new();
            for f in &v.files {
                out.push(zeroize::Zeroizing::new(open(&keys, f)?));
            }
            let mut so = std::io::stdout().lock();
            for plain in out {
                so.write_all(&plain)?;
            }
            so.flush()?;
        }
        VaultCommand::Edit(e) => edit_file(e, &keys()?, to(&e.to)?, g)?,
        VaultCommand::Rekey(r) => {
            let keys = keys()?;
            let to = need(to(&r.to)?)?;
            let mut out = Vec::new();
            for f in &r.files {
                let bytes = read(f)?;
                if !age_files::is_age(&bytes) {
                    bail!("{}: not an age file (use `kiln vault migrate` for ansible-vault, `kiln vault encrypt` for plaintext)", f.display());
                }
                let plain =
                    zeroize::Zeroizing::new(keys.decrypt_age(&bytes, &f.display().to_string())?);
                let armor = r.armor || age_files::is_armored(&bytes);
                let ct = age_files::encrypt(&plain, &to, armor)
                    .map_err(|m| anyhow::anyhow!("{}: {m}", f.display()))?;
                out.push((f, ct));
            }
            for (f, ct) in out {
                write::write_atomic(f, &ct, None)
                    .with_context(|| format!("cannot write {}", f.display()))?;
                eprintln!("Rekeyed {}", f.display());
            }
        }
        VaultCommand::Migrate(m) => {
            let keys = keys()?;
            let to = need(to(&m.to)?)?;
            let mut out = Vec::new();
            for f in &m.files {
                let bytes = read(f)?;
                match migrate::migrate(&bytes, &f.display().to_string(), &keys, &to)? {
                    Some((new, summary)) => out.push((f, new, summary)),
                    None => eprintln!("{}: no ansible-vault content, left as is", f.display()),
                }
            }
            for (f, new, s) in out {
                write::write_atomic(f, &new, None)
                    .with_context(|| format!("cannot write {}", f.display()))?;
                if s.whole_file {
                    eprintln!("Migrated {} (whole file, now age armored)", f.display());
                } else {
                    eprintln!(
                        "Migrated {} ({} inline value(s))",
                        f.display(),
                        s.inline_values
                    );
                }
            }
        }
    }
    Ok(super::exit::OK)
}

fn read(f: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))
}

/// Decrypt a whole file, or say clearly that it is not encrypted.
fn open(keys: &Keyring, f: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read(f)?;
    match keys.decrypt_file_bytes(&bytes, &f.display().to_string())? {
        Some(p) => Ok(p),
        None => bail!(
            "{}: not an encrypted file (neither age nor $ANSIBLE_VAULT)",
            f.display()
        ),
    }
}

fn one_output(files: &[PathBuf], output: &Option<PathBuf>) -> anyhow::Result<()> {
    if output.is_some() && files.len() > 1 {
        bail!("--output takes one input file, {} were given", files.len());
    }
    Ok(())
}

/// The editor's file name: the real one without `.age`, so editors highlight YAML.
fn temp_name(f: &Path) -> String {
    let n = f.file_name().and_then(|n| n.to_str()).unwrap_or("secret");
    n.strip_suffix(".age").unwrap_or(n).to_string()
}

fn edit_file(
    e: &EditArgs,
    keys: &Keyring,
    resolved: Option<recipients::Resolved>,
    g: &GlobalOpts,
) -> anyhow::Result<()> {
    let f = &e.file;
    let origin = f.display().to_string();
    if !f.exists() {
        bail!("{origin}: does not exist (use `kiln vault create`)");
    }
    let bytes = read(f)?;
    if ansible_vault::is_ansible_vault(&bytes) {
        bail!(
            "{origin}: an ansible-vault file; run `kiln vault migrate {origin}` first, then edit"
        );
    }
    if !age_files::is_age(&bytes) {
        bail!("{origin}: not an age file (use `kiln vault encrypt`)");
    }
    let Some(old) = age_files::header_stanzas(&bytes) else {
        bail!("{origin}: the age header is invalid: the file is truncated or corrupted");
    };
    let plain = zeroize::Zeroizing::new(keys.decrypt_age(&bytes, &origin)?);
    // who to re-encrypt to: the configured recipients, or the same passphrase
    let to = match resolved {
        Some(r) => r.recipients,
        None if age_files::is_scrypt_header(&old) => Recipients::Passphrase {
            passphrase: keys.passphrase(&origin).map_err(anyhow::Error::msg)?,
            work_factor: None,
        },
        None => bail!(
            "{origin}: age files do not record their recipients, so kiln needs them to re-encrypt: {}",
            recipients::none_message(g.config_path.as_deref(), g.environment.as_deref())
        ),
    };
    // check before the editor runs, so no edit is lost: the new header must have the same stanzas
    let mut want = match &to {
        Recipients::Keys(k) => k.iter().map(|r| r.stanza_id()).collect::<Vec<_>>(),
        Recipients::Passphrase { .. } => vec![age_files::StanzaId {
            kind: "scrypt".into(),
            tag: None,
        }],
    };
    let mut have = old.clone();
    want.sort();
    have.sort();
    if want != have {
        let list = |v: &[age_files::StanzaId]| {
            v.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "{origin}: the recipients given ({}) are not the ones the file is encrypted to ({}); \
             nothing was changed. Use `kiln vault rekey` to change recipients.",
            list(&want),
            list(&have)
        );
    }
    let edited = zeroize::Zeroizing::new(edit::edit_bytes(&plain, &temp_name(f))?);
    if *edited == *plain {
        eprintln!("{origin}: no changes");
        return Ok(());
    }
    let ct = age_files::encrypt(&edited, &to, age_files::is_armored(&bytes))
        .map_err(|m| anyhow::anyhow!("{origin}: {m}"))?;
    write::write_atomic(f, &ct, None).with_context(|| format!("cannot write {origin}"))?;
    eprintln!("Saved {origin}");
    Ok(())
}
