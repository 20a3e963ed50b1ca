//! `kolla-image-tags.yml`: which tag each Kolla container deploys, in stackhpc-kayobe-config's
//! format, read, validated and updated after a push.
//!
//! The file holds `kolla_image_tags: {<tag variable prefix>: {<distro>-<version>: <tag>}}`; the
//! `openstack` entry is the mandatory default. Kolla Ansible resolves `<container>_tag` through a
//! hierarchy (`nova_api_tag` → `nova_tag` → `openstack_tag`). The facts here are those of
//! stackhpc-kayobe-config's `tools/kolla-images.py` (image → containers exceptions, container →
//! prefix exceptions, longest existing prefix wins, `openstack` last), re-stated in Rust;
//! `tests/image_tags.rs` runs their script as the oracle.
//!
//! Updating changes only what was pushed: for each container of a pushed image, its own entry when
//! it has one; else the parent entry it resolves to, when every known container resolving there
//! was pushed too (a full build moves `openstack`); else a new entry for the container. A new
//! entry that would capture a container that was not pushed (`haproxy` prefixes `haproxy_ssh`)
//! gets that container pinned to the tag it deploys today. The file is
//! edited line by line (comments, order and other entries stay), re-read and compared with the
//! intended map, and written atomically.

use indexmap::IndexMap;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// prefix → distro → tag, in file order.
pub type TagMap = IndexMap<String, IndexMap<String, String>>;

/// Distros stackhpc-kayobe-config supports (`SUPPORTED_BASE_DISTROS`).
pub const SUPPORTED_BASE_DISTROS: &[&str] = &["rocky-9", "ubuntu-jammy"];

/// Images used by containers not named after them (`IMAGE_TO_CONTAINERS_EXCEPTIONS`).
const IMAGE_TO_CONTAINERS_EXCEPTIONS: &[(&str, &[&str])] = &[
    ("dnsmasq", &["ironic_dnsmasq"]),
    (
        "haproxy",
        &["glance_tls_proxy", "haproxy", "neutron_tls_proxy"],
    ),
    ("mariadb-server", &["mariadb", "mariabackup"]),
    (
        "neutron-mlnx-agent",
        &["neutron_eswitchd", "neutron_mlnx_agent"],
    ),
    (
        "neutron-metadata-agent",
        &["neutron_metadata_agent", "neutron_ovn_metadata_agent"],
    ),
    (
        "nova-conductor",
        &["nova_super_conductor", "nova_conductor"],
    ),
    ("openvswitch-db-server", &["openvswitch_db"]),
    ("ovn-nb-db-server", &["ovn_nb_db"]),
    ("ovn-sb-db-server", &["ovn_sb_db"]),
    ("prometheus-v2-server", &["prometheus_server"]),
];

/// Containers whose parent tag variable is not a prefix of their name
/// (`CONTAINER_TO_PREFIX_VAR_EXCEPTIONS`).
const CONTAINER_TO_PREFIX_VAR_EXCEPTIONS: &[(&str, &str)] = &[
    ("cron", "common"),
    ("fluentd", "common"),
    ("glance_tls_proxy", "haproxy"),
    ("hacluster_corosync", "openstack"),
    ("hacluster_pacemaker", "openstack"),
    ("hacluster_pacemaker_remote", "openstack"),
    ("heat_api_cfn", "heat"),
    ("ironic_neutron_agent", "neutron"),
    ("kolla_toolbox", "common"),
    ("neutron_eswitchd", "neutron_mlnx_agent"),
    ("neutron_tls_proxy", "haproxy"),
    ("nova_compute_ironic", "nova"),
    ("redis_sentinel", "openstack"),
    ("swift_object_expirer", "swift"),
    ("tgtd", "iscsi"),
];

#[derive(Debug, thiserror::Error)]
pub enum TagsError {
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
}

