//! Kayobe's custom playbook hooks: playbooks in `<config path>/hooks/<verb>/{pre,post}.d/` and the
//! same under the active environments, run before / after a verb's own playbooks. Files from all
//! those folders run in the order of their names (Kayobe's convention is a leading number,
//! `10-foo.yml`); post hooks run only when the verb succeeded; `--skip-hooks` turns them off.

use crate::config::kayobe::KayobeLayout;
use std::path::PathBuf;

/// The hook playbooks for a verb (`["seed", "host", "configure"]`) and a phase (`pre` / `post`).
pub fn hooks(layout: &KayobeLayout, verb: &[&str], phase: &str) -> Vec<PathBuf> {
    let name = verb.join("-");
    let mut dirs = vec![layout
        .config_path
        .join("hooks")
        .join(&name)
        .join(format!("{phase}.d"))];
    for env in &layout.environments {
        dirs.push(
            layout
                .config_path
                .join("environments")
                .join(env)
                .join("hooks")
                .join(&name)
                .join(format!("{phase}.d")),
        );
    }
    let mut found: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let yaml = p.extension().is_some_and(|x| x == "yml" || x == "yaml");
            if yaml && p.is_file() {
                found.push(p);
            }
        }
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_by_name_across_config_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mk = |p: &str| {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "[]").unwrap();
        };
        mk("hooks/seed-host-configure/pre.d/20-b.yml");
        mk("hooks/seed-host-configure/pre.d/README.txt");
        mk("environments/e/hooks/seed-host-configure/pre.d/10-a.yml");
        mk("hooks/seed-host-configure/post.d/5-c.yml");
        let layout = KayobeLayout {
            config_path: root.to_path_buf(),
            environments: vec!["e".into()],
            inventories: vec![],
            vars_files: vec![],
        };
        let pre = hooks(&layout, &["seed", "host", "configure"], "pre");
        let names: Vec<_> = pre
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["10-a.yml", "20-b.yml"]);
        assert_eq!(
            hooks(&layout, &["seed", "host", "configure"], "post").len(),
            1
        );
    }
}
