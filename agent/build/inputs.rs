//! Input hashes: build an image only if what goes into it changed (`--if-changed`).
//!
//! Each image's hash covers what decides its content, each part hashed on its own so that a plan
//! can say *which* input changed:
//!
//! - `dockerfile`: the Dockerfile kolla rendered (`kolla-build --template-only`), normalised: the
//!   run's tag is replaced by a placeholder (every run has a new timestamped tag) and kolla's daily
//!   `build-date="YYYYMMDD"` label is removed;
//! - `context`: every other file of the image's build context (path, executable bit, content);
//! - `sources`: the resolved sources the caller gives for the image (a git branch resolved to its
//!   commit, a URL source by version and checksum);
//! - `conf`: the merged build configuration and build arguments, the same for every image of a run;
//! - `base`: for an image whose `FROM` is not another image of the set, that base image's digest
//!   read from its registry (a moving `:9` tag that now names new content rebuilds everything);
//! - `platform`: e.g. `linux/arm64`;
//! - `parent`: the parent image's input hash, so that a change anywhere above an image changes it
//!   too (a Merkle chain through `FROM`).
//!
//! The hash is stored in the build record and as the image label `kiln.input-hash`. This module
//! reads a rendered docker directory and compares hash sets; it knows nothing of engines or SSH.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The label kiln stores each image's input hash under.
pub const INPUT_HASH_LABEL: &str = "kiln.input-hash";

/// Bumped when what goes into a hash changes, so old records never compare equal by accident.
const SCHEME: &str = "kiln-input-v1";

/// What the caller knows about a run, beyond the rendered files.
#[derive(Debug, Clone, Default)]
pub struct RunInputs {
    /// The run's image tag, replaced by a placeholder in Dockerfiles.
    pub tag: String,
    /// The merged build configuration and arguments (e.g. kolla-build.conf and the argv).
    pub conf: String,
    /// The platform built for, e.g. `linux/amd64`.
    pub platform: String,
    /// Digest of each external base image, keyed by the reference written in `FROM`.
    pub base_digests: BTreeMap<String, String>,
    /// Resolved sources per image name.
    pub sources: BTreeMap<String, String>,
}

/// One image's inputs: the hash of each part and the combined hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInputs {
    pub hash: String,
    pub parent: Option<String>,
    pub parts: BTreeMap<String, String>,
}

/// The rendered image set: image name → inputs, plus each image's parent name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSet {
    pub images: BTreeMap<String, ImageInputs>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: {source} (is this the docker directory `kolla-build --template-only --work-dir DIR` wrote, DIR/docker?)")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no FROM line; a rendered Dockerfile starts with one")]
    NoFrom { path: PathBuf },
    #[error("{image}/Dockerfile: FROM {reference} is an external base image, but its digest was not given (read it from the registry first)")]
    NoBaseDigest { image: String, reference: String },
    #[error("images {0} name each other as parents (a FROM cycle)")]
    Cycle(String),
}

/// One image found in the rendered tree, before hashing.
struct Rendered {
    dir: PathBuf,
    from: String,
    dockerfile: String,
}

/// The rendered tree reduced to what the hashes need: per image its `FROM` reference and the
/// hashes of its normalised Dockerfile and of its build context. The same for every run whose
/// templates, build conf and kolla are the same, so a run can keep it (`--if-changed`'s render
/// cache) and skip kolla-build `--template-only`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scanned {
    pub images: BTreeMap<String, ScannedImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannedImage {
    pub from: String,
    pub dockerfile: String,
    pub context: String,
}

/// Reads every image (a folder holding a `Dockerfile`) under `docker_dir`.
pub fn scan(docker_dir: &Path, tag: &str) -> Result<Scanned, InputError> {
    let mut found = BTreeMap::new();
    find_images(docker_dir, &mut found)?;
    let mut out = Scanned::default();
    for (name, r) in found {
        out.images.insert(
            name,
            ScannedImage {
                dockerfile: sha(normalise(&r.dockerfile, tag).as_bytes()),
                context: context_hash(&r.dir)?,
                from: r.from,
            },
        );
    }
    Ok(out)
}

