//! age files: kiln's own vault format. Encrypting to recipients (age X25519 keys, SSH ed25519/RSA
//! public keys) or a passphrase (age's scrypt mode), decrypting with identities, armored or binary.
//!
//! Everything here works on byte buffers in memory: vars files are small, and keeping the
//! plaintext out of the filesystem is the point. The format itself is the `age` crate's (the same
//! one `rage` is built on), so files interoperate with the `age` and `rage` command-line tools.
//! What this file adds is kiln's error wording (every failure names the file and says what to
//! do) and a look at the header's recipient stanzas, which `edit` uses to check that it re-encrypts
//! to the same recipients (age files do not name their recipients; SSH stanzas carry a key tag,
//! X25519 stanzas carry nothing but their count).

use age::secrecy::SecretString;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// The first line of a binary age file.
pub const BINARY_MAGIC: &[u8] = b"age-encryption.org/";
/// The first line of an armored age file.
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// True if `bytes` is an age file, binary or armored (leading whitespace allowed before armor,
/// as age itself allows).
pub fn is_age(bytes: &[u8]) -> bool {
    bytes.starts_with(BINARY_MAGIC) || is_armored(bytes)
}

/// True if `bytes` is an ASCII-armored age file.
pub fn is_armored(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(ARMOR_BEGIN.as_bytes())
}

/// Where an age file is going: public recipients or one passphrase (age forbids mixing them).
pub enum Recipients {
    Keys(Vec<Recipient>),
    Passphrase {
        passphrase: SecretString,
        work_factor: Option<u8>,
    },
}

/// One public recipient, with the text it was written as (for messages and recipients files).
#[derive(Clone)]
pub enum Recipient {
    X25519(age::x25519::Recipient),
    Ssh(age::ssh::Recipient),
}

impl Recipient {
    /// Parse one recipient line: `age1...`, `ssh-ed25519 AAAA... [comment]`, `ssh-rsa AAAA...`.
    pub fn parse(text: &str) -> Result<Recipient, String> {
        let t = text.trim();
        if t.starts_with("age1") {
            return t
                .parse::<age::x25519::Recipient>()
                .map(Recipient::X25519)
                .map_err(|e| format!("not a valid age recipient ({e})"));
        }
        if t.starts_with("ssh-") {
            return t
                .parse::<age::ssh::Recipient>()
                .map(Recipient::Ssh)
                .map_err(|e| match e {
                    age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                        "ssh-rsa key is smaller than 2048 bits".to_string()
                    }
                    age::ssh::ParseRecipientKeyError::RsaModulusTooLarge => {
                        "ssh-rsa key is larger than age supports".to_string()
                    }
                    age::ssh::ParseRecipientKeyError::Unsupported(k) => {
                        format!("SSH key type {k} is not supported (use ssh-ed25519 or ssh-rsa)")
                    }
                    _ => "not a valid SSH public key".to_string(),
                });
        }
        Err("not a recipient: expected an age public key (age1...) or an SSH public key (ssh-ed25519 / ssh-rsa)".into())
    }

    fn as_dyn(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Ssh(r) => r,
        }
    }

    /// The header stanza this recipient produces: its type and, for SSH keys, the key tag.
    pub fn stanza_id(&self) -> StanzaId {
        match self {
            Recipient::X25519(_) => StanzaId {
                kind: "X25519".into(),
                tag: None,
            },
            Recipient::Ssh(r) => {
                let text = r.to_string();
                let mut parts = text.split_whitespace();
                let kind = parts.next().unwrap_or_default().to_string();
                let tag = parts
                    .next()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .map(|wire| ssh_tag(&wire));
                StanzaId { kind, tag }
            }
        }
    }
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::X25519(r) => write!(f, "{r}"),
            Recipient::Ssh(r) => write!(f, "{r}"),
        }
    }
}

/// age's SSH key tag: the first 4 bytes of SHA-256 of the wire-format public key, base64.
fn ssh_tag(wire: &[u8]) -> String {
    let digest = Sha256::digest(wire);
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..4])
}

/// Parse a recipients file: one recipient per line, `#` comments and blank lines ignored.
pub fn parse_recipients_file(text: &str, origin: &str) -> Result<Vec<Recipient>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        out.push(Recipient::parse(t).map_err(|e| format!("{origin}:{}: {e}", i + 1))?);
    }
    if out.is_empty() {
        return Err(format!("{origin}: no recipients in this file"));
    }
    Ok(out)
}

