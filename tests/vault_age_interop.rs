//! kiln's age files against the real `age` command-line tool (Debian package `age`), with keys made
//! at test time by `age-keygen` and `ssh-keygen`: files kiln writes open with `age`, files `age`
//! writes open with kiln — X25519, ssh-ed25519 and ssh-rsa recipients, armored and binary, and
//! passphrase (scrypt) files (typed into `age` on a pseudo-terminal made by `script`, since age
//! reads passphrases only from a terminal). Then the failure cases (wrong identity, other
//! recipients, truncated, corrupted, wrong passphrase): a non-zero exit, an error naming the
//! file, no plaintext printed, nothing written. Then `edit` with a scripted `$EDITOR`.

mod vault_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use vault_support::*;

const PLAIN: &str = "---\n# lab secrets\nkolla_docker_registry_password: s3cr3t-registry\n";

fn have_age() -> bool {
    tool("age").is_some() && tool("age-keygen").is_some() && tool("ssh-keygen").is_some()
}

#[test]
fn kiln_encrypts_and_age_decrypts() {
    if !have_age() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (xid, xpub) = age_keygen(d.path(), "x.txt");
    let (edid, edpub) = ssh_keygen(d.path(), "ed", "ed25519");
    let (rsaid, rsapub) = ssh_keygen(d.path(), "rsa", "rsa");
    for (id, pubkey) in [(&xid, &xpub), (&edid, &edpub), (&rsaid, &rsapub)] {
        for armor in [false, true] {
            let f = d.path().join("s.yml");
            std::fs::write(&f, PLAIN).unwrap();
            let mut c = kiln();
            c.args(["vault", "encrypt", "-r", pubkey]).arg(&f);
            if armor {
                c.arg("--armor");
            }
            ok(&mut c);
            let ct = std::fs::read(&f).unwrap();
            assert_eq!(ct.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"), armor);
            assert!(!text(&ct).contains("s3cr3t"));
            let o = ok(Command::new("age").arg("-d").arg("-i").arg(id).arg(&f));
            assert_eq!(
                text(&o.stdout),
                PLAIN,
                "age could not read kiln's file for {pubkey} armor={armor}"
            );
        }
    }
    // several recipients at once: each identity opens the file
    let f = d.path().join("multi.age");
    std::fs::write(d.path().join("plain"), PLAIN).unwrap();
    ok(kiln()
        .args([
            "vault", "encrypt", "-r", &xpub, "-r", &edpub, "-r", &rsapub, "-o",
        ])
        .arg(&f)
        .arg(d.path().join("plain")));
    for id in [&xid, &edid, &rsaid] {
        let o = ok(Command::new("age").arg("-d").arg("-i").arg(id).arg(&f));
        assert_eq!(text(&o.stdout), PLAIN);
    }
}

#[test]
fn age_encrypts_and_kiln_decrypts() {
    if !have_age() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (xid, xpub) = age_keygen(d.path(), "x.txt");
    let (edid, _) = ssh_keygen(d.path(), "ed", "ed25519");
    let (rsaid, _) = ssh_keygen(d.path(), "rsa", "rsa");
    let plain = d.path().join("plain.yml");
    std::fs::write(&plain, PLAIN).unwrap();
    let cases: Vec<(&Path, Vec<String>)> = vec![
        (&xid, vec!["-r".into(), xpub.clone()]),
        (
            &edid,
            vec![
                "-R".into(),
                edid.with_extension("pub").display().to_string(),
            ],
        ),
        (
            &rsaid,
            vec![
                "-R".into(),
                rsaid.with_extension("pub").display().to_string(),
            ],
        ),
    ];
    for (id, args) in &cases {
        for armor in [false, true] {
            let f = d.path().join("by-age.age");
            let mut c = Command::new("age");
            c.args(args).arg("-o").arg(&f);
            if armor {
                c.arg("-a");
            }
            ok(c.arg(&plain));
            // view, decrypt to stdout, and the vars-file reader all see the plaintext
            let o = ok(kiln()
                .arg("--age-identity")
                .arg(id)
                .args(["vault", "view"])
                .arg(&f));
            assert_eq!(text(&o.stdout), PLAIN, "{args:?} armor={armor}");
            let o = ok(kiln()
                .arg("--age-identity")
                .arg(id)
                .args(["vault", "decrypt", "-o", "-"])
                .arg(&f));
            assert_eq!(text(&o.stdout), PLAIN);
            let keys = kiln::vault::Keyring::from_opts(None, &[id.to_path_buf()], None).unwrap();
            let v = kiln::config::varsfile::read_vars_file(&f, &keys).unwrap();
            assert_eq!(
                format!("{v:?}"),
                "{\"kolla_docker_registry_password\": ********}"
            );
            assert_eq!(
                v.expose_secrets()
                    .get("kolla_docker_registry_password")
                    .and_then(|v| v.as_str()),
                Some("s3cr3t-registry")
            );
        }
    }
    // KILN_AGE_IDENTITY works like --age-identity
    let f = d.path().join("env.age");
    ok(Command::new("age")
        .args(["-r", &xpub, "-o"])
        .arg(&f)
        .arg(&plain));
    let o = ok(kiln()
        .env("KILN_AGE_IDENTITY", &xid)
        .args(["vault", "view"])
        .arg(&f));
    assert_eq!(text(&o.stdout), PLAIN);
}

#[test]
fn passphrase_files_both_ways() {
    if !have_age() || tool("script").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().display().to_string();
    std::fs::write(d.path().join("plain.yml"), PLAIN).unwrap();
    // age -p (passphrase typed on a pty) -> kiln
    let o = on_tty(
        &format!("age -p -a -o {dir}/by-age.age {dir}/plain.yml"),
        &["pass-word-1", "pass-word-1"],
    );
    let f = d.path().join("by-age.age");
    if !f.exists() {
        eprintln!(
            "SKIP: could not drive `age -p` through `script` here: {}",
            text(&o.stdout)
        );
        return;
    }
    let o = ok(kiln()
        .env("KILN_AGE_PASSPHRASE", "pass-word-1")
        .args(["vault", "view"])
        .arg(&f));
    assert_eq!(text(&o.stdout), PLAIN);
    // wrong passphrase: clear error, nothing printed
    let before = listing(d.path());
    let o = run(kiln()
        .env("KILN_AGE_PASSPHRASE", "wrong")
        .args(["vault", "decrypt"])
        .arg(&f));
    assert_clean_failure(&o, "by-age.age", &["s3cr3t"], d.path(), &before);
    assert!(
        text(&o.stderr).contains("wrong passphrase"),
        "{}",
        text(&o.stderr)
    );
    // no passphrase and no terminal: a clear error, not a hang
    let o = run(kiln().args(["vault", "view"]).arg(&f));
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("KILN_AGE_PASSPHRASE"),
        "{}",
        text(&o.stderr)
    );
    // kiln -p -> age (passphrase typed on a pty)
    let k = d.path().join("by-kiln.age");
    ok(kiln()
        .env("KILN_AGE_PASSPHRASE", "pass-word-2")
        .args(["vault", "encrypt", "-p", "--scrypt-work-factor", "12", "-o"])
        .arg(&k)
        .arg(d.path().join("plain.yml")));
    on_tty(
        &format!("age -d -o {dir}/out.yml {dir}/by-kiln.age"),
        &["pass-word-2"],
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("out.yml")).unwrap(),
        PLAIN
    );
}

