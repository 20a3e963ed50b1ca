//! `kiln vault migrate`: rewrite ansible-vault content as age, keeping everything else byte for
//! byte — comments, key order, quoting, blank lines.
//!
//! That rules out load-and-dump (no YAML library round-trips comments), so this works on the text:
//! * a whole `$ANSIBLE_VAULT` file is decrypted and its plaintext (which is kept exactly, comments
//!   and all) is encrypted as one armored age file;
//! * in a plain YAML file, each `!vault |` block scalar is found by its indentation (the block is
//!   every following line that is blank or indented deeper than the tag's line, as YAML defines a
//!   block scalar), decrypted, and replaced by an armored age file under the same `!vault |` tag,
//!   at the same indentation (see the module docs of [`crate::vault`] for how kiln reads these).
//!
//! The result is checked before it is returned: it must load as YAML with the same keys, lists
//! and vaulted places as the original, else nothing is written.

use super::age_files::{self, Recipients};
use super::ansible_vault;
use super::{Keyring, VaultError};
use crate::value::Value;
use regex::Regex;
use std::sync::OnceLock;

/// What one migration changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub whole_file: bool,
    pub inline_values: usize,
}

/// The migrated bytes, or `None` if there is nothing ansible-vault in the file.
pub fn migrate(
    bytes: &[u8],
    origin: &str,
    keys: &Keyring,
    to: &Recipients,
) -> Result<Option<(Vec<u8>, Summary)>, VaultError> {
    let fail = |msg: String| VaultError::Decrypt {
        origin: origin.to_string(),
        msg,
    };
    if ansible_vault::is_ansible_vault(bytes) {
        let plain = zeroize::Zeroizing::new(keys.decrypt_ansible(bytes, origin)?);
        let out = age_files::encrypt(&plain, to, true).map_err(fail)?;
        return Ok(Some((
            out,
            Summary {
                whole_file: true,
                inline_values: 0,
            },
        )));
    }
    if age_files::is_age(bytes) {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    let (out, n) = migrate_inline(text, origin, keys, to)?;
    if n == 0 {
        return Ok(None);
    }
    // the rewrite must not change the document's shape
    let before =
        crate::yaml::load(text, origin).map_err(|e| fail(format!("cannot load as YAML: {e}")))?;
    let after = crate::yaml::load(&out, origin).map_err(|e| {
        fail(format!(
            "the rewritten text does not load as YAML ({e}); nothing was written"
        ))
    })?;
    if shape(&before) != shape(&after) {
        return Err(fail("the rewritten text does not have the original's structure; nothing was written (please report this file's layout)".into()));
    }
    Ok(Some((
        out.into_bytes(),
        Summary {
            whole_file: false,
            inline_values: n,
        },
    )))
}

/// The value with every scalar and vault value replaced by a marker of its kind.
fn shape(v: &Value) -> Value {
    match v {
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::List(l) => Value::List(l.iter().map(shape).collect()),
        Value::Vault(_) => Value::str("<vault>"),
        other => other.clone(),
    }
}

fn vault_line() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // `key: !vault |`, `- !vault |`, `key: !vault |-` ... with an optional trailing comment
    RE.get_or_init(|| {
        Regex::new(r"^(?P<head>(?:.*[\s:-])?)!vault[ \t]+\|[-+0-9]*[ \t]*(?:#.*)?$")
            .expect("static regex")
    })
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Rewrite each `!vault |` block that holds ansible-vault text; the new text and how many.
pub fn migrate_inline(
    text: &str,
    origin: &str,
    keys: &Keyring,
    to: &Recipients,
) -> Result<(String, usize), VaultError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut count = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let bare = line.trim_end_matches(['\n', '\r']);
        let Some(caps) = vault_line().captures(bare) else {
            out.push_str(line);
            i += 1;
            continue;
        };
        let parent = indent_of(bare);
        // the block: following lines that are blank or deeper than the parent line
        let mut j = i + 1;
        let mut last_content = i;
        while j < lines.len() {
            let l = lines[j].trim_end_matches(['\n', '\r']);
            if l.trim().is_empty() {
                j += 1;
                continue;
            }
            if indent_of(l) <= parent {
                break;
            }
            last_content = j;
            j += 1;
        }
        if last_content == i {
            // an empty block: leave it for the YAML loader to complain about
            out.push_str(line);
            i += 1;
            continue;
        }
        let block = &lines[i + 1..=last_content];
        let indent = block
            .iter()
            .map(|l| l.trim_end_matches(['\n', '\r']))
            .filter(|l| !l.trim().is_empty())
            .map(indent_of)
            .min()
            .unwrap_or(parent + 2);
        let content: String = block
            .iter()
            .map(|l| l.get(indent..).unwrap_or("").trim_end_matches(['\n', '\r']))
            .collect::<Vec<_>>()
            .join("\n");
        if !ansible_vault::is_ansible_vault(content.as_bytes()) {
            // already age (or something else): keep as is
            for l in &lines[i..=last_content] {
                out.push_str(l);
            }
            i = last_content + 1;
            continue;
        }
        let here = format!("{origin}:{}", i + 1);
        let plain = zeroize::Zeroizing::new(keys.decrypt_ansible(content.as_bytes(), &here)?);
        let armored = age_files::encrypt(&plain, to, true).map_err(|msg| VaultError::Decrypt {
            origin: here.clone(),
            msg,
        })?;
        let armored = String::from_utf8(armored).map_err(|_| VaultError::Decrypt {
            origin: here,
            msg: "age armor is not text".into(),
        })?;
        let eol = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        out.push_str(&caps["head"]);
        out.push_str("!vault |");
        out.push_str(eol);
        for a in armored.lines() {
            out.push_str(&" ".repeat(indent));
            out.push_str(a);
            out.push_str(eol);
        }
        count += 1;
        i = last_content + 1;
    }
    Ok((out, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::age_files::Recipient;

    // ansible-vault encrypt_string --vault-password-file pw 'hunter2' (pw: test-password)
    const V: &str = "$ANSIBLE_VAULT;1.1;AES256
32303430386235653464383433303933623337623665306430343439343163333433653235363365
6237343762313062643630383337613766343563366230610a303636653865373437353832343063
62323566343539333930323061323361383632663136613935383263386561393430636434366262
3164363663323435660a326630373064636664616637383661343261393231336536643239363839
6236";

    #[test]
    fn inline_values_become_age_and_the_rest_is_untouched() {
        let block: String = V.lines().map(|l| format!("          {l}\n")).collect();
        let text = format!("---\n# a comment\nplain: 1\nsecret: !vault |\n{block}\nlist:\n  - !vault |\n{block}  - two  # trailing\n");
        let mut keys = Keyring::empty();
        keys.add_vault_password(None, b"test-password");
        let id = age::x25519::Identity::generate();
        let to = Recipients::Keys(vec![Recipient::X25519(id.to_public())]);
        let (out, n) = migrate_inline(&text, "f.yml", &keys, &to).unwrap();
        assert_eq!(n, 2);
        assert!(out.starts_with("---\n# a comment\nplain: 1\nsecret: !vault |\n          -----BEGIN AGE ENCRYPTED FILE-----\n"), "{out}");
        assert!(out.contains("\n\nlist:\n  - !vault |\n          -----BEGIN AGE"));
        assert!(out.ends_with("-----END AGE ENCRYPTED FILE-----\n  - two  # trailing\n"));
        assert!(!out.contains("ANSIBLE_VAULT"));
        let v = crate::yaml::load(&out, "f.yml").unwrap();
        let mut ring = Keyring::empty();
        let dir = tempfile::tempdir().unwrap();
        let idp = dir.path().join("id");
        std::fs::write(
            &idp,
            age::secrecy::ExposeSecret::expose_secret(&id.to_string()),
        )
        .unwrap();
        ring.add_identity_file(&idp).unwrap();
        let r = ring.reveal(&v).unwrap().expose_secrets();
        assert_eq!(r.get("secret"), Some(&Value::str("hunter2")));
        assert_eq!(
            r.get("list")
                .and_then(|l| l.as_list())
                .map(|l| l[0].clone()),
            Some(Value::str("hunter2"))
        );
        let (again, n2) = migrate_inline(&out, "f.yml", &keys, &to).unwrap();
        assert_eq!((again, n2), (out, 0));
    }
}
