//! Multi-architecture images and several builders: per-architecture tags, the manifest list (an
//! OCI image index) that names them, the merge of the builders' partial records into one build
//! record, and MicroShift's per-architecture source rule for images that are not Kolla's.
//!
//! A multi-architecture build runs one kolla-build per builder host, each with its own
//! `kolla_base_arch` (a native builder of that architecture, or one builder emulating it with
//! qemu-user-static and binfmt). Each builder tags and pushes its images as `<tag>-<arch>` (the OCI
//! architecture name: `amd64`, `arm64`, ...). Then kiln reads each per-architecture manifest and
//! its config back from the registry (the config says which architecture the image really is: an
//! arm64 tag holding an amd64 image is an error, not a list entry) and PUTs one image index under
//! `<tag>` through its registry client:
//!
//! ```json
//! {"schemaVersion": 2,
//!  "mediaType": "application/vnd.oci.image.index.v1+json",
//!  "manifests": [
//!   {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:…", "size": 1234,
//!    "platform": {"architecture": "amd64", "os": "linux"}},
//!   {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:…", "size": 1234,
//!    "platform": {"architecture": "arm64", "os": "linux"}}]}
//! ```
//!
//! A list is only pushed when every architecture of the run's builders has the image: a list that
//! silently lacks arm64 would deploy on x86_64 and fail elsewhere. An incomplete list is recorded
//! (`status: incomplete`, with the missing platforms) and fails the run; the per-architecture tags
//! that did build stay pushed.

use super::record::{BuildRecord, ImageRecord};
use super::registry::{
    Platform, RegistryClient, RegistryError, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The OCI platform of an architecture as kolla (`kolla_base_arch`, `uname -m`) or OCI names it.
pub fn oci_platform(arch: &str) -> Option<Platform> {
    let (a, v) = match arch {
        "x86_64" | "amd64" => ("amd64", None),
        "aarch64" | "arm64" => ("arm64", None),
        "armv7l" | "armhf" | "arm" => ("arm", Some("v7")),
        "ppc64le" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        _ => return None,
    };
    Some(Platform {
        os: "linux".into(),
        architecture: a.into(),
        variant: v.map(str::to_string),
    })
}

/// The OCI architecture name (`amd64` for `x86_64`), or the name itself when unknown.
pub fn oci_arch(arch: &str) -> String {
    oci_platform(arch)
        .map(|p| p.architecture)
        .unwrap_or_else(|| arch.to_string())
}

/// `<tag>-<arch>`, the per-architecture tag (MicroShift's naming).
pub fn arch_tag(tag: &str, arch: &str) -> String {
    format!("{tag}-{}", oci_arch(arch))
}

/// One platform of a manifest list, as recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PlatformRecord {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The per-architecture reference (`registry/ns/name:<tag>-<arch>`).
    pub reference: String,
    /// The per-architecture manifest's digest (the one the list names).
    pub digest: String,
    /// The builder host that built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// One manifest list of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ManifestListRecord {
    pub name: String,
    /// `registry/ns/name:<tag>`.
    pub reference: String,
    /// The list's digest as the registry serves it; `None` when not pushed.
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub media_type: String,
    /// `pushed`, `incomplete` (a platform is missing), `failed` (the registry refused).
    pub status: String,
    pub platforms: Vec<PlatformRecord>,
    /// Platforms the run's builders should have built and did not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A builder host whose build failed (it may still have pushed the images that built).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FailedBuilder {
    pub host: String,
    #[serde(default)]
    pub platform: String,
    pub reason: String,
}

#[derive(Serialize)]
struct IndexPlatform<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: usize,
    platform: IndexPlatform<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<IndexEntry<'a>>,
}

/// One per-architecture manifest as read back from the registry.
#[derive(Debug, Clone)]
pub struct ArchManifest {
    pub media_type: String,
    pub digest: String,
    pub size: usize,
    pub platform: Platform,
}

/// The OCI image index naming `entries` (in the order given).
pub fn index_json(entries: &[ArchManifest]) -> Vec<u8> {
    let idx = Index {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: entries
            .iter()
            .map(|e| IndexEntry {
                media_type: &e.media_type,
                digest: &e.digest,
                size: e.size,
                platform: IndexPlatform {
                    architecture: &e.platform.architecture,
                    os: &e.platform.os,
                    variant: e.platform.variant.as_deref(),
                },
            })
            .collect(),
    };
    serde_json::to_vec(&idx).unwrap_or_default()
}