#[test]
fn shipped_ci_builder_secrets_open_with_the_lab_identity() {
    let env = Path::new(env!("CARGO_MANIFEST_DIR")).join("environments/ci-builder");
    let o = ok(kiln()
        .env("KILN_AGE_PASSPHRASE", "kiln-lab-throwaway")
        .arg("--age-identity")
        .arg(env.join("lab-identity.age"))
        .args(["vault", "view"])
        .arg(env.join("secrets.yml.age")));
    let v = kiln::yaml::load(&text(&o.stdout), "secrets.yml").unwrap();
    for k in [
        "secrets_pulp_password",
        "stackhpc_repo_mirror_password",
        "kolla_docker_registry_password",
    ] {
        assert!(
            v.get(k)
                .and_then(|v| v.as_str())
                .is_some_and(|s| !s.is_empty()),
            "{k} missing"
        );
    }
    // the lab recipients file lists the key the file is encrypted to: edit can re-encrypt
    let r = std::fs::read_to_string(env.join(".age-recipients")).unwrap();
    assert!(r.lines().any(|l| l.starts_with("age1")));
    if tool("age").is_some() && tool("script").is_some() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out.yml");
        on_tty(
            &format!(
                "age -d -i {} -o {} {}",
                env.join("lab-identity.age").display(),
                out.display(),
                env.join("secrets.yml.age").display()
            ),
            &["kiln-lab-throwaway"],
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap_or_default(),
            text(&o.stdout),
            "age CLI reads the shipped secrets too"
        );
    }
}

