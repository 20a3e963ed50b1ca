//! The malformed-input corpus (issue 19): every `tests/cases/bad/*.case` is one bad input kiln
//! must refuse cleanly. A case is a small text file:
//!
//! ```text
//! # what the case is
//! args: -i inv.ini playbook run pb.yml --limit @missing
//! code: 1
//! expect: Unable to find limit file
//! --- pb.yml
//! - hosts: all
//! ...
//! ```
//!
//! `args` are kiln's arguments (split on whitespace; `{dir}` is the case's folder), `code` the exit
//! code, `expect` text the output must hold (repeatable; it names the file, and the line where
//! the input has lines); each `--- PATH` starts a file written into the case's folder (`\xNN`
//! escapes write raw bytes). Every case also asserts no panic, no Rust backtrace, a finish within
//! 30 s, and that the planted secret `hd-planted-secret-31337` (put in the vars of every case's
//! inventory) never appears in the output.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SECRET: &str = "hd-planted-secret-31337";

struct Case {
    name: String,
    args: Vec<String>,
    code: i32,
    expect: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn parse(name: &str, text: &str) -> Case {
    let mut c = Case {
        name: name.to_string(),
        args: vec![],
        code: -1,
        expect: vec![],
        files: vec![],
    };
    let mut file: Option<(String, String)> = None;
    for line in text.split_inclusive('\n') {
        if let Some(p) = line.strip_prefix("--- ") {
            if let Some((n, body)) = file.take() {
                c.files.push((n, unescape(&body)));
            }
            file = Some((p.trim().to_string(), String::new()));
            continue;
        }
        if let Some((_, body)) = file.as_mut() {
            body.push_str(line);
            continue;
        }
        let l = line.trim_end();
        if let Some(a) = l.strip_prefix("args:") {
            c.args = a.split_whitespace().map(str::to_string).collect();
        } else if let Some(v) = l.strip_prefix("code:") {
            c.code = v.trim().parse().expect("code: N");
        } else if let Some(v) = l.strip_prefix("expect:") {
            c.expect.push(v.trim().to_string());
        }
    }
    if let Some((n, body)) = file.take() {
        c.files.push((n, unescape(&body)));
    }
    assert!(
        !c.args.is_empty() && c.code >= 0,
        "{name}: needs args: and code:"
    );
    c
}

fn run(c: &Case) -> Result<(), String> {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::write(
        d.join("inv.ini"),
        format!("[web]\nw1 ansible_connection=local\nw2 ansible_connection=local\n[all:vars]\nplanted={SECRET}\n"),
    )
    .unwrap();
    std::fs::write(
        d.join("pb.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - debug: msg=hi\n",
    )
    .unwrap();
    for (n, body) in &c.files {
        let p = d.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let dir = d.display().to_string();
    let args: Vec<String> = c.args.iter().map(|a| a.replace("{dir}", &dir)).collect();
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(&args)
        .current_dir(d)
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .env_remove("KILN_AGE_IDENTITY")
        .env("XDG_CACHE_HOME", d.join("cache"))
        .env("HOME", d)
        .output()
        .unwrap();
    let took = started.elapsed();
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let mut why = Vec::new();
    let code = o.status.code().unwrap_or(-1);
    if code != c.code {
        why.push(format!("exit {code}, want {}", c.code));
    }
    for e in &c.expect {
        if !out.contains(e.as_str()) {
            why.push(format!("no {e:?} in the output"));
        }
    }
    if out.contains("panicked") || out.contains("RUST_BACKTRACE") {
        why.push("panic text".into());
    }
    if out.contains(SECRET) {
        why.push("the planted secret was printed".into());
    }
    if took > Duration::from_secs(30) {
        why.push(format!("took {took:?}"));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {} [kiln {}]\n{out}",
            c.name,
            why.join("; "),
            args.join(" ")
        ))
    }
}

#[test]
fn malformed_input_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/bad");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    names.sort();
    let only = std::env::var("KILN_BAD_CASE").ok();
    let mut failures = Vec::new();
    let mut n = 0;
    for p in &names {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let c = parse(&name, &std::fs::read_to_string(p).unwrap());
        n += 1;
        if let Err(e) = run(&c) {
            failures.push(e);
        }
    }
    println!(
        "{n} cases: {} clean errors, {} failures",
        n - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
