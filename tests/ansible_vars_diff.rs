//! Differential tests: `kiln vars HOST NAME...` against real ansible-core's `ansible HOST -m debug
//! -a var=NAME` over a corpus of Kayobe-style configurations (`tests/cases/vars/*/case.yml`).
//!
//! In Kayobe mode the oracle's inventories and extra-vars files are built by Kayobe's own code
//! (`kayobe.ansible.build_args`, Kayobe installed from PyPI without dependencies, via
//! `tests/cases/kayobe_argv.py`), and its data files (`share/kayobe/ansible/inventory`, filter and
//! lookup plugins) are the base, exactly what `--kayobe-data-path` points kiln at.
//!
//! case.yml keys: `host`, `names`; plain mode: `inventory: [paths]`; Kayobe mode: `config_path`,
//! `environment` (optional); `extra: [-e args]`; `env: {VAR: value}`; `expect_error: text` (both
//! must fail, kiln's message must contain the text).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

/// The oracle's venv (`support::ansible_venv`), when ansible-core is in it.
fn venv() -> Option<PathBuf> {
    support::ansible_tool("ansible").map(|_| support::ansible_venv())
}

fn kayobe_data(venv: &Path) -> Option<PathBuf> {
    let d = venv.join("share/kayobe");
    d.join("ansible/inventory").is_dir().then_some(d)
}

struct Case {
    name: String,
    dir: PathBuf,
    spec: kiln::value::Value,
}

impl Case {
    fn strs(&self, key: &str) -> Vec<String> {
        self.spec
            .get(key)
            .and_then(|v| v.as_list())
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn str(&self, key: &str) -> Option<String> {
        self.spec
            .get(key)
            .and_then(|v| v.as_str())
            .map(String::from)
    }
    fn env(&self) -> Vec<(String, String)> {
        self.spec
            .get("env")
            .and_then(|v| v.as_map())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn load_cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/vars");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/cases/vars")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.yml").exists())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("case.yml")).unwrap();
            let spec =
                kiln::yaml::load(&text, &dir.join("case.yml").display().to_string()).unwrap();
            Case {
                name: dir.file_name().unwrap().to_string_lossy().into(),
                dir,
                spec,
            }
        })
        .collect()
}

/// What one side said: a value per name, or an error message.
type Outcome = Result<BTreeMap<String, serde_json::Value>, String>;

fn run_ansible(case: &Case, venv: &Path, kayobe: Option<&Path>, names: &[String]) -> Outcome {
    let host = case.str("host").unwrap();
    let mut args: Vec<String> = Vec::new();
    let mut envs = case.env();
    if let Some(cfg) = case.str("config_path") {
        let cfg = case.dir.join(cfg);
        let out = Command::new(venv.join("bin/python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/kayobe_argv.py"))
            .arg(&cfg)
            .arg(case.str("environment").unwrap_or_else(|| "-".into()))
            .args(case.strs("extra"))
            .current_dir(&case.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kayobe_argv.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        args = serde_json::from_slice(&out.stdout).unwrap();
        let ansible = kayobe.unwrap().join("ansible");
        envs.push((
            "ANSIBLE_FILTER_PLUGINS".into(),
            ansible.join("filter_plugins").display().to_string(),
        ));
        envs.push((
            "ANSIBLE_LOOKUP_PLUGINS".into(),
            ansible.join("lookup_plugins").display().to_string(),
        ));
        envs.push((
            "ANSIBLE_TEST_PLUGINS".into(),
            ansible.join("test_plugins").display().to_string(),
        ));
        envs.push(("KAYOBE_CONFIG_PATH".into(), cfg.display().to_string()));
        if let Some(e) = case.str("environment") {
            envs.push(("KAYOBE_ENVIRONMENT".into(), e));
        }
    } else {
        for i in case.strs("inventory") {
            args.push("-i".into());
            args.push(i);
        }
        for e in case.strs("extra") {
            args.push("-e".into());
            args.push(e);
        }
    }
    let mut result = BTreeMap::new();
    let tree = tempfile::tempdir().unwrap();
    for name in names {
        let out = Command::new(venv.join("bin/ansible"))
            .arg(&host)
            .args(&args)
            .args(["-m", "debug", "-a", &format!("var={name}"), "-t"])
            .arg(tree.path())
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("ANSIBLE_LOCALHOST_WARNING", "False")
            .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False")
            .current_dir(&case.dir)
            .output()
            .unwrap();
        let text = std::fs::read_to_string(tree.path().join(&host)).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if !out.status.success() || v.get("failed") == Some(&serde_json::Value::Bool(true)) {
            return Err(format!(
                "{} {}",
                v.get("msg").map(|m| m.to_string()).unwrap_or_default(),
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        match v.get(name.as_str()) {
            Some(x) if *x == serde_json::Value::String("VARIABLE IS NOT DEFINED!".into()) => {
                return Err(format!("'{name}' is undefined"))
            }
            Some(x) => {
                result.insert(name.clone(), x.clone());
            }
            None => return Err(format!("no result for {name}: {text}")),
        }
    }
    Ok(result)
}

fn run_kiln(case: &Case, kayobe: Option<&Path>, names: &[String]) -> Outcome {
    let host = case.str("host").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.current_dir(&case.dir).envs(case.env());
    cmd.env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT");
    if let Some(cfg) = case.str("config_path") {
        cmd.arg("--config-path").arg(case.dir.join(cfg));
        cmd.arg("--kayobe-data-path").arg(kayobe.unwrap());
        if let Some(e) = case.str("environment") {
            cmd.args(["--environment", &e]);
        }
    } else {
        for i in case.strs("inventory") {
            cmd.args(["-i", &i]);
        }
    }
    for e in case.strs("extra") {
        cmd.args(["-e", &e]);
    }
    cmd.arg("vars").arg(&host).args(names);
    let out = cmd.output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "kiln printed no JSON object ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
    Ok(v)
}

#[test]
fn kiln_vars_agree_with_ansible_core() {
    let Some(venv) = venv() else {
        println!("SKIP: ansible-core not installed (tests/run installs it into .venv; or set KILN_ANSIBLE_VENV)");
        return;
    };
    let kayobe = kayobe_data(&venv);
    let cases = load_cases();
    assert!(
        cases.len() >= 20,
        "the corpus shrank: {} cases",
        cases.len()
    );
    let (mut agree, mut total, mut report) = (0, 0, Vec::new());
    for case in &cases {
        if case.str("config_path").is_some() && kayobe.is_none() {
            println!(
                "SKIP {}: Kayobe is not installed in the venv (tests/run installs it)",
                case.name
            );
            continue;
        }
        total += 1;
        let names = case.strs("names");
        let a = run_ansible(case, &venv, kayobe.as_deref(), &names);
        let k = run_kiln(case, kayobe.as_deref(), &names);
        let ok = match (&a, &k, case.str("expect_error")) {
            (Err(_), Err(kmsg), Some(want)) => kmsg.contains(&want),
            (Ok(av), Ok(kv), None) => av == kv,
            _ => false,
        };
        if ok {
            agree += 1;
        } else {
            report.push(format!(
                "--- {}\n  ansible: {:?}\n  kiln:    {:?}",
                case.name, a, k
            ));
        }
    }
    println!("vars diff: {agree}/{total} cases agree with ansible-core");
    for r in &report {
        println!("{r}");
    }
    assert!(
        report.is_empty(),
        "{} case(s) disagree:\n{}",
        report.len(),
        report.join("\n")
    );
}
