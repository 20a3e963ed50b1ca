//! Kayobe configuration layering: which inventories and which extra-vars files a Kayobe command
//! passes to Ansible, and in what order.
//!
//! Kayobe builds an `ansible-playbook` command line; kiln builds the same list of sources:
//!
//! * inventories: the base inventory (kiln's embedded `inventory/`, or an existing Kayobe
//!   installation's `ansible/inventory` when `KAYOBE_DATA_FILES_PATH` is given), then
//!   `$CFG/inventory`, then `$CFG/environments/<env>/inventory` for each environment, dependencies
//!   first;
//! * extra vars (highest precedence): every `*.yml`, `*.yaml`, `*.json` file directly in `$CFG`
//!   (byte-sorted by name), then the same in each environment directory, then the user's `-e`, then
//!   the verb's own vars.
//!
//! Environment dependencies come from `<env>/.kayobe-environment` (`dependencies: [a, b]`) and are
//! ordered topologically, dependencies before dependents; a cycle is an error naming it.

use super::ConfigError;
use crate::value::Value;
use std::path::{Path, PathBuf};

/// The default Kayobe configuration path, as Kayobe has it.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kayobe";

/// A resolved Kayobe configuration: where everything is and in what order it applies.
#[derive(Debug, Clone)]
pub struct KayobeLayout {
    pub config_path: PathBuf,
    /// Environments in application order (dependencies first, the selected one last).
    pub environments: Vec<String>,
    /// Inventory sources, lowest precedence first.
    pub inventories: Vec<PathBuf>,
    /// Extra-vars files, lowest precedence first.
    pub vars_files: Vec<PathBuf>,
}

impl KayobeLayout {
    /// Work out the layout for `config_path` and `environment`. `base_inventory` is kiln's own
    /// (embedded) inventory or an existing Kayobe installation's `ansible/inventory`.
    /// `user_inventories` are the user's `-i` sources: as in Kayobe, they replace the
    /// configuration's and environments' inventories (the base inventory stays first).
    pub fn resolve(
        config_path: &Path,
        environment: Option<&str>,
        base_inventory: &Path,
        user_inventories: &[PathBuf],
    ) -> Result<Self, ConfigError> {
        if !config_path.is_dir() {
            return Err(ConfigError::Other(format!(
                "Kayobe configuration path {} is not a directory: pass --config-path or set KAYOBE_CONFIG_PATH",
                config_path.display()
            )));
        }
        if environment == Some("kayobe") {
            return Err(ConfigError::Other(
                "the environment name 'kayobe' is reserved for internal use: choose another name"
                    .into(),
            ));
        }
        let environments = match environment {
            Some(env) if !env.is_empty() => order_environments(config_path, env)?,
            _ => Vec::new(),
        };
        let mut inventories = vec![base_inventory.to_path_buf()];
        let mut vars_dirs = vec![config_path.to_path_buf()];
        let env_dirs: Vec<PathBuf> = environments
            .iter()
            .map(|e| env_dir(config_path, e))
            .collect();
        if user_inventories.is_empty() {
            let shared = config_path.join("inventory");
            // Kayobe adds the shared inventory unconditionally when no environment is used
            if shared.exists() || environments.is_empty() {
                inventories.push(shared);
            }
            for dir in &env_dirs {
                let inv = dir.join("inventory");
                if inv.exists() {
                    inventories.push(inv);
                }
            }
        } else {
            inventories.extend(user_inventories.iter().cloned());
        }
        // kiln's shipped config path holds the base inventory itself: don't read it twice
        let mut seen = Vec::new();
        inventories.retain(|p| {
            let key = p.canonicalize().unwrap_or_else(|_| p.clone());
            let new = !seen.contains(&key);
            seen.push(key);
            new
        });
        vars_dirs.extend(env_dirs);
        let mut vars_files = Vec::new();
        for dir in &vars_dirs {
            vars_files.extend(vars_files_in(dir)?);
        }
        Ok(KayobeLayout {
            config_path: config_path.to_path_buf(),
            environments,
            inventories,
            vars_files,
        })
    }
}

fn env_dir(config_path: &Path, env: &str) -> PathBuf {
    config_path.join("environments").join(env)
}

/// `*.yml`, `*.yaml`, `*.json` regular files directly in `dir`, byte-sorted by name. kiln also
/// takes the age-encrypted form of each (`secrets.yml.age`), which Kayobe has no notion of.
pub fn vars_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let name = name.strip_suffix(".age").unwrap_or(&name);
        let ext_ok = [".yml", ".yaml", ".json"].iter().any(|e| name.ends_with(e));
        if ext_ok && path.is_file() {
            out.push(path);
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// The dependencies an environment declares in its `.kayobe-environment` file.
fn dependencies(config_path: &Path, env: &str) -> Result<Vec<String>, ConfigError> {
    let dir = env_dir(config_path, env);
    if !dir.is_dir() {
        return Err(ConfigError::Other(format!(
            "Kayobe environment {env:?} not found: expected a directory {}",
            dir.display()
        )));
    }
    let file = dir.join(".kayobe-environment");
    if !file.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::io(&file, e))?;
    let origin = file.display().to_string();
    let doc = crate::yaml::load(&text, &origin)?;
    match doc.get("dependencies") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::List(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ConfigError::Other(format!(
                        "{origin}: `dependencies` must be a list of environment names"
                    ))
                })
            })
            .collect(),
        Some(_) => Err(ConfigError::Other(format!(
            "{origin}: `dependencies` must be a list of environment names"
        ))),
    }
}