/// Read `repository:<reference>` (one image, not a list) and the platform its config declares.
pub async fn read_arch_manifest(
    client: &RegistryClient,
    repository: &str,
    reference: &str,
) -> Result<ArchManifest, RegistryError> {
    let image = format!("{}/{repository}:{reference}", client.registry());
    let bad = |detail: String| RegistryError::Malformed {
        registry: client.registry().to_string(),
        image: image.clone(),
        detail,
    };
    let m = client.manifest(repository, reference).await?;
    if m.media_type != OCI_MANIFEST && m.media_type != DOCKER_MANIFEST {
        return Err(bad(format!(
            "is {} (a list), not one architecture's image",
            m.media_type
        )));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&m.body).map_err(|e| bad(format!("manifest is not JSON: {e}")))?;
    let cfg = doc["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad("image manifest has no config".into()))?;
    let cfg = client.blob(repository, cfg).await?;
    let cfg: serde_json::Value =
        serde_json::from_slice(&cfg).map_err(|e| bad(format!("config blob is not JSON: {e}")))?;
    let s = |k: &str| cfg[k].as_str().unwrap_or("").to_string();
    Ok(ArchManifest {
        media_type: m.media_type,
        digest: m.digest,
        size: m.body.len(),
        platform: Platform {
            os: s("os"),
            architecture: s("architecture"),
            variant: cfg["variant"].as_str().map(str::to_string),
        },
    })
}

/// One architecture an image should exist for: the builder host and its `kolla_base_arch`.
#[derive(Debug, Clone)]
pub struct ArchSpec {
    pub host: Option<String>,
    pub arch: String,
}

/// Push the manifest list `repository:tag` over the per-architecture tags `<tag>-<arch>`.
/// Each per-architecture image's config must declare the expected architecture. The list's digest
/// is read back from the registry and must be the one kiln computed.
pub async fn publish(
    client: &RegistryClient,
    name: &str,
    repository: &str,
    tag: &str,
    arches: &[ArchSpec],
) -> ManifestListRecord {
    let mut rec = ManifestListRecord {
        name: name.to_string(),
        reference: format!("{}/{repository}:{tag}", client.registry()),
        media_type: OCI_INDEX.to_string(),
        status: "failed".into(),
        ..Default::default()
    };
    let mut entries = Vec::new();
    for a in arches {
        let want = oci_platform(&a.arch).unwrap_or(Platform {
            os: "linux".into(),
            architecture: a.arch.clone(),
            variant: None,
        });
        let atag = arch_tag(tag, &a.arch);
        let m = match read_arch_manifest(client, repository, &atag).await {
            Ok(m) => m,
            Err(e) => {
                rec.error = Some(e.to_string());
                return rec;
            }
        };
        if m.platform.architecture != want.architecture || m.platform.os != want.os {
            rec.error = Some(format!(
                "{}/{repository}:{atag} is a {} image, not {}: was it built with --platform {want} \
                 (kolla_base_arch {}; on a builder of another architecture qemu-user-static and \
                 binfmt must be registered)?",
                client.registry(),
                Platform {
                    variant: None,
                    ..m.platform.clone()
                },
                Platform {
                    variant: None,
                    ..want.clone()
                },
                a.arch
            ));
            return rec;
        }
        rec.platforms.push(PlatformRecord {
            platform: m.platform.to_string(),
            reference: format!("{}/{repository}:{atag}", client.registry()),
            digest: m.digest.clone(),
            host: a.host.clone(),
        });
        entries.push(m);
    }
    let body = index_json(&entries);
    match client.put_manifest(repository, tag, OCI_INDEX, &body).await {
        Ok(d) => {
            // what a deployment pulls is what the registry serves for the tag
            match client.manifest(repository, tag).await {
                Ok(m)
                    if m.digest == d
                        && [OCI_INDEX, DOCKER_LIST].contains(&m.media_type.as_str()) =>
                {
                    rec.digest = Some(d);
                    rec.status = "pushed".into();
                }
                Ok(m) => {
                    rec.error = Some(format!(
                    "{}: the registry serves {} ({}) for the tag, not the list kiln pushed ({d})",
                    rec.reference, m.digest, m.media_type
                ))
                }
                Err(e) => rec.error = Some(e.to_string()),
            }
        }
        Err(e) => rec.error = Some(e.to_string()),
    }
    rec
}

/// Merge the builders' partial records (one per host; `None` for a host that wrote none) into
/// the run's record: every image with its host, the hosts, the failed pushes, and a
/// [`FailedBuilder`] per host without a record.
pub fn merge_parts(
    tag: &str,
    parts: Vec<(String, String, Option<BuildRecord>)>,
    reasons: &std::collections::HashMap<String, String>,
) -> (BuildRecord, Vec<FailedBuilder>) {
    let mut rec = BuildRecord::new(tag);
    let mut failed = Vec::new();
    let mut started: Option<String> = None;
    for (host, arch, part) in parts {
        rec.hosts.push(host.clone());
        // a failed build, whether or not the images that did build were pushed (its part)
        if let Some(reason) = reasons.get(&host) {
            failed.push(FailedBuilder {
                platform: oci_platform(&arch)
                    .map(|p| p.to_string())
                    .unwrap_or(arch.clone()),
                reason: reason.clone(),
                host: host.clone(),
            });
        }
        // no part and no failed build: the builder had nothing to push
        let Some(part) = part else {
            continue;
        };
        if started.as_ref().is_none_or(|s| part.started < *s) {
            started = Some(part.started.clone());
        }
        if rec.registry.is_none() {
            rec.registry = part.registry.clone();
        }
        rec.failed_pushes.extend(part.failed_pushes);
        if let Some(check) = part.credential_check {
            merge_credential_check(&mut rec, check);
        }
        for mut i in part.images {
            i.host.get_or_insert_with(|| host.clone());
            rec.images.push(i);
        }
    }
    if let Some(s) = started {
        rec.started = s;
    }
    rec.ended = super::record::now();
    (rec, failed)
}

/// One credential check over every builder's pushed layers: the worst status (`found`, then
/// `error`, then `clean`), everything searched for, all blobs and all findings.
fn merge_credential_check(rec: &mut BuildRecord, check: super::record::CredentialCheck) {
    let rank = |s: &str| match s {
        "found" => 2,
        "error" => 1,
        _ => 0,
    };
    match &mut rec.credential_check {
        None => rec.credential_check = Some(check),
        Some(all) => {
            if rank(&check.status) > rank(&all.status) {
                all.status = check.status;
            }
            for s in check.searched_for {
                if !all.searched_for.contains(&s) {
                    all.searched_for.push(s);
                }
            }
            all.blobs += check.blobs;
            all.findings.extend(check.findings);
        }
    }
}

/// The images of `rec` by name, with the hosts (and architectures) that pushed them.
pub fn pushed_by_name(rec: &BuildRecord) -> indexmap::IndexMap<String, Vec<&ImageRecord>> {
    let mut m: indexmap::IndexMap<String, Vec<&ImageRecord>> = indexmap::IndexMap::new();
    for i in rec.pushed() {
        m.entry(i.name.clone()).or_default().push(i);
    }
    m
}

/// A multi-line reason on one line (` | ` between its non-empty lines).
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The human form of a record's lists and failed builders (after [`BuildRecord::render`]).
pub fn render(lists: &[ManifestListRecord], failed: &[FailedBuilder]) -> String {
    let mut s = String::new();
    for f in failed {
        s.push_str(&format!(
            "BUILDER FAILED: {} ({}): {}\n",
            f.host,
            f.platform,
            one_line(&f.reason)
        ));
    }
    if lists.is_empty() {
        return s;
    }
    s.push_str("\nMANIFEST LIST\n");
    for l in lists {
        s.push_str(&format!(
            "{}  {}\n",
            l.reference,
            l.digest
                .clone()
                .unwrap_or_else(|| format!("-  ({})", l.status))
        ));
        for p in &l.platforms {
            s.push_str(&format!(
                "  {:<14} {}  {}{}\n",
                p.platform,
                p.digest,
                p.reference,
                p.host
                    .as_deref()
                    .map(|h| format!(" [{h}]"))
                    .unwrap_or_default()
            ));
        }
        for m in &l.missing {
            s.push_str(&format!("  {m:<14} MISSING\n"));
        }
        if let Some(e) = &l.error {
            s.push_str(&format!("  error: {e}\n"));
        }
    }
    s
}

/// Where an image for one architecture comes from, by MicroShift's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchSource {
    /// Copy this existing image (`ImageSource[.<arch>]` holds its reference).
    Image { reference: String, file: PathBuf },
    /// Build this Dockerfile (`Dockerfile[.<arch>]`).
    Dockerfile(PathBuf),
}

