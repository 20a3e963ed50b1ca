//! Searching for credentials where they must not be: the forms a secret travels in, one matcher
//! for them, and the search of an image layer (a tar, gzip-compressed or not) as a registry
//! serves it.
//!
//! Shared by `kiln.builtin.credential_scan` (directory trees and locally saved images, searched on
//! the host by grep with these needles) and `kiln.builtin.image_push` (the pushed layers, read
//! back from the registry by kiln's registry client and searched here, in memory). A finding names
//! the secret's *name*, its form and where it was found, never its value.

use aho_corasick::AhoCorasick;
use base64::Engine as _;
use std::io::Read;

/// One searched string: the needle, and what it is (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Needle {
    pub text: String,
    pub name: String,
    pub form: &'static str,
}

/// Every form a value is searched in. Needles shorter than 4 bytes are left out (they would match
/// everywhere).
pub fn forms(name: &str, value: &str) -> Vec<Needle> {
    let mut out: Vec<Needle> = Vec::new();
    let mut add = |text: String, form: &'static str| {
        if text.len() >= 4 && !out.iter().any(|n| n.text == text) {
            out.push(Needle {
                text,
                name: name.to_string(),
                form,
            });
        }
    };
    add(value.to_string(), "plain");
    let b64 = base64::engine::general_purpose::STANDARD;
    add(b64.encode(value), "base64");
    // inside a longer encoded string the value starts at byte offset 0, 1 or 2 of a 3-byte
    // group: the characters of whole groups made only of its bytes are the same wherever it sits
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(value.as_bytes());
        let enc = b64.encode(&buf);
        let first_group = k.div_ceil(3); // groups holding filler bytes are skipped
        let whole_groups = buf.len() / 3;
        if whole_groups > first_group {
            let core = &enc[first_group * 4..whole_groups * 4];
            if core.len() >= 8 {
                add(core.to_string(), "base64");
            }
        }
    }
    let form: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    add(form.replace('+', "%20"), "URL-encoded");
    add(form, "URL-encoded");
    out
}

/// The needles of named values (secrets and other strings alike), each in all its forms.
pub fn needles<'a>(named: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Needle> {
    let mut out: Vec<Needle> = Vec::new();
    for (name, value) in named {
        for n in forms(name, value) {
            if !out.iter().any(|o| o.text == n.text) {
                out.push(n);
            }
        }
    }
    out
}

/// All needles at once (Aho-Corasick), over byte buffers of any size.
pub struct Matcher {
    needles: Vec<Needle>,
    ac: Option<AhoCorasick>,
}

impl Matcher {
    pub fn new(needles: Vec<Needle>) -> Matcher {
        let ac = if needles.is_empty() {
            None
        } else {
            AhoCorasick::new(needles.iter().map(|n| n.text.as_bytes())).ok()
        };
        Matcher { needles, ac }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    pub fn needles(&self) -> &[Needle] {
        &self.needles
    }

    /// Each needle found in `hay`, with its first offset (overlapping matches count: a needle
    /// inside another is still reported).
    pub fn find(&self, hay: &[u8]) -> Vec<(u64, &Needle)> {
        let Some(ac) = &self.ac else {
            return Vec::new();
        };
        let mut seen = vec![false; self.needles.len()];
        let mut out = Vec::new();
        for m in ac.find_overlapping_iter(hay) {
            let i = m.pattern().as_usize();
            if !seen[i] {
                seen[i] = true;
                out.push((m.start() as u64, &self.needles[i]));
            }
        }
        out
    }
}

/// Where a needle was found in a layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The path inside the layer (or `(layer)` when the layer is not a tar).
    pub file: String,
    pub offset: u64,
    pub name: String,
    pub form: &'static str,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) in {} at byte {}",
            self.name, self.form, self.file, self.offset
        )
    }
}

