//! OpenSSH `known_hosts` files: look a host's key up, and record a new one.
//!
//! Understands what OpenSSH writes and reads: comma-separated host patterns with `*`/`?`
//! wildcards and `!` negation, `[host]:port` entries for non-22 ports, hashed entries
//! (`|1|salt|hmac-sha1`), `@revoked` keys (refused), `@cert-authority` lines (skipped: kiln does
//! not accept host certificates), and comment lines. A line that cannot be parsed is skipped
//! with a debug log rather than making the whole file unusable.

use base64::Engine;
use hmac::{Hmac, Mac};
use russh::keys::PublicKey;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is recorded for this host.
    Known,
    /// The host is recorded with other keys of the same type: possible man-in-the-middle.
    Changed { file: PathBuf, line: usize },
    /// The host is recorded, but only with keys of other types.
    OtherTypes { file: PathBuf, line: usize },
    /// The key is marked `@revoked`.
    Revoked { file: PathBuf, line: usize },
    /// Nothing recorded for this host.
    Unknown,
}

/// The name a host is recorded under: `host`, or `[host]:port` for ports other than 22.
pub fn host_entry(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// `*`/`?` glob match, ASCII case-insensitive, in O(pattern × name) time: the classic
/// backtrack-to-the-last-star loop (a recursive matcher took exponential time on a line of many
/// `*`s, found by tests/fuzz.rs: `tests/fuzz/regressions/known_hosts/`).
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(b'?') => {
                pi += 1;
                ni += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&n[ni]) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

fn hashed_match(entry: &str, name: &str) -> bool {
    let mut parts = entry.trim_start_matches("|1|").splitn(2, '|');
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Some(Ok(salt)), Some(Ok(hash))) = (
        parts.next().map(|s| b64.decode(s)),
        parts.next().map(|h| b64.decode(h)),
    ) else {
        return false;
    };
    let Ok(mac) = <Hmac<sha1::Sha1> as Mac>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// Whether a comma-separated pattern list matches the host entry name.
pub fn patterns_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for p in patterns.split(',') {
        if p.starts_with("|1|") {
            if hashed_match(p, name) {
                matched = true;
            }
        } else if let Some(neg) = p.strip_prefix('!') {
            if wildcard(neg, name) {
                return false;
            }
        } else if wildcard(p, name) {
            matched = true;
        }
    }
    matched
}

/// A known_hosts file's text, line by line as OpenSSH reads it: a line that is not UTF-8 is one
/// bad line (it matches nothing), not a reason to skip the whole file. (Skipping it made every
/// host in it "unknown": refused in strict mode with the wrong reason, and under accept-new a
/// host whose recorded key had changed was accepted and recorded again.) None when it cannot be
/// read (missing, a folder, no permission), which OpenSSH ignores too.
fn read(file: &Path) -> Option<String> {
    let bytes = std::fs::read(file).ok()?;
    Some(match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!("{}: not all UTF-8: bad lines are skipped", file.display());
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    })
}

/// Check `key` for `host:port` against the files, in order (the first file with an entry decides).
pub fn check(files: &[PathBuf], host: &str, port: u16, key: &PublicKey) -> Verdict {
    let name = host_entry(host, port);
    let mut other_types = None;
    let mut changed = None;
    for file in files {
        let Some(text) = read(file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or("");
            let marker = if first.starts_with('@') {
                let m = first;
                first = fields.next().unwrap_or("");
                Some(m)
            } else {
                None
            };
            if marker == Some("@cert-authority") || !patterns_match(first, &name) {
                continue;
            }
            let (Some(kt), Some(kb)) = (fields.next(), fields.next()) else {
                continue;
            };
            let recorded = match PublicKey::from_openssh(&format!("{kt} {kb}")) {
                Ok(k) => k,
                Err(e) => {
                    tracing::debug!("{}:{}: cannot parse key: {e}", file.display(), i + 1);
                    continue;
                }
            };
            let same = recorded.key_data() == key.key_data();
            let pos = (file.clone(), i + 1);
            if marker == Some("@revoked") {
                if same {
                    return Verdict::Revoked {
                        file: pos.0,
                        line: pos.1,
                    };
                }
                continue;
            }
            if same {
                return Verdict::Known;
            }
            if recorded.algorithm() == key.algorithm() {
                changed.get_or_insert(pos);
            } else {
                other_types.get_or_insert(pos);
            }
        }
    }
    if let Some((file, line)) = changed {
        return Verdict::Changed { file, line };
    }
    if let Some((file, line)) = other_types {
        return Verdict::OtherTypes { file, line };
    }
    Verdict::Unknown
}

