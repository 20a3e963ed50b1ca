//! Host names as inventory sources write them: `host:port`, `[v6::addr]:port`, and ranges such
//! as `web[01:20]`, `db[a:f]`, `x[1:10:2]` (Ansible's `parse_address` and
//! `expand_hostname_range`). The regular expressions are Ansible's, so what counts as a valid
//! address (and so whether `:NN` is a port) is decided exactly as Ansible decides it.

use regex::Regex;
use std::sync::OnceLock;

const NUMERIC_RANGE: &str = r"\[(?:[0-9]+:[0-9]+)(?::[0-9]+)?\]";
const HEX_RANGE: &str = r"\[(?:[0-9a-f]+:[0-9a-f]+)(?::[0-9]+)?\]";
const ALNUM_RANGE: &str = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]";

struct Patterns {
    bracketed_hostport: Regex,
    hostport: Regex,
    ipv4: Regex,
    ipv6: Regex,
    label: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let i4 = format!(r"(?:[01]?[0-9]{{1,2}}|2[0-4][0-9]|25[0-5]|{NUMERIC_RANGE})");
        let c = format!(r"(?:[0-9a-f]{{1,4}}|{HEX_RANGE})");
        let v6 = [
            format!(r"(?:{c}:){{7}}{c}"),
            format!(r"(?:{c}:){{1,6}}:"),
            format!(r"(?:{c}:)(?::{c}){{1,6}}"),
            format!(r"(?:{c}:){{2}}(?::{c}){{1,5}}"),
            format!(r"(?:{c}:){{3}}(?::{c}){{1,4}}"),
            format!(r"(?:{c}:){{4}}(?::{c}){{1,3}}"),
            format!(r"(?:{c}:){{5}}(?::{c}){{1,2}}"),
            format!(r"(?:{c}:){{6}}(?::{c})"),
            format!(r":(?::{c}){{1,6}}"),
            format!(r"{c}?::"),
            format!(r"(?:0:){{6}}(?:{c}\.){{3}}{c}"),
            format!(r"::(?:ffff:)?(?:{c}\.){{3}}{c}"),
            format!(r"(?:0:){{5}}ffff:(?:{c}\.){{3}}{c}"),
        ];
        // Python matches `^a|b|...|m$` with re.match: every alternative is anchored at the start,
        // only the last one at the end (so `fe80::1` matches through `a::`). Keep that.
        let last = v6.len() - 1;
        let v6: Vec<String> = v6
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i == last {
                    format!("{a}$")
                } else {
                    a.clone()
                }
            })
            .collect();
        let re = |s: &str| Regex::new(s).expect("static regex");
        Patterns {
            bracketed_hostport: re(r"^\[(.+)\]:([0-9]+)$"),
            hostport: re(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$"),
            ipv4: re(&format!(r"(?i)^(?:{i4}\.){{3}}{i4}$")),
            ipv6: re(&format!("(?i)^(?:{})", v6.join("|"))),
            label: re(&format!(
                r"(?i)^(?:\w|{ALNUM_RANGE})(?:[\w-]|{ALNUM_RANGE})*$"
            )),
        }
    })
}

fn is_hostname(s: &str) -> bool {
    let p = patterns();
    s.split('.')
        .all(|l| p.label.is_match(l) && !l.ends_with('_') && !l.ends_with('-'))
}

/// True when `s` is an IPv4 or IPv6 address (ranges allowed), as `inventory_hostname_short` asks.
pub fn is_ip(s: &str) -> bool {
    let p = patterns();
    p.ipv4.is_match(s) || p.ipv6.is_match(s)
}

/// Ansible's `parse_address`: the host part and the port, or an error if it is not an address.
pub fn parse_address(address: &str, allow_ranges: bool) -> Result<(String, Option<i64>), String> {
    let p = patterns();
    let mut addr = address.to_string();
    let mut port = None;
    for re in [&p.bracketed_hostport, &p.hostport] {
        if let Some(c) = re.captures(&addr) {
            let (a, n) = (c[1].to_string(), c[2].to_string());
            port = Some(
                n.parse::<i64>()
                    .map_err(|_| format!("port out of range: {n}"))?,
            );
            addr = a;
        }
    }
    if !(p.ipv4.is_match(&addr) || p.ipv6.is_match(&addr) || is_hostname(&addr)) {
        return Err(format!("Not a valid network hostname: {addr}"));
    }
    if !allow_ranges && addr.contains('[') {
        return Err("Detected range in host but was asked to ignore ranges".into());
    }
    Ok((addr, port))
}

/// A host pattern from an inventory file: its host names (ranges expanded) and optional port.
pub fn expand_hostpattern(pattern: &str) -> Result<(Vec<String>, Option<i64>), String> {
    let (host, port) = match parse_address(pattern, true) {
        Ok(x) => x,
        Err(_) => (pattern.to_string(), None),
    };
    let names = if host.contains('[') {
        expand_hostname_range(&host)?
    } else {
        vec![host]
    };
    Ok((names, port))
}

