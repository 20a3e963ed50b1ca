//! ansible-vault compatibility against the real `ansible-vault` (ansible-core in
//! `$KILN_ANSIBLE_VENV`, default `/work/venv-ansible`): whole files in format 1.1 and 1.2 (vault
//! id), inline `!vault |` values in a Kayobe-style vars file (loaded lazily: no password needed
//! until a value is used), Kayobe's password sources and the combinations it refuses, and
//! `kiln vault migrate` to age — structure and comments kept, values the same, the whole-file
//! result readable by the `age` tool.

mod support;

mod vault_support;

use kiln::value::Value;
use kiln::vault::Keyring;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use vault_support::*;

const PASSWORD: &str = "kayobe-test-pass";

fn ansible_vault() -> Option<PathBuf> {
    let p = support::ansible_venv().join("bin/ansible-vault");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIP: {} not found (pip install ansible-core into $KILN_ANSIBLE_VENV)",
            p.display()
        );
        None
    }
}

fn password_file(dir: &Path) -> PathBuf {
    let p = dir.join("vault.pass");
    std::fs::write(&p, format!("{PASSWORD}\n")).unwrap();
    p
}

const WHOLE: &str = "---\n# Kayobe secrets\nsecrets_pulp_password: pulp-Secret-1\nkolla_docker_registry_password: \"reg-Secret-2\"\n";

#[test]
fn whole_files_1_1_and_1_2_open_with_every_password_source() {
    let Some(av) = ansible_vault() else { return };
    let d = tempfile::tempdir().unwrap();
    let pw = password_file(d.path());
    let f11 = d.path().join("v11.yml");
    let f12 = d.path().join("v12.yml");
    std::fs::write(&f11, WHOLE).unwrap();
    std::fs::write(&f12, WHOLE).unwrap();
    ok(Command::new(&av)
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(&pw)
        .arg(&f11));
    ok(Command::new(&av)
        .arg("encrypt")
        .arg("--vault-id")
        .arg(format!("lab@{}", pw.display()))
        .arg(&f12));
    assert!(std::fs::read_to_string(&f11)
        .unwrap()
        .starts_with("$ANSIBLE_VAULT;1.1;AES256\n"));
    assert!(std::fs::read_to_string(&f12)
        .unwrap()
        .starts_with("$ANSIBLE_VAULT;1.2;AES256;lab\n"));

    let script = d.path().join("pass-script");
    std::fs::write(&script, format!("#!/bin/sh\necho {PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in [&f11, &f12] {
        // --vault-password-file
        let o = ok(kiln()
            .arg("--vault-password-file")
            .arg(&pw)
            .args(["vault", "view"])
            .arg(f));
        assert_eq!(text(&o.stdout), WHOLE);
        // an executable password file is run, as Ansible does
        let o = ok(kiln()
            .arg("--vault-password-file")
            .arg(&script)
            .args(["vault", "view"])
            .arg(f));
        assert_eq!(text(&o.stdout), WHOLE);
        // $KAYOBE_VAULT_PASSWORD
        let o = ok(kiln()
            .env("KAYOBE_VAULT_PASSWORD", PASSWORD)
            .args(["vault", "view"])
            .arg(f));
        assert_eq!(text(&o.stdout), WHOLE);
        // $ANSIBLE_VAULT_PASSWORD_FILE
        let o = ok(kiln()
            .env("ANSIBLE_VAULT_PASSWORD_FILE", &pw)
            .args(["vault", "view"])
            .arg(f));
        assert_eq!(text(&o.stdout), WHOLE);
        // and the vars-file reader: values are secrets
        let keys = Keyring::from_opts(Some(&pw), &[], None).unwrap();
        let v = kiln::config::varsfile::read_vars_file(f, &keys).unwrap();
        assert!(!format!("{v:?}").contains("Secret-"));
        assert_eq!(
            v.expose_secrets().get("secrets_pulp_password"),
            Some(&Value::str("pulp-Secret-1"))
        );
    }

    // Kayobe's rules: KAYOBE_VAULT_PASSWORD excludes --vault-password-file and --ask-vault-pass
    let o = run(kiln()
        .env("KAYOBE_VAULT_PASSWORD", PASSWORD)
        .arg("--vault-password-file")
        .arg(&pw)
        .args(["vault", "view"])
        .arg(&f11));
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains(
            "cannot specify --vault-password-file when $KAYOBE_VAULT_PASSWORD is specified"
        ),
        "{}",
        text(&o.stderr)
    );
    let o = run(kiln()
        .env("KAYOBE_VAULT_PASSWORD", PASSWORD)
        .args(["vault", "--ask-vault-pass", "view"])
        .arg(&f11));
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--ask-vault-pass"),
        "{}",
        text(&o.stderr)
    );
    let o = run(kiln()
        .arg("--vault-password-file")
        .arg(&pw)
        .args(["vault", "--ask-vault-pass", "view"])
        .arg(&f11));
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("cannot be used together"),
        "{}",
        text(&o.stderr)
    );
    // ...but the helper Kayobe itself passes is fine
    let helper = d.path().join("kayobe-vault-password-helper");
    std::fs::write(&helper, "#!/bin/sh\necho \"$KAYOBE_VAULT_PASSWORD\"\n").unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = ok(kiln()
        .env("KAYOBE_VAULT_PASSWORD", PASSWORD)
        .arg("--vault-password-file")
        .arg(&helper)
        .args(["vault", "view"])
        .arg(&f11));
    assert_eq!(text(&o.stdout), WHOLE);
    // ANSIBLE_VAULT_PASSWORD_FILE combines with KAYOBE_VAULT_PASSWORD: either password opens
    let other = d.path().join("other.pass");
    std::fs::write(&other, "something-else\n").unwrap();
    let o = ok(kiln()
        .env("KAYOBE_VAULT_PASSWORD", "wrong")
        .env("ANSIBLE_VAULT_PASSWORD_FILE", &pw)
        .args(["vault", "view"])
        .arg(&f11));
    assert_eq!(text(&o.stdout), WHOLE);
}