/// Finds every image (a folder holding a `Dockerfile`) under `docker_dir` and hashes it.
pub fn hash_docker_dir(docker_dir: &Path, run: &RunInputs) -> Result<InputSet, InputError> {
    hash_scanned(&scan(docker_dir, &run.tag)?, run)
}

/// The input hashes of a scanned tree for this run.
pub fn hash_scanned(scanned: &Scanned, run: &RunInputs) -> Result<InputSet, InputError> {
    let names: Vec<String> = scanned.images.keys().cloned().collect();
    let mut parents = BTreeMap::new();
    for (name, r) in &scanned.images {
        parents.insert(name.clone(), parent_of(&r.from, &names, name));
    }
    let mut set = InputSet::default();
    // Hash parents before children; anything left over is a cycle.
    let mut pending: Vec<String> = names.clone();
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for name in pending {
            let parent = parents[&name].clone();
            let parent_hash = match &parent {
                Some(p) => match set.images.get(p) {
                    Some(i) => Some(i.hash.clone()),
                    None => {
                        rest.push(name);
                        continue;
                    }
                },
                None => None,
            };
            let inputs = hash_image(&name, &scanned.images[&name], parent, parent_hash, run)?;
            set.images.insert(name, inputs);
        }
        if rest.len() == before {
            return Err(InputError::Cycle(rest.join(", ")));
        }
        pending = rest;
    }
    Ok(set)
}

/// The external base images the rendered tree starts from (`FROM` lines that name no image of the
/// set): their digests are read from the registry before hashing.
pub fn external_bases(docker_dir: &Path) -> Result<Vec<String>, InputError> {
    Ok(scanned_bases(&scan(docker_dir, "")?))
}