const ASCII_LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The most host names one pattern may expand to. Ansible has no bound (`web[0:9999999999]`
/// exhausts its memory); kiln stops with an error instead. Far above any real inventory.
pub const MAX_RANGE_HOSTS: usize = 100_000;

/// Expand the first `[a:b(:step)]` of a name, then the rest recursively; at most
/// [`MAX_RANGE_HOSTS`] names.
pub fn expand_hostname_range(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    expand_into(line, &mut out)?;
    Ok(out)
}

fn expand_into(line: &str, out: &mut Vec<String>) -> Result<(), String> {
    if line.is_empty() {
        return Ok(());
    }
    let replaced = line.replacen('[', "|", 1).replacen(']', "|", 1);
    let parts: Vec<&str> = replaced.split('|').collect();
    let [head, nrange, tail] = parts[..] else {
        return Err(format!("invalid host range in {line:?}"));
    };
    let bounds: Vec<&str> = nrange.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err("host range must be begin:end or begin:end:step".into());
    }
    let beg = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    let step: i64 = match bounds.get(2) {
        Some(s) => py_int(s)?,
        None => 1,
    };
    if end.is_empty() {
        return Err("host range must specify end value".into());
    }
    let width = if beg.starts_with('0') && beg.len() > 1 {
        if beg.len() != end.len() {
            return Err("host range must specify equal-length begin and end formats".into());
        }
        Some(beg.len())
    } else {
        None
    };
    if step == 0 {
        return Err("range() arg 3 must not be zero".into());
    }
    let seq: Vec<String> = match (ASCII_LETTERS.find(beg), ASCII_LETTERS.find(end)) {
        (Some(b), Some(e)) => {
            if b > e {
                return Err("host range must have begin <= end".into());
            }
            let letters: Vec<char> = ASCII_LETTERS[b..=e].chars().collect();
            python_range(0, letters.len() as i64, step)
                .into_iter()
                .map(|i| letters[i as usize].to_string())
                .collect()
        }
        _ => {
            let (b, e) = (py_int(beg)?, py_int(end)?);
            let count = if step > 0 {
                (e.saturating_add(1).saturating_sub(b)).max(0) as u128 / step as u128
            } else {
                (b.saturating_sub(e.saturating_add(1))).max(0) as u128 / step.unsigned_abs() as u128
            };
            if count.saturating_add(out.len() as u128) > MAX_RANGE_HOSTS as u128 {
                return Err(too_many(line));
            }
            python_range(b, e.saturating_add(1), step)
                .into_iter()
                .map(|i| i.to_string())
                .collect()
        }
    };
    for s in seq {
        let filled = match width {
            Some(w) => zfill(&s, w),
            None => s,
        };
        let name = format!("{head}{filled}{tail}");
        if name.contains('[') {
            expand_into(&name, out)?;
        } else {
            if out.len() >= MAX_RANGE_HOSTS {
                return Err(too_many(line));
            }
            out.push(name);
        }
    }
    Ok(())
}

fn too_many(line: &str) -> String {
    format!(
        "the host range {line:?} expands to more than {MAX_RANGE_HOSTS} hosts (kiln's bound on one pattern)"
    )
}

fn python_range(start: i64, stop: i64, step: i64) -> Vec<i64> {
    let mut v = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        v.push(i);
        match i.checked_add(step) {
            Some(n) => i = n,
            None => break,
        }
    }
    v
}

fn py_int(s: &str) -> Result<i64, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("invalid literal for int() with base 10: '{s}'"))
}

fn zfill(s: &str, w: usize) -> String {
    let (sign, digits) = match s.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", s),
    };
    if s.len() >= w {
        return s.to_string();
    }
    format!("{sign}{}{digits}", "0".repeat(w - s.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ports() {
        assert_eq!(
            parse_address("db1:2222", true).unwrap(),
            ("db1".into(), Some(2222))
        );
        assert_eq!(
            parse_address("[::1]:22", true).unwrap(),
            ("::1".into(), Some(22))
        );
        assert_eq!(
            parse_address("fe80::1", true).unwrap(),
            ("fe80::1".into(), None)
        );
        assert_eq!(
            parse_address("10.0.0.1:22", true).unwrap(),
            ("10.0.0.1".into(), Some(22))
        );
        assert!(parse_address("web-", true).is_err());
        assert!(parse_address("web[1:3]", false).is_err());
        assert!(parse_address("web[1:3]", true).is_ok());
    }

    #[test]
    fn ranges() {
        assert_eq!(
            expand_hostpattern("web[01:03]").unwrap().0,
            ["web01", "web02", "web03"]
        );
        assert_eq!(
            expand_hostpattern("db[a:c]").unwrap().0,
            ["dba", "dbb", "dbc"]
        );
        assert_eq!(
            expand_hostpattern("x[1:10:4]").unwrap().0,
            ["x1", "x5", "x9"]
        );
        assert_eq!(
            expand_hostpattern("n[1:2]-[a:b]:22").unwrap(),
            (
                vec!["n1-a".into(), "n1-b".into(), "n2-a".into(), "n2-b".into()],
                Some(22)
            )
        );
        assert!(expand_hostpattern("x[01:100]").is_err());
        assert!(expand_hostpattern("x[3:]").is_err());
    }
}

#[cfg(test)]
mod range_bound_tests {
    use super::*;

    #[test]
    fn a_huge_range_is_an_error_not_an_allocation() {
        let e = expand_hostname_range("web[0:99999999999]").unwrap_err();
        assert!(e.contains("more than 100000 hosts"), "{e}");
        // nested ranges multiply: 1000 x 1000 is over the bound too
        let e = expand_hostname_range("r[000:999]h[000:999]").unwrap_err();
        assert!(e.contains("more than"), "{e}");
        assert_eq!(
            expand_hostname_range("web[1:3]").unwrap(),
            ["web1", "web2", "web3"]
        );
        assert_eq!(
            expand_hostname_range("w[9223372036854775806:9223372036854775807:2]")
                .unwrap()
                .len(),
            1
        );
    }
}
