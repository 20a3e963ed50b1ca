//! The kolla-build command line and image sets, as Kayobe's `container-image-build.yml` makes them.
//!
//! Kayobe renders `kolla-build --config-dir P --engine E [--registry R] [--push] [--nocache]
//! [--platform linux/arm64|amd64] REGEXES` into a bash line (after `. {{ kolla_venv }}/bin/activate`);
//! here the same line is composed and split into words as bash would ([`super::words`]), with
//! `kolla-build` resolved to the venv's, so kolla-build receives the same argv without a shell.

use serde::Serialize;

/// What one kolla-build run is made from (the variables Kayobe's task reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildLine {
    pub kolla_venv: String,
    pub config_dir: String,
    pub engine: String,
    /// `kolla_docker_registry` (empty or absent: no `--registry`)
    pub registry: Option<String>,
    pub push: bool,
    pub nocache: bool,
    /// `--platform`, given only when `kolla_base_arch` differs from the host's architecture
    pub platform: Option<String>,
}

/// One image set: Kayobe's `{regexes: "space separated"}` and the words kolla-build receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSet {
    pub regexes: Vec<String>,
    pub argv: Vec<String>,
}

/// Kayobe's platform for `kolla_base_arch`.
pub fn platform_for(base_arch: &str) -> &'static str {
    if base_arch == "aarch64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    }
}

impl BuildLine {
    /// The argv for one image set's regexes text (as written in YAML), or why it cannot be made.
    pub fn argv(&self, regexes: &str) -> Result<ImageSet, String> {
        let mut line = format!(
            "kolla-build --config-dir {} --engine {}",
            self.config_dir, self.engine
        );
        if let Some(r) = self.registry.as_deref().filter(|r| !r.is_empty()) {
            line.push_str(&format!(" --registry {r}"));
        }
        if self.push {
            line.push_str(" --push");
        }
        if self.nocache {
            line.push_str(" --nocache");
        }
        if let Some(p) = &self.platform {
            line.push_str(&format!(" --platform {p}"));
        }
        let mut argv = super::words::split(&line)?;
        let regexes = super::words::split(regexes)?;
        argv.extend(regexes.iter().cloned());
        argv[0] = format!("{}/bin/kolla-build", self.kolla_venv.trim_end_matches('/'));
        Ok(ImageSet { regexes, argv })
    }
}

/// Kayobe's choice of image sets: the CLI's regexes when given (one set), else the configured
/// sets; sets whose regexes text is empty are skipped (its `when: item.regexes != ''`).
pub fn image_sets(cli_regexes: &str, configured: &[String]) -> Vec<String> {
    if !cli_regexes.is_empty() {
        return vec![cli_regexes.to_string()];
    }
    configured
        .iter()
        .filter(|r| !r.is_empty())
        .cloned()
        .collect()
}

/// The image name a kolla log line is about: `INFO:kolla.common.utils.<image>:text`.
pub fn image_of_line(line: &str) -> Option<&str> {
    let rest = line.split_once(":kolla.common.utils.")?.1;
    let (image, _) = rest.split_once(':')?;
    (!image.is_empty()).then_some(image)
}

/// One entry of kolla's build summary (`--summary-json-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SummaryImage {
    pub name: String,
    /// For `failed`: kolla's status (`error`, `parent_error`, `push_error`, `matched`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// kolla's build summary, as `KollaWorker.summary` writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub built: Vec<SummaryImage>,
    #[serde(default)]
    pub failed: Vec<SummaryImage>,
    #[serde(default)]
    pub not_matched: Vec<SummaryImage>,
    #[serde(default)]
    pub skipped: Vec<SummaryImage>,
    #[serde(default)]
    pub unbuildable: Vec<SummaryImage>,
}

impl Summary {
    pub fn parse(text: &str) -> Result<Summary, String> {
        serde_json::from_str(text).map_err(|e| format!("line {}: {e}", e.line()))
    }
}

/// The images kolla-build matched and each one's parent, from `kolla-build --list-dependencies`
/// (a JSON tree `{"base": ["leaf", {"parent": [...]}]}` of the matched images; `Nothing
/// matched!` when none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependencies {
    /// Matched images, parents before children.
    pub images: Vec<String>,
    /// child → parent.
    pub parent: std::collections::BTreeMap<String, String>,
}

