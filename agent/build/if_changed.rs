//! `--if-changed`: from this run's input hashes ([`super::inputs`]) and the last published ones
//! (the newest build record that has the image, else the `kiln.input-hash` label the caller read
//! from the registry), which images of the run to build, which to keep, and what kolla-build needs
//! to build exactly those: one regex per image, the unchanged ancestors it must find under the
//! run's tag (kolla-build `--skip-existing` skips them), and a template override that writes each
//! built image's hash as the `kiln.input-hash` label.

use super::inputs::{plan, Decision, ImageInputs, InputSet, INPUT_HASH_LABEL};
use super::record;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// kolla-build with `--skip-existing` that works with podman: kolla asks the engine whether an
/// image exists with `images.list(name=...)`, a filter podman's API (4.3 here) ignores, so every
/// matched image looks present and is skipped. Run through this, kolla-build asks
/// `images.get(name)` instead (both engines answer it exactly); everything else is kolla's own
/// `kolla.cmd.build:main`, the `kolla-build` console script.
pub const KOLLA_EXACT_SKIP: &str = r#"import sys
from kolla.image import kolla_worker
def in_engine_cache(self):
    try:
        self.engine_client.images.get(self.canonical_name)
        return True
    except Exception:
        return False
kolla_worker.Image.in_engine_cache = in_engine_cache
from kolla.cmd.build import main
sys.argv[0] = 'kolla-build'
sys.exit(main())
"#;

/// The words that replace `<venv>/bin/kolla-build` for [`KOLLA_EXACT_SKIP`].
pub fn exact_skip_argv0(kolla_build: &str) -> Vec<String> {
    let venv_bin = kolla_build
        .strip_suffix("kolla-build")
        .unwrap_or(kolla_build);
    vec![
        format!("{venv_bin}python3"),
        "-c".into(),
        KOLLA_EXACT_SKIP.into(),
    ]
}

/// What was last published for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub hash: String,
    /// Empty when only the registry label was seen.
    #[serde(default)]
    pub parts: BTreeMap<String, String>,
    /// `registry/namespace/name:tag` as recorded.
    pub reference: String,
    #[serde(default)]
    pub digest: Option<String>,
    /// `record` or `registry label`.
    pub from: String,
}

/// For every image in the records of `dir`, the newest record entry that has an input hash and a
/// digest (an image kept `unchanged` by a run is recorded by that run too).
pub fn published_from_records(dir: &Path) -> BTreeMap<String, Published> {
    let mut out = BTreeMap::new();
    let (mut list, _) = record::list(dir);
    list.reverse();
    for l in list {
        for i in &l.record.images {
            if out.contains_key(&i.name) || i.digest.is_none() {
                continue;
            }
            let (hash, parts) = match (&i.inputs, i.labels.get(INPUT_HASH_LABEL)) {
                (Some(inp), _) => (inp.hash.clone(), inp.parts.clone()),
                (None, Some(h)) => (h.clone(), BTreeMap::new()),
                _ => continue,
            };
            out.insert(
                i.name.clone(),
                Published {
                    hash,
                    parts,
                    reference: i.reference.clone(),
                    digest: i.digest.clone(),
                    from: format!("record {}", l.path.display()),
                },
            );
        }
    }
    out
}

/// The images of the rendered set a run builds: those whose name one of kolla's regexes finds
/// (`re.search`), or all when there are none.
pub fn matched(set: &InputSet, regexes: &[String]) -> Result<Vec<String>, String> {
    let res: Vec<regex::Regex> = regexes
        .iter()
        .map(|r| regex::Regex::new(r).map_err(|e| format!("image regex {r:?}: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(set
        .images
        .keys()
        .filter(|n| res.is_empty() || res.iter().any(|r| r.is_match(n)))
        .cloned()
        .collect())
}

/// One image's line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedImage {
    pub name: String,
    #[serde(flatten)]
    pub decision: Decision,
    pub inputs: ImageInputs,
    /// The published image compared with, if any.
    #[serde(default)]
    pub published: Option<Published>,
    /// The digest the run's tag names after an unchanged image was tagged with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retagged: Option<String>,
}

/// The decision for a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    pub tag: String,
    pub images: Vec<PlannedImage>,
    /// Names to build, parents first.
    pub build: Vec<String>,
    pub unchanged: Vec<String>,
    /// Unchanged images kolla-build will meet as ancestors of built ones: they must exist under
    /// the run's tag where kolla-build runs (it skips them with `--skip-existing`).
    pub ancestors: Vec<String>,
    /// Images hashed (the whole rendered tree) and the seconds hashing took.
    #[serde(default)]
    pub hashed: usize,
    #[serde(default)]
    pub hash_seconds: f64,
    /// How the Dockerfiles were obtained (rendered by kolla, or the render cache) and how long.
    #[serde(default)]
    pub render: String,
}

