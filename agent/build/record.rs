//! Build records: one JSON file per build run, saying what was built and pushed, with the
//! registry's digests, so a deployment (and `kiln build show`) can say exactly what a tag is.
//!
//! Default place: `<config path>/kiln/builds/<tag>.json` (or `--record PATH`). Written
//! atomically (temporary file + rename), so a reader never sees half a record.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One image of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// Kolla's image name (`nova-api`).
    pub name: String,
    /// Full reference as pushed (`registry/namespace/name:tag`).
    pub reference: String,
    /// The digest the registry serves for the reference; `None` when not pushed.
    #[serde(default)]
    pub digest: Option<String>,
    /// `os/arch[/variant]`, one per platform.
    #[serde(default)]
    pub platform: Vec<String>,
    /// `pushed`, `push-failed`, `digest-failed`, `credential-found`, `build-failed` (kolla-build
    /// failed it), `not-built` (its parent failed), `unchanged`, ...
    pub status: String,
    /// Seconds spent on this image (push + digest lookup here; the build verb may add its own).
    #[serde(default)]
    pub duration: f64,
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// Build or push log for this image.
    #[serde(default)]
    pub log: Option<String>,
    /// The registry's or engine's error, for a failed image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Credentials (or the mirror URL) found in this image's pushed layers or config: which
    /// secret, in which form, in which layer and file; never the value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_findings: Vec<String>,
    /// The builder host that built it (several builders: `manifest_list.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `--if-changed`: the image's input hash and its parts (`build::inputs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<super::inputs::ImageInputs>,
    /// `--if-changed`: why the image was built, or why it was not (`unchanged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ImageRecord {
    /// kolla-build did not build it (`build-failed`, or `not-built` when its parent failed).
    pub fn not_built(&self) -> bool {
        self.status == "build-failed" || self.status == "not-built"
    }
}

/// The search of the pushed layers for the build's credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CredentialCheck {
    /// `clean`, `found` (a hit: the run failed) or `error` (a layer could not be read).
    pub status: String,
    /// Names of what was searched for (the values never).
    pub searched_for: Vec<String>,
    /// Blobs read back from the registry and searched (layers and configs).
    pub blobs: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

/// One run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildRecord {
    /// Format version of this file.
    #[serde(default = "one")]
    pub version: u32,
    pub tag: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub ended: String,
    pub hosts: Vec<String>,
    #[serde(default)]
    pub registry: Option<String>,
    pub images: Vec<ImageRecord>,
    /// References whose push failed after all retries (stackhpc's `push-failed-images.txt`).
    #[serde(default)]
    pub failed_pushes: Vec<String>,
    /// The credential check of the pushed layers, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_check: Option<CredentialCheck>,
    /// Multi-architecture runs: one manifest list per image, with each platform's digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifest_lists: Vec<super::manifest_list::ManifestListRecord>,
    /// Builder hosts whose build failed, with kolla-build's reason (the images that did build
    /// are still pushed and listed in `images`; those that did not are `build-failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_builders: Vec<super::manifest_list::FailedBuilder>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error(
        "build tag {0:?} cannot name a record file: use letters, digits, '.', '_' and '-' only"
    )]
    BadTag(String),
    #[error("no build records in {0}: run a build with --push, or pass --record PATH")]
    NoRecords(PathBuf),
}

/// `<config path>/kiln/builds`.
pub fn records_dir(config_path: &Path) -> PathBuf {
    config_path.join("kiln").join("builds")
}