/// Search an image layer as a registry serves it: a tar, gzip-compressed (`1f 8b`) or plain.
/// Each file's content, its path and a link's target are searched; a layer that is neither a
/// readable tar nor gzip (zstd, say) is an error, so it is never passed as clean unread.
pub fn scan_layer(blob: &[u8], m: &Matcher) -> Result<Vec<Finding>, String> {
    if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err("zstd-compressed layer: kiln reads gzip and uncompressed layers only (push with gzip compression)".into());
    }
    let mut tar_bytes = Vec::new();
    let data: &[u8] = if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(blob)
            .read_to_end(&mut tar_bytes)
            .map_err(|e| format!("gzip layer does not decompress: {e}"))?;
        &tar_bytes
    } else {
        blob
    };
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(data);
    let entries = ar
        .entries()
        .map_err(|e| format!("layer is not a tar: {e}"))?;
    for e in entries {
        let mut e = e.map_err(|e| format!("layer is not a tar: {e}"))?;
        let path = e
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| String::from_utf8_lossy(&e.path_bytes()).into_owned());
        let file = format!("/{}", path.trim_start_matches("./").trim_start_matches('/'));
        let mut meta = e.path_bytes().into_owned();
        if let Some(l) = e.link_name_bytes() {
            meta.push(b'\n');
            meta.extend_from_slice(&l);
        }
        for (_, n) in m.find(&meta) {
            out.push(Finding {
                file: format!("{file} (its name or link)"),
                offset: 0,
                name: n.name.clone(),
                form: n.form,
            });
        }
        let mut content = Vec::new();
        e.read_to_end(&mut content)
            .map_err(|err| format!("{file}: cannot read from the layer: {err}"))?;
        for (off, n) in m.find(&content) {
            out.push(Finding {
                file: file.clone(),
                offset: off,
                name: n.name.clone(),
                form: n.form,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, c) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(c.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, *c).unwrap();
        }
        let t = b.into_inner().unwrap();
        if !gzip {
            return t;
        }
        use std::io::Write;
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(&t).unwrap();
        g.finish().unwrap()
    }

    #[test]
    fn base64_core_is_found_inside_a_longer_encoding() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let n = forms("pw", "correct-horse-battery");
        for prefix in ["", "u:", "us:", "user:"] {
            let enc = b64.encode(format!("{prefix}correct-horse-battery"));
            assert!(
                n.iter()
                    .any(|x| x.form == "base64" && enc.contains(&x.text)),
                "{prefix:?}: {enc} vs {n:?}"
            );
        }
        assert!(n.iter().any(|x| x.form == "plain"));
    }

    #[test]
    fn url_forms() {
        let n = forms("pw", "a b&c/d");
        let t: Vec<&str> = n.iter().map(|x| x.text.as_str()).collect();
        assert!(t.contains(&"a+b%26c%2Fd"), "{t:?}");
        assert!(t.contains(&"a%20b%26c%2Fd"), "{t:?}");
    }

    #[test]
    fn a_layer_with_a_planted_secret_is_caught_in_every_form() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let m = Matcher::new(needles([
            ("pulp password", "s3cret pass/word"),
            ("pulp url", "http://10.1.2.3:18610"),
        ]));
        let auth = format!(
            "Authorization: Basic {}",
            b64.encode("user:s3cret pass/word")
        );
        for gzip in [true, false] {
            let blob = layer(
                &[
                    ("etc/clean", b"nothing here"),
                    ("etc/plain", b"x=s3cret pass/word\n"),
                    ("etc/auth", auth.as_bytes()),
                    (
                        "etc/url",
                        b"p=s3cret%20pass%2Fword&u=http://10.1.2.3:18610/x",
                    ),
                ],
                gzip,
            );
            let f = scan_layer(&blob, &m).unwrap();
            let got: Vec<String> = f.iter().map(|x| x.to_string()).collect();
            assert!(
                got.iter()
                    .any(|g| g.starts_with("pulp password (plain) in /etc/plain at byte 2")),
                "{got:?}"
            );
            assert!(
                got.iter()
                    .any(|g| g.starts_with("pulp password (base64) in /etc/auth")),
                "{got:?}"
            );
            assert!(
                got.iter()
                    .any(|g| g.starts_with("pulp password (URL-encoded) in /etc/url")),
                "{got:?}"
            );
            assert!(
                got.iter()
                    .any(|g| g.starts_with("pulp url (plain) in /etc/url")),
                "{got:?}"
            );
            assert!(!got.iter().any(|g| g.contains("/etc/clean")), "{got:?}");
            assert!(
                !got.iter().any(|g| g.contains("s3cret")),
                "no value in a finding: {got:?}"
            );
        }
        let clean = layer(&[("etc/a", b"hello"), ("bin/x", &[0u8; 4096])], true);
        assert!(scan_layer(&clean, &m).unwrap().is_empty());
        assert!(scan_layer(&[0x28, 0xb5, 0x2f, 0xfd, 0], &m).is_err());
    }
}