/// The files MicroShift's rule looks for, in order, for `arch`: `ImageSource.<arch>`, then
/// `Dockerfile.<arch>`, then the generic `ImageSource`, then `Dockerfile`. `<arch>` is the OCI name
/// (`amd64`, `arm64`, as MicroShift's folders use) or kolla's (`x86_64`, `aarch64`).
pub fn source_candidates(arch: &str) -> Vec<String> {
    let oci = oci_arch(arch);
    let kolla = match oci.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        o => o,
    };
    let mut names = vec![oci.clone()];
    for n in [arch, kolla] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let mut order = Vec::new();
    for n in &names {
        order.push(format!("ImageSource.{n}"));
    }
    for n in &names {
        order.push(format!("Dockerfile.{n}"));
    }
    order.push("ImageSource".into());
    order.push("Dockerfile".into());
    order
}

/// The source the first existing candidate `path` names: a Dockerfile is itself; an
/// `ImageSource` file (`text`) holds one image reference (blank lines and `#` comments ignored).
pub fn parse_source(path: &Path, arch: &str, text: Option<&str>) -> Result<ArchSource, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("Dockerfile") {
        return Ok(ArchSource::Dockerfile(path.to_path_buf()));
    }
    let text = text.unwrap_or("");
    let refs: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match refs.as_slice() {
        [(_, r)] if !r.contains(char::is_whitespace) => Ok(ArchSource::Image {
            reference: r.to_string(),
            file: path.to_path_buf(),
        }),
        [] => Err(format!(
            "{}: empty: write the image reference to copy for {arch} (e.g. quay.io/org/image:v1)",
            path.display()
        )),
        [_, (n, _), ..] => Err(format!(
            "{}:{n}: a second reference: an ImageSource file names exactly one image",
            path.display()
        )),
        [(n, r)] => Err(format!(
            "{}:{n}: {r:?} is not one image reference",
            path.display()
        )),
    }
}

