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
}