/// Key algorithms recorded for a host, so the client can ask the server for one it can verify
/// (OpenSSH orders `HostKeyAlgorithms` the same way).
pub fn recorded_algorithms(
    files: &[PathBuf],
    host: &str,
    port: u16,
) -> Vec<russh::keys::Algorithm> {
    let name = host_entry(host, port);
    let mut out = Vec::new();
    for file in files {
        let Some(text) = read(file) else {
            continue;
        };
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let Some(first) = f.next() else { continue };
            if first.starts_with('#') || first.starts_with('@') || !patterns_match(first, &name) {
                continue;
            }
            if let (Some(kt), Some(kb)) = (f.next(), f.next()) {
                if let Ok(k) = PublicKey::from_openssh(&format!("{kt} {kb}")) {
                    if !out.contains(&k.algorithm()) {
                        out.push(k.algorithm());
                    }
                }
            }
        }
    }
    out
}

/// Append `host:port key` to a known_hosts file (creating it and its directory, 0600/0700).
pub fn learn(file: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
    let needs_newline = std::fs::read(file)
        .map(|b| !b.is_empty() && !b.ends_with(b"\n"))
        .unwrap_or(false);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    let line = key.to_openssh().map_err(std::io::Error::other)?;
    // drop the comment: the entry is the key, under the host's name
    let line: Vec<&str> = line.split_whitespace().take(2).collect();
    writeln!(
        f,
        "{}{} {}",
        if needs_newline { "\n" } else { "" },
        host_entry(host, port),
        line.join(" ")
    )?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const K2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";

    #[test]
    fn wildcards_match_as_openssh_in_linear_time() {
        for (p, n, m) in [
            ("*", "", true),
            ("*", "web1", true),
            ("web?", "WEB1", true),
            ("w*1", "web1", true),
            ("w*1", "web12", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "example.com", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("[10.0.0.*]:2222", "[10.0.0.1]:2222", true),
            ("", "x", false),
            ("**", "", true),
        ] {
            assert_eq!(wildcard(p, n), m, "{p} vs {n}");
        }
        // was exponential (recursive matcher): 40 stars against a long name took minutes
        let start = std::time::Instant::now();
        assert!(!wildcard(
            &format!("{}x", "*".repeat(40)),
            "build-host-01.example.com"
        ));
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn port_entries_hashes_wildcards_and_changes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("kh");
        // `|1|...` is a hashed entry for "example.com" (from russh's tests)
        std::fs::write(
            &f,
            format!(
                "# comment\n[localhost]:13265 {K1}\n|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= {K2}\n*.lab,!bad.lab {K1}\ngarbage line\n"
            ),
        )
        .unwrap();
        let files = vec![f.clone()];
        let k1 = PublicKey::from_openssh(K1).unwrap();
        let k2 = PublicKey::from_openssh(K2).unwrap();
        assert_eq!(check(&files, "localhost", 13265, &k1), Verdict::Known);
        assert!(matches!(
            check(&files, "localhost", 13265, &k2),
            Verdict::Changed { line: 2, .. }
        ));
        assert_eq!(check(&files, "example.com", 22, &k2), Verdict::Known);
        assert_eq!(check(&files, "localhost", 22, &k2), Verdict::Unknown);
        assert_eq!(check(&files, "a.lab", 22, &k1), Verdict::Known);
        assert_eq!(check(&files, "bad.lab", 22, &k1), Verdict::Unknown);
        assert_eq!(check(&files, "other", 22, &k1), Verdict::Unknown);
        learn(&f, "other", 2200, &k2).unwrap();
        assert_eq!(check(&files, "other", 2200, &k2), Verdict::Known);
        assert!(std::fs::read_to_string(&f)
            .unwrap()
            .contains(&format!("[other]:2200 {K2}\n")));
    }

    /// A line that is not UTF-8 spoils only itself (it made the whole file unread: every host
    /// "unknown", and a changed key accepted as new under accept-new).
    #[test]
    fn a_non_utf8_line_does_not_hide_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("kh");
        let mut text = b"# \xff\xfe not UTF-8\nbuild\xc3 ".to_vec();
        text.extend_from_slice(format!("{K1}\nbuild {K1}\n").as_bytes());
        std::fs::write(&f, text).unwrap();
        let files = vec![f];
        let k1 = PublicKey::from_openssh(K1).unwrap();
        let k2 = PublicKey::from_openssh(K2).unwrap();
        assert_eq!(check(&files, "build", 22, &k1), Verdict::Known);
        assert!(matches!(
            check(&files, "build", 22, &k2),
            Verdict::Changed { line: 3, .. }
        ));
        assert_eq!(
            recorded_algorithms(&files, "build", 22),
            vec![k1.algorithm()]
        );
    }
}