#[test]
fn bad_input_fails_clearly_and_writes_nothing() {
    if !have_age() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (xid, xpub) = age_keygen(keys.path(), "x.txt");
    let (otherid, _) = age_keygen(keys.path(), "other.txt");
    let (edid, _) = ssh_keygen(keys.path(), "ed", "ed25519");
    let plain = keys.path().join("plain.yml");
    std::fs::write(&plain, PLAIN).unwrap();
    let good = d.path().join("good.age");
    ok(Command::new("age")
        .args(["-r", &xpub, "-o"])
        .arg(&good)
        .arg(&plain));
    let bytes = std::fs::read(&good).unwrap();
    let truncated = d.path().join("truncated.age");
    std::fs::write(&truncated, &bytes[..bytes.len() - 20]).unwrap();
    let corrupted = d.path().join("corrupted.age");
    let mut c = bytes.clone();
    let n = c.len();
    c[n - 5] ^= 0x40;
    std::fs::write(&corrupted, &c).unwrap();
    let header_cut = d.path().join("headercut.age");
    std::fs::write(&header_cut, &bytes[..40]).unwrap();

    let cases: Vec<(&Path, &Path, &str)> = vec![
        (&good, &otherid, "other recipients"),
        (&good, &edid, "other recipients"),
        (&truncated, &xid, "corrupted"),
        (&corrupted, &xid, "corrupted"),
        (&header_cut, &xid, "corrupted"),
    ];
    for (file, id, why) in cases {
        let name = file.file_name().unwrap().to_str().unwrap();
        let orig = std::fs::read(file).unwrap();
        for args in [
            vec!["decrypt"],
            vec!["decrypt", "-o", "plain-out.yml"],
            vec!["view"],
            vec!["rekey", "-r", &xpub],
        ] {
            let before = listing(d.path());
            let o = run(kiln()
                .current_dir(d.path())
                .arg("--age-identity")
                .arg(id)
                .arg("vault")
                .args(&args)
                .arg(file));
            assert_clean_failure(&o, name, &["s3cr3t"], d.path(), &before);
            assert!(
                text(&o.stderr).contains(why),
                "{args:?} {name}: {}",
                text(&o.stderr)
            );
            assert_eq!(std::fs::read(file).unwrap(), orig, "{name} changed");
        }
    }
    // no identity at all
    let before = listing(d.path());
    let o = run(kiln().args(["vault", "decrypt"]).arg(&good));
    assert_clean_failure(&o, "good.age", &["s3cr3t"], d.path(), &before);
    // a decrypt of several files writes none when one fails
    let copy = d.path().join("copy.age");
    std::fs::write(&copy, &bytes).unwrap();
    let before = listing(d.path());
    let o = run(kiln()
        .arg("--age-identity")
        .arg(&xid)
        .args(["vault", "decrypt"])
        .arg(&copy)
        .arg(&corrupted));
    assert_clean_failure(&o, "corrupted.age", &["s3cr3t"], d.path(), &before);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        bytes,
        "first file was decrypted although the second failed"
    );
    // the explicit decrypt: in place, mode 0600
    ok(kiln()
        .arg("--age-identity")
        .arg(&xid)
        .args(["vault", "decrypt"])
        .arg(&copy));
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), PLAIN);
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// An `$EDITOR` script: records the file it was given and its directory's mode, then runs `action`.
fn editor_script(dir: &Path, action: &str) -> std::path::PathBuf {
    let p = dir.join("editor.sh");
    let rec = dir.join("record");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" > {rec}\nstat -c '%a' \"$(dirname \"$1\")\" >> {rec}\nstat -c '%a' \"$1\" >> {rec}\n{action}\n",
            rec = rec.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn edit_reencrypts_to_the_same_recipients_and_never_leaves_plaintext() {
    if !have_age() {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    let cfg = tempfile::tempdir().unwrap();
    let (aid, apub) = age_keygen(tools.path(), "a.txt");
    let (bid, bpub) = ssh_keygen(tools.path(), "b", "ed25519");
    std::fs::write(
        cfg.path().join(".age-recipients"),
        format!("# team\n{apub}\n{bpub}\n"),
    )
    .unwrap();
    let f = cfg.path().join("secrets.yml.age");
    std::fs::write(tools.path().join("plain"), PLAIN).unwrap();
    ok(kiln()
        .arg("--config-path")
        .arg(cfg.path())
        .args(["vault", "encrypt", "-a", "-o"])
        .arg(&f)
        .arg(tools.path().join("plain")));

    // success: the editor appends a line
    let ed = editor_script(tools.path(), "printf 'added: yes\\n' >> \"$1\"");
    ok(kiln()
        .env("EDITOR", &ed)
        .arg("--config-path")
        .arg(cfg.path())
        .arg("--age-identity")
        .arg(&aid)
        .args(["vault", "edit"])
        .arg(&f));
    let rec = std::fs::read_to_string(tools.path().join("record")).unwrap();
    let mut lines = rec.lines();
    let tmp = lines.next().unwrap().to_string();
    assert_eq!(lines.next(), Some("700"), "temp dir mode");
    assert_eq!(lines.next(), Some("600"), "temp file mode");
    assert!(
        !Path::new(&tmp).exists(),
        "plaintext temp {tmp} left behind"
    );
    assert!(
        !Path::new(&tmp).parent().unwrap().exists(),
        "temp dir left behind"
    );
    if Path::new("/dev/shm").is_dir() && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        assert!(tmp.starts_with("/dev/shm/"), "temp not on tmpfs: {tmp}");
    }
    let ct = std::fs::read(&f).unwrap();
    assert!(
        ct.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
        "edit kept the armor"
    );
    for id in [&aid, &bid] {
        let o = ok(Command::new("age").arg("-d").arg("-i").arg(id).arg(&f));
        assert_eq!(
            text(&o.stdout),
            format!("{PLAIN}added: yes\n"),
            "recipient {} lost",
            id.display()
        );
    }

    // failure: the editor scribbles and exits 1
    let ed = editor_script(tools.path(), "printf 'broken\\n' > \"$1\"; exit 1");
    let before_bytes = std::fs::read(&f).unwrap();
    let before = listing(cfg.path());
    let o = run(kiln()
        .env("EDITOR", &ed)
        .arg("--config-path")
        .arg(cfg.path())
        .arg("--age-identity")
        .arg(&aid)
        .args(["vault", "edit"])
        .arg(&f));
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("failed"), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("s3cr3t") && !text(&o.stdout).contains("s3cr3t"));
    assert_eq!(
        std::fs::read(&f).unwrap(),
        before_bytes,
        "original changed by a failed edit"
    );
    assert_eq!(listing(cfg.path()), before);
    let tmp = std::fs::read_to_string(tools.path().join("record"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        !Path::new(&tmp).exists(),
        "plaintext temp {tmp} left behind after editor failure"
    );

    // recipients that differ from the file's: refused before the editor runs
    let (_, cpub) = age_keygen(tools.path(), "c.txt");
    std::fs::remove_file(tools.path().join("record")).unwrap();
    let o = run(kiln()
        .env("EDITOR", &ed)
        .arg("--age-identity")
        .arg(&aid)
        .args(["vault", "edit", "-r", &cpub])
        .arg(&f));
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("rekey"), "{}", text(&o.stderr));
    assert!(
        !tools.path().join("record").exists(),
        "the editor ran although the recipients differ"
    );
    assert_eq!(std::fs::read(&f).unwrap(), before_bytes);

    // create: a new file through the editor, to the configured recipients
    let ed = editor_script(tools.path(), "printf 'new: value\\n' > \"$1\"");
    let n = cfg.path().join("new.yml.age");
    ok(kiln()
        .env("EDITOR", &ed)
        .arg("--config-path")
        .arg(cfg.path())
        .args(["vault", "create"])
        .arg(&n));
    let o = ok(Command::new("age").arg("-d").arg("-i").arg(&bid).arg(&n));
    assert_eq!(text(&o.stdout), "new: value\n");
}