/// `<config path>/kiln/builds/<tag>.json`.
pub fn default_path(config_path: &Path, tag: &str) -> Result<PathBuf, RecordError> {
    let ok = !tag.is_empty()
        && !tag.starts_with('.')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(RecordError::BadTag(tag.to_string()));
    }
    Ok(records_dir(config_path).join(format!("{tag}.json")))
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl BuildRecord {
    pub fn new(tag: &str) -> Self {
        BuildRecord {
            version: 1,
            tag: tag.to_string(),
            started: now(),
            ..Default::default()
        }
    }

    /// Write atomically (creating the folder).
    pub fn write(&self, path: &Path) -> Result<(), RecordError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| RecordError::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        text.push(b'\n');
        super::image_tags::write_atomic(path, &text).map_err(|e| RecordError::File {
            path: path.to_path_buf(),
            msg: format!("cannot write the build record: {e}"),
        })
    }

    pub fn read(path: &Path) -> Result<Self, RecordError> {
        let text = std::fs::read(path).map_err(|e| RecordError::File {
            path: path.to_path_buf(),
            msg: format!("cannot read: {e}"),
        })?;
        serde_json::from_slice(&text).map_err(|e| RecordError::File {
            path: path.to_path_buf(),
            msg: format!("line {}: not a kiln build record: {e}", e.line()),
        })
    }

    /// Images pushed (with a digest).
    pub fn pushed(&self) -> impl Iterator<Item = &ImageRecord> {
        self.images
            .iter()
            .filter(|i| i.digest.is_some() && i.status == "pushed")
    }

    /// The human form: a summary, then a table image → digest (last).
    pub fn render(&self, path: Option<&Path>) -> String {
        let mut s = String::new();
        s.push_str(&format!("build {}\n", self.tag));
        if let Some(p) = path {
            s.push_str(&format!("  record:   {}\n", p.display()));
        }
        s.push_str(&format!(
            "  started:  {}\n  ended:    {}\n",
            self.started, self.ended
        ));
        s.push_str(&format!("  hosts:    {}\n", self.hosts.join(", ")));
        if let Some(r) = &self.registry {
            s.push_str(&format!("  registry: {r}\n"));
        }
        let pushed = self.pushed().count();
        let unbuilt: Vec<&ImageRecord> = self.images.iter().filter(|i| i.not_built()).collect();
        s.push_str(&format!(
            "  images:   {} ({} pushed, {} push failed{})\n",
            self.images.len(),
            pushed,
            self.failed_pushes.len(),
            if unbuilt.is_empty() {
                String::new()
            } else {
                format!(", {} not built", unbuilt.len())
            }
        ));
        for i in &unbuilt {
            s.push_str(&format!(
                "  NOT BUILT: {} {}\n",
                i.name,
                i.error.as_deref().unwrap_or(&i.status)
            ));
        }
        for f in &self.failed_pushes {
            let err = self
                .images
                .iter()
                .find(|i| &i.reference == f)
                .and_then(|i| i.error.clone())
                .unwrap_or_default();
            s.push_str(&format!("  FAILED:   {f} {err}\n"));
        }
        if let Some(c) = &self.credential_check {
            s.push_str(&format!(
                "  credentials in pushed layers: {} ({} blobs searched for {})\n",
                c.status,
                c.blobs,
                c.searched_for.join(", ")
            ));
            for f in &c.findings {
                s.push_str(&format!("  FOUND:    {f}\n"));
            }
        }
        let w = self
            .images
            .iter()
            .map(|i| i.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        s.push('\n');
        s.push_str(&format!("{:<w$}  DIGEST\n", "IMAGE"));
        for i in &self.images {
            let d = i
                .digest
                .clone()
                .unwrap_or_else(|| format!("-  ({})", i.status));
            s.push_str(&format!("{:<w$}  {}\n", i.name, d));
        }
        s.push_str(&super::manifest_list::render(
            &self.manifest_lists,
            &self.failed_builders,
        ));
        s
    }
}

/// One line of `kiln build list`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub path: PathBuf,
    pub record: BuildRecord,
}

/// The records in a folder, oldest first (by end time, then name). Unreadable files are
/// returned as errors next to the good ones.
pub fn list(dir: &Path) -> (Vec<Listed>, Vec<RecordError>) {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (out, errs);
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        match BuildRecord::read(&p) {
            Ok(record) => out.push(Listed { path: p, record }),
            Err(e) => errs.push(e),
        }
    }
    out.sort_by(|a, b| {
        (a.record.ended.as_str(), a.path.as_path())
            .cmp(&(b.record.ended.as_str(), b.path.as_path()))
    });
    (out, errs)
}

/// The newest record in a folder.
pub fn latest(dir: &Path) -> Result<Listed, RecordError> {
    list(dir)
        .0
        .pop()
        .ok_or_else(|| RecordError::NoRecords(dir.to_path_buf()))
}