impl Dependencies {
    /// Parse kolla's output (stdout of `--list-dependencies`); `None` when it is not a tree.
    pub fn parse(stdout: &str) -> Option<Dependencies> {
        let t = stdout.trim();
        if t.contains("Nothing matched!") {
            return Some(Dependencies::default());
        }
        let v: serde_json::Value = serde_json::from_str(t.get(t.find('{')?..)?).ok()?;
        let mut d = Dependencies::default();
        fn walk(d: &mut Dependencies, parent: Option<&str>, v: &serde_json::Value) {
            match v {
                serde_json::Value::String(name) => d.add(parent, name),
                serde_json::Value::Object(m) => {
                    for (name, kids) in m {
                        d.add(parent, name);
                        if let serde_json::Value::Array(l) = kids {
                            for k in l {
                                walk(d, Some(name), k);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        walk(&mut d, None, &v);
        Some(d)
    }

    fn add(&mut self, parent: Option<&str>, name: &str) {
        if !self.images.iter().any(|x| x == name) {
            self.images.push(name.to_string());
        }
        if let Some(p) = parent {
            self.parent.insert(name.to_string(), p.to_string());
        }
    }
}

/// One failed image, said as kiln reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub name: String,
    pub status: String,
    /// For a child kolla never started (`matched`) or `parent_error`: the failed ancestor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because_of: Option<String>,
    /// Its log file (on the controller when fetched, else on the host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The last lines of its log.
    pub tail: Vec<String>,
}

/// The failures of a summary: each failed image with its status, log and last log lines; an
/// image kolla left `matched` (or marked `parent_error`) is tied to the nearest failed ancestor.
pub fn failures(
    summary: &Summary,
    deps: &Dependencies,
    log: impl Fn(&str) -> Option<String>,
    tail: impl Fn(&str) -> Vec<String>,
) -> Vec<Failure> {
    let status_of = |n: &str| {
        summary
            .failed
            .iter()
            .find(|f| f.name == n)
            .and_then(|f| f.status.clone())
    };
    summary
        .failed
        .iter()
        .map(|f| {
            let status = f.status.clone().unwrap_or_else(|| "error".into());
            let because_of = if status == "matched" || status == "parent_error" {
                let mut at = f.name.as_str();
                let mut found = None;
                while let Some(p) = deps.parent.get(at) {
                    if status_of(p).is_some_and(|s| s != "matched") {
                        found = Some(p.clone());
                        break;
                    }
                    at = p;
                }
                found
            } else {
                None
            };
            let started = status != "matched";
            Failure {
                name: f.name.clone(),
                status,
                because_of,
                log: if started { log(&f.name) } else { None },
                tail: if started { tail(&f.name) } else { Vec::new() },
            }
        })
        .collect()
}

/// The failures as text, one block per image.
pub fn render_failures(fs: &[Failure]) -> String {
    let mut s = String::new();
    for f in fs {
        if f.status == "matched" {
            s.push_str(&format!(
                "{}: not built: its parent {} failed\n",
                f.name,
                f.because_of.as_deref().unwrap_or("(unknown)")
            ));
            continue;
        }
        s.push_str(&format!("{}: failed with status {}", f.name, f.status));
        if let Some(p) = &f.because_of {
            s.push_str(&format!(" (its parent {p} failed)"));
        }
        s.push('\n');
        if let Some(l) = &f.log {
            s.push_str(&format!("  log: {l}\n"));
        }
        for t in &f.tail {
            s.push_str(&format!("  | {t}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_as_bash_gives_it() {
        let b = BuildLine {
            kolla_venv: "/opt/kayobe/venvs/kolla".into(),
            config_dir: "/etc/kolla".into(),
            engine: "docker".into(),
            registry: Some("reg:4000".into()),
            push: true,
            nocache: false,
            platform: None,
        };
        let s = b
            .argv(r"^nova- neutron-\(server\|metadata-agent\)")
            .unwrap();
        assert_eq!(
            s.argv,
            vec![
                "/opt/kayobe/venvs/kolla/bin/kolla-build",
                "--config-dir",
                "/etc/kolla",
                "--engine",
                "docker",
                "--registry",
                "reg:4000",
                "--push",
                "^nova-",
                "neutron-(server|metadata-agent)"
            ]
        );
        assert_eq!(
            image_of_line("INFO:kolla.common.utils.kb-leaf:Step 1/3"),
            Some("kb-leaf")
        );
        assert_eq!(image_sets("", &["a".into(), "".into()]), vec!["a"]);
    }

    #[test]
    fn failures_name_status_log_and_failed_parent() {
        let deps = Dependencies::parse(
            r#"{"kb-base": [{"kb-parent": ["kb-leaf", "kb-fail"]}, {"kb-badparent": ["kb-orphan"]}]}"#,
        )
        .unwrap();
        assert_eq!(deps.images.len(), 6);
        assert_eq!(deps.parent["kb-orphan"], "kb-badparent");
        let summary = Summary::parse(
            r#"{"built": [{"name": "kb-base"}], "failed": [{"name": "kb-badparent", "status": "error"}, {"name": "kb-orphan", "status": "matched"}], "not_matched": []}"#,
        )
        .unwrap();
        let fs = failures(
            &summary,
            &deps,
            |n| Some(format!("/logs/{n}.log")),
            |_| vec!["last".into()],
        );
        assert_eq!(fs[0].status, "error");
        assert_eq!(fs[0].log.as_deref(), Some("/logs/kb-badparent.log"));
        assert_eq!(fs[1].because_of.as_deref(), Some("kb-badparent"));
        assert!(fs[1].log.is_none() && fs[1].tail.is_empty());
        let text = render_failures(&fs);
        assert!(text.contains(
            "kb-badparent: failed with status error\n  log: /logs/kb-badparent.log\n  | last"
        ));
        assert!(text.contains("kb-orphan: not built: its parent kb-badparent failed"));
        assert_eq!(
            Dependencies::parse("Nothing matched!\n")
                .unwrap()
                .images
                .len(),
            0
        );
    }
}
