//! Differential test: every case under `tests/cases/inventory/<case>/` is run through real
//! ansible-core (`ansible-inventory`, and `ansible <pattern> --list-hosts` for pattern order) and
//! through kiln, and the results must be equal.
//!
//! Each case has a `cmds` file, one command per line, run with the case directory as cwd:
//! * `ARGS` — `ansible-inventory ARGS` vs `kiln inventory ARGS`. `--list`/`--host` output is
//!   compared as parsed JSON (ansible-inventory sorts keys, so key order carries no meaning; list
//!   order is compared), `--list --yaml` as parsed YAML, `--graph` as exact text.
//! * `@hosts PATTERN ARGS` — the host list `ansible PATTERN --list-hosts ARGS` prints, in order,
//!   vs `Inventory::select(PATTERN)` (then `Inventory::limit` for `--limit`), in order.
//!
//! ansible-core comes from `$KILN_ANSIBLE_VENV/bin` (default `/work/venv-ansible/bin`); without
//! it the test prints SKIP and passes. The venv's `bin` is put first on PATH for both sides, so
//! the implicit localhost's `ansible_python_interpreter` (Ansible: its own Python; kiln: the first
//! `python3` on PATH) agrees.

mod support;
use kiln::config::inventory::Inventory;
use kiln::vault::Keyring;
use std::path::{Path, PathBuf};
use std::process::Command;

fn venv_bin() -> Option<PathBuf> {
    let bin = support::ansible_venv().join("bin");
    bin.join("ansible-inventory").is_file().then_some(bin)
}

fn path_env(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn run(cmd: &Path, args: &[String], cwd: &Path, bin: &Path) -> (i32, String, String) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(cwd)
        .env("PATH", path_env(bin))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env_remove("ANSIBLE_CONFIG")
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cmd.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn parse_structured(args: &[String], text: &str) -> Result<serde_json::Value, String> {
    if args.iter().any(|a| a == "--yaml" || a == "-y") {
        serde_yaml::from_str(text).map_err(|e| format!("bad YAML ({e}): {text}"))
    } else {
        serde_json::from_str(text).map_err(|e| format!("bad JSON ({e}): {text}"))
    }
}

/// One `ansible-inventory` command: None if both agree, else a description.
fn compare_cli(case: &Path, args: &[String], bin: &Path) -> Option<String> {
    let (arc, aout, aerr) = run(&bin.join("ansible-inventory"), args, case, bin);
    let mut kargs = vec!["inventory".to_string()];
    kargs.extend(args.iter().cloned());
    let (krc, kout, kerr) = run(Path::new(env!("CARGO_BIN_EXE_kiln")), &kargs, case, bin);
    if (arc == 0) != (krc == 0) {
        return Some(format!("exit codes differ: ansible {arc}, kiln {krc}\nansible stderr: {aerr}\nkiln stderr: {kerr}"));
    }
    if arc != 0 {
        return None;
    }
    if args.iter().any(|a| a == "--graph") {
        if aout.trim_end() != kout.trim_end() {
            return Some(format!(
                "graph differs:\n--- ansible\n{aout}\n--- kiln\n{kout}\n(kiln stderr: {kerr})"
            ));
        }
        return None;
    }
    match (parse_structured(args, &aout), parse_structured(args, &kout)) {
        (Ok(a), Ok(k)) if a == k => None,
        (Ok(a), Ok(k)) => Some(format!(
            "output differs:\n--- ansible\n{}\n--- kiln\n{}\n(kiln stderr: {kerr})",
            serde_json::to_string_pretty(&a).unwrap_or_default(),
            serde_json::to_string_pretty(&k).unwrap_or_default()
        )),
        (a, k) => Some(format!(
            "unparsable output: ansible {:?} / kiln {:?}",
            a.err(),
            k.err()
        )),
    }
}

/// `@hosts PATTERN ARGS`: ansible's `--list-hosts` order vs `Inventory::select` + `limit`.
fn compare_pattern(case: &Path, pattern: &str, args: &[String], bin: &Path) -> Option<String> {
    let mut aargs = vec![pattern.to_string(), "--list-hosts".to_string()];
    aargs.extend(args.iter().cloned());
    let (arc, aout, aerr) = run(&bin.join("ansible"), &aargs, case, bin);
    let mut sources = Vec::new();
    let mut limit = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-i" => {
                let s = it.next()?;
                sources.push(if s.contains(',') {
                    s.clone()
                } else {
                    case.join(s).display().to_string()
                });
            }
            "-l" | "--limit" => {
                let l = it.next()?;
                limit = Some(match l.strip_prefix('@') {
                    Some(f) => format!("@{}", case.join(f).display()),
                    None => l.clone(),
                });
            }
            other => return Some(format!("unsupported argument in @hosts line: {other}")),
        }
    }
    let keys = Keyring::empty();
    let inv = match Inventory::load(&sources, &keys) {
        Ok(i) => i,
        Err(e) => return Some(format!("kiln load failed: {e}")),
    };
    let kiln = inv.select(pattern).and_then(|h| match &limit {
        Some(l) => kiln::config::inventory::Limit::parse(l).and_then(|l| inv.limit(&h, &l)),
        None => Ok(h),
    });
    let want: Vec<String> = aout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("hosts ("))
        .skip(1)
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    match kiln {
        Err(e) if arc != 0 => {
            let _ = e;
            None
        }
        Err(e) => Some(format!("kiln failed ({e}) where ansible listed {want:?}")),
        Ok(_) if arc != 0 => Some(format!("ansible failed ({aerr}) where kiln succeeded")),
        Ok(got) if got == want => None,
        Ok(got) => Some(format!(
            "hosts differ for {pattern:?}: ansible {want:?}, kiln {got:?}"
        )),
    }
}

fn run_case(case: &Path, bin: &Path) -> Vec<String> {
    let cmds = std::fs::read_to_string(case.join("cmds")).unwrap_or_default();
    let mut problems = Vec::new();
    for line in cmds.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let problem = if words[0] == "@hosts" {
            compare_pattern(case, &words[1], &words[2..], bin)
        } else {
            compare_cli(case, &words, bin)
        };
        if let Some(p) = problem {
            problems.push(format!(
                "[{}] `{line}`: {p}",
                case.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
    }
    problems
}

#[test]
fn kiln_inventory_agrees_with_ansible_inventory() {
    let Some(bin) = venv_bin() else {
        println!("SKIP: ansible-core not installed (tests/run installs it)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/inventory");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases/inventory exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("cmds").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 25,
        "expected at least 25 cases, found {}",
        cases.len()
    );
    // two workers: the machine is shared
    let results: Vec<(PathBuf, Vec<String>)> = std::thread::scope(|s| {
        let chunks: Vec<Vec<PathBuf>> = vec![
            cases.iter().step_by(2).cloned().collect(),
            cases.iter().skip(1).step_by(2).cloned().collect(),
        ];
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let bin = bin.clone();
                s.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|c| {
                            let p = run_case(&c, &bin);
                            (c, p)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    });
    let agree = results.iter().filter(|(_, p)| p.is_empty()).count();
    for (_, problems) in &results {
        for p in problems {
            println!("{p}\n");
        }
    }
    println!("inventory diff: {agree}/{} cases agree", results.len());
    assert_eq!(
        agree,
        results.len(),
        "some cases disagree with ansible-core (see above)"
    );
}