#[test]
fn whole_file_errors_name_the_file_and_write_nothing() {
    let Some(av) = ansible_vault() else { return };
    let d = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let pw = password_file(keys.path());
    let wrong = keys.path().join("wrong.pass");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let f = d.path().join("secrets.yml");
    std::fs::write(&f, WHOLE).unwrap();
    ok(Command::new(&av)
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(&pw)
        .arg(&f));
    let good = std::fs::read_to_string(&f).unwrap();
    let truncated = d.path().join("truncated.yml");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let corrupted = d.path().join("corrupted.yml");
    // flip one hex digit of the ciphertext: the HMAC no longer matches
    let mut c: Vec<char> = good.chars().collect();
    let i = c.len() - 10;
    c[i] = if c[i] == '0' { '1' } else { '0' };
    std::fs::write(&corrupted, c.into_iter().collect::<String>()).unwrap();
    let (_, agepub) = age_keygen(keys.path(), "id.txt");
    for (file, pass, why) in [
        (&f, &wrong, "does not open"),
        (&truncated, &pw, "corrupted"),
        (&corrupted, &pw, "corrupted|does not open"),
    ] {
        let name = file.file_name().unwrap().to_str().unwrap();
        let orig = std::fs::read(file).unwrap();
        for args in [
            vec!["decrypt"],
            vec!["view"],
            vec!["migrate", "-r", &agepub],
        ] {
            let before = listing(d.path());
            let o = run(kiln()
                .arg("--vault-password-file")
                .arg(pass)
                .arg("vault")
                .args(&args)
                .arg(file));
            assert_clean_failure(&o, name, &["Secret-"], d.path(), &before);
            assert!(
                why.split('|').any(|w| text(&o.stderr).contains(w)),
                "{args:?} {name}: {}",
                text(&o.stderr)
            );
            assert_eq!(std::fs::read(file).unwrap(), orig);
        }
    }
    // no password at all
    let before = listing(d.path());
    let o = run(kiln().args(["vault", "view"]).arg(&f));
    assert_clean_failure(&o, "secrets.yml", &["Secret-"], d.path(), &before);
    assert!(
        text(&o.stderr).contains("--vault-password-file"),
        "{}",
        text(&o.stderr)
    );
}

/// `ansible-vault encrypt_string` output for `name: value`.
fn encrypt_string(av: &Path, pw: &Path, name: &str, value: &str, vault_id: Option<&str>) -> String {
    let mut c = Command::new(av);
    c.arg("encrypt_string");
    match vault_id {
        Some(id) => c.arg("--vault-id").arg(format!("{id}@{}", pw.display())),
        None => c.arg("--vault-password-file").arg(pw),
    };
    let o = ok(c.args(["--name", name, value]));
    text(&o.stdout)
}