/// A recipient stanza of an age header, as far as it identifies its recipient.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StanzaId {
    /// `X25519`, `ssh-ed25519`, `ssh-rsa`, `scrypt`, or a plugin's stanza type.
    pub kind: String,
    /// The SSH key tag, when the stanza has one.
    pub tag: Option<String>,
}

impl std::fmt::Display for StanzaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tag {
            Some(t) => write!(f, "{} (key tag {t})", self.kind),
            None => f.write_str(&self.kind),
        }
    }
}

/// The recipient stanzas of an age file's header (binary or armored), or `None` if the header
/// cannot be read. Reads only the header, which is text ending at the `---` MAC line.
pub fn header_stanzas(bytes: &[u8]) -> Option<Vec<StanzaId>> {
    let binary = dearmor(bytes).ok()?;
    let mut out = Vec::new();
    let mut lines = binary.split(|b| *b == b'\n');
    let first = lines.next()?;
    if !first.starts_with(b"age-encryption.org/v1") {
        return None;
    }
    for line in lines {
        if line.starts_with(b"---") {
            return Some(out);
        }
        if let Some(rest) = line.strip_prefix(b"-> ") {
            let text = std::str::from_utf8(rest).ok()?;
            let mut args = text.split(' ');
            let kind = args.next()?.to_string();
            if kind.ends_with("-grease") {
                // random stanzas age adds to keep parsers honest; they name no recipient
                continue;
            }
            let tag = match kind.as_str() {
                "ssh-ed25519" | "ssh-rsa" => args.next().map(str::to_string),
                _ => None,
            };
            out.push(StanzaId { kind, tag });
        }
    }
    None
}

/// The binary form of an age file (armor removed if present).
pub fn dearmor(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    if !is_armored(bytes) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    age::armor::ArmoredReader::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

/// Encrypt `plain`, armored or binary.
pub fn encrypt(plain: &[u8], recipients: &Recipients, armor: bool) -> Result<Vec<u8>, String> {
    let encryptor = match recipients {
        Recipients::Keys(keys) => {
            age::Encryptor::with_recipients(keys.iter().map(Recipient::as_dyn))
                .map_err(|e| e.to_string())?
        }
        Recipients::Passphrase {
            passphrase,
            work_factor,
        } => {
            let mut r = age::scrypt::Recipient::new(passphrase.clone());
            if let Some(n) = work_factor {
                if !(1..64).contains(n) {
                    return Err(format!("scrypt work factor {n} is out of range (1..63)"));
                }
                r.set_work_factor(*n);
            }
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .map_err(|e| e.to_string())?
        }
    };
    let format = if armor {
        age::armor::Format::AsciiArmor
    } else {
        age::armor::Format::Binary
    };
    let io = |e: std::io::Error| e.to_string();
    let mut out = Vec::new();
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, format).map_err(io)?;
    let mut w = encryptor.wrap_output(armored).map_err(io)?;
    w.write_all(plain).map_err(io)?;
    w.finish().and_then(|a| a.finish()).map_err(io)?;
    Ok(out)
}

/// Why an age file could not be opened, in words that say what to do.
pub fn describe_decrypt_error(e: &age::DecryptError, scrypt: bool) -> String {
    use age::DecryptError as E;
    match e {
        E::NoMatchingKeys if scrypt => "the file is passphrase-encrypted and no passphrase was given (set KILN_AGE_PASSPHRASE or run on a terminal)".into(),
        E::NoMatchingKeys => "no identity given opens this file: it is encrypted to other recipients (give the matching key with --age-identity or KILN_AGE_IDENTITY)".into(),
        E::DecryptionFailed if scrypt => "wrong passphrase, or the file is corrupted".into(),
        E::DecryptionFailed => "the file is truncated or corrupted (authentication failed)".into(),
        E::InvalidHeader => "the age header is invalid: the file is truncated or corrupted".into(),
        E::InvalidMac => "the age header MAC does not match: the file was modified or is corrupted".into(),
        E::KeyDecryptionFailed => "the SSH identity's passphrase is wrong".into(),
        E::ExcessiveWork { required, target } => format!(
            "the file's scrypt work factor ({required}) is far above this machine's ({target}); re-encrypt it with a lower work factor"
        ),
        E::UnknownFormat => "unknown age format version (made by a newer age?)".into(),
        E::Io(io) => format!("cannot read the age data: {io} (truncated or corrupted file?)"),
        #[allow(unreachable_patterns)]
        other => other.to_string(),
    }
}