/// Issue 19 item 4: age-encrypted vars files by age's own naming (`*.yml.age`), made by the real
/// `age` CLI, are read from group_vars/host_vars as files and inside directories; a file kiln does
/// not read in a vars directory is named at `-v` (and not at the default verbosity); with the
/// wrong identity the error names the file and shows no plaintext.
#[test]
fn age_named_vars_files_are_read() {
    if !have_age() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let (xid, xpub) = age_keygen(root, "x.txt");
    let enc = |plain: &str, out: &Path| {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let p = root.join("plain.tmp");
        std::fs::write(&p, plain).unwrap();
        ok(Command::new("age")
            .args(["-r", &xpub, "-o"])
            .arg(out)
            .arg(&p));
        std::fs::remove_file(&p).unwrap();
    };
    std::fs::write(root.join("inv.ini"), "[web]\nw1\n[db]\nd1\n").unwrap();
    // a directory: group_vars/all/{plain.yml, secrets.yml.age, notes.txt, .hidden.yml}
    std::fs::create_dir_all(root.join("group_vars/all")).unwrap();
    std::fs::write(root.join("group_vars/all/plain.yml"), "plain_var: p\n").unwrap();
    enc(
        "dir_secret: s3cr3t-dir\n",
        &root.join("group_vars/all/secrets.yml.age"),
    );
    std::fs::write(root.join("group_vars/all/notes.txt"), "not_read: 1\n").unwrap();
    // files: group_vars/web.yml.age, host_vars/w1.yaml.age
    enc(
        "web_secret: s3cr3t-web\n",
        &root.join("group_vars/web.yml.age"),
    );
    enc(
        "host_secret: s3cr3t-host\n",
        &root.join("host_vars/w1.yaml.age"),
    );
    // both db.yml and db.yml.age: Ansible's first-found rule keeps db.yml, kiln says so at -v
    std::fs::write(root.join("group_vars/db.yml"), "db_var: plain\n").unwrap();
    enc(
        "db_secret: s3cr3t-db\n",
        &root.join("group_vars/db.yml.age"),
    );

    let vars = |host: &str, extra: &[&str]| {
        let mut c = kiln();
        c.current_dir(root)
            .args(["-i", "inv.ini", "--age-identity"])
            .arg(&xid)
            .args(extra)
            .args(["vars", host]);
        run(&mut c)
    };
    let o = vars("w1", &[]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    for k in ["plain_var", "dir_secret", "web_secret", "host_secret"] {
        assert!(out.contains(k), "{k} missing from kiln vars w1:\n{out}");
    }
    assert!(!out.contains("not_read"), "{out}");
    // values from encrypted files are secrets: not printed
    assert!(!out.contains("s3cr3t"), "{out}");
    assert!(
        !text(&o.stderr).contains("not read as a vars file"),
        "default verbosity stays quiet: {}",
        text(&o.stderr)
    );
    let o = vars("w1", &["-v"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("notes.txt: not read as a vars file") && err.contains(".yml.age"),
        "{err}"
    );
    let o = vars("d1", &["-v"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(
        out.contains("db_var") && !out.contains("db_secret"),
        "{out}"
    );
    assert!(
        err.contains("db.yml.age: not read as a vars file") && err.contains("db.yml is read"),
        "{err}"
    );
    // the wrong identity: the host fails with the file named, no plaintext anywhere
    let (other, _) = age_keygen(root, "other.txt");
    let mut c = kiln();
    c.current_dir(root)
        .args(["-i", "inv.ini", "--age-identity"])
        .arg(&other)
        .args(["vars", "w1"]);
    let o = run(&mut c);
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(!o.status.success(), "{all}");
    assert!(
        all.contains("secrets.yml.age") || all.contains("web.yml.age"),
        "{all}"
    );
    assert!(!all.contains("s3cr3t"), "{all}");
}