/// Depth-first topological order: every environment after its dependencies, `env` last.
pub fn order_environments(config_path: &Path, env: &str) -> Result<Vec<String>, ConfigError> {
    fn visit(
        config_path: &Path,
        env: &str,
        stack: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        if done.iter().any(|d| d == env) {
            return Ok(());
        }
        if let Some(pos) = stack.iter().position(|s| s == env) {
            let mut cycle: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
            cycle.push(env);
            return Err(ConfigError::Other(format!(
                "Kayobe environment dependencies form a cycle: {} (see the .kayobe-environment files under {})",
                cycle.join(" -> "),
                config_path.join("environments").display()
            )));
        }
        stack.push(env.to_string());
        for dep in dependencies(config_path, env)? {
            visit(config_path, &dep, stack, done)?;
        }
        stack.pop();
        done.push(env.to_string());
        Ok(())
    }
    let mut done = Vec::new();
    visit(config_path, env, &mut Vec::new(), &mut done)?;
    Ok(done)
}

/// Kayobe's `kayobe_environments` lookup: the paths of the environments in effect, dependencies
/// first (from the `kayobe_environment` and `kayobe_config_path` variables); empty without an
/// environment.
pub fn kayobe_environments_lookup() -> crate::template::LookupPlugin {
    std::sync::Arc::new(|_terms, var| {
        let text = |v: Option<Value>| {
            v.and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let env = text(var("kayobe_environment"));
        if env.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = text(var("kayobe_config_path"));
        if cfg.is_empty() {
            return Err("kayobe_config_path is unset".into());
        }
        let cfg = Path::new(&cfg);
        let envs = order_environments(cfg, &env).map_err(|e| e.to_string())?;
        Ok(envs
            .iter()
            .map(|e| Value::Str(env_dir(cfg, e).display().to_string()))
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn env(root: &Path, name: &str, deps: &[&str]) {
        let d = root.join("environments").join(name);
        fs::create_dir_all(&d).unwrap();
        if !deps.is_empty() {
            fs::write(
                d.join(".kayobe-environment"),
                format!("dependencies: [{}]\n", deps.join(", ")),
            )
            .unwrap();
        }
    }

    #[test]
    fn environments_are_ordered_dependencies_first() {
        let t = tempfile::tempdir().unwrap();
        env(t.path(), "base", &[]);
        env(t.path(), "net", &["base"]);
        env(t.path(), "site", &["net", "base"]);
        assert_eq!(
            order_environments(t.path(), "site").unwrap(),
            ["base", "net", "site"]
        );
    }

    #[test]
    fn a_cycle_is_an_error_that_names_it() {
        let t = tempfile::tempdir().unwrap();
        env(t.path(), "a", &["b"]);
        env(t.path(), "b", &["a"]);
        let e = order_environments(t.path(), "a").unwrap_err().to_string();
        assert!(e.contains("a -> b -> a"), "{e}");
    }

    #[test]
    fn layout_orders_inventories_and_vars_files() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path();
        env(cfg, "base", &[]);
        env(cfg, "ci", &["base"]);
        fs::create_dir_all(cfg.join("inventory")).unwrap();
        fs::create_dir_all(cfg.join("environments/ci/inventory")).unwrap();
        for f in [
            "b.yml",
            "a.json",
            "Z.yaml",
            "notes.txt",
            "c.yml.example",
            "s.yml.age",
            "t.age",
        ] {
            fs::write(cfg.join(f), "{}").unwrap();
        }
        fs::write(cfg.join("environments/base/x.yml"), "{}").unwrap();
        fs::write(cfg.join("environments/ci/w.yml"), "{}").unwrap();
        let base = cfg.join("base-inv");
        let l = KayobeLayout::resolve(cfg, Some("ci"), &base, &[]).unwrap();
        assert_eq!(
            l.inventories,
            [
                base.clone(),
                cfg.join("inventory"),
                cfg.join("environments/ci/inventory")
            ]
        );
        let names: Vec<_> = l
            .vars_files
            .iter()
            .map(|p| p.strip_prefix(cfg).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "Z.yaml",
                "a.json",
                "b.yml",
                "s.yml.age",
                "environments/base/x.yml",
                "environments/ci/w.yml"
            ]
        );
        // a user's -i replaces the configuration's inventories
        let user = cfg.join("mine");
        let l = KayobeLayout::resolve(cfg, Some("ci"), &base, &[user.clone()]).unwrap();
        assert_eq!(l.inventories, [base, user]);
        assert!(KayobeLayout::resolve(cfg, Some("kayobe"), &cfg.join("b"), &[]).is_err());
    }
}