impl RunPlan {
    /// One exact regex per image to build (kolla-build's positional arguments).
    pub fn regexes(&self) -> Vec<String> {
        self.build
            .iter()
            .map(|n| format!("^{}$", regex::escape(n)))
            .collect()
    }

    /// A kolla template override (`--template-override`) that adds `LABEL kiln.input-hash=...` to
    /// each built image through kolla's `footer` block (every kolla image has one; the `labels`
    /// block of `base` too). Kolla appends it to the configured overrides (oslo multi-option)
    /// and drops its `extends` line when it is not the first.
    pub fn label_override(&self) -> String {
        let hashes: BTreeMap<&str, &str> = self
            .images
            .iter()
            .filter(|i| self.build.contains(&i.name))
            .map(|i| (i.name.as_str(), i.inputs.hash.as_str()))
            .collect();
        let dict = serde_json::to_string(&hashes).unwrap_or_else(|_| "{}".into());
        format!(
            "{{% extends parent_template %}}\n\
             {{% block footer %}}{{{{ super() }}}}{{% set kiln_hashes = {dict} %}}\
             {{% if image_name in kiln_hashes %}}\nLABEL \"{INPUT_HASH_LABEL}\"=\"{{{{ kiln_hashes[image_name] }}}}\"\n{{% endif %}}{{% endblock %}}\n\
             {{% block labels %}}{{{{ super() }}}}{{% set kiln_hashes = {dict} %}}\
             {{% if image_name in kiln_hashes %}}\nLABEL \"{INPUT_HASH_LABEL}\"=\"{{{{ kiln_hashes[image_name] }}}}\"\n{{% endif %}}{{% endblock %}}\n"
        )
    }

    /// `name: unchanged` / `name: build (dockerfile changed)` lines.
    pub fn render(&self) -> String {
        let w = self.images.iter().map(|i| i.name.len()).max().unwrap_or(0);
        let mut s = String::new();
        for i in &self.images {
            let what = match &i.decision {
                Decision::Unchanged => match &i.published {
                    Some(p) => format!("unchanged (same inputs as {})", p.reference),
                    None => "unchanged".to_string(),
                },
                d => d.to_string(),
            };
            s.push_str(&format!("{:<w$}  {what}\n", i.name));
        }
        s
    }
}

/// Decide: the matched images whose hash differs from the published one are built (a changed
/// parent changes its children's hashes, so descendants follow); the others are unchanged.
pub fn decide(
    tag: &str,
    current: &InputSet,
    matched: &[String],
    published: &BTreeMap<String, Published>,
) -> RunPlan {
    let last = InputSet {
        images: published
            .iter()
            .map(|(n, p)| {
                (
                    n.clone(),
                    ImageInputs {
                        hash: p.hash.clone(),
                        parent: None,
                        parts: p.parts.clone(),
                    },
                )
            })
            .collect(),
    };
    let decisions = plan(current, &last);
    let matched: BTreeSet<&String> = matched.iter().collect();
    let mut out = RunPlan {
        tag: tag.to_string(),
        ..Default::default()
    };
    // parents first: depth through `parent`
    let depth = |n: &str| {
        let mut d = 0;
        let mut cur = current.images.get(n).and_then(|i| i.parent.clone());
        while let Some(p) = cur {
            d += 1;
            cur = current.images.get(&p).and_then(|i| i.parent.clone());
        }
        d
    };
    let mut names: Vec<&String> = matched.iter().copied().collect();
    names.sort_by_key(|n| (depth(n), (*n).clone()));
    for name in names {
        let Some(inputs) = current.images.get(name) else {
            continue;
        };
        let decision = decisions[name].clone();
        match decision {
            Decision::Unchanged => out.unchanged.push(name.clone()),
            Decision::Build { .. } => out.build.push(name.clone()),
        }
        out.images.push(PlannedImage {
            name: name.clone(),
            decision,
            inputs: inputs.clone(),
            published: published.get(name).cloned(),
            retagged: None,
        });
    }
    let mut anc = BTreeSet::new();
    for b in &out.build {
        let mut cur = current.images.get(b).and_then(|i| i.parent.clone());
        while let Some(p) = cur {
            if matched.contains(&p) && out.unchanged.contains(&p) {
                anc.insert(p.clone());
            }
            cur = current.images.get(&p).and_then(|i| i.parent.clone());
        }
    }
    out.ancestors = anc.into_iter().collect();
    out
}

