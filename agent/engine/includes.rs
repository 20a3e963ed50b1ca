//! `include_tasks` and `include_role`: which file (or role) a host includes, per loop item, and
//! its tasks, loaded once per distinct (task, arguments, item) so that hosts including the same
//! thing share the tasks and run them in the same rounds. The strategy pushes the tasks onto the
//! host's cursor (`play.rs`); the include itself reports only when it is skipped or fails.

use super::loops;
use super::result::TaskResult;
use super::state::PlayRun;
use crate::config::vars::HostScope;
use crate::playbook::{Item, Task};
use crate::value::{Map, Value};
use std::sync::Arc;

/// One file an include brought in for a host.
#[derive(Clone, Debug)]
pub struct Included {
    pub file: String,
    pub item: Option<String>,
    pub items: Vec<Item>,
}

/// `include_tasks` / `include_role`: load the tasks (once per distinct file and vars) for
/// the host's cursor.
pub(super) async fn include(
    play: &Arc<PlayRun>,
    task: &Arc<Task>,
    scope: &HostScope,
    no_log: bool,
) -> Result<Vec<Included>, TaskResult> {
    let src = PlayRun::src(scope);
    match play.first_false(&src, &task.attrs.when) {
        Ok(None) => {}
        Ok(Some(expr)) => return Err(TaskResult::skipped_by(expr)),
        Err(e) => return Err(TaskResult::failed(e)),
    }
    let items: Vec<Option<Value>> = match &task.looping {
        None => vec![None],
        Some(lp) => match loops::items(&play.engine.templar, &src, lp, &task.pos.to_string()) {
            Ok(i) => i.into_iter().map(Some).collect(),
            Err(e) => return Err(TaskResult::failed(e)),
        },
    };
    let loop_var = task
        .loop_control
        .loop_var
        .clone()
        .unwrap_or_else(|| "item".into());
    let mut all = Vec::new();
    for item in items {
        let iscope = match &item {
            Some(i) => {
                scope.with_layer("loop item", Map::from_iter([(loop_var.clone(), i.clone())]))
            }
            None => scope.clone(),
        };
        let isrc = PlayRun::src(&iscope);
        let args = match play.engine.templar.template(
            &isrc,
            &Value::Map(task.args.clone()),
            &task.pos.to_string(),
        ) {
            Ok(Value::Map(m)) => m,
            Ok(_) => Map::new(),
            Err(e) => return Err(TaskResult::failed(e.to_string())),
        };
        // the included tasks inherit the include's surroundings, not its own when/tags
        let mut attrs = task.attrs.clone();
        attrs
            .when
            .truncate(attrs.when.len().saturating_sub(task.own_when));
        attrs.tags.retain(|t| !task.own_tags.contains(t));
        if let Some(i) = &item {
            attrs.vars.push((
                "loop item".into(),
                Arc::new(Map::from_iter([(loop_var.clone(), i.clone())])),
            ));
        }
        if let Some(Value::Map(apply)) = args.get("apply") {
            if let Some(t) = apply.get("tags") {
                for t in crate::playbook::load::tag_list(t) {
                    if !attrs.tags.contains(&t) {
                        attrs.tags.push(t);
                    }
                }
            }
            if let Some(b) = apply.get("become") {
                attrs.become_ = Some(b.clone());
            }
            if let Some(b) = apply.get("become_user") {
                attrs.become_user = Some(b.clone());
            }
        }
        let key = format!(
            "{}|{}|{}",
            task.id,
            Value::Map(args.clone()).to_json(false),
            item.as_ref()
                .map(|i| i.to_json(false).to_string())
                .unwrap_or_default()
        );
        // hosts including the same thing share one load (same task ids: same rounds)
        let mut cache = play.include_cache.lock().await;
        let loaded = match cache.get(&key) {
            Some(hit) => Ok(hit.clone()),
            None => {
                let mut shown = String::new();
                load(play, task, &args, &attrs, &mut shown)
                    .await
                    .map(|items| (shown, items))
            }
        };
        match loaded {
            Ok((file, items)) => {
                cache.insert(key, (file.clone(), items.clone()));
                let label = item.as_ref().map(|i| {
                    if no_log {
                        "None".to_string()
                    } else {
                        crate::template::py_str_value(i)
                    }
                });
                all.push(Included {
                    file,
                    item: label,
                    items,
                });
            }
            Err(e) => return Err(TaskResult::failed(e)),
        }
    }
    if all.is_empty() {
        // an include looping over nothing
        return Err(TaskResult::no_items(false));
    }
    Ok(all)
}

async fn load(
    play: &PlayRun,
    task: &Arc<Task>,
    args: &Map,
    attrs: &crate::playbook::Attrs,
    shown: &mut String,
) -> Result<Vec<Item>, String> {
    let loader = play.engine.loader.clone();
    let dir = std::path::Path::new(&*task.pos.file)
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let mut attrs = attrs.clone();
    match task.short_action() {
        "include_tasks" => {
            let file = args
                .get("_raw_params")
                .or_else(|| args.get("file"))
                .map(crate::template::py_str_value)
                .ok_or_else(|| format!("{}: include_tasks needs a file name", task.pos))?;
            crate::playbook::load::push_params(
                &mut attrs,
                args,
                &["_raw_params", "file"],
                "include params",
            );
            let path = loader.resolve_tasks_file(&file, &attrs, &dir);
            *shown = path.display().to_string();
            loader
                .tasks_file(&path, &attrs)
                .map_err(|e| format!("{}: {e}", task.pos))
        }
        _ => {
            let role = args
                .get("name")
                .map(crate::template::py_str_value)
                .ok_or_else(|| format!("{}: include_role needs `name:`", task.pos))?;
            let mut from = crate::playbook::load::RoleFrom::from_args(args);
            from.dynamic = true;
            if let Some(Value::Map(v)) = args.get("vars") {
                attrs.vars.push(("role params".into(), Arc::new(v.clone())));
            }
            let loaded = loader
                .role(&role, Map::new(), &attrs, &from, &task.pos, &dir)
                .map_err(|e| e.to_string())?;
            play.add_handlers(loaded.handlers);
            *shown = role.clone();
            Ok(loaded.tasks)
        }
    }
}
