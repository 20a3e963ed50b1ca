//! Reading ansible-vault data: `$ANSIBLE_VAULT;1.1;AES256` and `1.2` (with a vault id) envelopes,
//! whole files and inline `!vault |` values alike (they are the same envelope).
//!
//! The format, as ansible-core writes it: the envelope is a header line and the hex of
//! `hex(salt) \n hex(hmac) \n hex(ciphertext)`. PBKDF2-HMAC-SHA256 with 10000 rounds turns the
//! password and salt into 80 bytes: an AES-256 key, an HMAC-SHA256 key and a 16-byte initial
//! counter. The plaintext is PKCS#7 padded and encrypted with AES-256-CTR; the HMAC covers the
//! ciphertext and is checked (in constant time) before anything is decrypted.
//!
//! kiln only reads this format (and `kiln vault migrate` rewrites it as age); it never writes it.
//! The crypto is RustCrypto's; only the envelope parsing is here.

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

pub const HEADER: &str = "$ANSIBLE_VAULT;";

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// True if the text starts with an ansible-vault header.
pub fn is_ansible_vault(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(HEADER.as_bytes())
}

/// A parsed envelope.
pub struct Envelope {
    pub version: String,
    pub cipher: String,
    /// The vault id of a 1.2 envelope.
    pub vault_id: Option<String>,
    salt: Vec<u8>,
    mac: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// Why ansible-vault data could not be opened. Never contains plaintext.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not a well-formed envelope (truncated, corrupted, not hex ...).
    Format(String),
    /// No password given matches (HMAC check failed for each).
    WrongPassword { tried: usize },
    /// No passwords at all.
    NoPassword,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Format(m) => write!(f, "not valid ansible-vault data: {m} (truncated or corrupted?)"),
            Failure::WrongPassword { tried: 1 } => f.write_str(
                "the vault password does not open it (wrong password, or the data was modified)",
            ),
            Failure::WrongPassword { tried } => write!(
                f,
                "none of the {tried} vault passwords given opens it (wrong password, or the data was modified)"
            ),
            Failure::NoPassword => f.write_str(
                "it is ansible-vault encrypted and no vault password was given (use --vault-password-file, \
                 KAYOBE_VAULT_PASSWORD or ANSIBLE_VAULT_PASSWORD_FILE)",
            ),
        }
    }
}

fn unhex(what: &str, text: &[u8]) -> Result<Vec<u8>, Failure> {
    hex::decode(text).map_err(|e| Failure::Format(format!("{what}: {e}")))
}

/// Parse an envelope (whole file, or an inline value with its indentation already removed).
pub fn parse(text: &[u8]) -> Result<Envelope, Failure> {
    let text = std::str::from_utf8(text).map_err(|_| Failure::Format("not UTF-8 text".into()))?;
    let mut lines = text.trim().lines();
    let header = lines.next().unwrap_or_default().trim();
    let fields: Vec<&str> = header.split(';').map(str::trim).collect();
    if fields.len() < 3 || fields[0] != "$ANSIBLE_VAULT" {
        return Err(Failure::Format(format!("bad header line {header:?}")));
    }
    let (version, cipher) = (fields[1].to_string(), fields[2].to_string());
    if version != "1.1" && version != "1.2" {
        return Err(Failure::Format(format!(
            "vault format version {version} is not supported (1.1 and 1.2 are)"
        )));
    }
    if cipher != "AES256" {
        return Err(Failure::Format(format!(
            "cipher {cipher} is not supported (AES256 is)"
        )));
    }
    let vault_id = fields
        .get(3)
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty());
    let body: String = lines.map(str::trim).collect();
    if body.is_empty() {
        return Err(Failure::Format("no ciphertext after the header".into()));
    }
    let inner = unhex("outer hex", body.as_bytes())?;
    let mut parts = inner.splitn(3, |b| *b == b'\n');
    let (Some(salt), Some(mac), Some(ct)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::Format("expected salt, HMAC and ciphertext".into()));
    };
    let salt = unhex("salt", salt)?;
    let mac = unhex("HMAC", mac)?;
    let ciphertext = unhex("ciphertext", ct.trim_ascii_end())?;
    if mac.len() != 32 {
        return Err(Failure::Format(format!(
            "HMAC is {} bytes, expected 32",
            mac.len()
        )));
    }
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(Failure::Format(
            "ciphertext length is not a whole number of AES blocks".into(),
        ));
    }
    Ok(Envelope {
        version,
        cipher,
        vault_id,
        salt,
        mac,
        ciphertext,
    })
}