/// A kolla source (a section of kolla-build.conf with a `type`): `[<image>]`, or a plugin or
/// addition of an image, `[<image>-plugin-<name>]` / `[<image>-additions-<name>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub section: String,
    /// The image whose build context the source goes into.
    pub image: String,
    /// `git`, `url` or `local`.
    pub kind: String,
    pub location: String,
    /// A git branch, tag or commit (`type = git`).
    pub reference: Option<String>,
}

/// The sources kolla-build.conf (as prepared for the run) declares.
pub fn source_specs(conf: &str) -> Result<Vec<SourceSpec>, String> {
    let mut ini = super::ini::MergedIni::new(true);
    ini.merge_source(conf)
        .map_err(|e| format!("kolla-build.conf: {e}"))?;
    let get = |section: &str, key: &str| {
        ini.get(Some(section), key)
            .and_then(|v| v.last())
            .and_then(|l| l.first())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let mut out = Vec::new();
    for section in ini.sections() {
        if section == "DEFAULT" {
            continue;
        }
        let Some(kind) = get(section, "type") else {
            continue;
        };
        let image = ["-plugin-", "-additions-"]
            .iter()
            .find_map(|m| section.split_once(m).map(|(i, _)| i))
            .unwrap_or(section)
            .to_string();
        out.push(SourceSpec {
            section: section.to_string(),
            image,
            kind,
            location: get(section, "location").unwrap_or_default(),
            reference: get(section, "reference"),
        });
    }
    Ok(out)
}

/// A git reference that already names a commit (40 hex digits) needs no lookup.
pub fn is_commit(reference: &str) -> bool {
    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `git ls-remote LOCATION REFERENCE` names for `reference`: an annotated tag's peeled
/// commit (`refs/tags/R^{}`) first, then the branch, the tag, or any ref ending in `/R`.
pub fn commit_from_ls_remote(out: &str, reference: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, name)| (sha.trim(), name.trim()))
        .collect();
    let want = [
        format!("refs/tags/{reference}^{{}}"),
        format!("refs/heads/{reference}"),
        format!("refs/tags/{reference}"),
        reference.to_string(),
    ];
    want.iter()
        .find_map(|w| refs.iter().find(|(_, n)| n == w))
        .or_else(|| {
            refs.iter()
                .find(|(_, n)| n.ends_with(&format!("/{reference}")))
        })
        .map(|(sha, _)| sha.to_string())
        .filter(|sha| is_commit(sha))
}