/// Decrypt an age file (binary or armored) with the given identities. `passphrase` is asked for
/// only when the file is passphrase-encrypted.
pub fn decrypt(
    bytes: &[u8],
    identities: &[Box<dyn age::Identity>],
    passphrase: &dyn Fn() -> Result<SecretString, String>,
) -> Result<Vec<u8>, String> {
    let reader = age::armor::ArmoredReader::new(bytes);
    let decryptor = age::Decryptor::new(reader).map_err(|e| describe_decrypt_error(&e, false))?;
    let scrypt = decryptor.is_scrypt();
    let mut plain = Vec::new();
    if scrypt {
        let mut id = age::scrypt::Identity::new(passphrase()?);
        // kiln's lab files use a low work factor; the cap stops a hostile file from making
        // kiln spin (age's default cap is its target + 4).
        id.set_max_work_factor(22);
        let mut r = decryptor
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .map_err(|e| describe_decrypt_error(&e, true))?;
        r.read_to_end(&mut plain)
            .map_err(|e| describe_decrypt_error(&age::DecryptError::Io(e), true))?;
    } else {
        let mut r = decryptor
            .decrypt(identities.iter().map(|b| b.as_ref()))
            .map_err(|e| describe_decrypt_error(&e, false))?;
        r.read_to_end(&mut plain).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                "the file is truncated or corrupted (payload authentication failed)".to_string()
            }
            _ => describe_decrypt_error(&age::DecryptError::Io(e), false),
        })?;
    }
    Ok(plain)
}

/// Is this stanza list passphrase (scrypt) encryption?
pub fn is_scrypt_header(stanzas: &[StanzaId]) -> bool {
    stanzas.iter().any(|s| s.kind == "scrypt")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_pass() -> Result<SecretString, String> {
        Err("no passphrase".into())
    }

    #[test]
    fn round_trip_x25519_armored_and_binary() {
        let id = age::x25519::Identity::generate();
        let r = Recipients::Keys(vec![Recipient::X25519(id.to_public())]);
        for armor in [true, false] {
            let ct = encrypt(b"pw: hunter2\n", &r, armor).unwrap();
            assert!(is_age(&ct));
            assert_eq!(is_armored(&ct), armor);
            let ids: Vec<Box<dyn age::Identity>> = vec![Box::new(id.clone())];
            assert_eq!(decrypt(&ct, &ids, &no_pass).unwrap(), b"pw: hunter2\n");
            assert_eq!(
                header_stanzas(&ct).unwrap(),
                vec![StanzaId {
                    kind: "X25519".into(),
                    tag: None
                }]
            );
        }
    }

    #[test]
    fn other_recipient_and_corruption_are_clear() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let r = Recipients::Keys(vec![Recipient::X25519(other.to_public())]);
        let ct = encrypt(b"secret", &r, false).unwrap();
        let ids: Vec<Box<dyn age::Identity>> = vec![Box::new(id)];
        let e = decrypt(&ct, &ids, &no_pass).unwrap_err();
        assert!(e.contains("other recipients"), "{e}");
        let ids: Vec<Box<dyn age::Identity>> = vec![Box::new(other)];
        let mut bad = ct.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(decrypt(&bad, &ids, &no_pass)
            .unwrap_err()
            .contains("corrupted"));
        assert!(decrypt(&ct[..ct.len() - 10], &ids, &no_pass)
            .unwrap_err()
            .contains("corrupted"));
    }

    #[test]
    fn passphrase_round_trip() {
        let r = Recipients::Passphrase {
            passphrase: SecretString::from("lab".to_string()),
            work_factor: Some(2),
        };
        let ct = encrypt(b"x", &r, true).unwrap();
        assert!(is_scrypt_header(&header_stanzas(&ct).unwrap()));
        let ok = || Ok(SecretString::from("lab".to_string()));
        assert_eq!(decrypt(&ct, &[], &ok).unwrap(), b"x");
        let wrong = || Ok(SecretString::from("nope".to_string()));
        assert!(decrypt(&ct, &[], &wrong)
            .unwrap_err()
            .contains("wrong passphrase"));
    }

    #[test]
    fn recipient_parsing_names_the_line() {
        let e = parse_recipients_file("# c\n\nnot-a-key\n", "f").unwrap_err();
        assert!(e.starts_with("f:3:"), "{e}");
    }
}