/// No candidate exists in `dir`.
pub fn no_source(dir: &Path, arch: &str) -> String {
    format!(
        "{}: no ImageSource.{a}, Dockerfile.{a}, ImageSource or Dockerfile: nothing builds this image for {arch}",
        dir.display(),
        a = oci_arch(arch)
    )
}

/// MicroShift's per-architecture source rule for a component folder on this machine
/// ([`source_candidates`] in order; `kiln.builtin.image_source` applies it on a host).
pub fn arch_source(dir: &Path, arch: &str) -> Result<ArchSource, String> {
    for f in source_candidates(arch) {
        let p = dir.join(&f);
        if !p.is_file() {
            continue;
        }
        let text = if f.starts_with("ImageSource") {
            Some(
                std::fs::read_to_string(&p)
                    .map_err(|e| format!("{}: cannot read: {e}", p.display()))?,
            )
        } else {
            None
        };
        return parse_source(&p, arch, text.as_deref());
    }
    Err(no_source(dir, arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_and_tags() {
        assert_eq!(arch_tag("2024.1-rocky-9", "x86_64"), "2024.1-rocky-9-amd64");
        assert_eq!(arch_tag("t", "aarch64"), "t-arm64");
        assert_eq!(oci_platform("aarch64").unwrap().to_string(), "linux/arm64");
        assert_eq!(oci_platform("armv7l").unwrap().to_string(), "linux/arm/v7");
        assert!(oci_platform("m68k").is_none());
    }

    #[test]
    fn index_shape() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let e = vec![
            ArchManifest {
                media_type: OCI_MANIFEST.into(),
                digest: d('a'),
                size: 10,
                platform: oci_platform("x86_64").unwrap(),
            },
            ArchManifest {
                media_type: OCI_MANIFEST.into(),
                digest: d('b'),
                size: 11,
                platform: oci_platform("aarch64").unwrap(),
            },
        ];
        let j: serde_json::Value = serde_json::from_slice(&index_json(&e)).unwrap();
        assert_eq!(j["schemaVersion"], 2);
        assert_eq!(j["mediaType"], OCI_INDEX);
        assert_eq!(j["manifests"][1]["platform"]["architecture"], "arm64");
        assert_eq!(j["manifests"][1]["size"], 11);
        assert!(j["manifests"][0]["platform"].get("variant").is_none());
    }

    #[test]
    fn microshift_source_rule() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        assert!(arch_source(d, "arm64")
            .unwrap_err()
            .contains("no ImageSource.arm64"));
        std::fs::write(d.join("Dockerfile"), "FROM x\n").unwrap();
        assert_eq!(
            arch_source(d, "aarch64").unwrap(),
            ArchSource::Dockerfile(d.join("Dockerfile"))
        );
        std::fs::write(d.join("ImageSource"), "# generic\nquay.io/a/b:v1\n").unwrap();
        assert!(matches!(arch_source(d, "x86_64").unwrap(),
            ArchSource::Image { reference, .. } if reference == "quay.io/a/b:v1"));
        std::fs::write(d.join("Dockerfile.arm64"), "FROM y\n").unwrap();
        assert_eq!(
            arch_source(d, "aarch64").unwrap(),
            ArchSource::Dockerfile(d.join("Dockerfile.arm64"))
        );
        std::fs::write(d.join("ImageSource.aarch64"), "quay.io/a/b:arm\n").unwrap();
        assert!(matches!(arch_source(d, "arm64").unwrap(),
            ArchSource::Image { reference, .. } if reference == "quay.io/a/b:arm"));
        std::fs::write(d.join("ImageSource.amd64"), "a:1\nb:2\n").unwrap();
        assert!(arch_source(d, "x86_64")
            .unwrap_err()
            .contains("ImageSource.amd64:2"));
    }
}