/// The short image name of a reference or name: `reg:5000/kolla/nova-api:tag` → `nova-api`.
pub fn image_short_name(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    let last = last.split('@').next().unwrap_or(last);
    last.split(':').next().unwrap_or(last)
}

/// The containers that use an image (`get_containers`).
pub fn containers_of(image: &str) -> Vec<String> {
    let image = image_short_name(image);
    IMAGE_TO_CONTAINERS_EXCEPTIONS
        .iter()
        .find(|(i, _)| *i == image)
        .map(|(_, c)| c.iter().map(|s| s.to_string()).collect())
        .unwrap_or_else(|| vec![image.replace('-', "_")])
}

fn has_distro(tags: &TagMap, key: &str, distro: Option<&str>) -> bool {
    match distro {
        None => true,
        Some(d) => tags.get(key).is_some_and(|m| m.contains_key(d)),
    }
}

/// The parent tag variable of a container (`get_parent_tag_name`): its exception when that entry
/// exists (for the distro), else the longest other key that prefixes it, else `openstack`.
pub fn parent_tag_name(tags: &TagMap, distro: Option<&str>, container: &str) -> String {
    let prefix_var = match CONTAINER_TO_PREFIX_VAR_EXCEPTIONS
        .iter()
        .find(|(c, _)| *c == container)
    {
        Some((_, p)) => {
            if tags.contains_key(*p) && has_distro(tags, p, distro) {
                return p.to_string();
            }
            p.to_string()
        }
        None => container.to_string(),
    };
    // Python's sorted() is stable: the first key (in file order) with the smallest sort key.
    let key = |tag: &str| -> i64 {
        if tag == "openstack" {
            0
        } else if tag != prefix_var && prefix_var.starts_with(tag) && has_distro(tags, tag, distro)
        {
            -(tag.len() as i64)
        } else {
            1
        }
    };
    let mut best: Option<(&String, i64)> = None;
    for k in tags.keys() {
        let v = key(k);
        if best.is_none_or(|(_, b)| v < b) {
            best = Some((k, v));
        }
    }
    best.map(|(k, _)| k.clone())
        .unwrap_or_else(|| "openstack".into())
}

/// The entry that decides a container's tag for a distro: its own, else its parent's.
pub fn deciding_key(tags: &TagMap, distro: &str, container: &str) -> String {
    if tags
        .get(container)
        .and_then(|m| m.get(distro))
        .is_some_and(|t| !t.is_empty())
    {
        return container.to_string();
    }
    parent_tag_name(tags, Some(distro), container)
}

/// The tag a container deploys for a distro (`get_tag`), if any entry gives one.
pub fn tag_of(tags: &TagMap, distro: &str, container: &str) -> Option<String> {
    let k = deciding_key(tags, distro, container);
    tags.get(&k).and_then(|m| m.get(distro)).cloned()
}