impl Scanned {
    /// Only the images whose name a regex finds (kolla's `re.search`; all when none) and their
    /// ancestors: what a run's hashes need (other images' bases need no digest).
    pub fn matching(&self, regexes: &[String]) -> Result<Scanned, String> {
        let res: Vec<regex::Regex> = regexes
            .iter()
            .map(|r| regex::Regex::new(r).map_err(|e| format!("image regex {r:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let names: Vec<String> = self.images.keys().cloned().collect();
        let mut keep = std::collections::BTreeSet::new();
        for n in &names {
            if !(res.is_empty() || res.iter().any(|r| r.is_match(n))) {
                continue;
            }
            let mut cur = Some(n.clone());
            while let Some(c) = cur {
                if !keep.insert(c.clone()) {
                    break;
                }
                cur = parent_of(&self.images[&c].from, &names, &c);
            }
        }
        Ok(Scanned {
            images: self
                .images
                .iter()
                .filter(|(n, _)| keep.contains(*n))
                .map(|(n, i)| (n.clone(), i.clone()))
                .collect(),
        })
    }
}

/// [`external_bases`] of a scanned tree.
pub fn scanned_bases(scanned: &Scanned) -> Vec<String> {
    let names: Vec<String> = scanned.images.keys().cloned().collect();
    let mut out: Vec<String> = scanned
        .images
        .iter()
        .filter(|(n, r)| parent_of(&r.from, &names, n).is_none())
        .map(|(_, r)| r.from.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn find_images(dir: &Path, found: &mut BTreeMap<String, Rendered>) -> Result<(), InputError> {
    let io = |source| InputError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let dockerfile = dir.join("Dockerfile");
    if dockerfile.is_file() {
        let text = std::fs::read_to_string(&dockerfile).map_err(|source| InputError::Io {
            path: dockerfile.clone(),
            source,
        })?;
        let from = text
            .lines()
            .map(str::trim)
            .find_map(|l| {
                let mut w = l.split_whitespace();
                let first = w.next()?;
                first.eq_ignore_ascii_case("FROM").then(|| {
                    // `FROM [--platform=..] image [AS name]`
                    w.find(|x| !x.starts_with("--")).unwrap_or("").to_string()
                })
            })
            .filter(|f| !f.is_empty())
            .ok_or_else(|| InputError::NoFrom {
                path: dockerfile.clone(),
            })?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        found.insert(
            name,
            Rendered {
                dir: dir.to_path_buf(),
                from,
                dockerfile: text,
            },
        );
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ft = e.file_type().map_err(io)?;
        if ft.is_dir() && e.file_name() != "__pycache__" {
            find_images(&e.path(), found)?;
        }
    }
    Ok(())
}

/// The image of the set that `FROM reference` names: the repository's last path component, without
/// tag or digest, is the image name, or ends with `-<name>` (an image prefix such as `rocky-source-`).
/// The longest matching name wins (`nova-base` over `base`).
fn parent_of(reference: &str, names: &[String], own: &str) -> Option<String> {
    let repo = reference.split('@').next().unwrap_or(reference);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let last = last.split(':').next().unwrap_or(last);
    names
        .iter()
        .filter(|n| n.as_str() != own)
        .filter(|n| last == n.as_str() || last.ends_with(&format!("-{n}")))
        .max_by_key(|n| n.len())
        .cloned()
}

fn hash_image(
    name: &str,
    r: &ScannedImage,
    parent: Option<String>,
    parent_hash: Option<String>,
    run: &RunInputs,
) -> Result<ImageInputs, InputError> {
    let mut parts = BTreeMap::new();
    parts.insert("dockerfile".into(), r.dockerfile.clone());
    parts.insert("context".into(), r.context.clone());
    parts.insert(
        "sources".into(),
        sha(run
            .sources
            .get(name)
            .map(String::as_str)
            .unwrap_or("")
            .as_bytes()),
    );
    parts.insert(
        "conf".into(),
        sha(normalise(&run.conf, &run.tag).as_bytes()),
    );
    parts.insert("platform".into(), sha(run.platform.as_bytes()));
    match parent_hash {
        Some(h) => {
            parts.insert("parent".into(), h);
        }
        None => {
            let digest = run
                .base_digests
                .get(&r.from)
                .ok_or_else(|| InputError::NoBaseDigest {
                    image: name.to_string(),
                    reference: r.from.clone(),
                })?;
            parts.insert("base".into(), sha(digest.as_bytes()));
        }
    }
    let mut h = Sha256::new();
    h.update(SCHEME.as_bytes());
    for (k, v) in &parts {
        h.update(format!("\n{k}={v}").as_bytes());
    }
    Ok(ImageInputs {
        hash: format!("sha256:{}", hex::encode(h.finalize())),
        parent,
        parts,
    })
}

/// The Dockerfile (or conf) as it would be rendered on any day with any tag.
pub fn normalise(text: &str, tag: &str) -> String {
    static BUILD_DATE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"\s*build-date="[^"]*""#).unwrap());
    let text = if tag.is_empty() {
        text.to_string()
    } else {
        text.replace(tag, "{{tag}}")
    };
    BUILD_DATE.replace_all(&text, "").into_owned()
}

/// Every file of the build context except the Dockerfile (hashed on its own), the template it was
/// rendered from, caches, and folders that are images of their own.
fn context_hash(dir: &Path) -> Result<String, InputError> {
    let mut files = Vec::new();
    collect_context(dir, dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for (rel, exec, digest) in files {
        h.update(format!("{rel}\0{}\0{digest}\n", if exec { "x" } else { "-" }).as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

fn collect_context(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, bool, String)>,
) -> Result<(), InputError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InputError::Io { path, source }
    };
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let path = e.path();
        let name = e.file_name();
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            if name == "__pycache__" || path.join("Dockerfile").is_file() {
                continue;
            }
            collect_context(root, &path, out)?;
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if dir == root && (name == "Dockerfile" || name == "Dockerfile.j2") {
            continue;
        }
        let data = std::fs::read(&path).map_err(io(&path))?;
        out.push((rel, meta.permissions().mode() & 0o111 != 0, sha(&data)));
    }
    Ok(())
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Why an image is (or is not) built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Decision {
    /// Same inputs as the last published image: keep its tag and digest.
    Unchanged,
    /// Build it: these parts changed (`dockerfile`, `context`, `base`, `parent`, ...).
    Build { reasons: Vec<String> },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Unchanged => f.write_str("unchanged"),
            Decision::Build { reasons } => write!(f, "build ({})", reasons.join(", ")),
        }
    }
}

/// Compares this run's inputs with the last published ones, image by image. A changed parent is
/// named (`parent nova-base changed`), so a plan shows where a rebuild came from.
pub fn plan(current: &InputSet, last: &InputSet) -> BTreeMap<String, Decision> {
    let mut out = BTreeMap::new();
    for (name, now) in &current.images {
        let decision = match last.images.get(name) {
            None => Decision::Build {
                reasons: vec!["new image (no earlier build recorded)".into()],
            },
            Some(before) if before.hash == now.hash => Decision::Unchanged,
            Some(before) if before.parts.is_empty() => Decision::Build {
                reasons: vec![format!(
                    "input hash differs from the published image's {INPUT_HASH_LABEL} label"
                )],
            },
            Some(before) => {
                let mut reasons = Vec::new();
                for (part, value) in &now.parts {
                    if before.parts.get(part) != Some(value) {
                        reasons.push(match (part.as_str(), &now.parent) {
                            ("parent", Some(p)) => format!("parent {p} changed"),
                            ("base", _) => "base image digest changed".to_string(),
                            _ => format!("{part} changed"),
                        });
                    }
                }
                for part in before.parts.keys() {
                    if !now.parts.contains_key(part) {
                        reasons.push(format!("{part} no longer applies"));
                    }
                }
                if reasons.is_empty() {
                    reasons.push("input scheme changed".into());
                }
                Decision::Build { reasons }
            }
        };
        out.insert(name.clone(), decision);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "2024.1-rocky-9-20261203T000000";

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// base ← openstack-base ← nova-base ← {nova-api, nova-compute}, as kolla renders them.
    fn tree(tag: &str, date: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(r, "base/Dockerfile", &format!("FROM quay.io/rockylinux/rockylinux:9\nLABEL name=\"base\" build-date=\"{date}\"\nRUN true\n"));
        write(r, "base/start.sh", "#!/bin/sh\n");
        write(r, "base/Dockerfile.j2", "FROM {{ base_image }}\n");
        write(
            r,
            "openstack-base/Dockerfile",
            &format!(
                "FROM kolla/base:{tag}\nLABEL name=\"openstack-base\" build-date=\"{date}\"\n"
            ),
        );
        write(
            r,
            "nova/nova-base/Dockerfile",
            &format!("FROM kolla/openstack-base:{tag}\n"),
        );
        write(
            r,
            "nova/nova-api/Dockerfile",
            &format!("FROM kolla/nova-base:{tag}\nRUN api\n"),
        );
        write(
            r,
            "nova/nova-compute/Dockerfile",
            &format!("FROM kolla/nova-base:{tag}\nRUN compute\n"),
        );
        write(r, "nova/nova-compute/extend_start.sh", "echo compute\n");
        d
    }

    fn run(tag: &str) -> RunInputs {
        RunInputs {
            tag: tag.into(),
            conf: format!("[DEFAULT]\ntag = {tag}\n"),
            platform: "linux/amd64".into(),
            base_digests: [(
                "quay.io/rockylinux/rockylinux:9".to_string(),
                "sha256:aaa".to_string(),
            )]
            .into(),
            sources: BTreeMap::new(),
        }
    }

    fn built(p: &BTreeMap<String, Decision>) -> Vec<&str> {
        p.iter()
            .filter(|(_, d)| matches!(d, Decision::Build { .. }))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    #[test]
    fn parents_follow_from_lines_and_prefixes() {
        let names: Vec<String> = ["base", "nova-base", "openstack-base"]
            .map(String::from)
            .into();
        assert_eq!(
            parent_of("kolla/nova-base:t", &names, "x").as_deref(),
            Some("nova-base")
        );
        assert_eq!(
            parent_of("reg:5000/kolla/rocky-source-nova-base:t", &names, "x").as_deref(),
            Some("nova-base")
        );
        assert_eq!(
            parent_of("quay.io/rockylinux/rockylinux:9", &names, "x"),
            None
        );
        assert_eq!(
            parent_of("kolla/base@sha256:abc", &names, "x").as_deref(),
            Some("base")
        );
    }

    #[test]
    fn a_new_tag_and_a_new_day_change_nothing() {
        let a = tree(TAG, "20261203");
        let b = tree("2024.1-rocky-9-20261204T010203", "20261204");
        let sa = hash_docker_dir(a.path(), &run(TAG)).unwrap();
        let sb = hash_docker_dir(b.path(), &run("2024.1-rocky-9-20261204T010203")).unwrap();
        assert_eq!(sa, sb);
        assert!(built(&plan(&sb, &sa)).is_empty());
        assert_eq!(sa.images["nova-api"].parent.as_deref(), Some("nova-base"));
    }

    #[test]
    fn a_leaf_change_rebuilds_only_the_leaf() {
        let a = tree(TAG, "20261203");
        let before = hash_docker_dir(a.path(), &run(TAG)).unwrap();
        write(
            a.path(),
            "nova/nova-compute/extend_start.sh",
            "echo changed\n",
        );
        let after = hash_docker_dir(a.path(), &run(TAG)).unwrap();
        let p = plan(&after, &before);
        assert_eq!(built(&p), vec!["nova-compute"]);
        assert_eq!(
            p["nova-compute"],
            Decision::Build {
                reasons: vec!["context changed".into()]
            }
        );
    }

    #[test]
    fn a_parent_change_rebuilds_it_and_its_children() {
        let a = tree(TAG, "20261203");
        let before = hash_docker_dir(a.path(), &run(TAG)).unwrap();
        write(
            a.path(),
            "nova/nova-base/Dockerfile",
            &format!("FROM kolla/openstack-base:{TAG}\nRUN new\n"),
        );
        let after = hash_docker_dir(a.path(), &run(TAG)).unwrap();
        let p = plan(&after, &before);
        assert_eq!(built(&p), vec!["nova-api", "nova-base", "nova-compute"]);
        assert_eq!(
            p["nova-api"],
            Decision::Build {
                reasons: vec!["parent nova-base changed".into()]
            }
        );
        assert_eq!(
            p["nova-base"],
            Decision::Build {
                reasons: vec!["dockerfile changed".into()]
            }
        );
    }

    #[test]
    fn a_new_base_digest_rebuilds_everything() {
        let a = tree(TAG, "20261203");
        let before = hash_docker_dir(a.path(), &run(TAG)).unwrap();
        let mut r = run(TAG);
        r.base_digests.insert(
            "quay.io/rockylinux/rockylinux:9".into(),
            "sha256:bbb".into(),
        );
        let p = plan(&hash_docker_dir(a.path(), &r).unwrap(), &before);
        assert_eq!(p.len(), 5);
        assert_eq!(built(&p).len(), 5);
        assert_eq!(
            p["base"],
            Decision::Build {
                reasons: vec!["base image digest changed".into()]
            }
        );
    }

    #[test]
    fn matching_keeps_matched_images_and_their_ancestors() {
        let a = tree(TAG, "20261203");
        let s = scan(a.path(), TAG).unwrap();
        let m = s.matching(&["^nova-api$".into()]).unwrap();
        let names: Vec<&str> = m.images.keys().map(String::as_str).collect();
        assert_eq!(names, ["base", "nova-api", "nova-base", "openstack-base"]);
        assert_eq!(s.matching(&[]).unwrap(), s);
        assert!(s.matching(&["(".into()]).is_err());
        // hashing the scan is hashing the tree
        assert_eq!(
            hash_scanned(&s, &run(TAG)).unwrap(),
            hash_docker_dir(a.path(), &run(TAG)).unwrap()
        );
    }

    #[test]
    fn missing_base_digest_and_cycles_are_errors() {
        let a = tree(TAG, "20261203");
        let mut r = run(TAG);
        r.base_digests.clear();
        assert_eq!(
            external_bases(a.path()).unwrap(),
            vec!["quay.io/rockylinux/rockylinux:9"]
        );
        let e = hash_docker_dir(a.path(), &r).unwrap_err().to_string();
        assert!(
            e.contains("base/Dockerfile") && e.contains("quay.io/rockylinux/rockylinux:9"),
            "{e}"
        );
        let c = tempfile::tempdir().unwrap();
        write(c.path(), "a/Dockerfile", "FROM x/b:1\n");
        write(c.path(), "b/Dockerfile", "FROM x/a:1\n");
        let e = hash_docker_dir(c.path(), &run(TAG))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a, b") && e.contains("cycle"), "{e}");
    }
}
