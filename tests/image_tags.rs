//! `kolla-image-tags.yml` (kiln::build::image_tags) against stackhpc-kayobe-config's own tool:
//! their `tools/kolla-images.py` (copied unchanged under tests/cases/stackhpc-kayobe-config/,
//! see SOURCE.md there) is the oracle for the image → container → tag-variable hierarchy
//! (`list-tags`) and for the file's rules (`validate()`, which every command runs first).

mod support;

use kiln::build::image_tags::{self, TagMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const NEW: &str = "2024.1-rocky-9-20261203T041000";

fn case_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/stackhpc-kayobe-config")
}

fn python() -> Option<String> {
    let mut c = vec![];
    c.push(
        support::ansible_venv()
            .join("bin/python3")
            .display()
            .to_string(),
    );
    c.push("python3".into());
    c.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import yaml"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// A copy of their tree with `tags_text` as the tags file.
fn tree(tags_text: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in ["tools/kolla-images.py", "etc/kayobe/pulp.yml", ".gitreview"] {
        let to = d.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(case_dir().join(f), to).unwrap();
    }
    std::fs::write(d.path().join("etc/kayobe/kolla-image-tags.yml"), tags_text).unwrap();
    d
}

/// Their tool's answer: (exit ok, stdout).
fn oracle(py: &str, tags_text: &str, args: &[&str]) -> (bool, String) {
    let d = tree(tags_text);
    let o = Command::new(py)
        .arg(d.path().join("tools/kolla-images.py"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn images(distro: &str) -> Vec<String> {
    let text = std::fs::read_to_string(case_dir().join("etc/kayobe/pulp.yml")).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let all: Vec<String> = serde_yaml::from_value(v["stackhpc_pulp_images_kolla"].clone()).unwrap();
    let unbuildable: Vec<String> =
        serde_yaml::from_value(v["stackhpc_kolla_unbuildable_images"][distro].clone()).unwrap();
    all.into_iter()
        .filter(|i| !unbuildable.contains(i))
        .collect()
}

/// kiln's `list-tags` for one distro: image → tags of its containers.
fn kiln_list_tags(tags: &TagMap, distro: &str) -> serde_yaml::Mapping {
    let mut m = serde_yaml::Mapping::new();
    for i in images(distro) {
        let mut ts: Vec<String> = Vec::new();
        for c in image_tags::containers_of(&i) {
            let t = image_tags::tag_of(tags, distro, &c).unwrap();
            if !ts.contains(&t) {
                ts.push(t);
            }
        }
        m.insert(i.into(), serde_yaml::to_value(ts).unwrap());
    }
    m
}

fn their_list_tags(py: &str, text: &str, distro: &str) -> serde_yaml::Mapping {
    let (ok, out) = oracle(py, text, &["--base-distros", distro, "list-tags"]);
    assert!(ok, "their validate() refused the file:\n{out}\n{text}");
    serde_yaml::from_str(&out).unwrap()
}

#[test]
fn hierarchy_matches_their_tool_on_their_file() {
    let Some(py) = python() else {
        println!("SKIP: no python3 with PyYAML (tests/setup installs python3-yaml)");
        return;
    };
    let text = std::fs::read_to_string(case_dir().join("etc/kayobe/kolla-image-tags.yml")).unwrap();
    let tags = image_tags::parse(Path::new("kolla-image-tags.yml"), &text).unwrap();
    for distro in ["rocky-9", "ubuntu-jammy"] {
        let theirs = their_list_tags(&py, &text, distro);
        let ours = kiln_list_tags(&tags, distro);
        assert!(theirs.len() > 50, "{}", theirs.len());
        assert_eq!(ours, theirs, "{distro}");
    }
    assert!(image_tags::validate(&tags, "2024.1", image_tags::SUPPORTED_BASE_DISTROS).is_empty());
}

fn comments(t: &str) -> Vec<&str> {
    t.lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect()
}

#[test]
fn updating_a_few_images_changes_only_them_as_their_tool_sees_it() {
    let Some(py) = python() else {
        println!("SKIP: no python3 with PyYAML (tests/setup installs python3-yaml)");
        return;
    };
    let text = std::fs::read_to_string(case_dir().join("etc/kayobe/kolla-image-tags.yml")).unwrap();
    let before_r = their_list_tags(&py, &text, "rocky-9");
    let before_u = their_list_tags(&py, &text, "ubuntu-jammy");
    let all = images("rocky-9");
    let path = Path::new("kolla-image-tags.yml");
    // A few images: one with its own entry's parent (nova), an exception image (haproxy: three
    // containers), one under `common` (kolla-toolbox), a renamed one (prometheus-v2-server).
    let pushed: Vec<String> = [
        "nova-api",
        "haproxy",
        "kolla-toolbox",
        "prometheus-v2-server",
        "ironic-api",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Without the full image list, a new entry (`haproxy`, which would also capture
    // `haproxy_ssh`) cannot be proven safe: refused with what to do.
    let e = image_tags::plan_update(path, &text, "rocky-9", NEW, &pushed, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("known_images"), "{e}");
    for known in [all.clone()] {
        let u = image_tags::plan_update(path, &text, "rocky-9", NEW, &pushed, &known).unwrap();
        assert!(u.changed());
        let after_r = their_list_tags(&py, &u.after, "rocky-9");
        for (img, tags) in &after_r {
            let img = img.as_str().unwrap();
            if pushed.iter().any(|p| p == img) {
                assert_eq!(tags, &serde_yaml::to_value([NEW]).unwrap(), "{img}");
            } else {
                assert_eq!(
                    Some(tags),
                    before_r.get(img),
                    "{img} changed but was not pushed"
                );
            }
        }
        assert_eq!(their_list_tags(&py, &u.after, "ubuntu-jammy"), before_u);
        // Ours agrees with theirs on the new file too.
        let t = image_tags::parse(path, &u.after).unwrap();
        assert_eq!(kiln_list_tags(&t, "rocky-9"), after_r);
        // Comments and the order of the existing entries are kept.
        assert_eq!(comments(&u.after), comments(&text));
        let old_keys: Vec<String> = image_tags::parse(path, &text)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let new_keys: Vec<String> = t.keys().cloned().collect();
        assert_eq!(&new_keys[..old_keys.len()], &old_keys[..]);
        // Lines not about the pushed images are byte-identical: the diff only touches those.
        let d = u.diff("kolla-image-tags.yml");
        for l in d
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        {
            assert!(l.contains("rocky-9"), "a non-rocky line changed: {l}");
        }
        // Again: nothing to do.
        let u2 = image_tags::plan_update(path, &u.after, "rocky-9", NEW, &pushed, &known).unwrap();
        assert!(!u2.changed());
    }
    // Every image pushed and known: the shared default moves, no per-image entries are added.
    let u = image_tags::plan_update(path, &text, "rocky-9", NEW, &all, &all).unwrap();
    let t = image_tags::parse(path, &u.after).unwrap();
    assert_eq!(t["openstack"]["rocky-9"], NEW);
    assert_eq!(t.len(), image_tags::parse(path, &text).unwrap().len());
    for (img, tags) in their_list_tags(&py, &u.after, "rocky-9") {
        assert_eq!(tags, serde_yaml::to_value([NEW]).unwrap(), "{img:?}");
    }
}

#[test]
fn validation_messages_match_their_validate() {
    let Some(py) = python() else {
        println!("SKIP: no python3 with PyYAML (tests/setup installs python3-yaml)");
        return;
    };
    let bad = "kolla_image_tags:\n  Nova:\n    rocky-9: 2024.1-rocky-9-20240101T000000\n  heat:\n    centos-8: 2024.1-centos-8-20240101T000000\n    rocky-9: 2024.1-ubuntu-jammy-20240101T000000\n  nova:\n    ubuntu-jammy: latest\n";
    let (ok, out) = oracle(&py, bad, &["list-tag-vars"]);
    assert!(!ok);
    let theirs: Vec<&str> = out.lines().skip(1).collect();
    let tags = image_tags::parse(Path::new("f"), bad).unwrap();
    let ours = image_tags::validate(&tags, "2024.1", image_tags::SUPPORTED_BASE_DISTROS);
    assert_eq!(ours, theirs);
    // A bad tag for the release: the update is refused by the module/CLI through validate.
    let u = image_tags::plan_update(
        Path::new("f"),
        "kolla_image_tags:\n  openstack:\n    rocky-9: 2024.1-rocky-9-20240101T000000\n",
        "rocky-9",
        "latest",
        &["nova-api".into()],
        &["nova-api".into()],
    )
    .unwrap();
    let t = image_tags::parse(Path::new("f"), &u.after).unwrap();
    assert_eq!(
        image_tags::validate(&t, "2024.1", image_tags::SUPPORTED_BASE_DISTROS).len(),
        1
    );
}

#[test]
fn bad_files_are_clear_errors_and_writes_are_atomic() {
    let e = image_tags::parse(
        Path::new("/cfg/kolla-image-tags.yml"),
        "kolla_image_tags:\n  openstack: [\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("/cfg/kolla-image-tags.yml") && e.contains("line"),
        "{e}"
    );
    let e = image_tags::parse(Path::new("f.yml"), "other: 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no `kolla_image_tags`"), "{e}");
    // Flow style cannot be edited in place: refused, not mangled.
    let flow = "kolla_image_tags: {openstack: {rocky-9: 2024.1-rocky-9-20240101T000000}}\n";
    let e = image_tags::plan_update(
        Path::new("f.yml"),
        flow,
        "rocky-9",
        NEW,
        &["nova-api".into()],
        &[],
    );
    assert!(e.is_err());
    // write_atomic keeps the mode and leaves no temporary file.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("kolla-image-tags.yml");
    std::fs::write(&p, "x").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    image_tags::write_atomic(&p, b"kolla_image_tags: {}\n").unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
}