impl Envelope {
    /// Try one password. `None` when the HMAC does not match (wrong password or tampered data).
    pub fn open_with(&self, password: &[u8]) -> Option<Result<Vec<u8>, Failure>> {
        let mut derived = Zeroizing::new([0u8; 80]);
        pbkdf2::pbkdf2_hmac::<Sha256>(password, &self.salt, 10_000, derived.as_mut());
        let (aes_key, rest) = derived.split_at(32);
        let (mac_key, iv) = rest.split_at(32);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(mac_key).ok()?;
        mac.update(&self.ciphertext);
        // constant-time comparison
        mac.verify_slice(&self.mac).ok()?;
        let mut buf = self.ciphertext.clone();
        let mut cipher = Aes256Ctr::new(aes_key.into(), iv.into());
        cipher.apply_keystream(&mut buf);
        Some(unpad(buf))
    }

    /// Open with the first password that fits. Passwords labelled with this envelope's vault id
    /// are tried first, then the rest, as Ansible does.
    pub fn open(&self, passwords: &[(Option<String>, &[u8])]) -> Result<Vec<u8>, Failure> {
        if passwords.is_empty() {
            return Err(Failure::NoPassword);
        }
        let matching = passwords
            .iter()
            .filter(|(id, _)| id.is_some() && *id == self.vault_id);
        let rest = passwords
            .iter()
            .filter(|(id, _)| !(id.is_some() && *id == self.vault_id));
        for (_, pw) in matching.chain(rest) {
            if let Some(r) = self.open_with(pw) {
                return r;
            }
        }
        Err(Failure::WrongPassword {
            tried: passwords.len(),
        })
    }
}

fn unpad(mut buf: Vec<u8>) -> Result<Vec<u8>, Failure> {
    let n = *buf.last().unwrap_or(&0) as usize;
    if n == 0 || n > 16 || n > buf.len() || !buf[buf.len() - n..].iter().all(|b| *b as usize == n) {
        zeroize::Zeroize::zeroize(&mut buf);
        return Err(Failure::Format("bad padding after decryption".into()));
    }
    buf.truncate(buf.len() - n);
    Ok(buf)
}

/// Decrypt an envelope with the passwords given.
pub fn decrypt(text: &[u8], passwords: &[(Option<String>, &[u8])]) -> Result<Vec<u8>, Failure> {
    parse(text)?.open(passwords)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with ansible-core 2.17: `ansible-vault encrypt_string --vault-password-file pw 'hunter2'`
    // where `pw` holds `test-password`.
    const ENCRYPTED: &str = "$ANSIBLE_VAULT;1.1;AES256
32303430386235653464383433303933623337623665306430343439343163333433653235363365
6237343762313062643630383337613766343563366230610a303636653865373437353832343063
62323566343539333930323061323361383632663136613935383263386561393430636434366262
3164363663323435660a326630373064636664616637383661343261393231336536643239363839
6236
";

    #[test]
    fn opens_real_ansible_vault_text() {
        let pw: &[u8] = b"test-password";
        assert_eq!(
            decrypt(ENCRYPTED.as_bytes(), &[(None, pw)]).unwrap(),
            b"hunter2"
        );
        let wrong: &[u8] = b"nope";
        assert_eq!(
            decrypt(ENCRYPTED.as_bytes(), &[(None, wrong)]).unwrap_err(),
            Failure::WrongPassword { tried: 1 }
        );
        assert_eq!(
            decrypt(ENCRYPTED.as_bytes(), &[(None, wrong), (None, pw)]).unwrap(),
            b"hunter2"
        );
        assert!(matches!(
            decrypt(&ENCRYPTED.as_bytes()[..200], &[(None, pw)]),
            Err(Failure::Format(_))
        ));
        assert_eq!(
            decrypt(ENCRYPTED.as_bytes(), &[]).unwrap_err(),
            Failure::NoPassword
        );
    }
}
