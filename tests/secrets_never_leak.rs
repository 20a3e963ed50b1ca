//! Secrets never reach any output: run kiln over a configuration holding secrets (the embedded
//! ci-builder environment, whose secrets are in an age file, plus an inline ansible-vault value)
//! in every output mode, and search all of the output for each plaintext.
//!
//! The plaintexts are obtained through the one path that may print them (`--show-secrets`), so the
//! test also proves the search would find them.

mod support;

use std::path::Path;
use std::process::{Command, Output};

const SECRET_NAMES: &[&str] = &[
    "stackhpc_repo_mirror_password",
    "kolla_docker_registry_password",
    "inline_vaulted",
];

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .env_remove("KAYOBE_CONFIG_PATH")
        .env_remove("KAYOBE_ENVIRONMENT")
        .env_remove("KILN_AGE_IDENTITY")
        .env("KILN_LOG", "trace")
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .expect("run kiln")
}

fn all_text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn no_plaintext_secret_in_any_output() {
    if Path::new("/etc/kayobe").exists() {
        println!("SKIP: /etc/kayobe exists, so the embedded configuration is not the default here");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // an extra-vars file with an inline ansible-vault value (password "kiln-test"), made by real
    // ansible-vault when available; otherwise only the age secrets are checked
    let vault_bin = support::ansible_venv().join("bin/ansible-vault");
    std::fs::write(dir.join("pw"), "kiln-test\n").unwrap();
    let mut extra: Vec<String> = Vec::new();
    if vault_bin.exists() {
        let out = Command::new(&vault_bin)
            .args([
                "encrypt_string",
                "--vault-password-file",
                "pw",
                "inline-plain-31337",
                "--name",
                "inline_vaulted",
            ])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.join("vaulted.yml"), &out.stdout).unwrap();
        extra = vec![
            "-e".into(),
            "@vaulted.yml".into(),
            "--vault-password-file".into(),
            "pw".into(),
        ];
    } else {
        println!("NOTE: ansible-vault not installed: inline vault values not covered by this run");
    }
    let with = |args: &[&str]| -> Vec<String> {
        let mut v = extra.clone();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| kiln(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());

    // 1. the plaintexts, through the explicit reveal
    let names: Vec<&str> = SECRET_NAMES
        .iter()
        .copied()
        .filter(|n| *n != "inline_vaulted" || !extra.is_empty())
        .collect();
    let mut args = with(&["vars", "builder", "--show-secrets"]);
    args.extend(names.iter().map(|s| s.to_string()));
    let shown = run(args);
    assert!(shown.status.success(), "{}", all_text(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let plaintexts: Vec<String> = names
        .iter()
        .map(|n| shown[*n].as_str().unwrap().to_string())
        .collect();
    for p in &plaintexts {
        assert!(
            p.len() >= 8 && p != "********",
            "a real secret value: {p:?}"
        );
    }

    // 2. every other output mode
    let mut modes: Vec<Vec<String>> = vec![
        with(&["vars", "builder"]),
        with(&["-vvvv", "vars", "builder"]),
        with(&["inventory", "--list"]),
        with(&["inventory", "--host", "builder"]),
        with(&["inventory", "--graph", "--vars"]),
        with(&["inventory", "--list", "--yaml"]),
        with(&[
            "vars",
            "builder",
            "stackhpc_repo_mirror_password ~ '-derived'",
        ]),
        with(&[
            "vars",
            "builder",
            "stackhpc_repo_mirror_password | b64decode | default(stackhpc_repo_mirror_password)",
        ]),
        with(&[
            "vars",
            "builder",
            "{'nested': [stackhpc_repo_mirror_password]}",
        ]),
        with(&[
            "vars",
            "builder",
            "stackhpc_repo_mirror_password + no_such_variable",
        ]),
        with(&[
            "vars",
            "builder",
            "undefined_filter_on_secret | bogus_filter(stackhpc_repo_mirror_password)",
        ]),
    ];
    for n in &names {
        modes.push(with(&["vars", "builder", n]));
        modes.push(with(&["vars", "builder", &format!("{n} | upper")]));
    }
    let tmpl = dir.join("t.j2");
    std::fs::write(&tmpl, "password={{ stackhpc_repo_mirror_password }}\n").unwrap();
    modes.push(with(&["render", "builder", "t.j2"]));
    // playbooks: every way a task can show a value, in every output mode (the host is this
    // machine, through a local connection)
    std::fs::write(dir.join("leak.yml"), LEAK_PLAYBOOK).unwrap();
    let playbook_modes: &[&[&str]] = &[
        &[],
        &["-v"],
        &["-vvv"],
        &["--format", "json"],
        &["--diff"],
        &["--check", "--diff"],
        &["--diff", "--format", "json"],
    ];
    for (i, extra_args) in playbook_modes.iter().enumerate() {
        let out = dir.join(format!("out{i}"));
        std::fs::create_dir_all(&out).unwrap();
        let out_var = format!("out_dir={}", out.display());
        let mut args = with(&[
            "playbook",
            "run",
            "leak.yml",
            "-e",
            "ansible_connection=local",
            "-e",
            &out_var,
        ]);
        args.extend(extra_args.iter().map(|s| s.to_string()));
        modes.push(args);
    }
    let mut checked = 0;
    for m in modes {
        let out = run(m.clone());
        let text = all_text(&out);
        if m.iter().any(|a| a == "playbook") {
            // the playbook ran to the end (its failing tasks ignore errors)
            assert!(
                text.contains("PLAY RECAP") || text.contains("\"recap\""),
                "`kiln {}` did not finish:\n{text}",
                m.join(" ")
            );
            if m.iter().any(|a| a == "--diff") && !m.iter().any(|a| a == "--check") {
                assert!(
                    text.contains("secret.txt"),
                    "the diff run showed no diff:\n{text}"
                );
            }
        }
        for p in &plaintexts {
            assert!(
                !text.contains(p.as_str()),
                "`kiln {}` printed a secret:\n{text}",
                m.join(" ")
            );
            let upper = p.to_uppercase();
            assert!(
                !text.contains(&upper),
                "`kiln {}` printed a secret (upper-cased):\n{text}",
                m.join(" ")
            );
        }
        checked += 1;
    }
    // 3. schedule history (issue 19 item 6): a scheduled run of the leaking playbook, and one that
    // fails with a secret in its message; the wrapper's output, `schedule history` (table and
    // JSON) and every file under the schedule's state directory are searched
    std::fs::write(
        dir.join("leakfail.yml"),
        "- hosts: builder\n  gather_facts: false\n  tasks:\n    - fail:\n        msg: \"{{ stackhpc_repo_mirror_password }}\"\n",
    )
    .unwrap();
    let state_root = dir.join("sched-state");
    let out = dir.join("out-sched");
    std::fs::create_dir_all(&out).unwrap();
    let out_var = format!("out_dir={}", out.display());
    let mut files_checked = 0;
    for (name, book) in [("leakrun", "leak.yml"), ("leakfail", "leakfail.yml")] {
        let state = state_root.join(name);
        let mut args: Vec<String> = vec![
            "schedule".into(),
            "exec".into(),
            name.into(),
            "--overlap".into(),
            "skip".into(),
            "--state-dir".into(),
            state.display().to_string(),
            "--".into(),
        ];
        args.extend(with(&[
            "playbook",
            "run",
            book,
            "-e",
            "ansible_connection=local",
            "-e",
            &out_var,
        ]));
        let mut texts = vec![(format!("kiln {}", args.join(" ")), all_text(&run(args)))];
        for json in [true, false] {
            let mut h = vec!["schedule", "history", name, "--state-root"];
            let root = state_root.display().to_string();
            h.push(&root);
            if json {
                h.push("--json");
            }
            let o = kiln(dir, &h);
            assert!(o.status.success(), "{}", all_text(&o));
            texts.push((format!("kiln {}", h.join(" ")), all_text(&o)));
        }
        assert!(
            texts[1].1.contains(if name == "leakfail" {
                "\"status\":\"failed\""
            } else {
                "\"status\":\"ok\""
            }),
            "history has no run: {}",
            texts[1].1
        );
        let mut stack = vec![state.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let b = std::fs::read(&p).unwrap();
                    texts.push((p.display().to_string(), String::from_utf8_lossy(&b).into()));
                    files_checked += 1;
                }
            }
        }
        for (what, text) in &texts {
            for p in &plaintexts {
                assert!(
                    !text.contains(p.as_str()) && !text.contains(&p.to_uppercase()),
                    "{what} holds a secret:\n{text}"
                );
            }
            checked += 1;
        }
    }
    assert!(files_checked >= 2, "no schedule state files to search");
    println!(
        "secrets: {} plaintexts searched for in {checked} outputs ({files_checked} schedule state files): none found",
        plaintexts.len()
    );
}

/// Shows secrets in every way a task can: debug var and msg, a command's stdout and stderr, a
/// failing task's message, a templating error, file content with --diff (copy and template),
/// and a no_log task.
const LEAK_PLAYBOOK: &str = r#"
- hosts: builder
  gather_facts: false
  tasks:
    - debug: var=stackhpc_repo_mirror_password
    - debug:
        msg: "pw is {{ stackhpc_repo_mirror_password }} and {{ inline_vaulted | default('') }}"
    - command: echo {{ stackhpc_repo_mirror_password }}
      changed_when: false
    - shell: echo {{ kolla_docker_registry_password }} >&2; exit 1
      ignore_errors: true
    - copy:
        content: "{{ stackhpc_repo_mirror_password }}\n"
        dest: "{{ out_dir }}/secret.txt"
        mode: "0600"
    - template:
        src: t.j2
        dest: "{{ out_dir }}/t.txt"
    - shell: echo {{ stackhpc_repo_mirror_password }}
      no_log: true
    - fail:
        msg: "{{ stackhpc_repo_mirror_password }}"
      ignore_errors: true
    - debug:
        msg: "{{ stackhpc_repo_mirror_password + no_such_variable }}"
      ignore_errors: true
"#;