#[test]
fn inline_values_load_lazily_and_migrate_to_age() {
    let Some(av) = ansible_vault() else { return };
    if tool("age").is_none() || tool("age-keygen").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let pw = password_file(keys.path());
    let (ageid, agepub) = age_keygen(keys.path(), "id.txt");

    // a Kayobe-style vars file: comments, plain values, inline vaulted values (1.1 and 1.2),
    // one inside a list
    let reg = encrypt_string(
        &av,
        &pw,
        "kolla_docker_registry_password",
        "reg-Secret-2",
        None,
    );
    let mirror = encrypt_string(
        &av,
        &pw,
        "stackhpc_repo_mirror_password",
        "mirror-Secret-3",
        Some("lab"),
    );
    let listed = encrypt_string(&av, &pw, "x", "list-Secret-4", None);
    let listed_block: String = listed.lines().skip(1).map(|l| format!("  {l}\n")).collect();
    let text_in = format!(
        "---\n###############################################################################\n\
         # Registry credentials.\n\nkolla_docker_registry_username: builder  # who pushes\n{reg}\n\
         # Mirror credentials (vault id 'lab').\nstackhpc_repo_mirror_username: builder\n{mirror}\n\
         extra_secrets:\n  - plain-entry\n  - !vault |\n{listed_block}\n# trailing comment\n"
    );
    let f = d.path().join("kayobe-secrets.yml");
    std::fs::write(&f, &text_in).unwrap();

    // ansible itself reads the file and agrees on the values (the oracle)
    let ansible = av.with_file_name("ansible");
    let o = ok(Command::new(&ansible)
        .args(["-i", "localhost,", "-c", "local", "localhost", "-m", "debug", "-a"])
        .arg("msg={{ kolla_docker_registry_password }}|{{ stackhpc_repo_mirror_password }}|{{ extra_secrets[1] }}")
        .arg("-e")
        .arg(format!("@{}", f.display()))
        .arg("--vault-password-file")
        .arg(&pw)
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false"));
    assert!(
        text(&o.stdout).contains("reg-Secret-2|mirror-Secret-3|list-Secret-4"),
        "{}",
        text(&o.stdout)
    );

    // lazy: loads with no password, the vaulted places are Vault values
    let v = kiln::config::varsfile::read_vars_file(&f, &Keyring::empty()).unwrap();
    assert_eq!(
        v.get("kolla_docker_registry_username"),
        Some(&Value::str("builder"))
    );
    let Some(Value::Vault(vt)) = v.get("kolla_docker_registry_password") else {
        panic!("not a vault value: {v:?}")
    };
    // used without a password: fails, naming the file and line
    let e = Keyring::empty().decrypt_inline(vt).unwrap_err().to_string();
    assert!(e.contains("kayobe-secrets.yml:"), "{e}");
    assert!(e.contains("no vault password"), "{e}");
    // with the password: the values
    let ring = Keyring::from_opts(Some(&pw), &[], None).unwrap();
    let want = |v: &Value| {
        let r = ring.reveal(v).unwrap();
        assert!(
            !format!("{r:?}").contains("Secret-"),
            "a decrypted value printed: {r:?}"
        );
        r.expose_secrets()
    };
    let before = want(&v);
    assert_eq!(
        before.get("kolla_docker_registry_password"),
        Some(&Value::str("reg-Secret-2"))
    );
    assert_eq!(
        before.get("stackhpc_repo_mirror_password"),
        Some(&Value::str("mirror-Secret-3"))
    );
    assert_eq!(
        before
            .get("extra_secrets")
            .and_then(|l| l.as_list())
            .map(|l| l[1].clone()),
        Some(Value::str("list-Secret-4"))
    );

    // a wrong password on migrate: nothing written
    let wrong = keys.path().join("wrong.pass");
    std::fs::write(&wrong, "nope\n").unwrap();
    let names = listing(d.path());
    let o = run(kiln()
        .arg("--vault-password-file")
        .arg(&wrong)
        .args(["vault", "migrate", "-r", &agepub])
        .arg(&f));
    assert_clean_failure(&o, "kayobe-secrets.yml", &["Secret-"], d.path(), &names);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), text_in);

    // migrate: inline values become age, everything else is byte-identical
    ok(kiln()
        .arg("--vault-password-file")
        .arg(&pw)
        .args(["vault", "migrate", "-r", &agepub])
        .arg(&f));
    let out = std::fs::read_to_string(&f).unwrap();
    assert!(!out.contains("$ANSIBLE_VAULT"));
    assert_eq!(out.matches("-----BEGIN AGE ENCRYPTED FILE-----").count(), 3);
    let strip_blocks = |t: &str| -> Vec<String> {
        // the lines that are not inside a vault block
        let mut keep = Vec::new();
        let mut in_block: Option<usize> = None;
        for l in t.lines() {
            let ind = l.len() - l.trim_start().len();
            if let Some(p) = in_block {
                if l.trim().is_empty() || ind > p {
                    continue;
                }
                in_block = None;
            }
            if l.trim_end().ends_with("!vault |") {
                in_block = Some(ind);
            }
            keep.push(l.to_string());
        }
        keep
    };
    assert_eq!(
        strip_blocks(&out),
        strip_blocks(&text_in),
        "comments or structure changed:\n{out}"
    );
    // kiln reads the migrated values with the age identity (no vault password)
    let v2 = kiln::config::varsfile::read_vars_file(&f, &Keyring::empty()).unwrap();
    let ring2 = Keyring::from_opts(None, std::slice::from_ref(&ageid), None).unwrap();
    assert_eq!(ring2.reveal(&v2).unwrap().expose_secrets(), before);
    // each inline block is a complete age file: the age tool opens it
    let block: String = out
        .lines()
        .skip_while(|l| !l.starts_with("kolla_docker_registry_password: !vault |"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| format!("{}\n", l.trim()))
        .collect();
    let bf = keys.path().join("block.age");
    std::fs::write(&bf, block).unwrap();
    let o = ok(Command::new("age").arg("-d").arg("-i").arg(&ageid).arg(&bf));
    assert_eq!(text(&o.stdout), "reg-Secret-2");
    // migrating again finds nothing to do and changes nothing
    let o = ok(kiln()
        .arg("--vault-password-file")
        .arg(&pw)
        .args(["vault", "migrate", "-r", &agepub])
        .arg(&f));
    assert!(text(&o.stderr).contains("no ansible-vault content"));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), out);
}