/// The checks of `validate()`: key pattern, mandatory `openstack`, supported distros, and tags
/// `^<release>-<distro>-\d{8}T\d{6}$`. Returns their messages (empty: valid).
pub fn validate(tags: &TagMap, release: &str, distros: &[&str]) -> Vec<String> {
    let key_re = regex::Regex::new(r"^[a-z0-9_]+$").expect("static regex");
    let mut errors = Vec::new();
    if !tags.contains_key("openstack") {
        errors.push("Missing default openstack tag".to_string());
    }
    for (var, by_distro) in tags {
        if !key_re.is_match(var) {
            errors.push(format!(
                "Key {var} does not match expected pattern. It should match ^[a-z0-9_]+$"
            ));
        }
        for (distro, tag) in by_distro {
            if !distros.contains(&distro.as_str()) {
                errors.push(format!(
                    "{var}: base distro {distro} not supported. Options: [{}]",
                    distros
                        .iter()
                        .map(|d| format!("'{d}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            }
            // The pattern exactly as their script writes it (the release's dot unescaped, too).
            let pat = format!(r"^{release}-{distro}-[\d]{{8}}T[\d]{{6}}$");
            let matches = regex::Regex::new(&pat)
                .map(|re| re.is_match(tag))
                .unwrap_or(false);
            if !matches {
                errors.push(format!(
                    "{var}: {distro}: tag {tag} does not match expected pattern. It should match {pat}"
                ));
            }
        }
    }
    errors
}

/// Parse the file's text.
pub fn parse(path: &Path, text: &str) -> Result<TagMap, TagsError> {
    #[derive(serde::Deserialize)]
    struct F {
        kolla_image_tags: Option<TagMap>,
    }
    let f: F = crate::yaml::from_str(text).map_err(|e| TagsError::File {
        path: path.to_path_buf(),
        msg: format!(
            "{}not a kolla-image-tags file: {e}; expected `kolla_image_tags: {{prefix: {{distro: tag}}}}`",
            e.line.map(|l| format!("line {l}: ")).unwrap_or_default()
        ),
    })?;
    f.kolla_image_tags.ok_or_else(|| TagsError::File {
        path: path.to_path_buf(),
        msg: "no `kolla_image_tags` mapping; add one with at least `openstack: {<distro>: <tag>}`"
            .into(),
    })
}

/// What an update does.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub before: String,
    pub after: String,
    /// `(prefix, old tag or None)` for each entry set to the new tag, and for each container pinned
    /// to the tag it had (its old tag).
    pub changes: Vec<(String, Option<String>)>,
}

impl Update {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
    /// A unified diff of the file.
    pub fn diff(&self, path: &str) -> String {
        similar::TextDiff::from_lines(&self.before, &self.after)
            .unified_diff()
            .header(path, path)
            .to_string()
    }
}

/// Compute the new file text after pushing `pushed` images as `tag` for `distro`. `known_images`
/// (every image the deployment uses, e.g. stackhpc's `stackhpc_pulp_images_kolla`) lets a parent
/// entry move when all its containers were pushed, and is needed whenever a new entry must be added
/// (to prove it captures no other container); without it only existing entries can change.
pub fn plan_update(
    path: &Path,
    text: &str,
    distro: &str,
    tag: &str,
    pushed: &[String],
    known_images: &[String],
) -> Result<Update, TagsError> {
    let err = |msg: String| TagsError::File {
        path: path.to_path_buf(),
        msg,
    };
    let tags = parse(path, text)?;
    let pushed_containers: BTreeSet<String> =
        pushed.iter().flat_map(|i| containers_of(i)).collect();
    let known_containers: BTreeSet<String> = known_images
        .iter()
        .flat_map(|i| containers_of(i))
        .chain(pushed_containers.iter().cloned())
        .collect();
    let mut want = tags.clone();
    let mut new_keys: Vec<String> = Vec::new();
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    let mut set = |want: &mut TagMap, key: &str| {
        let old = tags.get(key).and_then(|m| m.get(distro)).cloned();
        let e = want.entry(key.to_string()).or_default();
        if e.get(distro).map(String::as_str) != Some(tag) {
            e.insert(distro.to_string(), tag.to_string());
            if !changes.iter().any(|(k, _)| k == key) {
                changes.push((key.to_string(), old));
            }
        }
    };
    for c in &pushed_containers {
        let k = deciding_key(&tags, distro, c);
        if &k == c {
            set(&mut want, c);
            continue;
        }
        let all_pushed = !known_images.is_empty()
            && known_containers
                .iter()
                .filter(|o| deciding_key(&tags, distro, o) == k)
                .all(|o| pushed_containers.contains(o));
        if all_pushed {
            set(&mut want, &k);
        } else {
            if known_images.is_empty() {
                new_keys.push(c.clone());
            }
            set(&mut want, c);
        }
    }
    if !new_keys.is_empty() {
        // A new entry `haproxy` would also move `haproxy_ssh` (a longer name it prefixes): only
        // the full image list can tell which other containers a new entry would capture.
        return Err(err(format!(
            "pointing {} at {tag} needs new entries ({}); give the deployment's full image list (known_images / --known-images-file, e.g. stackhpc_pulp_images_kolla) so kiln can check no other container changes",
            pushed.join(", "),
            new_keys.join(", ")
        )));
    }
    // A new entry may capture other containers (`haproxy` is a prefix of `haproxy_ssh`): pin each
    // such container that was not pushed to the tag it deploys now, with an entry of its own.
    for _ in 0..8 {
        let mut pinned = false;
        for c in &known_containers {
            if pushed_containers.contains(c) {
                continue;
            }
            let old = tag_of(&tags, distro, c);
            if tag_of(&want, distro, c) != old {
                if let Some(o) = old {
                    want.entry(c.clone())
                        .or_default()
                        .insert(distro.to_string(), o.clone());
                    changes.push((c.clone(), Some(o)));
                    pinned = true;
                }
            }
        }
        if !pinned {
            break;
        }
    }
    // Nothing else may change what a known container deploys.
    for c in &known_containers {
        if pushed_containers.contains(c) {
            if tag_of(&want, distro, c).as_deref() != Some(tag) {
                return Err(err(format!(
                    "kiln could not point container {c} at {tag}; edit the file by hand"
                )));
            }
        } else if tag_of(&want, distro, c) != tag_of(&tags, distro, c) {
            return Err(err(format!(
                "setting the new entries would change the tag of {c}, which was not pushed; edit the file by hand"
            )));
        }
    }
    let after = edit_text(text, &want, &tags, distro).map_err(err)?;
    let check = parse(path, &after)?;
    if check != want {
        return Err(err(
            "this file's layout is one kiln cannot edit in place (flow style or anchors under kolla_image_tags?); edit it by hand".into(),
        ));
    }
    Ok(Update {
        before: text.to_string(),
        after,
        changes,
    })
}

/// Apply `want` to the text line by line: change existing `distro: tag` lines, add missing
/// distro lines at the end of their entry, add new entries at the end of the mapping.
fn edit_text(text: &str, want: &TagMap, have: &TagMap, distro: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let top = lines
        .iter()
        .position(|l| l.trim_end().starts_with("kolla_image_tags:"))
        .ok_or("no `kolla_image_tags:` line at the start of a line")?;
    // The block: indented lines (or blank/comment lines) after the top line.
    let mut end = top + 1;
    let mut last_content = top;
    while end < lines.len() {
        let l = lines[end];
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            end += 1;
            continue;
        }
        if !l.starts_with(' ') {
            break;
        }
        last_content = end;
        end += 1;
    }
    let indent_of = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let key_indent = lines[top + 1..=last_content.max(top)]
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .map(|l| indent_of(l))
        .min()
        .unwrap_or(2);
    let sub_indent = lines[top + 1..=last_content.max(top)]
        .iter()
        .filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#'))
        .map(|l| indent_of(l))
        .filter(|&i| i > key_indent)
        .min()
        .unwrap_or(key_indent + 2);
    let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    let mut inserts: Vec<(usize, String)> = Vec::new();
    // Index entries: key → (line of key, last line of its block).
    let mut entries: IndexMap<String, (usize, usize)> = IndexMap::new();
    let mut cur: Option<String> = None;
    for i in top + 1..=last_content {
        let l = lines[i];
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = indent_of(l);
        if ind == key_indent {
            let k = t.split(':').next().unwrap_or("").trim().to_string();
            entries.insert(k.clone(), (i, i));
            cur = Some(k);
        } else if let Some(k) = &cur {
            if let Some(e) = entries.get_mut(k) {
                e.1 = i;
            }
            if ind == sub_indent {
                let (dk, rest) = t.split_once(':').unwrap_or((t, ""));
                if dk.trim() == distro {
                    if let Some(newtag) = want.get(k).and_then(|m| m.get(distro)) {
                        if have.get(k).and_then(|m| m.get(distro)) != Some(newtag) {
                            let comment = rest.find(" #").map(|p| &rest[p..]).unwrap_or("");
                            let comment = comment.trim_end_matches('\n');
                            let nl = if l.ends_with('\n') { "\n" } else { "" };
                            out[i] = format!(
                                "{}{}: {}{}{}",
                                " ".repeat(ind),
                                distro,
                                newtag,
                                comment,
                                nl
                            );
                        }
                    }
                }
            }
        }
    }
    let mut appended = String::new();
    for (k, m) in want {
        let Some(newtag) = m.get(distro) else {
            continue;
        };
        let had = have.get(k);
        if had.is_some_and(|h| h.contains_key(distro)) {
            continue;
        }
        match (had, entries.get(k)) {
            (Some(_), Some(&(_, last))) => inserts.push((
                last + 1,
                format!("{}{}: {}\n", " ".repeat(sub_indent), distro, newtag),
            )),
            (Some(_), None) => return Err(format!("entry {k} is not in block style")),
            (None, _) => appended.push_str(&format!(
                "{}{}:\n{}{}: {}\n",
                " ".repeat(key_indent),
                k,
                " ".repeat(sub_indent),
                distro,
                newtag
            )),
        }
    }
    if !appended.is_empty() {
        inserts.push((last_content + 1, appended));
    }
    if last_content < out.len() && !out[last_content].ends_with('\n') && !inserts.is_empty() {
        out[last_content].push('\n');
    }
    inserts.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    for (i, s) in inserts {
        out.insert(i.min(out.len()), s);
    }
    Ok(out.concat())
}

/// Write `text` to `path` atomically (a temporary file in the same folder, renamed over it),
/// keeping the old file's permissions.
pub fn write_atomic(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".kiln-").tempfile_in(dir)?;
    tmp.write_all(text)?;
    tmp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions())?;
    } else {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "---\n# comment\nkolla_image_tags:\n  openstack:\n    rocky-9: 2024.1-rocky-9-20240101T000000 # default\n  nova:\n    rocky-9: 2024.1-rocky-9-20240201T000000\n# trailer\n";

    #[test]
    fn resolves_and_updates() {
        let t = parse(Path::new("f"), F).unwrap();
        assert_eq!(parent_tag_name(&t, Some("rocky-9"), "nova_api"), "nova");
        assert_eq!(
            parent_tag_name(&t, Some("rocky-9"), "glance_api"),
            "openstack"
        );
        assert_eq!(containers_of("reg:5000/kolla/haproxy:x").len(), 3);
        assert!(plan_update(
            Path::new("f"),
            F,
            "rocky-9",
            "2024.1-rocky-9-20250101T000000",
            &["nova-api".into()],
            &[],
        )
        .is_err());
        let u = plan_update(
            Path::new("f"),
            F,
            "rocky-9",
            "2024.1-rocky-9-20250101T000000",
            &["nova-api".into()],
            &["nova-api".into(), "nova-compute".into()],
        )
        .unwrap();
        assert!(u.after.contains("# comment") && u.after.contains("# trailer"));
        assert!(u
            .after
            .contains("  nova_api:\n    rocky-9: 2024.1-rocky-9-20250101T000000\n"));
        assert!(u.after.contains("2024.1-rocky-9-20240201T000000"));
        let u = plan_update(
            Path::new("f"),
            F,
            "rocky-9",
            "2024.1-rocky-9-20250101T000000",
            &["nova-api".into(), "nova-compute".into()],
            &[
                "nova-api".into(),
                "nova-compute".into(),
                "glance-api".into(),
            ],
        )
        .unwrap();
        assert!(u
            .after
            .contains("  nova:\n    rocky-9: 2024.1-rocky-9-20250101T000000\n"));
        assert!(validate(
            &parse(Path::new("f"), &u.after).unwrap(),
            "2024.1",
            SUPPORTED_BASE_DISTROS
        )
        .is_empty());
    }
}