/// The `sources` input per image ([`super::inputs::RunInputs::sources`]): one line per source of
/// the image, `section type location resolved`, in section order.
pub fn sources_by_image(resolved: &[(SourceSpec, String)]) -> BTreeMap<String, String> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (s, r) in resolved {
        by.entry(s.image.clone())
            .or_default()
            .push(format!("{} {} {} {r}", s.section, s.kind, s.location));
    }
    by.into_iter()
        .map(|(image, mut lines)| {
            lines.sort();
            (image, lines.join("\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn sources_from_the_conf_and_git_refs() {
        let conf = "[DEFAULT]\nbase = rocky\n[nova-base]\ntype = git\nlocation = https://opendev.org/openstack/nova\nreference = stable/2024.1\n\
                    [neutron-base-plugin-networking-generic-switch]\ntype = url\nlocation = https://x/ngs-1.0.tar.gz\n\
                    [keystone]\nenabled = true\n";
        let specs = source_specs(conf).unwrap();
        assert_eq!(specs.len(), 2, "{specs:?}");
        assert_eq!(specs[0].image, "nova-base");
        assert_eq!(specs[0].reference.as_deref(), Some("stable/2024.1"));
        assert_eq!(specs[1].image, "neutron-base");
        assert_eq!(specs[1].kind, "url");
        let a = "1".repeat(40);
        let b = "2".repeat(40);
        let c = "3".repeat(40);
        let ls = format!(
            "{a}\trefs/heads/stable/2024.1\n{b}\trefs/tags/18.0.0\n{c}\trefs/tags/18.0.0^{{}}\n"
        );
        assert_eq!(commit_from_ls_remote(&ls, "stable/2024.1"), Some(a.clone()));
        assert_eq!(
            commit_from_ls_remote(&ls, "18.0.0"),
            Some(c),
            "an annotated tag's commit"
        );
        assert_eq!(commit_from_ls_remote(&ls, "nope"), None);
        assert!(is_commit(&a) && !is_commit("stable/2024.1"));
        let by = sources_by_image(&[
            (specs[0].clone(), a.clone()),
            (specs[1].clone(), "etag".into()),
        ]);
        assert!(by["nova-base"].ends_with(&a));
        assert!(by["neutron-base"].contains("networking-generic-switch url"));
    }
    use super::*;

    fn img(hash: &str, parent: Option<&str>) -> ImageInputs {
        ImageInputs {
            hash: hash.into(),
            parent: parent.map(String::from),
            parts: [("dockerfile".to_string(), hash.to_string())].into(),
        }
    }

    fn pubd(hash: &str) -> Published {
        Published {
            hash: hash.into(),
            parts: [("dockerfile".to_string(), hash.to_string())].into(),
            reference: "r/kb/x:old".into(),
            digest: Some("sha256:1".into()),
            from: "record".into(),
        }
    }

    #[test]
    fn leaf_change_needs_unchanged_ancestors_and_exact_regexes() {
        let cur = InputSet {
            images: [
                ("a".to_string(), img("1", None)),
                ("b".to_string(), img("2", Some("a"))),
                ("c".to_string(), img("3x", Some("b"))),
                ("d".to_string(), img("4", Some("b"))),
            ]
            .into(),
        };
        let published: BTreeMap<String, Published> = [
            ("a".to_string(), pubd("1")),
            ("b".to_string(), pubd("2")),
            ("c".to_string(), pubd("3")),
            ("d".to_string(), pubd("4")),
        ]
        .into();
        let m = matched(&cur, &["^(a|b|c|d)$".into()]).unwrap();
        let p = decide("t", &cur, &m, &published);
        assert_eq!(p.build, vec!["c"]);
        assert_eq!(p.unchanged, vec!["a", "b", "d"]);
        assert_eq!(p.ancestors, vec!["a", "b"]);
        assert_eq!(p.regexes(), vec!["^c$"]);
        let o = p.label_override();
        assert!(o.starts_with("{% extends parent_template %}"), "{o}");
        assert!(o.contains(r#"{"c":"3x"}"#) && !o.contains("\"a\""), "{o}");
        assert!(p.render().contains("c  build (dockerfile changed)"));
        assert!(matched(&cur, &["(".into()]).is_err());
    }

    #[test]
    fn records_give_the_newest_published_hash() {
        let d = tempfile::tempdir().unwrap();
        for (tag, hash, ended) in [("t1", "h1", "2026-01-01"), ("t2", "h2", "2026-01-02")] {
            let mut r = record::BuildRecord::new(tag);
            r.ended = ended.into();
            r.images.push(record::ImageRecord {
                name: "x".into(),
                reference: format!("reg/kb/x:{tag}"),
                digest: Some("sha256:d".into()),
                status: "pushed".into(),
                inputs: Some(img(hash, None)),
                ..Default::default()
            });
            r.write(&d.path().join(format!("{tag}.json"))).unwrap();
        }
        let p = published_from_records(d.path());
        assert_eq!(p["x"].hash, "h2");
        assert_eq!(p["x"].reference, "reg/kb/x:t2");
    }
}