#[test]
fn whole_files_migrate_to_age_that_the_age_tool_reads() {
    let Some(av) = ansible_vault() else { return };
    if tool("age").is_none() || tool("age-keygen").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let pw = password_file(keys.path());
    let (ageid, agepub) = age_keygen(keys.path(), "id.txt");
    std::fs::write(keys.path().join(".age-recipients"), format!("{agepub}\n")).unwrap();
    for (name, args) in [
        (
            "a11.yml",
            vec![
                "--vault-password-file".to_string(),
                pw.display().to_string(),
            ],
        ),
        (
            "a12.yml",
            vec!["--vault-id".into(), format!("prod@{}", pw.display())],
        ),
    ] {
        let f = d.path().join(name);
        std::fs::write(&f, WHOLE).unwrap();
        ok(Command::new(&av).arg("encrypt").args(&args).arg(&f));
        // recipients from <config>/.age-recipients
        ok(kiln()
            .env("KAYOBE_VAULT_PASSWORD", PASSWORD)
            .arg("--config-path")
            .arg(keys.path())
            .args(["vault", "migrate"])
            .arg(&f));
        let ct = std::fs::read_to_string(&f).unwrap();
        assert!(ct.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{ct}");
        let o = ok(Command::new("age").arg("-d").arg("-i").arg(&ageid).arg(&f));
        assert_eq!(
            text(&o.stdout),
            WHOLE,
            "comments and layout kept byte for byte"
        );
        let o = ok(kiln()
            .arg("--age-identity")
            .arg(&ageid)
            .args(["vault", "view"])
            .arg(&f));
        assert_eq!(text(&o.stdout), WHOLE);
    }
    // no recipients anywhere: a clear error, nothing changed
    let f = d.path().join("norecip.yml");
    std::fs::write(&f, WHOLE).unwrap();
    ok(Command::new(&av)
        .arg("encrypt")
        .arg("--vault-password-file")
        .arg(&pw)
        .arg(&f));
    let orig = std::fs::read(&f).unwrap();
    let o = run(kiln()
        .arg("--vault-password-file")
        .arg(&pw)
        .args(["vault", "migrate"])
        .arg(&f));
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no age recipients"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read(&f).unwrap(), orig);
}
